//! An in-process gateway on loopback, configured from TOML text.

use std::net::SocketAddr;
use std::path::Path;

use gateway::config::Config;
use gateway::server::{self, RunningGateway};

/// A running gateway that shuts down when dropped.
pub struct TestGateway {
    /// Listener addresses (config order).
    pub addrs: Vec<SocketAddr>,
    running: Option<RunningGateway>,
}

impl TestGateway {
    /// Starts a gateway from config text; relative paths resolve against `dir`.
    ///
    /// # Panics
    /// If the config is invalid or the gateway cannot start.
    pub fn start(dir: &Path, toml: &str) -> TestGateway {
        Self::try_start(dir, toml).unwrap_or_else(|e| panic!("gateway failed to start: {e}"))
    }

    /// As [`TestGateway::start`], returning the error text.
    ///
    /// # Errors
    /// The configuration or start-up error, as text.
    pub fn try_start(dir: &Path, toml: &str) -> Result<TestGateway, String> {
        init_logs();
        let path = dir.join("gateway.toml");
        std::fs::write(&path, toml).map_err(|e| e.to_string())?;
        let cfg = Config::load(&path).map_err(|e| e.to_string())?;
        let plan = gateway::plan::plan(&cfg).map_err(|e| e.to_string())?;
        let running = server::start(plan).map_err(|e| e.to_string())?;
        Ok(TestGateway {
            addrs: running.local_addrs.clone(),
            running: Some(running),
        })
    }

    /// The admin listener's address (`[admin]` configured).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(|r| r.admin_addr)
    }

    /// The running gateway (reload, admin state...).
    pub fn running(&self) -> &RunningGateway {
        self.running.as_ref().expect("running")
    }

    /// The first listener's port.
    pub fn port(&self) -> u16 {
        self.addrs[0].port()
    }

    /// Data-path counters.
    pub fn metrics(&self) -> gateway::metrics::Snapshot {
        self.running
            .as_ref()
            .map(|r| r.metrics.snapshot())
            .unwrap_or_default()
    }
}

impl TestGateway {
    /// Kernel steering state (counters, blocklist, what is active).
    pub fn steering(&self) -> Option<gateway::steering::SteeringControl> {
        self.running.as_ref().map(|r| r.steering())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

fn init_logs() {
    let _ = tracing_subscriber_init();
}

fn tracing_subscriber_init() -> Result<(), ()> {
    gateway::cli::init_logging(gateway::cli::LogFormat::Human);
    Ok(())
}

/// A listener block for a config.
pub fn listener_toml(
    backend: &str,
    server_cert: &Path,
    server_key: &Path,
    cas: &[&Path],
    classification: &str,
    extra: &str,
) -> String {
    // Handshake-policy tests run without status sources: revocation is switched off unless the
    // test configures it (tests/tests/revocation.rs does).
    let extra = if extra.contains("[listener.revocation]") {
        extra.to_string()
    } else {
        format!("revocation = {{ enabled = false }}\n{extra}")
    };
    let cas: Vec<String> = cas
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"
classification = "{classification}"
backend = "{backend}"
server_cert = {:?}
server_key = {:?}
trusted_cas = [{}]
{extra}
"#,
        server_cert.display().to_string(),
        server_key.display().to_string(),
        cas.join(", ")
    )
}

/// A `[global]` block for tests: two workers, quick shutdown, no metrics log.
pub const GLOBAL: &str =
    "[global]\nworkers = 2\nshutdown_grace_secs = 2\nmetrics_interval_secs = 0\n";
