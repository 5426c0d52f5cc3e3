//! embargo-loadgen: the lab's `blast` (closed loop, sendmmsg/recvmmsg, one
//! thread), but each query leaves from a different source address, so that
//! a server sees many clients: what the rate limiter's table and the client
//! groups' address search cost at full speed (`benches/limiter.sh`,
//! `benches/groups.sh`). With `-m doq` it loads a DoQ listener instead
//! (RFC 9250, which dnsperf does not speak: `benches/encrypted.sh`), each
//! QUIC connection from its own address.
//!
//! Every address of 127.0.0.0/8 is local on Linux's `lo`, so one socket
//! bound to 0.0.0.0 can send each datagram from its own 127.a.b.c with an
//! `IP_PKTINFO` control message (`ipi_spec_dst`), and gets the answers to
//! all of them. Queries cycle through `-a` addresses from `-f` upwards.
//!
//! ```text
//! cargo run --release -p embargo-loadgen -- -s 127.0.0.1:15331 -d q-blocked.txt -l 10 -a 65536
//! ```
//!
//! usage: embargo-loadgen -s HOST:PORT -d FILE -l SECONDS [-a ADDRESSES=65536]
//!        [-f FIRST=127.1.0.0] [-c SOCKETS=8] [-q OUTSTANDING=256] [-b BATCH=32]
//!        [-t TIMEOUT_S=2] [-e (EDNS0, 1232)]
//!        [-m doq (--ca FILE | --insecure) [--sni NAME] [-Q QPS]]
//!
//! Prints blast's summary lines (so the lab's parsers read it) plus the
//! number of distinct source addresses used (and, for DoQ, connections).
//! IPv4 only.
//!
//! The rooms, in the order a query meets them:
//!
//! ```text
//! cli (flags -> Opts) -> queries (dnsperf file -> wire queries)
//!   -> blast (the closed loop: IDs in flight per socket, timeouts)
//!        -> source (which 127.a.b.c sends next) -> batch (sendmmsg with IP_PKTINFO, recvmmsg)
//!   or doq (-m doq: QUIC connections, a stream per query; trust, frame)
//!        -> source (which 127.a.b.c each connection binds)
//!   -> report (blast's summary lines)
//! ```

mod batch;
mod blast;
mod cli;
mod doq;
mod queries;
mod report;
mod source;

fn main() {
    let opts = cli::parse().unwrap_or_else(|e| fail(&e));
    let queries = queries::load(&opts.file, opts.edns).unwrap_or_else(|e| fail(&e));
    let summary = match opts.mode.clone() {
        cli::Mode::Udp => blast::run(opts, &queries).unwrap_or_else(|e| fail(&e)),
        cli::Mode::Doq(doq) => doq::run(opts, &doq, &queries).unwrap_or_else(|e| fail(&e)),
    };
    summary.print();
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("embargo-loadgen: {e}");
    std::process::exit(2);
}
