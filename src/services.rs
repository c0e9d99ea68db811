//! `/etc/services`: service names to port numbers, for `listen: finger`
//! and for `superd import`. Pure parsing over text; the system file is read
//! once, on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The system's services file.
pub const ETC_SERVICES: &str = "/etc/services";

/// Names (and aliases) to ports, per protocol, as services(5) lists them.
#[derive(Clone, Debug, Default)]
pub struct Services {
    ports: HashMap<(String, String), u16>,
}

impl Services {
    /// Parses services(5) text: `name port/proto [aliases...] [# comment]`.
    pub fn parse(text: &str) -> Services {
        let mut ports = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(name), Some(pp)) = (words.next(), words.next()) else {
                continue;
            };
            let Some((port, proto)) = pp.split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            for n in std::iter::once(name).chain(words) {
                ports
                    .entry((n.to_owned(), proto.to_owned()))
                    .or_insert(port);
            }
        }
        Services { ports }
    }

    /// The system's file; empty when it cannot be read.
    pub fn system() -> &'static Services {
        static SYSTEM: OnceLock<Services> = OnceLock::new();
        SYSTEM.get_or_init(|| {
            Services::parse(&std::fs::read_to_string(ETC_SERVICES).unwrap_or_default())
        })
    }

    /// The port of `name` for `proto` (`tcp`, `udp`).
    pub fn port(&self, name: &str, proto: &str) -> Option<u16> {
        self.ports
            .get(&(name.to_owned(), proto.to_owned()))
            .copied()
    }

    /// The port of `name` for TCP, else for UDP.
    pub fn any_port(&self, name: &str) -> Option<u16> {
        self.port(name, "tcp").or_else(|| self.port(name, "udp"))
    }
}

/// The port /etc/services gives `name` (TCP first, then UDP).
pub fn port_by_name(name: &str) -> Option<u16> {
    Services::system().any_port(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_protocols() {
        let s = Services::parse(
            "# comment\nfinger\t\t79/tcp\ntftp\t\t69/udp\nhttp 80/tcp www # WorldWideWeb\nbad x/tcp\n",
        );
        assert_eq!(s.port("finger", "tcp"), Some(79));
        assert_eq!(s.port("finger", "udp"), None);
        assert_eq!(s.any_port("tftp"), Some(69));
        assert_eq!(s.port("www", "tcp"), Some(80));
        assert_eq!(s.any_port("bad"), None);
    }
}
