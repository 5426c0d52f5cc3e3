//! Master-file syntax (RFC 1035 section 5) as a zone file writes it: the
//! tokens of one line (with `;` comments dropped, quoted strings and
//! escapes kept whole, and parentheses counted), what a TTL, a class and a
//! record type look like, and how a relative name becomes absolute. It
//! knows nothing of RPZ: [`super`] gives the records their meaning.

use crate::lists::format::byte_class;

/// Bytes that end an unquoted master-file token or need a closer look.
const RPZ_SPECIAL: [bool; 256] = byte_class(b" \t\n\r\x0c();\"\\", false);

/// Master-file tokens of one line, read in a single pass that also drops the
/// `;` comment and counts parentheses: parentheses only group lines, so they
/// separate tokens like whitespace does, and their balance is only final
/// once the line has been read to its end (see [`Tokens::drain`]).
pub(super) struct Tokens<'a> {
    rest: &'a str,
    pub(super) opens: u32,
    pub(super) closes: u32,
}

impl<'a> Tokens<'a> {
    pub(super) fn new(line: &'a str) -> Self {
        Self {
            rest: line,
            opens: 0,
            closes: 0,
        }
    }

    /// Reads the line to its end, for the parenthesis counts.
    pub(super) fn drain(&mut self) {
        while self.next().is_some() {}
    }

    /// Whether the line (read to its end) opens more parentheses than it closes.
    pub(super) fn continues(&self) -> bool {
        self.opens > self.closes
    }

    /// Whether the line (read to its end) closes a parenthesis it did not open.
    pub(super) fn overcloses(&self) -> bool {
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
pub(super) fn is_ttl(token: &str) -> bool {
    token.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && token.bytes().all(|b| {
            b.is_ascii_digit() || matches!(b.to_ascii_lowercase(), b's' | b'm' | b'h' | b'd' | b'w')
        })
}

pub(super) fn is_class(token: &str) -> bool {
    ["IN", "CH", "CS", "HS", "ANY"]
        .iter()
        .any(|c| token.eq_ignore_ascii_case(c))
}

pub(super) fn is_type(token: &str) -> bool {
    token
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `owner` relative to `apex`, if it is strictly below it (both absolute).
pub(super) fn strip_apex<'a>(owner: &'a str, apex: &str) -> Option<&'a str> {
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
pub(super) fn absolute(name: &str, origin: Option<&str>) -> Option<String> {
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
