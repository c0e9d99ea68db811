//! Mapping keys in the walk: each checked against the keys of its mapping
//! so far (duplicates are refused at the second one, naming the line of
//! the first) and its position recorded for the index.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::super::raw;
use super::super::replay::Event;
use super::{SEP, State};

/// The keys of one mapping so far, with where each was written: while
/// there are few (a service has a handful), on `State::keys` from `start`
/// on (one list for the whole walk, each mapping's keys above its
/// parent's), in a hash map beyond.
pub(super) struct Seen<'de> {
    start: usize,
    many: Option<HashMap<Cow<'de, str>, Option<usize>>>,
}

/// Keys a mapping may have before `Seen` hashes them.
const FEW_KEYS: usize = 16;

impl<'de> Seen<'de> {
    pub(super) fn new(st: &State<'de>) -> Self {
        Seen {
            start: st.keys.len(),
            many: None,
        }
    }

    /// Adds the key `k`, written at `at`; `Err` with where the first was
    /// written when the mapping has it already.
    fn insert(
        &mut self,
        st: &mut State<'de>,
        k: Cow<'de, str>,
        at: Option<usize>,
    ) -> Result<(), Option<usize>> {
        match &mut self.many {
            None => {
                if let Some((_, first)) = st.keys[self.start..].iter().find(|(s, _)| *s == k) {
                    return Err(*first);
                }
                if st.keys.len() - self.start < FEW_KEYS {
                    st.keys.push((k, at));
                } else {
                    let mut m: HashMap<_, _> = st.keys.drain(self.start..).collect();
                    m.insert(k, at);
                    self.many = Some(m);
                }
            }
            // One hash per key: a large mapping is the list of services.
            Some(m) => match m.entry(k) {
                Entry::Occupied(e) => return Err(*e.get()),
                Entry::Vacant(e) => {
                    e.insert(at);
                }
            },
        }
        Ok(())
    }

    /// The mapping ended: its keys leave the list.
    pub(super) fn end(self, st: &mut State<'de>) {
        st.keys.truncate(self.start);
    }
}

/// A mapping key: checked for duplicates, its position recorded. A key
/// written plainly in the text is borrowed from it, not copied (twice) for
/// each of a large file's keys.
pub(super) struct Key<'a, 'de> {
    pub(super) st: &'a mut State<'de>,
    /// The mapping's index path (with `record`).
    pub(super) parent: &'a str,
    pub(super) seen: &'a mut Seen<'de>,
}

impl<'de> Key<'_, 'de> {
    /// `at`: the key's offset in the text, when it is borrowed from it.
    fn check<E: de::Error>(
        self,
        k: Cow<'de, str>,
        at: Option<usize>,
        e: Event<'de>,
    ) -> Result<Cow<'de, str>, E> {
        self.st.count()?;
        if let Err(first) = self.seen.insert(self.st, k.clone(), at) {
            let at = first.map(|o| format!(" (first at line {})", self.st.pos(o).line));
            return Err(E::custom(format_args!(
                "{}duplicate key \"{k}\"{}",
                raw::MSG,
                at.unwrap_or_default()
            )));
        }
        self.st.event(e);
        if self.st.record
            && let Some(o) = at
        {
            let p = self.st.pos(o);
            self.st
                .out
                .index
                .keys
                .insert(format!("{}{SEP}{k}", self.parent), p);
        }
        Ok(k)
    }
}

impl<'de> DeserializeSeed<'de> for Key<'_, 'de> {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, 'de> {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        // A quoted key starts at its quote, as serde_yaml's positions do.
        let at = self.st.offset(v).map(|o| {
            let quoted = o > 0 && matches!(self.st.text.as_bytes()[o - 1], b'"' | b'\'');
            if quoted { o - 1 } else { o }
        });
        self.check(Cow::Borrowed(v), at, Event::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        self.check(Cow::Owned(v.to_owned()), None, Event::Str(v.to_owned()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cow<'de, str>, E> {
        self.check(Cow::Owned(v.to_string()), None, Event::U64(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cow<'de, str>, E> {
        self.check(Cow::Owned(v.to_string()), None, Event::I64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cow<'de, str>, E> {
        self.check(Cow::Owned(v.to_string()), None, Event::F64(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cow<'de, str>, E> {
        self.check(Cow::Owned(v.to_string()), None, Event::Bool(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Cow<'de, str>, E> {
        self.check(Cow::Borrowed("~"), None, Event::Unit)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Cow<'de, str>, A::Error> {
        Err(de::Error::custom(format_args!(
            "{}keys must be strings",
            raw::MSG
        )))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Cow<'de, str>, A::Error> {
        Err(de::Error::custom(format_args!(
            "{}keys must be strings",
            raw::MSG
        )))
    }
}
