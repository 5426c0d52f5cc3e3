//! knotd-signed zone tests (below).
