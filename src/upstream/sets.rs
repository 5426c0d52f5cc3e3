//! The upstream sets: `[upstream]`, and one per `[[forward]]` table, each
//! an [`Upstream`] of its own (servers, strategy, health, sockets, the
//! questions in flight).
//!
//! ```text
//!  Snapshot.forward_zones ─► lookup(name) ─► set i ─┐   (frozen with the snapshot, with each set's spec)
//!  Snapshot.generation ─────────────────────────────┴► Sets::forward_set(zones, generation, i)
//!        bound to this generation? ── yes ─► its set i (an ArcSwap load, one compare)
//!                                    no ──► bind (once per reload): each spec's Upstream,
//!                                           the old one when its spec is unchanged
//! ```
//!
//! The zone table swaps with the snapshot on reload; the sets live here,
//! where sockets may. What ties them is the snapshot's generation: a
//! query decided under a snapshot is sent to the sets built from *that*
//! snapshot's specs, never to a set an index of another reload points
//! at. The first forward after a reload binds the new snapshot's specs
//! (a lock and a compare per set, off the hot path); a set whose servers,
//! strategy and timeouts did not change is the same [`Upstream`], keeping
//! its health, sockets and coalesced questions. A set dropped by a reload
//! ends when its last query does. A query still holding the snapshot
//! before a reload that changed its set gets that set as it was (built
//! for it if it is gone): correct, and too rare to cache.

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use super::Upstream;
use crate::config::UpstreamConfig;
use crate::observe::ServerNames;
use crate::observe::metrics::UpstreamRow;
use crate::zones::ForwardZones;

/// Every upstream set of the server.
pub struct Sets {
    default: Arc<Upstream>,
    /// Numbers every server for the query log.
    names: Arc<ServerNames>,
    /// The `[[forward]]` sets of the newest snapshot bound.
    bound: ArcSwap<Bound>,
    /// One binding at a time.
    binding: Mutex<()>,
}

/// The forward sets built for one snapshot, in its table's order.
#[derive(Default)]
struct Bound {
    /// The snapshot's generation (0: none bound yet; generations start at 1).
    generation: u32,
    sets: Box<[BoundSet]>,
}

struct BoundSet {
    spec: UpstreamConfig,
    /// `forward[1]`: the set's label in `/metrics`.
    label: String,
    upstream: Arc<Upstream>,
}

impl Sets {
    /// `default` is `[upstream]`'s set, configured as every forward set
    /// will be (failure memory, client timer, read pass).
    pub fn new(default: Upstream) -> Self {
        let names = Arc::new(ServerNames::default());
        Self {
            default: Arc::new(default.with_names(&names)),
            names,
            bound: ArcSwap::from_pointee(Bound::default()),
            binding: Mutex::new(()),
        }
    }

    /// `[upstream]`'s set.
    pub fn default_set(&self) -> &Arc<Upstream> {
        &self.default
    }

    /// The number of every server these sets have used (the query log's
    /// names for them).
    pub fn names(&self) -> &Arc<ServerNames> {
        &self.names
    }

    /// The set `set` of `zones`, the forward-zone table of the snapshot
    /// numbered `generation`. `None` only for a set the table does not have.
    #[inline]
    pub fn forward_set(
        &self,
        zones: &ForwardZones,
        generation: u32,
        set: usize,
    ) -> Option<Arc<Upstream>> {
        let bound = self.bound.load();
        if bound.generation == generation {
            return bound.sets.get(set).map(|s| s.upstream.clone());
        }
        drop(bound);
        self.bind(zones, generation, set)
    }

    /// Builds (or keeps) the sets of `zones`; publishes them if `generation`
    /// is newer than what is bound, and returns set `set`.
    #[cold]
    fn bind(&self, zones: &ForwardZones, generation: u32, set: usize) -> Option<Arc<Upstream>> {
        let _one = self.binding.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.bound.load_full();
        if old.generation == generation {
            return old.sets.get(set).map(|s| s.upstream.clone());
        }
        let sets: Box<[BoundSet]> = (0..zones.sets())
            .filter_map(|i| {
                let spec = zones.spec(i)?;
                let upstream = old
                    .sets
                    .iter()
                    .find(|s| s.spec == *spec)
                    .map_or_else(|| Arc::new(self.build(spec)), |s| s.upstream.clone());
                Some(BoundSet {
                    spec: spec.clone(),
                    label: format!("forward[{}]", i + 1),
                    upstream,
                })
            })
            .collect();
        let found = sets.get(set).map(|s| s.upstream.clone());
        // Generations only grow (a counter of every snapshot built): an
        // older one is a query that loaded its snapshot before a reload.
        let newer = old.generation == 0 || generation.wrapping_sub(old.generation) < 1 << 31;
        if newer {
            self.bound.store(Arc::new(Bound { generation, sets }));
        }
        found
    }

    /// A forward set for `spec`, built as `[upstream]`'s was.
    fn build(&self, spec: &UpstreamConfig) -> Upstream {
        let d = &self.default;
        let mut u = Upstream::new(spec)
            .with_failure_ttl(d.failure_ttl)
            .with_read_pass(d.pass)
            .with_names(&self.names);
        if let Some(after) = d.overdue {
            u = u.with_overdue(after);
        }
        u
    }

    /// Binds the sets of a snapshot now rather than at its first forward
    /// (at start: `/metrics` lists their servers from the first scrape).
    pub fn prepare(&self, zones: &ForwardZones, generation: u32) {
        if zones.sets() > 0 {
            let _ = self.forward_set(zones, generation, 0);
        }
    }

    /// Every set in use: `[upstream]`'s first, then the forward sets of
    /// the newest snapshot, each with its label (`forward[1]`).
    pub fn all(&self) -> Vec<(Option<String>, Arc<Upstream>)> {
        let bound = self.bound.load();
        std::iter::once((None, self.default.clone()))
            .chain(
                bound
                    .sets
                    .iter()
                    .map(|s| (Some(s.label.clone()), s.upstream.clone())),
            )
            .collect()
    }

    /// The longest deadline of the sets in use (for draining on shutdown).
    pub fn timeout(&self) -> std::time::Duration {
        self.bound
            .load()
            .sets
            .iter()
            .map(|s| s.upstream.timeout())
            .fold(self.default.timeout(), std::cmp::max)
    }
}

/// Each server's counters, labelled with its set, for `/metrics`: rows
/// borrow from `sets` (as [`Sets::all`] gave them).
pub fn server_rows(sets: &[(Option<String>, Arc<Upstream>)]) -> Vec<UpstreamRow<'_>> {
    sets.iter()
        .flat_map(|(label, u)| u.stats_of(label.as_deref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn zones(text: &str) -> ForwardZones {
        let config = Config::parse(std::path::Path::new("z.toml"), text).expect("config");
        ForwardZones::new(&config.forward)
    }

    /// Issue 18: a set is the one its snapshot's spec names, whatever the
    /// order of the tables after a reload; an unchanged set is kept (its
    /// health and sockets), a changed one rebuilt; a query still holding
    /// an older snapshot gets its own set, without unbinding the newer.
    #[test]
    fn r18_a_snapshot_gets_the_sets_of_its_own_specs() {
        let sets = Sets::new(Upstream::new(&UpstreamConfig::default()));
        let first = zones(
            "[[forward]]\nzones = [\"corp.example\"]\nservers = [\"10.0.0.10\"]\n\
             [[forward]]\nzones = [\"lab.example\"]\nservers = [\"10.9.0.53\"]\n",
        );
        let corp = sets.forward_set(&first, 5, 0).expect("set");
        let lab = sets.forward_set(&first, 5, 1).expect("set");
        assert!(Arc::ptr_eq(
            &corp,
            &sets.forward_set(&first, 5, 0).expect("set")
        ));
        assert_eq!(corp.stats()[0].name, "10.0.0.10:53");
        // A reload swaps the tables round and moves corp to a new server.
        let second = zones(
            "[[forward]]\nzones = [\"lab.example\"]\nservers = [\"10.9.0.53\"]\n\
             [[forward]]\nzones = [\"corp.example\"]\nservers = [\"10.0.0.11\"]\n",
        );
        let lab2 = sets.forward_set(&second, 6, 0).expect("set");
        assert!(Arc::ptr_eq(&lab, &lab2), "an unchanged set is kept");
        let corp2 = sets.forward_set(&second, 6, 1).expect("set");
        assert_eq!(corp2.stats()[0].name, "10.0.0.11:53");
        // A query decided under the first snapshot still goes where it said.
        let late = sets.forward_set(&first, 5, 0).expect("set");
        assert_eq!(late.stats()[0].name, "10.0.0.10:53");
        assert!(Arc::ptr_eq(
            &corp2,
            &sets.forward_set(&second, 6, 1).expect("set")
        ));
        assert_eq!(sets.forward_set(&second, 6, 2).map(|_| ()), None);
        let labels: Vec<_> = sets.all().into_iter().map(|(l, _)| l).collect();
        assert_eq!(
            labels,
            [None, Some("forward[1]".into()), Some("forward[2]".into())]
        );
        // Servers are numbered once for the query log, `[upstream]`'s none here.
        let ids: Vec<u16> = [&corp, &lab, &corp2]
            .iter()
            .map(|u| u.server_id(0))
            .collect();
        assert_eq!(ids, [0, 1, 2]);
        assert_eq!(sets.names().label(2).as_deref(), Some("10.0.0.11:53"));
    }
}
