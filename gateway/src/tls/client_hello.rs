//! The server name (SNI) of a ClientHello, read from the bytes the client sent.
//!
//! rustls' unbuffered server connection does not tell the server name it saw; the gateway
//! needs it for the audit log and the PROXY header. This reads it from the first record
//! (the ClientHello rustls then accepted or refused): a bounds-checked walk over the fields,
//! `None` for anything unexpected (a ClientHello split over records, no SNI, an IP literal
//! or a name that is not a DNS name). Only the handshake's own validation decides anything.

/// The host name of the ClientHello at the start of `bytes` (a TLS record), lower case.
pub(crate) fn server_name(bytes: &[u8]) -> Option<String> {
    let mut r = Reader(bytes);
    // Record: handshake (22), version, length.
    if r.u8()? != 22 {
        return None;
    }
    r.take(2)?;
    let mut rec = Reader(r.vec16()?);
    // Handshake: client_hello (1), 24-bit length.
    if rec.u8()? != 1 {
        return None;
    }
    let len = usize::from(rec.u8()?) << 16 | usize::from(rec.u16()?);
    let mut hello = Reader(rec.take(len)?);
    hello.take(2 + 32)?; // legacy_version, random
    hello.vec8()?; // legacy_session_id
    hello.vec16()?; // cipher_suites
    hello.vec8()?; // legacy_compression_methods
    let mut exts = Reader(hello.vec16()?);
    while !exts.0.is_empty() {
        let typ = exts.u16()?;
        let body = exts.vec16()?;
        if typ != 0 {
            continue;
        }
        let mut list = Reader(Reader(body).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                rustls::pki_types::DnsName::try_from(name).ok()?;
                if name.parse::<std::net::IpAddr>().is_ok() {
                    return None;
                }
                return Some(name.to_ascii_lowercase());
            }
        }
        return None;
    }
    None
}

/// A cursor over bytes; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record as a real client (rustls) sends it.
    fn hello(sni: Option<&str>) -> Vec<u8> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            crate::pki::compiled_in_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        cfg.enable_sni = sni.is_some();
        let name = rustls::pki_types::ServerName::try_from(sni.unwrap_or("example.org"))
            .expect("name")
            .to_owned();
        let mut c = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).expect("conn");
        let mut out = Vec::new();
        c.write_tls(&mut out).expect("write");
        out
    }

    #[test]
    fn reads_the_sni_of_a_real_client_hello() {
        assert_eq!(
            server_name(&hello(Some("Gateway.Example.ORG"))).as_deref(),
            Some("gateway.example.org")
        );
        assert_eq!(server_name(&hello(None)), None);
    }

    #[test]
    fn truncated_or_foreign_bytes_give_none() {
        let h = hello(Some("a.example"));
        for n in 0..h.len() {
            assert_eq!(
                server_name(h.get(..n).unwrap_or_default()),
                None,
                "prefix {n}"
            );
        }
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n\r\n"), None);
        let mut bad = h.clone();
        if let Some(b) = bad.get_mut(5) {
            *b = 2; // not a ClientHello
        }
        assert_eq!(server_name(&bad), None);
    }
}
