//! The configuration file as written: serde types that mirror the TOML and
//! keep spans, so that every later check can point at the line. Nothing here
//! is validated; `Checker::convert` in the parent module turns this into the
//! typed config.
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

/// The whole file. Unknown keys anywhere are errors that name the key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub server: Option<Spanned<Shaped<ServerSpec>>>,
    pub upstream: Option<Spanned<Shaped<UpstreamSpec>>>,
    pub cache: Option<Spanned<Shaped<super::cache::CacheSpec>>>,
    pub block: Option<Spanned<Shaped<BlockSpec>>>,
    pub lists: Option<Spanned<Shaped<ListTables>>>,
    pub allow: Option<Spanned<Shaped<AllowSpec>>>,
    pub state: Option<Spanned<Shaped<StateSpec>>>,
    pub log: Option<Spanned<Shaped<super::observe::LogSpec>>>,
    pub hits: Option<Spanned<Shaped<super::observe::HitsSpec>>>,
    pub access: Option<Spanned<Shaped<super::access::AccessSpec>>>,
    pub rate_limit: Option<Spanned<Shaped<super::access::RateLimitSpec>>>,
    pub groups: Option<Spanned<Shaped<super::groups::GroupTables>>>,
    pub http: Option<Spanned<Shaped<super::http::HttpSpec>>>,
    pub dnstap: Option<Spanned<Shaped<super::dnstap::DnstapSpec>>>,
}

/// The `[[lists]]` tables, each of which may turn out not to be a table.
pub(super) type ListTables = Vec<Spanned<Shaped<ListFileSpec>>>;

/// A value as written, of whatever type; the checker decides whether that
/// type is the one its key wants.
pub(super) type Value = Spanned<Raw>;

/// `[state]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    pub dir: Option<Value>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub listen: Option<Value>,
    pub user: Option<Value>,
    pub group: Option<Value>,
    pub workers: Option<Value>,
    pub tcp_max_connections: Option<Value>,
    pub tcp_idle_timeout: Option<Value>,
    pub tcp_message_timeout: Option<Value>,
    pub tcp_max_inflight: Option<Value>,
    pub max_forwards: Option<Value>,
    // The encrypted listeners (config/tls.rs).
    pub tls_listen: Option<Value>,
    pub https_listen: Option<Value>,
    pub quic_listen: Option<Value>,
    pub certificate: Option<Value>,
    pub private_key: Option<Value>,
    pub https_path: Option<Value>,
    pub tls_max_connections: Option<Value>,
    pub tls_handshake_timeout: Option<Value>,
    pub tls_idle_timeout: Option<Value>,
    pub tls_max_streams: Option<Value>,
    pub https_max_body: Option<Value>,
}

/// `[upstream]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    pub servers: Option<Value>,
    pub timeout_ms: Option<Value>,
    pub strategy: Option<Value>,
    pub ca_file: Option<Value>,
    pub udp_sockets: Option<Value>,
}

/// `[block]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    pub action: Option<Value>,
    pub sinkhole_ipv4: Option<Value>,
    pub sinkhole_ipv6: Option<Value>,
    pub ttl: Option<Value>,
    pub ede: Option<Value>,
}

/// One `[[lists]]` table. `name` and `source` are required, but a missing
/// one is reported by the checker with every other problem rather than
/// failing the parse here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFileSpec {
    pub name: Option<Value>,
    pub source: Option<Value>,
    pub format: Option<Value>,
    pub authority: Option<Value>,
    pub reason: Option<Value>,
    pub reference: Option<Value>,
    pub action: Option<Value>,
    pub sinkhole_ipv4: Option<Value>,
    pub sinkhole_ipv6: Option<Value>,
    pub ede: Option<Value>,
    pub refresh: Option<Value>,
    pub timeout: Option<Value>,
    pub max_size_mb: Option<Value>,
    pub max_shrink: Option<Value>,
    pub tsig: Option<Value>,
    pub inspect_cname: Option<Value>,
    // The list's guards (config/list.rs): signature, expiry, canary.
    pub signature: Option<Value>,
    pub public_key: Option<Value>,
    pub signature_url: Option<Value>,
}

/// `[allow]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSpec {
    pub domains: Option<Value>,
    pub files: Option<Value>,
}

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

macro_rules! tables {
    ($($t:ty),*) => {
        $(impl Section for $t {
            const CONTAINER: Container = Container::Table;
        })*
    };
}
tables!(
    ServerSpec,
    UpstreamSpec,
    BlockSpec,
    ListFileSpec,
    AllowSpec,
    StateSpec
);

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
