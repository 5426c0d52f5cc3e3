//! Issue 10: the real binary started as root binds, then serves as
//! `[server] user` with no capability left, on every thread, and still does
//! everything a server does later (answers, downloads into the state
//! directory, reloads on `embargo reload`). Started unprivileged with
//! CAP_NET_BIND_SERVICE (as systemd's unit does), it keeps no capability
//! either. Port 53 is bound inside a network namespace of the test's own
//! (`unshare -n`), where only a privilege can bind it, and queried from a
//! thread that joins that namespace.
//!
//! What each process holds is read from `/proc/PID/task/*/status`, the
//! kernel's own account, for every thread. These tests need root; they say
//! so and fail when not run as root (CI runs as root).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use nix::unistd::{Gid, Uid, User};

use crate::harness::{SEIZED_LIST, Upstream, config, ede, query, tcp, udp};

const BIN: &str = env!("CARGO_BIN_EXE_embargo");

/// Every test here starts embargo as root: say so plainly when that is not so.
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "did not run: tests/it/privileges.rs starts embargo as root and watches it become `nobody`: run the tests as root (CI does)"
    );
}

/// `nobody`'s uid and primary gid on this system.
fn nobody() -> (Uid, Gid) {
    let u = User::from_name("nobody")
        .expect("getpwnam")
        .expect("this system has a user named nobody");
    (u.uid, u.gid)
}

/// A temp dir that `nobody` may enter and read (a tempdir is 0700).
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    chmod(dir.path(), 0o755);
    dir
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Writes `name` in `dir`, readable by everyone.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    chmod(&path, 0o644);
    path
}

/// The harness config with `extra` added to its `[server]` table.
fn with_server(config: &str, extra: &str) -> String {
    let listen = "listen = [\"127.0.0.1:0\"]";
    assert!(config.contains(listen));
    config.replacen(listen, &format!("{listen}\n{extra}"), 1)
}

/// A config of its own for the namespace tests: port 53, the seized list,
/// an upstream that is never asked.
fn port_53_config(server_extra: &str, state_extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:53\"]\n{server_extra}\n[upstream]\nservers = [\"127.0.0.1:9\"]\n\n[[lists]]\nname = \"seized\"\nsource = \"seized.txt\"\n{state_extra}"
    )
}

/// `embargo run` as a child process, its log read by a thread.
struct Running {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn embargo");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first log line from now on that contains `needle`
    /// ([`crate::harness::RELOAD_WAIT`] at most: on a busy machine a
    /// start, or a reload at nice 19, takes seconds).
    fn wait_for(&mut self, needle: &str) -> String {
        let wait = crate::harness::RELOAD_WAIT;
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Whatever it said before it exited.
                self.log.extend(self.lines.try_iter());
                panic!(
                    "embargo exited ({status}) before {needle:?}:\n{:#?}",
                    self.log
                );
            }
        }
        panic!("no {needle:?} in {wait:?}:\n{:#?}", self.log);
    }

    /// Waits until `name` is blocked at `addr`: checked now, then after
    /// each "reload done" the server logs (its own word; a download, or
    /// `embargo reload`, then its reload).
    async fn until_blocked(&mut self, addr: SocketAddr, name: &str) {
        while !blocked(addr, name).await {
            self.wait_for("reload done");
        }
    }

    /// The UDP address from the "listening on udp" line.
    fn addr(&mut self) -> SocketAddr {
        let line = self.wait_for("listening on udp");
        line.split("addr=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to its end (15 s at most): exit code and stderr.
fn run_to_end(mut cmd: Command) -> (i32, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} still running after 15 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out);
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    (status.code().unwrap_or(-1), out + &err)
}

/// The status fields of every thread of `pid`, by thread id.
fn threads(pid: u32) -> Vec<(String, HashMap<String, String>)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let task = task.expect("task").path();
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue; // a thread that ended meanwhile
        };
        let fields = status
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        let tid = task
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((tid, fields));
    }
    out
}

/// What every thread of a server must show.
struct Expect {
    uid: Uid,
    gid: Gid,
    /// The supplementary groups (`Groups:` line), when embargo set them.
    groups: Option<String>,
    /// Whether the bounding set must be empty too (embargo clears it when
    /// it leaves root; started unprivileged it cannot).
    bounding_cleared: bool,
}

/// Checks every thread of `pid`; returns how many there were.
fn assert_unprivileged(pid: u32, want: &Expect) -> usize {
    let threads = threads(pid);
    let ids = |id: u32| format!("{id}\t{id}\t{id}\t{id}");
    let zero = "0000000000000000";
    for (tid, f) in &threads {
        let name = f.get("Name").cloned().unwrap_or_default();
        let field = |k: &str| f.get(k).map_or("(missing)", String::as_str);
        let at = format!("thread {tid} ({name}) of {pid}");
        assert_eq!(
            field("Uid"),
            ids(want.uid.as_raw()),
            "{at}: real, effective, saved, fs uid"
        );
        assert_eq!(
            field("Gid"),
            ids(want.gid.as_raw()),
            "{at}: real, effective, saved, fs gid"
        );
        if let Some(groups) = &want.groups {
            assert_eq!(field("Groups"), groups, "{at}: supplementary groups");
        }
        let mut sets = vec!["CapInh", "CapPrm", "CapEff", "CapAmb"];
        if want.bounding_cleared {
            sets.push("CapBnd");
        }
        for set in sets {
            assert_eq!(field(set), zero, "{at}: {set}");
        }
        assert_eq!(field("NoNewPrivs"), "1", "{at}: no_new_privs");
    }
    threads.len()
}

/// A one-file HTTP server on 127.0.0.1 that answers every request with `body`.
async fn serve_list(body: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/list.txt", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, task)
}

/// Blocked by embargo (NXDOMAIN with its EDE), not the upstream's NXDOMAIN.
async fn blocked(addr: SocketAddr, name: &str) -> bool {
    let r = udp(addr, &query(name, RecordType::A, true)).await;
    r.metadata.response_code == ResponseCode::NXDomain && ede(&r).is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn r10_started_as_root_it_binds_then_serves_downloads_and_reloads_as_nobody() {
    require_root();
    let (uid, gid) = nobody();
    let up = Upstream::start().await;
    let (url, _http) = serve_list("remote1.example\n").await;
    let dir = shared_dir();
    write(dir.path(), "seized.txt", SEIZED_LIST);
    let lists = format!("[[lists]]\nname = \"remote\"\nsource = \"{url}\"\n");
    let text = with_server(&config(up.addr, &lists), "user = \"nobody\"");
    let path = write(dir.path(), "embargo.toml", &text);
    let state = dir.path().join("embargo-state");
    assert!(!state.exists());

    let mut cmd = Command::new(BIN);
    cmd.args(["run", "-c"]).arg(&path);
    let mut e = Running::spawn(cmd);
    let addr = e.addr();
    let pid = e.pid();
    let want = Expect {
        uid,
        gid,
        groups: Some(gid.to_string()),
        bounding_cleared: true,
    };
    let n = assert_unprivileged(pid, &want);
    // The main thread, the log writer, the runtime's workers, a UDP worker:
    // each started after the drop and checked above.
    assert!(n >= 4, "{n} threads");

    // It serves: blocked over UDP and TCP, forwarded upstream.
    let r = udp(addr, &query("www.seized.example.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(ede(&r).is_some());
    let r = tcp(addr, &query("seized.example.", RecordType::AAAA, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let r = udp(addr, &query("www.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(!r.answers.is_empty());

    // The state directory it created belongs to nobody, and so does the
    // pid file written after the drop.
    let meta = std::fs::metadata(&state).expect("state dir created");
    assert_eq!((meta.uid(), meta.gid()), (uid.as_raw(), gid.as_raw()));
    let pid_file = state.join("embargo.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file").trim(),
        pid.to_string()
    );
    assert_eq!(
        std::fs::metadata(&pid_file).expect("pid").uid(),
        uid.as_raw()
    );

    // The remote list was downloaded into the state directory, as nobody.
    e.until_blocked(addr, "remote1.example.").await;
    let copy = state.join("lists").join("remote.list");
    assert_eq!(std::fs::metadata(&copy).expect("copy").uid(), uid.as_raw());

    // A list change, then `embargo reload` as an operator runs it: the
    // server (found through its pid file) rereads the config and the list
    // as nobody.
    write(
        dir.path(),
        "seized.txt",
        &format!("{SEIZED_LIST}added.example\n"),
    );
    let mut reload = Command::new(BIN);
    reload.args(["reload", "-c"]).arg(&path);
    let (code, out) = run_to_end(reload);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("reload requested (pid {pid})")),
        "{out}"
    );
    e.until_blocked(addr, "added.example.").await;
    // Whatever the reloads and the download started runs unprivileged too.
    assert_unprivileged(pid, &want);
}

/// Runs `f` on a thread inside the network namespace of process `pid`.
fn in_netns<T: Send + 'static>(pid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("netns");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// One query over UDP with a blocking socket (on the calling thread, so
/// that the socket is made in that thread's network namespace).
fn udp_blocking(addr: SocketAddr, msg: &Message) -> Message {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.send_to(&msg.to_vec().expect("encode"), addr)
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("answer");
    Message::from_vec(&buf[..n]).expect("decode")
}

/// One query over TCP with a blocking socket.
fn tcp_blocking(addr: SocketAddr, msg: &Message) -> Message {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let bytes = msg.to_vec().expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).expect("send");
    let mut len = [0u8; 2];
    s.read_exact(&mut len).expect("length");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).expect("answer");
    Message::from_vec(&buf).expect("decode")
}

/// In the namespace of `pid`: the unprivileged port floor (so the test
/// knows port 53 took a privilege there), and the blocked name's answer
/// over UDP and TCP on port 53.
fn ask_port_53(pid: u32) -> (u16, ResponseCode, ResponseCode) {
    in_netns(pid, || {
        let floor = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .expect("sysctl")
            .trim()
            .parse()
            .expect("number");
        let addr: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let q = query("www.seized.example.", RecordType::A, true);
        (
            floor,
            udp_blocking(addr, &q).metadata.response_code,
            tcp_blocking(addr, &q).metadata.response_code,
        )
    })
}

/// `sh -c SCRIPT BIN CONFIG` inside a new network namespace with loopback up.
fn in_new_netns(script: &str, config: &Path) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "sh", "-c"])
        .arg(format!("ip link set lo up && {script}"))
        .arg(BIN)
        .arg(config);
    cmd
}

#[test]
fn r10_binds_port_53_as_root_in_a_namespace_then_serves_it_as_nobody() {
    require_root();
    let (uid, gid) = nobody();
    let dir = shared_dir();
    write(dir.path(), "seized.txt", SEIZED_LIST);
    let path = write(
        dir.path(),
        "embargo.toml",
        &port_53_config("user = \"nobody\"", ""),
    );
    // `exec`: the shell becomes embargo, so the child's pid is embargo's.
    let mut e = Running::spawn(in_new_netns(r#"exec "$0" run -c "$1""#, &path));
    assert_eq!(e.addr(), "127.0.0.1:53".parse().expect("addr"));
    let pid = e.pid();
    assert_unprivileged(
        pid,
        &Expect {
            uid,
            gid,
            groups: Some(gid.to_string()),
            bounding_cleared: true,
        },
    );
    let (floor, by_udp, by_tcp) = ask_port_53(pid);
    assert!(floor > 53, "nobody could bind 53 here (floor {floor})");
    assert_eq!(by_udp, ResponseCode::NXDomain);
    assert_eq!(by_tcp, ResponseCode::NXDomain);
}

/// The systemd unit's way: started as an ordinary user with only
/// CAP_NET_BIND_SERVICE (ambient), no `[server] user`. It binds port 53 and
/// then holds no capability on any thread.
#[test]
fn r10_started_unprivileged_with_the_bind_capability_it_keeps_none() {
    require_root();
    let (uid, gid) = nobody();
    let dir = shared_dir();
    write(dir.path(), "seized.txt", SEIZED_LIST);
    // systemd's StateDirectory= hands the service its directory.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state");
    std::os::unix::fs::chown(&state, Some(uid.as_raw()), Some(gid.as_raw())).expect("chown");
    let path = write(
        dir.path(),
        "embargo.toml",
        &port_53_config("", "\n[state]\ndir = \"state\"\n"),
    );
    let script = format!(
        r#"exec setpriv --reuid={uid} --regid={gid} --clear-groups --inh-caps=+net_bind_service --ambient-caps=+net_bind_service "$0" run -c "$1""#
    );
    let mut e = Running::spawn(in_new_netns(&script, &path));
    assert_eq!(e.addr(), "127.0.0.1:53".parse().expect("addr"));
    let pid = e.pid();
    assert_unprivileged(
        pid,
        &Expect {
            uid,
            gid,
            groups: Some(String::new()),
            bounding_cleared: false,
        },
    );
    let (floor, by_udp, by_tcp) = ask_port_53(pid);
    assert!(
        floor > 53,
        "the capability was not needed here (floor {floor})"
    );
    assert_eq!(by_udp, ResponseCode::NXDomain);
    assert_eq!(by_tcp, ResponseCode::NXDomain);
    assert!(state.join("embargo.pid").exists());
}

/// `embargo run` (and `validate`, for the user's name) refuse at start what
/// the serving user could not do later, each with what to do about it.
#[test]
fn r10_start_refuses_what_the_serving_user_could_not_do() {
    require_root();
    let run = |path: &Path| {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "-c"]).arg(path);
        run_to_end(cmd)
    };
    let base = |server_extra: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n{server_extra}\n[upstream]\nservers = [\"127.0.0.1:9\"]\n\n[[lists]]\nname = \"seized\"\nsource = \"seized.txt\"\n[http]\nlisten = []\n"
        )
    };

    // A user this system does not have: found before anything is bound,
    // and by `embargo validate`.
    let dir = shared_dir();
    write(dir.path(), "seized.txt", SEIZED_LIST);
    let path = write(
        dir.path(),
        "embargo.toml",
        &base("user = \"embargo-no-such-user\""),
    );
    let (code, out) = run(&path);
    let want =
        "embargo.toml:3:8: server.user: no such user \"embargo-no-such-user\" on this system";
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(want), "{out}");
    let mut validate = Command::new(BIN);
    validate.args(["validate", "-c"]).arg(&path);
    let (code, out) = run_to_end(validate);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(want), "{out}");

    // Started as another ordinary user: it cannot switch, and says how to.
    let path = write(dir.path(), "embargo.toml", &base("user = \"nobody\""));
    let daemon = User::from_name("daemon")
        .expect("getpwnam")
        .expect("this system has a user named daemon");
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", daemon.uid))
        .arg(format!("--regid={}", daemon.gid))
        .arg("--clear-groups")
        .args([BIN, "run", "-c"])
        .arg(&path);
    let (code, out) = run_to_end(cmd);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("server.user = \"nobody\""), "{out}");
    assert!(out.contains("only root can change user"), "{out}");

    // A state directory that exists and belongs to root is left alone,
    // and the start stops with the command that fixes it.
    let state = dir.path().join("embargo-state");
    std::fs::create_dir(&state).expect("state");
    chmod(&state, 0o755);
    let (code, out) = run(&path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("is not writable by nobody")
            && out.contains(&format!("chown nobody:{} ", group_of_nobody())),
        "{out}"
    );
    std::fs::remove_dir(&state).expect("rmdir");

    // A config only root can read would make every reload fail.
    chmod(&path, 0o600);
    let (code, out) = run(&path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("embargo.toml is not readable by nobody"),
        "{out}"
    );
    chmod(&path, 0o644);

    // So would a list: the lists are read after the drop, so it shows now.
    chmod(&dir.path().join("seized.txt"), 0o600);
    let (code, out) = run(&path);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seized.txt: Permission denied"), "{out}");
}

/// The name of nobody's primary group (`nogroup` on Debian).
fn group_of_nobody() -> String {
    let (_, gid) = nobody();
    nix::unistd::Group::from_gid(gid)
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}
