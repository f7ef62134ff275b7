//! The admin listener, judged from outside: `/metrics` read by a real Prometheus text parser
//! (`prometheus-parse`) breaks handshake refusals down by reason (revoked, expired,
//! untrusted, no certificate), counts admitted handshakes and responses, exports the CRL's
//! seconds until nextUpdate; `/healthz`, `/readyz` and `/config` answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gateway_tests::gw::{listener_toml, TestGateway, GLOBAL};
use gateway_tests::pki::{LeafSpec, TestCa};
use gateway_tests::require_tool;
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::{Duration as TDuration, OffsetDateTime};

/// GET `path` on the admin listener: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("http answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, body.to_string())
}

fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text format parses")
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

fn crl(ca: &TestCa, revoked: &[u64]) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - TDuration::seconds(5),
        next_update: now + TDuration::hours(1),
        crl_number: SerialNumber::from_slice(&now.unix_timestamp().to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&s.to_be_bytes()),
                revocation_time: now - TDuration::seconds(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.issuer())
    .expect("sign CRL")
    .der()
    .to_vec()
}

#[test]
fn metrics_break_refusals_down_by_reason_and_health_endpoints_answer() {
    if !require_tool("curl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let server_ca = TestCa::new("Admin Server CA");
    let server = server_ca.issue(dir, "server", &LeafSpec::server());
    let server_ca_pem = server_ca.write_cert(dir, "server-ca.pem");
    let ca = TestCa::new("Admin Client CA");
    let ca_pem = ca.write_cert(dir, "client-ca.pem");
    let good = ca.issue(
        dir,
        "good",
        &LeafSpec {
            serial: Some(1),
            ..LeafSpec::client("good")
        },
    );
    let revoked = ca.issue(
        dir,
        "revoked",
        &LeafSpec {
            serial: Some(2),
            ..LeafSpec::client("revoked")
        },
    );
    let expired = ca.issue(
        dir,
        "expired",
        &LeafSpec {
            serial: Some(3),
            not_before: TDuration::days(-10),
            not_after: TDuration::days(-1),
            ..LeafSpec::client("expired")
        },
    );
    let stranger = TestCa::new("Unknown CA").issue(dir, "stranger", &LeafSpec::client("x"));
    let crl_path = dir.join("client-ca.crl");
    std::fs::write(&crl_path, crl(&ca, &[2])).expect("write crl");

    let toml = format!(
        "{GLOBAL}[admin]\nbind = \"127.0.0.1:0\"\n[audit]\npath = \"audit.jsonl\"\n{}",
        listener_toml(
            "builtin:identity",
            &server.cert,
            &server.key,
            &[&ca_pem],
            "sensitive",
            &format!(
                "name = \"edge\"\n[listener.revocation]\norder = \"crl-only\"\ncrl_files = [{:?}]\n",
                crl_path.display().to_string()
            ),
        )
    );
    let gw = TestGateway::start(dir, &toml);
    let admin = gw.admin_addr().expect("admin listener");

    let run = |leaf: Option<&gateway_tests::pki::Leaf>| {
        gateway_tests::clients::curl(
            gw.port(),
            "/",
            &server_ca_pem,
            leaf.map(|l| (l.cert.as_path(), l.key.as_path())),
            &[],
        )
    };
    assert!(run(Some(&good)).ok_200());
    assert!(run(Some(&good)).ok_200());
    for bad in [&revoked, &expired, &stranger] {
        assert!(!run(Some(bad)).ok_200());
    }
    assert!(!run(None).ok_200());

    // The counters are bumped as each connection ends: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = [
        ("revoked", 1.0),
        ("expired", 1.0),
        ("untrusted", 1.0),
        ("no_certificate", 1.0),
    ];
    let s = loop {
        let s = scrape(admin);
        let done = want.iter().all(|(r, n)| {
            value(
                &s,
                "gateway_handshake_refusals_total",
                &[("listener", "edge"), ("reason", r)],
            ) == Some(*n)
        }) && value(&s, "gateway_connections_active", &[("listener", "edge")]).is_some();
        if done || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for (reason, n) in want {
        assert_eq!(
            value(
                &s,
                "gateway_handshake_refusals_total",
                &[("listener", "edge"), ("reason", reason)]
            ),
            Some(n),
            "refusals for {reason}"
        );
    }
    assert_eq!(
        value(
            &s,
            "gateway_handshake_refusals_total",
            &[("listener", "edge"), ("reason", "key_policy")]
        ),
        Some(0.0)
    );
    let admitted = value(
        &s,
        "gateway_handshakes_total",
        &[("listener", "edge"), ("result", "full")],
    )
    .unwrap_or(0.0)
        + value(
            &s,
            "gateway_handshakes_total",
            &[("listener", "edge"), ("result", "resumed")],
        )
        .unwrap_or(0.0);
    assert_eq!(admitted, 2.0);
    assert_eq!(
        value(&s, "gateway_http_responses_total", &[("class", "2xx")]),
        Some(2.0)
    );
    let accepted: f64 = s
        .samples
        .iter()
        .filter(|x| x.metric == "gateway_connections_accepted_total")
        .filter_map(|x| match x.value {
            prometheus_parse::Value::Counter(v) => Some(v),
            _ => None,
        })
        .sum();
    assert_eq!(accepted, 6.0);
    let handshake_hist = s
        .samples
        .iter()
        .find(|x| x.metric == "gateway_handshake_duration_seconds")
        .expect("handshake histogram");
    match &handshake_hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert_eq!(total, 6.0, "every handshake timed: {buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    let crl_left = value(
        &s,
        "gateway_crl_next_update_seconds",
        &[("crl", &crl_path.display().to_string())],
    )
    .expect("CRL age exported");
    assert!(
        (3000.0..=3600.0).contains(&crl_left),
        "seconds until nextUpdate: {crl_left}"
    );
    assert_eq!(value(&s, "gateway_ready", &[]), Some(1.0));

    assert_eq!(get(admin, "/healthz").0, 200);
    let (status, body) = get(admin, "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, body) = get(admin, "/config");
    assert_eq!(status, 200);
    let cfg: serde_json::Value = serde_json::from_str(&body).expect("config is JSON");
    assert_eq!(cfg["listener"][0]["name"], "edge");
    assert_eq!(cfg["admin"]["bind"], "127.0.0.1:0");
    assert_eq!(get(admin, "/nope").0, 404);

    // The audit log: one JSON line per decision, written off the data path.
    let audit_path = dir.join("audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<serde_json::Value> = loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        if lines.len() >= 6 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let accepted: Vec<_> = lines
        .iter()
        .filter(|l| l["decision"] == "accepted")
        .collect();
    assert_eq!(accepted.len(), 2);
    for a in &accepted {
        assert_eq!(a["listener"], "edge");
        assert_eq!(a["auth_method"], "certificate");
        assert_eq!(a["source_ip"], "127.0.0.1");
        assert_eq!(a["sni"], "localhost");
        assert!(a["tls_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1_")));
        assert!(a["cipher_suite"]
            .as_str()
            .is_some_and(|v| v.contains("AES")));
        assert!(a["cert_subject"]
            .as_str()
            .is_some_and(|v| v.contains("CN=good")));
        assert_eq!(a["cert_serial"], "01");
        assert_eq!(a["cert_sha256"].as_str().map(str::len), Some(64));
        assert_eq!(a["revocation_source"], "CRL");
    }
    let mut reasons: Vec<&str> = lines
        .iter()
        .filter(|l| l["decision"] == "refused")
        .filter_map(|l| l["reason"].as_str())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["expired", "no_certificate", "revoked", "untrusted"]
    );
    let text = std::fs::read_to_string(&audit_path).expect("audit");
    assert!(!text.contains("PRIVATE KEY") && !text.to_lowercase().contains("password"));
    let s = scrape(admin);
    assert_eq!(
        value(&s, "gateway_audit_events_total", &[("outcome", "written")]),
        Some(6.0)
    );
    assert_eq!(
        value(&s, "gateway_audit_events_total", &[("outcome", "dropped")]),
        Some(0.0)
    );

    // The shipped dashboard and alert rules only use metrics the gateway exports.
    let exported: std::collections::BTreeSet<&str> =
        s.samples.iter().map(|x| x.metric.as_str()).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "dist/grafana/gateway.json",
        "dist/prometheus/gateway-alerts.yml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        let mut used = std::collections::BTreeSet::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("gateway_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            used.insert(name);
        }
        assert!(used.len() >= 8, "{file}: {used:?}");
        for name in used {
            let base = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_count"))
                .or_else(|| name.strip_suffix("_sum"))
                .unwrap_or(&name);
            assert!(
                exported.contains(name.as_str()) || exported.contains(base),
                "{file} uses {name}, which /metrics does not export"
            );
        }
    }
}

#[test]
fn password_decisions_are_audited_without_the_password() {
    if !require_tool("curl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let server_ca = TestCa::new("Audit Server CA");
    let server = server_ca.issue(dir, "server", &LeafSpec::server());
    let server_ca_pem = server_ca.write_cert(dir, "server-ca.pem");
    let ca_pem = TestCa::new("Audit Client CA").write_cert(dir, "client-ca.pem");
    gateway::access::password::set_password(
        &dir.join("users.passwd"),
        "alice",
        "s3cret-Horse",
        None,
    )
    .expect("password file");
    let toml = format!(
        "{GLOBAL}[audit]\npath = \"audit.jsonl\"\n{}",
        listener_toml(
            "builtin:identity",
            &server.cert,
            &server.key,
            &[&ca_pem],
            "in-confidence",
            "name = \"intranet\"\n[listener.access]\npassword_file = \"users.passwd\"\n",
        )
    );
    let gw = TestGateway::start(dir, &toml);
    let curl =
        |extra: &[&str]| gateway_tests::clients::curl(gw.port(), "/", &server_ca_pem, None, extra);
    assert!(curl(&["-u", "alice:s3cret-Horse"]).ok_200());
    assert!(!curl(&["-u", "alice:not-it"]).ok_200());
    assert!(
        !curl(&[]).ok_200(),
        "no credentials: a challenge, not a decision"
    );

    let audit_path = dir.join("audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = std::fs::read_to_string(&audit_path).unwrap_or_default();
        if t.lines().count() >= 2 || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["auth_method"], "password");
    assert_eq!(lines[0]["decision"], "accepted");
    assert_eq!(lines[0]["user"], "alice");
    assert_eq!(lines[0]["listener"], "intranet");
    assert_eq!(lines[0]["sni"], "localhost");
    assert_eq!(lines[1]["decision"], "refused");
    assert_eq!(lines[1]["reason"], "wrong_credentials");
    assert_eq!(lines[1]["user"], "alice");
    assert!(
        !text.contains("s3cret-Horse") && !text.contains("not-it"),
        "a password reached the audit log: {text}"
    );
}
