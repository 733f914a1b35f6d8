//! Which network addresses the registry will not call on a user's behalf (webhook
//! receivers): everything that is not a public unicast address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses a registry must not be made to call on someone's behalf: the special-purpose
/// ranges below, in IPv4 and IPv6 (an IPv4-mapped address counts as the IPv4 address; the
/// other prefixes that embed an IPv4 address are refused whole).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

/// IPv4 ranges a webhook may not reach: every entry of IANA's IPv4 Special-Purpose Address
/// Registry (loopback, private, shared, link-local, documentation, benchmarking, the 6to4
/// relay, reserved), multicast and broadcast.
const FORBIDDEN_V4: [(u32, u8); 19] = [
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space (carrier-grade NAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local (cloud metadata services)
    (0xac10_0000, 12), // 172.16.0.0/12
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 TEST-NET-1
    (0xc01f_c400, 24), // 192.31.196.0/24 AS112-v4
    (0xc034_c100, 24), // 192.52.193.0/24 AMT
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast
    (0xc0a8_0000, 16), // 192.168.0.0/16
    (0xc0af_3000, 24), // 192.175.48.0/24 direct delegation AS112
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 TEST-NET-2
    (0xcb00_7100, 24), // 203.0.113.0/24 TEST-NET-3
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, and the broadcast address
    (0xffff_ffff, 32), // 255.255.255.255
];

/// IPv6 ranges a webhook may not reach: IANA's IPv6 Special-Purpose Address Registry, the
/// prefixes that embed an IPv4 address (IPv4-compatible, NAT64, 6to4, Teredo: a gateway
/// would take them to any IPv4 address, private ones included), site-local, unique local,
/// link-local and multicast. IPv4-mapped addresses are judged as the IPv4 address they map.
const FORBIDDEN_V6: [(u128, u8); 13] = [
    (0, 96), // ::/96: unspecified, loopback, IPv4-compatible
    (0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96), // 64:ff9b::/96 NAT64
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48), // 64:ff9b:1::/48 local-use NAT64
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64), // 100::/64 discard-only
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23), // 2001::/23 IETF assignments (Teredo)
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // 2001:db8::/32 documentation
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16), // 2002::/16 6to4
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20), // 3fff::/20 documentation
    (0x5f00_0000_0000_0000_0000_0000_0000_0000, 16), // 5f00::/16 segment routing
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7), // fc00::/7 unique local
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10), // fe80::/10 link-local
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10), // fec0::/10 site-local
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8), // ff00::/8 multicast
];

fn in_ranges<const N: usize, T>(ip: T, ranges: &[(T, u8); N], bits: u32) -> bool
where
    T: Copy + PartialEq + std::ops::Shr<u32, Output = T>,
{
    ranges.iter().any(|&(net, len)| {
        let shift = bits - u32::from(len);
        shift == bits || (ip >> shift) == (net >> shift)
    })
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    in_ranges(u32::from(ip), &FORBIDDEN_V4, 32)
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    in_ranges(u128::from(ip), &FORBIDDEN_V6, 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
            "224.0.0.1",
            "0.1.2.3",
            "127.255.0.1",
            "169.254.169.254",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "198.18.0.1",
            "198.19.255.254",
            "198.51.100.7",
            "203.0.113.9",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::10.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::808:808",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:a00:1::1",
            "3fff::1",
            "5f00::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "2606:4700::1111",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
            "198.17.255.255",
            "::ffff:8.8.8.8",
            "2001:4860::8888",
            "2003::1",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }
}
