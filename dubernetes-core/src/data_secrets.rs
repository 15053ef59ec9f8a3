//! Generic and docker-registry secrets of the facade (`dubectl create secret
//! generic | docker-registry`): checked, sealed by the [`Vault`](crate::vault::Vault)
//! and stored; answered by name and keys only. A pod names them in `env`
//! (`{secret: NAME, key: KEY}`), `secret_files` and `image_pull_secret`; at
//! apply the server checks what it names and records each generic secret's
//! version in the spec (`secret_versions`), so replacing a secret makes a
//! new revision of every pod using it, rolled out as any change is.

use std::collections::BTreeMap;

use dubernetes_api::{AnySecret, DataSecret, EnvValue, NewSecret, SecretType, check_secret_name};

use crate::error::{Error, Result};
use crate::orchestrator::Dubernetes;
use crate::spec::PodSpec;
use crate::store::StoredSecret;

/// Most keys of a generic secret.
pub const MAX_SECRET_KEYS: usize = 64;

/// Largest value of a key, in bytes.
pub const MAX_SECRET_VALUE_BYTES: usize = 64 * 1024;

/// How many times a pod that changed meanwhile is re-read when a replaced secret rolls it.
const ROLL_ATTEMPTS: usize = 5;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::InvalidSecret {
        field: field.into(),
        message: message.into(),
    }
}

use crate::vault::{SecretValues, env_unsafe};

/// Checks a new secret; returns what is sealed (its values) and its keys.
fn check(secret: &NewSecret) -> Result<(SecretValues, Vec<String>)> {
    check_secret_name(&secret.name).map_err(|m| invalid("name", m))?;
    match secret.kind {
        SecretType::Generic => {
            for (field, v) in [
                ("docker_server", &secret.docker_server),
                ("docker_username", &secret.docker_username),
                ("docker_password", &secret.docker_password),
            ] {
                if v.is_some() {
                    return Err(invalid(
                        field,
                        "is for docker-registry secrets; a generic secret has `data` only",
                    ));
                }
            }
            let values = generic_values(secret)?;
            let keys = values.keys().cloned().collect();
            Ok((values, keys))
        }
        SecretType::DockerRegistry => {
            if !secret.data.is_empty() || !secret.binary_data.is_empty() {
                return Err(invalid(
                    if secret.data.is_empty() { "binary_data" } else { "data" },
                    "a docker-registry secret has no data; give docker_server, docker_username and docker_password",
                ));
            }
            let server = secret.docker_server.as_deref().unwrap_or_default();
            check_registry(server).map_err(|m| invalid("docker_server", m))?;
            let mut values = SecretValues::new();
            for (field, key, v) in [
                ("docker_username", "username", &secret.docker_username),
                ("docker_password", "password", &secret.docker_password),
            ] {
                let v = v.as_deref().unwrap_or_default();
                if v.is_empty() {
                    return Err(invalid(field, format!("is required (--{})", field.replace('_', "-"))));
                }
                if v.len() > 4096 || v.chars().any(char::is_control) {
                    return Err(invalid(field, "must be at most 4096 bytes with no control characters"));
                }
                values.insert(key.to_string(), v.as_bytes().to_vec());
            }
            Ok((values, Vec::new()))
        }
    }
}

/// A generic secret's values, as bytes: `data` (text) and `binary_data`
/// (base64) together, each key once, within the limits. No message quotes a value.
fn generic_values(secret: &NewSecret) -> Result<SecretValues> {
    use base64::Engine as _;
    let count = secret.data.len() + secret.binary_data.len();
    if count == 0 {
        return Err(invalid(
            "data",
            "a generic secret needs at least one key: --from-literal=KEY=VALUE or --from-file=KEY=PATH",
        ));
    }
    if count > MAX_SECRET_KEYS {
        return Err(invalid(
            "data",
            format!("has {count} keys; at most {MAX_SECRET_KEYS} are allowed"),
        ));
    }
    let mut values = SecretValues::new();
    let text = secret
        .data
        .iter()
        .map(|(k, v)| ("data", k, Ok::<_, String>(v.as_bytes().to_vec())));
    let binary = secret.binary_data.iter().map(|(k, v)| {
        // base64's error names the offending byte: only say where.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|_| "value is not base64 (standard alphabet, padded)".to_string());
        ("binary_data", k, bytes)
    });
    for (map, key, value) in text.chain(binary) {
        let field = format!("{map}.{}", key.escape_default());
        crate::spec::check_file_key(key).map_err(|m| invalid(field.clone(), m))?;
        let value = value.map_err(|m| invalid(field.clone(), m))?;
        // Never quote the value: only its size.
        if value.len() > MAX_SECRET_VALUE_BYTES {
            return Err(invalid(
                field,
                format!(
                    "value is {} bytes; at most {MAX_SECRET_VALUE_BYTES} are allowed",
                    value.len()
                ),
            ));
        }
        if values.insert(key.clone(), value).is_some() {
            return Err(invalid(
                field,
                "the key is in both `data` and `binary_data`; give it once",
            ));
        }
    }
    Ok(values)
}

/// A registry host as an image reference names it: `host[:port]`.
fn check_registry(server: &str) -> std::result::Result<(), String> {
    let ok = !server.is_empty()
        && server.len() <= 253
        && server.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if ok {
        Ok(())
    } else {
        Err("must be a registry host as images name it, e.g. registry.example.com or 127.0.0.1:5000 (no scheme or path)".into())
    }
}

fn view(stored: StoredSecret, pods: &[PodSpec]) -> DataSecret {
    let mut secret = DataSecret::new(
        stored.name.clone(),
        stored.kind,
        stored.keys,
        stored.docker_server,
        stored.version,
    );
    secret.created_at = stored.created_at;
    secret.updated_at = stored.updated_at;
    secret.used_by = pods
        .iter()
        .filter(|p| p.uses_secret(&stored.name))
        .map(|p| p.name.clone())
        .collect();
    secret
}

impl Dubernetes {
    /// Stores a new generic or docker-registry secret; [`Error::SecretTaken`]
    /// when a secret of that name exists.
    pub async fn create_data_secret(&self, secret: NewSecret) -> Result<DataSecret> {
        self.put_data_secret(secret, false).await
    }

    /// Replaces (or creates) a generic or docker-registry secret; the pods
    /// using a generic one roll to a new revision.
    pub async fn replace_data_secret(&self, secret: NewSecret) -> Result<DataSecret> {
        self.put_data_secret(secret, true).await
    }

    async fn put_data_secret(&self, secret: NewSecret, replace: bool) -> Result<DataSecret> {
        let (values, keys) = check(&secret)?;
        if self.handle.store.certificate(&secret.name).await?.is_some() {
            return Err(Error::SecretTaken(secret.name));
        }
        if secret.kind == SecretType::Generic {
            self.check_env_users(&secret, &values).await?;
        }
        let plain = crate::vault::encode_values(&values)?;
        let sealed = self
            .handle
            .settings
            .vault
            .seal(&StoredSecret::aad(&secret.name, secret.kind), &plain)?;
        let stored = StoredSecret {
            name: secret.name.clone(),
            kind: secret.kind,
            keys,
            docker_server: secret.docker_server.clone(),
            sealed,
            version: 0,
            created_at: 0,
            updated_at: 0,
        };
        let stored = self.handle.store.put_data_secret(&stored, replace).await?;
        tracing::info!(secret = %stored.name, kind = stored.kind.as_str(), keys = ?stored.keys, version = stored.version, "stored a secret");
        if stored.kind == SecretType::Generic {
            self.roll_users(&stored.name).await?;
        } else {
            // New credentials change no container: the pods using them try
            // their pull again now rather than at the end of their back-off.
            for pod in self.handle.store.list().await? {
                if pod.spec.image_pull_secret.as_deref() == Some(&stored.name) {
                    self.handle.ctx().wake(&pod.spec.name);
                }
            }
        }
        self.data_secret(&stored.name).await
    }

    /// Refuses new values that a pod using the secret could not take as an
    /// environment variable (the field names the key, the message the pod).
    /// A pod applied meanwhile is caught by its own apply or, at the latest,
    /// when its replica is made (`SecretUnavailable` in its status).
    async fn check_env_users(&self, secret: &NewSecret, values: &SecretValues) -> Result<()> {
        for pod in self.handle.store.list().await? {
            for (var, value) in &pod.spec.env {
                let EnvValue::Secret(r) = value else { continue };
                if r.secret != secret.name {
                    continue;
                }
                let Some(why) = values.get(&r.key).and_then(|v| env_unsafe(v)) else {
                    continue;
                };
                let map = if secret.binary_data.contains_key(&r.key) {
                    "binary_data"
                } else {
                    "data"
                };
                return Err(invalid(
                    format!("{map}.{}", r.key.escape_default()),
                    format!(
                        "the value {why}, but pod {:?} uses it as the environment variable {var}; mount it with secret_files there first",
                        pod.spec.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Gives every pod using the generic secret `name` its new version: a new
    /// revision, rolled out with the pod's own strategy and safety.
    async fn roll_users(&self, name: &str) -> Result<()> {
        for pod in self.handle.store.list().await? {
            if !pod.spec.generic_secrets().contains(name) {
                continue;
            }
            let mut attempt = 0;
            loop {
                let Some(current) = self.handle.store.get(&pod.spec.name).await? else {
                    break;
                };
                match self.apply_if(current.spec, Some(current.generation)).await {
                    Ok(_) => {
                        tracing::info!(secret = %name, pod = %pod.spec.name, "the secret changed: the pod rolls to a new revision");
                        break;
                    }
                    Err(Error::StaleGeneration { .. }) if attempt + 1 < ROLL_ATTEMPTS => attempt += 1,
                    Err(Error::NotFound(_)) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// One generic or docker-registry secret.
    pub async fn data_secret(&self, name: &str) -> Result<DataSecret> {
        let stored = self
            .handle
            .store
            .data_secret(name)
            .await?
            .ok_or_else(|| Error::SecretNotFound(name.to_string()))?;
        let pods: Vec<PodSpec> = self.handle.store.list().await?.into_iter().map(|p| p.spec).collect();
        Ok(view(stored, &pods))
    }

    /// Every secret of every type, by name (names, keys and what certificates say; never a value).
    pub async fn all_secrets(&self) -> Result<Vec<AnySecret>> {
        let pods: Vec<PodSpec> = self.handle.store.list().await?.into_iter().map(|p| p.spec).collect();
        let mut all: Vec<AnySecret> = self
            .handle
            .store
            .data_secrets()
            .await?
            .into_iter()
            .map(|s| AnySecret::Data(view(s, &pods)))
            .chain(self.secrets().await?.into_iter().map(AnySecret::Tls))
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(all)
    }

    /// The secret of this name, of any type.
    pub async fn any_secret(&self, name: &str) -> Result<AnySecret> {
        match self.data_secret(name).await {
            Ok(s) => Ok(AnySecret::Data(s)),
            Err(Error::SecretNotFound(_)) => self.secret(name).await.map(AnySecret::Tls),
            Err(e) => Err(e),
        }
    }

    /// Deletes the secret of this name, of any type; refused while pods use it.
    pub async fn delete_any_secret(&self, name: &str) -> Result<()> {
        if self.handle.store.data_secret(name).await?.is_some() {
            if self.handle.store.delete_data_secret(name).await? {
                tracing::info!(secret = %name, "deleted a secret");
            }
            return Ok(());
        }
        self.delete_secret(name).await
    }

    /// Checks what `spec` takes from secrets (each generic secret exists and
    /// has the keys named, each env value is text; the pull secret is a
    /// docker-registry one) and records their versions in `secret_versions`
    /// (what the client sent there is replaced). The store checks the same
    /// references again in its write transaction ([`crate::store::check_secret_refs`]);
    /// this read serves dry runs and the value checks, which need the vault.
    pub(crate) async fn with_secret_versions(&self, mut spec: PodSpec) -> Result<PodSpec> {
        let mut stored: BTreeMap<String, StoredSecret> = BTreeMap::new();
        for name in crate::store::secret_refs(&spec) {
            if let Some(s) = self.handle.store.data_secret(name).await? {
                stored.insert(name.to_string(), s);
            }
        }
        let rows = stored
            .iter()
            .map(|(name, s)| {
                let row = crate::store::SecretRow {
                    kind: s.kind,
                    keys: s.keys.clone(),
                    version: s.version,
                };
                (name.clone(), row)
            })
            .collect();
        spec.secret_versions = crate::store::check_secret_refs(&spec, &rows)?;
        let mut opened: BTreeMap<&str, SecretValues> = BTreeMap::new();
        for (var, value) in &spec.env {
            let EnvValue::Secret(r) = value else { continue };
            let Some(secret) = stored.get(&r.secret) else { continue };
            if !opened.contains_key(r.secret.as_str()) {
                opened.insert(
                    &r.secret,
                    crate::vault::open_values(&self.handle.settings.vault, secret)?,
                );
            }
            if let Some(v) = opened.get(r.secret.as_str()).and_then(|values| values.get(&r.key)) {
                crate::vault::env_text(var, r, v)?;
            }
        }
        if let Some(s) = spec.image_pull_secret.as_ref().and_then(|name| stored.get(name)) {
            let image_registry = crate::spec::registry_of(&spec.image);
            if s.docker_server.as_deref() != Some(image_registry) {
                tracing::warn!(pod = %spec.name, secret = %s.name, registry = image_registry, "the pull secret is for another registry than the image's");
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(data: &[(&str, &str)]) -> NewSecret {
        NewSecret {
            name: "db".into(),
            kind: SecretType::Generic,
            data: data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            binary_data: BTreeMap::new(),
            docker_server: None,
            docker_username: None,
            docker_password: None,
        }
    }

    #[test]
    fn checks_never_quote_values() {
        let long = "s3cr3t".repeat(20_000);
        let binary = |key: &str, value: &str| {
            let mut secret = generic(&[]);
            secret.binary_data.insert(key.into(), value.into());
            secret
        };
        let mut both = generic(&[("password", "s3cr3t")]);
        both.binary_data.insert("password".into(), "czNjcjN0".into());
        for (secret, field) in [
            (generic(&[("password", &long)]), "data.password"),
            (generic(&[("bad/key", "s3cr3t")]), "data.bad/key"),
            (generic(&[]), "data"),
            (binary("keystore", "s3cr3t!"), "binary_data.keystore"),
            (binary("keystore", &"czNjcjN0".repeat(11_000)), "binary_data.keystore"),
            (both, "binary_data.password"),
        ] {
            match check(&secret) {
                Err(Error::InvalidSecret { field: f, message }) => {
                    assert_eq!(f, field);
                    assert!(!message.contains("s3cr3t"), "{message}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut registry = generic(&[]);
        registry.kind = SecretType::DockerRegistry;
        registry.docker_server = Some("127.0.0.1:5000".into());
        registry.docker_username = Some("u".into());
        assert!(matches!(check(&registry), Err(Error::InvalidSecret { field, .. }) if field == "docker_password"));
        registry.docker_password = Some("p".into());
        assert!(check(&registry).is_ok());
        registry.docker_server = Some("https://x/".into());
        assert!(matches!(check(&registry), Err(Error::InvalidSecret { field, .. }) if field == "docker_server"));
    }

    #[test]
    fn values_are_bytes_and_only_env_needs_text() {
        let mut secret = generic(&[("password", "s3cr3t\0")]);
        // 0x00 0xff 0xfe 0x01: a NUL and no UTF-8.
        secret.binary_data.insert("keystore".into(), "AP/+AQ==".into());
        let (values, keys) = check(&secret).expect("binary values are accepted");
        assert_eq!(keys, ["keystore", "password"]);
        assert_eq!(values["keystore"], [0u8, 0xff, 0xfe, 1]);
        assert_eq!(values["password"], b"s3cr3t\0");
        assert_eq!(env_unsafe(&values["keystore"]), Some("is not UTF-8 text"));
        assert_eq!(env_unsafe(&values["password"]), Some("holds a NUL byte"));
        assert_eq!(env_unsafe("pässword".as_bytes()), None);
    }
}
