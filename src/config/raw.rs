//! The TOML helpers every section of the configuration reads with: a value
//! of whatever type ([`Raw`], kept with its span as a [`Value`]) and a
//! section of whatever shape ([`Shaped`]). The lowest room of the config:
//! it imports none of the sections, which all import it.
//!
//! Serde decides only the shape of the file: which tables exist and which
//! keys they may hold (`deny_unknown_fields`, so a typo is an error that
//! names the key). Every value is read as a [`Raw`], whatever its type, and
//! every section as a [`Shaped`], whatever it turns out to be. A value of
//! the wrong type is therefore not a serde error, which would stop at the
//! first one and speak serde's words (`invalid type: string "soon",
//! expected u64`): the checker reports it with the key's dotted path and
//! what the key wants in words, next to every other problem in the file.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// A value as written, of whatever type; the checker decides whether that
/// type is the one its key wants.
pub(super) type Value = Spanned<Raw>;

/// A TOML value of any type. Integers are kept wide so that a number out of
/// range (`ttl = -1`, `ttl = 5000000000`) can be quoted back as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    String(String),
    Integer(i128),
    Float(f64),
    Boolean(bool),
    Datetime(toml::value::Datetime),
    /// Each element keeps its span, so a bad element points at itself.
    Array(Vec<Spanned<Self>>),
    /// The contents are not kept: no key wants an arbitrary table.
    Table,
}

impl Raw {
    /// What the file has, in the words of a message that ends "got …":
    /// `the string "soon"`, `the number 5`, `true`, `an array`, `a table`.
    pub fn found(&self) -> String {
        match self {
            Self::String(s) => format!("the string {s:?}"),
            Self::Integer(n) => format!("the number {n}"),
            // Debug keeps the fraction (`3.0`), which says why it is not a whole number.
            Self::Float(f) => format!("the number {f:?}"),
            Self::Boolean(b) => b.to_string(),
            Self::Datetime(d) => format!("the date-time {d}"),
            Self::Array(a) if a.is_empty() => "an empty array".into(),
            Self::Array(_) => "an array".into(),
            Self::Table => "a table".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Boolean(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Integer(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Integer(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Integer(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        // Beyond i128 (39 digits) the exact figure no longer matters to the
        // message, which is about range; it is shown as a float.
        Ok(i128::try_from(v).map_or(Raw::Float(v as f64), Raw::Integer))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Raw, A::Error> {
        // A TOML date-time reaches serde as a map with a private key; toml's
        // own `Value` knows how to tell the two apart.
        match toml::Value::deserialize(MapAccessDeserializer::new(map))? {
            toml::Value::Datetime(d) => Ok(Raw::Datetime(d)),
            _ => Ok(Raw::Table),
        }
    }
}

/// Whether a section type is written as a TOML table or as an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Table,
    Array,
}

/// A type read from a table (`[server]`) or an array (`[[lists]]`).
pub trait Section {
    const CONTAINER: Container;
}

impl<T> Section for Vec<T> {
    const CONTAINER: Container = Container::Array;
}

/// A key that wants a table or an array of tables: either that, or whatever
/// the file has there instead (`server = 5`), for the checker to report.
#[derive(Debug)]
pub enum Shaped<T> {
    Right(T),
    Wrong(Raw),
}

impl<'de, T: Deserialize<'de> + Section> Deserialize<'de> for Shaped<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapedVisitor(PhantomData))
    }
}

struct ShapedVisitor<T>(PhantomData<T>);

/// Scalars are never the right shape for a section: keep them as `Raw`.
macro_rules! wrong_scalars {
    ($($method:ident($t:ty)),*) => {
        $(fn $method<E: de::Error>(self, v: $t) -> Result<Self::Value, E> {
            RawVisitor.$method(v).map(Shaped::Wrong)
        })*
    };
}

impl<'de, T: Deserialize<'de> + Section> Visitor<'de> for ShapedVisitor<T> {
    type Value = Shaped<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    wrong_scalars!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_i128(i128),
        visit_u128(u128),
        visit_f64(f64),
        visit_str(&str),
        visit_string(String)
    );

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        match T::CONTAINER {
            Container::Array => T::deserialize(SeqAccessDeserializer::new(seq)).map(Shaped::Right),
            Container::Table => RawVisitor.visit_seq(seq).map(Shaped::Wrong),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        match T::CONTAINER {
            // The struct reads the keys itself, so an unknown key is still
            // rejected with its own span. The cost: a date-time, which
            // toml hands over as a map, reaches the struct as an unknown
            // key; `Config::parse` recognises that error and says what it is.
            Container::Table => T::deserialize(MapAccessDeserializer::new(map)).map(Shaped::Right),
            Container::Array => RawVisitor.visit_map(map).map(Shaped::Wrong),
        }
    }
}
