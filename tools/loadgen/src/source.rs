//! Which address the next query leaves from: `count` addresses of
//! 127.0.0.0/8 from `first` upwards, in turn, each one's use recorded so
//! that the report can say how many distinct clients the server saw.

use std::net::Ipv4Addr;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Only loopback addresses are local to `lo` without configuration
    /// (and no traffic may leave the machine).
    #[error("the {count} addresses from {first} must all lie in 127.0.0.0/8")]
    NotLoopback { first: Ipv4Addr, count: u32 },
}

/// The cycle of source addresses.
pub(crate) struct Sources {
    first: u32,
    next: u32,
    used: Vec<bool>,
}

impl Sources {
    pub(crate) fn new(first: Ipv4Addr, count: u32) -> Result<Self, Error> {
        let last = u32::from(first).checked_add(count.saturating_sub(1));
        if count == 0 || first.octets()[0] != 127 || last.is_none_or(|l| l >> 24 != 127) {
            return Err(Error::NotLoopback { first, count });
        }
        Ok(Self {
            first: u32::from(first),
            next: 0,
            used: vec![false; count as usize],
        })
    }

    /// The address for the next query (as a `u32` in host order).
    pub(crate) fn take(&mut self) -> u32 {
        let i = self.next;
        self.used[i as usize] = true;
        self.next = if i as usize + 1 == self.used.len() {
            0
        } else {
            i + 1
        };
        self.first + i
    }

    pub(crate) fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.used.len()
    }

    /// How many distinct addresses have sent.
    pub(crate) fn used(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cycles_through_its_addresses() {
        let mut s = Sources::new(Ipv4Addr::new(127, 1, 0, 254), 3).unwrap();
        let got: Vec<Ipv4Addr> = (0..4).map(|_| Ipv4Addr::from(s.take())).collect();
        assert_eq!(
            got,
            [
                Ipv4Addr::new(127, 1, 0, 254),
                Ipv4Addr::new(127, 1, 0, 255),
                Ipv4Addr::new(127, 1, 1, 0),
                Ipv4Addr::new(127, 1, 0, 254),
            ]
        );
        assert_eq!(s.used(), 3);
    }

    #[test]
    fn counts_only_addresses_that_sent() {
        let mut s = Sources::new(Ipv4Addr::new(127, 1, 0, 0), 65_536).unwrap();
        for _ in 0..10 {
            s.take();
        }
        assert_eq!((s.used(), s.len()), (10, 65_536));
    }

    #[test]
    fn refuses_anything_outside_loopback() {
        let bad = [
            (Ipv4Addr::new(127, 255, 255, 255), 2),
            (Ipv4Addr::new(10, 0, 0, 1), 1),
            (Ipv4Addr::new(127, 0, 0, 1), 0),
            (Ipv4Addr::new(255, 255, 255, 255), 2),
        ];
        for (first, count) in bad {
            assert!(Sources::new(first, count).is_err(), "{first} x {count}");
        }
        assert!(Sources::new(Ipv4Addr::new(127, 0, 0, 0), 1 << 24).is_ok());
    }
}
