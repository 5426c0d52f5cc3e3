//! Step 7's question: what the rules in force make of a cached answer.
//! An entry carries a tag ([`Checked`]) saying what its CNAME chain and
//! addresses led to when it was stored; under the same rules that costs one compare,
//! after a reload the chain is inspected again, once. Fresh hits, stale
//! answers and a chased target's hit all ask here.

use crate::cache::{Cache, CacheKey, Tag};
use crate::cname::{Checked, Via};
use crate::inspect::Matched;
use crate::observe::{QueryEvent, metrics};
use crate::policy::{Action, QueryFacts};
use crate::state::{ListSlot, Snapshot};

use super::list_slot;

/// A block found in an answer (its CNAME chain, its addresses): the list,
/// its action, and what matched, in full when the answer was walked for
/// this client (`matched`), or only its kind for a verdict kept as such,
/// whose full word is kept beside it in the cache (read when recorded).
#[derive(Debug)]
pub(super) struct AnswerBlock {
    pub(super) list: ListSlot,
    pub(super) action: Action,
    pub(super) kind: Via,
    pub(super) matched: Option<Matched>,
}

impl AnswerBlock {
    /// What the metrics count it under.
    #[inline]
    pub(super) fn via(&self) -> metrics::Via {
        match self.kind {
            Via::Chain => metrics::Via::Cname,
            Via::Address => metrics::Via::Ip,
        }
    }

    /// `ev` as a block by the list, naming what matched: the walk's
    /// word, or the note kept beside the cached verdict (`key`, `tag`).
    /// The listed entry is the chain's, not in the question: no entry.
    #[inline]
    pub(super) fn record(
        &self,
        ev: QueryEvent,
        cache: &Cache,
        key: &CacheKey,
        tag: Tag,
    ) -> QueryEvent {
        let ev = ev.with_block(self.list, usize::MAX, self.action);
        match &self.matched {
            Some(m) => m.record(ev),
            None => cache
                .note(key, tag, |note| {
                    Matched::from_note(note).map_or(ev, |m| m.record(ev))
                })
                .unwrap_or(ev),
        }
    }
}

/// What the rules in force (`snap`) make of a cached answer tagged `tag`,
/// written into `out`, or None when it may not be served. Made under
/// these rules: as it was tagged, at the cost of one compare. Made under
/// the rules before a reload ([`Snapshot::generation`]): its chain
/// inspected again and the entry tagged anew, once, not on every hit, so
/// that a name a reload listed is not reached through a cached chain for
/// the rest of its TTL; a CNAME verdict of older rules is not served at
/// all (the name is asked again). Fresh hits and stale answers both pass
/// here.
#[inline]
pub(super) fn servable(
    cache: &Cache,
    tag: Tag,
    key: &CacheKey,
    snap: &Snapshot,
    out: &[u8],
) -> Option<Checked> {
    let hit = Checked::from_tag(tag);
    if hit.current(snap.generation) {
        return Some(hit);
    }
    recheck(cache, hit, tag, key, snap, out)
}

/// [`servable`] for a hit from before a reload. The chain is re-read as for
/// an answer not allowlisted: whether the asking name is, is decided per
/// query ([`cached_block`]). Without groups, a chain the new rules block
/// becomes [`Checked::PerGroup`] too (inspected on each hit until it
/// expires, when the forward path keeps the verdict instead).
#[cold]
fn recheck(
    cache: &Cache,
    hit: Checked,
    tag: Tag,
    key: &CacheKey,
    snap: &Snapshot,
    out: &[u8],
) -> Option<Checked> {
    if let Checked::Blocked { .. } = hit {
        return None;
    }
    let now = Checked::of(out, snap, false);
    cache.retag(key, tag, now.tag());
    Some(now)
}

/// What a cached answer `hit`, written into `out`, blocks for this
/// client: a CNAME verdict kept as such (no groups), or, for a chain some
/// groups block, this client's group's verdict walked again, whose block
/// then replaces the answer in `out`. None: the answer goes out as it is.
/// Fresh hits and stale answers both end here.
pub(super) fn cached_block(
    hit: Checked,
    allowed: bool,
    snap: &Snapshot,
    group: &crate::groups::Group,
    query: &[u8],
    facts: &QueryFacts,
    out: &mut Vec<u8>,
) -> Option<AnswerBlock> {
    match hit {
        Checked::Unchained | Checked::Passed { .. } => None,
        Checked::Blocked {
            list, action, via, ..
        } => Some(AnswerBlock {
            list,
            action,
            kind: via,
            matched: None,
        }),
        Checked::PerGroup { .. } if allowed => None,
        Checked::PerGroup { .. } => crate::inspect::inspect_answer(out, snap, group).map(|found| {
            found.respond(query, facts, out);
            let matched = found.matched();
            AnswerBlock {
                list: list_slot(snap, found.policy()),
                action: found.policy().action,
                kind: matched.via(),
                matched: Some(matched),
            }
        }),
    }
}
