//! What the rules in force say about a name, and about a client: the
//! answer of `embargo check` and of `GET /api/check`, worked out once here
//! so that the command line and the API never disagree. A name is looked
//! at in the handler's order: local names first (records, local zones),
//! then the lists, then where it would be forwarded (`[[forward]]`). An
//! address is looked up in the listed networks (response-IP blocking): what
//! a forwarded answer holding it gets.

use std::net::IpAddr;

use serde::Serialize;

use crate::access::{AccessAction, Judgement};
use crate::groups::Group;
use crate::lists::Format;
use crate::matcher::NameKey;
use crate::policy::Policy;
use crate::state::{ListInfo, Snapshot, Verdict};
use crate::wire;

/// What `[access]` and `[rate_limit]` make of a client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientCheck {
    pub client: IpAddr,
    /// `"allowed"`, or what its queries get instead: `"refused"`, `"dropped"`.
    pub verdict: &'static str,
    /// The whole story in one line, as `embargo check --client` prints it.
    pub detail: String,
    /// Its client group, with `[[groups]]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl ClientCheck {
    /// Whether the client's queries are answered at all.
    pub fn answered(&self) -> bool {
        self.verdict == "allowed"
    }
}

/// Judges `client` against the snapshot's access rules and rate limiter.
pub fn client(snap: &Snapshot, client: IpAddr) -> ClientCheck {
    let not_answered = snap.access.refuses(client).map(|a| match a {
        AccessAction::Refuse => "refused",
        AccessAction::Drop => "dropped",
    });
    let detail = match (snap.access.judge(client), not_answered) {
        (Judgement::Denied(net), Some(word)) => {
            format!("client {client}: {word} (denied by {net})")
        }
        (Judgement::NotAllowed, Some(word)) => {
            format!("client {client}: {word} (not in [access] allow)")
        }
        (Judgement::Allowed(net), None) => {
            let limit = match &snap.limiter {
                None => String::new(),
                Some(l) => {
                    let s = l.settings();
                    match s.exempt.find(client) {
                        Some(net) => format!("; not rate limited (exempt by {net})"),
                        None => format!(
                            "; rate limited over UDP to {} answers a second per /{} (IPv4) or /{} (IPv6)",
                            s.responses_per_second, s.ipv4_prefix, s.ipv6_prefix
                        ),
                    }
                }
            };
            format!("client {client}: allowed by {net}{limit}")
        }
        // judge and refuses read the same rules; they cannot disagree.
        (_, word) => format!("client {client}: {}", word.unwrap_or("allowed")),
    };
    ClientCheck {
        client,
        verdict: not_answered.unwrap_or("allowed"),
        detail,
        group: snap
            .groups
            .configured()
            .then(|| snap.groups.of(client).1.name.clone()),
    }
}

/// The group whose lists answer `asker` (the default group without one).
fn group_of<'a>(snap: &'a Snapshot, asker: Option<&ClientCheck>) -> &'a Group {
    match asker {
        Some(c) => snap.groups.of(c.client).1,
        None => snap.groups.default_group(),
    }
}

/// With `[[groups]]`, the line `embargo check` prints before the names:
/// the group that answers them and why (the network that put the client
/// there). `None` without groups, or for a client that may not ask.
pub fn group_line(snap: &Snapshot, asker: Option<&ClientCheck>) -> Option<String> {
    if !snap.groups.configured() || asker.is_some_and(|c| !c.answered()) {
        return None;
    }
    let group = group_of(snap, asker);
    Some(match asker {
        Some(c) => match snap.groups.network_of(c.client) {
            Some(net) => format!("client {}: group {} ({net})", c.client, group.name),
            None => format!(
                "client {}: group {} (in no group's networks)",
                c.client, group.name
            ),
        },
        None => format!(
            "group {} (clients in no group's networks; --client IP for another)",
            group.name
        ),
    })
}

/// Which list blocks a name, and on whose authority.
#[derive(Debug, Clone, Serialize)]
pub struct BlockDetail {
    pub list: String,
    /// The list entry that matched, as the list writes it: the name
    /// itself or a parent, or `*.parent` for an RPZ wildcard trigger.
    pub entry: String,
    pub action: &'static str,
    /// The RFC 8914 INFO-CODE and its meaning.
    pub ede: u16,
    pub ede_meaning: &'static str,
    /// The EDE text the client gets.
    pub why: String,
    pub authority: String,
    pub reason: String,
    pub reference: String,
    /// When the list stops blocking (`expires`), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl BlockDetail {
    /// What `list` says through `policy` of the `entry` that matched, the
    /// client told `why`; the provenance and expiry are the list's.
    fn new(list: &ListInfo, policy: &Policy, entry: String, why: String) -> Self {
        let p = &list.spec.provenance;
        Self {
            list: list.spec.name.clone(),
            entry,
            action: policy.action.as_str(),
            ede: policy.ede.code(),
            ede_meaning: policy.ede.as_str(),
            why,
            authority: p.authority.clone(),
            reason: p.reason.clone(),
            reference: p.reference.clone(),
            expires: list.spec.expires.map(crate::expiry::format),
        }
    }
}

/// What the rules say about one name.
#[derive(Debug, Clone, Serialize)]
pub struct NameCheck {
    /// The name as normalised (lowercase, no final dot), or as given when
    /// it is not a valid name.
    pub name: String,
    /// `"blocked"`, `"allowed"`, `"local"` (answered here, before the
    /// lists: `[[records]]`, hosts files, local zones), `"invalid"`, or
    /// `"refused"`/`"dropped"` when the client asking may not ask.
    pub verdict: &'static str,
    /// Why it is invalid, the allowlist entry that allows it, what answers
    /// a local name (the record and where it is written, or the zone and
    /// why it is local), or that the client may not ask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockDetail>,
    /// With `[[forward]]`, where an allowed name is forwarded: the set and
    /// the zone that sends it there, or `[upstream]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// Checks `text` against the snapshot, as asked by `asker` if known:
/// nothing about the name is said to a client that may not ask. An IP
/// address is checked against the listed networks ([`address`]).
pub fn name(snap: &Snapshot, text: &str, asker: Option<&ClientCheck>) -> NameCheck {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return address(snap, ip, asker);
    }
    let key = match NameKey::from_text(text, true) {
        Ok(k) => k,
        Err(e) => {
            return NameCheck {
                name: text.to_owned(),
                verdict: "invalid",
                detail: Some(e.to_string()),
                block: None,
                upstream: None,
            };
        }
    };
    let name = key.to_string();
    if let Some(c) = asker.filter(|c| !c.answered()) {
        return NameCheck {
            name,
            verdict: c.verdict,
            detail: Some("client not allowed".into()),
            block: None,
            upstream: None,
        };
    }
    // The lists of the asker's group (every list without [[groups]]).
    let group = group_of(snap, asker);
    // Local names answer before the lists: the operator's own.
    if let Some(answer) = snap.local.lookup(&key, wire::TYPE_A, 1) {
        let mut detail = answer.about().to_string();
        if let Verdict::Blocked { policy, .. } = snap.verdict(&key, group)
            && let Some(list) = snap.list_of(policy)
        {
            detail.push_str(&format!(
                "; listed by {} too, but local names are answered before the lists",
                list.spec.name
            ));
        }
        return NameCheck {
            name,
            verdict: "local",
            detail: Some(detail),
            block: None,
            upstream: None,
        };
    }
    let upstream =
        (!snap.forward_zones.is_empty()).then(|| match snap.forward_zones.lookup(&key) {
            Some(m) => format!(
                "{} for zone {}",
                snap.forward_zones.describe(m.set).unwrap_or("[[forward]]"),
                key.suffix(m.suffix)
            ),
            None => "[upstream]".to_string(),
        });
    let allowed = |detail| NameCheck {
        name: name.clone(),
        verdict: "allowed",
        detail,
        block: None,
        upstream: upstream.clone(),
    };
    match snap.verdict(&key, group) {
        Verdict::Miss => {
            let mut why = Vec::new();
            // A feed that lets the name by (and blocks nothing else here).
            if let Some((list, hit)) = snap.passthru_of(&key, group) {
                why.push(format!(
                    "rpz-passthru of {} (entry {})",
                    list.spec.name,
                    entry(&key, hit.suffix, list)
                ));
            }
            // Listed, but only by lists this client's group does not apply.
            if snap.groups.configured()
                && let Some((lists, hit)) = snap.left_out(&key, group)
                && let Some(first) = lists.first()
            {
                let names: Vec<&str> = lists.iter().map(|l| l.spec.name.as_str()).collect();
                why.push(format!(
                    "group {} does not apply {} (entry {})",
                    group.name,
                    names.join(", "),
                    entry(&key, hit.suffix, first)
                ));
            }
            allowed((!why.is_empty()).then(|| why.join("; ")))
        }
        Verdict::Allowed { suffix } => {
            allowed(Some(format!("allowlist entry {}", key.suffix(suffix))))
        }
        Verdict::Blocked { policy, suffix } => {
            let Some(list) = snap.lists.get(policy.list) else {
                // A policy of this snapshot always names one of its lists.
                return allowed(None);
            };
            NameCheck {
                name: name.clone(),
                verdict: "blocked",
                detail: None,
                upstream: None,
                block: Some(BlockDetail::new(
                    list,
                    policy,
                    entry(&key, suffix, list),
                    policy.ede_text.to_string(),
                )),
            }
        }
    }
}

/// What a forwarded answer holding `ip` (an A or AAAA record) gets from the
/// listed networks: the list whose network holds it blocks the answer.
pub fn address(snap: &Snapshot, ip: IpAddr, asker: Option<&ClientCheck>) -> NameCheck {
    let mut check = NameCheck {
        name: ip.to_string(),
        verdict: "allowed",
        detail: None,
        block: None,
        upstream: None,
    };
    if let Some(c) = asker.filter(|c| !c.answered()) {
        check.verdict = c.verdict;
        check.detail = Some("client not allowed".into());
        return check;
    }
    let group = group_of(snap, asker);
    let Some(v) = snap.verdict_for_ip(ip, group) else {
        // Why not: networks that hold it but do not count for this group.
        let why: Vec<String> = snap
            .nets_holding(ip)
            .into_iter()
            .filter_map(|(net, policy, passthru)| {
                let list = &snap.list_of(policy)?.spec.name;
                // A network of a list the group applies is passed over only
                // under its own feed's passthru, said already.
                let applies = group.applies(policy.list);
                match (passthru, applies) {
                    (true, true) => Some(format!("rpz-passthru of {list} (network {net})")),
                    (false, false) => Some(format!(
                        "group {} does not apply {list} (network {net})",
                        group.name
                    )),
                    _ => None,
                }
            })
            .collect();
        check.detail = Some(if snap.nets.is_empty() {
            "no list has networks (ips lists, RPZ rpz-ip triggers)".into()
        } else if why.is_empty() {
            "in no listed network".into()
        } else {
            why.join("; ")
        });
        return check;
    };
    let Some(list) = snap.list_of(v.policy) else {
        return check;
    };
    check.verdict = "blocked";
    check.detail = Some("a forwarded answer holding this address is blocked".into());
    check.block = Some(BlockDetail::new(
        list,
        v.policy,
        v.net.to_string(),
        format!("{}; answer address {ip} in {}", v.policy.ede_text, v.net),
    ));
    check
}

/// The entry of `list` that matched `key` at byte offset `suffix`, as the
/// list writes it. An RPZ trigger that matched above the name is a
/// wildcard (`*.parent`); in any other list a parent covers its subtree
/// and is written bare.
fn entry(key: &NameKey, suffix: usize, list: &ListInfo) -> String {
    if suffix > 0 && list.stats.format == Some(Format::Rpz) {
        format!("*.{}", key.suffix(suffix))
    } else {
        key.suffix(suffix).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A snapshot of `text` in a directory with the list `listed.txt`.
    fn snapshot(text: &str) -> Snapshot {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("listed.txt"),
            "seized.corp.example\nlisted.home.arpa\n",
        )
        .expect("list");
        let config = Config::parse(
            &dir.path().join("e.toml"),
            &format!("[[lists]]\nname = \"seized\"\nsource = \"listed.txt\"\n{text}"),
        )
        .expect("config");
        Snapshot::build(&config).expect("build")
    }

    /// Issue 18: `check` says which local record or zone answers a name,
    /// and where an allowed name is forwarded.
    #[test]
    fn r18_check_names_the_local_answer_and_the_forward_set() {
        let snap = snapshot(
            "[[forward]]\nzones = [\"corp.example\", \"10.in-addr.arpa\"]\nservers = [\"10.0.0.10\", \"tcp://10.0.0.11\"]\n\
             [[records]]\nname = \"nas.home.arpa\"\na = \"192.168.1.10\"\n\
             [[records]]\nname = \"listed.home.arpa\"\ntxt = \"mine\"\n",
        );
        let check = |n: &str| name(&snap, n, None);
        let c = check("NAS.home.arpa");
        assert_eq!((c.name.as_str(), c.verdict), ("nas.home.arpa", "local"));
        let detail = c.detail.expect("detail");
        assert!(
            detail.starts_with("local record nas.home.arpa (A; "),
            "{detail}"
        );
        assert!(
            detail.ends_with(
                "e.toml:9:5, records[1].a), local zone home.arpa (RFC 8375, served by default)"
            ),
            "{detail}"
        );
        assert!(c.upstream.is_none() && c.block.is_none());
        let c = check("other.home.arpa");
        assert_eq!(c.verdict, "local");
        assert_eq!(
            c.detail.as_deref(),
            Some("local zone home.arpa (RFC 8375, served by default): no such name")
        );
        let c = check("5.1.168.192.in-addr.arpa");
        assert_eq!(c.verdict, "local");
        // Local names come before the lists; check says a list has it too.
        let c = check("listed.home.arpa");
        assert_eq!(c.verdict, "local");
        assert!(
            c.detail.as_deref().is_some_and(|d| d.ends_with(
                "; listed by seized too, but local names are answered before the lists"
            )),
            "{:?}",
            c.detail
        );
        // Forwarded names: to their set; the lists apply first.
        let c = check("_ldap._tcp.dc._msdcs.Corp.Example");
        assert_eq!(c.verdict, "allowed");
        assert_eq!(
            c.upstream.as_deref(),
            Some("forward[1] (10.0.0.10:53, tcp://10.0.0.11:53) for zone corp.example")
        );
        let c = check("5.0.0.10.in-addr.arpa");
        assert_eq!(
            c.verdict, "allowed",
            "10.in-addr.arpa is forwarded, not local"
        );
        assert!(
            c.upstream
                .is_some_and(|u| u.ends_with("for zone 10.in-addr.arpa"))
        );
        let c = check("www.seized.corp.example");
        assert_eq!(c.verdict, "blocked");
        assert!(c.upstream.is_none());
        let c = check("notcorp.example");
        assert_eq!(
            (c.verdict, c.upstream.as_deref()),
            ("allowed", Some("[upstream]"))
        );
        // Without [[forward]] there is one set: nothing to say.
        let plain = snapshot("");
        let c = name(&plain, "example.org", None);
        assert_eq!((c.verdict, c.upstream), ("allowed", None));
        assert_eq!(name(&plain, "x.local", None).verdict, "local");
        let json = serde_json::to_value(check("dc1.corp.example")).expect("json");
        assert_eq!(
            json["upstream"],
            "forward[1] (10.0.0.10:53, tcp://10.0.0.11:53) for zone corp.example"
        );
        assert!(json.get("block").is_none());
    }

    /// Issue 16 (2): what `check` says of RPZ triggers and passthrus, for
    /// the default group and for groups that leave a list out.
    #[test]
    fn r16_check_names_the_trigger_and_the_passthru() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("vendor.rpz"),
            "$ORIGIN rpz.test.\n@ SOA ns. h. 1 2 3 4 5\n*.below.example CNAME .\n*.wild.example CNAME *.\ngood.wild.example CNAME rpz-passthru.\n*.okbelow.wild.example CNAME rpz-passthru.\nsanctioned.example CNAME rpz-passthru.\n",
        )
        .expect("feed");
        std::fs::write(dir.path().join("sanctions.txt"), "sanctioned.example\n").expect("list");
        let text = r#"
[[lists]]
name = "vendor"
source = "vendor.rpz"
[[lists]]
name = "sanctions"
source = "sanctions.txt"
[[groups]]
name = "plain-only"
clients = ["10.0.0.2/32"]
lists = ["sanctions"]
[[groups]]
name = "feed-only"
clients = ["10.0.0.3/32"]
lists = ["vendor"]
"#;
        let config = Config::parse(&dir.path().join("e.toml"), text).expect("config");
        let snap = Snapshot::build(&config).expect("build");
        let check = |who: Option<&str>, name: &str| {
            let asker = who.map(|ip| client(&snap, ip.parse().expect("ip")));
            let c = self::name(&snap, name, asker.as_ref());
            match c.block {
                Some(b) => format!("blocked {} {}", b.list, b.entry),
                None => format!("{} {}", c.verdict, c.detail.unwrap_or_default()),
            }
        };
        assert_eq!(
            check(None, "a.below.example"),
            "blocked vendor *.below.example"
        );
        assert_eq!(check(None, "below.example"), "allowed ");
        assert_eq!(
            check(None, "sanctioned.example"),
            "blocked sanctions sanctioned.example"
        );
        assert_eq!(
            check(None, "good.wild.example"),
            "allowed rpz-passthru of vendor (entry good.wild.example)"
        );
        assert_eq!(
            check(None, "x.okbelow.wild.example"),
            "allowed rpz-passthru of vendor (entry *.okbelow.wild.example)"
        );
        assert_eq!(
            check(Some("10.0.0.3"), "sanctioned.example"),
            "allowed rpz-passthru of vendor (entry sanctioned.example); \
             group feed-only does not apply sanctions (entry sanctioned.example)"
        );
        assert_eq!(
            check(Some("10.0.0.3"), "good.wild.example"),
            "allowed rpz-passthru of vendor (entry good.wild.example)",
            "the feed's own wildcard is passed, not left out"
        );
        assert_eq!(
            check(Some("10.0.0.2"), "bad.wild.example"),
            "allowed group plain-only does not apply vendor (entry *.wild.example)"
        );
    }

    /// Issue 20: `check` takes an address and says which list's network
    /// holds it (an `ips` list, RPZ rpz-ip triggers and their passthrus,
    /// groups, a list with `inspect_answers = false`).
    #[test]
    fn r20_check_an_address_names_the_list_and_network() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("drop.txt"),
            "; DROP\n192.0.2.0/24 ; SBL1\n2001:db8::/32\nbad line\n",
        )
        .expect("drop");
        std::fs::write(
            dir.path().join("vendor.rpz"),
            "$ORIGIN rpz.test.\n@ SOA ns. h. 1 2 3 4 5\n24.0.2.0.192.rpz-ip CNAME .\n32.7.2.0.192.rpz-ip CNAME rpz-passthru.\n24.0.100.51.198.rpz-ip CNAME *.\n",
        )
        .expect("feed");
        std::fs::write(dir.path().join("quiet.txt"), "203.0.113.0/24\n").expect("quiet");
        let text = r#"
[[lists]]
name = "drop"
source = "drop.txt"
format = "ips"
authority = "Spamhaus"
[[lists]]
name = "vendor"
source = "vendor.rpz"
[[lists]]
name = "quiet"
source = "quiet.txt"
inspect_answers = false
[[groups]]
name = "drop-only"
clients = ["10.0.0.2/32"]
lists = ["drop"]
[[groups]]
name = "feed-only"
clients = ["10.0.0.3/32"]
lists = ["vendor"]
"#;
        let config = Config::parse(&dir.path().join("e.toml"), text).expect("config");
        let snap = Snapshot::build(&config).expect("build");
        assert_eq!(snap.lists[0].stats.nets, 2);
        assert_eq!(snap.lists[0].stats.invalid, 1);
        assert_eq!(snap.lists[1].stats.nets, 3);
        let check = |who: Option<&str>, ip: &str| {
            let asker = who.map(|ip| client(&snap, ip.parse().expect("ip")));
            let c = name(&snap, ip, asker.as_ref());
            match c.block {
                Some(b) => format!("blocked {} {} {} | {}", b.list, b.entry, b.action, b.why),
                None => format!("{} {}", c.verdict, c.detail.unwrap_or_default()),
            }
        };
        assert_eq!(
            check(None, "192.0.2.9"),
            "blocked drop 192.0.2.0/24 nxdomain | blocked by drop (Spamhaus); answer address 192.0.2.9 in 192.0.2.0/24"
        );
        // The feed's passthru hides the feed's own /24, not DROP's.
        assert!(check(None, "192.0.2.7").starts_with("blocked drop 192.0.2.0/24"));
        assert!(check(None, "198.51.100.9").starts_with("blocked vendor 198.51.100.0/24 nodata"));
        assert!(check(None, "2001:db8::1").starts_with("blocked drop 2001:db8::/32"));
        assert!(check(None, "::ffff:192.0.2.9").starts_with("blocked drop 192.0.2.0/24"));
        assert_eq!(check(None, "203.0.113.5"), "allowed in no listed network");
        assert_eq!(check(None, "8.8.8.8"), "allowed in no listed network");
        assert_eq!(
            check(Some("10.0.0.2"), "198.51.100.9"),
            "allowed group drop-only does not apply vendor (network 198.51.100.0/24)"
        );
        assert_eq!(
            check(Some("10.0.0.3"), "192.0.2.7"),
            "allowed rpz-passthru of vendor (network 192.0.2.7/32); \
             group feed-only does not apply drop (network 192.0.2.0/24)"
        );
        assert!(
            check(Some("10.0.0.3"), "192.0.2.8")
                .starts_with("blocked vendor 192.0.2.0/24 nxdomain")
        );
    }
}
