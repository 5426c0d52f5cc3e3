//! The configuration file as written: serde types that mirror the TOML and
//! keep spans, so that every later check can point at the line. Nothing here
//! is validated; `Checker::convert` in the parent module turns this into the
//! typed config.

use serde::Deserialize;
use toml::Spanned;

/// The whole file. Unknown keys anywhere are errors that name the key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    #[serde(default)]
    pub server: ServerSpec,
    #[serde(default)]
    pub upstream: UpstreamSpec,
    #[serde(default)]
    pub cache: CacheSpec,
    #[serde(default)]
    pub block: BlockSpec,
    #[serde(default)]
    pub lists: Vec<ListFileSpec>,
    #[serde(default)]
    pub allow: AllowSpec,
    #[serde(default)]
    pub state: StateSpec,
}

/// `[state]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    pub dir: Option<String>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub listen: Option<Vec<Spanned<String>>>,
}

/// `[upstream]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    pub servers: Option<Vec<Spanned<String>>>,
    pub timeout_ms: Option<Spanned<u64>>,
}

/// `[cache]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    pub size: Option<usize>,
}

/// `[block]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    pub action: Option<Spanned<String>>,
    pub sinkhole_ipv4: Option<Spanned<String>>,
    pub sinkhole_ipv6: Option<Spanned<String>>,
    pub ttl: Option<Spanned<u32>>,
    pub ede: Option<Spanned<String>>,
}

/// One `[[lists]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFileSpec {
    pub name: Spanned<String>,
    pub source: Spanned<String>,
    pub format: Option<Spanned<String>>,
    pub authority: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub action: Option<Spanned<String>>,
    pub sinkhole_ipv4: Option<Spanned<String>>,
    pub sinkhole_ipv6: Option<Spanned<String>>,
    pub ede: Option<Spanned<String>>,
    pub refresh: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_size_mb: Option<Spanned<u64>>,
    pub max_shrink: Option<Spanned<toml::Value>>,
    pub tsig: Option<Spanned<String>>,
}

/// `[allow]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSpec {
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
}
