//! The fields checked on their own or merged from defaults key by key:
//! `env`, `rlimits`, `pass_env`, `refuse_message`, and the notes `--check`
//! shows besides the fields.

use super::*;

/// `env:` of defaults and of the service, merged key by key (a service
/// adding one variable keeps the others from defaults).
pub(super) fn merged_env(
    name: &str,
    l: Layers,
    pass: crate::service::PassMode,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, String)> {
    let Layers { raw, own, defaults } = l;
    // env and rlimits merge key by key: a service adding one variable keeps
    // the others from defaults.
    let mut env: Vec<(String, String)> = Vec::new();
    for e in [defaults.and_then(|(d, _)| d.env.as_ref()), raw.env.as_ref()]
        .into_iter()
        .flatten()
    {
        for (k, v) in &e.0 {
            if v.contains('\0') {
                continue; // refused by the visitor already
            }
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
    }
    // The socket activation variables are superd's to write (the child's
    // own pid, its sockets' names): `env:` cannot set them there.
    if pass == crate::service::PassMode::ListenFds {
        for (e, o) in [
            (defaults.and_then(|(d, o)| Some((d.env.as_ref()?, o)))),
            raw.env.as_ref().map(|e| (e, own)),
        ]
        .into_iter()
        .flatten()
        {
            for (k, _) in &e.0 {
                if matches!(k.as_str(), "LISTEN_FDS" | "LISTEN_PID" | "LISTEN_FDNAMES") {
                    let at = o.file.index.key(&o.path(&["env", k]));
                    errors.push(o.error(
                        at,
                        format!(
                            "service {name:?}: env cannot set {k} with pass: listen_fds (superd sets it for the child)"
                        ),
                    ));
                }
            }
        }
    }
    env
}

/// `rlimits:` of defaults and of the service, merged resource by
/// resource, each made one the child can be given.
pub(super) fn merged_rlimits(
    l: Layers,
    ctx: &Context,
    errors: &mut Vec<ConfigError>,
) -> Vec<Rlimit> {
    let Layers { raw, own, defaults } = l;
    let mut rlimits: Vec<(Rlimit, Origin)> = Vec::new();
    for (r, o) in [
        defaults.and_then(|(d, o)| Some((d.rlimits.as_ref()?, o))),
        raw.rlimits.as_ref().map(|r| (r, own)),
    ]
    .into_iter()
    .flatten()
    {
        for l in &r.0 {
            match rlimits.iter_mut().find(|(x, _)| x.resource == l.resource) {
                Some(slot) => *slot = (*l, o),
                None => rlimits.push((*l, o)),
            }
        }
    }
    let rlimits: Vec<Rlimit> = rlimits
        .into_iter()
        .filter_map(|(l, o)| {
            settle_rlimit(l, ctx)
                .map_err(|m| {
                    let key = o.file.index.key(&o.path(&["rlimits", l.resource.as_str()]));
                    errors.push(o.error(key, format!("rlimits: {m}")))
                })
                .ok()
        })
        .collect();

    rlimits
}

/// What `--check` and the start-up log say besides the fields: a port
/// written as a service name, and xinetd's trailing-zero network shorthand,
/// which is one address here (a warning).
pub(super) fn notes(
    raw: &RawService,
    own: Origin,
    only_from: Option<(&OneOrMany<Net>, Origin)>,
    deny_from: Option<(&OneOrMany<Net>, Origin)>,
) -> Vec<String> {
    let mut out = Vec::new();
    let place = |e: ConfigError| match (e.line, e.column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", e.file.display()),
        _ => e.file.display().to_string(),
    };
    for (i, e) in raw.listen.iter().flat_map(|l| l.0.iter()).enumerate() {
        if let (Some(name), Some(port)) = (&e.port_name, e.addr.port()) {
            let at = place(own.at_element("listen", i, ""));
            out.push(format!(
                "{at}: listen: {name} is port {port} (/etc/services)"
            ));
        }
    }
    for (field, list) in [("only_from", only_from), ("deny_from", deny_from)] {
        let Some((OneOrMany(nets), o)) = list else {
            continue;
        };
        for (i, n) in nets.iter().enumerate() {
            if let Some(x) = n.xinetd_reading {
                let at = place(o.at_element(field, i, ""));
                out.push(format!(
                    "{at}: warning: {field}: {} is the one address {} here, where xinetd read {} as {x}: write {x} if that is meant",
                    n.cidr.addr, n.cidr, n.cidr.addr
                ));
            }
        }
    }
    out
}

/// `pass_env:` checked: no builtin (no child to inherit anything), and
/// never a variable superd writes itself for each connection (those say
/// who the peer is: inheriting them would lie to the program).
pub(super) fn pass_env(
    field: Option<(&OneOrMany<EnvKey>, Origin)>,
    is_builtin: bool,
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let Some((OneOrMany(names), o)) = field else {
        return Vec::new();
    };
    if is_builtin && !names.is_empty() {
        errors.push(o.at_key("pass_env", "pass_env needs exec: a builtin runs no program"));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if crate::plan::is_connection_variable(&n.0) {
            errors.push(o.at_element(
                "pass_env",
                i,
                format!(
                    "pass_env: {} is set by superd for each connection and cannot be inherited",
                    n.0
                ),
            ));
        } else if !out.contains(&n.0) {
            out.push(n.0.clone());
        }
    }
    out
}

/// The longest `refuse_message:`: it is written once, without blocking,
/// into a fresh socket's send buffer, which always holds this much.
pub const MAX_REFUSE_MESSAGE: usize = 512;

/// `refuse_message:` checked: at most 512 bytes, and only where a TCP
/// connection can be refused (a datagram or a unix peer never is by an
/// access rule or the per-source limit, and in wait mode the program
/// accepts, not superd).
pub(super) fn refuse_message(
    field: Option<(&crate::config::raw::Arg, Origin)>,
    socket: SocketType,
    wait: bool,
    listen: &[Address],
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<u8>> {
    let (m, o) = field?;
    if m.0.len() > MAX_REFUSE_MESSAGE {
        errors.push(o.at_value(
            "refuse_message",
            format!(
                "refuse_message is {} bytes: at most {MAX_REFUSE_MESSAGE}",
                m.0.len()
            ),
        ));
        return None;
    }
    if socket != SocketType::Stream
        || wait
        || (!listen.is_empty() && listen.iter().all(Address::is_unix))
    {
        errors.push(o.at_key(
            "refuse_message",
            "refuse_message is written to TCP clients superd refuses: this service has none (it needs socket: stream on an IP address, without wait: true)",
        ));
        return None;
    }
    Some(m.0.clone().into_bytes())
}

/// A program that was not found, with what an inetd admin may have meant:
/// one string holding the program and its arguments (inetd.conf's way).
pub(super) fn exec_hint(message: String, prog: &str, words: usize) -> String {
    if words == 1 && prog.trim().contains(char::is_whitespace) {
        let list: Vec<&str> = prog.split_whitespace().collect();
        format!(
            "{message} (one string is one program name, never split: write a list, exec: [{}])",
            list.join(", ")
        )
    } else {
        message
    }
}
