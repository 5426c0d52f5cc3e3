//! Who may ask, and how fast: the CIDR allow/deny rules, the log of refused
//! clients, and the response rate limiter.
//!
//! ```text
//!  client address ─► Access::refuses ─┬─ outside allow, or in deny ─► REFUSED + EDE 18 (or nothing)
//!                                     │                              └─► RefusedLog (one line a minute per /24, per thread)
//!                                     └─ allowed ─► (UDP) RateLimiter::check ─┬─ Answer ─► the normal path
//!                                                                             ├─ Slip   ─► empty TC=1 answer
//!                                                                             └─ Drop   ─► nothing
//! ```
//!
//! Why here, first: a resolver that answers anyone can be used to reflect
//! and amplify traffic at a spoofed victim, and blocked or cached answers
//! cost it nothing to give. So the client's address is judged before the
//! query is looked at, and the default admits only the networks that cannot
//! be reached from the internet (loopback, RFC 1918, CGNAT, link-local,
//! IPv6 ULA and link-local).
//!
//! Everything here is synchronous and knows nothing of sockets: the handler
//! passes in an address (and the limiter a clock reading) and gets a value.
//! An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket
//! reports) is judged as the IPv4 address it carries.
//!
//! The rooms: `rules.rs` is the networks and the allow/deny rules built
//! from them ([`Cidr`], [`CidrSet`], [`Access`]); `limiter.rs` the response
//! rate limiter ([`RateLimiter`]); `refusals.rs` the rate-limited log of
//! refused clients ([`RefusedLog`]); `prefix.rs` the client prefix both of
//! those count by. This file only names them.

mod limiter;
mod prefix;
mod refusals;
mod rules;

pub use limiter::{Limit, RateLimit, RateLimiter};
pub use refusals::{LineBudget, RefusedLog, RefusedReport};
pub use rules::{Access, AccessAction, Cidr, CidrError, CidrSet, Judgement, PRIVATE_NETWORKS};
