//! Questions whose answer was judged bogus lately, with why: answered
//! SERVFAIL with the same EDE for `bogus_ttl`, without asking the upstream
//! and walking the chain again (RFC 4035 4.7: a validator should cache
//! bogus data, for a bounded time, so that a broken zone does not turn
//! every retry into a burst of upstream queries).
//!
//! A bounded map, emptied when full; only the validated forward path
//! reaches it, never a blocked or cached answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_net::proto::op::Query;

use super::reason::Ede;

/// Questions kept at most.
const MAX_BOGUS: usize = 10_000;

type Key = (String, u16, u16);

#[derive(Debug)]
pub(super) struct Bogus {
    ttl: Duration,
    judged: Mutex<HashMap<Key, (Instant, Ede)>>,
}

fn key(q: &Query) -> Key {
    (
        q.name().to_lowercase().to_ascii(),
        u16::from(q.query_type()),
        u16::from(q.query_class()),
    )
}

impl Bogus {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            judged: Mutex::new(HashMap::new()),
        }
    }

    /// Why `q`'s answer was judged bogus, if it was within `bogus_ttl`.
    pub(super) fn judged(&self, q: &Query) -> Option<Ede> {
        let judged = self.judged.lock().ok()?;
        judged
            .get(&key(q))
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, ede)| ede.clone())
    }

    pub(super) fn remember(&self, q: &Query, ede: Ede) {
        if let Ok(mut judged) = self.judged.lock() {
            if judged.len() >= MAX_BOGUS {
                judged.clear();
            }
            judged.insert(key(q), (Instant::now() + self.ttl, ede));
        }
    }
}
