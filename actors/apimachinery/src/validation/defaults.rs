//! Defaulting as the API server applies it before validation (`pkg/apis/core/v1/defaults.go`,
//! `pkg/apis/apps/v1/defaults.go`), plus the few values upstream fills in create strategies
//! and default admission plugins (service IP families, namespace finalizer, not-ready/unreachable
//! tolerations) so stored objects look like a real cluster's. Every
//! step only fills what is missing, so applying defaults twice changes nothing.

use serde_json::{json, Map, Value};

use super::config::base64_encode;
use super::names;
use super::quantity;

/// Fills defaults in place. Unknown kinds and non-object values are left untouched.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    match (group, kind) {
        ("" | "core", "Pod") => default_pod(o),
        ("" | "core", "Service") => default_service(o),
        ("" | "core", "Endpoints") => default_endpoints(o),
        ("" | "core", "Secret") => default_secret(o),
        ("" | "core", "Namespace") => default_namespace(o),
        ("" | "core", "Node") => default_node(o),
        ("apps", "Deployment") => default_deployment(o),
        ("apps", "ReplicaSet") => default_replica_set(o),
        ("" | "core", "ReplicationController") => default_replication_controller(o),
        ("batch", "Job") => default_job(o),
        ("batch", "CronJob") => default_cron_job(o),
        ("apps", "DaemonSet") => default_daemon_set(o),
        ("apps", "StatefulSet") => default_stateful_set(o),
        ("" | "core", "PersistentVolume") => default_persistent_volume(o),
        ("" | "core", "PersistentVolumeClaim") => default_persistent_volume_claim(o),
        ("storage.k8s.io", "StorageClass") => default_storage_class(o),
        ("autoscaling", "HorizontalPodAutoscaler") => default_horizontal_pod_autoscaler(o),
        ("scheduling.k8s.io", "PriorityClass") => set_if_absent(o, "preemptionPolicy", json!("PreemptLowerPriority")),
        ("" | "core", "ResourceQuota") => default_resource_quota(o),
        ("" | "core", "LimitRange") => default_limit_range(o),
        _ => {}
    }
}

fn set_if_absent(m: &mut Map<String, Value>, k: &str, v: Value) {
    if m.get(k).is_none_or(|x| x.is_null() || x.as_str() == Some("")) {
        m.insert(k.to_string(), v);
    }
}

fn obj_mut<'a>(m: &'a mut Map<String, Value>, k: &str) -> &'a mut Map<String, Value> {
    if !m.get(k).is_some_and(Value::is_object) {
        m.insert(k.to_string(), Value::Object(Map::new()));
    }
    m.get_mut(k).and_then(Value::as_object_mut).expect("just inserted an object")
}

fn for_each_obj(m: &mut Map<String, Value>, k: &str, mut f: impl FnMut(&mut Map<String, Value>)) {
    if let Some(Value::Array(items)) = m.get_mut(k) {
        items.iter_mut().filter_map(Value::as_object_mut).for_each(&mut f);
    }
}

fn with_obj(m: &mut Map<String, Value>, k: &str, f: impl FnOnce(&mut Map<String, Value>)) {
    if let Some(x) = m.get_mut(k).and_then(Value::as_object_mut) {
        f(x);
    }
}

/// Quantities are stored in canonical form, rounded up to milli-units ("1.5" -> "1500m").
fn canonical_quantities(list: &mut Map<String, Value>) {
    for v in list.values_mut() {
        if let Ok(q) = quantity::parse_quantity_value(v) {
            *v = Value::String(q.canonical());
        }
    }
}

fn default_pod(pod: &mut Map<String, Value>) {
    let spec = obj_mut(pod, "spec");
    default_pod_spec(spec);
    // What upstream's ServiceAccount admission plugin does: every pod runs as a service
    // account, `default` unless it names one (the deprecated `serviceAccount` follows).
    let sa = spec
        .get("serviceAccountName")
        .or_else(|| spec.get("serviceAccount"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa));
    spec.insert("serviceAccount".into(), json!(sa));
    // Pod-only defaults: templates keep these unset so controllers stamp them per pod.
    for field in ["containers", "initContainers"] {
        for_each_obj(spec, field, |c| {
            let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) else {
                return;
            };
            let limits = res.get("limits").and_then(Value::as_object).cloned();
            if let Some(limits) = limits.filter(|l| !l.is_empty()) {
                let requests = obj_mut(res, "requests");
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
        });
    }
    set_if_absent(spec, "enableServiceLinks", Value::Bool(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for field in ["containers", "initContainers"] {
            for_each_obj(spec, field, |c| {
                for_each_obj(c, "ports", |p| {
                    let cp = p.get("containerPort").cloned();
                    if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                        if let Some(cp) = cp {
                            p.insert("hostPort".into(), cp);
                        }
                    }
                });
            });
        }
    }
    // priority and preemptionPolicy come from the pod's PriorityClass, in the API server's
    // Priority admission (pods only: templates keep neither, as upstream's).
    default_toleration_seconds(spec);
}

/// The DefaultTolerationSeconds admission plugin: evict from not-ready or unreachable nodes
/// after five minutes unless the pod says otherwise.
fn default_toleration_seconds(spec: &mut Map<String, Value>) {
    let taints = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];
    let existing: Vec<Value> = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let tolerates = |t: &Value, taint: &str| {
        let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("");
        let effect_ok = s("effect").is_empty() || s("effect") == "NoExecute";
        let key_ok = match s("operator") {
            "Exists" => s("key").is_empty() || s("key") == taint,
            "" | "Equal" => s("key") == taint && s("value").is_empty(),
            _ => false,
        };
        effect_ok && key_ok
    };
    let mut added = Vec::new();
    for taint in taints {
        if !existing.iter().any(|t| tolerates(t, taint)) {
            added.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }));
        }
    }
    if !added.is_empty() {
        let mut all = existing;
        all.extend(added);
        spec.insert("tolerations".into(), Value::Array(all));
    }
}

/// `SetDefaults_PodSpec` and everything nested in it; shared by pods and templates.
pub(crate) fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_if_absent(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_absent(spec, "restartPolicy", json!("Always"));
    if spec.get("securityContext").is_none_or(Value::is_null) {
        spec.insert("securityContext".into(), json!({}));
    }
    set_if_absent(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_absent(spec, "schedulerName", json!("default-scheduler"));
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        for_each_obj(spec, field, default_container);
    }
    for_each_obj(spec, "volumes", default_volume);
    with_obj(spec, "resources", |r| {
        for list in ["limits", "requests"] {
            with_obj(r, list, canonical_quantities);
        }
    });
    with_obj(spec, "overhead", canonical_quantities);
}

/// Images tagged `latest`, or not tagged at all, are re-pulled every time.
fn image_pulls_always(image: &str) -> bool {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => digest.is_none() && !image.is_empty(),
    }
}

fn default_container(c: &mut Map<String, Value>) {
    if c.get("imagePullPolicy").is_none_or(|v| v.as_str().unwrap_or("").is_empty()) {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_pulls_always(image) { "Always" } else { "IfNotPresent" };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    set_if_absent(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_if_absent(c, "terminationMessagePolicy", json!("File"));
    for_each_obj(c, "ports", |p| set_if_absent(p, "protocol", json!("TCP")));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        with_obj(c, probe, |p| {
            for (k, v) in
                [("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)]
            {
                if p.get(k).and_then(Value::as_i64).unwrap_or(0) == 0 {
                    p.insert(k.into(), json!(v));
                }
            }
            default_handler(p);
        });
    }
    with_obj(c, "lifecycle", |lc| {
        for hook in ["postStart", "preStop"] {
            with_obj(lc, hook, default_handler);
        }
    });
    for_each_obj(c, "env", |e| {
        with_obj(e, "valueFrom", |vf| {
            with_obj(vf, "fieldRef", |fr| set_if_absent(fr, "apiVersion", json!("v1")));
        });
    });
    with_obj(c, "resources", |r| {
        for list in ["limits", "requests"] {
            with_obj(r, list, canonical_quantities);
        }
    });
}

fn default_handler(h: &mut Map<String, Value>) {
    with_obj(h, "httpGet", |g| {
        set_if_absent(g, "path", json!("/"));
        set_if_absent(g, "scheme", json!("HTTP"));
    });
    with_obj(h, "grpc", |g| {
        if g.get("service").is_none_or(Value::is_null) {
            g.insert("service".into(), json!(""));
        }
    });
}

fn default_volume(v: &mut Map<String, Value>) {
    // A volume without any source is an empty directory.
    let has_source = v.iter().any(|(k, x)| k != "name" && !x.is_null());
    if !has_source {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        with_obj(v, source, |s| {
            if s.get("defaultMode").is_none_or(Value::is_null) {
                s.insert("defaultMode".into(), json!(0o644));
            }
        });
    }
    with_obj(v, "hostPath", |h| {
        if h.get("type").is_none_or(Value::is_null) {
            h.insert("type".into(), json!(""));
        }
    });
    with_obj(v, "emptyDir", |e| {
        if let Some(q) = e.get("sizeLimit").and_then(|x| quantity::parse_quantity_value(x).ok()) {
            e.insert("sizeLimit".into(), json!(q.canonical()));
        }
    });
    with_obj(v, "downwardAPI", |d| {
        for_each_obj(d, "items", |item| {
            with_obj(item, "fieldRef", |fr| set_if_absent(fr, "apiVersion", json!("v1")));
        });
    });
    with_obj(v, "projected", |p| {
        for_each_obj(p, "sources", |s| {
            with_obj(s, "serviceAccountToken", |t| {
                if t.get("expirationSeconds").is_none_or(Value::is_null) {
                    t.insert("expirationSeconds".into(), json!(3600));
                }
            });
            with_obj(s, "downwardAPI", |d| {
                for_each_obj(d, "items", |item| {
                    with_obj(item, "fieldRef", |fr| set_if_absent(fr, "apiVersion", json!("v1")));
                });
            });
        });
    });
}

fn default_service(svc: &mut Map<String, Value>) {
    let spec = obj_mut(svc, "spec");
    set_if_absent(spec, "sessionAffinity", json!("None"));
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec.insert("sessionAffinityConfig".into(), json!({"clientIP": {"timeoutSeconds": 10800}}));
            }
        }
        _ => {}
    }
    set_if_absent(spec, "type", json!("ClusterIP"));
    for_each_obj(spec, "ports", |p| {
        set_if_absent(p, "protocol", json!("TCP"));
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(n) => n.as_i64() == Some(0),
        };
        if unset {
            if let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".into(), port);
            }
        }
    });
    let svc_type = spec.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let has_external_ips = spec.get("externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let externally_accessible =
        matches!(svc_type.as_str(), "LoadBalancer" | "NodePort") || (svc_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        set_if_absent(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(svc_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_if_absent(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        set_if_absent(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if svc_type != "ExternalName" {
        default_service_ips(spec);
    }
    if svc_type == "LoadBalancer" {
        with_obj(svc, "status", |st| {
            with_obj(st, "loadBalancer", |lb| {
                for_each_obj(lb, "ingress", |ing| {
                    let has_ip = ing.get("ip").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
                    if has_ip {
                        set_if_absent(ing, "ipMode", json!("VIP"));
                    }
                });
            });
        });
    }
}

/// What the create strategy and IP allocator settle before validation: clusterIP and
/// clusterIPs agree, and a single-stack family is recorded.
fn default_service_ips(spec: &mut Map<String, Value>) {
    let cluster_ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    let ips: Vec<String> = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if !cluster_ip.is_empty() && ips.is_empty() {
        spec.insert("clusterIPs".into(), json!([cluster_ip]));
    } else if cluster_ip.is_empty() && !ips.is_empty() {
        spec.insert("clusterIP".into(), json!(ips[0]));
    }
    let ips: Vec<String> = if ips.is_empty() && !cluster_ip.is_empty() { vec![cluster_ip] } else { ips };
    let families: Vec<&str> =
        ips.iter().filter_map(|ip| names::parse_ip(ip)).map(|v6| if v6 { "IPv6" } else { "IPv4" }).collect();
    let policy = if families.len() == 2 { "PreferDualStack" } else { "SingleStack" };
    set_if_absent(spec, "ipFamilyPolicy", json!(policy));
    let families_unset = spec.get("ipFamilies").and_then(Value::as_array).is_none_or(Vec::is_empty);
    if families_unset {
        let families = if families.is_empty() { vec!["IPv4"] } else { families };
        spec.insert("ipFamilies".into(), json!(families));
    }
}

fn default_endpoints(ep: &mut Map<String, Value>) {
    for_each_obj(ep, "subsets", |ss| {
        for_each_obj(ss, "ports", |p| set_if_absent(p, "protocol", json!("TCP")));
    });
}

fn default_secret(secret: &mut Map<String, Value>) {
    set_if_absent(secret, "type", json!("Opaque"));
    // The API folds write-only stringData into data; it is never stored or returned.
    if let Some(Value::Object(string_data)) = secret.remove("stringData") {
        let data = obj_mut(secret, "data");
        for (k, v) in string_data {
            let bytes = v.as_str().unwrap_or("").as_bytes();
            data.insert(k, Value::String(base64_encode(bytes)));
        }
    }
}

fn default_namespace(ns: &mut Map<String, Value>) {
    let name = ns.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
    if !name.is_empty() {
        let labels = obj_mut(obj_mut(ns, "metadata"), "labels");
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    let spec = obj_mut(ns, "spec");
    if spec.get("finalizers").is_none_or(Value::is_null) {
        spec.insert("finalizers".into(), json!(["kubernetes"]));
    }
    set_if_absent(obj_mut(ns, "status"), "phase", json!("Active"));
}

fn default_node(node: &mut Map<String, Value>) {
    with_obj(node, "status", |st| {
        with_obj(st, "capacity", canonical_quantities);
        let capacity = st.get("capacity").filter(|c| c.is_object()).cloned();
        if let Some(capacity) = capacity {
            if st.get("allocatable").is_none_or(Value::is_null) {
                st.insert("allocatable".into(), capacity);
            }
        }
        with_obj(st, "allocatable", canonical_quantities);
    });
}

fn default_template(spec: &mut Map<String, Value>) {
    let template = obj_mut(spec, "template");
    default_pod_spec(obj_mut(template, "spec"));
}

fn default_deployment(d: &mut Map<String, Value>) {
    let spec = obj_mut(d, "spec");
    set_if_absent(spec, "replicas", json!(1));
    let strategy = obj_mut(spec, "strategy");
    set_if_absent(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = obj_mut(strategy, "rollingUpdate");
        set_if_absent(ru, "maxUnavailable", json!("25%"));
        set_if_absent(ru, "maxSurge", json!("25%"));
    }
    set_if_absent(spec, "revisionHistoryLimit", json!(10));
    set_if_absent(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec);
}

fn default_replica_set(rs: &mut Map<String, Value>) {
    let spec = obj_mut(rs, "spec");
    set_if_absent(spec, "replicas", json!(1));
    default_template(spec);
}

/// Upstream's SetDefaults_ReplicationController: a missing selector or missing labels are the
/// template's labels.
fn default_replication_controller(rc: &mut Map<String, Value>) {
    let spec = obj_mut(rc, "spec");
    set_if_absent(spec, "replicas", json!(1));
    let labels = spec.get("template").and_then(|t| t["metadata"]["labels"].as_object()).cloned();
    if let Some(labels) = labels.filter(|l| !l.is_empty()) {
        if spec.get("selector").and_then(Value::as_object).is_none_or(|s| s.is_empty()) {
            spec.insert("selector".into(), Value::Object(labels.clone()));
        }
        let meta = obj_mut(rc, "metadata");
        if meta.get("labels").and_then(Value::as_object).is_none_or(|l| l.is_empty()) {
            meta.insert("labels".into(), Value::Object(labels));
        }
    }
    if rc.get("spec").and_then(|s| s.get("template")).is_some() {
        default_template(obj_mut(rc, "spec"));
    }
}

/// Upstream's SetDefaults_Job.
/// autoscaling/v2 defaults: one replica at least, 80% CPU when no metric is named, and the
/// rules of a `behavior` that names only some of them.
fn default_horizontal_pod_autoscaler(hpa: &mut Map<String, Value>) {
    let Some(spec) = hpa.get_mut("spec").and_then(Value::as_object_mut) else { return };
    set_if_absent(spec, "minReplicas", json!(1));
    if spec.get("metrics").and_then(Value::as_array).is_none_or(|m| m.is_empty()) {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) else { return };
    let up = behavior.entry("scaleUp").or_insert_with(|| json!({}));
    if let Some(up) = up.as_object_mut() {
        set_if_absent(up, "stabilizationWindowSeconds", json!(0));
        set_if_absent(up, "selectPolicy", json!("Max"));
        set_if_absent(
            up,
            "policies",
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
    // scaleDown's window stays unset: the controller's default (300 s) applies.
    let down = behavior.entry("scaleDown").or_insert_with(|| json!({}));
    if let Some(down) = down.as_object_mut() {
        set_if_absent(down, "selectPolicy", json!("Max"));
        set_if_absent(down, "policies", json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]));
    }
}

fn default_job(job: &mut Map<String, Value>) {
    let labels = job.get("spec").and_then(|s| s["template"]["metadata"]["labels"].as_object()).cloned();
    if let Some(labels) = labels {
        let meta = obj_mut(job, "metadata");
        if meta.get("labels").and_then(Value::as_object).is_none_or(|l| l.is_empty()) {
            meta.insert("labels".into(), Value::Object(labels));
        }
    }
    let spec = obj_mut(job, "spec");
    default_job_spec(spec);
}

/// Upstream's SetDefaults_PersistentVolume.
fn default_persistent_volume(pv: &mut Map<String, Value>) {
    let spec = obj_mut(pv, "spec");
    set_if_absent(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    set_if_absent(spec, "volumeMode", json!("Filesystem"));
    set_if_absent(obj_mut(pv, "status"), "phase", json!("Pending"));
}

fn default_persistent_volume_claim(pvc: &mut Map<String, Value>) {
    set_if_absent(obj_mut(pvc, "spec"), "volumeMode", json!("Filesystem"));
    set_if_absent(obj_mut(pvc, "status"), "phase", json!("Pending"));
}

fn default_storage_class(sc: &mut Map<String, Value>) {
    set_if_absent(sc, "reclaimPolicy", json!("Delete"));
    set_if_absent(sc, "volumeBindingMode", json!("Immediate"));
}

/// Upstream's SetDefaults_StatefulSet.
fn default_stateful_set(sts: &mut Map<String, Value>) {
    let spec = obj_mut(sts, "spec");
    set_if_absent(spec, "replicas", json!(1));
    set_if_absent(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = obj_mut(spec, "updateStrategy");
    set_if_absent(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        set_if_absent(obj_mut(strategy, "rollingUpdate"), "partition", json!(0));
    }
    set_if_absent(spec, "revisionHistoryLimit", json!(10));
    let retention = obj_mut(spec, "persistentVolumeClaimRetentionPolicy");
    set_if_absent(retention, "whenDeleted", json!("Retain"));
    set_if_absent(retention, "whenScaled", json!("Retain"));
    for_each_obj(spec, "volumeClaimTemplates", |t| {
        set_if_absent(obj_mut(t, "spec"), "volumeMode", json!("Filesystem"));
        set_if_absent(obj_mut(t, "status"), "phase", json!("Pending"));
    });
    default_template(spec);
}

/// Upstream's SetDefaults_DaemonSet.
fn default_daemon_set(ds: &mut Map<String, Value>) {
    let spec = obj_mut(ds, "spec");
    let strategy = obj_mut(spec, "updateStrategy");
    set_if_absent(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = obj_mut(strategy, "rollingUpdate");
        set_if_absent(ru, "maxUnavailable", json!(1));
        set_if_absent(ru, "maxSurge", json!(0));
    }
    set_if_absent(spec, "revisionHistoryLimit", json!(10));
    default_template(spec);
}

/// Upstream's SetDefaults_CronJob; the job template's pod spec gets the pod defaults (its Job
/// gets the Job defaults when it is created).
fn default_cron_job(cj: &mut Map<String, Value>) {
    let spec = obj_mut(cj, "spec");
    set_if_absent(spec, "concurrencyPolicy", json!("Allow"));
    set_if_absent(spec, "suspend", json!(false));
    set_if_absent(spec, "successfulJobsHistoryLimit", json!(3));
    set_if_absent(spec, "failedJobsHistoryLimit", json!(1));
    let jspec = obj_mut(obj_mut(spec, "jobTemplate"), "spec");
    default_template(jspec);
}

pub(crate) fn default_job_spec(spec: &mut Map<String, Value>) {
    if spec.get("completions").is_none_or(Value::is_null) && spec.get("parallelism").is_none_or(Value::is_null) {
        spec.insert("completions".into(), json!(1));
    }
    set_if_absent(spec, "parallelism", json!(1));
    let per_index = spec.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null());
    set_if_absent(spec, "backoffLimit", json!(if per_index { i32::MAX } else { 6 }));
    set_if_absent(spec, "completionMode", json!("NonIndexed"));
    set_if_absent(spec, "suspend", json!(false));
    let has_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    set_if_absent(spec, "podReplacementPolicy", json!(if has_policy { "Failed" } else { "TerminatingOrFailed" }));
    if has_policy {
        let policy = obj_mut(spec, "podFailurePolicy");
        if let Some(Value::Array(rules)) = policy.get_mut("rules") {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                for_each_obj(rule, "onPodConditions", |c| set_if_absent(c, "status", json!("True")));
            }
        }
    }
    default_template(spec);
}

/// Fills, from the stored object, what the server owns or allocated and a full-object update
/// (`kubectl replace` of a manifest) leaves out, as upstream's update strategies do before
/// validating: metadata identity and timestamps, a service's cluster IPs, IP families and
/// node ports, and a namespace's finalizers and status. Call it before [`apply_defaults`]
/// on updates; values the request does carry are kept, so real changes still reach
/// validation and are rejected there.
pub fn carry_over_for_update(group: &str, kind: &str, new: &mut Value, old: &Value) {
    let Some(n) = new.as_object_mut() else {
        return;
    };
    let nm = obj_mut(n, "metadata");
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        if let Some(v) = old.get("metadata").and_then(|m| m.get(field)) {
            if !v.is_null() {
                set_if_absent(nm, field, v.clone());
            }
        }
    }
    match (group, kind) {
        ("" | "core", "Service") => carry_service(obj_mut(n, "spec"), old.get("spec")),
        // Namespace finalizers and status change only through their subresources.
        ("" | "core", "Namespace") => {
            for (field, sub) in [("spec", "finalizers"), ("status", "phase")] {
                match old.get(field).and_then(|s| s.get(sub)) {
                    Some(v) => {
                        obj_mut(n, field).insert(sub.into(), v.clone());
                    }
                    None => {
                        obj_mut(n, field).remove(sub);
                    }
                }
            }
        }
        _ => {}
    }
}

fn service_type(spec: Option<&Value>) -> &str {
    match spec.and_then(|s| s.get("type")).and_then(Value::as_str) {
        None | Some("") => "ClusterIP",
        Some(t) => t,
    }
}

fn needs_node_ports(spec: Option<&Value>) -> bool {
    match service_type(spec) {
        "NodePort" => true,
        "LoadBalancer" => {
            spec.and_then(|s| s.get("allocateLoadBalancerNodePorts")).and_then(Value::as_bool) != Some(false)
        }
        _ => false,
    }
}

fn carry_service(ns: &mut Map<String, Value>, os: Option<&Value>) {
    let Some(os) = os else {
        return;
    };
    let new_type = service_type(Some(&Value::Object(ns.clone()))).to_string();
    let old_type = service_type(Some(os));
    if new_type != "ExternalName" && old_type != "ExternalName" {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            let missing = match ns.get(field) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(_) => false,
            };
            if let Some(v) = os.get(field).filter(|v| !v.is_null()) {
                if missing {
                    ns.insert(field.into(), v.clone());
                }
            }
        }
    }
    let ns_value = Value::Object(ns.clone());
    if needs_node_ports(Some(os)) && needs_node_ports(Some(&ns_value)) {
        let port_of = |p: &Value| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        let ports_of =
            |s: &Value| -> Vec<Value> { s.get("ports").and_then(Value::as_array).cloned().unwrap_or_default() };
        let old_ports = ports_of(os);
        let used: Vec<i64> = ports_of(&ns_value).iter().map(port_of).filter(|p| *p != 0).collect();
        // Ports are matched by name, as upstream does; other properties may have changed.
        for_each_obj(ns, "ports", |p| {
            if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                return;
            }
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            let previous = old_ports
                .iter()
                .find(|o| o.get("name").and_then(Value::as_str).unwrap_or("") == name)
                .map(port_of)
                .unwrap_or(0);
            if previous != 0 && !used.contains(&previous) {
                p.insert("nodePort".into(), json!(previous));
            }
        });
    }
    let local_lb = |s: &Value| {
        s.get("type").and_then(Value::as_str) == Some("LoadBalancer")
            && s.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
    };
    if local_lb(os) && local_lb(&Value::Object(ns.clone())) {
        if let Some(hc) = os.get("healthCheckNodePort").filter(|v| !v.is_null()) {
            if ns.get("healthCheckNodePort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                ns.insert("healthCheckNodePort".into(), hc.clone());
            }
        }
    }
}

fn default_resource_quota(q: &mut Map<String, Value>) {
    with_obj(q, "spec", |spec| with_obj(spec, "hard", canonical_quantities));
}

/// Upstream's `SetDefaults_LimitRangeItem`: a Container item's default limit falls back to its
/// max, its default request to the default limit, then to its min.
fn default_limit_range(lr: &mut Map<String, Value>) {
    with_obj(lr, "spec", |spec| {
        for_each_obj(spec, "limits", |item| {
            for list in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
                with_obj(item, list, canonical_quantities);
            }
            if item.get("type").and_then(Value::as_str) != Some("Container") {
                return;
            }
            let copy_missing = |item: &mut Map<String, Value>, from: &str, to: &str| {
                let src = item.get(from).and_then(Value::as_object).cloned().unwrap_or_default();
                if src.is_empty() {
                    return;
                }
                let dst = obj_mut(item, to);
                for (k, v) in src {
                    dst.entry(k).or_insert(v);
                }
            };
            copy_missing(item, "max", "default");
            copy_missing(item, "default", "defaultRequest");
            copy_missing(item, "min", "defaultRequest");
        });
    });
}
