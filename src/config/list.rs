//! What the configuration says about one list: a plain description, no I/O.
//!
//! Name, source (file, URL or zone transfer), format, provenance, the answer
//! it gives and how it is kept current. `lists` turns a list's bytes into
//! names, `source` brings the bytes of remote lists; both read this
//! description, neither is imported by it.
//!
//! A list's guards are read here too ([`Checker::list_guards`]): the
//! publisher's signature a download must carry ([`Signed`]), the moment
//! the list stops blocking (`expires`) and the name that must stay blocked
//! while it is in force (`canary`, watched by `crate::canary`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::raw::Value;
use super::{Checker, Location, list_key};
use crate::lists::Format;
use crate::policy::{Action, EdeCode};

/// Who says a list's names must be blocked, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    pub authority: String,
    pub reason: String,
    pub reference: String,
}

/// Where a list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file (watched for changes).
    File(PathBuf),
    /// An `http://` or `https://` URL, fetched into the state directory.
    Http(String),
    /// An RPZ zone received by zone transfer into the state directory.
    Axfr(XfrSource),
}

impl Source {
    /// True when the list is kept in the state directory (downloaded or transferred).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Self::File(_))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Http(u) => f.write_str(u),
            Self::Axfr(x) => x.fmt(f),
        }
    }
}

/// How a remote list is kept current.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    /// Time between refreshes.
    pub refresh: Duration,
    /// Time allowed for one download.
    pub timeout: Duration,
    /// Largest body accepted, in bytes.
    pub max_size: u64,
    /// Largest fraction of entries a new version may lose before it is
    /// refused (the last good version stays loaded).
    pub max_shrink: f64,
}

impl Default for Fetch {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(6 * 3600),
            timeout: Duration::from_secs(60),
            max_size: 256 * 1024 * 1024,
            max_shrink: 0.5,
        }
    }
}

/// One configured list, validated.
#[derive(Debug, Clone)]
pub struct ListSpec {
    pub name: String,
    pub source: Source,
    /// The file the list is loaded from: the source itself, or the last good
    /// download in the state directory.
    pub path: PathBuf,
    /// Refresh settings (remote lists; a local list's `refresh` re-reads it).
    pub fetch: Fetch,
    /// `None` means detect from the content.
    pub format: Option<Format>,
    pub provenance: Provenance,
    pub action: Action,
    pub sinkhole_ipv4: Ipv4Addr,
    pub sinkhole_ipv6: Ipv6Addr,
    pub ttl: u32,
    pub ede: EdeCode,
    /// Whether a forwarded answer whose CNAME or DNAME chain passes through
    /// one of this list's names is blocked as that name would be.
    pub inspect_cname: bool,
    /// Whether a forwarded answer whose A or AAAA records fall in one of
    /// this list's networks (an `ips` list, RPZ `rpz-ip` triggers) is
    /// blocked as if its name were listed. Only lists with networks have
    /// anything to inspect, so the default (true) costs the others nothing;
    /// false leaves the list's networks out of the snapshot.
    pub inspect_answers: bool,
    /// The publisher's signature every copy must carry (`signature =
    /// "minisign"`): a copy without it, or whose signature does not verify,
    /// is never loaded.
    pub signature: Option<Signed>,
    /// When the list stops blocking (`expires`, as court orders and
    /// temporary measures do): from then on it is not loaded, and is
    /// reported expired (`crate::expiry`).
    pub expires: Option<SystemTime>,
    /// A name that must stay blocked by this list (`canary`), lowercase,
    /// without the final dot: `validate` fails when the list does not
    /// cover it, and the running server asks itself for it every
    /// `[block] canary_interval` (`crate::canary`). A copy that lost it
    /// still loads: catching that is the canary's job.
    pub canary: Option<String>,
    /// Where the list is declared in the config.
    pub location: Location,
}

impl ListSpec {
    /// Whether the list has expired at `now` (`expires`): it then blocks
    /// nothing.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }

    /// The EDE extra text: list, authority and reason, so that a user who
    /// sees only the DNS answer learns who blocked the name and why.
    pub fn ede_text(&self) -> String {
        let p = &self.provenance;
        let mut text = format!("blocked by {}", self.name);
        if !p.authority.is_empty() {
            text.push_str(&format!(" ({})", p.authority));
        }
        if !p.reason.is_empty() {
            text.push_str(": ");
            text.push_str(&p.reason);
        }
        text
    }
}

/// A list signed by its publisher with minisign: the key that must have
/// signed it and where the detached signature is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The publisher's public key, as the second line of its `minisign.pub`
    /// (base64, `RW...`); checked to decode when the config is read.
    pub public_key: String,
    /// The signature's URL: `signature_url`, by default the list's URL
    /// followed by `.minisig`, as `minisign -S` names the file it writes.
    pub url: String,
}

/// What `canary` accepts.
const WANT_CANARY: &str =
    r#"a domain name that must stay blocked, such as "canary.seized.example""#;

/// A canary as the list and the query path see it: lowercase, without the
/// final dot. A name the matcher could not hold (an IP address, a bad
/// label) is none.
fn canary_name(s: &str) -> Option<String> {
    crate::matcher::NameKey::from_text(s.trim(), true)
        .ok()
        .map(|k| k.to_string())
}

/// What `signature` accepts.
const WANT_SIGNATURE: &str = r#""minisign""#;

/// A list's guard keys as written in its `[[lists]]` table (the table
/// itself is `file.rs`'s, which no section imports).
pub(super) struct GuardKeys<'a> {
    pub(super) signature: &'a Option<Value>,
    pub(super) public_key: &'a Option<Value>,
    pub(super) signature_url: &'a Option<Value>,
    pub(super) expires: &'a Option<Value>,
    pub(super) canary: &'a Option<Value>,
}

/// What a list's guards are, once read.
pub(super) struct Guards {
    pub(super) signature: Option<Signed>,
    pub(super) expires: Option<SystemTime>,
    pub(super) canary: Option<String>,
}

impl Checker<'_> {
    /// The guards of the `index`th (0-based) `[[lists]]` table `l`, whose
    /// source is `source`: `signature`, `public_key`, `signature_url`,
    /// `expires` and `canary`.
    pub(super) fn list_guards(
        &mut self,
        index: usize,
        l: &GuardKeys<'_>,
        source: &Source,
    ) -> Guards {
        let key = |field: &str| list_key(index, field);
        Guards {
            signature: self.list_signature(&key, l, source),
            expires: self.opt_parse(
                &key("expires"),
                l.expires,
                r#"a UTC date and time such as "2027-01-31T00:00:00Z""#,
                |s| humantime::parse_rfc3339(s.trim()).ok(),
            ),
            canary: self.opt_parse(&key("canary"), l.canary, WANT_CANARY, canary_name),
        }
    }

    fn list_signature(
        &mut self,
        key: &dyn Fn(&str) -> String,
        l: &GuardKeys<'_>,
        source: &Source,
    ) -> Option<Signed> {
        let wanted = self
            .opt_parse(&key("signature"), l.signature, WANT_SIGNATURE, |s| {
                (s == "minisign").then_some(())
            })
            .is_some();
        let public_key = self.opt_parse(
            &key("public_key"),
            l.public_key,
            "a minisign public key: the second line of the publisher's minisign.pub (RW...)",
            |s| {
                let s = s.trim();
                minisign_verify::PublicKey::from_base64(s)
                    .ok()
                    .map(|_| s.to_owned())
            },
        );
        let url = self.opt_parse(
            &key("signature_url"),
            l.signature_url,
            r#"an http:// or https:// URL such as "https://example.org/list.txt.minisig""#,
            |s| (s.starts_with("http://") || s.starts_with("https://")).then(|| s.to_owned()),
        );
        // Each key that makes sense only with the others says so itself.
        let alone = |this: &mut Self, v: &Option<Value>, field: &str| {
            if let Some(v) = v {
                this.problem(
                    v,
                    format!("{}: applies only with signature = \"minisign\"", key(field)),
                );
            }
        };
        if l.signature.is_none() {
            alone(self, l.public_key, "public_key");
            alone(self, l.signature_url, "signature_url");
            return None;
        }
        let signature = l.signature.as_ref()?;
        let Source::Http(list_url) = source else {
            if !matches!(source, Source::File(p) if p.as_os_str().is_empty()) {
                self.problem(
                    signature,
                    format!(
                        "{}: applies only to http:// and https:// sources (a zone transfer has tsig; a local file is the operator's own)",
                        key("signature")
                    ),
                );
            }
            return None;
        };
        if l.public_key.is_none() {
            self.problem(
                signature,
                format!(
                    "{}: needs public_key, the publisher's minisign public key",
                    key("signature")
                ),
            );
        }
        if !wanted {
            return None;
        }
        Some(Signed {
            public_key: public_key?,
            url: url.unwrap_or_else(|| format!("{list_url}.minisig")),
        })
    }
}

/// A TSIG key (RFC 8945) for transfers, written as dig's `-y` takes it:
/// `[hmac-sha256:]name:base64-secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct Tsig {
    pub name: String,
    pub algorithm: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Tsig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "Tsig({} {})", self.algorithm, self.name)
    }
}

impl Tsig {
    /// Parses `[algorithm:]name:secret`; algorithms: hmac-sha256 (default), hmac-sha384, hmac-sha512.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let (algorithm, name, secret) = match parts.as_slice() {
            [name, secret] => ("hmac-sha256", *name, *secret),
            [alg, name, secret] => (*alg, *name, *secret),
            _ => return None,
        };
        let algorithm = algorithm.to_ascii_lowercase();
        if !matches!(
            algorithm.as_str(),
            "hmac-sha256" | "hmac-sha384" | "hmac-sha512"
        ) || name.is_empty()
        {
            return None;
        }
        let secret = data_encoding::BASE64
            .decode(secret.trim().as_bytes())
            .ok()?;
        Some(Self {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            algorithm,
            secret,
        })
    }

    /// The shared secret, for the signer that the zone transfer builds.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

/// A zone-transfer source: `axfr://ip:port/zone.name`, and a TSIG key if the
/// primary wants transfers signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfrSource {
    pub primary: SocketAddr,
    /// Lowercase, without the trailing dot.
    pub zone: String,
    pub tsig: Option<Tsig>,
}

impl XfrSource {
    /// Parses `axfr://ip:port/zone` (port 53 when omitted).
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("axfr://")?;
        let (host, zone) = rest.split_once('/')?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let primary = host.parse::<SocketAddr>().ok().or_else(|| {
            bare.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })?;
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        if zone.is_empty() || hickory_proto::rr::Name::from_ascii(&zone).is_err() {
            return None;
        }
        Some(Self {
            primary,
            zone,
            tsig: None,
        })
    }
}

impl std::fmt::Display for XfrSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "axfr://{}/{}", self.primary, self.zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zone_transfer_sources() {
        let s = XfrSource::parse("axfr://127.0.0.1:5300/RPZ.Example.").expect("valid");
        assert_eq!(s.primary, "127.0.0.1:5300".parse().expect("addr"));
        assert_eq!(s.zone, "rpz.example");
        assert_eq!(
            XfrSource::parse("axfr://[::1]/feed.test").map(|s| s.primary.port()),
            Some(53)
        );
        assert!(XfrSource::parse("axfr://primary.example/zone").is_none());
        assert!(XfrSource::parse("axfr://127.0.0.1/").is_none());
    }

    #[test]
    fn a_canary_is_a_name_normalised() {
        assert_eq!(
            canary_name(" Canary.Seized.EXAMPLE. ").as_deref(),
            Some("canary.seized.example")
        );
        for bad in ["", "bad name.example", "192.0.2.1", "a..b", "."] {
            assert_eq!(canary_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tsig_keys_parse_like_dig_y() {
        let k = Tsig::parse("hmac-sha512:xfr.Key.:c2VjcmV0").expect("valid");
        assert_eq!(
            (k.algorithm.as_str(), k.name.as_str(), k.secret()),
            ("hmac-sha512", "xfr.key", &b"secret"[..])
        );
        assert_eq!(
            Tsig::parse("k:c2VjcmV0").map(|k| k.algorithm),
            Some("hmac-sha256".into())
        );
        assert!(Tsig::parse("hmac-md5:k:c2VjcmV0").is_none(), "MD5 refused");
        assert!(Tsig::parse("k:not base64!").is_none());
        assert!(
            !format!("{k:?}").contains("c2Vj"),
            "the secret never prints"
        );
    }
}
