//! A file's nodes as the structural walk (`tree::walk`) saw them, and a
//! serde deserializer that plays them back, so that a file is read by
//! libyaml once, not twice: `raw` is deserialized from the recording.
//!
//! The recording holds exactly the visitor calls serde_yaml's
//! `deserialize_any` made. Played back through `deserialize_any` they are
//! the same calls; the other `deserialize_*` methods answer only where
//! serde_yaml (0.9, `de.rs`) is known to make the same call for a node of
//! that shape, and refuse everything else. A refusal, or any error a
//! visitor raises, is no verdict on the file: the caller then reads it
//! with serde_yaml itself (`parse.rs`), which names the error and where.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// One node, as serde_yaml presented it. A collection is followed by its
/// nodes (a mapping's as key, value, key, value...) up to `end`, the index
/// of the first event after it; a mapping's `entries` only sizes what is
/// read from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'de> {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    /// A string serde_yaml could not borrow (escapes, folding): `visit_str`.
    Str(String),
    /// A string borrowed from the text: `visit_borrowed_str`.
    Borrowed(&'de str),
    /// Null (`~`, `null`, nothing): `visit_unit`.
    Unit,
    /// An empty document: `visit_none`.
    Void,
    Seq {
        end: usize,
    },
    Map {
        end: usize,
        entries: usize,
    },
}

/// Whether serde_yaml's reading of `text` may differ from what the
/// recording plays back: a YAML tag (`!!bool "true"` is a bool to
/// `deserialize_any` but an error to serde_yaml's `deserialize_bool`;
/// `!!null "~"` is null to one and a value to its `deserialize_option`).
/// A tag starts with `!` where a token may start; any `!` not right after
/// a letter or digit is taken for one (a false alarm only costs the
/// second reading).
pub fn may_have_tags(text: &str) -> bool {
    let b = text.as_bytes();
    b.iter()
        .enumerate()
        .any(|(i, &c)| c == b'!' && (i == 0 || !b[i - 1].is_ascii_alphanumeric()))
}

/// The playback refused, or a visitor failed: read the file with
/// serde_yaml instead. Carries nothing; serde_yaml's error is the one
/// reported.
#[derive(Debug)]
pub struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not replayed")
    }
}

impl std::error::Error for Refused {}

impl de::Error for Refused {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Refused
    }
}

/// Plays back a recording from its first event (the document's root).
pub struct Replay<'e, 'de> {
    events: &'e [Event<'de>],
    pos: usize,
}

impl<'e, 'de> Replay<'e, 'de> {
    pub fn new(events: &'e [Event<'de>]) -> Self {
        Replay { events, pos: 0 }
    }

    /// Plays the whole recording into `f`; refused unless `f` consumed
    /// exactly the root node.
    pub fn run<T>(mut self, f: impl FnOnce(&mut Self) -> Result<T, Refused>) -> Result<T, Refused> {
        let v = f(&mut self)?;
        if self.pos == self.events.len() {
            Ok(v)
        } else {
            Err(Refused)
        }
    }

    fn peek(&self) -> Result<&'e Event<'de>, Refused> {
        self.events.get(self.pos).ok_or(Refused)
    }

    /// The index after the node at `pos`.
    fn end_of_node(&self) -> Result<usize, Refused> {
        Ok(match self.peek()? {
            Event::Seq { end } | Event::Map { end, .. } => *end,
            _ => self.pos + 1,
        })
    }

    fn seq<V: Visitor<'de>>(&mut self, v: V, end: usize) -> Result<V::Value, Refused> {
        self.pos += 1;
        let value = v.visit_seq(Elements { r: &mut *self, end })?;
        // serde_yaml reads past elements a visitor left and fails on them.
        if self.pos == end {
            Ok(value)
        } else {
            Err(Refused)
        }
    }

    fn map<V: Visitor<'de>>(
        &mut self,
        v: V,
        end: usize,
        entries: usize,
    ) -> Result<V::Value, Refused> {
        self.pos += 1;
        let value = v.visit_map(Entries {
            r: &mut *self,
            end,
            entries,
        })?;
        if self.pos == end {
            Ok(value)
        } else {
            Err(Refused)
        }
    }

    /// A string node as `deserialize_str` gives it; anything else refused
    /// (a number's or a bool's text is not recorded).
    fn string<V: Visitor<'de>>(&mut self, v: V) -> Result<V::Value, Refused> {
        let value = match self.peek()? {
            Event::Str(s) => v.visit_str(s)?,
            Event::Borrowed(s) => v.visit_borrowed_str(s)?,
            _ => return Err(Refused),
        };
        self.pos += 1;
        Ok(value)
    }
}

struct Elements<'r, 'e, 'de> {
    r: &'r mut Replay<'e, 'de>,
    end: usize,
}

impl<'de> SeqAccess<'de> for Elements<'_, '_, 'de> {
    type Error = Refused;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Refused> {
        if self.r.pos >= self.end {
            return Ok(None);
        }
        seed.deserialize(&mut *self.r).map(Some)
    }
}

struct Entries<'r, 'e, 'de> {
    r: &'r mut Replay<'e, 'de>,
    end: usize,
    entries: usize,
}

impl<'de> MapAccess<'de> for Entries<'_, '_, 'de> {
    type Error = Refused;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Refused> {
        if self.r.pos >= self.end {
            return Ok(None);
        }
        seed.deserialize(&mut *self.r).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Refused> {
        if self.r.pos >= self.end {
            return Err(Refused);
        }
        seed.deserialize(&mut *self.r)
    }
    /// serde_yaml gives none; a visitor may only size its buffers by it.
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries)
    }
}

/// Refuses a `deserialize_*` method whose serde_yaml behaviour the
/// playback does not reproduce.
macro_rules! refuse {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $name<V: Visitor<'de>>(self, $(_: $arg,)* _: V) -> Result<V::Value, Refused> {
            Err(Refused)
        }
    )*};
}

impl<'de> Deserializer<'de> for &mut Replay<'_, 'de> {
    type Error = Refused;

    /// The recorded call itself.
    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        let event = self.peek()?;
        match *event {
            Event::Seq { end } => return self.seq(v, end),
            Event::Map { end, entries } => return self.map(v, end, entries),
            _ => {}
        }
        self.pos += 1;
        match event {
            Event::Bool(b) => v.visit_bool(*b),
            Event::I64(n) => v.visit_i64(*n),
            Event::U64(n) => v.visit_u64(*n),
            Event::F64(n) => v.visit_f64(*n),
            Event::Str(s) => v.visit_str(s),
            Event::Borrowed(s) => v.visit_borrowed_str(s),
            Event::Unit => v.visit_unit(),
            Event::Void => v.visit_none(),
            Event::Seq { .. } | Event::Map { .. } => unreachable!("handled above"),
        }
    }

    /// serde_yaml's `deserialize_bool` answers `visit_bool` for a plain
    /// scalar `deserialize_any` read as a bool (untagged: see
    /// `may_have_tags`), and fails on everything else.
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        match *self.peek()? {
            Event::Bool(b) => {
                self.pos += 1;
                v.visit_bool(b)
            }
            _ => Err(Refused),
        }
    }

    /// serde_yaml's `deserialize_option`: `visit_none` for an untagged
    /// plain empty or null scalar (exactly what `deserialize_any` reads as
    /// unit) and for an empty document; `visit_some` for everything else.
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        match self.peek()? {
            Event::Unit | Event::Void => {
                self.pos += 1;
                v.visit_none()
            }
            _ => v.visit_some(self),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        self.string(v)
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        self.string(v)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        self.string(v)
    }

    /// A sequence node; serde_yaml also reads an empty plain scalar as an
    /// empty sequence, which the recording cannot tell from `~`: refused.
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        match *self.peek()? {
            Event::Seq { end } => self.seq(v, end),
            _ => Err(Refused),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Refused> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, Refused> {
        self.deserialize_seq(v)
    }

    /// A mapping node; as for sequences, an empty plain scalar (an empty
    /// mapping to serde_yaml) is refused.
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        match *self.peek()? {
            Event::Map { end, entries } => self.map(v, end, entries),
            _ => Err(Refused),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Refused> {
        self.deserialize_map(v)
    }

    /// serde_yaml skips the node, then calls `visit_unit`.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        self.pos = self.end_of_node()?;
        v.visit_unit()
    }

    refuse!(
        deserialize_i8(),
        deserialize_i16(),
        deserialize_i32(),
        deserialize_i64(),
        deserialize_i128(),
        deserialize_u8(),
        deserialize_u16(),
        deserialize_u32(),
        deserialize_u64(),
        deserialize_u128(),
        deserialize_f32(),
        deserialize_f64(),
        deserialize_char(),
        deserialize_bytes(),
        deserialize_byte_buf(),
        deserialize_unit(),
        deserialize_unit_struct(&'static str),
        deserialize_newtype_struct(&'static str),
        deserialize_enum(&'static str, &'static [&'static str]),
    );
}
