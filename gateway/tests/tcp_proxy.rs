//! Raw TCP mode: the backend receives a PROXY protocol v2 header, read here by a parser
//! written from the specification (not the `ppp` crate that encodes it), then the stream.

/// The backend/client test PKI and TLS peers, from the test-support crate's sources
/// (tests/src).
#[path = "../../tests/src/tls_peers.rs"]
mod access_support;
/// The test PKI (one CA/leaf builder), from the test-support crate's sources (tests/src).
#[path = "../../tests/src/certs.rs"]
mod certs;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use access_support::Ca;
use gateway::pki::identity::CertIdentity;
use gateway::tcp_proxy::{proxy_header, proxy_tcp, TlsInfo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a PROXY v2 header says, as decoded by the test's own parser.
#[derive(Debug, Default)]
struct Parsed {
    command: u8,
    family: u8,
    src: Option<SocketAddr>,
    dst: Option<SocketAddr>,
    tlvs: Vec<(u8, Vec<u8>)>,
    ssl_client: u8,
    ssl_verify: u32,
    ssl_subs: Vec<(u8, Vec<u8>)>,
}

fn tlvs(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 3, "truncated TLV");
        let len = usize::from(u16::from_be_bytes([b[1], b[2]]));
        assert!(b.len() >= 3 + len, "TLV overruns header");
        out.push((b[0], b[3..3 + len].to_vec()));
        b = &b[3 + len..];
    }
    out
}

/// Parses a complete header; returns it and the number of bytes it took.
fn parse_v2(h: &[u8]) -> (Parsed, usize) {
    assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
    assert_eq!(h[12] >> 4, 2, "version 2");
    let mut p = Parsed {
        command: h[12] & 0x0f,
        family: h[13],
        ..Default::default()
    };
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    let body = &h[16..16 + len];
    let addr_len = match p.family {
        0x11 => {
            let ip = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&body[o..o + 4]).expect("4"));
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            p.src = Some(SocketAddr::new(ip(0), port(8)));
            p.dst = Some(SocketAddr::new(ip(4), port(10)));
            12
        }
        0x21 => {
            let ip = |o: usize| IpAddr::from(<[u8; 16]>::try_from(&body[o..o + 16]).expect("16"));
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            p.src = Some(SocketAddr::new(ip(0), port(32)));
            p.dst = Some(SocketAddr::new(ip(16), port(34)));
            36
        }
        other => panic!("unexpected family/protocol {other:#x}"),
    };
    p.tlvs = tlvs(&body[addr_len..]);
    if let Some((_, v)) = p.tlvs.iter().find(|(t, _)| *t == 0x20) {
        p.ssl_client = v[0];
        p.ssl_verify = u32::from_be_bytes([v[1], v[2], v[3], v[4]]);
        p.ssl_subs = tlvs(&v[5..]);
    }
    (p, 16 + len)
}

fn sub(p: &Parsed, t: u8) -> Option<String> {
    p.ssl_subs
        .iter()
        .find(|(k, _)| *k == t)
        .map(|(_, v)| String::from_utf8(v.clone()).expect("utf8"))
}

#[tokio::test]
async fn tls_client_reaches_backend_with_proxy_v2_tlvs() {
    let ca = Ca::new("Test CA");
    let server = ca.server(false);
    let client = ca.client("alice", "Ops");

    // Backend: reads the header, then answers "echo:" + what follows.
    let be = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let be_addr = be.local_addr().expect("addr");
    let backend = tokio::spawn(async move {
        let (mut s, _) = be.accept().await.expect("accept");
        let mut buf = vec![0u8; 16];
        s.read_exact(&mut buf).await.expect("fixed part");
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        buf.resize(16 + len, 0);
        s.read_exact(&mut buf[16..]).await.expect("rest");
        let (parsed, _) = parse_v2(&buf);
        let mut data = [0u8; 4];
        s.read_exact(&mut data).await.expect("payload");
        s.write_all(b"echo:").await.expect("w");
        s.write_all(&data).await.expect("w");
        s.shutdown().await.expect("shutdown");
        parsed
    });

    // Gateway side: TLS with a required client certificate, then proxy_tcp.
    let gw = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gw_addr = gw.local_addr().expect("addr");
    let acceptor =
        tokio_rustls::TlsAcceptor::from(access_support::server_config(&server, Some(&ca)));
    let gateway = tokio::spawn(async move {
        let (tcp, peer) = gw.accept().await.expect("accept");
        let local = tcp.local_addr().expect("local");
        let tls = acceptor.accept(tcp).await.expect("handshake");
        let conn = tls.get_ref().1;
        let id = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| CertIdentity::from_der(c).expect("identity"));
        let info = TlsInfo::from_session(&gateway::tls::SessionInfo::of(conn), id.as_ref());
        proxy_tcp(
            tls,
            peer,
            local,
            &info,
            be_addr,
            gateway::tcp_proxy::RelayLimits::default(),
            None::<gateway::tcp_proxy::NoRecheck>,
        )
        .await
        .expect("proxied");
    });

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).expect("root");
    let cfg = rustls::ClientConfig::builder_with_provider(access_support::provider())
        .with_safe_default_protocol_versions()
        .expect("v")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client.der()], client.key_der())
        .expect("client cert");
    let tcp = tokio::net::TcpStream::connect(gw_addr)
        .await
        .expect("connect");
    let client_addr = tcp.local_addr().expect("client addr");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("client handshake");
    tls.write_all(b"ping").await.expect("send");
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).await.expect("reply");
    assert_eq!(reply, b"echo:ping");
    tls.shutdown().await.expect("client close");
    drop(tls);
    gateway.await.expect("gateway task");

    let p = backend.await.expect("backend task");
    assert_eq!(p.command, 0x1, "PROXY command");
    assert_eq!(p.family, 0x11, "TCP over IPv4");
    assert_eq!(p.src, Some(client_addr), "source is the TLS client");
    assert_eq!(p.dst, Some(gw_addr), "destination is the gateway listener");
    assert_eq!(p.ssl_client, 0x07, "SSL + CERT_CONN + CERT_SESS");
    assert_eq!(p.ssl_verify, 0, "client certificate verified");
    assert_eq!(sub(&p, 0x21).as_deref(), Some("TLSv1.3"));
    let cipher = sub(&p, 0x23).expect("cipher");
    assert!(cipher.starts_with("TLS13_AES_"), "{cipher}");
    assert_eq!(sub(&p, 0x22).as_deref(), Some("alice"));
    let dn = sub(&p, 0xE0).expect("subject DN");
    assert!(dn.contains("CN=alice") && dn.contains("OU=Ops"), "{dn}");
    assert!(
        p.tlvs.iter().any(|(t, v)| *t == 0x02 && v == b"localhost"),
        "SNI authority TLV"
    );
}

#[test]
fn header_without_certificate_and_mixed_families() {
    let info = TlsInfo {
        client_cert_verified: false,
        version: "TLSv1.2".into(),
        cipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
        ..TlsInfo::default()
    };
    let peer: SocketAddr = "[2001:db8::1]:40000".parse().expect("addr");
    let local: SocketAddr = "192.0.2.10:443".parse().expect("addr");
    let h = proxy_header(peer, local, &info).expect("header");
    let (p, used) = parse_v2(&h);
    assert_eq!(used, h.len(), "length field covers exactly the header");
    assert_eq!(p.family, 0x21, "TCP over IPv6 (v4 address mapped)");
    assert_eq!(p.src, Some(peer));
    assert_eq!(
        p.dst,
        Some("[::ffff:192.0.2.10]:443".parse().expect("addr"))
    );
    assert_eq!(p.ssl_client, 0x01, "SSL only, no certificate");
    assert_ne!(p.ssl_verify, 0, "nothing verified");
    assert_eq!(sub(&p, 0x22), None);
    assert_eq!(sub(&p, 0x21).as_deref(), Some("TLSv1.2"));
}
