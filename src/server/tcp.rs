//! DNS over TCP (RFC 7766): length-prefixed messages, several in flight on
//! one connection, answered in whatever order they complete.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::handler::{Handler, Outcome, Proto};

/// A connection with no complete query for this long is closed (RFC 7766 6.2.3).
const IDLE: Duration = Duration::from_secs(10);
/// Answers queued per connection before reading pauses.
const QUEUE: usize = 64;
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;

/// Accepts connections until `stop` turns true.
pub(super) async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if handler.drops_connection(peer) {
                        continue;
                    }
                    let (handler, stop) = (handler.clone(), stop.clone());
                    tokio::spawn(async move {
                        connection(stream, peer, handler, stop).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let writer = tokio::spawn(async move {
        let mut wr = BufWriter::new(wr);
        while let Some(msg) = rx.recv().await {
            let Ok(len) = u16::try_from(msg.len()) else {
                continue;
            };
            if wr.write_all(&len.to_be_bytes()).await.is_err() || wr.write_all(&msg).await.is_err()
            {
                return;
            }
            // Flush when nothing else is ready, so pipelined answers share a segment.
            if rx.is_empty() && wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.into_inner().shutdown().await;
    });

    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    loop {
        let len = tokio::select! {
            _ = stop.changed() => break,
            r = tokio::time::timeout(IDLE, rd.read_u16()) => match r {
                Ok(Ok(len)) => usize::from(len),
                _ => break,
            },
        };
        buf.resize(len, 0);
        match tokio::time::timeout(IDLE, rd.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        match handler.handle(&buf, peer, Proto::Tcp, &mut out) {
            Outcome::Reply => {
                if tx.send(out.clone()).await.is_err() {
                    break;
                }
            }
            Outcome::Drop => {}
            Outcome::Forward(job) => {
                let handler = handler.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    handler.forward(job, &mut out).await;
                    let _ = tx.send(out).await;
                });
            }
        }
    }
    // The writer ends once every forward still in flight has sent its answer.
    drop(tx);
    let _ = writer.await;
}
