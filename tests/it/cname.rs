//! CNAME inspection (issue 12): a forwarded answer whose CNAME chain leads
//! to a listed name is answered with that list's block, as if the client
//! had asked the listed name (SOA owned by the listed entry, an EDE naming
//! the list and the CNAME); the verdict is cached, per group where groups
//! differ; a list with `inspect_cname = false` lets such chains through.
//! The upstream is the harness's real hickory server with the CNAMEs of
//! [`crate::groups::zone`].

use std::net::IpAddr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::groups::{FILES, start, zone};
use crate::harness::{Embargo, Upstream, config, ede, query, udp, udp_from};

/// A list whose names block when asked, but not when reached through a CNAME.
const HUSH: &str = "\n[[lists]]\nname = \"hush\"\nsource = \"hush.txt\"\ninspect_cname = false\n";

fn soa_owner(r: &Message) -> Option<(String, u32, u32)> {
    r.authorities.iter().find_map(|rec| match &rec.data {
        RData::SOA(soa) => Some((rec.name.to_string(), rec.ttl, soa.minimum)),
        _ => None,
    })
}

fn a_record(r: &Message) -> Option<String> {
    r.answers.iter().find_map(|rec| match &rec.data {
        RData::A(a) => Some(a.to_string()),
        _ => None,
    })
}

/// Asserts `r` is `list`'s block of `listed`, reached through `owner -> target`.
fn assert_through(
    r: &Message,
    rcode: ResponseCode,
    code: u16,
    list: &str,
    listed: &str,
    via: &str,
) {
    assert_eq!(r.metadata.response_code, rcode, "{r:?}");
    assert!(r.answers.is_empty(), "no chain is passed on: {r:?}");
    if rcode == ResponseCode::NXDomain {
        let (owner, ttl, minimum) = soa_owner(r).expect("an SOA");
        assert_eq!(owner, listed, "the SOA is the listed entry's");
        assert!(ttl <= 300 && ttl == minimum, "{ttl} {minimum}");
    }
    let (got, text) = ede(r).expect("an EDE");
    assert_eq!(got, code, "{text}");
    assert!(text.contains(&format!("blocked by {list}")), "{text}");
    assert!(
        text.contains(&format!("reached through CNAME {via}")),
        "{text}"
    );
}

async fn start_plain(up: &Upstream, extra: &str) -> Embargo {
    let mut files = FILES.to_vec();
    files.push(("hush.txt", "hush.up.test\n"));
    let cfg = config(up.addr, &format!("{}{HUSH}{extra}", LISTS_TRACKERS)).replace(
        "domains = [\"allowed.seized.example\"]",
        "domains = [\"allowed.seized.example\", \"door.up.test\"]",
    );
    Embargo::start(&cfg, &files).await
}

const LISTS_TRACKERS: &str =
    "\n[[lists]]\nname = \"trackers\"\nsource = \"trackers.txt\"\nreason = \"Tracking\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_through_a_listed_name_is_blocked_and_the_verdict_cached() {
    let up = Upstream::start_with(&zone()).await;
    let e = start_plain(&up, "").await;
    use ResponseCode::{NXDomain, NoError};

    // One hop, two hops, and a target in another zone (a censored list).
    let r = udp(e.addr, &query("cdn.up.test.", RecordType::A, true)).await;
    assert_through(
        &r,
        NXDomain,
        15,
        "trackers",
        "ads.up.test.",
        "cdn.up.test -> ads.up.test",
    );
    let r = udp(e.addr, &query("Deep.up.test.", RecordType::A, true)).await;
    assert_through(
        &r,
        NXDomain,
        15,
        "trackers",
        "ads.up.test.",
        "cdn.up.test -> ads.up.test",
    );
    assert_eq!(
        r.queries[0].name().to_string(),
        "Deep.up.test.",
        "the question as asked"
    );
    let r = udp(e.addr, &query("front.up.test.", RecordType::A, true)).await;
    assert_through(
        &r,
        NXDomain,
        16,
        "seized",
        "seized.example.",
        "front.up.test -> seized.example",
    );

    // The verdict is cached: asked again, nothing goes upstream and the
    // answer is the same block (EDE included).
    for _ in 0..3 {
        let r = udp(e.addr, &query("cdn.up.test.", RecordType::A, true)).await;
        assert_through(
            &r,
            NXDomain,
            15,
            "trackers",
            "ads.up.test.",
            "cdn.up.test -> ads.up.test",
        );
    }
    assert_eq!(up.count("cdn.up.test"), 1, "{:?}", up.seen());
    // A client without EDNS gets the block without an OPT.
    let r = udp(e.addr, &query("cdn.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, NXDomain);
    assert!(r.edns.is_none(), "{r:?}");

    // inspect_cname = false: hush blocks hush.up.test itself, not the chain to it.
    let r = udp(e.addr, &query("quiet.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, NoError);
    assert_eq!(a_record(&r).as_deref(), Some("192.0.2.41"));
    assert!(ede(&r).is_none());
    let r = udp(e.addr, &query("hush.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, NXDomain);

    // An allowlisted name's chain is not inspected.
    let r = udp(e.addr, &query("door.up.test.", RecordType::A, true)).await;
    assert_eq!(a_record(&r).as_deref(), Some("192.0.2.40"), "{r:?}");

    // Plain chains pass through untouched.
    let r = udp(e.addr, &query("chain.up.test.", RecordType::A, true)).await;
    assert_eq!(a_record(&r).as_deref(), Some("192.0.2.10"), "{r:?}");
    e.stop().await;
}

/// With groups, a chain blocked for one group is not served as a block to
/// a group that does not apply the list, nor the chain to one that does,
/// whichever asks first; the upstream is asked once either way.
#[tokio::test(flavor = "multi_thread")]
async fn a_cached_cname_verdict_is_only_for_the_groups_that_apply_the_list() {
    let up = Upstream::start_with(&zone()).await;
    let groups = r#"
[[groups]]
name = "servers"
clients = ["127.0.0.2/32"]
lists = ["malware"]

[[groups]]
name = "lab"
clients = ["127.0.1.0/24"]
lists = ["seized"]
action = "refused"
"#;
    let e = start(&up, groups).await;
    let default: IpAddr = "127.0.0.1".parse().expect("ip");
    let servers: IpAddr = "127.0.0.2".parse().expect("ip");
    let lab: IpAddr = "127.0.1.9".parse().expect("ip");
    let ask = async |client: IpAddr, name: &str| {
        udp_from(client, e.addr, &query(name, RecordType::A, true)).await
    };
    use ResponseCode::{NXDomain, Refused};

    // The blocking group asks first, then one that does not apply trackers.
    for round in 0..2 {
        let r = ask(default, "cdn.up.test.").await;
        assert_through(
            &r,
            NXDomain,
            15,
            "trackers",
            "ads.up.test.",
            "cdn.up.test -> ads.up.test",
        );
        let r = ask(servers, "cdn.up.test.").await;
        assert_eq!(
            a_record(&r).as_deref(),
            Some("192.0.2.40"),
            "round {round}: {r:?}"
        );
        assert!(ede(&r).is_none(), "{r:?}");
    }
    // The other way round.
    for round in 0..2 {
        let r = ask(servers, "deep.up.test.").await;
        assert_eq!(
            a_record(&r).as_deref(),
            Some("192.0.2.40"),
            "round {round}: {r:?}"
        );
        let r = ask(default, "deep.up.test.").await;
        assert_through(
            &r,
            NXDomain,
            15,
            "trackers",
            "ads.up.test.",
            "cdn.up.test -> ads.up.test",
        );
    }
    // A group's own action applies to what its chain reaches.
    let r = ask(lab, "front.up.test.").await;
    assert_through(
        &r,
        Refused,
        16,
        "seized",
        "",
        "front.up.test -> seized.example",
    );
    let r = ask(servers, "front.up.test.").await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert!(ede(&r).is_none(), "{r:?}");
    let r = ask(default, "front.up.test.").await;
    assert_through(
        &r,
        NXDomain,
        16,
        "seized",
        "seized.example.",
        "front.up.test -> seized.example",
    );

    for name in ["cdn.up.test", "deep.up.test", "front.up.test"] {
        assert_eq!(up.count(name), 1, "{name}: {:?}", up.seen());
    }
    e.stop().await;
}

/// A verdict cached under rules a reload changed is not served: the name
/// is asked again (here, the reload allowlists it).
#[tokio::test(flavor = "multi_thread")]
async fn a_cached_verdict_is_not_served_after_a_reload_allowlists_the_name() {
    let up = Upstream::start_with(&zone()).await;
    let e = start_plain(&up, "").await;
    let r = udp(e.addr, &query("cdn.up.test.", RecordType::A, true)).await;
    assert_through(
        &r,
        ResponseCode::NXDomain,
        15,
        "trackers",
        "ads.up.test.",
        "cdn.up.test -> ads.up.test",
    );
    let path = e.dir().join("embargo.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    let tmp = e.dir().join("embargo.toml.new");
    std::fs::write(
        &tmp,
        text.replacen("\"door.up.test\"]", "\"door.up.test\", \"cdn.up.test\"]", 1),
    )
    .expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
    // Issue 21: the server's own word that the reload is done, then the
    // answer (the watcher used to be armed after this edit, on a busy
    // machine, and a 10 s guess then gave up).
    e.until_reloaded("cdn.up.test answered, not blocked", async || {
        let r = udp(e.addr, &query("cdn.up.test.", RecordType::A, true)).await;
        a_record(&r).as_deref() == Some("192.0.2.40")
    })
    .await;
    assert_eq!(up.count("cdn.up.test"), 2, "asked again after the reload");
    e.stop().await;
}

/// Lists `name` in the trackers list and reloads in-process (the reload
/// loop's own function, so the test need not wait for the file watcher).
fn list_and_reload(e: &Embargo, list: &str, names: &str) {
    std::fs::write(e.dir().join(list), names).expect("rewrite the list");
    embargo::reload::reload(&e.dir().join("embargo.toml"), e.handler.state()).expect("reload");
}

/// Issue 16 (1): a cached chain whose target a reload lists is blocked at
/// once, from the cache (the chain is inspected again under the new rules,
/// not served for the rest of its TTL), with that list's EDE.
#[tokio::test(flavor = "multi_thread")]
async fn r16_a_cached_chain_is_blocked_at_once_when_a_reload_lists_its_target() {
    let up = Upstream::start_with(&zone()).await;
    let e = start_plain(&up, "").await;
    for _ in 0..2 {
        let r = udp(e.addr, &query("chain.up.test.", RecordType::A, true)).await;
        assert_eq!(a_record(&r).as_deref(), Some("192.0.2.10"), "{r:?}");
    }
    assert_eq!(up.count("chain.up.test"), 1, "cached");
    list_and_reload(
        &e,
        "trackers.txt",
        "ads.up.test\nboth.example\nwww.up.test\n",
    );
    for _ in 0..2 {
        let r = udp(e.addr, &query("chain.up.test.", RecordType::A, true)).await;
        assert_through(
            &r,
            ResponseCode::NXDomain,
            15,
            "trackers",
            "www.up.test.",
            "alias.up.test -> www.up.test",
        );
    }
    assert_eq!(up.count("chain.up.test"), 1, "blocked from the cache");
    // And unlisted again: the chain is served again, still from the cache.
    list_and_reload(&e, "trackers.txt", "ads.up.test\nboth.example\n");
    let r = udp(e.addr, &query("chain.up.test.", RecordType::A, true)).await;
    assert_eq!(a_record(&r).as_deref(), Some("192.0.2.10"), "{r:?}");
    assert_eq!(up.count("chain.up.test"), 1, "{:?}", up.seen());
    e.stop().await;
}

/// Issue 16 (1), with groups: after the reload the cached chain is blocked
/// for the group that applies the list, and still served to one that
/// does not.
#[tokio::test(flavor = "multi_thread")]
async fn r16_a_reload_reaches_cached_chains_per_group() {
    let up = Upstream::start_with(&zone()).await;
    let groups =
        "\n[[groups]]\nname = \"servers\"\nclients = [\"127.0.0.2/32\"]\nlists = [\"malware\"]\n";
    let e = start(&up, groups).await;
    let default: IpAddr = "127.0.0.1".parse().expect("ip");
    let servers: IpAddr = "127.0.0.2".parse().expect("ip");
    let ask = async |client: IpAddr| {
        udp_from(
            client,
            e.addr,
            &query("chain.up.test.", RecordType::A, true),
        )
        .await
    };
    for client in [default, servers] {
        assert_eq!(a_record(&ask(client).await).as_deref(), Some("192.0.2.10"));
    }
    list_and_reload(
        &e,
        "trackers.txt",
        "ads.up.test\nboth.example\nwww.up.test\n",
    );
    for _ in 0..2 {
        assert_through(
            &ask(default).await,
            ResponseCode::NXDomain,
            15,
            "trackers",
            "www.up.test.",
            "alias.up.test -> www.up.test",
        );
        let r = ask(servers).await;
        assert_eq!(a_record(&r).as_deref(), Some("192.0.2.10"), "{r:?}");
    }
    assert_eq!(up.count("chain.up.test"), 1, "{:?}", up.seen());
    e.stop().await;
}
