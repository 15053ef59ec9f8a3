//! A pod as the API shows it: the stored spec with its status, the TLS
//! status of its hosts, and the change feed's reads.

use super::*;

impl Dubernetes {
    /// A pod as the controller last observed it; no engine call.
    pub(super) async fn view(&self, stored: StoredPod) -> Result<Pod> {
        if let Some(pg) = self.standby_store() {
            let published = pg.view(&stored.spec.name).await?;
            return Ok(self.standby_view(stored, published.as_deref()));
        }
        let observation = self.handle.ctx().observe_pod(&stored.spec);
        let tls = self.tls_status(&stored.spec).await?;
        let mut pod = crate::status::pod_view(stored, observation);
        pod.status.tls = tls;
        Ok(pod)
    }

    /// The certificate the pod's host is served with, for its status.
    pub(super) async fn tls_status(&self, spec: &PodSpec) -> Result<Option<dubernetes_api::TlsStatus>> {
        let Some(name) = tls_certificate_name(spec) else {
            return Ok(None);
        };
        let stored = self.handle.store.certificate(&name).await?;
        Ok(self.tls_status_of(spec, stored))
    }

    /// [`Self::tls_status`] with the pod's certificate read already.
    pub(super) fn tls_status_of(
        &self,
        spec: &PodSpec,
        stored: Option<crate::store::StoredCertificate>,
    ) -> Option<dubernetes_api::TlsStatus> {
        let (Some(tls), Some(host)) = (spec.tls(), spec.host()) else {
            return None;
        };
        let source = match tls {
            crate::spec::Tls::Auto => "acme",
            crate::spec::Tls::Secret(_) => "secret",
        };
        let https = self.handle.ctx().ingress.serves_tls();
        let error = match tls {
            crate::spec::Tls::Auto => match self.handle.ctx().acme.get() {
                Some(acme) => acme.last_error(host),
                None => Some("this server has no ACME directory (--acme-directory)".into()),
            },
            crate::spec::Tls::Secret(_) => None,
        };
        let ctx = self.handle.ctx();
        let ingress = &ctx.ingress;
        let rejected = ingress.rejections().get(&spec.name).cloned();
        // What nginx serves, not what the store holds: the live config serves
        // the host over HTTPS with the certificate the store holds now.
        let serving = https
            && rejected.is_none()
            && stored.as_ref().is_some_and(|c| {
                ingress.serves_certificate(&spec.name, &crate::ingress::certificate_file(&c.cert_pem, &c.key_pem))
            });
        let missing = match tls {
            crate::spec::Tls::Secret(secret) if stored.is_none() => Some(format!(
                "no TLS secret {secret:?}: the host is served over plain HTTP; create it with \
                 `dubectl create secret tls {secret} --cert FILE --key FILE`"
            )),
            _ => None,
        };
        let error = error
            .or_else(|| (!https).then(|| "the ingress has no HTTPS listener (--ingress-tls-listen)".to_string()))
            .or(missing)
            .or_else(|| rejected.map(|m| format!("nginx rejected this pod's route, the host is not served: {m}")));
        let warning = match (tls, &stored) {
            (crate::spec::Tls::Secret(secret), Some(c)) => {
                crate::certificate::expiry_warning(secret, c.not_after, crate::clock::now_ms() / 1000)
            }
            _ => None,
        };
        Some(dubernetes_api::TlsStatus {
            source: source.into(),
            serving,
            issuer: stored.as_ref().map(|c| c.issuer.clone()),
            not_after: stored.as_ref().map(|c| c.not_after),
            error,
            warning,
        })
    }
}

/// The name of the certificate a pod's host is served with: its secret, or
/// the one obtained by ACME; None without `access.tls` or a host.
pub(super) fn tls_certificate_name(spec: &PodSpec) -> Option<String> {
    match (spec.tls()?, spec.host()?) {
        (crate::spec::Tls::Auto, host) => Some(crate::acme::certificate_name(host)),
        (crate::spec::Tls::Secret(name), _) => Some(name.clone()),
    }
}

/// The change feed reads views and events through this, and knows nothing
/// else of the facade.
impl crate::watch::FeedSource for Dubernetes {
    fn list(&self) -> impl Future<Output = Result<Vec<Pod>>> + Send {
        Dubernetes::list(self)
    }

    fn get(&self, name: &str) -> impl Future<Output = Result<Pod>> + Send {
        Dubernetes::get(self, name)
    }

    async fn last_event_id(&self) -> Result<i64> {
        self.handle.store.last_event_id().await
    }

    async fn events_after(&self, after: i64) -> Result<Vec<Event>> {
        self.handle.store.events_after(after, 1000).await
    }
}
