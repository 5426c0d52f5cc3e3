//! The `embargo` binary as an operator runs it: `run` serves until SIGTERM
//! and exits 0; `check`, `lists` and `validate` explain and report.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{SEIZED_LIST, Upstream, config, query, udp};

const BIN: &str = env!("CARGO_BIN_EXE_embargo");

pub(crate) fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("seized.txt"), SEIZED_LIST).expect("list");
    let path = dir.join("embargo.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn embargo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run embargo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `embargo run`, its stderr lines, and the address it serves.
pub(crate) struct Running {
    pub(crate) child: std::process::Child,
    pub(crate) addr: std::net::SocketAddr,
    /// The lines read up to and with the "listening on udp" one.
    pub(crate) early: Vec<String>,
    pub(crate) stderr: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// The HTTP listen address its log names, waiting for it up to 10 s.
    pub(crate) fn http_addr(&mut self) -> std::net::SocketAddr {
        let find = |l: &str| {
            l.split("http listening on ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<std::net::SocketAddr>().ok())
        };
        if let Some(a) = self.early.iter().find_map(|l| find(l)) {
            return a;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
                let found = find(&line);
                self.early.push(line);
                if let Some(a) = found {
                    return a;
                }
            }
        }
        panic!("no http listening line in {:#?}", self.early)
    }
    /// Every line the server wrote to stderr, from the start: call it once
    /// the server has exited. Waits for the reader thread to reach the end
    /// of the pipe, since lines written just before the exit may not have
    /// crossed it yet (a loaded machine showed that `try_iter` misses them).
    pub(crate) fn all_lines(&self) -> Vec<String> {
        let mut lines = self.early.clone();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(10)) {
            lines.push(line);
        }
        lines
    }
}

/// Starts `embargo run -c path` (stdout piped when `stdout`) and waits for
/// its "listening on udp" line, which has the bound port.
fn run_server(path: &Path, stdout: bool) -> Running {
    run_server_after(path, stdout, "")
}

/// [`run_server`] through `bash`, which runs `shell` first and then execs
/// embargo (same pid): `ulimit -n 200`, `umask 000`.
pub(crate) fn run_server_after(path: &Path, stdout: bool, shell: &str) -> Running {
    let mut child = Command::new("bash")
        .args([
            "-c",
            &format!("{shell}\nexec \"$0\" run -c \"$1\""),
            BIN,
            path.to_str().expect("utf8"),
        ])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(if stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut addr = None;
    let mut log = Vec::new();
    while addr.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains("listening on udp") {
                addr = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .and_then(|s| s.parse::<std::net::SocketAddr>().ok());
            }
            log.push(line);
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("no listening line in {log:#?}"));
    Running {
        child,
        addr,
        early: log,
        stderr: rx,
    }
}

/// SIGTERM, then the exit status (within 10 s).
pub(crate) fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_serves_until_sigterm_and_exits_zero() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), &config(up.addr, ""));
    let Running {
        mut child,
        addr,
        stderr: rx,
        ..
    } = run_server(&path, false);
    let r = udp(addr, &query("www.seized.example.", RecordType::TXT, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let r = udp(addr, &query("www.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    // The block is in the query log, in the state directory by default, as
    // JSON; the security team reads it there, not in the server's log.
    let log = dir.path().join("embargo-state/queries.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    let record = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break serde_json::from_str::<serde_json::Value>(line).expect("a JSON record");
        }
        assert!(Instant::now() < deadline, "no record in {}", log.display());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(record["client"], "127.0.0.1");
    assert_eq!(record["name"], "www.seized.example");
    // Issue 9 (4): the type as an analyst reads it.
    assert_eq!(record["type"], "TXT");
    assert_eq!(record["decision"], "blocked");
    assert_eq!(record["list"], "seized");
    assert_eq!(record["entry"], "seized.example");
    assert_eq!(record["action"], "nxdomain");
    // `embargo reload` finds the server through its pid file and signals it.
    let (code, out, err) = embargo(&["reload", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("pid {}", child.id())), "{out}");
    // The server's own word, within a bound generous enough for a reload
    // at nice 19 on a busy machine (5 s was not).
    let deadline = Instant::now() + crate::harness::RELOAD_WAIT;
    let mut reloaded = false;
    let mut lines = Vec::new();
    while !reloaded && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            reloaded = line.contains("reload done");
            lines.push(line);
        }
    }
    assert!(reloaded, "no reload after `embargo reload`");
    let status = terminate(&mut child);
    assert_eq!(status.code(), Some(0));
    assert!(
        !dir.path().join("embargo-state/embargo.pid").exists(),
        "pid file removed at exit"
    );
    // Blocks no longer cost a line each in the server's own log.
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        lines.push(line);
    }
    assert!(
        !lines.iter().any(|l| l.contains("www.seized.example")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("observer stopped") && l.contains("log_dropped=0")),
        "{lines:#?}"
    );
    // Stopping saved the hit report, which `embargo hits` prints.
    let (code, out, err) = embargo(&["hits", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("seized "))
        .unwrap_or_else(|| panic!("no row for the list in {out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[..3], ["seized", "127.0.0.1", "1"], "{out}");
    assert_eq!(cols[5..], ["www.seized.example", "TXT"], "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_query_log_goes_to_stdout_with_path_dash() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        &(config(up.addr, "") + "\n[log]\npath = \"-\"\nformat = \"text\"\n"),
    );
    let mut server = run_server(&path, true);
    let stdout = server.child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let r = udp(
        server.addr,
        &query("www.seized.example.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let line = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a record on stdout");
    assert!(
        line.contains(" udp www.seized.example A blocked list=seized entry=seized.example action=nxdomain rcode=NXDOMAIN latency_us="),
        "{line}"
    );
    assert_eq!(terminate(&mut server.child).code(), Some(0));
    assert!(
        !dir.path().join("embargo-state/queries.log").exists(),
        "no log file when the log goes to stdout"
    );
}

#[test]
fn check_explains_blocks_and_allows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        &config("127.0.0.1:9".parse().expect("addr"), ""),
    );
    let (code, out, err) = embargo(&[
        "check",
        "-c",
        path.to_str().expect("utf8"),
        "a.b.Seized.Example",
        "allowed.seized.example",
        "up.test",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(
            "a.b.seized.example\tblocked\tlist=seized entry=seized.example action=nxdomain ede=16"
        ),
        "{out}"
    );
    assert!(out.contains("authority: Test Court"), "{out}");
    assert!(out.contains("reason: Seized by court order"), "{out}");
    assert!(
        out.contains("allowed.seized.example\tallowed\tallowlist entry allowed.seized.example"),
        "{out}"
    );
    assert!(out.contains("up.test\tallowed"), "{out}");
}

/// Issue 9 (5): a list without provenance prints no empty
/// `authority:`, `reason:` or `reference:` lines; one with part of it
/// prints that part.
#[test]
fn r9_check_prints_only_the_provenance_that_is_known() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bare.txt"), "bare.example\n").expect("list");
    std::fs::write(dir.path().join("half.txt"), "half.example\n").expect("list");
    let path = write_config(
        dir.path(),
        &config("127.0.0.1:9".parse().expect("addr"), "")
            .replace("[[lists]]", "[[lists]]\nname = \"bare\"\nsource = \"bare.txt\"\n\n[[lists]]\nname = \"half\"\nsource = \"half.txt\"\nreference = \"https://example.org/why\"\n\n[[lists]]"),
    );
    let (code, out, err) = embargo(&[
        "check",
        "-c",
        path.to_str().expect("utf8"),
        "www.bare.example",
        "half.example",
    ]);
    assert_eq!(code, 0, "{err}");
    let mut blocks = out.split("\n").filter(|l| !l.is_empty());
    assert!(
        blocks.next().is_some_and(|l| l.contains("list=bare")),
        "{out}"
    );
    assert_eq!(blocks.next(), Some("\twhy: blocked by bare"), "{out}");
    assert!(
        blocks.next().is_some_and(|l| l.contains("list=half")),
        "{out}"
    );
    assert_eq!(blocks.next(), Some("\twhy: blocked by half"), "{out}");
    assert_eq!(
        blocks.next(),
        Some("\treference: https://example.org/why"),
        "{out}"
    );
    assert_eq!(blocks.next(), None, "{out}");
}

#[test]
fn lists_shows_counts_per_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        &config("127.0.0.1:9".parse().expect("addr"), ""),
    );
    std::fs::write(
        dir.path().join("seized.txt"),
        "a.example\nb.example\na.example\nnot a domain\n",
    )
    .expect("list");
    let (code, out, err) = embargo(&["lists", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("seized "))
        .expect("row for the list");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[..6],
        ["seized", "domains", "2", "1", "1", "0"],
        "{out}"
    );
}

#[test]
fn validate_reports_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        "[server]\nlisten = [\"127.0.0.1:5353\"]\n[block]\naction = \"explode\"\nttl = 5\nede = \"nope\"\n",
    );
    let (code, _out, err) = embargo(&["validate", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert!(err.contains("embargo.toml:4:"), "{err}");
    assert!(err.contains("embargo.toml:6:"), "{err}");
    let path = write_config(
        dir.path(),
        "[server]\nlisten = [\"127.0.0.1:5353\"]\nport = 53\n",
    );
    let (code, _out, err) = embargo(&["validate", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("embargo.toml:3:") && err.contains("port"),
        "{err}"
    );

    // Bad list lines are warnings with file:line, not fatal.
    let path = write_config(
        dir.path(),
        &config("127.0.0.1:9".parse().expect("addr"), ""),
    );
    std::fs::write(dir.path().join("seized.txt"), "ok.example\n999.1.1.1\n").expect("list");
    let (code, out, err) = embargo(&["validate", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("seized.txt:2:"), "{out}");
    // A missing list is fatal and says which.
    std::fs::remove_file(dir.path().join("seized.txt")).expect("rm");
    let (code, _out, err) = embargo(&["validate", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("seized.txt") && err.contains("\"seized\""),
        "{err}"
    );
}

/// Issue 18: `check` says what answers a local name (before the lists),
/// and where an allowed name is forwarded; `validate` refuses a bad
/// record with its file, line and key.
#[test]
fn r18_check_names_local_answers_and_forward_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hosts"), "192.168.1.10 nas\n").expect("hosts");
    let text = config(
        "127.0.0.1:9".parse().expect("addr"),
        "[[forward]]\nzones = [\"corp.example\"]\nservers = [\"10.0.0.10\"]\n\n",
    )
    .replace(
        "[local_zones]\ndefaults = false\n",
        "[local_zones]\nhosts_files = [\"hosts\"]\n",
    );
    let path = write_config(dir.path(), &text);
    let path = path.to_str().expect("utf8");
    let (code, out, err) = embargo(&[
        "check",
        "-c",
        path,
        "nas.home.arpa",
        "x.local",
        "dc1.corp.example",
        "example.org",
    ]);
    assert_eq!(code, 0, "{err}");
    let hosts = dir.path().join("hosts").display().to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "nas.home.arpa\tlocal\tlocal record nas.home.arpa (A; {hosts}:1:14, local_zones.hosts_files[1]), local zone home.arpa (RFC 8375, served by default)"
            ),
            "x.local\tlocal\tlocal zone local (RFC 6762, served by default): no such name".into(),
            "dc1.corp.example\tallowed".into(),
            "\tupstream: forward[1] (10.0.0.10:53) for zone corp.example".into(),
            "example.org\tallowed".into(),
            "\tupstream: [upstream]".into(),
        ],
        "{out}"
    );
    std::fs::write(
        dir.path().join("hosts"),
        "192.168.1.10 nas\n192.168.1.10 files\n",
    )
    .expect("hosts");
    let (code, out, err) = embargo(&["validate", "-c", path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains(&format!("{hosts}:2:14: local_zones.hosts_files[1]: 192.168.1.10 would have a PTR to files.home.arpa and one to nas.home.arpa")),
        "{err}"
    );
}
/// The permission bits of `path` (no symlink followed).
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Issue 16 (4): the state directory and what the server writes there (the
/// query log, the pid file, the hit report) hold who asked for what, so no
/// other user may read them, whatever the umask (a container, a shell with
/// umask 000): the directory is 0750, the files 0640.
#[tokio::test(flavor = "multi_thread")]
async fn r16_state_files_are_not_world_readable_even_with_umask_000() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), &config(up.addr, ""));
    let mut server = run_server_after(&path, false, "umask 000");
    let r = udp(
        server.addr,
        &query("www.seized.example.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let state = dir.path().join("embargo-state");
    let log = state.join("queries.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(&log).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "no record in {}", log.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(mode(&state), 0o750, "the state directory");
    assert_eq!(mode(&log), 0o640, "the query log");
    assert_eq!(mode(&state.join("embargo.pid")), 0o640, "the pid file");
    assert_eq!(terminate(&mut server.child).code(), Some(0));
    assert_eq!(mode(&state.join("hits.json")), 0o640, "the hit report");
}

/// Issue 16 (16): `embargo reload` signals only an embargo server. A pid
/// file naming another process (stale, and the pid reused; or rewritten by
/// the service user, who owns the state directory) must not get SIGHUP,
/// which kills most programs; a pid with no process says so in embargo's
/// words, not `kill`'s.
#[test]
fn r16_reload_signals_only_embargo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        &config("127.0.0.1:9".parse().expect("addr"), ""),
    );
    let state = dir.path().join("embargo-state");
    std::fs::create_dir_all(&state).expect("state dir");
    let pid_file = state.join("embargo.pid");
    let cfg = path.to_str().expect("utf8");

    // Another program's pid: it is left alone (SIGHUP would end `sleep`).
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
    std::fs::write(&pid_file, format!("{}\n", sleeper.id())).expect("pid file");
    let (code, out, err) = embargo(&["reload", "-c", cfg]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("pid {}", sleeper.id())) && err.contains("not embargo"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        sleeper.try_wait().expect("wait").is_none(),
        "sleep was signalled: {err}"
    );
    sleeper.kill().expect("kill sleep");
    let gone = sleeper.id();
    sleeper.wait().expect("reap");

    // A pid with no process behind it: a stale pid file, said once, plainly.
    std::fs::write(&pid_file, format!("{gone}\n")).expect("pid file");
    let (code, out, err) = embargo(&["reload", "-c", cfg]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!err.contains("kill:"), "{err}");
    assert!(
        err.contains(&format!("no process {gone}")) && err.contains("stale"),
        "{err}"
    );
}

/// Issue 21: the pid file tells `embargo reload` (and systemd's
/// `ExecReload=`) that the server is there, and SIGHUP ends a process that
/// does not handle it. The handler was installed by the reload loop's task
/// when it first ran, after the pid file was written: a reload asked for
/// at once could kill the server instead.
#[test]
fn r21_a_reload_asked_for_as_soon_as_the_pid_file_appears_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        &config("127.0.0.1:9".parse().expect("addr"), ""),
    );
    let pid_file = dir.path().join("embargo-state/embargo.pid");
    let mut child = Command::new(BIN)
        .args(["run", "-c", path.to_str().expect("utf8")])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    while !pid_file.exists() {
        assert!(
            started.elapsed() < crate::harness::RELOAD_WAIT,
            "no pid file"
        );
        assert!(child.try_wait().expect("wait").is_none(), "exited");
        std::thread::yield_now();
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let mut lines = Vec::new();
    let deadline = Instant::now() + crate::harness::RELOAD_WAIT;
    while !lines.iter().any(|l: &String| l.contains("reload done")) {
        if let Some(status) = child.try_wait().expect("wait") {
            lines.extend(rx.try_iter());
            panic!("the server ended ({status}) on SIGHUP:\n{lines:#?}");
        }
        assert!(Instant::now() < deadline, "no reload:\n{lines:#?}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(line);
        }
    }
    assert_eq!(terminate(&mut child).code(), Some(0));
}

/// Issue 16 (17): run as root with `[log] path` in a directory others can
/// write, a symlink planted at the log's path would have the server append
/// to whatever file it names. The log is never opened through a symlink:
/// the server does not start, and says which path and why.
#[test]
fn r16_the_query_log_is_not_written_through_a_symlink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs dir");
    let target = dir.path().join("precious");
    std::fs::write(&target, "root's own file\n").expect("target");
    std::os::unix::fs::symlink(&target, logs.join("queries.log")).expect("symlink");
    let text = config("127.0.0.1:9".parse().expect("addr"), "")
        + "\n[log]\nqueries = \"all\"\npath = \"logs/queries.log\"\n";
    let path = write_config(dir.path(), &text);
    let mut child = Command::new(BIN)
        .args(["run", "-c", path.to_str().expect("utf8")])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let text = std::fs::read_to_string(&target).expect("target");
            panic!(
                "serving with its log through a symlink; {} now holds {text:?}",
                target.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}", logs.join("queries.log").display()))
            && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        "root's own file\n"
    );
}

/// Issue 16 (17): a token file that other users can read is a token they
/// know: the server says so at start (and still starts).
#[test]
fn r16_a_token_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("http-token");
    std::fs::write(&token, "test-token-0123456789\n").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let text = config("127.0.0.1:9".parse().expect("addr"), "").replace(
        "[http]\nlisten = []\n",
        "[http]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"http-token\"\n",
    );
    let path = write_config(dir.path(), &text);
    let mut server = run_server(&path, false);
    let _ = server.http_addr();
    assert_eq!(terminate(&mut server.child).code(), Some(0));
    let lines = server.all_lines();
    let warning = lines
        .iter()
        .find(|l| l.contains("WARN") && l.contains("http-token"))
        .unwrap_or_else(|| panic!("no warning about the token file in {lines:#?}"));
    assert!(warning.contains("readable by"), "{warning}");

    // 0600: no warning.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut server = run_server(&path, false);
    let _ = server.http_addr();
    assert_eq!(terminate(&mut server.child).code(), Some(0));
    let lines = server.all_lines();
    assert!(
        !lines.iter().any(|l| l.contains("http-token")),
        "{lines:#?}"
    );
}

/// A signal that arrives as soon as the server says it listens is handled,
/// not left to its default action: SIGHUP (what `embargo reload` and
/// systemd's `ExecReload=` send, once the pid file is there) killed a
/// server whose reload task had not yet started listening for it, and
/// SIGTERM killed one whose `shutdown` future had not yet been polled,
/// with no "stopped" and no last records (seen as a flaky test under load).
#[test]
fn signals_right_after_start_are_handled_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        &config("127.0.0.1:9".parse().expect("addr"), ""),
    );
    for round in 0..10 {
        let mut server = run_server(&path, false);
        let pid = server.child.id().to_string();
        let hup = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(hup.success());
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            server.child.try_wait().expect("wait").is_none(),
            "round {round}: SIGHUP right after start ended the server: {:#?}",
            server.all_lines()
        );
        assert_eq!(
            terminate(&mut server.child).code(),
            Some(0),
            "round {round}"
        );
        let mut server = run_server(&path, false);
        assert_eq!(
            terminate(&mut server.child).code(),
            Some(0),
            "round {round}: SIGTERM right after start: {:#?}",
            server.all_lines()
        );
    }
}

/// Issue 19: `validate` loads the encrypted listeners' certificate, so a
/// missing file or a key of another certificate is found before a start.
#[test]
fn validate_loads_the_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("seized.txt"), "seized.example\n").expect("list");
    let text = crate::harness::with_server(
        &config("127.0.0.1:9".parse().expect("addr"), ""),
        "tls_listen = [\"127.0.0.1:0\"]\ncertificate = \"cert.pem\"\nprivate_key = \"key.pem\"",
    );
    let path = write_config(dir.path(), &text);
    let (code, _out, err) = embargo(&["validate", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("certificate") && err.contains("cert.pem"),
        "{err}"
    );
    let cert = crate::harness::TestCert::new("dns.test");
    std::fs::write(dir.path().join("cert.pem"), cert.cert_pem()).expect("cert");
    std::fs::write(dir.path().join("key.pem"), cert.key_pem()).expect("key");
    let (code, out, err) = embargo(&["validate", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}{err}");
}
