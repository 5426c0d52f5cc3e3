//! Questions in flight and questions that failed lately, by one key: the
//! question with its name lowercased and the flags and OPT that change an
//! answer.
//!
//! - Identical questions in flight at once share one upstream query: the
//!   first leads it, the others wait for its answer ([`Flights::join`]).
//! - A question whose forward failed (every server timed out, refused, or
//!   answered SERVFAIL) is answered the same way for `[cache]
//!   servfail_ttl` without asking again (RFC 9520 section 3.2: resolvers
//!   cache resolution failures, at least 1 s and at most 5 min): while an
//!   upstream is down, a client that retries, or many clients asking one
//!   name, get their SERVFAIL at once instead of each waiting the whole
//!   `timeout_ms`, and the upstream is not asked again and again.
//!
//! Both live in one sharded table, so the fast path looks a query up once.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Answered, Error, Reply};
use crate::wire::{self, Header, Rcode};

const FLIGHT_SHARDS: usize = 16;
/// Failed questions remembered per shard at most (4,096 in all): the
/// table stays small however many names fail at once (a flood of random
/// names under a broken domain), and each entry is at most
/// [`MAX_FLIGHT_KEY`] + [`MAX_KEPT_ANSWER`] bytes and a little bookkeeping.
const MAX_FAILED_PER_SHARD: usize = 256;
/// A SERVFAIL longer than this is remembered as a failure without its
/// bytes (the client then gets our own SERVFAIL).
const MAX_KEPT_ANSWER: usize = 1232;

/// Up to 255 bytes of name, type, class, two flag bytes and our OPT record.
pub(super) const MAX_FLIGHT_KEY: usize = 255 + 4 + 2 + 11;

/// The questions in flight and the ones that failed lately. Sharded so
/// that concurrent forwards rarely meet on one lock.
pub(super) struct Flights {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// How long a failure is remembered; zero: not at all.
    failure_ttl: Duration,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Box<[u8]>, Flight>,
    /// Entries of `map` that are [`Flight::Failed`].
    failed: usize,
}

enum Flight {
    /// Asked upstream now; these wait for its answer.
    Asking(Vec<Box<dyn Reply>>),
    /// Failed lately: every query for it gets `answer` until `until`.
    Failed { until: Instant, answer: Answered },
}

/// What [`Flights::join`] made of a query.
pub(super) enum Joined {
    /// Ask upstream, then [`Flights::land`] the answer for the others.
    Lead(Box<dyn Reply>),
    /// Another query asks: its answer comes to this one too.
    Waiting,
    /// Failed lately: answer this at once.
    Failed(Box<dyn Reply>, Answered),
}

impl Flights {
    pub(super) fn new(failure_ttl: Duration) -> Self {
        Self {
            shards: (0..FLIGHT_SHARDS)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            hasher: RandomState::new(),
            failure_ttl,
        }
    }

    fn shard(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Shard> {
        let i = usize::try_from(self.hasher.hash_one(key)).unwrap_or(0) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the flight of `key`, leads a new one, or finds that it failed
    /// lately.
    pub(super) fn join(&self, key: &FlightKey, reply: Box<dyn Reply>) -> Joined {
        let mut guard = self.shard(key.as_bytes());
        let shard = &mut *guard;
        match shard.map.get_mut(key.as_bytes()) {
            Some(Flight::Asking(waiters)) => {
                waiters.push(reply);
                Joined::Waiting
            }
            Some(Flight::Failed { until, answer }) if Instant::now() < *until => {
                Joined::Failed(reply, answer.clone())
            }
            Some(expired) => {
                *expired = Flight::Asking(Vec::new());
                shard.failed -= 1;
                Joined::Lead(reply)
            }
            None => {
                shard
                    .map
                    .insert(key.as_bytes().into(), Flight::Asking(Vec::new()));
                Joined::Lead(reply)
            }
        }
    }

    /// Tells every query waiting in the flight of `key` that the upstream
    /// is overdue ([`Reply::overdue`]).
    pub(super) fn overdue(&self, key: &FlightKey) {
        if let Some(Flight::Asking(waiters)) =
            self.shard(key.as_bytes()).map.get_mut(key.as_bytes())
        {
            for w in waiters {
                w.overdue();
            }
        }
    }

    /// Ends the flight of `key`, handing a copy of `result` to every query
    /// that waited, and remembers it for `failure_ttl` if it is a failure.
    pub(super) fn land(&self, key: &FlightKey, result: &Answered) {
        let remember = !self.failure_ttl.is_zero() && is_failure(result);
        let now = Instant::now();
        let mut guard = self.shard(key.as_bytes());
        let shard = &mut *guard;
        let room = remember && (shard.failed < MAX_FAILED_PER_SHARD || shard.prune(now));
        let ended = match shard.map.get_mut(key.as_bytes()) {
            Some(flight) if room => {
                shard.failed += 1;
                let answer = match result {
                    Ok((_, resp)) if resp.len() > MAX_KEPT_ANSWER => Err(Error::Unparsable),
                    r => r.clone(),
                };
                let until = now + self.failure_ttl;
                Some(std::mem::replace(flight, Flight::Failed { until, answer }))
            }
            _ => shard.map.remove(key.as_bytes()),
        };
        drop(guard);
        if let Some(Flight::Asking(waiters)) = ended {
            for w in waiters {
                w.answer(result.clone());
            }
        }
    }
}

impl Shard {
    /// Forgets the failures that expired; true if that made room.
    fn prune(&mut self, now: Instant) -> bool {
        self.map
            .retain(|_, f| !matches!(f, Flight::Failed { until, .. } if *until <= now));
        self.failed = self
            .map
            .values()
            .filter(|f| matches!(f, Flight::Failed { .. }))
            .count();
        self.failed < MAX_FAILED_PER_SHARD
    }
}

/// Whether `result` is a failure to remember: no answer (but not for want
/// of room here: too many queries waiting is our state, not the name's),
/// or SERVFAIL.
fn is_failure(result: &Answered) -> bool {
    match result {
        Err(Error::Busy) => false,
        Err(_) => true,
        Ok((_, resp)) => Header::parse(resp).is_some_and(|h| h.rcode() == Rcode::ServFail as u8),
    }
}

/// The key of a query: the question with its name lowercased, the opcode,
/// RD, AD and CD bits, and the rest of the query verbatim (the handler's
/// own OPT record, which carries DO).
pub(super) struct FlightKey {
    buf: [u8; MAX_FLIGHT_KEY],
    len: usize,
}

impl FlightKey {
    pub(super) fn of(query: &[u8]) -> Option<Self> {
        let name_end = wire::skip_name(query, wire::HEADER_LEN)?;
        let rest = query.get(name_end..)?;
        let name = query.get(wire::HEADER_LEN..name_end)?;
        let len = name.len() + rest.len() + 2;
        if len > MAX_FLIGHT_KEY || rest.len() < 4 {
            return None;
        }
        let mut buf = [0u8; MAX_FLIGHT_KEY];
        // Length bytes are below 64, so lowercasing only touches letters.
        for (d, s) in buf.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        buf[name.len()..name.len() + rest.len()].copy_from_slice(rest);
        let flags = [query.get(2)? & 0x79, query.get(3)? & 0x30];
        buf[len - 2..len].copy_from_slice(&flags);
        Some(Self { buf, len })
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn query(name: &[u8], id: u16, flags: [u8; 2], opt_do: Option<bool>) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&flags);
        q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt_do.is_some())]);
        q.extend_from_slice(name);
        q.extend_from_slice(&[0, 1, 0, 1]);
        if let Some(d) = opt_do {
            wire::push_opt(&mut q, 0, d, &[]);
        }
        q
    }

    #[test]
    fn flight_keys_ignore_case_and_id_but_not_type_do_or_cd() {
        let a = query(b"\x03www\x07example\x00", 1, [1, 0], Some(false));
        let b = query(b"\x03WwW\x07EXAMPLE\x00", 2, [1, 0], Some(false));
        let key = |q: &[u8]| FlightKey::of(q).expect("key").as_bytes().to_vec();
        assert_eq!(key(&a), key(&b));
        assert_ne!(
            key(&a),
            key(&query(b"\x03www\x07example\x00", 1, [1, 0], Some(true))),
            "DO"
        );
        assert_ne!(
            key(&a),
            key(&query(b"\x03www\x07example\x00", 1, [1, 0x10], Some(false))),
            "CD"
        );
        assert_ne!(
            key(&a),
            key(&query(b"\x03www\x07example\x00", 1, [1, 0], None)),
            "EDNS"
        );
        let mut aaaa = a.clone();
        let t = aaaa.len() - 11 - 3;
        aaaa[t] = 28;
        assert_ne!(key(&a), key(&aaaa), "type");
        // Type 65 (HTTPS) is an 'A' byte: only the name is lowercased.
        let mut t65 = a.clone();
        t65[t] = 65;
        let mut t97 = a.clone();
        t97[t] = 97;
        assert_ne!(key(&t65), key(&t97));
    }

    /// A reply that counts its answers.
    struct Counted(Vec<u8>, Arc<AtomicUsize>);

    impl Reply for Counted {
        fn query(&mut self) -> &mut [u8] {
            &mut self.0
        }
        fn answer(self: Box<Self>, _: Answered) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn key(i: usize) -> FlightKey {
        let name = format!("\x06n{i:05}\x00");
        FlightKey::of(&query(name.as_bytes(), 1, [1, 0], None)).expect("key")
    }

    #[tokio::test]
    async fn failures_are_remembered_for_their_ttl_and_bounded() {
        let flights = Flights::new(Duration::from_millis(100));
        let answered = Arc::new(AtomicUsize::new(0));
        let reply = || Box::new(Counted(Vec::new(), answered.clone()));
        let timeout = || Err(Error::Timeout { server: "x".into() });
        // A flight: the second query waits, and gets the leader's failure.
        assert!(matches!(flights.join(&key(0), reply()), Joined::Lead(_)));
        assert!(matches!(flights.join(&key(0), reply()), Joined::Waiting));
        flights.land(&key(0), &timeout());
        assert_eq!(answered.load(Ordering::SeqCst), 1, "the waiter");
        // Remembered: answered at once, with what the flight got.
        let Joined::Failed(_, Err(Error::Timeout { .. })) = flights.join(&key(0), reply()) else {
            panic!("not remembered");
        };
        // "Too many queries in flight" is ours, not the name's: not remembered.
        assert!(matches!(flights.join(&key(1), reply()), Joined::Lead(_)));
        flights.land(&key(1), &Err(Error::Busy));
        assert!(matches!(flights.join(&key(1), reply()), Joined::Lead(_)));
        flights.land(&key(1), &Ok((0, vec![0; 12])));
        // Past its TTL the name is asked again.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(matches!(flights.join(&key(0), reply()), Joined::Lead(_)));
        flights.land(&key(0), &Ok((0, vec![0; 12])));
        // However many names fail, each shard remembers a bounded number.
        for i in 0..20 * MAX_FAILED_PER_SHARD {
            assert!(matches!(flights.join(&key(i), reply()), Joined::Lead(_)));
            flights.land(&key(i), &timeout());
        }
        for s in &flights.shards {
            let s = s.lock().expect("lock");
            assert!(s.failed <= MAX_FAILED_PER_SHARD && s.map.len() <= MAX_FAILED_PER_SHARD);
        }
        // A zero TTL remembers nothing.
        let off = Flights::new(Duration::ZERO);
        assert!(matches!(off.join(&key(0), reply()), Joined::Lead(_)));
        off.land(&key(0), &timeout());
        assert!(matches!(off.join(&key(0), reply()), Joined::Lead(_)));
    }
}
