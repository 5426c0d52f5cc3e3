//! The checker's tests: whole files in, typed config or every problem out.

use super::*;
use std::time::Duration;

fn parse(text: &str) -> Result<Config, Error> {
    Config::parse(Path::new("/etc/embargo/test.toml"), text)
}

/// A section's `text` after the one `[upstream]` every config needs,
/// parsed as `/etc/embargo/embargo.toml`: the config, or each problem as
/// `validate` prints it. The section modules' own tests read through it.
pub(super) fn section(text: &str) -> Result<Config, Vec<String>> {
    let text = format!("[upstream]\nservers = [\"127.0.0.1:53\"]\n{text}");
    Config::parse(Path::new("/etc/embargo/embargo.toml"), &text).map_err(|e| match e {
        Error::Invalid(p) => p.iter().map(ToString::to_string).collect(),
        e => vec![e.to_string()],
    })
}

#[test]
fn shipped_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let c = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!c.listen.is_empty());
            for l in &c.lists {
                if let Source::File(p) = &l.source {
                    assert!(
                        p.exists(),
                        "{} names missing {}",
                        path.display(),
                        p.display()
                    );
                }
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "expected the shipped configs in {}",
        dir.display()
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_line() {
    let err = parse("[server]\nlisten = [\"127.0.0.1:53\"]\n\n[block]\nactoin = \"nxdomain\"\n")
        .expect_err("unknown key");
    let text = err.to_string();
    assert!(text.starts_with("/etc/embargo/test.toml:5:"), "{text}");
    assert!(text.contains("actoin"), "{text}");
    let err = parse("[[lists]]\nname = \"a\"\nsource = \"a.txt\"\nbogus = 1\n")
        .expect_err("unknown list key");
    assert!(err.to_string().contains(":4:"), "{err}");
    assert!(err.to_string().contains("bogus"), "{err}");
}

/// Issue 21 (2): an unknown key no longer hides the rest of the file:
/// one run names it, the value of the wrong type and the value out of
/// range, each at its place.
#[test]
fn r21_an_unknown_key_is_reported_with_every_other_problem() {
    let p =
        problems("[upstream]\ntimeout_ms = \"soon\"\n\n[block]\nacton = \"sinkhole\"\nttl = -5\n");
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "bad.toml:5:1: block.acton: unknown key (did you mean action?); [block] has action, sinkhole_ipv4, sinkhole_ipv6, ttl, ede, canary_interval",
            "bad.toml:2:14: upstream.timeout_ms: expected a whole number of milliseconds, got the string \"soon\"",
            "bad.toml:6:7: block.ttl: expected a whole number of seconds (0 to 2147483647), got the number -5",
        ]
    );
    // Unknown keys in several sections, in a [[lists]] table, in a
    // [[forward]] table and at the top: each is named, in the file's
    // order, and the rest still read.
    let p = problems(
        "bogus = 1\n[server]\nport = 53\n[[lists]]\nname = \"a\"\nsource = \"a.txt\"\n[[lists]]\nname = \"b\"\nsorce = \"b.txt\"\n[[forward]]\nzones = [\"a.example\"]\nservers = [\"10.0.0.1\"]\nport = 53\n",
    );
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 5, "{shown:#?}");
    assert!(
        shown[0].starts_with("bad.toml:1:1: bogus: unknown section; "),
        "{shown:#?}"
    );
    assert!(
        shown[1].starts_with("bad.toml:3:1: server.port: unknown key; [server] has listen, "),
        "{shown:#?}"
    );
    assert!(shown[2].starts_with("bad.toml:9:1: lists[2].sorce: unknown key (did you mean source?); [[lists]] has name, source, "), "{shown:#?}");
    assert!(
        shown[3].starts_with("bad.toml:13:1: forward[1].port: unknown key; [[forward]] has "),
        "{shown:#?}"
    );
    assert_eq!(
        shown[4],
        "bad.toml:7:1: lists[2]: missing source: every list needs a name and a source"
    );
}

#[test]
fn every_problem_is_reported_with_location() {
    let err = parse(
        "[server]\nlisten = [\"nonsense\"]\n[upstream]\nservers = [\"dns.example:53\"]\n[block]\naction = \"drop\"\nede = \"angry\"\n",
    )
    .expect_err("invalid");
    let Error::Invalid(problems) = err else {
        panic!("not Invalid")
    };
    let lines: Vec<usize> = problems.iter().map(|p| p.location.line).collect();
    assert_eq!(lines, vec![2, 4, 6, 7], "{problems:?}");
}

#[test]
fn defaults_and_overrides() {
    let c = parse(
        "[upstream]\nservers = [\"127.0.0.1:5300\", \"tcp://[::1]:53\", \"10.0.0.1\"]\n[block]\naction = \"sinkhole\"\nttl = 60\n[[lists]]\nname = \"l\"\nsource = \"lists/l.txt\"\nede = \"censored\"\naction = \"refused\"\n[[lists]]\nname = \"m\"\nsource = \"/abs/m.txt\"\nformat = \"hosts\"\n",
    )
    .expect("valid");
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.upstream.servers[1].transport, Transport::Tcp);
    assert_eq!(c.upstream.servers[2].addr.port(), 53);
    assert_eq!(c.upstream.strategy, Strategy::Failover);
    assert_eq!(c.cache, CacheConfig::default());
    assert_eq!(
        c.lists[0].source,
        Source::File("/etc/embargo/lists/l.txt".into())
    );
    assert_eq!(c.state_dir, Path::new("/etc/embargo/embargo-state"));
    assert_eq!(c.lists[0].action, Action::Refused);
    assert_eq!(c.lists[0].ede, EdeCode::Censored);
    assert_eq!(c.lists[0].ttl, 60);
    assert_eq!(c.lists[1].action, Action::Sinkhole);
    assert_eq!(c.lists[1].format, Some(Format::Hosts));
}

#[test]
fn remote_lists_live_in_the_state_dir_with_their_fetch_settings() {
    let c = parse(
        "[state]\ndir = \"/var/lib/embargo\"\n[[lists]]\nname = \"ofac/sdn\"\nsource = \"https://example.org/sdn.xml\"\nrefresh = \"1h 30m\"\nmax_size_mb = 8\nmax_shrink = \"20%\"\n",
    )
    .expect("valid");
    let l = &c.lists[0];
    assert_eq!(l.source, Source::Http("https://example.org/sdn.xml".into()));
    assert_eq!(l.path, Path::new("/var/lib/embargo/lists/ofac_sdn.list"));
    assert_eq!(l.fetch.refresh, Duration::from_secs(5400));
    assert_eq!(l.fetch.max_size, 8 * 1024 * 1024);
    assert!((l.fetch.max_shrink - 0.2).abs() < 1e-9);
    let err = parse("[[lists]]\nname = \"a\"\nsource = \"ftp://x/y\"\nrefresh = \"soon\"\nmax_shrink = \"150%\"\n")
        .expect_err("invalid");
    let Error::Invalid(problems) = err else {
        panic!("not Invalid")
    };
    assert_eq!(
        problems.iter().map(|p| p.location.line).collect::<Vec<_>>(),
        [3, 4, 5],
        "{problems:?}"
    );
}

#[test]
fn zone_transfer_sources_take_a_tsig_key_and_need_rpz() {
    let c = parse("[[lists]]\nname = \"feed\"\nsource = \"axfr://127.0.0.1:5300/rpz.test\"\nformat = \"rpz\"\ntsig = \"hmac-sha256:k:c2VjcmV0\"\n")
        .expect("valid");
    let Source::Axfr(x) = &c.lists[0].source else {
        panic!("axfr")
    };
    assert_eq!(x.tsig.as_ref().map(|t| t.name.as_str()), Some("k"));
    assert_eq!(
        c.lists[0].path,
        Path::new("/etc/embargo/embargo-state/lists/feed.list")
    );
    let err = parse("[[lists]]\nname = \"a\"\nsource = \"axfr://127.0.0.1/z\"\ntsig = \"md5:k:x\"\n[[lists]]\nname = \"b\"\nsource = \"b.txt\"\ntsig = \"k:c2VjcmV0\"\n")
        .expect_err("invalid");
    let Error::Invalid(problems) = err else {
        panic!("not Invalid")
    };
    assert_eq!(
        problems.iter().map(|p| p.location.line).collect::<Vec<_>>(),
        [4, 3, 8],
        "{problems:?}"
    );
}

/// Issue 20: a signed list's keys, their default and what each needs.
#[test]
fn signed_lists_need_a_key_an_http_source_and_each_other() {
    let key = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
    let c = parse(&format!("[[lists]]\nname = \"feed\"\nsource = \"https://lists.example/feed.txt\"\nsignature = \"minisign\"\npublic_key = \"{key}\"\n"))
        .expect("valid");
    let signed = c.lists[0].signature.as_ref().expect("signed");
    assert_eq!(signed.url, "https://lists.example/feed.txt.minisig");
    assert_eq!(signed.public_key, key);
    let p = problems(&format!(
        "[[lists]]\nname = \"a\"\nsource = \"https://x.example/a\"\nsignature = \"minisign\"\n\
         [[lists]]\nname = \"b\"\nsource = \"https://x.example/b\"\npublic_key = \"{key}\"\n\
         [[lists]]\nname = \"c\"\nsource = \"c.txt\"\nsignature = \"minisign\"\npublic_key = \"{key}\"\n\
         [[lists]]\nname = \"d\"\nsource = \"https://x.example/d\"\nsignature = \"gpg\"\npublic_key = \"RWnotakey\"\n"
    ));
    let said: Vec<(usize, &str)> = p
        .iter()
        .map(|p| (p.location.line, p.message.as_str()))
        .collect();
    let has = |line: usize, words: &str| {
        assert!(
            said.iter().any(|(l, m)| *l == line && m.contains(words)),
            "line {line}: {words:?} not in {said:?}"
        );
    };
    has(4, "lists[1].signature: needs public_key");
    has(8, "lists[2].public_key: applies only with signature");
    has(
        12,
        "lists[3].signature: applies only to http:// and https:// sources",
    );
    has(17, "lists[4].signature");
    has(18, "lists[4].public_key");
    assert_eq!(said.len(), 5, "{said:?}");
}

/// Issue 20 (canary): a name that must stay blocked, per list; how often
/// the server asks for it, in `[block]`. A bad value names file, line and key.
#[test]
fn r20_canaries_are_names_and_their_interval_a_duration() {
    let c = parse(
        "[[lists]]\nname = \"a\"\nsource = \"a.txt\"\ncanary = \"Canary.Seized.Example.\"\n[[lists]]\nname = \"b\"\nsource = \"b.txt\"\n",
    )
    .expect("valid");
    assert_eq!(c.lists[0].canary.as_deref(), Some("canary.seized.example"));
    assert_eq!(c.lists[1].canary, None, "no canary unless one is named");
    assert_eq!(c.block.canary_interval, Duration::from_secs(60));
    let c = parse("[block]\ncanary_interval = \"500ms\"\n").expect("valid");
    assert_eq!(c.block.canary_interval, Duration::from_millis(500));
    let shown: Vec<String> = problems(
        "[block]\ncanary_interval = \"0s\"\n[[lists]]\nname = \"a\"\nsource = \"a.txt\"\ncanary = \"not a name!\"\n",
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        shown,
        [
            r#"bad.toml:2:19: block.canary_interval: expected a duration such as "60s" or "5m" (not zero), got the string "0s""#,
            r#"bad.toml:6:10: lists[1].canary: expected a domain name that must stay blocked, such as "canary.seized.example", got the string "not a name!""#,
        ]
    );
}

#[test]
fn duplicate_list_names_are_an_error() {
    let err =
        parse("[[lists]]\nname = \"a\"\nsource = \"x\"\n[[lists]]\nname = \"a\"\nsource = \"y\"\n")
            .expect_err("dup");
    assert!(err.to_string().contains(":5:"), "{err}");
}

/// The problems in `text`, read as `bad.toml`.
fn problems(text: &str) -> Vec<Problem> {
    match Config::parse(Path::new("bad.toml"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(Error::Invalid(p)) => p,
        Err(e) => panic!("{e}"),
    }
}

/// Issue 9: a value of the wrong type names the key, says what is
/// wanted in words and what was found, and points at the value.
#[test]
fn r9_wrong_type_names_the_key_in_the_users_words() {
    let err = Config::parse(
        Path::new("bad.toml"),
        "[upstream]\nservers = [\"127.0.0.1:53\"]\ntimeout_ms = \"soon\"\n",
    )
    .expect_err("wrong type");
    assert_eq!(
        err.to_string(),
        "bad.toml:3:14: upstream.timeout_ms: expected a whole number of milliseconds, got the string \"soon\""
    );
}

/// Every key the file accepts: its section (`lists` for a `[[lists]]`
/// key), its name, a value of the wrong type, what the message says was
/// found, and words from what it says the key wants.
#[rustfmt::skip]
const KEYS: &[(&str, &str, &str, &str, &str)] = &[
    ("server",   "listen",        r#""127.0.0.1:53""#,     r#"the string "127.0.0.1:53""#, "a list of addresses"),
    ("server",   "user",          "65534",                 "the number 65534",             "a user name"),
    ("server",   "group",         "[]",                    "an empty array",               "a group name"),
    ("server",   "workers",       r#""auto""#,             r#"the string "auto""#,         "a whole number of UDP worker threads"),
    ("server",   "tcp_max_connections", "1.5",             "the number 1.5",               "a whole number of connections"),
    ("server",   "tcp_idle_timeout", "10",                 "the number 10",                r#"a duration such as "10s""#),
    ("server",   "tcp_message_timeout", "true",            "true",                         r#"a duration such as "10s""#),
    ("server",   "tcp_max_inflight", r#""32""#,            r#"the string "32""#,           "a whole number of queries in flight per connection"),
    ("server",   "max_forwards",  "[10000]",               "an array",                     "a whole number of forwarded queries in flight"),
    ("server",   "tls_listen",    r#""0.0.0.0:853""#,      r#"the string "0.0.0.0:853""#,  "a list of addresses to listen on"),
    ("server",   "https_listen",  "443",                   "the number 443",               "a list of addresses to listen on"),
    ("server",   "quic_listen",   "true",                  "true",                         "a list of addresses to listen on"),
    ("server",   "certificate",   "[]",                    "an empty array",               "a PEM file path"),
    ("server",   "private_key",   "1",                     "the number 1",                 "a PEM file path"),
    ("server",   "https_path",    "[\"/dns-query\"]",       "an array",                     "an absolute URL path"),
    ("server",   "tls_max_connections", r#""1k""#,         r#"the string "1k""#,           "a whole number of connections"),
    ("server",   "tls_handshake_timeout", "5",             "the number 5",                 r#"a duration such as "10s""#),
    ("server",   "tls_idle_timeout", "30.0",               "the number 30.0",              r#"a duration such as "10s""#),
    ("server",   "tls_max_streams", "false",               "false",                        "a whole number of queries in flight per connection"),
    ("server",   "https_max_body", r#""64KiB""#,           r#"the string "64KiB""#,        "a whole number of bytes"),
    ("upstream", "servers",       r#""9.9.9.9:53""#,       r#"the string "9.9.9.9:53""#,   "a list of resolver addresses"),
    ("upstream", "timeout_ms",    r#""soon""#,             r#"the string "soon""#,         "a whole number of milliseconds"),
    ("upstream", "strategy",      "1",                     "the number 1",                 r#"one of "failover", "fastest" or "round_robin""#),
    ("upstream", "ca_file",       "[]",                    "an empty array",               "a PEM file path"),
    ("upstream", "udp_sockets",   r#""many""#,             r#"the string "many""#,         "a whole number of sockets"),
    ("upstream", "dnssec",        "true",                  "true",                         r#"one of "off" or "validate""#),
    ("upstream", "trust_anchors", r#""root.key""#,         r#"the string "root.key""#,     "a list of trust anchor files"),
    ("upstream", "bogus_ttl",     r#""1m""#,               r#"the string "1m""#,           "a whole number of seconds"),
    ("cache",    "size",          r#""big""#,              r#"the string "big""#,          "a whole number of answers to cache"),
    ("cache",    "max_bytes",     r#""64MiB""#,            r#"the string "64MiB""#,        "a whole number of bytes"),
    ("cache",    "min_ttl",       r#""1m""#,               r#"the string "1m""#,           "a whole number of seconds"),
    ("cache",    "max_ttl",       "86400.0",               "the number 86400.0",           "a whole number of seconds"),
    ("cache",    "negative_ttl_max", "[3600]",             "an array",                     "a whole number of seconds"),
    ("cache",    "stale_max",     "86400",                 "the number 86400",             r#"a duration such as "1d""#),
    ("cache",    "stale_client_timeout_ms", r#""400ms""#,   r#"the string "400ms""#,        "a whole number of milliseconds"),
    ("cache",    "servfail_ttl",  r#""5s""#,               r#"the string "5s""#,           "a whole number of seconds"),
    ("cache",    "prefetch",      r#""yes""#,              r#"the string "yes""#,          "true or false"),
    ("block",    "action",        "5",                     "the number 5",                 r#"one of "nxdomain", "nodata", "refused" or "sinkhole""#),
    ("block",    "sinkhole_ipv4", "0",                     "the number 0",                 "an IPv4 address"),
    ("block",    "sinkhole_ipv6", r#"["::"]"#,             "an array",                     "an IPv6 address"),
    ("block",    "ttl",           r#""5m""#,               r#"the string "5m""#,           "a whole number of seconds"),
    ("block",    "ede",           "16",                    "the number 16",                r#"one of "blocked", "censored" or "filtered""#),
    ("block",    "canary_interval", "60",                  "the number 60",                r#"a duration such as "60s""#),
    ("state",    "dir",           "true",                  "true",                         "a directory path"),
    ("lists",    "name",          "7",                     "the number 7",                 "a list name"),
    ("lists",    "source",        r#"{ path = "a.txt" }"#, "a table",                      "a file path or URL"),
    ("lists",    "format",        "false",                 "false",                        r#"one of "auto", "domains""#),
    ("lists",    "authority",     "1",                     "the number 1",                 "who ordered or publishes the block"),
    ("lists",    "reason",        "[]",                    "an empty array",               "why the names are blocked"),
    ("lists",    "reference",     "2023-10-18",            "the date-time 2023-10-18",     "a URL or citation"),
    ("lists",    "action",        "1.5",                   "the number 1.5",               r#"one of "nxdomain""#),
    ("lists",    "sinkhole_ipv4", "127",                   "the number 127",               "an IPv4 address"),
    ("lists",    "sinkhole_ipv6", "true",                  "true",                         "an IPv6 address"),
    ("lists",    "ede",           "15",                    "the number 15",                r#"one of "blocked""#),
    ("lists",    "refresh",       "3600",                  "the number 3600",              r#"a duration such as "6h""#),
    ("lists",    "timeout",       "60",                    "the number 60",                r#"a duration such as "60s""#),
    ("lists",    "max_size_mb",   r#""8MB""#,              r#"the string "8MB""#,          "a whole number of megabytes"),
    ("lists",    "max_shrink",    "true",                  "true",                         r#"a percentage such as "50%""#),
    ("lists",    "tsig",          "42",                    "the number 42",                "a TSIG key"),
    ("lists",    "inspect_cname", r#""yes""#,              r#"the string "yes""#,          "true or false"),
    ("lists",    "inspect_answers", "1",                   "the number 1",                 "true or false"),
    ("lists",    "signature",     "true",                  "true",                         r#""minisign""#),
    ("lists",    "public_key",    "7",                     "the number 7",                 "a minisign public key"),
    ("lists",    "signature_url", "[]",                    "an empty array",               "an http:// or https:// URL"),
    ("history",  "max_mb",        r#""16MB""#,             r#"the string "16MB""#,         "a whole number of megabytes"),
    ("lists",    "expires",       r#""next week""#,        r#"the string "next week""#,    "a UTC date and time"),
    ("lists",    "canary",        "true",                  "true",                         "a domain name that must stay blocked"),
    ("groups",   "name",          "1",                     "the number 1",                 "a group name"),
    ("groups",   "clients",       r#""10.0.0.0/8""#,       r#"the string "10.0.0.0/8""#,   "a list of networks"),
    ("groups",   "client_ids",    r#""laptop-7""#,         r#"the string "laptop-7""#,     "a list of client IDs"),
    ("groups",   "lists",         r#""seized""#,           r#"the string "seized""#,       "a list of list names"),
    ("groups",   "action",        "true",                  "true",                         r#"one of "nxdomain""#),
    ("allow",    "domains",       r#""example.org""#,      r#"the string "example.org""#,  "a list of domain names"),
    ("allow",    "files",         r#""allow.txt""#,        r#"the string "allow.txt""#,    "a list of file paths"),
    ("log",      "queries",       "true",                  "true",                         r#"one of "off", "blocked" or "all""#),
    ("log",      "format",        r#""yaml""#,             r#"the string "yaml""#,         r#"one of "json" or "text""#),
    ("log",      "path",          "1",                     "the number 1",                 r#"a file path such as "/var/log/embargo/queries.log", or "-""#),
    ("log",      "max_size_mb",   r#""64MB""#,             r#"the string "64MB""#,         "a whole number of megabytes"),
    ("log",      "keep",          "2.5",                   "the number 2.5",               "a whole number of rotated files to keep"),
    ("log",      "client_ip",     r#""anonymous""#,        r#"the string "anonymous""#,    r#"one of "full", "truncate" or "hash""#),
    ("log",      "queue",         r#"["big"]"#,            "an array",                     "a whole number of records"),
    ("log",      "compress",      r#""zstd""#,             r#"the string "zstd""#,         "true or false"),
    ("dnstap",   "socket",        "true",                  "true",                         "a unix socket path"),
    ("dnstap",   "tcp",           "6000",                  "the number 6000",              "a collector address"),
    ("dnstap",   "identity",      "1",                     "the number 1",                 "the identity to send"),
    ("dnstap",   "version",       "[]",                    "an empty array",               "the version to send"),
    ("dnstap",   "queue_kb",      r#""1MB""#,              r#"the string "1MB""#,          "a whole number of KiB"),
    ("hits",     "max_clients",   r#""all""#,              r#"the string "all""#,          "a whole number of clients per list"),
    ("alerts",   "webhook",       "true",                  "true",                         "an http:// or https:// URL"),
    ("alerts",   "ca_file",       "1",                     "the number 1",                 "a PEM file of CA certificates"),
    ("alerts",   "token_file",    "[]",                    "an empty array",               "a file path"),
    ("alerts",   "queue",         r#""1000""#,             r#"the string "1000""#,         "a whole number of alerts"),
    ("alerts",   "per_list",      "2.5",                   "the number 2.5",               "a whole number of posts per list per window"),
    ("alerts",   "window",        "60",                    "the number 60",                r#"a duration from 1s to 1d"#),
    ("alerts",   "timeout",       "5",                     "the number 5",                 r#"a duration from 100ms to 5m"#),
    ("alerts",   "retries",       r#""3""#,                r#"the string "3""#,            "a whole number of retries"),
    ("access",   "allow",         r#""10.0.0.0/8""#,       r#"the string "10.0.0.0/8""#,   "a list of networks"),
    ("access",   "deny",          "true",                  "true",                         "a list of networks"),
    ("access",   "action",        "1",                     "the number 1",                 r#"one of "refuse" or "drop""#),
    ("rate_limit", "responses_per_second", r#""10/s""#,    r#"the string "10/s""#,         "a whole number of answers per second"),
    ("rate_limit", "window",      r#""15s""#,              r#"the string "15s""#,          "a whole number of seconds"),
    ("rate_limit", "slip",        "true",                  "true",                         "a whole number of limited answers per truncated one"),
    ("rate_limit", "ipv4_prefix", r#""/24""#,              r#"the string "/24""#,          "a whole number of bits"),
    ("rate_limit", "ipv6_prefix", "56.0",                  "the number 56.0",              "a whole number of bits"),
    ("rate_limit", "exempt",      r#""127.0.0.1""#,        r#"the string "127.0.0.1""#,    "a list of networks"),
    ("rate_limit", "table_size",  r#""64k""#,              r#"the string "64k""#,          "a whole number of client prefixes to track"),
    ("http",     "listen",        "8053",                  "the number 8053",              "an address to listen on"),
    ("http",     "token",         "12345",                 "the number 12345",             "a secret of at least 16 characters"),
    ("http",     "token_file",    "true",                  "true",                         "a file path"),
    ("forward",  "zones",         r#""corp.example""#,     r#"the string "corp.example""#, "a list of domain names"),
    ("forward",  "servers",       r#""10.0.0.10""#,        r#"the string "10.0.0.10""#,    "a list of resolver addresses"),
    ("forward",  "strategy",      "1",                     "the number 1",                 r#"one of "failover", "fastest" or "round_robin""#),
    ("forward",  "timeout_ms",    r#""soon""#,             r#"the string "soon""#,         "a whole number of milliseconds"),
    ("forward",  "udp_sockets",   r#""many""#,             r#"the string "many""#,         "a whole number of sockets"),
    ("local_zones", "defaults",   r#""yes""#,              r#"the string "yes""#,          "true or false"),
    ("local_zones", "zones",      r#""lan""#,              r#"the string "lan""#,          "a list of domain names"),
    ("local_zones", "hosts_files", r#""hosts""#,           r#"the string "hosts""#,        "a list of hosts file paths"),
    ("local_zones", "domain",     "1",                     "the number 1",                 "a domain name"),
    ("local_zones", "ptr",        r#""no""#,               r#"the string "no""#,           "true or false"),
    ("records",  "name",          "7",                     "the number 7",                 "a domain name"),
    ("records",  "ttl",           r#""1h""#,               r#"the string "1h""#,           "a whole number of seconds"),
    ("records",  "a",             "1",                     "the number 1",                 "an IPv4 address"),
    ("records",  "aaaa",          "true",                  "true",                         "an IPv6 address"),
    ("records",  "cname",         r#"["x.lan"]"#,          "an array",                     "the name it is an alias for"),
    ("records",  "txt",           "5",                     "the number 5",                 "a text"),
    ("records",  "mx",            "10",                    "the number 10",                "a preference and a mail server"),
    ("records",  "srv",           "[]",                    "an empty array",               "priority, weight, port and target"),
    ("records",  "ptr",           "5",                     "the number 5",                 "false (no PTR for this table's addresses)"),
    ("http",     "max_connections", r#""64""#,             r#"the string "64""#,           "a whole number of connections"),
    ("http",     "timeout",       "10",                    "the number 10",                r#"a duration such as "10s""#),
];

/// Serde's words, which the operator never wrote and should never read.
const SERDE_WORDS: &[&str] = &[
    "u64",
    "u32",
    "usize",
    "i64",
    "sequence",
    "invalid type",
    "struct",
    "Spec",
    "map",
];

#[test]
fn every_key_reports_a_wrong_type_with_its_path_and_place() {
    for &(section, key, value, found, want) in KEYS {
        let path = if matches!(section, "lists" | "groups" | "forward" | "records") {
            format!("{section}[1].{key}")
        } else {
            format!("{section}.{key}")
        };
        // Each key sits on line 4, after lines that set other keys, so
        // the line number proves the problem points at the key's own line.
        let text = if section == "lists" {
            let (a, b) = match key {
                "name" => ("source = \"a.txt\"", "format = \"auto\""),
                "source" => ("name = \"a\"", "format = \"auto\""),
                _ => ("name = \"a\"", "source = \"a.txt\""),
            };
            format!("[[lists]]\n{a}\n{b}\n{key} = {value}\n")
        } else if section == "groups" {
            let (a, b) = match key {
                "name" => ("clients = [\"10.0.0.0/8\"]", "action = \"nxdomain\""),
                "clients" => ("name = \"g\"", "action = \"nxdomain\""),
                _ => ("name = \"g\"", "clients = [\"10.0.0.0/8\"]"),
            };
            format!("[[groups]]\n{a}\n{b}\n{key} = {value}\n")
        } else if section == "forward" {
            let (a, b) = match key {
                "zones" => ("servers = [\"10.0.0.10\"]", "strategy = \"failover\""),
                "servers" => ("zones = [\"corp.example\"]", "strategy = \"failover\""),
                _ => ("zones = [\"corp.example\"]", "servers = [\"10.0.0.10\"]"),
            };
            format!("[[forward]]\n{a}\n{b}\n{key} = {value}\n")
        } else if section == "records" {
            let (a, b) = match key {
                "name" => ("a = \"192.168.1.10\"", "ttl = 60"),
                "a" => ("name = \"nas.home.arpa\"", "ttl = 60"),
                _ => ("name = \"nas.home.arpa\"", "a = \"192.168.1.10\""),
            };
            format!("[[records]]\n{a}\n{b}\n{key} = {value}\n")
        } else {
            format!("# a config\n\n[{section}]\n{key} = {value}\n")
        };
        let line = 4;
        let col = key.len() + " = ".len() + 1;
        let problems = problems(&text);
        let p = problems
            .iter()
            .find(|p| p.message.starts_with(&format!("{path}: ")))
            .unwrap_or_else(|| panic!("{path}: no problem names it in {problems:#?}"));
        let shown = p.to_string();
        let expected_start = format!("bad.toml:{line}:{col}: {path}: expected ");
        assert!(
            shown.starts_with(&expected_start),
            "{shown}\nwant {expected_start}…"
        );
        assert!(shown.contains(want), "{shown}\nwant words {want:?}");
        assert!(
            shown.ends_with(&format!(", got {found}")),
            "{shown}\nwant found {found}"
        );
        for word in SERDE_WORDS {
            assert!(!shown.contains(word), "{shown} speaks serde: {word}");
        }
    }
}

/// The table above covers every key the shipped configs use, so a key
/// added to them cannot escape the wrong-type test.
#[test]
fn every_shipped_key_is_in_the_wrong_type_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("read");
            let table: toml::Table = toml::from_str(&text).expect("toml");
            for (section, value) in &table {
                let tables = match value {
                    toml::Value::Table(t) => vec![t],
                    toml::Value::Array(a) => a.iter().filter_map(|v| v.as_table()).collect(),
                    other => panic!("{}: {section} = {other}", path.display()),
                };
                for t in tables {
                    for key in t.keys() {
                        paths.push((section.clone(), key.clone()));
                    }
                }
            }
        }
    }
    assert!(paths.len() > 20, "{paths:?}");
    for (section, key) in paths {
        assert!(
            KEYS.iter().any(|k| k.0 == section && k.1 == key),
            "{section}.{key} is shipped but not in KEYS"
        );
    }
}

#[test]
fn array_elements_of_the_wrong_type_name_their_position() {
    let p = problems(
        "[server]\nlisten = [\"127.0.0.1:53\", 53]\n[upstream]\nservers = [\n  \"9.9.9.9:53\",\n  true,\n]\n[allow]\ndomains = [\"ok.example\", [\"nested.example\"]]\nfiles = [{ path = \"a\" }]\n",
    );
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "bad.toml:2:27: server.listen[2]: expected an address to listen on, ip:port or [ipv6]:port, such as \"127.0.0.1:5353\", got the number 53",
            "bad.toml:6:3: upstream.servers[2]: expected a resolver address: ip:port, [ipv6]:port, tcp://ip:port, tls://ip:port#server.name or https://ip:port/dns-query#server.name (hostnames need a bootstrap resolver and are not supported), got true",
            "bad.toml:9:26: allow.domains[2]: expected a domain name such as \"example.org\", got an array",
            "bad.toml:10:10: allow.files[1]: expected a file path such as \"allow.txt\", got a table",
        ]
    );
}

/// Issue 16: RFC 2181 section 8 reads a TTL of 2^31 or more as zero, so a
/// `[block] ttl` that large would tell resolvers not to cache the block.
#[test]
fn r16_block_ttl_stops_below_2_to_the_31() {
    let p = problems("[upstream]\nservers = [\"127.0.0.1:53\"]\n[block]\nttl = 2147483648\n");
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "bad.toml:4:7: block.ttl: expected a whole number of seconds (0 to 2147483647), got the number 2147483648"
        ]
    );
    let ok = Config::parse(Path::new("ok.toml"), "[block]\nttl = 2147483647\n").expect("valid");
    assert_eq!(ok.block.ttl, 2_147_483_647);
}

#[test]
fn numbers_out_of_range_say_the_range() {
    let p = problems(
        "[upstream]\ntimeout_ms = 0\n[cache]\nsize = -5\n[block]\nttl = -1\n[[lists]]\nname = \"a\"\nsource = \"a.txt\"\nmax_size_mb = 0\n[[lists]]\nname = \"b\"\nsource = \"b.txt\"\nmax_size_mb = -1\n[[lists]]\nname = \"c\"\nsource = \"c.txt\"\nmax_shrink = -10\n",
    );
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "bad.toml:2:14: upstream.timeout_ms: expected a whole number of milliseconds (1 to 60000), got the number 0",
            "bad.toml:4:8: cache.size: expected a whole number of answers to cache (0 to 10000000), got the number -5",
            "bad.toml:6:7: block.ttl: expected a whole number of seconds (0 to 2147483647), got the number -1",
            "bad.toml:10:15: lists[1].max_size_mb: expected a whole number of megabytes (1 or more), got the number 0",
            "bad.toml:14:15: lists[2].max_size_mb: expected a whole number of megabytes (1 or more), got the number -1",
            "bad.toml:18:14: lists[3].max_shrink: expected a percentage such as \"50%\" (or a fraction from 0.0 to 1.0), got the number -10",
        ]
    );
    let p = problems("[upstream]\ntimeout_ms = 60001\n[block]\nttl = 4294967296\n");
    assert_eq!(
        p[1].message,
        "block.ttl: expected a whole number of seconds (0 to 2147483647), got the number 4294967296"
    );
    assert_eq!(
        p[0].message,
        "upstream.timeout_ms: expected a whole number of milliseconds (1 to 60000), got the number 60001"
    );
}

#[test]
fn sections_of_the_wrong_shape_are_named() {
    let p = problems("server = 5\nblock = \"nxdomain\"\nlists = \"x\"\n");
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "bad.toml:1:10: server: expected a table of settings ([server]), got the number 5",
            "bad.toml:2:9: block: expected a table of settings ([block]), got the string \"nxdomain\"",
            "bad.toml:3:9: lists: expected [[lists]] tables, got the string \"x\"",
        ]
    );
    let p = problems("lists = [\"a.txt\", { name = \"b\", source = \"b.txt\" }]\n");
    assert_eq!(
        p[0].to_string(),
        "bad.toml:1:10: lists[1]: expected a table of list settings ([[lists]]), got the string \"a.txt\""
    );
    assert_eq!(p.len(), 1, "{p:?}");
}

#[test]
fn all_wrong_types_are_reported_at_once() {
    let p = problems(
        "[upstream]\ntimeout_ms = \"soon\"\n[cache]\nsize = true\n[[lists]]\nname = \"a\"\nsource = 1\nrefresh = 60\n[[lists]]\nsource = \"b.txt\"\n",
    );
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "bad.toml:2:14: upstream.timeout_ms: expected a whole number of milliseconds, got the string \"soon\"",
            "bad.toml:4:8: cache.size: expected a whole number of answers to cache, got true",
            "bad.toml:7:10: lists[1].source: expected a file path or URL, such as \"lists/seized.txt\" or \"https://example.org/list.txt\", got the number 1",
            "bad.toml:8:11: lists[1].refresh: expected a duration such as \"6h\" or \"30m\", got the number 60",
            "bad.toml:9:1: lists[2]: missing name: every list needs a name and a source",
        ]
    );
}

#[test]
fn a_date_time_where_a_section_belongs_is_named() {
    let p = problems("server = 1979-05-27\n");
    assert_eq!(
        p[0].to_string(),
        "bad.toml:1:10: server: expected a table of settings ([server]), got the date-time 1979-05-27"
    );
    let p = problems("lists = [1979-05-27T07:32:00Z]\n");
    assert_eq!(
        p[0].to_string(),
        "bad.toml:1:10: lists[1]: expected a table of list settings ([[lists]]), got the date-time 1979-05-27T07:32:00Z"
    );
}

/// Issue 19: `[upstream] dnssec`, `trust_anchors` and `bogus_ttl` are read
/// into the typed config, the anchors from their file at load time, and a
/// bad anchor is a problem that names the key, the file and its line.
#[test]
fn dnssec_settings_and_trust_anchor_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("corp.key"),
        "; corp\ncorp.example. IN DS 31589 13 2 4D8C0000000000000000000000000000000000000000000000000000000000FF\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("bad.key"),
        "corp.example. IN DS 31589 13 2 4D8C\n\nx. IN A 192.0.2.1\n",
    )
    .expect("write");
    let path = dir.path().join("embargo.toml");
    let c = Config::parse(
        &path,
        "[upstream]\ndnssec = \"validate\"\ntrust_anchors = [\"corp.key\"]\nbogus_ttl = 30\n",
    )
    .expect("valid");
    let d = &c.upstream.dnssec;
    assert_eq!(d.mode, Dnssec::Validate);
    assert_eq!(d.files, [dir.path().join("corp.key")]);
    assert_eq!(d.anchors.len(), 1);
    assert_eq!(d.anchors[0].zone.to_string(), "corp.example.");
    assert_eq!(d.bogus_ttl, Duration::from_secs(30));
    let off = Config::parse(&path, "").expect("valid");
    assert_eq!(off.upstream.dnssec, DnssecConfig::default());
    assert_eq!(off.upstream.dnssec.mode, Dnssec::Off);

    let err = Config::parse(
        &path,
        "[upstream]\ndnssec = \"strict\"\ntrust_anchors = [\"bad.key\", \"missing.key\"]\nbogus_ttl = 0\n",
    )
    .expect_err("invalid");
    let Error::Invalid(problems) = err else {
        panic!("not Invalid")
    };
    let shown: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
    assert_eq!(shown.len(), 4, "{shown:#?}");
    assert!(
        shown[0].starts_with("upstream.dnssec: expected one of \"off\" or \"validate\""),
        "{shown:#?}"
    );
    assert!(
        shown[1].contains("bad.key: line 1: DS digest is 2 bytes"),
        "{shown:#?}"
    );
    assert!(shown[2].contains("missing.key"), "{shown:#?}");
    assert!(shown[3].starts_with("upstream.bogus_ttl"), "{shown:#?}");
}
