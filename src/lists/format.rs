//! Line parsers for the four blocklist syntaxes embargo reads.
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
//! # Domains
//! One name per line. `#` starts a comment, on its own line or after
//! whitespace (a `#` glued to a name is left in the name, which the caller then
//! rejects). `*.example.com` is an explicit wildcard. More than one name on a
//! line is invalid: such a line is most likely a hosts line in the wrong list,
//! and guessing would block the IP address as a name.
//!
//! # Hosts
//! `IP name [name...] [# comment]`, as in `/etc/hosts`. Any IPv4 or IPv6
//! address is accepted (IPv6 with a `%zone`, too), since lists disagree on
//! 0.0.0.0, 127.0.0.1, `::` and `::1`. Like glibc, a `#` anywhere starts a
//! comment. The boilerplate names every hosts file carries (`localhost`,
//! `broadcasthost`, `ip6-*`...) are skipped: blocking them would break the
//! machine's own loopback resolution.
//!
//! # Adblock
//! Only the subset of Adblock Plus / uBlock / AdGuard syntax that means
//! "block this domain": `||example.com^`, optionally with `|` after the `^`,
//! without the `^`, with `*.` before the domain, or with the single modifier
//! `$important` (which only matters for rule precedence inside a browser).
//! A bare domain with at least two labels is accepted too, as AdGuard DNS
//! lists mix them in; a single label is not, because in adblock syntax it is a
//! substring pattern (`ad` would otherwise block the `.ad` TLD). Comments
//! (`!`, `#`) and `[Adblock Plus 2.0]` headers are skipped. Exception (`@@`),
//! cosmetic (`##`, `#@#`, `#$#`, `#?#`, `$$`...), regex (`/.../`), URL (`/path`,
//! `|http://`, `:port`) rules and any other modifier are unsupported: a DNS
//! server sees neither pages nor URLs, so it cannot honour them.
//!
//! # RPZ
//! A Response Policy Zone in master-file syntax (RFC 1035 section 5, with the
//! RPZ conventions of draft-vixie-dnsop-dns-rpz). `;` comments (outside quoted
//! strings), `$ORIGIN`, `$TTL`, omitted owners (line starting with whitespace),
//! `@`, TTLs (`3600`, `1h30m`) and classes in either order, and parentheses
//! spanning lines are understood. The zone apex is the owner of the SOA
//! record, or, before one is seen, the current `$ORIGIN`; records at the apex
//! (SOA, NS...) carry no trigger. The trigger of any other owner is its name
//! relative to the apex. Supported policies are the QNAME triggers with
//! `CNAME .` (NXDOMAIN), `CNAME *.` (NODATA) and `CNAME rpz-passthru.` (or the
//! legacy CNAME to the trigger name itself; both allow the name).
//! Unsupported: `rpz-ip`, `rpz-nsdname`, `rpz-nsip` and `rpz-client-ip`
//! triggers, `rpz-drop.` and `rpz-tcp-only.` actions, CNAME redirects, local
//! data (A, AAAA, TXT...), `$INCLUDE`/`$GENERATE`, a `*` covering the whole
//! zone, a record split over lines before its action, and owners relative to a
//! `$ORIGIN` below or outside the apex (their trigger is not a slice of the
//! line, and the borrowed-slice interface is what keeps parsing allocation
//! free; dumps with absolute names, as `dig AXFR` writes them, are fine).

use std::net::IpAddr;

/// The syntax of a list file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Domains,
    Hosts,
    Adblock,
    Rpz,
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
    /// show a `||` rule; the strongest evidence wins (RPZ, then adblock, then
    /// hosts), and a list with no evidence at all is a plain domain list.
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
        let mut adblock = false;
        let mut hosts = false;
        let mut looked = 0;
        for line in sample.lines() {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('!') {
                adblock = true;
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
                adblock = true;
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
                hosts |= tokens.next().is_some();
                continue;
            }
            if tokens
                .take(3)
                .any(|t| t.eq_ignore_ascii_case("SOA") || t.eq_ignore_ascii_case("CNAME"))
            {
                return Self::Rpz;
            }
        }
        if adblock {
            Self::Adblock
        } else if hosts {
            Self::Hosts
        } else {
            Self::Domains
        }
    }

    /// "domains" | "hosts" | "adblock" | "rpz"
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Domains => "domains",
            Self::Hosts => "hosts",
            Self::Adblock => "adblock",
            Self::Rpz => "rpz",
            Self::OfacSdn => "ofac-sdn",
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
    /// RPZ `CNAME rpz-passthru.`: never block this name (an allow entry).
    Passthru,
}

/// One name found on a line, not yet normalised (case, trailing dot, IDN,
/// validity are checked by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name as written, without a leading "*." (see `wildcard`), trailing
    /// dot possibly present.
    pub name: &'a str,
    /// The line wrote "*.name" (explicit wildcard: the name and all its
    /// subdomains).
    pub wildcard: bool,
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
    /// exception/cosmetic/regex rules or unknown modifiers, RPZ rpz-ip /
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
        let line = line.strip_suffix('\r').unwrap_or(line);
        // Editors on Windows put a BOM before the first line; it would
        // otherwise become part of the first name.
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        match self.format {
            Format::Domains => parse_domains(line, emit),
            Format::Hosts => parse_hosts(line, emit),
            Format::Adblock => parse_adblock(line, emit),
            Format::Rpz => self.rpz.parse(line, emit),
            Format::OfacSdn => Outcome::Unsupported("OFAC SDN files are read whole, not by line"),
        }
    }
}

/// Splits an explicit `*.` wildcard off a name.
fn split_wildcard(token: &str) -> (&str, bool) {
    match token.strip_prefix("*.") {
        Some(name) => (name, true),
        None => (token, false),
    }
}

fn block(token: &str) -> Entry<'_> {
    let (name, wildcard) = split_wildcard(token);
    Entry {
        name,
        wildcard,
        kind: EntryKind::Block,
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn parse_domains<'a>(line: &'a str, emit: &mut dyn FnMut(Entry<'a>)) -> Outcome {
    let mut tokens = line
        .split_ascii_whitespace()
        .take_while(|t| !t.starts_with('#'));
    let Some(token) = tokens.next() else {
        return Outcome::Skip;
    };
    if tokens.next().is_some() {
        return Outcome::Invalid("expected one domain per line".to_owned());
    }
    emit(block(token));
    Outcome::Entries
}

/// Names that every stock hosts file maps to loopback; blocking them would
/// only break the host running embargo.
const HOSTS_BOILERPLATE: [&str; 12] = [
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

fn is_hosts_boilerplate(name: &str) -> bool {
    // The first-byte test keeps the common path to one comparison.
    matches!(
        name.as_bytes().first(),
        Some(b'l' | b'L' | b'b' | b'B' | b'i' | b'I' | b'0')
    ) && HOSTS_BOILERPLATE
        .iter()
        .any(|b| name.eq_ignore_ascii_case(b))
}

fn is_ip(token: &str) -> bool {
    if matches!(token, "0.0.0.0" | "127.0.0.1" | "::" | "::1") {
        return true;
    }
    let addr = if token.contains(':') {
        token.split_once('%').map_or(token, |(addr, _zone)| addr)
    } else {
        token
    };
    addr.parse::<IpAddr>().is_ok()
}

fn parse_hosts<'a>(line: &'a str, emit: &mut dyn FnMut(Entry<'a>)) -> Outcome {
    let content = line
        .split_once('#')
        .map_or(line, |(content, _comment)| content);
    let mut tokens = content.split_ascii_whitespace();
    let Some(ip) = tokens.next() else {
        return Outcome::Skip;
    };
    if !is_ip(ip) {
        return Outcome::Invalid("expected an IP address before the names".to_owned());
    }
    let mut names = 0usize;
    let mut emitted = 0usize;
    for name in tokens {
        names += 1;
        if !is_hosts_boilerplate(name) {
            emit(block(name));
            emitted += 1;
        }
    }
    if names == 0 {
        Outcome::Invalid("expected names after the IP address".to_owned())
    } else if emitted == 0 {
        Outcome::Skip
    } else {
        Outcome::Entries
    }
}

const ADBLOCK_EXCEPTION: &str = "adblock exception rule";
const ADBLOCK_COSMETIC: &str = "adblock cosmetic rule";
const ADBLOCK_REGEX: &str = "adblock regex rule";
const ADBLOCK_MODIFIERS: &str = "adblock rule with modifiers";
const ADBLOCK_URL: &str = "adblock URL rule";
const ADBLOCK_OTHER: &str = "adblock rule";

fn parse_adblock<'a>(line: &'a str, emit: &mut dyn FnMut(Entry<'a>)) -> Outcome {
    let line = line.trim_ascii();
    if line.is_empty() || line.starts_with('!') || (line.starts_with('[') && line.ends_with(']')) {
        return Outcome::Skip;
    }
    // The common case first: nearly every line of a DNS adblock list is `||d^`.
    if let Some(rule) = line.strip_prefix("||") {
        return adblock_domain_rule(rule, true, emit);
    }
    if line.starts_with("@@") {
        return Outcome::Unsupported(ADBLOCK_EXCEPTION);
    }
    if line.starts_with('#') {
        // "##.ad" is a generic cosmetic rule, "# text" a comment.
        return if cosmetic_marker_at(line.as_bytes(), 0) {
            Outcome::Unsupported(ADBLOCK_COSMETIC)
        } else {
            Outcome::Skip
        };
    }
    if is_cosmetic(line) {
        return Outcome::Unsupported(ADBLOCK_COSMETIC);
    }
    if line.starts_with('/') {
        // "/ads/" and "/ads/$third-party" are regexes, "/ads/banner.js" a path.
        let regex =
            line.len() > 1 && (line.ends_with('/') || line.rfind("/$").is_some_and(|i| i > 0));
        return Outcome::Unsupported(if regex { ADBLOCK_REGEX } else { ADBLOCK_URL });
    }
    if line.starts_with('|') || line.contains("://") {
        return Outcome::Unsupported(ADBLOCK_URL);
    }
    adblock_domain_rule(line, false, emit)
}

/// Whether an element-hiding / scriptlet / CSS separator (`##`, `#@#`, `#$#`,
/// `#?#`, `#%#`, `#@$?#`...) starts at `at`.
fn cosmetic_marker_at(bytes: &[u8], at: usize) -> bool {
    if bytes.get(at) != Some(&b'#') {
        return false;
    }
    let mut i = at + 1;
    for optional in [b'@', b'$', b'?', b'%'] {
        if bytes.get(i) == Some(&optional) {
            i += 1;
        }
    }
    bytes.get(i) == Some(&b'#')
}

fn is_cosmetic(line: &str) -> bool {
    let bytes = line.as_bytes();
    line.contains("$$")
        || line.contains("$@$")
        || bytes
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'#' && cosmetic_marker_at(bytes, i))
}

/// `rule` is what follows `||` (`anchored`) or a whole bare line.
fn adblock_domain_rule<'a>(
    rule: &'a str,
    anchored: bool,
    emit: &mut dyn FnMut(Entry<'a>),
) -> Outcome {
    let (pattern, modifiers) = match rule.split_once('$') {
        Some((pattern, modifiers)) => (pattern, Some(modifiers)),
        None => (rule, None),
    };
    let host = if anchored {
        pattern
            .strip_suffix("^|")
            .or_else(|| pattern.strip_suffix('^'))
            .or_else(|| pattern.strip_suffix('|'))
            .unwrap_or(pattern)
    } else {
        pattern
    };
    let (name, _) = split_wildcard(host);
    if name.is_empty() || !name.bytes().all(|b| HOST_BYTES[usize::from(b)]) {
        // Rare path: find out what the rule is instead.
        return if pattern.contains(['/', ':', '?']) {
            Outcome::Unsupported(ADBLOCK_URL)
        } else if name.is_empty() && anchored {
            Outcome::Invalid("no domain after \"||\"".to_owned())
        } else {
            Outcome::Unsupported(ADBLOCK_OTHER)
        };
    }
    if !anchored && !name.trim_end_matches('.').contains('.') {
        return Outcome::Unsupported(ADBLOCK_OTHER);
    }
    if let Some(modifiers) = modifiers {
        for modifier in modifiers.split(',') {
            let modifier = modifier.trim_ascii();
            if modifier.is_empty() {
                return Outcome::Invalid("empty modifier after '$'".to_owned());
            }
            if !modifier.eq_ignore_ascii_case("important") {
                return Outcome::Unsupported(ADBLOCK_MODIFIERS);
            }
        }
    }
    emit(block(host));
    Outcome::Entries
}

const RPZ_SUB_ORIGIN: &str = "RPZ owner relative to a $ORIGIN other than the zone apex";
const RPZ_WHOLE_ZONE: &str = "RPZ wildcard covering every name";
const RPZ_SPLIT: &str = "RPZ record split across lines before its action";
const RPZ_LOCAL_DATA: &str = "RPZ local data";
const RPZ_REDIRECT: &str = "RPZ CNAME redirect";

/// How many lines a parenthesised record may span. Real ones (an SOA, a long
/// TXT) take a handful; without a limit, one stray '(' would silently swallow
/// the rest of the file.
const MAX_OPEN_LINES: u32 = 64;

/// Trigger types announced by the last label of the trigger name.
const RPZ_SPECIAL_TRIGGERS: [(&str, &str); 4] = [
    ("rpz-ip", "RPZ rpz-ip trigger"),
    ("rpz-nsdname", "RPZ rpz-nsdname trigger"),
    ("rpz-client-ip", "RPZ rpz-client-ip trigger"),
    ("rpz-nsip", "RPZ rpz-nsip trigger"),
];

/// What the previous owner was, which is all that a line with an omitted
/// owner needs: such a line can never emit an entry (a CNAME cannot share its
/// owner with other records), so the name itself need not be kept.
#[derive(Debug, Clone, Copy, Default)]
enum PrevOwner {
    #[default]
    None,
    Apex,
    Trigger,
    Unsupported(&'static str),
}

#[derive(Debug, Default)]
struct RpzState {
    /// Current `$ORIGIN`, absolute (with its trailing dot).
    origin: Option<String>,
    /// Zone apex, absolute: the name triggers are relative to.
    apex: Option<String>,
    /// Once the SOA has fixed the apex, a later `$ORIGIN` no longer moves it.
    soa_seen: bool,
    /// `origin` and `apex` are both known and differ; cached because every
    /// relative owner asks.
    sub_origin: bool,
    /// Open parentheses carried over from previous lines.
    depth: u32,
    /// Lines read since `depth` became non-zero.
    open_lines: u32,
    prev: PrevOwner,
}

/// What an owner name means for the policy.
enum Owner<'a> {
    Apex,
    Trigger {
        name: &'a str,
        wildcard: bool,
    },
    /// Omitted owner continuing a trigger of an earlier line.
    SameTrigger,
    Unsupported(&'static str),
}

/// Builds a byte-class table at compile time: the hot loops look a byte up
/// instead of running a chain of comparisons on it.
const fn byte_class(members: &[u8], non_ascii: bool) -> [bool; 256] {
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
const HOST_BYTES: [bool; 256] = byte_class(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._",
    true,
);
/// Bytes that end an unquoted master-file token or need a closer look.
const RPZ_SPECIAL: [bool; 256] = byte_class(b" \t\n\r\x0c();\"\\", false);

/// Master-file tokens of one line, read in a single pass that also drops the
/// `;` comment and counts parentheses: parentheses only group lines, so they
/// separate tokens like whitespace does, and their balance is only final
/// once the line has been read to its end (see [`Tokens::drain`]).
struct Tokens<'a> {
    rest: &'a str,
    opens: u32,
    closes: u32,
}

impl<'a> Tokens<'a> {
    fn new(line: &'a str) -> Self {
        Self {
            rest: line,
            opens: 0,
            closes: 0,
        }
    }

    /// Reads the line to its end, for the parenthesis counts.
    fn drain(&mut self) {
        while self.next().is_some() {}
    }

    /// Whether the line (read to its end) opens more parentheses than it closes.
    fn continues(&self) -> bool {
        self.opens > self.closes
    }

    /// Whether the line (read to its end) closes a parenthesis it did not open.
    fn overcloses(&self) -> bool {
        self.closes > self.opens
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.rest.as_bytes();
        let mut i = 0;
        loop {
            match bytes.get(i) {
                Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') => i += 1,
                Some(b'(') => {
                    self.opens = self.opens.saturating_add(1);
                    i += 1;
                }
                Some(b')') => {
                    self.closes = self.closes.saturating_add(1);
                    i += 1;
                }
                // End of line, or a comment running to it.
                Some(b';') | None => {
                    self.rest = "";
                    return None;
                }
                Some(_) => break,
            }
        }
        let start = i;
        let mut quoted = false;
        while let Some(&b) = bytes.get(i) {
            if !RPZ_SPECIAL[usize::from(b)] {
                i += 1;
                continue;
            }
            match b {
                // An escaped byte never ends a token ("\;", "\ ", "\"").
                b'\\' => i += 2,
                b'"' => {
                    quoted = !quoted;
                    i += 1;
                }
                _ if quoted => i += 1,
                _ => break,
            }
        }
        // `i` stops on an ASCII byte or past the end, so both slices are at
        // char boundaries; `get` merely spares an index panic.
        let end = i.min(bytes.len());
        let token = self.rest.get(start..end)?;
        self.rest = self.rest.get(end..).unwrap_or("");
        Some(token)
    }
}

/// A TTL as BIND writes them: `3600`, `1h`, `1h30m`, `2W`.
fn is_ttl(token: &str) -> bool {
    token.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && token.bytes().all(|b| {
            b.is_ascii_digit() || matches!(b.to_ascii_lowercase(), b's' | b'm' | b'h' | b'd' | b'w')
        })
}

fn is_class(token: &str) -> bool {
    ["IN", "CH", "CS", "HS", "ANY"]
        .iter()
        .any(|c| token.eq_ignore_ascii_case(c))
}

fn is_type(token: &str) -> bool {
    token
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `owner` relative to `apex`, if it is strictly below it (both absolute).
fn strip_apex<'a>(owner: &'a str, apex: &str) -> Option<&'a str> {
    if apex == "." {
        return owner.strip_suffix('.').filter(|s| !s.is_empty());
    }
    let cut = owner.len().checked_sub(apex.len())?;
    let (head, tail) = (owner.as_bytes().get(..cut)?, owner.as_bytes().get(cut..)?);
    if head.len() >= 2 && head.ends_with(b".") && tail.eq_ignore_ascii_case(apex.as_bytes()) {
        owner.get(..cut - 1)
    } else {
        None
    }
}

/// Makes `name` absolute the master-file way: relative names are below `origin`.
fn absolute(name: &str, origin: Option<&str>) -> Option<String> {
    if name == "@" {
        return origin.map(str::to_owned);
    }
    if name.ends_with('.') {
        return Some(name.to_owned());
    }
    Some(match origin {
        Some(".") | None => format!("{name}."),
        Some(origin) => format!("{name}.{origin}"),
    })
}

impl RpzState {
    fn parse<'a>(&mut self, line: &'a str, emit: &mut dyn FnMut(Entry<'a>)) -> Outcome {
        let mut tokens = Tokens::new(line);
        if self.depth > 0 {
            // Inside a multi-line record (an SOA in practice): its action, if
            // any, was on its first line.
            tokens.drain();
            let open = self.depth.saturating_add(tokens.opens);
            self.depth = open.saturating_sub(tokens.closes);
            self.open_lines += 1;
            if tokens.closes > open {
                return Outcome::Invalid("')' without a matching '('".to_owned());
            }
            if self.depth > 0 && self.open_lines >= MAX_OPEN_LINES {
                self.depth = 0;
                return Outcome::Invalid(format!(
                    "'(' still open after {MAX_OPEN_LINES} lines; reading records again from the next line"
                ));
            }
            return Outcome::Skip;
        }
        let outcome = self.record(line, &mut tokens, emit);
        tokens.drain();
        if tokens.overcloses() {
            // `record` checked this itself before emitting anything.
            self.depth = 0;
            return Outcome::Invalid("')' without a matching '('".to_owned());
        }
        self.depth = tokens.opens - tokens.closes;
        self.open_lines = 0;
        outcome
    }

    /// Parses the line at parenthesis depth 0; `parse` settles the depth.
    fn record<'a>(
        &mut self,
        line: &'a str,
        tokens: &mut Tokens<'a>,
        emit: &mut dyn FnMut(Entry<'a>),
    ) -> Outcome {
        let Some(first) = tokens.next() else {
            return Outcome::Skip;
        };
        let (owner, mut pending) = if line.starts_with([' ', '\t']) {
            (None, Some(first))
        } else if first.starts_with('$') {
            return self.directive(first, tokens);
        } else {
            (Some(first), None)
        };

        let mut rtype = None;
        for _ in 0..3 {
            match pending.take().or_else(|| tokens.next()) {
                Some(t) if is_ttl(t) || is_class(t) => {}
                other => {
                    rtype = other;
                    break;
                }
            }
        }
        let Some(rtype) = rtype else {
            return if tokens.continues() {
                Outcome::Unsupported(RPZ_SPLIT)
            } else {
                Outcome::Invalid("expected a record type after the owner name".to_owned())
            };
        };
        if !is_type(rtype) {
            return Outcome::Invalid(format!("expected a record type, found {rtype:?}"));
        }

        if rtype.eq_ignore_ascii_case("SOA") {
            // The SOA owner is the apex by definition, whatever $ORIGIN said.
            if let Some(apex) = owner.and_then(|o| absolute(o, self.origin.as_deref())) {
                self.apex = Some(apex);
                self.origin_or_apex_changed();
            }
            self.soa_seen = true;
            self.prev = PrevOwner::Apex;
            return Outcome::Skip;
        }

        let owner = match owner {
            Some(owner) => self.classify(owner),
            None => match self.prev {
                PrevOwner::None => {
                    return Outcome::Invalid(
                        "line starts with whitespace (same owner as the previous record) but no record precedes it"
                            .to_owned(),
                    );
                }
                PrevOwner::Apex => Owner::Apex,
                PrevOwner::Trigger => Owner::SameTrigger,
                PrevOwner::Unsupported(what) => Owner::Unsupported(what),
            },
        };
        self.prev = match owner {
            Owner::Apex => PrevOwner::Apex,
            Owner::Trigger { .. } | Owner::SameTrigger => PrevOwner::Trigger,
            Owner::Unsupported(what) => PrevOwner::Unsupported(what),
        };

        let cname = rtype.eq_ignore_ascii_case("CNAME");
        if rtype.eq_ignore_ascii_case("NS") {
            return Outcome::Skip;
        }
        let (name, wildcard) = match owner {
            Owner::Apex => return Outcome::Skip,
            Owner::Unsupported(what) => return Outcome::Unsupported(what),
            Owner::SameTrigger if cname => {
                return Outcome::Invalid("CNAME beside other records of the same owner".to_owned());
            }
            Owner::SameTrigger => return Outcome::Unsupported(RPZ_LOCAL_DATA),
            Owner::Trigger { name, wildcard } => (name, wildcard),
        };
        if !cname {
            return Outcome::Unsupported(RPZ_LOCAL_DATA);
        }
        let Some(target) = tokens.next() else {
            return if tokens.continues() {
                Outcome::Unsupported(RPZ_SPLIT)
            } else {
                Outcome::Invalid("CNAME without a target".to_owned())
            };
        };
        if tokens.next().is_some() {
            return Outcome::Invalid("CNAME with more than one target".to_owned());
        }
        // The line is read to its end now: a stray ')' makes it invalid, and
        // an invalid line must not have emitted anything.
        if tokens.overcloses() {
            return Outcome::Invalid("')' without a matching '('".to_owned());
        }
        let kind = match rpz_action(target, name, wildcard) {
            Ok(kind) => kind,
            Err(what) => return Outcome::Unsupported(what),
        };
        emit(Entry {
            name,
            wildcard,
            kind,
        });
        Outcome::Entries
    }

    fn directive(&mut self, keyword: &str, tokens: &mut Tokens<'_>) -> Outcome {
        if keyword.eq_ignore_ascii_case("$ORIGIN") {
            let Some(name) = tokens.next() else {
                return Outcome::Invalid("$ORIGIN without a name".to_owned());
            };
            if let Some(origin) = absolute(name, self.origin.as_deref()) {
                // Before the SOA, the origin is the best guess at the apex.
                if !self.soa_seen || self.apex.is_none() {
                    self.apex = Some(origin.clone());
                }
                self.origin = Some(origin);
                self.origin_or_apex_changed();
            }
            Outcome::Skip
        } else if keyword.eq_ignore_ascii_case("$TTL") {
            if tokens.next().is_some_and(is_ttl) {
                Outcome::Skip
            } else {
                Outcome::Invalid("$TTL without a valid TTL".to_owned())
            }
        } else if keyword.eq_ignore_ascii_case("$INCLUDE") {
            Outcome::Unsupported("$INCLUDE")
        } else if keyword.eq_ignore_ascii_case("$GENERATE") {
            Outcome::Unsupported("$GENERATE")
        } else {
            Outcome::Invalid(format!("unknown directive {keyword}"))
        }
    }

    /// Relative owners are only the trigger as written while the origin is
    /// the apex (or unknown, in which case the apex is whatever the file was
    /// configured as).
    fn origin_is_apex(&self) -> bool {
        !self.sub_origin
    }

    fn origin_or_apex_changed(&mut self) {
        self.sub_origin = match (&self.origin, &self.apex) {
            (Some(origin), Some(apex)) => !origin.eq_ignore_ascii_case(apex),
            _ => false,
        };
    }

    fn classify<'a>(&self, owner: &'a str) -> Owner<'a> {
        let trigger = if owner == "@" {
            return if self.origin_is_apex() {
                Owner::Apex
            } else {
                Owner::Unsupported(RPZ_SUB_ORIGIN)
            };
        } else if owner.ends_with('.') {
            match &self.apex {
                Some(apex) if owner.eq_ignore_ascii_case(apex) => return Owner::Apex,
                Some(apex) => strip_apex(owner, apex).unwrap_or(owner),
                None => owner,
            }
        } else if self.origin_is_apex() {
            owner
        } else {
            return Owner::Unsupported(RPZ_SUB_ORIGIN);
        };
        if trigger == "*" || trigger == "*." {
            return Owner::Unsupported(RPZ_WHOLE_ZONE);
        }
        let (name, wildcard) = split_wildcard(trigger);
        let base = name.strip_suffix('.').unwrap_or(name);
        let last_label = base
            .bytes()
            .rposition(|b| b == b'.')
            .and_then(|dot| base.get(dot + 1..))
            .unwrap_or(base);
        if starts_with_ignore_case(last_label, "rpz-") {
            for (label, what) in RPZ_SPECIAL_TRIGGERS {
                if last_label.eq_ignore_ascii_case(label) {
                    return Owner::Unsupported(what);
                }
            }
        }
        Owner::Trigger { name, wildcard }
    }
}

/// The policy a CNAME target stands for, or what is unsupported about it.
fn rpz_action(target: &str, name: &str, wildcard: bool) -> Result<EntryKind, &'static str> {
    if target == "." {
        return Ok(EntryKind::Nxdomain);
    }
    if target == "*." {
        return Ok(EntryKind::Nodata);
    }
    if target.eq_ignore_ascii_case("rpz-passthru.") {
        return Ok(EntryKind::Passthru);
    }
    if target.eq_ignore_ascii_case("rpz-drop.") {
        return Err("RPZ rpz-drop action");
    }
    if target.eq_ignore_ascii_case("rpz-tcp-only.") {
        return Err("RPZ rpz-tcp-only action");
    }
    // The pre-"rpz-passthru." encoding of PASSTHRU: a CNAME to the QNAME.
    let legacy_passthru = !wildcard
        && target
            .strip_suffix('.')
            .is_some_and(|t| t.eq_ignore_ascii_case(name.strip_suffix('.').unwrap_or(name)));
    if legacy_passthru {
        Ok(EntryKind::Passthru)
    } else {
        Err(RPZ_REDIRECT)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Parses `lines` with one parser, returning each line's outcome and entries.
    fn parse_all<'a>(format: Format, lines: &[&'a str]) -> Vec<(Outcome, Vec<Entry<'a>>)> {
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

    fn one(format: Format, line: &str) -> (Outcome, Vec<Entry<'_>>) {
        parse_all(format, &[line]).pop().unwrap()
    }

    fn entry(name: &str, wildcard: bool, kind: EntryKind) -> Entry<'_> {
        Entry {
            name,
            wildcard,
            kind,
        }
    }

    fn blocks(names: &[&'static str]) -> (Outcome, Vec<Entry<'static>>) {
        (
            Outcome::Entries,
            names
                .iter()
                .map(|n| entry(n, false, EntryKind::Block))
                .collect(),
        )
    }

    fn skip() -> (Outcome, Vec<Entry<'static>>) {
        (Outcome::Skip, Vec::new())
    }

    fn unsupported(what: &'static str) -> (Outcome, Vec<Entry<'static>>) {
        (Outcome::Unsupported(what), Vec::new())
    }

    fn is_invalid(result: &(Outcome, Vec<Entry<'_>>)) -> bool {
        matches!(result.0, Outcome::Invalid(_)) && result.1.is_empty()
    }

    #[test]
    fn as_str_names() {
        assert_eq!(Format::Domains.as_str(), "domains");
        assert_eq!(Format::Hosts.as_str(), "hosts");
        assert_eq!(Format::Adblock.as_str(), "adblock");
        assert_eq!(Format::Rpz.as_str(), "rpz");
    }

    // ---- domains ----

    #[test]
    fn domains_entries_and_comments() {
        let d = Format::Domains;
        assert_eq!(one(d, "example.com"), blocks(&["example.com"]));
        assert_eq!(one(d, "  Example.COM.  "), blocks(&["Example.COM."]));
        assert_eq!(one(d, "example.com\r"), blocks(&["example.com"]));
        assert_eq!(one(d, "\u{feff}example.com"), blocks(&["example.com"]));
        assert_eq!(one(d, "example.com # ads"), blocks(&["example.com"]));
        assert_eq!(one(d, "example.com\t#ads\r"), blocks(&["example.com"]));
        assert_eq!(one(d, "bücher.de"), blocks(&["bücher.de"]));
        assert_eq!(one(d, ""), skip());
        assert_eq!(one(d, "   \t "), skip());
        assert_eq!(one(d, "\r"), skip());
        assert_eq!(one(d, "# comment"), skip());
        assert_eq!(one(d, "   #comment"), skip());
    }

    #[test]
    fn domains_hash_glued_to_name_is_kept_for_the_caller_to_reject() {
        assert_eq!(
            one(Format::Domains, "example.com#x"),
            blocks(&["example.com#x"])
        );
    }

    #[test]
    fn domains_semicolon_is_not_a_comment() {
        assert!(is_invalid(&one(Format::Domains, "example.com ; note")));
        assert_eq!(
            one(Format::Domains, ";example.com"),
            blocks(&[";example.com"])
        );
    }

    #[test]
    fn domains_wildcard() {
        assert_eq!(
            one(Format::Domains, "*.example.com"),
            (
                Outcome::Entries,
                vec![entry("example.com", true, EntryKind::Block)]
            )
        );
    }

    #[test]
    fn domains_more_than_one_token_is_invalid() {
        let r = one(Format::Domains, "0.0.0.0 example.com");
        assert_eq!(
            r.0,
            Outcome::Invalid("expected one domain per line".to_owned())
        );
        assert!(r.1.is_empty());
        assert!(is_invalid(&one(Format::Domains, "a.com b.com # c")));
    }

    // ---- hosts ----

    #[test]
    fn hosts_entries() {
        let h = Format::Hosts;
        assert_eq!(
            one(h, "0.0.0.0 ads.example.com"),
            blocks(&["ads.example.com"])
        );
        assert_eq!(
            one(h, "127.0.0.1\tads.example.com\r"),
            blocks(&["ads.example.com"])
        );
        assert_eq!(one(h, ":: a.com"), blocks(&["a.com"]));
        assert_eq!(one(h, "::1 a.com"), blocks(&["a.com"]));
        assert_eq!(one(h, "  192.168.1.1 a.com  "), blocks(&["a.com"]));
        assert_eq!(one(h, "2001:db8::1 a.com"), blocks(&["a.com"]));
        assert_eq!(one(h, "fe80::1%eth0 a.com"), blocks(&["a.com"]));
        assert_eq!(
            one(h, "0.0.0.0 a.com b.com c.com"),
            blocks(&["a.com", "b.com", "c.com"])
        );
        assert_eq!(
            one(h, "0.0.0.0 *.a.com"),
            (
                Outcome::Entries,
                vec![entry("a.com", true, EntryKind::Block)]
            )
        );
    }

    #[test]
    fn hosts_comments() {
        let h = Format::Hosts;
        assert_eq!(one(h, "# comment"), skip());
        assert_eq!(one(h, ""), skip());
        assert_eq!(one(h, "  \r"), skip());
        assert_eq!(one(h, "0.0.0.0 a.com # b.com"), blocks(&["a.com"]));
        assert_eq!(one(h, "0.0.0.0 a.com#b.com"), blocks(&["a.com"]));
    }

    #[test]
    fn hosts_boilerplate_is_skipped() {
        let h = Format::Hosts;
        assert_eq!(one(h, "127.0.0.1 localhost"), skip());
        assert_eq!(
            one(h, "127.0.0.1 localhost localhost.localdomain local"),
            skip()
        );
        assert_eq!(one(h, "255.255.255.255 broadcasthost"), skip());
        assert_eq!(one(h, "::1 localhost ip6-localhost ip6-loopback"), skip());
        assert_eq!(one(h, "fe00::0 ip6-localnet"), skip());
        assert_eq!(one(h, "ff00::0 ip6-mcastprefix"), skip());
        assert_eq!(one(h, "ff02::1 ip6-allnodes"), skip());
        assert_eq!(one(h, "ff02::2 ip6-allrouters"), skip());
        assert_eq!(one(h, "ff02::3 ip6-allhosts"), skip());
        assert_eq!(one(h, "0.0.0.0 0.0.0.0"), skip());
        assert_eq!(one(h, "127.0.0.1 LocalHost"), skip());
        assert_eq!(one(h, "127.0.0.1 localhost a.com"), blocks(&["a.com"]));
        assert_eq!(
            one(h, "0.0.0.0 localhost.example.com"),
            blocks(&["localhost.example.com"])
        );
    }

    #[test]
    fn hosts_invalid() {
        let r = one(Format::Hosts, "example.com");
        assert_eq!(
            r.0,
            Outcome::Invalid("expected an IP address before the names".to_owned())
        );
        assert!(is_invalid(&one(Format::Hosts, "a.com b.com")));
        assert!(is_invalid(&one(Format::Hosts, "0.0.0.0")));
        assert!(is_invalid(&one(Format::Hosts, "0.0.0.0 # nothing")));
        assert!(is_invalid(&one(Format::Hosts, "300.0.0.1 a.com")));
    }

    // ---- adblock ----

    #[test]
    fn adblock_comments_and_headers() {
        let a = Format::Adblock;
        assert_eq!(one(a, "! Title: list"), skip());
        assert_eq!(one(a, "!"), skip());
        assert_eq!(one(a, "# comment"), skip());
        assert_eq!(one(a, "#"), skip());
        assert_eq!(one(a, "[Adblock Plus 2.0]"), skip());
        assert_eq!(one(a, "[AdGuard]\r"), skip());
        assert_eq!(one(a, ""), skip());
        assert_eq!(one(a, "  "), skip());
    }

    #[test]
    fn adblock_domain_rules() {
        let a = Format::Adblock;
        assert_eq!(one(a, "||ads.example.com^"), blocks(&["ads.example.com"]));
        assert_eq!(one(a, "||ads.example.com^\r"), blocks(&["ads.example.com"]));
        assert_eq!(
            one(a, "  ||ads.example.com^  "),
            blocks(&["ads.example.com"])
        );
        assert_eq!(one(a, "||ads.example.com^|"), blocks(&["ads.example.com"]));
        assert_eq!(one(a, "||ads.example.com|"), blocks(&["ads.example.com"]));
        assert_eq!(one(a, "||ads.example.com"), blocks(&["ads.example.com"]));
        assert_eq!(
            one(a, "||ads.example.com^$important"),
            blocks(&["ads.example.com"])
        );
        assert_eq!(
            one(a, "||ads.example.com^$IMPORTANT"),
            blocks(&["ads.example.com"])
        );
        assert_eq!(one(a, "||xn--bcher-kva.de^"), blocks(&["xn--bcher-kva.de"]));
        assert_eq!(one(a, "||bücher.de^"), blocks(&["bücher.de"]));
        assert_eq!(
            one(a, "||*.example.com^"),
            (
                Outcome::Entries,
                vec![entry("example.com", true, EntryKind::Block)]
            )
        );
    }

    #[test]
    fn adblock_bare_domains() {
        let a = Format::Adblock;
        assert_eq!(one(a, "ads.example.com"), blocks(&["ads.example.com"]));
        assert_eq!(one(a, "ads.example.com\r"), blocks(&["ads.example.com"]));
        assert_eq!(
            one(a, "*.example.com"),
            (
                Outcome::Entries,
                vec![entry("example.com", true, EntryKind::Block)]
            )
        );
        // A single word is a substring pattern in adblock syntax, not a TLD.
        assert_eq!(one(a, "ad"), unsupported(ADBLOCK_OTHER));
        assert_eq!(one(a, "banner"), unsupported(ADBLOCK_OTHER));
    }

    #[test]
    fn adblock_unsupported() {
        let a = Format::Adblock;
        assert_eq!(
            one(a, "@@||example.com^"),
            unsupported("adblock exception rule")
        );
        assert_eq!(
            one(a, "@@||example.com^$important"),
            unsupported("adblock exception rule")
        );
        for cosmetic in [
            "##.ad-banner",
            "example.com##.ad",
            "example.com#@#.ad",
            "example.com#$#body { color: red }",
            "example.com#?#div:has(> a)",
            "example.com#%#window.x = 1",
            "example.com#@$?#div",
            "#@#.ad",
            "#$#.ad { display: none }",
            "example.com$$script[data-ad]",
        ] {
            assert_eq!(
                one(a, cosmetic),
                unsupported("adblock cosmetic rule"),
                "{cosmetic}"
            );
        }
        assert_eq!(one(a, "/banner\\d+/"), unsupported("adblock regex rule"));
        assert_eq!(
            one(a, "/^ads?\\./$important"),
            unsupported("adblock regex rule")
        );
        for modifiers in [
            "||example.com^$third-party",
            "||example.com^$dnstype=A",
            "||example.com^$client=127.0.0.1",
            "||example.com^$denyallow=a.com",
            "||example.com^$badfilter",
            "||example.com^$important,third-party",
            "example.com$third-party",
        ] {
            assert_eq!(
                one(a, modifiers),
                unsupported("adblock rule with modifiers"),
                "{modifiers}"
            );
        }
        for url in [
            "||example.com/ads/",
            "||example.com^/ads",
            "||example.com:8080^",
            "|http://example.com/",
            "|https://example.com^",
            "http://example.com/ads",
            "/ads/banner.js",
            "example.com/ads",
        ] {
            assert_eq!(one(a, url), unsupported("adblock URL rule"), "{url}");
        }
        for other in [
            "||ads.*.example.com^",
            "||example.com^*",
            "||example.com^^",
            "ads*",
            "-ad-banner.",
            "example.com^",
            "0.0.0.0 example.com",
        ] {
            assert_eq!(one(a, other), unsupported("adblock rule"), "{other}");
        }
    }

    #[test]
    fn adblock_invalid() {
        assert!(is_invalid(&one(Format::Adblock, "||^")));
        assert!(is_invalid(&one(Format::Adblock, "||")));
        assert!(is_invalid(&one(Format::Adblock, "||example.com^$")));
        assert!(is_invalid(&one(
            Format::Adblock,
            "||example.com^$important,"
        )));
    }

    // ---- rpz ----

    const SOA_ZONE: [&str; 10] = [
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

    #[test]
    fn rpz_multi_line_soa_and_first_trigger() {
        let results = parse_all(Format::Rpz, &SOA_ZONE);
        for (i, result) in results.iter().enumerate().take(9) {
            assert_eq!(*result, skip(), "line {i}: {:?}", SOA_ZONE[i]);
        }
        assert_eq!(
            results[9],
            (
                Outcome::Entries,
                vec![entry("bad.example", false, EntryKind::Nxdomain)]
            )
        );
    }

    /// Parses `lines` after the SOA zone header, returning only their results.
    fn after_soa<'a>(lines: &[&'a str]) -> Vec<(Outcome, Vec<Entry<'a>>)> {
        let all: Vec<&str> = SOA_ZONE
            .iter()
            .copied()
            .chain(lines.iter().copied())
            .collect();
        parse_all(Format::Rpz, &all).split_off(SOA_ZONE.len())
    }

    fn rpz_one(line: &str) -> (Outcome, Vec<Entry<'_>>) {
        after_soa(&[line]).pop().unwrap()
    }

    fn rpz_entry(name: &str, wildcard: bool, kind: EntryKind) -> (Outcome, Vec<Entry<'_>>) {
        (Outcome::Entries, vec![entry(name, wildcard, kind)])
    }

    #[test]
    fn rpz_actions() {
        use EntryKind::*;
        assert_eq!(
            rpz_one("a.com CNAME ."),
            rpz_entry("a.com", false, Nxdomain)
        );
        assert_eq!(rpz_one("a.com CNAME *."), rpz_entry("a.com", false, Nodata));
        assert_eq!(
            rpz_one("a.com CNAME rpz-passthru."),
            rpz_entry("a.com", false, Passthru)
        );
        assert_eq!(
            rpz_one("a.com CNAME a.com."),
            rpz_entry("a.com", false, Passthru)
        );
        assert_eq!(
            rpz_one("a.com CNAME rpz-drop."),
            unsupported("RPZ rpz-drop action")
        );
        assert_eq!(
            rpz_one("a.com CNAME rpz-tcp-only."),
            unsupported("RPZ rpz-tcp-only action")
        );
        assert_eq!(
            rpz_one("a.com CNAME walled.garden."),
            unsupported("RPZ CNAME redirect")
        );
        assert_eq!(
            rpz_one("a.com CNAME rpz-passthru"),
            unsupported("RPZ CNAME redirect")
        );
        assert_eq!(
            rpz_one("*.a.com CNAME *.a.com."),
            unsupported("RPZ CNAME redirect")
        );
    }

    #[test]
    fn rpz_case_insensitive_keywords() {
        use EntryKind::*;
        assert_eq!(
            rpz_one("a.com cname ."),
            rpz_entry("a.com", false, Nxdomain)
        );
        assert_eq!(
            rpz_one("a.com 300 in CName RPZ-PASSTHRU."),
            rpz_entry("a.com", false, Passthru)
        );
        assert_eq!(
            rpz_one("A.Com.RPZ.Test. CNAME ."),
            rpz_entry("A.Com", false, Nxdomain)
        );
        assert_eq!(
            rpz_one("a.com CNAME Rpz-Drop."),
            unsupported("RPZ rpz-drop action")
        );
        assert_eq!(
            rpz_one("a.com.RPZ-IP CNAME ."),
            unsupported("RPZ rpz-ip trigger")
        );
        let r = parse_all(
            Format::Rpz,
            &[
                "$origin RPZ.test.",
                "@ soa ns. h. 1 2 3 4 5",
                "x.rpz.TEST. cname *.",
            ],
        );
        assert_eq!(r[0], skip());
        assert_eq!(r[1], skip());
        assert_eq!(r[2], rpz_entry("x", false, Nodata));
    }

    #[test]
    fn rpz_ttl_and_class_in_any_order() {
        use EntryKind::*;
        for line in [
            "a.com 300 IN CNAME .",
            "a.com IN 300 CNAME .",
            "a.com 1h30m CNAME .",
            "a.com IN CNAME .",
            "a.com 2W CNAME .",
            "a.com\t300\tIN\tCNAME\t.\r",
            "a.com CNAME . ; comment",
            "a.com CNAME .;comment",
        ] {
            assert_eq!(rpz_one(line), rpz_entry("a.com", false, Nxdomain), "{line}");
        }
    }

    #[test]
    fn rpz_relative_absolute_and_wildcard_owners() {
        use EntryKind::*;
        assert_eq!(
            rpz_one("a.com.rpz.test. CNAME ."),
            rpz_entry("a.com", false, Nxdomain)
        );
        assert_eq!(
            rpz_one("*.a.com.rpz.test. CNAME ."),
            rpz_entry("a.com", true, Nxdomain)
        );
        assert_eq!(
            rpz_one("*.a.com CNAME *."),
            rpz_entry("a.com", true, Nodata)
        );
        // Absolute but outside the zone: the trailing dot stays for the caller.
        assert_eq!(
            rpz_one("a.com. CNAME ."),
            rpz_entry("a.com.", false, Nxdomain)
        );
        assert_eq!(
            rpz_one("*.a.com. CNAME ."),
            rpz_entry("a.com.", true, Nxdomain)
        );
        assert_eq!(
            rpz_one("a.com.xrpz.test. CNAME ."),
            rpz_entry("a.com.xrpz.test.", false, Nxdomain)
        );
        // The apex itself carries no trigger.
        assert_eq!(rpz_one("rpz.test. CNAME ."), skip());
        assert_eq!(rpz_one("@ CNAME ."), skip());
        assert_eq!(rpz_one("@ TXT \"zone\""), skip());
        assert_eq!(rpz_one("* CNAME ."), unsupported(RPZ_WHOLE_ZONE));
        assert_eq!(rpz_one("*.rpz.test. CNAME ."), unsupported(RPZ_WHOLE_ZONE));
    }

    #[test]
    fn rpz_special_triggers() {
        assert_eq!(
            rpz_one("32.1.2.0.192.rpz-ip CNAME ."),
            unsupported("RPZ rpz-ip trigger")
        );
        assert_eq!(
            rpz_one("32.1.2.0.192.rpz-ip.rpz.test. CNAME ."),
            unsupported("RPZ rpz-ip trigger")
        );
        assert_eq!(
            rpz_one("ns.evil.com.rpz-nsdname CNAME ."),
            unsupported("RPZ rpz-nsdname trigger")
        );
        assert_eq!(
            rpz_one("*.evil.com.rpz-nsdname CNAME ."),
            unsupported("RPZ rpz-nsdname trigger")
        );
        assert_eq!(
            rpz_one("24.0.0.168.192.rpz-client-ip CNAME ."),
            unsupported("RPZ rpz-client-ip trigger")
        );
        assert_eq!(
            rpz_one("32.1.0.0.10.rpz-nsip CNAME rpz-passthru."),
            unsupported("RPZ rpz-nsip trigger")
        );
        assert_eq!(
            rpz_one("32.1.2.0.192.rpz-ip A 1.2.3.4"),
            unsupported("RPZ rpz-ip trigger")
        );
        // Only the last label counts.
        assert_eq!(
            rpz_one("rpz-ip.a.com CNAME ."),
            rpz_entry("rpz-ip.a.com", false, EntryKind::Nxdomain)
        );
    }

    #[test]
    fn rpz_local_data() {
        for line in [
            "a.com A 1.2.3.4",
            "a.com 300 IN AAAA ::1",
            "a.com TXT \"blocked; by policy\"",
            "a.com MX 10 mail.a.com.",
            "a.com TYPE65 \\# 0",
            "a.com DNAME other.",
        ] {
            assert_eq!(rpz_one(line), unsupported("RPZ local data"), "{line}");
        }
    }

    #[test]
    fn rpz_directives() {
        assert_eq!(rpz_one("$TTL 1h"), skip());
        assert_eq!(rpz_one("$INCLUDE other.zone"), unsupported("$INCLUDE"));
        assert_eq!(
            rpz_one("$GENERATE 1-10 host$ CNAME ."),
            unsupported("$GENERATE")
        );
        assert!(is_invalid(&rpz_one("$ORIGIN")));
        assert!(is_invalid(&rpz_one("$TTL")));
        assert!(is_invalid(&rpz_one("$BOGUS x")));
    }

    #[test]
    fn rpz_blank_owner_continuation() {
        let r = after_soa(&[
            "a.com A 1.2.3.4",
            "      AAAA ::1",
            "      CNAME .",
            "32.1.2.0.192.rpz-ip A 1.2.3.4",
            "      AAAA ::1",
            "@ TXT \"x\"",
            "  TXT \"y\"",
        ]);
        assert_eq!(r[0], unsupported("RPZ local data"));
        assert_eq!(r[1], unsupported("RPZ local data"));
        assert!(is_invalid(&r[2]));
        assert_eq!(r[3], unsupported("RPZ rpz-ip trigger"));
        assert_eq!(r[4], unsupported("RPZ rpz-ip trigger"));
        assert_eq!(r[5], skip());
        assert_eq!(r[6], skip());
        // No record before: nothing to continue.
        assert!(is_invalid(&one(Format::Rpz, "   CNAME .")));
    }

    #[test]
    fn rpz_origin_change() {
        use EntryKind::*;
        // Without an SOA, every $ORIGIN is the apex of what follows.
        let r = parse_all(
            Format::Rpz,
            &[
                "$ORIGIN one.test.",
                "a.com CNAME .",
                "b.com.one.test. CNAME .",
                "$ORIGIN two.test.",
                "c.com CNAME *.",
                "d.com.two.test. CNAME .",
                "@ NS ns.two.test.",
                "e.com.one.test. CNAME .",
            ],
        );
        assert_eq!(r[1], rpz_entry("a.com", false, Nxdomain));
        assert_eq!(r[2], rpz_entry("b.com", false, Nxdomain));
        assert_eq!(r[3], skip());
        assert_eq!(r[4], rpz_entry("c.com", false, Nodata));
        assert_eq!(r[5], rpz_entry("d.com", false, Nxdomain));
        assert_eq!(r[6], skip());
        assert_eq!(r[7], rpz_entry("e.com.one.test.", false, Nxdomain));
    }

    #[test]
    fn rpz_sub_origin_after_soa() {
        use EntryKind::*;
        // named-compilezone style: "$ORIGIN ." then a relative SOA owner.
        let r = parse_all(
            Format::Rpz,
            &[
                "$ORIGIN .",
                "$TTL 300",
                "rpz.test IN SOA ns.rpz.test. h.rpz.test. 1 2 3 4 5",
                "         NS ns.rpz.test.",
                "$ORIGIN rpz.test.",
                "a.com CNAME .",
                "$ORIGIN com.rpz.test.",
                "www CNAME .",
                "@ CNAME .",
                "b.com.rpz.test. CNAME rpz-passthru.",
                "$ORIGIN rpz.test.",
                "c.com CNAME *.",
            ],
        );
        assert_eq!(r[2], skip());
        assert_eq!(r[3], skip());
        assert_eq!(r[5], rpz_entry("a.com", false, Nxdomain));
        assert_eq!(r[7], unsupported(RPZ_SUB_ORIGIN));
        assert_eq!(r[8], unsupported(RPZ_SUB_ORIGIN));
        assert_eq!(r[9], rpz_entry("b.com", false, Passthru));
        assert_eq!(r[11], rpz_entry("c.com", false, Nodata));
    }

    #[test]
    fn rpz_relative_origin_and_no_origin() {
        use EntryKind::*;
        let r = parse_all(
            Format::Rpz,
            &[
                "$ORIGIN test.",
                "$ORIGIN rpz",
                "a.com.rpz.test. CNAME .",
                "rpz.test. NS x.",
            ],
        );
        assert_eq!(r[2], rpz_entry("a.com", false, Nxdomain));
        assert_eq!(r[3], skip());
        // No $ORIGIN at all: the SOA owner gives the apex.
        let r = parse_all(
            Format::Rpz,
            &[
                "rpz.test. SOA ns. h. 1 2 3 4 5",
                "a.com.rpz.test. CNAME .",
                "b.com CNAME .",
            ],
        );
        assert_eq!(r[1], rpz_entry("a.com", false, Nxdomain));
        assert_eq!(r[2], rpz_entry("b.com", false, Nxdomain));
        // Neither: relative owners are triggers, absolute ones stay absolute.
        let r = parse_all(
            Format::Rpz,
            &["a.com CNAME .", "b.com. CNAME .", "@ CNAME ."],
        );
        assert_eq!(r[0], rpz_entry("a.com", false, Nxdomain));
        assert_eq!(r[1], rpz_entry("b.com.", false, Nxdomain));
        assert_eq!(r[2], skip());
    }

    #[test]
    fn rpz_parentheses() {
        use EntryKind::*;
        let r = after_soa(&[
            "a.com CNAME ( . )",
            "b.com CNAME (",
            "   . )",
            "c.com (",
            "  CNAME . )",
            "d.com CNAME .",
            "e.com A 1.2.3.4 )",
            "f.com TXT \"(\" ; (",
            "g.com CNAME .",
        ]);
        assert_eq!(r[0], rpz_entry("a.com", false, Nxdomain));
        assert_eq!(r[1], unsupported(RPZ_SPLIT));
        assert_eq!(r[2], skip());
        assert_eq!(r[3], unsupported(RPZ_SPLIT));
        assert_eq!(r[4], skip());
        assert_eq!(r[5], rpz_entry("d.com", false, Nxdomain));
        assert!(is_invalid(&r[6]));
        assert_eq!(r[7], unsupported("RPZ local data"));
        assert_eq!(r[8], rpz_entry("g.com", false, Nxdomain));
    }

    #[test]
    fn rpz_unclosed_parenthesis_swallows_a_bounded_number_of_lines() {
        let mut lines = vec!["a.com TXT ( \"oops\""];
        lines.extend(std::iter::repeat_n(
            "b.com CNAME .",
            MAX_OPEN_LINES as usize,
        ));
        lines.push("c.com CNAME .");
        let r = after_soa(&lines);
        assert_eq!(r[0], unsupported("RPZ local data"));
        for result in &r[1..MAX_OPEN_LINES as usize] {
            assert_eq!(*result, skip());
        }
        assert!(is_invalid(&r[MAX_OPEN_LINES as usize]));
        assert_eq!(
            r[MAX_OPEN_LINES as usize + 1],
            rpz_entry("c.com", false, EntryKind::Nxdomain)
        );
    }

    #[test]
    fn rpz_escapes_and_comments_do_not_confuse_the_tokenizer() {
        use EntryKind::*;
        assert_eq!(
            rpz_one("a\\;b.com CNAME ."),
            rpz_entry("a\\;b.com", false, Nxdomain)
        );
        assert_eq!(
            rpz_one("a.com CNAME . ; ) ( \""),
            rpz_entry("a.com", false, Nxdomain)
        );
        // A stray ')' invalidates the line before anything is emitted.
        assert!(is_invalid(&rpz_one("a.com CNAME . )")));
    }

    #[test]
    fn rpz_comments_and_blank_lines() {
        assert_eq!(rpz_one("; comment"), skip());
        assert_eq!(rpz_one("   ; indented comment"), skip());
        assert_eq!(rpz_one(""), skip());
        assert_eq!(rpz_one("  \t\r"), skip());
    }

    #[test]
    fn rpz_invalid() {
        for line in [
            "a.com",
            "a.com 300 IN",
            "a.com CNAME",
            "a.com CNAME . extra.",
            "a.com 1.2.3.4",
            ") a.com CNAME .",
        ] {
            assert!(is_invalid(&rpz_one(line)), "{line}: {:?}", rpz_one(line));
        }
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

    // ---- properties ----

    const FORMATS: [Format; 4] = [Format::Domains, Format::Hosts, Format::Adblock, Format::Rpz];

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
            .map(|e| (e.name.to_owned(), e.wildcard, e.kind))
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
                    let outcome = parser.parse_line(line, &mut |e| {
                        count += 1;
                        // Entries are slices of the line, never copies.
                        let range = line.as_bytes().as_ptr_range();
                        assert!(range.contains(&e.name.as_ptr()) || e.name.is_empty());
                    });
                    prop_assert_eq!(count > 0, outcome == Outcome::Entries);
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
