//! The snapshot's tests: built from a config and lists, then asked.

use super::*;
use proptest::prelude::*;

#[test]
fn a_rebuild_keeps_the_slots_of_lists_that_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["a", "b", "c"] {
        std::fs::write(
            dir.path().join(format!("{f}.txt")),
            format!("{f}.example\n"),
        )
        .expect("list");
    }
    let config = |names: &[&str]| {
        let text: String = names
            .iter()
            .map(|n| format!("[[lists]]\nname = \"{n}\"\nsource = \"{n}.txt\"\n"))
            .collect();
        Config::parse(&dir.path().join("e.toml"), &text).expect("config")
    };
    let first = Snapshot::build(&config(&["a", "b"])).expect("build");
    let second = Snapshot::rebuild(&config(&["c", "b"]), &first).expect("rebuild");
    let slot = |s: &Snapshot, name: &str| {
        s.lists
            .iter()
            .find(|l| l.spec.name == name)
            .map(|l| l.slot)
            .expect("list")
    };
    assert_eq!(slot(&second, "b"), slot(&first, "b"));
    assert_eq!(
        slot(&second, "c"),
        ListSlot(2),
        "a new list gets a new slot"
    );
    assert!(Arc::ptr_eq(&first.slots, &second.slots));
    // Issue 16 (1): a new generation, so cached chains are inspected again.
    assert_ne!(first.generation, second.generation);
    // A fresh build (another process, `embargo check`) starts again.
    assert_eq!(
        slot(&Snapshot::build(&config(&["c"])).expect("build"), "c"),
        ListSlot(0)
    );
}

/// Issue 18: a reload with a bad record fails as a whole and keeps
/// the local names in force; a good one (a hosts file changed) swaps
/// them in with everything else.
#[test]
fn r18_a_reload_with_a_bad_record_keeps_the_local_names() {
    use crate::matcher::NameKey;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("e.toml");
    let write = |text: &str| std::fs::write(&path, text).expect("config");
    std::fs::write(dir.path().join("hosts"), "192.168.1.10 nas\n").expect("hosts");
    write(
        "[local_zones]\nhosts_files = [\"hosts\"]\n[[forward]]\nzones = [\"corp.example\"]\nservers = [\"10.0.0.10\"]\n",
    );
    let first = Snapshot::build(&Config::load(&path).expect("config")).expect("build");
    let state = arc_swap::ArcSwap::from_pointee(first);
    let nas = NameKey::from_text("nas.home.arpa", true).expect("name");
    let dc = NameKey::from_text("dc1.corp.example", true).expect("name");
    let address = |state: &arc_swap::ArcSwap<Snapshot>| {
        state
            .load()
            .local
            .lookup(&nas, 1, 1)
            .map(|a| a.about().to_string())
    };
    assert!(address(&state).is_some_and(|a| a.starts_with("local record nas.home.arpa")));
    assert_eq!(
        state.load().forward_zones.lookup(&dc).map(|m| m.set),
        Some(0)
    );
    // A bad record: the reload fails, saying where, and nothing changes.
    write(
        "[local_zones]\nhosts_files = [\"hosts\"]\n[[records]]\nname = \"tv.home.arpa\"\na = \"tv\"\n",
    );
    let err = crate::reload::reload(&path, &state).expect_err("bad record");
    assert!(
        err.starts_with(&format!(
            "{}:5:5: records[1].a: expected an IPv4 address",
            path.display()
        )),
        "{err}"
    );
    assert!(address(&state).is_some());
    assert!(state.load().forward_zones.lookup(&dc).is_some());
    // A bad hosts line the same.
    write("[local_zones]\nhosts_files = [\"hosts\"]\n");
    std::fs::write(dir.path().join("hosts"), "192.168.1.300 nas\n").expect("hosts");
    let err = crate::reload::reload(&path, &state).expect_err("bad hosts line");
    assert!(
        err.contains("hosts:1:1: local_zones.hosts_files[1]"),
        "{err}"
    );
    assert!(address(&state).is_some());
    // A good change is swapped in: the new address, no forward zone.
    std::fs::write(dir.path().join("hosts"), "192.168.1.20 tv\n").expect("hosts");
    crate::reload::reload(&path, &state).expect("reload");
    assert!(address(&state).is_some_and(|a| a.starts_with("local zone home.arpa")));
    let tv = NameKey::from_text("tv.home.arpa", true).expect("name");
    assert!(
        state
            .load()
            .local
            .lookup(&tv, 1, 1)
            .is_some_and(|a| a.about().starts_with("local record tv.home.arpa"))
    );
    assert!(state.load().forward_zones.lookup(&dc).is_none());
}

/// One generated list: RPZ or plain, and its entries (name, written
/// as `*.name`, kind: 0 block/NXDOMAIN, 1 NODATA, 2 passthru).
#[derive(Debug, Clone)]
struct ListModel {
    rpz: bool,
    entries: std::collections::BTreeMap<(String, bool), u8>,
}

impl ListModel {
    fn file(&self) -> String {
        let mut text = String::new();
        if self.rpz {
            text.push_str("$ORIGIN rpz.test.\n@ SOA ns. h. 1 2 3 4 5\n");
        }
        for ((name, wild), kind) in &self.entries {
            let owner = if *wild {
                format!("*.{name}")
            } else {
                name.clone()
            };
            if self.rpz {
                let target = match kind {
                    0 => ".",
                    1 => "*.",
                    _ => "rpz-passthru.",
                };
                text.push_str(&format!("{owner} CNAME {target}\n"));
            } else {
                text.push_str(&format!("{owner}\n"));
            }
        }
        text
    }

    /// This list's decision for `q`: its most specific covering entry,
    /// as (matched name, action), or `None` (nothing, or a passthru).
    fn decide(&self, q: &str) -> Option<(String, Action)> {
        let below = |name: &str| q.ends_with(&format!(".{name}"));
        let best = self
            .entries
            .iter()
            .filter(|((name, wild), _)| {
                if self.rpz {
                    if *wild { below(name) } else { q == name }
                } else {
                    q == name || below(name)
                }
            })
            .max_by_key(|((name, _), _)| name.len())?;
        let ((name, _), kind) = best;
        let action = match (self.rpz, kind) {
            (false, _) => Action::Refused,
            (true, 0) => Action::Nxdomain,
            (true, 1) => Action::Nodata,
            _ => return None,
        };
        Some((name.clone(), action))
    }
}

fn small_name() -> impl Strategy<Value = String> {
    prop::collection::vec("[abc]", 1..5).prop_map(|l| format!("{}.t", l.join(".")))
}

fn list_model() -> impl Strategy<Value = ListModel> {
    (
        any::<bool>(),
        prop::collection::vec((small_name(), any::<bool>(), 0u8..3), 0..12),
    )
        .prop_map(|(rpz, entries)| ListModel {
            rpz,
            entries: entries
                .into_iter()
                .map(|(n, w, k)| ((n, w), if rpz { k } else { 0 }))
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Issue 16 (2): `verdict` agrees with a naive model of every list
    /// on its own. A plain entry covers its subtree; an RPZ `x` covers
    /// x and `*.x` what is below x; each list's most specific covering
    /// entry decides for that list, and a passthru means "not this
    /// list"; of the lists that block, the most specific entry wins,
    /// then the first list; an allow entry wins over all. For the
    /// default group (every list) and a group applying some lists.
    #[test]
    fn r16_verdict_agrees_with_a_naive_model_of_each_list(
        models in prop::collection::vec(list_model(), 1..5),
        allow in prop::collection::vec(small_name(), 0..2),
        applied in prop::collection::btree_set(0usize..5, 0..5),
        probes in prop::collection::vec(small_name(), 1..30),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = String::new();
        for (i, m) in models.iter().enumerate() {
            std::fs::write(dir.path().join(format!("l{i}")), m.file()).expect("list");
            let format = if m.rpz { "rpz" } else { "domains" };
            text.push_str(&format!(
                "[[lists]]\nname = \"l{i}\"\nsource = \"l{i}\"\nformat = \"{format}\"\naction = \"refused\"\n"
            ));
        }
        let applied: Vec<usize> = applied.into_iter().filter(|i| *i < models.len()).collect();
        let names: Vec<String> = applied.iter().map(|i| format!("\"l{i}\"")).collect();
        text.push_str(&format!(
            "[[groups]]\nname = \"g\"\nclients = [\"10.0.0.0/8\"]\nlists = [{}]\n",
            names.join(", ")
        ));
        let quoted: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
        text.push_str(&format!("[allow]\ndomains = [{}]\n", quoted.join(", ")));
        let config = Config::parse(&dir.path().join("e.toml"), &text).expect("config");
        let snap = Snapshot::build(&config).expect("build");

        let mut queries: Vec<String> = models
            .iter()
            .flat_map(|m| m.entries.keys().map(|(n, _)| n.clone()))
            .collect();
        queries.extend(probes);
        let all: Vec<usize> = (0..models.len()).collect();
        let group = |ip: &str| snap.groups.of(ip.parse().expect("ip")).1;
        for (who, lists) in [("192.168.1.1", &all), ("10.1.2.3", &applied)] {
            let g = group(who);
            for q in &queries {
                let allowed = allow.iter().any(|a| q == a || q.ends_with(&format!(".{a}")));
                // The most specific block, then the first list.
                let want = lists
                    .iter()
                    .filter_map(|&l| models[l].decide(q).map(|(n, a)| (l, n, a)))
                    .min_by_key(|(l, n, _)| (std::cmp::Reverse(n.len()), *l));
                let key = NameKey::from_text(q, true).expect("name");
                for through_cname in [false, true] {
                    let got = if through_cname {
                        snap.verdict_through_cname(&key, g)
                    } else {
                        snap.verdict(&key, g)
                    };
                    match (&got, &want) {
                        (Verdict::Allowed { .. }, _) if allowed => {}
                        (Verdict::Blocked { policy, suffix }, Some((l, n, a))) if !allowed => {
                            prop_assert_eq!(
                                (policy.list, key.suffix(*suffix).to_string(), policy.action),
                                (*l, n.clone(), *a),
                                "{} for {}", q, who
                            );
                        }
                        (Verdict::Miss, None) if !allowed => {}
                        _ => prop_assert!(
                            false,
                            "{} for {} (cname {}): got {:?}, want {:?} (allowed {})",
                            q, who, through_cname, got, want, allowed
                        ),
                    }
                }
            }
        }
    }
}

/// Within one feed, a block and a passthru at the same trigger: the
/// block stands (a zone with both is broken; blocking is the safe
/// side).
#[test]
fn r16_a_block_beats_a_passthru_at_the_same_trigger() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("feed.rpz"),
        "$ORIGIN rpz.test.\n@ SOA ns. h. 1 2 3 4 5\nx.example CNAME rpz-passthru.\nx.example CNAME .\n*.example CNAME *.\n",
    )
    .expect("feed");
    let text = "[[lists]]\nname = \"feed\"\nsource = \"feed.rpz\"\n";
    let snap = Snapshot::build(&Config::parse(&dir.path().join("e.toml"), text).expect("config"))
        .expect("build");
    let g = snap.groups.default_group();
    let action = |name: &str| match snap.verdict(&NameKey::from_text(name, false).expect("name"), g)
    {
        Verdict::Blocked { policy, .. } => Some(policy.action),
        _ => None,
    };
    assert_eq!(action("x.example"), Some(Action::Nxdomain));
    assert_eq!(action("y.example"), Some(Action::Nodata));
}

fn config(text: &str) -> Config {
    Config::parse(std::path::Path::new("/nonexistent/e.toml"), text).expect("config")
}

/// A reload that keeps the `[rate_limit]` settings keeps the limiter
/// (and what it counted); one that changes them starts a new one.
#[test]
fn a_reload_keeps_the_limiter_when_its_settings_stay() {
    let on = config("[rate_limit]\nresponses_per_second = 5\n");
    let old = Snapshot::build(&on).expect("build");
    let mut same = Snapshot::build(&on).expect("build");
    same.keep_limiter(&old);
    let (a, b) = (old.limiter.as_ref(), same.limiter.as_ref());
    assert!(a.zip(b).is_some_and(|(a, b)| Arc::ptr_eq(a, b)));
    let mut changed =
        Snapshot::build(&config("[rate_limit]\nresponses_per_second = 6\n")).expect("build");
    changed.keep_limiter(&old);
    let (a, b) = (old.limiter.as_ref(), changed.limiter.as_ref());
    assert!(a.zip(b).is_some_and(|(a, b)| !Arc::ptr_eq(a, b)));
    let mut off = Snapshot::build(&config("")).expect("build");
    off.keep_limiter(&old);
    assert!(off.limiter.is_none());
    // The reload path: `rebuild` keeps both the list slots and the limiter.
    let rebuilt = Snapshot::rebuild(&on, &old).expect("rebuild");
    let (a, b) = (old.limiter.as_ref(), rebuilt.limiter.as_ref());
    assert!(a.zip(b).is_some_and(|(a, b)| Arc::ptr_eq(a, b)));
    assert!(Arc::ptr_eq(&old.slots, &rebuilt.slots));
}
