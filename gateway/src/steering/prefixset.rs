//! The blocklist as the accept path reads it: a sorted set of disjoint address ranges, one
//! per address family, looked up by binary search (O(log n) whatever the number of
//! prefixes), instead of a scan over every CIDR.

use std::net::IpAddr;

use super::config::Cidr;

/// Disjoint, sorted, merged `[start, end]` ranges of one family.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Ranges<T> {
    starts: Vec<T>,
    ends: Vec<T>,
}

impl<T: Copy + Ord + num_like::Succ> Ranges<T> {
    fn build(mut r: Vec<(T, T)>) -> Self {
        r.sort_unstable();
        let mut starts: Vec<T> = Vec::with_capacity(r.len());
        let mut ends: Vec<T> = Vec::with_capacity(r.len());
        for (s, e) in r {
            match ends.last_mut() {
                // Overlapping or adjacent to the previous range: extend it.
                Some(last) if s <= last.succ_saturating() => {
                    if e > *last {
                        *last = e;
                    }
                }
                _ => {
                    starts.push(s);
                    ends.push(e);
                }
            }
        }
        Ranges { starts, ends }
    }

    fn contains(&self, x: T) -> bool {
        // The last range starting at or before x.
        let i = self.starts.partition_point(|s| *s <= x);
        i > 0 && x <= self.ends[i - 1]
    }
}

mod num_like {
    /// `x + 1`, saturating (to merge adjacent ranges).
    pub(super) trait Succ {
        fn succ_saturating(self) -> Self;
    }
    impl Succ for u32 {
        fn succ_saturating(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Succ for u128 {
        fn succ_saturating(self) -> Self {
            self.saturating_add(1)
        }
    }
}

/// A set of IPv4 and IPv6 prefixes with logarithmic membership tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PrefixSet {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    len: usize,
}

impl PrefixSet {
    /// Builds the set (prefixes may overlap or repeat).
    pub fn new<'a>(nets: impl IntoIterator<Item = &'a Cidr>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut len = 0;
        for n in nets {
            len += 1;
            match n.addr() {
                IpAddr::V4(a) => {
                    let s = u32::from(a);
                    let host = u32::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0);
                    v4.push((s, s | host));
                }
                IpAddr::V6(a) => {
                    let s = u128::from(a);
                    let host = u128::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0);
                    v6.push((s, s | host));
                }
            }
        }
        PrefixSet {
            v4: Ranges::build(v4),
            v6: Ranges::build(v6),
            len,
        }
    }

    /// Whether `ip` lies in one of the prefixes (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.contains(u32::from(a)),
            IpAddr::V6(a) => self.v6.contains(u128::from(a)),
        }
    }

    /// Number of prefixes it was built from.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it was built from no prefix.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn matches_cidr_semantics() {
        let nets: Vec<Cidr> = [
            "203.0.113.0/24",
            "203.0.113.128/25",
            "198.51.100.7/32",
            "198.51.100.8/32",
            "10.0.0.0/8",
            "2001:db8::/32",
            "2001:db8:1::/48",
            "::/0",
        ]
        .iter()
        .map(|s| s.parse().expect("cidr"))
        .collect();
        let s = PrefixSet::new(&nets[..7]);
        for (ip, want) in [
            ("203.0.113.5", true),
            ("203.0.114.0", false),
            ("198.51.100.7", true),
            ("198.51.100.8", true),
            ("198.51.100.9", false),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("::ffff:10.1.2.3", true),
            ("2001:db8:ffff::1", true),
            ("2001:db9::1", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(s.contains(ip), want, "{ip}");
        }
        let all = PrefixSet::new(&nets);
        assert!(all.contains("::1".parse().expect("ip")));
        assert!(!all.contains("192.0.2.1".parse().expect("ip")));
        assert!(PrefixSet::new(&[]).is_empty());
    }

    /// 10,000 random prefixes (both families): the set answers exactly what a scan over the
    /// CIDRs answers, and a lookup is far cheaper than the scan.
    #[test]
    fn ten_thousand_prefixes_agree_with_a_scan_and_are_fast() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut nets = Vec::with_capacity(10_000);
        for i in 0..10_000 {
            let r = rng.next();
            let c = if i % 2 == 0 {
                let p = 8 + (r % 25) as u8;
                Cidr::new(IpAddr::from(std::net::Ipv4Addr::from(r as u32)), p)
            } else {
                let p = 16 + (r % 113) as u8;
                let a = (u128::from(r) << 64) | u128::from(rng.next());
                Cidr::new(IpAddr::from(std::net::Ipv6Addr::from(a)), p)
            };
            nets.push(c.expect("cidr"));
        }
        let set = PrefixSet::new(&nets);
        assert_eq!(set.len(), 10_000);
        // Probes: addresses inside some prefixes, and random ones.
        let mut probes: Vec<IpAddr> = nets.iter().step_by(7).map(|n| n.addr()).collect();
        for _ in 0..2_000 {
            let r = rng.next();
            probes.push(if r % 2 == 0 {
                IpAddr::from(std::net::Ipv4Addr::from(r as u32))
            } else {
                IpAddr::from(std::net::Ipv6Addr::from(
                    (u128::from(r) << 64) | u128::from(rng.next()),
                ))
            });
        }
        let mut hits = 0;
        for ip in &probes {
            let scan = nets.iter().any(|n| n.contains(*ip));
            assert_eq!(set.contains(*ip), scan, "{ip}");
            hits += usize::from(scan);
        }
        assert!(hits > probes.len() / 5, "probes hit prefixes: {hits}");

        let t = Instant::now();
        let mut n = 0usize;
        for _ in 0..50 {
            for ip in &probes {
                n += usize::from(set.contains(*ip));
            }
        }
        let set_time = t.elapsed();
        let t = Instant::now();
        let mut m = 0usize;
        for ip in &probes {
            m += usize::from(nets.iter().any(|c| c.contains(*ip)));
        }
        let scan_time = t.elapsed() * 50;
        assert_eq!(n, m * 50);
        assert!(
            set_time * 20 < scan_time,
            "prefix set {set_time:?} vs linear scan {scan_time:?} for {} lookups",
            probes.len() * 50
        );
    }
}
