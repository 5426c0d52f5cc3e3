//! DNS over QUIC (RFC 9250).
//!
//! ```text
//!  QUIC Initial ─► [access] refuses? ignored (no handshake) ─► connection cap ─► handshake
//!     (ALPN doq, TLS 1.3, SNI ─► client ID) within tls_handshake_timeout
//!     ─► each bidirectional stream one query: 2-byte length, message (ID 0), FIN
//!        ─► Handler::handle_as ─► 2-byte length, answer, FIN
//! ```
//!
//! Why quinn directly and not hickory-server's `register_quic_listener`
//! (itself built on quinn, through hickory-net): hickory's handler awaits
//! each stream's answer before it accepts the next stream of the
//! connection (so one slow forward holds every other query of that client),
//! closes a connection after 100 queries, decodes each query into a
//! `Request` and encodes a `MessageResponse` again, and gives the handler
//! neither the SNI (client IDs) nor a chance to refuse a client before its
//! handshake (the manual, "Encrypted transports").
//!
//! Bounds: streams at once per connection (`tls_max_streams`, QUIC's own
//! MAX_STREAMS flow control, so a client cannot open more); the message
//! (`https_max_body` bytes) must arrive whole within TCP's message
//! timeout; a connection with no stream for `tls_idle_timeout` is closed
//! (QUIC's idle timeout closes one that falls silent sooner); 0-RTT is off
//! (a replayed query is harmless, but nothing is gained: resumption already
//! spares the full handshake).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quinn::VarInt;
use tokio::sync::watch;

use super::handler::{Handler, Outcome, Proto};
use super::tcp::{Conn, Connections};
use super::tls::Certs;
use crate::config::{EncryptedLimits, TcpLimits};
use crate::groups::ClientId;
use crate::observe::{Recorder, WorkerStats};
use crate::wire;

/// RFC 9250 4.3 error codes.
const DOQ_NO_ERROR: u32 = 0x0;
const DOQ_PROTOCOL_ERROR: u32 = 0x2;
const DOQ_REQUEST_CANCELLED: u32 = 0x3;
const DOQ_EXCESSIVE_LOAD: u32 = 0x4;

/// A QUIC endpoint serving DoQ on `socket` with `tls` (TLS 1.3, ALPN doq).
pub(super) fn endpoint(
    socket: std::net::UdpSocket,
    tls: rustls::ServerConfig,
    limits: &EncryptedLimits,
) -> std::io::Result<quinn::Endpoint> {
    let mut tls = tls;
    tls.max_early_data_size = 0;
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(std::io::Error::other)?;
    let stream_window = u32::try_from(2 + limits.max_body).unwrap_or(u32::MAX);
    let streams = u64::try_from(limits.max_streams).unwrap_or(u64::MAX);
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(
            u32::try_from(limits.max_streams).unwrap_or(u32::MAX),
        ))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        // What a client may have sent and we not yet read: one message per
        // stream, every stream at once, and no more.
        .stream_receive_window(VarInt::from_u32(stream_window))
        .receive_window(VarInt::from_u64(u64::from(stream_window) * streams).unwrap_or(VarInt::MAX))
        .max_idle_timeout(quinn::IdleTimeout::try_from(limits.idle_timeout).ok());
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport));
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// What a DoQ endpoint needs besides its socket.
pub(super) struct Doq {
    pub(super) certs: Arc<Certs>,
    pub(super) limits: TcpLimits,
    pub(super) handshake_timeout: Duration,
    pub(super) max_body: usize,
}

/// One connection's shared state for its stream tasks.
struct Ctx {
    handler: Arc<Handler>,
    peer: SocketAddr,
    id: ClientId,
    rec: Mutex<Recorder>,
    conns: Arc<Connections>,
    conn: Arc<Conn>,
    max_body: usize,
}

/// Accepts DoQ connections until `stop` turns true, then lets the
/// connections finish their queries.
pub(super) async fn serve(
    endpoint: quinn::Endpoint,
    doq: Arc<Doq>,
    handler: Arc<Handler>,
    stats: Arc<WorkerStats>,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Connections::new("quic", doq.limits));
    // The address clients send to (dnstap's response_address): the
    // endpoint's, or for a wildcard bind the one quinn saw the connection
    // arrive on.
    let bound = endpoint.local_addr().ok();
    let mut next_id = 0u64;
    loop {
        let incoming = tokio::select! {
            _ = stop.changed() => break,
            incoming = endpoint.accept() => match incoming {
                Some(i) => i,
                None => break,
            },
        };
        let peer = incoming.remote_address();
        let local = bound.map(|b| match incoming.local_ip() {
            Some(ip) if b.ip().is_unspecified() => SocketAddr::new(ip, b.port()),
            _ => b,
        });
        // Before the handshake: a refused client costs one packet read.
        if handler.refuses_handshake(peer, &stats) {
            incoming.ignore();
            continue;
        }
        next_id += 1;
        let id = next_id;
        let Some(conn) = conns.admit(id, peer) else {
            incoming.refuse();
            continue;
        };
        let Ok(connecting) = incoming.accept() else {
            conns.remove(id);
            continue;
        };
        let (handler, stop, conns, doq) =
            (handler.clone(), stop.clone(), conns.clone(), doq.clone());
        let stats = stats.clone();
        tokio::spawn(async move {
            let shake = tokio::time::timeout(doq.handshake_timeout, connecting);
            let connection = tokio::select! {
                done = shake => done,
                () = conn.close.notified() => {
                    conns.remove(id);
                    return;
                }
            };
            let Ok(Ok(connection)) = connection else {
                tracing::debug!(client = %peer, "quic handshake failed or not done in time");
                conns.remove(id);
                return;
            };
            conns.touch(&conn);
            let sni = connection
                .handshake_data()
                .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|d| d.server_name);
            let ctx = Arc::new(Ctx {
                rec: Mutex::new(handler.observer().task_recorder(stats).with_local(local)),
                handler,
                peer,
                id: doq.certs.client_id(sni.as_deref()),
                conns: conns.clone(),
                conn,
                max_body: doq.max_body,
            });
            serve_connection(connection, ctx, stop, doq.limits.message_timeout).await;
            conns.remove(id);
        });
    }
    // No new connections; those open finish the queries they have.
    endpoint.set_server_config(None);
}

/// Takes a connection's streams until it closes, idles out, is evicted,
/// or the server stops.
async fn serve_connection(
    connection: quinn::Connection,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
    message_timeout: Duration,
) {
    loop {
        let idle_at = ctx.conns.idle_deadline(&ctx.conn);
        tokio::select! {
            stream = connection.accept_bi() => {
                let Ok((send, recv)) = stream else {
                    return;
                };
                let Ok(permit) = ctx.conn.inflight.clone().try_acquire_owned() else {
                    // More streams than the limit QUIC itself enforces: never.
                    connection.close(VarInt::from_u32(DOQ_EXCESSIVE_LOAD), b"too many streams");
                    return;
                };
                ctx.conns.touch(&ctx.conn);
                let (ctx, connection) = (ctx.clone(), connection.clone());
                tokio::spawn(async move {
                    query(&connection, send, recv, &ctx, message_timeout).await;
                    ctx.conns.touch(&ctx.conn);
                    drop(permit);
                });
            }
            () = tokio::time::sleep_until(idle_at) => {
                if !ctx.conns.is_idle(&ctx.conn) {
                    // Queries in flight count as activity: look again later.
                    ctx.conns.touch(&ctx.conn);
                } else if ctx.conns.idle_deadline(&ctx.conn) <= tokio::time::Instant::now() {
                    connection.close(VarInt::from_u32(DOQ_NO_ERROR), b"idle");
                    return;
                }
            }
            () = ctx.conn.close.notified() => {
                connection.close(VarInt::from_u32(DOQ_NO_ERROR), b"");
                return;
            }
            _ = stop.changed() => {
                // Let the queries in flight finish, then close.
                let all = u32::try_from(ctx.conns.limits.max_inflight).unwrap_or(u32::MAX);
                let _ = tokio::time::timeout(
                    ctx.handler.upstream_timeout(),
                    ctx.conn.inflight.acquire_many(all),
                )
                .await;
                connection.close(VarInt::from_u32(DOQ_NO_ERROR), b"shutting down");
                return;
            }
        }
    }
}

/// One stream: one query, one answer.
async fn query(
    connection: &quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: &Ctx,
    message_timeout: Duration,
) {
    let read = tokio::time::timeout(message_timeout, recv.read_to_end(2 + ctx.max_body)).await;
    let Ok(Ok(msg)) = read else {
        let _ = send.reset(VarInt::from_u32(DOQ_REQUEST_CANCELLED));
        return;
    };
    // RFC 9250 4.2: the 2-byte length, then exactly that message, whose
    // ID is 0; anything else is a protocol error that ends the connection.
    let framed = msg
        .get(..2)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
    let Some(query) = msg.get(2..).filter(|q| Some(q.len()) == framed) else {
        connection.close(VarInt::from_u32(DOQ_PROTOCOL_ERROR), b"bad length");
        return;
    };
    if query.len() < wire::HEADER_LEN || query[..2] != [0, 0] {
        connection.close(VarInt::from_u32(DOQ_PROTOCOL_ERROR), b"message id not 0");
        return;
    }
    let mut out = Vec::with_capacity(512);
    let outcome = {
        let mut rec = ctx.rec.lock().unwrap_or_else(PoisonError::into_inner);
        rec.begin();
        let outcome =
            ctx.handler
                .handle_as(query, ctx.peer, Proto::Doq, ctx.id, &mut out, &mut rec);
        rec.flush();
        outcome
    };
    match outcome {
        Outcome::Reply => {}
        Outcome::Drop => {
            let _ = send.reset(VarInt::from_u32(DOQ_REQUEST_CANCELLED));
            return;
        }
        Outcome::Forward(job) => ctx.handler.forward(job, &mut out).await,
    }
    let Ok(len) = u16::try_from(out.len()) else {
        let _ = send.reset(VarInt::from_u32(DOQ_REQUEST_CANCELLED));
        return;
    };
    let mut framed = Vec::with_capacity(2 + out.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&out);
    if send.write_all(&framed).await.is_ok() {
        let _ = send.finish();
    }
}
