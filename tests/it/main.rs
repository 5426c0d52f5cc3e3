//! Integration tests: the real embargo server on loopback, a real upstream
//! on loopback, real DNS over UDP and TCP. One binary, one module per area.

mod access;
mod answers;
mod blocking;
mod cache;
mod cli;
mod cname;
mod corporate;
mod dnstap;
mod encrypted;
mod expiry;
mod forwarding;
mod groups;
mod harness;
mod history;
mod http;
mod kresd;
mod local;
mod malformed;
mod netns;
mod observe;
mod ofac;
mod privileges;
mod reload;
mod rpz;
mod secure;
mod sendbuf;
mod shipped;
mod signed;
mod strategies;
mod tcp;
mod upstreams;
mod wildcard;
mod workers;
mod xfr;
