//! Warning before and at a TLS secret's expiry: each pod serving a user's
//! certificate gets one Warning event when it enters the last
//! [`EXPIRY_WARNING_SECS`](crate::certificate::EXPIRY_WARNING_SECS)
//! (`CertificateExpiring`) and one when it expires (`CertificateExpired`),
//! checked on every resync. The status and `get pods` say it too (see the
//! facade's `tls_status`). Nothing is blocked: nginx keeps serving it.

use super::prelude::*;
use crate::certificate::{Expiry, expiry, expiry_warning};
use crate::clock::now_ms;

impl Context {
    /// Records the expiry warnings not recorded yet (once per pod, secret,
    /// certificate and stage; again after a restart of the server).
    pub(super) async fn warn_expiring_certificates(&self, pods: &[StoredPod]) {
        let now = now_ms() / 1000;
        for pod in pods {
            let (Some(dubernetes_api::Tls::Secret(secret)), Some(_)) = (pod.spec.tls(), pod.spec.host()) else {
                continue;
            };
            let stored = match self.store.certificate(secret).await {
                Ok(Some(c)) if c.kind == crate::store::CertificateKind::User => c,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, pod = %pod.spec.name, "reading a TLS secret for its expiry failed");
                    continue;
                }
            };
            let stage = expiry(stored.not_after, now);
            let reason = match stage {
                Expiry::Valid => continue,
                Expiry::Expiring => "CertificateExpiring",
                Expiry::Expired => "CertificateExpired",
            };
            let key = (secret.clone(), stored.not_after, stage);
            if lock(&self.book).expiry_reported.get(&pod.spec.name) == Some(&key) {
                continue;
            }
            if let Some(message) = expiry_warning(secret, stored.not_after, now) {
                self.event(&pod.spec.name, "Warning", reason, &message).await;
            }
            lock(&self.book).expiry_reported.insert(pod.spec.name.clone(), key);
        }
    }
}
