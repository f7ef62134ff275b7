//! The per-listener access decision: who is this request from, and may it pass?

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::access::basic;
use crate::access::logincache::LoginCache;
use crate::access::password::{PasswordFile, PasswordFileError, PasswordUser};
use crate::access::ratelimit::{FailureLimiter, RateLimitConfig};
use crate::access::rules::{Decision, Principal, RuleConfig, RuleError, RuleSet};
use crate::access::Classification;
use crate::pki::identity::{AuthMethod, CertIdentity};

/// `[listener.access]`: the password fallback of an IN CONFIDENCE listener.
#[derive(Debug, Clone, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Password file (`user:argon2id-PHC[:groups]` lines). Only on IN CONFIDENCE listeners;
    /// without it, clients without a certificate are refused.
    pub password_file: Option<PathBuf>,
    /// Realm in the `WWW-Authenticate` challenge.
    pub realm: String,
    /// Limits on failed password attempts.
    pub rate_limit: RateLimitConfig,
    /// Password checks running at once (each argon2id check uses ~19 MiB for ~20-50 ms);
    /// 0 means the number of CPUs.
    pub max_concurrent_checks: usize,
    /// Password checks allowed to wait for one of those slots, from all sources together;
    /// a check beyond it is answered at once with 503 and `Retry-After` (a flood never
    /// queues unbounded argon2 work or holds connections for long). At least 1.
    pub max_queued_checks: usize,
    /// Seconds a successful password check is remembered (HMAC of the credentials),
    /// so a browser re-sending Basic credentials does not cost an argon2 check per request;
    /// 0 disables.
    pub login_cache_secs: u64,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            password_file: None,
            realm: "S.E.E. gateway".into(),
            rate_limit: RateLimitConfig::default(),
            max_concurrent_checks: 0,
            max_queued_checks: 64,
            login_cache_secs: 300,
        }
    }
}

impl AccessConfig {
    /// Resolves relative paths against the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.password_file {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Validates against the listener's classification; `Err((key, message))` names the key
    /// below `listener[i].`.
    ///
    /// # Errors
    /// A password file on a SENSITIVE listener (S.E.E. 14.2.14 forbids it), a realm with
    /// control characters or quotes, bad rate limits.
    pub fn validate(&self, classification: Classification) -> Result<(), (String, String)> {
        if self.password_file.is_some() && classification == Classification::Sensitive {
            return Err((
                "access.password_file".into(),
                "SENSITIVE listeners never accept passwords (S.E.E. 14.2.14); remove it or set classification = \"in-confidence\"".into(),
            ));
        }
        if self.realm.is_empty()
            || self
                .realm
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Err((
                "access.realm".into(),
                "must be non-empty, without quotes, backslashes or control characters".into(),
            ));
        }
        if self.max_queued_checks == 0 {
            return Err((
                "access.max_queued_checks".into(),
                "must be at least 1".into(),
            ));
        }
        self.rate_limit
            .validate()
            .map_err(|(k, m)| (format!("access.rate_limit.{k}"), m))
    }
}

/// Errors building a listener's access state.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The password file is unusable.
    #[error(transparent)]
    Passwords(#[from] PasswordFileError),
    /// A rule is unusable.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A setting contradicts the classification.
    #[error("{0}")]
    Config(String),
}

/// The access state of one listener, shared read-only by all workers.
#[derive(Debug)]
pub struct ListenerAccess {
    classification: Classification,
    realm: String,
    passwords: Option<Arc<PasswordFile>>,
    limiter: FailureLimiter,
    rules: RuleSet,
    checks: Arc<Semaphore>,
    /// Checks waiting for a slot of `checks` now, and the most allowed to wait.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    logins: LoginCache,
}

/// Counts one check waiting for a slot until dropped.
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// How the client authenticated.
    pub method: AuthMethod,
    /// The password user, for [`AuthMethod::Password`].
    pub user: Option<PasswordUser>,
    /// The rule that allowed it (None: the listener has no rules).
    pub rule: Option<String>,
}

/// A request that did not pass: the response to send and the line to log.
#[derive(Debug)]
pub struct Refused {
    /// 401, 403, 429 or 503, ready to send.
    pub response: Response<Full<Bytes>>,
    /// Full reason for the log (never sent to the client).
    pub log_reason: String,
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl ListenerAccess {
    /// Builds the access state: loads the password file, compiles the rules.
    ///
    /// # Errors
    /// [`AccessError`] for an unreadable/malformed password file, a bad rule, or a password
    /// file on a SENSITIVE listener.
    pub fn new(
        classification: Classification,
        cfg: &AccessConfig,
        rules: &[RuleConfig],
    ) -> Result<Self, AccessError> {
        cfg.validate(classification)
            .map_err(|(k, m)| AccessError::Config(format!("{k}: {m}")))?;
        let passwords = match &cfg.password_file {
            Some(p) => {
                let file = PasswordFile::load(p)?;
                warn_nonuniform(p, &file);
                Some(Arc::new(file))
            }
            None => None,
        };
        let n = if cfg.max_concurrent_checks == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            cfg.max_concurrent_checks
        };
        Ok(ListenerAccess {
            classification,
            realm: cfg.realm.clone(),
            passwords,
            limiter: FailureLimiter::new(&cfg.rate_limit),
            rules: RuleSet::compile(rules)?,
            checks: Arc::new(Semaphore::new(n)),
            queued: Arc::new(AtomicUsize::new(0)),
            max_queued: cfg.max_queued_checks,
            logins: LoginCache::new(Duration::from_secs(cfg.login_cache_secs), 10_000),
        })
    }

    /// Decides one request.
    ///
    /// * With a verified client certificate (`cert`), the certificate alone counts: any
    ///   `Authorization` header is ignored (and should be forwarded untouched or stripped by
    ///   the caller's policy). An invalid or revoked certificate never gets here: the
    ///   handshake or the status check already dropped the connection.
    /// * Without one, a SENSITIVE listener refuses (403, no challenge: passwords are never
    ///   offered); an IN CONFIDENCE listener asks for Basic credentials (401;
    ///   none can succeed without a password file), rate-limits failures per source and user (429), and checks the
    ///   password off the event loop.
    /// * Then the rules decide (403 with the rule's short reason).
    ///
    /// A `tcp://` listener decides its connections here too, with path `/` and no headers.
    ///
    /// # Errors
    /// [`Refused`] with the response to send and the reason to log.
    pub async fn authorize(
        &self,
        peer: IpAddr,
        cert: Option<&CertIdentity>,
        path: &crate::path::CanonicalPath,
        request_headers: &HeaderMap,
    ) -> Result<Granted, Box<Refused>> {
        let (method, user) = match cert {
            Some(_) => (AuthMethod::Certificate, None),
            None => (
                AuthMethod::Password,
                Some(self.password_login(peer, request_headers).await?),
            ),
        };
        let principal = match (cert, &user) {
            (Some(id), _) => Principal::Certificate(id),
            (None, Some(u)) => Principal::Password(u),
            (None, None) => {
                return Err(Box::new(Refused {
                    response: plain(
                        StatusCode::FORBIDDEN,
                        "client certificate required\n".into(),
                    ),
                    log_reason: "no identity".into(),
                }))
            }
        };
        match self.rules.evaluate(principal, path) {
            Decision::Allow { rule } => Ok(Granted { method, user, rule }),
            Decision::Deny {
                client_reason,
                log_reason,
            } => Err(Box::new(Refused {
                response: plain(StatusCode::FORBIDDEN, format!("{client_reason}\n")),
                log_reason,
            })),
        }
    }

    async fn password_login(
        &self,
        peer: IpAddr,
        h: &HeaderMap,
    ) -> Result<PasswordUser, Box<Refused>> {
        let refuse = |response, log_reason: String| {
            Err(Box::new(Refused {
                response,
                log_reason,
            }))
        };
        let challenge = |log_reason: String| {
            Err(Box::new(Refused {
                response: basic::unauthorized(&self.realm, "authentication required\n"),
                log_reason,
            }))
        };
        if self.classification == Classification::Sensitive {
            return refuse(
                plain(
                    StatusCode::FORBIDDEN,
                    "client certificate required\n".into(),
                ),
                "SENSITIVE listener: no client certificate (passwords are never accepted)".into(),
            );
        }
        let Some(passwords) = &self.passwords else {
            // Still a challenge (the listener's contract is "certificate or credentials"),
            // but no credentials can succeed.
            return challenge(
                "no client certificate, and no access.password_file to check credentials against"
                    .into(),
            );
        };
        let now = Instant::now();
        let creds = match basic::from_headers(h) {
            Ok(Some(c)) => c,
            Ok(None) => return challenge("no client certificate and no credentials".into()),
            Err(e) => {
                if let Err(l) = self.limiter.check(peer, None, now) {
                    count(&PASSWORD_STATS.rate_limited);
                    return refuse(
                        too_many(l.retry_after()),
                        format!("rate limited ({l:?}) malformed credentials from {peer}"),
                    );
                }
                self.limiter.record_failure(peer, None, now);
                return challenge(format!("malformed Basic credentials from {peer}: {e}"));
            }
        };
        // A recent success with exactly these credentials: no argon2, and no lock-out by
        // someone else's failures for this user.
        if let Some(u) = self.logins.get(&creds.user, &creds.password, now) {
            count(&PASSWORD_STATS.cached);
            return Ok(u);
        }
        if let Err(l) = self.limiter.check(peer, Some(&creds.user), now) {
            count(&PASSWORD_STATS.rate_limited);
            return refuse(
                too_many(l.retry_after()),
                format!(
                    "password attempts rate limited ({l:?}) for user {:?} from {peer}",
                    creds.user
                ),
            );
        }
        let permit = match self.checks.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Every slot busy: wait in a bounded queue, or answer 503 at once.
                let waiting = Queued(self.queued.clone());
                if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
                    return refuse(
                        busy(),
                        format!(
                            "password check queue full ({} waiting), refused at once",
                            self.max_queued
                        ),
                    );
                }
                let p = tokio::time::timeout(
                    Duration::from_secs(5),
                    self.checks.clone().acquire_owned(),
                )
                .await;
                drop(waiting);
                match p {
                    Ok(Ok(p)) => p,
                    _ => return refuse(busy(), "password check queue waited 5s".into()),
                }
            }
        };
        let file = passwords.clone();
        let user = creds.user.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let u = file.verify(&creds.user, &creds.password);
            (u, creds)
        })
        .await
        .ok();
        match verified {
            Some((Some(u), creds)) => {
                count(&PASSWORD_STATS.ok);
                self.logins.put(&creds.password, &u, Instant::now());
                Ok(u)
            }
            _ => {
                count(&PASSWORD_STATS.failed);
                self.limiter
                    .record_failure(peer, Some(&user), Instant::now());
                challenge(format!(
                    "wrong password or unknown user {user:?} from {peer}"
                ))
            }
        }
    }
}

/// Process-wide password-authentication counters (password checks are rare and cost an
/// argon2 run each, so one shared set of relaxed atomics is cheap enough).
#[derive(Debug, Default)]
pub struct PasswordStats {
    /// Passwords verified correct with argon2.
    pub ok: std::sync::atomic::AtomicU64,
    /// Passwords verified wrong (or unknown user).
    pub failed: std::sync::atomic::AtomicU64,
    /// Accepted from the login cache (no argon2 run).
    pub cached: std::sync::atomic::AtomicU64,
    /// Attempts refused by the failure rate limit (429).
    pub rate_limited: std::sync::atomic::AtomicU64,
}

/// The process's password-authentication counters (exported on `/metrics`).
pub static PASSWORD_STATS: PasswordStats = PasswordStats {
    ok: std::sync::atomic::AtomicU64::new(0),
    failed: std::sync::atomic::AtomicU64::new(0),
    cached: std::sync::atomic::AtomicU64::new(0),
    rate_limited: std::sync::atomic::AtomicU64::new(0),
};

fn count(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn warn_nonuniform(path: &Path, file: &PasswordFile) {
    let users = file.nonuniform_users();
    if !users.is_empty() {
        tracing::warn!(
            file = %path.display(),
            users = ?users,
            "password file: these users' argon2id parameters differ from the floor \
             (m=19456,t=2,p=1) that unknown users are checked with, so the time of a check tells \
             that they exist; re-set their passwords with `gateway passwd`"
        );
    }
}

fn busy() -> Response<Full<Bytes>> {
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "busy, try again\n".into());
    r.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn too_many(retry_after: Duration) -> Response<Full<Bytes>> {
    let mut r = plain(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed attempts, try later\n".into(),
    );
    let secs = retry_after.as_secs().max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::password::set_password;
    use base64::Engine as _;

    fn basic(user: &str, pw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).expect("hv"),
        );
        h
    }

    fn setup(classification: Classification) -> (tempfile::TempDir, ListenerAccess) {
        setup_with(classification, 0)
    }

    fn setup_with(
        classification: Classification,
        login_cache_secs: u64,
    ) -> (tempfile::TempDir, ListenerAccess) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("users");
        set_password(&p, "alice", "alice password", Some(&["staff".to_string()])).expect("passwd");
        let cfg = AccessConfig {
            password_file: Some(p),
            rate_limit: RateLimitConfig {
                per_source_burst: 3,
                per_source_per_minute: 1,
                per_ipv6_48_burst: 3,
                per_ipv6_48_per_minute: 1,
                per_user_burst: 2,
                per_user_per_minute: 1,
                max_tracked: 1024,
            },
            login_cache_secs,
            ..AccessConfig::default()
        };
        let cfg_ok = if classification == Classification::Sensitive {
            AccessConfig {
                password_file: None,
                ..cfg
            }
        } else {
            cfg
        };
        let a = ListenerAccess::new(classification, &cfg_ok, &[]).expect("access");
        (dir, a)
    }

    #[tokio::test]
    async fn password_fallback_flow() {
        let (_d, a) = setup(Classification::InConfidence);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let g = a
            .authorize(
                ip,
                None,
                &crate::path::CanonicalPath::root(),
                &basic("alice", "alice password"),
            )
            .await
            .expect("granted");
        assert_eq!(g.method, AuthMethod::Password);
        assert_eq!(g.user.as_ref().map(|u| u.name.as_str()), Some("alice"));

        let r = a
            .authorize(
                ip,
                None,
                &crate::path::CanonicalPath::root(),
                &HeaderMap::new(),
            )
            .await
            .expect_err("no creds");
        assert_eq!(r.response.status(), StatusCode::UNAUTHORIZED);
        assert!(r
            .response
            .headers()
            .contains_key(http::header::WWW_AUTHENTICATE));

        let r = a
            .authorize(
                ip,
                None,
                &crate::path::CanonicalPath::root(),
                &basic("alice", "wrong"),
            )
            .await
            .expect_err("wrong");
        assert_eq!(r.response.status(), StatusCode::UNAUTHORIZED);
        let r = a
            .authorize(
                ip,
                None,
                &crate::path::CanonicalPath::root(),
                &basic("alice", "wrong"),
            )
            .await
            .expect_err("wrong 2");
        assert_eq!(r.response.status(), StatusCode::UNAUTHORIZED);
        // Per-user limit (burst 2) now applies, even with the right password, from any source.
        let r = a
            .authorize(
                "192.0.2.99".parse().expect("ip"),
                None,
                &crate::path::CanonicalPath::root(),
                &basic("alice", "alice password"),
            )
            .await
            .expect_err("limited");
        assert_eq!(r.response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.response.headers().contains_key(http::header::RETRY_AFTER));
    }

    #[tokio::test]
    async fn successful_logins_are_cached_until_the_plan_is_rebuilt() {
        let (d, a) = setup_with(Classification::InConfidence, 300);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let good = basic("alice", "alice password");
        a.authorize(ip, None, &crate::path::CanonicalPath::root(), &good)
            .await
            .expect("first login");
        assert_eq!(a.logins.len(), 1);
        // Someone else's failures lock the user out of argon2 checks, not out of a login
        // verified a moment ago with exactly these credentials.
        for _ in 0..3 {
            let r = a
                .authorize(
                    ip,
                    None,
                    &crate::path::CanonicalPath::root(),
                    &basic("alice", "guess"),
                )
                .await
                .expect_err("wrong");
            assert_ne!(r.response.status(), StatusCode::OK);
        }
        a.authorize(
            "192.0.2.9".parse().expect("ip"),
            None,
            &crate::path::CanonicalPath::root(),
            &good,
        )
        .await
        .expect("cached login");
        // A new password file takes effect with a new plan (a reload builds one), whose
        // access state starts with an empty cache: the old password no longer works.
        let p = d.path().join("users");
        set_password(&p, "alice", "new alice password", None).expect("passwd");
        let cfg = AccessConfig {
            password_file: Some(p),
            login_cache_secs: 300,
            ..AccessConfig::default()
        };
        let a = ListenerAccess::new(Classification::InConfidence, &cfg, &[]).expect("access");
        assert_eq!(a.logins.len(), 0);
        let r = a
            .authorize(
                "192.0.2.10".parse().expect("ip"),
                None,
                &crate::path::CanonicalPath::root(),
                &good,
            )
            .await
            .expect_err("old password");
        assert_ne!(r.response.status(), StatusCode::OK);
    }

    /// A flood of password attempts from many sources (each within its own rate limit)
    /// must not queue unbounded argon2 work: beyond `max_queued_checks` waiting checks the
    /// answer is 503 at once, and no more than `max_concurrent_checks` run at a time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flood_beyond_the_queue_is_refused_early() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("users");
        set_password(&p, "alice", "alice password", None).expect("passwd");
        let cfg = AccessConfig {
            password_file: Some(p),
            max_concurrent_checks: 1,
            max_queued_checks: 2,
            login_cache_secs: 0,
            ..AccessConfig::default()
        };
        let a =
            Arc::new(ListenerAccess::new(Classification::InConfidence, &cfg, &[]).expect("access"));
        let n = 24u8;
        let started = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(async move {
                    let ip = IpAddr::from([198, 51, 100, i]);
                    let t = Instant::now();
                    let r = a
                        .authorize(
                            ip,
                            None,
                            &crate::path::CanonicalPath::root(),
                            &basic(&format!("user{i}"), "guess"),
                        )
                        .await
                        .expect_err("wrong password");
                    (
                        r.response.status(),
                        r.response.headers().clone(),
                        t.elapsed(),
                    )
                })
            })
            .collect();
        let mut busy = 0;
        let mut late = 0;
        let mut checked = 0;
        for t in tasks {
            let (status, headers, took) = t.await.expect("task");
            match status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    busy += 1;
                    assert!(headers.contains_key(http::header::RETRY_AFTER));
                    // At once, not after queueing: 2 s leaves room for a loaded machine. Only
                    // the two that were let into the queue may instead hit its 5 s wait
                    // limit (a debug-build argon2 check can take seconds on a busy CI core).
                    if took >= Duration::from_secs(2) {
                        late += 1;
                    }
                }
                StatusCode::UNAUTHORIZED => checked += 1,
                other => panic!("unexpected {other}"),
            }
        }
        // One running plus two waiting at the moment of the flood; a few more may have
        // found a free slot as the first checks finished.
        assert!(late <= 2, "{late} refused only after queueing");
        assert!(
            busy - late >= usize::from(n) / 2,
            "busy {busy} checked {checked}"
        );
        assert!(checked + late >= 3, "busy {busy} checked {checked}");
        assert_eq!(a.queued.load(Ordering::Acquire), 0, "queue drained");
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[tokio::test]
    async fn sensitive_ignores_basic() {
        let (_d, a) = setup(Classification::Sensitive);
        let r = a
            .authorize(
                "192.0.2.1".parse().expect("ip"),
                None,
                &crate::path::CanonicalPath::root(),
                &basic("alice", "alice password"),
            )
            .await
            .expect_err("refused");
        assert_eq!(r.response.status(), StatusCode::FORBIDDEN);
        assert!(!r
            .response
            .headers()
            .contains_key(http::header::WWW_AUTHENTICATE));
    }

    #[test]
    fn password_file_on_sensitive_is_a_config_error() {
        let cfg = AccessConfig {
            password_file: Some("users".into()),
            ..AccessConfig::default()
        };
        let (k, _) = cfg
            .validate(Classification::Sensitive)
            .expect_err("refused");
        assert_eq!(k, "access.password_file");
    }
}
