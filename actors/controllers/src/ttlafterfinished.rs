//! The TTL-after-finished controller (upstream `pkg/controller/ttlafterfinished`): a finished
//! Job with `ttlSecondsAfterFinished` is deleted that long after it finished, its pods with
//! it (foreground deletion, as upstream).

use crate::job::{finished_at, is_finished};
use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::Job;
use kubus_apimachinery::{ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::{Client, DeleteParams, Informer, InformerFactory, Propagation};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Upstream's `--concurrent-ttl-after-finished-syncs` default.
pub const WORKERS: usize = 5;

pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let jobs = factory.get::<Job>();
    let ctrl = Controller::new("ttl_jobs_to_delete", jobs.clone()).workers(workers);
    ctrl.run(Arc::new(TtlAfterFinished { client, jobs }))
}

struct TtlAfterFinished {
    client: Client,
    jobs: Informer<Job>,
}

/// How long until the Job expires (zero: now), or None when it never does.
pub fn time_left(job: &Job, now: SystemTime) -> Option<Duration> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    if job.is_deleting() || !is_finished(job) {
        return None;
    }
    let expires = finished_at(job)? + Duration::from_secs(ttl.max(0) as u64);
    Some(expires.duration_since(now).unwrap_or_default())
}

impl Reconciler for TtlAfterFinished {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(job) = self.jobs.get_key(key) else { return Ok(Action::Done) };
        match time_left(&job, SystemTime::now()) {
            None => Ok(Action::Done),
            Some(left) if !left.is_zero() => Ok(Action::RequeueAfter(left)),
            Some(_) => {
                tracing::info!(job = %job.name(), namespace = %job.namespace(), "deleting finished job past its TTL");
                // The uid precondition: a Job re-created under the same name is not this one.
                let params = DeleteParams {
                    uid: Some(job.uid().to_string()),
                    ..DeleteParams::propagation(Propagation::Foreground)
                };
                match self.client.delete::<Job>(job.namespace(), job.name(), &params).await {
                    Err(e) if !e.is_not_found() && !e.is_conflict() => Err(e.into()),
                    _ => Ok(Action::Done),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use kubus_apimachinery::time::time;

    #[test]
    fn expires_ttl_after_the_finish() {
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let mut job = Job {
            spec: Some(JobSpec { ttl_seconds_after_finished: Some(30), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(time_left(&job, at(100)), None, "running");
        job.status = Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: "Complete".into(),
                status: "True".into(),
                last_transition_time: Some(time(at(100))),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(time_left(&job, at(110)), Some(Duration::from_secs(20)));
        assert_eq!(time_left(&job, at(200)), Some(Duration::ZERO));
        job.spec.as_mut().unwrap().ttl_seconds_after_finished = None;
        assert_eq!(time_left(&job, at(200)), None);
    }
}
