//! Protobuf field table for io.k8s.api.apps.v1.
//! Syntax: see `schema.rs`.

use super::schema::object_message;

pub(super) const TEXT: &str = concat!(
    "\npackage apps io.k8s.api.apps.v1\n",
    object_message!("Deployment"),
    r#"message DeploymentCondition
  1 type string !
  2 status string !
  4 reason string
  5 message string
  6 lastUpdateTime time
  7 lastTransitionTime time
message DeploymentSpec
  1 replicas int32 *
  2 selector meta.LabelSelector *
  3 template core.PodTemplateSpec !
  4 strategy DeploymentStrategy
  5 minReadySeconds int32
  6 revisionHistoryLimit int32 *
  7 paused bool
  9 progressDeadlineSeconds int32 *
message DeploymentStatus
  1 observedGeneration int64
  2 replicas int32
  3 updatedReplicas int32
  4 availableReplicas int32
  5 unavailableReplicas int32
  6 conditions []DeploymentCondition
  7 readyReplicas int32
  8 collisionCount int32 *
  9 terminatingReplicas int32 *
message DeploymentStrategy
  1 type string
  2 rollingUpdate RollingUpdateDeployment *
"#,
    object_message!("ReplicaSet"),
    r#"message ReplicaSetCondition
  1 type string !
  2 status string !
  3 lastTransitionTime time
  4 reason string
  5 message string
message ReplicaSetSpec
  1 replicas int32 *
  2 selector meta.LabelSelector *
  3 template core.PodTemplateSpec
  4 minReadySeconds int32
message ReplicaSetStatus
  1 replicas int32 !
  2 fullyLabeledReplicas int32
  3 observedGeneration int64
  4 readyReplicas int32
  5 availableReplicas int32
  6 conditions []ReplicaSetCondition
  7 terminatingReplicas int32 *
message RollingUpdateDeployment
  1 maxUnavailable intstr *
  2 maxSurge intstr *
"#,
);
