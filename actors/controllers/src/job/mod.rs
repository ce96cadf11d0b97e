//! The Job controller (upstream `pkg/controller/job`): runs a Job's pods until enough succeed
//! (NonIndexed: a count; Indexed: each index `0..completions` once), within `parallelism`,
//! failing the Job at `backoffLimit` failures, at `activeDeadlineSeconds`, or when a
//! `podFailurePolicy` rule says so; suspending deletes its pods.
//!
//! Every pod carries the `batch.kubernetes.io/job-tracking` finalizer until the controller has
//! counted it: a finished pod's uid is first written to `status.uncountedTerminatedPods`, then
//! its finalizer removed, then it moves to `succeeded` or `failed`. Each step is a write that
//! loses to any concurrent one (the Job's resourceVersion), so counts survive a controller
//! restart at any point and a pod that is deleted is still counted once.

pub mod failure_policy;
pub mod indexes;

use crate::adoption::selector_of;
use crate::expectations::Expectations;
use crate::replicaset::deletion_rank;
use failure_policy::Verdict;
use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use kubus_apimachinery::meta::{controller_ref, refers_to};
use kubus_apimachinery::time::{system_time, time};
use kubus_apimachinery::{conditions, pod, ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::{Change, Client, DeleteParams, Informer, InformerFactory, Recorder};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Upstream's `--concurrent-job-syncs` default.
pub const WORKERS: usize = 5;
/// Held on every pod of a Job until the controller has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Pod changes of one Job within this window make one sync.
const COALESCE: Duration = Duration::from_millis(100);
/// Most pods created or deleted in one sync (upstream's burst).
const BURST: usize = 500;
/// Re-creating pods after failures waits 10 s, doubling per failure since the last success,
/// up to 10 minutes (upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff).
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

const REACHED: &str = "Reached expected number of succeeded pods";

/// Starts the controller with `workers` concurrent syncs; the future runs it until dropped.
pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let (jobs, pods) = (factory.get::<Job>(), factory.get::<Pod>());
    let expectations = Arc::new(Expectations::default());
    let on_pod = {
        let (jobs, expectations) = (jobs.clone(), expectations.clone());
        move |change: &Change<Pod>| pod_change(&jobs, &expectations, change)
    };
    let ctrl =
        Controller::new("job", jobs.clone()).watches_changes(pods.clone(), on_pod).coalesce(COALESCE).workers(workers);
    let events = Recorder::new(client.clone(), "job-controller");
    let released = Mutex::default();
    ctrl.run(Arc::new(JobController { client, events, jobs, pods, expectations, released }))
}

/// Observes creations and deletions for expectations (a pod the controller deleted counts as
/// observed once it is terminating) and names the Jobs a pod change concerns.
fn pod_change(jobs: &Informer<Job>, expectations: &Expectations, change: &Change<Pod>) -> Vec<ObjectKey> {
    let mut keys = crate::adoption::observe_child(jobs, expectations, change, |j: &Job| {
        selector_of(j.spec.as_ref().and_then(|s| s.selector.as_ref()))
    });
    // A pod that still holds the tracking finalizer but has no controller any more (its Job
    // was deleted with --cascade=orphan): its own key, so the finalizer goes.
    if let Change::Applied { new, .. } = change {
        if has_finalizer(new) && new.controller_ref().is_none() {
            keys.push((new.namespace().to_string(), format!("{ORPHAN_PREFIX}{}", new.name())));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

pub struct JobController {
    client: Client,
    events: Recorder,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    expectations: Arc<Expectations>,
    /// Pods whose finalizer this controller removed, by Job, until the pod informer shows it
    /// gone (upstream's finalizer expectations): a lagging pod cache must not make a pod count
    /// twice.
    released: Mutex<HashMap<ObjectKey, HashSet<String>>>,
}

/// The key a finished pod that lost its Job is queued under (`:` never appears in a Job's
/// name), so its finalizer is removed.
const ORPHAN_PREFIX: &str = "pod:";
/// The controller that runs Jobs without `spec.managedBy` (upstream's name).
const MANAGED_BY: &str = "kubernetes.io/job-controller";

/// What a Job's spec asks, with the API's defaults.
struct Want {
    completions: Option<i64>,
    parallelism: i64,
    backoff_limit: i64,
    indexed: bool,
    suspend: bool,
    on_failure: bool,
    /// Terminating pods count as failed at once (podReplacementPolicy TerminatingOrFailed).
    terminating_fails: bool,
    deadline: Option<Duration>,
}

impl Want {
    fn of(job: &Job) -> Want {
        let spec = job.spec.as_ref();
        let template = spec.and_then(|s| s.template.spec.as_ref());
        Want {
            completions: spec.and_then(|s| s.completions).map(i64::from),
            parallelism: spec.and_then(|s| s.parallelism).unwrap_or(1).max(0) as i64,
            backoff_limit: spec.and_then(|s| s.backoff_limit).unwrap_or(6).max(0) as i64,
            indexed: spec.and_then(|s| s.completion_mode.as_deref()) == Some("Indexed"),
            suspend: spec.and_then(|s| s.suspend).unwrap_or(false),
            on_failure: template.and_then(|t| t.restart_policy.as_deref()) == Some("OnFailure"),
            terminating_fails: spec.and_then(|s| s.pod_replacement_policy.as_deref()) != Some("Failed"),
            deadline: spec.and_then(|s| s.active_deadline_seconds).map(|s| Duration::from_secs(s.max(0) as u64)),
        }
    }
}

fn condition(job: &Job, kind: &str) -> Option<JobCondition> {
    conditions::find(job.status.as_ref().and_then(|s| s.conditions.as_ref()), kind).cloned()
}

fn is_true(job: &Job, kind: &str) -> bool {
    condition(job, kind).is_some_and(|c| c.status == "True")
}

/// Complete or Failed: nothing more runs.
pub fn is_finished(job: &Job) -> bool {
    is_true(job, "Complete") || is_true(job, "Failed")
}

/// When a finished Job finished (its Complete or Failed condition's transition).
pub fn finished_at(job: &Job) -> Option<SystemTime> {
    ["Complete", "Failed"]
        .iter()
        .filter_map(|k| condition(job, k).filter(|c| c.status == "True"))
        .find_map(|c| c.last_transition_time.as_ref().map(system_time))
}

fn has_finalizer(p: &Pod) -> bool {
    p.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

fn new_condition(kind: &str, status: &str, reason: &str, message: &str, now: SystemTime) -> JobCondition {
    JobCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(time(now)),
        last_transition_time: Some(time(now)),
    }
}

/// Sets a condition, keeping its transition time while its status stays the same.
fn set_condition(status: &mut JobStatus, c: JobCondition) -> bool {
    let list = status.conditions.get_or_insert_with(Vec::new);
    match list.iter_mut().find(|x| x.type_ == c.type_) {
        Some(x) if x.status == c.status && x.reason == c.reason && x.message == c.message => false,
        Some(x) => {
            *x = c;
            true
        }
        None => {
            list.push(c);
            true
        }
    }
}

/// When a pod ended: its containers' latest finish, else when it became not ready, else when it
/// was created.
fn finish_time(p: &Pod) -> Option<SystemTime> {
    let status = p.status.as_ref()?;
    let finished = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(system_time))
        .max();
    finished
        .or_else(|| pod::condition(p, "Ready").and_then(|c| c.last_transition_time.as_ref().map(system_time)))
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(system_time))
}

/// How long pod creation must still wait after the failures since the last success.
fn backoff_remaining(pods: &[Arc<Pod>], now: SystemTime) -> Option<Duration> {
    let last_success = pods.iter().filter(|p| pod::phase(p) == "Succeeded").filter_map(|p| finish_time(p)).max();
    let failures: Vec<SystemTime> = pods
        .iter()
        .filter(|p| pod::phase(p) == "Failed")
        .filter_map(|p| finish_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last = *failures.iter().max()?;
    let n = failures.len().min(16) as u32;
    let delay = BACKOFF_BASE.saturating_mul(1 << (n - 1)).min(BACKOFF_MAX);
    let ready_at = last + delay;
    ready_at.duration_since(now).ok().filter(|d| !d.is_zero())
}

/// Restarts of the containers of running and pending pods (restartPolicy OnFailure counts
/// them towards backoffLimit).
fn restarts(pods: &[Arc<Pod>]) -> i64 {
    pods.iter()
        .filter(|p| matches!(pod::phase(p), "Running" | "Pending"))
        .flat_map(|p| {
            let s = p.status.as_ref();
            let all = s.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten();
            all.chain(s.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten())
                .map(|c| c.restart_count as i64)
                .collect::<Vec<_>>()
        })
        .sum()
}

/// A pod of the Job's template, controlled by it and held by the tracking finalizer; with an
/// index, named and labelled for it, its hostname `<job>-<index>` and `JOB_COMPLETION_INDEX`
/// in every container's environment.
pub fn pod_from_template(job: &Job, index: Option<i64>) -> Pod {
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut metadata = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    metadata.generate_name = Some(match index {
        Some(i) => format!("{}-{i}-", job.name()),
        None => format!("{}-", job.name()),
    });
    metadata.namespace = Some(job.namespace().to_string());
    metadata.owner_references = Some(vec![controller_ref(job)]);
    metadata.finalizers.get_or_insert_with(Vec::new).push(TRACKING_FINALIZER.into());
    if let Some(i) = index {
        metadata.annotations.get_or_insert_with(BTreeMap::new).insert(indexes::COMPLETION_INDEX.into(), i.to_string());
        metadata.labels.get_or_insert_with(BTreeMap::new).insert(indexes::COMPLETION_INDEX.into(), i.to_string());
        if spec.hostname.as_deref().is_none_or(str::is_empty) {
            spec.hostname = Some(format!("{}-{i}", job.name()));
        }
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{}']", indexes::COMPLETION_INDEX),
                }),
                ..Default::default()
            }),
        };
        for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == env.name) {
                vars.push(env.clone());
            }
        }
    }
    Pod { metadata, spec: Some(spec), status: None }
}

/// Why a Job fails.
struct Failure {
    reason: String,
    message: String,
}

impl JobController {
    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        if let Some(pod) = key.1.strip_prefix(ORPHAN_PREFIX) {
            let held: Vec<Arc<Pod>> = self
                .pods
                .get(&key.0, pod)
                .filter(|p| has_finalizer(p) && p.controller_ref().is_none())
                .into_iter()
                .collect();
            self.release(&held.iter().collect::<Vec<_>>()).await?;
            return Ok(Action::Done);
        }
        let Some(job) = self.jobs.get_key(key) else {
            self.expectations.forget(key);
            self.released.lock().expect("released lock").remove(key);
            // The Job is gone (deleted in the background): nothing will count its pods, so
            // they must not keep the finalizer.
            let held: Vec<Arc<Pod>> = self
                .pods
                .namespace(&key.0)
                .into_iter()
                .filter(|p| {
                    has_finalizer(p) && p.controller_ref().is_some_and(|r| refers_to::<Job>(r) && r.name == key.1)
                })
                .collect();
            self.release(&held.iter().collect::<Vec<_>>()).await?;
            return Ok(Action::Done);
        };
        if job.spec.as_ref().and_then(|s| s.managed_by.as_deref()).is_some_and(|m| m != MANAGED_BY) {
            // Another controller runs it (upstream's spec.managedBy).
            return Ok(Action::Done);
        }
        let pods = self.pods.controlled_by(job.uid());
        // Pods whose release the pod cache shows are no longer awaited.
        let released: HashSet<String> = {
            let mut all = self.released.lock().expect("released lock");
            let mine = all.entry(key.clone()).or_default();
            mine.retain(|uid| pods.iter().any(|p| p.uid() == uid && has_finalizer(p)));
            mine.clone()
        };
        let has_finalizer = |p: &Pod| has_finalizer(p) && !released.contains(p.uid());
        if job.is_deleting() || is_finished(&job) {
            // Nothing more is counted: let every pod go (the garbage collector or the TTL
            // controller deletes them with the Job).
            let held: Vec<&Arc<Pod>> = pods.iter().filter(|p| has_finalizer(p)).collect();
            self.release_for(key, &held).await?;
            return Ok(Action::Done);
        }
        let now = SystemTime::now();
        let want = Want::of(&job);
        let mut job = (*job).clone();
        let original = job.status.clone().unwrap_or_default();
        let mut status = original.clone();
        // Started when first seen unsuspended, as upstream: every later write (even one that
        // completes the Job at once) carries it, and the CronJob controller orders history by it.
        if status.start_time.is_none() && !want.suspend {
            status.start_time = Some(time(now));
        }
        let mut policy_failure: Option<Failure> = None;

        // Count what finished: first into uncountedTerminatedPods, then release the pods.
        let completions = want.completions.unwrap_or(0);
        let mut completed = if want.indexed {
            indexes::parse(status.completed_indexes.as_deref().unwrap_or(""), completions)
        } else {
            BTreeSet::new()
        };
        let uncounted = status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default);
        let listed: HashSet<String> =
            uncounted.succeeded.iter().flatten().chain(uncounted.failed.iter().flatten()).cloned().collect();
        let mut to_release: Vec<&Arc<Pod>> = Vec::new();
        let policy = job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref());
        for p in pods.iter().filter(|p| has_finalizer(p)) {
            if listed.contains(p.uid()) {
                to_release.push(p);
                continue;
            }
            let succeeded = pod::phase(p) == "Succeeded";
            let failed = !succeeded && (pod::phase(p) == "Failed" || (want.terminating_fails && p.is_deleting()));
            if succeeded {
                let counts = match want.indexed.then(|| indexes::of_pod(p, completions)) {
                    Some(Some(i)) => completed.insert(i),
                    Some(None) => false,
                    None => true,
                };
                if counts {
                    uncounted.succeeded.get_or_insert_with(Vec::new).push(p.uid().to_string());
                }
            } else if failed {
                match failure_policy::judge(policy, p) {
                    Verdict::Ignore => {}
                    Verdict::Count => uncounted.failed.get_or_insert_with(Vec::new).push(p.uid().to_string()),
                    Verdict::FailJob(message) => {
                        uncounted.failed.get_or_insert_with(Vec::new).push(p.uid().to_string());
                        policy_failure.get_or_insert(Failure { reason: "PodFailurePolicy".into(), message });
                    }
                }
            } else {
                continue;
            }
            to_release.push(p);
        }
        if want.indexed {
            status.completed_indexes = Some(indexes::format(&completed));
        }
        // Pods of the uncounted lists that no longer hold the finalizer are counted now.
        let holding: HashSet<&str> = pods.iter().filter(|p| has_finalizer(p)).map(|p| p.uid()).collect();
        if !to_release.is_empty() {
            job = self.write_status(&job, status.clone()).await?;
            let released = self.release_for(key, &to_release).await?;
            let uncounted = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
            let gone: HashSet<&str> = released.iter().map(String::as_str).collect();
            move_counted(&mut status.succeeded, &mut uncounted.succeeded, |uid| {
                gone.contains(uid) || !holding.contains(uid)
            });
            move_counted(&mut status.failed, &mut uncounted.failed, |uid| gone.contains(uid) || !holding.contains(uid));
        } else {
            let uncounted = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
            move_counted(&mut status.succeeded, &mut uncounted.succeeded, |uid| !holding.contains(uid));
            move_counted(&mut status.failed, &mut uncounted.failed, |uid| !holding.contains(uid));
        }

        let active: Vec<Arc<Pod>> = pods.iter().filter(|p| pod::is_active(p)).cloned().collect();
        let terminating = pods.iter().filter(|p| p.is_deleting() && !pod::is_terminal(p)).count();
        let uncounted_left = status
            .uncounted_terminated_pods
            .as_ref()
            .map(|u| u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len));
        let succeeded = status.succeeded.unwrap_or(0) as i64
            + status.uncounted_terminated_pods.as_ref().and_then(|u| u.succeeded.as_ref()).map_or(0, Vec::len) as i64;
        let failed = status.failed.unwrap_or(0) as i64
            + status.uncounted_terminated_pods.as_ref().and_then(|u| u.failed.as_ref()).map_or(0, Vec::len) as i64;
        let settled = active.is_empty() && terminating == 0 && uncounted_left.unwrap_or(0) == 0;

        // Why the Job fails, if it does: a FailJob rule, too many failures, or its deadline.
        let existing_target = condition(&job, "FailureTarget").filter(|c| c.status == "True");
        // Success is final: pods that fail while the rest terminate do not fail the Job.
        let succeeded_already = is_true(&job, "SuccessCriteriaMet");
        let failure = match existing_target {
            _ if succeeded_already => None,
            Some(c) => Some(Failure { reason: c.reason.unwrap_or_default(), message: c.message.unwrap_or_default() }),
            None => policy_failure.or_else(|| {
                let restarts = if want.on_failure { restarts(&pods) } else { 0 };
                let past_on_failure = want.on_failure
                    && if want.backoff_limit == 0 { restarts > 0 } else { restarts >= want.backoff_limit };
                if failed > want.backoff_limit || past_on_failure {
                    Some(Failure {
                        reason: "BackoffLimitExceeded".into(),
                        message: "Job has reached the specified backoff limit".into(),
                    })
                } else if self.past_deadline(&want, &status, now) {
                    Some(Failure {
                        reason: "DeadlineExceeded".into(),
                        message: "Job was active longer than specified deadline".into(),
                    })
                } else {
                    None
                }
            }),
        };
        let complete = match want.completions {
            _ if succeeded_already => true,
            _ if want.indexed => completed.len() as i64 >= completions,
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };

        let mut requeue: Option<Duration> = None;
        let deleted;
        if let Some(f) = failure {
            let target = new_condition("FailureTarget", "True", &f.reason, &f.message, now);
            if set_condition(&mut status, target) {
                self.events.record(&job, EventType::Warning, &f.reason, &f.message).await;
            }
            deleted = self.delete_pods(&job, key, &active.iter().collect::<Vec<_>>()).await?;
            if settled {
                set_condition(&mut status, new_condition("Failed", "True", &f.reason, &f.message, now));
            }
        } else if complete {
            set_condition(&mut status, new_condition("SuccessCriteriaMet", "True", "CompletionsReached", REACHED, now));
            deleted = self.delete_pods(&job, key, &active.iter().collect::<Vec<_>>()).await?;
            if settled {
                set_condition(&mut status, new_condition("Complete", "True", "CompletionsReached", REACHED, now));
                status.completion_time = Some(time(now));
                self.events.record(&job, EventType::Normal, "Completed", "Job completed").await;
            }
        } else if want.suspend {
            // Pods the Job no longer wants are not failures: let them go before deleting.
            let victims: Vec<&Arc<Pod>> = active.iter().collect();
            self.release_for(key, &victims).await?;
            deleted = self.delete_pods(&job, key, &victims).await?;
            if set_condition(&mut status, new_condition("Suspended", "True", "JobSuspended", "Job suspended", now)) {
                self.events.record(&job, EventType::Normal, "Suspended", "Job suspended").await;
            }
            status.start_time = None;
        } else {
            if is_true(&job, "Suspended") {
                set_condition(&mut status, new_condition("Suspended", "False", "JobResumed", "Job resumed", now));
                self.events.record(&job, EventType::Normal, "Resumed", "Job resumed").await;
                status.start_time = Some(time(now));
            }
            let (created, removed, wait) =
                self.manage(&job, key, &want, &pods, &active, &completed, succeeded, now).await?;
            deleted = removed;
            requeue = wait;
            let _ = created;
            if let (Some(deadline), Some(start)) = (want.deadline, status.start_time.as_ref()) {
                // A deadline past what time can hold never comes.
                if let Some(at) = system_time(start).checked_add(deadline) {
                    let left = at.duration_since(now).unwrap_or_default();
                    requeue = Some(requeue.map_or(left, |r| r.min(left)));
                }
            }
        }
        status.active = Some((active.len() - deleted.min(active.len())) as i32);
        status.ready = Some(active.iter().filter(|p| pod::is_ready(p)).count() as i32);
        status.terminating = Some(terminating as i32);
        if status.succeeded.is_none() {
            status.succeeded = Some(0);
        }
        if status.failed.is_none() {
            status.failed = Some(0);
        }
        if Some(&status) != job.status.as_ref() {
            self.write_status(&job, status).await?;
        }
        Ok(requeue.map_or(Action::Done, |d| Action::RequeueAfter(d + Duration::from_millis(100))))
    }

    fn past_deadline(&self, want: &Want, status: &JobStatus, now: SystemTime) -> bool {
        match (want.deadline, status.start_time.as_ref()) {
            (Some(d), Some(start)) => system_time(start).checked_add(d).is_some_and(|at| now >= at),
            _ => false,
        }
    }

    /// Creates and deletes pods towards what the Job wants; returns how many it created and
    /// deleted, and how long creation must wait (back-off after failures).
    #[allow(clippy::too_many_arguments)]
    async fn manage(
        &self,
        job: &Job,
        key: &ObjectKey,
        want: &Want,
        pods: &[Arc<Pod>],
        active: &[Arc<Pod>],
        completed: &BTreeSet<i64>,
        succeeded: i64,
        now: SystemTime,
    ) -> Result<(usize, usize, Option<Duration>), Error> {
        if !self.expectations.satisfied(key) {
            return Ok((0, 0, None));
        }
        // podReplacementPolicy Failed: a terminating pod is replaced only once it has ended.
        let terminating = pods.iter().filter(|p| p.is_deleting() && !pod::is_terminal(p)).count() as i64;
        let active_n = active.len() as i64 + if want.terminating_fails { 0 } else { terminating };
        // Which pods go, and which indexes (None: any) to create.
        let (victims, to_create): (Vec<&Arc<Pod>>, Vec<Option<i64>>) = if want.indexed {
            let completions = want.completions.unwrap_or(0);
            let mut seen: HashMap<i64, ()> = HashMap::new();
            let mut victims = Vec::new();
            for p in active {
                match indexes::of_pod(p, completions) {
                    Some(i) if !completed.contains(&i) && seen.insert(i, ()).is_none() => {}
                    _ => victims.push(p),
                }
            }
            let running = seen.len() as i64;
            let room = (want.parallelism - running).max(0) as usize;
            let missing: Vec<Option<i64>> = (0..completions)
                .filter(|i| !completed.contains(i) && !seen.contains_key(i))
                .take(room)
                .map(Some)
                .collect();
            (victims, missing)
        } else {
            let want_active = match want.completions {
                Some(c) => (c - succeeded).clamp(0, want.parallelism),
                None if succeeded > 0 => active_n,
                None => want.parallelism,
            };
            if active_n > want_active {
                let mut ranked: Vec<&Arc<Pod>> = active.iter().collect();
                ranked.sort_by_cached_key(|p| deletion_rank(p));
                ranked.truncate((active_n - want_active) as usize);
                (ranked, Vec::new())
            } else {
                (Vec::new(), vec![None; (want_active - active_n) as usize])
            }
        };
        // Pods the Job no longer wants are not failures: let them go before deleting.
        self.release_for(key, &victims).await?;
        let deleted = self.delete_pods(job, key, &victims).await?;
        if to_create.is_empty() {
            return Ok((0, deleted, None));
        }
        if let Some(wait) = backoff_remaining(pods, now) {
            return Ok((0, deleted, Some(wait)));
        }
        let batch: Vec<Option<i64>> = to_create.into_iter().take(BURST).collect();
        let created = self.create_pods(job, key, &batch).await?;
        Ok((created, deleted, None))
    }

    async fn create_pods(&self, job: &Job, key: &ObjectKey, indexes: &[Option<i64>]) -> Result<usize, Error> {
        self.expectations.expect(key, indexes.len() as i64, 0);
        // Slow start, as upstream: batches of 1, 2, 4, ... stop at the first failing batch.
        let (mut done, mut size, mut created) = (0, 1, 0);
        while done < indexes.len() {
            let chunk = &indexes[done..(done + size).min(indexes.len())];
            let pods: Vec<Pod> = chunk.iter().map(|i| pod_from_template(job, *i)).collect();
            let results = join_all(pods.iter().map(|p| self.client.create(p))).await;
            done += chunk.len();
            let mut first_err = None;
            for r in results {
                match r {
                    Ok(p) => {
                        created += 1;
                        let msg = format!("Created pod: {}", p.name());
                        self.events.record(job, EventType::Normal, "SuccessfulCreate", &msg).await;
                    }
                    Err(e) => {
                        self.expectations.failed(key, 1, 0);
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                self.expectations.failed(key, (indexes.len() - done) as i64, 0);
                let msg = format!("Error creating: {e}");
                self.events.record(job, EventType::Warning, "FailedCreate", &msg).await;
                return Err(e.into());
            }
            size *= 2;
        }
        Ok(created)
    }

    async fn delete_pods(&self, job: &Job, key: &ObjectKey, pods: &[&Arc<Pod>]) -> Result<usize, Error> {
        if pods.is_empty() {
            return Ok(0);
        }
        self.expectations.expect(key, 0, pods.len() as i64);
        let params = DeleteParams::default();
        let results = join_all(pods.iter().map(|p| self.client.delete::<Pod>(p.namespace(), p.name(), &params))).await;
        let (mut deleted, mut first_err) = (0, None);
        for (r, p) in results.into_iter().zip(pods) {
            match r {
                Ok(()) => {
                    deleted += 1;
                    let msg = format!("Deleted pod: {}", p.name());
                    self.events.record(job, EventType::Normal, "SuccessfulDelete", &msg).await;
                }
                Err(e) => {
                    self.expectations.failed(key, 0, 1);
                    if !e.is_not_found() {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        first_err.map_or(Ok(deleted), |e| Err(e.into()))
    }

    /// [`Self::release`], remembering the released pods until the pod cache shows it.
    async fn release_for(&self, key: &ObjectKey, pods: &[&Arc<Pod>]) -> Result<Vec<String>, Error> {
        let held: Vec<&Arc<Pod>> = pods.iter().copied().filter(|p| has_finalizer(p)).collect();
        let released = self.release(&held).await?;
        self.released.lock().expect("released lock").entry(key.clone()).or_default().extend(released.iter().cloned());
        Ok(released)
    }

    /// Removes the tracking finalizer; answers the uids of the pods it no longer holds.
    async fn release(&self, pods: &[&Arc<Pod>]) -> Result<Vec<String>, Error> {
        let results = join_all(pods.iter().map(|p| async move {
            let rest: Vec<&String> = p.finalizers().iter().filter(|f| *f != TRACKING_FINALIZER).collect();
            let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": p.resource_version()}});
            (p.uid().to_string(), self.client.merge_patch::<Pod>(p.namespace(), p.name(), &patch).await)
        }))
        .await;
        let mut released = Vec::new();
        let mut first_err = None;
        for (uid, r) in results {
            match r {
                Ok(_) => released.push(uid),
                Err(e) if e.is_not_found() => released.push(uid),
                // A stale pod: its next event brings it back here.
                Err(e) if e.is_conflict() => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(released), |e| Err(e.into()))
    }

    /// PUTs the status (with the Job's resourceVersion, so it loses to any concurrent write)
    /// and answers the Job as stored.
    async fn write_status(&self, job: &Job, status: JobStatus) -> Result<Job, Error> {
        let mut body = job.clone();
        body.status = Some(status);
        Ok(self.client.replace_subresource::<Job, _>(job.namespace(), job.name(), "status", &body).await?)
    }
}

/// Moves the uids `counted` accepts from an uncounted list to a count.
fn move_counted(count: &mut Option<i32>, list: &mut Option<Vec<String>>, counted: impl Fn(&str) -> bool) {
    let Some(l) = list.as_mut() else { return };
    let before = l.len();
    l.retain(|uid| !counted(uid));
    *count = Some(count.unwrap_or(0) + (before - l.len()) as i32);
}

impl Reconciler for JobController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec, PodStatus, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn job(completion_mode: &str) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("ns".into()),
                uid: Some("u-job".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                completion_mode: Some(completion_mode.into()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".into(), "pi".into())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container { name: "main".into(), ..Default::default() }],
                        restart_policy: Some("Never".into()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn indexed_pods_carry_their_index_everywhere_it_is_read() {
        let p = pod_from_template(&job("Indexed"), Some(3));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-3-"));
        assert_eq!(p.annotations().get(indexes::COMPLETION_INDEX).map(String::as_str), Some("3"));
        assert_eq!(p.labels().get(indexes::COMPLETION_INDEX).map(String::as_str), Some("3"));
        assert_eq!(p.labels().get("app").map(String::as_str), Some("pi"));
        assert_eq!(p.finalizers(), [TRACKING_FINALIZER]);
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-3"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
        assert_eq!(
            env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        let plain = pod_from_template(&job("NonIndexed"), None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(plain.spec.unwrap().containers[0].env.is_none());
    }

    fn ended(phase: &str, at: u64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta::default(),
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            finished_at: Some(time(SystemTime::UNIX_EPOCH + Duration::from_secs(at))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn backoff_doubles_per_failure_since_the_last_success() {
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(backoff_remaining(&[], at(0)), None);
        let one = [ended("Failed", 100)];
        assert_eq!(backoff_remaining(&one, at(104)), Some(Duration::from_secs(6)));
        assert_eq!(backoff_remaining(&one, at(110)), None);
        let three = [ended("Failed", 100), ended("Failed", 90), ended("Failed", 80)];
        assert_eq!(backoff_remaining(&three, at(110)), Some(Duration::from_secs(30)), "40 s after the third");
        // A success resets the count.
        let reset = [ended("Failed", 80), ended("Succeeded", 95), ended("Failed", 100)];
        assert_eq!(backoff_remaining(&reset, at(100)), Some(Duration::from_secs(10)));
        // Capped at ten minutes.
        let many: Vec<Arc<Pod>> = (0..12).map(|i| ended("Failed", 100 + i)).collect();
        assert_eq!(backoff_remaining(&many, at(111)), Some(Duration::from_secs(600)));
    }

    #[test]
    fn counted_uids_leave_the_uncounted_list() {
        let (mut count, mut list) = (Some(2), Some(vec!["a".to_string(), "b".to_string(), "c".to_string()]));
        move_counted(&mut count, &mut list, |uid| uid != "b");
        assert_eq!((count, list), (Some(4), Some(vec!["b".to_string()])));
    }
}
