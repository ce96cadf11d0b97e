//! Behaviour of the public API: valid objects pass, each rule fails at upstream's field path
//! with upstream's cause type, updates respect immutability, defaults are idempotent.

use serde_json::{json, Value};

use super::*;
use crate::status::{Cause, CauseType};

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.27",
                "ports": [{"name": "http", "containerPort": 80}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"port": "http"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
    apply_defaults(group, kind, &mut obj);
    obj
}

fn create(group: &str, kind: &str, obj: Value) -> Vec<Cause> {
    validate_create(group, kind, &defaulted(group, kind, obj))
}

fn has(causes: &[Cause], kind: CauseType, field: &str) -> bool {
    causes.iter().any(|c| c.kind == Some(kind) && c.field == field)
}

#[track_caller]
fn assert_cause(causes: &[Cause], kind: CauseType, field: &str) {
    assert!(has(causes, kind, field), "expected {kind:?} at {field}, got {causes:#?}");
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}
            }
        }
    })
}

fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    })
}

// ---- names and metadata ----

#[test]
fn name_helpers_match_upstream_wording() {
    assert!(is_dns1123_subdomain("example.com").is_ok());
    assert_eq!(
        is_dns1123_subdomain("Bad_Name").unwrap_err(),
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    assert_eq!(is_dns1123_label("a.b").unwrap_err(), "must not contain dots");
    assert!(is_dns1123_label(&"a".repeat(64)).unwrap_err().contains("must be no more than 63 characters"));
    assert!(is_dns1035_label("1abc").is_err());
    assert!(is_qualified_name("example.com/MyName").is_ok());
    assert!(is_qualified_name("a/b/c").unwrap_err().starts_with("a qualified name must consist"));
    assert!(is_qualified_name("/x").unwrap_err().contains("prefix part must be non-empty"));
    assert!(is_valid_label_value("").is_ok());
    assert!(is_valid_label_value("-bad").is_err());
    assert!(is_config_map_key("..x").is_err());
    assert!(is_valid_port_name("http").is_ok());
    assert!(is_valid_port_name("8080").is_err());
    assert!(is_valid_ip("010.1.1.1").is_ok());
    assert!(is_valid_ip("2001:db8::1").is_ok());
    assert!(is_valid_cidr("10.0.0.0/33").is_err());
}

#[test]
fn valid_pod_passes() {
    assert_eq!(create("", "Pod", pod()), vec![]);
}

#[test]
fn name_is_required_and_formatted() {
    let mut p = pod();
    p["metadata"]["name"] = json!("");
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueRequired, "metadata.name");
    assert!(c[0].message.contains("name or generateName is required"));

    let mut p = pod();
    p["metadata"]["name"] = json!("Web_1");
    assert_cause(&create("", "Pod", p), CauseType::FieldValueInvalid, "metadata.name");
}

#[test]
fn namespace_scope_is_enforced() {
    let mut p = pod();
    p["metadata"].as_object_mut().unwrap().remove("namespace");
    assert_cause(&create("", "Pod", p), CauseType::FieldValueRequired, "metadata.namespace");

    let ns = json!({"metadata": {"name": "team-a", "namespace": "default"}});
    assert_cause(&create("", "Namespace", ns), CauseType::FieldValueForbidden, "metadata.namespace");
    assert_eq!(is_namespaced("", "Node"), Some(false));
    assert_eq!(is_namespaced("apps", "Deployment"), Some(true));
}

#[test]
fn namespace_and_service_names_are_labels() {
    let c = create("", "Namespace", json!({"metadata": {"name": "team.a"}}));
    assert_cause(&c, CauseType::FieldValueInvalid, "metadata.name");
    let mut s = service();
    s["metadata"]["name"] = json!("1web");
    let c = create("", "Service", s);
    assert_cause(&c, CauseType::FieldValueInvalid, "metadata.name");
    assert!(c[0].message.contains("DNS-1035 label"));
}

#[test]
fn labels_and_annotations_are_checked() {
    let mut p = pod();
    p["metadata"]["labels"] = json!({"bad key": "x", "ok": "bad value!"});
    let c = create("", "Pod", p);
    assert_eq!(c.iter().filter(|c| c.field == "metadata.labels").count(), 2);
    assert!(c.iter().all(|c| c.kind == Some(CauseType::FieldValueInvalid)));

    let mut p = pod();
    p["metadata"]["annotations"] = json!({"big": "x".repeat(256 * 1024)});
    assert_cause(&create("", "Pod", p), CauseType::FieldValueTooLong, "metadata.annotations");
}

#[test]
fn owner_references_and_finalizers() {
    let mut p = pod();
    p["metadata"]["ownerReferences"] = json!([
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
        {"apiVersion": "apps/", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}
    ]);
    p["metadata"]["finalizers"] = json!(["custom", "orphan", "foregroundDeletion"]);
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueInvalid, "metadata.ownerReferences.apiVersion");
    assert!(c.iter().any(|c| c.message.contains("Only one reference can have Controller set to true")));
    assert_cause(&c, CauseType::FieldValueInvalid, "metadata.finalizers[0]");
    assert!(c.iter().any(|c| c.message.contains("cannot be both set")));
}

// ---- pods ----

#[test]
fn pod_needs_containers_with_images() {
    let mut p = pod();
    p["spec"]["containers"] = json!([]);
    assert_cause(&create("", "Pod", p), CauseType::FieldValueRequired, "spec.containers");

    let mut p = pod();
    p["spec"]["containers"][0]["image"] = json!("");
    assert_cause(&create("", "Pod", p), CauseType::FieldValueRequired, "spec.containers[0].image");
}

#[test]
fn container_names_are_unique_labels() {
    let mut p = pod();
    p["spec"]["initContainers"] = json!([{"name": "nginx", "image": "busybox"}]);
    assert_cause(&create("", "Pod", p), CauseType::FieldValueDuplicate, "spec.initContainers[0].name");

    let mut p = pod();
    p["spec"]["containers"][0]["name"] = json!("Nginx");
    assert_cause(&create("", "Pod", p), CauseType::FieldValueInvalid, "spec.containers[0].name");
}

#[test]
fn container_ports_are_checked() {
    let mut p = pod();
    p["spec"]["containers"][0]["ports"] = json!([
        {"name": "http", "containerPort": 70000},
        {"name": "http", "containerPort": 81, "protocol": "HTTP"}
    ]);
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.containers[0].ports[0].containerPort");
    assert_cause(&c, CauseType::FieldValueDuplicate, "spec.containers[0].ports[1].name");
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.containers[0].ports[1].protocol");
}

#[test]
fn env_names_and_sources() {
    let mut p = pod();
    p["spec"]["containers"][0]["env"] = json!([
        {"name": "A=B", "value": "x"},
        {"name": "", "value": "x"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeNamez"}}},
        {"name": "BOTH", "value": "v", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    ]);
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.containers[0].env[0].name");
    assert_cause(&c, CauseType::FieldValueRequired, "spec.containers[0].env[1].name");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.containers[0].env[2].valueFrom.fieldRef.fieldPath");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.containers[0].env[3].valueFrom");
}

#[test]
fn volumes_need_one_source_and_unique_names() {
    let mut p = pod();
    p["spec"]["volumes"] = json!([
        {"name": "data", "emptyDir": {}},
        {"name": "data", "emptyDir": {}},
        {"name": "two", "emptyDir": {}, "hostPath": {"path": "/tmp"}}
    ]);
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueDuplicate, "spec.volumes[1].name");
    assert_cause(&c, CauseType::FieldValueForbidden, "spec.volumes[2].hostPath");
}

#[test]
fn volume_mounts_must_reference_volumes() {
    let mut p = pod();
    p["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "missing", "mountPath": "/a"},
        {"name": "data", "mountPath": "/a"},
        {"name": "data", "mountPath": "/b", "subPath": "../etc"}
    ]);
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueNotFound, "spec.containers[0].volumeMounts[0].name");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.containers[0].volumeMounts[1].mountPath");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.containers[0].volumeMounts[2].subPath");
}

#[test]
fn policies_must_be_known() {
    let mut p = pod();
    p["spec"]["restartPolicy"] = json!("Sometimes");
    p["spec"]["dnsPolicy"] = json!("Google");
    p["spec"]["containers"][0]["imagePullPolicy"] = json!("Maybe");
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.restartPolicy");
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.dnsPolicy");
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.containers[0].imagePullPolicy");
}

#[test]
fn requests_may_not_exceed_limits() {
    let mut p = pod();
    p["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}});
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.containers[0].resources.requests");
    assert!(c[0].message.contains("must be less than or equal to cpu limit of 1500m"), "{c:?}");
}

#[test]
fn quantities_and_resource_names_are_checked() {
    let mut p = pod();
    p["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": "lots", "gpu": "1", "example.com/dongle": "0.5"}});
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.containers[0].resources.limits[cpu]");
    assert!(c.iter().any(|c| c.message.contains("quantities must match the regular expression")));
    assert!(c
        .iter()
        .any(|c| c.field.ends_with("limits[gpu]") && c.message.contains("must be a standard resource for containers")));
    assert!(c
        .iter()
        .any(|c| c.field.ends_with("limits[example.com/dongle]") && c.message.contains("must be an integer")));
}

#[test]
fn probes_need_exactly_one_handler() {
    let mut p = pod();
    p["spec"]["containers"][0]["livenessProbe"] = json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}});
    p["spec"]["containers"][0]["readinessProbe"] = json!({"periodSeconds": 5});
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueForbidden, "spec.containers[0].livenessProbe.tcpSocket");
    assert_cause(&c, CauseType::FieldValueRequired, "spec.containers[0].readinessProbe");
}

#[test]
fn termination_grace_period_and_deadline() {
    let mut p = pod();
    p["spec"]["terminationGracePeriodSeconds"] = json!(-1);
    p["spec"]["activeDeadlineSeconds"] = json!(0);
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.terminationGracePeriodSeconds");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.activeDeadlineSeconds");
}

#[test]
fn node_selector_and_tolerations() {
    let mut p = pod();
    p["spec"]["nodeSelector"] = json!({"disk type": "ssd"});
    p["spec"]["tolerations"] = json!([
        {"key": "", "operator": "Equal", "value": "x"},
        {"key": "k", "operator": "Exists", "effect": "NoRun"},
        {"key": "k", "operator": "Maybe"},
        {"key": "k", "operator": "Exists", "tolerationSeconds": 5, "effect": "NoSchedule"}
    ]);
    let c = create("", "Pod", p);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.nodeSelector");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.tolerations[0].operator");
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.tolerations[1].effect");
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.tolerations[2].operator");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.tolerations[3].effect");
}

#[test]
fn ephemeral_containers_cannot_be_created() {
    let mut p = pod();
    p["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
    assert_cause(&create("", "Pod", p), CauseType::FieldValueForbidden, "spec.ephemeralContainers");
}

// ---- pod updates ----

#[test]
fn pod_update_allows_image_change() {
    let old = defaulted("", "Pod", pod());
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    assert_eq!(validate_update("", "Pod", &new, &old), vec![]);
}

#[test]
fn pod_update_rejects_other_spec_changes() {
    let old = defaulted("", "Pod", pod());
    let mut new = old.clone();
    new["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(8080);
    let c = validate_update("", "Pod", &new, &old);
    assert_cause(&c, CauseType::FieldValueForbidden, "spec");
    assert!(c[0]
        .message
        .starts_with("Forbidden: pod updates may not change fields other than `spec.containers[*].image`"));
    assert!(c[0].message.contains("containers[0].ports[0].containerPort"));
}

#[test]
fn pod_update_container_count_and_deadline() {
    let old = defaulted("", "Pod", pod());
    let mut new = old.clone();
    new["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "b", "image": "b"}));
    assert_cause(&validate_update("", "Pod", &new, &old), CauseType::FieldValueForbidden, "spec.containers");

    let mut old2 = old.clone();
    old2["spec"]["activeDeadlineSeconds"] = json!(100);
    let mut new2 = old2.clone();
    new2["spec"]["activeDeadlineSeconds"] = json!(50);
    assert_eq!(validate_update("", "Pod", &new2, &old2), vec![]);
    new2["spec"]["activeDeadlineSeconds"] = json!(200);
    assert_cause(&validate_update("", "Pod", &new2, &old2), CauseType::FieldValueInvalid, "spec.activeDeadlineSeconds");
}

#[test]
fn pod_update_tolerations_may_only_grow() {
    let old = defaulted("", "Pod", pod());
    let mut added = old.clone();
    added["spec"]["tolerations"].as_array_mut().unwrap().push(json!({"key": "gpu", "operator": "Exists"}));
    assert_eq!(validate_update("", "Pod", &added, &old), vec![]);

    let mut removed = old.clone();
    removed["spec"]["tolerations"] = json!([]);
    assert_cause(&validate_update("", "Pod", &removed, &old), CauseType::FieldValueForbidden, "spec.tolerations");
}

#[test]
fn metadata_identity_is_immutable() {
    let mut old = defaulted("", "Pod", pod());
    old["metadata"]["uid"] = json!("u1");
    old["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
    let mut new = old.clone();
    new["metadata"]["name"] = json!("other");
    new["metadata"]["uid"] = json!("u2");
    new["metadata"]["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
    let c = validate_update("", "Pod", &new, &old);
    for f in ["metadata.name", "metadata.uid", "metadata.creationTimestamp"] {
        assert_cause(&c, CauseType::FieldValueInvalid, f);
    }
    assert!(c.iter().any(|c| c.message.ends_with("field is immutable")));

    // Leaving server-owned fields out keeps the stored ones.
    let mut omitted = old.clone();
    omitted["metadata"].as_object_mut().unwrap().remove("uid");
    assert_eq!(validate_update("", "Pod", &omitted, &old), vec![]);
}

#[test]
fn no_new_finalizers_while_deleting() {
    let mut old = defaulted(
        "",
        "ConfigMap",
        json!({"metadata": {"name": "c", "namespace": "d", "deletionTimestamp": "2024-01-01T00:00:00Z"}}),
    );
    old["metadata"]["finalizers"] = json!(["example.com/a"]);
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!(["example.com/a", "example.com/b"]);
    let c = validate_update("", "ConfigMap", &new, &old);
    assert_cause(&c, CauseType::FieldValueForbidden, "metadata.finalizers");
}

#[test]
fn pod_status_update_checks_phase_and_conditions() {
    let old = defaulted("", "Pod", pod());
    let mut new = old.clone();
    new["status"] = json!({"phase": "Done", "conditions": [{"type": "Ready", "status": "Yes"}]});
    let c = validate_status_update("", "Pod", &new, &old);
    assert_cause(&c, CauseType::FieldValueNotSupported, "status.phase");
    assert_cause(&c, CauseType::FieldValueNotSupported, "status.conditions[0].status");

    new["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]});
    assert_eq!(validate_status_update("", "Pod", &new, &old), vec![]);
}

#[test]
fn terminated_containers_stay_terminated() {
    let mut old = defaulted("", "Pod", pod());
    old["spec"]["restartPolicy"] = json!("Never");
    old["status"] = json!({"containerStatuses": [{"name": "nginx", "state": {"terminated": {"exitCode": 0}}}]});
    let mut new = old.clone();
    new["status"]["containerStatuses"][0]["state"] = json!({"running": {}});
    let c = validate_status_update("", "Pod", &new, &old);
    assert_cause(&c, CauseType::FieldValueForbidden, "status.containerStatuses[0].state");
}

// ---- services and endpoints ----

#[test]
fn valid_services_pass() {
    assert_eq!(create("", "Service", service()), vec![]);
    let headless = json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {"clusterIP": "None", "selector": {"app": "db"}}});
    assert_eq!(create("", "Service", headless), vec![]);
    let ext = json!({"metadata": {"name": "ext", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "example.com."}});
    assert_eq!(create("", "Service", ext), vec![]);
    let np = json!({"metadata": {"name": "np", "namespace": "default"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
    assert_eq!(create("", "Service", np), vec![]);
}

#[test]
fn service_ports_are_checked() {
    let mut s = service();
    s["spec"]["ports"] =
        json!([{"port": 80}, {"name": "b", "port": 0, "targetPort": "Not-A-Name", "protocol": "HTTP"}]);
    let c = create("", "Service", s);
    assert_cause(&c, CauseType::FieldValueRequired, "spec.ports[0].name");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.ports[1].port");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.ports[1].targetPort");
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.ports[1].protocol");

    let mut s = service();
    s["spec"]["ports"] = json!([]);
    assert_cause(&create("", "Service", s), CauseType::FieldValueRequired, "spec.ports");
}

#[test]
fn service_type_affinity_and_cluster_ip() {
    let mut s = service();
    s["spec"]["type"] = json!("Magic");
    s["spec"]["sessionAffinity"] = json!("Cookie");
    s["spec"]["clusterIP"] = json!("10.0.0.300");
    let c = create("", "Service", s);
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.type");
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.sessionAffinity");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.clusterIP");

    let mut s = service();
    s["spec"]["ports"][0]["nodePort"] = json!(30000);
    assert_cause(&create("", "Service", s), CauseType::FieldValueForbidden, "spec.ports[0].nodePort");
}

#[test]
fn service_cluster_ip_is_immutable() {
    let mut old_raw = service();
    old_raw["spec"]["clusterIP"] = json!("10.96.0.10");
    let old = defaulted("", "Service", old_raw);
    let mut new = old.clone();
    new["spec"]["clusterIP"] = json!("10.96.0.11");
    new["spec"]["clusterIPs"] = json!(["10.96.0.11"]);
    let c = validate_update("", "Service", &new, &old);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.clusterIP");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.clusterIPs[0]");

    // Moving to ExternalName releases the IP.
    let ext = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}});
    assert_eq!(validate_update("", "Service", &ext, &old), vec![]);
}

#[test]
fn endpoints_are_checked() {
    let ok = json!({"metadata": {"name": "web", "namespace": "default"}, "subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 80}]}]});
    assert_eq!(create("", "Endpoints", ok), vec![]);
    let bad = json!({"metadata": {"name": "web", "namespace": "default"}, "subsets": [
        {"addresses": [{"ip": "127.0.0.1"}, {"ip": "nope"}], "ports": [{"port": 80}, {"port": 99999, "protocol": "TCP"}]},
        {"ports": [{"port": 80}]}
    ]});
    let c = create("", "Endpoints", bad);
    assert_cause(&c, CauseType::FieldValueInvalid, "subsets[0].addresses[0].ip");
    assert_cause(&c, CauseType::FieldValueInvalid, "subsets[0].addresses[1].ip");
    assert_cause(&c, CauseType::FieldValueRequired, "subsets[0].ports[0].name");
    assert_cause(&c, CauseType::FieldValueInvalid, "subsets[0].ports[1].port");
    assert_cause(&c, CauseType::FieldValueRequired, "subsets[1]");
}

// ---- configmaps and secrets ----

#[test]
fn config_map_keys_and_size() {
    let ok = json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"app.conf": "x", "KEY_1": "y"}});
    assert_eq!(create("", "ConfigMap", ok), vec![]);
    let bad = json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a b": "x", "big": "x".repeat(1024 * 1024 + 1)}});
    let c = create("", "ConfigMap", bad);
    assert_cause(&c, CauseType::FieldValueInvalid, "data[a b]");
    assert_cause(&c, CauseType::FieldValueTooLong, "");
}

#[test]
fn config_map_immutable_flag() {
    let old = json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "1"}, "immutable": true});
    let mut new = old.clone();
    new["data"]["a"] = json!("2");
    assert_cause(&validate_update("", "ConfigMap", &new, &old), CauseType::FieldValueForbidden, "data");
    let mut unset = old.clone();
    unset["immutable"] = json!(false);
    assert_cause(&validate_update("", "ConfigMap", &unset, &old), CauseType::FieldValueForbidden, "immutable");
}

#[test]
fn secret_data_must_be_base64() {
    let ok = json!({"metadata": {"name": "s", "namespace": "default"}, "data": {"password": "c2VjcmV0"}});
    assert_eq!(create("", "Secret", ok), vec![]);
    let bad = json!({"metadata": {"name": "s", "namespace": "default"}, "data": {"password": "not base64!"}});
    let c = create("", "Secret", bad);
    assert_cause(&c, CauseType::FieldValueInvalid, "data[password]");
    assert!(c[0].message.contains("illegal base64 data"), "{c:?}");
    assert!(!c[0].message.contains("not base64"), "secret contents must be redacted");
}

#[test]
fn secret_types_require_their_keys() {
    let tls = json!({"metadata": {"name": "s", "namespace": "default"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA=="}});
    assert_cause(&create("", "Secret", tls), CauseType::FieldValueRequired, "data[tls.key]");
    let docker = json!({"metadata": {"name": "s", "namespace": "default"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}});
    assert_cause(&create("", "Secret", docker), CauseType::FieldValueInvalid, "data[.dockerconfigjson]");
    let sa = json!({"metadata": {"name": "s", "namespace": "default"}, "type": "kubernetes.io/service-account-token"});
    assert_cause(
        &create("", "Secret", sa),
        CauseType::FieldValueRequired,
        "metadata.annotations[kubernetes.io/service-account.name]",
    );
}

#[test]
fn secret_type_is_immutable() {
    let old =
        defaulted("", "Secret", json!({"metadata": {"name": "s", "namespace": "default"}, "data": {"a": "YQ=="}}));
    let mut new = old.clone();
    new["type"] = json!("kubernetes.io/basic-auth");
    new["data"] = json!({"username": "dQ=="});
    assert_cause(&validate_update("", "Secret", &new, &old), CauseType::FieldValueInvalid, "type");
}

// ---- apps ----

#[test]
fn valid_deployment_and_replica_set_pass() {
    assert_eq!(create("apps", "Deployment", deployment()), vec![]);
    let mut rs = deployment();
    rs["kind"] = json!("ReplicaSet");
    assert_eq!(create("apps", "ReplicaSet", rs), vec![]);
}

#[test]
fn selector_must_match_template() {
    let mut d = deployment();
    d["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
    let c = create("apps", "Deployment", d);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.template.metadata.labels");
    assert!(c[0].message.ends_with("`selector` does not match template `labels`"));

    let mut d = deployment();
    d["spec"].as_object_mut().unwrap().remove("selector");
    assert_cause(&create("apps", "Deployment", d), CauseType::FieldValueRequired, "spec.selector");

    let mut d = deployment();
    d["spec"]["selector"] = json!({});
    assert_cause(&create("apps", "Deployment", d), CauseType::FieldValueInvalid, "spec.selector");
}

#[test]
fn deployment_spec_rules() {
    let mut d = deployment();
    d["spec"]["replicas"] = json!(-1);
    d["spec"]["revisionHistoryLimit"] = json!(-2);
    d["spec"]["minReadySeconds"] = json!(700);
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
    let c = create("apps", "Deployment", d);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.replicas");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.revisionHistoryLimit");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.progressDeadlineSeconds");
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.template.spec.restartPolicy");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.strategy.rollingUpdate.maxUnavailable");

    let mut d = deployment();
    d["spec"]["strategy"] = json!({"type": "Blue"});
    assert_cause(&create("apps", "Deployment", d), CauseType::FieldValueNotSupported, "spec.strategy");
    let mut d = deployment();
    d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {}});
    assert_cause(&create("apps", "Deployment", d), CauseType::FieldValueForbidden, "spec.strategy.rollingUpdate");
}

#[test]
fn template_pod_spec_paths_are_nested() {
    let mut d = deployment();
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
    d["spec"]["template"]["metadata"]["labels"]["bad key"] = json!("x");
    let c = create("apps", "Deployment", d);
    assert_cause(&c, CauseType::FieldValueRequired, "spec.template.spec.containers[0].image");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.template.labels");
}

#[test]
fn deployment_selector_is_immutable() {
    let old = defaulted("apps", "Deployment", deployment());
    let mut new = old.clone();
    new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "tier": "fe"}});
    new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("fe");
    let c = validate_update("apps", "Deployment", &new, &old);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.selector");
    assert!(c[0].message.ends_with("field is immutable"));

    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    assert_eq!(validate_update("apps", "Deployment", &scaled, &old), vec![]);
}

#[test]
fn deployment_status_counts() {
    let old = defaulted("apps", "Deployment", deployment());
    let mut new = old.clone();
    new["status"] = json!({"replicas": 1, "readyReplicas": 2, "availableReplicas": -1});
    let c = validate_status_update("apps", "Deployment", &new, &old);
    assert_cause(&c, CauseType::FieldValueInvalid, "status.readyReplicas");
    assert_cause(&c, CauseType::FieldValueInvalid, "status.availableReplicas");
}

// ---- the other kinds ----

#[test]
fn lease_duration_must_be_positive() {
    let ok = json!({"metadata": {"name": "kube-scheduler", "namespace": "kube-system"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
    assert_eq!(create("coordination.k8s.io", "Lease", ok), vec![]);
    let bad = json!({"metadata": {"name": "l", "namespace": "kube-system"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
    let c = create("coordination.k8s.io", "Lease", bad);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.leaseDurationSeconds");
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.leaseTransitions");
}

#[test]
fn core_events_follow_legacy_rules() {
    let ok = json!({"metadata": {"name": "web.17a", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Started", "message": "ok"});
    assert_eq!(create("", "Event", ok.clone()), vec![]);
    let mut bad = ok.clone();
    bad["involvedObject"]["namespace"] = json!("other");
    assert_cause(&create("", "Event", bad), CauseType::FieldValueInvalid, "involvedObject.namespace");
    let mut new_style = ok;
    new_style["eventTime"] = json!("2024-01-01T00:00:00.000000Z");
    new_style["reason"] = json!("x".repeat(129));
    let c = create("", "Event", new_style);
    assert_cause(&c, CauseType::FieldValueRequired, "reportingController");
    assert_cause(&c, CauseType::FieldValueInvalid, "reason");
}

#[test]
fn events_v1_are_strict_and_immutable() {
    let ok = json!({
        "metadata": {"name": "web.17a", "namespace": "default"},
        "eventTime": "2024-01-01T00:00:00.000000Z",
        "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Started", "action": "Start", "type": "Normal", "note": "started",
        "reportingController": "example.com/ctl", "reportingInstance": "ctl-1"
    });
    assert_eq!(create("events.k8s.io", "Event", ok.clone()), vec![]);
    let mut bad = ok.clone();
    bad["type"] = json!("Info");
    bad["deprecatedCount"] = json!(3);
    let c = create("events.k8s.io", "Event", bad);
    assert_cause(&c, CauseType::FieldValueInvalid, "type");
    assert_cause(&c, CauseType::FieldValueInvalid, "count");
    let mut changed = ok.clone();
    changed["note"] = json!("changed");
    assert_cause(&validate_update("events.k8s.io", "Event", &changed, &ok), CauseType::FieldValueInvalid, "message");
}

#[test]
fn node_cidr_and_taints() {
    let ok = json!({"metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
    assert_eq!(create("", "Node", ok.clone()), vec![]);
    let bad = json!({"metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.244.0.0/99", "taints": [
        {"key": "a", "effect": "Sometimes"}, {"key": "b", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}
    ]}});
    let c = create("", "Node", bad);
    assert_cause(&c, CauseType::FieldValueInvalid, "spec.podCIDR");
    assert_cause(&c, CauseType::FieldValueNotSupported, "spec.taints[0].effect");
    assert_cause(&c, CauseType::FieldValueDuplicate, "spec.taints[2]");

    let mut moved = defaulted("", "Node", ok.clone());
    moved["spec"]["podCIDRs"] = json!(["10.245.0.0/24"]);
    moved["spec"]["podCIDR"] = json!("10.245.0.0/24");
    assert_cause(&validate_update("", "Node", &moved, &ok), CauseType::FieldValueForbidden, "spec.podCIDRs");
}

#[test]
fn service_account_and_unknown_kinds() {
    assert_eq!(create("", "ServiceAccount", json!({"metadata": {"name": "builder", "namespace": "ci"}})), vec![]);
    let c = create("rbac.authorization.k8s.io", "Role", json!({"metadata": {"name": "a/b", "namespace": "x"}}));
    assert_cause(&c, CauseType::FieldValueInvalid, "metadata.name");
    assert!(c[0].message.contains("may not contain '/'"));
}

#[test]
fn namespace_status_phase() {
    let old = defaulted("", "Namespace", json!({"metadata": {"name": "team-a"}}));
    let mut new = old.clone();
    new["status"]["phase"] = json!("Terminating");
    assert_cause(&validate_status_update("", "Namespace", &new, &old), CauseType::FieldValueInvalid, "status.phase");
}

// ---- defaults ----

#[test]
fn pod_defaults_match_upstream() {
    let mut p = pod();
    p["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "0.5", "memory": "1Gi"}});
    p["spec"]["containers"][0]["image"] = json!("nginx");
    p["spec"]["containers"][0]["livenessProbe"] = json!({"httpGet": {"port": 80}});
    let p = defaulted("", "Pod", p);
    let spec = &p["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    // Set by the Priority admission, from the pod's class.
    assert!(spec.get("priority").is_none() && spec.get("preemptionPolicy").is_none());
    assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
    let c = &spec["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(c["resources"]["requests"], json!({"cpu": "500m", "memory": "1Gi"}));
    assert_eq!(c["livenessProbe"]["timeoutSeconds"], 1);
    assert_eq!(c["livenessProbe"]["periodSeconds"], 10);
    assert_eq!(c["livenessProbe"]["successThreshold"], 1);
    assert_eq!(c["livenessProbe"]["failureThreshold"], 3);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/");
    assert_eq!(c["livenessProbe"]["httpGet"]["scheme"], "HTTP");
}

#[test]
fn image_pull_policy_follows_the_tag() {
    for (image, policy) in [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("localhost:5000/app", "Always"),
        ("registry.io/app@sha256:abc", "IfNotPresent"),
    ] {
        let mut p = pod();
        p["spec"]["containers"][0]["image"] = json!(image);
        let p = defaulted("", "Pod", p);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], policy, "{image}");
    }
}

#[test]
fn defaults_are_idempotent() {
    for (group, kind, obj) in [
        ("", "Pod", pod()),
        ("", "Service", service()),
        ("apps", "Deployment", deployment()),
        ("", "Namespace", json!({"metadata": {"name": "a"}})),
        ("", "Secret", json!({"metadata": {"name": "s", "namespace": "d"}, "stringData": {"k": "v"}})),
    ] {
        let once = defaulted(group, kind, obj);
        let twice = defaulted(group, kind, once.clone());
        assert_eq!(once, twice, "{kind}");
    }
}

#[test]
fn service_defaults() {
    let s = defaulted("", "Service", service());
    let spec = &s["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["ports"][0]["targetPort"], 80);
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert!(spec.get("externalTrafficPolicy").is_none());

    let lb = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.5", "ports": [{"port": 443, "targetPort": "https"}]}}),
    );
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(lb["spec"]["clusterIPs"], json!(["10.0.0.5"]));
    assert_eq!(lb["spec"]["ports"][0]["targetPort"], "https");

    let ext = defaulted("", "Service", json!({"spec": {"type": "ExternalName", "externalName": "x.io"}}));
    assert!(ext["spec"].get("ipFamilyPolicy").is_none());
}

#[test]
fn workload_defaults() {
    let d = defaulted("apps", "Deployment", deployment());
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    let tspec = &d["spec"]["template"]["spec"];
    assert_eq!(tspec["restartPolicy"], "Always");
    assert_eq!(tspec["containers"][0]["imagePullPolicy"], "Always");
    // Pod-only defaults stay out of templates.
    assert!(tspec.get("enableServiceLinks").is_none());
    assert!(tspec.get("tolerations").is_none());

    let mut raw = deployment();
    raw["kind"] = json!("ReplicaSet");
    raw["spec"]["replicas"] = json!(0);
    let rs = defaulted("apps", "ReplicaSet", raw);
    assert_eq!(rs["spec"]["replicas"], 0);
}

#[test]
fn secret_namespace_and_node_defaults() {
    let s =
        defaulted("", "Secret", json!({"metadata": {"name": "s", "namespace": "d"}, "stringData": {"user": "admin"}}));
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"]["user"], "YWRtaW4=");
    assert!(s.get("stringData").is_none());

    let ns = defaulted("", "Namespace", json!({"metadata": {"name": "team-a"}}));
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team-a");
    assert_eq!(create("", "Namespace", ns), vec![]);

    let node = defaulted(
        "",
        "Node",
        json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4", "memory": "8388608Ki"}}}),
    );
    assert_eq!(node["status"]["allocatable"], json!({"cpu": "4", "memory": "8Gi"}));
}

#[test]
fn volume_and_env_defaults() {
    let mut p = pod();
    p["spec"]["volumes"] = json!([{"name": "data"}, {"name": "cfg", "configMap": {"name": "c"}}]);
    p["spec"]["containers"][0]["env"] =
        json!([{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]);
    let p = defaulted("", "Pod", p);
    assert_eq!(p["spec"]["volumes"][0]["emptyDir"], json!({}));
    assert_eq!(p["spec"]["volumes"][1]["configMap"]["defaultMode"], 420);
    assert_eq!(p["spec"]["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    assert_eq!(validate_create("", "Pod", &p), vec![]);
}

#[test]
fn messages_render_like_upstream() {
    let mut p = pod();
    p["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(0);
    let c = create("", "Pod", p);
    let e = crate::status::StatusError::invalid("", "Pod", "web", c);
    assert_eq!(e.message, "Pod \"web\" is invalid: spec.containers[0].ports[0].containerPort: Required value");
    let mut d = deployment();
    d["spec"]["replicas"] = json!(-1);
    let c = create("apps", "Deployment", d);
    assert_eq!(c[0].message, "Invalid value: -1: must be greater than or equal to 0");
}

#[test]
fn replace_without_allocated_fields_is_accepted_after_carry_over() {
    let mut stored = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}});
    apply_defaults("", "Service", &mut stored);
    let manifest = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80}]}});

    let plain = defaulted("", "Service", manifest.clone());
    assert_cause(&validate_update("", "Service", &plain, &stored), CauseType::FieldValueInvalid, "spec.clusterIP");

    let mut carried = manifest;
    carry_over_for_update("", "Service", &mut carried, &stored);
    apply_defaults("", "Service", &mut carried);
    assert_eq!(carried["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(carried["metadata"]["uid"], "u1");
    assert_eq!(validate_update("", "Service", &carried, &stored), vec![]);
}

#[test]
fn carry_over_keeps_namespace_finalizers_and_status() {
    let mut stored = defaulted("", "Namespace", json!({"metadata": {"name": "team-a"}}));
    stored["status"]["phase"] = json!("Terminating");
    let mut new = json!({"metadata": {"name": "team-a"}, "spec": {"finalizers": []}});
    carry_over_for_update("", "Namespace", &mut new, &stored);
    assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(new["status"]["phase"], "Terminating");
}

#[test]
fn binding_assigns_a_node_once() {
    let old = defaulted("", "Pod", pod());
    let mut bound = old.clone();
    bound["spec"]["nodeName"] = json!("node-1");
    bound["status"] = json!({"conditions": [{"type": "PodScheduled", "status": "True"}]});
    assert_eq!(validate_status_update("", "Pod", &bound, &old), vec![]);
    let mut moved = bound.clone();
    moved["spec"]["nodeName"] = json!("node-2");
    assert_cause(&validate_status_update("", "Pod", &moved, &bound), CauseType::FieldValueForbidden, "status.nodeName");
}
