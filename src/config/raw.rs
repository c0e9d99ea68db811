//! The serde mirror of one configuration file. Every context-free check
//! (address forms, durations, octal strings, enums, CIDRs, names) runs inside
//! a visitor, so serde_yaml pins the error on the offending value; checks that
//! need the system or other fields are left to `validate`.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::proxy::Accept;
use crate::service::{
    Address, Builtin, Cidr, ExitMatch, PassMode, Rate, RlimValue, Rlimit, RlimitResource,
    SocketType, StartMode, StderrMode,
};

/// Marks the start of our own messages, so the loader can cut off the path
/// serde_yaml puts in front of them (see `mod.rs`, `clean_message`).
pub const MSG: char = '\u{1}';

fn custom<E: de::Error>(msg: impl fmt::Display) -> E {
    E::custom(format_args!("{MSG}{msg}"))
}

/// One file: `defaults` and `services`, nothing else.
#[derive(Debug, Default)]
pub struct RawFile {
    pub defaults: Option<RawService>,
    pub services: Option<Services>,
}

/// `services:` in file order.
#[derive(Debug, Default)]
pub struct Services(pub Vec<(String, RawService)>);

/// Declares [`RawService`], one `Option` per field, and [`FIELDS`], its
/// field names in order (the list an unknown-field error offers).
macro_rules! raw_service {
    ($($field:ident: $ty:ty,)*) => {
        /// One service (or `defaults`) as written: every field optional,
        /// so that `validate` can tell "unset" (inherit, or the default)
        /// from a value.
        #[derive(Debug, Default)]
        pub struct RawService {
            $(pub $field: Option<$ty>,)*
            /// `user` came through a merge key, not written in the mapping
            /// itself: it cannot make the service root (the root rule).
            pub user_merged: bool,
            /// The same for `group`: it cannot make the service's group root.
            pub group_merged: bool,
        }

        /// Every service field, in the order the messages list them.
        pub const FIELDS: &[&str] = &[$(stringify!($field)),*];

        impl RawService {
            /// Takes from `other` every field this one leaves unset (a
            /// YAML merge key: keys written here win).
            fn fill_from(&mut self, other: RawService) {
                if self.user.is_none() && (other.user.is_some() || other.user_merged) {
                    self.user_merged = true;
                }
                if self.group.is_none() && (other.group.is_some() || other.group_merged) {
                    self.group_merged = true;
                }
                $(if self.$field.is_none() {
                    self.$field = other.$field;
                })*
            }

            /// Reads the value of `field` (one of FIELDS); null is unset.
            fn set<'de, A: MapAccess<'de>>(&mut self, field: &str, map: &mut A) -> Result<(), A::Error> {
                if field == "stderr" {
                    self.stderr = Some(map.next_value::<StderrField>()?.0);
                    return Ok(());
                }
                match field {
                    $(stringify!($field) => self.$field = map.next_value::<Option<$ty>>()?,)*
                    _ => unreachable!("the key seed admits only FIELDS"),
                }
                Ok(())
            }
        }
    };
}

raw_service! {
    listen: OneOrMany<ListenEntry>,
    socket: SocketType,
    wait: bool,
    exec: OneOrMany<Arg>,
    builtin: Builtin,
    user: IdRef,
    group: IdRef,
    groups: OneOrMany<IdRef>,
    cwd: AbsPath,
    chroot: AbsPath,
    umask: Octal,
    nice: Nice,
    env: Env,
    stderr: StderrMode,
    max_connections: Count,
    max_per_source: Count,
    rate: Rate,
    only_from: OneOrMany<Net>,
    deny_from: OneOrMany<Net>,
    timeout: Dur,
    kill_grace: Dur,
    idle_timeout: Dur,
    rlimits: Rlimits,
    backlog: Count,
    reuse_port: bool,
    v6only: bool,
    keepalive: bool,
    nodelay: bool,
    socket_mode: Octal,
    socket_user: IdRef,
    socket_group: IdRef,
    enabled: bool,
    proxy_protocol: Accept,
    proxy_from: OneOrMany<Cidr>,
    proxy_timeout: Dur,
    argv0: Arg,
    pass_env: OneOrMany<EnvKey>,
    refuse_message: Arg,
    success_status: OneOrMany<ExitMatch>,
    no_new_privs: bool,
    private_network: bool,
    private_tmp: bool,
    read_only_paths: OneOrMany<AbsPath>,
    writable_paths: OneOrMany<AbsPath>,
    inaccessible_paths: OneOrMany<AbsPath>,
    capabilities: OneOrMany<Capability>,
    pass: PassMode,
    fd_names: OneOrMany<FdName>,
    start: StartMode,
}

/// Parts of a file the deserializer passes over, by path:
/// `["services", NAME]`, `["services", NAME, FIELD]`, `["defaults"]`,
/// `["defaults", FIELD]`. serde stops at a file's first error; skipping
/// where it was lets the loader find the next one (`mod.rs`, `parse`).
#[derive(Debug, Default)]
pub struct Skip {
    paths: HashSet<Vec<String>>,
    /// The service field (or service, or `defaults`) being read: where an
    /// error that stops serde is, whatever position it reports (a value
    /// replayed from an alias reports the anchor's). Empty at the top
    /// level, where nothing can be skipped.
    current: std::cell::RefCell<Vec<String>>,
}

impl Skip {
    /// Adds `path`; false when it was skipped already.
    pub fn insert(&mut self, path: Vec<String>) -> bool {
        self.paths.insert(path)
    }

    pub fn paths(&self) -> impl Iterator<Item = &[String]> {
        self.paths.iter().map(Vec::as_slice)
    }

    /// What was being read when deserializing stopped (see `current`).
    pub fn current(&self) -> Vec<String> {
        self.current.borrow().clone()
    }

    fn reading(&self, path: &[&str]) {
        let mut c = self.current.borrow_mut();
        c.clear();
        c.extend(path.iter().map(|p| p.to_string()));
    }

    fn has(&self, path: &[&str]) -> bool {
        self.paths
            .iter()
            .any(|p| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| a == b))
    }
}

impl RawFile {
    /// Deserializes one file, passing over what `skip` names.
    pub fn deserialize_skipping<'de, D: Deserializer<'de>>(
        d: D,
        skip: &Skip,
    ) -> Result<RawFile, D::Error> {
        d.deserialize_struct("RawFile", &["defaults", "services"], FileVisitor(skip))
    }
}

struct FileVisitor<'a>(&'a Skip);

impl<'de> Visitor<'de> for FileVisitor<'_> {
    type Value = RawFile;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with the keys defaults and services")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFile, A::Error> {
        const TOP: &[&str] = &["defaults", "services"];
        let mut out = RawFile::default();
        while let Some(key) = map.next_key_seed(FieldKey {
            fields: TOP,
            merge: false,
            skip: self.0,
            parent: &[],
        })? {
            match key {
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
                Some("defaults") => {
                    out.defaults = map.next_value_seed(Nullable(ServiceSeed {
                        skip: self.0,
                        path: ["defaults", ""],
                    }))?;
                }
                Some(_) => out.services = map.next_value_seed(Nullable(ServicesSeed(self.0)))?,
            }
        }
        Ok(out)
    }
}

/// A mapping key that must be one of `fields` (or, with `merge`, the YAML
/// merge key `<<`); `None` for one to skip.
struct FieldKey<'a> {
    fields: &'static [&'static str],
    merge: bool,
    skip: &'a Skip,
    /// The mapping's own path (`["services", NAME]`, `["defaults"]`).
    parent: &'a [&'a str],
}

/// The YAML merge key: `<<: *common` (or a list of aliases) gives a service
/// every field of the mapping(s) it does not set itself.
const MERGE_KEY: &str = "<<";

impl<'de> DeserializeSeed<'de> for FieldKey<'_> {
    type Value = Option<&'static str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for FieldKey<'_> {
    type Value = Option<&'static str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let mut path = self.parent.to_vec();
        path.push(v);
        match (self.parent.is_empty(), v) {
            (false, _) | (true, "defaults") => self.skip.reading(&path),
            (true, _) => self.skip.reading(&[]),
        }
        if self.skip.has(&path) {
            return Ok(None);
        }
        if self.merge && v == MERGE_KEY {
            return Ok(Some(MERGE_KEY));
        }
        match self.fields.iter().find(|f| **f == v) {
            Some(f) => Ok(Some(f)),
            None => Err(E::unknown_field(v, self.fields)),
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }
}

/// `Option<T>` for a seed: null is `None`.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or nothing")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// `services:`: names to services, in file order.
struct ServicesSeed<'a>(&'a Skip);

impl<'de> DeserializeSeed<'de> for ServicesSeed<'_> {
    type Value = Services;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Services, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ServicesSeed<'_> {
    type Value = Services;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of service names to services")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Services, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key_seed(NameKey(self.0))? {
            match name {
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
                Some(name) => {
                    let raw = map.next_value_seed(ServiceSeed {
                        skip: self.0,
                        path: ["services", &name],
                    })?;
                    out.push((name, raw));
                }
            }
        }
        Ok(Services(out))
    }
}

/// A service name key; `None` for a service to skip.
struct NameKey<'a>(&'a Skip);

impl<'de> DeserializeSeed<'de> for NameKey<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl NameKey<'_> {
    /// A key that is no string: refused, and no name a later reading could
    /// skip, so the rest of the file goes unread.
    fn not_a_name<E>(self, r: Result<ServiceName, E>) -> Result<Option<String>, E> {
        self.0.reading(&[]);
        r.map(|n| Some(n.0))
    }
}

impl<'de> Visitor<'de> for NameKey<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ServiceName::EXPECTING)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.0.reading(&["services", v]);
        if self.0.has(&["services", v]) {
            return Ok(None);
        }
        ScalarVisitor::<ServiceName>(PhantomData)
            .visit_str(v)
            .map(|n| Some(n.0))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.not_a_name(ScalarVisitor::<ServiceName>(PhantomData).visit_i64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.not_a_name(ScalarVisitor::<ServiceName>(PhantomData).visit_f64(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.not_a_name(ScalarVisitor::<ServiceName>(PhantomData).visit_bool(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.not_a_name(ScalarVisitor::<ServiceName>(PhantomData).visit_unit())
    }
}

/// One service's (or `defaults`') fields. `path` is `["services", NAME]`
/// or `["defaults", ""]` (only the first part counts then).
struct ServiceSeed<'a> {
    skip: &'a Skip,
    path: [&'a str; 2],
}

impl ServiceSeed<'_> {
    fn parent(&self) -> &[&str] {
        if self.path[0] == "defaults" {
            &self.path[..1]
        } else {
            &self.path
        }
    }
}

impl<'de> DeserializeSeed<'de> for ServiceSeed<'_> {
    type Value = RawService;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawService, D::Error> {
        d.deserialize_struct("RawService", FIELDS, self)
    }
}

impl<'de> Visitor<'de> for ServiceSeed<'_> {
    type Value = RawService;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of service fields (listen, exec, user, ...)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawService, A::Error> {
        let mut out = RawService::default();
        let mut merged = Vec::new();
        while let Some(field) = map.next_key_seed(FieldKey {
            fields: FIELDS,
            merge: true,
            skip: self.skip,
            parent: self.parent(),
        })? {
            match field {
                Some(MERGE_KEY) => merged = map.next_value_seed(Merged(&self))?,
                Some(f) => out.set(f, &mut map)?,
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        // The first mapping of a merge list wins over the later ones.
        for m in merged {
            out.fill_from(m);
        }
        Ok(out)
    }
}

/// The value of a merge key: one mapping of service fields, or a list.
struct Merged<'a, 'b>(&'b ServiceSeed<'a>);

impl<'de> DeserializeSeed<'de> for Merged<'_, '_> {
    type Value = Vec<RawService>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Merged<'_, '_> {
    type Value = Vec<RawService>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of service fields to merge (<<: *name), or a list of them")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let seed = ServiceSeed {
            skip: self.0.skip,
            path: self.0.path,
        };
        seed.visit_map(map).map(|m| vec![m])
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(m) = seq.next_element_seed(ServiceSeed {
            skip: self.0.skip,
            path: self.0.path,
        })? {
            out.push(m);
        }
        Ok(out)
    }
}

/// A scalar parsed from whatever YAML scalar shape it came in. The default
/// methods refuse the shape with a message naming what was expected.
pub trait Scalar: Sized {
    const EXPECTING: &'static str;
    fn from_str(s: &str) -> Result<Self, String> {
        Err(format!(
            "expected {}, found the string {s:?}",
            Self::EXPECTING
        ))
    }
    fn from_u64(n: u64) -> Result<Self, String> {
        Err(format!(
            "expected {}, found the number {n}",
            Self::EXPECTING
        ))
    }
    fn from_i64(n: i64) -> Result<Self, String> {
        match u64::try_from(n) {
            Ok(u) => Self::from_u64(u),
            Err(_) => Err(format!(
                "expected {}, found the number {n}",
                Self::EXPECTING
            )),
        }
    }
    fn from_f64(n: f64) -> Result<Self, String> {
        Err(format!(
            "expected {}, found the number {n}",
            Self::EXPECTING
        ))
    }
    fn from_bool(b: bool) -> Result<Self, String> {
        Err(format!("expected {}, found {b}", Self::EXPECTING))
    }
}

struct ScalarVisitor<T>(PhantomData<T>);

impl<'de, T: Scalar> Visitor<'de> for ScalarVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::from_str(v).map_err(custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::from_u64(v).map_err(custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_i64(v).map_err(custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::from_f64(v).map_err(custom)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        T::from_bool(v).map_err(custom)
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Err(custom(format_args!(
            "expected {}, found nothing",
            T::EXPECTING
        )))
    }
}

macro_rules! scalar_deserialize {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(ScalarVisitor::<$t>(PhantomData))
            }
        }
    )*};
}

scalar_deserialize!(
    PassMode,
    StartMode,
    FdName,
    Accept,
    Address,
    Net,
    SocketType,
    Builtin,
    StderrMode,
    Cidr,
    Rate,
    Arg,
    IdRef,
    AbsPath,
    Octal,
    Nice,
    Count,
    Dur,
    RlimitResource,
    RlimitSpec,
    EnvKey,
    ServiceName,
    ExitMatch,
    Capability
);

/// A value or a list of values (`listen: 7007` or `listen: [7007, 7008]`).
#[derive(Debug, Clone)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Scalar + Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Scalar + Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} or a list of them", T::EXPECTING)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element::<T>()? {
                    out.push(x);
                }
                Ok(OneOrMany(out))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ScalarVisitor::<T>(PhantomData).visit_str(v).map(one)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                ScalarVisitor::<T>(PhantomData).visit_u64(v).map(one)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                ScalarVisitor::<T>(PhantomData).visit_i64(v).map(one)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                ScalarVisitor::<T>(PhantomData).visit_f64(v).map(one)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                ScalarVisitor::<T>(PhantomData).visit_bool(v).map(one)
            }
        }
        fn one<T>(x: T) -> OneOrMany<T> {
            OneOrMany(vec![x])
        }
        d.deserialize_any(V::<T>(PhantomData))
    }
}

fn no_nul(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err("contains a NUL byte".into())
    } else {
        Ok(())
    }
}

impl Scalar for Address {
    const EXPECTING: &'static str =
        "an address: PORT, :PORT, *:PORT, IPV4:PORT, [IPV6]:PORT, /unix/path or @abstract";
    fn from_u64(n: u64) -> Result<Self, String> {
        port(&n.to_string()).map(Address::AnyPort)
    }
    fn from_str(s: &str) -> Result<Self, String> {
        no_nul(s)?;
        let bad = || {
            format!(
                "bad address {s:?}: expected PORT, :PORT, *:PORT, IPV4:PORT, [IPV6]:PORT, /unix/path or @abstract"
            )
        };
        if let Some(name) = s.strip_prefix('@') {
            // sun_path is 108 bytes, one of which is the leading NUL.
            if name.is_empty() || name.len() > 107 {
                return Err(format!(
                    "bad abstract socket name {s:?}: 1 to 107 bytes after @"
                ));
            }
            return Ok(Address::UnixAbstract(name.as_bytes().to_vec()));
        }
        if s.starts_with('/') {
            // sun_path holds 107 bytes plus the terminating NUL.
            if s.len() > 107 {
                return Err(format!("unix socket path {s:?} is longer than 107 bytes"));
            }
            return Ok(Address::UnixPath(PathBuf::from(s)));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
            return port(s).map(Address::AnyPort);
        }
        if let Some(p) = s.strip_prefix("*:").or_else(|| s.strip_prefix(':')) {
            return port(p).map(Address::AnyPort);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, p) = rest.split_once("]:").ok_or_else(bad)?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| bad())?;
            return Ok(Address::Inet(SocketAddr::new(IpAddr::V6(ip), port(p)?)));
        }
        if is_service_word(s) {
            return port(s).map(Address::AnyPort).map_err(|_| {
                format!(
                    "{} (or a service name of /etc/services, which {s:?} is not)",
                    bad()
                )
            });
        }
        let (ip, p) = s.rsplit_once(':').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        Ok(Address::Inet(SocketAddr::new(IpAddr::V4(ip), port(p)?)))
    }
}

/// One entry of `listen:`: an address, or a mapping `{address: ADDR,
/// socket: TYPE}` that gives that address its own socket type (wait mode
/// only, checked by `validate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenEntry {
    pub addr: Address,
    pub socket: Option<SocketType>,
    /// The service name the port was written as (`listen: finger`), which
    /// `--check` shows resolved.
    pub port_name: Option<String>,
}

impl Scalar for ListenEntry {
    const EXPECTING: &'static str = "an address (PORT, :PORT, *:PORT, IPV4:PORT, [IPV6]:PORT, /unix/path, @abstract) or a mapping {address: ADDR, socket: TYPE}";
    fn from_u64(n: u64) -> Result<Self, String> {
        Address::from_u64(n).map(ListenEntry::plain)
    }
    fn from_str(s: &str) -> Result<Self, String> {
        let addr = Address::from_str(s)?;
        let last = s.rsplit(':').next().unwrap_or(s);
        let port_name = (addr.port().is_some() && is_service_word(last)).then(|| last.to_owned());
        Ok(ListenEntry {
            port_name,
            ..ListenEntry::plain(addr)
        })
    }
}

impl ListenEntry {
    fn plain(addr: Address) -> ListenEntry {
        ListenEntry {
            addr,
            socket: None,
            port_name: None,
        }
    }
}

impl<'de> Deserialize<'de> for ListenEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListenEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ListenEntry::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ListenEntry, E> {
                ScalarVisitor::<ListenEntry>(PhantomData).visit_str(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ListenEntry, E> {
                ScalarVisitor::<ListenEntry>(PhantomData).visit_u64(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ListenEntry, E> {
                ScalarVisitor::<ListenEntry>(PhantomData).visit_i64(v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ListenEntry, E> {
                ScalarVisitor::<ListenEntry>(PhantomData).visit_f64(v)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ListenEntry, E> {
                ScalarVisitor::<ListenEntry>(PhantomData).visit_bool(v)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListenEntry, A::Error> {
                let (mut addr, mut socket) = (None, None);
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "address" if addr.is_none() => addr = Some(map.next_value::<Address>()?),
                        "socket" if socket.is_none() => {
                            socket = Some(map.next_value::<SocketType>()?)
                        }
                        "address" | "socket" => {
                            return Err(custom(format_args!(
                                "duplicate key {k:?} in a listen entry"
                            )));
                        }
                        _ => return Err(de::Error::unknown_field(&k, &["address", "socket"])),
                    }
                }
                let addr = addr.ok_or_else(|| {
                    custom::<A::Error>(
                        "a listen entry mapping needs address: (and may have socket:)",
                    )
                })?;
                Ok(ListenEntry {
                    socket,
                    ..ListenEntry::plain(addr)
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// One name of `fd_names:` (a `LISTEN_FDNAMES` entry): no `:`, which
/// separates them, and nothing a C string cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdName(pub String);

impl Scalar for FdName {
    const EXPECTING: &'static str = "a socket name (printable, at most 255 bytes, no ':')";
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains(':') {
            return Err(format!(
                "bad fd name {s:?}: a name cannot contain ':' (it separates the names in LISTEN_FDNAMES)"
            ));
        }
        if s.is_empty() || s.len() > 255 || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "bad fd name {s:?}: 1 to 255 printable bytes without spaces"
            ));
        }
        Ok(FdName(s.to_owned()))
    }
    fn from_u64(n: u64) -> Result<Self, String> {
        Ok(FdName(n.to_string()))
    }
}

impl Scalar for PassMode {
    const EXPECTING: &'static str = "one of stdio, listen_fds";
    fn from_str(s: &str) -> Result<Self, String> {
        let all = [PassMode::Stdio, PassMode::ListenFds];
        one_of(s, &all, PassMode::as_str, "pass mode")
    }
}

impl Scalar for StartMode {
    const EXPECTING: &'static str = "one of on_demand, at_start";
    fn from_str(s: &str) -> Result<Self, String> {
        let all = [StartMode::OnDemand, StartMode::AtStart];
        one_of(s, &all, StartMode::as_str, "start mode")
    }
}

fn port(s: &str) -> Result<u16, String> {
    if is_service_word(s) {
        return crate::services::port_by_name(s).ok_or_else(|| {
            format!("bad port {s:?}: not a number, and no service of that name in /etc/services")
        });
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad port {s:?}: expected a number from 0 to 65535"));
    }
    s.parse()
        .map_err(|_| format!("bad port {s:?}: expected a number from 0 to 65535"))
}

fn one_of<T: Copy>(
    s: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
) -> Result<T, String> {
    all.iter().copied().find(|&x| name(x) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|&x| name(x)).collect();
        format!("unknown {what} {s:?}, expected one of {}", names.join(", "))
    })
}

impl Scalar for SocketType {
    const EXPECTING: &'static str = "one of stream, dgram, seqpacket";
    fn from_str(s: &str) -> Result<Self, String> {
        let all = [SocketType::Stream, SocketType::Dgram, SocketType::Seqpacket];
        one_of(s, &all, SocketType::as_str, "socket type").map_err(|e| {
            // inetd.conf's protocol column, written where the socket type goes.
            let meant = match s.to_ascii_lowercase().as_str() {
                "tcp" | "tcp4" | "tcp6" => "stream",
                "udp" | "udp4" | "udp6" => "dgram",
                _ => return e,
            };
            format!("{e} (socket is the socket type: {s} is socket: {meant})")
        })
    }
}

/// A word that may name a service of /etc/services (`finger`, `ftp-data`):
/// a letter first, so that no number is ever read as a name.
fn is_service_word(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

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
struct StderrField(StderrMode);

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
