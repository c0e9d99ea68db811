//! xinetd.conf(5): `defaults` and `service NAME { attr = values }` blocks,
//! `include` and `includedir`, every attribute mapped to a superd field,
//! approximated with a note, or reported dropped.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::inetd::BUILTIN_PORTS;
use super::{Entry, Env, Loc, Note, ParseError, Severity, SourceFile, Value, service_name};

/// How deep includes may nest (a loop of includes ends here).
const MAX_INCLUDE_DEPTH: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Set,
    Add,
    Remove,
}

#[derive(Clone, Debug)]
struct Attr {
    name: String,
    op: Op,
    values: Vec<String>,
    loc: Loc,
}

#[derive(Clone, Debug)]
struct Block {
    /// `None` for `defaults`.
    service: Option<String>,
    loc: Loc,
    attrs: Vec<Attr>,
}

/// Reads `path` (a file, or a directory of service files) and everything
/// it includes; returns the services of each file read, in order.
pub fn import(path: &Path, env: &Env) -> Result<Vec<SourceFile>, Vec<ParseError>> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut order: Vec<PathBuf> = Vec::new();
    let mut errors = Vec::new();
    match (env.list)(path) {
        Ok(names) => read_dir(path, names, env, 0, &mut blocks, &mut order, &mut errors),
        Err(_) => read_file(path, env, 0, &mut blocks, &mut order, &mut errors),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let defaults: Vec<&Attr> = blocks
        .iter()
        .filter(|b| b.service.is_none())
        .flat_map(|b| &b.attrs)
        .collect();
    let mut files: Vec<SourceFile> = order
        .into_iter()
        .map(|p| SourceFile {
            path: p,
            entries: Vec::new(),
        })
        .collect();
    for b in blocks.iter().filter(|b| b.service.is_some()) {
        let e = translate(b, &defaults, env);
        if let Some(f) = files.iter_mut().find(|f| f.path == b.loc.file) {
            f.entries.push(e);
        }
    }
    Ok(files)
}

/// The files of an includedir: names without a dot and not ending in `~`,
/// in byte order (xinetd.conf(5), includedir).
fn read_dir(
    dir: &Path,
    mut names: Vec<String>,
    env: &Env,
    depth: usize,
    blocks: &mut Vec<Block>,
    order: &mut Vec<PathBuf>,
    errors: &mut Vec<ParseError>,
) {
    names.retain(|n| !n.contains('.') && !n.ends_with('~'));
    names.sort();
    for n in names {
        read_file(&dir.join(n), env, depth, blocks, order, errors);
    }
}

fn read_file(
    path: &Path,
    env: &Env,
    depth: usize,
    blocks: &mut Vec<Block>,
    order: &mut Vec<PathBuf>,
    errors: &mut Vec<ParseError>,
) {
    let at = |line: usize, message: String| ParseError {
        loc: Loc {
            file: path.to_path_buf(),
            line,
        },
        message,
    };
    if depth > MAX_INCLUDE_DEPTH {
        errors.push(at(0, "includes nested too deep (a loop?)".into()));
        return;
    }
    let text = match (env.read)(path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => {
            errors.push(at(0, format!("cannot read: {e}")));
            return;
        }
    };
    if !order.iter().any(|p| p == path) {
        order.push(path.to_path_buf());
    }
    let mut current: Option<Block> = None;
    // A `service NAME` or `defaults` line whose `{` is still to come.
    let mut pending: Option<Block> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let loc = Loc {
            file: path.to_path_buf(),
            line: n,
        };
        if let Some(b) = current.as_mut() {
            if line == "}" {
                blocks.push(current.take().expect("in a block"));
                continue;
            }
            match attribute(line, loc) {
                Ok(a) => b.attrs.push(a),
                Err(m) => errors.push(at(n, m)),
            }
            continue;
        }
        if line == "{" {
            match pending.take() {
                Some(b) => current = Some(b),
                None => errors.push(at(
                    n,
                    "`{` without `service NAME` or `defaults` before it".into(),
                )),
            }
            continue;
        }
        if pending.is_some() {
            errors.push(at(n, "expected `{`".into()));
            pending = None;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let opens = words.last() == Some(&"{");
        let head: &[&str] = if opens {
            &words[..words.len() - 1]
        } else {
            &words
        };
        let block = match head {
            ["service", name] => Some(Block {
                service: Some((*name).to_owned()),
                loc,
                attrs: Vec::new(),
            }),
            ["defaults"] => Some(Block {
                service: None,
                loc,
                attrs: Vec::new(),
            }),
            ["include", file] if !opens => {
                read_file(Path::new(file), env, depth + 1, blocks, order, errors);
                None
            }
            ["includedir", dir] if !opens => {
                match (env.list)(Path::new(dir)) {
                    Ok(names) => {
                        read_dir(Path::new(dir), names, env, depth + 1, blocks, order, errors)
                    }
                    Err(e) => errors.push(at(n, format!("includedir {dir}: {e}"))),
                }
                None
            }
            _ => {
                errors.push(at(n, format!("expected `service NAME`, `defaults`, `include FILE` or `includedir DIR`, found {line:?}")));
                None
            }
        };
        if let Some(b) = block {
            if opens {
                current = Some(b);
            } else {
                pending = Some(b);
            }
        }
    }
    if let Some(b) = current.or(pending) {
        errors.push(ParseError {
            loc: b.loc,
            message: "block not closed with `}`".into(),
        });
    }
}

/// `name op values...`.
fn attribute(line: &str, loc: Loc) -> Result<Attr, String> {
    let (name, rest, op) = if let Some(i) = line.find("+=") {
        (&line[..i], &line[i + 2..], Op::Add)
    } else if let Some(i) = line.find("-=") {
        (&line[..i], &line[i + 2..], Op::Remove)
    } else if let Some(i) = line.find('=') {
        (&line[..i], &line[i + 1..], Op::Set)
    } else {
        return Err(format!("expected `attribute = value`, found {line:?}"));
    };
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("expected `attribute = value`, found {line:?}"));
    }
    Ok(Attr {
        name: name.to_owned(),
        op,
        values: rest.split_whitespace().map(str::to_owned).collect(),
        loc,
    })
}

/// Attributes whose value is a set: `+=` and `-=` work on them, and in
/// `defaults` they accumulate (xinetd.conf(5)).
const SET_VALUED: [&str; 6] = [
    "only_from",
    "no_access",
    "log_on_success",
    "log_on_failure",
    "passenv",
    "env",
];

/// A service's view of its attributes, `defaults` folded in.
struct View<'a> {
    own: &'a [Attr],
    defaults: &'a [&'a Attr],
}

impl<'a> View<'a> {
    /// The last `=` of a single-valued attribute: the service's, else the
    /// default's.
    fn single(&self, name: &str) -> Option<&'a Attr> {
        self.own
            .iter()
            .rev()
            .find(|a| a.name == name)
            .or_else(|| self.defaults.iter().rev().find(|a| a.name == name).copied())
    }

    /// A set-valued attribute: the values with the location of each, or
    /// `None` when neither the service nor `defaults` names it.
    fn set(&self, name: &str) -> Option<Vec<(String, Loc)>> {
        let mut out: Option<Vec<(String, Loc)>> = None;
        for a in self.defaults.iter().filter(|a| a.name == name) {
            let v = out.get_or_insert_with(Vec::new);
            apply(v, a, true);
        }
        let mut replaced = false;
        for a in self.own.iter().filter(|a| a.name == name) {
            let v = out.get_or_insert_with(Vec::new);
            if a.op == Op::Set && !replaced {
                v.clear();
                replaced = true;
            }
            apply(v, a, false);
        }
        out
    }
}

fn apply(v: &mut Vec<(String, Loc)>, a: &Attr, in_defaults: bool) {
    match a.op {
        Op::Remove => v.retain(|(x, _)| !a.values.contains(x)),
        Op::Set if !in_defaults => {
            v.extend(a.values.iter().map(|x| (x.clone(), a.loc.clone())));
        }
        _ => v.extend(a.values.iter().map(|x| (x.clone(), a.loc.clone()))),
    }
}

/// Every attribute xinetd.conf(5) describes. Anything else is reported.
const KNOWN: [&str; 46] = [
    "id",
    "type",
    "flags",
    "disable",
    "socket_type",
    "protocol",
    "wait",
    "user",
    "group",
    "instances",
    "nice",
    "server",
    "server_args",
    "libwrap",
    "only_from",
    "no_access",
    "access_times",
    "log_type",
    "log_on_success",
    "log_on_failure",
    "rpc_version",
    "rpc_number",
    "env",
    "passenv",
    "port",
    "redirect",
    "bind",
    "interface",
    "banner",
    "banner_success",
    "banner_fail",
    "per_source",
    "cps",
    "max_load",
    "groups",
    "mdns",
    "umask",
    "enabled",
    "disabled",
    "rlimit_as",
    "rlimit_files",
    "rlimit_cpu",
    "rlimit_data",
    "rlimit_rss",
    "rlimit_stack",
    "deny_time",
];

fn note(e: &mut Entry, loc: &Loc, severity: Severity, text: impl Into<String>) {
    e.notes.push(Note {
        loc: loc.clone(),
        severity,
        text: text.into(),
    });
}

fn translate(b: &Block, defaults: &[&Attr], env: &Env) -> Entry {
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

fn count(v: &str) -> Option<i64> {
    v.parse::<i64>()
        .ok()
        .filter(|&n| (1..=i64::from(i32::MAX)).contains(&n))
}

fn limits(e: &mut Entry, view: &View) {
    if let Some(a) = view.single("instances")
        && let Some(v) = a.values.first()
    {
        match count(v) {
            Some(c) => e.set("max_connections", Value::Int(c)),
            None if v.eq_ignore_ascii_case("UNLIMITED") => note(
                e,
                &a.loc,
                Severity::Approximated,
                "instances = UNLIMITED: superd has a limit; its default max_connections of 256 applies",
            ),
            None => note(
                e,
                &a.loc,
                Severity::Dropped,
                format!("instances = {v}: not a count"),
            ),
        }
    }
    if let Some(a) = view.single("per_source")
        && let Some(v) = a.values.first()
    {
        match count(v) {
            Some(c) => e.set("max_per_source", Value::Int(c)),
            None if v.eq_ignore_ascii_case("UNLIMITED") => {}
            None => note(
                e,
                &a.loc,
                Severity::Dropped,
                format!("per_source = {v}: not a count"),
            ),
        }
    }
    if let Some(a) = view.single("cps")
        && let Some(v) = a.values.first()
    {
        match count(v) {
            Some(c) => {
                e.set("rate", Value::Str(format!("{c}/s")));
                let pause = a.values.get(1).map_or("10".to_owned(), Clone::clone);
                note(
                    e,
                    &a.loc,
                    Severity::Approximated,
                    format!(
                        "cps = {}: xinetd disables the service for {pause} s past {c} connections a second; rate: {c}/s here delays new connections instead (they wait in the backlog)",
                        a.values.join(" ")
                    ),
                );
            }
            None => note(
                e,
                &a.loc,
                Severity::Dropped,
                format!("cps = {v}: not a count"),
            ),
        }
    }
}

/// xinetd's address forms to CIDR networks: trailing-zero shorthand,
/// factorized `a.b.{c,d}`, `a/n`. Names cannot be carried over.
fn networks(value: &str) -> Result<Vec<String>, String> {
    if let Some((head, tail)) = value.split_once('{') {
        let tail = tail.strip_suffix('}').ok_or("an unclosed {")?;
        let head = head.trim_end_matches('.');
        let mut out = Vec::new();
        for part in tail.split(',') {
            out.extend(networks(&format!("{head}.{}", part.trim()))?);
        }
        return Ok(out);
    }
    if let Some((ip, p)) = value.split_once('/') {
        let ip = ip
            .parse::<IpAddr>()
            .map_err(|_| "not an address".to_owned())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("/{p} is not a prefix length of 0 to {max}")),
        }
        return Ok(vec![value.to_owned()]);
    }
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(vec![match ip {
            IpAddr::V4(v4) => {
                let zeros = v4.octets().iter().rev().take_while(|&&o| o == 0).count();
                format!("{v4}/{}", 32 - 8 * zeros)
            }
            IpAddr::V6(v6) => format!("{v6}/128"),
        }]);
    }
    // `a.b.c` without braces: the octets given, as a network.
    let parts: Vec<&str> = value.split('.').collect();
    if (1..4).contains(&parts.len()) && parts.iter().all(|p| p.parse::<u8>().is_ok()) {
        let mut o = [0u8; 4];
        for (i, p) in parts.iter().enumerate() {
            o[i] = p.parse().expect("checked");
        }
        return Ok(vec![format!("{}/{}", Ipv4Addr::from(o), 8 * parts.len())]);
    }
    Err("a host or network name: superd matches addresses only".into())
}

fn parse_net(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, p) = s.split_once('/')?;
    Some((ip.parse().ok()?, p.parse().ok()?))
}

/// Whether network `outer` contains network `inner`.
fn contains(outer: (IpAddr, u8), inner: (IpAddr, u8)) -> bool {
    match (outer.0, inner.0) {
        (IpAddr::V4(o), IpAddr::V4(i)) if outer.1 <= inner.1 && outer.1 <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(outer.1)).unwrap_or(0);
            u32::from(o) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(o), IpAddr::V6(i)) if outer.1 <= inner.1 && outer.1 <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(outer.1)).unwrap_or(0);
            u128::from(o) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

fn access(e: &mut Entry, view: &View) {
    let mut lists: [(Vec<String>, bool); 2] = [(Vec::new(), false), (Vec::new(), false)];
    for (i, (attr, field)) in [("only_from", "only_from"), ("no_access", "deny_from")]
        .into_iter()
        .enumerate()
    {
        let Some(values) = view.set(attr) else {
            continue;
        };
        lists[i].1 = true;
        for (v, loc) in values {
            match networks(&v) {
                Ok(nets) => {
                    let shorthand = !v.contains('/')
                        && nets
                            .iter()
                            .any(|n| !n.ends_with("/32") && !n.ends_with("/128"));
                    if shorthand {
                        note(
                            e,
                            &loc,
                            Severity::Info,
                            format!("{attr} {v}: xinetd's shorthand for {}", nets.join(", ")),
                        );
                    }
                    lists[i].0.extend(nets);
                }
                Err(why) => {
                    note(
                        e,
                        &loc,
                        Severity::Dropped,
                        format!(
                            "{attr} {v}: {why}{}",
                            if attr == "only_from" {
                                " (left out: fewer clients are allowed)"
                            } else {
                                " (left out: these clients are no longer refused)"
                            }
                        ),
                    );
                }
            }
        }
        let list = Value::List(lists[i].0.iter().map(|s| Value::str(s.as_str())).collect());
        e.set(field, list);
    }
    // xinetd lets the better (longer) match of only_from and no_access
    // decide; superd's deny_from always wins. They differ for an only_from
    // network inside a wider no_access one.
    let (allow, deny) = (&lists[0].0, &lists[1].0);
    for a in allow {
        for d in deny {
            if let (Some(an), Some(dn)) = (parse_net(a), parse_net(d))
                && an.1 > dn.1
                && contains(dn, an)
            {
                let loc = view
                    .set("no_access")
                    .and_then(|v| v.first().map(|(_, l)| l.clone()))
                    .unwrap_or_else(|| e.loc.clone());
                note(
                    e,
                    &loc,
                    Severity::Approximated,
                    format!(
                        "only_from {a} lies inside no_access {d}: xinetd admits {a} (the better match), superd refuses it (deny_from wins)"
                    ),
                );
            }
        }
    }
}

fn environment(e: &mut Entry, view: &View, internal: bool) {
    if let Some(values) = view.set("env") {
        let mut map: Vec<(String, Value)> = Vec::new();
        for (v, loc) in values {
            match v.split_once('=') {
                Some((k, val))
                    if !k.is_empty()
                        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && !k.starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    map.retain(|(x, _)| x != k);
                    map.push((k.to_owned(), Value::str(val)));
                }
                _ => note(
                    e,
                    &loc,
                    Severity::Dropped,
                    format!("env {v}: not NAME=value"),
                ),
            }
        }
        if !internal && !map.is_empty() {
            e.set("env", Value::Map(map));
        }
    }
    if let Some(values) = view.set("passenv") {
        let mut names = Vec::new();
        for (v, loc) in values {
            if crate::plan::is_connection_variable(&v) {
                note(
                    e,
                    &loc,
                    Severity::Dropped,
                    format!(
                        "passenv {v}: superd sets it for each connection and never passes its own"
                    ),
                );
            } else if !v.is_empty()
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !v.starts_with(|c: char| c.is_ascii_digit())
            {
                names.push(Value::Str(v));
            } else {
                note(
                    e,
                    &loc,
                    Severity::Dropped,
                    format!("passenv {v}: not a variable name"),
                );
            }
        }
        if !internal && !names.is_empty() {
            e.set("pass_env", Value::List(names));
        }
    }
}

fn process(e: &mut Entry, view: &View, internal: bool) {
    if internal {
        return;
    }
    if let Some(a) = view.single("umask")
        && let Some(v) = a.values.first()
    {
        match u32::from_str_radix(v, 8) {
            Ok(m) if m <= 0o777 => e.set("umask", Value::Str(format!("{m:03o}"))),
            _ => note(
                e,
                &a.loc,
                Severity::Dropped,
                format!("umask {v}: not an octal mode"),
            ),
        }
    }
    if let Some(a) = view.single("nice")
        && let Some(v) = a.values.first()
    {
        match v.parse::<i64>() {
            Ok(n) if (-20..=19).contains(&n) => e.set("nice", Value::Int(n)),
            Ok(n) => {
                let c = n.clamp(-20, 19);
                e.set("nice", Value::Int(c));
                note(
                    e,
                    &a.loc,
                    Severity::Approximated,
                    format!("nice {n}: the kernel's range is -20..19; {c} here"),
                );
            }
            Err(_) => note(
                e,
                &a.loc,
                Severity::Dropped,
                format!("nice {v}: not a number"),
            ),
        }
    }
    let mut rl: Vec<(String, Value)> = Vec::new();
    for (attr, res) in [
        ("rlimit_as", "as"),
        ("rlimit_files", "nofile"),
        ("rlimit_cpu", "cpu"),
        ("rlimit_data", "data"),
        ("rlimit_stack", "stack"),
        ("rlimit_rss", ""),
    ] {
        let Some(a) = view.single(attr) else { continue };
        let Some(v) = a.values.first() else { continue };
        if res.is_empty() {
            note(
                e,
                &a.loc,
                Severity::Dropped,
                "rlimit_rss: Linux does not enforce RLIMIT_RSS",
            );
            continue;
        }
        let value = if v.eq_ignore_ascii_case("UNLIMITED") {
            Some(Value::str("unlimited"))
        } else if let Ok(n) = v.parse::<i64>() {
            Some(Value::Int(n))
        } else if crate::config::parse_size(v).is_some() {
            Some(Value::Str(v.to_ascii_uppercase()))
        } else {
            None
        };
        match value {
            Some(v) => rl.push((res.to_owned(), v)),
            None => note(
                e,
                &a.loc,
                Severity::Dropped,
                format!("{attr} {v}: not a size"),
            ),
        }
    }
    if !rl.is_empty() {
        e.set("rlimits", Value::Map(rl));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testenv::{SERVICES, with_files};
    use super::*;
    use crate::services::Services;
    use std::collections::HashMap;

    fn run(files: &[(&str, &str)], root: &str) -> Result<Vec<SourceFile>, Vec<ParseError>> {
        let s = Services::parse(SERVICES);
        let map: HashMap<PathBuf, Vec<u8>> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.as_bytes().to_vec()))
            .collect();
        let mut out = None;
        with_files(&s, map, |env| {
            out = Some(super::super::import(
                super::super::Kind::Xinetd,
                Path::new(root),
                env,
            ))
        });
        out.unwrap()
    }

    fn entries(files: &[SourceFile]) -> Vec<&Entry> {
        files.iter().flat_map(|f| &f.entries).collect()
    }

    fn list(v: &[&str]) -> Value {
        Value::List(v.iter().map(|s| Value::str(*s)).collect())
    }

    #[test]
    fn defaults_includedir_ids_and_internal_services() {
        let files = run(
            &[
                ("/x/xinetd.conf", "defaults\n{\n  instances = 10\n  only_from = 10.0.0.0\n  only_from = 128.138.0.0\n}\nincludedir /x/d\n"),
                ("/x/d/echo", "service echo\n{\n  disable = yes\n  type = INTERNAL\n  id = echo-stream\n  socket_type = stream\n  protocol = tcp\n  user = root\n  wait = no\n}\n\
                  service echo\n{\n  type = INTERNAL\n  id = echo-dgram\n  socket_type = dgram\n  wait = yes\n  flags = NOLIBWRAP\n}\n"),
                ("/x/d/echo-udp", "service echo\n{\n  type = INTERNAL UNLISTED\n  id = echo-dgram\n  socket_type = dgram\n  port = 7\n  wait = yes\n}\n"),
                ("/x/d/skip.rpmsave", "garbage"),
            ],
            "/x/xinetd.conf",
        )
        .expect("parses");
        assert_eq!(files.len(), 3);
        let v = entries(&files);
        assert_eq!(v[0].name, "echo-stream");
        assert_eq!(v[0].get("builtin"), Some(&Value::str("echo")));
        assert_eq!(v[0].get("listen"), Some(&Value::str("0.0.0.0:7")));
        assert_eq!(v[0].get("enabled"), Some(&Value::Bool(false)));
        assert_eq!(v[0].get("user"), None);
        assert_eq!(v[0].get("max_connections"), Some(&Value::Int(10)));
        assert_eq!(
            v[0].get("only_from"),
            Some(&list(&["10.0.0.0/8", "128.138.0.0/16"]))
        );
        assert_eq!(v[1].name, "echo-dgram");
        assert_eq!(v[1].get("socket"), Some(&Value::str("dgram")));
        assert_eq!(v[1].get("enabled"), None);
        assert!(
            v[1].notes.iter().all(|n| n.severity == Severity::Info),
            "{:?}",
            v[1].notes
        );
        assert_eq!(v[2].name, "echo-dgram-2");
        // The defaults' attributes are noted where they are written.
        assert!(
            v[0].notes
                .iter()
                .any(|n| n.loc.file == Path::new("/x/xinetd.conf") && n.loc.line == 4)
        );
    }

    #[test]
    fn nameinargs_tcpd_and_the_exec_attributes() {
        let files = run(
            &[("/x/finger", "service finger\n{\n  socket_type = stream\n  wait = no\n  user = nobody\n  group = nogroup\n  server = /usr/sbin/tcpd\n  server_args = /usr/sbin/in.fingerd -w\n  flags = NAMEINARGS NOLIBWRAP KEEPALIVE\n  passenv = LANG TCPREMOTEIP\n  env = TZ=UTC LC_ALL=C\n  env += A=b\n  umask = 27\n  nice = 5\n  rlimit_as = 8M\n  rlimit_files = 64\n  rlimit_cpu = UNLIMITED\n  per_source = 3\n  bind = 127.0.0.1\n  groups = no\n}\n")],
            "/x/finger",
        )
        .expect("parses");
        let e = entries(&files)[0];
        assert_eq!(e.get("exec"), Some(&list(&["/usr/sbin/tcpd", "-w"])));
        assert_eq!(e.get("argv0"), Some(&Value::str("/usr/sbin/in.fingerd")));
        assert_eq!(e.get("listen"), Some(&Value::str("127.0.0.1:79")));
        assert_eq!(e.get("user"), Some(&Value::str("nobody")));
        assert_eq!(e.get("group"), Some(&Value::str("nogroup")));
        assert_eq!(e.get("groups"), Some(&Value::List(vec![])));
        assert_eq!(e.get("keepalive"), Some(&Value::Bool(true)));
        assert_eq!(e.get("pass_env"), Some(&list(&["LANG"])));
        assert_eq!(
            e.get("env"),
            Some(&Value::Map(vec![
                ("TZ".into(), Value::str("UTC")),
                ("LC_ALL".into(), Value::str("C")),
                ("A".into(), Value::str("b")),
            ]))
        );
        assert_eq!(e.get("umask"), Some(&Value::str("027")));
        assert_eq!(e.get("nice"), Some(&Value::Int(5)));
        assert_eq!(e.get("max_per_source"), Some(&Value::Int(3)));
        assert_eq!(
            e.get("rlimits"),
            Some(&Value::Map(vec![
                ("as".into(), Value::str("8M")),
                ("nofile".into(), Value::Int(64)),
                ("cpu".into(), Value::str("unlimited")),
            ]))
        );
        // Only the connection variable was dropped.
        let loud: Vec<&Note> = e
            .notes
            .iter()
            .filter(|n| n.severity != Severity::Info)
            .collect();
        assert_eq!(loud.len(), 1, "{loud:?}");
        assert_eq!(loud[0].loc.line, 10);
    }

    #[test]
    fn approximations_and_drops_are_noted_with_their_lines() {
        let files = run(
            &[
                ("/x/ftp", "service ftp\n{\n  socket_type = stream\n  wait = no\n  user = root\n  server = /usr/sbin/in.ftpd\n  cps = 25 30\n  instances = UNLIMITED\n  log_on_success += DURATION HOST\n  access_times = 2:00-9:00\n  banner_fail = /x/deny.txt\n  only_from = 10.1.0.0/16 .example.com\n  no_access = 10.0.0.0\n  flags = IDONLY\n}\n"),
                ("/x/deny.txt", "421 Service not available.\r\n"),
                ("/x/rstatd", "service rstatd\n{\n  type = RPC\n  socket_type = dgram\n  server = /usr/sbin/rpc.rstatd\n  wait = yes\n  user = root\n}\nservice fwd\n{\n  socket_type = stream\n  port = 8080\n  redirect = 10.0.0.1 80\n}\n"),
            ],
            "/x",
        )
        .expect("parses");
        let v = entries(&files);
        let ftp = v.iter().find(|e| e.name == "ftp").unwrap();
        assert_eq!(ftp.get("rate"), Some(&Value::str("25/s")));
        assert_eq!(
            ftp.get("refuse_message"),
            Some(&Value::str("421 Service not available.\r\n"))
        );
        assert_eq!(ftp.get("only_from"), Some(&list(&["10.1.0.0/16"])));
        assert_eq!(ftp.get("deny_from"), Some(&list(&["10.0.0.0/8"])));
        let lines = |sev: Severity| -> Vec<usize> {
            ftp.notes
                .iter()
                .filter(|n| n.severity == sev)
                .map(|n| n.loc.line)
                .collect()
        };
        let approx = lines(Severity::Approximated);
        let dropped = lines(Severity::Dropped);
        assert!(
            approx.contains(&7)
                && approx.contains(&8)
                && approx.contains(&13)
                && approx.contains(&1),
            "{approx:?}"
        );
        assert!(
            dropped.contains(&9)
                && dropped.contains(&10)
                && dropped.contains(&12)
                && dropped.contains(&14),
            "{dropped:?}"
        );
        assert!(v.iter().find(|e| e.name == "rstatd").unwrap().dropped);
        assert!(v.iter().find(|e| e.name == "fwd").unwrap().dropped);
    }

    #[test]
    fn network_forms() {
        assert_eq!(networks("10.0.0.0"), Ok(vec!["10.0.0.0/8".into()]));
        assert_eq!(networks("0.0.0.0"), Ok(vec!["0.0.0.0/0".into()]));
        assert_eq!(networks("128.138.12.0"), Ok(vec!["128.138.12.0/24".into()]));
        assert_eq!(networks("192.0.2.7"), Ok(vec!["192.0.2.7/32".into()]));
        assert_eq!(
            networks("128.138.{12,13}"),
            Ok(vec!["128.138.12.0/24".into(), "128.138.13.0/24".into()])
        );
        assert_eq!(
            networks("10.1.2.{3,4}"),
            Ok(vec!["10.1.2.3/32".into(), "10.1.2.4/32".into()])
        );
        assert_eq!(networks("2001:db8::/32"), Ok(vec!["2001:db8::/32".into()]));
        assert!(networks("host.example.com").is_err());
        assert!(networks("10.0.0.0/33").is_err());
        assert!(networks("::/129").is_err());
        assert!(networks("10.0.0.0/+8").is_err());
    }

    #[test]
    fn broken_sources_are_parse_errors() {
        for (text, line) in [
            ("service x\n{\n  socket_type stream\n}\n", 3),
            ("service x\n{\n  socket_type = stream\n", 1),
            ("bogus line\n", 1),
        ] {
            let err = run(&[("/x/c", text)], "/x/c").unwrap_err();
            assert_eq!(err[0].loc.line, line, "{text:?}: {err:?}");
        }
    }
}
