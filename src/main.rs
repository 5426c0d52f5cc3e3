//! The `embargo` command line: parse flags, set up logging, call the library,
//! map errors to exit codes. `println!` lives here and nowhere else.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt;

use embargo::config::Config;
use embargo::state::Snapshot;

mod hitsview;
mod logview;
mod pages;

/// A DNS forwarder that refuses seized, sanctioned and threat domains and
/// tells you which list refused them.
#[derive(Debug, Parser)]
// No bare `about`: that would take Cargo.toml's `description` (the Debian
// package's one-line summary) instead of the doc comment above.
#[command(name = "embargo", version, long_about = None)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(
        short,
        long,
        global = true,
        default_value = "config/embargo.toml",
        env = "EMBARGO_CONFIG"
    )]
    config: PathBuf,
    /// Log level (error, warn, info, debug, trace) or a full tracing filter
    /// such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go
    /// to the query log, `[log]` in the config, not here.)
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve DNS until SIGINT or SIGTERM; SIGHUP reloads the lists.
    Run,
    /// Say whether each name is blocked, by which list and entry, or allowed.
    Check {
        /// Say first whether this client address would be answered at all
        /// ([access] and [rate_limit]); a refused client gets no name. With
        /// [[groups]], say its group and answer each name for that group.
        #[arg(long, value_name = "IP")]
        client: Option<IpAddr>,
        /// Domain names to check.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show every list: source, format, entries, duplicates, bad lines.
    Lists,
    /// When a name (or the list entry covering it) entered and left each
    /// list, and in which version; with --list, that list's changes.
    History {
        /// Only this list; without a name, every change it recorded.
        #[arg(long, value_name = "LIST")]
        list: Option<String>,
        /// The domain name to look up.
        #[arg(required_unless_present = "list")]
        name: Option<String>,
    },
    /// Load the config and every list and report every problem (exit 1 if any is fatal).
    Validate,
    /// Tell the running server (found by its pid file in the state directory) to reload.
    Reload,
    /// Download remote lists now into the state directory, then tell the
    /// running server to reload. --force skips the conditional GET and the
    /// max_shrink check (an operator's explicit decision).
    Fetch {
        /// Accept a new version even if it shrinks the list more than max_shrink.
        #[arg(long)]
        force: bool,
        /// Only these lists (default: every remote list).
        lists: Vec<String>,
    },
    /// Show the running server's hit report: for each list, the clients that
    /// asked for its names, most recent first (read from the state directory,
    /// where the server saves it within 5 seconds of a change and at shutdown).
    Hits {
        /// Only this list.
        #[arg(long)]
        list: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search the query log, rotated files included: what a client asked,
    /// what a list blocked, who asked for a name; the filters combine.
    Log(logview::LogArgs),
    /// Print the completion script for a shell, e.g.
    /// `embargo completions bash > /etc/bash_completion.d/embargo`.
    /// Reads no config.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): embargo(8) unless named, e.g.
    /// `embargo man embargo.toml | man -l -`. The Debian package installs
    /// them all. Reads no config.
    Man {
        /// The page: embargo, embargo-COMMAND (embargo-check...) or
        /// embargo.toml, with or without its section (embargo.toml.5).
        #[arg(default_value = "embargo")]
        page: String,
    },
}

/// The size from which glibc's malloc maps a block of its own (and unmaps
/// it when freed) instead of carving it from the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 64 * 1024;

/// Fixes glibc's mmap threshold for the serving process. By default glibc
/// raises the threshold to the size of every mapped block it frees, so
/// after the first reload has freed a list's tables (megabytes), the next
/// list's tables come from the heap, which malloc keeps: in the soak RSS
/// stepped up by about one list (13 MiB of 69) in the second minute of
/// every run and was never flat within 10 %. With the threshold fixed at
/// 64 KiB every list's tables are mapped and given back on each reload;
/// the same soak stayed within 5 %. `MALLOC_MMAP_THRESHOLD_` in the
/// environment still wins, as glibc documents.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn fix_mmap_threshold() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    // SAFETY: mallopt only sets one of malloc's tunables; it is called
    // before the server starts any thread, and its result (0 on failure)
    // leaves malloc as it was.
    let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_mmap_threshold() {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Documentation needs no config: these work before one is written.
    match &cli.command {
        Command::Completions { shell } => {
            return print(&pages::completions(Cli::command(), *shell));
        }
        Command::Man { page } => {
            return match pages::man_page(Cli::command(), page) {
                Ok(roff) => print(&roff),
                Err(e) => {
                    eprintln!("embargo: {e}");
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Command::Run = cli.command {
        fix_mmap_threshold();
        return run(config, cli.log_level.as_deref());
    }
    let _log_guard = init_logging(&log_directives(cli.log_level.as_deref(), false));
    match cli.command {
        Command::Run => ExitCode::SUCCESS,
        Command::Check { client, names } => {
            with_snapshot(&config, |snap| check(snap, client, &names))
        }
        Command::Lists => with_snapshot(&config, lists),
        Command::History { list, name } => history(&config, list.as_deref(), name.as_deref()),
        Command::Validate => {
            for w in &config.warnings {
                println!("{}: warning: {}", w.location, w.message);
            }
            validate_all(&config)
        }
        Command::Reload => signal_reload(&config),
        Command::Fetch { force, lists } => fetch(&config, force, &lists),
        Command::Hits { list, json } => hitsview::hits(&config, list.as_deref(), json),
        Command::Log(args) => logview::run(&config, &args),
        Command::Completions { .. } | Command::Man { .. } => ExitCode::SUCCESS,
    }
}

/// Writes what `completions` or `man` rendered to standard output; a
/// closed pipe (`| head`) is no error worth a message.
fn print(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embargo: standard output: {e}");
            ExitCode::from(1)
        }
    }
}

/// The tracing filter's directives: `--log-level`, else `RUST_LOG`, else
/// `info` to serve and `warn` for the other commands. Returned as text so
/// that `run` can build its two filters (before and after the drop of
/// privileges) from one choice and warn about a bad level once.
fn log_directives(level: Option<&str>, serving: bool) -> String {
    let default = if serving { "info" } else { "warn" };
    match level {
        Some(l) => match EnvFilter::try_new(l) {
            Ok(_) => l.to_owned(),
            Err(e) => {
                eprintln!("invalid log level: {e}; using {default}");
                default.to_owned()
            }
        },
        None => std::env::var(EnvFilter::DEFAULT_ENV)
            .ok()
            .filter(|env| EnvFilter::try_new(env).is_ok())
            .unwrap_or_else(|| default.to_owned()),
    }
}

/// Log lines with their target, to `writer`, coloured on a terminal.
fn log_subscriber<W>(directives: &str, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(directives))
        .with_writer(writer)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal())
        .finish()
}

/// Logs go to stderr through a non-blocking writer: a slow terminal or pipe
/// drops log lines rather than stalling the query path.
fn init_logging(directives: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    log_subscriber(directives, writer).init();
    guard
}

/// A tokio runtime: multi-threaded to serve, one thread for CLI work.
fn runtime(serving: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut b = if serving {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().map_err(|e| {
        eprintln!("cannot start the runtime: {e}");
        ExitCode::from(1)
    })
}

/// `embargo run`. Binding and dropping privileges come first, while this is
/// the only thread: the kernel keeps capabilities and no_new_privs per
/// thread, so the logging thread, the runtime and the UDP workers, all
/// started afterwards, inherit the unprivileged state (see
/// `embargo::privileges`). Until then log lines are written to stderr
/// directly, since the non-blocking writer is a thread of its own.
fn run(config: Config, level: Option<&str>) -> ExitCode {
    let directives = log_directives(level, true);
    let early = log_subscriber(&directives, std::io::stderr);
    let prepared = tracing::subscriber::with_default(early, || embargo::prepare(&config));
    let listeners = match prepared {
        Ok(l) => l,
        Err(e) => {
            eprintln!("embargo: {e}");
            return ExitCode::from(1);
        }
    };
    let _log_guard = init_logging(&directives);
    let rt = match runtime(true) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // The handlers are installed now, before anything says it listens: a
    // SIGTERM with no handler yet would end the process on the spot, with
    // no drain and no last records.
    let shutdown = {
        let _runtime = rt.enter();
        shutdown_signal()
    };
    match rt.block_on(embargo::serve(config, listeners, shutdown)) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("embargo: {e}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGTERM or SIGINT, whose handlers are installed when this
/// is called (inside the runtime), not when it is first polled.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term) => {}
            () = wait(int) => {}
        }
    }
}

/// Sends SIGHUP to the server whose pid file is in the state directory,
/// once it is known to be embargo: the pid file may be stale (its pid now
/// another program's, which SIGHUP would end) or rewritten by the service
/// user, who owns the state directory, while `embargo reload` may run as
/// root. Signalled directly, not through `kill`, whose own words would
/// stand in for ours. (Not through `POST /api/reload`: that needs `[http]`
/// and its token; the signal is what systemd's `ExecReload=` sends too.)
fn signal_reload(config: &Config) -> ExitCode {
    let pid_file = embargo::reload::pid_file(config);
    let text = match std::fs::read_to_string(&pid_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "{}: {e}: is `embargo run -c {}` running?",
                pid_file.display(),
                config.path.display()
            );
            return ExitCode::from(1);
        }
    };
    let pid = text.trim();
    let Some(raw) = pid
        .parse::<u32>()
        .ok()
        .filter(|_| pid.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| i32::try_from(n).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        eprintln!("{}: not a pid: {pid:?}", pid_file.display());
        return ExitCode::from(1);
    };
    match reload_server(raw) {
        Ok(()) => {
            println!("reload requested (pid {pid})");
            ExitCode::SUCCESS
        }
        Err(NotSignalled::NoProcess) => {
            eprintln!(
                "{}: no process {pid}: a stale pid file (is `embargo run -c {}` running?)",
                pid_file.display(),
                config.path.display()
            );
            ExitCode::from(1)
        }
        Err(NotSignalled::Other(exe)) => {
            eprintln!(
                "{}: pid {pid} is {exe}, not embargo: not signalled (a stale pid file whose pid another program now has?)",
                pid_file.display()
            );
            ExitCode::from(1)
        }
        Err(NotSignalled::Failed(why)) => {
            eprintln!("{}: pid {pid}: {why}", pid_file.display());
            ExitCode::from(1)
        }
    }
}

/// Why `embargo reload` sent no signal.
enum NotSignalled {
    /// No process has that pid.
    NoProcess,
    /// The process runs this other program.
    Other(String),
    /// It could not be checked or signalled.
    Failed(String),
}

/// SIGHUP to `pid` if it runs embargo. A pidfd, where the kernel has them
/// (5.3), holds on to the process checked: if it exits and its pid is
/// reused between the check and the signal, the signal fails instead of
/// reaching the newcomer.
fn reload_server(pid: rustix::process::Pid) -> Result<(), NotSignalled> {
    use rustix::io::Errno;
    use rustix::process::{PidfdFlags, Signal};
    let failed = |what: &str, e: Errno| match e {
        Errno::SRCH => NotSignalled::NoProcess,
        Errno::PERM => NotSignalled::Failed(format!(
            "not allowed to signal it: run this as the user embargo runs as, or as root ({what}: {e})"
        )),
        e => NotSignalled::Failed(format!("{what}: {e}")),
    };
    let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(Errno::SRCH) => return Err(NotSignalled::NoProcess),
        Err(_) => None,
    };
    is_embargo(pid.as_raw_pid())?;
    match pidfd {
        Some(fd) => rustix::process::pidfd_send_signal(fd, Signal::HUP)
            .map_err(|e| failed("pidfd_send_signal", e)),
        None => rustix::process::kill_process(pid, Signal::HUP).map_err(|e| failed("kill", e)),
    }
}

/// Whether `pid` runs embargo: its `/proc/PID/exe` is this program, or a
/// program of the same file name (an upgrade replaces the binary: the old
/// one shows as "PATH (deleted)").
fn is_embargo(pid: i32) -> Result<(), NotSignalled> {
    let strip = |p: &std::path::Path| {
        let shown = p.to_string_lossy();
        PathBuf::from(shown.strip_suffix(" (deleted)").unwrap_or(&shown))
    };
    let exe = match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(p) => strip(&p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NotSignalled::NoProcess);
        }
        Err(e) => {
            return Err(NotSignalled::Failed(format!(
                "cannot tell whether it is embargo (/proc/{pid}/exe: {e}): not signalled"
            )));
        }
    };
    let ours = std::env::current_exe().map(|p| strip(&p)).ok();
    let name = |p: &std::path::Path| p.file_name().map(std::ffi::OsStr::to_os_string);
    let same = ours
        .as_deref()
        .is_some_and(|o| o == exe || name(o) == name(&exe))
        || name(&exe).is_some_and(|n| n == "embargo");
    if same {
        Ok(())
    } else {
        Err(NotSignalled::Other(exe.display().to_string()))
    }
}

/// Refreshes remote lists from the command line.
fn fetch(config: &Config, force: bool, only: &[String]) -> ExitCode {
    use embargo::config::Source;
    use embargo::source::{Outcome, http, xfr};
    // A name the config does not have, or a list that is a file, is a
    // mistake to say, not nothing to do.
    let mut named_wrong = false;
    for name in only {
        match config.lists.iter().find(|l| &l.name == name) {
            None => {
                eprintln!("{}", no_such_list(config, name));
                named_wrong = true;
            }
            Some(spec) if !spec.source.is_remote() => {
                eprintln!(
                    "list {name:?} is read from the file {}: not fetched (only lists from http(s):// or axfr:// are)",
                    spec.path.display()
                );
                named_wrong = true;
            }
            Some(_) => {}
        }
    }
    if named_wrong {
        return ExitCode::from(2);
    }
    if !config.lists.iter().any(|l| l.source.is_remote()) {
        println!("no remote lists to fetch: every list is read from a file");
        return ExitCode::SUCCESS;
    }
    let rt = match runtime(false) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let client = match http::client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot create the HTTP client: {e}");
            return ExitCode::from(1);
        }
    };
    let mut code = ExitCode::SUCCESS;
    let mut updated = false;
    for spec in &config.lists {
        if !only.is_empty() && !only.contains(&spec.name) {
            continue;
        }
        let outcome = match &spec.source {
            Source::Http(url) => rt.block_on(http::refresh(&client, spec, url, force)),
            Source::Axfr(src) => rt.block_on(xfr::refresh(spec, src, force)),
            Source::File(_) => continue,
        };
        match &outcome {
            Outcome::Updated { entries } => {
                updated = true;
                println!("{}	updated	{entries} names", spec.name);
            }
            Outcome::NotModified => println!("{}	not modified", spec.name),
            Outcome::Refused(why) => {
                println!("{}	refused	{why} (use --force to accept it)", spec.name);
                code = ExitCode::from(1);
            }
            Outcome::Failed(why) => {
                println!("{}	failed	{why}", spec.name);
                code = ExitCode::from(1);
            }
            Outcome::BadSignature(why) => {
                println!("{}	refused	signature: {why}", spec.name);
                code = ExitCode::from(1);
            }
        }
    }
    if updated && embargo::reload::pid_file(config).exists() {
        let _ = signal_reload(config);
    }
    code
}

/// What to say of a list name `config` does not have: the names it has.
fn no_such_list(config: &Config, name: &str) -> String {
    let names: Vec<&str> = config.lists.iter().map(|l| l.name.as_str()).collect();
    format!(
        "no list {name:?} in {}; its lists are: {}",
        config.path.display(),
        if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        }
    )
}

fn with_snapshot(config: &Config, f: impl FnOnce(&Snapshot) -> ExitCode) -> ExitCode {
    match Snapshot::build(config) {
        Ok(snap) => f(&snap),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn check(snap: &Snapshot, client: Option<IpAddr>, names: &[String]) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    let asker = client.map(|ip| embargo::check::client(snap, ip));
    if let Some(c) = &asker {
        println!("{}", c.detail);
    }
    // With [[groups]]: whose lists the names are answered with.
    if let Some(line) = embargo::check::group_line(snap, asker.as_ref()) {
        println!("{line}");
    }
    for text in names {
        let c = embargo::check::name(snap, text, asker.as_ref());
        match (&c.block, &c.detail) {
            (Some(b), _) => {
                println!(
                    "{}\tblocked\tlist={} entry={} action={} ede={} ({})\n\twhy: {}",
                    c.name, b.list, b.entry, b.action, b.ede, b.ede_meaning, b.why,
                );
                // What is known of the list's provenance, and nothing for what is not.
                for (label, value) in [
                    ("authority", &b.authority),
                    ("reason", &b.reason),
                    ("reference", &b.reference),
                ] {
                    if !value.trim().is_empty() {
                        println!("\t{label}: {value}");
                    }
                }
                if let Some(at) = &b.expires {
                    println!("\texpires: {at} (the list stops blocking then)");
                }
            }
            (None, Some(detail)) => println!("{}\t{}\t{detail}", c.name, c.verdict),
            (None, None) => println!("{}\t{}", c.name, c.verdict),
        }
        // With [[forward]]: the servers an allowed name goes to.
        if let Some(upstream) = &c.upstream {
            println!("\tupstream: {upstream}");
        }
        if c.verdict == "invalid" {
            code = ExitCode::from(2);
        }
    }
    code
}

fn lists(snap: &Snapshot) -> ExitCode {
    println!(
        "{:<28} {:<8} {:>9} {:>10} {:>8} {:>11}  source",
        "name", "format", "entries", "duplicates", "invalid", "unsupported"
    );
    let rows = snap
        .lists
        .iter()
        .map(|l| (l.spec.name.clone(), l.spec.source.to_string(), &l.stats))
        .chain(
            snap.allow
                .iter()
                .map(|a| ("(allow)".to_string(), a.source.clone(), &a.stats)),
        );
    for (name, source, s) in rows {
        println!(
            "{:<28} {:<8} {:>9} {:>10} {:>8} {:>11}  {}",
            name,
            s.format.map_or("?", |f| f.as_str()),
            s.entries(),
            s.duplicates,
            s.invalid,
            s.unsupported,
            source
        );
    }
    for l in &snap.lists {
        if l.spec.source.is_remote() {
            let meta = embargo::source::read_meta(&l.spec.path);
            let age = |t: Option<u64>| {
                t.and_then(|t| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(t)))
                    .and_then(|t| t.elapsed().ok())
                    .map_or("never".to_string(), |d| {
                        format!(
                            "{} ago",
                            humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
                        )
                    })
            };
            println!(
                "  {}: copy downloaded {}, last checked {}: {}{}",
                l.spec.name,
                age(meta.fetched_at),
                age(meta.checked_at),
                if meta.last_result.is_empty() {
                    "-"
                } else {
                    &meta.last_result
                },
                l.note
                    .as_deref()
                    .map_or(String::new(), |n| format!(" ({n})")),
            );
            if l.spec.signature.is_some() {
                println!(
                    "  {}: signed ({}), {} download(s) refused for their signature",
                    l.spec.name,
                    meta.signed.as_deref().unwrap_or("no verified copy yet"),
                    meta.signature_failures,
                );
            }
        }
        if let Some(c) = &l.spec.canary {
            let on = if l.canary_listed { "on" } else { "NOT on" };
            println!("  {}: canary {c}: {on} this copy", l.spec.name);
        }
        // An expired list is reported, not silently dropped.
        if let Some(at) = l.spec.expires {
            let state = if l.spec.expired(std::time::SystemTime::now()) {
                "expired"
            } else {
                "expires"
            };
            println!("  {}: {state} {}", l.spec.name, embargo::expiry::format(at));
        }
    }
    ExitCode::SUCCESS
}

/// `embargo validate`: the config (already loaded), `[server] user` and
/// `group` on this system, then every list.
fn validate_all(config: &Config) -> ExitCode {
    let user = embargo::privileges::resolve(&config.run_as);
    if let Err(e) = &user {
        eprintln!("{e}");
    }
    // The state directory, as `run` will check it, when the user running
    // this is the one that will serve.
    let state = match &user {
        Ok(id) => embargo::privileges::check_state_dir(config, id.as_ref()),
        Err(_) => Ok(()),
    };
    if let Err(e) = &state {
        eprintln!("{e}");
    }
    // The encrypted listeners' certificate, as `run` will load it.
    let certificate = match config.tls.files() {
        Some((cert, key)) if config.tls.enabled() => {
            embargo::config::load_certificate(cert, key).map(|_| ())
        }
        _ => Ok(()),
    };
    if let Err(e) = &certificate {
        eprintln!("{e}");
    }
    // `[alerts]`' token and CA files, as `run` will read them.
    let alerts = match &config.alerts {
        Some(a) => embargo::observe::alerts::read_secrets(a).map(|_| ()),
        None => Ok(()),
    };
    if let Err(e) = &alerts {
        eprintln!("{e}");
    }
    // Every list and allow file that cannot be opened, all named at once
    // (a config copied elsewhere misses them all); the build would stop
    // at the first.
    let unreadable = unreadable_sources(config);
    for e in &unreadable {
        eprintln!("{e}");
    }
    let lists = if unreadable.is_empty() {
        with_snapshot(config, |snap| validate(snap, config))
    } else {
        ExitCode::from(1)
    };
    if user.is_err() || state.is_err() || certificate.is_err() || alerts.is_err() {
        ExitCode::from(1)
    } else {
        lists
    }
}

/// The list and allow files of `config` that cannot be opened, each as the
/// error the build would give. A remote list not downloaded yet is not
/// one: the server starts without it and fetches it.
fn unreadable_sources(config: &Config) -> Vec<embargo::state::BuildError> {
    use embargo::lists::LoadError;
    use embargo::state::BuildError;
    let open = |path: &std::path::Path| {
        std::fs::File::open(path).err().map(|source| LoadError {
            path: path.to_path_buf(),
            source,
        })
    };
    let lists = config
        .lists
        .iter()
        .filter(|spec| !spec.source.is_remote() || spec.path.exists())
        .filter_map(|spec| {
            open(&spec.path).map(|source| BuildError::List {
                list: spec.name.clone(),
                location: spec.location.clone(),
                source,
            })
        });
    let allow = config
        .allow_files
        .iter()
        .filter_map(|path| open(path).map(BuildError::Allow));
    lists.chain(allow).collect()
}

fn validate(snap: &Snapshot, config: &Config) -> ExitCode {
    // A canary its own list does not block: the config is wrong (`canary`).
    let canaries = embargo::canary::problems(config, snap);
    canaries.iter().for_each(|p| eprintln!("{p}"));
    let mut warnings = 0u64;
    let sources = snap
        .lists
        .iter()
        .map(|l| (l.spec.path.display().to_string(), &l.stats))
        .chain(snap.allow.iter().map(|a| (a.source.clone(), &a.stats)));
    for (source, s) in sources {
        for w in &s.warnings {
            println!("{source}:{}: {}", w.line, w.message);
        }
        let bad = s.invalid + s.unsupported;
        if bad > s.warnings.len() as u64 {
            println!(
                "{source}: {} more bad lines not shown",
                bad - s.warnings.len() as u64
            );
        }
        warnings += bad;
    }
    if !canaries.is_empty() {
        return ExitCode::from(1);
    }
    println!(
        "ok: {} lists, {} names, {} lines skipped (not fatal)",
        snap.lists.len(),
        snap.set.len(),
        warnings
    );
    ExitCode::SUCCESS
}

/// `embargo history`: read from `STATE/history` (`observe::history`).
fn history(config: &Config, list: Option<&str>, name: Option<&str>) -> ExitCode {
    use embargo::observe::history;
    if let Some(l) = list
        && !config.lists.iter().any(|s| s.name == l)
    {
        eprintln!("no list {l:?} in {}", config.path.display());
        return ExitCode::from(2);
    }
    let result = match name {
        Some(name) => {
            let names: Vec<&str> = match list {
                Some(l) => vec![l],
                None => config.lists.iter().map(|s| s.name.as_str()).collect(),
            };
            history::search_name(&config.history, &names, name).map(|events| {
                if events.is_empty() {
                    println!("{name}: on no list, as far as the history kept says");
                }
                for e in events {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        e.time, e.list, e.event, e.entry, e.version
                    );
                }
            })
        }
        None => history::read(&config.history, list.unwrap_or_default()).map(|h| {
            if h.dropped > 0 {
                println!(
                    "({} older changes dropped to stay within [history] max_mb)",
                    h.dropped
                );
            }
            for c in h.changes {
                let (added, removed) = c
                    .counts
                    .unwrap_or((c.added.len() as u64, c.removed.len() as u64));
                let mut shown: Vec<String> = c.added.iter().take(10).cloned().collect();
                shown.extend(c.removed.iter().take(10).map(|r| format!("-{r}")));
                println!(
                    "{}\t{}\t+{added} -{removed}\t{}",
                    c.time,
                    c.version,
                    shown.join(" ")
                );
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
