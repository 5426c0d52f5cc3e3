//! # Hosts
//! `IP name [name...] [# comment]`, as in `/etc/hosts`. Any IPv4 or IPv6
//! address is accepted (IPv6 with a `%zone`, too), since lists disagree on
//! 0.0.0.0, 127.0.0.1, `::` and `::1`. Like glibc, a `#` anywhere starts a
//! comment. The boilerplate names every hosts file carries (`localhost`,
//! `broadcasthost`, `ip6-*`...) are skipped: blocking them would break the
//! machine's own loopback resolution.

use std::net::IpAddr;

use super::{Entry, Outcome, block};

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

pub(super) fn is_hosts_boilerplate(name: &str) -> bool {
    // The first-byte test keeps the common path to one comparison.
    matches!(
        name.as_bytes().first(),
        Some(b'l' | b'L' | b'b' | b'B' | b'i' | b'I' | b'0')
    ) && HOSTS_BOILERPLATE
        .iter()
        .any(|b| name.eq_ignore_ascii_case(b))
}

pub(super) fn is_ip(token: &str) -> bool {
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

pub(super) fn parse_hosts<'a>(line: &'a str, emit: &mut dyn FnMut(Entry<'a>)) -> Outcome {
    let content = line
        .split_once('#')
        .map_or(line, |(content, _comment)| content);
    let mut tokens = content.split_ascii_whitespace();
    let Some(ip) = tokens.next() else {
        return Outcome::Skip;
    };
    if !is_ip(ip) {
        // Detection read most of the file as hosts (see `Format::detect`);
        // a line of the other format is named as such.
        if ip.starts_with("||") || ip.starts_with("@@") {
            return Outcome::Invalid(
                "an adblock rule in a list read as hosts (most of its lines are); set format = \"adblock\" in its [[lists]] if the list is adblock".to_owned(),
            );
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

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
}
