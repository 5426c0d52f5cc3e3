//! Admission and eviction (TinyLFU): a count-min sketch of how often each
//! key was asked lately, behind a doorkeeper that takes first sightings;
//! a full shard samples a few entries for the least useful one, and a new
//! answer replaces a fresh victim only if its key is asked more often. A
//! flood of one-off names loses to every entry asked twice.

use super::entry::Entry;

/// Entries sampled to choose an eviction victim (as Redis does): enough to
/// find an unpopular or expired one, cheap enough to do under the lock.
const SAMPLE: usize = 5;

/// A count-min sketch of 4-bit counters behind a doorkeeper (TinyLFU): how
/// often each key was asked lately, up to 15 plus one.
pub(super) struct Sketch {
    /// 16 counters per word.
    counters: Box<[u64]>,
    /// A Bloom filter of keys seen once since the last halving.
    door: Box<[u64]>,
    /// `log2` of the bits in `door`.
    door_bits: u32,
    /// Touches since the last halving, and how many call for the next.
    touches: usize,
    period: usize,
}

/// Odd multipliers that derive the counters' and doorkeeper's positions
/// from the key's hash.
const SEEDS: [u64; 6] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0xd6e8_feb8_6659_fd93,
    0xa076_1d64_78bd_642f,
    0xe703_7ed1_a0b4_28db,
];

impl Sketch {
    /// For a shard of `cap` entries: about 8 counters and 32 doorkeeper
    /// bits an entry, halved every `10 × cap` touches (as Caffeine does).
    pub(super) fn new(cap: usize) -> Self {
        let words = (cap / 2).next_power_of_two().max(8);
        let door_bits = (cap * 32).next_power_of_two().max(512);
        Self {
            counters: vec![0; words].into_boxed_slice(),
            door: vec![0; door_bits / 64].into_boxed_slice(),
            door_bits: door_bits.trailing_zeros(),
            touches: 0,
            period: (cap * 10).max(64),
        }
    }

    pub(super) fn bytes(&self) -> usize {
        (self.counters.len() + self.door.len()) * 8
    }

    /// Positions of the key's two doorkeeper bits.
    fn door_at(&self, hash: u64) -> [usize; 2] {
        [SEEDS[4], SEEDS[5]].map(|s| (hash.wrapping_mul(s) >> (64 - self.door_bits)) as usize)
    }

    /// Word and shift of the key's four counters.
    fn counters_at(&self, hash: u64) -> [(usize, u32); 4] {
        let mask = self.counters.len() - 1;
        let mut at = [(0, 0); 4];
        for (i, slot) in at.iter_mut().enumerate() {
            let h = hash.wrapping_mul(SEEDS[i]);
            *slot = (((h >> 32) as usize) & mask, ((h >> 60) as u32) * 4);
        }
        at
    }

    fn in_door(&self, hash: u64) -> bool {
        self.door_at(hash)
            .iter()
            .all(|&b| self.door[b / 64] & (1 << (b % 64)) != 0)
    }

    /// The key was asked once more.
    pub(super) fn touch(&mut self, hash: u64) {
        if self.in_door(hash) {
            for (w, shift) in self.counters_at(hash) {
                if (self.counters[w] >> shift) & 0xf != 0xf {
                    self.counters[w] += 1 << shift;
                }
            }
        } else {
            for b in self.door_at(hash) {
                self.door[b / 64] |= 1 << (b % 64);
            }
        }
        self.touches += 1;
        if self.touches >= self.period {
            self.age();
        }
    }

    /// How often the key was asked lately (0 to 16).
    pub(super) fn estimate(&self, hash: u64) -> u8 {
        let count = self
            .counters_at(hash)
            .iter()
            .map(|&(w, shift)| ((self.counters[w] >> shift) & 0xf) as u8)
            .min()
            .unwrap_or(0);
        count + u8::from(self.in_door(hash))
    }

    /// Halves every counter and empties the doorkeeper: what was popular a
    /// while ago counts for less than what is popular now.
    fn age(&mut self) {
        for w in self.counters.iter_mut() {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.door.fill(0);
        self.touches = 0;
    }
}

/// A sampled entry of `slots` to evict: an expired one (the longest
/// expired) if the sample has one, otherwise the least frequently asked.
/// With whether it is fresh and its frequency.
pub(super) fn victim(
    slots: &[Entry],
    sketch: &Sketch,
    rng: &mut fastrand::Rng,
    now: u64,
) -> Option<(usize, bool, u8)> {
    let n = slots.len();
    let mut best: Option<(usize, bool, u64)> = None;
    for _ in 0..SAMPLE.min(n) {
        let i = rng.usize(..n);
        let e = &slots[i];
        let fresh = now < e.expires;
        let rank = if fresh {
            u64::from(sketch.estimate(e.hash))
        } else {
            e.expires
        };
        if best.is_none_or(|(_, f, r)| (fresh, rank) < (f, r)) {
            best = Some((i, fresh, rank));
        }
    }
    best.map(|(i, fresh, rank)| (i, fresh, rank.min(255) as u8))
}

/// Whether a new answer whose key was asked `freq` times lately may evict
/// the victim ([`victim`]: whether it is fresh, and its frequency): an
/// expired victim always goes, and so does any for a key already cached
/// (`resident`: a refresh); a fresh one only for a key asked more often.
#[inline]
pub(super) fn admits(freq: u8, resident: bool, (fresh, victim_freq): (bool, u8)) -> bool {
    !fresh || resident || freq > victim_freq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketch_counts_repeats_and_forgets_with_age() {
        let mut s = Sketch::new(1000);
        let (a, b) = (0x1234_5678_9abc_def0_u64, 0x0fed_cba9_8765_4321_u64);
        assert_eq!(s.estimate(a), 0);
        s.touch(a);
        assert_eq!(s.estimate(a), 1, "the doorkeeper holds a first sighting");
        for _ in 0..5 {
            s.touch(a);
        }
        assert_eq!(s.estimate(a), 6);
        for _ in 0..100 {
            s.touch(a);
        }
        assert_eq!(s.estimate(a), 16, "counters saturate at 15");
        assert!(s.estimate(b) <= 1);
        s.age();
        assert_eq!(s.estimate(a), 7, "halved, the doorkeeper emptied");
    }

    #[test]
    fn the_sketch_halves_itself_every_period() {
        let mut s = Sketch::new(100);
        let a = 42u64.wrapping_mul(SEEDS[0]);
        for _ in 0..10 {
            s.touch(a);
        }
        assert_eq!(s.estimate(a), 10);
        // 10 × 100 touches of other keys later, the counts have halved.
        for i in 0..(s.period - 10) as u64 {
            s.touch(i.wrapping_mul(SEEDS[1]) ^ 0x5555);
        }
        assert!(s.estimate(a) <= 5, "{}", s.estimate(a));
    }
}
