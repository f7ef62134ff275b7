//! Session-ticket keys shared by a fleet: `[global] ticket_keys = "FILE"`.
//!
//! The file holds a *current* key (encrypts new tickets) and *previous* keys (still decrypt,
//! so a rotation does not force every client into a full handshake at once). Every gateway
//! process that reads the same file (after a restart, on another host) resumes the sessions
//! the others issued. `gateway ticket-keys rotate FILE [--keep N]` writes a new current key
//! atomically (mode 0600) and keeps the `N` most recent previous keys.
//!
//! Tickets are AES-256-GCM (aws-lc-rs or ring) under a key derived with HKDF-SHA256 from the
//! file's key and the listener's *ticket context*: its name and its client-authentication
//! policy (trusted CAs, classification, key policy). A ticket issued by one listener therefore
//! never resumes on another listener, and a reload that changes the trusted CAs invalidates the
//! tickets issued under the old ones: a client of a removed CA cannot resume its way in.
//!
//! Ticket layout: `version (1) || key id (4) || nonce (12) || ciphertext || tag (16)`, the
//! header authenticated as associated data. The key id (4 bytes of a labelled SHA-256 of the
//! file key: public, not secret) picks the key; the nonce is random (rotate the file well
//! before 2^32 tickets per key).
//! Any malformed or unauthenticated ticket decrypts to `None` (a full handshake follows).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs::{aead, hkdf, rand as crypto_rand};
#[cfg(all(not(feature = "aws-lc-rs"), feature = "ring"))]
use ring::{aead, hkdf, rand as crypto_rand};

use crypto_rand::SecureRandom;
use sha2::{Digest, Sha256};

/// Format version byte at the start of every ticket.
const TICKET_VERSION: u8 = 1;
/// Length of a file key in bytes.
pub const KEY_LEN: usize = 32;
const ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + ID_LEN + NONCE_LEN;
/// HKDF salt: binds the derived keys to this use.
const HKDF_SALT: &[u8] = b"S.E.E. gateway session tickets v1";

/// Errors reading, writing or using a ticket-key file.
#[derive(Debug, thiserror::Error)]
pub enum TicketKeyError {
    /// The file could not be read or written.
    #[error("ticket key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a key.
    #[error("ticket key file {path}, line {line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file holds no key.
    #[error("ticket key file {0} holds no key: create one with `gateway ticket-keys rotate {0}`")]
    Empty(PathBuf),
    /// The file can be read by group or others.
    #[error("ticket key file {path} is readable by group or others (mode {mode:o}): chmod 600 it")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The system random generator failed.
    #[error("random generator failed")]
    Random,
}

/// One key of the file (secret; never printed).
#[derive(Clone)]
pub struct TicketKey {
    bytes: [u8; KEY_LEN],
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketKey(id {})", hex::encode(self.id()))
    }
}

impl TicketKey {
    /// A fresh random key.
    ///
    /// # Errors
    /// [`TicketKeyError::Random`] if the system generator fails.
    pub fn generate() -> Result<TicketKey, TicketKeyError> {
        let mut bytes = [0u8; KEY_LEN];
        crypto_rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| TicketKeyError::Random)?;
        Ok(TicketKey { bytes })
    }

    /// The public key id written in front of tickets (not secret: a hash of the key).
    pub fn id(&self) -> [u8; ID_LEN] {
        let mut h = Sha256::new();
        h.update(b"S.E.E. gateway ticket key id");
        h.update(self.bytes);
        let d = h.finalize();
        [d[0], d[1], d[2], d[3]]
    }
}

/// The keys of a ticket-key file: the current one first, then the previous ones.
#[derive(Debug, Clone)]
pub struct TicketKeys {
    keys: Vec<TicketKey>,
}

impl TicketKeys {
    /// Reads a ticket-key file. Refuses a file readable by group or others.
    ///
    /// # Errors
    /// [`TicketKeyError`] naming the file (and line) at fault.
    pub fn load(path: &Path) -> Result<TicketKeys, TicketKeyError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| TicketKeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TicketKeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<TicketKeys, TicketKeyError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |message: String| TicketKeyError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            };
            let raw = hex::decode(line)
                .map_err(|_| syntax(format!("expected {} hex digits", 2 * KEY_LEN)))?;
            let bytes: [u8; KEY_LEN] = raw.try_into().map_err(|v: Vec<u8>| {
                syntax(format!(
                    "a key is {KEY_LEN} bytes ({} hex digits), found {} bytes",
                    2 * KEY_LEN,
                    v.len()
                ))
            })?;
            keys.push(TicketKey { bytes });
        }
        if keys.is_empty() {
            return Err(TicketKeyError::Empty(path.to_path_buf()));
        }
        Ok(TicketKeys { keys })
    }

    /// The number of keys (current + previous).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a loaded file has at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, current first (for logs).
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| hex::encode(k.id())).collect()
    }

    /// A ticketer for one listener: keys derived for `context` (see the module docs).
    ///
    /// # Errors
    /// Never in practice (HKDF with a fixed output length); kept for the provider's API.
    pub fn ticketer(
        &self,
        context: &[u8],
        lifetime_secs: u32,
    ) -> Result<Arc<FileTicketer>, TicketKeyError> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT);
        let mut keys = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            let prk = salt.extract(&k.bytes);
            let info = [context];
            let okm = prk
                .expand(&info, &aead::AES_256_GCM)
                .map_err(|_| TicketKeyError::Random)?;
            let key = aead::LessSafeKey::new(aead::UnboundKey::from(okm));
            keys.push((k.id(), key));
        }
        Ok(Arc::new(FileTicketer {
            keys,
            lifetime_secs,
            rng: crypto_rand::SystemRandom::new(),
        }))
    }

    /// Rotates the file at `path`: a new random current key, the old current key and at most
    /// `keep` keys in total behind it. Creates the file when missing. Writes a temporary file
    /// (mode 0600) in the same directory, syncs it and renames it over the old one, so a
    /// reader sees either the old or the new file, never a partial one.
    ///
    /// Returns the new key set.
    ///
    /// # Errors
    /// [`TicketKeyError`] if the old file is unreadable or the new one cannot be written.
    pub fn rotate(path: &Path, keep: usize) -> Result<TicketKeys, TicketKeyError> {
        let old = match Self::load(path) {
            Ok(k) => k.keys,
            Err(TicketKeyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let mut keys = vec![TicketKey::generate()?];
        keys.extend(old.into_iter().take(keep));
        let set = TicketKeys { keys };
        set.write_atomically(path)?;
        Ok(set)
    }

    fn write_atomically(&self, path: &Path) -> Result<(), TicketKeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| TicketKeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map_or_else(
            || "ticket-keys".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let mut text = String::from(
            "# S.E.E. gateway session-ticket keys (`gateway ticket-keys rotate`). SECRET: mode 0600.\n\
             # The first key encrypts new tickets; the others only decrypt (rotation overlap).\n",
        );
        for k in &self.keys {
            text.push_str(&hex::encode(k.bytes));
            text.push('\n');
        }
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

/// A rustls ticketer over the keys of a ticket-key file, for one listener context.
pub struct FileTicketer {
    /// (key id, AEAD key), current first.
    keys: Vec<([u8; ID_LEN], aead::LessSafeKey)>,
    lifetime_secs: u32,
    rng: crypto_rand::SystemRandom,
}

impl fmt::Debug for FileTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileTicketer")
            .field(
                "key_ids",
                &self
                    .keys
                    .iter()
                    .map(|(id, _)| hex::encode(id))
                    .collect::<Vec<_>>(),
            )
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

impl rustls::server::ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime_secs
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let (id, key) = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN);
        out.push(TICKET_VERSION);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        let aad = aead::Aad::from(out.clone());
        let mut body = plain.to_vec();
        key.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aad, &mut body)
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < HEADER_LEN + TAG_LEN || cipher[0] != TICKET_VERSION {
            return None;
        }
        let (header, body) = cipher.split_at(HEADER_LEN);
        let id = &header[1..1 + ID_LEN];
        let nonce: [u8; NONCE_LEN] = header[1 + ID_LEN..].try_into().ok()?;
        let (_, key) = self.keys.iter().find(|(k, _)| k.as_slice() == id)?;
        let mut buf = body.to_vec();
        let plain = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(header),
                &mut buf,
            )
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    fn keys(n: usize) -> TicketKeys {
        TicketKeys {
            keys: (0..n).map(|_| TicketKey::generate().unwrap()).collect(),
        }
    }

    #[test]
    fn round_trip_and_previous_keys_still_decrypt() {
        let old = keys(1);
        let t_old = old.ticketer(b"l", 100).unwrap();
        let ticket = t_old.encrypt(b"session state").unwrap();
        assert_eq!(t_old.decrypt(&ticket).unwrap(), b"session state");
        // After a rotation with overlap: the old key is second, still decrypts.
        let mut rotated = keys(1);
        rotated.keys.push(old.keys[0].clone());
        let t_new = rotated.ticketer(b"l", 100).unwrap();
        assert_eq!(t_new.decrypt(&ticket).unwrap(), b"session state");
        // New tickets use the new key: the old set cannot read them.
        let fresh = t_new.encrypt(b"x").unwrap();
        assert_eq!(&fresh[1..5], &rotated.keys[0].id());
        assert!(t_old.decrypt(&fresh).is_none());
    }

    #[test]
    fn other_context_or_tampering_or_rotated_out_fails() {
        let k = keys(1);
        let a = k.ticketer(b"listener a", 100).unwrap();
        let b = k.ticketer(b"listener b", 100).unwrap();
        let t = a.encrypt(b"secret").unwrap();
        assert!(b.decrypt(&t).is_none(), "another context must not decrypt");
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 1;
            assert!(a.decrypt(&bad).is_none(), "flipped byte {i} accepted");
        }
        assert!(a.decrypt(&t[..t.len() - 1]).is_none());
        assert!(a.decrypt(&[]).is_none());
        let other = keys(2).ticketer(b"listener a", 100).unwrap();
        assert!(other.decrypt(&t).is_none(), "rotated-out key accepted");
    }

    #[test]
    fn rotate_writes_0600_keeps_n_and_parse_errors_name_the_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tickets.keys");
        let first = TicketKeys::rotate(&p, 2).unwrap();
        assert_eq!(first.len(), 1);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut ids = first.ids();
        for _ in 0..4 {
            let s = TicketKeys::rotate(&p, 2).unwrap();
            assert_eq!(
                s.ids()[1],
                ids[0],
                "old current key becomes the first previous"
            );
            ids = s.ids();
        }
        assert_eq!(TicketKeys::load(&p).unwrap().len(), 3);
        assert_eq!(TicketKeys::rotate(&p, 0).unwrap().len(), 1);

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            TicketKeys::load(&p),
            Err(TicketKeyError::Permissions { .. })
        ));
        let e = TicketKeys::parse(&p, "# c\n\nabcd\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("32 bytes"), "{e}");
        let e = TicketKeys::parse(&p, "zz\n").unwrap_err().to_string();
        assert!(e.contains("hex"), "{e}");
        assert!(matches!(
            TicketKeys::parse(&p, "# only comments\n"),
            Err(TicketKeyError::Empty(_))
        ));
    }
}
