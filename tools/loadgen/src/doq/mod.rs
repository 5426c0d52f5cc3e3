//! The DoQ mode (`-m doq`, RFC 9250): dnsperf has none, so this is how
//! embargo's DoQ listener gets a throughput figure (benches/encrypted.sh).
//!
//! ```text
//! -c connections, each from its own endpoint on the next 127.a.b.c
//!   (TLS 1.3, ALPN doq, --sni; --ca or --insecure: trust), all
//!   handshaken before the clock starts
//!     -> on each, up to -q / -c queries in flight (at most -Q a second),
//!        one bidirectional stream per query: length, message (ID 0), FIN
//!        -> read to FIN: length, answer (frame) -> rcode, TC, latency
//!        -> no answer within -t seconds, or the stream failed: lost
//!     -> sending stops after -l seconds; the run ends when nothing is
//!        in flight any more
//!   -> the UDP mode's summary, plus the connections opened
//! ```
//!
//! One thread (a current-thread tokio runtime) for everything, as blast is
//! one thread: the scripts pin the load generator to one core. A
//! connection the server closes mid-run is opened again once; if that
//! fails, the run goes on with the others.

mod frame;
mod trust;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

pub(crate) use trust::Trust;

use crate::cli::Opts;
use crate::report::{Connections, Summary};

/// What `-m doq` adds to the common options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Doq {
    pub(crate) trust: Trust,
    /// The name the handshake asks for and the certificate is checked
    /// against (an IP address is checked against the certificate's IPs).
    pub(crate) sni: String,
    /// At most this many queries a second (none: as fast as answers come).
    pub(crate) rate: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Trust(#[from] trust::Error),
    #[error("a QUIC endpoint on {addr}: {source}")]
    Endpoint {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("DoQ to {server} as {sni:?}: {source}")]
    Connect {
        server: SocketAddr,
        sni: String,
        source: quinn::ConnectError,
    },
    #[error("DoQ handshake with {server} as {sni:?}: {source}")]
    Handshake {
        server: SocketAddr,
        sni: String,
        source: quinn::ConnectionError,
    },
    #[error("DoQ handshake with {server} as {sni:?}: not done in {secs} s")]
    HandshakeTimeout {
        server: SocketAddr,
        sni: String,
        secs: f64,
    },
}

/// What became of one query.
enum Outcome {
    Answer {
        rcode: u8,
        truncated: bool,
        us: u64,
    },
    /// A stream that ended with something that is not a DoQ answer.
    Unexpected,
    /// No answer in time, or the stream or its connection failed.
    Lost,
}

/// One connection and the queries it has in flight.
struct Conn {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    inflight: usize,
    /// False once it closed and could not be opened again.
    alive: bool,
}

/// Where and how to connect.
struct Target {
    server: SocketAddr,
    sni: String,
    /// How long a handshake may take.
    wait: Duration,
}

impl Target {
    async fn connect(&self, endpoint: &quinn::Endpoint) -> Result<quinn::Connection, Error> {
        let connecting =
            endpoint
                .connect(self.server, &self.sni)
                .map_err(|source| Error::Connect {
                    server: self.server,
                    sni: self.sni.clone(),
                    source,
                })?;
        match tokio::time::timeout(self.wait, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(Error::Handshake {
                server: self.server,
                sni: self.sni.clone(),
                source,
            }),
            Err(_) => Err(Error::HandshakeTimeout {
                server: self.server,
                sni: self.sni.clone(),
                secs: self.wait.as_secs_f64(),
            }),
        }
    }
}

/// Runs the load; `queries` (wire format) are sent in turn, cycling.
pub(crate) fn run(o: Opts, doq: &Doq, queries: &[Vec<u8>]) -> Result<Summary, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    rt.block_on(load(o, doq, queries))
}

async fn load(mut o: Opts, doq: &Doq, queries: &[Vec<u8>]) -> Result<Summary, Error> {
    let client = trust::client_config(&doq.trust)?;
    let target = Target {
        server: SocketAddr::V4(o.server),
        sni: doq.sni.clone(),
        wait: Duration::from_secs_f64(o.timeout.max(5.0)),
    };
    let mut conns = Vec::with_capacity(o.socks);
    for _ in 0..o.socks {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o.sources.take())), 0);
        let mut endpoint =
            quinn::Endpoint::client(addr).map_err(|source| Error::Endpoint { addr, source })?;
        endpoint.set_default_client_config(client.clone());
        let conn = target.connect(&endpoint).await?;
        conns.push(Conn {
            endpoint,
            conn,
            inflight: 0,
            alive: true,
        });
    }
    let framed: Arc<[Vec<u8>]> = queries.iter().map(|q| frame::frame(q)).collect();
    let per_conn = o.outstanding.div_ceil(conns.len()).max(1);
    let timeout = Duration::from_secs_f64(o.timeout);

    let mut s = Summary::new(o.secs, o.sources.first());
    let mut reopened = 0u64;
    let mut tasks: JoinSet<(usize, Outcome)> = JoinSet::new();
    let mut next = 0usize;
    let start = Instant::now();
    let stop_at = start + Duration::from_secs_f64(o.secs);
    loop {
        let now = Instant::now();
        let sending = now < stop_at;
        // When the next paced query is due (the run's end, unpaced).
        let mut wake = stop_at;
        if sending {
            let mut allowed = match doq.rate {
                Some(r) => {
                    let due = ((now - start).as_secs_f64() * r) as u64 + 1;
                    wake = wake.min(start + Duration::from_secs_f64((due as f64) / r));
                    due.saturating_sub(s.sent)
                }
                None => u64::MAX,
            };
            for (i, c) in conns.iter_mut().enumerate() {
                if c.alive && c.conn.close_reason().is_some() {
                    match target.connect(&c.endpoint).await {
                        Ok(conn) => {
                            c.conn = conn;
                            reopened += 1;
                        }
                        Err(_) => c.alive = false,
                    }
                }
                while c.alive && c.inflight < per_conn && allowed > 0 {
                    tasks.spawn(ask(c.conn.clone(), framed.clone(), next, i, timeout));
                    next = if next + 1 == framed.len() {
                        0
                    } else {
                        next + 1
                    };
                    c.inflight += 1;
                    s.sent += 1;
                    allowed -= 1;
                }
            }
        }
        if tasks.is_empty() && (!sending || conns.iter().all(|c| !c.alive)) {
            break;
        }
        tokio::select! {
            done = tasks.join_next(), if !tasks.is_empty() => match done {
                Some(Ok((i, outcome))) => {
                    conns[i].inflight -= 1;
                    record(&mut s, outcome);
                }
                // A query task panicked: a bug here, not the server's.
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => {}
            },
            () = tokio::time::sleep_until(wake.into()), if sending => {}
            else => break,
        }
    }
    // Closed with DOQ_NO_ERROR, and the close sent before the runtime
    // goes: the server frees them now, not after its idle timeout (the
    // next run of a script may need its connection slots).
    for c in &conns {
        c.conn.close(0u32.into(), b"done");
    }
    for c in &conns {
        let _ = tokio::time::timeout(Duration::from_secs(1), c.endpoint.wait_idle()).await;
    }
    s.sources_used = o.sources.used();
    s.connections = Some(Connections {
        opened: conns.len(),
        reopened,
    });
    Ok(s)
}

fn record(s: &mut Summary, outcome: Outcome) {
    match outcome {
        Outcome::Answer {
            rcode,
            truncated,
            us,
        } => {
            s.done += 1;
            s.truncated += u64::from(truncated);
            s.rcodes[usize::from(rcode & 0x0f)] += 1;
            s.latency.add(us);
        }
        Outcome::Unexpected => s.unexpected += 1,
        Outcome::Lost => s.lost += 1,
    }
}

/// One query on a stream of its own: the `i`th of `queries`, on `conn`
/// (the `owner`th connection, handed back with the outcome).
async fn ask(
    conn: quinn::Connection,
    queries: Arc<[Vec<u8>]>,
    i: usize,
    owner: usize,
    timeout: Duration,
) -> (usize, Outcome) {
    let sent = Instant::now();
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(&queries[i]).await.ok()?;
        send.finish().ok()?;
        recv.read_to_end(2 + usize::from(u16::MAX)).await.ok()
    };
    let outcome = match tokio::time::timeout(timeout, exchange).await {
        Ok(Some(bytes)) => match frame::answer(&bytes) {
            Ok(m) => Outcome::Answer {
                rcode: m[3],
                truncated: m[2] & 0x02 != 0,
                us: sent.elapsed().as_micros() as u64,
            },
            Err(_) => Outcome::Unexpected,
        },
        Ok(None) | Err(_) => Outcome::Lost,
    };
    (owner, outcome)
}
