//! Trust anchor files (`[upstream] trust_anchors`): the DS or DNSKEY
//! records that DNSSEC validation starts from, for a private signed zone
//! or in place of the built-in root anchor.
//!
//! The syntax is the zone file's, one record per entry, as `dig`, `keymgr`,
//! `ldns-keygen` and IANA's root anchors print them:
//!
//! ```text
//! ; comments, blank lines, and ( … ) across lines are fine
//! corp.example.  3600 IN DS 31589 13 2 4D8C…
//! corp.example.  IN DNSKEY 257 3 13 ( mdsswUyr3DPW…
//!                                     …== )
//! ```
//!
//! Owner names are absolute (a missing final dot is added); the TTL and
//! the class (IN) are optional. Read here, at load time, so that a bad
//! file is a config error naming its line; the records are hickory's own
//! types, which the validator (`upstream/dnssec`) hands to hickory.

use std::path::PathBuf;
use std::time::Duration;

use data_encoding::{BASE64, HEXUPPER_PERMISSIVE};
use hickory_proto::dnssec::rdata::{DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKeyBuf};
use hickory_proto::rr::Name;

use super::Checker;
use super::raw::Value;

/// `[upstream] dnssec`: whether forwarded answers are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dnssec {
    /// Answers pass as the upstream gave them (its AD bit included).
    #[default]
    Off,
    /// Answers are validated from the trust anchors: secure ones get AD,
    /// bogus ones SERVFAIL with an EDE saying why.
    Validate,
}

/// How long a bogus answer is remembered as bogus unless configured: long
/// enough that a client retrying does not make the upstream (and the
/// chain of DNSKEY and DS lookups) work again at once, short enough that
/// a zone repaired by its operator validates again soon.
pub const DEFAULT_BOGUS_TTL: Duration = Duration::from_secs(60);

/// The DNSSEC settings of `[upstream]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnssecConfig {
    pub mode: Dnssec,
    /// `trust_anchors` as written (resolved against the config's directory).
    pub files: Vec<PathBuf>,
    /// The anchors those files hold, in order. The root's built-in anchor
    /// is added by the validator unless a file anchors the root itself.
    pub anchors: Vec<TrustAnchor>,
    /// How long a bogus answer is answered SERVFAIL without asking again.
    pub bogus_ttl: Duration,
}

impl Default for DnssecConfig {
    fn default() -> Self {
        Self {
            mode: Dnssec::Off,
            files: Vec::new(),
            anchors: Vec::new(),
            bogus_ttl: DEFAULT_BOGUS_TTL,
        }
    }
}

const WANT_DNSSEC: &str = r#"one of "off" or "validate""#;

impl Checker<'_> {
    /// `dnssec`, `trust_anchors` and `bogus_ttl` of `[upstream]`. Anchor
    /// files are read here, so that a bad record is a config error naming
    /// its file and line (and `embargo validate` reports it).
    /// (The values, not `UpstreamSpec`: its room imports this one.)
    pub(super) fn dnssec(
        &mut self,
        dnssec: &Option<Value>,
        trust_anchors: &Option<Value>,
        bogus_ttl: &Option<Value>,
    ) -> DnssecConfig {
        let mut config = DnssecConfig::default();
        if let Some(mode) = self.opt_parse("upstream.dnssec", dnssec, WANT_DNSSEC, |s| match s {
            "off" => Some(Dnssec::Off),
            "validate" => Some(Dnssec::Validate),
            _ => None,
        }) {
            config.mode = mode;
        }
        if let Some(value) = trust_anchors {
            let files = self.each(
                "upstream.trust_anchors",
                value,
                r#"a list of trust anchor files, such as ["corp.key"]"#,
                r#"a file path such as "corp.key""#,
                |s| (!s.is_empty()).then(|| s.to_owned()),
            );
            for (file, _) in files {
                let path = self.resolve(&file);
                let read = std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| parse_anchors(&text).map_err(|e| e.to_string()));
                match read {
                    Ok(anchors) => config.anchors.extend(anchors),
                    Err(why) => self.problem(
                        value,
                        format!("upstream.trust_anchors: {}: {why}", path.display()),
                    ),
                }
                config.files.push(path);
            }
        }
        if let Some(ttl) = bogus_ttl
            .as_ref()
            .and_then(|v| self.whole::<u64>("upstream.bogus_ttl", v, "seconds", 1..=3600))
        {
            config.bogus_ttl = Duration::from_secs(ttl);
        }
        config
    }
}

/// One configured trust anchor: a zone, and a key it is known to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    pub zone: Name,
    pub key: AnchorKey,
}

/// What is known of the key: its digest (DS), or the key itself (DNSKEY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorKey {
    Ds(DS),
    Dnskey(DNSKEY),
}

/// Why a trust anchor file could not be read: its line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct AnchorError {
    pub line: usize,
    pub why: String,
}

/// The trust anchors in `text`, in file order; the first bad record is
/// the error. A file with no record is an error too (it anchors nothing,
/// which is never what was meant).
pub fn parse_anchors(text: &str) -> Result<Vec<TrustAnchor>, AnchorError> {
    let mut anchors = Vec::new();
    for (line, tokens) in entries(text)? {
        let anchor = parse_entry(&tokens).map_err(|why| AnchorError { line, why })?;
        anchors.push(anchor);
    }
    if anchors.is_empty() {
        return Err(AnchorError {
            line: 1,
            why: "no DS or DNSKEY record in it".into(),
        });
    }
    Ok(anchors)
}

/// The file's entries: the tokens of each record (parentheses joined, comments
/// dropped), with the line it starts on.
fn entries(text: &str) -> Result<Vec<(usize, Vec<&str>)>, AnchorError> {
    let mut out = Vec::new();
    let mut current: Option<(usize, Vec<&str>)> = None;
    // Lines inside "( … )" continue the record; the line of the last "(".
    let mut open: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if open.is_none()
            && let Some(entry) = current.take()
        {
            out.push(entry);
        }
        let content = raw.split(';').next().unwrap_or("");
        for word in content.split_whitespace() {
            let mut rest = word;
            while !rest.is_empty() {
                if let Some(r) = rest.strip_prefix('(') {
                    if open.is_some() {
                        return Err(AnchorError {
                            line,
                            why: "\"(\" inside \"( … )\"".into(),
                        });
                    }
                    open = Some(line);
                    rest = r;
                } else if let Some(r) = rest.strip_prefix(')') {
                    if open.take().is_none() {
                        return Err(AnchorError {
                            line,
                            why: "\")\" without \"(\"".into(),
                        });
                    }
                    rest = r;
                } else {
                    let end = rest.find(['(', ')']).unwrap_or(rest.len());
                    let (token, r) = rest.split_at(end);
                    current
                        .get_or_insert_with(|| (line, Vec::new()))
                        .1
                        .push(token);
                    rest = r;
                }
            }
        }
    }
    if let Some(line) = open {
        return Err(AnchorError {
            line,
            why: "\"(\" is never closed".into(),
        });
    }
    out.extend(current);
    Ok(out)
}

/// One record: `owner [ttl] [class] DS|DNSKEY rdata…`.
fn parse_entry(tokens: &[&str]) -> Result<TrustAnchor, String> {
    let (&owner, mut rest) = tokens.split_first().ok_or("an empty record")?;
    let zone = parse_owner(owner)?;
    // TTL and class, in either order, both optional.
    for _ in 0..2 {
        match rest.first() {
            Some(t) if t.bytes().all(|b| b.is_ascii_digit()) => rest = &rest[1..],
            Some(t) if t.eq_ignore_ascii_case("IN") => rest = &rest[1..],
            Some(t) if ["CH", "HS", "CS"].iter().any(|c| t.eq_ignore_ascii_case(c)) => {
                return Err(format!("class {t}: trust anchors are for class IN"));
            }
            _ => break,
        }
    }
    let (&rtype, rdata) = rest
        .split_first()
        .ok_or_else(|| format!("{owner}: no record type (DS or DNSKEY)"))?;
    let key = if rtype.eq_ignore_ascii_case("DS") {
        AnchorKey::Ds(parse_ds(rdata)?)
    } else if rtype.eq_ignore_ascii_case("DNSKEY") {
        AnchorKey::Dnskey(parse_dnskey(rdata)?)
    } else {
        return Err(format!("expected a DS or DNSKEY record, got type {rtype}"));
    };
    Ok(TrustAnchor { zone, key })
}

fn parse_owner(owner: &str) -> Result<Name, String> {
    let mut name =
        Name::from_ascii(owner).map_err(|e| format!("{owner:?} is not a domain name: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// `key_tag algorithm digest_type digest` (the digest in hex, which may be
/// split across tokens).
fn parse_ds(rdata: &[&str]) -> Result<DS, String> {
    let [tag, alg, digest_type, digest @ ..] = rdata else {
        return Err("DS: expected key tag, algorithm, digest type and digest".into());
    };
    let tag: u16 = number(tag, "DS key tag")?;
    let alg = algorithm(alg)?;
    let digest_type = DigestType::from(number::<u8>(digest_type, "DS digest type")?);
    let hex: String = digest.concat();
    if hex.is_empty() {
        return Err("DS: no digest".into());
    }
    let digest = HEXUPPER_PERMISSIVE
        .decode(hex.as_bytes())
        .map_err(|_| format!("DS digest {hex:?} is not hexadecimal"))?;
    let want = match digest_type {
        DigestType::SHA1 => Some(20),
        DigestType::SHA256 => Some(32),
        DigestType::SHA384 => Some(48),
        _ => None,
    };
    match want {
        None => return Err(format!("DS digest type {digest_type:?} is not supported")),
        Some(n) if n != digest.len() => {
            return Err(format!(
                "DS digest is {} bytes, digest type {digest_type:?} makes {n}",
                digest.len()
            ));
        }
        Some(_) => {}
    }
    Ok(DS::new(tag, alg, digest_type, digest))
}

/// `flags protocol algorithm public-key` (the key in base64, which may be
/// split across tokens).
fn parse_dnskey(rdata: &[&str]) -> Result<DNSKEY, String> {
    let [flags, protocol, alg, key @ ..] = rdata else {
        return Err("DNSKEY: expected flags, protocol, algorithm and public key".into());
    };
    let flags: u16 = number(flags, "DNSKEY flags")?;
    if number::<u8>(protocol, "DNSKEY protocol")? != 3 {
        return Err(format!("DNSKEY protocol is {protocol}, it must be 3"));
    }
    if flags & 0x0100 == 0 {
        return Err(format!(
            "DNSKEY flags {flags}: not a zone key (256 or 257 expected)"
        ));
    }
    let alg = algorithm(alg)?;
    let b64: String = key.concat();
    if b64.is_empty() {
        return Err("DNSKEY: no public key".into());
    }
    let key = BASE64
        .decode(b64.as_bytes())
        .map_err(|_| "DNSKEY public key is not base64".to_string())?;
    Ok(DNSKEY::with_flags(flags, PublicKeyBuf::new(key, alg)))
}

/// An algorithm by number (13) or mnemonic (ECDSAP256SHA256), one that
/// can validate: an anchor whose algorithm cannot is a mistake to point out.
fn algorithm(s: &str) -> Result<Algorithm, String> {
    let n = match s.parse::<u8>() {
        Ok(n) => n,
        // The mnemonics of RFC 8624's table, as zone files may write them.
        Err(_) => match s.to_ascii_uppercase().as_str() {
            "RSASHA1" => 5,
            "RSASHA1-NSEC3-SHA1" => 7,
            "RSASHA256" => 8,
            "RSASHA512" => 10,
            "ECDSAP256SHA256" => 13,
            "ECDSAP384SHA384" => 14,
            "ED25519" => 15,
            _ => return Err(format!("unknown algorithm {s:?}")),
        },
    };
    let alg = Algorithm::from_u8(n);
    if !alg.is_supported() {
        return Err(format!("algorithm {s} cannot be validated"));
    }
    Ok(alg)
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what} {s:?} is not a number in range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The root's KSK-2017 as IANA publishes it (DS) and as `dig DNSKEY .`
    /// prints it, split across lines in parentheses.
    const ROOT: &str = "\
; IANA's root anchor
. 86400 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
.  IN DNSKEY 257 3 8 (
        AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3
        +/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kv
        ArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF
        0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+e
        oZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfd
        RUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwN
        R1AkUTV74bU= ) ; KSK-2017
";

    #[test]
    fn ds_and_dnskey_records_parse_across_lines() {
        let anchors = parse_anchors(ROOT).expect("valid");
        assert_eq!(anchors.len(), 2);
        assert!(anchors.iter().all(|a| a.zone.is_root()));
        let AnchorKey::Ds(ds) = &anchors[0].key else {
            panic!("DS first")
        };
        assert_eq!(ds.key_tag(), 20326);
        assert_eq!(ds.digest_type(), DigestType::SHA256);
        let AnchorKey::Dnskey(key) = &anchors[1].key else {
            panic!("DNSKEY second")
        };
        assert_eq!(key.calculate_key_tag().expect("tag"), 20326);
        assert!(
            ds.covers(&Name::root(), key).expect("digest"),
            "the DS is the DNSKEY's digest"
        );
    }

    #[test]
    fn owner_names_are_made_absolute() {
        let a = parse_anchors(
            "corp.example DS 31589 13 2 4D8C0000000000000000000000000000000000000000000000000000000000FF",
        )
        .expect("valid");
        assert_eq!(a[0].zone.to_string(), "corp.example.");
    }

    #[test]
    fn bad_records_name_their_line() {
        for (text, line, words) in [
            ("", 1, "no DS or DNSKEY record"),
            ("; only a comment\n", 1, "no DS or DNSKEY record"),
            (
                "\n\nexample. IN A 192.0.2.1\n",
                3,
                "expected a DS or DNSKEY record",
            ),
            ("example. DS 1 13 2 ABCD\n", 1, "2 bytes"),
            ("example. DS 1 13 2 XYZ\n", 1, "not hexadecimal"),
            ("example. DS 1 200 2 ABCD\n", 1, "cannot be validated"),
            ("\nexample. DNSKEY 257 3 13 (\n AAAA\n", 2, "never closed"),
            ("example. DNSKEY 257 2 13 AAAA\n", 1, "protocol"),
            ("example. DNSKEY 1 3 13 AAAA\n", 1, "not a zone key"),
            ("example. DNSKEY 257 3 13 !!!\n", 1, "not base64"),
            ("example. CH DS 1 13 2 ABCD\n", 1, "class IN"),
            ("x..y DS 1 13 2 ABCD\n", 1, "not a domain name"),
            ("example. )\n", 1, "without"),
        ] {
            let err = parse_anchors(text).expect_err(text);
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.why.contains(words), "{text:?}: {err}");
        }
    }
}
