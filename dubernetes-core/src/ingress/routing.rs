//! Which replicas the live config routes to: endpoint files written (and
//! read back) without a reload, and the containers behind them.

use super::*;

impl Ingress {
    /// Writes the endpoint files of `routes` and records the replicas the
    /// live config now routes to (pods with a live server block); returns
    /// whether those changed. No reload.
    pub(super) async fn route_replicas(&self, id: &str, routes: &[Route], state: &mut State) -> Result<bool> {
        self.write_endpoints(id, routes, state).await?;
        let live_pods = Arc::clone(&lock(&self.live));
        let live: Vec<Route> = routes.iter().filter(|r| live_pods.contains(&r.pod)).cloned().collect();
        Ok(self.update_routed(&live))
    }

    /// Writes the endpoint files of the pods whose replicas changed, in one
    /// engine call. Live when it returns: nginx reads them per request.
    pub(super) async fn write_endpoints(&self, id: &str, routes: &[Route], state: &mut State) -> Result<()> {
        let (files, pending) = state
            .written
            .changes(routes.iter().map(|r| (r.pod.as_str(), r.servers.as_slice())));
        state.written.retain(&routes.iter().map(|r| r.pod.as_str()).collect());
        if files.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        match &state.bound {
            Some(dir) => {
                let named = files
                    .into_iter()
                    .map(|(path, content)| (endpoints::file_name(&path).to_string(), content))
                    .collect();
                self.runtime.write_bound_files(dir, named).await?;
            }
            None => self.runtime.write_files(id, endpoints::ENDPOINTS_BASE, &files).await?,
        }
        state.written.commit(pending);
        self.endpoint_updates.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(bound = state.bound.is_some(), took = ?started.elapsed(), "endpoints written");
        Ok(())
    }

    /// Reads the endpoint files back through the container (one archive):
    /// a pod whose files do not route what this process wrote (someone
    /// changed or removed them) makes the next sync write every pod's again.
    pub(super) async fn verify_endpoints(&self, id: &str, state: &mut State) -> bool {
        if state.written.is_empty() {
            return true;
        }
        let files = match self
            .runtime
            .read_files(id, endpoints::ENDPOINTS_DIR, endpoints::MAX_READ_BYTES)
            .await
        {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "reading the ingress's endpoint files back failed; rewriting them");
                state.written.clear();
                return false;
            }
        };
        let by_name: HashMap<&str, &[u8]> = files
            .iter()
            .map(|(path, content)| (endpoints::file_name(path), content.as_slice()))
            .collect();
        let wrong = state.written.mismatched(|name| by_name.get(name).copied());
        if wrong.is_empty() {
            return true;
        }
        tracing::warn!(pods = ?wrong, "the ingress's endpoint files do not route what was written; rewriting them");
        state.written.clear();
        false
    }

    /// Whether the live config has this pod's server block: its serving
    /// replicas are routed by the next sync's endpoint write, no reload
    /// needed. Never waits for a sync.
    pub(crate) fn serves_pod(&self, pod: &str) -> bool {
        lock(&self.live).contains(pod)
    }

    /// The containers the live config routes to. Never waits for a sync.
    pub(crate) fn routed(&self) -> Arc<HashSet<String>> {
        Arc::clone(&self.routed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records the containers behind an unchanged live config (routes
    /// nginx rejected left out); returns whether they changed. No reload.
    pub(super) fn update_routed(&self, routes: &[Route]) -> bool {
        let rejected = self.rejections();
        let live: Vec<Route> = routes
            .iter()
            .filter(|r| !rejected.contains_key(&r.pod))
            .cloned()
            .collect();
        let ids = routed_ids(&live);
        let mut routed = self.routed.lock().unwrap_or_else(|e| e.into_inner());
        if **routed == ids {
            return false;
        }
        *routed = Arc::new(ids);
        true
    }

    pub(super) fn set_routed(&self, routed: HashSet<String>) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.runtime.metrics().ingress_reloaded();
        *self.routed.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(routed);
    }
}

pub(super) fn routed_ids(routes: &[Route]) -> HashSet<String> {
    routes.iter().flat_map(|r| r.ids.iter().cloned()).collect()
}
