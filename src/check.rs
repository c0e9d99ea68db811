//! `superd --check`: what will run, one block per service, in the words of
//! the configuration.

use std::fmt::Write;

use crate::config::Config;
use crate::service::{Program, Service};

/// Describes every service of `config` (stdout of `--check`).
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "configuration OK: {} service{}",
        config.services.len(),
        if config.services.len() == 1 { "" } else { "s" }
    );
    for s in &config.services {
        describe_service(&mut out, s);
    }
    out
}

fn describe_service(out: &mut String, s: &Service) {
    let addrs: Vec<String> = s
        .listen
        .iter()
        .enumerate()
        .map(|(i, a)| match s.listen_sockets.get(i).copied().flatten() {
            Some(t) => format!("{a} ({t})"),
            None => a.to_string(),
        })
        .collect();
    let _ = writeln!(out, "\nservice {} ({})", s.name, s.file.display());
    let _ = writeln!(out, "  listen: {}", addrs.join(", "));
    let _ = writeln!(
        out,
        "  socket: {} {}{}",
        s.socket,
        if s.wait { "wait" } else { "nowait" },
        if s.enabled { "" } else { " (disabled)" }
    );
    if s.pass == crate::service::PassMode::ListenFds {
        let names: Vec<&str> = if s.wait {
            (0..s.listen.len()).map(|i| s.fd_name(i)).collect()
        } else {
            vec!["connection"]
        };
        let _ = writeln!(
            out,
            "  pass: listen_fds LISTEN_FDNAMES={} start={}",
            names.join(":"),
            s.start.as_str()
        );
    } else if s.start == crate::service::StartMode::AtStart {
        let _ = writeln!(out, "  start: at_start");
    }
    match &s.program {
        Program::Exec { path, argv } => {
            let _ = writeln!(out, "  exec: {} argv={:?}", path.display(), argv);
            let _ = writeln!(out, "  success_status: {}", s.success_status);
        }
        Program::Builtin(b) => {
            let _ = writeln!(out, "  builtin: {b}");
        }
    }
    match &s.credentials {
        Some(c) => {
            let _ = writeln!(
                out,
                "  user: {} uid={} gid={} groups={:?}",
                c.user, c.uid, c.gid, c.groups
            );
        }
        None if s.builtin().is_some() => {
            let _ = writeln!(out, "  user: - (builtin: served inside superd)");
        }
        None => {
            let _ = writeln!(out, "  user: superd's own (superd is not root)");
        }
    }
    if s.only_from.as_ref().is_some_and(Vec::is_empty) {
        let _ = writeln!(
            out,
            "  warning: only_from is empty: every connection is refused"
        );
    }
    if let Some(why) = crate::config::exec_access_warning(s) {
        let _ = writeln!(out, "  warning: {why}: every connection would fail to exec");
    }
    let mut limits = format!("max_connections={}", s.max_connections);
    match s.max_per_source {
        Some(n) => limits += &format!(" max_per_source={n}"),
        None => limits += " max_per_source=unlimited",
    }
    match s.rate {
        Some(r) => limits += &format!(" rate={r}"),
        None => limits += " rate=unlimited",
    }
    match s.timeout {
        Some(t) => limits += &format!(" timeout={:?} kill_grace={:?}", t, s.kill_grace),
        None => limits += " timeout=none",
    }
    if s.builtin().is_some() {
        limits += &format!(" idle_timeout={:?}", s.idle_timeout);
    }
    let _ = writeln!(out, "  limits: {limits}");
    if s.only_from.is_some() || !s.deny_from.is_empty() {
        let list = |v: &[crate::service::Cidr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let _ = writeln!(
            out,
            "  access: only_from={} deny_from=[{}]",
            s.only_from
                .as_deref()
                .map_or("everyone".into(), |v| format!("[{}]", list(v))),
            list(&s.deny_from)
        );
    }
    if let Some(p) = &s.proxy {
        let from: Vec<String> = p.from.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "  proxy: proxy_protocol={} proxy_from=[{}] proxy_timeout={:?}",
            p.accept,
            from.join(","),
            p.timeout
        );
    }
    let mut proc = format!(
        "cwd={} umask={:03o} stderr={}",
        s.cwd.display(),
        s.umask,
        s.stderr.as_str()
    );
    if let Some(c) = &s.chroot {
        proc += &format!(" chroot={}", c.display());
    }
    if let Some(n) = s.nice {
        proc += &format!(" nice={n}");
    }
    for r in &s.rlimits {
        let v = |x: Option<u64>| x.map_or("unlimited".to_string(), |n| n.to_string());
        proc += &format!(
            " rlimit_{}={}:{}",
            r.resource.as_str(),
            v(r.soft),
            v(r.hard)
        );
    }
    let _ = writeln!(out, "  process: {proc}");
    if !s.pass_env.is_empty() {
        let _ = writeln!(out, "  pass_env: {}", s.pass_env.join(" "));
    }
    if let Some(m) = &s.refuse_message {
        let _ = writeln!(
            out,
            "  refuse_message: {:?} ({} bytes)",
            String::from_utf8_lossy(m),
            m.len()
        );
    }
    for n in &s.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    if !s.env.is_empty() {
        let env: Vec<String> = s.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "  env: {}", env.join(" "));
    }
    let mut sock = format!("backlog={}", s.backlog);
    for (name, on) in [
        ("reuse_port", s.reuse_port),
        ("v6only", s.v6only),
        ("keepalive", s.keepalive),
        ("nodelay", s.nodelay),
    ] {
        if on {
            sock += &format!(" {name}");
        }
    }
    if s.listen.iter().any(|a| a.is_unix()) {
        sock += &format!(" socket_mode={:04o}", s.socket_mode);
        if let Some(u) = s.socket_user {
            sock += &format!(" socket_user={u}");
        }
        if let Some(g) = s.socket_group {
            sock += &format!(" socket_group={g}");
        }
    }
    let _ = writeln!(out, "  socket options: {sock}");
    describe_fences(out, &s.fences);
}

/// `fences:` one line, only for a service that has any.
fn describe_fences(out: &mut String, f: &crate::service::Fences) {
    if *f == crate::service::Fences::default() {
        return;
    }
    let paths = |v: &[std::path::PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut line = String::new();
    for (name, on) in [
        ("no_new_privs", f.no_new_privs),
        ("private_network", f.private_network),
        ("private_tmp", f.private_tmp),
    ] {
        if on {
            line += &format!(" {name}");
        }
    }
    for (name, v) in [
        ("read_only_paths", &f.read_only_paths),
        ("writable_paths", &f.writable_paths),
        ("inaccessible_paths", &f.inaccessible_paths),
    ] {
        if !v.is_empty() {
            line += &format!(" {name}=[{}]", paths(v));
        }
    }
    if !f.capabilities.is_empty() {
        let caps: Vec<&str> = f
            .capabilities
            .iter()
            .map(|&c| crate::service::capability_name(c))
            .collect();
        line += &format!(" capabilities=[{}]", caps.join(","));
    }
    let _ = writeln!(out, "  fences:{line}");
}
