//! One-off containers of a pod's current revision: a run (`orchestrator/runs.rs`, the
//! facade) or a deploy hook ([`super::hooks`]), made from the replica's
//! template.

use std::collections::HashMap;

use super::Context;
use crate::error::Result;
use crate::labels::{LABEL_INSTANCE, LABEL_POD, LABEL_REVISION, LABEL_ROLE};
use crate::store::StoredPod;

/// A one-off container to start (see [`Context::start_one_off`]).
pub(crate) struct OneOff<'a> {
    /// Its name without the `dub-INSTANCE-` prefix.
    pub name: &'a str,
    /// Its `io.dubernetes.role`.
    pub role: &'a str,
    /// More labels (what it is: the run's name, the hook's kind).
    pub labels: &'a [(&'a str, &'a str)],
    /// Replaces the image's command (and the pod's `command` and `args`);
    /// None: the pod's own (a cron run).
    pub command: Option<Vec<String>>,
}

impl Context {
    /// Creates and starts a one-off container of `stored`'s current revision
    /// through `runtime`: a run, or a deploy hook (`controller/hooks.rs`).
    /// The replica's template with `command` replacing the image's command,
    /// never restarted, publishing nothing, a plain container even on Swarm;
    /// named `dub-INSTANCE-{name}`, labelled with the instance, pod, revision,
    /// `role` and `labels`. Returns its id.
    pub(crate) async fn start_one_off(
        &self,
        runtime: &crate::owned_engine::Runtime,
        stored: &StoredPod,
        one_off: OneOff<'_>,
    ) -> Result<String> {
        let OneOff {
            name,
            role,
            labels,
            command,
        } = one_off;
        let pod = stored.spec.name.as_str();
        let (mut spec, pull) = self.run_template(stored).await?;
        runtime.ensure_image(&spec.image, &pull).await?;
        spec.name = format!("dub-{}-{name}", self.settings.instance);
        spec.labels = HashMap::from([
            (LABEL_INSTANCE.to_string(), self.settings.instance.clone()),
            (LABEL_POD.to_string(), pod.to_string()),
            (LABEL_REVISION.to_string(), stored.spec.revision_hash()),
            (LABEL_ROLE.to_string(), role.to_string()),
        ]);
        spec.labels
            .extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if let Some(command) = command {
            spec.args = Some(command);
            spec.command = None;
        }
        spec.restart = false;
        spec.plain = true;
        spec.publish = None;
        spec.publish_tls = None;
        runtime.create_and_start(&spec).await
    }
}
