//! Protobuf field tables for io.k8s.api.batch.v1 and io.k8s.api.policy.v1 (the Eviction
//! `kubectl drain` posts, the PodDisruptionBudget `kubectl create pdb` sends).
//! Syntax: see `schema.rs`.

use super::schema::{object_message, probe_condition_fields};

pub(super) const TEXT: &str = concat!(
    "\npackage batch io.k8s.api.batch.v1\n",
    object_message!("Job"),
    object_message!("CronJob"),
    r#"message CronJobSpec
  1 schedule string !
  2 startingDeadlineSeconds int64 *
  3 concurrencyPolicy string
  4 suspend bool *
  5 jobTemplate JobTemplateSpec !
  6 successfulJobsHistoryLimit int32 *
  7 failedJobsHistoryLimit int32 *
  8 timeZone string *
message CronJobStatus
  1 active []core.ObjectReference
  4 lastScheduleTime time *
  5 lastSuccessfulTime time *
message JobTemplateSpec
  1 metadata meta.ObjectMeta
  2 spec JobSpec
"#,
    r#"message JobCondition
"#,
    probe_condition_fields!(),
    r#"message JobSchedulingConfiguration
message JobSpec
  1 parallelism int32 *
  2 completions int32 *
  3 activeDeadlineSeconds int64 *
  4 selector meta.LabelSelector *
  5 manualSelector bool *
  6 template core.PodTemplateSpec !
  7 backoffLimit int32 *
  8 ttlSecondsAfterFinished int32 *
  9 completionMode string *
  10 suspend bool *
  11 podFailurePolicy PodFailurePolicy *
  12 backoffLimitPerIndex int32 *
  13 maxFailedIndexes int32 *
  14 podReplacementPolicy string *
  15 managedBy string *
  16 successPolicy SuccessPolicy *
  17 scheduling JobSchedulingConfiguration *
message JobStatus
  1 conditions []JobCondition
  2 startTime time *
  3 completionTime time *
  4 active int32
  5 succeeded int32
  6 failed int32
  7 completedIndexes string
  8 uncountedTerminatedPods UncountedTerminatedPods *
  9 ready int32 *
  10 failedIndexes string *
  11 terminating int32 *
message PodFailurePolicy
  1 rules []PodFailurePolicyRule !
message PodFailurePolicyOnExitCodesRequirement
  1 containerName string *
  2 operator string !
  3 values []int32 !
message PodFailurePolicyOnPodConditionsPattern
  1 type string !
  2 status string !
message PodFailurePolicyRule
  1 action string !
  2 onExitCodes PodFailurePolicyOnExitCodesRequirement *
  3 onPodConditions []PodFailurePolicyOnPodConditionsPattern
message SuccessPolicy
  1 rules []SuccessPolicyRule !
message SuccessPolicyRule
  1 succeededIndexes string *
  2 succeededCount int32 *
message UncountedTerminatedPods
  1 succeeded []string
  2 failed []string

package policy io.k8s.api.policy.v1
message Eviction
  1 metadata meta.ObjectMeta
  2 deleteOptions meta.DeleteOptions *
message PodDisruptionBudget
  1 metadata meta.ObjectMeta
  2 spec PodDisruptionBudgetSpec
  3 status PodDisruptionBudgetStatus
message PodDisruptionBudgetSpec
  1 minAvailable intstr *
  2 selector meta.LabelSelector *
  3 maxUnavailable intstr *
  4 unhealthyPodEvictionPolicy string *
message PodDisruptionBudgetStatus
  1 observedGeneration int64
  2 disruptedPods map[string]time
  3 disruptionsAllowed int32 !
  4 currentHealthy int32 !
  5 desiredHealthy int32 !
  6 expectedPods int32 !
  7 conditions []meta.Condition
"#,
);
