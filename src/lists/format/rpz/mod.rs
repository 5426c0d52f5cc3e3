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
//! Response-IP triggers (`32.1.2.0.192.rpz-ip`, `48.zz.101.db8.2001.rpz-ip`)
//! name a network ([`super::ips::parse_rpz_ip`]) with the same actions,
//! handed to the caller's second callback as a [`NetEntry`].
//! Unsupported: `rpz-nsdname`, `rpz-nsip` and `rpz-client-ip`
//! triggers, `rpz-drop.` and `rpz-tcp-only.` actions, CNAME redirects, local
//! data (A, AAAA, TXT...), `$INCLUDE`/`$GENERATE`, a `*` covering the whole
//! zone, and a record split over lines before its action.
//!
//! Triggers are slices of the line (no allocation per line) except under a
//! `$ORIGIN` below the apex, where the origin's part must be appended.
//!
//! The rooms: `zonefile.rs` reads master-file syntax (tokens, comments,
//! parentheses, TTLs, classes, types, relative and absolute names), which
//! knows nothing of RPZ; this file gives the records their RPZ meaning
//! (the apex, owners as triggers, CNAME targets as actions); the tests are
//! in `tests.rs`.

use std::borrow::Cow;

use super::ips::parse_rpz_ip;
use super::{Entry, EntryKind, NetEntry, Outcome, split_wildcard, starts_with_ignore_case};
use crate::matcher::Net;

#[cfg(test)]
mod tests;
mod zonefile;

use zonefile::{Tokens, absolute, is_class, is_ttl, is_type, strip_apex};

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
    /// An `rpz-ip` trigger: the network it names.
    Net(Net),
    /// Omitted owner continuing a trigger of an earlier line.
    SameTrigger,
    /// An owner that is not a valid trigger; the message says why.
    Invalid(String),
    Unsupported(&'static str),
    /// An owner outside the policy zone; the message names both.
    Outside(String),
}

impl RpzState {
    pub(super) fn parse<'a>(
        &mut self,
        line: &'a str,
        emit: &mut dyn FnMut(Entry<'a>),
        nets: &mut dyn FnMut(NetEntry),
    ) -> Outcome {
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
        let outcome = self.record(line, &mut tokens, emit, nets);
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
        nets: &mut dyn FnMut(NetEntry),
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
            Owner::Trigger { .. } | Owner::Net(_) | Owner::SameTrigger => PrevOwner::Trigger,
            Owner::Invalid(_) => PrevOwner::Outside,
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
            Owner::Outside(why) | Owner::Invalid(why) => return Outcome::Invalid(why),
            Owner::SameTrigger if cname => {
                return Outcome::Invalid("CNAME beside other records of the same owner".to_owned());
            }
            Owner::SameTrigger => return Outcome::Unsupported(RPZ_LOCAL_DATA),
            Owner::Trigger { name, wildcard } => (name, wildcard),
            Owner::Net(net) => {
                return match Self::action(cname, tokens, "", true) {
                    Ok(kind) => {
                        nets(NetEntry { net, kind });
                        Outcome::Entries
                    }
                    Err(outcome) => outcome,
                };
            }
        };
        let kind = match Self::action(cname, tokens, &name, wildcard) {
            Ok(kind) => kind,
            Err(outcome) => return outcome,
        };
        emit(Entry {
            name,
            wildcard,
            kind,
        });
        Outcome::Entries
    }

    /// The action of a trigger's record: its type (`cname`) and the rest
    /// of the line, read to its end.
    fn action(
        cname: bool,
        tokens: &mut Tokens<'_>,
        name: &str,
        wildcard: bool,
    ) -> Result<EntryKind, Outcome> {
        if !cname {
            return Err(Outcome::Unsupported(RPZ_LOCAL_DATA));
        }
        let Some(target) = tokens.next() else {
            return Err(if tokens.continues() {
                Outcome::Unsupported(RPZ_SPLIT)
            } else {
                Outcome::Invalid("CNAME without a target".to_owned())
            });
        };
        if tokens.next().is_some() {
            return Err(Outcome::Invalid(
                "CNAME with more than one target".to_owned(),
            ));
        }
        // The line is read to its end now: a stray ')' makes it invalid, and
        // an invalid line must not have emitted anything.
        if tokens.overcloses() {
            return Err(Outcome::Invalid("')' without a matching '('".to_owned()));
        }
        rpz_action(target, name, wildcard).map_err(Outcome::Unsupported)
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
            if last_label.eq_ignore_ascii_case("rpz-ip") {
                let Some(net) = base.get(..base.len() - last_label.len()) else {
                    return Owner::Invalid("rpz-ip trigger without an address".to_owned());
                };
                if wildcard {
                    return Owner::Invalid(format!("wildcard rpz-ip trigger *.{base}"));
                }
                return match parse_rpz_ip(net.strip_suffix('.').unwrap_or(net)) {
                    Ok(net) => Owner::Net(net),
                    Err(why) => Owner::Invalid(why),
                };
            }
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
