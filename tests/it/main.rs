//! Integration tests: the real embargo server on loopback, a real upstream
//! on loopback, real DNS over UDP and TCP. One binary, one module per area.

mod blocking;
mod cli;
mod forwarding;
mod harness;
mod malformed;
mod ofac;
mod reload;
mod secure;
mod shipped;
mod upstreams;
mod xfr;
