//! Zone tables: which of a few configured zones a name falls in, the most
//! specific first. Two users: [`ForwardZones`] (which `[[forward]]` set a
//! name goes to) and `crate::local` (which local name or zone answers it).
//!
//! ```text
//!  query name ──► NameKey (lowercase wire form, label offsets; stack only)
//!                   │ its last label one of the table's? no ──► miss (one compare per TLD)
//!                   │ for each suffix, longest first, whose label count occurs:
//!                   ▼
//!        xxh3(suffix) ──► HashTable of (wire-form name, value) ──► hit: (where the suffix starts, &value)
//! ```
//!
//! Unlike the matcher, which holds millions of names as fingerprints, a
//! zone table holds tens or hundreds and keeps them whole: a hit is exact,
//! and `embargo check` can say which zone. Zones are compared label by
//! label in wire form, so `corp.example` is a suffix of `dc1.corp.example`
//! but not of `notcorp.example` (whose last two labels are `notcorp`,
//! `example`). Built once per snapshot, read without allocating.

use hashbrown::HashTable;

use crate::config::{ForwardSpec, UpstreamConfig};
use crate::matcher::NameKey;

/// Names (in wire form) with a value each, looked up by suffix.
#[derive(Debug)]
pub struct NameTable<V> {
    table: HashTable<(Box<[u8]>, V)>,
    /// Bit `n` set when some name has `n` labels (n < 128): suffixes of
    /// other lengths are not hashed.
    label_mask: u128,
    /// The last label of every name, each once: a name under none of them
    /// misses without a hash (most queries, which are for the internet).
    tlds: Vec<Box<[u8]>>,
    /// Bit `n` set when a label of `tlds` is `n` bytes long (in wire form,
    /// its length byte is its first): `com`, `net` and `org` miss on one
    /// bit test when no local TLD has three letters.
    tld_lengths: u64,
}

impl<V> Default for NameTable<V> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            label_mask: 0,
            tlds: Vec::new(),
            tld_lengths: 0,
        }
    }
}

#[inline]
fn hash(wire: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(wire)
}

impl<V> NameTable<V> {
    /// Adds `name` with `value`, or gives back the value it already has
    /// (to be merged by the caller).
    pub fn entry(&mut self, name: &NameKey, value: impl FnOnce() -> V) -> &mut V {
        let wire = name.as_bytes();
        let n = name.label_count();
        if n > 0 {
            self.label_mask |= 1u128 << n.min(127);
            let tld = &wire[name.label_start(n - 1)..];
            if !self.tlds.iter().any(|t| **t == *tld) {
                self.tld_lengths |= 1u64 << (tld.len() - 1).min(63);
                self.tlds.push(tld.into());
            }
        }
        let entry = self
            .table
            .entry(hash(wire), |(k, _)| **k == *wire, |(k, _)| hash(k));
        &mut entry.or_insert_with(|| (wire.into(), value())).into_mut().1
    }

    /// Names held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when the table holds no name.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The value of exactly this wire-form name.
    #[inline]
    pub fn get(&self, wire: &[u8]) -> Option<&V> {
        self.table
            .find(hash(wire), |(k, _)| **k == *wire)
            .map(|(_, v)| v)
    }

    /// Every name of the table that is `name` or a suffix of it, the most
    /// specific (longest) first, with the byte offset in `name` where it
    /// starts. Allocates nothing.
    #[inline]
    pub fn suffixes<'n>(&self, name: &'n NameKey) -> Suffixes<'_, 'n, V> {
        let n = name.label_count();
        let under_some_tld = n > 0 && {
            let wire = name.as_bytes();
            let tld = &wire[name.label_start(n - 1)..];
            self.tld_lengths & (1u64 << (tld.len() - 1).min(63)) != 0
                && self.tlds.iter().any(|t| **t == *tld)
        };
        Suffixes {
            table: self,
            name,
            next: if under_some_tld { 0 } else { n },
        }
    }

    /// The most specific name of the table that `name` is at or below.
    #[inline]
    pub fn longest(&self, name: &NameKey) -> Option<(usize, &V)> {
        self.suffixes(name).next()
    }

    /// Every (wire-form name, value), in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.table.iter().map(|(k, v)| (&**k, v))
    }
}

/// The walk of [`NameTable::suffixes`].
#[derive(Debug)]
pub struct Suffixes<'t, 'n, V> {
    table: &'t NameTable<V>,
    name: &'n NameKey,
    /// The next label index to try (0 = the whole name).
    next: usize,
}

impl<'t, V> Iterator for Suffixes<'t, '_, V> {
    type Item = (usize, &'t V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let n = self.name.label_count();
        while self.next < n {
            let i = self.next;
            self.next += 1;
            if self.table.label_mask & (1u128 << (n - i).min(127)) == 0 {
                continue;
            }
            let start = self.name.label_start(i);
            if let Some(v) = self.table.get(&self.name.as_bytes()[start..]) {
                return Some((start, v));
            }
        }
        None
    }
}

/// Which `[[forward]]` set a name goes to: the set of its most specific
/// forwarded zone, or none (`[upstream]`). Frozen into the snapshot with
/// each set's servers, so that the set a name goes to and the servers
/// asked come from the same reload (the upstream layer builds the sets
/// from [`ForwardZones::spec`]: `upstream::Sets`).
#[derive(Debug, Default)]
pub struct ForwardZones {
    table: NameTable<u16>,
    sets: Vec<ForwardSet>,
}

/// One `[[forward]]` table as the handler needs it.
#[derive(Debug)]
struct ForwardSet {
    /// As `embargo check` names it: `forward[1] (10.0.0.10:53, …)`.
    about: String,
    /// Its servers, strategy and timeouts.
    spec: UpstreamConfig,
    /// What the cache keys its answers with (never 0, which is
    /// `[upstream]`'s): a hash of its servers, so that an answer is kept
    /// per set of servers that gave it. A reload that moves a zone to other
    /// servers finds nothing cached from the old ones; one that keeps them
    /// keeps what they answered.
    cache_key: u32,
}

/// A name's forwarded zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneMatch {
    /// The set: an index into `Config::forward`.
    pub set: usize,
    /// Byte offset in the name's key where the zone starts
    /// (`NameKey::suffix` shows it).
    pub suffix: usize,
}

impl ForwardZones {
    /// The table of `sets` (the config guarantees a zone is in one set).
    pub fn new(sets: &[ForwardSpec]) -> Self {
        let mut table = NameTable::default();
        let mut out = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            let Ok(index) = u16::try_from(i) else { break };
            for zone in &set.zones {
                if let Ok(key) = NameKey::from_text(&zone.name, true) {
                    *table.entry(&key, || index) = index;
                }
            }
            let servers: Vec<String> = set
                .upstream
                .servers
                .iter()
                .map(ToString::to_string)
                .collect();
            let servers = servers.join(", ");
            let cache_key = (xxhash_rust::xxh3::xxh3_64(servers.as_bytes()) as u32).max(1);
            out.push(ForwardSet {
                about: format!("forward[{}] ({servers})", i + 1),
                spec: set.upstream.clone(),
                cache_key,
            });
        }
        Self { table, sets: out }
    }

    /// The set's name for people: `forward[1] (10.0.0.10:53, tls://…)`.
    pub fn describe(&self, set: usize) -> Option<&str> {
        self.sets.get(set).map(|s| s.about.as_str())
    }

    /// The servers, strategy and timeouts of `set`.
    pub fn spec(&self, set: usize) -> Option<&UpstreamConfig> {
        self.sets.get(set).map(|s| &s.spec)
    }

    /// Sets held (`[[forward]]` tables).
    pub fn sets(&self) -> usize {
        self.sets.len()
    }

    /// What the cache keys the answers of `set` with: never 0, which
    /// stands for `[upstream]`.
    #[inline]
    pub fn cache_key(&self, set: usize) -> u32 {
        self.sets.get(set).map_or(0, |s| s.cache_key)
    }

    /// The set `name` goes to, or `None` for `[upstream]`. Without
    /// `[[forward]]`, one compare.
    #[inline]
    pub fn lookup(&self, name: &NameKey) -> Option<ZoneMatch> {
        if self.table.is_empty() {
            return None;
        }
        self.table.longest(name).map(|(suffix, set)| ZoneMatch {
            set: usize::from(*set),
            suffix,
        })
    }

    /// Whether no zone is forwarded (no `[[forward]]`).
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Zones held.
    pub fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: &str) -> NameKey {
        NameKey::from_text(s, true).expect("valid test name")
    }

    fn zones(sets: &[&[&str]]) -> ForwardZones {
        let text: String = sets
            .iter()
            .map(|zones| {
                let list: Vec<String> = zones.iter().map(|z| format!("{z:?}")).collect();
                format!(
                    "[[forward]]\nzones = [{}]\nservers = [\"10.0.0.1\"]\n",
                    list.join(", ")
                )
            })
            .collect();
        let config = crate::Config::parse(std::path::Path::new("z.toml"), &text).expect("config");
        ForwardZones::new(&config.forward)
    }

    #[test]
    fn the_most_specific_zone_wins_label_by_label() {
        let z = zones(&[&["corp.example", "10.in-addr.arpa"], &["lab.corp.example"]]);
        let set = |n: &str| z.lookup(&key(n)).map(|m| m.set);
        assert_eq!(set("corp.example"), Some(0));
        assert_eq!(set("DC1.Corp.Example"), Some(0));
        assert_eq!(set("_ldap._tcp.dc._msdcs.corp.example"), Some(0));
        assert_eq!(set("lab.corp.example"), Some(1));
        assert_eq!(set("x.lab.corp.example"), Some(1));
        assert_eq!(set("notcorp.example"), None, "not a label boundary");
        assert_eq!(set("corp.example.org"), None);
        assert_eq!(set("example"), None);
        assert_eq!(set("5.0.0.10.in-addr.arpa"), Some(0));
        assert_eq!(set("5.0.0.100.in-addr.arpa"), None);
        let name = key("x.lab.corp.example");
        let m = z.lookup(&name).expect("hit");
        assert_eq!(name.suffix(m.suffix).to_string(), "lab.corp.example");
        assert!(ForwardZones::default().lookup(&name).is_none());
        assert_eq!(z.len(), 3);
        assert_eq!(z.describe(1), Some("forward[2] (10.0.0.1:53)"));
        assert_eq!(z.describe(2), None);
        // Answers are cached per set of servers: the same servers, the same key.
        assert_ne!(z.cache_key(0), 0);
        assert_eq!(z.cache_key(0), z.cache_key(1));
        assert_eq!(z.cache_key(2), 0);
    }

    /// A label holding a dot on the wire is not two labels.
    #[test]
    fn a_dot_inside_a_label_is_not_a_boundary() {
        let z = zones(&[&["corp.example"]]);
        let mut name = NameKey::new();
        assert!(name.push_label(b"notcorp.example"));
        assert_eq!(z.lookup(&name), None);
        let mut name = NameKey::new();
        assert!(name.push_label(b"x.corp"));
        assert!(name.push_label(b"example"));
        assert_eq!(z.lookup(&name), None);
    }

    const LABELS: &[&str] = &["a", "b", "corp", "notcorp", "example", "arpa", "10"];

    fn name_strategy() -> impl Strategy<Value = Vec<&'static str>> {
        prop::collection::vec(prop::sample::select(LABELS), 1..5)
    }

    proptest! {
        /// `lookup` agrees with a naive walk over the zones as text: the
        /// zone with the most labels that the name equals or ends with
        /// (after a dot).
        #[test]
        fn lookup_agrees_with_a_naive_suffix_walk(
            sets in prop::collection::vec(prop::collection::vec(name_strategy(), 1..4), 1..4),
            names in prop::collection::vec(name_strategy(), 1..20),
        ) {
            // Each zone in one set: the first that names it.
            let mut seen: Vec<String> = Vec::new();
            let sets: Vec<Vec<String>> = sets
                .iter()
                .map(|zones| {
                    zones
                        .iter()
                        .map(|labels| labels.join("."))
                        // A zone that reads as an address is refused by the config.
                        .filter(|z| !z.split('.').all(|l| l == "10"))
                        .filter(|z| {
                            let fresh = !seen.contains(z);
                            seen.push(z.clone());
                            fresh
                        })
                        .collect()
                })
                .filter(|zones: &Vec<String>| !zones.is_empty())
                .collect();
            let refs: Vec<Vec<&str>> = sets.iter().map(|s| s.iter().map(String::as_str).collect()).collect();
            let slices: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
            let table = zones(&slices);
            for labels in &names {
                let name = labels.join(".");
                // From the wire, where "10.10" is a name like any other.
                let mut wire = NameKey::new();
                for l in labels {
                    prop_assert!(wire.push_label(l.as_bytes()));
                }
                let naive = sets
                    .iter()
                    .enumerate()
                    .flat_map(|(i, zones)| zones.iter().map(move |z| (i, z)))
                    .filter(|(_, z)| name == **z || name.ends_with(&format!(".{z}")))
                    .max_by_key(|(_, z)| z.split('.').count())
                    .map(|(i, z)| (i, z.clone()));
                let got = table.lookup(&wire).map(|m| (m.set, wire.suffix(m.suffix).to_string()));
                prop_assert_eq!(got, naive, "{}", name);
            }
        }
    }
}
