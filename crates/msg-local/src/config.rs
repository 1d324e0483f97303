//! `config.toml` in the user's config dir: defaults for both `msg` and `msgd`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Used when neither `--server`, `MSG_SERVER` nor the config names a server.
pub const DEFAULT_SERVER: &str = "127.0.0.1:4747";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `HOST:PORT`, `tcp://HOST:PORT` or `tls://HOST:PORT` of msg-server.
    pub server: Option<String>,
    /// A CA certificate (PEM) to trust for the server's TLS certificate.
    pub ca: Option<PathBuf>,
    /// Send the password over plain TCP even to another machine.
    pub insecure: bool,
    /// Raise desktop notifications.
    pub notify: bool,
    /// Accept every private-session request at once.
    pub auto_accept_private: bool,
    /// TCP port for private sessions; ephemeral when unset.
    pub peer_port: Option<u16>,
    /// Read inbox items older than this many days are deleted; 0 keeps
    /// everything.
    pub retention_days: u32,
}

/// Days read inbox items are kept by default.
pub const DEFAULT_RETENTION_DAYS: u32 = 365;

impl Default for Config {
    fn default() -> Self {
        Self {
            server: None,
            ca: None,
            insecure: false,
            notify: true,
            auto_accept_private: false,
            peer_port: None,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

/// A config file that cannot be used, and where it is: a typo must be
/// found in seconds, so the error names the file and the parser's line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

impl Config {
    /// Reads the config; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c =
            Config::parse(
                "server = \"chat:4747\"\nnotify = false\nauto_accept_private = true\npeer_port = 4848\n",
            )
                .unwrap();
        assert_eq!(c.server.as_deref(), Some("chat:4747"));
        assert!(!c.notify);
        assert!(c.auto_accept_private);
        assert_eq!(c.peer_port, Some(4848));
        assert_eq!(c.retention_days, DEFAULT_RETENTION_DAYS);
        assert_eq!(
            Config::parse("retention_days = 0").unwrap().retention_days,
            0
        );
        assert!(Config::parse("retention_days = -1").is_err());
        assert!(Config::parse("colour = 1").is_err());
    }

    #[test]
    fn a_typo_names_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "notify = true\nsever = \"chat:4747\"\n").unwrap();
        let text = Config::load(&path).unwrap_err().to_string();
        assert!(
            text.starts_with(&format!("invalid config file {}: ", path.display())),
            "{text}"
        );
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("unknown field `sever`"), "{text}");
    }

    #[test]
    fn missing_file_is_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load(&dir.path().join("none.toml")).unwrap(),
            Config::default()
        );
    }
}
