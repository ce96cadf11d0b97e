//! Node identities and the Node authorizer (issue #13), with the real kubectl and over NATS: a
//! node's kubeconfig (`kubus kubeconfig user --client-name system:node:NAME --org
//! system:nodes`) reads only the Secrets and ConfigMaps its own pods use, changes only its own
//! Node and pods; requests over NATS authenticate as HTTPS ones do (a certificate assertion or
//! a ServiceAccount token in the `Authorization` header; nothing, or a made-up token, is 401).
//! No kubelet runs here: pods are bound to nodes by name, which is what the authorizer reads.

mod common;
use common::{node_kubeconfig, Cluster};
use kubus_bus::api::{ApiClient, ApiRequest};
use kubus_bus::credential::Credential;
use std::path::Path;
use std::process::{Command, Output};

fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl").env("KUBECONFIG", kubeconfig).args(args).output().expect("kubectl runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The client certificate and key a kubeconfig carries, as a NATS credential.
fn credential_of(kubeconfig: &Path) -> Credential {
    let user = kubus_apiserver::kubeconfig::read(kubeconfig).unwrap().user.unwrap();
    Credential::certificate(&user.client_certificate.unwrap(), &user.client_key.unwrap(), "e2e").unwrap()
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: Secret
metadata: {name: a-secret, namespace: team}
stringData: {k: a}
---
apiVersion: v1
kind: Secret
metadata: {name: b-secret, namespace: team}
stringData: {k: b}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a-config, namespace: team}
data: {k: a}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
---
apiVersion: v1
kind: Pod
metadata: {name: on-a, namespace: team}
spec:
  nodeName: node-a
  automountServiceAccountToken: false
  volumes:
  - {name: s, secret: {secretName: a-secret}}
  containers:
  - name: c
    image: busybox
    envFrom: [{configMapRef: {name: a-config}}]
    volumeMounts: [{name: s, mountPath: /s}]
---
apiVersion: v1
kind: Pod
metadata: {name: on-b, namespace: team}
spec:
  nodeName: node-b
  automountServiceAccountToken: false
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: b-claim}}
  containers:
  - name: c
    image: busybox
    env: [{name: X, valueFrom: {secretKeyRef: {name: b-secret, key: k}}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: b-claim, namespace: team}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-b}
spec:
  capacity: {storage: 1Mi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/kubus-test-pv-b}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node-b]}]
"#;

#[test]
fn a_node_reaches_only_its_own_pods_objects() {
    let c = Cluster::start("nodeauthz");
    c.apply(OBJECTS);
    // In the cluster's directory: removed with it, whatever the outcome.
    let node_a = node_kubeconfig(&c, "node-a", &c.dir);

    let me = text(&kubectl_as(&node_a, &["auth", "whoami"]));
    assert!(me.contains("system:node:node-a") && me.contains("system:nodes"), "{me}");
    // Its pods' Secret and ConfigMap, and nothing else.
    let got = kubectl_as(&node_a, &["get", "secret", "a-secret", "-n", "team", "-o", "name"]);
    assert!(got.status.success(), "{}", text(&got));
    assert!(kubectl_as(&node_a, &["get", "configmap", "a-config", "-n", "team"]).status.success());
    let refused = text(&kubectl_as(&node_a, &["get", "secret", "b-secret", "-n", "team"]));
    assert!(
        refused.contains(r#"User "system:node:node-a" cannot get resource "secrets""#)
            && refused.contains("no relationship found between node 'node-a' and this object"),
        "{refused}"
    );
    let listed = text(&kubectl_as(&node_a, &["get", "secrets", "-n", "team"]));
    assert!(listed.contains("Forbidden") || listed.contains("forbidden"), "{listed}");
    // `kubectl auth can-i` agrees with what it was allowed.
    let can = |what: &str| text(&kubectl_as(&node_a, &["auth", "can-i", "get", what, "-n", "team"])).trim().to_string();
    assert_eq!(can("secret/a-secret"), "yes");
    // (with the authorizer's reason, as upstream's kubectl prints it)
    assert_eq!(can("secret/b-secret"), "no - no relationship found between node 'node-a' and this object");

    // Its own Node and pods only.
    let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-a"}}"#;
    let mut create = Command::new("kubectl")
        .env("KUBECONFIG", &node_a)
        .args(["create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(create.stdin.as_mut().unwrap(), node.as_bytes()).unwrap();
    let out = create.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let own = kubectl_as(&node_a, &["label", "node", "node-a", "kubus.test/own=yes"]);
    assert!(own.status.success(), "{}", text(&own));
    let other = text(&kubectl_as(&node_a, &["label", "node", "node-b", "kubus.test/own=no"]));
    assert!(other.contains("is not allowed to modify node"), "{other}");
    // Through the whole chain (Node, then RBAC): the local-path role lets every node list
    // claims and volumes, but delete only volumes pinned to itself.
    let delete = text(&kubectl_as(&node_a, &["delete", "pv", "pv-b"]));
    assert!(delete.contains("can only delete persistent volumes pinned to itself"), "{delete}");
    // Over NATS: the same answers for the node's certificate; no credential or a made-up
    // token is 401 (reaching NATS is no way around authentication).
    // (the namespace's default ServiceAccount comes from its controller, soon after the namespace)
    let token = common::eventually(30, || {
        let r = c.kubectl(&["create", "token", "default", "-n", "team"]);
        r.ok.then_some(r.stdout)
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // The embedded NATS takes no one without its password.
        let bare = kubus_bus::redact(&c.nats_url());
        let refused = async_nats::ConnectOptions::new().connect(&bare).await.expect_err("no password: refused");
        assert!(refused.to_string().to_lowercase().contains("authorization"), "{refused}");
        // Node node-a's answers come only on its own inbox (its NATS user may read no other).
        let login = kubus_bus::Login {
            inbox_prefix: Some(kubus_bus::nats_users::node_inbox_prefix("e2e", "node-a")),
            ..Default::default()
        };
        let nats = kubus_bus::connect_as(&c.nats_url(), "e2e-test", &login).await.unwrap();
        let send = |credential: Credential, method: &str, path: &str, body: &str| {
            let api = ApiClient::new(nats.clone(), "e2e", "e2e-test").with_credential(credential);
            let req = ApiRequest {
                method: method.into(),
                path: path.into(),
                query: String::new(),
                content_type: (!body.is_empty()).then(|| "application/merge-patch+json".into()),
                accept: Some("application/json".into()),
                body: body.as_bytes().to_vec(),
                user_agent: String::new(),
            };
            async move { api.send(req).await.unwrap() }
        };
        let get = |credential: Credential, path: &str| send(credential, "GET", path, "");
        let secret = |name: &str| format!("/api/v1/namespaces/team/secrets/{name}");
        let node = credential_of(&node_a);
        assert_eq!(get(node.clone(), &secret("a-secret")).await.status, 200);
        let elsewhere = kubus_bus::connect(&c.nats_url(), "e2e-elsewhere").await.unwrap();
        let api = ApiClient::new(elsewhere, "e2e", "e2e-test").with_credential(node.clone());
        let req = ApiRequest {
            method: "GET".into(),
            path: secret("a-secret"),
            query: String::new(),
            content_type: None,
            accept: Some("application/json".into()),
            body: Vec::new(),
            user_agent: String::new(),
        };
        let r = api.send(req).await.unwrap();
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 403, "a node's answer on another inbox: {body}");
        assert!(body.contains("is answered only on its own inbox"), "{body}");
        let refused = get(node.clone(), &secret("b-secret")).await;
        let body = String::from_utf8_lossy(&refused.body).into_owned();
        assert_eq!(refused.status, 403, "{body}");
        assert!(body.contains("no relationship found between node 'node-a'"), "{body}");
        for anonymous in
            [Credential::None, Credential::token("made-up"), Credential::token(&format!("{}x", token.trim()))]
        {
            let r = get(anonymous, &secret("a-secret")).await;
            let body = String::from_utf8_lossy(&r.body).into_owned();
            assert_eq!(r.status, 401, "{body}");
            assert!(body.contains(r#""reason":"Unauthorized""#), "{body}");
        }
        // A node updates the status of its own pods only (as the kubelet does, by PATCH).
        let status = |pod: &str| format!("/api/v1/namespaces/team/pods/{pod}/status");
        let patch = r#"{"status":{"message":"seen"}}"#;
        let own = send(node.clone(), "PATCH", &status("on-a"), patch).await;
        assert_eq!(own.status, 200, "{}", String::from_utf8_lossy(&own.body));
        let other = send(node.clone(), "PATCH", &status("on-b"), patch).await;
        let body = String::from_utf8_lossy(&other.body).into_owned();
        assert_eq!(other.status, 403, "{body}");
        assert!(body.contains("can only update pod status for pods with spec.nodeName set to itself"), "{body}");
        // The public paths stay public; a ServiceAccount token is its account.
        assert_eq!(get(Credential::None, "/version").await.status, 200);
        let sa = get(Credential::token(token.trim()), "/api/v1/namespaces/team/pods").await;
        let body = String::from_utf8_lossy(&sa.body).into_owned();
        assert_eq!(sa.status, 403, "{body}");
        assert!(body.contains("system:serviceaccount:team:default"), "{body}");
    });
}
