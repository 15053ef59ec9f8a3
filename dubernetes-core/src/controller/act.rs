//! Acting on a plan: creates (bounded by the engine semaphore), quick
//! removals, drains, and the events that say what was done.

use super::prelude::*;
use crate::owned_engine::{Mount, volume_engine_name};
use crate::spec::VolumeMount;

impl Context {
    pub(super) async fn execute(
        self: &Arc<Self>,
        pod: &str,
        stored: Option<&StoredPod>,
        observed: &[Observed],
        actions: Vec<Action>,
    ) -> Result<Next> {
        let Sorted {
            creates,
            starts,
            quick_removes,
            mut drains,
            exited,
        } = Sorted::new(actions, observed);

        // Crash-loop bookkeeping: record why replicas died before they are removed.
        let now = Instant::now();
        let backoff = self.backoff_for(stored.map(|p| &p.spec));
        let revision = stored.map(|p| p.spec.revision_hash());
        let rolling = stored.is_some_and(|p| p.rollout.is_progressing());
        // Concurrently: a crash's log tail is one engine call each.
        join_all(
            exited
                .iter()
                .map(|c| self.record_exit(pod, c, backoff, now, rolling && c.revision == revision)),
        )
        .await;
        let (slots_for_creates, delay_creates) = self.take_slots(pod, creates, now);

        // Stopped containers are removed at once, concurrently with the
        // creation of their replacements (a replacement never waits for the
        // removal of the container it replaces).
        let removals = async {
            let removed = join_all(
                quick_removes
                    .iter()
                    .map(|(id, _)| self.with_slot(self.runtime.remove(id))),
            )
            .await;
            let mut errors: Vec<Error> = removed.into_iter().filter_map(Result::err).collect();
            for id in &starts {
                if let Err(e) = self.with_slot(self.runtime.start(id)).await {
                    errors.push(e);
                }
            }
            errors
        };
        // Running containers leave the ingress first: marked draining, then
        // one sync, concurrently with the creates, whose endpoint write also
        // routes the replicas that just became ready (a rollout step is one
        // ingress change). Then drained and stopped in the background. The
        // pod's next reconcile does not count draining containers (they
        // serve nobody), so the next step of a rollout starts while they drain.
        if !drains.is_empty() {
            lock(&self.book)
                .draining
                .extend(drains.iter().map(|(id, _)| id.clone()));
        }
        let unroute = async {
            if drains.is_empty() {
                Ok(())
            } else {
                self.sync_ingress().await
            }
        };
        // Their pod's name stops listing them too, before they drain.
        let unname = async {
            if drains.is_empty() {
                Ok(())
            } else {
                self.sync_names(false).await
            }
        };
        let (removal_errors, mut errors, unrouted, unnamed) = tokio::join!(
            removals,
            self.create_replicas(pod, stored, &slots_for_creates),
            unroute,
            unname
        );
        errors.extend(removal_errors);
        self.wake_ingress();
        if let Err(e) = unnamed {
            if self.names.is_serving() && !drains.is_empty() {
                // Never stop a replica its name may still list: keep it
                // serving, and let the error policy retry the reconcile.
                self.undrain(&drains);
                tracing::warn!(pod, error = %e, "updating the pod names before draining failed; the replicas keep running until it succeeds");
                drains.clear();
                errors.push(e);
            } else {
                tracing::warn!(pod, error = %e, "updating the pod names failed (the name responder never served)");
            }
        }
        if let Err(e) = unrouted {
            if stored.is_some_and(|p| p.spec.host().is_some() || !p.spec.expose.is_empty()) {
                // Never stop a replica the ingress may still route to: keep it
                // serving, and let the error policy retry the reconcile.
                self.undrain(&drains);
                tracing::warn!(pod, error = %e, "the ingress sync before draining failed; the replicas keep running until it succeeds");
                drains.clear();
                errors.push(e);
            } else {
                // No host: nothing routes to them.
                tracing::warn!(pod, error = %e, "ingress sync failed; draining replicas of a pod without a host anyway");
            }
        }
        if !drains.is_empty() {
            let grace = stored
                .and_then(|p| p.spec.stop_grace_period)
                .unwrap_or(self.settings.stop_grace);
            let ids: Vec<String> = drains.iter().map(|(id, _)| id.clone()).collect();
            let ctx = Arc::clone(self);
            let pod_name = pod.to_string();
            self.tasks
                .spawn(async move { ctx.drain_and_stop(&pod_name, ids, grace).await });
        }
        self.removal_events(pod, &drains, &quick_removes).await;

        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        Ok(match delay_creates {
            Some(d) => Next::Requeue(d),
            None => Next::Requeue(Duration::ZERO),
        })
    }

    /// Takes the crash-loop slots for `creates` new replicas (names, and how
    /// long the creates wait when backing off), and records until when the
    /// pod backs off.
    fn take_slots(&self, pod: &str, creates: u32, now: Instant) -> (Vec<String>, Option<Duration>) {
        let mut delay_creates = None;
        let mut slots_for_creates = Vec::new();
        if creates > 0 {
            let (slots, wait) = {
                let mut book = lock(&self.book);
                let all = &mut book.slots;
                let slots = all.entry(pod.to_string()).or_default();
                slots.take(creates as usize, now, random_suffix)
            };
            slots_for_creates = slots;
            delay_creates = wait.map(|t| t.saturating_duration_since(now));
        }
        {
            let until = lock(&self.book).slots.get(pod).and_then(|s| s.backing_off_until(now));
            let mut book = lock(&self.book);
            let status = &mut book.status;
            let s = status.entry(pod.to_string()).or_default();
            s.next_allowed = until;
        }
        (slots_for_creates, delay_creates)
    }

    /// Takes the draining mark off replicas that keep serving.
    fn undrain(&self, drains: &[(String, RemoveReason)]) {
        let mut book = lock(&self.book);
        let draining = &mut book.draining;
        for (id, _) in drains {
            draining.remove(id);
        }
        drop(book);
    }

    /// One `Removed` event per reason (exits have their own events).
    async fn removal_events(
        &self,
        pod: &str,
        drains: &[(String, RemoveReason)],
        quick_removes: &[(String, RemoveReason)],
    ) {
        let mut reasons: HashMap<&'static str, usize> = HashMap::new();
        for (_, reason) in drains.iter().chain(quick_removes.iter()) {
            if *reason != RemoveReason::Exited {
                *reasons.entry(reason.as_str()).or_default() += 1;
            }
        }
        for (reason, n) in reasons {
            self.event(pod, "Normal", "Removed", &format!("removed {n} container(s): {reason}"))
                .await;
        }
    }

    /// Creates and starts one replica of the pod's current revision for each
    /// of `slots`, all at once (bounded by the engine semaphore). Returns the errors.
    pub(super) async fn create_replicas(
        self: &Arc<Self>,
        pod: &str,
        stored: Option<&StoredPod>,
        slots: &[String],
    ) -> Vec<Error> {
        let mut errors = Vec::new();
        let Some(stored) = stored.filter(|_| !slots.is_empty()) else {
            return errors;
        };
        if let Err(e) = self.ensure_volumes(&stored.spec).await {
            self.set_create_failure(
                pod,
                (stored.created_at, stored.generation),
                "VolumeUnavailable",
                &e.to_string(),
            );
            self.event(pod, "Warning", "VolumeUnavailable", &e.to_string()).await;
            errors.push(e);
            return errors;
        }
        let (material, pull) = match self.secret_material(&stored.spec).await {
            Ok(m) => m,
            Err(e) => {
                self.set_create_failure(
                    pod,
                    (stored.created_at, stored.generation),
                    "SecretUnavailable",
                    &e.to_string(),
                );
                self.event(pod, "Warning", "SecretUnavailable", &e.to_string()).await;
                errors.push(e);
                return errors;
            }
        };
        // The responder replicas name as their DNS server runs before they do.
        if let Err(e) = self.names.ensure().await {
            tracing::warn!(pod, error = %e, "the name responder is not running; the new replicas' lookups fail until it is");
        }
        match self.runtime.ensure_image(&stored.spec.image, &pull).await {
            Ok(()) => {
                let mut template = self.template(stored);
                template.secrets = material;
                // Where they go (constraints, spread, a volume's node),
                // decided for all of them at once so the spread counts each.
                let placed = match self.runtime.place(&template, slots.len()).await {
                    Ok(p) => p,
                    Err(e) => {
                        self.set_create_failure(
                            pod,
                            (stored.created_at, stored.generation),
                            "Unschedulable",
                            &e.to_string(),
                        );
                        self.event(pod, "Warning", "Unschedulable", &e.to_string()).await;
                        errors.push(e);
                        return errors;
                    }
                };
                self.forget_create_failure(pod, (stored.created_at, stored.generation));
                let results = join_all(slots.iter().zip(placed).map(|(slot, extra)| {
                    let mut t = template.clone();
                    t.constraints.extend(extra);
                    t.labels.insert(LABEL_SLOT.to_string(), slot.clone());
                    t.name = format!("dub-{}-{}-{}", self.settings.instance, pod, random_suffix());
                    async move { self.with_slot(self.runtime.create_and_start(&t)).await.map(|_| t.name) }
                }))
                .await;
                let mut made = Vec::new();
                for r in results {
                    match r {
                        Ok(name) => made.push(name),
                        Err(e) => errors.push(e),
                    }
                }
                if !made.is_empty() {
                    self.event(
                        pod,
                        "Normal",
                        "Created",
                        &format!(
                            "created {} replica(s) of revision {}",
                            made.len(),
                            template.labels.get(LABEL_REVISION).map(String::as_str).unwrap_or("")
                        ),
                    )
                    .await;
                }
            }
            Err(e) => {
                let reason = if matches!(e, Error::ImagePull { .. }) {
                    "ImagePullFailed"
                } else {
                    "ImageUnavailable"
                };
                self.set_create_failure(pod, (stored.created_at, stored.generation), reason, &e.to_string());
                self.event(pod, "Warning", reason, &e.to_string()).await;
                errors.push(e);
            }
        }
        errors
    }

    /// Makes sure every named volume of the pod exists and is this store's
    /// (created on first use; see [`crate::owned_engine::Runtime::ensure_volume`]),
    /// before any replica mounts it: the engine would otherwise make a
    /// missing one itself, without our labels.
    async fn ensure_volumes(&self, spec: &crate::spec::PodSpec) -> Result<()> {
        for name in spec.named_volumes() {
            self.with_slot(self.runtime.ensure_volume(&self.settings.instance, name))
                .await?;
        }
        Ok(())
    }

    /// What a replica of the pod's current revision runs, with its labels.
    pub(super) fn template(&self, stored: &StoredPod) -> ContainerSpec {
        let spec = &stored.spec;
        let labels = HashMap::from([
            (LABEL_INSTANCE.to_string(), self.settings.instance.clone()),
            (LABEL_POD.to_string(), spec.name.clone()),
            (LABEL_REVISION.to_string(), spec.revision_hash()),
            (LABEL_ROLE.to_string(), "replica".to_string()),
            (LABEL_PORT.to_string(), spec.port.to_string()),
        ]);
        ContainerSpec {
            name: String::new(),
            image: spec.image.clone(),
            port: spec.port,
            // Plain values only: secret references are resolved into `secrets` at create time.
            env: spec
                .env
                .iter()
                .filter_map(|(k, v)| v.as_value().map(|v| format!("{k}={v}")))
                .collect(),
            command: spec.command.clone(),
            args: spec.args.clone(),
            memory: spec.memory_bytes(),
            cpus: spec.resources.as_ref().and_then(|r| r.cpus),
            labels,
            network: self.settings.network.clone(),
            limits: spec.container_limits(),
            // Replicas publish no host port: the ingress reaches them on the network.
            publish: None,
            publish_tls: None,
            binds: Vec::new(),
            mounts: spec
                .volumes
                .iter()
                .filter_map(crate::spec::Volume::mount)
                .map(|m| match m {
                    VolumeMount::Named { name, path } => Mount::Volume {
                        source: volume_engine_name(&self.settings.instance, &name),
                        target: path,
                        labels: self.runtime.volume_labels(&self.settings.instance, &name),
                    },
                    VolumeMount::Tmpfs { path, bytes } => Mount::Tmpfs { target: path, bytes },
                })
                .collect(),
            constraints: spec.placement.as_ref().map(|p| p.parsed()).unwrap_or_default(),
            spread: spec.placement.as_ref().and_then(|p| p.spread_key()),
            // Pod names: the embedded DNS forwards what it does not know to the responder.
            dns: self.names.address().into_iter().collect(),
            secrets: Default::default(),
            ..Default::default()
        }
    }
}

impl Context {
    /// Records why replicas of `generation` ((created_at, generation) of the
    /// stored pod) could not be created, unless a
    /// newer generation was applied meanwhile (its spec has not failed yet).
    fn set_create_failure(&self, pod: &str, generation: (i64, i64), reason: &str, message: &str) {
        let mut book = lock(&self.book);
        let status = &mut book.status;
        let s = status.entry(pod.to_string()).or_default();
        if generation < s.create_failures_from {
            tracing::debug!(
                pod,
                ?generation,
                reason,
                "a create failure of an older generation: not recorded"
            );
            return;
        }
        s.reason = Some(reason.into());
        s.message = Some(message.into());
    }

    /// Forgets why replicas could not be created (a pull or a secret) when
    /// the pod changed to `generation`: the new spec has not failed yet, and
    /// a failure of an older one that arrives later is not recorded.
    pub(crate) fn forget_create_failure(&self, pod: &str, generation: (i64, i64)) {
        {
            let mut book = lock(&self.book);
            let status = &mut book.status;
            let s = status.entry(pod.to_string()).or_default();
            s.create_failures_from = s.create_failures_from.max(generation);
        }
        self.clear_failure(pod, "ImagePullFailed");
        self.clear_failure(pod, "SecretUnavailable");
        self.clear_failure(pod, "VolumeUnavailable");
        self.clear_failure(pod, "Unschedulable");
    }

    /// Forgets a failure of this reason once what failed works again.
    fn clear_failure(&self, pod: &str, reason: &str) {
        let mut book = lock(&self.book);
        let status = &mut book.status;
        if let Some(s) = status.get_mut(pod)
            && s.reason.as_deref() == Some(reason)
        {
            s.reason = None;
            s.message = None;
        }
    }
}

impl Context {
    /// What a one-off run of the pod's current revision runs (`dubectl
    /// run`, see `orchestrator/runs.rs`): a replica's template (image, env, secrets,
    /// volumes made first, network, DNS, limits) and how to pull its image.
    /// The caller sets its name, labels and command.
    pub(crate) async fn run_template(&self, stored: &StoredPod) -> Result<(ContainerSpec, crate::engine::Pull)> {
        self.ensure_volumes(&stored.spec).await?;
        let (material, pull) = self.secret_material(&stored.spec).await?;
        let mut template = self.template(stored);
        template.secrets = material;
        // Where the pod's replicas may run (on Swarm: beside its volumes).
        let placed = self.runtime.place(&template, 1).await?;
        template.constraints.extend(placed.into_iter().flatten());
        Ok((template, pull))
    }
}

/// A plan's actions sorted by how they are carried out.
struct Sorted {
    /// How many replicas to create.
    creates: u32,
    /// Created containers to start.
    starts: Vec<String>,
    /// Stopped containers, removed at once.
    quick_removes: Vec<(String, RemoveReason)>,
    /// Running containers, drained first.
    drains: Vec<(String, RemoveReason)>,
    /// Containers that exited, for the crash-loop bookkeeping.
    exited: Vec<Observed>,
}

impl Sorted {
    fn new(actions: Vec<Action>, observed: &[Observed]) -> Sorted {
        let mut creates = 0u32;
        let mut starts = Vec::new();
        let mut quick_removes = Vec::new();
        let mut drains = Vec::new();
        let mut exited = Vec::new();
        for action in actions {
            match action {
                Action::Create { count } => creates += count,
                Action::Start { id } => starts.push(id),
                Action::Remove { id, running, reason } => {
                    if reason == RemoveReason::Exited
                        && let Some(c) = observed.iter().find(|c| c.id == id)
                    {
                        exited.push(c.clone());
                    }
                    if running {
                        drains.push((id, reason))
                    } else {
                        quick_removes.push((id, reason))
                    }
                }
            }
        }
        Sorted {
            creates,
            starts,
            quick_removes,
            drains,
            exited,
        }
    }
}
