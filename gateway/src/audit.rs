//! The audit log: one JSON line per authentication decision (`[audit]`).
//!
//! Who was let in or refused, and why: every connection's certificate decision (admitted
//! after the handshake and the status check, or refused with its reason) and every password
//! decision on IN CONFIDENCE listeners. Never a password, never a key.
//!
//! Off the hot path: a connection only builds the event and `try_send`s it into a bounded
//! channel; a dedicated thread serialises and writes. When the channel is full the event is
//! dropped and counted (`gateway_audit_events_total{outcome="dropped"}`): a slow disk never
//! blocks a handshake. The file is reopened on SIGHUP and SIGUSR1 (log rotation).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// `[audit]`: where the audit log goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A file (appended to, created mode 0640), or absent / `"-"` for standard output.
    pub path: Option<PathBuf>,
    /// Events buffered between the connections and the writer thread; beyond it events are
    /// dropped and counted.
    pub queue: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: None,
            queue: 65_536,
        }
    }
}

impl AuditConfig {
    /// Checks the shape.
    ///
    /// # Errors
    /// `(key, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.queue == 0 {
            return Err(("queue".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    pub(crate) fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(p) = &mut self.path {
            if p.is_relative() && p.as_os_str() != "-" {
                *p = base.join(&*p);
            }
        }
    }

    fn file(&self) -> Option<&std::path::Path> {
        self.path.as_deref().filter(|p| p.as_os_str() != "-")
    }
}

/// The decision recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Let in.
    Accepted,
    /// Refused.
    Refused,
}

/// One authentication decision. Field names are the JSON keys.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEvent {
    /// RFC 3339 UTC time with milliseconds.
    pub time: String,
    /// Listener name.
    pub listener: String,
    /// Client address.
    pub source_ip: String,
    /// Client port.
    pub source_port: u16,
    /// SNI the client sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// TLS version (`TLSv1_3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// Cipher suite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<String>,
    /// Resumed session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    /// `certificate`, `password` or `none`.
    pub auth_method: &'static str,
    /// Certificate subject DN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_subject: Option<String>,
    /// Certificate issuer DN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_issuer: Option<String>,
    /// Certificate serial, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<String>,
    /// SHA-256 of the leaf certificate, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
    /// Password user name (never the password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `accepted` or `refused`.
    pub decision: Option<Decision>,
    /// Short reason (the metrics label: `revoked`, `untrusted`, `wrong_password`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The full message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Where the certificate's status came from (`CRL`, `OCSP`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_source: Option<String>,
    /// The status's freshness as the checker reports it (`valid until …, cached`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_detail: Option<String>,
}

/// RFC 3339 UTC now, milliseconds.
pub fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Errors opening the audit log.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    /// The file.
    pub path: String,
    /// The I/O error.
    pub source: std::io::Error,
}

/// The audit log: a bounded queue and its writer thread. Stops when the last handle drops.
#[derive(Debug)]
pub struct AuditLog {
    tx: SyncSender<AuditEvent>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    reopen: AtomicBool,
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
}

fn open(cfg: &AuditConfig) -> Result<Box<dyn Write + Send>, AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    match cfg.file() {
        None => Ok(Box::new(std::io::stdout())),
        Some(p) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(p)
            .map(|f| Box::new(std::io::BufWriter::with_capacity(64 * 1024, f)) as Box<_>)
            .map_err(|source| AuditError {
                path: p.display().to_string(),
                source,
            }),
    }
}

impl AuditLog {
    /// Opens the log and starts its writer thread (`audit`).
    ///
    /// # Errors
    /// [`AuditError`] when the file cannot be opened or the thread not started.
    pub fn start(cfg: &AuditConfig) -> Result<Arc<AuditLog>, AuditError> {
        let out = open(cfg)?;
        let (tx, rx) = sync_channel(cfg.queue.max(1));
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let c = cfg.clone();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || writer(rx, out, c, s))
            .map_err(|source| AuditError {
                path: "<thread>".into(),
                source,
            })?;
        tracing::info!(to = %cfg.file().map_or("stdout".into(), |p| p.display().to_string()), "audit log");
        Ok(Arc::new(AuditLog { tx, shared }))
    }

    /// Queues an event; never blocks: a full queue drops it (counted).
    #[inline]
    pub fn record(&self, event: AuditEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Asks the writer to reopen the file (after log rotation moved it).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Relaxed);
        // Wake the writer so it reopens now rather than at the next event.
        let _ = self.tx.try_send(AuditEvent::default());
    }

    /// (written, dropped, write errors) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.shared.written.load(Relaxed),
            self.shared.dropped.load(Relaxed),
            self.shared.write_errors.load(Relaxed),
        )
    }
}

fn writer(
    rx: Receiver<AuditEvent>,
    mut out: Box<dyn Write + Send>,
    cfg: AuditConfig,
    s: Arc<Shared>,
) {
    let mut line = Vec::with_capacity(1024);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(ev) = next {
            if s.reopen.swap(false, Relaxed) {
                let _ = out.flush();
                match open(&cfg) {
                    Ok(o) => {
                        out = o;
                        tracing::info!("audit log reopened");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit log: reopen failed; writing to the old file")
                    }
                }
            }
            // The wake-up sent by `reopen` carries no decision.
            if ev.decision.is_some() {
                line.clear();
                if serde_json::to_writer(&mut line, &ev).is_ok() {
                    line.push(b'\n');
                    match out.write_all(&line) {
                        Ok(()) => {
                            s.written.fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            if s.write_errors.fetch_add(1, Relaxed) == 0 {
                                tracing::error!(error = %e, "audit log: write failed");
                            }
                        }
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        // Queue drained: make what was written visible.
        let _ = out.flush();
    }
    let _ = out.flush();
}

impl prometheus_client::collector::Collector for AuditLog {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        let (written, dropped, errors) = self.counts();
        let mut m = enc.encode_descriptor(
            "gateway_audit_events",
            "Audit events by outcome (dropped: queue full, never blocking a handshake)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (outcome, v) in [
            ("written", written),
            ("dropped", dropped),
            ("write_error", errors),
        ] {
            let labels = [("outcome", outcome)];
            ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u16) -> AuditEvent {
        AuditEvent {
            time: now_rfc3339(),
            listener: "edge".into(),
            source_ip: "127.0.0.1".into(),
            source_port: n,
            auth_method: "certificate",
            decision: Some(Decision::Accepted),
            ..AuditEvent::default()
        }
    }

    #[test]
    fn writes_json_lines_and_reopens_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let log = AuditLog::start(&AuditConfig {
            path: Some(p.clone()),
            queue: 16,
        })
        .unwrap();
        log.record(event(1));
        let wait = |path: &std::path::Path, n: usize| {
            for _ in 0..200 {
                let lines = std::fs::read_to_string(path)
                    .map(|t| t.lines().count())
                    .unwrap_or(0);
                if lines >= n {
                    return lines;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            0
        };
        assert_eq!(wait(&p, 1), 1);
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&p, &rotated).unwrap();
        log.reopen();
        log.record(event(2));
        assert_eq!(wait(&p, 1), 1, "new events go to the reopened file");
        let v: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&p).unwrap().trim()).unwrap();
        assert_eq!(v["source_port"], 2);
        assert_eq!(v["decision"], "accepted");
        assert!(v.get("sni").is_none());
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            1
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // A writer that never finishes its first write: the queue fills.
        struct Stuck(std::sync::mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = std::sync::mpsc::channel();
        let (tx, rx) = sync_channel(4);
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let cfg = AuditConfig::default();
        std::thread::spawn(move || writer(rx, Box::new(Stuck(stuck)), cfg, s));
        let log = AuditLog { tx, shared };
        let t0 = std::time::Instant::now();
        for i in 0..1000 {
            log.record(event(i));
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(1),
            "record blocked"
        );
        let (_, dropped, _) = log.counts();
        assert!(dropped >= 990, "dropped {dropped}");
        drop(release);
    }
}
