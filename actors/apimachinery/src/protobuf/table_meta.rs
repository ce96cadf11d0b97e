//! Protobuf field table for io.k8s.apimachinery.pkg.apis.meta.v1.
//! Syntax: see `schema.rs`.

pub(super) const TEXT: &str = r#"
package meta io.k8s.apimachinery.pkg.apis.meta.v1
message Condition
  1 type string !
  2 status string !
  3 observedGeneration int64
  4 lastTransitionTime time !
  5 reason string !
  6 message string !
message DeleteOptions
  1 gracePeriodSeconds int64 *
  2 preconditions Preconditions *
  3 orphanDependents bool *
  4 propagationPolicy string *
  5 dryRun []string
  6 ignoreStoreReadErrorWithClusterBreakingPotential bool *
message FieldSelectorRequirement
  1 key string !
  2 operator string !
  3 values []string
message LabelSelector
  1 matchLabels map[string]string
  2 matchExpressions []LabelSelectorRequirement
message LabelSelectorRequirement
  1 key string !
  2 operator string !
  3 values []string
message ManagedFieldsEntry
  1 manager string
  2 operation string
  3 apiVersion string
  4 time time *
  6 fieldsType string
  7 fieldsV1 rawjson *
  8 subresource string
message ObjectMeta
  1 name string
  2 generateName string
  3 namespace string
  4 selfLink string
  5 uid string
  6 resourceVersion string
  7 generation int64
  8 creationTimestamp time
  9 deletionTimestamp time *
  10 deletionGracePeriodSeconds int64 *
  11 labels map[string]string
  12 annotations map[string]string
  13 ownerReferences []OwnerReference
  14 finalizers []string
  17 managedFields []ManagedFieldsEntry
message OwnerReference
  1 kind string !
  3 name string !
  4 uid string !
  5 apiVersion string !
  6 controller bool *
  7 blockOwnerDeletion bool *
message Preconditions
  1 uid string *
  2 resourceVersion string *
"#;
