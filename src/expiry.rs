//! List expiry: a list with `expires` (a court order's end, a temporary
//! measure) stops blocking at that moment, with no reload asked for.
//!
//! ```text
//!  config: ListSpec.expires ──► watch (a timer task, beside the refreshers)
//!                                 │ a week ahead: warn
//!                                 │ at expiry: warn, poke the reload loop
//!                                 ▼
//!                          Snapshot::build: an expired list is not loaded,
//!                          its ListInfo says "expired at ..." (embargo lists,
//!                          /api/lists, embargo_list_in_force 0)
//! ```
//!
//! The expiry is a snapshot swap, not a check per query: the blocked
//! answer's path pays nothing for it, and everything that reads the
//! snapshot (CNAME inspection, groups, `check`, the cache's generations)
//! sees the list gone at once, as after any reload. The cost is that the
//! list stops blocking when the rebuilt snapshot is swapped in, the
//! reload's debounce and build time after the moment (milliseconds on an
//! idle machine); never before it: the build checks the clock itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::config::ListSpec;

/// How far ahead of its expiry a list is warned about.
pub const WARN_AHEAD: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest the watcher sleeps before it looks at the clock again: a
/// wall clock set forward (NTP after a cold boot) is noticed within this.
const RECHECK: Duration = Duration::from_secs(600);

/// `t` as RFC 3339 to the second (`2027-01-31T00:00:00Z`), as `expires`
/// is written.
pub fn format(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// What `ListInfo::note` says of a list that has expired.
pub fn note(t: SystemTime) -> String {
    format!("expired at {}", format(t))
}

/// Logs, at load, a list that has expired or expires within a week.
pub fn warn_at_load(spec: &ListSpec, now: SystemTime) {
    let Some(at) = spec.expires else { return };
    if at <= now {
        tracing::warn!(list = %spec.name, expires = %format(at), "list expired: not loaded, its entries no longer block");
    } else if at.duration_since(now).is_ok_and(|left| left <= WARN_AHEAD) {
        tracing::warn!(list = %spec.name, expires = %format(at), "list expires within a week");
    }
}

/// What happens at a moment the watcher waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    /// A week ahead: warn.
    WeekAhead,
    /// The list expires: warn, and rebuild the snapshot without it.
    Expiry,
}

/// The moments still to come of `lists`' expiries after `now`, earliest
/// first.
fn schedule(lists: &[ListSpec], now: SystemTime) -> Vec<(SystemTime, String, Moment)> {
    let mut moments: Vec<(SystemTime, String, Moment)> = lists
        .iter()
        .filter_map(|l| Some((l.expires?, l)))
        .flat_map(|(at, l)| {
            let ahead = at.checked_sub(WARN_AHEAD);
            [
                ahead.map(|t| (t, l.name.clone(), Moment::WeekAhead)),
                Some((at, l.name.clone(), Moment::Expiry)),
            ]
        })
        .flatten()
        .filter(|(t, _, _)| *t > now)
        .collect();
    moments.sort();
    moments
}

/// Waits for each expiry of `lists` still to come (and a week before it):
/// warns, and at the expiry pokes the reload loop, whose build leaves the
/// list out. Runs until aborted (the reload loop restarts it when the
/// lists' config changes).
pub async fn watch(lists: Vec<ListSpec>, poke: Arc<Notify>) {
    for (at, list, moment) in schedule(&lists, SystemTime::now()) {
        // Sleep in steps, each to the wall clock: never wakes early, and
        // a clock set forward is seen within RECHECK.
        while let Ok(left) = at.duration_since(SystemTime::now()) {
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(RECHECK)).await;
        }
        match moment {
            Moment::WeekAhead => {
                tracing::warn!(list = %list, expires = %format(at), "list expires in a week");
            }
            Moment::Expiry => {
                tracing::warn!(list = %list, expires = %format(at), "list expired: its entries no longer block");
                poke.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(name: &str, expires: Option<SystemTime>) -> ListSpec {
        let mut spec = crate::config::Config::parse(
            std::path::Path::new("/etc/embargo/t.toml"),
            &format!("[[lists]]\nname = \"{name}\"\nsource = \"x.txt\"\n"),
        )
        .expect("config")
        .lists
        .remove(0);
        spec.expires = expires;
        spec
    }

    #[test]
    fn moments_to_come_are_in_order_past_ones_dropped() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let day = Duration::from_secs(86_400);
        let lists = [
            list("later", Some(t0 + 30 * day)),
            list("soon", Some(t0 + 2 * day)),
            list("gone", Some(t0 - day)),
            list("forever", None),
        ];
        let moments = schedule(&lists, t0);
        let got: Vec<(Duration, &str, Moment)> = moments
            .iter()
            .map(|(t, n, m)| (t.duration_since(t0).expect("after"), n.as_str(), *m))
            .collect();
        assert_eq!(
            got,
            [
                (2 * day, "soon", Moment::Expiry),
                (23 * day, "later", Moment::WeekAhead),
                (30 * day, "later", Moment::Expiry),
            ]
        );
        assert_eq!(format(t0), "2033-05-18T03:33:20Z");
    }
}
