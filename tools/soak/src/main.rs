//! embargo-soak: the load generator of `benches/soak.sh`. One thread sends a mix
//! of DNS traffic at a fixed rate for as long as asked, and reports every
//! interval (a minute by default) what happened to the queries sent in it.
//!
//! The mix, in proportions set by `--mix`:
//! - `blocked`: names from a list of listed names and their subdomains
//!   (the lab's `q-blocked.txt`), over UDP;
//! - `cached`: a small hot set (the distinct names of `q-hot.txt`), over UDP;
//! - `forwarded`: distinct names that are not listed (`q-allowed.txt`),
//!   so mostly cache misses that go to the upstream, over UDP;
//! - `tcp`: the same three kinds of names in the same proportions, over a
//!   few persistent TCP connections that pipeline, plus a new short
//!   connection every `--tcp-new-ms` (two queries, then closed);
//! - `malformed`: packets no server should answer normally (a header cut
//!   short, random bytes, a question cut short, an OPT whose length runs
//!   past the end, two OPTs, EDNS version 1, no question, a compression
//!   loop). No answer is owed, so one that does not come is counted as
//!   "unanswered", never as lost; what does come is counted by rcode.
//!
//! Half the UDP queries carry EDNS (1232), as the lab's clients mix.
//!
//! Open loop: with `-r RATE` the queries leave on a fixed schedule
//! (`sendmmsg` batches of what is due), whether or not earlier ones were
//! answered, so a server that slows down meets the same load and not a
//! politely waiting client. Between batches the thread sleeps (at most
//! 200 µs), leaving its core to the upstream that shares it, and then reads
//! every answer that came: UDP latency is measured to the kernel's receive
//! timestamp (`SO_TIMESTAMPNS`), so reading late does not add to it (TCP
//! latency is to the read, so it may carry up to that sleep). When the
//! generator itself was not scheduled (a busy machine), it catches up at no
//! more than 1.25 times the rate, and a backlog over 100 ms is skipped and
//! counted, so its own pauses never reach the server as bursts. Without `-r`
//! it is closed loop and never sleeps (at most `-q` UDP queries in flight,
//! like the lab's `blast`): the saturating run that measures the peak.
//!
//! Every query is charged to the interval, and to the second, in which it
//! was sent: lost (no answer within `-t`, default 3 s, longer than the
//! server's upstream timeout, so a stalled upstream shows as SERVFAIL and
//! not as loss), answered by rcode, and its latency in a log-linear
//! histogram (3 % buckets) per class. Where a loss happened shows in the
//! kernel's drop counters of each side's UDP sockets (`/proc/net/udp`),
//! sampled with the rest.
//!
//! Two events, once per interval, at fixed offsets:
//! - `--proxy LISTEN,UPSTREAM`: a UDP proxy in front of the upstream, which
//!   the server forwards to; from `--stall-at` for `--stall-for` seconds of
//!   each interval it drops every query and answer (an upstream that stops
//!   answering);
//! - `--reload-cmd CMD` runs `sh -c CMD` at `--reload-at` (the soak script's
//!   command rewrites the list and waits until the server serves it); its
//!   last line of output is reported.
//!
//! With `--pid`, each interval ends with the server's VmRSS and CPU, the
//! CPU of this process and of `--watch` processes (the upstream), what
//! the rest of the machine used, and the load average.
//!
//! ```text
//! cargo run --release -p embargo-soak -- -s 127.0.0.1:15375 --blocked q-blocked.txt \
//!   --cached q-hot.txt --forwarded q-allowed.txt -r 100000 -l 600 -w 40
//! ```
//!
//! Prints a markdown table (one row per interval and a total) and, with
//! `--json FILE`, writes the same rows with every counter. IPv4, loopback.
//!
//! The rooms, one concern each:
//!
//! ```text
//! cli        flags -> Opts             schedule   rows, stalls, reloads: when
//! mix        classes, weights, order   pacing     open loop: what is due now
//! queries    query files -> wire       run        the sending loop
//! malformed  the bad packets           udp        sendmmsg/recvmmsg, timestamps
//! rcode      what an answer says
//! table      IDs in flight             tcp        pipelining connections
//! stats      fates by row and second   proxy      the stalling upstream
//! sample     /proc: RSS, CPU, drops    reload     the reload command
//! report     markdown rows and JSON
//! ```

mod cli;
mod malformed;
mod mix;
mod pacing;
mod proxy;
mod queries;
mod rcode;
mod reload;
mod report;
mod run;
mod sample;
mod schedule;
mod stats;
mod table;
mod tcp;
mod udp;

fn main() {
    let opts = cli::parse().unwrap_or_else(|e| fail(&e));
    let finished = run::run(opts, report::progress).unwrap_or_else(|e| fail(&e));
    report::report(&finished);
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("embargo-soak: {e}");
    std::process::exit(2);
}
