//! Response rate limiting (in the spirit of BIND's RRL) per client
//! prefix over UDP: a credit of answers refilled every millisecond, a
//! flood kept limited for the window, every `slip`th limited answer sent
//! empty with TC=1, in a fixed table that a spoofed flood cannot grow.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::prefix::PrefixKey;
use super::rules::CidrSet;

/// The rate limiter's settings (`[rate_limit]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Answers per second per client prefix over UDP; 0 turns the limiter off.
    pub responses_per_second: u32,
    /// Seconds over which a flood keeps counting against its prefix.
    pub window: u32,
    /// Every `slip`th limited answer goes out empty with TC=1; 0 = none.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Clients never limited.
    pub exempt: CidrSet,
    /// Client prefixes tracked at once.
    pub table_size: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            responses_per_second: 0,
            window: 15,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: CidrSet::of(&["127.0.0.0/8", "::1/128"]),
            table_size: 65_536,
        }
    }
}

/// What the limiter says about one UDP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Answer as usual.
    Answer,
    /// Send an empty answer with TC=1: a real client retries over TCP, a
    /// spoofed victim gets no more bytes than were sent in its name.
    Slip,
    /// Send nothing.
    Drop,
}

/// Ways per bucket: a prefix lives in one of the 4 slots its hash names,
/// and a new prefix takes the stalest of them.
const WAYS: usize = 4;
/// Credit is counted in thousandths of an answer, so that refill per
/// millisecond is exactly `responses_per_second` units.
const UNIT: i64 = 1000;

/// One client prefix in the limiter's table: 24 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RateSlot {
    /// The prefix's bits (see [`PrefixKey`]).
    bits: u64,
    /// Answers this prefix may still get, in thousandths; negative while limited.
    credit: i64,
    /// When it last asked, in milliseconds since the limiter started
    /// (wraps after 49 days; an idle prefix then looks recently seen, which
    /// costs it at most the refill of that one gap).
    last: u32,
    /// Limited answers since the last slip.
    since_slip: u16,
    /// 0 = empty slot, else 4 or 6.
    family: u8,
}

impl RateSlot {
    fn holds(&self, key: PrefixKey) -> bool {
        self.family == key.family && self.bits == key.bits
    }
}

/// Response rate limiting in the spirit of BIND's RRL, per client prefix
/// (`ipv4_prefix`, `ipv6_prefix`): each prefix has a credit of answers,
/// refilled at `responses_per_second` and capped at one second's worth; each
/// answer takes one. Below zero the prefix is limited, and its credit keeps
/// falling with every query down to `-window x rate`, so a flood stays
/// limited until it has been quiet for as long as the window says.
///
/// The table has a fixed number of slots (`table_size`, rounded up to a
/// power of two), in buckets of 4 behind one mutex each: a spoofed
/// flood from random sources costs [`RateLimiter::heap_bytes`] and no more,
/// and evicts only the stalest prefixes, never one that keeps asking. It is
/// shared by every UDP worker: a stub's queries come from random source
/// ports, which the kernel may spread over workers, and a table per worker
/// would multiply the limit.
#[derive(Debug)]
pub struct RateLimiter {
    settings: RateLimit,
    buckets: Box<[Mutex<[RateSlot; WAYS]>]>,
    seed: u64,
    epoch: Instant,
    cap: i64,
    floor: i64,
}

impl RateLimiter {
    /// The limiter for `settings`, or `None` when it is off (rate 0): then
    /// no table is allocated and the handler pays one branch.
    pub fn new(settings: &RateLimit) -> Option<Self> {
        Self::with_seed(settings, fastrand::u64(..))
    }

    /// As [`Self::new`], with the slots placed by `seed` (random by default,
    /// so no one can aim a flood at a victim's bucket).
    pub fn with_seed(settings: &RateLimit, seed: u64) -> Option<Self> {
        if settings.responses_per_second == 0 {
            return None;
        }
        let slots = settings.table_size.max(WAYS).next_power_of_two();
        let buckets = (0..slots / WAYS)
            .map(|_| Mutex::new([RateSlot::default(); WAYS]))
            .collect();
        let rate = i64::from(settings.responses_per_second);
        Some(Self {
            settings: settings.clone(),
            buckets,
            seed,
            epoch: Instant::now(),
            cap: rate * UNIT,
            floor: -(i64::from(settings.window) * rate * UNIT),
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &RateLimit {
        &self.settings
    }

    /// Client prefixes it can track at once.
    pub fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// The table's memory, fixed from the start.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.len() * size_of::<Mutex<[RateSlot; WAYS]>>()
    }

    /// Whether an answer may go to `ip` now.
    #[inline]
    pub fn check(&self, ip: IpAddr) -> Limit {
        let now = u32::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u32::MAX);
        self.check_at(ip, now)
    }

    /// [`Self::check`] at `now` milliseconds since the limiter started.
    pub fn check_at(&self, ip: IpAddr, now: u32) -> Limit {
        if self.settings.exempt.contains(ip) {
            return Limit::Answer;
        }
        let key = PrefixKey::of(ip, self.settings.ipv4_prefix, self.settings.ipv6_prefix);
        let b = (key.hash(self.seed) as usize) & (self.buckets.len() - 1);
        let mut bucket = match self.buckets[b].lock() {
            Ok(g) => g,
            // Nothing panics while holding it; if something did, the counts are still counts.
            Err(poisoned) => poisoned.into_inner(),
        };
        let slot = match bucket.iter().position(|s| s.holds(key)) {
            Some(i) => {
                let s = &mut bucket[i];
                // Refill for the time since it last asked, up to one second's worth.
                let elapsed = i64::from(now.wrapping_sub(s.last));
                s.credit = s
                    .credit
                    .saturating_add(elapsed.saturating_mul(self.cap / UNIT))
                    .min(self.cap);
                s
            }
            None => {
                // An empty slot, else the prefix that asked longest ago.
                let i = bucket
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, s)| {
                        if s.family == 0 {
                            u64::MAX
                        } else {
                            u64::from(now.wrapping_sub(s.last))
                        }
                    })
                    .map_or(0, |(i, _)| i);
                bucket[i] = RateSlot {
                    bits: key.bits,
                    credit: self.cap,
                    last: now,
                    since_slip: 0,
                    family: key.family,
                };
                &mut bucket[i]
            }
        };
        slot.last = now;
        slot.credit = (slot.credit - UNIT).max(self.floor);
        if slot.credit >= 0 {
            return Limit::Answer;
        }
        let slip = self.settings.slip;
        if slip == 0 {
            return Limit::Drop;
        }
        slot.since_slip += 1;
        if u32::from(slot.since_slip) >= slip {
            slot.since_slip = 0;
            Limit::Slip
        } else {
            Limit::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn limiter(rate: u32, window: u32, slip: u32) -> RateLimiter {
        RateLimiter::with_seed(
            &RateLimit {
                responses_per_second: rate,
                window,
                slip,
                exempt: CidrSet::default(),
                ..RateLimit::default()
            },
            3,
        )
        .expect("on")
    }

    fn tally(l: &RateLimiter, who: &str, n: u32, now: u32) -> [u32; 3] {
        let mut t = [0; 3];
        for _ in 0..n {
            match l.check_at(ip(who), now) {
                Limit::Answer => t[0] += 1,
                Limit::Slip => t[1] += 1,
                Limit::Drop => t[2] += 1,
            }
        }
        t
    }

    #[test]
    fn rate_zero_allocates_nothing() {
        assert!(RateLimiter::new(&RateLimit::default()).is_none());
    }

    #[test]
    fn a_burst_gets_one_seconds_worth_then_slips_every_second() {
        let l = limiter(10, 15, 2);
        assert_eq!(tally(&l, "192.0.2.1", 30, 0), [10, 10, 10]);
        // Another address in the same /24 shares the limit.
        assert_eq!(tally(&l, "192.0.2.99", 2, 0), [0, 1, 1]);
        // Another /24 has its own.
        assert_eq!(tally(&l, "192.0.3.1", 10, 0), [10, 0, 0]);
    }

    #[test]
    fn slip_zero_drops_all_slip_one_truncates_all() {
        assert_eq!(tally(&limiter(5, 15, 0), "192.0.2.1", 20, 0), [5, 0, 15]);
        assert_eq!(tally(&limiter(5, 15, 1), "192.0.2.1", 20, 0), [5, 15, 0]);
        assert_eq!(tally(&limiter(5, 15, 3), "192.0.2.1", 20, 0), [5, 5, 10]);
    }

    #[test]
    fn a_flood_stays_limited_for_the_window() {
        let l = limiter(10, 5, 2);
        // 1000 queries in a second: credit falls to the floor, -5 s worth.
        assert_eq!(tally(&l, "192.0.2.1", 1000, 0)[0], 10);
        // Two seconds of quiet is not enough to answer again...
        assert_eq!(tally(&l, "192.0.2.1", 1, 2000)[0], 0);
        // ...six seconds after the flood it is (refilled past zero).
        assert_eq!(tally(&l, "192.0.2.1", 1, 8000)[0], 1);
        // A client that keeps to the rate is never limited.
        let l = limiter(10, 5, 2);
        for s in 0..100u32 {
            assert_eq!(tally(&l, "192.0.2.1", 10, s * 1000)[0], 10, "second {s}");
        }
    }

    #[test]
    fn exempt_clients_are_never_limited() {
        let l = RateLimiter::with_seed(
            &RateLimit {
                responses_per_second: 1,
                ..RateLimit::default()
            },
            3,
        )
        .expect("on");
        assert_eq!(tally(&l, "127.0.0.1", 100, 0), [100, 0, 0]);
        assert_eq!(tally(&l, "::1", 100, 0), [100, 0, 0]);
        assert_eq!(tally(&l, "::ffff:127.0.0.1", 100, 0), [100, 0, 0]);
        assert_eq!(tally(&l, "10.0.0.1", 3, 0), [1, 1, 1]);
    }

    #[test]
    fn ipv6_clients_are_limited_per_56() {
        let l = limiter(2, 15, 2);
        assert_eq!(tally(&l, "2001:db8:0:1::1", 2, 0), [2, 0, 0]);
        assert_eq!(tally(&l, "2001:db8:0:2::9", 2, 0), [0, 1, 1], "same /56");
        assert_eq!(tally(&l, "2001:db8:0:100::1", 2, 0), [2, 0, 0], "next /56");
    }

    #[test]
    fn the_table_is_fixed_and_a_spoofed_flood_evicts_only_the_stale() {
        let l = RateLimiter::with_seed(
            &RateLimit {
                responses_per_second: 5,
                exempt: CidrSet::default(),
                ipv4_prefix: 32,
                table_size: 4000,
                ..RateLimit::default()
            },
            9,
        )
        .expect("on");
        assert_eq!(l.slots(), 4096);
        assert_eq!(size_of::<RateSlot>(), 24);
        let bytes = l.heap_bytes();
        assert!(bytes <= 4096 * 26, "{bytes} bytes");
        // An attacker floods from one address, interleaved with a spoofed
        // flood from 180,000 random sources, over ten seconds.
        let mut rng = fastrand::Rng::with_seed(5);
        let mut attacker = [0u32; 3];
        for i in 0..200_000u32 {
            let now = i / 20;
            l.check_at(IpAddr::V4(Ipv4Addr::from(rng.u32(..))), now);
            if i % 10 == 0 {
                let t = tally(&l, "203.0.113.5", 1, now);
                for k in 0..3 {
                    attacker[k] += t[k];
                }
            }
        }
        assert_eq!(l.heap_bytes(), bytes, "no growth");
        // The attacker's prefix, always the freshest in its bucket, kept its
        // limit: its first second's five answers over the whole flood, not
        // five more at every eviction.
        assert_eq!(attacker[0], 5, "{attacker:?}");
        assert_eq!(attacker[1] + attacker[2], 19_995);
    }
}
