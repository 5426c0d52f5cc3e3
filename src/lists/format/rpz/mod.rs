//! # RPZ
//! A Response Policy Zone in master-file syntax (RFC 1035 section 5, with the
//! RPZ conventions of draft-vixie-dnsop-dns-rpz). `;` comments (outside quoted
//! strings), `$ORIGIN`, `$TTL`, omitted owners (line starting with whitespace),
//! `@`, TTLs (`3600`, `1h30m`) and classes in either order, and parentheses
//! spanning lines are understood. Every owner is qualified by the `$ORIGIN`
//! in force (RFC 1035 section 5.1, `@` included), as BIND, Unbound and
//! PowerDNS read a zone; the trigger is that absolute name with the policy
//! zone's apex removed. The apex is the owner of the SOA record; records at
//! the apex (SOA, NS...) carry no trigger, and an owner outside the policy
//! zone is an invalid line. A file without an SOA (a list written in RPZ
//! syntax rather than a zone) takes each `$ORIGIN` as the apex of what
//! follows, and reads absolute owners outside it as the names they are.
//! Supported policies are the QNAME triggers with
//! `CNAME .` (NXDOMAIN), `CNAME *.` (NODATA) and `CNAME rpz-passthru.` (or the
//! legacy CNAME to the trigger name itself; both exempt the name from this
//! feed's less specific triggers, never from another list). An owner `x`
//! is a trigger for `x` alone, and `*.x` for the names below `x`
//! ([`super::Format::scope`]).
//! Unsupported: `rpz-ip`, `rpz-nsdname`, `rpz-nsip` and `rpz-client-ip`
//! triggers, `rpz-drop.` and `rpz-tcp-only.` actions, CNAME redirects, local
//! data (A, AAAA, TXT...), `$INCLUDE`/`$GENERATE`, a `*` covering the whole
//! zone, and a record split over lines before its action.
//!
//! Triggers are slices of the line (no allocation per line) except under a
//! `$ORIGIN` below the apex, where the origin's part must be appended.

use std::borrow::Cow;

use super::{Entry, EntryKind, Outcome, byte_class, split_wildcard, starts_with_ignore_case};

const RPZ_WHOLE_ZONE: &str = "RPZ wildcard covering every name";
const RPZ_SPLIT: &str = "RPZ record split across lines before its action";
const RPZ_LOCAL_DATA: &str = "RPZ local data";
const RPZ_REDIRECT: &str = "RPZ CNAME redirect";

/// How many lines a parenthesised record may span. Real ones (an SOA, a long
/// TXT) take a handful; without a limit, one stray '(' would silently swallow
/// the rest of the file.
const MAX_OPEN_LINES: u32 = 64;

/// Trigger types announced by the last label of the trigger name.
pub(super) const RPZ_SPECIAL_TRIGGERS: [(&str, &str); 4] = [
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
    /// Outside the policy zone: its records are invalid lines.
    Outside,
}

/// Where the `$ORIGIN` in force stands against the apex; computed when
/// either changes, because every relative owner asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum OriginAt {
    /// The apex itself, or nothing known yet: a relative owner is its own trigger.
    #[default]
    Apex,
    /// Below the apex: a relative owner's trigger is `owner.` + this
    /// (the origin relative to the apex, without dots at either end).
    Below(String),
    /// Not at or below the apex (above it, or beside it): a relative owner
    /// is inside the policy zone only if its whole name says so.
    Elsewhere,
}

#[derive(Debug, Default)]
pub(super) struct RpzState {
    /// Current `$ORIGIN`, absolute (with its trailing dot).
    origin: Option<String>,
    /// Zone apex, absolute: the name triggers are relative to.
    apex: Option<String>,
    /// Once the SOA has fixed the apex, a later `$ORIGIN` no longer moves it.
    soa_seen: bool,
    /// The origin against the apex.
    origin_at: OriginAt,
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
        name: Cow<'a, str>,
        wildcard: bool,
    },
    /// Omitted owner continuing a trigger of an earlier line.
    SameTrigger,
    Unsupported(&'static str),
    /// An owner outside the policy zone; the message names both.
    Outside(String),
}

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
    pub(super) fn parse<'a>(&mut self, line: &'a str, emit: &mut dyn FnMut(Entry<'a>)) -> Outcome {
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
                PrevOwner::Outside => {
                    Owner::Outside("record of an owner outside the policy zone".to_owned())
                }
            },
        };
        self.prev = match owner {
            Owner::Apex => PrevOwner::Apex,
            Owner::Trigger { .. } | Owner::SameTrigger => PrevOwner::Trigger,
            Owner::Unsupported(what) => PrevOwner::Unsupported(what),
            Owner::Outside(_) => PrevOwner::Outside,
        };

        let cname = rtype.eq_ignore_ascii_case("CNAME");
        if rtype.eq_ignore_ascii_case("NS") {
            return Outcome::Skip;
        }
        let (name, wildcard) = match owner {
            Owner::Apex => return Outcome::Skip,
            Owner::Unsupported(what) => return Outcome::Unsupported(what),
            Owner::Outside(why) => return Outcome::Invalid(why),
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
        let kind = match rpz_action(target, &name, wildcard) {
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

    fn origin_or_apex_changed(&mut self) {
        self.origin_at = match (&self.origin, &self.apex) {
            (Some(origin), Some(apex)) if !origin.eq_ignore_ascii_case(apex) => {
                match strip_apex(origin, apex) {
                    Some(below) => OriginAt::Below(below.to_owned()),
                    None => OriginAt::Elsewhere,
                }
            }
            _ => OriginAt::Apex,
        };
    }

    /// What `owner`, as written on a line, means: qualified by the origin in
    /// force, then taken relative to the apex.
    fn classify<'a>(&self, owner: &'a str) -> Owner<'a> {
        let trigger: Cow<'a, str> = if owner == "@" {
            match &self.origin_at {
                OriginAt::Apex => return Owner::Apex,
                OriginAt::Below(below) => Cow::Owned(below.clone()),
                OriginAt::Elsewhere => return self.outside(owner),
            }
        } else if owner.ends_with('.') {
            match &self.apex {
                Some(apex) if owner.eq_ignore_ascii_case(apex) => return Owner::Apex,
                Some(apex) => match strip_apex(owner, apex) {
                    Some(relative) => Cow::Borrowed(relative),
                    // Without an SOA the apex is only a guess from $ORIGIN.
                    None if !self.soa_seen => Cow::Borrowed(owner),
                    None => return self.outside(owner),
                },
                None => Cow::Borrowed(owner),
            }
        } else {
            match &self.origin_at {
                OriginAt::Apex => Cow::Borrowed(owner),
                OriginAt::Below(below) => Cow::Owned(format!("{owner}.{below}")),
                // Above the apex or beside it: only the whole name tells.
                OriginAt::Elsewhere => {
                    let inside = absolute(owner, self.origin.as_deref()).and_then(|abs| {
                        let apex = self.apex.as_deref()?;
                        strip_apex(&abs, apex).map(str::to_owned)
                    });
                    match inside {
                        Some(relative) => Cow::Owned(relative),
                        None => return self.outside(owner),
                    }
                }
            }
        };
        if trigger == "*" || trigger == "*." {
            return Owner::Unsupported(RPZ_WHOLE_ZONE);
        }
        let (name, wildcard) = match trigger {
            Cow::Borrowed(t) => {
                let (name, wildcard) = split_wildcard(t);
                (Cow::Borrowed(name), wildcard)
            }
            Cow::Owned(t) => match t.strip_prefix("*.") {
                Some(name) => (Cow::Owned(name.to_owned()), true),
                None => (Cow::Owned(t), false),
            },
        };
        let base = name.strip_suffix('.').unwrap_or(&name);
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

    /// The error for an owner outside the policy zone, naming both.
    fn outside<'a>(&self, owner: &str) -> Owner<'a> {
        let absolute = absolute(owner, self.origin.as_deref()).unwrap_or_else(|| owner.to_owned());
        let apex = self.apex.as_deref().unwrap_or(".");
        Owner::Outside(format!(
            "owner {absolute} is outside the policy zone {apex}"
        ))
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
    use super::super::test_support::*;
    use super::super::*;
    use super::*;

    // ---- rpz ----

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
        // Absolute but outside the policy zone the SOA set: invalid lines.
        for line in [
            "a.com. CNAME .",
            "*.a.com. CNAME .",
            "a.com.xrpz.test. CNAME .",
        ] {
            assert!(is_invalid(&rpz_one(line)), "{line}: {:?}", rpz_one(line));
        }
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
        // Owners under a $ORIGIN below the apex are qualified by it.
        assert_eq!(r[7], rpz_entry("www.com", false, Nxdomain));
        assert_eq!(r[8], rpz_entry("com", false, Nxdomain));
        assert_eq!(r[9], rpz_entry("b.com", false, Passthru));
        assert_eq!(r[11], rpz_entry("c.com", false, Nodata));
    }

    /// Issue 9 (1): a second $ORIGIN below the apex, as vendors write
    /// policy zones, qualifies the owners under it; nothing outside the
    /// policy zone becomes a trigger.
    #[test]
    fn r9_owners_are_qualified_by_the_origin_in_force() {
        use EntryKind::*;
        let r = parse_all(
            Format::Rpz,
            &[
                "$ORIGIN rpz.vendor.test.",
                "@ SOA ns.vendor.test. h.vendor.test. 7 3600 600 86400 60",
                "  NS ns.vendor.test.",
                "$ORIGIN sub.example.rpz.vendor.test.",
                "www CNAME .",
                "*.deep CNAME *.",
                "@ CNAME rpz-passthru.",
                "$ORIGIN rpz-ip.rpz.vendor.test.",
                "32.1.0.0.127 CNAME .",
                "$ORIGIN rpz.vendor.test.",
                "plain.example CNAME .",
                "other.test. CNAME .",
                "$ORIGIN elsewhere.test.",
                "x CNAME .",
                "  TXT \"also outside\"",
                "$ORIGIN vendor.test.",
                "www.sub2.example.rpz CNAME .",
            ],
        );
        assert_eq!(r[4], rpz_entry("www.sub.example", false, Nxdomain));
        assert_eq!(r[5], rpz_entry("deep.sub.example", true, Nodata));
        assert_eq!(r[6], rpz_entry("sub.example", false, Passthru));
        assert_eq!(r[8], unsupported("RPZ rpz-ip trigger"));
        assert_eq!(r[10], rpz_entry("plain.example", false, Nxdomain));
        for (i, owner) in [(11, "other.test."), (13, "x.elsewhere.test.")] {
            let Outcome::Invalid(why) = &r[i].0 else {
                panic!("line {i}: {:?}", r[i]);
            };
            assert_eq!(
                why,
                &format!("owner {owner} is outside the policy zone rpz.vendor.test.")
            );
        }
        assert!(is_invalid(&r[14]), "{:?}", r[14]);
        // A $ORIGIN above the apex: owners below the apex are still inside.
        assert_eq!(r[16], rpz_entry("www.sub2.example", false, Nxdomain));
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
}
