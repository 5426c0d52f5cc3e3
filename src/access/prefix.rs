//! A client's network as a key: the address cut to a prefix, with its
//! family, in 9 bytes that compare and hash cheaply. The rate limiter and
//! the refused log both count clients by it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::rules::{Cidr, mask32, mask64};

/// A client's network as the limiter and the refused log count it: the
/// address cut to a prefix, with its family, as one comparable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct PrefixKey {
    /// 0 = empty slot, 4 or 6 = family.
    pub(super) family: u8,
    /// The prefix's bits: IPv4 in the low 32 bits, IPv6 its top 64 bits.
    pub(super) bits: u64,
}

impl PrefixKey {
    pub(super) fn of(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => Self {
                family: 4,
                bits: u64::from(u32::from(a) & mask32(v4_prefix)),
            },
            IpAddr::V6(a) => Self {
                family: 6,
                bits: ((u128::from(a) >> 64) as u64) & mask64(v6_prefix),
            },
        }
    }

    pub(super) fn hash(self, seed: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(
            &self.bits.to_le_bytes(),
            seed ^ u64::from(self.family),
        )
    }

    pub(super) fn to_cidr(self, v4_prefix: u8, v6_prefix: u8) -> Cidr {
        if self.family == 4 {
            Cidr::new(IpAddr::V4(Ipv4Addr::from(self.bits as u32)), v4_prefix)
        } else {
            Cidr::new(
                IpAddr::V6(Ipv6Addr::from(u128::from(self.bits) << 64)),
                v6_prefix,
            )
        }
    }
}
