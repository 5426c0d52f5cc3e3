//! DNS over HTTPS (RFC 8484), over HTTP/2 and HTTP/1.1.
//!
//! ```text
//!  TCP accept ─► [access] refuses? close (no handshake) ─► connection cap ─► TLS handshake
//!     (ALPN h2 or http/1.1) ─► hyper ─► a request each:
//!        GET  /dns-query?dns=<base64url>                         ┐
//!        POST /dns-query, Content-Type: application/dns-message  ┴─► Handler::handle_as ─► 200,
//!        (/dns-query/<client id> names the client)                   Cache-Control: max-age=<least TTL>
//!     anything else: 400 (no or bad message), 413 (too big), 415 (wrong type), 404, 405
//! ```
//!
//! Why hyper and not hickory-server's `register_https_listener`: that
//! listener speaks HTTP/2 only (Android's and curl's clients may use
//! HTTP/1.1), refuses GET (what browsers send first, for caching), resets
//! the stream on a bad request instead of answering 400 or 415, sets no
//! Cache-Control, and tells the handler neither the path (client IDs) nor
//! anything but a decoded `Request` it must answer with a `MessageResponse`
//! that hickory encodes again (the manual, "Encrypted transports"). hyper is in
//! the tree already (the HTTP API), and serves each ALPN with its own
//! connection type.
//!
//! Bounds: the connection cap and eviction of `tcp.rs`'s [`Connections`];
//! the handshake within `tls_handshake_timeout`, and HTTP/1.1 headers
//! within it too; HTTP/2 streams at once per connection
//! (`tls_max_streams`, SETTINGS_MAX_CONCURRENT_STREAMS); a body of at most
//! `https_max_body` bytes; a connection with nothing in flight for
//! `tls_idle_timeout` is closed (gracefully: GOAWAY).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::handler::{Handler, Outcome, Proto};
use super::tcp::{Conn, Connections};
use super::tls::Certs;
use crate::config::{TcpLimits, is_client_id};
use crate::groups::ClientId;
use crate::observe::{Recorder, WorkerStats};
use crate::wire;

/// RFC 8484's media type.
const DNS_MESSAGE: &str = "application/dns-message";
/// The largest header block a client may send (HTTP/2's
/// SETTINGS_MAX_HEADER_LIST_SIZE; HTTP/1.1's read buffer).
const MAX_HEADERS: usize = 16 * 1024;
/// The largest declared body over `https_max_body` that is still read
/// (and dropped) before its 413, so that the client reads the answer
/// rather than a reset; larger ones are refused at once.
const DRAIN_MAX: usize = 256 * 1024;

/// What a DoH listener needs besides its socket.
pub(super) struct Doh {
    pub(super) acceptor: TlsAcceptor,
    pub(super) certs: Arc<Certs>,
    pub(super) limits: TcpLimits,
    pub(super) handshake_timeout: Duration,
    /// Where queries are answered, without a trailing slash.
    pub(super) path: String,
    pub(super) max_body: usize,
}

/// One connection's share of the work: its client, and the recorder its
/// requests take turns with (each holds it only while the handler decides,
/// which never waits).
struct Ctx {
    doh: Arc<Doh>,
    handler: Arc<Handler>,
    peer: SocketAddr,
    /// The ID the SNI named, if any; a path's ID wins.
    sni_id: ClientId,
    rec: Mutex<Recorder>,
    conns: Arc<Connections>,
    conn: Arc<Conn>,
    /// The last path ID this connection named, and its number: a client
    /// names the same one on every request, and looking it up in the
    /// process-wide table takes that table's lock.
    path_id: Mutex<Option<(Box<str>, ClientId)>>,
}

impl Ctx {
    fn path_id(&self, name: &str) -> ClientId {
        let mut last = self.path_id.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((n, id)) = &*last
            && n.eq_ignore_ascii_case(name)
        {
            return *id;
        }
        let id = ClientId::of(name);
        *last = Some((name.into(), id));
        id
    }
}

/// Accepts DoH connections until `stop` turns true.
pub(super) async fn serve(
    listener: TcpListener,
    doh: Arc<Doh>,
    handler: Arc<Handler>,
    stats: Arc<WorkerStats>,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Connections::new("https", doh.limits));
    let bound = listener.local_addr().ok();
    let mut next_id = 0u64;
    let failed = super::LogGate::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if handler.refuses_handshake(peer, &stats) {
                        continue;
                    }
                    next_id += 1;
                    let id = next_id;
                    let Some(conn) = conns.admit(id, peer) else {
                        continue;
                    };
                    let (handler, stop, conns, doh) =
                        (handler.clone(), stop.clone(), conns.clone(), doh.clone());
                    let stats = stats.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let local = super::tcp::local_addr(bound, &stream, &handler);
                        let shake = tokio::time::timeout(doh.handshake_timeout, doh.acceptor.accept(stream));
                        let tls = tokio::select! {
                            done = shake => done,
                            () = conn.close.notified() => {
                                conns.remove(id);
                                return;
                            }
                        };
                        let Ok(Ok(tls)) = tls else {
                            tracing::debug!(client = %peer, "https handshake failed or not done in time: closing");
                            conns.remove(id);
                            return;
                        };
                        conns.touch(&conn);
                        let (_, session) = tls.get_ref();
                        let h2 = session.alpn_protocol() == Some(b"h2");
                        let sni_id = doh.certs.client_id(session.server_name());
                        let ctx = Arc::new(Ctx {
                            rec: Mutex::new(handler.observer().task_recorder(stats).with_local(local)),
                            doh,
                            handler,
                            peer,
                            sni_id,
                            conns: conns.clone(),
                            conn,
                            path_id: Mutex::new(None),
                        });
                        connection(TokioIo::new(tls), h2, ctx, stop).await;
                        conns.remove(id);
                    });
                }
                Err(e) => {
                    if let Some(more) = failed.pass(crate::observe::now_us()) {
                        tracing::warn!(error = %e, suppressed = more, "https accept failed (one line per 10 s; suppressed: failures since the last)");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves one connection until the client closes it, it idles out, it is
/// evicted, or the server stops (then gracefully: requests in flight are
/// answered).
async fn connection<I>(io: I, h2: bool, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = {
        let ctx = ctx.clone();
        hyper::service::service_fn(move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(respond(req, &ctx).await) }
        })
    };
    // The two connection types share no trait for graceful shutdown: the
    // same loop for each.
    macro_rules! drive {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            let mut closing = false;
            loop {
                let idle_at = ctx.conns.idle_deadline(&ctx.conn);
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = stop.changed(), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    () = ctx.conn.close.notified(), if !closing => break,
                    () = tokio::time::sleep_until(idle_at), if !closing => {
                        if !ctx.conns.is_idle(&ctx.conn) {
                            // Requests in flight count as activity: look again later.
                            ctx.conns.touch(&ctx.conn);
                        } else if ctx.conns.idle_deadline(&ctx.conn) <= tokio::time::Instant::now() {
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        }};
    }
    let limits = ctx.doh.limits;
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(u32::try_from(limits.max_inflight).unwrap_or(u32::MAX))
            .max_header_list_size(MAX_HEADERS as u32)
            // Request bodies the client may send ahead of our reading them:
            // one message a stream, 1 MiB a connection.
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(1 << 20)
            .keep_alive_interval(None);
        drive!(b.serve_connection(io, service));
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(ctx.doh.handshake_timeout)
            .max_buf_size(MAX_HEADERS.max(8192) + ctx.doh.max_body)
            .keep_alive(true);
        drive!(b.serve_connection(io, service));
    }
}

type Reply = Response<Full<Bytes>>;

/// A response with no DNS message: `status`, and why in plain text.
fn refuse(status: StatusCode, why: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(why.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// One DoH request, answered. Holds one of the connection's in-flight
/// slots while it is (so the connection is not idle).
async fn respond(req: Request<Incoming>, ctx: &Ctx) -> Reply {
    let Ok(permit) = ctx.conn.inflight.clone().try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests at once\n",
        );
    };
    ctx.conns.touch(&ctx.conn);
    let reply = answer(req, ctx).await;
    ctx.conns.touch(&ctx.conn);
    drop(permit);
    reply
}

/// The client ID a request's path names: `Ok(None)` for the DoH path
/// itself, `Ok(Some(id))` for `path/<id>`, `Err` for any other path.
fn path_id<'a>(path: &'a str, doh_path: &str) -> Result<Option<&'a str>, ()> {
    let rest = path.strip_prefix(doh_path).ok_or(())?;
    match rest.strip_prefix('/') {
        None if rest.is_empty() => Ok(None),
        Some("") => Ok(None),
        Some(id) if is_client_id(id) => Ok(Some(id)),
        _ => Err(()),
    }
}

/// The message a GET carries in its `dns` parameter (base64url, RFC 8484
/// 4.1; padding tolerated).
fn get_message(query: Option<&str>) -> Option<Vec<u8>> {
    let value = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("dns="))?
        .trim_end_matches('=');
    data_encoding::BASE64URL_NOPAD.decode(value.as_bytes()).ok()
}

async fn answer(req: Request<Incoming>, ctx: &Ctx) -> Reply {
    let id = match path_id(req.uri().path(), &ctx.doh.path) {
        Ok(Some(name)) => ctx.path_id(name),
        Ok(None) => ctx.sni_id,
        Err(()) => return refuse(StatusCode::NOT_FOUND, "not a DNS endpoint\n"),
    };
    let max = ctx.doh.max_body;
    let query = match *req.method() {
        Method::GET => match get_message(req.uri().query()) {
            Some(q) => q,
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "GET needs ?dns= and a base64url DNS message\n",
                );
            }
        },
        Method::POST => {
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or("").trim());
            if !content_type.is_some_and(|t| t.eq_ignore_ascii_case(DNS_MESSAGE)) {
                return refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "POST needs Content-Type: application/dns-message\n",
                );
            }
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            if let Some(n) = declared.filter(|&n| n > max) {
                // A body a little past the limit is read and dropped first:
                // answered before it is read, an HTTP/1.1 connection closes
                // under a client still writing it, which sees a reset, not
                // its 413. Past DRAIN_MAX the connection is not worth it.
                if n <= DRAIN_MAX {
                    let mut body = req.into_body();
                    while let Some(Ok(_)) = body.frame().await {}
                }
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, "message too large\n");
            }
            match Limited::new(req.into_body(), max).collect().await {
                Ok(body) => body.to_bytes().to_vec(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return refuse(StatusCode::PAYLOAD_TOO_LARGE, "message too large\n");
                }
                Err(_) => return refuse(StatusCode::BAD_REQUEST, "body not read\n"),
            }
        }
        _ => {
            let mut r = refuse(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return r;
        }
    };
    if query.len() < wire::HEADER_LEN || query.len() > max {
        return refuse(StatusCode::BAD_REQUEST, "not a DNS message\n");
    }
    let mut out = Vec::with_capacity(512);
    let outcome = {
        let mut rec = ctx.rec.lock().unwrap_or_else(PoisonError::into_inner);
        rec.begin();
        let outcome = ctx
            .handler
            .handle_as(&query, ctx.peer, Proto::Doh, id, &mut out, &mut rec);
        rec.flush();
        outcome
    };
    match outcome {
        Outcome::Reply => {}
        Outcome::Drop => return refuse(StatusCode::BAD_REQUEST, "not a DNS query\n"),
        Outcome::Forward(job) => {
            ctx.handler.forward(job, &mut out).await;
            if out.is_empty() {
                return refuse(StatusCode::BAD_GATEWAY, "no answer\n");
            }
        }
    }
    let max_age = min_ttl(&out).unwrap_or(0);
    let mut r = Response::new(Full::new(Bytes::from(out)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

/// The smallest TTL of the records in an answer (the OPT record's field
/// is no TTL), which is how long an HTTP cache may keep it (RFC 8484
/// 5.1); `None` without records, or when it cannot be walked.
pub(super) fn min_ttl(msg: &[u8]) -> Option<u32> {
    let hdr = wire::Header::parse(msg)?;
    let mut at = hdr.records_start(msg)?;
    let records = u32::from(hdr.ancount) + u32::from(hdr.nscount) + u32::from(hdr.arcount);
    let mut least: Option<u32> = None;
    for _ in 0..records {
        let (rr, next) = wire::read_rr(msg, at)?;
        if rr.rtype != wire::TYPE_OPT {
            least = Some(least.map_or(rr.ttl, |l| l.min(rr.ttl)));
        }
        at = next;
    }
    least
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_names_the_client_or_nothing() {
        assert_eq!(path_id("/dns-query", "/dns-query"), Ok(None));
        assert_eq!(path_id("/dns-query/", "/dns-query"), Ok(None));
        assert_eq!(
            path_id("/dns-query/laptop-7", "/dns-query"),
            Ok(Some("laptop-7"))
        );
        assert_eq!(path_id("/dns-query/a/b", "/dns-query"), Err(()));
        assert_eq!(path_id("/dns-queryx", "/dns-query"), Err(()));
        assert_eq!(path_id("/other", "/dns-query"), Err(()));
        assert_eq!(path_id("/dns-query/bad_id", "/dns-query"), Err(()));
    }

    #[test]
    fn get_takes_base64url_with_or_without_padding() {
        // RFC 8484 4.1.1's example: www.example.com A, ID 0.
        let q = "AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB";
        let m = get_message(Some(&format!("ct=x&dns={q}"))).expect("decodes");
        assert_eq!(m.len(), 33);
        assert_eq!(&m[..4], &[0, 0, 1, 0]);
        assert_eq!(get_message(Some(&format!("dns={q}=="))), Some(m));
        assert_eq!(get_message(Some("dns=***")), None);
        assert_eq!(get_message(Some("other=1")), None);
        assert_eq!(get_message(None), None);
    }

    #[test]
    fn the_least_ttl_skips_the_opt_record() {
        let mut a = vec![0, 7, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        a.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
        for ttl in [300u32, 60] {
            a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            a.extend_from_slice(&ttl.to_be_bytes());
            a.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        }
        wire::push_opt(&mut a, 0, false, &[]);
        a[11] = 1;
        assert_eq!(min_ttl(&a), Some(60));
        assert_eq!(min_ttl(&a[..30]), None);
    }
}
