//! Certificates from an ACME server (Let's Encrypt, or a private one such as
//! step-ca or Pebble) for pods with `access.tls: auto`, by HTTP-01 through
//! the instance's own ingress.
//!
//! The client is `instant-acme` (maintained, async, rustls): no hand-written
//! JOSE. The account's credentials (its private key) and every certificate
//! with its key live in the store. The challenge answer is a file written
//! into the ingress container, which nginx serves at
//! `/.well-known/acme-challenge/TOKEN` on every host's HTTP listener with no
//! reload. A certificate is renewed [`AcmeSettings::renew_before`] its
//! expiry; a failed attempt keeps the host on HTTP, records a Warning event
//! and the reason in the pod's status, and is retried with doubling back-off.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::change::Change;
use crate::clock::now_ms;
use crate::store::{CertificateKind, Store, StoredCertificate};
use crate::sync::lock;

/// Let's Encrypt's production directory, the default of `--acme-directory`.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Default time before expiry a certificate is renewed (`--acme-renew-before`): 30 days.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// Default first retry delay after a failed issuance (doubles up to [`MAX_RETRY`]).
pub const DEFAULT_RETRY: Duration = Duration::from_secs(60);

/// Longest pause between two attempts for a failing host.
pub const MAX_RETRY: Duration = Duration::from_secs(3600);

/// Shortest pause between two passes: a renew-before longer than the
/// certificates' lifetime (used by tests to force renewals) renews at most this often.
const MIN_PASS: Duration = Duration::from_secs(5);

/// How the server obtains certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcmeSettings {
    /// The ACME directory URL.
    pub directory: String,
    /// Contact e-mail for the account (expiry notices), if any.
    pub email: Option<String>,
    /// A PEM CA certificate to trust for the ACME server instead of the
    /// system's roots (a private ACME server).
    pub ca_file: Option<PathBuf>,
    /// Renew this long before expiry.
    pub renew_before: Duration,
    /// First retry delay after a failure (doubles, at most [`MAX_RETRY`]).
    pub retry: Duration,
}

impl AcmeSettings {
    /// Settings for `directory`, renewing 30 days before expiry.
    pub fn new(directory: impl Into<String>) -> Self {
        AcmeSettings {
            directory: directory.into(),
            email: None,
            ca_file: None,
            renew_before: DEFAULT_RENEW_BEFORE,
            retry: DEFAULT_RETRY,
        }
    }

    /// Sets the account's contact e-mail.
    pub fn with_email(mut self, email: Option<String>) -> Self {
        self.email = email;
        self
    }

    /// Trusts this PEM CA for the ACME server.
    pub fn with_ca_file(mut self, ca_file: Option<PathBuf>) -> Self {
        self.ca_file = ca_file;
        self
    }

    /// Renews this long before expiry.
    pub fn with_renew_before(mut self, renew_before: Duration) -> Self {
        self.renew_before = renew_before;
        self
    }

    /// First retry delay after a failure.
    pub fn with_retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }
}

/// The store name of the certificate obtained for `host` (never a valid
/// user secret name: those are DNS labels, without `:`).
pub(crate) fn certificate_name(host: &str) -> String {
    format!("acme:{host}")
}

#[derive(Debug, Default)]
struct HostState {
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// What the ACME task needs of the term it runs in, and nothing more: the
/// store, the ingress's challenge answers, events, wakes and the term's end.
/// The controller's context implements it (`controller/acme_host.rs`), so
/// this module does not import the controller that holds it.
pub(crate) trait AcmeHost: Send + Sync {
    /// The store: pods, certificates, the ACME account.
    fn store(&self) -> &dyn Store;
    /// Serves an HTTP-01 answer through the ingress (no reload).
    fn put_challenge(
        &self,
        token: &str,
        key_authorization: &str,
    ) -> impl Future<Output = crate::error::Result<()>> + Send;
    /// Records an event of `pod` for its watchers.
    fn event(&self, pod: &str, kind: &str, reason: &str, message: &str) -> impl Future<Output = ()> + Send;
    /// Wakes the ingress sync (a certificate was stored).
    fn wake_ingress(&self);
    /// Tells watchers that something changed.
    fn notify(&self, change: Change);
    /// Cancelled when the term ends.
    fn shutdown(&self) -> &CancellationToken;
}

/// The ACME side of an instance: one task, one pass over the `auto` hosts at a time.
#[derive(Debug)]
pub(crate) struct Acme {
    settings: AcmeSettings,
    hosts: StdMutex<HashMap<String, HostState>>,
    wake: Notify,
}

impl Acme {
    pub(crate) fn new(settings: AcmeSettings) -> Acme {
        // instant-acme builds its rustls client with the process default
        // provider; the workspace enables two, so name one (a no-op when set).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Acme {
            settings,
            hosts: StdMutex::new(HashMap::new()),
            wake: Notify::new(),
        }
    }

    /// Why the last attempt for `host` failed, while it is failing.
    pub(crate) fn last_error(&self, host: &str) -> Option<String> {
        lock(&self.hosts).get(host).and_then(|h| h.last_error.clone())
    }

    /// Looks at the `auto` hosts now (a pod was applied).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Issues and renews until shutdown.
    pub(crate) async fn run(self: Arc<Self>, ctx: Arc<impl AcmeHost>) {
        loop {
            let pause = self.pass(&*ctx).await.max(MIN_PASS);
            tokio::select! {
                _ = ctx.shutdown().cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One look at every `auto` host: issue what is missing or due. Returns
    /// when the next look is needed.
    async fn pass(&self, ctx: &impl AcmeHost) -> Duration {
        let mut next = Duration::from_secs(3600);
        let pods = match ctx.store().list().await {
            Ok(pods) => pods,
            Err(e) => {
                tracing::warn!(error = %e, "ACME: reading the pods failed");
                return DEFAULT_RETRY;
            }
        };
        let now_s = now_ms() / 1000;
        for pod in pods {
            let (Some(dubernetes_api::Tls::Auto), Some(host)) = (pod.spec.tls(), pod.spec.host()) else {
                continue;
            };
            let host = host.to_string();
            // One certificate for all the pod's hosts (exact names: the API
            // refuses `auto` with a wildcard), named after the first.
            let all_hosts: Vec<String> = pod.spec.hosts().into_iter().map(str::to_string).collect();
            let name = certificate_name(&host);
            let stored = match ctx.store().certificate(&name).await {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::warn!(error = %e, "ACME: reading a certificate failed");
                    continue;
                }
            };
            let renew_at = stored.as_ref().map(|c| {
                c.not_after
                    .saturating_sub(i64::try_from(self.settings.renew_before.as_secs()).unwrap_or(i64::MAX))
            });
            let covers_all = stored.as_ref().is_some_and(|c| {
                all_hosts
                    .iter()
                    .all(|h| c.hosts.iter().any(|n| dubernetes_api::name_covers(n, h)))
            });
            if let Some(at) = renew_at
                && at > now_s
                && covers_all
            {
                next = next.min(Duration::from_secs(u64::try_from(at - now_s).unwrap_or(0)));
                continue;
            }
            if let Some(at) = lock(&self.hosts).get(&host).and_then(|h| h.next_attempt)
                && at > Instant::now()
            {
                next = next.min(at - Instant::now());
                continue;
            }
            let renewal = stored.is_some();
            match self.issue(ctx, &host, &all_hosts).await {
                Ok(cert) => {
                    lock(&self.hosts).remove(&host);
                    let message = format!(
                        "certificate for {host} {} by {}, valid until {}",
                        if renewal { "renewed" } else { "issued" },
                        cert.issuer,
                        humantime::format_rfc3339_seconds(crate::certificate::unix(cert.not_after))
                    );
                    let reason = if renewal {
                        "CertificateRenewed"
                    } else {
                        "CertificateIssued"
                    };
                    if let Err(e) = ctx.store().put_certificate(&cert).await {
                        tracing::warn!(error = %e, "ACME: storing the certificate failed");
                        continue;
                    }
                    ctx.event(&pod.spec.name, "Normal", reason, &message).await;
                    ctx.wake_ingress();
                }
                Err(problem) => {
                    let delay = {
                        let mut hosts = lock(&self.hosts);
                        let state = hosts.entry(host.clone()).or_default();
                        state.failures = state.failures.saturating_add(1);
                        let delay = self
                            .settings
                            .retry
                            .saturating_mul(1u32 << (state.failures - 1).min(16))
                            .min(MAX_RETRY);
                        state.next_attempt = Some(Instant::now() + delay);
                        state.last_error = Some(problem.clone());
                        delay
                    };
                    next = next.min(delay);
                    let keeps = if renewal {
                        "the current certificate is kept"
                    } else {
                        "the host stays on plain HTTP"
                    };
                    let message = format!("ACME issuance for {host} failed: {problem}; {keeps}; retrying in {delay:?}");
                    ctx.event(&pod.spec.name, "Warning", "CertificateFailed", &message)
                        .await;
                }
            }
            ctx.notify(Change::Pod {
                name: pod.spec.name.clone(),
            });
        }
        next
    }

    /// The account: from the store, or registered (and stored) now.
    async fn account(&self, ctx: &impl AcmeHost) -> Result<Account, String> {
        let builder = || match &self.settings.ca_file {
            Some(path) => {
                Account::builder_with_root(path).map_err(|e| format!("--acme-ca-file {}: {e}", path.display()))
            }
            None => Account::builder().map_err(|e| format!("building the ACME client: {e}")),
        };
        let directory = &self.settings.directory;
        if let Some(json) = ctx.store().acme_account(directory).await.map_err(|e| e.to_string())? {
            let credentials = serde_json::from_str(&json).map_err(|e| format!("stored ACME account: {e}"))?;
            return builder()?
                .from_credentials(credentials)
                .await
                .map_err(|e| format!("ACME directory {directory}: {e}"));
        }
        let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.clone(),
                None,
            )
            .await
            .map_err(|e| format!("registering an account at {directory}: {e}"))?;
        let json = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
        ctx.store()
            .put_acme_account(directory, &json)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(directory = %directory, "registered an ACME account");
        Ok(account)
    }

    /// One order for `hosts` (stored under the name of `host`, the first):
    /// HTTP-01 answered through the ingress for each, then the certificate.
    async fn issue(&self, ctx: &impl AcmeHost, host: &str, hosts: &[String]) -> Result<StoredCertificate, String> {
        let account = self.account(ctx).await?;
        let identifiers: Vec<Identifier> = hosts.iter().map(|h| Identifier::Dns(h.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| format!("new order: {e}"))?;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| "the ACME server offers no HTTP-01 challenge".to_string())?;
            let key_authorization = challenge.key_authorization();
            ctx.put_challenge(&challenge.token, key_authorization.as_str())
                .await
                .map_err(|e| e.to_string())?;
            challenge.set_ready().await.map_err(|e| format!("challenge: {e}"))?;
        }
        let retries = RetryPolicy::new().timeout(Duration::from_secs(60));
        let status = order
            .poll_ready(&retries)
            .await
            .map_err(|e| format!("challenge not validated: {e}"))?;
        if status != OrderStatus::Ready {
            let mut detail = String::new();
            let mut authorizations = order.authorizations();
            while let Some(Ok(authz)) = authorizations.next().await {
                for c in &authz.challenges {
                    if let Some(problem) = &c.error {
                        detail = format!(": {problem}");
                    }
                }
            }
            return Err(format!(
                "the ACME server could not validate the HTTP-01 challenge (is http://{host}/.well-known/acme-challenge/ reachable on port 80 from it?){detail}"
            ));
        }
        let key_pem = order.finalize().await.map_err(|e| format!("finalize: {e}"))?;
        let cert_pem = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        let info = crate::certificate::inspect(&cert_pem).map_err(|e| e.to_string())?;
        Ok(StoredCertificate {
            name: certificate_name(host),
            kind: CertificateKind::Acme,
            cert_pem,
            key_pem,
            hosts: info.hosts,
            issuer: info.issuer,
            not_before: info.not_before,
            not_after: info.not_after,
            created_at: 0,
            updated_at: 0,
        })
    }
}
