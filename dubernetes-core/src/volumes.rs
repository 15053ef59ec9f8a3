//! Named volumes, through the facade: list them (with the pods that mount
//! them) and delete one no pod mounts. They are made by the controller when
//! a replica first mounts one (`controller/act.rs`) and never removed with a
//! pod: data outlives its pods until the user deletes it.

use std::collections::{BTreeMap, BTreeSet};

use dubernetes_api::NamedVolume;

use crate::error::{Error, Result};
use crate::labels::LABEL_VOLUME;
use crate::orchestrator::Dubernetes;
use crate::owned_engine::volume_engine_name;

impl Dubernetes {
    /// The instance's volumes this store made, by name, each with the pods
    /// whose spec mounts it and its size where the engine knows it.
    pub async fn volumes(&self) -> Result<Vec<NamedVolume>> {
        let pods = self.handle.store.list().await?;
        let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for pod in &pods {
            for name in pod.spec.named_volumes() {
                used.entry(name.to_string()).or_default().insert(pod.spec.name.clone());
            }
        }
        let instance = self.instance().to_string();
        let mut volumes: Vec<NamedVolume> = self
            .handle
            .runtime
            .list_volumes(&instance, true)
            .await?
            .into_iter()
            .filter_map(|v| {
                let name = v.labels.get(LABEL_VOLUME)?.clone();
                // Only the names this instance gives: a label that does not
                // match the engine name is not one of ours to show.
                (v.name == volume_engine_name(&instance, &name)).then(|| {
                    let used_by = used.get(&name).map(|p| p.iter().cloned().collect()).unwrap_or_default();
                    NamedVolume::new(name, v.name, v.size, v.created_at, used_by)
                })
            })
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Deletes the instance's volume `name` and its data. Refused with
    /// [`Error::VolumeInUse`] while a pod's spec mounts it (or a replica that
    /// is stopping still does), [`Error::VolumeNotOwned`] for an engine volume
    /// of that name this store did not make (left alone), [`Error::VolumeNotFound`]
    /// when there is none.
    pub async fn delete_volume(&self, name: &str) -> Result<()> {
        if crate::spec::check_volume_name(name).is_err() {
            return Err(Error::VolumeNotFound(name.to_string()));
        }
        let pods: Vec<String> = self
            .handle
            .store
            .list()
            .await?
            .into_iter()
            .filter(|p| p.spec.named_volumes().any(|v| v == name))
            .map(|p| p.spec.name)
            .collect();
        if !pods.is_empty() {
            return Err(Error::VolumeInUse {
                name: name.to_string(),
                pods,
            });
        }
        self.handle.runtime.remove_volume(self.instance(), name).await?;
        tracing::info!(volume = name, "volume deleted");
        Ok(())
    }
}
