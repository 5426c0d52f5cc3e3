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

use super::{Entry, HOST_BYTES, Outcome, block, split_wildcard};

const ADBLOCK_EXCEPTION: &str = "adblock exception rule";
const ADBLOCK_COSMETIC: &str = "adblock cosmetic rule";
const ADBLOCK_REGEX: &str = "adblock regex rule";
const ADBLOCK_MODIFIERS: &str = "adblock rule with modifiers";
const ADBLOCK_URL: &str = "adblock URL rule";
const ADBLOCK_OTHER: &str = "adblock rule";

pub(super) fn parse_adblock<'a>(line: &'a str, emit: &mut dyn FnMut(Entry<'a>)) -> Outcome {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use super::*;

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
}
