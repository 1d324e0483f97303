//! `known_servers` in the data dir: the certificate fingerprints the user
//! pinned, one `HOST:PORT FINGERPRINT` a line, like ssh's known_hosts.
//! Written whole to a temporary file (0600) and renamed into place, so a
//! crash leaves the old file or the new one; lines it does not understand
//! are kept as they are.

use std::io::Write;
use std::path::{Path, PathBuf};

use msg_proto::Fingerprint;

pub const FILE_NAME: &str = "known_servers";
/// A file larger than this is not read (a pin is under 130 bytes).
const MAX_LEN: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KnownServersError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than 1 MiB; not read", path.display())]
    TooLarge { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The file's contents; a missing file is empty.
fn read(path: &Path) -> Result<String, KnownServersError> {
    let failed = |source| KnownServersError::Read {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_LEN => {
            return Err(KnownServersError::TooLarge {
                path: path.to_owned(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(failed(e)),
    }
    std::fs::read_to_string(path).map_err(failed)
}

fn parse_line(line: &str) -> Option<(&str, Fingerprint)> {
    let mut words = line.split_whitespace();
    let server = words.next()?;
    let fingerprint = words.next()?.parse().ok()?;
    (!server.starts_with('#')).then_some((server, fingerprint))
}

/// The fingerprint pinned for `server` (`HOST:PORT`), if any.
pub fn lookup(path: &Path, server: &str) -> Result<Option<Fingerprint>, KnownServersError> {
    Ok(read(path)?
        .lines()
        .filter_map(parse_line)
        .find(|(name, _)| *name == server)
        .map(|(_, fingerprint)| fingerprint))
}

/// Pins `fingerprint` for `server`, replacing any earlier pin for it.
pub fn pin(path: &Path, server: &str, fingerprint: &Fingerprint) -> Result<(), KnownServersError> {
    let old = read(path)?;
    let mut text = String::with_capacity(old.len() + 128);
    for line in old.lines() {
        if parse_line(line).is_some_and(|(name, _)| name == server) {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("{server} {fingerprint}\n"));
    write_atomically(path, text.as_bytes()).map_err(|source| KnownServersError::Write {
        path: path.to_owned(),
        source,
    })
}

fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(byte: u8) -> Fingerprint {
        Fingerprint::of_der(&[byte])
    }

    #[test]
    fn pins_are_found_replaced_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(lookup(&path, "a:1").unwrap(), None);
        std::fs::write(&path, "# a comment\ngarbage\n").unwrap();
        pin(&path, "a:1", &fp(1)).unwrap();
        pin(&path, "b:2", &fp(2)).unwrap();
        pin(&path, "a:1", &fp(3)).unwrap();
        assert_eq!(lookup(&path, "a:1").unwrap(), Some(fp(3)));
        assert_eq!(lookup(&path, "b:2").unwrap(), Some(fp(2)));
        assert_eq!(lookup(&path, "c:3").unwrap(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# a comment\ngarbage\n"), "{text}");
        assert_eq!(text.lines().count(), 4, "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_huge_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, vec![b'x'; (MAX_LEN + 1) as usize]).unwrap();
        assert!(matches!(
            lookup(&path, "a:1"),
            Err(KnownServersError::TooLarge { .. })
        ));
    }
}
