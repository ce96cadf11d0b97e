//! Protobuf field table for io.k8s.api.core.v1.
//! Syntax: see `schema.rs`.

pub(super) const TEXT: &str = r#"
package core io.k8s.api.core.v1
message AWSElasticBlockStoreVolumeSource
  1 volumeID string !
  2 fsType string
  3 partition int32
  4 readOnly bool
message Affinity
  1 nodeAffinity NodeAffinity *
  2 podAffinity PodAffinity *
  3 podAntiAffinity PodAntiAffinity *
message AppArmorProfile
  1 type string !
  2 localhostProfile string *
message AttachedVolume
  1 name string !
  2 devicePath string !
message AzureDiskVolumeSource
  1 diskName string !
  2 diskURI string !
  3 cachingMode string *
  4 fsType string *
  5 readOnly bool *
  6 kind string *
message AzureFileVolumeSource
  1 secretName string !
  2 shareName string !
  3 readOnly bool
message CSIVolumeSource
  1 driver string !
  2 readOnly bool *
  3 fsType string *
  4 volumeAttributes map[string]string
  5 nodePublishSecretRef LocalObjectReference *
message Capabilities
  1 add []string
  2 drop []string
message CephFSVolumeSource
  1 monitors []string !
  2 path string
  3 user string
  4 secretFile string
  5 secretRef LocalObjectReference *
  6 readOnly bool
message CinderVolumeSource
  1 volumeID string !
  2 fsType string
  3 readOnly bool
  4 secretRef LocalObjectReference *
message ClientIPConfig
  1 timeoutSeconds int32 *
message ClusterTrustBundleProjection
  1 name string *
  2 signerName string *
  3 labelSelector meta.LabelSelector *
  4 path string !
  5 optional bool *
  6 user int64 *
message ConfigMap
  1 metadata meta.ObjectMeta
  2 data map[string]string
  3 binaryData map[string]bytes
  4 immutable bool *
message ConfigMapEnvSource
  1 - LocalObjectReference inline
  2 optional bool *
message ConfigMapKeySelector
  1 - LocalObjectReference inline
  2 key string !
  3 optional bool *
message ConfigMapNodeConfigSource
  1 namespace string !
  2 name string !
  3 uid string
  4 resourceVersion string
  5 kubeletConfigKey string !
message ConfigMapProjection
  1 - LocalObjectReference inline
  2 items []KeyToPath
  4 optional bool *
message ConfigMapVolumeSource
  1 - LocalObjectReference inline
  2 items []KeyToPath
  3 defaultMode int32 *
  4 optional bool *
  5 defaultUser int64 *
message Container
  1 name string !
  2 image string
  3 command []string
  4 args []string
  5 workingDir string
  6 ports []ContainerPort
  7 env []EnvVar
  8 resources ResourceRequirements
  9 volumeMounts []VolumeMount
  10 livenessProbe Probe *
  11 readinessProbe Probe *
  12 lifecycle Lifecycle *
  13 terminationMessagePath string
  14 imagePullPolicy string
  15 securityContext SecurityContext *
  16 stdin bool
  17 stdinOnce bool
  18 tty bool
  19 envFrom []EnvFromSource
  20 terminationMessagePolicy string
  21 volumeDevices []VolumeDevice
  22 startupProbe Probe *
  23 resizePolicy []ContainerResizePolicy
  24 restartPolicy string *
  25 restartPolicyRules []ContainerRestartRule
message ContainerExtendedResourceRequest
  1 containerName string !
  2 resourceName string !
  3 requestName string !
message ContainerImage
  1 names []string !
  2 sizeBytes int64
message ContainerPort
  1 name string
  2 hostPort int32
  3 containerPort int32 !
  4 protocol string
  5 hostIP string
message ContainerResizePolicy
  1 resourceName string !
  2 restartPolicy string !
message ContainerRestartRule
  1 action string
  2 exitCodes ContainerRestartRuleOnExitCodes *
message ContainerRestartRuleOnExitCodes
  1 operator string
  2 values []int32
message ContainerState
  1 waiting ContainerStateWaiting *
  2 running ContainerStateRunning *
  3 terminated ContainerStateTerminated *
message ContainerStateRunning
  1 startedAt time
message ContainerStateTerminated
  1 exitCode int32 !
  2 signal int32
  3 reason string
  4 message string
  5 startedAt time
  6 finishedAt time
  7 containerID string
message ContainerStateWaiting
  1 reason string
  2 message string
message ContainerStatus
  1 name string !
  2 state ContainerState
  3 lastState ContainerState
  4 ready bool !
  5 restartCount int32 !
  6 image string !
  7 imageID string !
  8 containerID string
  9 started bool *
  10 allocatedResources map[string]quantity
  11 resources ResourceRequirements *
  12 volumeMounts []VolumeMountStatus
  13 user ContainerUser *
  14 allocatedResourcesStatus []ResourceStatus
  15 stopSignal string *
message ContainerUser
  1 linux LinuxContainerUser *
message DaemonEndpoint
  1 Port int32 !
message DownwardAPIProjection
  1 items []DownwardAPIVolumeFile
message DownwardAPIVolumeFile
  1 path string !
  2 fieldRef ObjectFieldSelector *
  3 resourceFieldRef ResourceFieldSelector *
  4 mode int32 *
  5 user int64 *
message DownwardAPIVolumeSource
  1 items []DownwardAPIVolumeFile
  2 defaultMode int32 *
  3 defaultUser int64 *
message EmptyDirVolumeSource
  1 medium string
  2 sizeLimit quantity *
  3 mode int32 *
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
message EnvFromSource
  1 prefix string
  2 configMapRef ConfigMapEnvSource *
  3 secretRef SecretEnvSource *
message EnvVar
  1 name string !
  2 value string
  3 valueFrom EnvVarSource *
message EnvVarSource
  1 fieldRef ObjectFieldSelector *
  2 resourceFieldRef ResourceFieldSelector *
  3 configMapKeyRef ConfigMapKeySelector *
  4 secretKeyRef SecretKeySelector *
  5 fileKeyRef FileKeySelector *
message EphemeralContainer
  1 - EphemeralContainerCommon inline
  2 targetContainerName string
message EphemeralContainerCommon
  1 name string !
  2 image string
  3 command []string
  4 args []string
  5 workingDir string
  6 ports []ContainerPort
  7 env []EnvVar
  8 resources ResourceRequirements
  9 volumeMounts []VolumeMount
  10 livenessProbe Probe *
  11 readinessProbe Probe *
  12 lifecycle Lifecycle *
  13 terminationMessagePath string
  14 imagePullPolicy string
  15 securityContext SecurityContext *
  16 stdin bool
  17 stdinOnce bool
  18 tty bool
  19 envFrom []EnvFromSource
  20 terminationMessagePolicy string
  21 volumeDevices []VolumeDevice
  22 startupProbe Probe *
  23 resizePolicy []ContainerResizePolicy
  24 restartPolicy string *
  25 restartPolicyRules []ContainerRestartRule
message EphemeralVolumeSource
  1 volumeClaimTemplate PersistentVolumeClaimTemplate *
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
message EvictionResponder
  1 name string !
  2 priority int32 *
message ExecAction
  1 command []string
message FCVolumeSource
  1 targetWWNs []string
  2 lun int32 *
  3 fsType string
  4 readOnly bool
  5 wwids []string
message FileKeySelector
  1 volumeName string !
  2 path string !
  3 key string !
  4 optional bool *
message FlexVolumeSource
  1 driver string !
  2 fsType string
  3 secretRef LocalObjectReference *
  4 readOnly bool
  5 options map[string]string
message FlockerVolumeSource
  1 datasetName string
  2 datasetUUID string
message GCEPersistentDiskVolumeSource
  1 pdName string !
  2 fsType string
  3 partition int32
  4 readOnly bool
message GRPCAction
  1 port int32 !
  2 service string *
  3 mode string *
message GitRepoVolumeSource
  1 repository string !
  2 revision string
  3 directory string
message GlusterfsVolumeSource
  1 endpoints string !
  2 path string !
  3 readOnly bool
message HTTPGetAction
  1 path string
  2 port intstr !
  3 host string
  4 scheme string
  5 httpHeaders []HTTPHeader
  6 protocol string *
message HTTPHeader
  1 name string !
  2 value string !
message HostAlias
  1 ip string !
  2 hostnames []string
message HostIP
  1 ip string !
message HostPathVolumeSource
  1 path string !
  2 type string *
message ISCSIVolumeSource
  1 targetPortal string !
  2 iqn string !
  3 lun int32 !
  4 iscsiInterface string
  5 fsType string
  6 readOnly bool
  7 portals []string
  8 chapAuthDiscovery bool
  10 secretRef LocalObjectReference *
  11 chapAuthSession bool
  12 initiatorName string *
message ImageVolumeSource
  1 reference string
  2 pullPolicy string
message ImageVolumeStatus
  1 imageRef string
message KeyToPath
  1 key string !
  2 path string !
  3 mode int32 *
  4 user int64 *
message Lifecycle
  1 postStart LifecycleHandler *
  2 preStop LifecycleHandler *
  3 stopSignal string *
message LifecycleHandler
  1 exec ExecAction *
  2 httpGet HTTPGetAction *
  3 tcpSocket TCPSocketAction *
  4 sleep SleepAction *
message LinuxContainerUser
  1 uid int64 !
  2 gid int64 !
  3 supplementalGroups []int64
message LoadBalancerIngress
  1 ip string
  2 hostname string
  3 ipMode string *
  4 ports []PortStatus
message LoadBalancerStatus
  1 ingress []LoadBalancerIngress
message LocalObjectReference
  1 name string
message NFSVolumeSource
  1 server string !
  2 path string !
  3 readOnly bool
message Namespace
  1 metadata meta.ObjectMeta
  2 spec NamespaceSpec
  3 status NamespaceStatus
message NamespaceCondition
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
message Node
  1 metadata meta.ObjectMeta
  2 spec NodeSpec
  3 status NodeStatus
message NodeAddress
  1 type string !
  2 address string !
message NodeAffinity
  1 requiredDuringSchedulingIgnoredDuringExecution NodeSelector *
  2 preferredDuringSchedulingIgnoredDuringExecution []PreferredSchedulingTerm
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
message NodeSelector
  1 nodeSelectorTerms []NodeSelectorTerm !
message NodeSelectorRequirement
  1 key string !
  2 operator string !
  3 values []string
message NodeSelectorTerm
  1 matchExpressions []NodeSelectorRequirement
  2 matchFields []NodeSelectorRequirement
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
message ObjectFieldSelector
  1 apiVersion string
  2 fieldPath string !
message ObjectReference
  1 kind string
  2 namespace string
  3 name string
  4 uid string
  5 apiVersion string
  6 resourceVersion string
  7 fieldPath string
message PersistentVolumeClaimSpec
  1 accessModes []string
  2 resources VolumeResourceRequirements
  3 volumeName string
  4 selector meta.LabelSelector *
  5 storageClassName string *
  6 volumeMode string *
  7 dataSource TypedLocalObjectReference *
  8 dataSourceRef TypedObjectReference *
  9 volumeAttributesClassName string *
message PersistentVolumeClaimTemplate
  1 metadata meta.ObjectMeta
  2 spec PersistentVolumeClaimSpec !
message PersistentVolumeClaimVolumeSource
  1 claimName string !
  2 readOnly bool
message PhotonPersistentDiskVolumeSource
  1 pdID string !
  2 fsType string
message Pod
  1 metadata meta.ObjectMeta
  2 spec PodSpec
  3 status PodStatus
message PodAffinity
  1 requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm
  2 preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm
message PodAffinityTerm
  1 labelSelector meta.LabelSelector *
  2 namespaces []string
  3 topologyKey string !
  4 namespaceSelector meta.LabelSelector *
  5 matchLabelKeys []string
  6 mismatchLabelKeys []string
message PodAntiAffinity
  1 requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm
  2 preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm
message PodCertificateProjection
  1 signerName string
  2 keyType string
  3 maxExpirationSeconds int32 *
  4 credentialBundlePath string
  5 keyPath string
  6 certificateChainPath string
  7 userAnnotations map[string]string
  8 user int64 *
message PodCondition
  1 type string !
  2 status string !
  3 lastProbeTime time
  4 lastTransitionTime time
  5 reason string
  6 message string
  7 observedGeneration int64
message PodDNSConfig
  1 nameservers []string
  2 searches []string
  3 options []PodDNSConfigOption
message PodDNSConfigOption
  1 name string
  2 value string *
message PodExtendedResourceClaimStatus
  1 requestMappings []ContainerExtendedResourceRequest !
  2 resourceClaimName string !
message PodIP
  1 ip string !
message PodOS
  1 name string !
message PodReadinessGate
  1 conditionType string !
message PodResourceClaim
  1 name string !
  3 resourceClaimName string *
  4 resourceClaimTemplateName string *
message PodResourceClaimStatus
  1 name string !
  2 resourceClaimName string *
message PodSchedulingGate
  1 name string !
message PodSchedulingGroup
  1 podGroupName string *
message PodSecurityContext
  1 seLinuxOptions SELinuxOptions *
  2 runAsUser int64 *
  3 runAsNonRoot bool *
  4 supplementalGroups []int64
  5 fsGroup int64 *
  6 runAsGroup int64 *
  7 sysctls []Sysctl
  8 windowsOptions WindowsSecurityContextOptions *
  9 fsGroupChangePolicy string *
  10 seccompProfile SeccompProfile *
  11 appArmorProfile AppArmorProfile *
  12 supplementalGroupsPolicy string *
  13 seLinuxChangePolicy string *
message PodSpec
  1 volumes []Volume
  2 containers []Container !
  3 restartPolicy string
  4 terminationGracePeriodSeconds int64 *
  5 activeDeadlineSeconds int64 *
  6 dnsPolicy string
  7 nodeSelector map[string]string
  8 serviceAccountName string
  9 serviceAccount string
  10 nodeName string
  11 hostNetwork bool
  12 hostPID bool
  13 hostIPC bool
  14 securityContext PodSecurityContext *
  15 imagePullSecrets []LocalObjectReference
  16 hostname string
  17 subdomain string
  18 affinity Affinity *
  19 schedulerName string
  20 initContainers []Container
  21 automountServiceAccountToken bool *
  22 tolerations []Toleration
  23 hostAliases []HostAlias
  24 priorityClassName string
  25 priority int32 *
  26 dnsConfig PodDNSConfig *
  27 shareProcessNamespace bool *
  28 readinessGates []PodReadinessGate
  29 runtimeClassName string *
  30 enableServiceLinks bool *
  31 preemptionPolicy string *
  32 overhead map[string]quantity
  33 topologySpreadConstraints []TopologySpreadConstraint
  34 ephemeralContainers []EphemeralContainer
  35 setHostnameAsFQDN bool *
  36 os PodOS *
  37 hostUsers bool *
  38 schedulingGates []PodSchedulingGate
  39 resourceClaims []PodResourceClaim
  40 resources ResourceRequirements *
  41 hostnameOverride string *
  43 schedulingGroup PodSchedulingGroup *
  44 evictionResponders []EvictionResponder
message PodStatus
  1 phase string
  2 conditions []PodCondition
  3 message string
  4 reason string
  5 hostIP string
  6 podIP string
  7 startTime time *
  8 containerStatuses []ContainerStatus
  9 qosClass string
  10 initContainerStatuses []ContainerStatus
  11 nominatedNodeName string
  12 podIPs []PodIP
  13 ephemeralContainerStatuses []ContainerStatus
  14 resize string
  15 resourceClaimStatuses []PodResourceClaimStatus
  16 hostIPs []HostIP
  17 observedGeneration int64
  18 extendedResourceClaimStatus PodExtendedResourceClaimStatus *
  19 allocatedResources map[string]quantity
  20 resources ResourceRequirements *
  21 nodeAllocatableResourceClaimStatuses []NodeAllocatableResourceClaimStatus
  22 volumeHealth []PodVolumeHealth
message PodTemplateSpec
  1 metadata meta.ObjectMeta
  2 spec PodSpec
message PodVolumeHealth
  1 name string !
  2 healthConditions []VolumeHealthCondition
  3 lastTransitionTime time
message PortStatus
  1 port int32 !
  2 protocol string !
  3 error string *
message PortworxVolumeSource
  1 volumeID string !
  2 fsType string
  3 readOnly bool
message PreferredSchedulingTerm
  1 weight int32 !
  2 preference NodeSelectorTerm !
message Probe
  1 - ProbeHandler inline
  2 initialDelaySeconds int32
  3 timeoutSeconds int32
  4 periodSeconds int32
  5 successThreshold int32
  6 failureThreshold int32
  7 terminationGracePeriodSeconds int64 *
message ProbeHandler
  1 exec ExecAction *
  2 httpGet HTTPGetAction *
  3 tcpSocket TCPSocketAction *
  4 grpc GRPCAction *
message ProjectedVolumeSource
  1 sources []VolumeProjection !
  2 defaultMode int32 *
  3 defaultUser int64 *
message QuobyteVolumeSource
  1 registry string !
  2 volume string !
  3 readOnly bool
  4 user string
  5 group string
  6 tenant string
message RBDVolumeSource
  1 monitors []string !
  2 image string !
  3 fsType string
  4 pool string
  5 user string
  6 keyring string
  7 secretRef LocalObjectReference *
  8 readOnly bool
message ResourceClaim
  1 name string !
  2 request string
message ResourceFieldSelector
  1 containerName string
  2 resource string !
  3 divisor quantity
message ResourceHealth
  1 resourceID string !
  2 health string
  6 message string *
message ResourceRequirements
  1 limits map[string]quantity
  2 requests map[string]quantity
  3 claims []ResourceClaim
message ResourceStatus
  1 name string !
  2 resources []ResourceHealth
message SELinuxOptions
  1 user string
  2 role string
  3 type string
  4 level string
message ScaleIOVolumeSource
  1 gateway string !
  2 system string !
  3 secretRef LocalObjectReference *
  4 sslEnabled bool
  5 protectionDomain string
  6 storagePool string
  7 storageMode string
  8 volumeName string
  9 fsType string
  10 readOnly bool
message SeccompProfile
  1 type string !
  2 localhostProfile string *
message Secret
  1 metadata meta.ObjectMeta
  2 data map[string]bytes
  3 type string
  4 stringData map[string]string
  5 immutable bool *
message SecretEnvSource
  1 - LocalObjectReference inline
  2 optional bool *
message SecretKeySelector
  1 - LocalObjectReference inline
  2 key string !
  3 optional bool *
message SecretProjection
  1 - LocalObjectReference inline
  2 items []KeyToPath
  4 optional bool *
message SecretVolumeSource
  1 secretName string
  2 items []KeyToPath
  3 defaultMode int32 *
  4 optional bool *
  5 defaultUser int64 *
message SecurityContext
  1 capabilities Capabilities *
  2 privileged bool *
  3 seLinuxOptions SELinuxOptions *
  4 runAsUser int64 *
  5 runAsNonRoot bool *
  6 readOnlyRootFilesystem bool *
  7 allowPrivilegeEscalation bool *
  8 runAsGroup int64 *
  9 procMount string *
  10 windowsOptions WindowsSecurityContextOptions *
  11 seccompProfile SeccompProfile *
  12 appArmorProfile AppArmorProfile *
message Service
  1 metadata meta.ObjectMeta
  2 spec ServiceSpec
  3 status ServiceStatus
message ServiceAccount
  1 metadata meta.ObjectMeta
  2 secrets []ObjectReference
  3 imagePullSecrets []LocalObjectReference
  4 automountServiceAccountToken bool *
message ServiceAccountTokenProjection
  1 audience string
  2 expirationSeconds int64 *
  3 path string !
  4 user int64 *
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
message SleepAction
  1 seconds int64 !
message StorageOSVolumeSource
  1 volumeName string
  2 volumeNamespace string
  3 fsType string
  4 readOnly bool
  5 secretRef LocalObjectReference *
message Sysctl
  1 name string !
  2 value string !
message TCPSocketAction
  1 port intstr !
  2 host string
message Taint
  1 key string !
  2 value string
  3 effect string !
  4 timeAdded time *
message Toleration
  1 key string
  2 operator string
  3 value string
  4 effect string
  5 tolerationSeconds int64 *
message TopologySpreadConstraint
  1 maxSkew int32 !
  2 topologyKey string !
  3 whenUnsatisfiable string !
  4 labelSelector meta.LabelSelector *
  5 minDomains int32 *
  6 nodeAffinityPolicy string *
  7 nodeTaintsPolicy string *
  8 matchLabelKeys []string
message TypedLocalObjectReference
  1 apiGroup string *
  2 kind string !
  3 name string !
message TypedObjectReference
  1 apiGroup string *
  2 kind string !
  3 name string !
  4 namespace string *
message Volume
  1 name string !
  2 - VolumeSource inline
message VolumeDevice
  1 name string !
  2 devicePath string !
message VolumeHealthCondition
  1 status string !
  2 reason string !
  3 message string
message VolumeMount
  1 name string !
  2 readOnly bool
  3 mountPath string !
  4 subPath string
  5 mountPropagation string *
  6 subPathExpr string
  7 recursiveReadOnly string *
  8 bindMountOptions []string
message VolumeMountStatus
  1 name string !
  2 mountPath string !
  3 readOnly bool
  4 recursiveReadOnly string *
  5 volumeStatus VolumeStatus *
message VolumeProjection
  1 secret SecretProjection *
  2 downwardAPI DownwardAPIProjection *
  3 configMap ConfigMapProjection *
  4 serviceAccountToken ServiceAccountTokenProjection *
  5 clusterTrustBundle ClusterTrustBundleProjection *
  6 podCertificate PodCertificateProjection *
message VolumeResourceRequirements
  1 limits map[string]quantity
  2 requests map[string]quantity
message VolumeSource
  1 hostPath HostPathVolumeSource *
  2 emptyDir EmptyDirVolumeSource *
  3 gcePersistentDisk GCEPersistentDiskVolumeSource *
  4 awsElasticBlockStore AWSElasticBlockStoreVolumeSource *
  5 gitRepo GitRepoVolumeSource *
  6 secret SecretVolumeSource *
  7 nfs NFSVolumeSource *
  8 iscsi ISCSIVolumeSource *
  9 glusterfs GlusterfsVolumeSource *
  10 persistentVolumeClaim PersistentVolumeClaimVolumeSource *
  11 rbd RBDVolumeSource *
  12 flexVolume FlexVolumeSource *
  13 cinder CinderVolumeSource *
  14 cephfs CephFSVolumeSource *
  15 flocker FlockerVolumeSource *
  16 downwardAPI DownwardAPIVolumeSource *
  17 fc FCVolumeSource *
  18 azureFile AzureFileVolumeSource *
  19 configMap ConfigMapVolumeSource *
  20 vsphereVolume VsphereVirtualDiskVolumeSource *
  21 quobyte QuobyteVolumeSource *
  22 azureDisk AzureDiskVolumeSource *
  23 photonPersistentDisk PhotonPersistentDiskVolumeSource *
  24 portworxVolume PortworxVolumeSource *
  25 scaleIO ScaleIOVolumeSource *
  26 projected ProjectedVolumeSource *
  27 storageos StorageOSVolumeSource *
  28 csi CSIVolumeSource *
  29 ephemeral EphemeralVolumeSource *
  30 image ImageVolumeSource *
message VolumeStatus
  1 image ImageVolumeStatus *
message VsphereVirtualDiskVolumeSource
  1 volumePath string !
  2 fsType string
  3 storagePolicyName string
  4 storagePolicyID string
message WeightedPodAffinityTerm
  1 weight int32 !
  2 podAffinityTerm PodAffinityTerm !
message WindowsSecurityContextOptions
  1 gmsaCredentialSpecName string *
  2 gmsaCredentialSpec string *
  3 runAsUserName string *
  4 hostProcess bool *
message PodTemplate
  1 metadata meta.ObjectMeta
  2 template PodTemplateSpec
"#;
