//! What the orchestrator reports about itself for checking from outside:
//! ingress reloads and endpoint writes, held and foreign containers, what is
//! left on the engine. One accessor, [`Dubernetes::diagnostics`], keeps these
//! off the facade's main surface.

use super::Dubernetes;
use crate::error::Result;
pub use crate::ingress::ListenerStatus;

/// Counters and states of one orchestrator, from [`Dubernetes::diagnostics`].
#[derive(Clone, Copy)]
pub struct Diagnostics<'a> {
    pub(super) orchestrator: &'a Dubernetes,
}

impl Diagnostics<'_> {
    /// Containers adopted with `adopt_foreign` whose pod is not in the store:
    /// left alone until a pod of that name is applied.
    pub fn held_containers(&self) -> usize {
        self.orchestrator.handle.runtime.ownership().held_count()
    }

    /// Containers of this instance seen since the start that belong to
    /// another store (left alone; logged once each).
    pub fn foreign_containers(&self) -> usize {
        self.orchestrator.handle.runtime.ownership().foreign_count()
    }

    /// How many nginx configs the ingress made live since this handle started
    /// (reloads plus fresh starts of the ingress container).
    pub fn ingress_reloads(&self) -> u64 {
        self.orchestrator.handle.ctx().ingress.reloads()
    }

    /// How many replica changes the ingress applied without a reload (writes
    /// of its endpoint files) since this handle started.
    pub fn ingress_endpoint_updates(&self) -> u64 {
        self.orchestrator.handle.ctx().ingress.endpoint_updates()
    }

    /// Whether the ingress's endpoint files are renamed in a host directory
    /// bound into its container (else they go through the engine's archive
    /// API; see [`IngressSettings::endpoints_dir`](crate::IngressSettings::endpoints_dir)).
    pub fn ingress_endpoints_bound(&self) -> bool {
        self.orchestrator.handle.ctx().ingress.endpoints_bound()
    }

    /// Pods whose routes the live nginx config leaves out because nginx
    /// rejected them, with nginx's message (also in each pod's status, reason
    /// `IngressRejected`).
    pub fn ingress_rejections(&self) -> std::collections::BTreeMap<String, String> {
        (*self.orchestrator.handle.ctx().ingress.rejections()).clone()
    }

    /// Every TCP listener pods' `expose` asks for, as of the ingress's last
    /// sync: its host address, its pod, whether its container runs, and why
    /// not when it could not start (also the pod's status, `ListenerFailed`).
    pub fn ingress_listeners(&self) -> Vec<ListenerStatus> {
        (*self.orchestrator.handle.ctx().ingress.listener_table()).clone()
    }

    /// The last ingress error, if the last sync failed.
    pub fn ingress_error(&self) -> Option<String> {
        self.orchestrator.handle.ctx().ingress_error()
    }

    /// How many containers of this instance exist on the engine (any role,
    /// any state); 0 after a successful [`purge`](Dubernetes::purge).
    pub async fn leftover_containers(&self) -> Result<usize> {
        let handle = &self.orchestrator.handle;
        Ok(handle
            .runtime
            .list_owned(&handle.settings.instance, &handle.settings.network)
            .await?
            .len())
    }
}
