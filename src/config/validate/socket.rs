//! How the socket reaches the child and what comes on it first: socket
//! activation (`pass`, `fd_names`, `start`) and the PROXY protocol fields.

use super::*;

/// The socket activation fields of a service, as picked.
pub(super) struct ActivationFields<'a> {
    pub(super) pass: Option<(&'a crate::service::PassMode, Origin<'a>)>,
    /// Only the service's own: names are per address, and `defaults` has
    /// no addresses.
    pub(super) fd_names: Option<&'a OneOrMany<crate::config::raw::FdName>>,
    pub(super) start: Option<(&'a crate::service::StartMode, Origin<'a>)>,
    pub(super) stderr: Option<(&'a crate::service::StderrMode, Origin<'a>)>,
}

/// `pass`, `fd_names`, `start` and per-address socket types
/// (superd.yaml(5), SOCKET ACTIVATION): each only where superd applies it.
pub(super) fn activation(
    name: &str,
    f: ActivationFields<'_>,
    entries: &[ListenEntry],
    own: Origin<'_>,
    (wait, is_builtin): (bool, bool),
    errors: &mut Vec<ConfigError>,
) -> (
    crate::service::PassMode,
    Vec<String>,
    crate::service::StartMode,
) {
    use crate::service::{PassMode, StartMode, StderrMode};
    let pass = f.pass.map_or(PassMode::Stdio, |(p, _)| *p);
    if let Some((PassMode::ListenFds, o)) = f.pass {
        if is_builtin {
            errors.push(o.at_value(
                "pass",
                format!("service {name:?}: pass: listen_fds needs exec (a builtin has no child)"),
            ));
        }
        if let Some((StderrMode::Socket, so)) = f.stderr {
            errors.push(so.at_value(
                "stderr",
                format!(
                    "service {name:?}: stderr: socket cannot be applied with pass: listen_fds (the socket is on fd 3, fds 0-2 are /dev/null or the log): use log or null"
                ),
            ));
        }
    }
    if let Some((StartMode::AtStart, o)) = f.start
        && (!wait || is_builtin)
    {
        errors.push(o.at_value(
            "start",
            format!(
                "service {name:?}: start: at_start needs wait: true and exec (a nowait child needs a connection)"
            ),
        ));
    }
    for (i, e) in entries.iter().enumerate() {
        if e.socket.is_some() && (!wait || is_builtin) {
            let msg = format!(
                "service {name:?}: a socket type per address needs wait: true and exec (one child gets every socket)"
            );
            // At the entry's `socket:` key.
            let at = own
                .file
                .index
                .key(&own.path(&["listen", &i.to_string(), "socket"]));
            errors.push(match at {
                Some(pos) => own.error(Some(pos), msg),
                None => own.at_element("listen", i, msg),
            });
        }
    }
    let mut names = Vec::new();
    if let Some(OneOrMany(list)) = f.fd_names {
        if pass != PassMode::ListenFds {
            errors.push(own.at_value(
                "fd_names",
                format!("service {name:?}: fd_names needs pass: listen_fds"),
            ));
        } else if !wait && !list.is_empty() {
            errors.push(own.at_value(
                "fd_names",
                format!(
                    "service {name:?}: fd_names needs wait: true (a nowait child's fd 3 is named connection)"
                ),
            ));
        } else if list.len() != entries.len() {
            errors.push(own.at_value(
                "fd_names",
                format!(
                    "service {name:?}: fd_names has {} name{} for {} address{}: one per address of listen",
                    list.len(),
                    if list.len() == 1 { "" } else { "s" },
                    entries.len(),
                    if entries.len() == 1 { "" } else { "es" }
                ),
            ));
        }
        names = list.iter().map(|n| n.0.clone()).collect();
    }
    let start = f.start.map_or(StartMode::OnDemand, |(s, _)| *s);
    (pass, names, start)
}

/// The PROXY fields of one service, each with where it came from.
pub(super) struct ProxyFields<'a> {
    pub(super) protocol: Option<(&'a crate::proxy::Accept, Origin<'a>)>,
    pub(super) from: Option<(&'a OneOrMany<Cidr>, Origin<'a>)>,
    pub(super) timeout: Option<(&'a Dur, Origin<'a>)>,
    pub(super) wait: Option<(&'a bool, Origin<'a>)>,
}

/// `proxy_protocol` and its companions. The header is read from a TCP
/// connection before anything else happens to it, so the service must be
/// TCP, stream, and not wait (a wait child gets the listening socket: no
/// header is ever read). A unix socket is refused too: `proxy_from` names
/// IP addresses, and a unix peer has none to check.
pub(super) fn proxy_config(
    f: ProxyFields,
    raw: &RawService,
    own: Origin,
    (socket, any_unix, wait): (SocketType, bool, bool),
    ctx: &Context,
    errors: &mut Vec<ConfigError>,
) -> Option<ProxyConfig> {
    let Some((&accept, o)) = f.protocol else {
        // Written in the service itself, these would be ignored: refuse
        // them. From `defaults` they wait for a service that uses them.
        for (field, set) in [
            ("proxy_from", raw.proxy_from.is_some()),
            ("proxy_timeout", raw.proxy_timeout.is_some()),
        ] {
            if set {
                errors.push(own.at_key(
                    field,
                    format!("{field} has no effect without proxy_protocol"),
                ));
            }
        }
        return None;
    };
    let before = errors.len();
    if !ctx.proxy_served {
        errors.push(o.at_value(
            "proxy_protocol",
            "proxy_protocol is not yet supported by this build: superd does not read PROXY headers yet",
        ));
    }
    if socket != SocketType::Stream {
        errors.push(o.at_value(
            "proxy_protocol",
            format!(
                "proxy_protocol needs a stream service: a PROXY header starts a TCP connection, and a {socket} service has none"
            ),
        ));
    } else if any_unix {
        errors.push(o.at_value(
            "proxy_protocol",
            "proxy_protocol needs TCP addresses: proxy_from names IP addresses, and a unix socket peer has none",
        ));
    } else if wait {
        let (at, field) = match f.wait {
            Some((_, w)) => (w, "wait"),
            None => (o, "proxy_protocol"),
        };
        errors.push(at.at_value(
            field,
            "proxy_protocol needs wait: false: a wait child gets the listening socket, and no header is read",
        ));
    }
    let from = match f.from {
        None => {
            errors.push(o.at_value(
                "proxy_protocol",
                "proxy_protocol needs proxy_from: the addresses of the proxies that may send the header",
            ));
            Vec::new()
        }
        Some((list, at)) if list.0.is_empty() => {
            errors.push(at.at_key(
                "proxy_from",
                "proxy_from is empty: expected the addresses of the proxies that may send the header",
            ));
            Vec::new()
        }
        Some((list, _)) => list.0.clone(),
    };
    let timeout = match f.timeout {
        Some((d, at)) if d.0.is_zero() => {
            errors.push(at.at_value("proxy_timeout", "proxy_timeout must be longer than 0"));
            Duration::ZERO
        }
        Some((d, _)) => d.0,
        None => ProxyConfig::DEFAULT_TIMEOUT,
    };
    (errors.len() == before).then_some(ProxyConfig {
        accept,
        from,
        timeout,
    })
}
