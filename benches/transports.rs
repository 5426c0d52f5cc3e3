//! What a query costs on the way in, for the choice the manual's
//! "Encrypted transports" explains: embargo's whole blocked answer
//! (`Handler::handle_as`, as DoT, DoH and DoQ call it) against what
//! hickory-server's listeners would add to it before and after: every
//! request decoded into a `Request` (`Request::from_bytes`, which its
//! `ServerContext` does before calling a `RequestHandler`), and our answer
//! decoded into records and encoded again (a `RequestHandler` answers
//! with a `MessageResponse` of records, which hickory encodes).
//!
//! `cargo bench --bench transports`. In-process, one core; on a shared
//! machine read the ratios, not the nanoseconds.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use embargo::observe::Recorder;
use embargo::server::Proto;
use hickory_proto::op::Message;

fn handler(dir: &std::path::Path) -> std::sync::Arc<embargo::server::Handler> {
    let names: Vec<String> = (0..10_000).map(|i| format!("listed-{i}.example")).collect();
    std::fs::write(dir.join("list.txt"), names.join("\n")).expect("list");
    let cfg = "[upstream]\nservers = [\"127.0.0.1:9\"]\n[[lists]]\nname = \"l\"\nsource = \"list.txt\"\nformat = \"domains\"\n";
    std::fs::write(dir.join("e.toml"), cfg).expect("config");
    let config = embargo::Config::load(&dir.join("e.toml")).expect("config");
    let snap = embargo::Snapshot::build(&config).expect("snapshot");
    embargo::handler(&config, snap).expect("handler")
}

fn costs(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let handler = handler(dir.path());
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    // www.listed-10.example A, EDNS (1232), ID 0 as DoH and DoQ send it.
    let mut query = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in ["www", "listed-10", "example"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let mut out = Vec::with_capacity(1500);
    let mut rec = Recorder::off();
    let id = embargo::groups::ClientId::NONE;
    handler.handle_as(&query, client, Proto::Dot, id, &mut out, &mut rec);
    let answer = out.clone();
    assert_eq!(answer[3] & 0x0f, 3, "NXDOMAIN");

    let mut g = c.benchmark_group("per-query");
    g.bench_function("embargo/blocked-answer", |b| {
        b.iter(|| {
            let o = handler.handle_as(
                black_box(&query),
                client,
                Proto::Dot,
                id,
                &mut out,
                &mut rec,
            );
            black_box((o, out.len()))
        })
    });
    g.bench_function("hickory/request-decode", |b| {
        b.iter(|| {
            let r = hickory_server::server::Request::from_bytes(
                black_box(query.clone()),
                client,
                hickory_server::net::xfer::Protocol::Tls,
            );
            black_box(r.is_ok())
        })
    });
    g.bench_function("hickory/answer-decode-encode", |b| {
        b.iter(|| {
            let m = Message::from_vec(black_box(&answer)).expect("decodes");
            black_box(m.to_vec().expect("encodes").len())
        })
    });
    g.bench_function("hickory/bridge-total", |b| {
        b.iter(|| {
            let r = hickory_server::server::Request::from_bytes(
                black_box(query.clone()),
                client,
                hickory_server::net::xfer::Protocol::Tls,
            );
            let o = handler.handle_as(
                r.expect("request").as_slice(),
                client,
                Proto::Dot,
                id,
                &mut out,
                &mut rec,
            );
            let m = Message::from_vec(&out).expect("decodes");
            black_box((o, m.to_vec().expect("encodes").len()))
        })
    });
    g.finish();
}

criterion_group!(benches, costs);
criterion_main!(benches);
