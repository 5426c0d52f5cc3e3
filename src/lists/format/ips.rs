//! # IPs
//! One IPv4 or IPv6 address or CIDR network a line, with `#` or `;`
//! comments, as Spamhaus DROP (`1.10.16.0/20 ; SBL256894`), abuse.ch's IP
//! blocklists and FireHOL's netsets are written. A network with bits set
//! past its prefix length is an invalid line (which of the two was meant
//! is a guess), as is anything after the address but a comment.
//!
//! Also here: the address an RPZ `rpz-ip` trigger owner spells
//! (`32.1.2.0.192.rpz-ip`, `48.zz.101.db8.2001.rpz-ip`), which the RPZ
//! parser hands over ([`parse_rpz_ip`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{EntryKind, NetEntry, Outcome};
use crate::matcher::Net;

pub(super) fn parse_ips(line: &str, emit: &mut dyn FnMut(NetEntry)) -> Outcome {
    let content = line
        .split_once(['#', ';'])
        .map_or(line, |(content, _comment)| content);
    let mut tokens = content.split_ascii_whitespace();
    let Some(first) = tokens.next() else {
        return Outcome::Skip;
    };
    if let Some(more) = tokens.next() {
        return Outcome::Invalid(format!(
            "expected one address or network a line, found {more:?} after {first:?}"
        ));
    }
    match Net::parse(first) {
        Ok(net) => {
            emit(NetEntry {
                net,
                kind: EntryKind::Block,
            });
            Outcome::Entries
        }
        Err(e) => Outcome::Invalid(e.to_string()),
    }
}

/// The network an RPZ `rpz-ip` trigger names: `trigger` is the owner
/// relative to the policy zone, without its `.rpz-ip` label, e.g.
/// `24.0.2.0.192` (192.0.2.0/24) or `48.zz.101.db8.2001`
/// (2001:db8:101::/48): the prefix length, then the address's parts in
/// reverse order, `zz` standing for the longest run of zero groups.
pub(super) fn parse_rpz_ip(trigger: &str) -> Result<Net, String> {
    let bad = |why: &str| format!("rpz-ip trigger {trigger:?}: {why}");
    let trigger = trigger.strip_suffix('.').unwrap_or(trigger);
    let mut labels = trigger.split('.');
    let len = labels
        .next()
        .filter(|l| !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|l| l.parse::<u8>().ok())
        .ok_or_else(|| bad("expected the prefix length first"))?;
    // The parts, in the address's order.
    let mut parts: Vec<&str> = labels.collect();
    parts.reverse();
    let addr = if parts.len() == 4 && parts.iter().all(|p| p.parse::<u8>().is_ok()) {
        let mut octets = [0u8; 4];
        for (o, p) in octets.iter_mut().zip(&parts) {
            *o = p.parse().map_err(|_| bad("not an IPv4 octet"))?;
        }
        IpAddr::V4(Ipv4Addr::from(octets))
    } else {
        IpAddr::V6(rpz_ipv6(&parts).ok_or_else(|| {
            bad("expected four IPv4 octets or up to eight IPv6 groups (zz for zeros)")
        })?)
    };
    Net::new(addr, len).map_err(|e| bad(&e.to_string()))
}

/// The IPv6 address of an rpz-ip trigger's groups (in address order).
fn rpz_ipv6(parts: &[&str]) -> Option<Ipv6Addr> {
    let zz = parts.iter().position(|p| p.eq_ignore_ascii_case("zz"));
    let written = parts.len() - usize::from(zz.is_some());
    if written > 8 || (zz.is_none() && written != 8) || (zz.is_some() && written == 8) {
        return None;
    }
    let mut groups = [0u16; 8];
    let mut at = 0;
    for (i, p) in parts.iter().enumerate() {
        if Some(i) == zz {
            at += 8 - written;
            continue;
        }
        if p.is_empty() || p.len() > 4 {
            return None;
        }
        *groups.get_mut(at)? = u16::from_str_radix(p, 16).ok()?;
        at += 1;
    }
    // Only one `zz`: a second one is a group that is not hex.
    Some(Ipv6Addr::from(groups))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nets(line: &str) -> (Outcome, Vec<String>) {
        let mut out = Vec::new();
        let outcome = parse_ips(line, &mut |e| out.push(e.net.to_string()));
        (outcome, out)
    }

    #[test]
    fn drop_and_abuse_ch_lines() {
        assert_eq!(
            nets("1.10.16.0/20 ; SBL256894"),
            (Outcome::Entries, vec!["1.10.16.0/20".into()])
        );
        assert_eq!(nets("; Spamhaus DROP List"), (Outcome::Skip, vec![]));
        assert_eq!(nets("# abuse.ch Feodo Tracker"), (Outcome::Skip, vec![]));
        assert_eq!(nets("   "), (Outcome::Skip, vec![]));
        assert_eq!(
            nets("192.0.2.7\t# botnet C2"),
            (Outcome::Entries, vec!["192.0.2.7/32".into()])
        );
        assert_eq!(
            nets("2001:db8::/32"),
            (Outcome::Entries, vec!["2001:db8::/32".into()])
        );
        for bad in [
            "192.0.2.7/24",
            "example.com",
            "1.2.3.4 5",
            "300.1.1.1",
            "::/129",
        ] {
            assert!(
                matches!(nets(bad), (Outcome::Invalid(_), ref v) if v.is_empty()),
                "{bad}"
            );
        }
        let (Outcome::Invalid(why), _) = nets("192.0.2.7/24") else {
            panic!()
        };
        assert!(why.contains("192.0.2.0/24"), "{why}");
    }

    #[test]
    fn rpz_ip_triggers() {
        let ok = |t: &str| parse_rpz_ip(t).map(|n| n.to_string());
        assert_eq!(ok("32.1.2.0.192"), Ok("192.0.2.1/32".into()));
        assert_eq!(ok("24.0.2.0.192"), Ok("192.0.2.0/24".into()));
        assert_eq!(ok("48.zz.101.db8.2001"), Ok("2001:db8:101::/48".into()));
        assert_eq!(ok("128.1.zz.db8.2001"), Ok("2001:db8::1/128".into()));
        assert_eq!(ok("128.1.zz"), Ok("::1/128".into()));
        assert_eq!(ok("0.zz"), Ok("::/0".into()));
        assert_eq!(ok("128.8.7.6.5.4.3.2.1"), Ok("1:2:3:4:5:6:7:8/128".into()));
        assert_eq!(ok("64.ZZ.1.db8.2001."), Ok("2001:db8:1::/64".into()));
        for bad in [
            "",
            "x.1.2.0.192",
            "24.1.2.0.192",
            "33.1.2.0.192",
            "24.2.0.192",
            "64.zz.zz.2001",
            "64.1.zz.2.3.4.5.6.7.8",
            "64.12345.zz",
            "64.g.zz",
            "129.zz",
        ] {
            assert!(parse_rpz_ip(bad).is_err(), "{bad}");
        }
        assert!(
            parse_rpz_ip("24.1.2.0.192")
                .unwrap_err()
                .contains("192.0.2.0/24")
        );
    }

    proptest! {
        #[test]
        fn never_panics(line in ".{0,60}") {
            let _ = parse_ips(&line, &mut |_| {});
            let _ = parse_rpz_ip(&line);
        }

        /// A network written as an rpz-ip trigger reads back as itself.
        #[test]
        fn rpz_ip_round_trips(a in any::<u128>(), len in 0u8..=128, v4 in any::<bool>()) {
            let (addr, len) = if v4 {
                (IpAddr::V4(Ipv4Addr::from(a as u32)), len % 33)
            } else {
                (IpAddr::V6(Ipv6Addr::from(a)), len)
            };
            let net = Net::new(addr, len).or_else(|_| {
                let masked = match addr {
                    IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
                        u32::from(a) & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0),
                    )),
                    IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
                        u128::from(a) & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0),
                    )),
                };
                Net::new(masked, len)
            }).unwrap();
            let trigger = match net.addr() {
                IpAddr::V4(a) => {
                    let o = a.octets();
                    format!("{len}.{}.{}.{}.{}", o[3], o[2], o[1], o[0])
                }
                IpAddr::V6(a) => {
                    let g: Vec<String> = a.segments().iter().rev().map(|s| format!("{s:x}")).collect();
                    format!("{len}.{}", g.join("."))
                }
            };
            prop_assert_eq!(parse_rpz_ip(&trigger), Ok(net));
        }
    }
}
