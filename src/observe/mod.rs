//! What the server has done, told without slowing it: counters the workers
//! bump in blocks of their own ([`metrics`]), summed only when someone asks
//! (`/metrics`, the JSON API).
//!
//! ```text
//!  UDP worker N ──► WorkerStats[N]  (plain load + store: one writer)
//!  TCP tasks    ──► WorkerStats tcp (fetch_add: many writers, a slower path)
//!  forwards     ──► UpstreamStats per upstream (fetch_add)
//!                         │
//!  scrape ◄── metrics::render: sums the blocks, reads the snapshot, cache, lists' meta
//!  series::keep, once a second ──► the last hour per second (the dashboard's chart)
//! ```

pub mod metrics;
pub mod series;
