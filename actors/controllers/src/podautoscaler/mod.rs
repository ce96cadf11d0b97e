//! The horizontal pod autoscaler (upstream `pkg/controller/podautoscaler`): every sync
//! period, for each HorizontalPodAutoscaler, reads its target's scale subresource, the usage
//! of the target's pods from `metrics.k8s.io`, computes the replicas each metric asks for
//! ([`replica_calculator`]), holds the largest back by the behavior ([`behavior`]), writes the
//! target's scale when it changes, and reports it all in the status: current metrics,
//! replicas, and the AbleToScale, ScalingActive and ScalingLimited conditions with upstream's
//! reasons, plus upstream's events.

pub mod behavior;
pub mod metrics;
pub mod replica_calculator;

use behavior::{History, Policy, PolicyKind, Rules, Select};
use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubus_apimachinery::quantity::parse_quantity;
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::time::{system_time, time};
use kubus_apimachinery::{pod, resource, ObjectExt, ObjectKey};
use kubus_controller_runtime::client::path;
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::{Client, Informer, InformerFactory, Recorder};
use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use replica_calculator::{PodSample, PodState, Target};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;

pub const WORKERS: usize = 5;
/// Upstream's --horizontal-pod-autoscaler-sync-period.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// Upstream's --horizontal-pod-autoscaler-downscale-stabilization: the scale-down window of
/// autoscalers whose behavior names none.
pub const DOWNSCALE_STABILIZATION: Duration = Duration::from_secs(300);
/// A pod's CPU says nothing of the load for this long after it starts unless it has been
/// Ready through a whole metrics window (upstream's --horizontal-pod-autoscaler-cpu-initialization-period).
const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// A pod that turned unready this soon after starting never was ready (upstream's
/// --horizontal-pod-autoscaler-initial-readiness-delay).
const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

static RECONCILIATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "horizontal_pod_autoscaler_controller_reconciliations_total",
        "Number of reconciliations of HPA controller. The label 'action' should be either 'scale_down', 'scale_up', or 'none'. Also, the label 'error' should be either 'spec', 'internal', or 'none'. Note that if both spec and internal errors happen during a reconciliation, the first one to occur is reported in `error` label.",
        &["action", "error"]
    )
    .expect("registers once")
});

static RECONCILIATION_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "horizontal_pod_autoscaler_controller_reconciliation_duration_seconds",
        "The time(seconds) that the HPA controller takes to reconcile once. The label 'action' should be either 'scale_down', 'scale_up', or 'none'. Also, the label 'error' should be either 'spec', 'internal', or 'none'. Note that if both spec and internal errors happen during a reconciliation, the first one to occur is reported in `error` label.",
        &["action", "error"],
        prometheus::exponential_buckets(0.001, 2.0, 15).expect("valid buckets")
    )
    .expect("registers once")
});

#[derive(Debug, Clone, Copy)]
pub struct AutoscalerConfig {
    pub sync_period: Duration,
    pub downscale_stabilization: Duration,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        AutoscalerConfig { sync_period: SYNC_PERIOD, downscale_stabilization: DOWNSCALE_STABILIZATION }
    }
}

pub fn run(
    client: Client,
    factory: &InformerFactory,
    workers: usize,
    config: AutoscalerConfig,
) -> BoxFuture<'static, ()> {
    LazyLock::force(&RECONCILIATIONS);
    LazyLock::force(&RECONCILIATION_DURATION);
    let hpas = factory.get::<HorizontalPodAutoscaler>();
    let ctrl = Controller::new("horizontal-pod-autoscaler", hpas.clone()).workers(workers);
    let this = HorizontalController {
        events: Recorder::new(client.clone(), "horizontal-pod-autoscaler"),
        client,
        hpas,
        pods: factory.get::<Pod>(),
        config,
        history: Default::default(),
    };
    ctrl.run(Arc::new(this))
}

struct HorizontalController {
    client: Client,
    events: Recorder,
    hpas: Informer<HorizontalPodAutoscaler>,
    pods: Informer<Pod>,
    config: AutoscalerConfig,
    /// Recommendations and scale events per autoscaler (what the windows and policies read).
    history: Mutex<HashMap<ObjectKey, History>>,
}

/// Why a sync could not finish: recorded as a condition and an event, then retried at the
/// next period.
struct Failure {
    condition: &'static str,
    reason: &'static str,
    message: String,
    /// Upstream's `error` label: a problem with the spec or a failure inside.
    spec: bool,
}

/// What one metric asked for.
struct MetricResult {
    replicas: i32,
    /// "cpu resource utilization (percentage of request)", as events name it.
    name: String,
    status: MetricStatus,
}

fn milli(q: &str) -> Option<i64> {
    parse_quantity(q).ok().map(|q| q.milli_value() as i64)
}

fn condition(kind: &str, status: bool, reason: &str, message: impl Into<String>) -> HorizontalPodAutoscalerCondition {
    HorizontalPodAutoscalerCondition {
        type_: kind.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.into()),
        last_transition_time: None,
    }
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set_condition(status: &mut HorizontalPodAutoscalerStatus, mut c: HorizontalPodAutoscalerCondition, now: &Time) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|old| old.type_ == c.type_) {
        Some(old) => {
            c.last_transition_time =
                if old.status == c.status { old.last_transition_time.clone() } else { Some(now.clone()) };
            *old = c;
        }
        None => {
            c.last_transition_time = Some(now.clone());
            conditions.push(c);
        }
    }
}

fn rules(spec: Option<&HPAScalingRules>, default: Rules) -> Rules {
    let Some(spec) = spec else { return default };
    let policies = spec.policies.as_ref().map(|ps| {
        ps.iter()
            .map(|p| Policy {
                kind: if p.type_ == "Pods" { PolicyKind::Pods } else { PolicyKind::Percent },
                value: p.value,
                period: Duration::from_secs(p.period_seconds.max(0) as u64),
            })
            .collect()
    });
    Rules {
        window: spec.stabilization_window_seconds.map_or(default.window, |s| Duration::from_secs(s.max(0) as u64)),
        select: match spec.select_policy.as_deref() {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            Some(_) => Select::Max,
            None => default.select,
        },
        policies: policies.unwrap_or(default.policies),
    }
}

impl HorizontalController {
    /// The state the calculator needs of a pod for `resource` (upstream's groupPods).
    fn pod_state(p: &Pod, resource: &str, sample: Option<&metrics::PodUsage>, now: SystemTime) -> PodState {
        if p.is_deleting() || pod::phase(p) == "Failed" {
            return PodState::Ignored;
        }
        if pod::phase(p) == "Pending" {
            return PodState::Unready;
        }
        if resource != "cpu" {
            return PodState::Ready;
        }
        let ready = pod::condition(p, "Ready");
        let start = p.status.as_ref().and_then(|s| s.start_time.as_ref()).map(system_time);
        let (Some(ready), Some(start)) = (ready, start) else { return PodState::Unready };
        let transition = ready.last_transition_time.as_ref().map_or(start, system_time);
        let unready = if start + CPU_INITIALIZATION_PERIOD > now {
            // Starting: counted once Ready before the whole metrics window began.
            ready.status != "True" || sample.is_none_or(|s| s.timestamp < transition + s.window)
        } else {
            ready.status == "False" && start + INITIAL_READINESS_DELAY > transition
        };
        if unready {
            PodState::Unready
        } else {
            PodState::Ready
        }
    }

    /// Replicas asked for by one Resource or ContainerResource metric.
    fn resource_metric(
        &self,
        spec: &MetricSpec,
        current: i32,
        pods: &[Arc<Pod>],
        usage: &HashMap<String, metrics::PodUsage>,
    ) -> Result<MetricResult, Failure> {
        let (name, container, target) = match (&spec.resource, &spec.container_resource) {
            (Some(r), _) => (r.name.as_str(), None, &r.target),
            (None, Some(c)) => (c.name.as_str(), Some(c.container.as_str()), &c.target),
            _ => {
                return Err(Failure {
                    condition: "ScalingActive",
                    reason: "InvalidMetricSourceType",
                    message: format!(
                        "the HPA was unable to compute the replica count: unsupported metric source type {:?}",
                        spec.type_
                    ),
                    spec: true,
                })
            }
        };
        let failed = |message: String| Failure {
            condition: "ScalingActive",
            reason: "FailedGetResourceMetric",
            message: format!(
                "the HPA was unable to compute the replica count: failed to get {name} utilization: {message}"
            ),
            spec: false,
        };
        let want = match (target.average_utilization, target.average_value.as_ref()) {
            (Some(u), _) => Target::Utilization(i64::from(u)),
            (None, Some(v)) => Target::AverageValue(milli(&v.0).unwrap_or(0)),
            _ => return Err(failed("invalid metric target".into())),
        };
        let now = SystemTime::now();
        let mut samples = Vec::with_capacity(pods.len());
        for p in pods {
            let containers = p.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
            let mut request = Some(0i64);
            for c in containers.iter().filter(|c| container.is_none_or(|want| c.name == want)) {
                let r = c.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get(name));
                match (r.and_then(|q| milli(&q.0)), want) {
                    (Some(m), _) => request = request.map(|t| t + m),
                    (None, Target::Utilization(_)) => {
                        return Err(failed(format!(
                            "missing request for {name} in container {} of Pod {}",
                            c.name,
                            p.name()
                        )))
                    }
                    (None, Target::AverageValue(_)) => request = None,
                }
            }
            let sample = usage.get(p.name());
            let used = sample.and_then(|s| match container {
                Some(c) => s.containers.get(c).and_then(|u| u.get(name)).copied(),
                None => {
                    let per: Vec<i64> = s.containers.values().filter_map(|u| u.get(name).copied()).collect();
                    (!per.is_empty()).then(|| per.iter().sum())
                }
            });
            samples.push(PodSample {
                name: p.name().to_string(),
                state: Self::pod_state(p, name, sample, now),
                request,
                usage: used,
            });
        }
        let r = replica_calculator::replicas(current, &samples, want).map_err(|e| failed(e.to_string()))?;
        let value = QuantityString(format!("{}m", r.average_value));
        let (label, current_status) = match want {
            Target::Utilization(_) => (
                format!("{name} resource utilization (percentage of request)"),
                MetricValueStatus {
                    average_utilization: r.utilization.map(|u| u as i32),
                    average_value: Some(value),
                    value: None,
                },
            ),
            Target::AverageValue(_) => {
                (format!("{name} resource"), MetricValueStatus { average_value: Some(value), ..Default::default() })
            }
        };
        let status = match container {
            None => MetricStatus {
                type_: "Resource".into(),
                resource: Some(ResourceMetricStatus { name: name.to_string(), current: current_status }),
                ..Default::default()
            },
            Some(c) => MetricStatus {
                type_: "ContainerResource".into(),
                container_resource: Some(k8s_openapi::api::autoscaling::v2::ContainerResourceMetricStatus {
                    name: name.to_string(),
                    container: c.to_string(),
                    current: current_status,
                }),
                ..Default::default()
            },
        };
        Ok(MetricResult { replicas: r.replicas, name: label, status })
    }

    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(hpa) = self.hpas.get_key(key) else {
            self.history.lock().expect("history lock").remove(key);
            return Ok(Action::Done);
        };
        if hpa.is_deleting() {
            return Ok(Action::Done);
        }
        let started = Instant::now();
        let span = tracing::debug_span!("hpa_sync", namespace = %key.0, name = %key.1);
        let (action, error) = match self.reconcile_autoscaler(&hpa).instrument(span).await {
            Ok(action) => (action, "none"),
            Err((action, failure)) => {
                let error = if failure.spec { "spec" } else { "internal" };
                (action, error)
            }
        };
        RECONCILIATIONS.with_label_values(&[action, error]).inc();
        RECONCILIATION_DURATION.with_label_values(&[action, error]).observe(started.elapsed().as_secs_f64());
        Ok(Action::RequeueAfter(self.config.sync_period))
    }

    /// One sync of one autoscaler: returns the action taken ("scale_up", "scale_down", "none").
    async fn reconcile_autoscaler(
        &self,
        hpa: &HorizontalPodAutoscaler,
    ) -> Result<&'static str, (&'static str, Failure)> {
        let (ns, name) = (hpa.namespace(), hpa.name());
        let spec = hpa.spec.clone().unwrap_or_default();
        let now = time(SystemTime::now());
        let mut status = hpa.status.clone().unwrap_or_default();
        status.observed_generation = hpa.metadata.generation;
        let target = &spec.scale_target_ref;
        let reference = format!("{}/{}", target.kind, target.name);

        // The target's scale.
        let group = target.api_version.as_deref().map_or("", |v| v.rsplit_once('/').map_or("", |(g, _)| g));
        let scale =
            match resource::by_kind(group, &target.kind).filter(|i| i.has(kubus_apimachinery::Subresource::Scale)) {
                None => {
                    let kind = if group.is_empty() { target.kind.clone() } else { format!("{}.{group}", target.kind) };
                    Err(format!("the server could not find the requested resource ({kind} {})", target.name))
                }
                Some(info) => self
                    .client
                    .request("GET", &path(info, Some(ns), Some(&target.name), Some("scale")), "", None, None)
                    .await
                    .map(|s| (info, s))
                    .map_err(|e| e.to_string()),
            };
        let (info, scale) = match scale {
            Ok(s) => s,
            Err(e) => {
                let message = format!("the HPA controller was unable to get the target's current scale: {e}");
                self.events.record(hpa, EventType::Warning, "FailedGetScale", &e).await;
                set_condition(&mut status, condition("AbleToScale", false, "FailedGetScale", &message), &now);
                self.write_status(hpa, status).await;
                return Err((
                    "none",
                    Failure { condition: "AbleToScale", reason: "FailedGetScale", message, spec: false },
                ));
            }
        };
        set_condition(
            &mut status,
            condition(
                "AbleToScale",
                true,
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
            ),
            &now,
        );
        let current = scale["spec"]["replicas"].as_i64().unwrap_or(0) as i32;
        status.current_replicas = Some(scale["status"]["replicas"].as_i64().unwrap_or(0) as i32);
        let (min, max) = (spec.min_replicas.unwrap_or(1), spec.max_replicas);

        let mut rescale_reason = String::new();
        let desired = if current == 0 && min != 0 {
            set_condition(
                &mut status,
                condition(
                    "ScalingActive",
                    false,
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                ),
                &now,
            );
            0
        } else {
            let metric =
                match self.compute_replicas(hpa, &spec.metrics.clone().unwrap_or_default(), current, &scale).await {
                    Ok(m) => m,
                    Err(f) => {
                        self.events.record(hpa, EventType::Warning, f.reason, &f.message).await;
                        set_condition(&mut status, condition(f.condition, false, f.reason, &f.message), &now);
                        status.desired_replicas = current;
                        self.write_status(hpa, status).await;
                        return Err(("none", f));
                    }
                };
            status.current_metrics = Some(metric.statuses);
            set_condition(
                &mut status,
                condition(
                    "ScalingActive",
                    true,
                    "ValidMetricFound",
                    format!("the HPA was able to successfully calculate a replica count from {}", metric.name),
                ),
                &now,
            );
            let behavior = spec.behavior.as_ref();
            let up = rules(behavior.and_then(|b| b.scale_up.as_ref()), Rules::default_up());
            let down = rules(
                behavior.and_then(|b| b.scale_down.as_ref()),
                Rules::default_down(self.config.downscale_stabilization),
            );
            let decision = {
                let mut history = self.history.lock().expect("history lock");
                let now = Instant::now();
                let h = history.entry(hpa.key()).or_insert_with(|| History::seeded(now, current));
                behavior::normalize(h, now, current, metric.replicas, (min, max), &up, &down)
            };
            let (limited, reason, message) = decision.limited;
            set_condition(&mut status, condition("ScalingLimited", limited, reason, message), &now);
            rescale_reason = if decision.replicas > current {
                format!("{} above target", metric.name)
            } else {
                "All metrics below target".to_string()
            };
            if current > max {
                rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
            } else if current < min {
                rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
            }
            decision.replicas
        };
        status.desired_replicas = desired;

        let action = match desired.cmp(&current) {
            std::cmp::Ordering::Greater => "scale_up",
            std::cmp::Ordering::Less => "scale_down",
            std::cmp::Ordering::Equal => "none",
        };
        if desired != current {
            let patch = json!({"spec": {"replicas": desired}});
            let p = path(info, Some(ns), Some(&target.name), Some("scale"));
            if let Err(e) =
                self.client.request("PATCH", &p, "", Some("application/merge-patch+json"), Some(&patch)).await
            {
                let message = format!("the HPA controller was unable to update the target scale: {e}");
                self.events
                    .record(
                        hpa,
                        EventType::Warning,
                        "FailedRescale",
                        &format!("New size: {desired}; reason: {rescale_reason}; error: {e}"),
                    )
                    .await;
                set_condition(&mut status, condition("AbleToScale", false, "FailedUpdateScale", &message), &now);
                self.write_status(hpa, status).await;
                return Err((
                    action,
                    Failure { condition: "AbleToScale", reason: "FailedUpdateScale", message, spec: false },
                ));
            }
            let longest = up_down_longest(spec.behavior.as_ref());
            {
                let mut history = self.history.lock().expect("history lock");
                behavior::record(history.entry(hpa.key()).or_default(), Instant::now(), current, desired, longest);
            }
            set_condition(
                &mut status,
                condition(
                    "AbleToScale",
                    true,
                    "SucceededRescale",
                    format!("the HPA controller was able to update the target scale to {desired}"),
                ),
                &now,
            );
            let msg = format!("New size: {desired}; reason: {rescale_reason}");
            self.events.record(hpa, EventType::Normal, "SuccessfulRescale", &msg).await;
            tracing::info!(hpa = %name, %reference, from = current, to = desired, reason = %rescale_reason, "rescaled");
            status.last_scale_time = Some(now.clone());
        }
        self.write_status(hpa, status).await;
        Ok(action)
    }

    /// The largest replica count any metric asks for, with every metric's current value.
    async fn compute_replicas(
        &self,
        hpa: &HorizontalPodAutoscaler,
        specs: &[MetricSpec],
        current: i32,
        scale: &Value,
    ) -> Result<Computed, Failure> {
        let selector = scale["status"]["selector"].as_str().unwrap_or("");
        if selector.is_empty() {
            return Err(Failure {
                condition: "ScalingActive",
                reason: "InvalidSelector",
                message: "the HPA target's scale is missing a selector".into(),
                spec: true,
            });
        }
        let parsed = LabelSelector::parse(selector).map_err(|e| Failure {
            condition: "ScalingActive",
            reason: "InvalidSelector",
            message: format!("couldn't convert selector into a corresponding internal selector object: {}", e.message),
            spec: true,
        })?;
        let pods: Vec<Arc<Pod>> =
            self.pods.namespace(hpa.namespace()).into_iter().filter(|p| parsed.matches_labels(p.labels())).collect();
        let usage = metrics::pod_usage(&self.client, hpa.namespace(), selector).await.map_err(|e| Failure {
            condition: "ScalingActive",
            reason: "FailedGetResourceMetric",
            message: format!("the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: {e}"),
            spec: false,
        })?;
        let mut best: Option<(i32, String)> = None;
        let mut statuses = Vec::new();
        let mut first_error = None;
        for spec in specs {
            let result = match spec.type_.as_str() {
                "Resource" | "ContainerResource" => self.resource_metric(spec, current, &pods, &usage),
                other => Err(Failure {
                    condition: "ScalingActive",
                    reason: "FailedGetExternalMetric",
                    message: format!(
                        "the HPA was unable to compute the replica count: {other} metrics need a custom or external metrics API, which this cluster does not serve"
                    ),
                    spec: true,
                }),
            };
            match result {
                Ok(m) => {
                    if best.as_ref().is_none_or(|(r, _)| m.replicas > *r) {
                        best = Some((m.replicas, m.name.clone()));
                    }
                    statuses.push(m.status);
                }
                Err(f) => {
                    first_error.get_or_insert(f);
                }
            }
        }
        match (best, first_error) {
            (Some((replicas, name)), _) => Ok(Computed { replicas, name, statuses }),
            (None, Some(f)) => Err(f),
            (None, None) => Err(Failure {
                condition: "ScalingActive",
                reason: "FailedComputeMetricsReplicas",
                message: "the HPA was unable to compute the replica count: no metrics".into(),
                spec: true,
            }),
        }
    }

    async fn write_status(&self, hpa: &HorizontalPodAutoscaler, status: HorizontalPodAutoscalerStatus) {
        if hpa.status.as_ref() == Some(&status) {
            return;
        }
        let mut body = hpa.clone();
        body.status = Some(status);
        let written = self
            .client
            .replace_subresource::<HorizontalPodAutoscaler, _>(hpa.namespace(), hpa.name(), "status", &body)
            .await;
        if let Err(e) = written {
            // Conflicts are settled at the next sync, a period later, from fresh state.
            tracing::debug!(hpa = %hpa.name(), error = %e, "status not written");
        }
    }
}

struct Computed {
    replicas: i32,
    name: String,
    statuses: Vec<MetricStatus>,
}

/// How long scale events matter: the longest policy period.
fn up_down_longest(b: Option<&k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior>) -> Duration {
    let periods = b
        .into_iter()
        .flat_map(|b| [b.scale_up.as_ref(), b.scale_down.as_ref()])
        .flatten()
        .flat_map(|r| r.policies.iter().flatten())
        .map(|p| Duration::from_secs(p.period_seconds.max(0) as u64));
    periods.max().unwrap_or(Duration::from_secs(15)).max(Duration::from_secs(15))
}

impl Reconciler for HorizontalController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}
