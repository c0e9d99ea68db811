//! The value parsers of the other fields: access lists, builtins, rates,
//! arguments, user and group names, paths, capabilities, octal modes,
//! counts, durations, sizes, rlimits, environments and service names.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::Scalar;
use super::listen::{no_nul, one_of};
use crate::proxy::Accept;
use crate::service::{
    Builtin, Cidr, ExitMatch, Rate, RlimValue, Rlimit, RlimitResource, StderrMode,
};

/// One `only_from` / `deny_from` entry, and whether it was written as
/// xinetd's trailing-zero shorthand (`10.0.0.0` for 10.0.0.0/8), which
/// means one address here.
#[derive(Debug, Clone, Copy)]
pub struct Net {
    pub cidr: Cidr,
    /// The network xinetd would have read, when it differs.
    pub xinetd_reading: Option<Cidr>,
}

impl Scalar for Net {
    const EXPECTING: &'static str = Cidr::EXPECTING;
    fn from_str(s: &str) -> Result<Self, String> {
        let cidr = Cidr::from_str(s)?;
        let xinetd_reading = match cidr.addr {
            IpAddr::V4(v4) if !s.contains('/') => {
                let zeros = v4.octets().iter().rev().take_while(|&&o| o == 0).count();
                (zeros > 0 && zeros < 4).then(|| self::cidr(cidr.addr, 32 - 8 * zeros as u8))
            }
            _ => None,
        };
        Ok(Net {
            cidr,
            xinetd_reading,
        })
    }
}

impl Scalar for Builtin {
    const EXPECTING: &'static str = "one of echo, discard, daytime, chargen, time";
    fn from_str(s: &str) -> Result<Self, String> {
        one_of(s, &Builtin::ALL, Builtin::as_str, "builtin")
    }
}

impl Scalar for Accept {
    const EXPECTING: &'static str = "one of v1, v2, any";
    fn from_str(s: &str) -> Result<Self, String> {
        one_of(s, &Accept::ALL, Accept::as_str, "PROXY protocol version")
    }
}

impl Scalar for StderrMode {
    const EXPECTING: &'static str = "one of socket, log, null";
    fn from_str(s: &str) -> Result<Self, String> {
        let all = [StderrMode::Socket, StderrMode::Log, StderrMode::Null];
        one_of(s, &all, StderrMode::as_str, "stderr mode")
    }
}

/// `stderr:`'s value. superd.yaml(5) lists `null` among the modes, and YAML reads
/// a bare `null` (or `~`) as no value at all: here it is the null mode, not
/// "unset", so that `stderr: null` does what it says.
pub(super) struct StderrField(pub(super) StderrMode);

impl<'de> Deserialize<'de> for StderrField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<StderrMode>::deserialize(d).map(|m| StderrField(m.unwrap_or(StderrMode::Null)))
    }
}

impl Scalar for RlimitResource {
    const EXPECTING: &'static str =
        "one of nofile, nproc, as, data, stack, fsize, core, cpu, memlock";
    fn from_str(s: &str) -> Result<Self, String> {
        one_of(s, &RlimitResource::ALL, RlimitResource::as_str, "rlimit")
    }
}

impl Scalar for Cidr {
    const EXPECTING: &'static str = "an IP address or CIDR network (10.0.0.0/8, 2001:db8::/32)";
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "bad network {s:?}: expected an IP address or CIDR like 10.0.0.0/8 or 2001:db8::/32"
            )
        };
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if prefix > max {
            return Err(format!("bad network {s:?}: prefix longer than {max}"));
        }
        Ok(cidr(ip, prefix))
    }
}

/// Clears host bits, and turns an IPv4-mapped IPv6 network into the IPv4
/// network it covers (peers are compared as plain IPv4, superd(8), LIMITS AND ACCESS).
pub fn cidr(ip: IpAddr, prefix: u8) -> Cidr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            Cidr {
                addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)),
                prefix,
            }
        }
        IpAddr::V6(v6) => {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return cidr(IpAddr::V4(v4), prefix - 96);
            }
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            Cidr {
                addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                prefix,
            }
        }
    }
}

impl Scalar for Rate {
    const EXPECTING: &'static str = "a rate like \"10/s\" or \"100/m\"";
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("bad rate {s:?}: expected N/s or N/m with N >= 1");
        let (n, unit) = s.split_once('/').ok_or_else(bad)?;
        let per = match unit {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            _ => return Err(bad()),
        };
        let tokens: u32 = n.trim().parse().map_err(|_| bad())?;
        if tokens == 0 {
            return Err(bad());
        }
        Ok(Rate { tokens, per })
    }
}

/// One `exec` word. Numbers and bools are taken as their text, so
/// `exec: [/bin/sleep, 5]` works; floats are refused (`1.50` would lose its
/// spelling).
#[derive(Debug, Clone)]
pub struct Arg(pub String);

impl Scalar for Arg {
    const EXPECTING: &'static str = "a string";
    fn from_str(s: &str) -> Result<Self, String> {
        no_nul(s)?;
        Ok(Arg(s.to_owned()))
    }
    fn from_u64(n: u64) -> Result<Self, String> {
        Ok(Arg(n.to_string()))
    }
    fn from_i64(n: i64) -> Result<Self, String> {
        Ok(Arg(n.to_string()))
    }
    fn from_bool(b: bool) -> Result<Self, String> {
        Ok(Arg(b.to_string()))
    }
    fn from_f64(n: f64) -> Result<Self, String> {
        Err(format!("expected a string, found the number {n}: quote it"))
    }
}

/// A user or group: a name or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdRef {
    Id(u32),
    Name(String),
}

impl fmt::Display for IdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRef::Id(n) => write!(f, "{n}"),
            IdRef::Name(s) => f.write_str(s),
        }
    }
}

impl Scalar for IdRef {
    const EXPECTING: &'static str = "a name or a numeric id";
    fn from_u64(n: u64) -> Result<Self, String> {
        // (uid_t)-1 means "unchanged" to setuid/chown: never a real id.
        match u32::try_from(n) {
            Ok(id) if id != u32::MAX => Ok(IdRef::Id(id)),
            _ => Err(format!("id {n} is out of range")),
        }
    }
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let n: u64 = s.parse().map_err(|_| format!("id {s} is out of range"))?;
            return Self::from_u64(n);
        }
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b':' && b != b'/' || b >= 0x80);
        if !ok {
            if let Some((u, g)) = s.split_once(':') {
                return Err(format!(
                    "bad user or group name {s:?} (inetd's user:group: write user: {u} and group: {g})"
                ));
            }
            return Err(format!("bad user or group name {s:?}"));
        }
        Ok(IdRef::Name(s.to_owned()))
    }
}

/// An absolute path (`cwd`, `chroot`).
#[derive(Debug, Clone)]
pub struct AbsPath(pub PathBuf);

impl Scalar for AbsPath {
    const EXPECTING: &'static str = "an absolute path";
    fn from_str(s: &str) -> Result<Self, String> {
        no_nul(s)?;
        if !s.starts_with('/') {
            return Err(format!("expected an absolute path, found {s:?}"));
        }
        Ok(AbsPath(PathBuf::from(s)))
    }
}

/// A capability as capabilities(7) writes it (`CAP_NET_BIND_SERVICE`);
/// the number is linux/capability.h's.
#[derive(Debug, Clone, Copy)]
pub struct Capability(pub u8);

impl Scalar for Capability {
    const EXPECTING: &'static str = "a capability name like CAP_NET_BIND_SERVICE";
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(&(_, n)) = crate::service::CAPABILITIES.iter().find(|(c, _)| *c == s) {
            return Ok(Capability(n));
        }
        // The likely slips: lower case, or the name without its prefix.
        let upper = s.to_ascii_uppercase();
        let prefixed = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        match crate::service::CAPABILITIES
            .iter()
            .find(|(c, _)| *c == prefixed)
        {
            Some((c, _)) => Err(format!(
                "unknown capability {s:?}: write it as capabilities(7) does, {c}"
            )),
            None => Err(format!(
                "unknown capability {s:?}: expected a name from capabilities(7), like CAP_NET_BIND_SERVICE"
            )),
        }
    }
}

/// A file mode written as a quoted octal string. A bare YAML number is
/// refused: `022` would be read as a string by serde_yaml, `22` as decimal
/// and `0o22` as 18; only quoting says what the admin meant unambiguously.
/// (A bare `022` reaches `from_str`; the walk in `tree.rs` catches it.)
#[derive(Debug, Clone, Copy)]
pub struct Octal(pub u32);

const QUOTE_IT: &str =
    "must be a quoted octal string like \"022\" (a bare number is not read as octal)";

impl Scalar for Octal {
    const EXPECTING: &'static str = "a quoted octal string like \"022\"";
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
        let v = if ok {
            u32::from_str_radix(s, 8).ok()
        } else {
            None
        };
        match v {
            Some(v) if v <= 0o777 => Ok(Octal(v)),
            _ => Err(format!(
                "bad mode {s:?}: expected an octal string from \"000\" to \"777\""
            )),
        }
    }
    fn from_u64(_: u64) -> Result<Self, String> {
        Err(QUOTE_IT.into())
    }
    fn from_i64(_: i64) -> Result<Self, String> {
        Err(QUOTE_IT.into())
    }
    fn from_f64(_: f64) -> Result<Self, String> {
        Err(QUOTE_IT.into())
    }
}

/// The message for a bare `umask: 022`, found by the tree walk.
pub fn bare_octal_message() -> &'static str {
    QUOTE_IT
}

/// `nice`: -20..=19.
#[derive(Debug, Clone, Copy)]
pub struct Nice(pub i32);

impl Scalar for Nice {
    const EXPECTING: &'static str = "an integer from -20 to 19";
    fn from_i64(n: i64) -> Result<Self, String> {
        if (-20..=19).contains(&n) {
            Ok(Nice(n as i32))
        } else {
            Err(format!("nice {n} is out of range: expected -20 to 19"))
        }
    }
    fn from_u64(n: u64) -> Result<Self, String> {
        Self::from_i64(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// A positive count (`max_connections`, `backlog`, ...): 1 to 2^31-1, so it
/// fits the `int` that `listen(2)` takes.
#[derive(Debug, Clone, Copy)]
pub struct Count(pub u32);

impl Scalar for Count {
    const EXPECTING: &'static str = "an integer >= 1";
    fn from_u64(n: u64) -> Result<Self, String> {
        match i32::try_from(n) {
            Ok(v) if v >= 1 => Ok(Count(v as u32)),
            _ if n == 0 => Err("expected an integer >= 1, found 0".into()),
            _ => Err(format!("{n} is too large (at most {})", i32::MAX)),
        }
    }
    fn from_i64(n: i64) -> Result<Self, String> {
        match u64::try_from(n) {
            Ok(u) => Self::from_u64(u),
            Err(_) => Err(format!("expected an integer >= 1, found {n}")),
        }
    }
}

/// A duration: `500ms`, `30s`, `5m`, `1h`, or a plain number of seconds.
#[derive(Debug, Clone, Copy)]
pub struct Dur(pub Duration);

/// The longest duration accepted: far beyond any sensible timeout, far
/// below where clock arithmetic (`Instant + Duration`) would overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Dur {
    fn bounded(d: Duration) -> Result<Dur, String> {
        if d > MAX_DURATION {
            Err(Dur::too_long(d.as_secs_f64()))
        } else {
            Ok(Dur(d))
        }
    }

    /// The error for `secs` seconds, the value as written (or its
    /// nearest f64) whatever its size.
    fn too_long(secs: f64) -> String {
        format!(
            "duration of {secs} s is too long: at most 10 years ({} s)",
            MAX_DURATION.as_secs()
        )
    }
}

impl Scalar for ExitMatch {
    const EXPECTING: &'static str = "an exit status from 0 to 255 or a signal name such as SIGPIPE";
    fn from_u64(n: u64) -> Result<Self, String> {
        u8::try_from(n).map(ExitMatch::Status).map_err(|_| {
            format!("bad exit status {n}: expected 0 to 255 or a signal name such as SIGPIPE")
        })
    }
    fn from_str(s: &str) -> Result<Self, String> {
        use std::str::FromStr;
        match nix::sys::signal::Signal::from_str(s) {
            Ok(sig) if s.starts_with("SIG") => Ok(ExitMatch::Signal(sig)),
            _ => Err(format!(
                "unknown signal {s:?}: expected an exit status from 0 to 255 or a signal name such as SIGPIPE"
            )),
        }
    }
}

impl Scalar for Dur {
    const EXPECTING: &'static str = "a duration like 500ms, 30s, 5m, 1h or a number of seconds";
    fn from_u64(n: u64) -> Result<Self, String> {
        Dur::bounded(Duration::from_secs(n))
    }
    fn from_f64(n: f64) -> Result<Self, String> {
        if n.is_finite() && n > MAX_DURATION.as_secs_f64() {
            return Err(Dur::too_long(n));
        }
        Duration::try_from_secs_f64(n)
            .map_err(|_| format!("bad duration {n}: expected a number of seconds >= 0"))
            .and_then(Dur::bounded)
    }
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("bad duration {s:?}: expected 500ms, 30s, 5m, 1h or a number of seconds");
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let scale = match unit {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        Dur::from_f64(n * scale).map_err(|e| if e.contains("too long") { e } else { bad() })
    }
}

/// A size: `512`, `64K`, `256M`, `1G`, `1T` (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        b'T' | b't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// One `rlimits:` value: soft and hard.
#[derive(Debug, Clone, Copy)]
pub struct RlimitSpec {
    pub soft: RlimValue,
    pub hard: RlimValue,
}

fn rlim_value(s: &str) -> Option<RlimValue> {
    if s == "unlimited" || s == "infinity" {
        return Some(None);
    }
    parse_size(s).map(Some)
}

impl Scalar for RlimitSpec {
    const EXPECTING: &'static str = "N, a size like 64M, \"SOFT:HARD\" or unlimited";
    fn from_u64(n: u64) -> Result<Self, String> {
        Ok(RlimitSpec {
            soft: Some(n),
            hard: Some(n),
        })
    }
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("bad rlimit {s:?}: expected N, a size like 64M, \"SOFT:HARD\" or unlimited");
        let (soft, hard) = match s.split_once(':') {
            Some((a, b)) => (
                rlim_value(a).ok_or_else(bad)?,
                rlim_value(b).ok_or_else(bad)?,
            ),
            None => {
                let v = rlim_value(s).ok_or_else(bad)?;
                (v, v)
            }
        };
        // `None` is unlimited: larger than any number.
        let over = match (soft, hard) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => a > b,
            _ => false,
        };
        if over {
            return Err(format!(
                "bad rlimit {s:?}: the soft limit exceeds the hard limit"
            ));
        }
        Ok(RlimitSpec { soft, hard })
    }
}

/// `rlimits:` in file order.
#[derive(Debug, Clone, Default)]
pub struct Rlimits(pub Vec<Rlimit>);

impl<'de> Deserialize<'de> for Rlimits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rlimits;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of rlimits (nofile: 1024, core: 0, ...)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Rlimits, A::Error> {
                let mut out = Vec::new();
                while let Some((resource, spec)) = map.next_entry::<RlimitResource, RlimitSpec>()? {
                    out.push(Rlimit {
                        resource,
                        soft: spec.soft,
                        hard: spec.hard,
                    });
                }
                Ok(Rlimits(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// An environment variable name.
#[derive(Debug, Clone)]
pub struct EnvKey(pub String);

impl Scalar for EnvKey {
    const EXPECTING: &'static str = "a variable name ([A-Za-z_][A-Za-z0-9_]*)";
    fn from_str(s: &str) -> Result<Self, String> {
        let mut b = s.bytes();
        let ok = matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
            && b.all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if ok {
            Ok(EnvKey(s.to_owned()))
        } else {
            Err(format!(
                "bad variable name {s:?}: expected [A-Za-z_][A-Za-z0-9_]*"
            ))
        }
    }
}

/// `env:` in file order. Values may be any scalar but a float or null;
/// numbers and bools become their text.
#[derive(Debug, Clone, Default)]
pub struct Env(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Env {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Env;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of variable names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Env, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<EnvKey, Arg>()? {
                    out.push((k.0, v.0));
                }
                Ok(Env(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A service name: `[A-Za-z0-9_.-]+`.
#[derive(Debug, Clone)]
pub struct ServiceName(pub String);

impl Scalar for ServiceName {
    const EXPECTING: &'static str = "a service name ([A-Za-z0-9_.-]+)";
    fn from_str(s: &str) -> Result<Self, String> {
        if is_service_name(s) {
            Ok(ServiceName(s.to_owned()))
        } else {
            Err(format!("bad service name {s:?}: expected [A-Za-z0-9_.-]+"))
        }
    }
    fn from_u64(n: u64) -> Result<Self, String> {
        Ok(ServiceName(n.to_string()))
    }
}

pub fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests;
