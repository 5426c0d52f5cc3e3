//! Issue 16 (2): an RPZ feed read with RPZ's meaning. `x CNAME .` covers
//! `x` alone and `*.x CNAME .` only the names below `x`; an
//! `rpz-passthru` exempts a name from its own feed's triggers, never from
//! another list's block. Real queries over UDP against the real server,
//! with an upstream that answers every name the feed does not block.

use std::net::IpAddr;
use std::process::Command;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, Upstream, config, ede, query, udp_from};

/// Names the upstream answers (appended to `up.test.`), so that a name the
/// lists let through gets NOERROR and an A record, never NXDOMAIN.
fn zone() -> Vec<String> {
    [
        "exact           IN A 192.0.2.1",
        "www.exact       IN A 192.0.2.2",
        "below           IN A 192.0.2.3",
        "a.below         IN A 192.0.2.4",
        "sanctioned      IN A 192.0.2.5",
        "www.sanctioned  IN A 192.0.2.6",
        "bad.wild        IN A 192.0.2.7",
        "good.wild       IN A 192.0.2.8",
        "www.good.wild   IN A 192.0.2.9",
        "x.okbelow.wild  IN A 192.0.2.10",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// A vendor's policy zone: each trigger form, passthrus of its own
/// wildcard, and passthrus of a name another list blocks.
const FEED: &str = "$TTL 300
$ORIGIN rpz.vendor.test.
@ SOA ns.vendor.test. hostmaster.vendor.test. 1 3600 600 86400 60
  NS ns.vendor.test.
exact.up.test              CNAME .
*.below.up.test            CNAME .
*.wild.up.test             CNAME *.
good.wild.up.test          CNAME rpz-passthru.
*.okbelow.wild.up.test     CNAME rpz-passthru.
sanctioned.up.test         CNAME rpz-passthru.
*.sanctioned.up.test       CNAME rpz-passthru.
";

/// The feed first in config order (so no "first list wins" rule can mask
/// the bug), then a plain sanctions list naming `sanctioned.up.test`.
const LISTS: &str = r#"
[[lists]]
name = "vendor"
source = "vendor.rpz"
format = "rpz"
authority = "threat-intel vendor"

[[lists]]
name = "sanctions"
source = "sanctions.txt"
authority = "US Treasury OFAC"
reason = "Sanctioned entity"
ede = "censored"
"#;

/// `plain-only` does not apply the feed; `feed-only` applies only it.
const GROUPS: &str = r#"
[[groups]]
name = "plain-only"
clients = ["127.0.0.2/32"]
lists = ["seized", "sanctions"]

[[groups]]
name = "feed-only"
clients = ["127.0.0.3/32"]
lists = ["vendor"]
"#;

const FILES: &[(&str, &str)] = &[
    ("vendor.rpz", FEED),
    ("sanctions.txt", "sanctioned.up.test\n"),
];

/// What a client got: NOERROR with an address (let through), or the
/// RCODE and EDE of a block.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Through,
    Blocked(ResponseCode, u16, String),
}

fn got(name: &str, r: &Message) -> Got {
    if r.metadata.response_code == ResponseCode::NoError && !r.answers.is_empty() {
        return Got::Through;
    }
    let (code, text) =
        ede(r).unwrap_or_else(|| panic!("{name}: neither answered nor blocked: {r:?}"));
    Got::Blocked(r.metadata.response_code, code, text)
}

async fn ask(e: &Embargo, from: &str, name: &str) -> Got {
    let from: IpAddr = from.parse().expect("ip");
    got(
        name,
        &udp_from(from, e.addr, &query(name, RecordType::A, true)).await,
    )
}

fn by_vendor(rcode: ResponseCode) -> Got {
    Got::Blocked(rcode, 15, "blocked by vendor (threat-intel vendor)".into())
}

fn by_sanctions() -> Got {
    Got::Blocked(
        ResponseCode::NXDomain,
        16,
        "blocked by sanctions (US Treasury OFAC): Sanctioned entity".into(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn r16_rpz_triggers_cover_what_rpz_says_and_passthru_stays_in_its_feed() {
    let up = Upstream::start_with(&zone()).await;
    let e = Embargo::start(&config(up.addr, LISTS), FILES).await;
    let cases = [
        // `x CNAME .`: x alone.
        ("exact.up.test.", by_vendor(ResponseCode::NXDomain)),
        ("www.exact.up.test.", Got::Through),
        // `*.y CNAME .`: below y, not y.
        ("a.below.up.test.", by_vendor(ResponseCode::NXDomain)),
        ("below.up.test.", Got::Through),
        // The feed's passthru does not unblock another list's name...
        ("sanctioned.up.test.", by_sanctions()),
        ("www.sanctioned.up.test.", by_sanctions()),
        // ...but does unblock the feed's own wildcard, for the names it names.
        ("bad.wild.up.test.", by_vendor(ResponseCode::NoError)),
        ("good.wild.up.test.", Got::Through),
        ("www.good.wild.up.test.", by_vendor(ResponseCode::NoError)),
        ("x.okbelow.wild.up.test.", Got::Through),
    ];
    let mut wrong = Vec::new();
    for (name, want) in cases {
        let got = ask(&e, "127.0.0.1", name).await;
        if got != want {
            wrong.push(format!("{name} got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // `embargo check` names the entry as the feed writes it.
    let out = Command::new(env!("CARGO_BIN_EXE_embargo"))
        .args(["check", "-c"])
        .arg(e.dir().join("embargo.toml"))
        .args([
            "a.below.up.test",
            "exact.up.test",
            "www.sanctioned.up.test",
            "good.wild.up.test",
        ])
        .output()
        .expect("check");
    let out = String::from_utf8_lossy(&out.stdout);
    for line in [
        "a.below.up.test\tblocked\tlist=vendor entry=*.below.up.test action=nxdomain",
        "exact.up.test\tblocked\tlist=vendor entry=exact.up.test action=nxdomain",
        "www.sanctioned.up.test\tblocked\tlist=sanctions entry=sanctioned.up.test action=nxdomain",
        "good.wild.up.test\tallowed\trpz-passthru of vendor (entry good.wild.up.test)",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    e.stop().await;
}

/// A client group that does not apply the feed does not get its passthru
/// either; one that applies only the feed gets it.
#[tokio::test(flavor = "multi_thread")]
async fn r16_rpz_passthru_follows_the_groups_that_apply_the_feed() {
    let up = Upstream::start_with(&zone()).await;
    let e = Embargo::start(&config(up.addr, &format!("{LISTS}{GROUPS}")), FILES).await;
    let mut wrong = Vec::new();
    for (from, name, want) in [
        ("127.0.0.1", "sanctioned.up.test.", by_sanctions()),
        ("127.0.0.2", "sanctioned.up.test.", by_sanctions()),
        ("127.0.0.2", "www.sanctioned.up.test.", by_sanctions()),
        ("127.0.0.2", "bad.wild.up.test.", Got::Through),
        ("127.0.0.3", "sanctioned.up.test.", Got::Through),
        ("127.0.0.3", "good.wild.up.test.", Got::Through),
        (
            "127.0.0.3",
            "bad.wild.up.test.",
            by_vendor(ResponseCode::NoError),
        ),
        (
            "127.0.0.3",
            "www.good.wild.up.test.",
            by_vendor(ResponseCode::NoError),
        ),
    ] {
        let got = ask(&e, from, name).await;
        if got != want {
            wrong.push(format!("{from} {name} got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    e.stop().await;
}
