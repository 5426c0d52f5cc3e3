//! Work that must not slow the serving path: parsing a downloaded list or a
//! transferred zone, writing and fsyncing its copy, building a snapshot.
//!
//! ```text
//!  runtime task (refresh, reload) ──► background::run(job) ──► thread of its own, nice 19
//!        │ awaits, the runtime free meanwhile                      │ job()
//!        ◄──────────────────────────── result ◄────────────────────┘
//! ```
//!
//! The runtime's workers (one per core) also carry forwarded answers: a
//! second-long parse or an fsync on one of them holds every forward queued
//! behind it. Each job therefore runs on a thread of its own at the lowest
//! CPU priority, so that on a busy core the serving threads go first and the
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

/// Lowers this thread's CPU priority (Linux: nice applies per thread).
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
        tracing::debug!(error = %e, "cannot lower a background thread's priority");
    }
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
        let panicked = run("embargo-test", || -> u8 { panic!("job") }).await;
        assert!(matches!(panicked, Err(Error::Panicked(_))), "{panicked:?}");
    }
}
