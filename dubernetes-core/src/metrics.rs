//! Prometheus metrics of an instance: one [`Registry`] and the typed
//! families the controller, the ingress, the engine wrapper and the HTTP layer
//! record into, each behind a one-line call. Built on `prometheus-client`, the
//! Prometheus project's own crate; encoded in the Prometheus text format
//! (0.0.4). Every family is documented in `docs/metrics.md`.
//!
//! Labels are bounded: pods (at most `max_pods`), fixed words (outcomes,
//! operations, states), API route templates (never raw paths) and status
//! codes; never a container id or anything else that grows without bound.
//! A deleted pod's series are removed ([`Metrics::forget_pod`]).

use std::sync::Arc;
use std::time::Duration;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use dubernetes_api::{ContainerState, Pod};

/// The content type of [`Metrics::encode`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Enums whose variants are label values, written in snake_case.
macro_rules! label_words {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// The label value.
            #[allow(dead_code)]
            $vis fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word,)* }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_words! {
    /// How one reconcile of a pod ended.
    pub(crate) enum ReconcileOutcome {
        /// Converged (or nothing to do): look again on the next wake.
        Done => "done",
        /// Look again after a delay (or at once): work is under way.
        Requeue => "requeue",
        /// The pod is deleted and its containers are gone.
        Gone => "gone",
        /// The reconcile failed; the error policy retries it.
        Error => "error",
    }
}

label_words! {
    /// How a rollout ended.
    pub(crate) enum RolloutResult {
        /// Every replica runs the new revision.
        Complete => "complete",
        /// It failed and the pod went back to the last good revision.
        RolledBack => "rolled_back",
        /// It failed and there was no good revision to go back to.
        Failed => "failed",
    }
}

label_words! {
    /// How one ingress sync ended.
    pub(crate) enum SyncResult {
        /// A new config went live.
        Changed => "changed",
        /// The routes were already live.
        Unchanged => "unchanged",
        /// The sync failed (it is retried).
        Error => "error",
    }
}

label_words! {
    /// Which long-lived stream of the API.
    pub enum StreamKind {
        /// `GET /v1/watch`.
        Watch => "watch",
        /// `GET /v1/pods/{name}/logs?follow=true`.
        Logs => "logs",
    }
}

label_words! {
    /// A call to the container engine (the [`crate::engine::Engine`] method).
    pub(crate) enum EngineOp {
        /// `ensure_network`.
        EnsureNetwork => "ensure_network",
        /// `remove_network`.
        RemoveNetwork => "remove_network",
        /// `list`.
        List => "list",
        /// `ensure_image`.
        EnsureImage => "ensure_image",
        /// `create`.
        Create => "create",
        /// `start`.
        Start => "start",
        /// `stop` (includes the grace period).
        Stop => "stop",
        /// `remove`.
        Remove => "remove",
        /// `signal`.
        Signal => "signal",
        /// `exec`.
        Exec => "exec",
        /// `write_file` (and `write_private_file`).
        WriteFile => "write_file",
        /// `write_files` (the ingress's endpoint files through the archive API).
        WriteFiles => "write_files",
        /// `read_files`.
        ReadFiles => "read_files",
        /// `is_running`.
        IsRunning => "is_running",
        /// `published_port`.
        PublishedPort => "published_port",
        /// `log_tail`.
        LogTail => "log_tail",
        /// `ensure_volume`, `inspect_volume`, `list_volumes`, `remove_volume`.
        Volume => "volume",
        /// `place` (where new replicas go) and `nodes`.
        Place => "place",
    }
}

label_words! {
    /// A per-pod replica count.
    enum ReplicaState {
        /// `replicas` of the spec.
        Desired => "desired",
        /// Replicas whose container runs.
        Running => "running",
        /// Replicas of the current revision, checked and routed.
        Ready => "ready",
        /// Live replicas of the current revision.
        Updated => "updated",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: ReconcileOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RolloutLabels {
    pod: String,
    outcome: RolloutResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PodLabels {
    pod: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReplicaLabels {
    pod: String,
    state: ReplicaState,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SyncLabels {
    result: SyncResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EngineLabels {
    operation: EngineOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StreamLabels {
    stream: StreamKind,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets from 1 ms to about 33 s, doubling: engine calls, reconciles,
/// syncs and API requests all fall in this range.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

struct Families {
    reconcile_duration: Histogram,
    reconciles: Family<OutcomeLabels, Counter>,
    replicas: Family<ReplicaLabels, Gauge>,
    restarts: Family<PodLabels, Counter>,
    backoffs: Family<PodLabels, Counter>,
    rollouts: Family<RolloutLabels, Counter>,
    ingress_syncs: Family<SyncLabels, Counter>,
    ingress_sync_duration: Histogram,
    ingress_reloads: Counter,
    engine_duration: Histograms<EngineLabels>,
    engine_errors: Family<EngineLabels, Counter>,
    api_requests: Family<RequestLabels, Counter>,
    api_duration: Histograms<RouteLabels>,
    streams: Family<StreamLabels, Gauge>,
}

struct Inner {
    registry: Registry,
    f: Families,
}

/// The metrics of one instance. Cheap to clone; every clone records into the
/// same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family, prefixed `dubernetes_`.
    pub fn new() -> Metrics {
        let f = Families {
            reconcile_duration: seconds(),
            reconciles: Family::default(),
            replicas: Family::default(),
            restarts: Family::default(),
            backoffs: Family::default(),
            rollouts: Family::default(),
            ingress_syncs: Family::default(),
            ingress_sync_duration: seconds(),
            ingress_reloads: Counter::default(),
            engine_duration: Family::new_with_constructor(seconds),
            engine_errors: Family::default(),
            api_requests: Family::default(),
            api_duration: Family::new_with_constructor(seconds),
            streams: Family::default(),
        };
        // Series of fixed label values start at 0, so a rate() sees the first increase.
        for outcome in [
            ReconcileOutcome::Done,
            ReconcileOutcome::Requeue,
            ReconcileOutcome::Gone,
            ReconcileOutcome::Error,
        ] {
            let _ = f.reconciles.get_or_create(&OutcomeLabels { outcome });
        }
        for result in [SyncResult::Changed, SyncResult::Unchanged, SyncResult::Error] {
            let _ = f.ingress_syncs.get_or_create(&SyncLabels { result });
        }
        for stream in [StreamKind::Watch, StreamKind::Logs] {
            let _ = f.streams.get_or_create(&StreamLabels { stream });
        }
        let mut r = Registry::with_prefix("dubernetes");
        r.register_with_unit(
            "reconcile_duration",
            "Time one reconcile of one pod took (observe, plan, act)",
            Unit::Seconds,
            f.reconcile_duration.clone(),
        );
        r.register("reconciles", "Reconciles by outcome", f.reconciles.clone());
        r.register(
            "pod_replicas",
            "Replicas per pod: desired (spec), running (engine state), ready (current revision, checked and routed), updated (current revision, any live state)",
            f.replicas.clone(),
        );
        r.register(
            "container_restarts",
            "Replicas that exited and were replaced, per pod",
            f.restarts.clone(),
        );
        r.register(
            "crashloop_backoffs",
            "Restarts delayed by the crash-loop back-off, per pod",
            f.backoffs.clone(),
        );
        r.register("rollouts", "Finished rollouts by pod and outcome", f.rollouts.clone());
        r.register("ingress_syncs", "Ingress syncs by result", f.ingress_syncs.clone());
        r.register_with_unit(
            "ingress_sync_duration",
            "Time one ingress sync took (render, check, reload, wait until live)",
            Unit::Seconds,
            f.ingress_sync_duration.clone(),
        );
        r.register(
            "ingress_reloads",
            "nginx configs made live (reloads and fresh starts)",
            f.ingress_reloads.clone(),
        );
        r.register_with_unit(
            "engine_call_duration",
            "Time of calls to the container engine, by operation (the count is the number of calls)",
            Unit::Seconds,
            f.engine_duration.clone(),
        );
        r.register(
            "engine_call_errors",
            "Failed calls to the container engine, by operation",
            f.engine_errors.clone(),
        );
        r.register(
            "api_requests",
            "API requests by method, route template and status",
            f.api_requests.clone(),
        );
        r.register_with_unit(
            "api_request_duration",
            "Time to the head of an API response, by method and route template",
            Unit::Seconds,
            f.api_duration.clone(),
        );
        r.register("streams_open", "Open watch and log-follow streams", f.streams.clone());
        Metrics {
            inner: Arc::new(Inner { registry: r, f }),
        }
    }

    fn f(&self) -> &Families {
        &self.inner.f
    }

    /// The registry in the Prometheus text format, with the per-pod replica
    /// gauges set from `pods` (the status view, the one truth of counts).
    pub fn encode(&self, pods: &[Pod]) -> String {
        let f = self.f();
        f.replicas.clear();
        for pod in pods {
            let running = pod
                .replicas
                .iter()
                .filter(|r| r.state == ContainerState::Running)
                .count();
            let counts = [
                (ReplicaState::Desired, u64::from(pod.status.desired_replicas)),
                (ReplicaState::Running, running as u64),
                (ReplicaState::Ready, u64::from(pod.status.ready_replicas)),
                (ReplicaState::Updated, u64::from(pod.status.updated_replicas)),
            ];
            for (state, n) in counts {
                let labels = ReplicaLabels {
                    pod: pod.spec.name.clone(),
                    state,
                };
                f.replicas
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry);
        out
    }

    pub(crate) fn reconciled(&self, took: Duration, outcome: ReconcileOutcome) {
        self.f().reconcile_duration.observe(took.as_secs_f64());
        self.f().reconciles.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// A replica of `pod` exited and is replaced; `backed_off`: after a
    /// crash-loop delay.
    pub(crate) fn restarted(&self, pod: &str, backed_off: bool) {
        let labels = PodLabels { pod: pod.to_string() };
        self.f().restarts.get_or_create(&labels).inc();
        if backed_off {
            self.f().backoffs.get_or_create(&labels).inc();
        }
    }

    pub(crate) fn rollout(&self, pod: &str, outcome: RolloutResult) {
        let labels = RolloutLabels {
            pod: pod.to_string(),
            outcome,
        };
        self.f().rollouts.get_or_create(&labels).inc();
    }

    /// Drops the series of a deleted pod, so labels stay bounded by the pods that exist.
    pub(crate) fn forget_pod(&self, pod: &str) {
        let f = self.f();
        let labels = PodLabels { pod: pod.to_string() };
        f.restarts.remove(&labels);
        f.backoffs.remove(&labels);
        for outcome in [
            RolloutResult::Complete,
            RolloutResult::RolledBack,
            RolloutResult::Failed,
        ] {
            f.rollouts.remove(&RolloutLabels {
                pod: pod.to_string(),
                outcome,
            });
        }
    }

    pub(crate) fn ingress_synced<E>(&self, took: Duration, result: &std::result::Result<bool, E>) {
        let result = match result {
            Ok(true) => SyncResult::Changed,
            Ok(false) => SyncResult::Unchanged,
            Err(_) => SyncResult::Error,
        };
        self.f().ingress_sync_duration.observe(took.as_secs_f64());
        self.f().ingress_syncs.get_or_create(&SyncLabels { result }).inc();
    }

    pub(crate) fn ingress_reloaded(&self) {
        self.f().ingress_reloads.inc();
    }

    pub(crate) fn engine_call<T, E>(&self, operation: EngineOp, took: Duration, result: &std::result::Result<T, E>) {
        let labels = EngineLabels { operation };
        self.f()
            .engine_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if result.is_err() {
            self.f().engine_errors.get_or_create(&labels).inc();
        }
    }

    /// One API request: `route` is the matched route template (e.g.
    /// `/v1/pods/{name}`), never the raw path; `took` is the time to the
    /// response's head.
    pub fn api_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let route_labels = RouteLabels {
            method: method.to_string(),
            route: route.to_string(),
        };
        self.f()
            .api_duration
            .get_or_create(&route_labels)
            .observe(took.as_secs_f64());
        let labels = RequestLabels {
            method: route_labels.method,
            route: route_labels.route,
            status,
        };
        self.f().api_requests.get_or_create(&labels).inc();
    }

    /// Counts a stream as open until the returned guard is dropped.
    pub fn stream_open(&self, stream: StreamKind) -> StreamGuard {
        self.f().streams.get_or_create(&StreamLabels { stream }).inc();
        StreamGuard {
            metrics: self.clone(),
            stream,
        }
    }
}

/// Keeps a stream counted as open (see [`Metrics::stream_open`]).
#[derive(Debug)]
pub struct StreamGuard {
    metrics: Metrics,
    stream: StreamKind,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics
            .f()
            .streams
            .get_or_create(&StreamLabels { stream: self.stream })
            .dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_with_their_names_units_and_labels() {
        let m = Metrics::new();
        m.reconciled(Duration::from_millis(3), ReconcileOutcome::Done);
        m.restarted("web", true);
        m.engine_call::<(), ()>(EngineOp::Create, Duration::from_millis(20), &Err(()));
        m.api_request("GET", "/v1/pods/{name}", 404, Duration::from_millis(1));
        let guard = m.stream_open(StreamKind::Watch);
        let text = m.encode(&[]);
        assert!(
            text.contains("# TYPE dubernetes_reconcile_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("dubernetes_reconciles_total{outcome=\"done\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dubernetes_container_restarts_total{pod=\"web\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dubernetes_crashloop_backoffs_total{pod=\"web\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dubernetes_engine_call_errors_total{operation=\"create\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dubernetes_api_requests_total{method=\"GET\",route=\"/v1/pods/{name}\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(text.contains("dubernetes_streams_open{stream=\"watch\"} 1"), "{text}");
        drop(guard);
        assert!(m.encode(&[]).contains("dubernetes_streams_open{stream=\"watch\"} 0"));
        m.forget_pod("web");
        assert!(!m.encode(&[]).contains("pod=\"web\""));
    }
}
