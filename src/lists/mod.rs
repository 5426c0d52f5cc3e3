//! Domain lists: how their bytes become names for the matcher.
//!
//! `format` holds one parser per syntax (plain domains, hosts, adblock, RPZ,
//! and `ips`, whose lines are networks for response-IP blocking),
//! pure functions of a line, with detection in `format/mod.rs`. `load`
//! drives a parser over a file, normalises every name, and counts what it
//! could not use, so that one bad line never costs the rest of the list.
//! `ofac` reads the US Treasury's SDN list, a whole document rather than
//! lines.
//! `slot` numbers each list by name for the life of the process
//! ([`ListSlot`]), the number events and counters carry.
//!
//! This module imports nothing above it: what a list *is* (name, source,
//! provenance, action) is the configuration's business (`config::ListSpec`),
//! and bringing a remote list's bytes is `source`'s.

pub mod format;
mod load;
pub mod ofac;
mod slot;

pub use format::{EntryKind, Format, NetEntry, Rule};
pub use load::{
    LineWarning, ListStats, LoadError, MAX_WARNINGS, detect_file, load_file, load_file_with_nets,
    load_lines, load_lines_with_nets, load_ofac, load_ofac_text,
};
pub use slot::{ListSlot, ListSlots};
