//! The xinetd attributes that map onto superd's limits, access rules,
//! environment and process settings (xinetd.conf(5)).

use std::net::{IpAddr, Ipv4Addr};

use super::super::{Entry, Severity, Value};

use super::view::{View, note};

pub(super) fn count(v: &str) -> Option<i64> {
    v.parse::<i64>()
        .ok()
        .filter(|&n| (1..=i64::from(i32::MAX)).contains(&n))
}

pub(super) fn limits(e: &mut Entry, view: &View) {
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
pub(super) fn networks(value: &str) -> Result<Vec<String>, String> {
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

pub(super) fn parse_net(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, p) = s.split_once('/')?;
    Some((ip.parse().ok()?, p.parse().ok()?))
}

/// Whether network `outer` contains network `inner`.
pub(super) fn contains(outer: (IpAddr, u8), inner: (IpAddr, u8)) -> bool {
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

pub(super) fn access(e: &mut Entry, view: &View) {
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

pub(super) fn environment(e: &mut Entry, view: &View, internal: bool) {
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

pub(super) fn process(e: &mut Entry, view: &View, internal: bool) {
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
