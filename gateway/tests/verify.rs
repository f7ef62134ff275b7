//! `gateway verify`: each check printed, exit code 0 only when accepted.

/// The test PKI (one CA/leaf builder), from the test-support crate's sources (tests/src).
#[path = "../../tests/src/certs.rs"]
mod certs;
/// The CRL/OCSP test servers and the revocation test CA, from the test-support crate's
/// sources (tests/src).
#[path = "../../tests/src/status_servers.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn verify(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("verify")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run gateway verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn verify_offline_with_crl_files_and_online_with_ocsp() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("Verify CA");
    std::fs::write(d.join("ca.pem"), &ca.pem).unwrap();
    std::fs::write(d.join("ca.crl"), ca.crl(&[2], -60, 3600)).unwrap();
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Issuer);
    ocsp.set(1, "good");
    let good = ca.leaf(1, None, Some(&ocsp_url));
    let revoked = ca.leaf(2, None, None);
    std::fs::write(d.join("good.pem"), &good.pem).unwrap();
    std::fs::write(d.join("revoked.pem"), &revoked.pem).unwrap();

    let (code, out) = verify(d, &["good.pem", "--ca", "ca.pem", "--crl", "ca.crl"]);
    assert_eq!(code, 0, "{out}");
    for what in [
        "validity",
        "key policy",
        "extended key usage",
        "trust",
        "revocation",
    ] {
        assert!(
            out.contains(&format!("[ok  ] {what}")),
            "{what} missing: {out}"
        );
    }
    assert!(out.contains("verdict: ACCEPTED"), "{out}");

    let (code, out) = verify(d, &["revoked.pem", "--ca", "ca.pem", "--crl", "ca.crl"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] revocation") && out.contains("revoked"),
        "{out}"
    );
    assert!(out.contains("verdict: REJECTED"), "{out}");

    // Fail closed: no CRL and offline means no status.
    let (code, out) = verify(d, &["good.pem", "--ca", "ca.pem"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--online"), "{out}");

    // Online: the certificate's OCSP responder answers.
    let (code, out) = verify(d, &["good.pem", "--ca", "ca.pem", "--online"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("according to OCSP"), "{out}");

    // --at after the CRL's nextUpdate: the CRL is stale.
    let (code, out) = verify(
        d,
        &[
            "good.pem",
            "--ca",
            "ca.pem",
            "--crl",
            "ca.crl",
            "--at",
            "2100-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("stale"), "{out}");

    // An untrusted chain fails the trust check.
    let other = Ca::new("Other CA");
    std::fs::write(d.join("other.pem"), &other.pem).unwrap();
    let (code, out) = verify(d, &["good.pem", "--ca", "other.pem", "--crl", "ca.crl"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[FAIL] trust"), "{out}");
    assert!(
        out.contains("failed step: RFC 5280 6.1.3 (a)(4) name chaining"),
        "{out}"
    );

    // A certificate that does not parse is a refusal (exit 1) naming the problem, not an error.
    std::fs::write(
        d.join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (code, out) = verify(d, &["junk.pem", "--ca", "ca.pem", "--crl", "ca.crl"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[FAIL] syntax"), "{out}");
    assert!(out.contains("verdict: REJECTED"), "{out}");

    let (code, out) = verify(d, &["good.pem", "--ca", "ca.pem", "--at", "yesterday"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("RFC 3339"), "{out}");
}
