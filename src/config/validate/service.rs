//! One service validated: its own fields over those of `defaults`, the
//! checks that need several fields together, and the typed `Service`.

use super::*;

pub(super) fn service<'a>(
    name: &str,
    raw: &'a RawService,
    b: &Binding<'a>,
    defaults: Option<(&'a RawService, Origin<'a>)>,
    ctx: &Context,
    cache: &mut Cache,
    errors: &mut Vec<ConfigError>,
) -> Option<Service> {
    let before = errors.len();
    let own = b.origin;
    let l = Layers { raw, own, defaults };

    let entries = listen_entries(name, l, b.socket, errors);
    let listen: Vec<Address> = entries.iter().map(|e| e.addr.clone()).collect();
    let listen_sockets: Vec<Option<SocketType>> = entries.iter().map(|e| e.socket).collect();
    let socket = b.socket;
    let any_unix = listen.iter().any(Address::is_unix);
    let (program, is_builtin, chroot) = program(name, l, (socket, any_unix), ctx, cache, errors);
    let pass_env = pass_env(pick!(l, pass_env), is_builtin, errors);
    let notes = notes(raw, own, pick!(l, only_from), pick!(l, deny_from));

    let wait = wait(l, socket, is_builtin, errors);
    check_access_rules(
        name,
        l,
        (socket, &listen_sockets, any_unix),
        (wait, is_builtin),
        errors,
    );
    let refuse_message = refuse_message(pick!(l, refuse_message), socket, wait, &listen, errors);
    let credentials = credentials(l, is_builtin, ctx, cache, errors);
    let fences = fences(
        l,
        is_builtin,
        ctx,
        credentials.as_ref(),
        chroot.as_ref().map(|(c, _)| c.as_path()),
        errors,
    );
    check_hidden(l, program.as_ref(), chroot.as_ref(), &fences, errors);
    let (pass, fd_names, start) = activation(
        name,
        ActivationFields {
            pass: pick!(l, pass),
            fd_names: raw.fd_names.as_ref(),
            start: pick!(l, start),
            stderr: pick!(l, stderr),
        },
        &entries,
        own,
        (wait, is_builtin),
        errors,
    );

    let positive = |d: Option<(&crate::config::raw::Dur, Origin)>,
                    field: &str,
                    errors: &mut Vec<ConfigError>| {
        d.and_then(|(v, o)| {
            if v.0.is_zero() {
                errors.push(o.at_value(field, format!("{field} must be longer than 0")));
                None
            } else {
                Some(v.0)
            }
        })
    };
    let timeout = positive(pick!(l, timeout), "timeout", errors);
    let idle_timeout = positive(pick!(l, idle_timeout), "idle_timeout", errors);

    let env = merged_env(name, l, pass, errors);
    let rlimits = merged_rlimits(l, ctx, errors);
    let mut id =
        |field: &str, r: Option<(&IdRef, Origin)>, user: bool, errors: &mut Vec<ConfigError>| {
            let (r, o) = r?;
            let v = if user {
                cache.user(r).map(|u| u.uid)
            } else {
                cache.group(r)
            };
            v.map_err(|m| errors.push(o.at_value(field, m))).ok()
        };
    // A builtin's sessions always end with status 0: success_status
    // written on one would say something superd never does.
    let success_status = match pick!(l, success_status) {
        Some((_, o)) if is_builtin && o.service.is_some() => {
            errors.push(o.at_key(
                "success_status",
                "success_status has no effect on a builtin (its sessions always end with status 0)",
            ));
            None
        }
        Some((v, _)) => Some(SuccessStatus::new(&v.0)),
        None => None,
    };
    let socket_user = id("socket_user", pick!(l, socket_user), true, errors);
    let socket_group = id("socket_group", pick!(l, socket_group), false, errors);

    let proxy = proxy_config(
        ProxyFields {
            protocol: pick!(l, proxy_protocol),
            from: pick!(l, proxy_from),
            timeout: pick!(l, proxy_timeout),
            wait: pick!(l, wait),
        },
        raw,
        own,
        (socket, any_unix, wait),
        ctx,
        errors,
    );

    if errors.len() > before {
        return None;
    }
    let d = Service::new(name.to_owned(), own.file.path.clone(), program?);
    Some(Service {
        listen,
        socket,
        wait,
        credentials,
        cwd: pick!(l, cwd).map(|(v, _)| v.0.clone()).unwrap_or(d.cwd),
        chroot: chroot.map(|(c, _)| c),
        umask: pick!(l, umask).map(|(v, _)| v.0).unwrap_or(d.umask),
        nice: pick!(l, nice).map(|(v, _)| v.0),
        env,
        // With pass: listen_fds fds 1 and 2 go to the log by default, as
        // systemd sends a socket-activated daemon's output to its journal.
        stderr: pick!(l, stderr).map(|(v, _)| *v).unwrap_or(
            if pass == crate::service::PassMode::ListenFds {
                crate::service::StderrMode::Log
            } else {
                d.stderr
            },
        ),
        max_connections: pick!(l, max_connections)
            .map(|(v, _)| v.0)
            .unwrap_or(d.max_connections),
        max_per_source: pick!(l, max_per_source).map(|(v, _)| v.0),
        rate: pick!(l, rate)
            .map(|(v, _)| *v)
            .or((is_builtin && socket == SocketType::Dgram).then_some(UDP_BUILTIN_RATE)),
        only_from: pick!(l, only_from).map(|(v, _)| v.0.iter().map(|n| n.cidr).collect()),
        deny_from: pick!(l, deny_from)
            .map(|(v, _)| v.0.iter().map(|n| n.cidr).collect())
            .unwrap_or_default(),
        timeout,
        kill_grace: pick!(l, kill_grace)
            .map(|(v, _)| v.0)
            .unwrap_or(d.kill_grace),
        idle_timeout: idle_timeout.unwrap_or(d.idle_timeout),
        rlimits,
        // Count is at most i32::MAX by construction.
        backlog: pick!(l, backlog)
            .map(|(v, _)| v.0 as i32)
            .unwrap_or(d.backlog),
        reuse_port: pick!(l, reuse_port)
            .map(|(v, _)| *v)
            .unwrap_or(d.reuse_port),
        v6only: b.v6only,
        keepalive: pick!(l, keepalive).map(|(v, _)| *v).unwrap_or(d.keepalive),
        nodelay: pick!(l, nodelay).map(|(v, _)| *v).unwrap_or(d.nodelay),
        socket_mode: pick!(l, socket_mode)
            .map(|(v, _)| v.0)
            .unwrap_or(d.socket_mode),
        socket_user,
        socket_group,
        enabled: b.enabled,
        proxy,
        pass_env,
        refuse_message,
        notes,
        success_status: success_status.unwrap_or(d.success_status),
        fences,
        listen_sockets,
        pass,
        fd_names,
        start,
        ..d
    })
}

/// `listen:` as written, and the socket types each address may give
/// itself checked against the service's.
fn listen_entries(
    name: &str,
    l: Layers,
    socket: SocketType,
    errors: &mut Vec<ConfigError>,
) -> Vec<ListenEntry> {
    let Layers { raw, own, .. } = l;
    let entries: Vec<ListenEntry> = match &raw.listen {
        Some(OneOrMany(v)) if v.is_empty() => {
            errors.push(own.at_key("listen", "listen is empty: expected at least one address"));
            Vec::new()
        }
        Some(OneOrMany(v)) => v.clone(),
        None => {
            errors.push(own.at_key("", format!("service {name:?} has no listen address")));
            Vec::new()
        }
    };
    if socket == SocketType::Seqpacket
        && entries
            .iter()
            .any(|e| !e.addr.is_unix() && e.socket.is_none())
    {
        let o = pick!(l, socket).map(|(_, o)| o).unwrap_or(own);
        errors.push(o.at_value("socket", "seqpacket needs unix addresses (/path or @name)"));
    }
    for (i, e) in entries.iter().enumerate() {
        if e.socket == Some(SocketType::Seqpacket) && !e.addr.is_unix() {
            errors.push(own.at_element(
                "listen",
                i,
                "seqpacket needs unix addresses (/path or @name)",
            ));
        }
    }

    entries
}

/// What the service runs (exec or builtin, never both, never a mix of
/// the service's and defaults'), with the chroot and cwd it runs in
/// checked; and whether it is a builtin.
#[allow(clippy::type_complexity)]
fn program<'a>(
    name: &str,
    l: Layers<'a>,
    (socket, any_unix): (SocketType, bool),
    ctx: &Context,
    cache: &mut Cache,
    errors: &mut Vec<ConfigError>,
) -> (Option<Program>, bool, Option<(PathBuf, Origin<'a>)>) {
    let Layers { raw, own, defaults } = l;
    // exec and builtin decide together what the service is: a service
    // naming either one takes nothing of the other from defaults.
    let (exec, builtin, prog_origin) = if raw.exec.is_some() || raw.builtin.is_some() {
        (raw.exec.as_ref(), raw.builtin, own)
    } else if let Some((d, o)) = defaults {
        (d.exec.as_ref(), d.builtin, o)
    } else {
        (None, None, own)
    };
    let chroot = pick!(l, chroot).map(|(v, o)| (v.0.clone(), o));
    if let Some((c, o)) = &chroot
        && !cache.is_dir(c)
    {
        errors.push(o.at_value(
            "chroot",
            format!("chroot {} is not a directory", c.display()),
        ));
    }
    // cwd must exist when the service loads (inside the chroot, if any),
    // or every connection would end in `exec failed step=chdir`; a
    // builtin has no child to change into it.
    if let Some((cwd, o)) = pick!(l, cwd)
        && builtin.is_none()
    {
        let host = host_path(&cwd.0, chroot.as_ref().map(|(c, _)| c.as_path()));
        if !cache.is_dir(&host) {
            errors.push(o.at_value("cwd", format!("cwd {} is not a directory", host.display())));
        }
    }
    let program = match (exec, builtin) {
        (Some(_), Some(_)) => {
            errors.push(
                prog_origin.at_key("builtin", "exec and builtin are exclusive: set exactly one"),
            );
            None
        }
        (None, None) => {
            errors.push(own.at_key("", format!("service {name:?} needs exec or builtin")));
            None
        }
        (Some(OneOrMany(args)), None) => match args.first() {
            None => {
                errors.push(prog_origin.at_key("exec", "exec is empty: expected a program"));
                None
            }
            Some(prog) => {
                let mut argv: Vec<String> = args.iter().map(|a| a.0.clone()).collect();
                // `argv0:` is what the program sees as its name, as
                // inetd.conf's separate argv[0] field gives it.
                if let Some((a, _)) = pick!(l, argv0) {
                    argv[0] = a.0.clone();
                }
                let p =
                    relative_to_file(&prog.0, prog_origin.file.path.as_path(), chroot.is_some());
                match cache.program(&p, chroot.as_ref().map(|(c, _)| c.as_path()), &ctx.path) {
                    Ok(path) => Some(Program::Exec { path, argv }),
                    Err(m) => {
                        let m = exec_hint(m, &prog.0, args.len());
                        errors.push(prog_origin.at_value("exec", m));
                        None
                    }
                }
            }
        },
        (None, Some(b)) => {
            // UDP builtins answer to the datagram's source address; a unix
            // dgram peer usually has none. Seqpacket has no builtin protocol.
            if socket == SocketType::Seqpacket || socket == SocketType::Dgram && any_unix {
                let what = if socket == SocketType::Seqpacket {
                    "seqpacket"
                } else {
                    "unix dgram"
                };
                errors.push(prog_origin.at_value(
                    "builtin",
                    format!(
                        "builtin {b} cannot serve {what} sockets (only TCP, UDP and unix stream)"
                    ),
                ));
            }
            // metrics and status answer over a connection (HTTP, one
            // JSON document): a datagram has no room for either.
            if matches!(b, Builtin::Metrics | Builtin::Status) && socket == SocketType::Dgram {
                errors.push(prog_origin.at_value(
                    "builtin",
                    format!("builtin {b} needs a stream socket (TCP or unix stream)"),
                ));
            }
            Some(Program::Builtin(b))
        }
    };
    let is_builtin = builtin.is_some() && exec.is_none();
    if let Some((a, o)) = pick!(l, argv0) {
        if is_builtin {
            errors.push(o.at_key("argv0", "argv0 needs exec: a builtin runs no program"));
        } else if a.0.is_empty() {
            errors.push(o.at_value(
                "argv0",
                "argv0 is empty: expected the name the program sees",
            ));
        }
    }
    (program, is_builtin, chroot)
}

/// `wait:`, or what the socket type implies.
fn wait(l: Layers, socket: SocketType, is_builtin: bool, errors: &mut Vec<ConfigError>) -> bool {
    // wait: a dgram exec service has no connection to hand over, so it
    // waits. A builtin never forks: on dgram it serves each datagram on
    // the bound socket either way (inetd writes `dgram udp wait …
    // internal`, and wait is its default), on stream there is nothing
    // for it to wait for.
    match (pick!(l, wait), is_builtin) {
        (Some((true, o)), true) if socket != SocketType::Dgram => {
            errors.push(o.at_value(
                "wait",
                "wait: true makes no sense for a builtin on a stream socket (builtins never fork)",
            ));
            false
        }
        (Some((false, o)), false) if socket == SocketType::Dgram => {
            errors.push(o.at_value(
                "wait",
                "dgram services need wait: true (there is no connection to accept)",
            ));
            true
        }
        (Some((w, _)), _) => *w,
        (None, _) => socket == SocketType::Dgram,
    }
}

/// Access rules and the per-source limit only where superd applies them
/// (superd.yaml.5, only_from): a rule shown by --check and not applied
/// would let in a client the admin believes refused.
fn check_access_rules(
    name: &str,
    l: Layers,
    (socket, listen_sockets, any_unix): (SocketType, &[Option<SocketType>], bool),
    (wait, is_builtin): (bool, bool),
    errors: &mut Vec<ConfigError>,
) {
    let rules = [
        ("only_from", pick!(l, only_from).map(|(_, o)| o)),
        (
            "deny_from",
            pick!(l, deny_from)
                .filter(|(v, _)| !v.0.is_empty())
                .map(|(_, o)| o),
        ),
        ("max_per_source", pick!(l, max_per_source).map(|(_, o)| o)),
    ];
    for (field, o) in rules {
        let Some(o) = o else { continue };
        let per_source = field == "max_per_source";
        // A wait child accepts on every address that is no datagram
        // socket: the service's own type, or one an address gives itself.
        let child_accepts = socket != SocketType::Dgram
            || listen_sockets
                .iter()
                .any(|t| t.is_some_and(|t| t != SocketType::Dgram));
        let why = if any_unix {
            Some("a unix socket's peer has no IP address to check")
        } else if wait && !is_builtin && child_accepts {
            Some("a wait service's child accepts its connections itself")
        } else if per_source && socket == SocketType::Dgram {
            Some("datagrams have no connections to count per source")
        } else {
            None
        };
        if let Some(why) = why {
            let from = if o.service.is_none() {
                " (set in defaults)".to_owned()
            } else {
                String::new()
            };
            errors.push(o.at_value(
                field,
                format!("service {name:?}: {field}{from} cannot be applied: {why}"),
            ));
        }
    }
}

/// The program and the cwd must stay visible through the sandbox:
/// `inaccessible_paths` and `private_tmp` must not hide them.
fn check_hidden(
    l: Layers,
    program: Option<&Program>,
    chroot: Option<&(PathBuf, Origin)>,
    fences: &Fences,
    errors: &mut Vec<ConfigError>,
) {
    let own = l.own;
    // A program under an inaccessible path could never be run.
    if let Some(Program::Exec { path, .. }) = &program {
        let root = chroot.as_ref().map(|(c, _)| c.as_path());
        let host = host_path(path, root);
        if let Some(p) = fences
            .inaccessible_paths
            .iter()
            .find(|p| host.starts_with(p))
        {
            let o = pick!(l, inaccessible_paths).map_or(own, |(_, o)| o);
            errors.push(o.at_value(
                "inaccessible_paths",
                format!(
                    "inaccessible_paths: {} would hide the program {}",
                    p.display(),
                    host.display()
                ),
            ));
        }
    }
    // Nor one, or a cwd, under the /tmp or /var/tmp that private_tmp
    // replaces with an empty directory: the child would not find it.
    if fences.private_tmp {
        let root = chroot.as_ref().map(|(c, _)| c.as_path());
        let hidden_by = |p: &Path| {
            ["/tmp", "/var/tmp"].into_iter().find(|t| {
                let t = host_path(Path::new(t), root);
                p.starts_with(&t) && p != t
            })
        };
        let o = pick!(l, private_tmp).map_or(own, |(_, o)| o);
        let program = match program {
            Some(Program::Exec { path, .. }) => Some(("program", path.as_path())),
            _ => None,
        };
        let cwd = pick!(l, cwd).map(|(cwd, _)| ("cwd", cwd.0.as_path()));
        for (what, p) in program.into_iter().chain(cwd) {
            let host = host_path(p, root);
            if let Some(t) = hidden_by(&host) {
                errors.push(o.at_value(
                    "private_tmp",
                    format!(
                        "private_tmp: the private {t} would hide the {what} {}",
                        host.display()
                    ),
                ));
            }
        }
    }
}
