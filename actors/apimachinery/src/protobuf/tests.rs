//! Tests for the protobuf decoder: real kubectl 1.32 captures (testdata/) and
//! hand-encoded messages.
//!
//! Comparison with kubectl 1.31's JSON: Go's `encoding/json` emits
//! `creationTimestamp: null` and empty non-pointer structs (`resources: {}`,
//! `strategy: {}`, `status: {}`) that this decoder drops, so both sides are
//! passed through [`prune`] (recursively remove `null`, `{}` and `[]` object
//! members) before comparing. Zero scalars are *not* pruned: they must match.

use serde_json::{json, Value};

use super::{decode, schema, supports, DecodeError, MAGIC};

// ---------------------------------------------------------------- helpers

/// Test-only protobuf encoder.
#[derive(Default, Clone)]
struct Enc(Vec<u8>);

impl Enc {
    fn new() -> Self {
        Enc::default()
    }
    fn raw_varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.raw_varint(u64::from(field) << 3 | u64::from(wire));
    }
    fn varint(mut self, field: u32, v: u64) -> Self {
        self.key(field, 0);
        self.raw_varint(v);
        self
    }
    fn int(self, field: u32, v: i64) -> Self {
        self.varint(field, v as u64)
    }
    fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.key(field, 2);
        self.raw_varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(self, field: u32, m: Enc) -> Self {
        self.bytes(field, &m.0)
    }
    fn entry(self, field: u32, k: &str, v: &str) -> Self {
        self.msg(field, Enc::new().str(1, k).str(2, v))
    }
}

fn envelope(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend(Enc::new().msg(1, Enc::new().str(1, api_version).str(2, kind)).msg(2, raw).str(3, "").str(4, "").0);
    out
}

/// ObjectMeta as Go writes it: every non-pointer field, zero or not.
fn go_meta(name: &str) -> Enc {
    Enc::new().str(1, name).str(2, "").str(3, "").str(4, "").str(5, "").str(6, "").varint(7, 0).bytes(8, b"")
}

fn quantity(s: &str) -> Enc {
    Enc::new().str(1, s)
}

fn int_or_string_int(v: i32) -> Enc {
    Enc::new().varint(1, 0).int(2, i64::from(v)).str(3, "")
}

fn int_or_string_str(s: &str) -> Enc {
    Enc::new().varint(1, 1).varint(2, 0).str(3, s)
}

fn time(seconds: i64, nanos: i32) -> Enc {
    Enc::new().int(1, seconds).int(2, i64::from(nanos))
}

/// Recursively removes `null`, `{}` and `[]` object members.
fn prune(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| match v {
                    Value::Null => false,
                    Value::Object(m) => !m.is_empty(),
                    Value::Array(a) => !a.is_empty(),
                    _ => true,
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        other => other,
    }
}

/// Tiny deterministic PRNG for the fuzz-ish tests.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const CONFIGMAP_A: &[u8] = include_bytes!("testdata/configmap-a.pb");
const DEPLOYMENT_WEB: &[u8] = include_bytes!("testdata/deployment-web.pb");
const NAMESPACE_FOO: &[u8] = include_bytes!("testdata/namespace-foo.pb");
const SECRET_S1: &[u8] = include_bytes!("testdata/secret-s1.pb");
const SERVICE_SVC1: &[u8] = include_bytes!("testdata/service-svc1.pb");
const SERVICEACCOUNT_SA1: &[u8] = include_bytes!("testdata/serviceaccount-sa1.pb");
const JOB_J1: &[u8] = include_bytes!("testdata/job-j1.pb");
const SSAR: &[u8] = include_bytes!("testdata/selfsubjectaccessreview.pb");
const FIXTURES: &[&[u8]] =
    &[CONFIGMAP_A, DEPLOYMENT_WEB, NAMESPACE_FOO, SECRET_S1, SERVICE_SVC1, SERVICEACCOUNT_SA1, JOB_J1, SSAR];

// ---------------------------------------------------------------- fixtures

#[test]
fn schema_tables_parse_and_resolve() {
    assert!(schema::schema().len() > 200);
    for (v, k) in super::supported_kinds() {
        assert!(supports(v, k), "{v} {k}");
    }
    assert!(supports("v1", "DeleteOptions"));
    assert!(!supports("apps/v1", "StatefulSet"));
}

#[test]
fn configmap_fixture_matches_kubectl_131_json() {
    let expected: Value = serde_json::from_slice(include_bytes!("testdata/configmap-a.kubectl131.json")).unwrap();
    let got = decode(CONFIGMAP_A).unwrap();
    assert_eq!(got, prune(got.clone()), "decoder emitted null/empty members");
    assert_eq!(prune(got), prune(expected));
}

#[test]
fn deployment_fixture_matches_kubectl_131_json() {
    let expected: Value = serde_json::from_slice(include_bytes!("testdata/deployment-web.kubectl131.json")).unwrap();
    let got = decode(DEPLOYMENT_WEB).unwrap();
    assert_eq!(got, prune(got.clone()), "decoder emitted null/empty members");
    assert_eq!(prune(got.clone()), prune(expected));
    assert_eq!(got["spec"]["replicas"], json!(1));
    assert!(got.get("status").is_none());
}

#[test]
fn secret_fixture_base64_data() {
    assert_eq!(
        decode(SECRET_S1).unwrap(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "data": {"k": "dg=="}})
    );
}

#[test]
fn namespace_fixture_drops_zero_spec_and_status() {
    assert_eq!(
        decode(NAMESPACE_FOO).unwrap(),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}})
    );
}

#[test]
fn serviceaccount_fixture() {
    assert_eq!(
        decode(SERVICEACCOUNT_SA1).unwrap(),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa1"}})
    );
}

#[test]
fn service_fixture_with_int_target_port() {
    assert_eq!(
        decode(SERVICE_SVC1).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svc1", "labels": {"app": "svc1"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "svc1"},
                "type": "ClusterIP"
            }
        })
    );
}

#[test]
fn job_fixture() {
    let got = decode(JOB_J1).unwrap();
    assert_eq!(got["apiVersion"], "batch/v1");
    assert_eq!(
        got["spec"]["template"]["spec"],
        json!({"containers": [{"name": "j1", "image": "busybox"}], "restartPolicy": "Never"})
    );
    assert!(got.get("status").is_none());
}

#[test]
fn selfsubjectaccessreview_fixture() {
    let got = decode(SSAR).unwrap();
    assert_eq!(got["spec"], json!({"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}}));
    // `allowed` has no omitempty in Go, so kubectl 1.31 sends it as false too.
    assert_eq!(got["status"], json!({"allowed": false}));
}

// ---------------------------------------------------------------- hand-encoded

#[test]
fn pointer_zeros_are_kept_non_pointer_zeros_dropped() {
    let spec = Enc::new()
        .varint(1, 0) // replicas *int32 = 0
        .varint(5, 0) // minReadySeconds int32 = 0 (omitempty)
        .varint(6, 0) // revisionHistoryLimit *int32 = 0
        .varint(7, 0) // paused bool = false
        .msg(4, Enc::new().str(1, "")); // strategy {type: ""}
    let got = decode(&envelope("apps/v1", "Deployment", Enc::new().msg(1, go_meta("d")).msg(2, spec))).unwrap();
    assert_eq!(got["spec"], json!({"replicas": 0, "revisionHistoryLimit": 0}));
}

#[test]
fn int_or_string_both_forms_and_pointer_zero() {
    let rolling = Enc::new()
        .msg(1, int_or_string_int(0)) // maxUnavailable *IntOrString = 0
        .msg(2, int_or_string_str("25%"));
    let spec = Enc::new().msg(4, Enc::new().str(1, "RollingUpdate").msg(2, rolling));
    let got = decode(&envelope("apps/v1", "Deployment", Enc::new().msg(2, spec))).unwrap();
    assert_eq!(
        got["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}})
    );
}

#[test]
fn container_resources_quantities_and_probes() {
    let resources = Enc::new()
        .msg(1, Enc::new().str(1, "cpu").msg(2, quantity("500m")))
        .msg(2, Enc::new().str(1, "memory").msg(2, quantity("64Mi")));
    let http_get = Enc::new().str(1, "/healthz").msg(2, int_or_string_str("http")).str(3, "").str(4, "HTTP");
    let probe = Enc::new()
        .msg(1, Enc::new().msg(2, http_get)) // ProbeHandler (inline)
        .varint(2, 0)
        .varint(4, 10);
    let exec_probe = Enc::new().msg(1, Enc::new().msg(1, Enc::new().str(1, "true")));
    let container = Enc::new()
        .str(1, "c")
        .str(2, "img")
        .str(3, "sh")
        .str(3, "-c")
        .msg(6, Enc::new().str(1, "http").varint(2, 0).varint(3, 8080).str(4, "TCP"))
        .msg(8, resources)
        .msg(10, probe)
        .msg(11, exec_probe)
        .msg(7, Enc::new().str(1, "NODE").msg(3, Enc::new().msg(1, Enc::new().str(1, "v1").str(2, "spec.nodeName"))));
    let pod_spec = Enc::new().msg(2, container);
    let got = decode(&envelope("v1", "Pod", Enc::new().msg(1, go_meta("p")).msg(2, pod_spec))).unwrap();
    assert_eq!(
        got["spec"]["containers"][0],
        json!({
            "name": "c", "image": "img", "command": ["sh", "-c"],
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10},
            "readinessProbe": {"exec": {"command": ["true"]}},
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}]
        })
    );
}

#[test]
fn volumes_inline_sources_and_empty_pointer_messages() {
    let vols = Enc::new().msg(1, Enc::new().str(1, "scratch").msg(2, Enc::new().msg(2, Enc::new()))).msg(
        1,
        Enc::new()
            .str(1, "cfg")
            .msg(2, Enc::new().msg(19, Enc::new().msg(1, Enc::new().str(1, "my-cm")).varint(3, 0o644))),
    );
    let got = decode(&envelope("v1", "Pod", Enc::new().msg(2, vols))).unwrap();
    assert_eq!(
        got["spec"]["volumes"],
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "my-cm", "defaultMode": 420}}
        ])
    );
}

#[test]
fn pointer_false_kept_plain_false_dropped() {
    let spec = Enc::new()
        .varint(11, 0) // hostNetwork bool
        .varint(21, 0) // automountServiceAccountToken *bool
        .int(4, 0) // terminationGracePeriodSeconds *int64
        .msg(14, Enc::new().int(2, 0).varint(3, 0)); // securityContext{runAsUser: 0, runAsNonRoot: false}
    let got = decode(&envelope("v1", "Pod", Enc::new().msg(2, spec))).unwrap();
    assert_eq!(
        got["spec"],
        json!({
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsUser": 0, "runAsNonRoot": false}
        })
    );
}

#[test]
fn packed_and_unpacked_repeated_ints() {
    let mut packed = Enc::new();
    packed.raw_varint(1000);
    packed.raw_varint(2000);
    let sc = Enc::new().bytes(4, &packed.0).varint(4, 3000); // supplementalGroups
    let got = decode(&envelope("v1", "Pod", Enc::new().msg(2, Enc::new().msg(14, sc)))).unwrap();
    assert_eq!(got["spec"]["securityContext"]["supplementalGroups"], json!([1000, 2000, 3000]));
}

#[test]
fn times_and_microtimes() {
    let meta = Enc::new().str(1, "l").msg(8, time(1_700_000_000, 123_456_789)); // nanos dropped
    let spec = Enc::new()
        .str(1, "holder")
        .varint(2, 0) // leaseDurationSeconds *int32 = 0
        .msg(3, time(1_700_000_000, 123_456_789)) // acquireTime MicroTime
        .msg(4, Enc::new()); // renewTime: empty → null → omitted
    let got = decode(&envelope("coordination.k8s.io/v1", "Lease", Enc::new().msg(1, meta).msg(2, spec))).unwrap();
    assert_eq!(got["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(
        got["spec"],
        json!({"holderIdentity": "holder", "leaseDurationSeconds": 0, "acquireTime": "2023-11-14T22:13:20.123456Z"})
    );
    // Go's zero time.Time → null → omitted.
    let meta = Enc::new().str(1, "x").msg(8, time(-62_135_596_800, 0));
    let got = decode(&envelope("v1", "ConfigMap", Enc::new().msg(1, meta))).unwrap();
    assert_eq!(got["metadata"], json!({"name": "x"}));
}

#[test]
fn binary_data_and_map_edge_cases() {
    let cm = Enc::new()
        .msg(1, go_meta("b"))
        .entry(2, "empty", "")
        .msg(2, Enc::new().str(1, "novalue"))
        .msg(3, Enc::new().str(1, "bin").bytes(2, &[0, 1, 2, 255]))
        .varint(4, 0); // immutable *bool = false
    let got = decode(&envelope("v1", "ConfigMap", cm)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"},
            "data": {"empty": "", "novalue": ""},
            "binaryData": {"bin": "AAEC/w=="},
            "immutable": false
        })
    );
}

#[test]
fn object_meta_owner_references_and_managed_fields() {
    let owner =
        Enc::new().str(1, "ReplicaSet").str(3, "rs").str(4, "uid-1").str(5, "apps/v1").varint(6, 1).varint(7, 0);
    let managed = Enc::new()
        .str(1, "kubectl")
        .str(2, "Update")
        .str(3, "v1")
        .msg(4, time(0, 0))
        .str(6, "FieldsV1")
        .msg(7, Enc::new().str(1, r#"{"f:data":{}}"#))
        .str(8, "");
    let meta = go_meta("m")
        .str(3, "ns")
        .entry(12, "a", "b")
        .msg(13, owner)
        .str(14, "example.com/f")
        .msg(17, managed)
        .int(10, 0);
    let got = decode(&envelope("v1", "ConfigMap", Enc::new().msg(1, meta))).unwrap_err();
    // `name`/`namespace` repeated: go_meta already wrote field 3.
    assert!(matches!(got, DecodeError::Malformed(ref m) if m.contains("appears more than once")), "{got}");

    let meta = Enc::new()
        .str(1, "m")
        .entry(12, "a", "b")
        .msg(13, Enc::new().str(1, "ReplicaSet").str(3, "rs").str(4, "uid-1").str(5, "apps/v1").varint(6, 1))
        .str(14, "example.com/f")
        .msg(
            17,
            Enc::new()
                .str(1, "kubectl")
                .str(2, "Update")
                .msg(4, time(0, 0))
                .msg(7, Enc::new().str(1, r#"{"f:data":{}}"#)),
        )
        .int(10, 0);
    let got = decode(&envelope("v1", "ConfigMap", Enc::new().msg(1, meta))).unwrap();
    assert_eq!(
        got["metadata"],
        json!({
            "name": "m",
            "annotations": {"a": "b"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "uid": "uid-1", "apiVersion": "apps/v1", "controller": true}],
            "finalizers": ["example.com/f"],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "time": "1970-01-01T00:00:00Z", "fieldsV1": {"f:data": {}}}],
            "deletionGracePeriodSeconds": 0
        })
    );
}

#[test]
fn non_omitempty_zero_scalars_are_emitted() {
    // ContainerStateTerminated.exitCode has no omitempty: 0 is meaningful.
    let terminated = Enc::new().varint(1, 0).varint(2, 0).str(3, "Completed");
    let status =
        Enc::new().msg(8, Enc::new().str(1, "c").msg(2, Enc::new().msg(3, terminated)).varint(4, 0).varint(5, 0));
    let got = decode(&envelope("v1", "Pod", Enc::new().msg(3, status))).unwrap();
    assert_eq!(
        got["status"]["containerStatuses"][0],
        json!({"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "ready": false, "restartCount": 0})
    );
}

#[test]
fn node_with_capacity_taints_and_addresses() {
    let spec = Enc::new()
        .str(1, "10.0.0.0/24")
        .str(3, "kind://n1")
        .varint(4, 1)
        .msg(5, Enc::new().str(1, "k").str(2, "").str(3, "NoSchedule"));
    let status = Enc::new()
        .msg(1, Enc::new().str(1, "cpu").msg(2, quantity("4")))
        .msg(5, Enc::new().str(1, "InternalIP").str(2, "10.0.0.5"));
    let got = decode(&envelope("v1", "Node", Enc::new().msg(1, go_meta("n1")).msg(2, spec).msg(3, status))).unwrap();
    assert_eq!(
        got["spec"],
        json!({"podCIDR": "10.0.0.0/24", "providerID": "kind://n1", "unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]})
    );
    assert_eq!(
        got["status"],
        json!({"capacity": {"cpu": "4"}, "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]})
    );
}

#[test]
fn delete_options_under_any_group_version() {
    let opts = Enc::new().int(1, 0).str(4, "Foreground").str(5, "All").msg(2, Enc::new().str(1, "uid-9"));
    let got = decode(&envelope("apps/v1", "DeleteOptions", opts)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "apps/v1", "kind": "DeleteOptions",
            "gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "dryRun": ["All"],
            "preconditions": {"uid": "uid-9"}
        })
    );
}

#[test]
fn events_v1_event_with_microtime_and_series() {
    let ev = Enc::new()
        .msg(1, go_meta("e"))
        .msg(2, time(1_700_000_000, 5_000))
        .msg(3, Enc::new().varint(1, 2).msg(2, time(1_700_000_001, 0)))
        .str(4, "kubelet")
        .str(7, "Pulled")
        .msg(8, Enc::new().str(1, "Pod").str(3, "p"))
        .str(11, "Normal")
        .varint(15, 0);
    let got = decode(&envelope("events.k8s.io/v1", "Event", ev)).unwrap();
    assert_eq!(got["eventTime"], "2023-11-14T22:13:20.000005Z");
    assert_eq!(got["series"], json!({"count": 2, "lastObservedTime": "2023-11-14T22:13:21.000000Z"}));
    assert_eq!(got["regarding"], json!({"kind": "Pod", "name": "p"}));
    assert_eq!(got["type"], "Normal");
    assert!(got.get("deprecatedCount").is_none());
}

#[test]
fn service_full_spec_and_status() {
    let spec = Enc::new()
        .msg(
            1,
            Enc::new()
                .str(1, "https")
                .str(2, "TCP")
                .varint(3, 443)
                .msg(4, int_or_string_str("web"))
                .varint(5, 30443)
                .str(6, "kubernetes.io/h2c"),
        )
        .entry(2, "app", "web")
        .str(3, "10.0.0.10")
        .str(4, "LoadBalancer")
        .str(5, "1.2.3.4")
        .str(7, "ClientIP")
        .str(9, "0.0.0.0/0")
        .str(11, "Local")
        .varint(12, 32000)
        .varint(13, 1)
        .msg(14, Enc::new().msg(1, Enc::new().varint(1, 0)))
        .str(17, "SingleStack")
        .str(18, "10.0.0.10")
        .str(19, "IPv4")
        .varint(20, 0)
        .str(21, "example.com/lb")
        .str(22, "Cluster")
        .str(23, "PreferClose");
    let status = Enc::new().msg(1, Enc::new().msg(1, Enc::new().str(1, "5.6.7.8").str(2, "").str(3, "VIP")));
    let got = decode(&envelope("v1", "Service", Enc::new().msg(1, go_meta("s")).msg(2, spec).msg(3, status))).unwrap();
    assert_eq!(
        got["spec"],
        json!({
            "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": "web", "nodePort": 30443, "appProtocol": "kubernetes.io/h2c"}],
            "selector": {"app": "web"}, "clusterIP": "10.0.0.10", "type": "LoadBalancer",
            "externalIPs": ["1.2.3.4"], "sessionAffinity": "ClientIP", "loadBalancerSourceRanges": ["0.0.0.0/0"],
            "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000, "publishNotReadyAddresses": true,
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}},
            "ipFamilyPolicy": "SingleStack", "clusterIPs": ["10.0.0.10"], "ipFamilies": ["IPv4"],
            "allocateLoadBalancerNodePorts": false, "loadBalancerClass": "example.com/lb",
            "internalTrafficPolicy": "Cluster", "trafficDistribution": "PreferClose"
        })
    );
    assert_eq!(got["status"], json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8", "ipMode": "VIP"}]}}));
}

#[test]
fn scheduling_affinity_tolerations_and_spread() {
    let selector =
        Enc::new().entry(1, "app", "db").msg(2, Enc::new().str(1, "tier").str(2, "In").str(3, "a").str(3, "b"));
    let node_affinity =
        Enc::new().msg(1, Enc::new().msg(1, Enc::new().msg(1, Enc::new().str(1, "zone").str(2, "Exists"))));
    let anti = Enc::new()
        .msg(2, Enc::new().varint(1, 50).msg(2, Enc::new().msg(1, selector.clone()).str(3, "kubernetes.io/hostname")));
    let spec = Enc::new()
        .msg(18, Enc::new().msg(1, node_affinity).msg(3, anti))
        .msg(22, Enc::new().str(1, "k").str(2, "Exists").str(3, "").str(4, "NoExecute").int(5, 0))
        .msg(33, Enc::new().varint(1, 1).str(2, "zone").str(3, "DoNotSchedule").msg(4, selector))
        .str(24, "high")
        .int(25, -5);
    let got = decode(&envelope("v1", "Pod", Enc::new().msg(2, spec))).unwrap();
    let sel = json!({"matchLabels": {"app": "db"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
    assert_eq!(
        got["spec"],
        json!({
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]}},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {"labelSelector": sel, "topologyKey": "kubernetes.io/hostname"}}]}
            },
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": sel}],
            "priorityClassName": "high",
            "priority": -5
        })
    );
}

#[test]
fn namespace_status_conditions_and_endpoints() {
    let ns = Enc::new().msg(1, go_meta("n")).msg(2, Enc::new().str(1, "kubernetes")).msg(
        3,
        Enc::new()
            .str(1, "Terminating")
            .msg(2, Enc::new().str(1, "NamespaceDeletionDiscoveryFailure").str(2, "False").msg(4, time(86_400, 0))),
    );
    assert_eq!(
        decode(&envelope("v1", "Namespace", ns)).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating", "conditions": [{"type": "NamespaceDeletionDiscoveryFailure", "status": "False", "lastTransitionTime": "1970-01-02T00:00:00Z"}]}
        })
    );
    let subset = Enc::new()
        .msg(1, Enc::new().str(1, "10.1.0.4").msg(2, Enc::new().str(1, "Pod").str(3, "p")).str(4, "n1"))
        .msg(3, Enc::new().str(1, "").varint(2, 80).str(3, "TCP"));
    let got = decode(&envelope("v1", "Endpoints", Enc::new().msg(1, go_meta("svc")).msg(2, subset))).unwrap();
    assert_eq!(
        got["subsets"],
        json!([{"addresses": [{"ip": "10.1.0.4", "targetRef": {"kind": "Pod", "name": "p"}, "nodeName": "n1"}], "ports": [{"port": 80, "protocol": "TCP"}]}])
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn unknown_field_is_an_error() {
    let spec = Enc::new().str(57, "x");
    let err = decode(&envelope("v1", "Pod", Enc::new().msg(2, spec))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protobuf field 57 of io.k8s.api.core.v1.PodSpec is not supported; send application/json"
    );
    let err = decode(&envelope("v1", "ConfigMap", Enc::new().varint(99, 1))).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedField { field: 99, .. }));
}

#[test]
fn unsupported_kind_is_an_error() {
    let err = decode(&envelope("apps/v1", "StatefulSet", Enc::new())).unwrap_err();
    assert_eq!(err.to_string(), "unsupported protobuf kind apps/v1 StatefulSet; send application/json");
}

#[test]
fn envelope_errors() {
    assert!(decode(b"").unwrap_err().to_string().contains("magic"));
    assert!(decode(b"{\"kind\":\"ConfigMap\"}").is_err());
    // Missing typeMeta.
    let err = decode(&[MAGIC.as_slice(), &Enc::new().bytes(2, b"").0].concat()).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)));
    // Compressed content.
    let mut body = MAGIC.to_vec();
    body.extend(Enc::new().msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap")).str(3, "gzip").0);
    assert!(matches!(decode(&body).unwrap_err(), DecodeError::UnsupportedEnvelope { .. }));
}

#[test]
fn wire_errors() {
    // Wrong wire type for a string field.
    let err = decode(&envelope("v1", "ConfigMap", Enc::new().msg(1, Enc::new().varint(1, 5)))).unwrap_err();
    assert!(err.to_string().contains("expected length-delimited"), "{err}");
    // Group wire type.
    let mut e = Enc::new();
    e.key(1, 3);
    let err = decode(&envelope("v1", "ConfigMap", e)).unwrap_err();
    assert!(err.to_string().contains("group"), "{err}");
    // Varint longer than 10 bytes.
    let mut e = Enc::new();
    e.key(4, 0);
    e.0.extend([0xff; 11]);
    assert!(decode(&envelope("v1", "ConfigMap", e)).is_err());
    // Invalid UTF-8 in a string.
    let err =
        decode(&envelope("v1", "ConfigMap", Enc::new().entry(2, "k", "v").bytes(2, &[0x0a, 1, 0xff]))).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
    // Unknown IntOrString type, invalid raw JSON.
    let port = Enc::new().msg(1, Enc::new().varint(3, 80).msg(4, Enc::new().varint(1, 7)));
    assert!(decode(&envelope("v1", "Service", Enc::new().msg(2, port))).is_err());
    let mf = Enc::new().msg(17, Enc::new().msg(7, Enc::new().str(1, "{not json")));
    assert!(decode(&envelope("v1", "ConfigMap", Enc::new().msg(1, mf))).is_err());
}

#[test]
fn truncated_fixtures_never_panic_and_mostly_fail() {
    for fixture in FIXTURES {
        assert!(decode(fixture).is_ok());
        for cut in 0..fixture.len() {
            let result = decode(&fixture[..cut]);
            // Cutting only the trailing empty contentEncoding/contentType
            // fields still leaves a complete envelope.
            if cut + 4 < fixture.len() {
                assert!(result.is_err(), "prefix of {cut} bytes decoded");
            }
        }
    }
}

#[test]
fn random_garbage_and_bit_flips_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let len = (rng.next() % 200) as usize;
        let mut body = MAGIC.to_vec();
        body.extend((0..len).map(|_| rng.next() as u8));
        let _ = decode(&body);
        // Garbage as the typed object of a supported kind.
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = decode(&envelope("v1", "Pod", Enc(raw)));
    }
    for fixture in FIXTURES {
        for _ in 0..500 {
            let mut body = fixture.to_vec();
            let i = 4 + (rng.next() as usize) % (body.len() - 4);
            body[i] ^= 1 << (rng.next() % 8);
            let _ = decode(&body);
        }
    }
}

#[test]
fn priority_class_as_kubectl_create_sends_it() {
    let raw = Enc::new().msg(1, go_meta("high")).int(2, 0).str(4, "for important pods").str(5, "Never");
    let got = decode(&envelope("scheduling.k8s.io/v1", "PriorityClass", raw)).unwrap();
    assert_eq!(got["value"], 0, "value is always present, as Go's JSON has no omitempty for it");
    assert_eq!(got["description"], "for important pods");
    assert_eq!(got["preemptionPolicy"], "Never");
    assert!(got.get("globalDefault").is_none());
}
