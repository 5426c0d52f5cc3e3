//! The query-log search (`search.rs`): run with `cargo test --lib querylog::search`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::search::*;
use super::{Record, parse_line};
use crate::config::ClientIp;

/// A record line as the JSON formatter writes it.
fn line(ms: u64, client: &str, name: &str, list: Option<&str>) -> String {
    let time = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
    let (decision, list, action) = match list {
        Some(l) => ("blocked", format!("\"{l}\""), "\"nxdomain\""),
        None => ("forwarded", "null".to_owned(), "null"),
    };
    format!(
        r#"{{"time":"{time}","client":"{client}","port":5300,"proto":"udp","name":"{name}","type":"A","decision":"{decision}","stale":false,"list":{list},"entry":null,"action":{action},"rcode":"NOERROR","upstream":null,"latency_us":1}}"#
    )
}

fn record(ms: u64, client: &str, name: &str, list: Option<&str>) -> Record {
    parse_line(line(ms, client, name, list).as_bytes()).expect("record")
}

const T0: u64 = 1_795_987_831_000;

#[test]
fn a_name_matches_itself_and_names_under_it_only() {
    let under = parse_name("Seized.Example.").expect("name");
    assert_eq!(under, "seized.example");
    for (name, want) in [
        ("seized.example", true),
        ("www.SEIZED.example", true),
        ("a.b.seized.example.", true),
        ("notseized.example", false),
        ("seized.example.org", false),
        ("example", false),
        // One label `www.seized` (its dot escaped) under `example`: not
        // under seized.example.
        (r"www\.seized.example", false),
        // A backslash, escaped, then a real dot.
        (r"www\\.seized.example", true),
    ] {
        assert_eq!(name_under(name, &under), want, "{name}");
    }
    assert!(name_under(
        "anything.at.all",
        &parse_name(".").expect("root")
    ));
    assert!(parse_name("a..b").is_err());
    assert!(parse_name("").is_err());
    assert!(parse_name("a b").is_err());
    assert_eq!(
        parse_name("bücher.example").expect("idna"),
        "xn--bcher-kva.example"
    );
}

#[test]
fn a_client_is_an_address_a_network_or_a_hash() {
    let c: ClientMatch = "10.1.2.3".parse().expect("ip");
    assert!(c.matches("10.1.2.3"));
    assert!(!c.matches("10.1.2.4"));
    assert!(!c.matches("::ffff:10.1.2.4"));
    let net: ClientMatch = "10.1.2.77/24".parse().expect("cidr");
    assert_eq!(net.to_string(), "10.1.2.0/24");
    assert!(net.matches("10.1.2.200") && !net.matches("10.1.3.1"));
    let mapped: ClientMatch = "::ffff:10.1.2.3".parse().expect("mapped");
    assert!(mapped.matches("10.1.2.3"));
    let v6: ClientMatch = "2001:db8::/32".parse().expect("v6 net");
    assert!(v6.matches("2001:db8:1::5") && !v6.matches("2001:db9::1") && !v6.matches("10.0.0.1"));
    let all: ClientMatch = "0.0.0.0/0".parse().expect("all v4");
    assert!(all.matches("192.0.2.1") && !all.matches("2001:db8::1"));
    let hash: ClientMatch = "00ab00cd00ef0012".parse().expect("hash");
    assert!(hash.matches("00ab00cd00ef0012") && !hash.matches("10.1.2.3"));
    for bad in [
        "10.1.2.3/33",
        "10.1.2",
        "host.example",
        "10.1.2.3/x",
        "00ab00cd00ef0012/8",
    ] {
        assert!(bad.parse::<ClientMatch>().is_err(), "{bad}");
    }
    // With `client_ip = "truncate"` the log holds 10.1.2.0: so must the filter.
    assert_eq!(
        c.as_logged(ClientIp::Truncate),
        Some("10.1.2.0/24".parse().expect("net"))
    );
    assert_eq!(c.as_logged(ClientIp::Full), None);
    assert_eq!(net.as_logged(ClientIp::Truncate), None);
}

#[test]
fn times_are_rfc3339_dates_or_a_time_ago() {
    let now = UNIX_EPOCH + Duration::from_millis(T0);
    let at = |t: &str| parse_time("since", t, now);
    assert_eq!(at("2026-11-29T21:30:31Z"), Ok(T0));
    assert_eq!(at("2026-11-29T21:30:31.5Z"), Ok(T0 + 500));
    assert_eq!(at("2026-11-29 21:30:31"), Ok(T0));
    assert_eq!(at("2026-11-29T23:30:31+02:00"), Ok(T0));
    assert_eq!(at("2026-11-29T20:30:31-01:00"), Ok(T0));
    assert_eq!(at("2026-11-29"), Ok(T0 - (21 * 3600 + 30 * 60 + 31) * 1000));
    assert_eq!(at("1h"), Ok(T0 - 3_600_000));
    assert_eq!(at("1h 30m"), Ok(T0 - 5_400_000));
    for bad in ["yesterday", "2026-13-01", "12:00", "1 fortnight", ""] {
        assert!(at(bad).is_err(), "{bad}");
    }
    let f = Filter {
        since_ms: Some(T0),
        until_ms: Some(T0),
        ..Filter::default()
    };
    assert!(f.check().is_err());
}

#[test]
fn filters_combine_with_and() {
    let r = record(T0, "10.1.2.3", "www.seized.example", Some("seized"));
    let f =
        |client: Option<&str>, list: Option<&str>, name: Option<&str>, since: Option<u64>| Filter {
            client: client.map(|c| c.parse().expect("client")),
            list: list.map(str::to_owned),
            name: name.map(|n| parse_name(n).expect("name")),
            since_ms: since,
            until_ms: None,
        };
    assert!(Filter::default().matches(&r));
    assert!(
        f(
            Some("10.1.2.3"),
            Some("seized"),
            Some("seized.example"),
            Some(T0)
        )
        .matches(&r)
    );
    assert!(
        !f(
            Some("10.1.2.4"),
            Some("seized"),
            Some("seized.example"),
            Some(T0)
        )
        .matches(&r)
    );
    assert!(
        !f(
            Some("10.1.2.3"),
            Some("ofac"),
            Some("seized.example"),
            Some(T0)
        )
        .matches(&r)
    );
    assert!(
        !f(
            Some("10.1.2.3"),
            Some("seized"),
            Some("other.example"),
            Some(T0)
        )
        .matches(&r)
    );
    assert!(
        !f(
            Some("10.1.2.3"),
            Some("seized"),
            Some("seized.example"),
            Some(T0 + 1)
        )
        .matches(&r)
    );
    let until = Filter {
        until_ms: Some(T0),
        ..Filter::default()
    };
    assert!(!until.matches(&r), "until is exclusive");
    let allowed = record(T0, "10.1.2.3", "www.up.example", None);
    assert!(!f(None, Some("seized"), None, None).matches(&allowed));
}

fn write_plain(path: &Path, lines: &[String], tail: &str) {
    let mut f = std::fs::File::create(path).expect("create");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
    f.write_all(tail.as_bytes()).expect("tail");
}

fn write_zst(path: &Path, lines: &[String]) {
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    let bytes = zstd::encode_all(text.as_bytes(), 1).expect("zstd");
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn files_are_listed_oldest_first_whatever_their_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("queries.log");
    for name in [
        "queries.log",
        "queries.log.1",
        "queries.log.2.zst",
        "queries.log.10.zst",
        // The compressor between its rename and its removal: one file.
        "queries.log.3",
        "queries.log.3.zst",
        // Not the log's.
        "queries.log.zst-tmp",
        "queries.log.bak",
        "queries.log.0",
        "other.log.1",
    ] {
        std::fs::write(dir.path().join(name), "").expect("write");
    }
    let names: Vec<String> = files(&log)
        .expect("files")
        .iter()
        .map(|f| {
            format!(
                "{}{}",
                f.path.file_name().expect("name").to_string_lossy(),
                if f.compressed { " (zstd)" } else { "" }
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "queries.log.10.zst (zstd)",
            "queries.log.3",
            "queries.log.2.zst (zstd)",
            "queries.log.1",
            "queries.log",
        ]
    );
    assert_eq!(
        files(&dir.path().join("none/queries.log")).expect("none"),
        []
    );
}

/// Issue 20: a corrupt line, a line cut short at the end of the live
/// file, an over-long line and a damaged `.zst` are skipped and counted;
/// every record around them is found.
#[test]
fn bad_lines_and_a_damaged_file_are_counted_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("queries.log");
    let rec = |i: u64| line(T0 + i, "10.1.2.3", &format!("n{i}.example"), None);
    write_zst(&dir.path().join("queries.log.3.zst"), &[rec(0), rec(1)]);
    // A .zst cut in half: what decodes before the cut may be read, then
    // the file is named unreadable.
    let mut text = String::new();
    for i in 2..200 {
        text.push_str(&rec(i));
        text.push('\n');
    }
    let whole = zstd::encode_all(text.as_bytes(), 1).expect("zstd");
    std::fs::write(
        dir.path().join("queries.log.2.zst"),
        &whole[..whole.len() / 2],
    )
    .expect("write");
    let long = "x".repeat(MAX_LINE + 10);
    write_plain(
        &dir.path().join("queries.log.1"),
        &[rec(300), "garbage".into(), long, rec(301)],
        "",
    );
    let cut = rec(303);
    write_plain(&log, &[rec(302)], &cut[..cut.len() / 2]);

    let list = files(&log).expect("files");
    let mut stats = Stats::default();
    let mut seen = Vec::new();
    let end = scan(&list, &Filter::default(), None, &mut stats, &mut |r| {
        seen.push(r.time_ms - T0);
        Next::Continue
    });
    assert_eq!(end, End::Done);
    assert_eq!(seen[..2], [0, 1]);
    assert_eq!(seen[seen.len() - 3..], [300, 301, 302]);
    assert_eq!(stats.files, 4);
    assert_eq!(
        stats.skipped, 3,
        "garbage, the long line, the cut one: {stats:?}"
    );
    assert!(
        stats
            .first_skipped
            .as_deref()
            .is_some_and(|s| s.contains("queries.log.1:2:")),
        "{stats:?}"
    );
    assert_eq!(stats.unreadable.len(), 1, "{stats:?}");
    assert!(
        stats.unreadable[0].contains("queries.log.2.zst"),
        "{stats:?}"
    );
}

/// Records spread over rotated files (every other one compressed).
fn spread(dir: &Path, records: &[String], cuts: &[usize]) -> Vec<LogFile> {
    let log = dir.join("queries.log");
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(records.len())).collect();
    bounds.sort_unstable();
    bounds.push(records.len());
    let mut start = 0;
    let n = bounds.len();
    for (i, &end) in bounds.iter().enumerate() {
        let part = &records[start..end];
        let number = n - 1 - i;
        if number == 0 {
            write_plain(&log, part, "");
        } else if number.is_multiple_of(2) {
            write_zst(&dir.join(format!("queries.log.{number}.zst")), part);
        } else {
            write_plain(&dir.join(format!("queries.log.{number}")), part, "");
        }
        start = end;
    }
    files(&log).expect("files")
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Over any spread of records into rotated files, `scan` finds what a
    /// plain filter over all records finds, in order, and `latest(n)` the
    /// last n of them.
    #[test]
    fn scan_and_latest_agree_with_a_plain_filter(
        picks in proptest::collection::vec((0u8..4, 0u8..4, 0u8..3, 0u64..3), 0..60),
        cuts in proptest::collection::vec(0usize..60, 0..5),
        which in (0u8..5, 0u8..4, 0u8..4, 0u64..70),
        limit in 1usize..20,
    ) {
        let names = ["seized.example", "www.seized.example", "up.example", "a.notseized.example"];
        let clients = ["10.1.2.3", "10.1.2.4", "10.9.0.1", "2001:db8::1"];
        let lists = [Some("seized"), Some("ofac"), None];
        let mut ms = T0;
        let mut records = Vec::new();
        for &(n, c, l, gap) in &picks {
            ms += gap * 30_000;
            records.push(line(ms, clients[usize::from(c)], names[usize::from(n)], lists[usize::from(l)]));
        }
        let filter = Filter {
            client: ["10.1.2.3", "10.1.2.0/24", "2001:db8::/32", "0.0.0.0/0"]
                .get(usize::from(which.0))
                .map(|c| c.parse().expect("client")),
            list: ["seized", "ofac"].get(usize::from(which.1)).map(|l| (*l).to_owned()),
            name: ["seized.example", "example"].get(usize::from(which.2)).map(|n| (*n).to_owned()),
            since_ms: (which.3 < 60).then_some(T0 + which.3 * 30_000),
            until_ms: None,
        };
        let want: Vec<Record> = records
            .iter()
            .map(|l| parse_line(l.as_bytes()).expect("record"))
            .filter(|r| filter.matches(r))
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let list = spread(dir.path(), &records, &cuts);
        let mut stats = Stats::default();
        let mut got = Vec::new();
        scan(&list, &filter, None, &mut stats, &mut |r| {
            got.push(r);
            Next::Continue
        });
        proptest::prop_assert_eq!(&got, &want);
        proptest::prop_assert_eq!(stats.skipped, 0);
        let newest = latest(&list, &filter, limit, None);
        let tail = &want[want.len().saturating_sub(limit)..];
        proptest::prop_assert_eq!(&newest.records[..], tail);
        if want.len() > limit {
            proptest::prop_assert!(newest.more);
        }
        proptest::prop_assert!(!newest.timed_out);
    }

    /// Names without escapes: `name_under` is a label-wise suffix test.
    #[test]
    fn name_under_is_a_label_suffix(
        name in proptest::collection::vec("[a-cA-C]{1,3}", 1..5),
        under in proptest::collection::vec("[a-c]{1,3}", 1..4),
    ) {
        let n: Vec<String> = name.iter().map(|l| l.to_ascii_lowercase()).collect();
        let naive = n.len() >= under.len() && n[n.len() - under.len()..] == under[..];
        proptest::prop_assert_eq!(name_under(&name.join("."), &under.join(".")), naive);
    }
}

/// A deadline already past stops a search (checked every few thousand
/// lines) and says so.
#[test]
fn a_search_past_its_deadline_stops_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records: Vec<String> = (0..10_000)
        .map(|i| line(T0 + i, "10.1.2.3", "x.example", None))
        .collect();
    let list = spread(dir.path(), &records, &[5000]);
    let past = std::time::Instant::now();
    let found = latest(&list, &Filter::default(), 100, Some(past));
    assert!(found.timed_out && found.more);
    assert!(found.records.is_empty(), "a partial file is not given");
    let all = latest(&list, &Filter::default(), 100, None);
    assert_eq!(all.records.len(), 100);
    assert_eq!(all.records[99].time_ms, T0 + 9999);
}

#[test]
fn a_search_asked_in_words_is_checked_against_the_config() {
    let now = UNIX_EPOCH + Duration::from_millis(T0);
    let lists = ["seized", "ofac-sdn"];
    let asked = Asked {
        client: Some("10.1.2.3"),
        list: Some("seized"),
        name: Some("Seized.Example."),
        since: Some("1h"),
        until: Some(" "),
    };
    assert!(asked.any());
    assert!(!Asked::default().any());
    let (f, notes) = asked.filter(&lists, ClientIp::Full, now).expect("filter");
    assert!(notes.is_empty());
    assert_eq!(f.client, Some("10.1.2.3".parse().expect("ip")));
    assert_eq!(f.name.as_deref(), Some("seized.example"));
    assert_eq!((f.since_ms, f.until_ms), (Some(T0 - 3_600_000), None));
    let (f, notes) = asked
        .filter(&lists, ClientIp::Truncate, now)
        .expect("filter");
    assert_eq!(f.client, Some("10.1.2.0/24".parse().expect("net")));
    assert!(notes[0].contains("10.1.2.0/24"), "{notes:?}");
    let err = Asked {
        list: Some("nope"),
        ..Asked::default()
    }
    .filter(&lists, ClientIp::Full, now)
    .expect_err("unknown list");
    assert_eq!(
        err.to_string(),
        r#"no list "nope"; the lists are: seized, ofac-sdn"#
    );
    for bad in [
        Asked {
            client: Some("nobody"),
            ..Asked::default()
        },
        Asked {
            name: Some("a..b"),
            ..Asked::default()
        },
        Asked {
            since: Some("soon"),
            ..Asked::default()
        },
        Asked {
            since: Some("1h"),
            until: Some("2h"),
            ..Asked::default()
        },
    ] {
        assert!(bad.filter(&lists, ClientIp::Full, now).is_err(), "{bad:?}");
    }
}

/// The observer writes records in the order it drains its rings, not
/// quite in time order: a search gives them in time order.
#[test]
fn records_a_little_out_of_order_come_out_in_time_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = |ms: u64, name: &str| line(T0 + ms, "127.0.0.1", name, None);
    let records = [
        at(5, "forwarded-first.example"),
        at(3, "blocked-earlier.example"),
        at(3, "same-time-later-line.example"),
        at(REORDER_MS * 3, "much-later.example"),
        at(REORDER_MS * 3 - 1, "just-before.example"),
    ];
    let list = spread(dir.path(), &records, &[]);
    let mut names = Vec::new();
    scan(
        &list,
        &Filter::default(),
        None,
        &mut Stats::default(),
        &mut |r| {
            names.push(r.name.unwrap_or_default());
            Next::Continue
        },
    );
    assert_eq!(
        names,
        [
            "blocked-earlier.example",
            "same-time-later-line.example",
            "forwarded-first.example",
            "just-before.example",
            "much-later.example",
        ]
    );
    let newest = latest(&list, &Filter::default(), 5, None);
    let names: Vec<String> = newest.records.into_iter().filter_map(|r| r.name).collect();
    assert_eq!(names[0], "blocked-earlier.example");
    assert_eq!(names[4], "much-later.example");
}
