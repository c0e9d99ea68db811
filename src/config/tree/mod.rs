//! The first, generic walk over a file's YAML: duplicate keys (at the key),
//! the nesting and node-count bounds (no billion laughs), bare octal modes,
//! and, when asked (`index`: a load with an error or a note to place), an
//! index of where each key and string value sits, so that what is found
//! after deserializing can still name a line and column.
//!
//! serde_yaml exposes positions only on errors; but a string scalar it can
//! borrow is a slice of the input text, so its offset is where it was written.
//!
//! Here the walk and its positions; `keys` the duplicate-key check of
//! each mapping; `flow` the bracket bound checked on the text first.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

use super::raw;
use super::replay::Event;

mod flow;
mod keys;

pub use flow::{MAX_FLOW_BRACKETS, flow_too_deep};
use keys::{Key, Seen};

/// Collections nested deeper than this are refused; a service needs four.
pub const MAX_DEPTH: usize = 16;
/// Nodes a file may expand to (aliases included), on top of one per byte
/// of text: a file without aliases never comes near it, an alias bomb stops
/// early.
pub const EXTRA_NODES: usize = 10_000;

/// Separates path components in index keys (service names may hold dots).
const SEP: char = '\u{0}';

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Where keys and string values were written, by path.
#[derive(Debug, Default)]
pub struct Index {
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
}

/// Builds an index key from path components.
pub fn path_key(path: &[&str]) -> String {
    let mut s = String::new();
    for p in path {
        s.push(SEP);
        s.push_str(p);
    }
    s
}

impl Index {
    /// Where the key at `path` was written (e.g. `["services", "echo"]`).
    pub fn key(&self, path: &[&str]) -> Option<Pos> {
        self.keys.get(&path_key(path)).copied()
    }

    /// Where the value at `path` was written: the string itself, the first
    /// string of a list, or else its key.
    pub fn value(&self, path: &[&str]) -> Option<Pos> {
        let k = path_key(path);
        self.values
            .get(&k)
            .or_else(|| self.values.get(&format!("{k}{SEP}0")))
            .or_else(|| self.keys.get(&k))
            .copied()
    }
}

/// What the walk learned about one document.
#[derive(Debug, Default)]
pub struct Walked<'de> {
    pub index: Index,
    /// The root is null (`---` alone, `~`): a file without services.
    pub root_is_null: bool,
    /// Positions of bare (unquoted) numbers under `umask` / `socket_mode`.
    /// With the path of each: `["services", NAME, "umask"]`.
    pub bare_octals: Vec<(Pos, Vec<String>)>,
    /// Every node as serde_yaml presented it, for `replay` (left empty
    /// with `record`).
    pub events: Vec<Event<'de>>,
}

/// Walks one document. An `Err` is the first structural problem; its
/// location comes from serde_yaml. With `record`, the index of where each
/// key and string value sits is filled in; without, it stays empty (most
/// loads have no error after the walk to place, and the index costs a
/// string and a hash insert per node: `index` builds it when one does),
/// and the nodes are recorded for `replay` instead.
pub fn walk<'de>(
    doc: serde_yaml::Deserializer<'de>,
    text: &'de str,
    record: bool,
) -> Result<Walked<'de>, serde_yaml::Error> {
    let mut st = State {
        text,
        record,
        line_starts: OnceCell::new(),
        nodes: 0,
        limit: EXTRA_NODES + text.len(),
        out: Walked {
            // About what a file of services needs (a node per ten bytes
            // or so), so that the recording is seldom copied as it grows.
            events: Vec::with_capacity(if record { 0 } else { text.len() / 8 }),
            ..Walked::default()
        },
        char_checkpoints: OnceCell::new(),
        keys: Vec::new(),
    };
    let root = Node {
        st: &mut st,
        depth: 0,
        path: String::new(),
        place: Place::Root,
        octal: None,
    }
    .deserialize(doc)?;
    st.out.root_is_null = root;
    Ok(st.out)
}

/// The index of a text whose walk already succeeded without `record`.
pub fn index(text: &str) -> Index {
    serde_yaml::Deserializer::from_str(text)
        .next()
        .and_then(|doc| walk(doc, text, true).ok())
        .map(|w| w.index)
        .unwrap_or_default()
}

/// The position of the first node of a document: used to point at a
/// second document, which is refused.
pub fn first_node(doc: serde_yaml::Deserializer<'_>) -> Option<Pos> {
    struct Stop;
    impl<'de> Visitor<'de> for Stop {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("nothing")
        }
    }
    let err = de::Deserializer::deserialize_any(doc, Stop).err()?;
    let loc = err.location()?;
    Some(Pos {
        line: loc.line(),
        column: loc.column(),
    })
}

fn line_starts(text: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    v
}

struct State<'de> {
    text: &'de str,
    /// Whether to fill in `out.index` (and not `out.events`).
    record: bool,
    /// Where each line starts; built at the first position asked for
    /// (most walks need none).
    line_starts: OnceCell<Vec<usize>>,
    nodes: usize,
    limit: usize,
    out: Walked<'de>,
    /// Characters before every `CHECKPOINT`-th byte (built likewise).
    char_checkpoints: OnceCell<Vec<usize>>,
    /// The keys of the mappings being walked (see `Seen`).
    keys: Vec<(Cow<'de, str>, Option<usize>)>,
}

const CHECKPOINT: usize = 256;

/// Characters in UTF-8 bytes (any slice, whole characters or not): the
/// bytes that are not continuation bytes.
fn count_chars(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xc0 != 0x80).count()
}

fn char_checkpoints(text: &str) -> Vec<usize> {
    let mut v = vec![0];
    let mut n = 0;
    for chunk in text.as_bytes().chunks(CHECKPOINT) {
        n += count_chars(chunk);
        v.push(n);
    }
    v
}

impl<'de> State<'de> {
    /// The offset of `s` in the text, when `s` is borrowed from it.
    fn offset(&self, s: &str) -> Option<usize> {
        let base = self.text.as_ptr() as usize;
        let p = s.as_ptr() as usize;
        (p >= base && p + s.len() <= base + self.text.len()).then(|| p - base)
    }

    fn pos(&self, offset: usize) -> Pos {
        let line_starts = self.line_starts.get_or_init(|| line_starts(self.text));
        let line = line_starts.partition_point(|&s| s <= offset);
        let start = line_starts[line - 1];
        // libyaml counts columns in characters.
        let column = self.chars_before(offset) - self.chars_before(start) + 1;
        Pos { line, column }
    }

    /// Characters in `text[..offset]`, from the checkpoints: counting from
    /// the line start at every scalar is quadratic in the length of a line
    /// (a 1 MiB one-line flow file took seconds).
    fn chars_before(&self, offset: usize) -> usize {
        let k = offset / CHECKPOINT;
        let checkpoints = self
            .char_checkpoints
            .get_or_init(|| char_checkpoints(self.text));
        checkpoints[k] + count_chars(&self.text.as_bytes()[k * CHECKPOINT..offset])
    }
    /// Records one node for `replay` (not with `record`).
    fn event(&mut self, e: Event<'de>) {
        if !self.record {
            self.out.events.push(e);
        }
    }

    /// Records the start of a collection; `close` fills in its end.
    fn open(&mut self, e: Event<'de>) -> usize {
        let at = self.out.events.len();
        self.event(e);
        at
    }

    /// Fills in the end (and a mapping's entries) of the collection
    /// `open` started at `at`.
    fn close(&mut self, at: usize, children: usize) {
        if self.record {
            return;
        }
        let n = self.out.events.len();
        match self.out.events.get_mut(at) {
            Some(Event::Seq { end }) => *end = n,
            Some(Event::Map { end, entries }) => (*end, *entries) = (n, children),
            _ => {}
        }
    }

    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        self.nodes += 1;
        if self.nodes > self.limit {
            return Err(E::custom(format_args!(
                "{}the document expands to more than {} nodes (aliases?)",
                raw::MSG,
                self.limit
            )));
        }
        Ok(())
    }
}

/// Where a node sits, as far as the bare octal rule cares: whether its
/// keys are service fields. The rule matches the index paths
/// `\0services\0NAME` and `\0defaults` (see `Index`), whatever the keys
/// leading there hold.
#[derive(Clone, Copy)]
enum Place<'a> {
    Root,
    /// The value of the top-level key `services`.
    Services,
    /// A service's mapping (or `defaults`): the one or two keys leading
    /// to it, to build a bare octal's path from.
    Body(&'a str, Option<&'a str>),
    Other,
}

impl<'a> Place<'a> {
    /// The place of a child of this node under the key (or index) `k`.
    fn child(self, k: &'a str) -> Place<'a> {
        match self {
            Place::Root if k == "services" => Place::Services,
            Place::Root
                if k == "defaults"
                    || k.split_once(SEP)
                        .is_some_and(|(a, b)| a == "services" && !b.contains(SEP)) =>
            {
                Place::Body(k, None)
            }
            Place::Services if !k.contains(SEP) => Place::Body("services", Some(k)),
            _ => Place::Other,
        }
    }
}

/// The value of `umask` or `socket_mode` in a service's mapping.
#[derive(Clone, Copy)]
struct OctalAt<'a> {
    body: (&'a str, Option<&'a str>),
    field: &'a str,
}

impl OctalAt<'_> {
    /// The field's path, `["services", NAME, "umask"]`, cut from its index
    /// path as the index would hold it.
    fn path(&self) -> Vec<String> {
        let mut p = format!("{SEP}{}", self.body.0);
        if let Some(name) = self.body.1 {
            p.push(SEP);
            p.push_str(name);
        }
        p.push(SEP);
        p.push_str(self.field);
        p.split(SEP).skip(1).map(str::to_owned).collect()
    }
}

/// One node; `deserialize` returns whether it was null.
struct Node<'a, 'de> {
    st: &'a mut State<'de>,
    depth: usize,
    /// The node's index path (`\0services\0NAME\0exec\00`); built only
    /// with `record`, empty otherwise.
    path: String,
    place: Place<'a>,
    /// Set for the value of `umask` or `socket_mode` of a service.
    octal: Option<OctalAt<'a>>,
}

impl<'de> DeserializeSeed<'de> for Node<'_, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Node<'_, 'de> {
    fn scalar<E: de::Error>(self, e: Event<'de>) -> Result<bool, E> {
        self.st.count()?;
        self.st.event(e);
        Ok(false)
    }

    /// A child's index path, with `record`.
    fn child_path(&self, k: impl fmt::Display) -> String {
        if self.st.record {
            format!("{}{SEP}{k}", self.path)
        } else {
            String::new()
        }
    }

    fn nest<E: de::Error>(&mut self) -> Result<(), E> {
        self.st.count()?;
        if self.depth + 1 > MAX_DEPTH {
            return Err(E::custom(format_args!(
                "{}nested deeper than {MAX_DEPTH} levels",
                raw::MSG
            )));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Node<'_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.scalar(Event::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.scalar(Event::I64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.scalar(Event::U64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.scalar(Event::F64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.st.count()?;
        if !self.st.record {
            self.st.event(Event::Str(v.to_owned()));
        }
        Ok(false)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<bool, E> {
        self.st.count()?;
        self.st.event(Event::Borrowed(v));
        if let Some(off) = self.st.offset(v) {
            // A quoted scalar's text starts right after its quote (the node
            // starts at the quote); a plain one cannot follow a quote.
            let quoted = off > 0 && matches!(self.st.text.as_bytes()[off - 1], b'"' | b'\'');
            let at = if quoted { off - 1 } else { off };
            if let Some(octal) = self.octal
                && !quoted
                && v.starts_with(|c: char| c.is_ascii_digit())
            {
                let pos = self.st.pos(at);
                self.st.out.bare_octals.push((pos, octal.path()));
            }
            if self.st.record {
                let pos = self.st.pos(at);
                self.st.out.index.values.insert(self.path, pos);
            }
        }
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.st.count()?;
        self.st.event(Event::Unit);
        Ok(true)
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        self.st.count()?;
        self.st.event(Event::Void);
        Ok(true)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(de::Error::custom(format_args!(
            "{}YAML tags (!name) are not supported",
            raw::MSG
        )))
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<bool, A::Error> {
        self.nest()?;
        let start = self.st.open(Event::Seq { end: 0 });
        let mut i = 0usize;
        loop {
            // Only the elements of a list under `services` are places
            // that need their index as a name.
            let name = match self.place {
                Place::Services => i.to_string(),
                _ => String::new(),
            };
            let node = Node {
                path: self.child_path(i),
                st: &mut *self.st,
                depth: self.depth + 1,
                place: self.place.child(&name),
                octal: None,
            };
            if seq.next_element_seed(node)?.is_none() {
                break;
            }
            i += 1;
        }
        self.st.close(start, i);
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<bool, A::Error> {
        self.nest()?;
        let start = self.st.open(Event::Map { end: 0, entries: 0 });
        let mut seen = Seen::new(self.st);
        let mut entries = 0;
        loop {
            let key = Key {
                st: &mut *self.st,
                parent: &self.path,
                seen: &mut seen,
            };
            let Some(k) = map.next_key_seed(key)? else {
                break;
            };
            // Only the service fields (`services.NAME.umask`,
            // `defaults.umask`): an `env` variable may be called umask.
            let octal = match self.place {
                Place::Body(a, b) if k == "umask" || k == "socket_mode" => Some(OctalAt {
                    body: (a, b),
                    field: &k,
                }),
                _ => None,
            };
            let node = Node {
                path: self.child_path(&k),
                st: &mut *self.st,
                depth: self.depth + 1,
                place: self.place.child(&k),
                octal,
            };
            map.next_value_seed(node)?;
            entries += 1;
        }
        seen.end(self.st);
        self.st.close(start, entries);
        Ok(false)
    }
}
