//! Step 9: the upstream's answer to a [`Forward`], made the client's. Its
//! CNAME chain, then its addresses, are inspected against the rules now in
//! force and the client's group ([`crate::cname`], [`crate::response_ip`]):
//! a chain through a listed name, or an address in a listed network, gets
//! that list's block, as if the name had been asked. A good answer is
//! cached (TTLs clamped, tagged with what its chain led to), then sent
//! with the client's ID, flags and question. When every upstream failed,
//! or answered SERVFAIL, or is still silent at the client timer, an
//! expired answer still kept is served (RFC 8767); without one, SERVFAIL
//! with EDE 22. Both forward paths end here, and each decision is
//! recorded with the time from the query to its answer.

use crate::cname::{Checked, Via};
use crate::inspect;
use crate::observe::{Decision, QueryEvent, metrics, now_us, rcode_of};
use crate::policy::start_response;
use crate::server::log_gate::LogGate;
use crate::state::ListSlot;
use crate::upstream::{Answered, Error};
use crate::wire::{self, Rcode};

use super::cached::{cached_block, servable};
use super::forward::Forward;
use super::shape::{for_the_client, strip_opt, truncate_for, with_edns};
use super::{Handler, list_slot};

impl Handler {
    /// Step 9 of the module doc: writes into `out` what the client of
    /// `job` gets for `answer` (the index of the upstream that gave it, and
    /// its bytes), caches a good answer, and records the decision: both
    /// forward paths end here. As in [`Handler::handle_as`], each outcome
    /// writes its answer, records it and returns, in order: a failure
    /// answered from the stale cache, a failure answered SERVFAIL, a chain
    /// through a listed name answered with its list's block, and the
    /// upstream's answer.
    pub(super) fn answer(&self, job: &Forward, answer: Answered, out: &mut Vec<u8>) {
        let Forward {
            query,
            facts,
            name,
            client,
            client_id,
            allowed,
            ..
        } = job;
        let proto = job.limit();
        let answer = answer.and_then(|(i, resp)| {
            for_the_client(&resp, facts)
                .map(|resp| (i, resp))
                .ok_or(Error::Unparsable)
        });
        // Every upstream failed, or answered SERVFAIL: an expired answer kept
        // for the question is better than none (RFC 8767).
        let failed = match &answer {
            Err(e) => Some(e.kind()),
            Ok((_, resp)) => wire::Header::parse(resp)
                .is_some_and(|h| h.rcode() == Rcode::ServFail as u8)
                .then_some("upstream answered SERVFAIL"),
        };
        // A bogus answer is a verdict on the data, not an upstream failure.
        if let Some(why) = failed
            && !job.bogus
            && self.answer_stale(job, why, out)
        {
            return;
        }
        // The rules now in force, and the client's group under them: they
        // decide what the answer's CNAME chain may lead to.
        let snap = self.state.load();
        let (_, group) = snap.groups.of_client(client.ip(), *client_id);

        // No upstream answered, and nothing stale may stand in: SERVFAIL.
        let (upstream, mut resp) = match answer {
            Ok(answered) => answered,
            Err(e) => {
                if let Some(more) = UPSTREAM_FAILURES.pass(now_us()) {
                    tracing::warn!(query = %name, qtype = %wire::TypeName(facts.qtype), error = %e, suppressed = more, "upstream failed: SERVFAIL");
                }
                start_response(query, facts, Rcode::ServFail, out);
                if let Some(edns) = facts.edns {
                    // EDE 22 "No Reachable Authority" says why (RFC 8914 section 4.23),
                    // without naming the upstream's address to the client.
                    let ede = wire::ede_option(22, e.kind());
                    wire::push_opt(out, 0, edns.dnssec_ok, &ede);
                }
                self.join_chase(job, out);
                self.count_answer(job, None);
                if self.observe.wants(Decision::Error) {
                    let ev = self.event(job, Decision::Error).with_group(group.slot);
                    self.record_forward(job, ev, out);
                }
                return;
            }
        };
        let key = job.cache_key();
        let generation = snap.generation;

        // A chain through a listed name gets that list's block, and so
        // does an address in a listed network (the name asked being
        // allowlisted, its answer is not inspected).
        let through = if *allowed {
            None
        } else {
            inspect::inspect_answer(&resp, &snap, group)
        };
        if let Some(through) = through {
            let policy = through.policy();
            let (list, action) = (list_slot(&snap, policy), policy.action);
            let matched = through.matched();
            if snap.groups.configured() {
                // Other groups may not block it: keep the chain, to be
                // inspected again for each client's group.
                let checked = Checked::PerGroup { generation };
                self.cache.insert_tagged(&key, &mut resp, checked.tag());
                through.respond(query, facts, out);
            } else {
                // Every client gets this verdict: keep it, not the chain,
                // with the OPT (and EDE) a client with EDNS gets.
                through.respond(query, &with_edns(facts), out);
                // What matched is kept beside it, for the records of
                // the answers the cache gives.
                let checked = Checked::Blocked {
                    generation,
                    list,
                    action,
                    via: matched.via(),
                };
                self.cache
                    .insert_noted(&key, out, checked.tag(), matched.as_note());
                strip_opt(facts, out);
            }
            truncate_for(facts, proto, out);
            self.join_chase(job, out);
            self.count_answer(job, Some((list, matched.via())));
            if self.observe.wants(Decision::Blocked) {
                // The listed entry is the chain's, not in the question: no
                // entry; the chain's listed name, or the network, instead.
                let ev = self
                    .event(job, Decision::Blocked)
                    .with_group(group.slot)
                    .with_block(list, usize::MAX, action)
                    .with_upstream(self.server_id(job, upstream));
                self.record_forward(job, matched.record(ev), out);
            }
            return;
        }

        // The upstream's answer. Caching clamps its TTLs: this client sees
        // what the next ones will.
        let checked = Checked::of(&resp, &snap, *allowed);
        self.cache.insert_tagged(&key, &mut resp, checked.tag());
        out.clear();
        out.extend_from_slice(&resp);
        strip_opt(facts, out);
        wire::put_u16(out, 0, facts.id);
        // AD only for a client that asked for it with AD or DO (RFC 6840
        // 5.8), as a cache hit has it; the cache keeps the bit.
        if facts.flags & 0x0020 == 0
            && !facts.edns.is_some_and(|e| e.dnssec_ok)
            && let Some(flags) = out.get_mut(3)
        {
            *flags &= !0x20;
        }
        if let (Some(dst), Some(src)) = (
            out.get_mut(wire::HEADER_LEN..facts.question_end),
            query.get(wire::HEADER_LEN..facts.question_end),
        ) && dst.eq_ignore_ascii_case(src)
        {
            dst.copy_from_slice(src);
        }
        truncate_for(facts, proto, out);
        // A local name whose CNAME target the upstream answered is answered locally.
        let decision = if job.chase.is_some() {
            Decision::Local
        } else if job.bogus {
            Decision::Bogus
        } else {
            Decision::Forwarded
        };
        self.join_chase(job, out);
        self.count_answer(job, None);
        if self.observe.wants(decision) {
            let ev = self
                .event(job, decision)
                .with_group(group.slot)
                .with_upstream(self.server_id(job, upstream));
            self.record_forward(job, ev, out);
        }
    }

    /// Counts the forwarded query `job` as its answer says: blocked by a
    /// list (`block`: the list, and what matched in the answer), or (as
    /// when it was sent) forwarded, or `local` for a local CNAME's target.
    /// Each forward is counted once, by whichever of its ends answers the
    /// client (here, [`Handler::answer_stale`], or a forward dropped
    /// unanswered), in the handler's block of many writers.
    pub(super) fn count_answer(&self, job: &Forward, block: Option<(ListSlot, Via)>) {
        let qtype = job
            .chase
            .as_ref()
            .map_or(job.facts.qtype, |c| c.facts.qtype);
        let decision = match block {
            Some(_) => metrics::Decision::Blocked,
            None if job.chase.is_some() => metrics::Decision::Local,
            None => metrics::Decision::Forwarded,
        };
        self.answers
            .count_query(job.proto as usize, qtype, decision);
        if let Some((list, via)) = block {
            let via = match via {
                Via::Chain => metrics::Via::Cname,
                Via::Address => metrics::Via::Ip,
            };
            self.answers.count_answer_block(list, via);
        }
    }

    /// The server that answered `job`, the `i`th of whichever set it asked.
    fn server_id(&self, job: &Forward, i: usize) -> u16 {
        job.upstream
            .as_ref()
            .unwrap_or_else(|| self.upstreams.default_set())
            .server_id(i)
    }

    /// For a chased CNAME target (`job.chase`), joins its answer in `out`
    /// to the local chain and cuts the whole to the client's size.
    fn join_chase(&self, job: &Forward, out: &mut Vec<u8>) {
        if let Some(chase) = &job.chase {
            chase.join(out);
            truncate_for(&chase.facts, job.proto, out);
        }
    }

    /// The event of `job`'s client: its own question (a chased target's
    /// client asked for the local name).
    fn event(&self, job: &Forward, decision: Decision) -> QueryEvent {
        let (name, qtype) = match &job.chase {
            Some(c) => (&c.name, c.facts.qtype),
            None => (&job.name, job.facts.qtype),
        };
        QueryEvent::new(decision, job.client, job.proto.into(), Some(name), qtype)
            .with_client_id(job.client_id)
    }

    /// Step 9 when the upstreams failed for `job` (`why`), or are slow to
    /// answer (the client timer, RFC 8767's client response timer): writes the
    /// expired answer kept for its question into `out`, marked stale with
    /// `why` (EDE 3), and records it as a cached answer. False when no such
    /// answer may be served.
    pub(super) fn answer_stale(&self, job: &Forward, why: &str, out: &mut Vec<u8>) -> bool {
        let Forward {
            query,
            facts,
            name,
            client,
            client_id,
            allowed,
            ..
        } = job;
        let snap = self.state.load();
        let key = job.cache_key();
        // A chain inspected under the rules before a reload is inspected
        // again (or, for a verdict, not served): stale answers too.
        let Some((tag, hit)) = self
            .cache
            .stale(&key, query, facts, why, out)
            .and_then(|tag| servable(&self.cache, tag, &key, &snap, out).map(|hit| (tag, hit)))
        else {
            return false;
        };
        tracing::debug!(query = %name, qtype = %wire::TypeName(facts.qtype), why, "stale answer");
        let (_, group) = snap.groups.of_client(client.ip(), *client_id);
        let blocked = cached_block(hit, *allowed, &snap, group, query, facts, out);
        truncate_for(facts, job.limit(), out);
        // A stale answer comes from the cache (marked stale), not the upstream.
        let decision = match blocked {
            Some(_) => Decision::Blocked,
            None if job.chase.is_some() => Decision::Local,
            None => Decision::Cached,
        };
        self.join_chase(job, out);
        self.count_answer(job, blocked.as_ref().map(|b| (b.list, b.kind)));
        if self.observe.wants(decision) {
            let mut ev = self
                .event(job, decision)
                .with_group(group.slot)
                .with_stale(true);
            if let Some(b) = &blocked {
                ev = b.record(ev, &self.cache, &key, tag);
            }
            self.record_forward(job, ev, out);
        }
        true
    }

    /// Records `ev`, the decision on the forwarded query `job`, with the
    /// answer in `out`: its rcode, and the time from the query to it.
    fn record_forward(&self, job: &Forward, ev: QueryEvent, out: &[u8]) {
        let mut ev = ev.with_rcode(rcode_of(out));
        // A query recorded without a stamp (none was wanted then) gets its answer's time.
        let now = now_us();
        ev.time_us = if job.received_us == 0 {
            now
        } else {
            job.received_us
        };
        ev.latency_us = u32::try_from(now.saturating_sub(ev.time_us)).unwrap_or(u32::MAX);
        self.observe.record(ev, job.server, out);
    }
}

/// The WARN for a failed forward, at most once per [`LogGate::EVERY_US`]:
/// while an upstream is down every forwarded query fails, and one line per
/// query (200,000 in a ten-minute soak with a 3 s stall a minute) floods the
/// log and costs the serving thread what the query log was built to save.
/// The query log still records each one (decision `error`).
static UPSTREAM_FAILURES: LogGate = LogGate::new();
