//! kubectl against a real `kubus up`: the API surface of issue #2.

mod common;
use common::{eventually, Cluster};
use serde_json::Value;

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels: {app: web, tier: front}
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web, team: a}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports: [{containerPort: 80, name: http}]
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
      - name: sidecar
        image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http, name: http}]
"#;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn apply_reapply_and_three_way_merge() {
    let c = Cluster::start("apply");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], MANIFEST).expect_ok();
    for line in
        ["namespace/shop created", "configmap/settings created", "deployment.apps/web created", "service/web created"]
    {
        assert!(out.contains(line), "{out}");
    }
    let out = c.kubectl_stdin(&["apply", "-f", "-"], MANIFEST).expect_ok();
    assert_eq!(out.matches("unchanged").count(), 4, "{out}");
    let rv_before = json(&c.kubectl(&["-n", "shop", "get", "deploy", "web", "-o", "json"]).expect_ok())["metadata"]
        ["resourceVersion"]
        .clone();

    // An out-of-band change that apply must keep (it is not in the last-applied config).
    c.kubectl(&["-n", "shop", "annotate", "deploy", "web", "owner=ops"]).expect_ok();
    // Edit: drop the team label, drop env B, drop the sidecar, change the image.
    let edited = MANIFEST
        .replace("labels: {app: web, team: a}", "labels: {app: web}")
        .replace("env: [{name: A, value: \"1\"}, {name: B, value: \"2\"}]", "env: [{name: A, value: \"1\"}]")
        .replace("image: busybox:1.36\n        ports", "image: busybox:1.37\n        ports")
        .replace("      - name: sidecar\n        image: busybox:1.36\n", "");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &edited).expect_ok();
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let d = json(&c.kubectl(&["-n", "shop", "get", "deploy", "web", "-o", "json"]).expect_ok());
    assert_ne!(d["metadata"]["resourceVersion"], rv_before);
    assert_eq!(d["metadata"]["labels"], serde_json::json!({"app": "web"}));
    assert_eq!(d["metadata"]["annotations"]["owner"], "ops");
    let containers = d["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0]["image"], "busybox:1.37");
    assert_eq!(containers[0]["env"], serde_json::json!([{"name": "A", "value": "1"}]));
    // Spec changed: generation moved on; defaults are filled in as upstream does.
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    // Server-side dry run (kubectl diff uses it) changes nothing.
    let diff = c.kubectl_stdin(&["diff", "-f", "-"], MANIFEST);
    assert!(diff.stdout.contains("busybox:1.36"), "{}{}", diff.stdout, diff.stderr);
    let again = json(&c.kubectl(&["-n", "shop", "get", "deploy", "web", "-o", "json"]).expect_ok());
    // The controller may still write status meanwhile; the object as the user wrote it stays.
    assert_eq!(again["spec"], d["spec"]);
    assert_eq!(again["metadata"]["generation"], d["metadata"]["generation"]);
    assert_eq!(again["metadata"]["annotations"], d["metadata"]["annotations"]);
}

#[test]
fn get_output_formats_tables_and_selectors() {
    let c = Cluster::start("get");
    c.kubectl_stdin(&["apply", "-f", "-"], MANIFEST).expect_ok();
    // Bare pods live in a namespace of their own, away from the deployment's.
    c.kubectl(&["create", "ns", "solo"]).expect_ok();
    for i in 0..3 {
        let tier = if i == 0 { "db" } else { "front" };
        c.kubectl(&[
            "-n",
            "solo",
            "run",
            &format!("p{i}"),
            "--image=busybox",
            &format!("--labels=app=solo,tier={tier}"),
        ])
        .expect_ok();
    }
    let table = c.kubectl(&["-n", "solo", "get", "pods"]).expect_ok();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(table.contains("p0") && table.contains("0/1") && table.contains("Pending"), "{table}");
    let wide = c.kubectl(&["-n", "solo", "get", "pods", "-o", "wide"]).expect_ok();
    assert!(wide.lines().next().unwrap().contains("NOMINATED NODE"), "{wide}");
    let deploy = c.kubectl(&["-n", "shop", "get", "deploy"]).expect_ok();
    assert!(
        deploy.starts_with("NAME")
            && deploy.contains("READY")
            && deploy.contains("UP-TO-DATE")
            && deploy.contains("AVAILABLE"),
        "{deploy}"
    );
    let svc = c.kubectl(&["-n", "shop", "get", "svc", "--show-labels"]).expect_ok();
    assert!(
        svc.contains("TYPE") && svc.contains("CLUSTER-IP") && svc.contains("PORT(S)") && svc.contains("80/TCP"),
        "{svc}"
    );
    let all_ns = c.kubectl(&["get", "cm", "-A"]).expect_ok();
    assert!(all_ns.lines().next().unwrap().starts_with("NAMESPACE"), "{all_ns}");

    let yaml = c.kubectl(&["-n", "shop", "get", "cm", "settings", "-o", "yaml"]).expect_ok();
    assert!(yaml.contains("color: blue") && yaml.contains("resourceVersion:"), "{yaml}");
    let jp = c.kubectl(&["-n", "solo", "get", "pods", "-o", "jsonpath={.items[*].metadata.name}"]).expect_ok();
    assert_eq!(jp, "p0 p1 p2");
    let cc = c
        .kubectl(&[
            "-n",
            "solo",
            "get",
            "pods",
            "-o",
            "custom-columns=N:.metadata.name,T:.metadata.labels.tier",
            "--no-headers",
        ])
        .expect_ok();
    assert_eq!(cc.split_whitespace().collect::<Vec<_>>(), ["p0", "db", "p1", "front", "p2", "front"]);

    let sel = c.kubectl(&["-n", "solo", "get", "pods", "-l", "tier in (db)", "-o", "name"]).expect_ok();
    assert_eq!(sel.trim(), "pod/p0");
    let sel = c.kubectl(&["-n", "solo", "get", "pods", "-l", "tier!=db,app=solo", "-o", "name"]).expect_ok();
    assert_eq!(sel.split_whitespace().collect::<Vec<_>>(), ["pod/p1", "pod/p2"]);
    let sel = c
        .kubectl(&["get", "pods", "-A", "--field-selector", "metadata.name=p1,status.phase=Pending", "-o", "name"])
        .expect_ok();
    assert_eq!(sel.trim(), "pod/p1");
    let sel = c.kubectl(&["-n", "solo", "get", "pods", "--field-selector", "spec.nodeName=", "-o", "name"]).expect_ok();
    assert_eq!(sel.lines().count(), 3);
    c.kubectl(&["get", "pods", "--field-selector", "spec.bogus=x"]).expect_err("field label not supported");
    c.kubectl(&["get", "pods", "-l", "a in b"]).expect_err("unable to parse requirement");

    // Paging: kubectl follows continue tokens transparently.
    let paged = c.kubectl(&["-n", "solo", "get", "pods", "--chunk-size=1", "-o", "name"]).expect_ok();
    assert_eq!(paged.lines().count(), 3);
    let (code, page) = c.http("GET", "/api/v1/namespaces/solo/pods?limit=2", None, None);
    assert_eq!(code, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["metadata"]["remainingItemCount"], 1);
    let token = page["metadata"]["continue"].as_str().unwrap();
    let (_, rest) = c.http("GET", &format!("/api/v1/namespaces/solo/pods?limit=2&continue={token}"), None, None);
    assert_eq!(rest["items"][0]["metadata"]["name"], "p2");
}

#[test]
fn discovery_explain_and_defaults_namespaces() {
    let c = Cluster::start("disc");
    let ns = c.kubectl(&["get", "ns", "-o", "name"]).expect_ok();
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }
    let res = c.kubectl(&["api-resources"]).expect_ok();
    for row in ["deploy", "po", "svc", "cm", "ns", "ep", "sa", "no", "ev", "rs", "leases"] {
        assert!(res.contains(row), "{row} missing:\n{res}");
    }
    let explain = c.kubectl(&["explain", "pods.spec.containers.image"]).expect_ok();
    assert!(explain.contains("FIELD: image") || explain.contains("image"), "{explain}");
    let explain = c.kubectl(&["explain", "deployment.spec.strategy"]).expect_ok();
    assert!(explain.contains("rollingUpdate"), "{explain}");
    // The review groups (create-only, never stored) have documents too.
    let explain = c.kubectl(&["explain", "subjectaccessreviews.spec"]).expect_ok();
    assert!(explain.contains("KIND:       SubjectAccessReview") && explain.contains("resourceAttributes"), "{explain}");
    let explain = c.kubectl(&["explain", "selfsubjectreviews.status.userInfo"]).expect_ok();
    assert!(explain.contains("username"), "{explain}");
    let v = c.kubectl(&["version", "-o", "json"]).expect_ok();
    assert_eq!(json(&v)["serverVersion"]["minor"], "32");
    for p in ["/healthz", "/readyz", "/livez"] {
        assert_eq!(c.try_http("GET", p, None, None).unwrap().0, 200, "{p}");
    }
    c.kubectl(&["get", "ns"]).expect_ok();
    let (_, metrics) = c.try_http("GET", "/metrics", None, None).unwrap();
    // Upstream's names and labels: dashboards and alerts written for kube-apiserver work.
    let list_ns = "apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"namespaces\",scope=\"cluster\",subresource=\"\",transport=\"http\",verb=\"LIST\",version=\"v1\"}";
    assert!(metrics.contains(list_ns), "{metrics}");
    let stored = metrics
        .lines()
        .find_map(|l| l.strip_prefix("apiserver_storage_objects{resource=\"namespaces\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(stored.is_some_and(|n| n >= 4.0), "{stored:?}");
    for series in [
        "apiserver_request_duration_seconds_bucket{",
        "apiserver_current_inflight_requests{request_kind=\"mutating\"}",
        "rest_client_requests_total{",
        "workqueue_adds_total{",
        "kubus_store_operations_total",
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }
}

#[test]
fn watch_sees_added_modified_deleted() {
    let c = Cluster::start("watch");
    let out = c.dir.join("watch.out");
    let mut w = c.kubectl_background(&["get", "cm", "-w", "--output-watch-events", "-n", "default"], &out);
    std::thread::sleep(std::time::Duration::from_millis(800));
    c.kubectl(&["create", "cm", "w1", "--from-literal=a=1"]).expect_ok();
    c.kubectl(&["label", "cm", "w1", "x=y"]).expect_ok();
    c.kubectl(&["delete", "cm", "w1"]).expect_ok();
    let seen = eventually(15, || {
        let s = std::fs::read_to_string(&out).unwrap_or_default();
        (s.contains("DELETED")).then_some(s)
    });
    let _ = w.kill();
    let _ = w.wait();
    let kinds: Vec<&str> =
        seen.lines().filter(|l| l.contains("w1")).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"], "{seen}");

    // A raw watch from an old revision resumes exactly.
    let (_, list) = c.http("GET", "/api/v1/namespaces/default/configmaps", None, None);
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    c.kubectl(&["create", "cm", "w2"]).expect_ok();
    let (code, body) = c
        .try_http(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
            None,
            None,
        )
        .unwrap();
    assert_eq!(code, 200);
    let events: Vec<Value> = body.lines().map(json).collect();
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "w2");

    // A selected watch: an object that starts matching is ADDED, one that stops matching is
    // DELETED carrying the object as it last matched, at the change's resourceVersion.
    let (_, list) = c.http("GET", "/api/v1/namespaces/default/configmaps", None, None);
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    c.kubectl(&["label", "cm", "w2", "tier=web"]).expect_ok();
    c.kubectl(&["label", "cm", "w2", "tier=db", "--overwrite"]).expect_ok();
    let (_, now) = c.http("GET", "/api/v1/namespaces/default/configmaps/w2", None, None);
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&labelSelector=tier%3Dweb&resourceVersion={rv}&timeoutSeconds=1"
    );
    let (_, body) = c.try_http("GET", &path, None, None).unwrap();
    let events: Vec<Value> = body.lines().map(json).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "DELETED"], "{body}");
    assert_eq!(events[1]["object"]["metadata"]["labels"]["tier"], "web", "{body}");
    assert_eq!(events[1]["object"]["metadata"]["resourceVersion"], now["metadata"]["resourceVersion"], "{body}");
}

#[test]
fn patches_of_every_type_scale_and_conflicts() {
    let c = Cluster::start("patch");
    c.kubectl_stdin(&["apply", "-f", "-"], MANIFEST).expect_ok();
    let get = |what: &str| json(&c.kubectl(&["-n", "shop", "get", what, "-o", "json"]).expect_ok());
    c.kubectl(&[
        "-n",
        "shop",
        "patch",
        "cm",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"size":"L","color":null}}"#,
    ])
    .expect_ok();
    assert_eq!(get("cm/settings")["data"], serde_json::json!({"size": "L"}));
    c.kubectl(&[
        "-n",
        "shop",
        "patch",
        "cm",
        "settings",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/extra","value":"1"}]"#,
    ])
    .expect_ok();
    assert_eq!(get("cm/settings")["data"]["extra"], "1");
    c.kubectl(&[
        "-n",
        "shop",
        "patch",
        "cm",
        "settings",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/data/extra","value":"2"}]"#,
    ])
    .expect_err("");
    c.kubectl(&[
        "-n",
        "shop",
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:2"}]}}}}"#,
    ])
    .expect_ok();
    let d = get("deploy/web");
    let c0 = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(c0.as_array().unwrap().len(), 2, "strategic merge keeps the other container: {c0}");
    assert_eq!(c0[1]["image"], "busybox:2");
    // Server-side apply.
    let ssa = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: shop\ndata:\n  k: v\n";
    let out = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], ssa).expect_ok();
    assert!(out.contains("serverside-applied"), "{out}");
    let (_, cm) = c.http("GET", "/api/v1/namespaces/shop/configmaps/applied", None, None);
    assert_eq!(cm["data"]["k"], "v");
    assert_eq!(cm["metadata"]["managedFields"][0]["manager"], "kubectl");

    // The scale subresource.
    c.kubectl(&["-n", "shop", "scale", "deploy", "web", "--replicas=5"]).expect_ok();
    assert_eq!(get("deploy/web")["spec"]["replicas"], 5);
    let (code, scale) = c.http("GET", "/apis/apps/v1/namespaces/shop/deployments/web/scale", None, None);
    assert_eq!((code, scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (200, Some("Scale"), Some(5)));
    assert_eq!(scale["status"]["selector"], "app=web");

    // A stale resourceVersion is a 409 Conflict.
    let mut stale = get("cm/settings");
    c.kubectl(&["-n", "shop", "label", "cm", "settings", "v=2"]).expect_ok();
    stale["data"]["size"] = Value::String("XL".into());
    c.kubectl_stdin(&["replace", "-f", "-"], &stale.to_string()).expect_err("the object has been modified");
    // Status writes do not touch spec, and spec writes do not touch status.
    let (code, _) = c.http(
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/web/status",
        Some("application/merge-patch+json"),
        Some(br#"{"status":{"collisionCount":3},"spec":{"replicas":1}}"#),
    );
    assert_eq!(code, 200);
    let d = get("deploy/web");
    assert_eq!((d["spec"]["replicas"].as_i64(), d["status"]["collisionCount"].as_i64()), (Some(5), Some(3)));
    let (code, _) = c.http(
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/web",
        Some("application/merge-patch+json"),
        Some(br#"{"status":{"collisionCount":9}}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(get("deploy/web")["status"]["collisionCount"], 3);
    assert_eq!(get("deploy/web")["metadata"]["generation"], 3);
}

#[test]
fn every_error_class_is_a_status() {
    let c = Cluster::start("errors");
    // 422 Invalid, with causes.
    c.kubectl(&["create", "cm", "Bad_Name"]).expect_err("Invalid value: \"Bad_Name\"");
    let bad = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"c"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#;
    let (code, s) =
        c.http("POST", "/apis/apps/v1/namespaces/default/deployments", Some("application/json"), Some(bad.as_bytes()));
    assert_eq!((code, s["kind"].as_str(), s["reason"].as_str()), (422, Some("Status"), Some("Invalid")));
    assert!(s["details"]["causes"].as_array().is_some_and(|c| !c.is_empty()), "{s}");
    // 409 AlreadyExists.
    c.kubectl(&["create", "cm", "dup"]).expect_ok();
    c.kubectl(&["create", "cm", "dup"]).expect_err("already exists");
    // 404 NotFound, for objects, namespaces and unknown paths.
    c.kubectl(&["get", "cm", "nope"]).expect_err("NotFound");
    c.kubectl(&["create", "cm", "x", "-n", "nowhere"]).expect_err("not found");
    let (code, s) = c.http("GET", "/apis/nothing/v1/things", None, None);
    assert_eq!((code, s["kind"].as_str()), (404, Some("Status")));
    // 400 for malformed and mistyped bodies, and strict unknown fields.
    let (code, s) =
        c.http("POST", "/api/v1/namespaces/default/configmaps", Some("application/json"), Some(b"{not json"));
    assert_eq!((code, s["reason"].as_str()), (400, Some("BadRequest")));
    let (code, _) = c.http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/json"),
        Some(br#"{"metadata":{"name":"t"},"data":[1]}"#),
    );
    assert_eq!(code, 400);
    let (code, s) = c.http(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        Some("application/json"),
        Some(br#"{"metadata":{"name":"t"},"bogus":1}"#),
    );
    assert_eq!(code, 400);
    assert!(s["message"].as_str().unwrap().contains("unknown field \"bogus\""), "{s}");
    c.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\nbogus: 1\n")
        .expect_err("unknown field");
    // 415 for an unknown patch type.
    let (code, s) =
        c.http("PATCH", "/api/v1/namespaces/default/configmaps/dup", Some("application/x-weird"), Some(b"{}"));
    assert_eq!((code, s["reason"].as_str()), (415, Some("UnsupportedMediaType")));
    // 413 for an oversized object; nothing is half-written.
    let big = format!(r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#, "x".repeat(4 << 20));
    let (code, s) =
        c.http("POST", "/api/v1/namespaces/default/configmaps", Some("application/json"), Some(big.as_bytes()));
    assert_eq!((code, s["reason"].as_str()), (413, Some("RequestEntityTooLarge")), "{s}");
    c.kubectl(&["get", "cm", "big"]).expect_err("NotFound");
    // The server is still fine after all that.
    c.kubectl(&["get", "cm", "dup"]).expect_ok();
}

/// What a case's message must be: upstream's exactly, or (where Kubus words its own part of
/// the message) starting as upstream's does.
enum Message {
    Exact(&'static str),
    Prefix(&'static str),
}

/// One error case: a raw request and the Status upstream's apiserver answers it with.
struct ErrorCase {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    accept: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    code: u16,
    reason: &'static str,
    message: Message,
    /// `details` as upstream writes it; None: no `details` at all.
    details: Option<Value>,
}

fn case(what: &'static str, method: &'static str, path: &'static str) -> ErrorCase {
    ErrorCase {
        what,
        method,
        path,
        accept: "application/json",
        content_type: None,
        body: vec![],
        code: 0,
        reason: "",
        message: Message::Exact(""),
        details: None,
    }
}

impl ErrorCase {
    fn body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type);
        self.body = body.into();
        self
    }
    fn accept(mut self, accept: &'static str) -> Self {
        self.accept = accept;
        self
    }
    fn answers(mut self, code: u16, reason: &'static str, message: Message, details: Option<Value>) -> Self {
        (self.code, self.reason, self.message, self.details) = (code, reason, message, details);
        self
    }
}

#[test]
fn error_statuses_carry_upstreams_details_and_kubectl_debug_fails_cleanly() {
    use serde_json::json;
    use Message::{Exact, Prefix};
    let c = Cluster::start("error-details");
    c.kubectl(&["create", "cm", "dup"]).expect_ok();
    c.kubectl(&["run", "target", "--image=busybox", "--restart=Never", "--", "sleep", "3600"]).expect_ok();
    let stale = c.get_json(&["cm", "dup"]);
    c.kubectl(&["label", "cm", "dup", "changed=yes"]).expect_ok();
    let not_found = || Some(json!({}));
    let bad_deployment = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"c"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#;
    let table = vec![
        case("an object that is not there", "GET", "/api/v1/namespaces/default/configmaps/nope").answers(
            404,
            "NotFound",
            Exact("configmaps \"nope\" not found"),
            Some(json!({"name": "nope", "kind": "configmaps"})),
        ),
        case("an object of a group that is not there", "GET", "/apis/apps/v1/namespaces/default/deployments/nope")
            .answers(
                404,
                "NotFound",
                Exact("deployments.apps \"nope\" not found"),
                Some(json!({"name": "nope", "group": "apps", "kind": "deployments"})),
            ),
        case("a served subresource of a missing object", "GET", "/api/v1/namespaces/default/pods/nope/status")
            .answers(404, "NotFound", Exact("pods \"nope\" not found"), Some(json!({"name": "nope", "kind": "pods"}))),
        case("eviction of a missing pod", "POST", "/api/v1/namespaces/default/pods/nope/eviction")
            .body("application/json", r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"nope"}}"#)
            .answers(404, "NotFound", Exact("pods \"nope\" not found"), Some(json!({"name": "nope", "kind": "pods"}))),
        // No route: empty details, which is how kubectl debug tells an unserved subresource
        // from a missing pod.
        case("a subresource that is not served", "PATCH", "/api/v1/namespaces/default/pods/target/ephemeralcontainers")
            .body("application/strategic-merge-patch+json", "{}")
            .answers(404, "NotFound", Exact("the server could not find the requested resource"), not_found()),
        case("a resource that is not served", "GET", "/api/v1/namespaces/default/widgets").answers(
            404,
            "NotFound",
            Exact("the server could not find the requested resource"),
            not_found(),
        ),
        case("a cluster-scoped resource under a namespace", "GET", "/api/v1/namespaces/default/nodes").answers(
            404,
            "NotFound",
            Exact("the server could not find the requested resource"),
            not_found(),
        ),
        case("a method the collection does not take", "PUT", "/api/v1/namespaces/default/configmaps")
            .body("application/json", "{}")
            .answers(
                405,
                "MethodNotAllowed",
                Exact("the server does not allow this method on the requested resource"),
                Some(json!({})),
            ),
        case("a method a subresource does not take", "GET", "/api/v1/namespaces/default/pods/target/binding").answers(
            405,
            "MethodNotAllowed",
            Exact("the server does not allow this method on the requested resource"),
            Some(json!({})),
        ),
        case("a method the log does not take", "POST", "/api/v1/namespaces/default/pods/target/log").answers(
            405,
            "MethodNotAllowed",
            Exact("the server does not allow this method on the requested resource"),
            Some(json!({})),
        ),
        case("a verb the resource does not support", "GET", "/apis/metrics.k8s.io/v1beta1/pods?watch=true").answers(
            405,
            "MethodNotAllowed",
            Exact("watch is not supported on resources of kind \"pods.metrics.k8s.io\""),
            Some(json!({"group": "metrics.k8s.io", "kind": "pods"})),
        ),
        case("a body in an unknown format", "POST", "/api/v1/namespaces/default/configmaps")
            .body("text/plain", "x")
            .answers(
                415,
                "UnsupportedMediaType",
                Exact("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"),
                None,
            ),
        case("a patch of an unknown type", "PATCH", "/api/v1/namespaces/default/configmaps/dup")
            .body("application/x-weird", "{}")
            .answers(415, "UnsupportedMediaType", Exact("415: Unsupported Media Type"), Some(json!({}))),
        case("an Accept no route produces", "GET", "/api/v1/namespaces/default/configmaps").accept("text/html").answers(
            406,
            "NotAcceptable",
            Exact("406: Not Acceptable\n\nAvailable representations: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json;stream=watch, application/vnd.kubernetes.protobuf;stream=watch"),
            Some(json!({})),
        ),
        case("a rendering the server does not know", "GET", "/api/v1/namespaces/default/configmaps/dup")
            .accept("application/json;as=Nonsense;v=v1;g=meta.k8s.io")
            .answers(
                406,
                "NotAcceptable",
                Exact("only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"),
                None,
            ),
        case("a name taken", "POST", "/api/v1/namespaces/default/configmaps")
            .body("application/json", r#"{"metadata":{"name":"dup"}}"#)
            .answers(
                409,
                "AlreadyExists",
                Exact("configmaps \"dup\" already exists"),
                Some(json!({"name": "dup", "kind": "configmaps"})),
            ),
        case("a stale resourceVersion", "PUT", "/api/v1/namespaces/default/configmaps/dup")
            .body("application/json", stale.to_string())
            .answers(
                409,
                "Conflict",
                Exact("Operation cannot be fulfilled on configmaps \"dup\": the object has been modified; please apply your changes to the latest version and try again"),
                Some(json!({"name": "dup", "kind": "configmaps"})),
            ),
        case("an invalid object", "POST", "/apis/apps/v1/namespaces/default/deployments")
            .body("application/json", bad_deployment)
            .answers(
                422,
                "Invalid",
                Exact("Deployment.apps \"d\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"a\":\"c\"}: `selector` does not match template `labels`"),
                Some(json!({"name": "d", "group": "apps", "kind": "Deployment", "causes": [{
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: map[string]string{\"a\":\"c\"}: `selector` does not match template `labels`",
                    "field": "spec.template.metadata.labels"}]})),
            ),
        case("a namespace that may not be deleted", "DELETE", "/api/v1/namespaces/default").answers(
            403,
            "Forbidden",
            Exact("namespaces \"default\" is forbidden: this namespace may not be deleted"),
            Some(json!({"name": "default", "kind": "namespaces"})),
        ),
        case("a malformed body", "POST", "/api/v1/namespaces/default/configmaps")
            .body("application/json", "{not json")
            .answers(400, "BadRequest", Prefix(""), None),
        case("a continue token this server never issued", "GET", "/api/v1/configmaps?limit=5&continue=zz").answers(
            400,
            "BadRequest",
            Prefix("continue key is not valid: "),
            None,
        ),
        case("a list at a resourceVersion not reached", "GET", "/api/v1/configmaps?resourceVersion=999999999").answers(
            504,
            "Timeout",
            Prefix("Timeout: Too large resource version: 999999999, current: "),
            Some(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1})),
        ),
        case("a body over the limit", "POST", "/api/v1/namespaces/default/configmaps")
            .body("application/json", format!(r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#, "x".repeat(4 << 20)))
            .answers(413, "RequestEntityTooLarge", Exact("Request entity too large: limit is 3145728"), None),
    ];
    for t in &table {
        let (code, text) = c
            .try_http_accept(t.method, t.path, t.accept, t.content_type, (!t.body.is_empty()).then_some(&t.body[..]))
            .expect("HTTP request");
        let s: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{}: not JSON: {text}", t.what));
        let message = s["message"].as_str().unwrap_or_default();
        let mut want = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": t.reason, "code": t.code});
        if let Some(d) = &t.details {
            want["details"] = d.clone();
        }
        assert_eq!((code, &s), (t.code, &want), "{}", t.what);
        match t.message {
            Exact(m) => assert_eq!(message, m, "{}", t.what),
            Prefix(p) => assert!(message.starts_with(p) && !message.is_empty(), "{}: {message}", t.what),
        }
    }

    // kubectl debug adds an ephemeral container, which Kubus does not serve: kubectl says so,
    // instead of crashing on a Status without details.
    let out = c.kubectl(&["debug", "target", "--image=busybox"]);
    let err = out.expect_err("ephemeral containers are disabled for this cluster");
    assert!(!err.contains("panic") && !err.contains("nil pointer"), "{err}");
    assert!(err.contains("the server could not find the requested resource"), "{err}");
}

#[test]
fn restart_with_the_same_data_dir_keeps_objects() {
    let mut c = Cluster::start("restart");
    c.kubectl_stdin(&["apply", "-f", "-"], MANIFEST).expect_ok();
    // Once the controllers have settled (the Deployment has counted its pods): a snapshot taken
    // while they still write would differ from the restarted state for that reason alone.
    eventually(30, || {
        let d = json(&c.kubectl(&["-n", "shop", "get", "deploy", "web", "-o", "json"]).expect_ok());
        (d["status"]["replicas"] == 2 && d["status"]["updatedReplicas"] == 2).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before = json(&c.kubectl(&["get", "all", "-A", "-o", "json"]).expect_ok());
    c.keep();
    let (dir, port) = c.stop();
    drop(c);
    let c = Cluster::start_in(dir, port);
    let after = json(&c.kubectl(&["get", "all", "-A", "-o", "json"]).expect_ok());
    assert_eq!(before["items"], after["items"]);
    c.kubectl(&["-n", "shop", "get", "cm", "settings"]).expect_ok();
    // The restarted watch cache starts at the current revision: older ones are gone (410).
    let (_, body) = c
        .try_http(
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1&timeoutSeconds=1",
            None,
            None,
        )
        .unwrap();
    let first = json(body.lines().next().unwrap());
    assert_eq!(first["type"], "ERROR");
    assert_eq!(first["object"]["code"], 410);
    // Writes after the restart get revisions above every earlier one.
    let old_max = before["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["resourceVersion"].as_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let cm = json(&c.kubectl(&["create", "cm", "after", "-o", "json"]).expect_ok());
    assert!(cm["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() > old_max);
}

#[test]
fn create_token_issues_a_signed_service_account_jwt() {
    use base64::Engine as _;
    let c = Cluster::start("token");
    // The namespace controller makes the default ServiceAccount.
    common::eventually(30, || c.kubectl(&["get", "serviceaccount", "default"]).ok.then_some(()));
    let token = c.kubectl(&["create", "token", "default", "--duration=2h", "--audience=my-api"]).expect_ok();
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS: {token}");
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(claims["aud"][0], "my-api");
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(ttl, 7200);
    // Errors are Statuses: an unknown account, a too short duration.
    c.kubectl(&["create", "token", "nobody"]).expect_err("serviceaccounts \"nobody\" not found");
    c.kubectl(&["create", "token", "default", "--duration=1m"]).expect_err("less than 10 minutes");
}

/// Names of a list page's items, and its continue token.
fn page_of(c: &Cluster, path: &str) -> (Vec<String>, Option<String>) {
    let (code, page) = c.http("GET", path, None, None);
    assert_eq!(code, 200, "{page}");
    let names = page["items"].as_array().unwrap().iter();
    let names = names.map(|o| format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap(), o["metadata"]["name"]));
    (names.map(|n| n.replace('"', "")).collect(), page["metadata"]["continue"].as_str().map(String::from))
}

#[test]
fn paged_lists_are_consistent_while_objects_change() {
    let c = Cluster::start("paging");
    // Namespaces whose names sort differently as strings and as (namespace, name) pairs.
    for ns in ["a", "a-x"] {
        c.kubectl(&["create", "namespace", ns]).expect_ok();
    }
    let mut manifest = String::new();
    for i in 0..120 {
        let ns = if i % 2 == 0 { "a" } else { "a-x" };
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:03}, namespace: {ns}}}\n"
        ));
    }
    c.kubectl_stdin(&["apply", "-f", "-"], &manifest).expect_ok();
    // Each namespace also holds the cluster CA's ConfigMap (kube-root-ca.crt), as upstream's.
    let in_ab = |names: &[String]| {
        names.iter().filter(|n| (n.starts_with("a/") || n.starts_with("a-x/")) && n.contains("/cm-")).count()
    };

    // Page through every ConfigMap of the cluster, 25 at a time, while the objects change.
    let (mut seen, mut token) = page_of(&c, "/api/v1/configmaps?limit=25");
    let mut round = 0;
    while let Some(t) = token {
        // Between pages: delete some of what is still to come and create others.
        c.kubectl(&["-n", "a", "delete", "configmap", &format!("cm-{:03}", 100 + round * 2), "--wait=false"])
            .expect_ok();
        c.kubectl(&["-n", "a-x", "create", "configmap", &format!("late-{round}")]).expect_ok();
        round += 1;
        let (names, next) = page_of(&c, &format!("/api/v1/configmaps?limit=25&continue={t}"));
        seen.extend(names);
        token = next;
    }
    // The list is the cluster as it was at the first page: every object once, none of the new
    // ones, the deleted ones still there.
    let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an object came twice: {seen:?}");
    assert_eq!(in_ab(&seen), 120, "{seen:?}");
    assert!(seen.iter().all(|n| !n.contains("late-")), "{seen:?}");
    assert!(round >= 4, "only {round} pages");
    // kubectl follows the same tokens.
    let all = c.kubectl(&["get", "configmaps", "-A", "--chunk-size=7", "-o", "name"]).expect_ok();
    assert_eq!(all.lines().filter(|l| l.contains("late-")).count(), round);
    // A token that this server never issued is refused with a Status.
    let (code, status) = c.http("GET", "/api/v1/configmaps?limit=5&continue=zz", None, None);
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
}
