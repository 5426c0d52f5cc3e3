//! # Domains
//! One name per line. `#` starts a comment, on its own line or after
//! whitespace (a `#` glued to a name is left in the name, which the caller then
//! rejects). `*.example.com` is an explicit wildcard. More than one name on a
//! line is invalid: such a line is most likely a hosts line in the wrong list,
//! and guessing would block the IP address as a name.

use super::{Entry, Outcome, block};

pub(super) fn parse_domains<'a>(line: &'a str, emit: &mut dyn FnMut(Entry<'a>)) -> Outcome {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

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
}
