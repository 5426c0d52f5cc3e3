//! `[server] workers = N`: N UDP sockets on one port (SO_REUSEPORT), each
//! with its own thread. Queries from many source ports are spread over
//! them, every one is answered, and a reload reaches every worker (they
//! share the rules through one swap).

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, Upstream, config, ede, query, udp, with_server};

/// Asks `name` from `n` fresh sockets (fresh source ports); every answer
/// must be NXDOMAIN, with an EDE when `listed`.
async fn ask_from_many_ports(e: &Embargo, name: &str, n: usize, listed: bool) {
    for _ in 0..n {
        let r = udp(e.addr, &query(name, RecordType::A, true)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert_eq!(ede(&r).is_some(), listed, "{name}: blocked by a list");
    }
}

/// Answers per worker since `before`, once they add up to `n` (a worker
/// counts a batch just after sending it, so the last count may lag the
/// client's receipt by a moment).
async fn spread_since(e: &Embargo, before: &[u64], n: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let spread: Vec<u64> = e
            .answered()
            .iter()
            .zip(before)
            .map(|(a, b)| a - b)
            .collect();
        if spread.iter().sum::<u64>() >= n || Instant::now() > deadline {
            return spread;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_both_answer_and_both_see_a_reload() {
    let up = Upstream::start().await;
    let e = Embargo::start(&with_server(&config(up.addr, ""), "workers = 2"), &[]).await;
    assert_eq!(e.workers.len(), 2, "two sockets on the one address");
    // The worker threads start as the server starts serving: wait for them.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .expect("threads")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|c| c.trim().to_string())
            .collect();
        let missing: Vec<&str> = ["embargo-udp-0", "embargo-udp-1"]
            .into_iter()
            .filter(|want| !names.iter().any(|n| n == want))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "threads {missing:?} not in {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let before = e.answered();
    ask_from_many_ports(&e, "www.seized.example.", 64, true).await;
    let spread = spread_since(&e, &before, 64).await;
    assert_eq!(
        spread.iter().sum::<u64>(),
        64,
        "every query answered once: {spread:?}"
    );
    // 64 source ports all hashed to one socket: 2^-63.
    assert!(
        spread.iter().all(|&n| n > 0),
        "both workers answered: {spread:?}"
    );

    // Not listed yet: the upstream says NXDOMAIN, without our EDE.
    ask_from_many_ports(&e, "www.fresh.example.", 1, false).await;
    std::fs::write(
        e.dir().join("seized.txt"),
        format!("{}fresh.example\n", crate::harness::SEIZED_LIST),
    )
    .expect("rewrite the list");
    e.until_reloaded("www.fresh.example blocked", async || {
        let r = udp(e.addr, &query("www.fresh.example.", RecordType::A, true)).await;
        ede(&r).is_some()
    })
    .await;
    // Now every query, whichever worker it lands on, sees the new list.
    let before = e.answered();
    ask_from_many_ports(&e, "x.fresh.example.", 64, true).await;
    let spread = spread_since(&e, &before, 64).await;
    assert!(
        spread.iter().all(|&n| n > 0),
        "both workers answered: {spread:?}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_worker_per_address_when_asked_and_forwards_are_counted() {
    let up = Upstream::start().await;
    let e = Embargo::start(&with_server(&config(up.addr, ""), "workers = 1"), &[]).await;
    assert_eq!(e.workers.len(), 1);
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, false)).await;
    assert_eq!(r.answers.len(), 1);
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, false)).await;
    assert_eq!(r.answers.len(), 1);
    assert_eq!(
        spread_since(&e, &[0], 1).await,
        [1],
        "the second came from the cache"
    );
    let forwarded = e.workers[0]
        .forwarded
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(forwarded, 1, "the first went upstream");
    e.stop().await;
}
