//! The questions hickory's validator asks (the client's, then the DNSKEY,
//! DS and NS lookups of the chain), sent through embargo's own
//! [`Upstream`]: the same servers, strategy, health and transports as any
//! forwarded query, so validation needs no second resolver.
//!
//! The chain's answers are kept here for their TTL (at most
//! [`MAX_CHAIN_TTL`]), in a bounded map: a zone's DNSKEY and DS are asked
//! once, not once per name validated in it. The client's own question is
//! never kept here: its answer was fetched before validation began and is
//! handed over by [`answering`] for the task validating it, and the main
//! cache keeps it.
//!
//! One handle serves every query (the validator around it lives as long as
//! its trust anchors, so that hickory's cache of validated RRsets, the
//! zone's DNSKEY RRset above all, is shared): what belongs to one query,
//! its first answer, is task-local, not a field.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, Stream};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::xfer::DnsHandle;
use hickory_net::{NetError, proto};
use proto::op::{DnsRequest, DnsResponse, Edns, Query};
use proto::rr::RecordType;

use crate::upstream::Upstream;

/// The longest a chain answer is kept, whatever its TTL: a key rollover
/// is seen within this time.
pub(super) const MAX_CHAIN_TTL: Duration = Duration::from_secs(3600);

/// Chain answers kept at most; the map is emptied when full (a busy
/// resolver's working set of zones is far smaller).
const MAX_CHAIN_ENTRIES: usize = 10_000;

/// The chain's kept answers: the query (name lowercased, type, class) and
/// the answer, parsed (each validated query in the zone asks for its
/// DNSKEY RRset again: a clone costs less than a parse), until when.
type Chain = Mutex<HashMap<(String, u16, u16), (Instant, DnsResponse)>>;

/// What every query's handle shares: the upstream set and the kept chain.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) upstream: Arc<Upstream>,
    chain: Chain,
}

impl Shared {
    pub(super) fn new(upstream: Arc<Upstream>) -> Arc<Self> {
        Arc::new(Self {
            upstream,
            chain: Mutex::new(HashMap::new()),
        })
    }

    /// The kept answer to `key`, if it has not expired.
    fn kept(&self, key: &(String, u16, u16)) -> Option<DnsResponse> {
        let chain = self.chain.lock().ok()?;
        chain
            .get(key)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, answer)| answer.clone())
    }

    fn keep(&self, key: (String, u16, u16), answer: &DnsResponse) {
        let ttl = answer
            .all_sections()
            .map(|r| r.ttl)
            .min()
            .map_or(Duration::ZERO, |t| Duration::from_secs(u64::from(t)))
            .min(MAX_CHAIN_TTL);
        if ttl.is_zero() {
            return;
        }
        if let Ok(mut chain) = self.chain.lock() {
            if chain.len() >= MAX_CHAIN_ENTRIES {
                chain.clear();
            }
            chain.insert(key, (Instant::now() + ttl, answer.clone()));
        }
    }
}

tokio::task_local! {
    /// The client's question and the upstream's answer to it, fetched
    /// before validation: handed to the validator when it asks, not asked
    /// again. Task-local: concurrent queries share one handle.
    static FIRST: (Query, DnsResponse);
}

/// Runs `validation` (the validator's lookups, in this task) with
/// `answer` as the answer to `query`: asked for it, the handle hands it
/// over instead of asking the upstream.
pub(super) async fn answering<F: Future>(
    query: Query,
    answer: DnsResponse,
    validation: F,
) -> F::Output {
    FIRST.scope((query, answer), validation).await
}

/// A hickory [`DnsHandle`] over embargo's upstream, shared by every query.
#[derive(Clone, Debug)]
pub(super) struct UpstreamHandle {
    shared: Arc<Shared>,
}

impl UpstreamHandle {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Asks the upstream `request`, or answers it from what is kept.
    async fn ask(self, request: DnsRequest) -> Result<DnsResponse, NetError> {
        let query = request
            .queries
            .first()
            .cloned()
            .ok_or_else(|| NetError::from("no question"))?;
        if let Ok(Some(answer)) =
            FIRST.try_with(|(first, answer)| (*first == query).then(|| answer.clone()))
        {
            return Ok(answer);
        }
        let key = (
            query.name().to_lowercase().to_ascii(),
            u16::from(query.query_type()),
            u16::from(query.query_class()),
        );
        let chain = matches!(
            query.query_type(),
            RecordType::DNSKEY | RecordType::DS | RecordType::NS
        );
        if chain && let Some(answer) = self.shared.kept(&key) {
            return Ok(answer);
        }
        let mut message = request.into_parts().0;
        message.metadata.recursion_desired = true;
        // Always DO: every answer here is for validation, and one kept
        // without its RRSIGs would fail the next lookup that needs them.
        message
            .edns
            .get_or_insert_with(Edns::new)
            .set_max_payload(super::PAYLOAD)
            .set_dnssec_ok(true);
        let bytes = message.to_vec().map_err(NetError::from)?;
        let (_, answer) = self
            .shared
            .upstream
            .forward(&bytes)
            .await
            .map_err(|e| NetError::from(e.to_string()))?;
        let response = DnsResponse::from_buffer(answer).map_err(NetError::from)?;
        if chain {
            self.shared.keep(key, &response);
        }
        Ok(response)
    }
}

impl DnsHandle for UpstreamHandle {
    type Response = Pin<Box<dyn Stream<Item = Result<DnsResponse, NetError>> + Send>>;
    type Runtime = TokioRuntimeProvider;

    fn send(&self, request: DnsRequest) -> Self::Response {
        Box::pin(stream::once(self.clone().ask(request)))
    }
}
