//! One xinetd service block translated to an entry: the attributes that
//! map directly here, the limits, access, environment and process ones
//! in `attrs`.

use std::net::IpAddr;
use std::path::Path;

use super::super::inetd::BUILTIN_PORTS;
use super::super::{Entry, Env, Severity, Value, service_name};
use super::{Attr, Block};

use super::attrs::{access, environment, limits, process};
use super::view::{KNOWN, SET_VALUED, View, note};

pub(super) fn translate(b: &Block, defaults: &[&Attr], env: &Env) -> Entry {
    let view = View {
        own: &b.attrs,
        defaults,
    };
    let svc = b.service.clone().unwrap_or_default();
    let id = view
        .own
        .iter()
        .rev()
        .find(|a| a.name == "id")
        .and_then(|a| a.values.first().cloned());
    let source = match &id {
        Some(id) if *id != svc => format!("service {svc} (id {id})"),
        _ => format!("service {svc}"),
    };
    let name = service_name(id.as_deref().unwrap_or(&svc));
    let mut e = Entry::new(&name, b.loc.clone(), source);
    let n = b.loc.line;

    for a in view.own.iter().chain(view.defaults.iter().copied()) {
        if !KNOWN.contains(&a.name.as_str()) && !a.name.starts_with("v6only") {
            note(
                &mut e,
                &a.loc,
                Severity::Dropped,
                format!("{}: not an attribute of xinetd.conf(5)", a.name),
            );
        }
    }

    let words = |name: &str| -> Vec<String> {
        view.single(name)
            .map(|a| a.values.iter().map(|v| v.to_ascii_uppercase()).collect())
            .unwrap_or_default()
    };
    let types = words("type");
    let flags = words("flags");
    let has = |v: &[String], w: &str| v.iter().any(|x| x == w);

    if has(&types, "RPC") {
        e.drop_all(
            n,
            "type RPC: superd serves no Sun RPC (no portmapper registration)",
        );
        return e;
    }
    if has(&types, "TCPMUX") || has(&types, "TCPMUXPLUS") {
        e.drop_all(
            n,
            "type TCPMUX: superd has no TCPMUX (RFC 1078) multiplexer",
        );
        return e;
    }
    if has(&flags, "SENSOR") {
        e.drop_all(
            n,
            "flags SENSOR: superd has no sensor that blocks the addresses touching a port",
        );
        return e;
    }
    if let Some(a) = view.single("redirect") {
        e.drop_all(a.loc.line, "redirect: superd does not forward connections to another host (run a forwarder as the program)");
        return e;
    }
    let internal = has(&types, "INTERNAL");

    // Socket type and protocol.
    let socket = match view.single("socket_type").and_then(|a| a.values.first()) {
        Some(s) if s == "stream" || s == "dgram" => s.clone(),
        Some(s) => {
            e.drop_all(
                n,
                format!("socket_type {s}: superd serves stream and dgram over IP"),
            );
            return e;
        }
        None => {
            e.drop_all(n, "no socket_type (xinetd refuses such a service too)");
            return e;
        }
    };
    let proto = view
        .single("protocol")
        .and_then(|a| a.values.first().cloned())
        .unwrap_or_else(|| {
            if socket == "stream" {
                "tcp".into()
            } else {
                "udp".into()
            }
        });
    if (proto == "tcp" && socket != "stream")
        || (proto == "udp" && socket != "dgram")
        || !(proto == "tcp" || proto == "udp")
    {
        e.drop_all(
            n,
            format!("{socket} over {proto}: superd runs TCP as stream and UDP as dgram"),
        );
        return e;
    }

    // The port: `port`, else /etc/services by the service name.
    let port = match view.single("port").and_then(|a| a.values.first()) {
        Some(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                e.drop_all(n, format!("port {p:?} is not a port number"));
                return e;
            }
        },
        None => match env.services.port(&svc, &proto) {
            Some(p) => p,
            None => {
                e.drop_all(
                    n,
                    format!("no port, and {svc:?} is not in /etc/services for {proto}"),
                );
                return e;
            }
        },
    };

    // Where: bind/interface, else the family flags (IPv4 by default, as
    // xinetd binds).
    let bind = view.single("bind").or_else(|| view.single("interface"));
    let v6only = view
        .single("v6only")
        .and_then(|a| a.values.first())
        .is_some_and(|v| v == "yes");
    let listen = match bind.and_then(|a| a.values.first().map(|v| (v, a))) {
        Some((addr, a)) => {
            match addr.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) => format!("{ip}:{port}"),
                Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                Err(_) => {
                    e.drop_all(a.loc.line, format!("bind {addr:?} is a name: superd listens on addresses (write the address)"));
                    return e;
                }
            }
        }
        None if has(&flags, "IPV6") => format!("[::]:{port}"),
        None => format!("0.0.0.0:{port}"),
    };
    e.set("listen", Value::Str(listen));
    if socket != "stream" {
        e.set("socket", Value::str(socket.as_str()));
    }
    if v6only {
        e.set("v6only", Value::Bool(true));
    }

    // The program.
    if internal {
        let b = BUILTIN_PORTS
            .iter()
            .find(|(b, _)| b.as_str() == svc)
            .or_else(|| BUILTIN_PORTS.iter().find(|(_, p)| *p == port))
            .map(|(b, _)| *b);
        match b {
            Some(b) => e.set("builtin", Value::str(b.as_str())),
            None => {
                e.drop_all(n, format!("internal service {svc:?}: superd's builtins are echo, discard, daytime, chargen and time"));
                return e;
            }
        }
    } else {
        let Some(server) = view
            .single("server")
            .and_then(|a| a.values.first().cloned())
        else {
            e.drop_all(n, "no server (xinetd refuses such a service too)");
            return e;
        };
        let args: Vec<String> = view
            .single("server_args")
            .map(|a| a.values.clone())
            .unwrap_or_default();
        let mut argv = vec![Value::str(server.clone())];
        let mut argv0 = None;
        if has(&flags, "NAMEINARGS") {
            // The first of server_args is argv[0] (tcpd finds its daemon by it).
            if let Some((first, rest)) = args.split_first() {
                argv0 = Some(first.clone());
                argv.extend(rest.iter().map(|a| Value::str(a.as_str())));
            }
        } else {
            argv.extend(args.iter().map(|a| Value::str(a.as_str())));
        }
        e.set("exec", Value::List(argv));
        if let Some(a) = argv0 {
            e.set("argv0", Value::Str(a));
        }
    }

    // wait.
    let wait = view
        .single("wait")
        .and_then(|a| a.values.first().map(|v| (v == "yes", a)));
    if !internal {
        match wait {
            Some((false, a)) if socket == "dgram" => {
                e.set("wait", Value::Bool(true));
                note(
                    &mut e,
                    &a.loc,
                    Severity::Approximated,
                    "wait = no on dgram: superd hands a datagram socket to one child at a time (wait: true)",
                );
            }
            Some((true, _)) if socket == "stream" => e.set("wait", Value::Bool(true)),
            _ => {}
        }
    }

    // Identity.
    if !internal {
        match view.single("user").and_then(|a| a.values.first()) {
            Some(u) => e.set("user", Value::str(u.as_str())),
            None => {
                e.drop_all(n, "no user (xinetd refuses such a service too)");
                return e;
            }
        }
        if let Some(g) = view.single("group").and_then(|a| a.values.first()) {
            e.set("group", Value::str(g.as_str()));
        }
        if let Some(a) = view.single("groups")
            && a.values.first().is_some_and(|v| v == "no")
        {
            e.set("groups", Value::List(Vec::new()));
        }
    }

    limits(&mut e, &view);
    access(&mut e, &view);
    environment(&mut e, &view, internal);
    process(&mut e, &view, internal);

    if let Some(a) = view.single("banner_fail")
        && let Some(file) = a.values.first()
    {
        match (env.read)(Path::new(file)) {
            Ok(bytes) => {
                let max = crate::config::MAX_REFUSE_MESSAGE;
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
                let text = text.trim_end_matches('\u{fffd}').to_owned();
                if bytes.len() > max {
                    note(
                        &mut e,
                        &a.loc,
                        Severity::Approximated,
                        format!(
                            "banner_fail {file}: the first {max} bytes of {} (refuse_message holds at most {max})",
                            bytes.len()
                        ),
                    );
                }
                if socket == "stream" {
                    e.set("refuse_message", Value::Str(text));
                } else {
                    note(
                        &mut e,
                        &a.loc,
                        Severity::Dropped,
                        "banner_fail on dgram: superd writes refuse_message to TCP clients only",
                    );
                }
            }
            Err(err) => note(
                &mut e,
                &a.loc,
                Severity::Dropped,
                format!(
                    "banner_fail {file}: cannot read it here ({err}): write its text as refuse_message"
                ),
            ),
        }
    }

    // Flags.
    for f in &flags {
        let a = view.single("flags").expect("flags were read");
        match f.as_str() {
            "NODELAY" if socket == "stream" => e.set("nodelay", Value::Bool(true)),
            "KEEPALIVE" if socket == "stream" => e.set("keepalive", Value::Bool(true)),
            "NAMEINARGS" | "NOLIBWRAP" | "IPV4" | "IPV6" | "NODELAY" | "KEEPALIVE" | "REUSE" => {}
            "NORETRY" => note(
                &mut e,
                &a.loc,
                Severity::Approximated,
                "flags NORETRY: when fork fails superd pauses the service briefly and tries again",
            ),
            other => note(
                &mut e,
                &a.loc,
                Severity::Dropped,
                format!("flags {other}: superd has no such behaviour"),
            ),
        }
    }
    if !has(&flags, "NOLIBWRAP") {
        note(
            &mut e,
            &b.loc,
            Severity::Approximated,
            "libwrap: xinetd (built with it, as Debian's is) also checked /etc/hosts.allow and /etc/hosts.deny; superd does not (use only_from / deny_from; flags = NOLIBWRAP says there is nothing to check)",
        );
    }

    // Dropped outright.
    for (attr, why) in [
        ("libwrap", "superd does not call libwrap"),
        (
            "access_times",
            "superd does not limit services to hours of the day",
        ),
        (
            "log_type",
            "superd logs every connection to its stderr (see superd(8), LOGS)",
        ),
        (
            "log_on_success",
            "superd logs every exit with pid, peer, status and duration",
        ),
        (
            "log_on_failure",
            "superd logs every refusal with peer and reason",
        ),
        ("banner", "superd does not write a banner to every client"),
        (
            "banner_success",
            "superd does not write a banner to admitted clients",
        ),
        (
            "max_load",
            "superd does not stop accepting at a load average",
        ),
        ("deny_time", "superd has no SENSOR, so nothing to time"),
        ("rpc_version", "superd serves no Sun RPC"),
        ("rpc_number", "superd serves no Sun RPC"),
    ] {
        let found = if SET_VALUED.contains(&attr) {
            view.set(attr)
                .and_then(|v| v.first().map(|(_, l)| l.clone()))
        } else {
            view.single(attr).map(|a| a.loc.clone())
        };
        if let Some(loc) = found {
            note(&mut e, &loc, Severity::Dropped, format!("{attr}: {why}"));
        }
    }
    if let Some(a) = view.single("mdns") {
        note(
            &mut e,
            &a.loc,
            Severity::Info,
            "mdns: registration exists only on macOS; nothing to carry over",
        );
    }

    // disable, and the defaults' enabled / disabled lists of ids.
    let id_or_name = id.as_deref().unwrap_or(&svc).to_owned();
    let off = view
        .own
        .iter()
        .rev()
        .find(|a| a.name == "disable")
        .is_some_and(|a| a.values.first().is_some_and(|v| v == "yes"))
        || has(&flags, "DISABLE")
        || defaults
            .iter()
            .any(|a| a.name == "disabled" && a.values.contains(&id_or_name))
        || (defaults.iter().any(|a| a.name == "enabled")
            && !defaults
                .iter()
                .any(|a| a.name == "enabled" && a.values.contains(&id_or_name)));
    if off {
        e.set("enabled", Value::Bool(false));
    }
    e
}
