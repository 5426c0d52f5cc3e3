//! The configuration file as written: the serde type of the whole file
//! ([`FileSpec`]) and of the small sections that have no room of their own.
//! Nothing here is validated; `Checker::convert` in the parent module turns
//! this into the typed config.
//!
//! This is the top of the config's rooms: it names every section's type,
//! and no section imports it. The TOML helpers every section reads with
//! (`Raw`, `Shaped`) live below, in `raw.rs`.

use serde::Deserialize;
use serde::de;
use toml::Spanned;

use super::raw::{Container, Section, Shaped, Value};

/// The whole file. Unknown keys anywhere are errors that name the key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub server: Option<Spanned<Shaped<super::server::ServerSpec>>>,
    pub upstream: Option<Spanned<Shaped<super::upstream::UpstreamSpec>>>,
    pub cache: Option<Spanned<Shaped<super::cache::CacheSpec>>>,
    pub block: Option<Spanned<Shaped<BlockSpec>>>,
    pub lists: Option<Spanned<Shaped<ListTables>>>,
    pub allow: Option<Spanned<Shaped<AllowSpec>>>,
    pub state: Option<Spanned<Shaped<StateSpec>>>,
    pub log: Option<Spanned<Shaped<super::observe::LogSpec>>>,
    pub hits: Option<Spanned<Shaped<super::observe::HitsSpec>>>,
    pub history: Option<Spanned<Shaped<super::history::HistorySpec>>>,
    pub access: Option<Spanned<Shaped<super::access::AccessSpec>>>,
    pub rate_limit: Option<Spanned<Shaped<super::access::RateLimitSpec>>>,
    pub groups: Option<Spanned<Shaped<super::groups::GroupTables>>>,
    pub http: Option<Spanned<Shaped<super::http::HttpSpec>>>,
    pub dnstap: Option<Spanned<Shaped<super::dnstap::DnstapSpec>>>,
    pub alerts: Option<Spanned<Shaped<super::alerts::AlertsSpec>>>,
    /// `[[forward]]`, `[local_zones]` and `[[records]]` are read by their
    /// own sections from the same text (`config::ZoneSpec`); here they are
    /// only keys the file may have, so that this file names none of their
    /// types (the sections import this file, not the other way round).
    pub forward: Option<de::IgnoredAny>,
    pub local_zones: Option<de::IgnoredAny>,
    pub records: Option<de::IgnoredAny>,
}

/// The `[[lists]]` tables, each of which may turn out not to be a table.
pub(super) type ListTables = Vec<Spanned<Shaped<ListFileSpec>>>;

/// `[state]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    pub dir: Option<Value>,
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
    pub canary_interval: Option<Value>,
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
    pub inspect_answers: Option<Value>,
    // The list's guards (config/list.rs): signature, expiry, canary.
    pub signature: Option<Value>,
    pub public_key: Option<Value>,
    pub signature_url: Option<Value>,
    pub expires: Option<Value>,
    pub canary: Option<Value>,
}

/// `[allow]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSpec {
    pub domains: Option<Value>,
    pub files: Option<Value>,
}

macro_rules! tables {
    ($($t:ty),*) => {
        $(impl Section for $t {
            const CONTAINER: Container = Container::Table;
        })*
    };
}
tables!(BlockSpec, ListFileSpec, AllowSpec, StateSpec);
