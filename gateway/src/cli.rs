//! Command-line interface: `gateway serve | check-config | verify | dev-pki | passwd | probe`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::pki::devpki::{DevPki, P12_PASSWORD};
use crate::server;

/// The S.E.E. mutual-TLS edge gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve. Without --config, runs the embedded default: a development PKI and the built-in
    /// identity backend on 127.0.0.1:8443.
    Serve(ServeArgs),
    /// Validate a configuration file (files, keys, certificates, TLS policy) without serving.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Check a client certificate chain against a listener's policy (trust, validity, key
    /// policy, EKU, revocation) and print each check; exit code 0 only when accepted.
    Verify(crate::verify::VerifyArgs),
    /// Create (or reuse) a development PKI in a directory.
    DevPki {
        /// Directory to write to.
        dir: PathBuf,
    },
    /// Add a user to a password file, or change a user's password (IN CONFIDENCE
    /// listeners). Reads the password without echo, or one line from standard input.
    Passwd(crate::access::password::PasswdArgs),
    /// Check a TLS server against the S.E.E. client policy; exits 1 on any failure.
    Probe(crate::probe::ProbeArgs),
    /// Reload a running gateway: it re-reads its configuration and every file it names
    /// (certificates, keys, CAs, CRLs, passwords, rules). Exit code 0 when the new
    /// configuration serves, 1 when it was refused (the previous one keeps serving).
    Reload(ReloadArgs),
    /// Manage the fleet's session-ticket key file (`[global] ticket_keys`).
    #[command(subcommand)]
    TicketKeys(TicketKeysCommand),
}

/// Arguments of `gateway reload`.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// The gateway's admin listener (`[admin] bind`, without mTLS): `POST /reload`, and the
    /// outcome or the error is printed.
    #[arg(long, conflicts_with = "pid_file")]
    pub admin: Option<std::net::SocketAddr>,
    /// The gateway's PID file (`serve --pid-file`): SIGHUP; the outcome is in the gateway's
    /// log and `gateway_reloads_total`.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// With --pid-file: validate this configuration first, and do not signal when it is
    /// invalid.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// `gateway ticket-keys ...`
#[derive(Debug, Subcommand)]
pub enum TicketKeysCommand {
    /// Write a new current key (atomically, mode 0600), keeping the previous current key and
    /// at most KEEP keys behind it; creates the file when missing. Then reload the gateways.
    Rotate {
        /// The ticket-key file.
        file: PathBuf,
        /// How many previous keys still decrypt tickets (rotation overlap).
        #[arg(long, default_value_t = 2)]
        keep: usize,
    },
}

/// Arguments of `gateway serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The TOML configuration file. Omit it for the embedded default.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// State directory for the embedded default's development PKI.
    #[arg(long, env = "GATEWAY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Listen address of the embedded default.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub bind: String,
    /// Write the process id here once serving (for `gateway reload --pid-file`); removed at
    /// exit.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
}

/// Initialises logging (RUST_LOG filters; default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("see-gateway");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/see-gateway"),
        None => PathBuf::from("gateway-state"),
    }
}

/// Runs a parsed command line; returns the process exit code.
///
/// # Errors
/// Any error that should end the process with a message.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    init_logging(cli.log_format);
    match cli.command {
        Command::CheckConfig { file } => {
            let cfg = Config::load(&file)?;
            let plan = crate::plan::plan(&cfg)?;
            let n = plan.listeners.len();
            println!(
                "{}: OK ({n} listener{})",
                file.display(),
                if n == 1 { "" } else { "s" }
            );
            for r in &plan.relaxations {
                println!("  relaxation: {r}");
            }
            Ok(0)
        }
        Command::Passwd(args) => {
            crate::access::password::run_passwd(&args)?;
            Ok(0)
        }
        Command::Probe(args) => {
            // The probe checks the server's chain with the default (strict) revocation
            // policy: OCSP then CRL from the certificates, fail closed.
            let factory = if args.no_revocation {
                None
            } else {
                let cfg = crate::revocation::RevocationConfig::default();
                let cache = crate::revocation::RevocationCache::new(10_000)?;
                let provider = crate::tls::base_provider(&args.crypto_provider)?;
                crate::revocation::status::status_factory(
                    &cfg,
                    "probe",
                    std::sync::Arc::new(provider),
                    Some(&cache),
                )
            };
            Ok(if crate::probe::run_blocking(&args, factory.as_deref())? {
                0
            } else {
                1
            })
        }
        Command::Reload(args) => reload(&args),
        Command::TicketKeys(TicketKeysCommand::Rotate { file, keep }) => {
            let keys = crate::tls::tickets::TicketKeys::rotate(&file, keep)?;
            let ids = keys.ids();
            let (current, previous) = ids
                .split_first()
                .map_or(("", &[] as &[String]), |(c, p)| (c.as_str(), p));
            println!(
                "{}: new current key {current} ({} previous: {})",
                file.display(),
                previous.len(),
                previous.join(", ")
            );
            Ok(0)
        }
        Command::Verify(args) => Ok(if crate::verify::run(args)? { 0 } else { 1 }),
        Command::DevPki { dir } => {
            let pki = DevPki::ensure(&dir)?;
            println!("development PKI in {}", pki.dir.display());
            Ok(0)
        }
        Command::Serve(args) => {
            let (cfg, path) = match &args.config {
                Some(path) => (Config::load(path)?, path.clone()),
                None => embedded_default(&args)?,
            };
            let plan = crate::plan::plan(&cfg)?;
            server::run_until_signal(plan, Some(&path), args.pid_file.as_deref())?;
            Ok(0)
        }
    }
}

fn reload(args: &ReloadArgs) -> anyhow::Result<i32> {
    use std::io::{Read, Write};
    if let Some(addr) = args.admin {
        let mut s = std::net::TcpStream::connect(addr)
            .map_err(|e| anyhow::anyhow!("cannot reach the admin listener {addr}: {e}"))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
        write!(
            s,
            "POST /reload HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let ok = head.split_whitespace().nth(1) == Some("200");
        if ok {
            print!("{body}");
            return Ok(0);
        }
        eprint!("{body}");
        return Ok(1);
    }
    let Some(pid_file) = &args.pid_file else {
        anyhow::bail!(
            "give --admin ADDR (the admin listener) or --pid-file FILE (serve --pid-file)"
        );
    };
    if let Some(cfg) = &args.config {
        let checked = Config::load(cfg)
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                crate::plan::plan(&c)
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
            });
        if let Err(e) = checked {
            eprintln!("{}: refused, not signalled: {e:#}", cfg.display());
            return Ok(1);
        }
    }
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| anyhow::anyhow!("cannot read PID file {}: {e}", pid_file.display()))?;
    let pid: libc::pid_t = text.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "PID file {} holds {text:?}, not a process id",
            pid_file.display()
        )
    })?;
    // SAFETY: kill(2) with a pid read from the operator's PID file and SIGHUP.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        anyhow::bail!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    println!("SIGHUP sent to {pid}: the outcome is in its log and in gateway_reloads_total");
    Ok(0)
}

fn embedded_default(args: &ServeArgs) -> anyhow::Result<(Config, PathBuf)> {
    let dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let pki = DevPki::ensure(&dir)?;
    let cfg_path = dir.join("gateway.toml");
    let mut toml = pki.default_config_toml(&args.bind);
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // Started as root on a development machine: the state directory is root's, so
        // switching to another user would lock the gateway out of its own CRL file. Keep
        // uid 0 (every capability is still dropped), as an explicit, logged relaxation.
        toml = toml.replacen(
            "[global]\n",
            "[global]\n# Started as root: keep uid 0 after start-up (relaxation; capabilities are dropped).\n\
             # For production, set user = \"gateway\" instead (a user that can read these files).\n\
             allow_root = true\n",
            1,
        );
    }
    std::fs::write(&cfg_path, toml)?;
    let cfg = Config::load(&cfg_path)?;
    let port = cfg
        .listeners
        .first()
        .and_then(|l| l.bind_addr().ok())
        .map_or(8443, |a| a.port());
    let d = dir.display();
    eprintln!(
        "\nS.E.E. gateway: embedded default (development PKI, built-in identity backend)\n\
         state directory: {d}\n\
         config written to: {cfg}\n\
         client PKCS#12: {p12} (password: {P12_PASSWORD})\n\n\
         Try it:\n  curl --cacert {d}/ca.pem --cert {d}/client.pem --key {d}/client.key https://localhost:{port}/\n",
        cfg = cfg_path.display(),
        p12 = pki.client_p12.display(),
    );
    Ok((cfg, cfg_path))
}
