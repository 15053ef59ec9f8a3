//! The controller's side of the ACME task: the narrow interface
//! ([`AcmeHost`]) the task talks to instead of the whole [`Context`].

use tokio_util::sync::CancellationToken;

use super::{Change, Context};
use crate::acme::AcmeHost;
use crate::error::Result;
use crate::store::Store;

impl AcmeHost for Context {
    fn store(&self) -> &dyn Store {
        &*self.store
    }

    async fn put_challenge(&self, token: &str, key_authorization: &str) -> Result<()> {
        self.ingress.put_challenge(token, key_authorization).await
    }

    async fn event(&self, pod: &str, kind: &str, reason: &str, message: &str) {
        Context::event(self, pod, kind, reason, message).await
    }

    fn wake_ingress(&self) {
        Context::wake_ingress(self)
    }

    fn notify(&self, change: Change) {
        Context::notify(self, change)
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}
