//! The per-query decision, in one straight line:
//!
//! 1. who may ask ([`crate::access`]): a client outside `[access] allow`, or
//!    inside `deny`, gets REFUSED with EDE 18 (or nothing) and no other
//!    answer; first, so that blocked and cached answers, which cost nothing
//!    to give, are not given to the internet;
//! 2. parse (malformed → FORMERR/NOTIMP/BADVERS or drop);
//! 3. how fast: over UDP, the rate limiter may drop the answer or send an
//!    empty one with TC=1; before the lookup, so a limited flood does no
//!    work upstream either;
//! 4. allowlist and blocklist, one matcher lookup (allow wins, so it is
//!    decided inside the same lookup); with `[[groups]]`, the client's
//!    group (one search of its address) says which lists it sees and
//!    which policy answers;
//! 5. blocked → the policy's pre-built answer, never sent upstream, so
//!    blocking does not depend on the upstream being up;
//! 6. cache → the stored answer (one whose CNAME chain some groups block
//!    is inspected again for this client's group; for a popular answer
//!    about to expire, a background refresh: [`Handler::prefetch`]);
//! 7. otherwise hand a [`Forward`] to the caller, which awaits
//!    [`Handler::forward`] off the socket loop; its answer's CNAME chain
//!    is inspected ([`crate::cname`]) before it is cached and sent; when
//!    every upstream fails, an expired answer still kept is better than
//!    SERVFAIL (RFC 8767).
//!
//! Steps 1-6 are synchronous and allocate nothing but what the caller's
//! reused buffer already holds, so a UDP worker answers them inline. (The
//! one exception: a cached chain that this client's group blocks is
//! answered with an EDE text written for it; such entries exist only with
//! `[[groups]]`, and only for chains that lead to a listed name.)
//!
//! Every query is counted in the caller's own counter block
//! ([`Recorder::stats`]: a UDP worker's, or the one the TCP tasks share),
//! by transport, type and decision: a plain add on a cache line no other
//! core writes. Each decision is also handed, as a fixed-size [`QueryEvent`], to the
//! caller's [`Recorder`] (UDP worker, TCP connection) or, for a forward, to
//! the [`Observer`] once the upstream answered (on either forward path):
//! one `record` call per decision point, each behind a check of whether
//! that decision is recorded at all. Rate-limited answers are not
//! recorded, only counted ([`Recorder::limited`]): a limited flood would
//! otherwise fill the query log that the limiter keeps quiet.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::access::{AccessAction, Limit, RefusedLog};
use crate::cache::{Cache, CacheKey, Found, Hit};
use crate::cname;
use crate::matcher::NameKey;
use crate::observe::metrics::{self, WorkerStats};
use crate::observe::{Decision, NO_RCODE, Observer, QueryEvent, Recorder, Transport, rcode_of};
use crate::policy::{QueryFacts, start_response};
use crate::query::{self, Reject};
use crate::source::xfr::NotifyTargets;
use crate::state::{ListSlot, Snapshot, Verdict};
use crate::upstream::{Reply, Upstream};
use crate::wire::{self, Rcode};

/// The transport a request came in on: it sets the answer size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

// The metrics index their transport label by `proto as usize`.
const _: () = assert!(Proto::Udp as usize == 0 && Proto::Tcp as usize == 1);

impl From<Proto> for Transport {
    fn from(p: Proto) -> Self {
        match p {
            Proto::Udp => Self::Udp,
            Proto::Tcp => Self::Tcp,
        }
    }
}

/// What the caller does with a request.
#[derive(Debug)]
pub enum Outcome {
    /// `out` holds the answer: send it.
    Reply,
    /// Send nothing.
    Drop,
    /// Await [`Handler::forward`] with this, then send what it writes.
    Forward(Box<Forward>),
}

/// A query that must go upstream, with what is needed to answer it later.
#[derive(Debug)]
pub struct Forward {
    query: Vec<u8>,
    facts: QueryFacts,
    name: NameKey,
    proto: Proto,
    /// Whose query: its group decides what the answer's CNAME chain may lead to.
    client: SocketAddr,
    /// The name is allowlisted: its answer's chain is not inspected.
    allowed: bool,
    /// When the query arrived (µs since the epoch), for its record; 0 when
    /// the caller's recorder keeps nothing.
    received_us: u64,
}

impl Forward {
    /// Rewrites the client's query into the upstream's, in place.
    ///
    /// Upstream gets the question and, if the client used EDNS, our own
    /// OPT (1232, DO as asked): the client's options (cookies, client
    /// subnet) are hop-by-hop and stay here (RFC 6891 6.1.1). The client's
    /// buffer becomes the upstream query: its question bytes stay as asked
    /// (they are echoed from here), the rest is rewritten; answers carry
    /// `facts.id`, never the ID the upstream module picks (its own
    /// unpredictable one per attempt).
    fn rewrite_for_upstream(&mut self) {
        self.query.truncate(self.facts.question_end);
        for at in [6, 8, 10] {
            wire::put_u16(&mut self.query, at, 0);
        }
        if let Some(e) = self.facts.edns {
            wire::push_opt(&mut self.query, 0, e.dnssec_ok, &[]);
        }
    }
}

/// A forwarded UDP query on the task-free path: what the upstream module
/// calls back with the answer, to answer the client on its socket.
struct UdpReply {
    handler: Arc<Handler>,
    job: Box<Forward>,
    sock: Arc<std::net::UdpSocket>,
    peer: SocketAddr,
    /// Holds one of `handler.inflight`'s permits until answered.
    permit: bool,
}

impl Reply for UdpReply {
    fn query(&mut self) -> &mut [u8] {
        &mut self.job.query
    }

    fn answer(mut self: Box<Self>, answer: crate::upstream::Answered) {
        let mut out = Vec::new();
        self.handler.answer(&self.job, answer, &mut out);
        // Sent now, or with the other answers the same read brought.
        crate::upstream::send_answer(&self.sock, self.peer, &out);
        if std::mem::take(&mut self.permit) {
            self.handler.inflight.add_permits(1);
        }
    }
}

impl Drop for UdpReply {
    fn drop(&mut self) {
        // Dropped unanswered (shutdown): give the permit back all the same.
        if self.permit {
            self.handler.inflight.add_permits(1);
        }
    }
}

/// Decides and answers queries; shared by every socket.
pub struct Handler {
    state: Arc<ArcSwap<Snapshot>>,
    /// Shared with the background refreshes ([`Handler::prefetch`]).
    cache: Arc<Cache>,
    upstream: Arc<Upstream>,
    notify: Arc<NotifyTargets>,
    /// Bounds the forwards in flight: a flood of random names must not take
    /// every socket the process may open.
    inflight: tokio::sync::Semaphore,
    /// The permits `inflight` started with (`[server] max_forwards`).
    max_forwards: usize,
    /// Counts refused clients for the log; touched only on the refused path.
    refused: Mutex<RefusedLog>,
    started: Instant,
    observe: Observer,
}

/// Forwarded queries waiting for the upstream at once, unless configured.
const MAX_FORWARDS: usize = 10_000;
/// An OPT record with no options (root name, type, class, TTL, RDLENGTH),
/// which `forward` adds to an EDNS query.
const OPT_LEN: usize = 11;

impl Handler {
    pub fn new(state: Arc<ArcSwap<Snapshot>>, cache: Cache, upstream: Upstream) -> Self {
        Self {
            state,
            cache: Arc::new(cache),
            upstream: Arc::new(upstream),
            notify: Arc::new(NotifyTargets::default()),
            inflight: tokio::sync::Semaphore::new(MAX_FORWARDS),
            max_forwards: MAX_FORWARDS,
            refused: Mutex::new(RefusedLog::default()),
            started: Instant::now(),
            observe: Observer::off(),
        }
    }

    /// Records decisions through `observer` (the query log, the hit report).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observe = observer;
        self
    }

    /// Where decisions are recorded: serving threads and tasks take their
    /// [`Recorder`] from here.
    pub fn observer(&self) -> &Observer {
        &self.observe
    }

    /// At most `n` forwarded queries wait for the upstream at once; one more
    /// is answered SERVFAIL at once (`[server] max_forwards`).
    pub fn with_max_forwards(mut self, n: usize) -> Self {
        self.inflight = tokio::sync::Semaphore::new(n);
        self.max_forwards = n;
        self
    }

    /// Zones whose primaries may NOTIFY this server.
    pub fn notify_targets(&self) -> &Arc<NotifyTargets> {
        &self.notify
    }

    /// A NOTIFY (RFC 1996): NOERROR and a refresh when it comes from the
    /// primary of one of our zone-transfer lists, REFUSED otherwise.
    fn notify(&self, pkt: &[u8], client: SocketAddr, out: &mut Vec<u8>) -> Outcome {
        let Some(hdr) = wire::Header::parse(pkt) else {
            return Outcome::Drop;
        };
        // The question must be plain labels: it is echoed byte for byte, and
        // a compression pointer would point at nothing in our answer.
        let question = (hdr.qdcount == 1)
            .then(|| query::read_name(pkt, wire::HEADER_LEN))
            .flatten()
            .filter(|(name, end)| {
                *end == wire::HEADER_LEN + name.as_bytes().len() + 1 && *end + 4 <= pkt.len()
            });
        let (rcode, question_end) = match &question {
            None => (Rcode::FormErr, None),
            Some((zone, end)) => {
                let accepted = self.notify.notified(&zone.to_string(), client.ip());
                if accepted {
                    tracing::info!(zone = %zone, %client, "NOTIFY from the primary");
                } else {
                    // Anyone can send these (spoofed too): keep them out of the default log.
                    tracing::debug!(zone = %zone, %client, "NOTIFY refused");
                }
                (
                    if accepted {
                        Rcode::NoError
                    } else {
                        Rcode::Refused
                    },
                    Some(end + 4),
                )
            }
        };
        out.clear();
        // QR, the NOTIFY opcode and RD echoed; AA when we accept it for our copy of the zone.
        let aa = if rcode == Rcode::NoError { 0x0400 } else { 0 };
        let flags = 0x8000 | (hdr.flags & (0x7800 | 0x0100)) | aa | rcode as u16;
        out.extend_from_slice(&hdr.id.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&[0, u8::from(question_end.is_some()), 0, 0, 0, 0, 0, 0]);
        if let Some(end) = question_end {
            out.extend_from_slice(pkt.get(wire::HEADER_LEN..end).unwrap_or(&[]));
        }
        Outcome::Reply
    }

    /// The answer cache (for its size in the metrics, its statistics, and
    /// for tests and benches that fill it).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The rules in force.
    pub fn state(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.state
    }

    /// Counts a query (or TCP connection) from a client that may not ask
    /// towards the log line about its network, and writes that line when due.
    #[cold]
    fn log_refused(&self, ip: IpAddr, action: AccessAction) {
        if !tracing::enabled!(target: "embargo::access", tracing::Level::WARN) {
            return;
        }
        let now = u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX);
        let report = match self.refused.lock() {
            Ok(mut log) => log.record(ip, now),
            Err(poisoned) => poisoned.into_inner().record(ip, now),
        };
        let action = action.as_str();
        if let Some((network, queries)) = report.line {
            tracing::warn!(
                target: "embargo::access",
                client = %network,
                queries,
                action,
                "client not in [access] allow (one line a minute per network, counting the queries since the last)"
            );
        }
        if let Some(queries) = report.unitemised {
            tracing::warn!(
                target: "embargo::access",
                queries,
                action,
                "clients from too many networks not in [access] allow to name each"
            );
        }
    }

    /// Whether a TCP connection from `peer` is closed at once: with
    /// `action = "drop"` a client that may not ask gets nothing, not even a
    /// connection slot to sit on.
    pub fn drops_connection(&self, peer: SocketAddr, stats: &WorkerStats) -> bool {
        let action = self.state.load().access.refuses(peer.ip());
        if action == Some(AccessAction::Drop) {
            stats.count_refused_client(AccessAction::Drop);
            self.log_refused(peer.ip(), AccessAction::Drop);
            return true;
        }
        false
    }

    /// A client that may not ask: REFUSED with EDE 18, or nothing, and a
    /// count towards the log line about its network. The primary of one of
    /// our zone-transfer lists is heard for its NOTIFYs alone.
    ///
    /// Recorded as [`Decision::Refused`], with the question if it can be
    /// read, RCODE REFUSED when that answer went out and no RCODE when
    /// nothing did (`action = "drop"`, or a query too broken to answer).
    #[cold]
    fn refuse(
        &self,
        pkt: &[u8],
        client: SocketAddr,
        proto: Proto,
        action: AccessAction,
        out: &mut Vec<u8>,
        rec: &mut Recorder,
    ) -> Outcome {
        if is_notify(pkt) && self.notify.is_primary(client.ip()) {
            return self.notify(pkt, client, out);
        }
        rec.stats().count_refused_client(action);
        self.log_refused(client.ip(), action);
        let outcome = match action {
            AccessAction::Refuse if query::write_refused(pkt, out) => Outcome::Reply,
            AccessAction::Refuse | AccessAction::Drop => Outcome::Drop,
        };
        if rec.wants(Decision::Refused) {
            // Only read for the record: an outsider's query is never served.
            let question = query::parse(pkt).ok();
            let (name, qtype) = match &question {
                Some((facts, name)) => (Some(name), facts.qtype),
                None => (None, 0),
            };
            let rcode = match outcome {
                Outcome::Reply => Rcode::Refused as u16,
                _ => NO_RCODE,
            };
            let ev = QueryEvent::new(Decision::Refused, client, proto.into(), name, qtype);
            rec.record(ev.with_rcode(rcode), pkt, out);
        }
        outcome
    }

    /// Steps 1-6 of the module doc. `out` is cleared and filled on `Reply`;
    /// the decision goes to `rec` (the caller sends the answer, then flushes it).
    pub fn handle(
        &self,
        pkt: &[u8],
        client: SocketAddr,
        proto: Proto,
        out: &mut Vec<u8>,
        rec: &mut Recorder,
    ) -> Outcome {
        // One load of the rules for the whole request.
        let snap = self.state.load();
        // Who may ask, on the address alone, before a byte of the query is
        // read: an outsider gets the refusal and nothing else.
        if let Some(action) = snap.access.refuses(client.ip()) {
            return self.refuse(pkt, client, proto, action, out, rec);
        }
        // NOTIFY (opcode 4) is the one non-QUERY opcode we take.
        if is_notify(pkt) {
            return self.notify(pkt, client, out);
        }
        let (facts, name) = match query::parse(pkt) {
            Ok(parsed) => parsed,
            Err(reject) => {
                rec.stats()
                    .count_query(proto as usize, 0, metrics::Decision::Error);
                if reject == Reject::Drop || !query::write_reject(pkt, reject, out) {
                    return Outcome::Drop;
                }
                if rec.wants(Decision::Error) {
                    let rcode = match reject {
                        Reject::BadVers { .. } => 16,
                        _ => rcode_of(out),
                    };
                    let ev = QueryEvent::new(Decision::Error, client, proto.into(), None, 0);
                    rec.record(ev.with_rcode(rcode), pkt, out);
                }
                return Outcome::Reply;
            }
        };

        // TCP proves the source address, so only UDP is limited (as BIND does).
        if proto == Proto::Udp
            && let Some(limiter) = &snap.limiter
        {
            match limiter.check(client.ip()) {
                Limit::Answer => {}
                Limit::Slip => {
                    rec.stats().count_query(
                        proto as usize,
                        facts.qtype,
                        metrics::Decision::Limited,
                    );
                    write_truncated(pkt, &facts, out);
                    rec.limited(true);
                    return Outcome::Reply;
                }
                Limit::Drop => {
                    rec.stats().count_query(
                        proto as usize,
                        facts.qtype,
                        metrics::Decision::Limited,
                    );
                    rec.limited(false);
                    return Outcome::Drop;
                }
            }
        }

        // Without [[groups]] this is the default group, with no search.
        let (_, group) = snap.groups.of(client.ip());
        let allowed = match snap.verdict(&name, group) {
            Verdict::Blocked { policy, suffix } => {
                policy.respond(pkt, &facts, wire::HEADER_LEN + suffix, out);
                truncate_for(&facts, proto, out);
                let slot = list_slot(&snap, policy);
                let stats = rec.stats();
                stats.count_query(proto as usize, facts.qtype, metrics::Decision::Blocked);
                stats.count_block(slot);
                if rec.wants(Decision::Blocked) {
                    let ev = QueryEvent::new(
                        Decision::Blocked,
                        client,
                        proto.into(),
                        Some(&name),
                        facts.qtype,
                    );
                    let ev = ev
                        .with_block(slot, suffix, policy.action)
                        .with_group(group.slot);
                    rec.record(ev.with_rcode(rcode_of(out)), pkt, out);
                }
                return Outcome::Reply;
            }
            Verdict::Allowed { .. } => true,
            Verdict::Miss => false,
        };

        // Zone transfers are for secondaries of a real primary, not a forwarder.
        if matches!(facts.qtype, 251 | 252) {
            rec.stats()
                .count_query(proto as usize, facts.qtype, metrics::Decision::Refused);
            start_response(pkt, &facts, Rcode::Refused, out);
            finish_plain(&facts, out);
            if rec.wants(Decision::Refused) {
                let ev = QueryEvent::new(
                    Decision::Refused,
                    client,
                    proto.into(),
                    Some(&name),
                    facts.qtype,
                );
                rec.record(ev.with_rcode(Rcode::Refused as u16), pkt, out);
            }
            return Outcome::Reply;
        }

        let (found, hit) = self
            .cache
            .get(&CacheKey::new(&name, &facts), pkt, &facts, out);
        // A verdict of the rules before a reload that allowlisted the name
        // or dropped the list is not served: ask again.
        let served = found != Found::Miss && servable(hit, allowed, &snap);
        if found == Found::Refresh {
            // Only an upstream answer as it came is refreshed in the
            // background: a verdict or a chain to inspect takes the
            // forward path when it expires, where the chain is inspected.
            if served && hit == Hit::Plain {
                self.prefetch(pkt, facts, &name, client, allowed);
            } else {
                self.cache.prefetch_done();
            }
        }
        match served {
            false => {}
            true => {
                // What a CNAME chain led to: a verdict kept as such (no
                // groups), or, with groups, this client's group's verdict
                // on a chain that some groups block, walked again.
                let blocked = cached_block(hit, allowed, &snap, group, pkt, &facts, out);
                truncate_for(&facts, proto, out);
                let (decision, counted) = match blocked {
                    Some(_) => (Decision::Blocked, metrics::Decision::Blocked),
                    None => (Decision::Cached, metrics::Decision::Cached),
                };
                let stats = rec.stats();
                stats.count_query(proto as usize, facts.qtype, counted);
                if let Some((list, _)) = blocked {
                    stats.count_block(list);
                }
                if rec.wants(decision) {
                    let mut ev =
                        QueryEvent::new(decision, client, proto.into(), Some(&name), facts.qtype)
                            .with_group(group.slot)
                            .with_stale(found == Found::Stale);
                    if let Some((list, action)) = blocked {
                        // The listed entry is the chain's, not in the question.
                        ev = ev.with_block(list, usize::MAX, action);
                    }
                    rec.record(ev.with_rcode(rcode_of(out)), pkt, out);
                }
                return Outcome::Reply;
            }
        }
        drop(snap);

        rec.stats()
            .count_query(proto as usize, facts.qtype, metrics::Decision::Forwarded);

        // Only the header and question are kept (`forward` sends no more):
        // a forward in flight holds at most ~300 bytes of query, whatever
        // the client sent after the question.
        let mut query = Vec::with_capacity(facts.question_end + OPT_LEN);
        query.extend_from_slice(pkt.get(..facts.question_end).unwrap_or(pkt));
        rec.forwarded(pkt, client, proto.into());
        Outcome::Forward(Box::new(Forward {
            query,
            facts,
            name,
            proto,
            client,
            allowed,
            received_us: rec.stamp_us(),
        }))
    }

    /// A popular answer is about to expire ([`Found::Refresh`]): asks the
    /// upstreams for it again on a task of its own, no client waiting, so
    /// that the next client still finds it cached. Needs the runtime (the
    /// UDP workers enter it; the TCP tasks run in it); without one, nothing
    /// is refreshed and the entry expires as it would have.
    #[cold]
    fn prefetch(
        &self,
        pkt: &[u8],
        facts: QueryFacts,
        name: &NameKey,
        client: SocketAddr,
        allowed: bool,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.cache.prefetch_done();
            return;
        };
        let mut job = Forward {
            query: pkt.get(..facts.question_end).unwrap_or(pkt).to_vec(),
            facts,
            name: name.clone(),
            // Nobody is answered: no size limit applies.
            proto: Proto::Tcp,
            // The client whose hit started it; nothing is recorded for it.
            client,
            allowed,
            received_us: 0,
        };
        job.rewrite_for_upstream();
        let (cache, upstream, state) = (
            self.cache.clone(),
            self.upstream.clone(),
            self.state.clone(),
        );
        runtime.spawn(async move {
            if let Ok((_, resp)) = upstream.forward(&mut job.query).await
                && let Some(mut resp) = for_the_client(&resp, &job.facts)
                // A refreshed chain that now passes through a listed name is
                // not kept as it came: the entry expires, and the next client
                // takes the forward path, where the chain is inspected.
                && (job.allowed || !cname::blocked_for_some_group(&resp, &state.load()))
            {
                cache.insert(&CacheKey::new(&job.name, &job.facts), &mut resp);
            }
            cache.prefetch_done();
        });
    }

    /// Step 5: asks the upstreams, caches the answer, and writes what the
    /// client gets into `out` (SERVFAIL when no upstream answered in time,
    /// unless a stale answer may be served).
    pub async fn forward(&self, mut job: Box<Forward>, out: &mut Vec<u8>) {
        job.rewrite_for_upstream();
        let answer = match self.inflight.try_acquire() {
            Ok(_permit) => self.upstream.forward(&mut job.query).await,
            Err(_) => Err(crate::upstream::Error::Busy),
        };
        self.answer(&job, answer, out);
    }

    /// [`Handler::forward`] with `answer` for what the upstreams said, no
    /// socket involved: the `response` fuzz target (`fuzzing.rs`) takes
    /// upstream answers through the very path a forwarded query takes.
    pub(crate) fn forward_answered(
        &self,
        mut job: Box<Forward>,
        answer: crate::upstream::Answered,
        out: &mut Vec<u8>,
    ) {
        job.rewrite_for_upstream();
        self.answer(&job, answer, out);
    }

    /// Step 5 for a UDP client without a task of its own: the upstream
    /// module sends the query now, from the worker's thread, and the task
    /// that reads the upstream's answer writes the client's answer and sends
    /// it on `sock`. Gives the job back when it must take
    /// [`Handler::forward`] instead (an upstream that is not plain UDP).
    /// Must run inside the runtime's context (`Handle::enter`).
    pub fn forward_udp(
        self: &Arc<Self>,
        mut job: Box<Forward>,
        sock: &Arc<std::net::UdpSocket>,
        peer: SocketAddr,
    ) -> Option<Box<Forward>> {
        if !self.upstream.udp_only() {
            return Some(job);
        }
        job.rewrite_for_upstream();
        let reply = Box::new(UdpReply {
            handler: self.clone(),
            job,
            sock: sock.clone(),
            peer,
            permit: self
                .inflight
                .try_acquire()
                .ok()
                .map(|p| p.forget())
                .is_some(),
        });
        if !reply.permit {
            reply.answer(Err(crate::upstream::Error::Busy));
            return None;
        }
        self.upstream.send(reply);
        None
    }

    /// Writes into `out` what the client of `job` gets for `answer` (the
    /// index of the upstream that gave it, and its bytes), caches a good
    /// answer, and records the decision: both forward paths end here.
    fn answer(&self, job: &Forward, answer: crate::upstream::Answered, out: &mut Vec<u8>) {
        let Forward {
            query,
            facts,
            name,
            proto,
            client,
            allowed,
            received_us,
        } = job;
        let (facts, proto) = (*facts, *proto);
        let answer = answer.and_then(|(i, resp)| {
            for_the_client(&resp, &facts)
                .map(|resp| (i, resp))
                .ok_or(crate::upstream::Error::Unparsable)
        });
        // Every upstream failed, or answered SERVFAIL: an expired answer kept
        // for the question is better than none (RFC 8767).
        let failed = match &answer {
            Err(e) => Some(e.kind()),
            Ok((_, resp)) => wire::Header::parse(resp)
                .is_some_and(|h| h.rcode() == Rcode::ServFail as u8)
                .then_some("upstream answered SERVFAIL"),
        };
        // The rules now in force, and the client's group under them: they
        // decide what the answer's CNAME chain may lead to.
        let snap = self.state.load();
        let (_, group) = snap.groups.of(client.ip());
        let stale = failed
            .and_then(|why| {
                self.cache
                    .stale(&CacheKey::new(name, &facts), query, &facts, why, out)
            })
            .filter(|hit| servable(*hit, *allowed, &snap));
        let upstream = answer.as_ref().ok().map(|(i, _)| *i);
        // A block found in the chain: its list and action, for the record.
        let mut blocked = None;
        'answered: {
            match answer {
                _ if stale.is_some() => {
                    tracing::debug!(query = %name, qtype = %wire::TypeName(facts.qtype), why = failed.unwrap_or_default(), "upstream failed: stale answer");
                    blocked = stale.and_then(|hit| {
                        cached_block(hit, *allowed, &snap, group, query, &facts, out)
                    });
                    truncate_for(&facts, proto, out);
                }
                Ok((_, mut resp)) => {
                    let key = CacheKey::new(name, &facts);
                    let through = if *allowed {
                        None
                    } else {
                        cname::inspect(&resp, &snap, group)
                    };
                    if let Some(through) = through {
                        through.respond(query, &facts, out);
                        let list = list_slot(&snap, through.policy);
                        if snap.groups.configured() {
                            // Other groups may not block it: keep the chain,
                            // to be inspected again for each client's group.
                            self.cache.insert_marked(&key, &mut resp, true);
                        } else {
                            // Every client gets this verdict: keep it, not the chain.
                            self.cache
                                .insert_verdict(&key, out, list, through.policy.action);
                        }
                        truncate_for(&facts, proto, out);
                        blocked = Some((list, through.policy.action));
                        break 'answered;
                    }
                    let marked = snap.groups.configured()
                        && !*allowed
                        && cname::blocked_for_some_group(&resp, &snap);
                    // Caching clamps its TTLs: this client sees what the next ones will.
                    self.cache.insert_marked(&key, &mut resp, marked);
                    out.clear();
                    out.extend_from_slice(&resp);
                    wire::put_u16(out, 0, facts.id);
                    if let (Some(dst), Some(src)) = (
                        out.get_mut(wire::HEADER_LEN..facts.question_end),
                        query.get(wire::HEADER_LEN..facts.question_end),
                    ) && dst.eq_ignore_ascii_case(src)
                    {
                        dst.copy_from_slice(src);
                    }
                    truncate_for(&facts, proto, out);
                }
                Err(e) => {
                    if let Some(more) = UPSTREAM_FAILURES.pass(crate::observe::now_us()) {
                        tracing::warn!(query = %name, qtype = %wire::TypeName(facts.qtype), error = %e, suppressed = more, "upstream failed: SERVFAIL");
                    }
                    start_response(query, &facts, Rcode::ServFail, out);
                    if let Some(edns) = facts.edns {
                        // EDE 22 "No Reachable Authority" says why (RFC 8914 section 4.23),
                        // without naming the upstream's address to the client.
                        let ede = wire::ede_option(22, e.kind());
                        wire::push_opt(out, 0, edns.dnssec_ok, &ede);
                    }
                }
            }
        }
        // A stale answer comes from the cache (marked stale), not the upstream.
        let decision = match (stale.is_some(), upstream, blocked) {
            (_, _, Some(_)) => Decision::Blocked,
            (true, _, None) => Decision::Cached,
            (false, Some(_), None) => Decision::Forwarded,
            (false, None, None) => Decision::Error,
        };
        if self.observe.wants(decision) {
            let mut ev = QueryEvent::new(decision, *client, proto.into(), Some(name), facts.qtype)
                .with_rcode(rcode_of(out))
                .with_group(group.slot)
                .with_stale(stale.is_some());
            if let Some((list, action)) = blocked {
                // The listed entry is the chain's, not in the question: no entry.
                ev = ev.with_block(list, usize::MAX, action);
            }
            if let Some(i) = upstream.filter(|_| stale.is_none()) {
                ev = ev.with_upstream(i);
            }
            // A query recorded without a stamp (none was wanted then) gets its answer's time.
            let now = crate::observe::now_us();
            ev.time_us = if *received_us == 0 { now } else { *received_us };
            ev.latency_us = u32::try_from(now.saturating_sub(ev.time_us)).unwrap_or(u32::MAX);
            self.observe.record(ev, out);
        }
    }

    /// The upstreams (for their counters, and the readiness probe).
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The per-query deadline upstream (for draining on shutdown).
    pub fn upstream_timeout(&self) -> std::time::Duration {
        self.upstream.timeout()
    }

    /// Waits until no forwarded query is waiting for the upstream, or
    /// `limit` passes: every permit back means every forward has its answer.
    pub async fn drain(&self, limit: std::time::Duration) {
        let all = u32::try_from(self.max_forwards).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(limit, self.inflight.acquire_many(all)).await;
    }
}

/// An upstream's answer as our clients get it and the cache keeps it: its
/// OPT replaced by ours (`wire::replace_opt`), RA set and AA clear, since we
/// are the client's recursive resolver even when the upstream is
/// authoritative (as unbound and BIND do). `None` when it cannot be walked.
fn for_the_client(resp: &[u8], facts: &QueryFacts) -> Option<Vec<u8>> {
    let mut resp = wire::replace_opt(resp, facts.edns.map(|e| e.dnssec_ok))?;
    if let Some(flags) = resp.get_mut(2..4) {
        flags[0] &= !0x04;
        flags[1] |= 0x80;
    }
    Some(resp)
}

/// Whether a cached answer of kind `hit` may still be served: a CNAME
/// verdict of the rules before a reload that allowlisted the name or
/// dropped the list is not (the name is asked again).
fn servable(hit: Hit, allowed: bool, snap: &Snapshot) -> bool {
    match hit {
        Hit::Verdict { list, .. } => !allowed && snap.has_list(list),
        Hit::Plain | Hit::Inspect => true,
    }
}

/// What a cached answer of kind `hit`, written into `out`, blocks for this
/// client: a CNAME verdict kept as such (no groups), or, for a chain some
/// groups block, this client's group's verdict walked again, whose block
/// then replaces the answer in `out`. None: the answer goes out as it is.
/// Fresh hits and stale answers both end here.
fn cached_block(
    hit: Hit,
    allowed: bool,
    snap: &Snapshot,
    group: &crate::groups::Group,
    query: &[u8],
    facts: &QueryFacts,
    out: &mut Vec<u8>,
) -> Option<(ListSlot, crate::policy::Action)> {
    match hit {
        Hit::Plain => None,
        Hit::Verdict { list, action } => Some((list, action)),
        Hit::Inspect if allowed => None,
        Hit::Inspect => cname::inspect(out, snap, group).map(|through| {
            through.respond(query, facts, out);
            (list_slot(snap, through.policy), through.policy.action)
        }),
    }
}

/// The slot of the list `policy` belongs to, for counters and records.
fn list_slot(snap: &Snapshot, policy: &crate::policy::Policy) -> ListSlot {
    snap.list_of(policy).map_or(ListSlot::NONE, |l| l.slot)
}

/// Whether the message is a NOTIFY request (QR clear, OPCODE 4).
fn is_notify(pkt: &[u8]) -> bool {
    pkt.len() >= 4 && pkt[2] & 0xf8 == 4 << 3
}

/// An empty answer with TC=1 (header, question, OPT if asked): what a rate
/// limited client gets every `slip`th time, so a real one retries over TCP.
fn write_truncated(pkt: &[u8], facts: &QueryFacts, out: &mut Vec<u8>) {
    start_response(pkt, facts, Rcode::NoError, out);
    if let Some(b) = out.get_mut(2) {
        *b |= 0x02;
    }
    finish_plain(facts, out);
}

/// Adds the OPT record to a header-and-question answer if the query had EDNS.
fn finish_plain(facts: &QueryFacts, out: &mut Vec<u8>) {
    if let Some(e) = facts.edns {
        wire::push_opt(out, 0, e.dnssec_ok, &[]);
    }
}

/// Cuts a UDP answer that exceeds what the client can take down to header +
/// question (+ OPT) with TC set, so it retries over TCP (RFC 1035 4.2.1,
/// RFC 6891 7). Our own ceiling is 1232 bytes whatever the client offers.
fn truncate_for(facts: &QueryFacts, proto: Proto, out: &mut Vec<u8>) {
    if proto == Proto::Tcp {
        return;
    }
    let limit = match facts.edns {
        Some(e) => usize::from(e.udp_size.clamp(512, wire::EDNS_UDP_SIZE)),
        None => 512,
    };
    if out.len() <= limit {
        return;
    }
    out.truncate(facts.question_end);
    if let Some(b) = out.get_mut(2) {
        *b |= 0x02;
    }
    for at in [6, 8, 10] {
        wire::put_u16(out, at, 0);
    }
    finish_plain(facts, out);
}

/// The WARN for a failed forward, at most once per [`LogGate::EVERY_US`]:
/// while an upstream is down every forwarded query fails, and one line per
/// query (200,000 in a ten-minute soak with a 3 s stall a minute) floods the
/// log and costs the serving thread what the query log was built to save.
/// The query log still records each one (decision `error`).
static UPSTREAM_FAILURES: LogGate = LogGate::new();

/// Lets one event through per interval and counts the ones it held back.
/// Atomics, not a lock: it sits on the error path of every worker.
struct LogGate {
    /// When the last event went through (µs since the epoch), 0 = never.
    last_us: std::sync::atomic::AtomicU64,
    /// Events held back since then.
    held: std::sync::atomic::AtomicU64,
}

impl LogGate {
    const EVERY_US: u64 = 10_000_000;

    const fn new() -> Self {
        Self {
            last_us: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last one)` when this event may be logged.
    fn pass(&self, now_us: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_us.load(Relaxed);
        if last != 0 && now_us.saturating_sub(last) < Self::EVERY_US
            || self
                .last_us
                .compare_exchange(last, now_us, Relaxed, Relaxed)
                .is_err()
        {
            self.held.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.held.swap(0, Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::LogGate;

    #[test]
    fn the_gate_lets_one_event_through_per_interval_and_counts_the_rest() {
        let gate = LogGate::new();
        let t0 = 1_000_000_000;
        assert_eq!(gate.pass(t0), Some(0));
        assert_eq!(gate.pass(t0 + 1), None);
        assert_eq!(gate.pass(t0 + LogGate::EVERY_US - 1), None);
        assert_eq!(gate.pass(t0 + LogGate::EVERY_US), Some(2));
        assert_eq!(gate.pass(t0 + LogGate::EVERY_US + 5), None);
        assert_eq!(gate.pass(t0 + 3 * LogGate::EVERY_US), Some(1));
    }
}
