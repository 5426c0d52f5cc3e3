//! Criterion benches for the observer thread's work per record: formatting
//! a block as JSON and as text, and counting it in the hit report. At the
//! lab's 300k blocked queries a second, every 100 ns here is 3 % of a core.
//!
//! Run: `cargo bench --bench observe`.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use embargo::config::{ClientIp, LogFormat};
use embargo::observe::QueryEvent;
use embargo::observe::hits::HitReport;
use embargo::observe::querylog::{ClientId, ClientView, Formatter};
use embargo::state::{ListSlot, ListSlots};

fn format(c: &mut Criterion) {
    let slots = Arc::new(ListSlots::default());
    slots.slot("lab-list");
    let mut ev = QueryEvent::example("a1b2c3.www.seized-example.com");
    ev.time_us = 1_795_987_831_123_456;
    ev.latency_us = 12;
    let mut out = Vec::with_capacity(1 << 20);
    for (label, format, ip) in [
        ("json", LogFormat::Json, ClientIp::Full),
        ("text", LogFormat::Text, ClientIp::Full),
        ("json-hash", LogFormat::Json, ClientIp::Hash),
    ] {
        let mut f = Formatter::new(
            format,
            ClientView::new(ip),
            slots.clone(),
            Default::default(),
        );
        c.bench_function(&format!("observe/format-{label}"), |b| {
            b.iter(|| {
                if out.len() > 1 << 19 {
                    out.clear();
                }
                f.write(black_box(&ev), &mut out);
            })
        });
    }
}

fn hits(c: &mut Criterion) {
    let ev = QueryEvent::example("a1b2c3.www.seized-example.com");
    let name = ev.name().unwrap_or_default().to_vec();
    let mut report = HitReport::new(NonZeroUsize::new(10_000).expect("max"));
    let clients: Vec<ClientId> = (0..1000u32)
        .map(|i| ClientId::Addr(std::net::Ipv4Addr::from(0x0a00_0000 + i).into()))
        .collect();
    let mut i = 0;
    c.bench_function("observe/hits-record-1k-clients", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            report.record(
                ListSlot(0),
                clients[i],
                1_000 + i as u64,
                black_box(&name),
                1,
            );
        })
    });
}

criterion_group!(benches, format, hits);
criterion_main!(benches);
