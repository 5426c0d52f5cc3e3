//! Criterion benches for the response-IP matcher ([`embargo::matcher::NetSet`]):
//! lookups that hit and miss among 100,000 IPv4 and 100,000 IPv6 prefixes,
//! the empty set a forwarded answer meets when no IP list is loaded, and
//! building the set. Prints the set's heap bytes per 100,000 prefixes
//! (the README's memory figure).
//!
//! Run: `cargo bench --bench nets`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use embargo::matcher::{Net, NetSet, NetSetBuilder, PolicyId};

/// Deterministic prefixes as DROP-style lists have them: /16 to /24 for
/// IPv4, /29 to /48 for IPv6, some nested in others.
fn prefixes(n: usize, v6: bool, seed: u64) -> Vec<Net> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (addr, len) = if v6 {
            let len = rng.u8(29..=48);
            let bits = u128::from(rng.u64(..)) << 64;
            let mask = u128::MAX << (128 - u32::from(len));
            (IpAddr::V6(Ipv6Addr::from(bits & mask)), len)
        } else {
            let len = rng.u8(16..=24);
            let mask = u32::MAX << (32 - u32::from(len));
            (IpAddr::V4(Ipv4Addr::from(rng.u32(..) & mask)), len)
        };
        if let Ok(net) = Net::new(addr, len) {
            out.push(net);
        }
    }
    out
}

fn build(nets: &[Net]) -> NetSet {
    let mut b = NetSetBuilder::new();
    for (i, n) in nets.iter().enumerate() {
        b.insert(*n, PolicyId(1 + (i % 3) as u16));
    }
    b.build()
}

fn bench(c: &mut Criterion) {
    let v4 = prefixes(100_000, false, 1);
    let v6 = prefixes(100_000, true, 2);
    let set4 = build(&v4);
    let set6 = build(&v6);
    println!(
        "heap bytes per 100,000 prefixes: IPv4 {} ({} nets), IPv6 {} ({} nets)",
        set4.heap_bytes(),
        set4.len(),
        set6.heap_bytes(),
        set6.len()
    );
    let hit4 = v4[v4.len() / 2].addr();
    let hit6 = v6[v6.len() / 2].addr();
    let mut rng = fastrand::Rng::with_seed(3);
    let miss4: Vec<IpAddr> = (0..1024)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.u32(..))))
        .filter(|ip| set4.lookup(*ip).is_none())
        .collect();
    let mut g = c.benchmark_group("nets");
    g.bench_function("lookup_hit_v4_100k", |b| {
        b.iter(|| set4.lookup(black_box(hit4)))
    });
    g.bench_function("lookup_hit_v6_100k", |b| {
        b.iter(|| set6.lookup(black_box(hit6)))
    });
    let mut i = 0;
    g.bench_function("lookup_miss_v4_100k", |b| {
        b.iter(|| {
            i = (i + 1) % miss4.len();
            set4.lookup(black_box(miss4[i]))
        })
    });
    let empty = NetSet::default();
    g.bench_function("empty_set_check", |b| {
        b.iter(|| black_box(&empty).is_empty())
    });
    g.sample_size(10);
    g.bench_function("build_v4_100k", |b| b.iter(|| build(black_box(&v4))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
