//! The keys of private sessions: our daemon's static X25519 key pair, made
//! when msgd starts and kept in memory only (a new one each run, so nothing
//! on disk can be stolen to impersonate us later), and the 32 secret bytes
//! a session's token stands for, its Noise pre-shared key.

use msg_proto::peer::{self, KEY_LEN, NOISE_PARAMS};
use snow::params::NoiseParams;

#[derive(Debug, thiserror::Error)]
#[error("cannot make the key pair for private sessions: {0}")]
pub struct KeyError(snow::Error);

/// The parameters of every peer handshake.
pub fn noise_params() -> Result<NoiseParams, snow::Error> {
    NOISE_PARAMS.parse()
}

/// 32 bytes that must never be logged: our static private key, or a
/// session's token as the pre-shared key. `Debug` shows nothing of them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    pub fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A token from the server (64 hex digits); `None` for anything else,
    /// e.g. an older server's shorter one.
    pub fn from_token(token: &str) -> Option<Self> {
        peer::decode_key(token).map(Self)
    }

    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// A peer's static public key: not secret, but what proves who it is.
pub type PublicKey = [u8; KEY_LEN];

/// What the server gave us for one session: the key the peer's daemon must
/// prove it holds, and the token that is the session's pre-shared key.
#[derive(Debug, Clone)]
pub struct Brokered {
    pub peer_key: PublicKey,
    pub psk: SecretKey,
}

impl Brokered {
    /// From `private_ready`'s `peer_key` and `token`; `None` when either is
    /// missing or malformed (an older server), and then there is no session.
    pub fn from_server(peer_key: Option<&str>, token: &str) -> Option<Self> {
        Some(Self {
            peer_key: peer::decode_key(peer_key?)?,
            psk: SecretKey::from_token(token)?,
        })
    }
}

/// Our static key pair.
pub struct Identity {
    private: SecretKey,
    public: PublicKey,
}

impl Identity {
    /// A fresh key pair from the operating system's random generator.
    pub fn generate() -> Result<Self, KeyError> {
        let params = noise_params().map_err(KeyError)?;
        let pair = snow::Builder::new(params)
            .generate_keypair()
            .map_err(KeyError)?;
        let (Ok(private), Ok(public)) = (
            <[u8; KEY_LEN]>::try_from(pair.private.as_slice()),
            <[u8; KEY_LEN]>::try_from(pair.public.as_slice()),
        ) else {
            return Err(KeyError(snow::Error::Input));
        };
        Ok(Self {
            private: SecretKey(private),
            public,
        })
    }

    pub fn private(&self) -> &SecretKey {
        &self.private
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Our public key as the wire shows it (64 hex digits).
    pub fn public_hex(&self) -> String {
        peer::encode_key(&self.public)
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_identity_is_new_and_its_secret_never_shows() {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        assert_ne!(a.public(), b.public());
        assert_ne!(a.private(), b.private());
        assert_eq!(peer::decode_key(&a.public_hex()), Some(*a.public()));
        let private_hex = peer::encode_key(a.private().expose());
        let shown = format!("{a:?} {:?}", a.private());
        assert!(!shown.contains(&private_hex), "{shown}");
        assert!(shown.contains(&a.public_hex()));
    }

    #[test]
    fn only_a_full_size_token_makes_a_key() {
        let token = "0f".repeat(32);
        assert_eq!(
            SecretKey::from_token(&token).map(|k| *k.expose()),
            Some([0x0f; 32])
        );
        // An older server's 128-bit token.
        assert!(SecretKey::from_token(&"0f".repeat(16)).is_none());
    }
}
