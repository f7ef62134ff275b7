//! The password file for IN CONFIDENCE listeners (S.E.E. 14.2.14) and `gateway passwd`.
//!
//! # Format
//!
//! One user per line, `user:PHC[:group,group...]`, where `PHC` is an argon2id hash in the
//! PHC string format (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`). Blank lines and lines
//! starting with `#` are ignored. User names are 1 to 64 characters without `:`, `,`,
//! whitespace or control characters.
//!
//! ```text
//! # users of the intranet listener
//! alice:$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$...:staff,admins
//! bob:$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0$...
//! ```
//!
//! Every hash must use argon2id with at least the OWASP floor [`MIN_M_COST`] KiB,
//! [`MIN_T_COST`] passes and [`MIN_P_COST`] lane (`m=19456,t=2,p=1`); a weaker line is a load
//! error naming the line and the user.
//!
//! Verification is constant time in the password (argon2's output comparison). An unknown
//! user costs one verification of a fixed dummy hash with the floor's parameters, the same
//! parameters `gateway passwd` writes, so timing does not tell which user names exist. Lines
//! with other (stronger) parameters load, but verify more slowly than an unknown user:
//! [`PasswordFile::nonuniform_users`] lists them so the caller can warn.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Errors loading or changing a password file.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file could not be read or written.
    #[error("password file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("password file {path}, line {line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// A user name or password given to `gateway passwd` is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Hashing failed (should not happen with the fixed parameters).
    #[error("cannot hash password: {0}")]
    Hash(String),
}

/// One user of the password file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordEntry {
    /// The argon2id PHC string.
    pub phc: String,
    /// Groups the user belongs to (for authorisation rules).
    pub groups: Vec<String>,
}

/// A user whose password was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordUser {
    /// The user name.
    pub name: String,
    /// The user's groups.
    pub groups: Vec<String>,
}

/// A loaded password file.
#[derive(Debug, Clone)]
pub struct PasswordFile {
    users: HashMap<String, PasswordEntry>,
}

/// Least argon2id memory cost accepted (KiB): OWASP's first recommendation.
pub const MIN_M_COST: u32 = 19_456;
/// Least argon2id time cost (passes) accepted.
pub const MIN_T_COST: u32 = 2;
/// Least argon2id parallelism accepted.
pub const MIN_P_COST: u32 = 1;

/// The hash verified for unknown users: a fixed argon2id hash of a random string with
/// exactly the floor's parameters (`m=19456,t=2,p=1`), the parameters `gateway passwd`
/// writes. Nobody knows its password; verifying it costs what a known user's check costs.
pub const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$OF4EG36PH2es6Iu34988gA$Zwor73yVfbxGO8WtqUnsQnoGx8+OYrOdgF2JMzWrmzg";

/// The argon2id parameters the floor prescribes (and `gateway passwd` uses).
fn floor_params() -> argon2::Params {
    // The floor is a valid parameter set; `Params::default()` is the same values.
    argon2::Params::new(MIN_M_COST, MIN_T_COST, MIN_P_COST, None).unwrap_or_default()
}

/// The hasher `gateway passwd` uses: argon2id v1.3 with the floor's parameters.
fn floor_hasher() -> Argon2<'static> {
    Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        floor_params(),
    )
}

/// Longest password accepted (bytes); longer input is refused before hashing.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Shortest password `gateway passwd` accepts.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest user name.
pub const MAX_USER_LEN: usize = 64;

/// Checks a user or group name.
///
/// # Errors
/// A message saying what is wrong.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_USER_LEN {
        return Err(format!(
            "{kind} name must be 1 to {MAX_USER_LEN} bytes long"
        ));
    }
    if name
        .chars()
        .any(|c| c == ':' || c == ',' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{kind} name {name:?} contains ':', ',', whitespace or a control character"
        ));
    }
    Ok(())
}

fn parse_line(line: &str) -> Result<Option<(String, PasswordEntry)>, String> {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.trim().is_empty() || trimmed.trim_start().starts_with('#') {
        return Ok(None);
    }
    let mut parts = trimmed.splitn(3, ':');
    let user = parts.next().unwrap_or_default();
    let phc = parts
        .next()
        .ok_or_else(|| "expected `user:$argon2id$...`, found no ':'".to_string())?;
    let groups_field = parts.next();
    validate_name("user", user)?;
    let parsed = PasswordHash::new(phc)
        .map_err(|e| format!("user {user:?}: not a PHC hash string ({e})"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "user {user:?}: hash algorithm {} is not allowed; re-set the password with `gateway passwd` (argon2id)",
            parsed.algorithm
        ));
    }
    // Parameters must be acceptable to argon2 (catches truncated or edited hashes at load)
    // and at least the floor (a cheap hash is a cheap offline guess).
    let params = argon2::Params::try_from(&parsed)
        .map_err(|e| format!("user {user:?}: bad argon2 parameters ({e})"))?;
    if params.m_cost() < MIN_M_COST || params.t_cost() < MIN_T_COST || params.p_cost() < MIN_P_COST
    {
        return Err(format!(
            "user {user:?}: argon2id parameters m={},t={},p={} are below the floor \
             m={MIN_M_COST},t={MIN_T_COST},p={MIN_P_COST}; re-set the password with `gateway passwd`",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    let mut groups = Vec::new();
    if let Some(g) = groups_field {
        for group in g.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            validate_name("group", group).map_err(|m| format!("user {user:?}: {m}"))?;
            groups.push(group.to_string());
        }
    }
    Ok(Some((
        user.to_string(),
        PasswordEntry {
            phc: phc.to_string(),
            groups,
        },
    )))
}

/// Hashes a password with argon2id, the floor's (OWASP) parameters and a random salt.
///
/// # Errors
/// [`PasswordFileError::Hash`] if hashing fails.
pub fn hash_password(password: &str) -> Result<String, PasswordFileError> {
    let salt = SaltString::generate(&mut OsRng);
    floor_hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordFileError::Hash(e.to_string()))
}

impl PasswordFile {
    /// Loads and checks a password file.
    ///
    /// # Errors
    /// [`PasswordFileError::Io`] if unreadable, [`PasswordFileError::Line`] naming the first
    /// bad line (bad user name, not an argon2id PHC string, duplicate user).
    pub fn load(path: &Path) -> Result<Self, PasswordFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, message)| PasswordFileError::Line {
            path: path.to_path_buf(),
            line,
            message,
        })
    }

    /// Parses password file text. `Err((line, message))` names the first bad line.
    ///
    /// # Errors
    /// The 1-based line number and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let Some((user, entry)) = parse_line(line).map_err(|m| (i + 1, m))? else {
                continue;
            };
            if users.contains_key(&user) {
                return Err((i + 1, format!("user {user:?} appears twice")));
            }
            users.insert(user, entry);
        }
        Ok(PasswordFile { users })
    }

    /// An empty file (no users).
    pub fn empty() -> Self {
        PasswordFile {
            users: HashMap::new(),
        }
    }

    /// Users whose hash parameters differ from the floor's (and so from the dummy hash of
    /// unknown users): their checks take longer, which tells that they exist. Sorted; the
    /// caller logs a warning naming them (re-set with `gateway passwd` to fix).
    pub fn nonuniform_users(&self) -> Vec<&str> {
        let floor = floor_params();
        let mut v: Vec<&str> = self
            .users
            .iter()
            .filter(|(_, e)| {
                PasswordHash::new(&e.phc)
                    .ok()
                    .and_then(|h| argon2::Params::try_from(&h).ok())
                    .is_none_or(|p| {
                        (p.m_cost(), p.t_cost(), p.p_cost())
                            != (floor.m_cost(), floor.t_cost(), floor.p_cost())
                    })
            })
            .map(|(u, _)| u.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// The hash a check of `user` verifies: the user's, or [`DUMMY_PHC`] for unknown users.
    fn phc_for(&self, user: &str) -> &str {
        self.users.get(user).map_or(DUMMY_PHC, |e| e.phc.as_str())
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The entry of a user.
    pub fn get(&self, user: &str) -> Option<&PasswordEntry> {
        self.users.get(user)
    }

    /// Verifies a user's password. Slow by design (argon2, tens of milliseconds): call it
    /// from `tokio::task::spawn_blocking`, never on a worker's event loop.
    ///
    /// Unknown users, over-long passwords and wrong passwords all return `None` after the
    /// same amount of work.
    pub fn verify(&self, user: &str, password: &str) -> Option<PasswordUser> {
        let entry = self.users.get(user);
        let phc = self.phc_for(user);
        let too_long = password.len() > MAX_PASSWORD_LEN;
        let pw: &[u8] = if too_long { b"" } else { password.as_bytes() };
        let ok = match PasswordHash::new(phc) {
            // The hash carries its own parameters (checked against the floor at load).
            Ok(h) => Argon2::default().verify_password(pw, &h).is_ok(),
            Err(_) => false,
        };
        match (ok && !too_long, entry) {
            (true, Some(e)) => Some(PasswordUser {
                name: user.to_string(),
                groups: e.groups.clone(),
            }),
            _ => None,
        }
    }
}

/// What [`set_password`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswdChange {
    /// The user was added.
    Added,
    /// The user's password (and groups, if given) changed.
    Changed,
}

/// Adds a user or changes a user's password in `file`, atomically (a temporary file in the
/// same directory, fsync, rename). Other lines, comments included, are kept as they are.
/// `groups = None` keeps the user's groups; `Some` replaces them. A new file is created
/// with mode 0600.
///
/// # Errors
/// [`PasswordFileError`] for a bad user/group name, a too short password, an unreadable or
/// malformed existing file, or a failed write.
pub fn set_password(
    file: &Path,
    user: &str,
    password: &str,
    groups: Option<&[String]>,
) -> Result<PasswdChange, PasswordFileError> {
    validate_name("user", user).map_err(PasswordFileError::Invalid)?;
    if let Some(gs) = groups {
        for g in gs {
            validate_name("group", g).map_err(PasswordFileError::Invalid)?;
        }
    }
    if password.len() < MIN_PASSWORD_LEN {
        return Err(PasswordFileError::Invalid(format!(
            "password too short: at least {MIN_PASSWORD_LEN} bytes"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordFileError::Invalid(format!(
            "password too long: at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    let io = |source| PasswordFileError::Io {
        path: file.to_path_buf(),
        source,
    };
    let (existing, mode) = match std::fs::read_to_string(file) {
        Ok(t) => {
            let mode = std::fs::metadata(file)
                .map(|m| perm_mode(&m))
                .unwrap_or(0o600);
            (t, mode)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0o600),
        Err(e) => return Err(io(e)),
    };
    // Refuse to rewrite a file we could not load: the operator must fix it first.
    PasswordFile::parse(&existing).map_err(|(line, message)| PasswordFileError::Line {
        path: file.to_path_buf(),
        line,
        message,
    })?;
    let phc = hash_password(password)?;
    let mut out = String::with_capacity(existing.len() + 128);
    let mut change = PasswdChange::Added;
    for line in existing.lines() {
        match parse_line(line) {
            Ok(Some((u, entry))) if u == user => {
                change = PasswdChange::Changed;
                let gs = groups.map(<[String]>::to_vec).unwrap_or(entry.groups);
                out.push_str(&format_line(user, &phc, &gs));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    if change == PasswdChange::Added {
        out.push_str(&format_line(user, &phc, groups.unwrap_or_default()));
        out.push('\n');
    }
    write_atomically(file, out.as_bytes(), mode).map_err(io)?;
    Ok(change)
}

fn format_line(user: &str, phc: &str, groups: &[String]) -> String {
    if groups.is_empty() {
        format!("{user}:{phc}")
    } else {
        format!("{user}:{phc}:{}", groups.join(","))
    }
}

#[cfg(unix)]
fn perm_mode(m: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn perm_mode(_m: &std::fs::Metadata) -> u32 {
    0o600
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "passwd".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `gateway passwd FILE USER`: add a user or change a user's password.
#[derive(Debug, Clone, clap::Args)]
pub struct PasswdArgs {
    /// The password file (created if missing, mode 0600).
    pub file: PathBuf,
    /// The user name.
    pub user: String,
    /// Set the user's groups (repeatable); without it the groups are kept.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Remove all of the user's groups.
    #[arg(long, conflicts_with = "groups")]
    pub clear_groups: bool,
}

/// Runs `gateway passwd`: reads the password without echo from the terminal (asked twice),
/// or one line from standard input when it is not a terminal, and updates the file.
///
/// # Errors
/// A [`PasswordFileError`] saying what to fix.
pub fn run_passwd(args: &PasswdArgs) -> Result<PasswdChange, PasswordFileError> {
    let password = read_new_password(&args.user)?;
    let groups = if args.clear_groups {
        Some(Vec::new())
    } else if args.groups.is_empty() {
        None
    } else {
        Some(args.groups.clone())
    };
    let change = set_password(&args.file, &args.user, &password, groups.as_deref())?;
    let what = match change {
        PasswdChange::Added => "added",
        PasswdChange::Changed => "changed",
    };
    eprintln!("user {:?} {what} in {}", args.user, args.file.display());
    Ok(change)
}

fn read_new_password(user: &str) -> Result<String, PasswordFileError> {
    let stdin_err = |source| PasswordFileError::Io {
        path: PathBuf::from("<stdin>"),
        source,
    };
    if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password(format!("New password for {user}: ")).map_err(stdin_err)?;
        let second = rpassword::prompt_password("Repeat: ").map_err(stdin_err)?;
        if first != second {
            return Err(PasswordFileError::Invalid(
                "the passwords do not match; nothing changed".into(),
            ));
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .take(MAX_PASSWORD_LEN as u64 + 2)
            .read_line(&mut line)
            .map_err(stdin_err)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(users: &[(&str, &str, &str)]) -> String {
        users
            .iter()
            .map(|(u, p, g)| {
                let phc = hash_password(p).expect("hash");
                if g.is_empty() {
                    format!("{u}:{phc}\n")
                } else {
                    format!("{u}:{phc}:{g}\n")
                }
            })
            .collect()
    }

    #[test]
    fn verify_good_wrong_unknown() {
        let text = format!(
            "# comment\n\n{}",
            file_with(&[
                ("alice", "correct horse", "staff,admins"),
                ("bob", "battery staple", "")
            ])
        );
        let f = PasswordFile::parse(&text).expect("parses");
        assert_eq!(f.len(), 2);
        let alice = f.verify("alice", "correct horse").expect("alice verifies");
        assert_eq!(alice.groups, vec!["staff", "admins"]);
        assert!(f.verify("alice", "correct horsE").is_none());
        assert!(f.verify("alice", "").is_none());
        assert!(f.verify("carol", "correct horse").is_none());
        assert!(f.verify("bob", "battery staple").is_some());
        assert!(f.verify("bob", &"x".repeat(MAX_PASSWORD_LEN + 1)).is_none());
    }

    fn params_of(phc: &str) -> (u32, u32, u32) {
        let h = PasswordHash::new(phc).expect("parses");
        let p = argon2::Params::try_from(&h).expect("params");
        (p.m_cost(), p.t_cost(), p.p_cost())
    }

    #[test]
    fn dummy_hash_is_valid_and_has_the_floor_parameters() {
        let h = PasswordHash::new(DUMMY_PHC).expect("parses");
        assert_eq!(h.algorithm.as_str(), "argon2id");
        assert_eq!(params_of(DUMMY_PHC), (MIN_M_COST, MIN_T_COST, MIN_P_COST));
        assert_eq!(h.hash.map(|o| o.len()), Some(32));
        assert!(PasswordFile::empty().verify("anyone", "anything").is_none());
    }

    /// Timing must not tell which users exist: an unknown user's check runs argon2id with
    /// exactly the parameters of a known user's (written by `gateway passwd`), whatever
    /// other, stronger lines the file holds.
    #[test]
    fn unknown_users_cost_the_same_argon2_work_as_known_ones() {
        let strong = {
            let p = argon2::Params::new(2 * MIN_M_COST, 3, 1, None).expect("params");
            let a = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
            a.hash_password(b"pw", &SaltString::generate(&mut OsRng))
                .expect("hash")
                .to_string()
        };
        // The stronger user first, so a dummy copied from "some user" would take its cost.
        let text = format!(
            "zed:{strong}\n{}",
            file_with(&[("alice", "correct horse", "")])
        );
        let f = PasswordFile::parse(&text).expect("parses");
        let known = params_of(f.phc_for("alice"));
        assert_eq!(known, (MIN_M_COST, MIN_T_COST, MIN_P_COST));
        for unknown in ["carol", "zed2", "", "admin"] {
            assert_eq!(params_of(f.phc_for(unknown)), known, "{unknown}");
        }
        assert_eq!(f.nonuniform_users(), vec!["zed"]);
        // And measured, interleaved so machine load hits both alike: the median of known-user
        // checks and of unknown-user checks within a factor of 1.5 (a stronger user, like
        // `zed` at twice the memory and 1.5 times the passes, is about 3 times slower).
        let time = |user: &str| {
            let t = std::time::Instant::now();
            assert!(f.verify(user, "wrong password").is_none());
            t.elapsed().as_secs_f64()
        };
        let (mut k, mut u): (Vec<f64>, Vec<f64>) =
            (0..5).map(|_| (time("alice"), time("nobody"))).unzip();
        k.sort_by(f64::total_cmp);
        u.sort_by(f64::total_cmp);
        let ratio = k[2] / u[2];
        assert!((0.67..1.5).contains(&ratio), "known {k:?} unknown {u:?}");
    }

    #[test]
    fn parameters_below_the_floor_are_a_load_error_naming_the_line() {
        let weak = |m: u32, t: u32| {
            let p = argon2::Params::new(m, t, 1, None).expect("params");
            let a = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
            a.hash_password(b"pw", &SaltString::generate(&mut OsRng))
                .expect("hash")
                .to_string()
        };
        let good = file_with(&[("alice", "correct horse", "")]);
        for (m, t) in [(8, 1), (19_455, 2), (19_456, 1), (65_536, 1)] {
            let text = format!("{good}# c\nmallory:{}\n", weak(m, t));
            let (line, msg) = PasswordFile::parse(&text).expect_err("below the floor");
            assert_eq!(line, 3, "{msg}");
            assert!(
                msg.contains("mallory") && msg.contains("below the floor"),
                "{msg}"
            );
        }
        assert!(PasswordFile::parse(&format!("{good}ok:{}\n", weak(19_456, 2))).is_ok());
        assert!(PasswordFile::parse(&format!("{good}ok:{}\n", weak(47_104, 3))).is_ok());
    }

    #[test]
    fn errors_name_the_line() {
        let good = file_with(&[("alice", "correct horse", "")]);
        let cases = [
            (format!("{good}no-colon-here\n"), 2, "no ':'"),
            (format!("\n{good}{good}"), 3, "twice"),
            (
                "bad user:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n"
                    .to_string(),
                1,
                "whitespace",
            ),
            (
                "u:$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n".to_string(),
                1,
                "not allowed",
            ),
            ("u:plaintext\n".to_string(), 1, "PHC"),
        ];
        for (text, line, needle) in cases {
            let (l, m) = PasswordFile::parse(&text).expect_err("must fail");
            assert_eq!(l, line, "{m}");
            assert!(m.contains(needle), "{m:?} should mention {needle:?}");
        }
    }

    #[test]
    fn load_reports_path_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("users");
        std::fs::write(&p, "# x\nbroken\n").expect("write");
        let e = PasswordFile::load(&p).expect_err("fails").to_string();
        assert!(e.contains("line 2") && e.contains("users"), "{e}");
    }

    #[test]
    fn set_password_adds_changes_and_keeps_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("users");
        let g = vec!["ops".to_string()];
        assert_eq!(
            set_password(&p, "alice", "first password", Some(&g)).expect("add"),
            PasswdChange::Added
        );
        #[cfg(unix)]
        {
            let m = std::fs::metadata(&p).expect("meta");
            assert_eq!(perm_mode(&m), 0o600);
        }
        let mut text = std::fs::read_to_string(&p).expect("read");
        text.insert_str(0, "# keep me\n");
        std::fs::write(&p, text).expect("write");
        set_password(&p, "bob", "bobs password", None).expect("add bob");
        assert_eq!(
            set_password(&p, "alice", "second password", None).expect("change"),
            PasswdChange::Changed
        );
        let f = PasswordFile::load(&p).expect("loads");
        assert!(f.verify("alice", "first password").is_none());
        let a = f.verify("alice", "second password").expect("new password");
        assert_eq!(a.groups, vec!["ops"], "groups kept");
        assert!(f.verify("bob", "bobs password").is_some());
        assert!(std::fs::read_to_string(&p)
            .expect("read")
            .starts_with("# keep me\n"));
        assert!(set_password(&p, "alice", "short", None).is_err());
        assert!(set_password(&p, "a:b", "long enough pw", None).is_err());
    }
}
