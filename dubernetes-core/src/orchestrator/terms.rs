//! The facade's side of the leader code: the narrow interface
//! ([`Terms`]) that `leader.rs` talks to instead of the whole facade.

use std::time::Duration;

use super::Dubernetes;
use crate::change::Change;
use crate::error::Result;
use crate::leader::Terms;
use dubernetes_api::Pod;

impl Terms for Dubernetes {
    fn instance(&self) -> &str {
        &self.handle.settings.instance
    }

    async fn begin_term(&self) {
        self.handle.begin_term().await
    }

    async fn end_term(&self, wait: Duration) {
        self.handle.end_term(wait).await
    }

    fn leading(&self) -> bool {
        self.handle.leading()
    }

    fn leader_changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.handle.leader_changes()
    }

    fn notify(&self, change: Change) {
        // No receiver is fine.
        let _ = self.handle.changes.send(change);
    }

    async fn resync(&self) {
        let ctx = self.handle.ctx();
        ctx.resync().await;
    }

    fn spec_written(&self, pod: &str) {
        let ctx = self.handle.ctx();
        ctx.wake(pod);
        ctx.wake_ingress();
        // A spec with `access.tls: auto` may need a certificate.
        if let Some(acme) = ctx.acme.get() {
            acme.wake();
        }
    }

    fn certificate_written(&self) {
        self.handle.ctx().wake_ingress()
    }

    async fn list(&self) -> Result<Vec<Pod>> {
        Dubernetes::list(self).await
    }

    async fn get(&self, name: &str) -> Result<Pod> {
        Dubernetes::get(self, name).await
    }
}
