//! Protobuf field tables for io.k8s.api.autoscaling.v1: the HorizontalPodAutoscaler
//! `kubectl autoscale` sends. Syntax: see `schema.rs`.

use super::schema::object_message;

pub(super) const TEXT: &str = concat!(
    "\npackage autoscaling io.k8s.api.autoscaling.v1\n",
    object_message!("HorizontalPodAutoscaler"),
    r#"message HorizontalPodAutoscalerSpec
  1 scaleTargetRef CrossVersionObjectReference !
  2 minReplicas int32 *
  3 maxReplicas int32 !
  4 targetCPUUtilizationPercentage int32 *
message CrossVersionObjectReference
  1 kind string !
  2 name string !
  3 apiVersion string
message HorizontalPodAutoscalerStatus
  1 observedGeneration int64 *
  2 lastScaleTime time *
  3 currentReplicas int32 !
  4 desiredReplicas int32 !
  5 currentCPUUtilizationPercentage int32 *
"#
);
