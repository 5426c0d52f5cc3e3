//! A server listening on `0.0.0.0` and `[::]` answers each query from the
//! address it was sent to (IP_PKTINFO / IPV6_RECVPKTINFO), or a client
//! that asked one of the host's addresses would hear from another and drop
//! the answer.
//!
//! The test needs a host with two addresses: it runs itself again inside a
//! fresh network namespace (`unshare -n`, which needs root), where it puts
//! 192.0.2.1, 192.0.2.2, 2001:db8::1 and 2001:db8::2 on the namespace's own
//! loopback. Nothing leaves the namespace.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, Upstream, config, query};

/// Set in the environment of the run inside the namespace.
const INNER: &str = "EMBARGO_TEST_NETNS_INNER";

/// Runs `test` (this binary's test of that name) again in a new network
/// namespace, and fails with its output if it fails there.
fn run_in_namespace(test: &str) {
    let exe = std::env::current_exe().expect("test binary");
    let probe = Command::new("unshare").args(["-n", "true"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{test} did not run: it needs root (CAP_SYS_ADMIN) to create a network namespace with `unshare -n`; \
             run the tests as root (as .ci/run does): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("{test} did not run: it needs `unshare` (util-linux): {e}"),
    }
    let out = Command::new("unshare")
        .arg("-n")
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .expect("unshare runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{test} in the namespace:\n{text}");
    assert!(text.contains("1 passed"), "{test} did not run:\n{text}");
}

fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("ip (iproute2) runs");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `name`/`qtype` from `from` to `to` and returns the answer, which
/// must come from `to`: on a socket `connected` to `to` (the kernel then
/// delivers only datagrams from there), or else checked by `recv_from`.
fn ask(from: IpAddr, to: SocketAddr, name: &str, qtype: RecordType, connected: bool) -> Message {
    let msg = query(name, qtype, true);
    let bytes = msg.to_vec().expect("encode");
    let mut buf = [0u8; 4096];
    let sock = UdpSocket::bind((from, 0)).expect("bind client");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let n = if connected {
        sock.connect(to).expect("connect");
        sock.send(&bytes).expect("send");
        sock.recv(&mut buf)
            .unwrap_or_else(|e| panic!("{name} {qtype}: no answer from {to}: {e}"))
    } else {
        sock.send_to(&bytes, to).expect("send");
        let (n, source) = sock.recv_from(&mut buf).expect("an answer");
        assert_eq!(
            source, to,
            "{name} {qtype}: answered from the address asked"
        );
        n
    };
    let answer = Message::from_vec(&buf[..n]).expect("decodes");
    assert_eq!(answer.metadata.id, msg.metadata.id);
    answer
}

#[test]
fn answers_leave_from_the_address_each_query_was_sent_to() {
    if std::env::var_os(INNER).is_none() {
        run_in_namespace("wildcard::answers_leave_from_the_address_each_query_was_sent_to");
        return;
    }
    ip("link set lo up");
    ip("addr add 192.0.2.1/32 dev lo");
    ip("addr add 192.0.2.2/32 dev lo");
    ip("-6 addr add 2001:db8::1/128 dev lo nodad");
    ip("-6 addr add 2001:db8::2/128 dev lo nodad");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let up = Upstream::start().await;
        // The documentation addresses the namespace's loopback holds are
        // not private networks: [access] must admit them.
        let cfg = format!(
            "{}\n[access]\nallow = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n",
            config(up.addr, "").replace(
                r#"listen = ["127.0.0.1:0"]"#,
                r#"listen = ["0.0.0.0:0", "[::]:0"]"#,
            )
        );
        let e = Embargo::start(&cfg, &[]).await;
        assert_eq!(e.addrs.len(), 2);
        let cases = [
            ("192.0.2.1", "192.0.2.2", RecordType::A, e.addrs[0].port()),
            (
                "2001:db8::1",
                "2001:db8::2",
                RecordType::AAAA,
                e.addrs[1].port(),
            ),
        ];
        for (from, to, qtype, port) in cases {
            let from: IpAddr = from.parse().expect("ip");
            let to = SocketAddr::new(to.parse().expect("ip"), port);
            let ask = move |name: &'static str, connected: bool| {
                tokio::task::spawn_blocking(move || ask(from, to, name, qtype, connected))
            };
            for connected in [true, false] {
                // Blocked: answered by the worker from its batch.
                let r = ask("www.seized.example.", connected).await.expect("task");
                assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
            }
            // Forwarded (answered by a runtime task), then cached (from the
            // batch again), each on both kinds of socket.
            for (name, upstream_name) in [
                ("www.up.test.", "www.up.test"),
                ("mail.up.test.", "mail.up.test"),
            ] {
                let connected = name.starts_with("www");
                let before = up.count(upstream_name);
                let r = ask(name, connected).await.expect("task");
                assert_eq!(r.metadata.response_code, ResponseCode::NoError);
                assert_eq!(
                    up.count(upstream_name),
                    before + 1,
                    "{name} {qtype} went upstream"
                );
                let r = ask(name, !connected).await.expect("task");
                assert_eq!(r.metadata.response_code, ResponseCode::NoError);
                assert_eq!(
                    up.count(upstream_name),
                    before + 1,
                    "{name} {qtype} from the cache"
                );
            }
        }
        e.stop().await;
    });
}
