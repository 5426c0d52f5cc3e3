//! Plain DNS over TCP: one connection per query (RFC 7766 framing). Used
//! for `tcp://` servers and to retry an answer that came truncated over UDP;
//! both are rare enough that a connection pool would not pay for itself.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::{Error, answers};

/// Sends `query` with a fresh random ID and reads one answer to it.
pub(super) async fn exchange(
    server: SocketAddr,
    query: &mut [u8],
    deadline: Instant,
    label: &Arc<str>,
) -> Result<Vec<u8>, Error> {
    crate::wire::put_u16(query, 0, fastrand::u16(..));
    let query = &*query;
    let io = |source| Error::io(label, source);
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let len = u16::try_from(query.len()).map_err(|_| Error::Unparsable)?;
        let mut msg = Vec::with_capacity(query.len() + 2);
        msg.extend_from_slice(&len.to_be_bytes());
        msg.extend_from_slice(query);
        stream.write_all(&msg).await.map_err(io)?;
        let len = usize::from(stream.read_u16().await.map_err(io)?);
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.map_err(io)?;
        if answers(query, &buf) {
            Ok(buf)
        } else {
            Err(Error::Malformed {
                server: label.clone(),
            })
        }
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| Error::Timeout {
            server: label.clone(),
        })?
}
