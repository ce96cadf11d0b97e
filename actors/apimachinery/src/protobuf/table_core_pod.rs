//! Protobuf field table for io.k8s.api.core.v1: pods, pod templates and containers.
//! Syntax: see `schema.rs`.

use super::schema::{object_message, probe_condition_fields};

/// The fields of `Container`, which upstream copies field for field into
/// `EphemeralContainerCommon`.
macro_rules! container_fields {
    () => {
        r#"  1 name string !
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
"#
    };
}

pub(super) const TEXT: &str = concat!(
    "\npackage core io.k8s.api.core.v1\n",
    r#"message Affinity
  1 nodeAffinity NodeAffinity *
  2 podAffinity PodAffinity *
  3 podAntiAffinity PodAntiAffinity *
message AppArmorProfile
  1 type string !
  2 localhostProfile string *
message Capabilities
  1 add []string
  2 drop []string
message ConfigMapEnvSource
  1 - LocalObjectReference inline
  2 optional bool *
message ConfigMapKeySelector
  1 - LocalObjectReference inline
  2 key string !
  3 optional bool *
message Container
"#,
    container_fields!(),
    r#"message ContainerExtendedResourceRequest
  1 containerName string !
  2 resourceName string !
  3 requestName string !
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
"#,
    container_fields!(),
    r#"message EvictionResponder
  1 name string !
  2 priority int32 *
message ExecAction
  1 command []string
message FileKeySelector
  1 volumeName string !
  2 path string !
  3 key string !
  4 optional bool *
message GRPCAction
  1 port int32 !
  2 service string *
  3 mode string *
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
message ImageVolumeStatus
  1 imageRef string
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
message NodeAffinity
  1 requiredDuringSchedulingIgnoredDuringExecution NodeSelector *
  2 preferredDuringSchedulingIgnoredDuringExecution []PreferredSchedulingTerm
message NodeSelector
  1 nodeSelectorTerms []NodeSelectorTerm !
message NodeSelectorRequirement
  1 key string !
  2 operator string !
  3 values []string
message NodeSelectorTerm
  1 matchExpressions []NodeSelectorRequirement
  2 matchFields []NodeSelectorRequirement
message ObjectFieldSelector
  1 apiVersion string
  2 fieldPath string !
"#,
    object_message!("Pod"),
    r#"message PodAffinity
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
message PodCondition
"#,
    probe_condition_fields!(),
    r#"  7 observedGeneration int64
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
message SeccompProfile
  1 type string !
  2 localhostProfile string *
message SecretEnvSource
  1 - LocalObjectReference inline
  2 optional bool *
message SecretKeySelector
  1 - LocalObjectReference inline
  2 key string !
  3 optional bool *
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
message SleepAction
  1 seconds int64 !
message Sysctl
  1 name string !
  2 value string !
message TCPSocketAction
  1 port intstr !
  2 host string
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
message VolumeStatus
  1 image ImageVolumeStatus *
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
"#,
);
