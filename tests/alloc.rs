//! The hot path allocates nothing: a counting global allocator watches a
//! matcher lookup (hit, miss, deep) and a blocked query through the handler.
//! Its own test binary, so no other test's allocations are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use embargo::matcher::{DomainSetBuilder, Lookup, NameKey, PolicyId};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the thread being measured: the test harness's other threads
    /// (printing another test's result, say) must not be counted.
    static MEASURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if MEASURING.with(std::cell::Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is global: tests that count run one at a time, so that one
/// test's set-up is not counted against another's hot path.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCS.load(Ordering::SeqCst);
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (ALLOCS.load(Ordering::SeqCst) - before, r)
}

#[test]
fn lookups_and_blocked_answers_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = DomainSetBuilder::with_seed(3);
    for i in 0..10_000 {
        let k = NameKey::from_text(&format!("d{i}.example.com"), false).expect("name");
        b.insert(&k, PolicyId(1));
    }
    let (set, _) = b.build();
    let hit = NameKey::from_text("a.b.c.d42.example.com", false).expect("name");
    let miss = NameKey::from_text("a.b.c.e42.example.com", false).expect("name");
    let deep =
        NameKey::from_text(&format!("{}d7.example.com", "x.".repeat(40)), false).expect("name");
    let (n, r) = allocations(|| [set.lookup(&hit), set.lookup(&miss), set.lookup(&deep)]);
    assert_eq!(n, 0, "lookups allocated");
    assert!(matches!(r[0], Lookup::Blocked(_)));
    assert_eq!(r[1], Lookup::Miss);
    assert!(matches!(r[2], Lookup::Blocked(_)));

    // The whole handler, blocked answer with EDNS + EDE, into a reused buffer.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("l.txt"), "seized.example\n").expect("list");
    std::fs::write(
        dir.path().join("e.toml"),
        "[upstream]\nservers = [\"127.0.0.1:9\"]\n[[lists]]\nname = \"l\"\nsource = \"l.txt\"\nreason = \"test\"\n",
    )
    .expect("config");
    let config = embargo::Config::load(&dir.path().join("e.toml")).expect("config");
    let handler = embargo::handler(&config, embargo::Snapshot::build(&config).expect("snap"))
        .expect("handler");
    // The default config records blocks (query log, hit report): recording
    // is part of the path that must not allocate, and so is counting into
    // the worker's own block.
    let stats = std::sync::Arc::new(embargo::server::WorkerStats::default());
    let mut rec = handler.observer().recorder(stats.clone());
    let client: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x03www\x06seized\x07example\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let mut out = Vec::with_capacity(1500);
    // Warm up once (tracing's callsite registration may allocate the first time).
    rec.begin();
    handler.handle(&q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
    rec.flush();
    let (n, _) = allocations(|| {
        for _ in 0..100 {
            rec.begin();
            handler.handle(&q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
            rec.flush();
        }
    });
    assert_eq!(n, 0, "blocked answers and their records allocated");
    assert!(
        handler
            .observer()
            .wants(embargo::observe::Decision::Blocked),
        "blocks are recorded by default"
    );
    assert_eq!(out[3] & 0x0f, 3, "NXDOMAIN");
    // ...and were counted, by list, in the caller's block.
    let slot = handler.state().load().lists[0].slot;
    let counted = embargo::server::ServerStats {
        udp: std::sync::Arc::new([stats]),
        tcp: std::sync::Arc::default(),
        answers: std::sync::Arc::default(),
    };
    assert_eq!(counted.blocked(slot), Some(101));
}

/// Issue 10: the access check, the rate limiter (answering, slipping and
/// dropping) and the refusal of an outsider allocate nothing either, with
/// every decision recorded (issue 11: `[log] queries = "all"`).
#[test]
fn access_and_rate_limit_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("l.txt"), "seized.example\n").expect("list");
    std::fs::write(
        dir.path().join("e.toml"),
        "[upstream]\nservers = [\"127.0.0.1:9\"]\n[[lists]]\nname = \"l\"\nsource = \"l.txt\"\n[access]\nallow = [\"127.0.0.0/8\"]\n[rate_limit]\nresponses_per_second = 10\nexempt = []\n[log]\nqueries = \"all\"\n",
    )
    .expect("config");
    let config = embargo::Config::load(&dir.path().join("e.toml")).expect("config");
    let handler = embargo::handler(&config, embargo::Snapshot::build(&config).expect("snap"))
        .expect("handler");
    assert!(
        handler
            .observer()
            .wants(embargo::observe::Decision::Refused),
        "refusals are recorded"
    );
    let stats = std::sync::Arc::new(embargo::server::WorkerStats::default());
    let mut rec = handler.observer().recorder(stats.clone());
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x03www\x06seized\x07example\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let mut out = Vec::with_capacity(1500);
    let insider: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let outsider: SocketAddr = "192.0.2.1:5000".parse().expect("addr");
    // As a UDP worker runs it: stamped, handled, the records handed on.
    let mut handle = |client: SocketAddr, out: &mut Vec<u8>| {
        rec.begin();
        let o = handler.handle(&q, client, embargo::server::Proto::Udp, out, &mut rec);
        rec.flush();
        o
    };
    // Warm up once (tracing's callsite registration may allocate the first time).
    handle(outsider, &mut out);
    handle(insider, &mut out);
    let (n, replies) = allocations(|| {
        let mut replies = [0usize; 2];
        for _ in 0..100 {
            // Ten answered, then slipped or dropped.
            if let embargo::server::Outcome::Reply = handle(insider, &mut out) {
                replies[usize::from(out[2] & 0x02 != 0)] += 1;
            }
        }
        replies
    });
    assert_eq!(n, 0, "rate limited answers allocated");
    assert!(replies[1] > 0 && replies[0] < 20, "{replies:?}");
    // Limited answers are counted, not recorded one by one.
    let limited = handler.observer().rate_limited();
    assert_eq!(limited.truncated, replies[1] as u64, "{limited:?}");
    assert_eq!(
        limited.dropped,
        (100 - replies[0] - replies[1]) as u64,
        "{limited:?}"
    );
    // ...and so are they in the worker's counters, by decision.
    let counted = embargo::server::ServerStats {
        udp: std::sync::Arc::new([stats.clone()]),
        tcp: std::sync::Arc::default(),
        answers: std::sync::Arc::default(),
    };
    assert_eq!(
        counted.decided(embargo::observe::metrics::Decision::Limited),
        (100 - replies[0]) as u64
    );
    let (n, _) = allocations(|| {
        for _ in 0..100 {
            handle(outsider, &mut out);
        }
    });
    assert_eq!(n, 0, "refusals allocated");
    assert_eq!(out[3] & 0x0f, 5, "REFUSED");
}

/// Issue 12: a cache hit through the handler (lookup, sketch, copy, TTL
/// and header patches), recorded as every decision is with `[log] queries
/// = "all"`, allocates nothing either.
#[test]
fn cached_answers_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("l.txt"), "seized.example\n").expect("list");
    std::fs::write(
        dir.path().join("e.toml"),
        "[upstream]\nservers = [\"127.0.0.1:9\"]\n[[lists]]\nname = \"l\"\nsource = \"l.txt\"\n[cache]\nsize = 1000\n[log]\nqueries = \"all\"\n",
    )
    .expect("config");
    let config = embargo::Config::load(&dir.path().join("e.toml")).expect("config");
    let handler = embargo::handler(&config, embargo::Snapshot::build(&config).expect("snap"))
        .expect("handler");
    assert!(
        handler.observer().wants(embargo::observe::Decision::Cached),
        "cached answers are recorded"
    );
    let stats = std::sync::Arc::new(embargo::server::WorkerStats::default());
    let mut rec = handler.observer().recorder(stats);
    let client: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x03www\x06cached\x07example\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let (facts, name) = embargo::query::parse(&q).expect("query");
    // What the upstream would have said: one A record, TTL 300, our OPT.
    let mut answer = q[..facts.question_end].to_vec();
    answer[2] = 0x81;
    answer[3] = 0x80;
    answer[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
    embargo::wire::push_opt(&mut answer, 0, false, &[]);
    handler
        .cache()
        .insert(&embargo::cache::CacheKey::new(&name, &facts), &mut answer);
    let mut out = Vec::with_capacity(1500);
    rec.begin();
    handler.handle(&q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
    rec.flush();
    let (n, answered) = allocations(|| {
        (0..100)
            .filter(|_| {
                rec.begin();
                let o = handler.handle(&q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
                rec.flush();
                matches!(o, embargo::server::Outcome::Reply)
            })
            .count()
    });
    assert_eq!(n, 0, "cached answers and their records allocated");
    assert_eq!(answered, 100);
    assert_eq!(&out[6..8], &[0, 1], "the cached A record");
    assert_eq!(handler.cache().stats().hits, 101);
}

/// Issue 16 (1): a cached CNAME chain from before a reload is inspected
/// again once, on its first hit, and stamped with the rules in force; the
/// hits after it cost one compare and allocate nothing, like any other.
#[test]
fn cached_chains_are_rechecked_once_and_then_allocate_nothing() {
    use embargo::cname::Checked;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("l.txt"), "seized.example\n").expect("list");
    std::fs::write(
        dir.path().join("e.toml"),
        "[upstream]\nservers = [\"127.0.0.1:9\"]\n[[lists]]\nname = \"l\"\nsource = \"l.txt\"\n[cache]\nsize = 1000\n[log]\nqueries = \"all\"\n",
    )
    .expect("config");
    let config = embargo::Config::load(&dir.path().join("e.toml")).expect("config");
    let handler = embargo::handler(&config, embargo::Snapshot::build(&config).expect("snap"))
        .expect("handler");
    let stats = std::sync::Arc::new(embargo::server::WorkerStats::default());
    let mut rec = handler.observer().recorder(stats);
    let client: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x03www\x06cached\x07example\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let (facts, name) = embargo::query::parse(&q).expect("query");
    // www.cached.example CNAME cdn.example, cdn.example A 192.0.2.1, our OPT.
    let mut answer = q[..facts.question_end].to_vec();
    answer[2] = 0x81;
    answer[3] = 0x80;
    answer[6..12].copy_from_slice(&[0, 2, 0, 0, 0, 0]);
    answer.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44, 0, 6, 3, b'c', b'd', b'n']);
    answer.extend_from_slice(&[0xc0, 23]);
    let cdn = u8::try_from(answer.len() - 6).expect("offset");
    answer.extend_from_slice(&[0xc0, cdn, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
    embargo::wire::push_opt(&mut answer, 0, false, &[]);
    let key = embargo::cache::CacheKey::new(&name, &facts);
    // Inspected under rules that are gone (no snapshot has generation 0).
    let old = Checked::Passed { generation: 0 };
    handler.cache().insert_tagged(&key, &mut answer, old.tag());
    let mut out = Vec::with_capacity(1500);
    rec.begin();
    handler.handle(&q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
    rec.flush();
    assert_eq!(&out[6..8], &[0, 2], "the cached chain: {out:?}");
    let now = handler.state().load().generation;
    let (_, tag) = handler.cache().get(&key, &q, &facts, &mut out);
    assert_eq!(
        Checked::from_tag(tag),
        Checked::Passed { generation: now },
        "stamped with the rules in force"
    );
    let (n, answered) = allocations(|| {
        (0..100)
            .filter(|_| {
                rec.begin();
                let o = handler.handle(&q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
                rec.flush();
                matches!(o, embargo::server::Outcome::Reply)
            })
            .count()
    });
    assert_eq!(n, 0, "cached chains and their records allocated");
    assert_eq!(answered, 100);
    assert_eq!(&out[6..8], &[0, 2], "the cached chain");
}

/// Issue 21: a block found in an answer, cached as such (no groups), is
/// answered, counted by list and by what matched, and recorded with the
/// chain's listed name read from beside the cached answer, allocating
/// nothing.
#[test]
fn cached_chain_blocks_and_their_records_allocate_nothing() {
    use embargo::cname::{Checked, Via};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("l.txt"), "tracker.example\n").expect("list");
    std::fs::write(
        dir.path().join("e.toml"),
        "[upstream]\nservers = [\"127.0.0.1:9\"]\n[[lists]]\nname = \"l\"\nsource = \"l.txt\"\n[cache]\nsize = 1000\n",
    )
    .expect("config");
    let config = embargo::Config::load(&dir.path().join("e.toml")).expect("config");
    let handler = embargo::handler(&config, embargo::Snapshot::build(&config).expect("snap"))
        .expect("handler");
    let (mut rec, mut events) =
        embargo::observe::Recorder::detached(embargo::observe::Decisions::BLOCKED, 1024);
    let client: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x03www\x06cloaks\x07example\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let (facts, name) = embargo::query::parse(&q).expect("query");
    // The list's sinkhole answer, as the forward path keeps it.
    let mut answer = q[..facts.question_end].to_vec();
    answer[2] = 0x81;
    answer[3] = 0x80;
    answer[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 0, 0, 0, 0]);
    embargo::wire::push_opt(&mut answer, 0, false, &[]);
    let snap = handler.state().load();
    let checked = Checked::Blocked {
        generation: snap.generation,
        list: snap.lists[0].slot,
        action: embargo::policy::Action::Sinkhole,
        via: Via::Chain,
    };
    let listed = NameKey::from_text("ads.tracker.example", false).expect("name");
    let note = embargo::inspect::Matched::chain(listed.as_bytes());
    handler.cache().insert_noted(
        &embargo::cache::CacheKey::new(&name, &facts),
        &mut answer,
        checked.tag(),
        note.as_note(),
    );
    let mut out = Vec::with_capacity(1500);
    rec.begin();
    handler.handle(&q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
    rec.flush();
    let (n, answered) = allocations(|| {
        (0..100)
            .filter(|_| {
                rec.begin();
                let o = handler.handle(&q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
                rec.flush();
                matches!(o, embargo::server::Outcome::Reply)
            })
            .count()
    });
    assert_eq!(n, 0, "cached chain blocks and their records allocated");
    assert_eq!(answered, 100);
    assert_eq!(events.slots(), 101, "every one recorded");
    let chunk = events.read_chunk(101).expect("events");
    let (a, b) = chunk.as_slices();
    for ev in a.iter().chain(b) {
        assert_eq!(ev.decision, embargo::observe::Decision::Blocked);
        assert_eq!(ev.cname(), Some(listed.as_bytes()), "the chain's name");
    }
    chunk.commit_all();
    // Counted in the worker's block, by list and by what matched.
    let via = embargo::observe::metrics::Via::Cname;
    assert_eq!(rec.stats().answer_blocks(snap.lists[0].slot, via), 101);
}

/// Issue 12: with `[[groups]]` the blocked path (address search, the
/// group's table, a group's own action, a name on two lists) and its
/// record, group included, allocate nothing either.
#[test]
fn grouped_blocked_answers_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.txt"), "seized.example\nboth.example\n").expect("list");
    std::fs::write(dir.path().join("b.txt"), "other.example\nboth.example\n").expect("list");
    std::fs::write(
        dir.path().join("e.toml"),
        "[upstream]\nservers = [\"127.0.0.1:9\"]\n[[lists]]\nname = \"a\"\nsource = \"a.txt\"\n[[lists]]\nname = \"b\"\nsource = \"b.txt\"\n[[groups]]\nname = \"lab\"\nclients = [\"127.0.0.0/8\"]\nlists = [\"b\"]\naction = \"refused\"\n[[groups]]\nname = \"x\"\nclients = [\"10.0.0.0/8\", \"127.1.0.0/16\"]\nlists = []\n[log]\nqueries = \"all\"\n",
    )
    .expect("config");
    let config = embargo::Config::load(&dir.path().join("e.toml")).expect("config");
    let handler = embargo::handler(&config, embargo::Snapshot::build(&config).expect("snap"))
        .expect("handler");
    let stats = std::sync::Arc::new(embargo::server::WorkerStats::default());
    let mut rec = handler.observer().recorder(stats.clone());
    let client: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x03www\x04both\x07example\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let mut out = Vec::with_capacity(1500);
    rec.begin();
    handler.handle(&q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
    rec.flush();
    let (n, _) = allocations(|| {
        for _ in 0..100 {
            rec.begin();
            handler.handle(&q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
            rec.flush();
        }
    });
    assert_eq!(n, 0, "grouped blocked answers and their records allocated");
    assert_eq!(out[3] & 0x0f, 5, "REFUSED: the group's action");
}

/// Issue 16 (2): a verdict that walks through an RPZ passthru (the feeds
/// passed are kept on the stack) allocates nothing either.
#[test]
fn r16_verdicts_through_rpz_passthrus_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("feed.rpz"),
        "$ORIGIN rpz.test.\n@ SOA ns. h. 1 2 3 4 5\n*.wild.example CNAME .\ngood.wild.example CNAME rpz-passthru.\nsanctioned.example CNAME rpz-passthru.\n",
    )
    .expect("feed");
    std::fs::write(dir.path().join("l.txt"), "sanctioned.example\n").expect("list");
    std::fs::write(
        dir.path().join("e.toml"),
        "[upstream]\nservers = [\"127.0.0.1:9\"]\n[[lists]]\nname = \"feed\"\nsource = \"feed.rpz\"\n[[lists]]\nname = \"l\"\nsource = \"l.txt\"\n",
    )
    .expect("config");
    let config = embargo::Config::load(&dir.path().join("e.toml")).expect("config");
    let snap = embargo::Snapshot::build(&config).expect("snap");
    let group = snap.groups.default_group();
    let names = [
        "good.wild.example",
        "bad.wild.example",
        "sanctioned.example",
    ]
    .map(|n| NameKey::from_text(n, false).expect("name"));
    let (n, blocked) = allocations(|| {
        names.each_ref().map(|k| {
            matches!(
                snap.verdict(k, group),
                embargo::state::Verdict::Blocked { .. }
            )
        })
    });
    assert_eq!(n, 0, "verdicts allocated");
    assert_eq!(blocked, [false, true, true]);
}

/// Issue 18: local answers (a record, a generated PTR, a local zone's
/// NXDOMAIN, localhost, a CNAME to a local name) are built from the
/// snapshot's frozen answers into the reused buffer, recorded as every
/// decision is with `[log] queries = "all"`, and allocate nothing; nor
/// does a cached answer of a `[[forward]]` zone (the zone lookup and its
/// set's cache key).
#[test]
fn r18_local_answers_and_forwarded_zone_hits_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hosts"), "192.168.1.20 printer\n").expect("hosts");
    std::fs::write(
        dir.path().join("e.toml"),
        "[upstream]\nservers = [\"127.0.0.1:9\"]\n[cache]\nsize = 1000\n[log]\nqueries = \"all\"\n\
         [local_zones]\nhosts_files = [\"hosts\"]\n\
         [[records]]\nname = \"nas.home.arpa\"\na = \"192.168.1.10\"\n\
         [[records]]\nname = \"media.home.arpa\"\ncname = \"nas.home.arpa\"\n\
         [[forward]]\nzones = [\"corp.example\"]\nservers = [\"127.0.0.1:10\"]\n",
    )
    .expect("config");
    let config = embargo::Config::load(&dir.path().join("e.toml")).expect("config");
    let handler = embargo::handler(&config, embargo::Snapshot::build(&config).expect("snap"))
        .expect("handler");
    assert!(handler.observer().wants(embargo::observe::Decision::Local));
    let stats = std::sync::Arc::new(embargo::server::WorkerStats::default());
    let mut rec = handler.observer().recorder(stats.clone());
    let client: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let query = |name: &str, qtype: u16| {
        let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in name.split('.') {
            q.push(u8::try_from(label.len()).expect("label"));
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        q
    };
    // (query, RCODE, answer records)
    let cases = [
        (query("nas.home.arpa", 1), 0, 1),
        (query("printer.home.arpa", 1), 0, 1),
        (query("10.1.168.192.in-addr.arpa", 12), 0, 1),
        (query("other.home.arpa", 1), 3, 0),
        (query("5.0.0.10.in-addr.arpa", 12), 3, 0),
        (query("db.localhost", 28), 0, 1),
        (query("media.home.arpa", 1), 0, 2),
        (query("www.corp.example", 1), 0, 1),
    ];
    // A cached answer for the forwarded name, under its set's key.
    let (facts, name) = embargo::query::parse(&cases[7].0).expect("query");
    let mut answer = cases[7].0[..facts.question_end].to_vec();
    answer[2] = 0x81;
    answer[3] = 0x80;
    answer[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 0, 0, 1]);
    embargo::wire::push_opt(&mut answer, 0, false, &[]);
    let set_key = handler.state().load().forward_zones.cache_key(0);
    let key = embargo::cache::CacheKey::new(&name, &facts).with_set(set_key);
    handler.cache().insert(&key, &mut answer);
    let mut out = Vec::with_capacity(1500);
    for (q, _, _) in &cases {
        rec.begin();
        handler.handle(q, client, embargo::server::Proto::Udp, &mut out, &mut rec);
        rec.flush();
    }
    for (q, rcode, ancount) in &cases {
        let (n, outcome) = allocations(|| {
            let mut last = None;
            for _ in 0..50 {
                rec.begin();
                last = Some(handler.handle(
                    q,
                    client,
                    embargo::server::Proto::Udp,
                    &mut out,
                    &mut rec,
                ));
                rec.flush();
            }
            last
        });
        let what = embargo::query::parse(q).map(|(_, n)| n.to_string());
        assert_eq!(n, 0, "{what:?} allocated");
        assert!(
            matches!(outcome, Some(embargo::server::Outcome::Reply)),
            "{what:?}"
        );
        assert_eq!(out[3] & 0x0f, *rcode, "{what:?}");
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), *ancount, "{what:?}");
    }
    let counted = embargo::server::ServerStats {
        udp: std::sync::Arc::new([stats]),
        tcp: std::sync::Arc::default(),
        answers: std::sync::Arc::default(),
    };
    assert_eq!(
        counted.decided(embargo::observe::metrics::Decision::Local),
        7 * 51
    );
    assert_eq!(
        handler.cache().stats().hits,
        51,
        "the forwarded zone's answer"
    );
}

/// Issue 21: the query-log formatter writes a block's chain name
/// (`cname`) and network (`net`) without allocating, JSON and text (the
/// network went through `to_string` before).
#[test]
fn records_with_a_chain_name_or_a_network_format_without_allocating() {
    use embargo::config::{ClientIp, LogFormat};
    use embargo::observe::QueryEvent;
    use embargo::observe::querylog::{ClientView, Formatter, LogBuf};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let slots = std::sync::Arc::new(embargo::state::ListSlots::default());
    slots.slot("l");
    let chain = NameKey::from_text("ads.tracker.example", false).expect("name");
    let net = embargo::matcher::Net::parse("2001:db8:bad::/48").expect("net");
    let mut events = [
        QueryEvent::example("cdn.shop.example").with_chain(chain.as_bytes()),
        QueryEvent::example("moved.shop.example").with_net(Some(net)),
    ];
    for (i, ev) in events.iter_mut().enumerate() {
        ev.time_us = 1_795_987_831_123_456 + i as u64;
    }
    let mut out = LogBuf::new(1 << 20);
    for format in [LogFormat::Json, LogFormat::Text] {
        let mut f = Formatter::new(
            format,
            ClientView::new(ClientIp::Full),
            slots.clone(),
            Default::default(),
        );
        // Warm up: the list's name is learned once, the second's stamp built.
        for ev in &events {
            f.write(ev, &mut out);
        }
        out.clear();
        let (n, _) = allocations(|| {
            for _ in 0..100 {
                for ev in &events {
                    f.write(ev, &mut out);
                }
            }
        });
        assert_eq!(n, 0, "{format:?} records allocated");
        let text = String::from_utf8_lossy(out.as_bytes()).into_owned();
        let (cname, net) = match format {
            LogFormat::Json => (
                "\"cname\":\"ads.tracker.example\"",
                "\"net\":\"2001:db8:bad::/48\"",
            ),
            LogFormat::Text => (" cname=ads.tracker.example ", " net=2001:db8:bad::/48 "),
        };
        assert_eq!(text.matches(cname).count(), 100, "{text}");
        assert_eq!(text.matches(net).count(), 100, "{text}");
        out.clear();
    }
}
