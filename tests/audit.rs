//! Auditing (issue #13): requests are recorded as upstream's `audit.k8s.io/v1` Events on the
//! cluster's audit stream on the bus, with who made them, as the default policy says: a create
//! with its user and object, an impersonated one with both users, a refused one with its 403,
//! a Secret without its data, and no reads.

mod common;
use common::Cluster;
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// Every event on the audit stream of cluster `e2e` so far.
fn audit_events(c: &Cluster) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let nats = kubus_bus::connect(&c.nats_url(), "e2e-audit").await.unwrap();
        let js = async_nats::jetstream::new(nats);
        let stream = js.get_stream("KUBUS_e2e_AUDIT").await.expect("the audit stream exists");
        let consumer =
            stream.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
        let mut messages = consumer.messages().await.unwrap();
        let mut events = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
            events.push(serde_json::from_slice::<Value>(&m.payload).expect("an event is JSON"));
        }
        events
    })
}

fn find<'a>(events: &'a [Value], verb: &str, resource: &str, name: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["verb"] == verb && e["objectRef"]["resource"] == resource && e["objectRef"]["name"] == name)
}

#[test]
fn the_audit_stream_records_who_changed_what() {
    let c = Cluster::start("audit");
    c.kubectl(&["create", "configmap", "audited", "--from-literal=k=v"]).expect_ok();
    c.kubectl(&["create", "secret", "generic", "hidden", "--from-literal=password=s3cr3t"]).expect_ok();
    c.kubectl(&["get", "configmaps"]).expect_ok();
    c.kubectl(&["create", "serviceaccount", "limited"]).expect_ok();
    c.kubectl(&["create", "deployment", "web", "--image=busybox"]).expect_ok();
    c.kubectl(&["create", "configmap", "as-jane", "--as=jane", "--as-group=system:masters"]).expect_ok();
    let refused = c.kubectl(&["create", "configmap", "nope", "--as=system:serviceaccount:default:limited"]);
    assert!(!refused.ok);
    // Pod streams too (upstream records `create pods/exec`): one for a pod that is not there,
    // one refused.
    let exec = "/api/v1/namespaces/default/pods/ghost/exec?command=true";
    assert!(!c.kubectl_stdin(&["create", "--raw", exec, "-f", "-"], "{}").ok);
    let as_limited = "--as=system:serviceaccount:default:limited";
    assert!(!c.kubectl_stdin(&["create", "--raw", exec, "-f", "-", as_limited], "{}").ok);

    let events = common::eventually(20, || {
        let events = audit_events(&c);
        let execs = events.iter().filter(|e| e["objectRef"]["subresource"] == "exec").count();
        (find(&events, "create", "configmaps", "nope").is_some() && execs == 2).then_some(events)
    });
    let execs: Vec<&Value> = events.iter().filter(|e| e["objectRef"]["subresource"] == "exec").collect();
    assert!(execs.iter().all(|e| e["verb"] == "create" && e["objectRef"]["name"] == "ghost"), "{execs:?}");
    let codes: Vec<&Value> = execs.iter().map(|e| &e["responseStatus"]["code"]).collect();
    assert!(codes.contains(&&Value::from(404)) && codes.contains(&&Value::from(403)), "{codes:?}");
    // A create with its user, object and code.
    let web = find(&events, "create", "deployments", "web").expect("the Deployment's create");
    assert_eq!(web["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(web["kind"], "Event");
    assert_eq!(web["stage"], "ResponseComplete");
    assert_eq!(web["level"], "Request");
    assert_eq!(web["user"]["username"], "kubernetes-admin");
    assert!(web["user"]["groups"].as_array().unwrap().iter().any(|g| g == "system:masters"), "{web}");
    assert_eq!(web["objectRef"]["apiGroup"], "apps");
    assert_eq!(web["objectRef"]["namespace"], "default");
    assert_eq!(web["responseStatus"]["code"], 201);
    assert_eq!(web["requestObject"]["kind"], "Deployment");
    assert!(web["userAgent"].as_str().unwrap().starts_with("kubectl"), "{web}");
    assert!(!web["auditID"].as_str().unwrap().is_empty());
    // The Deployment's ReplicaSet was made by the deployment controller's own ServiceAccount,
    // recorded without content as the control plane's writes are.
    let rs = common::eventually(20, || {
        audit_events(&c).into_iter().find(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "replicasets")
    });
    assert_eq!(rs["user"]["username"], "system:serviceaccount:kube-system:deployment-controller", "{rs}");
    assert_eq!(rs["level"], "Metadata");
    assert_eq!(rs["responseStatus"]["code"], 201);
    // A Secret: who and what, never its data.
    let secret = find(&events, "create", "secrets", "hidden").expect("the Secret's create");
    assert_eq!(secret["level"], "Metadata");
    assert!(secret.get("requestObject").is_none(), "{secret}");
    assert!(!serde_json::to_string(&events).unwrap().contains("czNjcjN0"), "the secret's data is in the audit stream");
    // Impersonation names both users.
    let jane = find(&events, "create", "configmaps", "as-jane").expect("the impersonated create");
    assert_eq!(jane["user"]["username"], "kubernetes-admin");
    assert_eq!(jane["impersonatedUser"]["username"], "jane");
    // A refused request, with its 403.
    let nope = find(&events, "create", "configmaps", "nope").expect("the refused create");
    assert_eq!(nope["responseStatus"]["code"], 403);
    assert_eq!(nope["impersonatedUser"]["username"], "system:serviceaccount:default:limited");
    // Reads are not recorded by the default policy.
    assert!(
        !events.iter().any(|e| e["verb"] == "list" && e["objectRef"]["resource"] == "configmaps"),
        "a list was audited"
    );

    // The stream refuses a purge (who did what cannot be wiped through JetStream).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let nats = kubus_bus::connect(&c.nats_url(), "e2e-audit").await.unwrap();
        let js = async_nats::jetstream::new(nats);
        let mut stream = js.get_stream("KUBUS_e2e_AUDIT").await.unwrap();
        assert!(stream.purge().await.is_err(), "the audit stream was purged");
        assert!(stream.info().await.unwrap().state.messages >= 6);
    });
    // The API servers' counter, under upstream's name.
    let metrics = c.kubectl(&["get", "--raw", "/metrics"]).expect_ok();
    assert!(metrics.lines().any(|l| l.starts_with("apiserver_audit_event_total ")), "no apiserver_audit_event_total");
}
