//! Line parsers for the five blocklist syntaxes embargo reads.
//!
//! Each parser turns one line into the names it mentions, borrowed from the
//! line, and leaves normalisation (case, trailing dot, IDN, validity) to the
//! caller: the per-line path must not allocate, because lists of a million
//! lines are reloaded while the server keeps answering.
//!
//! Every line gets an [`Outcome`], so that the loader can tell the user *why*
//! a list yields fewer names than it has lines. The distinction between
//! [`Outcome::Unsupported`] and [`Outcome::Invalid`] matters for that report:
//! a list full of cosmetic adblock rules is not broken, it is just aimed at a
//! browser, and must not drown the log in warnings.
//!
//! Most lines name domains; an `ips` list's lines and RPZ `rpz-ip`
//! triggers name networks instead ([`NetEntry`], handed to a second
//! callback), which forwarded answers' addresses are checked against.
//!
//! One file per syntax (`domains`, `hosts`, `adblock`, `rpz`, `ips`); this
//! file holds what they share ([`Entry`], [`Outcome`], [`Parser`]) and the
//! detection of a file's syntax from its first lines.

use std::borrow::Cow;

use crate::matcher::{Net, Scope};

mod adblock;
mod domains;
mod hosts;
mod ips;
mod rpz;

use adblock::parse_adblock;
use domains::parse_domains;
use hosts::{is_ip, parse_hosts};
use ips::parse_ips;
use rpz::RpzState;

/// The syntax of a list file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Domains,
    Hosts,
    Adblock,
    Rpz,
    /// One IP address or network a line (Spamhaus DROP, abuse.ch).
    Ips,
    /// The US Treasury OFAC SDN list (SDN.XML or sdn.csv), read as a whole
    /// file by `super::ofac`, not line by line.
    OfacSdn,
}

impl Format {
    /// Guesses the format from the first lines of a file (a sample of up to
    /// ~64 KiB, possibly cut mid-line at the end).
    ///
    /// Looks at every line of the sample rather than the first decisive one,
    /// because adblock lists often start with plain domains and only later
    /// show a `||` rule. RPZ evidence wins at once (a zone file is never
    /// anything else); between hosts and adblock the lines vote, and the
    /// format most of them have wins (issue 21: one `||` rule among a hosts
    /// file's lines made the whole file adblock, and every hosts line
    /// unsupported). Plain names are read by both and do not vote; a `!`
    /// comment says adblock only when no line voted. A list with no
    /// evidence at all is a plain domain list.
    pub fn detect(sample: &str) -> Self {
        let sample = sample.strip_prefix('\u{feff}').unwrap_or(sample);
        // A cut-off last line could turn "0.0.0.0 example.com" into "0.0.0.0"
        // and mislead the guess, so it only counts when it is the only line.
        let sample = match sample.rfind('\n') {
            Some(end) if !sample.ends_with('\n') => sample.get(..end).unwrap_or(sample),
            _ => sample,
        };
        if super::ofac::looks_like(sample) {
            return Self::OfacSdn;
        }
        let mut bang = false;
        let mut adblock = 0u32;
        let mut hosts = 0u32;
        // Lines that are a lone address or network, and lines that are not:
        // the majority decides, so that a few bad lines do not turn a DROP
        // list into a domain list that rejects every line.
        let (mut ip_lines, mut other_lines) = (0u32, 0u32);
        let mut looked = 0;
        for line in sample.lines() {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('!') {
                bang = true;
                continue;
            }
            looked += 1;
            if looked > 200 {
                break;
            }
            if starts_with_ignore_case(line, "$ORIGIN") || starts_with_ignore_case(line, "$TTL") {
                return Self::Rpz;
            }
            if line.starts_with("||")
                || line.starts_with("@@")
                || (line.starts_with('[') && line.ends_with(']'))
            {
                adblock += 1;
                continue;
            }
            let mut tokens = line
                .split_ascii_whitespace()
                .take_while(|t| !t.starts_with('#') && !t.starts_with(';'));
            let Some(first) = tokens.next() else {
                continue;
            };
            // An IP address first means hosts even if a name happens to be
            // "cname" or "soa": an RPZ owner is never an address.
            if is_ip(first) {
                if tokens.next().is_some() {
                    hosts += 1;
                    other_lines += 1;
                } else {
                    ip_lines += 1;
                }
                continue;
            }
            if lone_network(first, &mut tokens) {
                ip_lines += 1;
                continue;
            }
            other_lines += 1;
            if tokens
                .take(3)
                .any(|t| t.eq_ignore_ascii_case("SOA") || t.eq_ignore_ascii_case("CNAME"))
            {
                return Self::Rpz;
            }
        }
        if ip_lines > other_lines + adblock {
            Self::Ips
        } else if hosts > adblock {
            Self::Hosts
        } else if adblock > 0 || bang {
            Self::Adblock
        } else {
            Self::Domains
        }
    }

    /// Parses the config spelling (`auto` is handled by the config as `None`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "domains" => Self::Domains,
            "hosts" => Self::Hosts,
            "adblock" => Self::Adblock,
            "rpz" => Self::Rpz,
            "ips" => Self::Ips,
            "ofac-sdn" => Self::OfacSdn,
            _ => return None,
        })
    }

    /// "domains" | "hosts" | "adblock" | "rpz" | "ips" | "ofac-sdn"
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Domains => "domains",
            Self::Hosts => "hosts",
            Self::Adblock => "adblock",
            Self::Rpz => "rpz",
            Self::Ips => "ips",
            Self::OfacSdn => "ofac-sdn",
        }
    }

    /// Which names an entry of this format covers. An RPZ trigger `x`
    /// covers `x` alone and `*.x` the names below `x`, as BIND and
    /// PowerDNS read a policy zone; in every other format a listed name
    /// covers itself and its subdomains, and `*.x` says the same as `x`
    /// (it only lets a bare TLD be listed on purpose).
    pub fn scope(self, wildcard: bool) -> Scope {
        match (self, wildcard) {
            (Self::Rpz, false) => Scope::Exact,
            (Self::Rpz, true) => Scope::Below,
            _ => Scope::Subtree,
        }
    }

    /// A parser holding the per-file state (RPZ needs $ORIGIN, parentheses,
    /// previous owner).
    pub fn parser(self) -> Parser {
        Parser {
            format: self,
            rpz: RpzState::default(),
        }
    }
}

/// What an RPZ record asks for a trigger name; other formats always give `Block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Block with the list's configured action.
    Block,
    /// RPZ `CNAME .`: answer NXDOMAIN.
    Nxdomain,
    /// RPZ `CNAME *.`: answer NODATA.
    Nodata,
    /// RPZ `CNAME rpz-passthru.`: this feed does not block the names the
    /// trigger covers (its less specific triggers no longer count for
    /// them); another list still may. Not an allow entry.
    Passthru,
}

/// What a list says about one name: how to answer it, and which names
/// the entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: EntryKind,
    pub scope: Scope,
}

impl Rule {
    /// A plain list's entry: block the name and everything below it.
    pub const BLOCK: Self = Self {
        kind: EntryKind::Block,
        scope: Scope::Subtree,
    };
}

/// One name found on a line, not yet normalised (case, trailing dot, IDN,
/// validity are checked by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name as written, without a leading "*." (see `wildcard`), trailing
    /// dot possibly present. Borrowed from the line, except an RPZ owner
    /// under a `$ORIGIN` below the zone apex, which must be completed.
    pub name: Cow<'a, str>,
    /// The line wrote "*.name": the names below `name` in RPZ, the name
    /// and its subdomains elsewhere (see [`Format::scope`]).
    pub wildcard: bool,
    pub kind: EntryKind,
}

/// One network found on a line: an `ips` line or an RPZ `rpz-ip` trigger,
/// with what the list says about the addresses in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetEntry {
    pub net: Net,
    pub kind: EntryKind,
}

/// What a line amounts to, apart from the entries it emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The line emitted one or more entries.
    Entries,
    /// Blank line, comment, header, directive or record that carries no
    /// trigger (SOA, NS, $TTL, hosts "localhost" lines...).
    Skip,
    /// Valid syntax of the format that embargo does not implement (adblock
    /// exception/cosmetic/regex rules or unknown modifiers, RPZ
    /// rpz-nsdname / rpz-client-ip / rpz-nsip triggers, RPZ local-data
    /// (A/AAAA/TXT...) or rpz-drop / rpz-tcp-only actions...). The
    /// &'static str says what, e.g. "adblock exception rule".
    Unsupported(&'static str),
    /// Not valid in this format; the String says what is wrong, for a
    /// "file:line: ..." warning (allocation is fine here, it is the rare path).
    Invalid(String),
}

/// Parses the lines of one file, in order.
///
/// Only RPZ needs state across lines, but every format goes through the same
/// type so the loader does not care which one it reads.
#[derive(Debug)]
pub struct Parser {
    format: Format,
    rpz: RpzState,
}

impl Parser {
    /// Parses one line (without its line terminator; may end in '\r', which
    /// must be ignored). Calls `emit` for each entry found.
    pub fn parse_line<'a>(&mut self, line: &'a str, emit: &mut dyn FnMut(Entry<'a>)) -> Outcome {
        self.parse_line_with_nets(line, emit, &mut |_| {})
    }

    /// [`Self::parse_line`], handing the networks an `ips` line or an RPZ
    /// `rpz-ip` trigger names to `nets` (`Outcome::Entries` when either
    /// callback was called).
    pub fn parse_line_with_nets<'a>(
        &mut self,
        line: &'a str,
        emit: &mut dyn FnMut(Entry<'a>),
        nets: &mut dyn FnMut(NetEntry),
    ) -> Outcome {
        let line = line.strip_suffix('\r').unwrap_or(line);
        // Editors on Windows put a BOM before the first line; it would
        // otherwise become part of the first name.
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        match self.format {
            Format::Domains => parse_domains(line, emit),
            Format::Hosts => parse_hosts(line, emit),
            Format::Adblock => parse_adblock(line, emit),
            Format::Rpz => self.rpz.parse(line, emit, nets),
            Format::Ips => parse_ips(line, nets),
            Format::OfacSdn => Outcome::Unsupported("OFAC SDN files are read whole, not by line"),
        }
    }
}

/// Splits an explicit `*.` wildcard off a name.
pub(super) fn split_wildcard(token: &str) -> (&str, bool) {
    match token.strip_prefix("*.") {
        Some(name) => (name, true),
        None => (token, false),
    }
}

pub(super) fn block(token: &str) -> Entry<'_> {
    // A bare "*." names nothing: emitted whole, it is refused by the caller
    // as the name it is, never as an empty one (found by fuzzing).
    let (name, wildcard) = match split_wildcard(token) {
        ("", _) => (token, false),
        split => split,
    };
    Entry {
        name: Cow::Borrowed(name),
        wildcard,
        kind: EntryKind::Block,
    }
}

/// Whether a line whose first token is not an address reads as an `ips`
/// line: a lone network (`192.0.2.0/24`, host bits or not) and nothing
/// after it.
fn lone_network<'a>(first: &str, rest: &mut impl Iterator<Item = &'a str>) -> bool {
    first.split_once('/').is_some_and(|(addr, _)| is_ip(addr)) && rest.next().is_none()
}

pub(super) fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Builds a byte-class table at compile time: the hot loops look a byte up
/// instead of running a chain of comparisons on it.
pub(super) const fn byte_class(members: &[u8], non_ascii: bool) -> [bool; 256] {
    let mut table = [non_ascii; 256];
    let mut b = 0;
    while b < 128 {
        table[b] = false;
        b += 1;
    }
    let mut i = 0;
    while i < members.len() {
        table[members[i] as usize] = true;
        i += 1;
    }
    table
}

/// Bytes that may appear in a host name as lists write it; non-ASCII bytes
/// are let through for IDN names, which the caller converts.
pub(super) const HOST_BYTES: [bool; 256] = byte_class(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._",
    true,
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod test_support {
    //! What every parser's tests use: feed lines, compare outcomes.
    use super::*;

    /// An RPZ zone header: comments, $TTL, $ORIGIN, a multi-line SOA, an NS, then one trigger.
    pub(crate) const SOA_ZONE: [&str; 10] = [
        "; RPZ test zone",
        "$TTL 300",
        "$ORIGIN rpz.test.",
        "@ 3600 IN SOA ns.rpz.test. hostmaster.rpz.test. (",
        "        2024010101 ; serial",
        "        3600 600 ; refresh, retry",
        "        86400 300 ) ; expire, minimum",
        "  IN NS ns.rpz.test.",
        "",
        "bad.example CNAME .",
    ];

    /// Parses `lines` with one parser, returning each line's outcome and entries.
    pub(super) fn parse_all<'a>(
        format: Format,
        lines: &[&'a str],
    ) -> Vec<(Outcome, Vec<Entry<'a>>)> {
        let mut parser = format.parser();
        lines
            .iter()
            .map(|line| {
                let mut entries = Vec::new();
                let outcome = parser.parse_line(line, &mut |e| entries.push(e));
                (outcome, entries)
            })
            .collect()
    }

    pub(super) fn one(format: Format, line: &str) -> (Outcome, Vec<Entry<'_>>) {
        parse_all(format, &[line]).pop().unwrap()
    }

    pub(super) fn entry(name: &str, wildcard: bool, kind: EntryKind) -> Entry<'_> {
        Entry {
            name: Cow::Borrowed(name),
            wildcard,
            kind,
        }
    }

    pub(super) fn blocks(names: &[&'static str]) -> (Outcome, Vec<Entry<'static>>) {
        (
            Outcome::Entries,
            names
                .iter()
                .map(|n| entry(n, false, EntryKind::Block))
                .collect(),
        )
    }

    pub(super) fn skip() -> (Outcome, Vec<Entry<'static>>) {
        (Outcome::Skip, Vec::new())
    }

    pub(super) fn unsupported(what: &'static str) -> (Outcome, Vec<Entry<'static>>) {
        (Outcome::Unsupported(what), Vec::new())
    }

    pub(super) fn is_invalid(result: &(Outcome, Vec<Entry<'_>>)) -> bool {
        matches!(result.0, Outcome::Invalid(_)) && result.1.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::hosts::is_hosts_boilerplate;
    use super::rpz::RPZ_SPECIAL_TRIGGERS;
    use super::test_support::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn as_str_names() {
        assert_eq!(Format::Domains.as_str(), "domains");
        assert_eq!(Format::Hosts.as_str(), "hosts");
        assert_eq!(Format::Adblock.as_str(), "adblock");
        assert_eq!(Format::Rpz.as_str(), "rpz");
        assert_eq!(Format::Ips.as_str(), "ips");
        assert_eq!(Format::parse("ips"), Some(Format::Ips));
    }

    /// Issue 20: a file of lone addresses and networks is an `ips` list;
    /// one domain or hosts line makes it something else.
    #[test]
    fn r20_detects_ip_lists() {
        assert_eq!(
            Format::detect(
                "; Spamhaus DROP\n1.10.16.0/20 ; SBL256894\n2.56.192.0/22 ; SBL459831\n"
            ),
            Format::Ips
        );
        assert_eq!(
            Format::detect("# Feodo\n192.0.2.7\n2001:db8::1\n"),
            Format::Ips
        );
        assert_eq!(Format::detect("192.0.2.0/24\na.example\n"), Format::Domains);
        assert_eq!(
            Format::detect("192.0.2.7\n0.0.0.0 a.example\n"),
            Format::Hosts
        );
        assert_eq!(Format::detect("# only comments\n"), Format::Domains);
    }

    // ---- detect ----

    #[test]
    fn detect_each_format() {
        assert_eq!(
            Format::detect("# my list\nexample.com\nads.example.net\n"),
            Format::Domains
        );
        assert_eq!(Format::detect(""), Format::Domains);
        assert_eq!(
            Format::detect("*.example.com\r\nexample.net\r\n"),
            Format::Domains
        );
        assert_eq!(
            Format::detect("# hosts\n127.0.0.1 localhost\n::1 localhost\n0.0.0.0 ads.com\n"),
            Format::Hosts
        );
        assert_eq!(
            Format::detect("0.0.0.0 cname\n0.0.0.0 soa\n"),
            Format::Hosts
        );
        assert_eq!(Format::detect("0.0.0.0 a.com # CNAME x\n"), Format::Hosts);
        assert_eq!(
            Format::detect("[Adblock Plus 2.0]\n||ads.com^\n"),
            Format::Adblock
        );
        assert_eq!(Format::detect("! Title: x\nads.com\n"), Format::Adblock);
        assert_eq!(
            Format::detect("a.com\nb.com\n@@||c.com^\n"),
            Format::Adblock
        );
        assert_eq!(Format::detect("||ads.com^$important\n"), Format::Adblock);
        assert_eq!(Format::detect(&SOA_ZONE.join("\n")), Format::Rpz);
        assert_eq!(Format::detect("; zone\n$ttl 300\n"), Format::Rpz);
        assert_eq!(Format::detect("@ IN SOA ns. h. 1 2 3 4 5\n"), Format::Rpz);
        assert_eq!(
            Format::detect("a.com 300 IN CNAME .\nb.com CNAME .\n"),
            Format::Rpz
        );
        assert_eq!(Format::detect("\u{feff}$ORIGIN rpz.test.\n"), Format::Rpz);
    }

    #[test]
    fn detect_ignores_a_cut_last_line_and_looks_at_200_lines() {
        assert_eq!(Format::detect("a.com\nb.com\n0.0.0.0 c"), Format::Domains);
        assert_eq!(Format::detect("0.0.0.0 c.com"), Format::Hosts);
        let mut late = "a.com\n".repeat(200);
        late.push_str("||b.com^\n");
        assert_eq!(Format::detect(&late), Format::Domains);
        let mut early = "a.com\n".repeat(199);
        early.push_str("||b.com^\n");
        assert_eq!(Format::detect(&early), Format::Adblock);
        let mut commented = "# x\n\n; y\n".repeat(300);
        commented.push_str("0.0.0.0 b.com\n");
        assert_eq!(Format::detect(&commented), Format::Hosts);
    }

    /// Issue 21 (4): one adblock rule among a hosts file's lines does not
    /// make it adblock; the format most recognised lines have wins.
    #[test]
    fn r21_detect_takes_the_majority_of_recognised_lines() {
        let mut hosts = "0.0.0.0 a.example\n".repeat(50);
        hosts.push_str("||adblock-style.test^\n");
        hosts.push_str(&"0.0.0.0 b.example\n".repeat(50));
        assert_eq!(Format::detect(&hosts), Format::Hosts);
        let mut adblock = "||a.example^\n".repeat(10);
        adblock.push_str("0.0.0.0 b.example\n");
        assert_eq!(Format::detect(&adblock), Format::Adblock);
        // Plain names are read by both: they do not vote.
        let mut plain = "a.example\n".repeat(100);
        plain.push_str("0.0.0.0 b.example\n0.0.0.0 c.example\n||d.example^\n");
        assert_eq!(Format::detect(&plain), Format::Hosts);
    }

    /// Found by fuzzing (`fuzz/regressions/domains/`): "*." emitted an empty name.
    #[test]
    fn fuzz_bare_wildcard_is_emitted_whole_not_as_an_empty_name() {
        assert_eq!(
            one(Format::Domains, "*."),
            (Outcome::Entries, vec![entry("*.", false, EntryKind::Block)])
        );
        assert_eq!(
            one(Format::Hosts, "0.0.0.0 a.example *."),
            (
                Outcome::Entries,
                vec![
                    entry("a.example", false, EntryKind::Block),
                    entry("*.", false, EntryKind::Block)
                ]
            )
        );
        assert_eq!(
            one(Format::Domains, "*.a"),
            (Outcome::Entries, vec![entry("a", true, EntryKind::Block)])
        );
    }

    // ---- properties ----

    const FORMATS: [Format; 5] = [
        Format::Domains,
        Format::Hosts,
        Format::Adblock,
        Format::Rpz,
        Format::Ips,
    ];

    /// Lines built from the fragments the parsers branch on, so that random
    /// input reaches the deep RPZ and adblock paths, not just "Invalid".
    fn tricky_line() -> impl Strategy<Value = String> {
        let fragment = prop::sample::select(vec![
            " ",
            "\t",
            "\r",
            "(",
            ")",
            ";",
            "\"",
            "\\",
            "#",
            "##",
            "#@#",
            "!",
            "$",
            "$$",
            "|",
            "||",
            "^",
            "@@",
            "@",
            "*.",
            "*",
            ".",
            "/",
            ":",
            "%",
            "a.com",
            "rpz.test.",
            "$ORIGIN",
            "$TTL",
            "$INCLUDE",
            "SOA",
            "NS",
            "CNAME",
            "IN",
            "300",
            "1h",
            "rpz-passthru.",
            "rpz-ip",
            "A",
            "0.0.0.0",
            "::1",
            "192.0.2.0/24",
            "32.1.2.0.192.rpz-ip",
            "48.zz.101.db8.2001.rpz-ip",
            "localhost",
            "important",
            ",",
            "é",
            "\u{feff}",
        ]);
        prop::collection::vec(fragment, 0..12).prop_map(|parts| parts.concat())
    }

    fn domain() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-z0-9-]{1,20}", 1..=4)
            .prop_map(|labels| labels.join("."))
            .prop_filter("boilerplate or special RPZ trigger", |d| {
                !is_hosts_boilerplate(d)
                    && !is_ip(d)
                    && !RPZ_SPECIAL_TRIGGERS
                        .iter()
                        .any(|(label, _)| d.rsplit('.').next() == Some(label))
            })
    }

    /// The entries of the last line, after feeding `lines` in order.
    fn last_line_entries(
        format: Format,
        lines: &[&str],
    ) -> (Outcome, Vec<(String, bool, EntryKind)>) {
        let (outcome, entries) = parse_all(format, lines).pop().unwrap();
        let entries = entries
            .into_iter()
            .map(|e| (e.name.into_owned(), e.wildcard, e.kind))
            .collect();
        (outcome, entries)
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_lines(
            lines in prop::collection::vec(prop_oneof![".{0,60}", tricky_line()], 0..40)
        ) {
            for format in FORMATS {
                let mut parser = format.parser();
                for line in &lines {
                    let mut count = 0usize;
                    let mut nets = 0usize;
                    let outcome = parser.parse_line_with_nets(line, &mut |e| {
                        count += 1;
                        // Entries are slices of the line, never copies, but
                        // for an RPZ owner completed by a $ORIGIN below the apex.
                        let range = line.as_bytes().as_ptr_range();
                        assert!(!e.name.is_empty(), "empty name from {line:?}");
                        if let Cow::Borrowed(name) = e.name {
                            assert!(range.contains(&name.as_ptr()));
                        } else {
                            assert_eq!(format, Format::Rpz);
                        }
                    }, &mut |_| nets += 1);
                    prop_assert_eq!(count + nets > 0, outcome == Outcome::Entries);
                }
            }
            let _ = Format::detect(&lines.join("\n"));
        }

        #[test]
        fn canonical_lines_give_one_entry(d in domain(), wildcard in any::<bool>()) {
            let written = if wildcard { format!("*.{d}") } else { d.clone() };
            let expected = |kind| (Outcome::Entries, vec![(d.clone(), wildcard, kind)]);
            prop_assert_eq!(last_line_entries(Format::Domains, &[&written]), expected(EntryKind::Block));
            prop_assert_eq!(
                last_line_entries(Format::Hosts, &[&format!("0.0.0.0 {written}")]),
                expected(EntryKind::Block)
            );
            prop_assert_eq!(
                last_line_entries(Format::Adblock, &[&format!("||{written}^")]),
                expected(EntryKind::Block)
            );
            for (target, kind) in [
                (".", EntryKind::Nxdomain),
                ("*.", EntryKind::Nodata),
                ("rpz-passthru.", EntryKind::Passthru),
            ] {
                let relative = format!("{written} CNAME {target}");
                let absolute = format!("{written}.rpz.test. CNAME {target}");
                for line in [&relative, &absolute] {
                    prop_assert_eq!(
                        last_line_entries(Format::Rpz, &["$ORIGIN rpz.test.", line]),
                        expected(kind)
                    );
                }
            }
            // Outside the zone, the name keeps its trailing dot.
            prop_assert_eq!(
                last_line_entries(Format::Rpz, &["$ORIGIN rpz.test.", &format!("{written}. CNAME .")]),
                (Outcome::Entries, vec![(format!("{d}."), wildcard, EntryKind::Nxdomain)])
            );
        }

        #[test]
        fn detect_recognises_generated_lists(ds in prop::collection::vec(domain(), 1..20)) {
            let domains: String = ds.iter().map(|d| format!("{d}\n")).collect();
            let hosts: String = ds.iter().map(|d| format!("0.0.0.0 {d}\n")).collect();
            let adblock: String = ds.iter().map(|d| format!("||{d}^\n")).collect();
            let rpz: String = ds.iter().map(|d| format!("{d} CNAME .\n")).collect();
            prop_assert_eq!(Format::detect(&domains), Format::Domains);
            prop_assert_eq!(Format::detect(&hosts), Format::Hosts);
            prop_assert_eq!(Format::detect(&adblock), Format::Adblock);
            prop_assert_eq!(Format::detect(&rpz), Format::Rpz);
        }
    }
}
