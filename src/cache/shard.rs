//! One of the cache's sixteen shards: its entries in a dense vector, a
//! table from key hash to position, the frequency sketch and the
//! counters, all under one mutex on cache lines of its own. Which entry
//! leaves and which gets in is decided in [`super::admission`].

use std::sync::Mutex;

use hashbrown::HashTable;

use super::admission::{self, Sketch};
use super::entry::Entry;

/// Counters of one shard, written under its lock.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counters {
    pub(super) hits: u64,
    pub(super) misses: u64,
    pub(super) inserts: u64,
    pub(super) evictions: u64,
    pub(super) rejected: u64,
    pub(super) stale: u64,
    pub(super) prefetches: u64,
}

/// One shard: its entries in a dense vector (so that sampling a victim is
/// an index draw), a table from key hash to position, and the sketch.
pub(super) struct Shard {
    pub(super) table: HashTable<u32>,
    pub(super) slots: Vec<Entry>,
    /// Entries at most.
    pub(super) cap: usize,
    /// Bytes of entry allocations held, and at most.
    pub(super) bytes: usize,
    pub(super) budget: usize,
    pub(super) sketch: Sketch,
    pub(super) rng: fastrand::Rng,
    pub(super) counters: Counters,
}

/// A shard on cache lines of its own, so that workers locking two
/// neighbouring shards do not contend for one line.
#[repr(align(128))]
pub(super) struct Padded(pub(super) Mutex<Shard>);

impl Shard {
    pub(super) fn new(cap: usize, seed: u64) -> Self {
        Self {
            // Twice the entries: removals leave tombstones, and with the
            // table at most half full hashbrown cleans them in place rather
            // than growing; the table never reallocates.
            table: HashTable::with_capacity(cap * 2),
            slots: Vec::with_capacity(cap),
            cap,
            bytes: 0,
            budget: 0,
            sketch: Sketch::new(cap),
            rng: fastrand::Rng::with_seed(seed),
            counters: Counters::default(),
        }
    }

    /// The fixed bytes of this shard: slots, table, sketch.
    pub(super) fn fixed_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Entry>()
            + self.table.allocation_size()
            + self.sketch.bytes()
            + size_of::<Padded>()
    }

    pub(super) fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| {
                slots
                    .get(i as usize)
                    .is_some_and(|e| e.hash == hash && e.key() == key)
            })
            .map(|&i| i as usize)
    }

    /// Removes the entry at `i`; the last entry takes its place.
    pub(super) fn remove(&mut self, i: usize) {
        let Some(e) = self.slots.get(i) else {
            return;
        };
        let hash = e.hash;
        if let Ok(found) = self.table.find_entry(hash, |&j| j as usize == i) {
            found.remove();
        }
        let last = self.slots.len() - 1;
        if i != last {
            let moved = self.slots[last].hash;
            if let Some(j) = self.table.find_mut(moved, |&j| j as usize == last) {
                *j = i as u32;
            }
        }
        let gone = self.slots.swap_remove(i);
        self.bytes -= gone.charge();
    }

    /// Stores `entry`, making room by eviction; a key not already cached
    /// must be asked more often than each fresh entry it would evict.
    pub(super) fn insert(&mut self, entry: Entry, now: u64) -> bool {
        let charge = entry.charge();
        if charge > self.budget || self.cap == 0 {
            return false;
        }
        let resident = self.find(entry.hash, entry.key());
        if let Some(i) = resident {
            self.remove(i);
        }
        let freq = self.sketch.estimate(entry.hash);
        while self.slots.len() >= self.cap || self.bytes + charge > self.budget {
            let Some((v, fresh, victim_freq)) =
                admission::victim(&self.slots, &self.sketch, &mut self.rng, now)
            else {
                break;
            };
            if !admission::admits(freq, resident.is_some(), (fresh, victim_freq)) {
                self.counters.rejected += 1;
                return false;
            }
            self.remove(v);
            self.counters.evictions += 1;
        }
        let Ok(index) = u32::try_from(self.slots.len()) else {
            return false;
        };
        let hash = entry.hash;
        self.slots.push(entry);
        let slots = &self.slots;
        self.table.insert_unique(hash, index, |&i| {
            slots.get(i as usize).map_or(0, |e| e.hash)
        });
        self.bytes += charge;
        self.counters.inserts += 1;
        true
    }
}
