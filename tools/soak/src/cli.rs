//! The command line, in two stages: what the user typed ([`Args`], clap),
//! then the values the run uses ([`Opts`]), checked and clamped.

use std::net::SocketAddrV4;
use std::path::PathBuf;

use clap::Parser;

use crate::mix::{self, CLASSES, Mix, TCP};

/// What the user typed.
#[derive(Parser)]
#[command(
    name = "embargo-soak",
    about = "The soak's load generator: a paced mix of DNS traffic, a stalling upstream proxy, per-interval rows"
)]
struct Args {
    /// The server (IPv4:PORT).
    #[arg(short = 's', value_name = "HOST:PORT", default_value = "127.0.0.1:53")]
    server: SocketAddrV4,
    /// Listed names and their subdomains (a dnsperf file, the lab's q-blocked.txt).
    #[arg(long, value_name = "FILE")]
    blocked: Option<PathBuf>,
    /// A hot set, sent by its distinct names (the lab's q-hot.txt).
    #[arg(long, value_name = "FILE")]
    cached: Option<PathBuf>,
    /// Distinct names that are not listed (the lab's q-allowed.txt).
    #[arg(long, value_name = "FILE")]
    forwarded: Option<PathBuf>,
    /// Seconds of load after the warm-up.
    #[arg(short = 'l', value_name = "SECONDS", default_value_t = 60.0)]
    secs: f64,
    /// Seconds of warm-up first (a row of its own, not in the total).
    #[arg(short = 'w', value_name = "SECONDS", default_value_t = 0.0)]
    warmup: f64,
    /// Seconds per row of the report.
    #[arg(short = 'i', value_name = "SECONDS", default_value_t = 60.0)]
    interval: f64,
    /// Queries a second, open loop; 0: closed loop (at most -q UDP queries in flight).
    #[arg(short = 'r', value_name = "QPS", default_value_t = 0.0)]
    rate: f64,
    /// UDP queries in flight in the closed loop.
    #[arg(short = 'q', value_name = "COUNT", default_value_t = 256)]
    outstanding: usize,
    /// UDP sockets.
    #[arg(short = 'c', value_name = "COUNT", default_value_t = 16)]
    socks: usize,
    /// Datagrams per sendmmsg/recvmmsg (1 to 1024).
    #[arg(short = 'b', value_name = "COUNT", default_value_t = 32)]
    batch: usize,
    /// Seconds after which a query owed an answer counts as lost.
    #[arg(short = 't', value_name = "SECONDS", default_value_t = 3.0)]
    timeout: f64,
    /// Class weights; a class not named is 0.
    #[arg(
        long,
        value_name = "CLASS=WEIGHT,...",
        default_value = "blocked=70,cached=20,forwarded=5,tcp=3,malformed=2",
        value_parser = mix::parse
    )]
    mix: Mix,
    /// Percent of the UDP queries that carry EDNS (1232).
    #[arg(long = "edns", value_name = "PERCENT", default_value_t = 50)]
    edns_percent: u32,
    /// Persistent pipelining TCP connections.
    #[arg(long, value_name = "COUNT", default_value_t = 4)]
    tcp_conns: usize,
    /// A new short TCP connection (two queries) every this many ms; 0: none.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    tcp_new_ms: u64,
    /// A stalling UDP proxy: listen here (the server's upstream), forward there.
    #[arg(long, value_name = "LISTEN,UPSTREAM", value_parser = parse_proxy)]
    proxy: Option<ProxyAddrs>,
    /// Seconds into each interval when the proxy stops answering.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    stall_at: f64,
    /// How long it stays silent; 0: no stall.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    stall_for: f64,
    /// A command (sh -c) run once per interval; its last line is reported.
    #[arg(long, value_name = "CMD")]
    reload_cmd: Option<String>,
    /// Seconds into each interval when the command runs.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    reload_at: f64,
    /// The server's pid: its RSS and CPU in every row.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Another process whose CPU to count apart (the upstream); repeatable.
    #[arg(long, value_name = "PID")]
    watch: Vec<u32>,
    /// Write every row, every counter and a per-second timeline here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Where each query file starts and the malformed packets' bytes.
    #[arg(long, value_name = "NUMBER", default_value_t = 1)]
    seed: u64,
}

/// The stalling proxy's two addresses.
#[derive(Clone, Copy)]
pub(crate) struct ProxyAddrs {
    pub(crate) listen: SocketAddrV4,
    pub(crate) upstream: SocketAddrV4,
}

fn parse_proxy(v: &str) -> Result<ProxyAddrs, String> {
    let bad = || "expected LISTEN,UPSTREAM as IPv4:PORT,IPv4:PORT".to_string();
    let (l, u) = v.split_once(',').ok_or_else(bad)?;
    Ok(ProxyAddrs {
        listen: l.trim().parse().map_err(|_| bad())?,
        upstream: u.trim().parse().map_err(|_| bad())?,
    })
}

/// What the run uses.
pub(crate) struct Opts {
    pub(crate) server: SocketAddrV4,
    /// The query files of blocked, cached and forwarded, where their weight is > 0.
    pub(crate) files: [Option<PathBuf>; 3],
    pub(crate) secs: f64,
    pub(crate) warmup: f64,
    pub(crate) interval: f64,
    pub(crate) rate: f64,
    pub(crate) outstanding: usize,
    pub(crate) socks: usize,
    pub(crate) batch: usize,
    pub(crate) timeout: f64,
    pub(crate) mix: Mix,
    pub(crate) edns_percent: u32,
    pub(crate) tcp_conns: usize,
    pub(crate) tcp_new_ms: u64,
    pub(crate) proxy: Option<ProxyAddrs>,
    pub(crate) stall_at: f64,
    pub(crate) stall_for: f64,
    pub(crate) reload_cmd: Option<String>,
    pub(crate) reload_at: f64,
    pub(crate) pid: Option<u32>,
    pub(crate) watch: Vec<u32>,
    pub(crate) json: Option<PathBuf>,
    pub(crate) seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("--{class} FILE is required (or --mix {class}=0)")]
    MissingFile { class: &'static str },
    #[error("--mix: tcp sends blocked, cached and forwarded names: one must be > 0")]
    TcpWithoutNames,
    #[error("-l, -i and -t must be > 0, -w >= 0")]
    Durations,
}

/// Parses the process's arguments; `--help` and usage errors exit here (2).
pub(crate) fn parse() -> Result<Opts, Error> {
    Args::parse().into_opts()
}

impl Args {
    fn into_opts(self) -> Result<Opts, Error> {
        let files = [self.blocked, self.cached, self.forwarded];
        for (c, f) in files.iter().enumerate() {
            // TCP sends only the kinds of names whose weight is above 0.
            if f.is_none() && self.mix[c] > 0 {
                return Err(Error::MissingFile { class: CLASSES[c] });
            }
        }
        if self.mix[..3].iter().all(|w| *w == 0) && self.mix[TCP] > 0 {
            return Err(Error::TcpWithoutNames);
        }
        if self.secs <= 0.0 || self.interval <= 0.0 || self.warmup < 0.0 || self.timeout <= 0.0 {
            return Err(Error::Durations);
        }
        Ok(Opts {
            server: self.server,
            files,
            secs: self.secs,
            warmup: self.warmup,
            interval: self.interval,
            rate: self.rate,
            outstanding: self.outstanding,
            socks: self.socks.max(1),
            batch: self.batch.clamp(1, 1024),
            timeout: self.timeout,
            mix: self.mix,
            edns_percent: self.edns_percent,
            tcp_conns: self.tcp_conns.max(1),
            tcp_new_ms: self.tcp_new_ms,
            proxy: self.proxy,
            stall_at: self.stall_at,
            stall_for: self.stall_for,
            reload_cmd: self.reload_cmd,
            reload_at: self.reload_at,
            pid: self.pid,
            watch: self.watch,
            json: self.json,
            seed: self.seed,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Opts, Error> {
        let mut argv = vec!["embargo-soak"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv).unwrap().into_opts()
    }

    const FILES: [&str; 6] = [
        "--blocked",
        "q-blocked.txt",
        "--cached",
        "q-hot.txt",
        "--forwarded",
        "q-allowed.txt",
    ];

    #[test]
    fn the_scripts_command_lines_parse() {
        // benches/soak.sh: gen() and the peak run, then the soak.
        let mut common = vec!["-s", "127.0.0.1:15375"];
        common.extend_from_slice(&FILES);
        common.extend_from_slice(&[
            "--mix",
            "blocked=70,cached=20,forwarded=5,tcp=3,malformed=2",
            "--proxy",
            "127.0.0.1:15376,127.0.0.1:15374",
            "--pid",
            "4242",
            "--watch",
            "4343",
        ]);
        let mut peak = common.clone();
        peak.extend_from_slice(&[
            "-q",
            "256",
            "-c",
            "8",
            "-w",
            "3",
            "-l",
            "15",
            "-i",
            "15",
            "--stall-for",
            "0",
            "--seed",
            "2",
            "--json",
            "out-peak.json",
        ]);
        let o = opts(&peak).unwrap();
        assert_eq!((o.outstanding, o.socks, o.rate), (256, 8, 0.0));
        assert_eq!(
            (o.warmup, o.secs, o.interval, o.stall_for),
            (3.0, 15.0, 15.0, 0.0)
        );
        assert_eq!(o.pid, Some(4242));
        assert_eq!(o.watch, [4343]);
        let p = o.proxy.unwrap();
        assert_eq!(p.listen.port(), 15376);
        assert_eq!(p.upstream.port(), 15374);
        assert_eq!(o.files[1].as_deref(), Some("q-hot.txt".as_ref()));

        let mut soak = common;
        soak.extend_from_slice(&[
            "-r",
            "100000",
            "-w",
            "40",
            "-l",
            "600",
            "-i",
            "60",
            "--stall-at",
            "30",
            "--stall-for",
            "3",
            "--reload-cmd",
            "/tmp/reload.sh",
            "--reload-at",
            "10",
            "--seed",
            "3",
            "--json",
            "out.json",
        ]);
        let o = opts(&soak).unwrap();
        assert_eq!((o.rate, o.stall_at, o.reload_at), (100_000.0, 30.0, 10.0));
        assert_eq!(o.reload_cmd.as_deref(), Some("/tmp/reload.sh"));
        assert_eq!(o.mix, [70, 20, 5, 3, 2]);
        assert_eq!(o.edns_percent, 50);
    }

    #[test]
    fn a_class_with_weight_needs_its_file() {
        let e = opts(&["--blocked", "b", "--cached", "c"]);
        assert!(matches!(e, Err(Error::MissingFile { class: "forwarded" })));
        assert!(opts(&["--blocked", "b", "--mix", "blocked=1,malformed=1"]).is_ok());
        let e = opts(&["--mix", "tcp=1,malformed=1"]);
        assert!(matches!(e, Err(Error::TcpWithoutNames)));
    }

    #[test]
    fn durations_and_addresses_are_checked() {
        let mut a = FILES.to_vec();
        a.extend_from_slice(&["-l", "0"]);
        assert!(matches!(opts(&a), Err(Error::Durations)));
        assert!(Args::try_parse_from(["embargo-soak", "--proxy", "127.0.0.1:1"]).is_err());
        assert!(Args::try_parse_from(["embargo-soak", "--mix", "blocked=x"]).is_err());
    }
}
