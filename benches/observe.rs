//! Criterion benches for the observer thread's work per record: formatting
//! a block as JSON and as text, and counting it in the hit report. At the
//! lab's 300k blocked queries a second, every 100 ns here is 3 % of a core;
//! `observe/format-json` is the writer's cost per record (the README's
//! "records a second with zero drops" comes from it).
//!
//! Run: `cargo bench --bench observe`.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use embargo::config::{ClientIp, LogFormat};
use embargo::observe::QueryEvent;
use embargo::observe::hits::HitReport;
use embargo::observe::querylog::{ClientId, ClientView, Formatter, LogBuf, RotatingFile};
use embargo::state::{ListSlot, ListSlots};

fn format(c: &mut Criterion) {
    let slots = Arc::new(ListSlots::default());
    slots.slot("lab-list");
    let mut ev = QueryEvent::example("a1b2c3.www.seized-example.com");
    ev.time_us = 1_795_987_831_123_456;
    ev.latency_us = 12;
    let mut out = LogBuf::new(1 << 20);
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

/// The writer's whole cost per record for the log: formatting, and its
/// share of the 1 MiB writes (the copy into the page cache) and of the
/// rotations (64 MB files, one kept), as the observer thread does them.
fn format_and_write(c: &mut Criterion) {
    let slots = Arc::new(ListSlots::default());
    slots.slot("lab-list");
    let mut ev = QueryEvent::example("a1b2c3.www.seized-example.com");
    ev.time_us = 1_795_987_831_123_456;
    ev.latency_us = 12;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file =
        RotatingFile::open(&dir.path().join("queries.log"), 64 << 20, 1, false).expect("open");
    let mut out = LogBuf::new((1 << 20) + (64 << 10));
    let mut f = Formatter::new(
        LogFormat::Json,
        ClientView::new(ClientIp::Full),
        slots,
        Default::default(),
    );
    c.bench_function("observe/format-and-write-json", |b| {
        b.iter(|| {
            f.write(black_box(&ev), &mut out);
            if out.len() >= 1 << 20 {
                file.write(out.as_bytes()).expect("write");
                out.clear();
            }
        })
    });
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

/// Rotated files are compressed (zstd level 1, as `rotate.rs`): the ratio
/// and speed on records this formatter writes for the lab's flood (the
/// names of its `q-blocked.txt` when `OBSERVE_NAMES` names the file, else
/// random subdomains of generated names: one client, 8 ports) and for an
/// office (1,000 clients asking a few hundred listed names over and over).
/// Prints the ratios; criterion times compressing a 4 MiB batch.
fn compression(c: &mut Criterion) {
    let names: Vec<String> = std::env::var("OBSERVE_NAMES")
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .take(200_000)
                .collect()
        })
        .unwrap_or_default();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let word = |n: u64| -> String {
        let syll = [
            "ka", "zo", "vi", "net", "pro", "lex", "mar", "qu", "st", "ra",
        ];
        (0..3 + n % 3)
            .map(|i| syll[((n >> (i * 4)) % 10) as usize])
            .collect()
    };
    let slots = Arc::new(ListSlots::default());
    slots.slot("lab-list");
    let size = 32 << 20;
    for mix in ["flood", "office"] {
        let mut f = Formatter::new(
            LogFormat::Json,
            ClientView::new(ClientIp::Full),
            slots.clone(),
            Default::default(),
        );
        let mut out = LogBuf::new(size + (1 << 16));
        let mut time_us = 1_795_987_831_000_000_u64;
        let mut records = 0u64;
        while out.len() < size {
            let r = next();
            let name = match mix {
                "flood" if !names.is_empty() => names[(r % names.len() as u64) as usize].clone(),
                "flood" => format!("{:x}.www.{}.com", r >> 40, word(r >> 8)),
                _ => format!("www.{}.net", word(r % 300)),
            };
            let mut ev = QueryEvent::example(&name);
            ev.time_us = time_us;
            ev.latency_us = (r >> 20) as u32 % 400;
            match mix {
                "flood" => {
                    ev.port = 40_000 + (r % 8) as u16;
                    // 430k a second.
                    time_us += 2 + r % 2;
                }
                _ => {
                    ev.client =
                        std::net::Ipv4Addr::from(0x0a00_0000 + (r >> 32) as u32 % 1000).into();
                    ev.port = 1024 + (r >> 16) as u16 % 60_000;
                    // 1k a second.
                    time_us += 1000;
                }
            }
            f.write(&ev, &mut out);
            records += 1;
        }
        let plain = out.as_bytes();
        let t = std::time::Instant::now();
        let packed = zstd::encode_all(plain, 1).expect("zstd");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "compress {mix}: {records} records, {:.1} MB -> {:.2} MB, ratio {:.1}, {:.0} bytes a record, {:.0} MB/s on this machine",
            plain.len() as f64 / 1e6,
            packed.len() as f64 / 1e6,
            plain.len() as f64 / packed.len() as f64,
            plain.len() as f64 / records as f64,
            plain.len() as f64 / 1e6 / secs
        );
        if mix == "flood" {
            let batch = &plain[..4 << 20];
            c.bench_function("observe/compress-4MiB-flood", |b| {
                b.iter(|| zstd::encode_all(black_box(batch), 1).expect("zstd").len())
            });
        }
    }
}

criterion_group!(benches, format, format_and_write, hits, compression);
criterion_main!(benches);
