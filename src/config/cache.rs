//! `[cache]`: how many answers are kept and in how many bytes, how their
//! TTLs are clamped, how long an expired answer may still be served when
//! every upstream fails or is slow (RFC 8767), how long a failure is
//! remembered (RFC 9520), and whether popular answers are refreshed before
//! they expire.
//!
//! These are startup settings: a reload that sees them changed keeps the
//! running cache (see `reload`).

use std::time::Duration;

use serde::Deserialize;

use super::raw::{Container, Raw, Section, Value};
use super::{Checker, MAX_TTL};

/// `[cache]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    pub size: Option<Value>,
    pub max_bytes: Option<Value>,
    pub min_ttl: Option<Value>,
    pub max_ttl: Option<Value>,
    pub negative_ttl_max: Option<Value>,
    pub stale_max: Option<Value>,
    pub stale_client_timeout_ms: Option<Value>,
    pub servfail_ttl: Option<Value>,
    pub prefetch: Option<Value>,
}

impl Section for CacheSpec {
    const CONTAINER: Container = Container::Table;
}

/// The cache's bounds and TTL rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Answers kept at most; 0 disables the cache.
    pub size: usize,
    /// Bytes the cache may hold, everything counted: the answers, their
    /// keys and bookkeeping, and the fixed tables sized by `size` (at most
    /// [`CacheConfig::fixed_bytes_max`], which may take at most half of this).
    pub max_bytes: usize,
    /// A positive answer is kept (and its TTLs served) for at least this
    /// many seconds; a TTL of 0 still means "do not cache".
    pub min_ttl: u32,
    /// ... and at most this many.
    pub max_ttl: u32,
    /// A negative answer (NXDOMAIN, NODATA) is kept for the SOA's
    /// min(TTL, MINIMUM) (RFC 2308 5), at most this many seconds; 0 keeps
    /// none.
    pub negative_ttl_max: u32,
    /// How long past its expiry an answer may still be served when no
    /// upstream answers (RFC 8767); zero turns serve-stale off.
    pub stale_max: Duration,
    /// A client whose forward has no answer after this long gets the
    /// expired answer kept for its question, if there is one, while the
    /// forward carries on and refreshes it (RFC 8767's client response
    /// timer); at or past `[upstream] timeout_ms`, only failures serve it.
    pub stale_client_timeout: Duration,
    /// A question whose forward failed (no answer, or SERVFAIL) is answered
    /// the same way for this long without asking again (RFC 9520 section
    /// 3.2); zero remembers no failure.
    pub servfail_ttl: Duration,
    /// Refresh a popular answer in the background shortly before it expires.
    pub prefetch: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            size: 100_000,
            max_bytes: 64 << 20,
            min_ttl: 0,
            max_ttl: 86_400,
            negative_ttl_max: 3_600,
            stale_max: Duration::from_secs(86_400),
            // RFC 8767 suggests 1.8 s, a client's own retry; unbound's
            // `serve-expired-client-timeout` is 1.8 s too. 400 ms answers
            // well before the default `timeout_ms` (2 s) and before most
            // stub resolvers retry, while a merely slow upstream still has
            // the time of several round trips across a continent.
            stale_client_timeout: Duration::from_millis(400),
            // RFC 9520: at least 1 s, at most 5 min.
            servfail_ttl: Duration::from_secs(5),
            prefetch: true,
        }
    }
}

impl CacheConfig {
    /// A ceiling on the fixed bytes each of `size`'s slots costs (the entry
    /// record, its hash-table slot, its share of the frequency sketch):
    /// `cache` allocates these up front, and a test there checks that they
    /// stay under [`CacheConfig::fixed_bytes_max`].
    pub const SLOT_BYTES: usize = 128;
    /// Besides the slots: the 16 shards' own records and smallest tables.
    const SHARDS_BYTES: usize = 16 * 1024;

    /// The most the cache allocates up front for `size` entries, counted
    /// against `max_bytes`, of which it may take at most half.
    pub fn fixed_bytes_max(size: usize) -> usize {
        if size == 0 {
            return 0;
        }
        size.saturating_mul(Self::SLOT_BYTES)
            .saturating_add(Self::SHARDS_BYTES)
    }
}

/// Why `max_bytes` must be at least twice the fixed tables, in a message.
const WHY_LEAST: &str =
    "the fixed tables take up to 128 bytes per entry plus 16 KiB, at most half of max_bytes";

/// The most `size` may be: the slots are allocated up front.
const MAX_SIZE: i128 = 10_000_000;
/// RFC 9520 section 3.2: failures are cached at most 5 minutes.
const MAX_SERVFAIL_TTL: i128 = 300;

impl Checker<'_> {
    /// Converts `[cache]`.
    pub(super) fn cache_settings(&mut self, c: &CacheSpec) -> CacheConfig {
        let d = CacheConfig::default();
        let seconds = |this: &mut Self, key: &str, v: &Option<Value>, min: i128| {
            v.as_ref()
                .and_then(|v| this.whole::<u32>(key, v, "seconds", min..=MAX_TTL))
        };
        let size = c
            .size
            .as_ref()
            .and_then(|s| self.whole("cache.size", s, "answers to cache", 0..=MAX_SIZE))
            .unwrap_or(d.size);
        let max_bytes = c
            .max_bytes
            .as_ref()
            .and_then(|v| {
                let n = self.whole(
                    "cache.max_bytes",
                    v,
                    "bytes",
                    1..=i128::try_from(usize::MAX).unwrap_or(i128::MAX),
                )?;
                Some((n, v))
            })
            .map(|(n, v)| {
                // The fixed tables of `size` slots come out of the budget;
                // half of it at least is left for the answers themselves.
                let least = CacheConfig::fixed_bytes_max(size).saturating_mul(2);
                if n < least {
                    self.problem(
                        v,
                        format!(
                            "cache.max_bytes: expected at least {least} bytes for size = {size} \
                             ({WHY_LEAST}), got {n}; raise max_bytes or lower size"
                        ),
                    );
                }
                n
            })
            .unwrap_or(d.max_bytes);
        let least = CacheConfig::fixed_bytes_max(size).saturating_mul(2);
        if c.max_bytes.is_none()
            && let Some(v) = &c.size
            && least > d.max_bytes
        {
            self.problem(
                v,
                format!(
                    "cache.size: {size} entries need max_bytes of at least {least} ({WHY_LEAST}); \
                     set cache.max_bytes"
                ),
            );
        }
        let min_ttl = seconds(self, "cache.min_ttl", &c.min_ttl, 0).unwrap_or(d.min_ttl);
        let max_ttl = seconds(self, "cache.max_ttl", &c.max_ttl, 1).unwrap_or(d.max_ttl);
        if min_ttl > max_ttl
            && let Some(v) = c.min_ttl.as_ref().or(c.max_ttl.as_ref())
        {
            self.problem(
                v,
                format!("cache.min_ttl ({min_ttl}) must not exceed cache.max_ttl ({max_ttl})"),
            );
        }
        let negative_ttl_max = seconds(self, "cache.negative_ttl_max", &c.negative_ttl_max, 0)
            .unwrap_or(d.negative_ttl_max);
        let stale_max = self
            .opt_parse(
                "cache.stale_max",
                &c.stale_max,
                r#"a duration such as "1d" or "12h" ("0s" turns serve-stale off)"#,
                |s| humantime::parse_duration(s).ok(),
            )
            .unwrap_or(d.stale_max);
        let stale_client_timeout = c
            .stale_client_timeout_ms
            .as_ref()
            .and_then(|v| {
                self.whole(
                    "cache.stale_client_timeout_ms",
                    v,
                    "milliseconds",
                    0..=60_000,
                )
            })
            .map_or(d.stale_client_timeout, Duration::from_millis);
        let servfail_ttl = c
            .servfail_ttl
            .as_ref()
            .and_then(|v| self.whole("cache.servfail_ttl", v, "seconds", 0..=MAX_SERVFAIL_TTL))
            .map_or(d.servfail_ttl, Duration::from_secs);
        let prefetch = match &c.prefetch {
            None => d.prefetch,
            Some(v) => match v.get_ref() {
                Raw::Boolean(b) => *b,
                _ => {
                    self.wrong("cache.prefetch", v, "true or false");
                    d.prefetch
                }
            },
        };
        CacheConfig {
            size,
            max_bytes,
            min_ttl,
            max_ttl,
            negative_ttl_max,
            stale_max,
            stale_client_timeout,
            servfail_ttl,
            prefetch,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, crate::config::Error> {
        Config::parse(Path::new("bad.toml"), text)
    }

    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Err(crate::config::Error::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted: {text}"),
        }
    }

    #[test]
    fn defaults_when_absent() {
        let c = parse("").expect("empty config");
        assert_eq!(c.cache, CacheConfig::default());
        assert_eq!(c.cache.size, 100_000);
        assert_eq!(c.cache.max_bytes, 64 * 1024 * 1024);
        assert_eq!(c.cache.stale_max, Duration::from_secs(86_400));
        assert!(c.cache.prefetch);
        assert_eq!(c.cache.stale_client_timeout, Duration::from_millis(400));
        assert_eq!(c.cache.servfail_ttl, Duration::from_secs(5));
        // The default size fits the default budget with room to spare.
        assert!(2 * CacheConfig::fixed_bytes_max(c.cache.size) <= c.cache.max_bytes);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "[cache]\nsize = 500\nmax_bytes = 1048576\nmin_ttl = 10\nmax_ttl = 3600\n\
             negative_ttl_max = 60\nstale_max = \"2h 30m\"\nstale_client_timeout_ms = 1800\n\
             servfail_ttl = 30\nprefetch = false\n",
        )
        .expect("valid");
        assert_eq!(
            c.cache,
            CacheConfig {
                size: 500,
                max_bytes: 1 << 20,
                min_ttl: 10,
                max_ttl: 3600,
                negative_ttl_max: 60,
                stale_max: Duration::from_secs(9000),
                stale_client_timeout: Duration::from_millis(1800),
                servfail_ttl: Duration::from_secs(30),
                prefetch: false,
            }
        );
        let off = parse(
            "[cache]\nsize = 0\nstale_max = \"0s\"\nnegative_ttl_max = 0\nservfail_ttl = 0\n",
        )
        .expect("valid");
        assert_eq!(off.cache.size, 0);
        assert!(off.cache.servfail_ttl.is_zero());
        assert!(off.cache.stale_max.is_zero());
        assert_eq!(off.cache.negative_ttl_max, 0);
    }

    #[test]
    fn out_of_range_and_inconsistent_values_say_why() {
        assert_eq!(
            problems(
                "[cache]\nsize = 20000000\nmax_ttl = 0\nnegative_ttl_max = -1\nstale_max = \"soon\"\n"
            ),
            [
                "bad.toml:2:8: cache.size: expected a whole number of answers to cache (0 to 10000000), got the number 20000000",
                "bad.toml:3:11: cache.max_ttl: expected a whole number of seconds (1 to 2147483647), got the number 0",
                "bad.toml:4:20: cache.negative_ttl_max: expected a whole number of seconds (0 to 2147483647), got the number -1",
                "bad.toml:5:13: cache.stale_max: expected a duration such as \"1d\" or \"12h\" (\"0s\" turns serve-stale off), got the string \"soon\"",
            ]
        );
        assert_eq!(
            problems("[cache]\nstale_client_timeout_ms = -1\nservfail_ttl = 301\n"),
            [
                "bad.toml:2:27: cache.stale_client_timeout_ms: expected a whole number of milliseconds (0 to 60000), got the number -1",
                "bad.toml:3:16: cache.servfail_ttl: expected a whole number of seconds (0 to 300), got the number 301",
            ]
        );
        assert_eq!(
            problems("[cache]\nmin_ttl = 600\nmax_ttl = 300\n"),
            ["bad.toml:2:11: cache.min_ttl (600) must not exceed cache.max_ttl (300)"]
        );
        assert_eq!(
            problems("[cache]\nsize = 1000\nmax_bytes = 100000\n"),
            [
                "bad.toml:3:13: cache.max_bytes: expected at least 288768 bytes for size = 1000 (the fixed tables take up to 128 bytes per entry plus 16 KiB, at most half of max_bytes), got 100000; raise max_bytes or lower size"
            ]
        );
        assert_eq!(
            problems("[cache]\nsize = 1000000\n"),
            [
                "bad.toml:2:8: cache.size: 1000000 entries need max_bytes of at least 256032768 (the fixed tables take up to 128 bytes per entry plus 16 KiB, at most half of max_bytes); set cache.max_bytes"
            ]
        );
    }
}
