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
//! 4. the network's own names ([`crate::local`]: `[[records]]`, hosts
//!    files, the locally served zones): a pre-built answer with AA, before
//!    the lists, since these are the operator's own names and private
//!    names that must never leave (a CNAME whose target is not local has
//!    the target resolved through steps 5-8, lists included, and the two
//!    answers joined: [`Handler::chase`]);
//! 5. allowlist and blocklist, one matcher lookup (allow wins, so it is
//!    decided inside the same lookup); with `[[groups]]`, the client's
//!    group (one search of its address) says which lists it sees and
//!    which policy answers;
//! 6. blocked → the policy's pre-built answer, never sent upstream, so
//!    blocking does not depend on the upstream being up;
//! 7. cache → the stored answer (one whose CNAME chain some groups block
//!    is inspected again for this client's group; one whose chain was
//!    inspected under the rules before a reload is inspected again, once;
//!    for a popular answer about to expire, a background refresh:
//!    [`Handler::prefetch`]);
//! 8. otherwise hand a [`Forward`] to the caller, which starts it off the
//!    socket loop ([`Handler::forward_udp`] for a UDP client, awaited
//!    [`Handler::forward`] for a TCP one), to the upstream set of the
//!    name's `[[forward]]` zone if it has one ([`crate::zones`],
//!    [`Sets`]: the cache keeps answers per set); its answer's CNAME
//!    chain is inspected ([`crate::cname`]) before it is cached and sent;
//!    when every upstream fails, or is still silent at the client timer,
//!    an expired answer still kept is better than SERVFAIL or waiting
//!    (RFC 8767).
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
//! core writes. Each decision is also handed, as a fixed-size [`QueryEvent`], to the
//! caller's [`Recorder`] (UDP worker, TCP connection) or, for a forward, to
//! the [`Observer`] once the upstream answered (on either forward path):
//! one `record` call per decision point, each behind a check of whether
//! that decision is recorded at all. Rate-limited answers are not
//! recorded, only counted ([`Recorder::limited`]): a limited flood would
//! otherwise fill the query log that the limiter keeps quiet.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::access::{AccessAction, Limit, LineBudget, RefusedLog};
use crate::cache::{Cache, CacheKey, Found, Tag};
use crate::cname::{self, Checked};
use crate::groups::ClientId;
use crate::matcher::NameKey;
use crate::observe::metrics::{self, WorkerStats};
use crate::observe::{Decision, NO_RCODE, Observer, QueryEvent, Recorder, Transport, rcode_of};
use crate::policy::{QueryFacts, start_response};
use crate::query::{self, Reject};
use crate::source::xfr::NotifyTargets;
use crate::state::{ListSlot, Snapshot, Verdict};
use crate::upstream::{Reply, Sets, Upstream};
use crate::wire::{self, Rcode};

use super::batch::Local;
use super::sink::{self, Sink};

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

/// A query that must go upstream, with what is needed to answer it later.
#[derive(Debug)]
pub struct Forward {
    query: Vec<u8>,
    facts: QueryFacts,
    name: NameKey,
    proto: Proto,
    /// Whose query: its group decides what the answer's CNAME chain may lead to.
    client: SocketAddr,
    /// The ID the client named itself by, which may decide its group.
    client_id: ClientId,
    /// The name is allowlisted: its answer's chain is not inspected.
    allowed: bool,
    /// When the query arrived (µs since the epoch), for its record; 0 when
    /// the caller's recorder keeps nothing.
    received_us: u64,
    /// The set of the name's `[[forward]]` zone; `None`: `[upstream]`.
    upstream: Option<Arc<Upstream>>,
    /// That set's cache key (`ForwardZones::cache_key`; 0 for `[upstream]`).
    set_key: u32,
    /// This query resolves the target of a local CNAME: the client's
    /// question and the local answer, to be joined with this one's.
    chase: Option<Box<Chase>>,
}

/// A local name's CNAME whose target is not local ([`Handler::chase`]):
/// what the client asked and the chain answered so far. The target is
/// resolved as the [`Forward`] it rides on (its name, its question).
#[derive(Debug)]
struct Chase {
    /// The local answer to the client's question: header (AA), question,
    /// the CNAME records, OPT as asked.
    answer: Vec<u8>,
    /// The client's name and query.
    name: NameKey,
    facts: QueryFacts,
}

impl Chase {
    /// Joins the target's answer in `out` (to the target's question) to the
    /// local chain: the client's header and question, the chain, then the
    /// target's records, its authority (the SOA of an NXDOMAIN), RCODE and
    /// OPT (an EDE it carries: a block, a stale answer). The answer of a
    /// forwarded query in all but the first records, so it is built with
    /// hickory, off the hot path. SERVFAIL if either cannot be read.
    fn join(&self, out: &mut Vec<u8>) {
        use hickory_proto::op::Message;
        let joined = Message::from_vec(&self.answer)
            .ok()
            .zip(Message::from_vec(out).ok())
            .and_then(|(mut chain, target)| {
                chain.metadata.response_code = target.metadata.response_code;
                chain.answers.extend(target.answers);
                chain.authorities = target.authorities;
                chain.edns = target.edns;
                chain.to_vec().ok()
            });
        match joined {
            Some(bytes) => *out = bytes,
            None => {
                start_response(&self.answer, &self.facts, Rcode::ServFail, out);
                finish_plain(&self.facts, out);
            }
        }
    }
}

impl Forward {
    /// The key its answer is cached under: the question, and the set asked.
    fn cache_key(&self) -> CacheKey {
        CacheKey::new(&self.name, &self.facts).with_set(self.set_key)
    }

    /// How its answer is cut to size: a chased target's answer is cut only
    /// once joined to the chain.
    fn limit(&self) -> Proto {
        if self.chase.is_some() {
            Proto::Tcp
        } else {
            self.proto
        }
    }

    /// Rewrites the client's query into the upstream's, in place.
    ///
    /// Upstream gets the question, RD set, and our own OPT (1232, DO as
    /// asked) whether or not the client used EDNS: a client without it
    /// must not cost an upstream exchange over TCP for every answer over
    /// 512 bytes (it is told TC and retries, and its retry is a cache
    /// hit), and one answer can be cached for both kinds of client (the
    /// OPT is dropped for a client without). RD is ours to ask, as
    /// unbound's forward-zone does: an RD=0 client must not make the
    /// upstream answer, and the cache keep, an answer from its cache
    /// alone. The client's options (cookies, client subnet) are hop-by-hop
    /// and stay here (RFC 6891 6.1.1). The client's buffer becomes the
    /// upstream query: its question bytes stay as asked (they are echoed
    /// from here), the rest is rewritten; answers carry `facts.id`, never
    /// the ID the upstream module picks (its own unpredictable one per
    /// attempt).
    fn rewrite_for_upstream(&mut self) {
        self.query.truncate(self.facts.question_end);
        for at in [6, 8, 10] {
            wire::put_u16(&mut self.query, at, 0);
        }
        if let Some(flags) = self.query.get_mut(2) {
            *flags |= 0x01;
        }
        let dnssec_ok = self.facts.edns.is_some_and(|e| e.dnssec_ok);
        wire::push_opt(&mut self.query, 0, dnssec_ok, &[]);
    }
}

/// A forwarded query's client, which the upstream module calls back with
/// the answer: both forward paths end here, and differ only in where the
/// answer goes (the [`Sink`]: a UDP client, or the task of a TCP client).
struct ClientReply {
    handler: Arc<Handler>,
    job: Box<Forward>,
    sink: Sink,
    /// Holds one of `handler.inflight`'s permits until answered.
    permit: bool,
    /// The client has its answer: a stale copy, when the upstream was
    /// overdue (then the upstream's answer only refreshes the cache).
    answered: bool,
}

impl Reply for ClientReply {
    fn query(&mut self) -> &mut [u8] {
        &mut self.job.query
    }

    fn overdue(&mut self) {
        let mut out = Vec::new();
        if self
            .handler
            .answer_stale(&self.job, "upstream slow: stale answer", &mut out)
        {
            self.answered = true;
            self.sink.deliver(out);
        }
    }

    fn answer(mut self: Box<Self>, answer: crate::upstream::Answered) {
        if self.answered {
            if let Ok((_, resp)) = answer {
                refresh(&self.handler.cache, &self.handler.state, &self.job, &resp);
            }
        } else {
            let mut out = Vec::new();
            self.handler.answer(&self.job, answer, &mut out);
            self.answered = true;
            self.sink.deliver(out);
        }
        if std::mem::take(&mut self.permit) {
            self.handler.inflight.add_permits(1);
        }
    }
}

impl Drop for ClientReply {
    fn drop(&mut self) {
        // Dropped unanswered (the runtime shutting down): SERVFAIL, so that
        // no client is left waiting, and the permit back all the same.
        if !self.answered {
            let mut out = Vec::new();
            // The client's question: a chased target's is not the one asked.
            let (asked, facts) = match &self.job.chase {
                Some(c) => (&c.answer, &c.facts),
                None => (&self.job.query, &self.job.facts),
            };
            start_response(asked, facts, Rcode::ServFail, &mut out);
            finish_plain(facts, &mut out);
            self.sink.deliver(out);
        }
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
        let report = RefusedLog::record_here(ip, &self.refused_lines);
        let action = action.as_str();
        if let Some((network, queries)) = report.line {
            tracing::warn!(
                target: "embargo::access",
                client = %network,
                queries,
                action,
                "client not in [access] allow (one line a minute per network and serving thread, counting the queries since the last)"
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

    /// Whether a connection to an encrypted listener (DoT, DoH, DoQ) from
    /// `peer` is closed before its handshake: a client `[access]` refuses,
    /// whatever its action. Answering REFUSED would first cost the server
    /// a handshake (the dearest part of the connection) for a client that
    /// gets nothing from it; counted and logged as `action` says.
    pub fn refuses_handshake(&self, peer: SocketAddr, stats: &WorkerStats) -> bool {
        let Some(action) = self.state.load().access.refuses(peer.ip()) else {
            return false;
        };
        stats.count_refused_client(action);
        self.log_refused(peer.ip(), action);
        true
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

    /// Steps 1-7 of the module doc. `out` is cleared and filled on `Reply`;
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
                if let Some((list, _)) = blocked {
                    stats.count_block(list);
                }
                if rec.wants(decision) {
                    let mut ev =
                        QueryEvent::new(decision, client, proto.into(), Some(&name), facts.qtype)
                            .with_group(group.slot)
                            .with_client_id(id)
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
        // The zone's servers, as this snapshot's table says.
        let upstream = zone.and_then(|z| {
            self.upstreams
                .forward_set(&snap.forward_zones, snap.generation, z.set)
        });
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
            client_id: id,
            allowed,
            received_us: rec.stamp_us(),
            upstream,
            set_key,
            chase: None,
        }))
    }

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
    fn chase(
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
        let record = |rec: &mut Recorder,
                      decision,
                      block: Option<(ListSlot, crate::policy::Action)>,
                      stale,
                      out: &[u8]| {
            let (counted, list) = match block {
                Some((list, _)) => (metrics::Decision::Blocked, Some(list)),
                None => (metrics::Decision::Local, None),
            };
            let stats = rec.stats();
            stats.count_query(proto as usize, facts.qtype, counted);
            if let Some(list) = list {
                stats.count_block(list);
            }
            if rec.wants(decision) {
                let mut ev =
                    QueryEvent::new(decision, client, proto.into(), Some(name), facts.qtype)
                        .with_group(group.slot)
                        .with_client_id(id)
                        .with_stale(stale);
                if let Some((list, action)) = block {
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
                record(rec, Decision::Blocked, Some(block), false, out);
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
            record(rec, decision, blocked, found == Found::Stale, out);
            return Outcome::Reply;
        }
        rec.stats()
            .count_query(proto as usize, facts.qtype, metrics::Decision::Local);
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
        }))
    }

    /// A popular answer is about to expire ([`Found::Refresh`]): asks the
    /// upstreams for it again on a task of its own, no client waiting, so
    /// that the next client still finds it cached. Needs the runtime (the
    /// UDP workers enter it; the TCP tasks run in it); without one, nothing
    /// is refreshed and the entry expires as it would have.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn prefetch(
        &self,
        pkt: &[u8],
        facts: QueryFacts,
        name: &NameKey,
        client: SocketAddr,
        allowed: bool,
        upstream: Option<Arc<Upstream>>,
        set_key: u32,
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
            client_id: ClientId::NONE,
            allowed,
            received_us: 0,
            upstream: None,
            set_key,
            chase: None,
        };
        job.rewrite_for_upstream();
        let upstream = upstream.unwrap_or_else(|| self.upstreams.default_set().clone());
        let (cache, state) = (self.cache.clone(), self.state.clone());
        runtime.spawn(async move {
            if let Ok((_, resp)) = upstream.forward(&job.query).await {
                refresh(&cache, &state, &job, &resp);
            }
            cache.prefetch_done();
        });
    }

    /// Step 8 for a task that awaits the answer (TCP clients): asks the
    /// upstreams and writes what the client gets into `out` (see
    /// [`Handler::forward_udp`]). Needs the runtime.
    pub async fn forward(self: &Arc<Self>, job: Box<Forward>, out: &mut Vec<u8>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.start_forward(job, Sink::Task(Some(tx)));
        match rx.await {
            Ok(answer) => *out = answer,
            Err(_) => out.clear(),
        }
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

    /// Step 8 for a UDP client, without a task of its own: the upstream
    /// module sends the query now, from the worker's thread, and whoever
    /// has the upstream's answer (the task reading the upstream socket,
    /// most often) writes the client's answer and sends it on `sock`,
    /// from `local`. Must run inside the runtime's context
    /// (`Handle::enter`).
    pub(super) fn forward_udp(
        self: &Arc<Self>,
        job: Box<Forward>,
        sock: &Arc<std::net::UdpSocket>,
        peer: SocketAddr,
        local: Local,
    ) {
        let sock = sock.clone();
        self.start_forward(job, Sink::Udp { sock, peer, local });
    }

    /// Asks the upstreams for `job`; its answer (SERVFAIL when no upstream
    /// answered in time, unless a stale answer may be served; a stale
    /// answer early when the upstream is slow) goes to `sink`.
    fn start_forward(self: &Arc<Self>, mut job: Box<Forward>, sink: Sink) {
        job.rewrite_for_upstream();
        let permit = self
            .inflight
            .try_acquire()
            .ok()
            .map(|p| p.forget())
            .is_some();
        // The set asked: the zone's, or `[upstream]` (no count to take).
        let set = job.upstream.clone();
        let reply = Box::new(ClientReply {
            handler: self.clone(),
            job,
            sink,
            permit,
            answered: false,
        });
        if !permit {
            return reply.answer(Err(crate::upstream::Error::Busy));
        }
        set.as_ref()
            .unwrap_or_else(|| self.upstreams.default_set())
            .send(reply);
    }

    /// Writes into `out` what the client of `job` gets for `answer` (the
    /// index of the upstream that gave it, and its bytes), caches a good
    /// answer, and records the decision: both forward paths end here.
    fn answer(&self, job: &Forward, answer: crate::upstream::Answered, out: &mut Vec<u8>) {
        let Forward {
            query,
            facts,
            name,
            client,
            client_id,
            allowed,
            ..
        } = job;
        let (facts, proto) = (*facts, job.limit());
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
        if let Some(why) = failed
            && self.answer_stale(job, why, out)
        {
            return;
        }
        // The rules now in force, and the client's group under them: they
        // decide what the answer's CNAME chain may lead to.
        let snap = self.state.load();
        let (_, group) = snap.groups.of_client(client.ip(), *client_id);
        let key = job.cache_key();
        let upstream = answer.as_ref().ok().map(|(i, _)| *i);
        // A block found in the chain: its list and action, for the record.
        let mut blocked = None;
        'answered: {
            match answer {
                Ok((_, mut resp)) => {
                    let through = if *allowed {
                        None
                    } else {
                        cname::inspect(&resp, &snap, group)
                    };
                    let generation = snap.generation;
                    if let Some(through) = through {
                        let (list, action) =
                            (list_slot(&snap, through.policy), through.policy.action);
                        if snap.groups.configured() {
                            // Other groups may not block it: keep the chain,
                            // to be inspected again for each client's group.
                            let checked = Checked::PerGroup { generation };
                            self.cache.insert_tagged(&key, &mut resp, checked.tag());
                            through.respond(query, &facts, out);
                        } else {
                            // Every client gets this verdict: keep it, not
                            // the chain, with the OPT (and EDE) a client with
                            // EDNS gets.
                            through.respond(query, &with_edns(&facts), out);
                            let checked = Checked::Blocked {
                                generation,
                                list,
                                action,
                            };
                            self.cache.insert_tagged(&key, out, checked.tag());
                            strip_opt(&facts, out);
                        }
                        truncate_for(&facts, proto, out);
                        blocked = Some((list, action));
                        break 'answered;
                    }
                    // Caching clamps its TTLs: this client sees what the next ones will.
                    let checked = Checked::of(&resp, &snap, *allowed);
                    self.cache.insert_tagged(&key, &mut resp, checked.tag());
                    out.clear();
                    out.extend_from_slice(&resp);
                    strip_opt(&facts, out);
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
        let decision = match (upstream, blocked) {
            (_, Some(_)) => Decision::Blocked,
            // A local name whose CNAME target the upstream answered.
            (Some(_), None) if job.chase.is_some() => Decision::Local,
            (Some(_), None) => Decision::Forwarded,
            (None, None) => Decision::Error,
        };
        self.join_chase(job, out);
        if self.observe.wants(decision) {
            let mut ev = self.event(job, decision, &facts).with_group(group.slot);
            if let Some((list, action)) = blocked {
                // The listed entry is the chain's, not in the question: no entry.
                ev = ev.with_block(list, usize::MAX, action);
            }
            if let Some(i) = upstream {
                // The server that answered, in whichever set.
                let set = job
                    .upstream
                    .as_ref()
                    .unwrap_or_else(|| self.upstreams.default_set());
                ev = ev.with_upstream(set.server_id(i));
            }
            self.record_forward(job, ev, out);
        }
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
    fn event(&self, job: &Forward, decision: Decision, facts: &QueryFacts) -> QueryEvent {
        let (name, qtype) = match &job.chase {
            Some(c) => (&c.name, c.facts.qtype),
            None => (&job.name, facts.qtype),
        };
        QueryEvent::new(decision, job.client, job.proto.into(), Some(name), qtype)
            .with_client_id(job.client_id)
    }

    /// When the upstreams failed for `job` (`why`), or are slow to answer
    /// (the client timer, RFC 8767's client response timer): writes the
    /// expired answer kept for its question into `out`, marked stale with
    /// `why` (EDE 3), and records it as a cached answer. False when no such
    /// answer may be served.
    fn answer_stale(&self, job: &Forward, why: &str, out: &mut Vec<u8>) -> bool {
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
        let Some(hit) = self
            .cache
            .stale(&key, query, facts, why, out)
            .and_then(|tag| servable(&self.cache, tag, &key, &snap, out))
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
        if self.observe.wants(decision) {
            let mut ev = self
                .event(job, decision, facts)
                .with_group(group.slot)
                .with_stale(true);
            if let Some((list, action)) = blocked {
                ev = ev.with_block(list, usize::MAX, action);
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
        let now = crate::observe::now_us();
        ev.time_us = if job.received_us == 0 {
            now
        } else {
            job.received_us
        };
        ev.latency_us = u32::try_from(now.saturating_sub(ev.time_us)).unwrap_or(u32::MAX);
        self.observe.record(ev, out);
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

/// Caches `resp`, the upstream's answer to `job` that no client waits for
/// (a background refresh, or a late answer after a stale one), tagged with
/// what the rules now in force make of its chain. A chain that now passes
/// through a name some group's lists hold is not kept as it came: the
/// entry expires, and the next client takes the forward path, where the
/// chain is inspected.
fn refresh(cache: &Cache, state: &ArcSwap<Snapshot>, job: &Forward, resp: &[u8]) {
    if let Some(mut resp) = for_the_client(resp, &job.facts) {
        let checked = Checked::of(&resp, &state.load(), job.allowed);
        if !matches!(checked, Checked::PerGroup { .. }) {
            let key = job.cache_key();
            cache.insert_tagged(&key, &mut resp, checked.tag());
        }
    }
}

/// An upstream's answer as the cache keeps it and clients get it: its OPT
/// replaced by ours (`wire::replace_opt`; DO as asked), which a client
/// without EDNS does not get ([`strip_opt`]); RA set and AA clear, since we
/// are the client's recursive resolver even when the upstream is
/// authoritative (as unbound and BIND do); RD as the client asked (upstream
/// was asked with RD whatever the client said). `None` when it cannot be
/// walked.
fn for_the_client(resp: &[u8], facts: &QueryFacts) -> Option<Vec<u8>> {
    let mut resp = wire::replace_opt(resp, Some(facts.edns.is_some_and(|e| e.dnssec_ok)))?;
    if let Some(flags) = resp.get_mut(2..4) {
        flags[0] = (flags[0] & !0x05) | ((facts.flags >> 8) as u8 & 0x01);
        flags[1] |= 0x80;
    }
    Some(resp)
}

/// The query facts of `facts` as if the client had used EDNS (DO as it
/// asked): how an answer kept for every client is written.
fn with_edns(facts: &QueryFacts) -> QueryFacts {
    let edns = facts.edns.unwrap_or(wire::Edns {
        udp_size: wire::EDNS_UDP_SIZE,
        dnssec_ok: false,
        class_at: 0,
    });
    QueryFacts {
        edns: Some(edns),
        ..*facts
    }
}

/// Takes the OPT record out of an answer in `out` for a client that did
/// not use EDNS (RFC 6891 7: no OPT in the answer to a query without one).
fn strip_opt(facts: &QueryFacts, out: &mut Vec<u8>) {
    if facts.edns.is_some() {
        return;
    }
    if let Some(Sections {
        opt: Some((start, end)),
        ..
    }) = sections(out)
    {
        out.drain(start..end);
        let arcount = wire::u16_at(out, 10).unwrap_or(1);
        wire::put_u16(out, 10, arcount.saturating_sub(1));
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
fn servable(
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
fn cached_block(
    hit: Checked,
    allowed: bool,
    snap: &Snapshot,
    group: &crate::groups::Group,
    query: &[u8],
    facts: &QueryFacts,
    out: &mut Vec<u8>,
) -> Option<(ListSlot, crate::policy::Action)> {
    match hit {
        Checked::Unchained | Checked::Passed { .. } => None,
        Checked::Blocked { list, action, .. } => Some((list, action)),
        Checked::PerGroup { .. } if allowed => None,
        Checked::PerGroup { .. } => cname::inspect(out, snap, group).map(|through| {
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

/// Where an answer's additional section starts, and its OPT record's
/// bytes if it has one.
struct Sections {
    additional: usize,
    opt: Option<(usize, usize)>,
}

/// Walks the records of the answer in `msg`; `None` when it cannot be walked.
fn sections(msg: &[u8]) -> Option<Sections> {
    let hdr = wire::Header::parse(msg)?;
    let mut at = wire::HEADER_LEN;
    for _ in 0..hdr.qdcount {
        at = wire::skip_name(msg, at)? + 4;
    }
    for _ in 0..u32::from(hdr.ancount) + u32::from(hdr.nscount) {
        at = wire::read_rr(msg, at)?.1;
    }
    let additional = at;
    let mut opt = None;
    for _ in 0..hdr.arcount {
        let (rr, next) = wire::read_rr(msg, at)?;
        if rr.rtype == wire::TYPE_OPT {
            opt = Some((at, next));
        }
        at = next;
    }
    Some(Sections { additional, opt })
}

/// Fits a UDP answer to what the client can take (RFC 1035 4.2.1, RFC 6891
/// 7; our own ceiling is 1232 bytes whatever the client offers): first
/// without its additional section (its OPT kept), which RFC 2181 9 says
/// is no reason for TC, as unbound and Knot do; when the answer and
/// authority sections still do not fit, cut down to header + question
/// (+ OPT) with TC set, so that the client retries over TCP.
fn truncate_for(facts: &QueryFacts, proto: Proto, out: &mut Vec<u8>) {
    if proto != Proto::Udp {
        return;
    }
    let limit = match facts.edns {
        Some(e) => usize::from(e.udp_size.clamp(512, wire::EDNS_UDP_SIZE)),
        None => 512,
    };
    if out.len() <= limit {
        return;
    }
    if let Some(s) = sections(out) {
        let opt_len = s.opt.map_or(0, |(start, end)| end - start);
        if s.additional + opt_len <= limit {
            if let Some((start, _)) = s.opt {
                out.copy_within(start..start + opt_len, s.additional);
            }
            out.truncate(s.additional + opt_len);
            wire::put_u16(out, 10, u16::from(s.opt.is_some()));
            return;
        }
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
/// Atomics, not a lock: it sits on the error path of every worker (and on
/// the accept loops: a listener out of descriptors fails every accept).
pub(crate) struct LogGate {
    /// When the last event went through (µs since the epoch), 0 = never.
    last_us: std::sync::atomic::AtomicU64,
    /// Events held back since then.
    held: std::sync::atomic::AtomicU64,
}

impl LogGate {
    pub(crate) const EVERY_US: u64 = 10_000_000;

    pub(crate) const fn new() -> Self {
        Self {
            last_us: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last one)` when this event may be logged.
    pub(crate) fn pass(&self, now_us: u64) -> Option<u64> {
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
    use super::{LogGate, Proto, strip_opt, truncate_for};
    use crate::wire;

    /// A query for `a.test` A (EDNS with `udp_size` if given) and an
    /// answer to it: one A record, `extra` A records in the additional
    /// section, then our OPT with an EDE.
    fn query_and_answer(udp_size: Option<u16>, extra: usize) -> (Vec<u8>, Vec<u8>) {
        let mut q = vec![
            0,
            7,
            1,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(udp_size.is_some()),
        ];
        q.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
        let question_end = q.len();
        if let Some(size) = udp_size {
            q.extend_from_slice(&[0, 0, 41]);
            q.extend_from_slice(&size.to_be_bytes());
            q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        let mut a = q[..question_end].to_vec();
        a[2] = 0x81;
        a[3] = 0x80;
        a[6..12].copy_from_slice(&[0, 1, 0, 0, 0, extra as u8]);
        for _ in 0..=extra {
            a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        }
        wire::push_opt(&mut a, 0, false, &wire::ede_option(15, "why"));
        (q, a)
    }

    #[test]
    fn an_overflowing_additional_section_goes_before_tc_and_the_opt_stays() {
        let (q, mut a) = query_and_answer(Some(512), 40);
        let (facts, _) = crate::query::parse(&q).expect("query");
        let opt = a[a.len() - 11 - 9..].to_vec();
        assert!(a.len() > 512);
        truncate_for(&facts, Proto::Udp, &mut a);
        assert_eq!(a[2] & 0x02, 0, "no TC");
        assert_eq!(&a[6..12], &[0, 1, 0, 0, 0, 1], "the answer and the OPT");
        assert_eq!(a.len(), facts.question_end + 16 + opt.len());
        assert!(a.ends_with(&opt), "the OPT and its EDE kept");
        // Over TCP nothing is cut.
        let (_, mut whole) = query_and_answer(Some(512), 40);
        let len = whole.len();
        truncate_for(&facts, Proto::Tcp, &mut whole);
        assert_eq!(whole.len(), len);
        // An answer section that does not fit still gets TC.
        let (_, mut big) = query_and_answer(Some(512), 0);
        big[7] = 41;
        for _ in 0..40 {
            let at = facts.question_end;
            big.splice(
                at..at,
                [0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1],
            );
        }
        truncate_for(&facts, Proto::Udp, &mut big);
        assert_eq!(big[2] & 0x02, 0x02, "TC");
        assert_eq!(&big[6..12], &[0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn a_client_without_edns_gets_no_opt() {
        let (q, mut a) = query_and_answer(None, 2);
        let (facts, _) = crate::query::parse(&q).expect("query");
        let len = a.len();
        strip_opt(&facts, &mut a);
        assert_eq!(a.len(), len - 11 - 9);
        assert_eq!(&a[6..12], &[0, 1, 0, 0, 0, 2]);
        let (q, mut a) = query_and_answer(Some(1232), 2);
        let (facts, _) = crate::query::parse(&q).expect("query");
        strip_opt(&facts, &mut a);
        assert_eq!(a.len(), len, "kept for a client with EDNS");
    }

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
