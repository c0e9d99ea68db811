//! The serde mirror of one configuration file. Every context-free check
//! (address forms, durations, octal strings, enums, CIDRs, names) runs inside
//! a visitor, so serde_yaml pins the error on the offending value; checks that
//! need the system or other fields are left to `validate`.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

mod listen;
mod scalar;
mod values;

pub use listen::*;
pub use scalar::*;
pub use values::*;

use crate::proxy::Accept;
use crate::service::{Builtin, Cidr, ExitMatch, PassMode, Rate, SocketType, StartMode, StderrMode};

/// Marks the start of our own messages, so the loader can cut off the path
/// serde_yaml puts in front of them (see `message.rs`, `clean_message`).
pub const MSG: char = '\u{1}';

pub(super) fn custom<E: de::Error>(msg: impl fmt::Display) -> E {
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
/// where it was lets the loader find the next one (`parse.rs`, `parse`).
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

    /// Notes `path` as `current`, reusing its strings: this runs for
    /// every key of a file.
    fn reading(&self, path: &[&str]) {
        let mut c = self.current.borrow_mut();
        c.truncate(path.len());
        for (i, p) in path.iter().enumerate() {
            match c.get_mut(i) {
                Some(s) if s == p => {}
                Some(s) => {
                    s.clear();
                    s.push_str(p);
                }
                None => c.push(p.to_string()),
            }
        }
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
        // `parent` has at most two parts (`["services", NAME]`).
        let mut parts = [""; 3];
        parts[..self.parent.len()].copy_from_slice(self.parent);
        parts[self.parent.len()] = v;
        let path = &parts[..=self.parent.len()];
        match (self.parent.is_empty(), v) {
            (false, _) | (true, "defaults") => self.skip.reading(path),
            (true, _) => self.skip.reading(&[]),
        }
        if self.skip.has(path) {
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
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(name) = map.next_key_seed(NameKey(self.0))? {
            match name {
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
                Some(name) => {
                    // Read in place: a RawService is large, and there may
                    // be thousands.
                    out.push((name, RawService::default()));
                    let (name, raw) = out.last_mut().expect("just pushed");
                    map.next_value_seed(ServiceInto {
                        seed: ServiceSeed {
                            skip: self.0,
                            path: ["services", name],
                        },
                        out: raw,
                    })?;
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

    /// Reads one service's mapping into `out` (all unset).
    fn fill<'de, A: MapAccess<'de>>(
        &self,
        out: &mut RawService,
        mut map: A,
    ) -> Result<(), A::Error> {
        let mut merged = Vec::new();
        while let Some(field) = map.next_key_seed(FieldKey {
            fields: FIELDS,
            merge: true,
            skip: self.skip,
            parent: self.parent(),
        })? {
            match field {
                Some(MERGE_KEY) => merged = map.next_value_seed(Merged(self))?,
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
        Ok(())
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
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawService, A::Error> {
        let mut out = RawService::default();
        self.fill(&mut out, map)?;
        Ok(out)
    }
}

/// A service read into a given place (see `ServiceSeed`).
struct ServiceInto<'a, 'b> {
    seed: ServiceSeed<'a>,
    out: &'b mut RawService,
}

impl<'de> DeserializeSeed<'de> for ServiceInto<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_struct("RawService", FIELDS, self)
    }
}

impl<'de> Visitor<'de> for ServiceInto<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Visitor::<'de>::expecting(&self.seed, f)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.seed.fill(self.out, map)
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
