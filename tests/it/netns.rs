//! Clients from other addresses than 127.0.0.1, without leaving loopback: a
//! test re-runs itself (this test binary, that one test) inside a fresh
//! network namespace (`unshare -n`), brings its loopback device up and
//! gives it the documentation addresses below. A socket bound to one of
//! them reaches a server on 127.0.0.1 through the namespace's own `lo`, and
//! nothing can leave: the namespace has no other device.
//!
//! Creating a namespace needs root (CAP_SYS_ADMIN). Without it the test
//! fails and says so: it is never counted as passed without running.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

/// Set in the re-run child, inside the namespace.
const IN_NETNS: &str = "EMBARGO_IN_NETNS";

/// A client outside every private network (TEST-NET-2, RFC 5737).
pub(crate) const OUTSIDER: &str = "198.51.100.7";
/// Another client in the same /24.
pub(crate) const NEIGHBOUR: &str = "198.51.100.8";

/// Runs `body` in a fresh network namespace whose loopback also holds
/// [`OUTSIDER`] and [`NEIGHBOUR`]. `test` is the test's full path as
/// `module_path!()` and the function name make it (`it::access::name`).
pub(crate) fn run<F, Fut>(test: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var_os(IN_NETNS).is_some() {
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &format!("{OUTSIDER}/32"), "dev", "lo"],
            vec!["addr", "add", &format!("{NEIGHBOUR}/32"), "dev", "lo"],
        ] {
            let status = Command::new("ip")
                .args(&args)
                .status()
                .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"));
            assert!(status.success(), "ip {args:?} failed in the namespace");
        }
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body());
        return;
    }
    assert!(
        is_root(),
        "did not run: this test needs root to create a network namespace (unshare -n) \
         with outside client addresses on its loopback; run it as root, as .ci/run does"
    );
    // The test filter names the test without the crate (`access::name`).
    let name = test.split_once("::").map_or(test, |(_, rest)| rest);
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("unshare")
        .arg("-n")
        .arg(&exe)
        // --include-ignored: an ignored test (one needing a system tool,
        // run by .ci/run with --ignored) runs in the namespace too.
        .args([
            name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IN_NETNS, "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `unshare` (util-linux): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{name} failed in its network namespace"
    );
    // A filter that matched nothing would pass with 0 tests run.
    assert!(
        stdout.contains("1 passed"),
        "{name} did not run in the namespace:\n{stdout}"
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The address as an `IpAddr`.
pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// Sends `bytes` over UDP from `from` and returns the reply, or None after `wait`.
pub(crate) async fn udp_from(
    from: IpAddr,
    to: SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(SocketAddr::new(from, 0))
        .await
        .expect("bind the client address");
    sock.send_to(bytes, to).await.expect("send");
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => {
            buf.truncate(n);
            Some(buf)
        }
        _ => None,
    }
}

/// Sends `bytes` as one query over a TCP connection from `from` and returns
/// the reply, or None when none came within `wait` or the server closed
/// the connection.
pub(crate) async fn tcp_from(
    from: IpAddr,
    to: SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    let sock = if from.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .expect("socket");
    sock.bind(SocketAddr::new(from, 0))
        .expect("bind the client address");
    let mut stream = sock.connect(to).await.expect("connect");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    // A server that closed the connection at once answers nothing.
    stream.write_all(&framed).await.ok()?;
    let read = async {
        let len = stream.read_u16().await.ok()? as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}
