//! The CronJob controller (upstream `pkg/controller/cronjob`, v2): at each time of a CronJob's
//! schedule it creates a Job from the jobTemplate, named `<cronjob>-<minutes since the epoch>`
//! so a time is never run twice, honouring the concurrency policy (Allow, Forbid, Replace),
//! `startingDeadlineSeconds` and `suspend`; it keeps `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`, and deletes finished Jobs beyond the history limits. Between times it
//! sleeps on the work queue until the next one is due.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kubus_apimachinery::cron::{earliest_time, Schedule};
use kubus_apimachinery::meta::{controller_ref, refers_to};
use kubus_apimachinery::{ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::{Client, DeleteParams, Informer, InformerFactory, Propagation, Recorder};
use std::sync::Arc;
use std::time::Duration;

/// Upstream's `--concurrent-cron-job-syncs` default.
pub const WORKERS: usize = 5;
/// The scheduled time of a Job, in the CronJob's time zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let (cronjobs, jobs) = (factory.get::<CronJob>(), factory.get::<Job>());
    let ctrl = Controller::new("cronjob", cronjobs.clone()).owns(jobs.clone()).workers(workers);
    let events = Recorder::new(client.clone(), "cronjob-controller");
    ctrl.run(Arc::new(CronJobController { client, events, cronjobs, jobs }))
}

struct CronJobController {
    client: Client,
    events: Recorder,
    cronjobs: Informer<CronJob>,
    jobs: Informer<Job>,
}

fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    conditions.iter().filter(|c| c.status == "True").find_map(|c| match c.type_.as_str() {
        "Complete" => Some("Complete"),
        "Failed" => Some("Failed"),
        _ => None,
    })
}

/// The time now (from std: chrono's clock feature is not built).
fn now_utc() -> DateTime<Utc> {
    std::time::SystemTime::now().into()
}

fn utc(t: &Time) -> DateTime<Utc> {
    t.0
}

/// The name of the Job for a scheduled time (upstream's `getJobName`).
pub fn job_name(cj: &CronJob, scheduled: DateTime<Utc>) -> String {
    format!("{}-{}", cj.name(), scheduled.timestamp().div_euclid(60))
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(job.name().to_string()),
        namespace: Some(job.namespace().to_string()),
        uid: Some(job.uid().to_string()),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The Job of the template for `scheduled`, controlled by the CronJob.
pub fn job_from_template(cj: &CronJob, scheduled: DateTime<Utc>, schedule: &Schedule) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let local = scheduled.with_timezone(&schedule.time_zone());
    annotations.insert(SCHEDULED_TIMESTAMP.into(), local.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: Some(cj.namespace().to_string()),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

impl CronJobController {
    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(cj) = self.cronjobs.get_key(key) else { return Ok(Action::Done) };
        let now = now_utc();
        let owned: Vec<Arc<Job>> = self
            .jobs
            .controlled_by(cj.uid())
            .into_iter()
            .filter(|j| j.controller_ref().is_some_and(refers_to::<CronJob>))
            .collect();
        let mut status = cj.status.clone().unwrap_or_default();
        self.track_active(&cj, &owned, &mut status).await;
        if cj.is_deleting() {
            return self.write_status(&cj, status).await.map(|_| Action::Done);
        }
        self.prune_history(&cj, &owned).await?;
        let spec = cj.spec.clone().unwrap_or_default();
        if spec.suspend.unwrap_or(false) {
            self.write_status(&cj, status).await?;
            return Ok(Action::Done);
        }
        let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("invalid schedule: {}: {e}", spec.schedule);
                self.events.record(&*cj, EventType::Warning, "InvalidSchedule", &msg).await;
                self.write_status(&cj, status).await?;
                return Ok(Action::Done);
            }
        };
        let created = cj.metadata.creation_timestamp.as_ref().map(utc).unwrap_or(now);
        let last = status.last_schedule_time.as_ref().map(utc);
        let next = |status: &CronJobStatus| {
            let earliest = status.last_schedule_time.as_ref().map(utc).unwrap_or(created);
            schedule.next_schedule_time_duration(earliest, now_utc())
        };
        let earliest = earliest_time(created, last, spec.starting_deadline_seconds, now);
        let missed = match schedule.most_recent(earliest, now) {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("invalid schedule: {}: {e}", spec.schedule);
                self.events.record(&*cj, EventType::Warning, "InvalidSchedule", &msg).await;
                self.write_status(&cj, status).await?;
                return Ok(Action::Done);
            }
        };
        if missed.too_many {
            let msg = format!(
                "too many missed start times: {}. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                missed.count
            );
            self.events.record(&*cj, EventType::Warning, "TooManyMissedTimes", &msg).await;
        }
        let Some(scheduled) = missed.most_recent else {
            self.write_status(&cj, status.clone()).await?;
            return Ok(requeue(next(&status)));
        };
        if let Some(deadline) = spec.starting_deadline_seconds {
            // A deadline past what time can hold never passes.
            let late = chrono::TimeDelta::try_seconds(deadline)
                .and_then(|d| scheduled.checked_add_signed(d))
                .is_some_and(|limit| limit < now);
            if late {
                let msg = format!("Missed scheduled time to start a job: {}", scheduled.to_rfc3339());
                self.events.record(&*cj, EventType::Warning, "MissSchedule", &msg).await;
                self.write_status(&cj, status.clone()).await?;
                return Ok(requeue(next(&status)));
            }
        }
        let name = job_name(&cj, scheduled);
        let already = owned.iter().any(|j| j.name() == name)
            || status.active.iter().flatten().any(|r| r.name.as_deref() == Some(name.as_str()));
        if already {
            if status.last_schedule_time.as_ref().is_none_or(|t| t.0 < scheduled) {
                status.last_schedule_time = Some(Time(scheduled));
            }
            self.write_status(&cj, status.clone()).await?;
            return Ok(requeue(next(&status)));
        }
        let active = status.active.clone().unwrap_or_default();
        match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
            "Forbid" if !active.is_empty() => {
                let msg = "Not starting job because prior execution is running and concurrency policy is Forbid";
                self.events.record(&*cj, EventType::Normal, "JobAlreadyActive", msg).await;
                self.write_status(&cj, status.clone()).await?;
                return Ok(requeue(next(&status)));
            }
            "Replace" => {
                for r in &active {
                    let Some(job_name) = r.name.as_deref() else { continue };
                    let params = DeleteParams::propagation(Propagation::Background);
                    match self.client.delete::<Job>(cj.namespace(), job_name, &params).await {
                        Ok(()) => {
                            let msg = format!("Deleted job {job_name}");
                            self.events.record(&*cj, EventType::Normal, "SuccessfulDelete", &msg).await;
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                status.active = Some(Vec::new());
            }
            _ => {}
        }
        let job = job_from_template(&cj, scheduled, &schedule);
        let created_job = match self.client.create(&job).await {
            Ok(j) => {
                let msg = format!("Created job {}", j.name());
                self.events.record(&*cj, EventType::Normal, "SuccessfulCreate", &msg).await;
                Some(j)
            }
            // Made by an earlier sync whose write the informer has not shown yet.
            Err(e) if e.is_already_exists() => None,
            Err(e) => {
                let msg = format!("Error creating job: {e}");
                self.events.record(&*cj, EventType::Warning, "FailedCreate", &msg).await;
                return Err(e.into());
            }
        };
        if let Some(j) = created_job {
            status.active.get_or_insert_with(Vec::new).push(reference(&j));
        }
        status.last_schedule_time = Some(Time(scheduled));
        self.write_status(&cj, status.clone()).await?;
        Ok(requeue(next(&status)))
    }

    /// Drops finished and vanished Jobs from `status.active` (recording the finished), notes
    /// the latest success, and lists unfinished Jobs of the CronJob that it lacks (made with
    /// `kubectl create job --from=cronjob/...`, or before a restart).
    async fn track_active(&self, cj: &CronJob, owned: &[Arc<Job>], status: &mut CronJobStatus) {
        let mut active: Vec<ObjectReference> = Vec::new();
        for r in status.active.iter().flatten() {
            let job = owned.iter().find(|j| Some(j.uid()) == r.uid.as_deref());
            match job {
                Some(j) => match finished(j) {
                    Some(how) => {
                        let msg = format!("Saw completed job: {}, status: {how}", j.name());
                        self.events.record(cj, EventType::Normal, "SawCompletedJob", &msg).await;
                    }
                    None => active.push(r.clone()),
                },
                // Deleted, or not in the informer yet: a Job made moments ago stays listed.
                None => {
                    if self.jobs.get(cj.namespace(), r.name.as_deref().unwrap_or_default()).is_none()
                        && !self.recently_listed(r)
                    {
                        continue;
                    }
                    active.push(r.clone());
                }
            }
        }
        for j in owned.iter().filter(|j| finished(j).is_none() && !j.is_deleting()) {
            if !active.iter().any(|r| r.uid.as_deref() == Some(j.uid())) {
                active.push(reference(j));
            }
        }
        let last_success = owned
            .iter()
            .filter(|j| finished(j) == Some("Complete"))
            .filter_map(|j| j.status.as_ref()?.completion_time.clone())
            .max_by_key(|t| t.0);
        if let Some(t) = last_success {
            if status.last_successful_time.as_ref().is_none_or(|old| old.0 < t.0) {
                status.last_successful_time = Some(t);
            }
        }
        active.sort_by(|a, b| a.name.cmp(&b.name));
        status.active = (!active.is_empty()).then_some(active);
    }

    /// Whether a listed Job was probably just created (its name is a schedule time within the
    /// last minute), so its absence from the informer is lag rather than deletion.
    fn recently_listed(&self, r: &ObjectReference) -> bool {
        let minutes = r.name.as_deref().and_then(|n| n.rsplit('-').next()).and_then(|m| m.parse::<i64>().ok());
        minutes.is_some_and(|m| (now_utc().timestamp() / 60 - m).abs() <= 1)
    }

    /// Deletes the oldest finished Jobs beyond successfulJobsHistoryLimit and
    /// failedJobsHistoryLimit.
    async fn prune_history(&self, cj: &CronJob, owned: &[Arc<Job>]) -> Result<(), Error> {
        let spec = cj.spec.as_ref();
        let limits = [
            ("Complete", spec.and_then(|s| s.successful_jobs_history_limit)),
            ("Failed", spec.and_then(|s| s.failed_jobs_history_limit)),
        ];
        for (how, limit) in limits {
            let Some(limit) = limit else { continue };
            let mut done: Vec<&Arc<Job>> =
                owned.iter().filter(|j| finished(j) == Some(how) && !j.is_deleting()).collect();
            // Oldest first, as upstream orders them: by start time (Jobs never started last),
            // then by name.
            done.sort_by_key(|j| {
                let start = j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
                (start.is_none(), start, j.name().to_string())
            });
            let excess = done.len().saturating_sub(limit.max(0) as usize);
            for j in done.into_iter().take(excess) {
                let params = DeleteParams::propagation(Propagation::Background);
                match self.client.delete::<Job>(j.namespace(), j.name(), &params).await {
                    Ok(()) => {
                        let msg = format!("Deleted job {}", j.name());
                        self.events.record(cj, EventType::Normal, "SuccessfulDelete", &msg).await;
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// PUTs the status when it changed (with the CronJob's resourceVersion).
    async fn write_status(&self, cj: &CronJob, status: CronJobStatus) -> Result<(), Error> {
        if cj.status.as_ref().unwrap_or(&CronJobStatus::default()) == &status {
            return Ok(());
        }
        let mut body = cj.clone();
        body.status = Some(status);
        match self.client.replace_subresource::<CronJob, _>(cj.namespace(), cj.name(), "status", &body).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn requeue(next: Option<Duration>) -> Action {
    next.map_or(Action::Done, Action::RequeueAfter)
}

impl Reconciler for CronJobController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use k8s_openapi::api::batch::v1::{CronJobSpec, JobTemplateSpec};

    #[test]
    fn jobs_are_named_by_the_minute_and_stamped_in_the_time_zone() {
        let cj = CronJob {
            metadata: ObjectMeta {
                name: Some("backup".into()),
                namespace: Some("ns".into()),
                uid: Some("u-cj".into()),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: "30 2 * * *".into(),
                time_zone: Some("Europe/Berlin".into()),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".into(), "backup".into())].into()),
                        ..Default::default()
                    }),
                    spec: None,
                },
                ..Default::default()
            }),
            status: None,
        };
        let schedule = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 1, 30, 0).unwrap();
        let job = job_from_template(&cj, at, &schedule);
        assert_eq!(job.name(), format!("backup-{}", at.timestamp() / 60));
        assert_eq!(job.annotations()[SCHEDULED_TIMESTAMP], "2026-12-07T02:30:00+01:00");
        assert_eq!(job.labels()["app"], "backup");
        let owner = &job.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("CronJob", Some(true)));
    }
}
