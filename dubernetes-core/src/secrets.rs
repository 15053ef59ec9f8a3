//! TLS secrets of the facade: certificates the user uploads for
//! `access.tls: {secret: NAME}`. Every input is checked before anything is
//! written (PEM, the key belongs to the certificate, validity, the hosts of
//! the pods that use it); the key is stored and never answered.

use dubernetes_api::{NewTlsSecret, Tls, TlsSecret, check_secret_name};

use crate::certificate;
use crate::change::Change;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::orchestrator::Dubernetes;
use crate::spec::PodSpec;
use crate::store::{CertificateKind, StoredCertificate};

pub use dubernetes_api::MAX_CERTIFICATE_PEM_BYTES;

impl Dubernetes {
    /// Stores a new TLS secret; [`Error::SecretExists`] when one of that name exists.
    pub async fn create_secret(&self, secret: NewTlsSecret) -> Result<TlsSecret> {
        self.put_secret(secret, false).await
    }

    /// Replaces a TLS secret (or creates it). The new certificate must still
    /// cover the host of every pod that uses the secret.
    pub async fn replace_secret(&self, secret: NewTlsSecret) -> Result<TlsSecret> {
        self.put_secret(secret, true).await
    }

    async fn put_secret(&self, secret: NewTlsSecret, replace: bool) -> Result<TlsSecret> {
        check_secret_name(&secret.name).map_err(|message| Error::Certificate {
            field: "name".into(),
            message,
        })?;
        for (field, text) in [("cert", &secret.cert), ("key", &secret.key)] {
            if text.len() > MAX_CERTIFICATE_PEM_BYTES {
                return Err(Error::Certificate {
                    field: field.into(),
                    message: format!(
                        "is {} bytes; at most {MAX_CERTIFICATE_PEM_BYTES} are accepted",
                        text.len()
                    ),
                });
            }
        }
        let info =
            certificate::check_pair(&secret.cert, &secret.key, now_ms() / 1000).map_err(|p| Error::Certificate {
                field: p.field.into(),
                message: p.message,
            })?;
        let stored = StoredCertificate {
            name: secret.name.clone(),
            kind: CertificateKind::User,
            cert_pem: secret.cert,
            key_pem: secret.key,
            hosts: info.hosts.clone(),
            issuer: info.issuer.clone(),
            not_before: info.not_before,
            not_after: info.not_after,
            created_at: 0,
            updated_at: 0,
        };
        // The name's availability and the hosts of the pods using it are
        // checked in the store's write transaction, with the write.
        let users = self.handle.store.put_user_certificate(&stored, replace).await?;
        tracing::info!(secret = %secret.name, hosts = ?info.hosts, "stored a TLS secret");
        if !users.is_empty() {
            self.handle.ctx().wake_ingress();
            for pod in users {
                self.handle.ctx().notify(Change::Pod { name: pod });
            }
        }
        self.secret(&secret.name).await
    }

    /// The TLS secrets (the user's; certificates obtained by ACME show in their pod's status).
    pub async fn secrets(&self) -> Result<Vec<TlsSecret>> {
        let pods = self.handle.store.list().await?;
        Ok(self
            .handle
            .store
            .certificates()
            .await?
            .into_iter()
            .filter(|c| c.kind == CertificateKind::User)
            .map(|c| view(c, &pods.iter().map(|p| &p.spec).collect::<Vec<_>>()))
            .collect())
    }

    /// One TLS secret.
    pub async fn secret(&self, name: &str) -> Result<TlsSecret> {
        let stored = self
            .user_certificate(name)
            .await?
            .ok_or_else(|| Error::SecretNotFound(name.to_string()))?;
        let pods = self.secret_users(name).await?;
        Ok(view(stored, &pods.iter().collect::<Vec<_>>()))
    }

    /// Deletes a TLS secret; [`Error::SecretInUse`] while pods name it.
    pub async fn delete_secret(&self, name: &str) -> Result<()> {
        // Checked and deleted in one store transaction: a pod applied at the
        // same time either sees the secret gone or keeps it from going.
        self.handle.store.delete_user_certificate(name).await
    }

    /// The user's secret of this name (not a certificate obtained by ACME).
    async fn user_certificate(&self, name: &str) -> Result<Option<StoredCertificate>> {
        Ok(self
            .handle
            .store
            .certificate(name)
            .await?
            .filter(|c| c.kind == CertificateKind::User))
    }

    /// The pods whose `access.tls` names the secret.
    async fn secret_users(&self, name: &str) -> Result<Vec<PodSpec>> {
        Ok(self
            .handle
            .store
            .list()
            .await?
            .into_iter()
            .map(|p| p.spec)
            .filter(|spec| matches!(spec.tls(), Some(Tls::Secret(s)) if s == name))
            .collect())
    }

    /// For a pod with `access.tls: {secret: NAME}`: the secret exists, is
    /// valid now and covers the pod's host.
    pub(crate) async fn check_tls(&self, spec: &PodSpec) -> Result<()> {
        let hosts = spec.hosts();
        let (Some(Tls::Secret(name)), false) = (spec.tls(), hosts.is_empty()) else {
            return Ok(());
        };
        // The same check as the store's upsert makes in its transaction (see
        // `certificate::refuse_use`); this one serves dry runs.
        let stored = self.user_certificate(name).await?;
        let keeps_it = match &stored {
            Some(c) if c.not_after <= now_ms() / 1000 => self
                .handle
                .store
                .get(&spec.name)
                .await?
                .is_some_and(|p| p.spec.tls() == spec.tls() && p.spec.hosts() == hosts),
            _ => false,
        };
        let cert = stored.as_ref().map(|c| (c.hosts.as_slice(), c.not_after));
        match certificate::refuse_use(name, &hosts, cert, now_ms() / 1000, keeps_it) {
            Some(message) => Err(Error::Certificate {
                field: "access.tls.secret".into(),
                message,
            }),
            None => Ok(()),
        }
    }
}

fn view(stored: StoredCertificate, pods: &[&PodSpec]) -> TlsSecret {
    let mut secret = TlsSecret::new(
        stored.name.clone(),
        stored.hosts,
        stored.issuer,
        stored.not_before,
        stored.not_after,
    );
    secret.created_at = stored.created_at;
    secret.used_by = pods
        .iter()
        .filter(|spec| matches!(spec.tls(), Some(Tls::Secret(s)) if *s == stored.name))
        .map(|spec| spec.name.clone())
        .collect();
    secret
}
