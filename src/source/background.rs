//! Work that must not slow the serving path: parsing a downloaded list or a
//! transferred zone, writing and fsyncing its copy, building a snapshot.
//!
//! ```text
//!  runtime task (refresh, reload) ──► background::run(job) ──► thread of its own, SCHED_IDLE
//!        │ awaits, the runtime free meanwhile                      │ job()
//!        ◄──────────────────────────── result ◄────────────────────┘
//! ```
//!
//! The runtime's workers (one per core) also carry forwarded answers: a
//! second-long parse or an fsync on one of them holds every forward queued
//! behind it. Each job therefore runs on a thread of its own at the lowest
//! CPU priority (`SCHED_IDLE`, see [`lower_priority`]), so that on a busy
//! core the serving threads go first and the
//! job takes what is left (queries never wait on a reload; a reload may
//! wait on queries). Why not `spawn_blocking`: its threads are pooled and
//! reused, a lowered priority would stick to whatever runs there next
//! (`tokio::fs`, API handlers), and raising it back takes `CAP_SYS_NICE`.
//! A thread per job costs some microseconds; jobs take milliseconds to
//! seconds and come at most once per refresh or reload.

/// The nice value of a job's thread: the lowest priority there is.
const NICE: i32 = 19;

/// Why a job gave no result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start a thread: {0}")]
    Spawn(std::io::Error),
    #[error("the {0} thread panicked")]
    Panicked(String),
}

/// Runs `job` on a new thread named `name` at the lowest CPU priority and
/// waits for its result without holding the runtime's thread.
pub async fn run<T: Send + 'static>(
    name: &str,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_priority();
            // The receiver is gone when the waiting task was aborted (the
            // helpers restarted on a config change): the result is not needed.
            let _ = tx.send(job());
        })
        .map_err(Error::Spawn)?;
    rx.await.map_err(|_| Error::Panicked(name.to_string()))
}

/// Lowers this thread's CPU priority to the lowest there is: the
/// `SCHED_IDLE` policy, and nice 19 where that policy is refused.
///
/// Why `SCHED_IDLE` and not nice 19 alone: the scheduler (EEVDF, Linux
/// 6.6 and later) lets a running nice-19 thread finish its slice (3 ms)
/// before a woken serving thread runs, and a serving thread pinned to the
/// same core blocks on its socket between batches, so a reload's build
/// took a slice at every pause and the receive buffer overflowed behind it
/// (the soak: a reload per minute on the serving core). A waking thread of
/// the normal policy preempts a `SCHED_IDLE` one at once (the kernel's
/// `check_preempt_wakeup_fair`). Linux applies both per thread.
pub(crate) fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
        tracing::debug!(error = %e, "cannot lower a background thread's priority");
    }
    if let Err(e) = idle_policy() {
        tracing::debug!(error = %e, "cannot give a background thread the SCHED_IDLE policy");
    }
}

/// Puts the calling thread under `SCHED_IDLE` (no privilege needed: a
/// thread may always lower its own policy).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn idle_policy() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid
    // sched_param that outlives the call, which only reads it.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn idle_policy() -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_their_own_thread_at_the_lowest_priority() {
        let caller = std::thread::current().id();
        let (thread, nice) = run("embargo-test", || {
            let tid = rustix::thread::gettid();
            (
                std::thread::current().id(),
                rustix::process::getpriority_process(Some(tid)),
            )
        })
        .await
        .expect("job");
        assert_ne!(thread, caller);
        assert_eq!(nice.ok(), Some(NICE));
        #[cfg(target_os = "linux")]
        {
            let policy = run("embargo-test", policy_of_this_thread)
                .await
                .expect("job");
            assert_eq!(policy, Some(libc::SCHED_IDLE as u32), "SCHED_IDLE");
        }
        let panicked = run("embargo-test", || -> u8 { panic!("job") }).await;
        assert!(matches!(panicked, Err(Error::Panicked(_))), "{panicked:?}");
    }

    /// The scheduling policy of the calling thread, from field 41 of
    /// /proc/thread-self/stat (after the command's closing parenthesis).
    #[cfg(target_os = "linux")]
    fn policy_of_this_thread() -> Option<u32> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split_whitespace().nth(41 - 3)?.parse().ok()
    }
}
