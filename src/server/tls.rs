//! DNS over TLS (RFC 7858), and what every encrypted listener shares: the
//! certificate, kept current without a restart, and the rustls settings.
//!
//! ```text
//!  TCP accept ─► [access] refuses? close (no handshake) ─► connection cap (tcp.rs Connections)
//!     ─► TLS handshake within tls_handshake_timeout (SNI ─► client ID)
//!     ─► tcp::connection over the TLS stream: length-prefixed queries, pipelined,
//!        answered out of order (RFC 7766), the same Handler::handle as UDP and TCP
//! ```
//!
//! Why not hickory-server's `register_tls_listener`: its `RequestHandler`
//! receives a fully decoded `Request` and must answer with a
//! `MessageResponse` that hickory encodes again, where our handler reads
//! the question by hand and copies a pre-built answer (the decode and
//! encode alone cost several times the whole blocked answer: the manual,
//! "Encrypted transports"); it answers one query of a connection at a
//! time (no out-of-order answers), has no connection cap, checks access
//! only after the handshake and tells the handler neither the SNI (client
//! IDs) nor the transport beyond `Protocol::Tls`. tokio-rustls gives the
//! stream; the RFC 7766 code is TCP's own.
//!
//! The certificate ([`Certs`]) is a rustls `ResolvesServerCert` that hands
//! out whatever [`Certs::reload`] last loaded: a reload (SIGHUP, a change
//! to the certificate or key file, `embargo reload`, `POST /api/reload`)
//! reads both files again; a pair that does not load is logged and the
//! certificate in force stays. Open connections keep the keys they agreed;
//! the next handshake presents the new certificate. The rustls settings
//! live as long as the listener, so session tickets stay valid across a
//! reload: a phone that reconnects resumes (RFC 8446 2.2) instead of a full
//! handshake, also after a renewal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::handler::{Handler, Proto};
use super::tcp::{self, Client, Connections};
use crate::config::{CertError, Certificate, TcpLimits, load_certificate};
use crate::observe::WorkerStats;

/// TLS 1.2 sessions remembered for resumption by session ID (TLS 1.3
/// resumes from stateless tickets, which need no memory here). A few
/// hundred bytes each.
const SESSION_CACHE: usize = 4096;

/// The certificate every encrypted listener presents, swapped on reload.
#[derive(Debug)]
pub struct Certs {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<Certificate>,
}

impl Certs {
    /// Loads `cert` and `key` (see [`load_certificate`]).
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Self, CertError> {
        let current = load_certificate(&cert, &key)?;
        Ok(Self {
            cert,
            key,
            current: ArcSwap::from_pointee(current),
        })
    }

    /// Reads the files again and, if they load, serves the new certificate
    /// from the next handshake on; otherwise keeps the one in force and
    /// returns why.
    pub fn reload(&self) -> Result<(), CertError> {
        let fresh = load_certificate(&self.cert, &self.key)?;
        let old = self.current.load();
        if fresh.key.cert != old.key.cert {
            tracing::info!(certificate = %self.cert.display(), "certificate reloaded");
        }
        self.current.store(Arc::new(fresh));
        Ok(())
    }

    /// The certificate in force.
    pub fn current(&self) -> Arc<Certificate> {
        self.current.load_full()
    }

    /// Reloads after every reload of the rules (`finished` is the reload
    /// loop's progress: SIGHUP, a changed file, `embargo reload`, the API),
    /// until the loop ends.
    pub async fn follow(self: Arc<Self>, mut finished: watch::Receiver<crate::reload::Progress>) {
        let mut seen = finished.borrow().finished;
        while finished.changed().await.is_ok() {
            let done = finished.borrow_and_update().finished;
            if done == seen {
                // A reload started; its end is the next change.
                continue;
            }
            seen = done;
            if let Err(e) = self.reload() {
                tracing::error!(error = %e, "certificate not reloaded, keeping the one in force");
            }
        }
    }

    /// The client ID the SNI name `sni` carries, if any (see
    /// [`Certificate::client_id`]).
    pub(super) fn client_id(&self, sni: Option<&str>) -> crate::groups::ClientId {
        sni.and_then(|s| {
            self.current
                .load()
                .client_id(s)
                .map(crate::groups::ClientId::of)
        })
        .unwrap_or(crate::groups::ClientId::NONE)
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }
}

/// The rustls settings of one kind of listener: `alpn` in order of
/// preference, TLS 1.3 alone for QUIC (RFC 9001 4.2). Session resumption
/// both ways: stateless tickets (rotated every 6 hours by rustls) and, for
/// TLS 1.2 clients without tickets, a bounded session cache.
pub(super) fn server_config(
    certs: Arc<Certs>,
    alpn: &[&[u8]],
    tls13_only: bool,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider);
    let builder = if tls13_only {
        builder.with_protocol_versions(&[&rustls::version::TLS13])?
    } else {
        builder.with_safe_default_protocol_versions()?
    };
    let mut config = builder.with_no_client_auth().with_cert_resolver(certs);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}

/// What a DoT listener needs besides its socket.
pub(super) struct Dot {
    pub(super) acceptor: TlsAcceptor,
    pub(super) certs: Arc<Certs>,
    /// TCP's bounds with the encrypted listeners' numbers.
    pub(super) limits: TcpLimits,
    pub(super) handshake_timeout: Duration,
}

/// Accepts DoT connections until `stop` turns true.
pub(super) async fn serve(
    listener: TcpListener,
    dot: Arc<Dot>,
    handler: Arc<Handler>,
    stats: Arc<WorkerStats>,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Connections::new("tls", dot.limits));
    let bound = listener.local_addr().ok();
    let mut next_id = 0u64;
    let failed = super::LogGate::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Before a byte of TLS: a refused client costs no handshake.
                    if handler.refuses_handshake(peer, &stats) {
                        continue;
                    }
                    next_id += 1;
                    let id = next_id;
                    let Some(conn) = conns.admit(id, peer) else {
                        continue;
                    };
                    let (handler, stop, conns, dot) =
                        (handler.clone(), stop.clone(), conns.clone(), dot.clone());
                    let stats = stats.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let local = tcp::local_addr(bound, &stream, &handler);
                        // Evicted while still shaking hands: closed as any other.
                        let shake = tokio::time::timeout(dot.handshake_timeout, dot.acceptor.accept(stream));
                        let tls = tokio::select! {
                            done = shake => done,
                            () = conn.close.notified() => {
                                conns.remove(id);
                                return;
                            }
                        };
                        let tls = match tls {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(client = %peer, error = %e, "tls handshake failed");
                                conns.remove(id);
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(client = %peer, "tls handshake not done in time: closing");
                                conns.remove(id);
                                return;
                            }
                        };
                        conns.touch(&conn);
                        let client_id = dot.certs.client_id(tls.get_ref().1.server_name());
                        let (rd, wr) = tokio::io::split(tls);
                        let client = Client { addr: peer, local, proto: Proto::Dot, id: client_id };
                        tcp::connection(rd, wr, client, handler, stats, &conns, conn, stop).await;
                        conns.remove(id);
                    });
                }
                Err(e) => {
                    if let Some(more) = failed.pass(crate::observe::now_us()) {
                        tracing::warn!(error = %e, suppressed = more, "tls accept failed (one line per 10 s; suppressed: failures since the last)");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}
