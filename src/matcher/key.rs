//! A domain name as the matcher sees it: lowercase, in wire form (each label
//! preceded by its length, no root byte), on the stack.
//!
//! Wire form rather than dotted text, because a label may legally contain a
//! `.` byte on the wire: in dotted text `a.b` as one label and `a`,`b` as two
//! would hash alike and block a name nobody listed. Length prefixes make every
//! suffix unambiguous, and the same bytes come from a list line and from a
//! query, so one hash serves both.

use std::fmt;
use std::net::IpAddr;

/// Longest name in wire form without the root byte (RFC 1035: 255 with it).
pub const MAX_KEY: usize = 254;
/// Most labels a name can have within 255 bytes.
pub const MAX_LABELS: usize = 127;

/// A lowercase wire-form name with the offset of each label.
#[derive(Clone)]
pub struct NameKey {
    buf: [u8; MAX_KEY],
    len: u8,
    starts: [u8; MAX_LABELS],
    labels: u8,
}

/// Why a list entry is not a domain name embargo can block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("empty label")]
    EmptyLabel,
    #[error("label longer than 63 bytes")]
    LabelTooLong,
    #[error("name longer than 253 characters")]
    NameTooLong,
    #[error("invalid character {0:?} in name")]
    InvalidChar(char),
    #[error("an IP address, not a domain name")]
    IpAddress,
    #[error("not a valid internationalised domain name")]
    Idna,
    #[error("the root cannot be listed")]
    Root,
    #[error("bare top-level domain {0:?}: write \"*.{0}\" to block the whole TLD on purpose")]
    BareTld(String),
}

impl Default for NameKey {
    fn default() -> Self {
        Self::new()
    }
}

impl NameKey {
    /// The root name (no labels).
    pub fn new() -> Self {
        Self {
            buf: [0; MAX_KEY],
            len: 0,
            starts: [0; MAX_LABELS],
            labels: 0,
        }
    }

    /// Appends a label from the wire, lowercasing ASCII. Returns false when the
    /// name would exceed 255 bytes or the label is empty or longer than 63.
    #[inline]
    pub fn push_label(&mut self, label: &[u8]) -> bool {
        let at = self.len as usize;
        let n = label.len();
        if n == 0 || n > 63 || at + 1 + n > MAX_KEY || self.labels as usize >= MAX_LABELS {
            return false;
        }
        self.starts[self.labels as usize] = at as u8;
        self.labels += 1;
        self.buf[at] = n as u8;
        for (dst, src) in self.buf[at + 1..at + 1 + n].iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        self.len = (at + 1 + n) as u8;
        true
    }

    /// Parses and normalises a name from a list or the command line: ASCII is
    /// lowercased, one trailing dot dropped, Unicode converted to punycode
    /// (UTS 46), and anything that is not a hostname-like domain rejected.
    /// `explicit` marks a name written as `*.name`, which may be a bare TLD.
    pub fn from_text(text: &str, explicit: bool) -> Result<Self, NameError> {
        let text = text.strip_suffix('.').unwrap_or(text);
        if text.is_empty() {
            return Err(if explicit {
                NameError::Root
            } else {
                NameError::Empty
            });
        }
        if !text.is_ascii() {
            let ascii = idna::domain_to_ascii(text).map_err(|_| NameError::Idna)?;
            return Self::from_ascii(&ascii, explicit);
        }
        Self::from_ascii(text, explicit)
    }

    fn from_ascii(text: &str, explicit: bool) -> Result<Self, NameError> {
        if text.len() > 253 {
            return Err(NameError::NameTooLong);
        }
        if text.parse::<IpAddr>().is_ok() {
            return Err(NameError::IpAddress);
        }
        let mut key = Self::new();
        let mut all_numeric = true;
        for label in text.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            if label.len() > 63 {
                return Err(NameError::LabelTooLong);
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(NameError::InvalidChar(c));
            }
            all_numeric &= label.bytes().all(|b| b.is_ascii_digit());
            if !key.push_label(label.as_bytes()) {
                return Err(NameError::NameTooLong);
            }
        }
        if all_numeric {
            return Err(NameError::IpAddress);
        }
        if key.labels == 1 && !explicit {
            return Err(NameError::BareTld(text.to_ascii_lowercase()));
        }
        Ok(key)
    }

    /// Number of labels.
    #[inline]
    pub fn label_count(&self) -> usize {
        self.labels as usize
    }

    /// The whole name in wire form, without the root byte.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// Byte offset where label `i` (0 = leftmost) starts.
    #[inline]
    pub fn label_start(&self, i: usize) -> usize {
        self.starts[i] as usize
    }

    /// The suffix starting at byte `at` (a label boundary), for display.
    pub fn suffix(&self, at: usize) -> Suffix<'_> {
        Suffix(&self.buf[at.min(self.len as usize)..self.len as usize])
    }
}

impl fmt::Display for NameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Suffix(self.as_bytes()).fmt(f)
    }
}

impl fmt::Debug for NameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NameKey({self})")
    }
}

/// Part of a wire-form name, displayed as dotted text with RFC 1035 escapes.
#[derive(Clone, Copy)]
pub struct Suffix<'a>(&'a [u8]);

impl fmt::Display for Suffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        if rest.is_empty() {
            return f.write_str(".");
        }
        let mut first = true;
        while let Some((&n, tail)) = rest.split_first() {
            let n = (n as usize).min(tail.len());
            if !first {
                f.write_str(".")?;
            }
            first = false;
            for &b in &tail[..n] {
                match b {
                    b'.' | b'\\' => write!(f, "\\{}", b as char)?,
                    0x21..=0x7e => write!(f, "{}", b as char)?,
                    _ => write!(f, "\\{b:03}")?,
                }
            }
            rest = &tail[n..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_dot_and_idn() {
        let k = NameKey::from_text("WWW.Example.COM.", false).expect("valid");
        assert_eq!(k.as_bytes(), b"\x03www\x07example\x03com");
        assert_eq!(k.to_string(), "www.example.com");
        assert_eq!(k.label_count(), 3);
        let k = NameKey::from_text("bücher.example", false).expect("idn");
        assert_eq!(k.to_string(), "xn--bcher-kva.example");
    }

    #[test]
    fn rejects_what_is_not_a_domain() {
        use NameError::*;
        let bad = [
            ("", Empty),
            ("a..b", EmptyLabel),
            ("1.2.3.4", IpAddress),
            ("::1", IpAddress),
            ("a b.com", InvalidChar(' ')),
            ("a/b.com", InvalidChar('/')),
            ("com", BareTld("com".into())),
        ];
        for (text, err) in bad {
            assert_eq!(
                NameKey::from_text(text, false).map(|_| ()),
                Err(err),
                "{text}"
            );
        }
        assert_eq!(
            NameKey::from_text(&format!("{}.com", "a".repeat(64)), false).map(|_| ()),
            Err(LabelTooLong)
        );
        let long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(
            NameKey::from_text(&long, false).map(|_| ()),
            Err(NameTooLong)
        );
        assert!(NameKey::from_text("zip", true).is_ok());
        assert_eq!(NameKey::from_text(".", true).map(|_| ()), Err(Root));
    }

    #[test]
    fn escapes_odd_bytes_in_display() {
        let mut k = NameKey::new();
        assert!(k.push_label(b"a.b"));
        assert!(k.push_label(b"\x00x"));
        assert_eq!(k.to_string(), "a\\.b.\\000x");
        assert_eq!(NameKey::new().to_string(), ".");
    }

    #[test]
    fn push_label_enforces_limits() {
        let mut k = NameKey::new();
        assert!(!k.push_label(b""));
        assert!(!k.push_label(&[b'a'; 64]));
        for _ in 0..3 {
            assert!(k.push_label(&[b'a'; 63]));
        }
        // 3 * 64 = 192 bytes used; a 63-byte label would pass 254.
        assert!(!k.push_label(&[b'a'; 63]));
        assert!(k.push_label(&[b'a'; 61]));
    }
}
