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

/// The values of a secret, opened.
pub(crate) type SecretValues = BTreeMap<String, String>;

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
            if secret.data.is_empty() {
                return Err(invalid(
                    "data",
                    "a generic secret needs at least one key: --from-literal=KEY=VALUE or --from-file=KEY=PATH",
                ));
            }
            if secret.data.len() > MAX_SECRET_KEYS {
                return Err(invalid(
                    "data",
                    format!("has {} keys; at most {MAX_SECRET_KEYS} are allowed", secret.data.len()),
                ));
            }
            for (key, value) in &secret.data {
                let field = format!("data.{}", key.escape_default());
                crate::spec::check_file_key(key).map_err(|m| invalid(field.clone(), m))?;
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
                if value.contains('\0') {
                    return Err(invalid(field, "value must not contain a NUL byte"));
                }
            }
            Ok((secret.data.clone(), secret.data.keys().cloned().collect()))
        }
        SecretType::DockerRegistry => {
            if !secret.data.is_empty() {
                return Err(invalid(
                    "data",
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
                values.insert(key.to_string(), v.to_string());
            }
            Ok((values, Vec::new()))
        }
    }
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
        let plain = serde_json::to_vec(&values).map_err(|e| Error::Internal(format!("encoding a secret: {e}")))?;
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
        }
        self.data_secret(&stored.name).await
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
    /// has the keys named; the pull secret is a docker-registry one) and
    /// records their versions in `secret_versions` (what the client sent there is replaced).
    pub(crate) async fn with_secret_versions(&self, mut spec: PodSpec) -> Result<PodSpec> {
        spec.secret_versions.clear();
        let mut seen: BTreeMap<String, Option<StoredSecret>> = BTreeMap::new();
        let mut refs: Vec<(String, String, Option<String>)> = Vec::new();
        for (var, value) in &spec.env {
            if let EnvValue::Secret(r) = value {
                let field = format!("env.{var}");
                refs.push((field, r.secret.clone(), Some(r.key.clone())));
            }
        }
        for (i, f) in spec.secret_files.iter().enumerate() {
            refs.push((format!("secret_files[{i}]"), f.secret.clone(), None));
        }
        for (field, name, key) in refs {
            if !seen.contains_key(&name) {
                seen.insert(name.clone(), self.handle.store.data_secret(&name).await?);
            }
            let stored = seen.get(&name).and_then(Option::as_ref);
            let Some(stored) = stored.filter(|s| s.kind == SecretType::Generic) else {
                return Err(invalid(
                    format!("{field}.secret"),
                    format!(
                        "no generic secret {name:?}; create it first with `dubectl create secret generic {name} --from-literal=KEY=VALUE`"
                    ),
                ));
            };
            if let Some(key) = key
                && !stored.keys.contains(&key)
            {
                return Err(invalid(
                    format!("{field}.key"),
                    format!(
                        "secret {name:?} has no key {key:?}; its keys are {}",
                        stored.keys.join(", ")
                    ),
                ));
            }
            spec.secret_versions.insert(name.clone(), stored.version);
        }
        if let Some(name) = &spec.image_pull_secret {
            let stored = self.handle.store.data_secret(name).await?;
            match stored {
                Some(s) if s.kind == SecretType::DockerRegistry => {
                    let image_registry = crate::spec::registry_of(&spec.image);
                    if s.docker_server.as_deref() != Some(image_registry) {
                        tracing::warn!(pod = %spec.name, secret = %name, registry = image_registry, "the pull secret is for another registry than the image's");
                    }
                }
                _ => {
                    return Err(invalid(
                        "image_pull_secret",
                        format!(
                            "no docker-registry secret {name:?}; create it first with `dubectl create secret docker-registry {name} --docker-server=S --docker-username=U --docker-password=P`"
                        ),
                    ));
                }
            }
        }
        Ok(spec)
    }
}

/// Opens the values of a stored secret.
pub(crate) fn open(vault: &crate::vault::Vault, stored: &StoredSecret) -> Result<SecretValues> {
    let plain = vault.open(&StoredSecret::aad(&stored.name, stored.kind), &stored.sealed)?;
    serde_json::from_slice(&plain)
        .map_err(|_| Error::SecretsUnavailable(format!("secret {:?} holds no readable values", stored.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(data: &[(&str, &str)]) -> NewSecret {
        NewSecret {
            name: "db".into(),
            kind: SecretType::Generic,
            data: data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            docker_server: None,
            docker_username: None,
            docker_password: None,
        }
    }

    #[test]
    fn checks_never_quote_values() {
        let long = "s3cr3t".repeat(20_000);
        for (secret, field) in [
            (generic(&[("password", &long)]), "data.password"),
            (generic(&[("password", "s3cr3t\0")]), "data.password"),
            (generic(&[("bad/key", "s3cr3t")]), "data.bad/key"),
            (generic(&[]), "data"),
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
}
