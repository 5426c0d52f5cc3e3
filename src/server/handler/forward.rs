//! Step 8: a query that goes upstream. The [`Forward`] that
//! [`Handler::handle_as`] hands its caller (with, for a local CNAME's
//! target, the [`Chase`] it rides on), rewritten into the upstream's query,
//! sent to its zone's set on either path ([`Handler::forward_udp`] from a
//! UDP worker, awaited [`Handler::forward`] for a stream), and the
//! callback the upstream module answers ([`ClientReply`]), which hands
//! the answer to step 9 ([`Handler::answer`]). The background refresh of
//! a popular cached answer ([`Handler::prefetch`]) goes the same way with
//! no client waiting.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::cache::{Cache, CacheKey};
use crate::cname::Checked;
use crate::dnssec::Validator;
use crate::groups::ClientId;
use crate::matcher::NameKey;
use crate::policy::{QueryFacts, start_response};
use crate::server::batch::Local;
use crate::server::sink::Sink;
use crate::state::Snapshot;
use crate::upstream::{Reply, Upstream};
use crate::wire::{self, Rcode};

use super::shape::{finish_plain, for_the_client};
use super::{Handler, Proto};

/// The header's CD bit (RFC 4035 3.2.2), in `QueryFacts::flags`.
const CD: u16 = 0x0010;

/// A query that must go upstream, with what is needed to answer it later.
#[derive(Debug)]
pub struct Forward {
    pub(super) query: Vec<u8>,
    pub(super) facts: QueryFacts,
    pub(super) name: NameKey,
    pub(super) proto: Proto,
    /// Whose query: its group decides what the answer's CNAME chain may lead to.
    pub(super) client: SocketAddr,
    /// The ID the client named itself by, which may decide its group.
    pub(super) client_id: ClientId,
    /// The name is allowlisted: its answer's chain is not inspected.
    pub(super) allowed: bool,
    /// When the query arrived (µs since the epoch), for its record; 0 when
    /// the caller's recorder keeps nothing.
    pub(super) received_us: u64,
    /// The set of the name's `[[forward]]` zone; `None`: `[upstream]`.
    pub(super) upstream: Option<Arc<Upstream>>,
    /// That set's cache key (`ForwardZones::cache_key`; 0 for `[upstream]`).
    pub(super) set_key: u32,
    /// This query resolves the target of a local CNAME: the client's
    /// question and the local answer, to be joined with this one's.
    pub(super) chase: Option<Box<Chase>>,
    /// Validation judged its answer bogus: recorded as such.
    pub(super) bogus: bool,
    /// The address the client sent to (for dnstap), as its recorder knew it.
    pub(super) server: Option<SocketAddr>,
}

/// A local name's CNAME whose target is not local ([`Handler::chase`]):
/// what the client asked and the chain answered so far. The target is
/// resolved as the [`Forward`] it rides on (its name, its question).
#[derive(Debug)]
pub(super) struct Chase {
    /// The local answer to the client's question: header (AA), question,
    /// the CNAME records, OPT as asked.
    pub(super) answer: Vec<u8>,
    /// The client's name and query.
    pub(super) name: NameKey,
    pub(super) facts: QueryFacts,
}

impl Chase {
    /// Joins the target's answer in `out` (to the target's question) to the
    /// local chain: the client's header and question, the chain, then the
    /// target's records, its authority (the SOA of an NXDOMAIN), RCODE and
    /// OPT (an EDE it carries: a block, a stale answer). The answer of a
    /// forwarded query in all but the first records, so it is built with
    /// hickory, off the hot path. SERVFAIL if either cannot be read.
    pub(super) fn join(&self, out: &mut Vec<u8>) {
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
    pub(super) fn cache_key(&self) -> CacheKey {
        CacheKey::new(&self.name, &self.facts).with_set(self.set_key)
    }

    /// How its answer is cut to size: a chased target's answer is cut only
    /// once joined to the chain.
    pub(super) fn limit(&self) -> Proto {
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
            self.handler.count_answer(&self.job, None);
            self.sink.deliver(out);
        }
        if self.permit {
            self.handler.inflight.add_permits(1);
        }
    }
}

impl Handler {
    /// A popular answer is about to expire ([`Found::Refresh`]): asks the
    /// upstreams for it again on a task of its own, no client waiting, so
    /// that the next client still finds it cached. Needs the runtime (the
    /// UDP workers enter it; the TCP tasks run in it); without one, nothing
    /// is refreshed and the entry expires as it would have.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn prefetch(
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
            bogus: false,
            server: None,
        };
        job.rewrite_for_upstream();
        let upstream = upstream.unwrap_or_else(|| self.upstreams.default_set().clone());
        let (cache, state) = (self.cache.clone(), self.state.clone());
        let validator = self.validator_for(&job);
        runtime.spawn(async move {
            // A validated answer is refreshed validated: the cache keeps
            // nothing that did not pass.
            let answered = match validator {
                Some(v) => v.resolve(&job.query).await.answer,
                None => upstream.forward(&job.query).await,
            };
            if let Ok((_, resp)) = answered {
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
    pub(in crate::server) fn forward_udp(
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
    /// The validator for `job`, if its answer is to be validated: one for
    /// `[upstream]` (not a `[[forward]]` zone's set), and a client that did
    /// not set CD (RFC 4035 3.2.2: it validates for itself).
    fn validator_for(&self, job: &Forward) -> Option<Arc<Validator>> {
        let v = self.validator.as_ref()?;
        (job.upstream.is_none() && job.facts.flags & CD == 0).then(|| v.clone())
    }

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
        // Validated: a task of its own, which may ask the upstream for the
        // chain (DNSKEY, DS) before the answer is known.
        if let Some(v) = self.validator_for(&reply.job) {
            let mut reply = reply;
            tokio::spawn(async move {
                let validated = v.resolve(&reply.job.query).await;
                reply.job.bogus = validated.bogus;
                reply.answer(validated.answer);
            });
            return;
        }
        set.as_ref()
            .unwrap_or_else(|| self.upstreams.default_set())
            .send(reply);
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
