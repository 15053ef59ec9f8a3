//! What a replica takes from secrets, resolved when it is created: env
//! values, the files of `secret_files` and the registry credentials of its
//! image. Values are opened here, in memory, and go to the engine only.
//!
//! Files are written by the server under the data dir
//! (`secret-files/POD/REVISION/SECRET/KEY`, directories `0700` down to the
//! revision, files `0444`) and bound read-only into the replica: they are in
//! no image layer, not in the container's writable layer, and not in its
//! env; a replica sees them from its first instruction (an upload after the
//! start would race the app). The same binds serve the swarm backend.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::prelude::*;
use crate::engine::{BindDir, Pull, RegistryAuth, SecretMaterial};
use crate::spec::EnvValue;
use crate::vault::{SecretValues, open_values};

impl Context {
    /// Opens what `spec` takes from secrets and writes its files.
    pub(super) async fn secret_material(&self, spec: &PodSpec) -> Result<(SecretMaterial, Pull)> {
        let mut opened: BTreeMap<String, SecretValues> = BTreeMap::new();
        for name in spec.generic_secrets() {
            let stored = self
                .store
                .data_secret(name)
                .await?
                .filter(|s| s.kind == dubernetes_api::SecretType::Generic)
                .ok_or_else(|| Error::InvalidSecret {
                    field: "secret".into(),
                    message: format!("the pod uses secret {name:?}, which no longer exists; create it again"),
                })?;
            opened.insert(name.to_string(), open_values(&self.settings.vault, &stored)?);
        }
        let mut material = SecretMaterial::default();
        for (var, value) in &spec.env {
            if let EnvValue::Secret(r) = value {
                let v = opened
                    .get(&r.secret)
                    .and_then(|s| s.get(&r.key))
                    .ok_or_else(|| Error::InvalidSecret {
                        field: format!("env.{var}"),
                        message: format!("secret {:?} has no key {:?} any more", r.secret, r.key),
                    })?;
                // Checked at apply and at replace; a race of the two ends here,
                // in the pod's status, with the key named (never the value).
                let text = crate::vault::env_text(var, r, v)?;
                material.env.push(format!("{var}={text}"));
            }
        }
        if !spec.secret_files.is_empty() {
            let root = self
                .settings
                .secret_files_dir
                .as_ref()
                .filter(|_| self.runtime.engine_is_local())
                .ok_or_else(|| Error::InvalidSecret {
                    field: "secret_files".into(),
                    message:
                        "secret files need a server with a data dir on the engine's machine (they are bound from it)"
                            .into(),
                })?;
            let revision_dir = root.join(&spec.name).join(spec.revision_hash());
            for f in &spec.secret_files {
                let values = opened
                    .get(&f.secret)
                    .ok_or_else(|| Error::Internal("secret not opened".into()))?;
                let dir = revision_dir.join(&f.secret);
                let values = values.clone();
                let written = dir.clone();
                tokio::task::spawn_blocking(move || write_files(&written, &values))
                    .await
                    .map_err(|e| Error::Internal(format!("writing secret files: {e}")))??;
                material.files.push(BindDir {
                    host: dir,
                    container: f.path.trim_end_matches('/').to_string(),
                });
            }
        }
        if let Some(name) = &spec.image_pull_secret {
            let stored = self
                .store
                .data_secret(name)
                .await?
                .filter(|s| s.kind == dubernetes_api::SecretType::DockerRegistry)
                .ok_or_else(|| Error::InvalidSecret {
                    field: "image_pull_secret".into(),
                    message: format!("no docker-registry secret {name:?} any more; create it again"),
                })?;
            let values = open_values(&self.settings.vault, &stored)?;
            let text = |key: &str| {
                values
                    .get(key)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            material.registry_auth = Some(RegistryAuth {
                server: stored.docker_server.unwrap_or_default(),
                username: text("username"),
                password: text("password"),
            });
        }
        let pull = Pull {
            policy: spec.pull_policy(),
            auth: material.registry_auth.clone(),
        };
        Ok((material, pull))
    }

    /// Removes the secret files of a pod (it was deleted).
    pub(super) async fn forget_secret_files(&self, pod: &str) {
        if let Some(root) = &self.settings.secret_files_dir {
            let dir = root.join(pod);
            if tokio::fs::metadata(&dir).await.is_ok()
                && let Err(e) = tokio::fs::remove_dir_all(&dir).await
            {
                tracing::warn!(pod, error = %e, "could not remove the pod's secret files");
            }
        }
    }
}

/// Writes one file per key into `dir` (made with its parents, `0700`; the
/// directory itself `0755` so a replica's non-root user can list it).
fn write_files(dir: &Path, values: &SecretValues) -> Result<()> {
    let io = |what: &str, path: &Path, e: std::io::Error| Error::Io {
        context: format!("{what} {}", path.display()),
        source: e,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("creating", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io("setting the mode of", dir, e))?;
    for (key, value) in values {
        let target: PathBuf = dir.join(key);
        let tmp = dir.join(format!(".{key}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&tmp)
            .map_err(|e| io("creating", &tmp, e))?;
        file.write_all(value)
            .and_then(|_| file.sync_all())
            .map_err(|e| io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &target).map_err(|e| io("renaming", &target, e))?;
    }
    Ok(())
}
