//! A peer daemon played by hand, written from docs/PROTOCOL.md ("Peer
//! protocol") with `snow` and nothing of msgd's: records of a 2-byte
//! big-endian length and a Noise message, the
//! `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s` handshake with the token's bytes
//! as the pre-shared key, then NDJSON frames sealed in transport records.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

pub const NOISE_PARAMS: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";

/// How long any read in these tests may wait.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn builder() -> snow::Builder<'static> {
    snow::Builder::new(NOISE_PARAMS.parse().unwrap())
}

/// A static key pair, as a daemon makes one when it starts.
pub struct Keys {
    pub private: Vec<u8>,
    pub public: [u8; 32],
}

impl Keys {
    pub fn new() -> Self {
        let pair = builder().generate_keypair().unwrap();
        Self {
            public: pair.public.as_slice().try_into().unwrap(),
            private: pair.private,
        }
    }

    /// The public key as `peer_key` carries it.
    pub fn hex(&self) -> String {
        hex(&self.public)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

pub fn write_record(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len()).unwrap().to_be_bytes();
    stream.write_all(&[&len[..], message].concat())
}

/// The next record; `None` when the other side closed (or reset).
pub fn read_record(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut record = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut record).ok()?;
    Some(record)
}

/// Whether the other side closes (or resets) without sending a byte.
pub fn closes_silently(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

/// How a call ended before the secure channel was up.
#[derive(Debug, PartialEq)]
pub enum CallError {
    /// Closed (or reset) without answering message 1.
    Closed,
    /// Answered with something that does not open: not the holder of the
    /// key we were given, or not the same token.
    Unverified,
}

/// One side of an open secure channel.
pub struct Channel {
    stream: TcpStream,
    transport: snow::TransportState,
    /// Opened text not yet cut into lines.
    text: Vec<u8>,
}

impl Channel {
    /// Dials `addr` as `me`, expecting the callee's key `theirs`, with
    /// `token` (64 hex digits) as the pre-shared key.
    pub fn call(addr: &str, me: &Keys, theirs: &[u8], token: &str) -> Result<Self, CallError> {
        let psk: [u8; 32] = unhex(token).try_into().unwrap();
        let mut handshake = builder()
            .local_private_key(&me.private)
            .unwrap()
            .remote_public_key(theirs)
            .unwrap()
            .psk(2, &psk)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut message = [0u8; 256];
        let n = handshake.write_message(&[], &mut message).unwrap();
        if write_record(&mut stream, &message[..n]).is_err() {
            return Err(CallError::Closed);
        }
        let answer = read_record(&mut stream).ok_or(CallError::Closed)?;
        let mut payload = [0u8; 256];
        handshake
            .read_message(&answer, &mut payload)
            .map_err(|_| CallError::Unverified)?;
        Ok(Self {
            stream,
            transport: handshake.into_transport_mode().unwrap(),
            text: Vec::new(),
        })
    }

    pub fn send(&mut self, frame: Value) {
        let line = format!("{frame}\n");
        for chunk in line.as_bytes().chunks(65_535 - 16) {
            let mut sealed = vec![0u8; chunk.len() + 16];
            let n = self.transport.write_message(chunk, &mut sealed).unwrap();
            write_record(&mut self.stream, &sealed[..n]).unwrap();
        }
    }

    /// The next frame; `None` once the other side closed.
    pub fn recv(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.text.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.text.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let record = read_record(&mut self.stream)?;
            let mut opened = vec![0u8; record.len()];
            let n = self
                .transport
                .read_message(&record, &mut opened)
                .expect("a record that opens");
            self.text.extend_from_slice(&opened[..n]);
        }
    }

    /// Frames until one has `"type": kind`.
    pub fn until(&mut self, kind: &str) -> Value {
        loop {
            let frame = self
                .recv()
                .unwrap_or_else(|| panic!("closed before {kind}"));
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}
