//! Keeping the ingress in step with the replicas: routes from the store and
//! the engine, one sync at a time, bursts coalesced behind a cool-down.

use super::prelude::*;

impl Context {
    /// Computes the routes from the store and the engine and makes the ingress
    /// serve them. Serialized: routes are computed and applied under one lock,
    /// so an older computation can never be applied after a newer one (which
    /// could route to a replica that is being drained).
    pub(crate) async fn sync_ingress(self: &Arc<Self>) -> Result<()> {
        let _one_at_a_time = self.ingress_sync.lock().await;
        let pods = self.store.list().await?;
        let started = Instant::now();
        // Replica changes alone: routes from the observed cache (refreshed by
        // every reconcile's list, so it knows each replica whose readiness
        // changed), written without an engine list, which Docker holds up
        // while it starts containers. The ingress takes this path only while
        // its container and config are what it last applied.
        if !self.ingress_full.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let observed = self.observed_all();
            let routes = self.routes(&pods, &observed);
            let streams = self.streams(&pods, &observed);
            let certs = self.route_certificates(&pods).await?;
            let http = self.ingress.sync_endpoints(&routes, &certs).await;
            // The TCP listeners' files too, unless a listener is to start or go.
            let tcp = match &http {
                Ok(Some(_)) => self.ingress.sync_listener_endpoints(&streams).await,
                _ => Ok(None),
            };
            match (http, tcp) {
                (Ok(Some(changed)), Ok(Some(()))) => {
                    let result = Ok(changed);
                    self.runtime.metrics().ingress_synced(started.elapsed(), &result);
                    tracing::debug!(took = ?started.elapsed(), changed, "ingress sync (endpoints only)");
                    return self.after_sync(&routes, result).await;
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, "endpoint-only ingress sync failed; doing a full one")
                }
                _ => {}
            }
        }
        let containers = self.list_instance().await?;
        let routes = self.routes(&pods, &containers);
        let streams = self.streams(&pods, &containers);
        let ingress: Vec<&Observed> = containers.iter().filter(|c| c.role == "ingress").collect();
        let listeners: Vec<&Observed> = containers
            .iter()
            .filter(|c| c.role == crate::ingress::ROLE_LISTENER)
            .collect();
        let certs = self.route_certificates(&pods).await?;
        // HTTP first: it never waits for a TCP listener, and an HTTP ingress
        // of an older version that still publishes a listener's port is
        // replaced before that listener starts.
        let http = self.ingress.sync(&routes, &ingress, &certs).await;
        let tcp = self.ingress.sync_listeners(&streams, &listeners).await;
        let result = match (http, tcp) {
            (Ok(a), Ok(b)) => Ok(a || b),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        self.runtime.metrics().ingress_synced(started.elapsed(), &result);
        tracing::debug!(took = ?started.elapsed(), changed = ?result.as_ref().ok(), "ingress sync");
        if result.is_err() {
            // The next one looks at the engine again.
            self.ingress_full.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.after_sync(&routes, result).await
    }

    /// What follows a sync: its error for the status, rejections reported
    /// against their pods, and pods whose routed replicas changed woken.
    async fn after_sync(self: &Arc<Self>, routes: &[Route], result: Result<bool>) -> Result<()> {
        lock(&self.routing).error = result.as_ref().err().map(ToString::to_string);
        self.after_listeners().await;
        // Routes nginx rejected are reported against their pods (status and an event).
        for (pod, change) in self.ingress.take_rejection_changes() {
            match change {
                crate::ingress::RejectionChange::Rejected(message) => {
                    let message =
                        format!("nginx rejected this pod's route; the other pods' routes were applied: {message}");
                    self.event(&pod, "Warning", "IngressRejected", &message).await;
                }
                crate::ingress::RejectionChange::Cleared => self.notify(Change::Pod { name: pod }),
            }
        }
        // Routed replicas can change even when the sync fails (endpoint
        // files went live, a new host's config was rejected).
        let changed = self.routing_changes(routes);
        if matches!(result, Ok(true)) || !changed.is_empty() {
            self.notify(Change::Ingress);
        }
        // Pods whose routed replicas changed may now make progress (a rollout step).
        for pod in changed {
            self.wake(&pod);
        }
        result.map(|_| ())
    }

    /// TCP listeners that failed or started since the last sync, reported
    /// against their pods (events, and the status through a change); a
    /// failed one's retry scheduled (a full sync then).
    async fn after_listeners(self: &Arc<Self>) {
        for (pod, change) in self.ingress.take_listener_changes() {
            match change {
                crate::ingress::ListenerChange::Failed(message) => {
                    self.event(&pod, "Warning", "ListenerFailed", &message).await;
                }
                crate::ingress::ListenerChange::Started(message) => {
                    self.event(&pod, "Normal", "ListenerStarted", &message).await;
                }
            }
            self.notify(Change::Pod { name: pod });
        }
        if let Some(pause) = self.ingress.listener_retry().await {
            let ctx = Arc::clone(self);
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => {}
                    _ = tokio::time::sleep(pause) => ctx.wake_ingress_full(),
                }
            });
        }
    }

    /// The pods whose routed replicas (what the ingress serves now) changed
    /// since the last call.
    fn routing_changes(&self, routes: &[Route]) -> Vec<String> {
        let routed = self.ingress.routed();
        let mut routing = lock(&self.routing);
        let last = &mut routing.last;
        let now: HashMap<String, Vec<String>> = routes
            .iter()
            .map(|r| {
                let ids = r.ids.iter().filter(|id| routed.contains(*id)).cloned().collect();
                (r.pod.clone(), ids)
            })
            .collect();
        let changed = now
            .iter()
            .filter(|(pod, ids)| last.get(*pod) != Some(*ids))
            .map(|(pod, _)| pod.clone())
            .collect();
        *last = now;
        changed
    }

    /// By pod, the certificate chain and key (PEM) of every host served over
    /// HTTPS: the user's secret, or the one obtained by ACME. A pod whose
    /// certificate is not (yet) there stays on plain HTTP.
    async fn route_certificates(&self, pods: &[StoredPod]) -> Result<std::collections::BTreeMap<String, String>> {
        let mut certs = std::collections::BTreeMap::new();
        for pod in pods {
            let name = match (pod.spec.tls(), pod.spec.host()) {
                (Some(dubernetes_api::Tls::Secret(secret)), Some(_)) => secret.clone(),
                (Some(dubernetes_api::Tls::Auto), Some(host)) => crate::acme::certificate_name(host),
                _ => continue,
            };
            if let Some(stored) = self.store.certificate(&name).await? {
                let pem = crate::ingress::certificate_file(&stored.cert_pem, &stored.key_pem);
                certs.insert(pod.spec.name.clone(), pem);
            }
        }
        Ok(certs)
    }

    pub(super) fn routes(&self, pods: &[StoredPod], containers: &[Observed]) -> Vec<Route> {
        pods.iter()
            .filter_map(|p| {
                let host = p.spec.host()?;
                let servers = containers
                    .iter()
                    .filter(|c| c.role == "replica" && c.pod.as_deref() == Some(p.spec.name.as_str()))
                    .filter(|c| self.is_serving(c, &p.spec))
                    .filter_map(|c| {
                        let ip: IpAddr = c.ip.as_deref()?.parse().ok()?;
                        let port: u16 = c.labels.get(LABEL_PORT)?.parse().ok()?;
                        Some(((ip, port), c.id.clone()))
                    })
                    .collect();
                Some(Route::with_ids(&p.spec.name, host, servers).with_access(&p.spec))
            })
            .collect()
    }

    /// The TCP listeners of pods' `expose`, each with the pod's serving
    /// (ready, not draining) replicas at the entry's port.
    pub(super) fn streams(&self, pods: &[StoredPod], containers: &[Observed]) -> Vec<crate::ingress::Stream> {
        pods.iter()
            .filter(|p| !p.spec.expose.is_empty())
            .flat_map(|p| {
                let ips: Vec<IpAddr> = containers
                    .iter()
                    .filter(|c| c.role == "replica" && c.pod.as_deref() == Some(p.spec.name.as_str()))
                    .filter(|c| self.is_serving(c, &p.spec))
                    .filter_map(|c| c.ip.as_deref()?.parse().ok())
                    .collect();
                p.spec.exposed().into_iter().map(move |(port, listen)| {
                    let servers = ips
                        .iter()
                        .map(|ip| std::net::SocketAddr::new(*ip, port).to_string())
                        .collect();
                    crate::ingress::Stream::new(&p.spec.name, port, listen, servers)
                })
            })
            .collect()
    }

    /// Applies route changes, coalescing bursts: wakes that arrive while a
    /// sync runs collapse into one more sync. A change and the one that
    /// follows it (a replica dies, its replacement starts) are applied at
    /// once; from the third sync in a row on, each first waits a cool-down
    /// (half the last sync's duration, at most [`MAX_INGRESS_COOLDOWN`]) so
    /// that more changes of a burst share its reload, and reloads never take
    /// more than about two thirds of the time.
    pub(super) async fn ingress_loop(self: Arc<Self>) {
        let mut streak = 0u32;
        let mut last_end: Option<Instant> = None;
        let mut cooldown = Duration::ZERO;
        // The previous sync started right after the one before it.
        let mut chained = false;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.ingress_wake.notified() => {}
            }
            let back_to_back = last_end.is_some_and(|end| end.elapsed() < Duration::from_millis(20));
            if back_to_back && chained {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(cooldown) => {}
                }
            }
            chained = back_to_back;
            let started = Instant::now();
            let result = self.sync_ingress().await;
            cooldown = (started.elapsed() / 2).min(MAX_INGRESS_COOLDOWN);
            last_end = Some(Instant::now());
            match result {
                Ok(()) => streak = 0,
                Err(e) => {
                    streak = streak.saturating_add(1);
                    tracing::warn!(error = %e, "ingress sync failed");
                    let ctx = Arc::clone(&self);
                    let delay = error_backoff(streak);
                    self.tasks.spawn(async move {
                        tokio::select! {
                            _ = ctx.shutdown.cancelled() => {}
                            _ = tokio::time::sleep(delay) => ctx.wake_ingress(),
                        }
                    });
                }
            }
        }
    }
}

/// Longest pause between two ingress syncs of a burst.
const MAX_INGRESS_COOLDOWN: Duration = Duration::from_millis(500);
