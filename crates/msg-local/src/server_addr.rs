//! A server address as people write it: `HOST:PORT` or `tcp://HOST:PORT`
//! for plain TCP, `tls://HOST:PORT` for TLS; anything else is an error
//! that says what is accepted. Several nodes of one service are written
//! comma-separated (`a:4747,b:4747`): msgd uses one and moves to another
//! when it is gone. Also when a password may cross plain TCP.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub transport: Transport,
    /// A name or an IP address (IPv6 without its brackets).
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid server address `{0}`: write HOST:PORT or tcp://HOST:PORT (plain TCP) \
     or tls://HOST:PORT (TLS), e.g. tls://chat.example.org:4747"
)]
pub struct BadServerAddr(pub String);

impl ServerAddr {
    /// `HOST:PORT`, IPv6 in brackets: what to connect to, and the key of a
    /// pin in `known_servers`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Transport::Tcp => f.write_str(&self.authority()),
            Transport::Tls => write!(f, "tls://{}", self.authority()),
        }
    }
}

impl FromStr for ServerAddr {
    type Err = BadServerAddr;

    fn from_str(text: &str) -> Result<Self, BadServerAddr> {
        let bad = || BadServerAddr(text.chars().take(200).collect());
        let (transport, rest) = match text.split_once("://") {
            Some(("tls", rest)) => (Transport::Tls, rest),
            Some(("tcp", rest)) => (Transport::Tcp, rest),
            Some(_) => return Err(bad()),
            None => (Transport::Tcp, text),
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = match port.parse() {
            Ok(0) | Err(_) => return Err(bad()),
            Ok(port) => port,
        };
        let host = match host.strip_prefix('[') {
            Some(inner) => {
                let inner = inner.strip_suffix(']').ok_or_else(bad)?;
                inner.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
                inner
            }
            None => host,
        };
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
        if host.is_empty() || host.len() > 253 || !host.chars().all(name_char) {
            return Err(bad());
        }
        // A bare IPv6 address must be bracketed: `::1:4747` is ambiguous.
        if host.contains(':') && !rest.starts_with('[') {
            return Err(bad());
        }
        Ok(Self {
            transport,
            host: host.to_owned(),
            port,
        })
    }
}

/// Most nodes one service may be written with.
pub const MAX_NODES: usize = 16;

/// A comma-separated list of one service's nodes, in the order given
/// (at least one, at most [`MAX_NODES`], no repeats).
pub fn parse_list(text: &str) -> Result<Vec<ServerAddr>, BadServerAddr> {
    let bad = || BadServerAddr(text.chars().take(200).collect());
    let mut nodes: Vec<ServerAddr> = Vec::new();
    for part in text.split(',') {
        let addr: ServerAddr = part.trim().parse()?;
        if nodes.contains(&addr) {
            return Err(bad());
        }
        nodes.push(addr);
    }
    if nodes.len() > MAX_NODES {
        return Err(bad());
    }
    Ok(nodes)
}

/// The list as [`parse_list`] reads it back: `a:4747,tls://b:4747`.
pub fn list_to_string(nodes: &[ServerAddr]) -> String {
    nodes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a password may go over plain TCP to `peer`: only to this
/// machine (loopback), unless the user said `--insecure`.
pub fn plain_password_allowed(peer: IpAddr, insecure: bool) -> bool {
    insecure || peer.is_loopback() || peer.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Result<ServerAddr, BadServerAddr> {
        text.parse()
    }

    #[test]
    fn several_nodes_in_order_without_repeats() {
        let nodes = parse_list("127.0.0.1:4747, tls://b.example.org:4747").unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].transport, Transport::Tls);
        assert_eq!(
            list_to_string(&nodes),
            "127.0.0.1:4747,tls://b.example.org:4747"
        );
        assert_eq!(parse_list("a:1").unwrap().len(), 1);
        assert!(parse_list("a:1,a:1").is_err(), "a repeat");
        assert!(parse_list("a:1,").is_err(), "an empty part");
        assert!(parse_list("").is_err());
        let many: Vec<String> = (1..=17).map(|p| format!("a:{p}")).collect();
        assert!(parse_list(&many.join(",")).is_err(), "too many");
    }

    #[test]
    fn the_three_forms() {
        let plain = addr("127.0.0.1:4747").unwrap();
        assert_eq!(plain.transport, Transport::Tcp);
        assert_eq!(plain.authority(), "127.0.0.1:4747");
        assert_eq!(addr("tcp://127.0.0.1:4747").unwrap(), plain);
        let tls = addr("tls://chat.example.org:4747").unwrap();
        assert_eq!(tls.transport, Transport::Tls);
        assert_eq!(tls.host, "chat.example.org");
        assert_eq!(tls.to_string(), "tls://chat.example.org:4747");
        let v6 = addr("tls://[::1]:4747").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.authority(), "[::1]:4747");
    }

    #[test]
    fn anything_else_is_an_error_saying_what_works() {
        for bad in [
            "",
            "chat",
            "chat:",
            "chat:0",
            "chat:99999",
            "https://chat:443",
            "tls://",
            "tls://:4747",
            "::1:4747",
            "[::1:4747",
            "tls://chat:4747/path",
            "chat host:4747",
        ] {
            let e = addr(bad).unwrap_err().to_string();
            assert!(e.contains("tls://HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn passwords_cross_plain_tcp_only_to_loopback_unless_insecure() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let local6: IpAddr = "::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(plain_password_allowed(local, false));
        assert!(plain_password_allowed(local6, false));
        assert!(plain_password_allowed(mapped, false));
        assert!(!plain_password_allowed(remote, false));
        assert!(plain_password_allowed(remote, true));
    }
}
