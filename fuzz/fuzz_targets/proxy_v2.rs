//! The PROXY v2 writer (`tcp_proxy::proxy_header`) round trip: whatever the addresses and
//! TLS facts, the header is either refused with an error or decodes, with an independent
//! decoder written here from the specification, to exactly those facts.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use gateway::tcp_proxy::{self, TlsInfo};

#[derive(Debug, Arbitrary)]
struct Input {
    peer: (bool, [u8; 16], u16),
    local: (bool, [u8; 16], u16),
    verified: bool,
    version: String,
    cipher: String,
    cn: Option<String>,
    dn: Option<String>,
    sni: Option<String>,
    /// Repeat the strings this many times (long fields without long inputs).
    blow_up: u8,
}

fn addr((v6, b, port): (bool, [u8; 16], u16)) -> SocketAddr {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    SocketAddr::new(ip, port)
}

fn v6(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v) => SocketAddr::new(IpAddr::V6(v.ip().to_ipv6_mapped()), v.port()),
        other => other,
    }
}

/// TLVs of a buffer: (type, value).
fn tlvs(mut b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 3, "truncated TLV header");
        let len = usize::from(u16::from_be_bytes([b[1], b[2]]));
        assert!(b.len() >= 3 + len, "TLV value runs past the header");
        out.push((b[0], &b[3..3 + len]));
        b = &b[3 + len..];
    }
    out
}

libfuzzer_sys::fuzz_target!(|input: Input| {
    let n = usize::from(input.blow_up % 8) * 4096 + 1;
    let big = |s: &str| s.repeat(n.min(65_536 / s.len().max(1) + 2));
    let info = TlsInfo {
        client_cert_verified: input.verified,
        version: input.version.clone(),
        cipher: input.cipher.clone(),
        cn: input.cn.as_deref().map(big),
        subject_dn: input.dn.as_deref().map(big),
        sni: input.sni.clone(),
    };
    let (peer, local) = (addr(input.peer), addr(input.local));
    let Ok(h) = tcp_proxy::proxy_header(peer, local, &info) else {
        return;
    };
    // Signature, version 2 + PROXY, family/protocol, length.
    assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(h[12], 0x21);
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    assert_eq!(h.len(), 16 + len, "length field matches the header");
    let body = &h[16..];
    let (src, dst, rest) = match h[13] {
        0x11 => {
            let ip = |o: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[o],
                    body[o + 1],
                    body[o + 2],
                    body[o + 3],
                ))
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            (
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
                &body[12..],
            )
        }
        0x21 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            (
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
                &body[36..],
            )
        }
        other => panic!("family/protocol byte {other:#x}"),
    };
    if peer.is_ipv4() == local.is_ipv4() {
        assert_eq!((src, dst), (peer, local));
    } else {
        assert_eq!((src, dst), (v6(peer), v6(local)));
    }
    let top = tlvs(rest);
    let authority: Vec<&[u8]> = top.iter().filter(|t| t.0 == 0x02).map(|t| t.1).collect();
    match &info.sni {
        Some(s) => assert_eq!(authority, vec![s.as_bytes()]),
        None => assert!(authority.is_empty()),
    }
    let ssl: Vec<&[u8]> = top.iter().filter(|t| t.0 == 0x20).map(|t| t.1).collect();
    assert_eq!(ssl.len(), 1);
    let ssl = ssl[0];
    assert!(ssl.len() >= 5);
    assert_eq!(ssl[0] & 1, 1, "PP2_CLIENT_SSL");
    assert_eq!(ssl[0] & 6 != 0, info.client_cert_verified);
    let verify = u32::from_be_bytes([ssl[1], ssl[2], ssl[3], ssl[4]]);
    assert_eq!(verify == 0, info.client_cert_verified);
    let sub = tlvs(&ssl[5..]);
    let get = |t: u8| sub.iter().find(|s| s.0 == t).map(|s| s.1);
    assert_eq!(get(0x21), Some(info.version.as_bytes()));
    assert_eq!(
        get(0x23),
        (!info.cipher.is_empty()).then_some(info.cipher.as_bytes())
    );
    assert_eq!(get(0x22), info.cn.as_deref().map(str::as_bytes));
    assert_eq!(get(0xE0), info.subject_dn.as_deref().map(str::as_bytes));
});
