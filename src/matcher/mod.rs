//! The set of listed domains, and the one question the per-query path asks it:
//! is this name, or any name above it, listed — and by which policy?
//!
//! ```text
//!  query name ──► NameKey (lowercase wire form, label offsets; stack only)
//!                   │ for each suffix whose label count occurs in the set:
//!                   ▼
//!        xxh3-128(suffix, seed) ──► 64-bit key + 14-bit check + bucket
//!                   │
//!                   ▼
//!     dir[bucket] .. dir[bucket+1] : sorted run of (key, check|scope|policy) in two flat arrays
//! ```
//!
//! Names are not stored: each entry is a 78-bit fingerprint of its wire-form
//! name (64-bit `keys`, 14 bits in `tags`), two scope bits and a 16-bit
//! policy id, 12 bytes, and a directory of one `u32` per four entries, about
//! 13 bytes per domain in all. The matched entry is still exact for
//! `embargo check` and logs: it is the suffix of the query name that
//! matched. A false block would need a query suffix whose 78-bit xxh3
//! fingerprint equals a listed one: with n listed names the chance per probe
//! is n / 2^78 (about 3e-18 at 1M names), and the seed is drawn at random for
//! every build, so nobody can craft one. (The id was 12 bits and the check
//! 20 until client groups: a name listed by several lists then needs an id
//! of its own for that set of lists, and OFAC's one policy per entity
//! already used much of 4096. The check gave two bits to the scope for
//! RPZ's triggers, issue 16.)
//!
//! **Scope.** A plain list's entry covers its name and every name below it
//! ([`Scope::Subtree`]); an RPZ trigger `x` covers `x` alone
//! ([`Scope::Exact`]) and `*.x` only the names below `x` ([`Scope::Below`]),
//! as BIND and PowerDNS read a policy zone. Each entry carries two bits, "at
//! the name" and "below it" (both for a subtree). A lookup probes each
//! suffix once, as before, and takes only an entry whose bit fits where the
//! suffix stands: the whole query name wants "at the name", a parent wants
//! "below". A name that means different things at and below it (`x` and
//! `*.x` in one feed with other actions, or `x` on a plain list and `*.x`
//! in a feed) is stored as two adjacent entries, one per bit, in the same
//! bucket: still one probe. A plain list's entries stay one entry each.
//!
//! A name listed twice (at the same scope) is stored once.
//! [`DomainSetBuilder::build`] keeps the lowest policy (the first list in
//! config order); [`DomainSetBuilder::build_merging`] hands every set of
//! policies that share a name to the caller, which gives back the one id to
//! store (the snapshot's "policy sets", so that a client group applying only
//! the second list still blocks the name).
//!
//! The directory makes a probe one read of `dir` and a scan of about four
//! adjacent `u64`s, one or two cache lines; there is no load-factor slack as
//! in open addressing. The builder sorts in place by bucket (American flag
//! sort) so that the peak during a build is the arrays themselves, not a copy.
//!
//! The rooms: `key.rs` turns a query name into its lowercase wire form and
//! suffixes; `build.rs` builds and freezes the set; this file is the
//! frozen [`DomainSet`] and its lookup; `nets.rs` is the set of listed IP
//! networks that forwarded answers are checked against ([`NetSet`]).

mod build;
mod key;
mod nets;

pub use build::DomainSetBuilder;
pub use key::{MAX_KEY, MAX_LABELS, NameError, NameKey, Suffix};
pub use nets::{Net, NetError, NetHit, NetSet, NetSetBuilder};

/// Index of a policy (a list and the action it takes) in the snapshot's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub u16);

impl PolicyId {
    /// The allowlist: names under it are never blocked.
    pub const ALLOW: Self = Self(0);
    /// Policies are 16 bits wide in a table entry.
    pub const MAX: u16 = 0xffff;
}

/// Which names an entry covers, measured from its own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The name and every name below it: what an entry of a plain list
    /// (domains, hosts, adblock, OFAC) and an allow entry mean.
    Subtree,
    /// The name alone: an RPZ trigger `x`.
    Exact,
    /// The names below it, not the name itself: an RPZ trigger `*.x`.
    Below,
}

impl Scope {
    /// The entry's bits: [`AT_NAME`] and/or [`BELOW`].
    #[inline]
    fn bits(self) -> u32 {
        match self {
            Self::Subtree => AT_NAME | BELOW,
            Self::Exact => AT_NAME,
            Self::Below => BELOW,
        }
    }

    /// Whether an entry `entry` of this scope covers `name`, as the
    /// lookup would find it: at the name itself, or at a parent (a whole
    /// label suffix). For the canary (`crate::canary`): whether a list's
    /// own entries cover its canary, whatever other lists hold.
    pub fn covers(self, entry: &NameKey, name: &NameKey) -> bool {
        let (e, n) = (entry.as_bytes(), name.as_bytes());
        if e == n {
            return self.bits() & AT_NAME != 0;
        }
        // A parent: the name ends with the entry's bytes, and they start
        // at one of its labels (wire form: not inside a label's text).
        let at = n.len().wrapping_sub(e.len());
        self.bits() & BELOW != 0
            && n.len() > e.len()
            && n.ends_with(e)
            && (0..name.label_count()).any(|i| name.label_start(i) == at)
    }
}

/// A listed name matched: which policy, and where in the query name the
/// listed suffix starts (byte offset into the `NameKey`). An entry that
/// matched at offset 0 matched at the name itself (a subtree or exact
/// entry), anywhere else below it (a subtree or below entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub policy: PolicyId,
    pub suffix: usize,
}

/// The matcher's answer for one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Neither listed nor allowed.
    Miss,
    /// An allow entry covers the name (byte offset of the allowed suffix);
    /// allow entries win over block entries at any depth.
    Allowed { suffix: usize },
    /// The most specific block entry covering the name.
    Blocked(Hit),
}

const CHECK_BITS: u32 = 14;
const POLICY_BITS: u32 = 16;
const POLICY_MASK: u32 = (1 << POLICY_BITS) - 1;
/// The scope bits sit between the policy and the check.
const SCOPE_SHIFT: u32 = POLICY_BITS;
const CHECK_SHIFT: u32 = POLICY_BITS + 2;
/// The entry counts when its name is the whole query name.
const AT_NAME: u32 = 1;
/// The entry counts when its name is a parent of the query name.
const BELOW: u32 = 2;

/// 78-bit fingerprint of a wire-form name: xxh3-128 mixes every input bit
/// into every output bit (a folded 128-bit multiply), unlike multiply-rotate
/// hashes such as FxHash that collide on similar names.
#[inline]
fn fingerprint(name: &[u8], seed: u64) -> (u64, u32) {
    let h = xxhash_rust::xxh3::xxh3_128_with_seed(name, seed);
    ((h >> 64) as u64, (h as u32) >> (32 - CHECK_BITS))
}

#[inline]
fn tag(check: u32, scope: u32, policy: PolicyId) -> u32 {
    (check << CHECK_SHIFT) | (scope << SCOPE_SHIFT) | u32::from(policy.0)
}

#[inline]
fn tag_policy(tag: u32) -> PolicyId {
    PolicyId((tag & POLICY_MASK) as u16)
}

#[inline]
fn tag_scope(tag: u32) -> u32 {
    (tag >> SCOPE_SHIFT) & (AT_NAME | BELOW)
}

/// A frozen, immutable set of listed and allowed names.
#[derive(Debug)]
pub struct DomainSet {
    seed: u64,
    bits: u32,
    dir: Vec<u32>,
    keys: Vec<u64>,
    tags: Vec<u32>,
    /// Bit `n` set when some entry has `n` labels: suffixes of other lengths
    /// cannot match and are not hashed.
    label_mask: u128,
    has_allow: bool,
}

impl Default for DomainSet {
    fn default() -> Self {
        DomainSetBuilder::with_seed(0).build().0
    }
}

impl DomainSet {
    /// Unique entries (block and allow; a name stored with different
    /// policies at and below it counts twice).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set holds nothing.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Heap bytes held by the set.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 8 + self.tags.capacity() * 4 + self.dir.capacity() * 4
    }

    /// The id of the entry for `key`/`check` that counts at the whole
    /// query name (`at_name`) or at a parent of it.
    #[inline]
    fn find(&self, key: u64, check: u32, at_name: bool) -> Option<PolicyId> {
        let b = if self.bits == 0 {
            0
        } else {
            (key >> (64 - self.bits)) as usize
        };
        let lo = *self.dir.get(b)? as usize;
        let hi = *self.dir.get(b + 1)? as usize;
        let keys = self.keys.get(lo..hi)?;
        for (i, &k) in keys.iter().enumerate() {
            if k == key {
                let t = self.tags[lo + i];
                let want = if at_name { AT_NAME } else { BELOW };
                if t >> CHECK_SHIFT == check && tag_scope(t) & want != 0 {
                    return Some(tag_policy(t));
                }
            } else if k > key {
                break;
            }
        }
        None
    }

    /// Finds the entry covering `name`: the name itself or any suffix of it.
    /// Allocates nothing; hashes only suffixes whose length occurs in the set.
    #[inline]
    pub fn lookup(&self, name: &NameKey) -> Lookup {
        self.lookup_with(name, Some)
    }

    /// [`Self::lookup`] where `take` decides each block entry met, most
    /// specific first: `Some(id)` blocks, reported as `id` (the entry's own
    /// or, for an entry shared by several lists, the one of them that
    /// answers), and ends the search; `None` is as if the entry were not
    /// there (a client group that does not apply its list), so a less
    /// specific one may still block. `take` is not called again once it
    /// blocked. Allow entries are always seen and never passed to `take`.
    #[inline]
    pub fn lookup_with(
        &self,
        name: &NameKey,
        mut take: impl FnMut(PolicyId) -> Option<PolicyId>,
    ) -> Lookup {
        let bytes = name.as_bytes();
        let n = name.label_count();
        let mut blocked = None;
        // Longest suffix first: the first block hit is the most specific.
        for i in 0..n {
            if self.label_mask & (1u128 << (n - i).min(127)) == 0 {
                continue;
            }
            let start = name.label_start(i);
            let (key, check) = fingerprint(&bytes[start..], self.seed);
            match self.find(key, check, i == 0) {
                Some(PolicyId::ALLOW) => return Lookup::Allowed { suffix: start },
                Some(id) if blocked.is_none() => {
                    if let Some(policy) = take(id) {
                        blocked = Some(Hit {
                            policy,
                            suffix: start,
                        });
                        if !self.has_allow {
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
        blocked.map_or(Lookup::Miss, Lookup::Blocked)
    }

    /// Every entry that covers `name`, most specific first, allow entries
    /// included: for `embargo check` and tests, which want to know what
    /// else is listed, never for the query path.
    pub fn each_match(&self, name: &NameKey, mut f: impl FnMut(Hit)) {
        let bytes = name.as_bytes();
        for i in 0..name.label_count() {
            let start = name.label_start(i);
            let (key, check) = fingerprint(&bytes[start..], self.seed);
            if let Some(policy) = self.find(key, check, i == 0) {
                f(Hit {
                    policy,
                    suffix: start,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn key(s: &str) -> NameKey {
        NameKey::from_text(s, true).expect("valid test name")
    }

    fn set(entries: &[(&str, u16)]) -> DomainSet {
        let mut b = DomainSetBuilder::with_seed(7);
        for (name, p) in entries {
            b.insert(&key(name), PolicyId(*p));
        }
        b.build().0
    }

    #[test]
    fn covers_agrees_with_the_lookup_of_the_entry_alone() {
        let names = [
            "canary.example",
            "www.canary.example",
            "example",
            "nocanary.example",
            "a.b.canary.example",
            "canary.example.org",
        ];
        for entry in ["canary.example", "example", "b.canary.example"] {
            for scope in [Scope::Subtree, Scope::Exact, Scope::Below] {
                let mut b = DomainSetBuilder::with_seed(7);
                b.insert_scoped(&key(entry), PolicyId(1), scope);
                let s = b.build().0;
                for name in names {
                    let looked_up = matches!(s.lookup(&key(name)), Lookup::Blocked(_));
                    assert_eq!(
                        scope.covers(&key(entry), &key(name)),
                        looked_up,
                        "{entry} ({scope:?}) covering {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn listed_names_and_subdomains_match_parents_and_siblings_do_not() {
        let s = set(&[("seized.example", 1), ("deep.a.b.example", 2)]);
        let hit = |n: &str| s.lookup(&key(n));
        assert!(matches!(
            hit("seized.example"),
            Lookup::Blocked(Hit {
                policy: PolicyId(1),
                suffix: 0
            })
        ));
        match hit("www.Seized.Example") {
            Lookup::Blocked(h) => {
                assert_eq!(h.policy, PolicyId(1));
                assert_eq!(
                    key("www.seized.example").suffix(h.suffix).to_string(),
                    "seized.example"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(hit("example"), Lookup::Miss);
        assert_eq!(hit("notseized.example"), Lookup::Miss);
        assert_eq!(hit("seized.example.com"), Lookup::Miss);
        assert_eq!(hit("a.b.example"), Lookup::Miss);
        assert!(matches!(
            hit("x.deep.a.b.example"),
            Lookup::Blocked(Hit {
                policy: PolicyId(2),
                ..
            })
        ));
    }

    #[test]
    fn most_specific_block_wins_and_allow_wins_over_all() {
        let s = set(&[("b.example", 1), ("a.b.example", 2), ("ok.a.b.example", 0)]);
        assert!(matches!(
            s.lookup(&key("x.a.b.example")),
            Lookup::Blocked(Hit {
                policy: PolicyId(2),
                ..
            })
        ));
        assert!(matches!(
            s.lookup(&key("x.b.example")),
            Lookup::Blocked(Hit {
                policy: PolicyId(1),
                ..
            })
        ));
        assert!(matches!(
            s.lookup(&key("www.ok.a.b.example")),
            Lookup::Allowed { .. }
        ));
        // An allow entry above a block entry still wins.
        let s = set(&[("bad.good.example", 3), ("good.example", 0)]);
        assert!(matches!(
            s.lookup(&key("bad.good.example")),
            Lookup::Allowed { .. }
        ));
    }

    #[test]
    fn duplicates_keep_the_first_policy_and_are_counted() {
        let mut b = DomainSetBuilder::with_seed(1);
        b.insert(&key("dup.example"), PolicyId(2));
        b.insert(&key("dup.example"), PolicyId(1));
        b.insert(&key("dup.example"), PolicyId(2));
        b.insert(&key("other.example"), PolicyId(2));
        let (s, dups) = b.build();
        assert_eq!(s.len(), 2);
        assert_eq!(dups[2], 2);
        assert!(matches!(
            s.lookup(&key("dup.example")),
            Lookup::Blocked(Hit {
                policy: PolicyId(1),
                ..
            })
        ));
    }

    #[test]
    fn merging_hands_each_shared_name_its_policies_once() {
        let mut b = DomainSetBuilder::with_seed(3);
        b.insert(&key("both.example"), PolicyId(5));
        b.insert(&key("both.example"), PolicyId(2));
        b.insert(&key("both.example"), PolicyId(2));
        b.insert(&key("one.example"), PolicyId(5));
        b.insert(&key("ok.example"), PolicyId(5));
        b.insert(&key("ok.example"), PolicyId::ALLOW);
        let mut seen = Vec::new();
        let (s, dups) = b.build_merging(|p| {
            seen.push(p.to_vec());
            PolicyId(100)
        });
        assert_eq!(
            seen,
            [vec![PolicyId(2), PolicyId(5)]],
            "allow is never merged"
        );
        assert_eq!(s.len(), 3);
        assert_eq!((dups[2], dups[5]), (1, 2));
        let policy = |n: &str| match s.lookup(&key(n)) {
            Lookup::Blocked(h) => Some(h.policy),
            _ => None,
        };
        assert_eq!(policy("www.both.example"), Some(PolicyId(100)));
        assert_eq!(policy("one.example"), Some(PolicyId(5)));
        assert!(matches!(
            s.lookup(&key("ok.example")),
            Lookup::Allowed { .. }
        ));
    }

    #[test]
    fn lookup_with_skips_refused_entries_for_the_next_suffix_up() {
        let s = set(&[("b.example", 1), ("a.b.example", 2), ("ok.a.b.example", 0)]);
        let k = key("x.a.b.example");
        match s.lookup_with(&k, |p| (p != PolicyId(2)).then_some(p)) {
            Lookup::Blocked(h) => {
                assert_eq!(h.policy, PolicyId(1));
                assert_eq!(k.suffix(h.suffix).to_string(), "b.example");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.lookup_with(&k, |_| None), Lookup::Miss);
        assert!(matches!(
            s.lookup_with(&key("www.ok.a.b.example"), |_| None),
            Lookup::Allowed { .. }
        ));
    }

    #[test]
    fn empty_set_matches_nothing() {
        let s = DomainSet::default();
        assert!(s.is_empty());
        assert_eq!(s.lookup(&key("a.example")), Lookup::Miss);
        assert_eq!(s.lookup(&NameKey::new()), Lookup::Miss);
    }

    fn scoped(entries: &[(&str, u16, Scope)]) -> DomainSet {
        let mut b = DomainSetBuilder::with_seed(11);
        for (name, p, scope) in entries {
            b.insert_scoped(&key(name), PolicyId(*p), *scope);
        }
        b.build().0
    }

    fn blocked_by(s: &DomainSet, name: &str) -> Option<(u16, String)> {
        let k = key(name);
        match s.lookup(&k) {
            Lookup::Blocked(h) => Some((h.policy.0, k.suffix(h.suffix).to_string())),
            _ => None,
        }
    }

    /// Issue 16 (2): RPZ's `x` covers x alone, `*.x` the names below x,
    /// and the two together the subtree.
    #[test]
    fn r16_exact_covers_the_name_and_below_covers_what_is_under_it() {
        let s = scoped(&[
            ("exact.example", 1, Scope::Exact),
            ("below.example", 2, Scope::Below),
            ("both.example", 3, Scope::Exact),
            ("both.example", 3, Scope::Below),
        ]);
        assert_eq!(s.len(), 3, "x and *.x with one policy are one entry");
        assert_eq!(
            blocked_by(&s, "exact.example"),
            Some((1, "exact.example".into()))
        );
        assert_eq!(blocked_by(&s, "www.exact.example"), None);
        assert_eq!(blocked_by(&s, "below.example"), None);
        assert_eq!(
            blocked_by(&s, "a.b.below.example"),
            Some((2, "below.example".into()))
        );
        assert_eq!(
            blocked_by(&s, "both.example"),
            Some((3, "both.example".into()))
        );
        assert_eq!(
            blocked_by(&s, "www.both.example"),
            Some((3, "both.example".into()))
        );
    }

    /// The exact trigger beats the wildcard covering it, and the wildcard
    /// nearest the name beats one further up, as in BIND and PowerDNS.
    #[test]
    fn r16_the_most_specific_trigger_wins() {
        let s = scoped(&[
            ("example", 1, Scope::Below),
            ("a.example", 2, Scope::Below),
            ("x.a.example", 3, Scope::Exact),
            ("a.example", 4, Scope::Exact),
        ]);
        assert_eq!(
            blocked_by(&s, "x.a.example"),
            Some((3, "x.a.example".into()))
        );
        assert_eq!(
            blocked_by(&s, "y.x.a.example"),
            Some((2, "a.example".into()))
        );
        assert_eq!(blocked_by(&s, "a.example"), Some((4, "a.example".into())));
        assert_eq!(blocked_by(&s, "b.example"), Some((1, "example".into())));
        assert_eq!(blocked_by(&s, "example"), None);
    }

    /// A name that means one thing at itself and another below it is two
    /// adjacent entries; a subtree entry beside them counts at both.
    #[test]
    fn r16_different_policies_at_and_below_a_name_are_kept_apart() {
        let mut b = DomainSetBuilder::with_seed(5);
        b.insert_scoped(&key("x.example"), PolicyId(2), Scope::Exact);
        b.insert_scoped(&key("x.example"), PolicyId(3), Scope::Below);
        b.insert_scoped(&key("y.example"), PolicyId(4), Scope::Exact);
        b.insert(&key("y.example"), PolicyId(1));
        b.insert_scoped(&key("z.example"), PolicyId(2), Scope::Exact);
        b.insert_scoped(&key("z.example"), PolicyId(2), Scope::Exact);
        let mut seen = Vec::new();
        let (s, dups) = b.build_merging(|p| {
            seen.push(p.to_vec());
            PolicyId(100)
        });
        assert_eq!(seen, [vec![PolicyId(1), PolicyId(4)]]);
        assert_eq!(s.len(), 5);
        assert_eq!((dups[2], dups[3], dups[4], dups[1]), (1, 0, 1, 0));
        assert_eq!(blocked_by(&s, "x.example"), Some((2, "x.example".into())));
        assert_eq!(blocked_by(&s, "w.x.example"), Some((3, "x.example".into())));
        assert_eq!(blocked_by(&s, "y.example"), Some((100, "y.example".into())));
        assert_eq!(blocked_by(&s, "w.y.example"), Some((1, "y.example".into())));
        // A plain list's entries stay one entry per name.
        let plain = set(&[("a.example", 1), ("b.example", 2), ("a.example", 2)]);
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn allow_entries_cover_the_subtree_whatever_the_scope_asked() {
        let s = scoped(&[
            ("ok.example", 0, Scope::Exact),
            ("example", 1, Scope::Below),
        ]);
        assert!(matches!(
            s.lookup(&key("www.ok.example")),
            Lookup::Allowed { .. }
        ));
        assert!(matches!(
            s.lookup(&key("ok.example")),
            Lookup::Allowed { .. }
        ));
    }

    #[test]
    fn each_match_lists_every_covering_entry_most_specific_first() {
        let s = scoped(&[
            ("example", 1, Scope::Below),
            ("a.example", 2, Scope::Exact),
            ("b.a.example", 3, Scope::Subtree),
            ("ok.example", 0, Scope::Subtree),
        ]);
        let k = key("c.b.a.example");
        let mut got = Vec::new();
        s.each_match(&k, |h| {
            got.push((h.policy.0, k.suffix(h.suffix).to_string()))
        });
        assert_eq!(got, [(3, "b.a.example".into()), (1, "example".into())]);
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,8}"
    }

    fn domain() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(label(), 2..5)
    }

    /// Names that nest: one to four labels of a, b or c, under `t`.
    fn small_name() -> impl Strategy<Value = String> {
        prop::collection::vec("[abc]", 1..5).prop_map(|l| format!("{}.t", l.join(".")))
    }

    fn scope() -> impl Strategy<Value = Scope> {
        prop_oneof![Just(Scope::Subtree), Just(Scope::Exact), Just(Scope::Below)]
    }

    proptest! {
        /// The matcher agrees with a naive walk over a BTreeMap of names.
        #[test]
        fn agrees_with_naive_suffix_walk(
            listed in prop::collection::vec((domain(), 0u16..4), 1..60),
            probes in prop::collection::vec((domain(), prop::collection::vec(label(), 0..3)), 1..60),
        ) {
            let mut b = DomainSetBuilder::with_seed(42);
            let mut naive: BTreeMap<String, u16> = BTreeMap::new();
            for (labels, p) in &listed {
                let name = labels.join(".");
                b.insert(&key(&name), PolicyId(*p));
                naive.entry(name).and_modify(|q| *q = (*q).min(*p)).or_insert(*p);
            }
            let (s, _) = b.build();
            // Probe listed names with prefixes (must match) and random names.
            let mut names: Vec<String> = listed.iter().map(|(l, _)| l.join(".")).collect();
            for (d, prefix) in &probes {
                let mut all = prefix.clone();
                all.extend(d.iter().cloned());
                names.push(all.join("."));
                let (listed_labels, _) = &listed[names.len() % listed.len()];
                let mut sub = prefix.clone();
                sub.extend(listed_labels.iter().cloned());
                names.push(sub.join("."));
            }
            for name in names {
                let labels: Vec<&str> = name.split('.').collect();
                let suffixes: Vec<String> = (0..labels.len()).map(|i| labels[i..].join(".")).collect();
                let allowed = suffixes.iter().any(|s| naive.get(s) == Some(&0));
                let block = suffixes.iter().find_map(|s| naive.get(s).filter(|p| **p != 0).map(|p| (s.clone(), *p)));
                let k = key(&name);
                let got = s.lookup(&k);
                if allowed {
                    prop_assert!(matches!(got, Lookup::Allowed { .. }), "{} {:?}", name, got);
                } else if let Some((suffix, p)) = block {
                    match got {
                        Lookup::Blocked(h) => {
                            prop_assert_eq!(h.policy, PolicyId(p));
                            prop_assert_eq!(k.suffix(h.suffix).to_string(), suffix);
                        }
                        other => prop_assert!(false, "{} expected block, got {:?}", name, other),
                    }
                } else {
                    prop_assert_eq!(got, Lookup::Miss, "{}", name);
                }
            }
        }

        /// With names listed under several policies merged into set ids,
        /// a lookup that accepts some policies agrees with a naive walk
        /// that sees only those: what a client group does.
        #[test]
        fn merged_sets_and_filters_agree_with_naive_walk(
            listed in prop::collection::vec((domain(), 0u16..6), 1..60),
            probes in prop::collection::vec((domain(), prop::collection::vec(label(), 0..3)), 1..40),
            accepted in prop::collection::btree_set(1u16..6, 0..6),
        ) {
            use std::collections::BTreeSet;
            let mut b = DomainSetBuilder::with_seed(9);
            let mut naive: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
            for (labels, p) in &listed {
                let name = labels.join(".");
                b.insert(&key(&name), PolicyId(*p));
                naive.entry(name).or_default().insert(*p);
            }
            let mut sets: Vec<Vec<PolicyId>> = Vec::new();
            let (s, _) = b.build_merging(|p| {
                sets.push(p.to_vec());
                PolicyId(1000 + u16::try_from(sets.len() - 1).expect("few"))
            });
            let members = |id: PolicyId| -> Vec<u16> {
                match id.0.checked_sub(1000) {
                    Some(i) => sets[usize::from(i)].iter().map(|p| p.0).collect(),
                    None => vec![id.0],
                }
            };
            let mut names: Vec<String> = listed.iter().map(|(l, _)| l.join(".")).collect();
            for (i, (d, prefix)) in probes.iter().enumerate() {
                let mut sub = prefix.clone();
                sub.extend(listed[i % listed.len()].0.iter().cloned());
                names.push(sub.join("."));
                let mut other = prefix.clone();
                other.extend(d.iter().cloned());
                names.push(other.join("."));
            }
            for name in names {
                let labels: Vec<&str> = name.split('.').collect();
                let suffixes: Vec<String> = (0..labels.len()).map(|i| labels[i..].join(".")).collect();
                let allowed = suffixes.iter().any(|s| naive.get(s).is_some_and(|p| p.contains(&0)));
                let block = suffixes.iter().find(|s| {
                    naive.get(*s).is_some_and(|p| p.iter().any(|p| accepted.contains(p)))
                });
                let k = key(&name);
                let got = s.lookup_with(&k, |id| members(id).iter().any(|p| accepted.contains(p)).then_some(id));
                if allowed {
                    prop_assert!(matches!(got, Lookup::Allowed { .. }), "{} {:?}", name, got);
                } else if let Some(suffix) = block {
                    match got {
                        Lookup::Blocked(h) => {
                            prop_assert_eq!(k.suffix(h.suffix).to_string(), suffix.clone());
                            let want: Vec<u16> = naive[suffix].iter().copied().collect();
                            prop_assert_eq!(members(h.policy), want);
                        }
                        other => prop_assert!(false, "{} expected block, got {:?}", name, other),
                    }
                } else {
                    prop_assert_eq!(got, Lookup::Miss, "{}", name);
                }
            }
        }

        /// Issue 16 (2): with entries of every scope over a small alphabet
        /// (so that names nest), the matcher agrees with a naive walk: at
        /// the whole name, subtree and exact entries count; at a parent,
        /// subtree and below entries; an allow entry anywhere wins; else
        /// the longest matching suffix, lowest policy.
        #[test]
        fn scoped_entries_agree_with_naive_walk(
            listed in prop::collection::vec((small_name(), 0u16..5, scope()), 1..40),
            probes in prop::collection::vec(small_name(), 1..40),
        ) {
            let mut b = DomainSetBuilder::with_seed(17);
            let mut naive: BTreeMap<String, Vec<(Scope, u16)>> = BTreeMap::new();
            for (name, p, scope) in &listed {
                let scope = if *p == 0 { Scope::Subtree } else { *scope };
                b.insert_scoped(&key(name), PolicyId(*p), scope);
                naive.entry(name.clone()).or_default().push((scope, *p));
            }
            let (s, _) = b.build();
            let mut names: Vec<String> = listed.iter().map(|(n, _, _)| n.clone()).collect();
            names.extend(probes);
            for name in names {
                let labels: Vec<&str> = name.split('.').collect();
                let covering = |i: usize| -> Vec<u16> {
                    let suffix = labels[i..].join(".");
                    naive.get(&suffix).map_or(Vec::new(), |e| {
                        e.iter()
                            .filter(|(scope, _)| match scope {
                                Scope::Subtree => true,
                                Scope::Exact => i == 0,
                                Scope::Below => i > 0,
                            })
                            .map(|(_, p)| *p)
                            .collect()
                    })
                };
                let allowed = (0..labels.len()).any(|i| covering(i).contains(&0));
                let block = (0..labels.len()).find_map(|i| {
                    covering(i).into_iter().min().map(|p| (labels[i..].join("."), p))
                });
                let k = key(&name);
                let got = s.lookup(&k);
                if allowed {
                    prop_assert!(matches!(got, Lookup::Allowed { .. }), "{} {:?}", name, got);
                } else if let Some((suffix, p)) = block {
                    match got {
                        Lookup::Blocked(h) => {
                            prop_assert_eq!(h.policy, PolicyId(p), "{}", name);
                            prop_assert_eq!(k.suffix(h.suffix).to_string(), suffix);
                        }
                        other => prop_assert!(false, "{} expected block, got {:?}", name, other),
                    }
                } else {
                    prop_assert_eq!(got, Lookup::Miss, "{}", name);
                }
            }
        }
    }
}
