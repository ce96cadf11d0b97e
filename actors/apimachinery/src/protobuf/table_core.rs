//! Protobuf field table for io.k8s.api.core.v1: nodes, namespaces, services,
//! endpoints, events, config maps and secrets; pods and volumes are in
//! `table_core_pod.rs` and `table_core_volume.rs`.
//! Syntax: see `schema.rs`.

use super::schema::object_message;

pub(super) const TEXT: &str = concat!(
    "\npackage core io.k8s.api.core.v1\n",
    r#"message AttachedVolume
  1 name string !
  2 devicePath string !
message ClientIPConfig
  1 timeoutSeconds int32 *
message ConfigMap
  1 metadata meta.ObjectMeta
  2 data map[string]string
  3 binaryData map[string]bytes
  4 immutable bool *
message ConfigMapNodeConfigSource
  1 namespace string !
  2 name string !
  3 uid string
  4 resourceVersion string
  5 kubeletConfigKey string !
message ContainerImage
  1 names []string !
  2 sizeBytes int64
message DaemonEndpoint
  1 Port int32 !
message EndpointAddress
  1 ip string !
  2 targetRef ObjectReference *
  3 hostname string
  4 nodeName string *
message EndpointPort
  1 name string
  2 port int32 !
  3 protocol string
  4 appProtocol string *
message EndpointSubset
  1 addresses []EndpointAddress
  2 notReadyAddresses []EndpointAddress
  3 ports []EndpointPort
message Endpoints
  1 metadata meta.ObjectMeta
  2 subsets []EndpointSubset
message Event
  1 metadata meta.ObjectMeta !
  2 involvedObject ObjectReference !
  3 reason string
  4 message string
  5 source EventSource
  6 firstTimestamp time
  7 lastTimestamp time
  8 count int32
  9 type string
  10 eventTime microtime
  11 series EventSeries *
  12 action string
  13 related ObjectReference *
  14 reportingComponent string !
  15 reportingInstance string !
message EventSeries
  1 count int32
  2 lastObservedTime microtime
message EventSource
  1 component string
  2 host string
message LoadBalancerIngress
  1 ip string
  2 hostname string
  3 ipMode string *
  4 ports []PortStatus
message LoadBalancerStatus
  1 ingress []LoadBalancerIngress
message LocalObjectReference
  1 name string
"#,
    object_message!("Namespace"),
    r#"message NamespaceCondition
  1 type string !
  2 status string !
  4 lastTransitionTime time
  5 reason string
  6 message string
message NamespaceSpec
  1 finalizers []string
message NamespaceStatus
  1 phase string
  2 conditions []NamespaceCondition
"#,
    object_message!("Node"),
    r#"message NodeAddress
  1 type string !
  2 address string !
message NodeAllocatableMappedResources
  1 name string !
  2 quantity quantity *
message NodeAllocatableOverheadResources
  1 name string !
  2 perPod quantity *
  3 perContainer quantity *
message NodeAllocatableResourceClaimStatus
  1 resourceClaimName string !
  2 containers []string
  4 mapping []NodeAllocatableMappedResources
  5 overhead []NodeAllocatableOverheadResources
message NodeCondition
  1 type string !
  2 status string !
  3 lastHeartbeatTime time
  4 lastTransitionTime time
  5 reason string
  6 message string
message NodeConfigSource
  2 configMap ConfigMapNodeConfigSource *
message NodeConfigStatus
  1 assigned NodeConfigSource *
  2 active NodeConfigSource *
  3 lastKnownGood NodeConfigSource *
  4 error string
message NodeDaemonEndpoints
  1 kubeletEndpoint DaemonEndpoint
message NodeFeatures
  1 supplementalGroupsPolicy bool *
message NodePodPreemptionPolicy
  1 disableResizePreemption []string
message NodeRuntimeHandler
  1 name string !
  2 features NodeRuntimeHandlerFeatures *
message NodeRuntimeHandlerFeatures
  1 recursiveReadOnlyMounts bool *
  2 userNamespaces bool *
message NodeSpec
  1 podCIDR string
  2 externalID string
  3 providerID string
  4 unschedulable bool
  5 taints []Taint
  6 configSource NodeConfigSource *
  7 podCIDRs []string
  8 podPreemptionPolicy NodePodPreemptionPolicy *
message NodeStatus
  1 capacity map[string]quantity
  2 allocatable map[string]quantity
  3 phase string
  4 conditions []NodeCondition
  5 addresses []NodeAddress
  6 daemonEndpoints NodeDaemonEndpoints
  7 nodeInfo NodeSystemInfo
  8 images []ContainerImage
  9 volumesInUse []string
  10 volumesAttached []AttachedVolume
  11 config NodeConfigStatus *
  12 runtimeHandlers []NodeRuntimeHandler
  13 features NodeFeatures *
  14 declaredFeatures []string
message NodeSwapStatus
  1 capacity int64 *
message NodeSystemInfo
  1 machineID string !
  2 systemUUID string !
  3 bootID string !
  4 kernelVersion string !
  5 osImage string !
  6 containerRuntimeVersion string !
  7 kubeletVersion string !
  8 kubeProxyVersion string !
  9 operatingSystem string !
  10 architecture string !
  11 swap NodeSwapStatus *
message ObjectReference
  1 kind string
  2 namespace string
  3 name string
  4 uid string
  5 apiVersion string
  6 resourceVersion string
  7 fieldPath string
message PortStatus
  1 port int32 !
  2 protocol string !
  3 error string *
message LimitRange
  1 metadata meta.ObjectMeta
  2 spec LimitRangeSpec
message LimitRangeItem
  1 type string !
  2 max map[string]quantity
  3 min map[string]quantity
  4 default map[string]quantity
  5 defaultRequest map[string]quantity
  6 maxLimitRequestRatio map[string]quantity
message LimitRangeSpec
  1 limits []LimitRangeItem !
"#,
    object_message!("ResourceQuota"),
    r#"message ResourceQuotaSpec
  1 hard map[string]quantity
  2 scopes []string
  3 scopeSelector ScopeSelector *
message ResourceQuotaStatus
  1 hard map[string]quantity
  2 used map[string]quantity
message ScopeSelector
  1 matchExpressions []ScopedResourceSelectorRequirement
message ScopedResourceSelectorRequirement
  1 scopeName string !
  2 operator string !
  3 values []string
message Secret
  1 metadata meta.ObjectMeta
  2 data map[string]bytes
  3 type string
  4 stringData map[string]string
  5 immutable bool *
"#,
    object_message!("Service"),
    r#"message ServiceAccount
  1 metadata meta.ObjectMeta
  2 secrets []ObjectReference
  3 imagePullSecrets []LocalObjectReference
  4 automountServiceAccountToken bool *
message ServicePort
  1 name string
  2 protocol string
  3 port int32 !
  4 targetPort intstr
  5 nodePort int32
  6 appProtocol string *
message ServiceSpec
  1 ports []ServicePort
  2 selector map[string]string
  3 clusterIP string
  4 type string
  5 externalIPs []string
  7 sessionAffinity string
  8 loadBalancerIP string
  9 loadBalancerSourceRanges []string
  10 externalName string
  11 externalTrafficPolicy string
  12 healthCheckNodePort int32
  13 publishNotReadyAddresses bool
  14 sessionAffinityConfig SessionAffinityConfig *
  17 ipFamilyPolicy string *
  18 clusterIPs []string
  19 ipFamilies []string
  20 allocateLoadBalancerNodePorts bool *
  21 loadBalancerClass string *
  22 internalTrafficPolicy string *
  23 trafficDistribution string *
message ServiceStatus
  1 loadBalancer LoadBalancerStatus
  2 conditions []meta.Condition
message SessionAffinityConfig
  1 clientIP ClientIPConfig *
message Taint
  1 key string !
  2 value string
  3 effect string !
  4 timeAdded time *
"#,
);
