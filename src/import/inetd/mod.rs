//! inetd.conf(5): one service a line, `service socket protocol wait user
//! program [argv0 args...]`, as OpenBSD inetd (Debian's openbsd-inetd),
//! netkit and GNU inetutils read it, with FreeBSD's `nowait/max/rate/per-ip`
//! understood too.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use super::{Entry, Env, Loc, ParseError, Severity, Value, service_name};
use crate::service::Builtin;

/// The builtins by their official names and ports (RFC 862, 863, 867, 864,
/// 868), which inetd serves as `internal`.
pub(super) const BUILTIN_PORTS: [(Builtin, u16); 5] = [
    (Builtin::Echo, 7),
    (Builtin::Discard, 9),
    (Builtin::Daytime, 13),
    (Builtin::Chargen, 19),
    (Builtin::Time, 37),
];

/// Where tcpd looks for a daemon named without a path (its
/// REAL_DAEMON_DIR, /usr/sbin on Debian).
const TCPD_DAEMON_DIR: &str = "/usr/sbin";

/// One logical line: the text and the line it starts on.
struct Line {
    number: usize,
    text: String,
    /// `#<off>#`: an entry update-inetd(8) disabled.
    disabled: bool,
}

/// Joins continuation lines (a trailing `\`, or a line starting with
/// blanks after an entry) and drops comments and blank lines.
fn logical_lines(text: &str) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    let mut joining = false;
    for (i, raw) in text.lines().enumerate() {
        let mut line = raw.trim_end().to_owned();
        let cont_next = line.ends_with('\\');
        if cont_next {
            line.pop();
        }
        let trimmed = line.trim_start();
        let continues = joining || (raw.starts_with([' ', '\t']) && !trimmed.is_empty());
        if continues && let Some(last) = out.last_mut() {
            if !trimmed.starts_with('#') {
                last.text.push(' ');
                last.text.push_str(trimmed);
            }
        } else if let Some(rest) = trimmed.strip_prefix("#<off>#") {
            out.push(Line {
                number: i + 1,
                text: rest.trim().to_owned(),
                disabled: true,
            });
        } else if !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push(Line {
                number: i + 1,
                text: trimmed.to_owned(),
                disabled: false,
            });
        }
        joining = cont_next;
    }
    out
}

/// Parses an inetd.conf. An entry superd cannot serve is kept as a dropped
/// entry (a comment in the output); a line that is not an entry at all is a
/// parse error.
pub fn parse(path: &Path, text: &str, env: &Env) -> Result<Vec<Entry>, Vec<ParseError>> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut default_hosts: Vec<String> = vec!["*".into()];
    for line in logical_lines(text) {
        let words: Vec<&str> = line.text.split_whitespace().collect();
        let loc = Loc {
            file: path.to_path_buf(),
            line: line.number,
        };
        // `host:` alone sets the hosts of the lines that follow.
        if words.len() == 1 && words[0].ends_with(':') && !line.disabled {
            default_hosts = split_hosts(&words[0][..words[0].len() - 1]);
            continue;
        }
        if words.len() < 6 {
            if line.disabled {
                continue; // a comment that happens to start with #<off>#
            }
            errors.push(ParseError {
                loc,
                message: format!(
                    "expected `service socket protocol wait user program [args]`, found {:?}",
                    line.text
                ),
            });
            continue;
        }
        entries.push(entry(
            &words,
            loc,
            line.text.clone(),
            line.disabled,
            &default_hosts,
            env,
        ));
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

fn split_hosts(s: &str) -> Vec<String> {
    s.split(',').map(str::to_owned).collect()
}

fn entry(
    w: &[&str],
    loc: Loc,
    source: String,
    disabled: bool,
    default_hosts: &[String],
    env: &Env,
) -> Entry {
    let n = loc.line;
    let (service_field, socket, proto_field, wait_field, user_field, program) =
        (w[0], w[1], w[2], w[3], w[4], w[5]);
    let args: Vec<&str> = w[6..].to_vec();
    let mut proto_opts = proto_field.split(',');
    let proto = proto_opts.next().unwrap_or("");
    let is_unix = proto == "unix";

    // `host:service`: the listen address(es); not for unix paths.
    let (hosts, svc) = match service_field.rsplit_once(':') {
        Some((h, s)) if !is_unix => (split_hosts(h), s),
        _ => (default_hosts.to_vec(), service_field),
    };
    let name = if is_unix {
        service_name(
            Path::new(svc)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .as_deref()
                .unwrap_or(svc),
        )
    } else {
        service_name(svc.split('/').next().unwrap_or(svc))
    };
    let mut e = Entry::new(&name, loc, source);

    if proto.starts_with("rpc/") || svc.contains('/') && !is_unix {
        e.drop_all(
            n,
            "an RPC service (rpc/…): superd serves no Sun RPC (no portmapper registration)",
        );
        return e;
    }
    for opt in proto_opts {
        e.note(
            n,
            Severity::Dropped,
            format!("{opt}: superd does not set listening socket buffer sizes"),
        );
    }

    // The socket type.
    let socket_type = match socket {
        "stream" | "dgram" | "seqpacket" => socket,
        other => {
            e.drop_all(
                n,
                format!("socket type {other}: superd serves stream, dgram and seqpacket"),
            );
            return e;
        }
    };
    if socket_type == "seqpacket" && !is_unix {
        e.drop_all(
            n,
            "seqpacket over IP (SCTP): superd serves seqpacket on unix sockets only",
        );
        return e;
    }
    let (family, l4) = match proto {
        "tcp" | "tcp46" => (Family::Both, "tcp"),
        "tcp4" => (Family::V4, "tcp"),
        "tcp6" => (Family::V6, "tcp"),
        "udp" | "udp46" => (Family::Both, "udp"),
        "udp4" => (Family::V4, "udp"),
        "udp6" => (Family::V6, "udp"),
        "unix" => (Family::Both, "unix"),
        other => {
            e.drop_all(
                n,
                format!("protocol {other}: superd serves tcp, udp and unix"),
            );
            return e;
        }
    };
    if (l4 == "tcp" && socket_type != "stream") || (l4 == "udp" && socket_type != "dgram") {
        e.drop_all(
            n,
            format!("{socket_type} over {proto}: superd runs TCP as stream and UDP as dgram"),
        );
        return e;
    }

    // Where it listens.
    let listen = if is_unix {
        if !svc.starts_with('/') {
            e.drop_all(
                n,
                format!("unix socket {svc:?}: superd needs an absolute path"),
            );
            return e;
        }
        vec![Value::str(svc)]
    } else {
        let port = match svc.parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                match env.services.port(svc, l4) {
                    Some(p) => p,
                    None => {
                        e.drop_all(
                        n,
                        format!("service {svc:?} is not in /etc/services for {l4}: no port to listen on"),
                    );
                        return e;
                    }
                }
            }
        };
        match listen_values(&hosts, family, port, &mut e) {
            Some(v) => v,
            None => return e,
        }
    };
    e.set(
        "listen",
        if listen.len() == 1 {
            listen[0].clone()
        } else {
            Value::List(listen)
        },
    );
    if socket_type != "stream" {
        e.set("socket", Value::str(socket_type));
    }
    if family == Family::V6 && hosts.iter().all(|h| h == "*") && !is_unix {
        e.set("v6only", Value::Bool(true));
    }

    // The program: a builtin, or exec with its own argv[0].
    let builtin = program == "internal";
    if builtin {
        let port = e.get("listen").and_then(listen_port);
        let b = super::inetd::BUILTIN_PORTS
            .iter()
            .find(|(b, p)| b.as_str() == svc || Some(*p) == port)
            .map(|(b, _)| *b);
        match b {
            Some(b) if !is_unix => e.set("builtin", Value::str(b.as_str())),
            _ => {
                e.drop_all(
                    n,
                    format!("internal service {svc:?}: superd's builtins are echo, discard, daytime, chargen and time, over TCP and UDP"),
                );
                return e;
            }
        }
    } else {
        exec(&mut e, program, &args);
    }

    wait(&mut e, wait_field, socket_type, builtin);

    if !builtin {
        // `user.group` or `user:group`.
        let (user, group) = match user_field.split_once([':', '.']) {
            Some((u, g)) => (u, Some(g)),
            None => (user_field, None),
        };
        e.set("user", Value::str(user));
        if let Some(g) = group {
            e.set("group", Value::str(g));
        }
    }
    if disabled {
        e.set("enabled", Value::Bool(false));
        e.note(
            n,
            Severity::Info,
            "disabled by update-inetd (#<off>#): imported with enabled: false",
        );
    }
    e
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Both,
    V4,
    V6,
}

fn listen_port(v: &Value) -> Option<u16> {
    match v {
        Value::Int(p) => u16::try_from(*p).ok(),
        Value::Str(s) => s.rsplit(':').next()?.parse().ok(),
        Value::List(l) => l.first().and_then(listen_port),
        Value::Bool(_) | Value::Map(_) => None,
    }
}

/// The `listen:` values for inetd's hosts on `port`; `None` (and the entry
/// dropped) for a host name, which superd would have to resolve.
fn listen_values(hosts: &[String], family: Family, port: u16, e: &mut Entry) -> Option<Vec<Value>> {
    let n = e.loc.line;
    let mut out = Vec::new();
    for h in hosts {
        let h = h.as_str();
        if h == "*" || h.is_empty() {
            out.push(match family {
                Family::Both => Value::Int(i64::from(port)),
                Family::V4 => Value::Str(format!("0.0.0.0:{port}")),
                Family::V6 => Value::Str(format!("[::]:{port}")),
            });
            continue;
        }
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => out.push(Value::Str(format!("{ip}:{port}"))),
            Ok(IpAddr::V6(ip)) => out.push(Value::Str(format!("[{ip}]:{port}"))),
            Err(_) if bare == "localhost" => {
                if family != Family::V6 {
                    out.push(Value::Str(format!("127.0.0.1:{port}")));
                }
                if family != Family::V4 {
                    out.push(Value::Str(format!("[{}]:{port}", Ipv6Addr::LOCALHOST)));
                }
                e.note(n, Severity::Info, "localhost: written as 127.0.0.1 and ::1");
            }
            Err(_) => {
                e.drop_all(
                    n,
                    format!("listen host {h:?} is a name: superd listens on addresses (write the address it resolves to)"),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// `program argv0 args...`, and the tcpd idiom: tcpd runs the program it
/// is named after (`argv[0]`), here run directly.
fn exec(e: &mut Entry, program: &str, args: &[&str]) {
    let n = e.loc.line;
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    let wrapped = base(program) == "tcpd" && !args.is_empty();
    let (path, argv0, rest): (String, Option<&str>, &[&str]) = if wrapped
        && let Some((first, rest)) = args.split_first()
    {
        let real = if first.starts_with('/') {
            (*first).to_owned()
        } else {
            format!("{TCPD_DAEMON_DIR}/{first}")
        };
        e.note(
            n,
            Severity::Approximated,
            format!(
                "{program} {first}: runs {real} directly; tcpd's /etc/hosts.allow and /etc/hosts.deny are not applied (write only_from / deny_from)"
            ),
        );
        (real, Some(*first), rest)
    } else {
        match args.split_first() {
            Some((first, rest)) => (program.to_owned(), Some(*first), rest),
            None => (program.to_owned(), None, &[][..]),
        }
    };
    let mut argv = vec![Value::str(path.clone())];
    argv.extend(rest.iter().map(|a| Value::str(*a)));
    e.set("exec", Value::List(argv));
    // inetd's argv[0] where it is more than the program's own name (the
    // default, the path, differs from it only in the directory); behind
    // tcpd, as written, since tcpd passes it on unchanged.
    if let Some(a0) = argv0
        && a0 != path
        && (wrapped || a0 != base(&path))
    {
        e.set("argv0", Value::str(a0));
    }
}

/// `wait` / `nowait`, with inetd's `.max` (starts a minute) and FreeBSD's
/// `/max-child/per-ip-a-minute/max-per-ip`.
fn wait(e: &mut Entry, field: &str, socket: &str, builtin: bool) {
    let n = e.loc.line;
    let (base, rest) = match field.find(['.', '/', ':']) {
        Some(i) => (&field[..i], Some((field.as_bytes()[i], &field[i + 1..]))),
        None => (field, None),
    };
    let wait = match base {
        "wait" => true,
        "nowait" => false,
        other => {
            e.note(
                n,
                Severity::Dropped,
                format!("{other:?} is neither wait nor nowait: superd's default applies"),
            );
            socket == "dgram"
        }
    };
    if !builtin {
        if socket == "dgram" && !wait {
            e.set("wait", Value::Bool(true));
            e.note(
                n,
                Severity::Approximated,
                "dgram nowait: superd hands a datagram socket to one child at a time (wait: true); inetd started one per datagram",
            );
        } else if wait && socket != "dgram" {
            e.set("wait", Value::Bool(true));
        }
    }
    let Some((sep, nums)) = rest else {
        return;
    };
    let parts: Vec<&str> = nums.split(sep as char).collect();
    let num = |s: &str| {
        s.parse::<u32>()
            .ok()
            .filter(|&v| v > 0 && v < i32::MAX as u32)
    };
    if sep == b'/' {
        // FreeBSD: max-child, then connections a minute per IP, then children per IP.
        if let Some(c) = parts.first().and_then(|s| num(s)) {
            e.set("max_connections", Value::Int(i64::from(c)));
        }
        if let Some(r) = parts.get(1).filter(|s| **s != "0") {
            e.note(
                n,
                Severity::Dropped,
                format!("{r} connections a minute per IP: superd limits concurrent connections per IP (max_per_source), not their rate"),
            );
        }
        if let Some(p) = parts.get(2).and_then(|s| num(s)) {
            e.set("max_per_source", Value::Int(i64::from(p)));
        }
        return;
    }
    match parts.first().and_then(|s| num(s)) {
        Some(max) => {
            e.set("rate", Value::Str(format!("{max}/m")));
            e.note(
                n,
                Severity::Approximated,
                format!("{field}: inetd stops a service started more than {max} times a minute for ten minutes; rate: {max}/m here makes connections wait for a token instead"),
            );
        }
        None => e.note(
            n,
            Severity::Dropped,
            format!("{field}: {:?} is not a count of starts a minute", parts[0]),
        ),
    }
    for extra in parts.iter().skip(1) {
        e.note(
            n,
            Severity::Dropped,
            format!("{field}: .{extra}: inetd.conf(5) defines one number after wait/nowait"),
        );
    }
}
#[cfg(test)]
mod tests;
