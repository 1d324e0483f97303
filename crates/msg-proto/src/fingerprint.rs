//! A certificate's SHA-256 fingerprint, written the way
//! `openssl x509 -noout -fingerprint -sha256` prints it (uppercase hex
//! pairs joined by colons); read with or without colons, in any case.
//! The server logs it, `msg-server cert` prints it, and the client pins it.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The SHA-256 of a certificate's DER encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a SHA-256 fingerprint: expected 64 hex digits, with or without colons \
     (as `openssl x509 -noout -fingerprint -sha256` prints it)"
)]
pub struct BadFingerprint;

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    /// Accepts `AA:BB:…`, `aabb…`, and openssl's whole line
    /// (`sha256 Fingerprint=AA:BB:…`).
    fn from_str(text: &str) -> Result<Self, BadFingerprint> {
        let text = text.trim();
        let text = match text.rsplit_once('=') {
            Some((label, value)) if label.to_ascii_lowercase().contains("fingerprint") => value,
            _ => text,
        };
        let text = text
            .strip_prefix("SHA256:")
            .or_else(|| text.strip_prefix("sha256:"))
            .unwrap_or(text);
        // Colons only between pairs, or none at all.
        let hex: String = if text.contains(':') {
            let pairs: Vec<&str> = text.split(':').collect();
            if pairs.len() != 32 || pairs.iter().any(|pair| pair.len() != 2) {
                return Err(BadFingerprint);
            }
            pairs.concat()
        } else {
            text.to_owned()
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadFingerprint);
        }
        let mut bytes = [0u8; 32];
        for (slot, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| BadFingerprint)?;
            *slot = u8::from_str_radix(pair, 16).map_err(|_| BadFingerprint)?;
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLONS: &str = "3F:0A:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E";

    #[test]
    fn reads_every_spelling_and_shows_one() {
        let fp: Fingerprint = COLONS.parse().unwrap();
        assert_eq!(fp.to_string(), COLONS);
        let bare = COLONS.replace(':', "").to_lowercase();
        assert_eq!(bare.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(COLONS.to_lowercase().parse::<Fingerprint>().unwrap(), fp);
        let openssl = format!("sha256 Fingerprint={COLONS}\n");
        assert_eq!(openssl.parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "3F",
            &COLONS[3..],
            &format!("{COLONS}:00"),
            &COLONS.replace("3F", "3G"),
            &COLONS.replacen(':', "", 1),
            "é".repeat(32).as_str(),
        ] {
            assert_eq!(bad.parse::<Fingerprint>(), Err(BadFingerprint), "{bad}");
        }
    }

    #[test]
    fn of_der_is_sha256() {
        // SHA-256 of the empty input.
        assert_eq!(
            Fingerprint::of_der(b"").to_string().replace(':', ""),
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        );
    }
}
