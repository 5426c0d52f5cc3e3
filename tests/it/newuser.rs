//! Issue 21, "what a new user met": each item as the new user met it, over
//! the real binary (`embargo run`, `hits`, `fetch`, `validate`).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::cli::{Running, embargo, run_server, terminate, write_config};
use crate::harness::{Upstream, config, query, udp};

/// Sets the hit report's `written` time to `ago` before now, as if that
/// long had passed with nothing to change it.
fn backdate(hits: &Path, ago: Duration) {
    let text = std::fs::read_to_string(hits).expect("hits.json");
    let mut report: serde_json::Value = serde_json::from_str(&text).expect("json");
    let then = SystemTime::now() - ago;
    report["written"] = humantime::format_rfc3339_millis(then).to_string().into();
    std::fs::write(hits, serde_json::to_vec(&report).expect("json")).expect("write");
}

/// Issue 21 (1): a live server that is quiet saves no new report (it
/// saves one when it changes), so an old report is no sign of a stopped
/// server: `embargo hits` raises no alarm while the server runs, and
/// says so once it has stopped.
#[tokio::test(flavor = "multi_thread")]
async fn r21_hits_of_a_quiet_live_server_raise_no_alarm() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), &config(up.addr, ""));
    let conf = path.to_str().expect("utf8");
    let Running {
        mut child, addr, ..
    } = run_server(&path, false);
    let pid = child.id();
    let r = udp(addr, &query("www.seized.example.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let hits = dir.path().join("embargo-state/hits.json");
    // The report with the block and its log record: the last save a
    // quiet server makes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let saved = std::fs::read_to_string(&hits)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|r| r["log_written"] == 1 && r["hits"][0]["count"] == 1);
        if saved {
            break;
        }
        assert!(Instant::now() < deadline, "no hit report saved");
        std::thread::sleep(Duration::from_millis(100));
    }
    // 41 s of quiet, as the new user met it.
    let mut out = String::new();
    for _ in 0..5 {
        backdate(&hits, Duration::from_secs(41));
        let (code, o, err) = embargo(&["hits", "-c", conf]);
        assert_eq!(code, 0, "{o}{err}");
        out = o;
        if out.contains("written 41s ago") {
            break;
        }
        // The server saved over the backdated copy: once more.
        std::thread::sleep(Duration::from_secs(1));
    }
    let first = out.lines().next().unwrap_or_default();
    assert!(first.contains("written 41s ago"), "{out}");
    assert!(
        !first.contains("running?") && !first.contains("not running"),
        "a false alarm for a live server: {first}"
    );

    // Stopped: the same age now means what it says.
    assert_eq!(terminate(&mut child).code(), Some(0));
    backdate(&hits, Duration::from_secs(41));
    let (code, out, err) = embargo(&["hits", "-c", conf]);
    assert_eq!(code, 0, "{out}{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.contains(&format!("pid {pid} is not running")),
        "{first}"
    );
}

/// Issue 21 (3): a list name the config does not have is an error (exit 2)
/// that names the lists there are, for `fetch` and `hits --list` alike; a
/// list that is a file is not fetched, and `fetch` says so.
#[test]
fn r21_an_unknown_list_name_is_an_error_naming_the_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        &config(
            "127.0.0.1:9".parse().expect("addr"),
            "[[lists]]\nname = \"feed\"\nsource = \"http://127.0.0.1:9/feed.txt\"\n",
        ),
    );
    let conf = path.to_str().expect("utf8");
    for args in [
        vec!["fetch", "-c", conf, "nosuchlist"],
        vec!["hits", "-c", conf, "--list", "nosuchlist"],
    ] {
        let (code, out, err) = embargo(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("no list \"nosuchlist\"") && err.contains("seized, feed"),
            "{args:?}: {err}"
        );
    }
    let (code, out, err) = embargo(&["fetch", "-c", conf, "seized"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("list \"seized\" is read from the file") && err.contains("not fetched"),
        "{err}"
    );
}

/// Issue 21 (4): a hosts file with one adblock rule among its first lines
/// is still read as hosts: its names are blocked, and the one odd line is
/// the one reported, saying what it is.
#[test]
fn r21_one_adblock_line_does_not_turn_a_hosts_file_into_adblock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hosts = String::from("# a hosts file\n127.0.0.1 localhost\n");
    for i in 0..20 {
        hosts.push_str(&format!("0.0.0.0 ads{i}.example\n"));
    }
    hosts.push_str("||adblock-style.test^\n");
    for i in 20..40 {
        hosts.push_str(&format!("0.0.0.0 ads{i}.example\n"));
    }
    std::fs::write(dir.path().join("hosts.txt"), hosts).expect("hosts");
    let path = write_config(
        dir.path(),
        &config(
            "127.0.0.1:9".parse().expect("addr"),
            "[[lists]]\nname = \"mixed\"\nsource = \"hosts.txt\"\n",
        ),
    );
    let conf = path.to_str().expect("utf8");
    let (code, out, err) = embargo(&["lists", "-c", conf]);
    assert_eq!(code, 0, "{out}{err}");
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("mixed "))
        .unwrap_or_else(|| panic!("no row in {out}"))
        .split_whitespace()
        .collect();
    // name, format, entries, duplicates, invalid, unsupported
    assert_eq!(row[..6], ["mixed", "hosts", "40", "0", "1", "0"], "{out}");
    let (code, out, err) = embargo(&["check", "-c", conf, "ads0.example", "ads39.example"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("\tblocked\tlist=mixed"))
            .count(),
        2,
        "{out}"
    );
    let (code, out, err) = embargo(&["validate", "-c", conf]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("hosts.txt:23: an adblock rule in a list read as hosts")
            && out.contains("format = \"adblock\""),
        "{out}"
    );
}

/// Issue 21 (5): run by a user who cannot create the state directory,
/// with no `[server] user`, `run` stopped at the query log, naming neither
/// the directory nor `[state] dir`, and `validate` said ok. Both now say
/// which directory, as whom, and what to do. Needs root, to become
/// `nobody` (CI runs as root).
#[test]
fn r21_a_state_directory_the_user_cannot_create_is_named_at_start_and_by_validate() {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test becomes nobody with setpriv: run the tests as root (CI does)"
    );
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("getpwnam")
        .expect("this system has a user named nobody");
    // A directory nobody may read but not write, as /var/lib is.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = write_config(
        dir.path(),
        &config("127.0.0.1:9".parse().expect("addr"), ""),
    );
    let state = dir.path().join("embargo-state");
    let as_nobody = |command: &str| {
        let out = std::process::Command::new("setpriv")
            .arg(format!("--reuid={}", nobody.uid))
            .arg(format!("--regid={}", nobody.gid))
            .arg("--clear-groups")
            .args([env!("CARGO_BIN_EXE_embargo"), command, "-c"])
            .arg(&path)
            .output()
            .expect("setpriv");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for command in ["validate", "run"] {
        let (code, out) = as_nobody(command);
        assert_eq!(code, 1, "{command}: {out}");
        assert!(
            out.contains(&format!(
                "state directory {} cannot be created by nobody",
                state.display()
            )) && out.contains("set [state] dir to a directory nobody can write"),
            "{command}: {out}"
        );
        assert!(!state.exists(), "{command} made the directory");
    }
    // One that exists and nobody cannot write: the same words, from both.
    std::fs::create_dir(&state).expect("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for command in ["validate", "run"] {
        let (code, out) = as_nobody(command);
        assert_eq!(code, 1, "{command}: {out}");
        assert!(
            out.contains(&format!(
                "state directory {} is not writable by nobody",
                state.display()
            )) && out.contains("set [state] dir to a directory nobody can write"),
            "{command}: {out}"
        );
    }
}

/// Issue 21 (7): a second instance whose config never mentions `[http]`
/// found the implied 127.0.0.1:8053 taken and did not start. A listener
/// the config never asked for must not keep DNS from starting: it warns
/// and serves; an address the config names stays fatal.
#[tokio::test(flavor = "multi_thread")]
async fn r21_an_implied_http_address_that_is_taken_does_not_stop_dns() {
    let up = Upstream::start().await;
    // The first instance (or anything else) holds the implied address.
    let _first = std::net::TcpListener::bind(embargo::config::DEFAULT_HTTP_LISTEN);
    assert!(
        std::net::TcpListener::bind(embargo::config::DEFAULT_HTTP_LISTEN).is_err(),
        "{} should be taken",
        embargo::config::DEFAULT_HTTP_LISTEN
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(up.addr, "");
    let implied = text.replace("[http]\nlisten = []\n", "");
    assert_ne!(implied, text, "the harness config has [http]");
    let path = write_config(dir.path(), &implied);
    let mut server = run_server(&path, false);
    let r = udp(
        server.addr,
        &query("www.seized.example.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        server.early.iter().any(|l| l.contains("WARN")
            && l.contains("127.0.0.1:8053")
            && l.contains("[http] listen")),
        "{:#?}",
        server.early
    );
    assert_eq!(terminate(&mut server.child).code(), Some(0));

    // Named in the config: still fatal.
    let named = text.replace(
        "[http]\nlisten = []\n",
        &format!(
            "[http]\nlisten = [\"{}\"]\n",
            embargo::config::DEFAULT_HTTP_LISTEN
        ),
    );
    let path = write_config(dir.path(), &named);
    let (code, out, err) = embargo(&["run", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("http: cannot listen on 127.0.0.1:8053"),
        "{err}"
    );
}
