//! Encryption at rest of secret values: AES-256-GCM (ring's AEAD, the
//! crate rustls already builds on here, so no second crypto stack) under a
//! 256-bit key that is never in the store. The key lives in a file: the data
//! dir's `secrets.key` (created `0600` on first use), or the
//! `--secrets-key-file` every server of a PostgreSQL store shares. A store
//! (or a backup of it) without that file holds ciphertext only.
//!
//! Each value set is sealed with a fresh random 96-bit nonce and the
//! secret's name and kind as associated data, so a row copied under another
//! name does not open.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// The key file's name in the data dir.
pub const KEY_FILE: &str = "secrets.key";

/// The values of a secret, opened: key to value, as bytes (a registry
/// secret's are `username` and `password`, UTF-8 text).
pub(crate) type SecretValues = std::collections::BTreeMap<String, Vec<u8>>;

/// What a secret's sealed plaintext holds: today `{"bytes": {KEY: BASE64}}`;
/// a secret stored before values were bytes holds `{KEY: TEXT}` and still
/// opens. (The two cannot be confused: in the old form every value is a
/// string, in the new one `bytes` is a map.)
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Plaintext {
    Bytes {
        bytes: std::collections::BTreeMap<String, String>,
    },
    Text(std::collections::BTreeMap<String, String>),
}

/// The plaintext [`open_values`] reads back: the values as base64, in JSON.
pub(crate) fn encode_values(values: &SecretValues) -> Result<Vec<u8>> {
    let bytes = values
        .iter()
        .map(|(k, v)| (k.clone(), base64::engine::general_purpose::STANDARD.encode(v)))
        .collect();
    serde_json::to_vec(&Plaintext::Bytes { bytes }).map_err(|e| Error::Internal(format!("encoding a secret: {e}")))
}

/// Where the key comes from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// A file (created `0600` when missing).
    File(PathBuf),
    /// A key made at start and kept in memory only (an in-memory store).
    Ephemeral,
    /// None: a PostgreSQL store started without `--secrets-key-file`.
    Missing,
}

/// The secrets' key, loaded (or created) on first use.
#[derive(Clone)]
pub(crate) struct Vault {
    source: KeySource,
    key: Arc<Mutex<Option<Arc<LessSafeKey>>>>,
}

/// Never prints the key.
impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn unavailable(message: String) -> Error {
    Error::SecretsUnavailable(message)
}

impl Vault {
    pub(crate) fn new(source: KeySource) -> Vault {
        Vault {
            source,
            key: Arc::new(Mutex::new(None)),
        }
    }

    /// The key file, when there is one.
    pub(crate) fn key_file(&self) -> Option<&Path> {
        match &self.source {
            KeySource::File(p) => Some(p),
            _ => None,
        }
    }

    fn key(&self) -> Result<Arc<LessSafeKey>> {
        let mut slot = crate::sync::lock(&self.key);
        if let Some(key) = slot.as_ref() {
            return Ok(Arc::clone(key));
        }
        let bytes = match &self.source {
            KeySource::File(path) => load_or_create(path)?,
            KeySource::Ephemeral => random::<32>()?.to_vec(),
            KeySource::Missing => {
                return Err(unavailable(
                    "a PostgreSQL store keeps secrets only with --secrets-key-file FILE (the same 32-byte key on every server: \
                     `head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`)"
                        .into(),
                ));
            }
        };
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| unavailable("the secrets key must be 32 bytes".into()))?;
        let key = Arc::new(LessSafeKey::new(key));
        *slot = Some(Arc::clone(&key));
        Ok(key)
    }

    /// Loads (or creates) the key now, so a bad key file fails at start.
    pub(crate) fn check(&self) -> Result<()> {
        match self.source {
            KeySource::Missing => Ok(()),
            _ => self.key().map(|_| ()),
        }
    }

    /// Seals `plain` for the secret `aad`: base64 of nonce, ciphertext and tag.
    pub(crate) fn seal(&self, aad: &str, plain: &[u8]) -> Result<String> {
        let key = self.key()?;
        let nonce = random::<NONCE_LEN>()?;
        let mut buf = plain.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| Error::Internal("sealing a secret failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Opens what [`seal`](Self::seal) made for the same `aad`.
    pub(crate) fn open(&self, aad: &str, sealed: &str) -> Result<Vec<u8>> {
        let key = self.key()?;
        let wrong = || {
            unavailable(format!(
                "secret {aad:?} does not open with this server's key{}: was the store copied without its key file?",
                self.key_file()
                    .map(|p| format!(" ({})", p.display()))
                    .unwrap_or_default()
            ))
        };
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| wrong())?;
        if bytes.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, rest) = bytes.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let plain = key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), rest)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

/// Opens the values of a stored secret.
pub(crate) fn open_values(vault: &Vault, stored: &crate::store::StoredSecret) -> Result<SecretValues> {
    let plain = vault.open(
        &crate::store::StoredSecret::aad(&stored.name, stored.kind),
        &stored.sealed,
    )?;
    let unreadable = || Error::SecretsUnavailable(format!("secret {:?} holds no readable values", stored.name));
    match serde_json::from_slice(&plain).map_err(|_| unreadable())? {
        Plaintext::Bytes { bytes } => bytes
            .into_iter()
            .map(|(k, v)| {
                let v = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|_| unreadable())?;
                Ok((k, v))
            })
            .collect(),
        Plaintext::Text(text) => Ok(text.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()),
    }
}

/// Why a secret's value cannot be an environment variable's: the engine
/// takes UTF-8 text without NUL bytes (a file of `secret_files` may hold any bytes).
pub(crate) fn env_unsafe(value: &[u8]) -> Option<&'static str> {
    match std::str::from_utf8(value) {
        Err(_) => Some("is not UTF-8 text"),
        Ok(text) if text.contains('\0') => Some("holds a NUL byte"),
        Ok(_) => None,
    }
}

/// The value of the environment variable `var` (`{secret, key}` of `r`):
/// [`Error::InvalidSecret`] on `env.VAR`, naming the key, when it is not text.
pub(crate) fn env_text<'a>(var: &str, r: &dubernetes_api::SecretKeyRef, value: &'a [u8]) -> Result<&'a str> {
    match (env_unsafe(value), std::str::from_utf8(value)) {
        (None, Ok(text)) => Ok(text),
        (why, _) => Err(Error::InvalidSecret {
            field: format!("env.{var}"),
            message: format!(
                "key {:?} of secret {:?} {}, so it cannot be an environment variable; mount it with secret_files instead",
                r.key,
                r.secret,
                why.unwrap_or("is not UTF-8 text")
            ),
        }),
    }
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Internal("the system random source failed".into()))?;
    Ok(out)
}

/// Reads a key file (32 raw bytes, or their base64 text), or creates one
/// (`0600`, base64 text) when it does not exist.
fn load_or_create(path: &Path) -> Result<Vec<u8>> {
    let io = |what: &str, e: std::io::Error| Error::Io {
        context: format!("{what} the secrets key file {}", path.display()),
        source: e,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(file = %path.display(), "the secrets key file is readable by other users; `chmod 600` it");
            }
            if bytes.len() == 32 {
                return Ok(bytes);
            }
            let text = String::from_utf8_lossy(&bytes);
            match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                Ok(key) if key.len() == 32 => Ok(key),
                _ => Err(unavailable(format!(
                    "the secrets key file {} must hold 32 bytes, raw or as base64 text",
                    path.display()
                ))),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random::<32>()?;
            let mut file = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(f) => f,
                // Another server made it meanwhile: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return load_or_create(path),
                Err(e) => return Err(io("creating", e)),
            };
            let text = base64::engine::general_purpose::STANDARD.encode(key);
            file.write_all(format!("{text}\n").as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(|e| io("writing", e))?;
            tracing::info!(file = %path.display(), "created the secrets key file; back it up apart from the store");
            Ok(key.to_vec())
        }
        Err(e) => Err(io("reading", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_binds_the_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = Vault::new(KeySource::File(dir.path().join(KEY_FILE)));
        let sealed = vault.seal("generic/db", b"hunter2").expect("seals");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(vault.open("generic/db", &sealed).expect("opens"), b"hunter2");
        assert!(vault.open("generic/other", &sealed).is_err());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second vault on the same file opens it; one with another key does not.
        let again = Vault::new(KeySource::File(dir.path().join(KEY_FILE)));
        assert_eq!(again.open("generic/db", &sealed).expect("opens"), b"hunter2");
        let other = Vault::new(KeySource::Ephemeral);
        let err = other.open("generic/db", &sealed).expect_err("wrong key");
        assert!(!err.to_string().contains("hunter2"));
        assert!(Vault::new(KeySource::Missing).seal("a", b"b").is_err());
    }

    #[test]
    fn values_are_bytes_and_old_text_values_still_open() {
        use dubernetes_api::SecretType;
        let vault = Vault::new(KeySource::Ephemeral);
        let stored = |plain: &[u8]| crate::store::StoredSecret {
            name: "db".into(),
            kind: SecretType::Generic,
            keys: vec![],
            docker_server: None,
            sealed: vault
                .seal(&crate::store::StoredSecret::aad("db", SecretType::Generic), plain)
                .expect("seals"),
            version: 1,
            created_at: 0,
            updated_at: 0,
        };
        let values: SecretValues = [
            ("keystore".to_string(), vec![0u8, 0xff, 0xfe, 1, 2]),
            ("bytes".to_string(), b"text".to_vec()),
        ]
        .into();
        let sealed = stored(&encode_values(&values).expect("encodes"));
        assert_eq!(open_values(&vault, &sealed).expect("opens"), values);
        // A secret sealed before values were bytes: a map of text, even one
        // whose key is `bytes`.
        let old = stored(br#"{"bytes":"hunter2","user":"app"}"#);
        let opened = open_values(&vault, &old).expect("opens");
        assert_eq!(opened.get("bytes").map(Vec::as_slice), Some(&b"hunter2"[..]));
        assert_eq!(opened.get("user").map(Vec::as_slice), Some(&b"app"[..]));
    }
}
