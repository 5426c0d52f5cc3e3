//! Step 4's one cold path: a local CNAME whose target is not local. The
//! rest of step 4 (a pre-built answer from [`crate::local`], one lookup)
//! stands in the straight line of [`Handler::handle_as`]; here the
//! target goes through steps 5-9 as if the client had asked it, and its
//! answer is joined to the local chain ([`Chase`]).

use std::net::SocketAddr;

use crate::cache::{CacheKey, Found, Tag};
use crate::groups::ClientId;
use crate::matcher::NameKey;
use crate::observe::metrics;
use crate::observe::{Decision, QueryEvent, Recorder, rcode_of};
use crate::policy::QueryFacts;
use crate::state::{ListSlot, Snapshot, Verdict};
use crate::wire;

use super::cached::{AnswerBlock, cached_block, servable};
use super::forward::{Chase, Forward};
use super::shape::truncate_for;
use super::{Handler, Outcome, Proto, list_slot};

impl Handler {
    /// A local CNAME whose target is not local: `out` holds the local
    /// answer (the chain). The target is resolved as if the client had
    /// asked it, through the lists (a CNAME to a listed name gets that
    /// list's answer, and the name never leaves), the cache, and its
    /// zone's upstream set, and its answer is joined to the chain: what a
    /// stub resolver expects of its resolver. The one local answer that
    /// allocates (a copy of the chain, the target's query): it needs the
    /// upstream's answer, or the cache's, anyway. Counted and recorded
    /// as `local` unless the target is blocked.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn chase(
        &self,
        snap: &Snapshot,
        pkt: &[u8],
        facts: QueryFacts,
        name: &NameKey,
        target: &NameKey,
        client: SocketAddr,
        id: ClientId,
        proto: Proto,
        out: &mut Vec<u8>,
        rec: &mut Recorder,
    ) -> Outcome {
        let (_, group) = snap.groups.of_client(client.ip(), id);
        let chase = Box::new(Chase {
            answer: out.clone(),
            name: name.clone(),
            facts,
        });
        // The target's question under the client's header and flags.
        let mut query = Vec::with_capacity(wire::HEADER_LEN + target.as_bytes().len() + 5);
        query.extend_from_slice(pkt.get(..wire::HEADER_LEN).unwrap_or(&[]));
        query.extend_from_slice(target.as_bytes());
        query.push(0);
        query.extend_from_slice(&facts.qtype.to_be_bytes());
        query.extend_from_slice(&facts.qclass.to_be_bytes());
        wire::put_u16(&mut query, 4, 1);
        for at in [6, 8, 10] {
            wire::put_u16(&mut query, at, 0);
        }
        let tf = QueryFacts {
            question_end: query.len(),
            ..facts
        };
        // The target's block (by name: `via` None, or found in its
        // cached answer) and how it is recorded.
        let record = |rec: &mut Recorder,
                      decision,
                      block: Option<(ListSlot, crate::policy::Action)>,
                      found: Option<(&AnswerBlock, &CacheKey, Tag)>,
                      stale,
                      out: &[u8]| {
            let stats = rec.stats();
            let counted = match (block, found) {
                (_, Some((b, ..))) => {
                    stats.count_answer_block(b.list, b.via());
                    metrics::Decision::Blocked
                }
                (Some((list, _)), None) => {
                    stats.count_block(list);
                    metrics::Decision::Blocked
                }
                (None, None) => metrics::Decision::Local,
            };
            stats.count_query(proto as usize, facts.qtype, counted);
            if rec.wants(decision) {
                let mut ev =
                    QueryEvent::new(decision, client, proto.into(), Some(name), facts.qtype)
                        .with_group(group.slot)
                        .with_client_id(id)
                        .with_stale(stale);
                if let Some((b, key, tag)) = found {
                    ev = b.record(ev, &self.cache, key, tag);
                } else if let Some((list, action)) = block {
                    // The listed entry is the target's, not in the question.
                    ev = ev.with_block(list, usize::MAX, action);
                }
                rec.record(ev.with_rcode(rcode_of(out)), pkt, out);
            }
        };
        let allowed = match snap.verdict(target, group) {
            Verdict::Blocked { policy, suffix } => {
                policy.respond(&query, &tf, wire::HEADER_LEN + suffix, out);
                chase.join(out);
                truncate_for(&facts, proto, out);
                let block = (list_slot(snap, policy), policy.action);
                record(rec, Decision::Blocked, Some(block), None, false, out);
                return Outcome::Reply;
            }
            Verdict::Allowed { .. } => true,
            Verdict::Miss => false,
        };
        let zone = snap.forward_zones.lookup(target);
        let set_key = zone.map_or(0, |z| snap.forward_zones.cache_key(z.set));
        let key = CacheKey::new(target, &tf).with_set(set_key);
        let (found, tag) = self.cache.get(&key, &query, &tf, out);
        if found == Found::Refresh {
            // Refreshed when a client asks the target itself.
            self.cache.prefetch_done();
        }
        let hit = match found {
            Found::Miss => None,
            _ => servable(&self.cache, tag, &key, snap, out),
        };
        if let Some(hit) = hit {
            let blocked = cached_block(hit, allowed, snap, group, &query, &tf, out);
            chase.join(out);
            truncate_for(&facts, proto, out);
            let decision = match blocked {
                Some(_) => Decision::Blocked,
                None => Decision::Local,
            };
            let found_block = blocked.as_ref().map(|b| (b, &key, tag));
            record(rec, decision, None, found_block, found == Found::Stale, out);
            return Outcome::Reply;
        }
        // Counted when the target's answer comes ([`Handler::count_answer`]).
        let upstream = zone.and_then(|z| {
            self.upstreams
                .forward_set(&snap.forward_zones, snap.generation, z.set)
        });
        rec.forwarded(pkt, client, proto.into());
        Outcome::Forward(Box::new(Forward {
            query,
            facts: tf,
            name: target.clone(),
            proto,
            client,
            client_id: id,
            allowed,
            received_us: rec.stamp_us(),
            upstream,
            set_key,
            chase: Some(chase),
            bogus: false,
            server: rec.local(),
        }))
    }
}
