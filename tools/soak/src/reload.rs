//! The reload event: once per interval, at `--reload-at`, `sh -c CMD` on a
//! thread of its own (the soak script's command replaces the list and waits
//! until the server serves it); its last line of output goes in the row.

use std::time::Instant;

/// What one reload command did.
#[derive(Clone)]
pub(crate) struct Reload {
    /// When it started, seconds since the start.
    pub(crate) at: f64,
    pub(crate) took_ms: f64,
    pub(crate) ok: bool,
    /// Its last non-empty line of output (stdout, then stderr), or why it
    /// could not run.
    pub(crate) said: String,
}

/// Runs the reload command for row `r` (in `SOAK_INTERVAL`), `at` ns since
/// the start.
pub(crate) fn reload(cmd: &str, r: usize, at: u64) -> Reload {
    let started = Instant::now();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("SOAK_INTERVAL", r.to_string())
        .output();
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (ok, said) = match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            (o.status.success(), last.unwrap_or("").trim().to_string())
        }
        Err(e) => (false, e.to_string()),
    };
    Reload {
        at: at as f64 / 1e9,
        took_ms,
        ok,
        said,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_and_the_exit_status_are_kept() {
        let r = reload(
            "echo first; echo \"$SOAK_INTERVAL ms\"; echo",
            7,
            2_500_000_000,
        );
        assert!(r.ok);
        assert_eq!(r.said, "7 ms");
        assert_eq!(r.at, 2.5);
        let r = reload("echo 'no reload done' >&2; exit 1", 0, 0);
        assert!(!r.ok);
        assert_eq!(r.said, "no reload done");
    }
}
