//! The per-query decision, in one straight line:
//!
//! 1. who may ask ([`crate::access`]): a client outside `[access] allow`, or
//!    inside `deny`, gets REFUSED with EDE 18 (or nothing) and no other
//!    answer ([`Handler::refuse`]); first, so that blocked and cached
//!    answers, which cost nothing to give, are not given to the internet;
//! 2. parse (malformed → FORMERR/NOTIMP/BADVERS or drop); a NOTIFY, the
//!    one opcode besides QUERY that we take, is answered here
//!    ([`Handler::notify`]);
//! 3. how fast: over UDP, the rate limiter may drop the answer or send an
//!    empty one with TC=1; before the lookup, so a limited flood does no
//!    work upstream either;
//! 4. the network's own names ([`crate::local`]: `[[records]]`, hosts
//!    files, the locally served zones): a pre-built answer with AA, before
//!    the lists, since these are the operator's own names and private
//!    names that must never leave (a CNAME whose target is not local has
//!    the target resolved through steps 5-9, lists included, and the two
//!    answers joined: [`Handler::chase`]);
//! 5. allowlist and blocklist, one matcher lookup (allow wins, so it is
//!    decided inside the same lookup); with `[[groups]]`, the client's
//!    group (one search of its address) says which lists it sees and
//!    which policy answers;
//! 6. blocked → the policy's pre-built answer, never sent upstream, so
//!    blocking does not depend on the upstream being up; a zone transfer
//!    that is not blocked is REFUSED here: a forwarder is no primary;
//! 7. cache → the stored answer (one whose CNAME chain some groups block
//!    is inspected again for this client's group; one whose chain was
//!    inspected under the rules before a reload is inspected again, once:
//!    [`cached`]; for a popular answer about to expire, a background
//!    refresh: [`Handler::prefetch`]);
//! 8. otherwise hand a [`Forward`] to the caller, which starts it off the
//!    socket loop ([`Handler::forward_udp`] for a UDP client, awaited
//!    [`Handler::forward`] for a TCP one), to the upstream set of the
//!    name's `[[forward]]` zone if it has one ([`crate::zones`],
//!    [`Sets`]: the cache keeps answers per set);
//! 9. the upstream's answer ([`Handler::answer`]): its CNAME chain is
//!    inspected ([`crate::cname`]) before it is cached and sent; when
//!    every upstream fails, or is still silent at the client timer, an
//!    expired answer still kept is better than SERVFAIL or waiting
//!    (RFC 8767: [`Handler::answer_stale`]).
//!
//! Steps 1-7 are synchronous and allocate nothing but what the caller's
//! reused buffer already holds, so a UDP worker answers them inline. (The
//! exceptions: a cached chain that this client's group blocks is
//! answered with an EDE text written for it; such entries exist only with
//! `[[groups]]`, or after a reload listed a name a cached chain leads to,
//! and only for chains that lead to a listed name. A local CNAME whose
//! target is not local, which needs the upstream's answer or the cache's.)
//!
//! Every query is counted in the caller's own counter block
//! ([`Recorder::stats`]: a UDP worker's, or the one the TCP tasks share),
//! by transport, type and decision: a plain add on a cache line no other
//! core writes. A forwarded query is counted once its answer says what
//! it became (a chain through a listed name, an address in a listed
//! network: blocked, by its list), in the handler's own block, on
//! whichever thread has the answer ([`Handler::count_answer`]). Each
//! decision is also handed, as a fixed-size [`QueryEvent`], to the
//! caller's [`Recorder`] (UDP worker, TCP connection) or, for a forward, to
//! the [`Observer`] once the upstream answered (on either forward path):
//! one `record` call per decision point, each behind a check of whether
//! that decision is recorded at all. Rate-limited answers are not
//! recorded, only counted ([`Recorder::limited`]): a limited flood would
//! otherwise fill the query log that the limiter keeps quiet.
//!
//! The rooms, in the order a query meets them. This file holds the
//! [`Handler`] and steps 1-8 in one function, [`Handler::handle_as`]: the
//! hot path (blocked and cached answers) never leaves it but for the
//! `#[inline]` [`cached`] check and [`shape`]'s cut to size.
//!
//! ```text
//!  mod.rs ─┬─ refusal.rs   step 1's refusals: REFUSED or nothing, the log line, connections closed ──► notify
//!          ├─ notify.rs    step 2's NOTIFY from a primary
//!          ├─ local.rs     step 4's chase of a local CNAME whose target is not local ──► forward, cached, shape
//!          ├─ cached.rs    step 7: what the rules in force make of a cached answer
//!          ├─ forward.rs   step 8: the Forward, sent on either path; prefetch and refresh ──► shape
//!          ├─ response.rs  step 9: the upstream's answer inspected, cached, sent; stale; SERVFAIL ──► forward, cached, shape
//!          └─ shape.rs     below them all: the plain answers written here, the OPT, the cut to UDP size
//! ```
//!
//! (An arrow reads "imports".) `forward` hands the upstream's answer to
//! `response` by a method call ([`Handler::answer`]), not an import: no
//! two rooms import each other.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::access::{Limit, LineBudget};
use crate::cache::{Cache, CacheKey, Found};
use crate::cname::Checked;
use crate::dnssec::Validator;
use crate::groups::ClientId;
use crate::observe::metrics;
use crate::observe::{Decision, Observer, QueryEvent, Recorder, Transport, WorkerStats, rcode_of};
use crate::policy::start_response;
use crate::query::{self, Reject};
use crate::source::xfr::NotifyTargets;
use crate::state::{ListSlot, Snapshot, Verdict};
use crate::upstream::{Sets, Upstream};
use crate::wire::{self, Rcode};

use super::sink;

mod cached;
mod forward;
mod local;
mod notify;
mod refusal;
mod response;
mod shape;

pub use forward::Forward;

use cached::{cached_block, servable};
use notify::is_notify;
use shape::{finish_plain, truncate_for, write_truncated};

/// The transport a request came in on: it sets the answer size limit
/// (only UDP answers are cut to fit) and whether the rate limiter applies
/// (only UDP's source address is unproven). The encrypted ones are streams
/// as TCP is, each its own label in the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
    Dot,
    Doh,
    Doq,
}

// The metrics index their transport label by `proto as usize`.
const _: () = assert!(
    Proto::Udp as usize == 0
        && Proto::Tcp as usize == 1
        && Proto::Dot as usize == 2
        && Proto::Doh as usize == 3
        && Proto::Doq as usize == 4
);

impl From<Proto> for Transport {
    fn from(p: Proto) -> Self {
        match p {
            Proto::Udp => Self::Udp,
            Proto::Tcp => Self::Tcp,
            Proto::Dot => Self::Dot,
            Proto::Doh => Self::Doh,
            Proto::Doq => Self::Doq,
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

/// Decides and answers queries; shared by every socket.
pub struct Handler {
    state: Arc<ArcSwap<Snapshot>>,
    /// Shared with the background refreshes ([`Handler::prefetch`]).
    cache: Arc<Cache>,
    /// `[upstream]`, and the `[[forward]]` sets of the snapshot in force.
    upstreams: Sets,
    notify: Arc<NotifyTargets>,
    /// Bounds the forwards in flight: a flood of random names must not take
    /// every socket the process may open.
    inflight: tokio::sync::Semaphore,
    /// The permits `inflight` started with (`[server] max_forwards`).
    max_forwards: usize,
    /// The refused-client lines all threads may write in a minute; each
    /// thread counts in a [`RefusedLog`] of its own (no lock: see there).
    refused_lines: LineBudget,
    observe: Observer,
    /// `[upstream] dnssec = "validate"`: validates `[upstream]`'s answers
    /// (`crate::dnssec`); `None`, the default, costs the forward path one
    /// check and the blocked and cached paths nothing.
    validator: Option<Arc<Validator>>,
    /// Forwarded queries, counted when their answer says what they became
    /// (a chain through a listed name is a block, not a forward), on
    /// whichever thread has the answer: a block of many writers.
    answers: Arc<WorkerStats>,
}

/// Forwarded queries waiting for the upstream at once, unless configured.
const MAX_FORWARDS: usize = 10_000;
/// An OPT record with no options (root name, type, class, TTL, RDLENGTH),
/// which `forward` adds to an EDNS query.
const OPT_LEN: usize = 11;

impl Handler {
    /// `upstream` is `[upstream]`'s set, set up as the `[[forward]]` sets
    /// will be (failure memory, client timer).
    pub fn new(state: Arc<ArcSwap<Snapshot>>, cache: Cache, upstream: Upstream) -> Self {
        // Client answers sent as a reader task reads upstream answers
        // leave together at the end of its pass.
        let upstreams = Sets::new(upstream.with_read_pass(sink::READ_PASS));
        {
            let snap = state.load();
            upstreams.prepare(&snap.forward_zones, snap.generation);
        }
        Self {
            state,
            cache: Arc::new(cache),
            upstreams,
            notify: Arc::new(NotifyTargets::default()),
            inflight: tokio::sync::Semaphore::new(MAX_FORWARDS),
            max_forwards: MAX_FORWARDS,
            refused_lines: LineBudget::new(),
            observe: Observer::off(),
            validator: None,
            answers: Arc::new(WorkerStats::new(true)),
        }
    }

    /// The counters of forwarded queries, which [`ServerStats`] sums with
    /// the serving threads' blocks.
    ///
    /// [`ServerStats`]: crate::observe::metrics::ServerStats
    pub fn answer_stats(&self) -> &Arc<WorkerStats> {
        &self.answers
    }

    /// Validates `[upstream]`'s answers as `config` says (`dnssec`,
    /// `trust_anchors`, `bogus_ttl`); nothing with `dnssec = "off"`.
    pub fn with_dnssec(mut self, config: &crate::config::DnssecConfig) -> Self {
        self.validator = Validator::new(self.upstreams.default_set().clone(), config);
        self
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

    /// The answer cache (for its size in the metrics, its statistics, and
    /// for tests and benches that fill it).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The rules in force.
    pub fn state(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.state
    }

    /// Steps 1-7 of the module doc, and step 8's [`Forward`] for the caller
    /// to start. `out` is cleared and filled on `Reply`;
    /// the decision goes to `rec` (the caller sends the answer, then flushes it).
    #[inline]
    pub fn handle(
        &self,
        pkt: &[u8],
        client: SocketAddr,
        proto: Proto,
        out: &mut Vec<u8>,
        rec: &mut Recorder,
    ) -> Outcome {
        self.handle_as(pkt, client, proto, ClientId::NONE, out, rec)
    }

    /// [`Handler::handle`] for a client that named itself `id` (an
    /// encrypted listener's SNI or DoH path): a group claiming the ID
    /// decides its lists, whatever its address, and records carry it.
    pub fn handle_as(
        &self,
        pkt: &[u8],
        client: SocketAddr,
        proto: Proto,
        id: ClientId,
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
                    let ev = QueryEvent::new(Decision::Error, client, proto.into(), None, 0)
                        .with_client_id(id);
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
        let (_, group) = snap.groups.of_client(client.ip(), id);

        // The network's own names, before the lists: the operator's word on
        // its own names stands, and a private name (a home lab's, a
        // private address's PTR) is answered here whatever a list says,
        // never forwarded. A pre-built answer, as a block is; for a name
        // outside every local zone, most often one compare of its last
        // label's length. Zone transfers are refused below, as for any name.
        if !matches!(facts.qtype, 251 | 252)
            && let Some(answer) = snap.local.lookup(&name, facts.qtype, facts.qclass)
        {
            answer.respond(pkt, &facts, out);
            if let Some(target) = answer.chase() {
                return self.chase(
                    &snap, pkt, facts, &name, target, client, id, proto, out, rec,
                );
            }
            truncate_for(&facts, proto, out);
            rec.stats()
                .count_query(proto as usize, facts.qtype, metrics::Decision::Local);
            if rec.wants(Decision::Local) {
                let ev = QueryEvent::new(
                    Decision::Local,
                    client,
                    proto.into(),
                    Some(&name),
                    facts.qtype,
                )
                .with_group(group.slot)
                .with_client_id(id);
                rec.record(ev.with_rcode(rcode_of(out)), pkt, out);
            }
            return Outcome::Reply;
        }

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
                        .with_group(group.slot)
                        .with_client_id(id);
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
                rec.record(
                    ev.with_rcode(Rcode::Refused as u16).with_client_id(id),
                    pkt,
                    out,
                );
            }
            return Outcome::Reply;
        }

        // The name's `[[forward]]` zone, if any: its answers are cached
        // per set of servers (without [[forward]], one compare).
        let zone = snap.forward_zones.lookup(&name);
        let set_key = zone.map_or(0, |z| snap.forward_zones.cache_key(z.set));
        let key = CacheKey::new(&name, &facts).with_set(set_key);
        let (found, tag) = self.cache.get(&key, pkt, &facts, out);
        // What the rules now in force make of it: one compare, unless a
        // reload came since its chain was inspected.
        let hit = match found {
            Found::Miss => None,
            _ => servable(&self.cache, tag, &key, &snap, out),
        };
        if found == Found::Refresh {
            // Only an upstream answer as it came is refreshed in the
            // background: a verdict or a chain to inspect takes the
            // forward path when it expires, where the chain is inspected.
            if let Some(Checked::Unchained | Checked::Passed { .. }) = hit {
                let upstream = zone.and_then(|z| {
                    self.upstreams
                        .forward_set(&snap.forward_zones, snap.generation, z.set)
                });
                self.prefetch(pkt, facts, &name, client, allowed, upstream, set_key);
            } else {
                self.cache.prefetch_done();
            }
        }
        match hit {
            None => {}
            Some(hit) => {
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
                if let Some(b) = &blocked {
                    stats.count_answer_block(b.list, b.via());
                }
                if rec.wants(decision) {
                    let mut ev =
                        QueryEvent::new(decision, client, proto.into(), Some(&name), facts.qtype)
                            .with_group(group.slot)
                            .with_client_id(id)
                            .with_stale(found == Found::Stale);
                    if let Some(b) = &blocked {
                        ev = b.record(ev, &self.cache, &key, tag);
                    }
                    rec.record(ev.with_rcode(rcode_of(out)), pkt, out);
                }
                return Outcome::Reply;
            }
        }
        // The zone's servers, as this snapshot's table says.
        let upstream = zone.and_then(|z| {
            self.upstreams
                .forward_set(&snap.forward_zones, snap.generation, z.set)
        });
        drop(snap);

        // Counted when the answer says what it became
        // ([`Handler::count_answer`]): a chain through a listed name is a
        // block, not a forward.

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
            client_id: id,
            allowed,
            received_us: rec.stamp_us(),
            upstream,
            set_key,
            chase: None,
            bogus: false,
            server: rec.local(),
        }))
    }

    /// `[upstream]`'s servers (the readiness probe).
    pub fn upstream(&self) -> &Arc<Upstream> {
        self.upstreams.default_set()
    }

    /// Every upstream set (for their counters, and the query log's names
    /// of their servers).
    pub fn upstreams(&self) -> &Sets {
        &self.upstreams
    }

    /// The per-query deadline upstream, the longest of the sets (for
    /// draining on shutdown).
    pub fn upstream_timeout(&self) -> std::time::Duration {
        self.upstreams.timeout()
    }

    /// Waits until no forwarded query is waiting for the upstream, or
    /// `limit` passes: every permit back means every forward has its answer.
    pub async fn drain(&self, limit: std::time::Duration) {
        let all = u32::try_from(self.max_forwards).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(limit, self.inflight.acquire_many(all)).await;
    }
}

/// The slot of the list `policy` belongs to, for counters and records.
fn list_slot(snap: &Snapshot, policy: &crate::policy::Policy) -> ListSlot {
    snap.list_of(policy).map_or(ListSlot::NONE, |l| l.slot)
}
