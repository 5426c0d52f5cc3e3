//! Step 1's refusals: what a client that may not ask gets (REFUSED with
//! EDE 18, or nothing), the rate-limited log line about its network, and
//! the connections closed before they cost a slot or a handshake. Cold:
//! a client that may ask never enters this room, and an outsider's flood
//! costs a count and, once a minute, a line.

use std::net::{IpAddr, SocketAddr};

use crate::access::{AccessAction, RefusedLog};
use crate::observe::metrics::WorkerStats;
use crate::observe::{Decision, NO_RCODE, QueryEvent, Recorder};
use crate::query;
use crate::wire::Rcode;

use super::notify::is_notify;
use super::{Handler, Outcome, Proto};

impl Handler {
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
    pub(super) fn refuse(
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
}
