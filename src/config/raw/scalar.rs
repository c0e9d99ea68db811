//! How one scalar value is read from any YAML scalar shape (`Scalar`, its
//! visitor), and `OneOrMany`, a value or a list of them; the errors carry
//! our own messages, marked for the loader's cleanup.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::*;
use crate::proxy::Accept;
use crate::service::{
    Address, Builtin, Cidr, ExitMatch, PassMode, Rate, RlimitResource, SocketType, StartMode,
    StderrMode,
};

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

pub(super) struct ScalarVisitor<T>(pub(super) PhantomData<T>);

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
