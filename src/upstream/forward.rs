//! One forwarded query's way through the servers: the state machine both
//! ways in share ([`super::Upstream::send`] and [`super::Upstream::forward`],
//! which differ only in how the answer reaches the caller: the caller's
//! [`Reply`]).
//!
//! ```text
//!  start ─► next server (order, deadline) ─► attempt until its share of what is left
//!             ▲    UDP: in the socket's table; the reader answers it, its sweep
//!             │         sends it again halfway through and ends it at its end
//!             │    TCP, DoT, DoH, and the TCP retry after TC: a task
//!             │
//!  settle ────┤ answer         ─► credit the round trip ─► finish (the caller's Reply)
//!             │ TC over UDP    ─► TCP to the same server, a share of what is left
//!             │ SERVFAIL, REFUSED, NOTIMP ─► a failure of this server: next
//!             └ timeout, error ─► a failure of this server: next
//!  no server or time left ─► finish: the last SERVFAIL seen, else why the last attempt failed
//! ```
//!
//! Every attempt ends in exactly one [`Query::settle`], on whichever task
//! or thread saw it end, and every query in exactly one [`Query::finish`].

use std::sync::Arc;

use tokio::time::{Instant, sleep_until};

use super::flights::FlightKey;
use super::{Answered, Error, Link, Reply, Upstream};
use crate::wire::{Header, Rcode};

/// A query on its way: the caller's reply, the servers to try and the
/// attempt in progress.
pub(crate) struct Query {
    upstream: Arc<Upstream>,
    pub(super) reply: Box<dyn Reply>,
    /// The flight this query leads, if its question could be keyed.
    flight: Option<FlightKey>,
    /// The servers to try, in order, and how many were.
    order: Vec<usize>,
    tried: usize,
    deadline: Instant,
    /// When to tell the caller that no answer came yet (then None).
    pub(super) overdue_at: Option<Instant>,
    pub(super) attempt: Attempt,
    /// Why the last attempt failed.
    last: Error,
    /// The last SERVFAIL a server gave, with its index: what the caller
    /// gets if no server does better (its EDE may say why).
    servfail: Option<(usize, Vec<u8>)>,
}

/// The attempt in progress.
pub(super) struct Attempt {
    pub(super) server: usize,
    /// Over TCP after a truncated answer over UDP.
    tcp: bool,
    started: Instant,
    /// When it ends without an answer.
    pub(super) until: Instant,
    /// When to send the query once more if no answer came (UDP; then None).
    pub(super) resend: Option<Instant>,
}

impl Query {
    pub(super) fn new(
        upstream: Arc<Upstream>,
        reply: Box<dyn Reply>,
        flight: Option<FlightKey>,
    ) -> Self {
        let started = Instant::now();
        let deadline = started + upstream.timeout;
        Self {
            order: upstream.order(),
            overdue_at: upstream
                .overdue
                .map(|d| started + d)
                .filter(|&at| at < deadline),
            upstream,
            reply,
            flight,
            tried: 0,
            deadline,
            attempt: Attempt {
                server: 0,
                tcp: false,
                started,
                until: started,
                resend: None,
            },
            last: Error::NoServers,
            servfail: None,
        }
    }

    /// Sets up the attempt on the next server, with an equal share of the
    /// time left among the servers not yet tried; None when no server or
    /// no time is left.
    pub(super) fn next_attempt(&mut self) -> Option<usize> {
        let server = *self.order.get(self.tried)?;
        let now = Instant::now();
        let left = self.deadline.saturating_duration_since(now);
        if left.is_zero() {
            return None;
        }
        let untried = u32::try_from(self.order.len() - self.tried).unwrap_or(u32::MAX);
        self.tried += 1;
        let share = left / untried;
        self.attempt = Attempt {
            server,
            tcp: false,
            started: now,
            until: now + share,
            // Halfway: a datagram lost on the way is a delay, not a SERVFAIL.
            resend: Some(now + share / 2),
        };
        Some(server)
    }

    /// The attempt ended with `result`: an answer, or why none came.
    pub(super) fn settle(mut self: Box<Self>, result: Result<Vec<u8>, Error>) {
        let upstream = self.upstream.clone();
        let i = self.attempt.server;
        let Some(server) = upstream.servers.get(i) else {
            return self.give_up();
        };
        let took = self.attempt.started.elapsed();
        let now = upstream.now_ms();
        let resp = match result {
            Ok(resp) => resp,
            Err(Error::Unparsable) => return self.finish(Err(Error::Unparsable)),
            Err(e) => {
                // Too many queries waiting on a socket is our state, not
                // the server's.
                if !matches!(e, Error::Busy) {
                    tracing::debug!(upstream = %server.label, error = %e, "upstream attempt failed");
                    server.health.failure(took, now, &server.label);
                }
                self.last = e;
                return upstream.start_next(self);
            }
        };
        let header = Header::parse(&resp);
        let rcode = header.map_or(0, |h| h.rcode());
        if rcode == Rcode::ServFail as u8
            || rcode == Rcode::NotImp as u8
            || rcode == Rcode::Refused as u8
        {
            // It answered, but not the question: as unbound does, a failure
            // of this server for this query, with no round-trip credit
            // (`fastest` would otherwise prefer a server that fails fast).
            tracing::debug!(upstream = %server.label, rcode, "upstream attempt failed: rcode");
            server.health.failure(took, now, &server.label);
            if rcode == Rcode::ServFail as u8 {
                self.servfail = Some((i, resp));
            } else {
                self.last = Error::Rejected {
                    server: server.label.clone(),
                    rcode,
                };
            }
            return upstream.start_next(self);
        }
        if !self.attempt.tcp
            && header.is_some_and(|h| h.truncated())
            && matches!(server.link, Link::Udp(_))
        {
            // The whole answer over TCP, from the same server, with a
            // share of what is left: if TCP fails, the next server. The
            // server is credited (or blamed) once the whole answer is in,
            // so one whose TCP is broken goes down like any failing one.
            let now = Instant::now();
            let left = self.deadline.saturating_duration_since(now);
            let untried = u32::try_from(self.order.len() - self.tried).unwrap_or(u32::MAX);
            self.attempt.tcp = true;
            self.attempt.until = now + left / untried.saturating_add(1);
            self.attempt.resend = None;
            return self.exchange_in_task();
        }
        server.health.success(took, now, &server.label);
        self.finish(Ok((i, resp)));
    }

    /// No server or time left: the last SERVFAIL a server gave, else why
    /// the last attempt failed.
    pub(super) fn give_up(mut self: Box<Self>) {
        let result = match self.servfail.take() {
            Some(answer) => Ok(answer),
            None => Err(std::mem::replace(&mut self.last, Error::NoServers)),
        };
        self.finish(result);
    }

    /// Answers the caller and every query that waited in its flight.
    pub(super) fn finish(self: Box<Self>, result: Answered) {
        let Self {
            upstream,
            reply,
            flight,
            ..
        } = *self;
        if let Some(key) = &flight {
            upstream.flights.land(key, &result);
        }
        reply.answer(result);
    }

    /// The client timer fired: tells the caller and its flight's waiters.
    pub(super) fn overdue(&mut self) {
        self.overdue_at = None;
        self.reply.overdue();
        if let Some(key) = &self.flight {
            self.upstream.flights.overdue(key);
        }
    }

    /// Runs the attempt in a task: a server over TCP, DoT or DoH, or the
    /// TCP retry of a truncated UDP answer.
    pub(super) fn exchange_in_task(self: Box<Self>) {
        tokio::spawn(async move {
            let mut q = self;
            let upstream = q.upstream.clone();
            let result = match upstream.servers.get(q.attempt.server) {
                None => Err(Error::NoServers),
                Some(server) => {
                    // A copy: the exchange sets its own ID, and the reply
                    // stays free for the client timer meanwhile.
                    let mut wire = q.reply.query().to_vec();
                    let until = q.attempt.until;
                    let exchange = server.exchange(&mut wire, until);
                    tokio::pin!(exchange);
                    loop {
                        let overdue = q.overdue_at;
                        tokio::select! {
                            r = &mut exchange => break r,
                            () = sleep_until(overdue.unwrap_or(until)), if overdue.is_some() => {
                                q.overdue();
                            }
                        }
                    }
                }
            };
            q.settle(result);
        });
    }
}
