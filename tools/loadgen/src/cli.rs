//! The command line, in two stages: what the user typed ([`Args`], clap),
//! then the values the loop runs on ([`Opts`]), checked and clamped.
//!
//! The flags are blast's, so that the lab's scripts drive both alike;
//! `-m doq` (dnsperf's `-m`) adds DoQ's: `--ca FILE` or `--insecure`,
//! `--sni NAME` and `-Q QPS`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::doq::{Doq, Trust};
use crate::source::{self, Sources};

/// What the user typed.
#[derive(Parser)]
#[command(
    name = "embargo-loadgen",
    about = "blast from many source addresses: closed-loop UDP load, each query from its own 127.a.b.c; or DoQ load (-m doq)"
)]
struct Args {
    /// The transport: udp (a datagram per query, each from its own
    /// address) or doq (RFC 9250: QUIC connections, a stream per query).
    #[arg(short = 'm', value_name = "MODE", default_value = "udp")]
    mode: ModeArg,
    /// The server to load (IPv4:PORT).
    #[arg(short = 's', value_name = "HOST:PORT", default_value = "127.0.0.1:53")]
    server: SocketAddrV4,
    /// A dnsperf query file: "name TYPE" a line.
    #[arg(short = 'd', value_name = "FILE")]
    file: PathBuf,
    /// How long to send, in seconds (then wait for what is in flight).
    #[arg(short = 'l', value_name = "SECONDS", default_value_t = 10.0)]
    secs: f64,
    /// How many source addresses to cycle through.
    #[arg(short = 'a', value_name = "ADDRESSES", default_value_t = 65_536)]
    addresses: u32,
    /// The first source address (all of them must lie in 127.0.0.0/8).
    #[arg(short = 'f', value_name = "FIRST", default_value = "127.1.0.0")]
    first: Ipv4Addr,
    /// UDP sockets, or DoQ connections (each from the next source address).
    #[arg(short = 'c', value_name = "SOCKETS", default_value_t = 8)]
    socks: usize,
    /// Queries in flight, over all sockets or connections.
    #[arg(short = 'q', value_name = "OUTSTANDING", default_value_t = 256)]
    outstanding: usize,
    /// Datagrams per sendmmsg/recvmmsg (1 to 1024).
    #[arg(short = 'b', value_name = "BATCH", default_value_t = 32)]
    batch: usize,
    /// Seconds after which a query with no answer counts as lost.
    #[arg(short = 't', value_name = "TIMEOUT_S", default_value_t = 2.0)]
    timeout: f64,
    /// Send an EDNS0 OPT record (1232 bytes) with every query.
    #[arg(short = 'e')]
    edns: bool,
    /// DoQ: the CA certificates (PEM) the server's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// DoQ: accept any certificate (benches against a self-signed one).
    #[arg(long)]
    insecure: bool,
    /// DoQ: the name to ask the handshake for and check the certificate
    /// against (default: the server's address).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// DoQ: at most this many queries a second (default: as fast as the
    /// answers come back), for latency below saturation.
    #[arg(short = 'Q', value_name = "QPS")]
    rate: Option<f64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Udp,
    Doq,
}

/// The transport and what it alone needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mode {
    Udp,
    Doq(Doq),
}

/// What the loop runs on.
pub(crate) struct Opts {
    pub(crate) server: SocketAddrV4,
    pub(crate) file: PathBuf,
    pub(crate) secs: f64,
    pub(crate) sources: Sources,
    pub(crate) socks: usize,
    pub(crate) outstanding: usize,
    pub(crate) batch: usize,
    pub(crate) timeout: f64,
    pub(crate) edns: bool,
    pub(crate) mode: Mode,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("-f/-a: {0}")]
    Sources(#[from] source::Error),
    #[error("-m doq: --ca FILE (the server's CA certificates) or --insecure (any certificate)")]
    NoTrust,
    #[error("-m doq: --ca or --insecure, not both")]
    BothTrusts,
    #[error("-Q {0}: a rate is a number of queries a second above 0")]
    Rate(f64),
    #[error("{0} is for -m doq only")]
    DoqOnly(&'static str),
}

/// Parses the process's arguments; `--help` and usage errors exit here (2).
pub(crate) fn parse() -> Result<Opts, Error> {
    Args::parse().into_opts()
}

impl Args {
    fn into_opts(self) -> Result<Opts, Error> {
        let mode = match self.mode {
            ModeArg::Udp => {
                let doq_only = [
                    (self.ca.is_some(), "--ca"),
                    (self.insecure, "--insecure"),
                    (self.sni.is_some(), "--sni"),
                    (self.rate.is_some(), "-Q"),
                ];
                if let Some((_, flag)) = doq_only.iter().find(|(given, _)| *given) {
                    return Err(Error::DoqOnly(flag));
                }
                Mode::Udp
            }
            ModeArg::Doq => {
                let trust = match (self.ca, self.insecure) {
                    (Some(ca), false) => Trust::Ca(ca),
                    (None, true) => Trust::Insecure,
                    (None, false) => return Err(Error::NoTrust),
                    (Some(_), true) => return Err(Error::BothTrusts),
                };
                if let Some(r) = self.rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
                    return Err(Error::Rate(r));
                }
                Mode::Doq(Doq {
                    trust,
                    sni: self.sni.unwrap_or_else(|| self.server.ip().to_string()),
                    rate: self.rate,
                })
            }
        };
        Ok(Opts {
            server: self.server,
            file: self.file,
            secs: self.secs,
            sources: Sources::new(self.first, self.addresses)?,
            socks: self.socks.max(1),
            outstanding: self.outstanding,
            batch: self.batch.clamp(1, 1024),
            timeout: self.timeout,
            edns: self.edns,
            mode,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Opts, Error> {
        let mut argv = vec!["embargo-loadgen"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv).unwrap().into_opts()
    }

    #[test]
    fn the_scripts_command_line_parses() {
        // benches/limiter.sh and benches/groups.sh, word for word.
        let o = opts(&[
            "-s",
            "127.0.0.1:15341",
            "-d",
            "q-blocked.txt",
            "-l",
            "10",
            "-a",
            "65536",
            "-c",
            "8",
            "-q",
            "128",
            "-b",
            "32",
            "-t",
            "2",
        ])
        .unwrap();
        assert_eq!(o.server, "127.0.0.1:15341".parse().unwrap());
        assert_eq!(o.file, PathBuf::from("q-blocked.txt"));
        assert_eq!((o.secs, o.timeout), (10.0, 2.0));
        assert_eq!((o.socks, o.outstanding, o.batch), (8, 128, 32));
        assert_eq!(o.sources.len(), 65_536);
        assert!(!o.edns);
        assert_eq!(o.mode, Mode::Udp);
    }

    #[test]
    fn the_doq_mode_and_its_flags() {
        // benches/encrypted.sh's DoQ run, word for word.
        let o = opts(&[
            "-m",
            "doq",
            "-s",
            "127.0.0.1:15854",
            "--insecure",
            "--sni",
            "dns.test",
            "-d",
            "q-blocked.txt",
            "-l",
            "30",
            "-c",
            "16",
            "-q",
            "256",
            "-t",
            "2",
        ])
        .unwrap();
        assert_eq!((o.socks, o.outstanding), (16, 256));
        let want = Doq {
            trust: Trust::Insecure,
            sni: "dns.test".into(),
            rate: None,
        };
        assert_eq!(o.mode, Mode::Doq(want));
        // The SNI defaults to the server's address; a CA file; a rate.
        let o = opts(&[
            "-m",
            "doq",
            "-s",
            "127.0.0.2:853",
            "--ca",
            "ca.pem",
            "-Q",
            "5000",
            "-d",
            "q",
        ])
        .unwrap();
        let want = Doq {
            trust: Trust::Ca("ca.pem".into()),
            sni: "127.0.0.2".into(),
            rate: Some(5000.0),
        };
        assert_eq!(o.mode, Mode::Doq(want));
    }

    #[test]
    fn doq_needs_one_trust_and_udp_takes_no_doq_flag() {
        let e = |args: &[&str]| opts(args).err().map(|e| e.to_string());
        assert!(matches!(
            opts(&["-m", "doq", "-d", "q"]),
            Err(Error::NoTrust)
        ));
        assert!(matches!(
            opts(&["-m", "doq", "--ca", "c", "--insecure", "-d", "q"]),
            Err(Error::BothTrusts)
        ));
        assert!(matches!(
            opts(&["-m", "doq", "--insecure", "-Q", "0", "-d", "q"]),
            Err(Error::Rate(_))
        ));
        assert_eq!(
            e(&["--insecure", "-d", "q"]).as_deref(),
            Some("--insecure is for -m doq only")
        );
        assert_eq!(
            e(&["-Q", "10", "-d", "q"]).as_deref(),
            Some("-Q is for -m doq only")
        );
        assert!(Args::try_parse_from(["embargo-loadgen", "-m", "dot", "-d", "q"]).is_err());
    }

    #[test]
    fn defaults_and_clamps() {
        let o = opts(&["-d", "q", "-e", "-b", "5000", "-c", "0"]).unwrap();
        assert_eq!(o.server, "127.0.0.1:53".parse().unwrap());
        assert_eq!((o.batch, o.socks), (1024, 1));
        assert!(o.edns);
        assert_eq!(o.sources.first(), Ipv4Addr::new(127, 1, 0, 0));
    }

    #[test]
    fn the_file_is_required_and_sources_must_be_loopback() {
        assert!(Args::try_parse_from(["embargo-loadgen", "-s", "127.0.0.1:53"]).is_err());
        let e = opts(&["-d", "q", "-f", "127.255.255.0", "-a", "512"]);
        assert!(matches!(e, Err(Error::Sources(_))));
    }
}
