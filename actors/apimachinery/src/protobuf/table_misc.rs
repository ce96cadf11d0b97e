//! Protobuf field table for io.k8s.api.authorization.v1, io.k8s.api.authentication.v1,
//! io.k8s.api.rbac.v1 (what `kubectl create role/clusterrole/rolebinding/clusterrolebinding`
//! and `kubectl auth` send),
//! io.k8s.api.events.v1, io.k8s.api.coordination.v1, io.k8s.api.scheduling.v1 (the
//! PriorityClass `kubectl create priorityclass` sends).
//! Syntax: see `schema.rs`.

pub(super) const TEXT: &str = r#"
package authn io.k8s.api.authentication.v1
message BoundObjectReference
  1 kind string
  2 apiVersion string
  3 name string
  4 uid string
message TokenRequest
  1 metadata meta.ObjectMeta
  2 spec TokenRequestSpec !
  3 status TokenRequestStatus
message TokenRequestSpec
  1 audiences []string !
  3 boundObjectRef BoundObjectReference *
  4 expirationSeconds int64 *
message TokenRequestStatus
  1 token string !
  2 expirationTimestamp time !

message SelfSubjectReview
  1 metadata meta.ObjectMeta
  2 status SelfSubjectReviewStatus
message SelfSubjectReviewStatus
  1 userInfo UserInfo
message UserInfo
  1 username string
  2 uid string
  3 groups []string

package authz io.k8s.api.authorization.v1
message SubjectAccessReview
  1 metadata meta.ObjectMeta
  2 spec SubjectAccessReviewSpec !
  3 status SubjectAccessReviewStatus
message LocalSubjectAccessReview
  1 metadata meta.ObjectMeta
  2 spec SubjectAccessReviewSpec !
  3 status SubjectAccessReviewStatus
message SubjectAccessReviewSpec
  1 resourceAttributes ResourceAttributes *
  2 nonResourceAttributes NonResourceAttributes *
  3 user string
  4 groups []string
  6 uid string
message SelfSubjectRulesReview
  1 metadata meta.ObjectMeta
  2 spec SelfSubjectRulesReviewSpec !
  3 status SubjectRulesReviewStatus
message SubjectRulesReviewStatus
  1 resourceRules []ResourceRule !
  2 nonResourceRules []NonResourceRule !
  3 incomplete bool !
  4 evaluationError string
message ResourceRule
  1 verbs []string !
  2 apiGroups []string
  3 resources []string
  4 resourceNames []string
message NonResourceRule
  1 verbs []string !
  2 nonResourceURLs []string
message SelfSubjectRulesReviewSpec
  1 namespace string

message FieldSelectorAttributes
  1 rawSelector string
  2 requirements []meta.FieldSelectorRequirement
message LabelSelectorAttributes
  1 rawSelector string
  2 requirements []meta.LabelSelectorRequirement
message NonResourceAttributes
  1 path string
  2 verb string
message ResourceAttributes
  1 namespace string
  2 verb string
  3 group string
  4 version string
  5 resource string
  6 subresource string
  7 name string
  8 fieldSelector FieldSelectorAttributes *
  9 labelSelector LabelSelectorAttributes *
message SelfSubjectAccessReview
  1 metadata meta.ObjectMeta
  2 spec SelfSubjectAccessReviewSpec !
  3 status SubjectAccessReviewStatus
message SelfSubjectAccessReviewSpec
  1 resourceAttributes ResourceAttributes *
  2 nonResourceAttributes NonResourceAttributes *
message SubjectAccessReviewStatus
  1 allowed bool !
  2 reason string
  3 evaluationError string
  4 denied bool

package events io.k8s.api.events.v1
message Event
  1 metadata meta.ObjectMeta !
  2 eventTime microtime !
  3 series EventSeries *
  4 reportingController string
  5 reportingInstance string
  6 action string
  7 reason string
  8 regarding core.ObjectReference
  9 related core.ObjectReference *
  10 note string
  11 type string
  12 deprecatedSource core.EventSource
  13 deprecatedFirstTimestamp time
  14 deprecatedLastTimestamp time
  15 deprecatedCount int32
message EventSeries
  1 count int32 !
  2 lastObservedTime microtime !

package coord io.k8s.api.coordination.v1
message Lease
  1 metadata meta.ObjectMeta
  2 spec LeaseSpec
message LeaseSpec
  1 holderIdentity string *
  2 leaseDurationSeconds int32 *
  3 acquireTime microtime *
  4 renewTime microtime *
  5 leaseTransitions int32 *
  6 strategy string *
  7 preferredHolder string *

package scheduling io.k8s.api.scheduling.v1
message PriorityClass
  1 metadata meta.ObjectMeta
  2 value int32 !
  3 globalDefault bool
  4 description string
  5 preemptionPolicy string *

package rbac io.k8s.api.rbac.v1
message AggregationRule
  1 clusterRoleSelectors []meta.LabelSelector
message ClusterRole
  1 metadata meta.ObjectMeta
  2 rules []PolicyRule !
  3 aggregationRule AggregationRule *
message ClusterRoleBinding
  1 metadata meta.ObjectMeta
  2 subjects []Subject
  3 roleRef RoleRef !
message PolicyRule
  1 verbs []string !
  2 apiGroups []string
  3 resources []string
  4 resourceNames []string
  5 nonResourceURLs []string
message Role
  1 metadata meta.ObjectMeta
  2 rules []PolicyRule !
message RoleBinding
  1 metadata meta.ObjectMeta
  2 subjects []Subject
  3 roleRef RoleRef !
message RoleRef
  1 apiGroup string !
  2 kind string !
  3 name string !
message Subject
  1 kind string !
  2 apiGroup string
  3 name string !
  4 namespace string
"#;
