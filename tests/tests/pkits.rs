//! NIST PKITS (2011), sections 4.1-4.7, 4.13, 4.14 and 4.16, through the code path of the
//! handshake: `SeeClientVerifier` (RFC 5280 path validation under the key policy, the
//! in-handshake status check) and then `RevocationChecker::check_at` (the awaited status
//! check), with the trust anchor TrustAnchorRootCertificate, the case's CRLs as `crl_files`,
//! `check_intermediates = true`, no clientAuth EKU required, at 2020-01-01T00:00:00Z.
//!
//! The data comes from the pinned pip package `cryptography-vectors`, which
//! `cargo xtask test` installs into `./.tools/pyvectors` (`PKITS_DATA` overrides the
//! location). Prints `section: passed/total`; fails on any false accept, and on any
//! mismatch that is not one of the documented S.E.E. policy deviations (docs/PKITS.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway::pki::keypolicy::{KeyPolicy, RequiredEku};
use gateway::revocation::{RevocationCache, RevocationChecker, RevocationConfig, RevocationOrder};
use gateway::status::StatusCheck;
use gateway::tls::client_verifier::SeeClientVerifier;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

/// Cases where the S.E.E. policy refuses what PKITS accepts (docs/PKITS.md).
const DEVIATIONS: &[(&str, &str)] = &[
    ("4.1.4", "DSA keys are outside the S.E.E. key policy"),
    ("4.1.5", "DSA keys are outside the S.E.E. key policy"),
    (
        "4.6.8",
        "a CA certificate is not accepted as the end entity",
    ),
    (
        "4.6.14",
        "a CA certificate is not accepted as the end entity",
    ),
    (
        "4.14.13",
        "a CA certificate is not accepted as the end entity",
    ),
];

/// 2020-01-01T00:00:00Z.
const AT: i64 = 1_577_836_800;

struct Case {
    id: String,
    valid: bool,
    certs: Vec<String>,
    crls: Vec<String>,
    name: String,
}

fn cases() -> Vec<Case> {
    include_str!("../pkits/cases.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), 5, "bad case line {l}");
            Case {
                id: f[0].into(),
                valid: f[1] == "valid",
                certs: f[2].split(',').map(String::from).collect(),
                crls: f[3].split(',').map(String::from).collect(),
                name: f[4].into(),
            }
        })
        .collect()
}

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PKITS_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools/pyvectors/cryptography_vectors/x509/PKITS_data")
        });
    dir.join("certs/TrustAnchorRootCertificate.crt")
        .exists()
        .then_some(dir)
}

fn read(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from(std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Runs one case through the handshake's checks: Ok(()) when accepted, else the reason.
async fn run(dir: &Path, case: &Case) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let anchors = vec![read(&dir.join("certs/TrustAnchorRootCertificate.crt"))];
    // The end entity first, then the other certificates (the path top-down, reversed).
    let chain: Vec<CertificateDer<'static>> = case
        .certs
        .iter()
        .rev()
        .map(|c| read(&dir.join(format!("certs/{c}.crt"))))
        .collect();
    let cfg = RevocationConfig {
        order: RevocationOrder::CrlOnly,
        check_intermediates: true,
        crl_files: case
            .crls
            .iter()
            .map(|c| dir.join(format!("crls/{c}.crl")))
            .collect(),
        ..RevocationConfig::default()
    };
    let cache = RevocationCache::new(1000).map_err(|e| e.to_string())?;
    let checker = RevocationChecker::new_offline(&cfg, "pkits", &anchors, provider.clone(), cache)
        .map_err(|e| format!("configuration error: {e}"))?;
    let verifier = SeeClientVerifier::new(
        &anchors,
        provider,
        true,
        KeyPolicy { min_rsa_bits: 2048 },
        RequiredEku::None,
        Some(checker.clone() as Arc<dyn StatusCheck>),
    )
    .map_err(|e| format!("configuration error: {e}"))?;
    let (leaf, rest) = chain.split_first().ok_or("empty chain")?;
    let t = UnixTime::since_unix_epoch(std::time::Duration::from_secs(AT as u64));
    verifier
        .verify_client_cert(leaf, rest, t)
        .map_err(|e| format!("handshake: {e}"))?;
    checker
        .check_at(leaf, rest, AT)
        .await
        .map(|_| ())
        .map_err(|e| format!("status: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkits() {
    let Some(dir) = data_dir() else {
        assert!(
            !gateway_tests::in_ci(),
            "PKITS data missing in CI: `cargo xtask test` installs cryptography-vectors"
        );
        eprintln!("SKIPPED: PKITS data not installed (run `cargo xtask test`, or pip install --target .tools/pyvectors cryptography-vectors==50.0.2)");
        return;
    };
    let mut sections: Vec<(String, usize, usize)> = Vec::new();
    let mut false_accepts = Vec::new();
    let mut unexpected = Vec::new();
    for case in cases() {
        let verdict = run(&dir, &case).await;
        let section = case.id.rsplit_once('.').map_or("?", |x| x.0).to_string();
        let pass = verdict.is_ok() == case.valid;
        match sections.iter_mut().find(|s| s.0 == section) {
            Some(s) => {
                s.1 += usize::from(pass);
                s.2 += 1;
            }
            None => sections.push((section, usize::from(pass), 1)),
        }
        let deviation = DEVIATIONS.iter().find(|(id, _)| *id == case.id);
        match (&verdict, case.valid, deviation) {
            (Ok(()), false, _) => false_accepts.push(format!("{} {}", case.id, case.name)),
            (Err(why), true, None) => {
                unexpected.push(format!("{} {}: refused: {why}", case.id, case.name))
            }
            (Err(_), true, Some(_)) => {}
            (Ok(()), true, Some((_, why))) => unexpected.push(format!(
                "{} {}: accepted, but listed as a deviation ({why})",
                case.id, case.name
            )),
            _ => {}
        }
    }
    let (mut p, mut t) = (0, 0);
    for (s, passed, total) in &sections {
        println!("{s}: {passed}/{total}");
        p += passed;
        t += total;
    }
    println!(
        "total: {p}/{t} ({} documented S.E.E. policy deviations: {})",
        DEVIATIONS.len(),
        DEVIATIONS
            .iter()
            .map(|d| d.0)
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        false_accepts.is_empty(),
        "FALSE ACCEPTS: {false_accepts:#?}"
    );
    assert!(unexpected.is_empty(), "mismatches: {unexpected:#?}");
}
