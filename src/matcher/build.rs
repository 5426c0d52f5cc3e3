//! Building the set: the builder collects a fingerprint and a tag per
//! entry, then [`DomainSetBuilder::build`] sorts them by bucket in place
//! (American flag sort), merges the entries of one name (one policy per
//! scope bit, or the caller's policy set: `build_merging`) and freezes the
//! arrays into a [`DomainSet`]. Everything here runs at load time, off
//! the serving path; the lookup is in `mod.rs`.

use super::{
    AT_NAME, BELOW, CHECK_SHIFT, DomainSet, NameKey, PolicyId, Scope, fingerprint, tag, tag_policy,
    tag_scope,
};

/// Collects entries, then freezes them into a [`DomainSet`].
#[derive(Debug)]
pub struct DomainSetBuilder {
    seed: u64,
    keys: Vec<u64>,
    tags: Vec<u32>,
    label_mask: u128,
}

impl Default for DomainSetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DomainSetBuilder {
    /// A builder with a random seed (see the module doc for why).
    pub fn new() -> Self {
        Self::with_seed(fastrand::u64(..))
    }

    /// A builder with a fixed seed, for reproducible tests.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed,
            keys: Vec::new(),
            tags: Vec::new(),
            label_mask: 0,
        }
    }

    /// Reserves room for `n` more entries (avoids the doubling slack of a
    /// growing `Vec` when the caller can estimate the list size).
    pub fn with_capacity(mut self, n: usize) -> Self {
        self.keys.reserve_exact(n);
        self.tags.reserve_exact(n);
        self
    }

    /// Adds a name covered by `policy`, with the names below it
    /// ([`Scope::Subtree`]). Later duplicates lose to earlier ones;
    /// [`PolicyId::ALLOW`] wins over all.
    pub fn insert(&mut self, name: &NameKey, policy: PolicyId) {
        self.insert_scoped(name, policy, Scope::Subtree);
    }

    /// Adds a name covered by `policy` over `scope`. An allow entry always
    /// covers the subtree, whatever `scope` says.
    pub fn insert_scoped(&mut self, name: &NameKey, policy: PolicyId, scope: Scope) {
        let scope = if policy == PolicyId::ALLOW {
            Scope::Subtree
        } else {
            scope
        };
        let (key, check) = fingerprint(name.as_bytes(), self.seed);
        self.keys.push(key);
        self.tags.push(tag(check, scope.bits(), policy));
        self.label_mask |= 1u128 << name.label_count().min(127);
    }

    /// Entries inserted so far (duplicates included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Sorts, removes duplicates and freezes. Returns the set and, per policy
    /// id, how many entries were dropped as duplicates of an earlier one.
    /// A name listed under several policies keeps the lowest.
    pub fn build(self) -> (DomainSet, Vec<u32>) {
        self.build_merging(|policies| policies[0])
    }

    /// [`Self::build`], but a name listed under several policies (none of
    /// them [`PolicyId::ALLOW`], which wins outright) is stored with the id
    /// `merge` returns for them: their distinct ids, lowest first, at least
    /// two. `merge` is called once per such name and scope bit (once when
    /// both bits see the same policies), at build time only.
    ///
    /// An entry counts as a duplicate when an earlier one (a lower policy,
    /// or the same one inserted before) already covers all of its scope.
    pub fn build_merging(
        self,
        mut merge: impl FnMut(&[PolicyId]) -> PolicyId,
    ) -> (DomainSet, Vec<u32>) {
        let Self {
            seed,
            mut keys,
            mut tags,
            label_mask,
        } = self;
        let n = keys.len();
        let bits = (n / 4).max(1).next_power_of_two().trailing_zeros();
        let nb = 1usize << bits;
        let bucket = |k: u64| {
            if bits == 0 {
                0
            } else {
                (k >> (64 - bits)) as usize
            }
        };

        // Counting pass, then an in-place American flag sort by bucket.
        let mut dir = vec![0u32; nb + 1];
        for &k in &keys {
            dir[bucket(k) + 1] += 1;
        }
        for b in 0..nb {
            dir[b + 1] += dir[b];
        }
        let mut next: Vec<u32> = dir[..nb].to_vec();
        for b in 0..nb {
            let end = dir[b + 1] as usize;
            while (next[b] as usize) < end {
                let i = next[b] as usize;
                let t = bucket(keys[i]);
                if t == b {
                    next[b] += 1;
                } else {
                    let j = next[t] as usize;
                    keys.swap(i, j);
                    tags.swap(i, j);
                    next[t] += 1;
                }
            }
        }
        drop(next);

        // Sort each bucket by (key, tag): the entries of one fingerprint
        // then lie together.
        let mut scratch: Vec<(u64, u32)> = Vec::new();
        for b in 0..nb {
            let (lo, hi) = (dir[b] as usize, dir[b + 1] as usize);
            scratch.clear();
            scratch.extend(
                keys[lo..hi]
                    .iter()
                    .copied()
                    .zip(tags[lo..hi].iter().copied()),
            );
            scratch.sort_unstable();
            for (i, (k, t)) in scratch.iter().enumerate() {
                keys[lo + i] = *k;
                tags[lo + i] = *t;
            }
        }

        // Compact each run of one fingerprint into one entry, or two when
        // the policies at the name and below it differ, rewriting the
        // directory as we go. A run is read whole before its entries are
        // written, and it never writes more entries than it read, so the
        // writes stay behind the reads.
        let mut dups = vec![0u32; usize::from(PolicyId::MAX) + 1];
        let mut run = Run::default();
        let mut w = 0usize;
        for b in 0..nb {
            let (lo, hi) = (dir[b] as usize, dir[b + 1] as usize);
            dir[b] = w as u32;
            let mut i = lo;
            while i < hi {
                let (k, check) = (keys[i], tags[i] >> CHECK_SHIFT);
                if i + 1 == hi || keys[i + 1] != k || tags[i + 1] >> CHECK_SHIFT != check {
                    // A name listed once (nearly all): kept as it is.
                    keys[w] = k;
                    tags[w] = tags[i];
                    w += 1;
                    i += 1;
                    continue;
                }
                run.clear();
                while i < hi && keys[i] == k && tags[i] >> CHECK_SHIFT == check {
                    run.push(tag_scope(tags[i]), tag_policy(tags[i]));
                    i += 1;
                }
                for (scope, id) in run.close(&mut dups, &mut merge).into_iter().flatten() {
                    keys[w] = k;
                    tags[w] = tag(check, scope, id);
                    w += 1;
                }
            }
        }
        dir[nb] = w as u32;
        keys.truncate(w);
        tags.truncate(w);
        keys.shrink_to_fit();
        tags.shrink_to_fit();
        let has_allow = tags.iter().any(|t| tag_policy(*t) == PolicyId::ALLOW);
        (
            DomainSet {
                seed,
                bits,
                dir,
                keys,
                tags,
                label_mask,
                has_allow,
            },
            dups,
        )
    }
}

/// The entries of one fingerprint while the builder compacts them: (scope
/// bits, policy) as inserted, and the policies at the name and below it.
/// Reused from run to run, so a build allocates it once.
#[derive(Debug, Default)]
struct Run {
    entries: Vec<(u32, PolicyId)>,
    at_name: Vec<PolicyId>,
    below: Vec<PolicyId>,
}

impl Run {
    fn clear(&mut self) {
        self.entries.clear();
        self.at_name.clear();
        self.below.clear();
    }

    fn push(&mut self, scope: u32, policy: PolicyId) {
        self.entries.push((scope, policy));
    }

    /// Counts the duplicates and gives the one or two entries to store:
    /// (scope bits, id).
    fn close(
        &mut self,
        dups: &mut [u32],
        merge: &mut impl FnMut(&[PolicyId]) -> PolicyId,
    ) -> [Option<(u32, PolicyId)>; 2] {
        // Lowest policy first (allow, then lists in config order), the
        // order in which the entries were inserted within one policy.
        self.entries.sort_by_key(|e| e.1);
        let mut covered = 0;
        for &(scope, policy) in &self.entries {
            if scope & !covered == 0 {
                dups[usize::from(policy.0)] += 1;
            }
            covered |= scope;
            for (bit, out) in [(AT_NAME, &mut self.at_name), (BELOW, &mut self.below)] {
                if scope & bit != 0 && out.last() != Some(&policy) {
                    out.push(policy);
                }
            }
        }
        let mut id = |policies: &[PolicyId]| match policies {
            [] => None,
            [one] => Some(*one),
            [PolicyId::ALLOW, ..] => Some(PolicyId::ALLOW),
            many => Some(merge(many)),
        };
        let at_name = id(&self.at_name);
        let below = if self.at_name == self.below {
            at_name
        } else {
            id(&self.below)
        };
        if at_name == below {
            return [at_name.map(|i| (AT_NAME | BELOW, i)), None];
        }
        [at_name.map(|i| (AT_NAME, i)), below.map(|i| (BELOW, i))]
    }
}
