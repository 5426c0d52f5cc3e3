//! Criterion benches for the hot path: matcher lookups (hit, miss, deep
//! names) against 10k and 1M domains, building the set, loading a 1M-line
//! list file, and one blocked query through the whole handler in-process
//! (alone, and in a batch of 32 with and without its query record).
//!
//! Run: `cargo bench --bench matcher` (add `-- lookup` to filter).

use std::hint::black_box;
use std::io::Write;
use std::net::SocketAddr;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use embargo::matcher::{DomainSet, DomainSetBuilder, NameKey, PolicyId};
use embargo::observe::{Decisions, Recorder};

/// Deterministic pseudo-random registrable domains, like the lab's lists.
fn domains(n: usize, seed: u64) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let tlds = ["com", "net", "org", "co.uk", "com.cn", "ru", "info", "io"];
    (0..n)
        .map(|i| {
            let len = rng.usize(4..16);
            let label: String = (0..len)
                .map(|_| rng.alphanumeric().to_ascii_lowercase())
                .collect();
            let tld = tlds[rng.usize(..tlds.len())];
            if i % 5 == 0 {
                format!("cdn{}.{label}.{tld}", rng.u8(..))
            } else {
                format!("{label}.{tld}")
            }
        })
        .collect()
}

fn build(names: &[String]) -> DomainSet {
    let mut b = DomainSetBuilder::with_seed(1);
    for n in names {
        if let Ok(k) = NameKey::from_text(n, false) {
            b.insert(&k, PolicyId(1));
        }
    }
    b.build().0
}

fn key(s: &str) -> NameKey {
    NameKey::from_text(s, true).expect("bench name")
}

fn lookups(c: &mut Criterion) {
    for &n in &[10_000usize, 1_000_000] {
        let names = domains(n, 7);
        let set = build(&names);
        // 5-label names: a hit two labels below a listed domain, and a miss.
        let hits: Vec<NameKey> = names
            .iter()
            .step_by(97)
            .take(1024)
            .map(|d| key(&format!("a.b.{d}")))
            .filter(|k| k.label_count() == 5)
            .collect();
        let misses: Vec<NameKey> = domains(1024, 99)
            .iter()
            .map(|d| key(&format!("www.x.y.{d}")))
            .filter(|k| k.label_count() == 5)
            .collect();
        let deep = key(&format!("{}{}", "x.".repeat(30), names[0]));
        let mut g = c.benchmark_group(format!("lookup/{n}"));
        let mut i = 0usize;
        g.bench_function("hit-5-labels", |b| {
            b.iter(|| {
                i = (i + 1) % hits.len();
                black_box(set.lookup(black_box(&hits[i])))
            })
        });
        g.bench_function("miss-5-labels", |b| {
            b.iter(|| {
                i = (i + 1) % misses.len();
                black_box(set.lookup(black_box(&misses[i])))
            })
        });
        g.bench_function("hit-32-labels", |b| {
            b.iter(|| black_box(set.lookup(black_box(&deep))))
        });
        g.finish();
    }
}

fn building(c: &mut Criterion) {
    let names = domains(1_000_000, 7);
    let keys: Vec<NameKey> = names
        .iter()
        .filter_map(|n| NameKey::from_text(n, false).ok())
        .collect();
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.bench_function("set-1M", |b| {
        b.iter_batched(
            || keys.clone(),
            |keys| {
                let mut bld = DomainSetBuilder::with_seed(1).with_capacity(keys.len());
                for k in &keys {
                    bld.insert(k, PolicyId(1));
                }
                black_box(bld.build())
            },
            BatchSize::LargeInput,
        )
    });
    let mut file = tempfile::NamedTempFile::new().expect("temp");
    for n in &names {
        writeln!(file, "{n}").expect("write");
    }
    let path = file.path().to_path_buf();
    g.bench_function("load-file-1M-domains", |b| {
        b.iter(|| {
            let mut bld = DomainSetBuilder::with_seed(1).with_capacity(names.len());
            let stats =
                embargo::lists::load_file(&path, None, &mut |k, _| bld.insert(k, PolicyId(1)))
                    .expect("load");
            black_box((stats, bld.build()))
        })
    });
    g.finish();
}

/// A handler over the 1M-name list `list.txt` in `dir`, with `extra` config.
fn bench_handler(dir: &std::path::Path, extra: &str) -> std::sync::Arc<embargo::server::Handler> {
    let cfg = format!(
        "[upstream]\nservers = [\"127.0.0.1:9\"]\n[[lists]]\nname = \"l\"\nsource = \"list.txt\"\nformat = \"domains\"\nauthority = \"bench\"\nreason = \"bench\"\n{extra}"
    );
    std::fs::write(dir.join("e.toml"), cfg).expect("config");
    let config = embargo::Config::load(&dir.join("e.toml")).expect("config");
    let snap = embargo::Snapshot::build(&config).expect("snapshot");
    embargo::handler(&config, snap).expect("handler")
}

fn request_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let names = domains(1_000_000, 7);
    std::fs::write(dir.path().join("list.txt"), names.join("\n")).expect("list");
    let handler = bench_handler(dir.path(), "");
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in format!("a1b2c3.www.{}", names[10]).split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let mut out = Vec::with_capacity(1500);
    // Records nothing, but counts into a block of its own, as a UDP
    // worker does: counting is part of the path measured.
    let mut off = Recorder::off();
    c.bench_function("handle/blocked-nxdomain-edns-1M", |b| {
        b.iter(|| {
            let o = handler.handle(
                black_box(&query),
                client,
                embargo::server::Proto::Udp,
                &mut out,
                &mut off,
            );
            black_box((o, out.len()))
        })
    });
    // As a UDP worker runs it: a batch of 32, stamped once, its records
    // pushed into the worker's ring once the answers are out (here the
    // ring is drained by the bench itself, which costs a few ns a batch).
    // Against the same batch unrecorded, the difference is what recording
    // a block costs the serving thread.
    let (mut rec, mut ring) = Recorder::detached(Decisions::BLOCKED, 64);
    for (label, recorded) in [("unrecorded", false), ("recorded", true)] {
        c.bench_function(&format!("handle/batch-32-blocked-{label}"), |b| {
            b.iter(|| {
                let rec = if recorded { &mut rec } else { &mut off };
                rec.begin();
                for _ in 0..32 {
                    let o = handler.handle(
                        black_box(&query),
                        client,
                        embargo::server::Proto::Udp,
                        &mut out,
                        rec,
                    );
                    black_box((o, out.len()));
                }
                rec.flush();
                if let Ok(chunk) = ring.read_chunk(ring.slots()) {
                    chunk.commit_all();
                }
            })
        });
    }
    drop(handler);

    // The same query from 65,536 clients in turn, each its own prefix in
    // the rate limiter's table (which holds 65,536), none of them limited.
    let limited = bench_handler(
        dir.path(),
        "[access]\nallow = [\"10.0.0.0/8\"]\n[rate_limit]\nresponses_per_second = 1000\nipv4_prefix = 32\nexempt = []\n",
    );
    let clients: Vec<SocketAddr> = (0..65_536u32)
        .map(|i| SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 40000)))
        .collect();
    let o = limited.handle(
        &query,
        clients[0],
        embargo::server::Proto::Udp,
        &mut out,
        &mut off,
    );
    assert!(
        matches!(o, embargo::server::Outcome::Reply) && out[3] & 0x0f == 3,
        "answered NXDOMAIN"
    );
    let mut i = 0usize;
    c.bench_function("handle/blocked-rate-limit-65536-clients", |b| {
        b.iter(|| {
            i = (i + 1) & 0xffff;
            let o = limited.handle(
                black_box(&query),
                clients[i],
                embargo::server::Proto::Udp,
                &mut out,
                &mut off,
            );
            black_box((o, out.len()))
        })
    });
    // An outsider: REFUSED + EDE 18 (no log subscriber here).
    let outsider: SocketAddr = "192.0.2.1:40000".parse().expect("addr");
    c.bench_function("handle/refused-outsider", |b| {
        b.iter(|| {
            let o = limited.handle(
                black_box(&query),
                outsider,
                embargo::server::Proto::Udp,
                &mut out,
                &mut off,
            );
            black_box((o, out.len()))
        })
    });
}

/// An upstream answer for `query` (ID 0): the question and one A record
/// with TTL 300, and our OPT when the query has one.
fn upstream_answer(query: &[u8], facts: &embargo::policy::QueryFacts) -> Vec<u8> {
    let mut a = query[..facts.question_end].to_vec();
    a[0] = 0;
    a[1] = 0;
    a[2] = 0x81;
    a[3] = 0x80;
    a[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
    if let Some(e) = facts.edns {
        embargo::wire::push_opt(&mut a, 0, e.dnssec_ok, &[]);
    }
    a
}

/// A cached answer through the whole handler (access, parse, matcher miss
/// over 1M names, cache hit and its patches), and the cache's own `get`.
fn cached_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let names = domains(1_000_000, 7);
    std::fs::write(dir.path().join("list.txt"), names.join("\n")).expect("list");
    let handler = bench_handler(dir.path(), "");
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    query.extend_from_slice(b"\x03www\x0bbench-cache\x07example\x00\x00\x01\x00\x01");
    query.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let (facts, name) = embargo::query::parse(&query).expect("query");
    let key = embargo::cache::CacheKey::new(&name, &facts);
    handler
        .cache()
        .insert(&key, &mut upstream_answer(&query, &facts));
    let mut out = Vec::with_capacity(1500);
    let mut off = Recorder::off();
    let o = handler.handle(
        &query,
        client,
        embargo::server::Proto::Udp,
        &mut out,
        &mut off,
    );
    assert!(
        matches!(o, embargo::server::Outcome::Reply) && out[7] == 1,
        "answered from the cache"
    );
    c.bench_function("handle/cached-a-edns-1M", |b| {
        b.iter(|| {
            let o = handler.handle(
                black_box(&query),
                client,
                embargo::server::Proto::Udp,
                &mut out,
                &mut off,
            );
            black_box((o, out.len()))
        })
    });
    c.bench_function("cache/get-hit", |b| {
        b.iter(|| {
            let found = handler
                .cache()
                .get(black_box(&key), &query, &facts, &mut out);
            black_box((found, out.len()))
        })
    });
}

/// The local names (issue 18), asked before the lists for every query:
/// the walk for a name under no local zone (most queries), a record and a
/// zone's NXDOMAIN written into a reused buffer as the handler would.
fn local_names(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = embargo::Config::parse(
        &dir.path().join("e.toml"),
        "[local_zones]\nzones = [\"lan\"]\n[[records]]\nname = \"nas.home.arpa\"\na = \"192.168.1.10\"\n\
         [[forward]]\nzones = [\"corp.example\"]\nservers = [\"10.0.0.10\"]\n",
    )
    .expect("config");
    let local = embargo::local::Local::build(&config.local, &config.forward).expect("local");
    let zones = embargo::zones::ForwardZones::new(&config.forward);
    let mut g = c.benchmark_group("local");
    for (label, name) in [
        ("miss", "www.example.com"),
        ("miss_arpa", "1.2.0.192.in-addr.arpa.example"),
        ("forwarded", "dc1.corp.example"),
    ] {
        let k = key(name);
        g.bench_function(format!("lookup_{label}"), |b| {
            b.iter(|| black_box(local.lookup(black_box(&k), 1, 1)).is_none())
        });
    }
    let k = key("dc1.corp.example");
    g.bench_function("forward_zone", |b| {
        b.iter(|| black_box(zones.lookup(black_box(&k))))
    });
    for (label, name) in [("record", "nas.home.arpa"), ("nxdomain", "printer.local")] {
        let mut p = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.extend_from_slice(&[0, 0, 1, 0, 1]);
        let (facts, k) = embargo::query::parse(&p).expect("query");
        let mut out = Vec::with_capacity(512);
        g.bench_function(format!("answer_{label}"), |b| {
            b.iter(|| {
                if let Some(a) = local.lookup(black_box(&k), facts.qtype, facts.qclass) {
                    a.respond(&p, &facts, &mut out);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    lookups,
    building,
    request_path,
    cached_path,
    local_names
);
criterion_main!(benches);
