//! RBAC with the real kubectl (issue #13's authorization): roles and bindings made with
//! `kubectl create`, enforced for an impersonated user (`--as`) with upstream's 403 messages,
//! `kubectl auth can-i` (incl. `--list`) and `kubectl auth whoami` answered by the authorizer,
//! an escalation refused, the default roles reconciled and aggregated at start, roles labelled
//! for aggregation later folded in by the controller manager, the binding tables as
//! upstream prints them, and the review resources in discovery.

mod common;
use common::Cluster;

#[test]
fn roles_bindings_impersonation_reviews_and_escalation() {
    let c = Cluster::start("rbac");
    c.kubectl(&["create", "namespace", "team-a"]).expect_ok();
    // kubectl's generators send protobuf.
    c.kubectl(&["create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", "team-a"]).expect_ok();
    c.kubectl(&["create", "rolebinding", "alice-reads", "--role=pod-reader", "--user=alice", "-n", "team-a"])
        .expect_ok();
    c.kubectl(&["create", "clusterrole", "node-viewer", "--verb=get,list,watch", "--resource=nodes"]).expect_ok();
    c.kubectl(&["create", "clusterrolebinding", "ops-view-nodes", "--clusterrole=node-viewer", "--group=ops"])
        .expect_ok();

    // The user may do what the role grants where it is bound, and nothing else.
    c.kubectl(&["get", "pods", "-n", "team-a", "--as=alice"]).expect_ok();
    c.kubectl(&["get", "pods", "-n", "default", "--as=alice"]).expect_err(
        r#"Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#,
    );
    c.kubectl(&["get", "nodes", "--as=alice"]).expect_err(
        r#"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#,
    );
    c.kubectl(&["delete", "pod", "web", "-n", "team-a", "--as=alice"]).expect_err(
        r#"pods "web" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "team-a""#,
    );
    // Groups come from --as-group; a ClusterRoleBinding applies everywhere.
    c.kubectl(&["get", "nodes", "--as=bob", "--as-group=ops"]).expect_ok();
    c.kubectl(&["get", "nodes", "--as=bob"]).expect_err("User \"bob\" cannot list resource \"nodes\"");

    // can-i answers as the authorizer decides.
    let yes = c.kubectl(&["auth", "can-i", "list", "pods", "-n", "team-a", "--as=alice"]).expect_ok();
    assert_eq!(yes.trim(), "yes");
    let no = c.kubectl(&["auth", "can-i", "list", "pods", "-n", "default", "--as=alice"]);
    assert!(!no.ok && no.stdout.trim() == "no", "{} {}", no.stdout, no.stderr);
    let list = c.kubectl(&["auth", "can-i", "--list", "-n", "team-a", "--as=alice"]).expect_ok();
    assert!(list.lines().any(|l| l.starts_with("pods ") && l.contains("[get list]")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("selfsubjectaccessreviews.authorization.k8s.io")), "{list}");
    let admin_can = c.kubectl(&["auth", "can-i", "delete", "nodes"]).expect_ok();
    assert_eq!(admin_can.trim(), "yes");

    // whoami: the admin stand-in, and the impersonated user.
    let me = c.kubectl(&["auth", "whoami"]).expect_ok();
    assert!(me.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Username", "kubernetes-admin"]), "{me}");
    assert!(me.contains("[system:masters system:authenticated]"), "{me}");
    let alice = c.kubectl(&["auth", "whoami", "--as=alice"]).expect_ok();
    assert!(alice.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Username", "alice"]), "{alice}");
    assert!(alice.contains("[system:authenticated]"), "{alice}");

    // Escalation: alice may write roles in team-a, but not grant what she does not hold.
    c.kubectl(&[
        "create",
        "role",
        "role-writer",
        "--verb=create,update,get",
        "--resource=roles.rbac.authorization.k8s.io",
        "-n",
        "team-a",
    ])
    .expect_ok();
    c.kubectl(&["create", "rolebinding", "alice-writes-roles", "--role=role-writer", "--user=alice", "-n", "team-a"])
        .expect_ok();
    c.kubectl(&["create", "role", "modest", "--verb=get", "--resource=pods", "-n", "team-a", "--as=alice"]).expect_ok();
    let refused = c
        .kubectl(&["create", "role", "greedy", "--verb=delete", "--resource=pods,secrets", "-n", "team-a", "--as=alice"])
        .expect_err(r#"roles.rbac.authorization.k8s.io "greedy" is forbidden: user "alice" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#);
    assert!(refused.contains(r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#), "{refused}");
    // Binding a role needs its permissions too.
    c.kubectl(&["create", "role", "secret-reader", "--verb=get", "--resource=secrets", "-n", "team-a"]).expect_ok();
    c.kubectl(&[
        "create",
        "clusterrole",
        "rb-writer",
        "--verb=create",
        "--resource=rolebindings.rbac.authorization.k8s.io",
    ])
    .expect_ok();
    c.kubectl(&["create", "rolebinding", "alice-binds", "--clusterrole=rb-writer", "--user=alice", "-n", "team-a"])
        .expect_ok();
    c.kubectl(&[
        "create",
        "rolebinding",
        "eve-secrets",
        "--role=secret-reader",
        "--user=eve",
        "-n",
        "team-a",
        "--as=alice",
    ])
    .expect_err("is attempting to grant RBAC permissions not currently held");
    c.kubectl(&["create", "rolebinding", "eve-pods", "--role=pod-reader", "--user=eve", "-n", "team-a", "--as=alice"])
        .expect_ok();

    // Tables as upstream's printers.
    let wide = c.kubectl(&["get", "rolebindings", "-n", "team-a", "-o", "wide"]).expect_ok();
    let header: Vec<&str> = wide.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"], "{wide}");
    assert!(
        wide.lines().any(|l| l.starts_with("alice-reads") && l.contains("Role/pod-reader") && l.contains("alice")),
        "{wide}"
    );
    let roles = c.kubectl(&["get", "roles", "-n", "team-a"]).expect_ok();
    let header: Vec<&str> = roles.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CREATED", "AT"], "{roles}");

    // The defaults: cluster-admin bound to system:masters, admin/edit/view aggregated.
    let crb = c.get_json(&["clusterrolebinding", "cluster-admin"]);
    assert_eq!(crb["subjects"][0]["name"], "system:masters");
    let admin = c.get_json(&["clusterrole", "admin"]);
    let rules = admin["rules"].as_array().cloned().unwrap_or_default();
    assert!(
        rules.iter().any(|r| r["resources"].as_array().is_some_and(|rs| rs.iter().any(|x| x == "pods/log"))),
        "{admin}"
    );
    assert!(
        rules.iter().any(|r| r["resources"].as_array().is_some_and(|rs| rs.iter().any(|x| x == "rolebindings"))),
        "{admin}"
    );

    // Aggregation after start (the controller manager's clusterrole-aggregation controller):
    // a role labelled aggregate-to-view joins view's rules, and leaves them with the label.
    c.kubectl(&["create", "rolebinding", "bob-views", "--clusterrole=view", "--user=bob", "-n", "team-a"]).expect_ok();
    // (Upstream's view already reads cronjobs; it lacks leases.)
    let can_list_leases = || {
        let r = c.kubectl(&["auth", "can-i", "list", "leases.coordination.k8s.io", "-n", "team-a", "--as=bob"]);
        r.stdout.trim() == "yes"
    };
    c.kubectl(&["create", "clusterrole", "lease-viewer", "--verb=get,list", "--resource=leases.coordination.k8s.io"])
        .expect_ok();
    assert!(!can_list_leases(), "view lacks leases before the label");
    c.kubectl(&["label", "clusterrole", "lease-viewer", "rbac.authorization.k8s.io/aggregate-to-view=true"])
        .expect_ok();
    common::eventually(10, || can_list_leases().then_some(()));
    // view is aggregated into edit, edit into admin.
    let lease_rule =
        serde_json::json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list"]});
    common::eventually(10, || {
        let admin = c.get_json(&["clusterrole", "admin"]);
        admin["rules"].as_array()?.contains(&lease_rule).then_some(())
    });
    c.kubectl(&["label", "clusterrole", "lease-viewer", "rbac.authorization.k8s.io/aggregate-to-view-"]).expect_ok();
    common::eventually(10, || (!can_list_leases()).then_some(()));

    // The review resources are in discovery, create-only, as upstream lists them.
    let resources = c.kubectl(&["api-resources", "--no-headers", "-o", "wide"]).expect_ok();
    let reviews: Vec<Vec<&str>> = resources
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols[0].ends_with("reviews"))
        .collect();
    let names: Vec<&str> = reviews.iter().map(|cols| cols[0]).collect();
    assert_eq!(
        names,
        [
            "selfsubjectreviews",
            "tokenreviews",
            "localsubjectaccessreviews",
            "selfsubjectaccessreviews",
            "selfsubjectrulesreviews",
            "subjectaccessreviews"
        ],
        "{resources}"
    );
    // VERBS is the last column (reviews have no categories).
    assert!(reviews.iter().all(|cols| cols.last() == Some(&"create")), "{resources}");
}

/// Each controller acts as its own ServiceAccount with only its `system:controller:*` role
/// (upstream's --use-service-account-credentials, as kubeadm runs it), the controller manager
/// itself is no longer in system:masters, and a controller whose ServiceAccount is deleted gets
/// it back and carries on.
#[test]
fn controllers_act_as_their_own_service_accounts() {
    let c = Cluster::start_with("ctrl-sa", &["--sim-nodes", "2"]);
    c.kubectl(&["create", "deployment", "web", "--image=busybox", "--replicas=2"]).expect_ok();
    let c = &c;
    let pods = |n: usize| {
        move || {
            let out = c.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]).expect_ok();
            (out.lines().count() == n).then_some(())
        }
    };
    common::eventually(60, pods(2));

    // The ServiceAccounts, roles and bindings as upstream names them.
    let sas = c.kubectl(&["get", "serviceaccounts", "-n", "kube-system", "-o", "name"]).expect_ok();
    for sa in ["deployment-controller", "replicaset-controller", "generic-garbage-collector", "namespace-controller"] {
        assert!(sas.lines().any(|l| l == format!("serviceaccount/{sa}")), "{sa} missing: {sas}");
    }
    let binding = c.get_json(&["clusterrolebinding", "system:controller:deployment-controller"]);
    assert_eq!(binding["roleRef"]["name"], "system:controller:deployment-controller");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["namespace"], "kube-system");

    // Only its role: the deployment controller makes ReplicaSets, not Pods, and reads no
    // Secrets; the controller manager itself may not make Pods either.
    let can = |args: &[&str]| c.kubectl(&[&["auth", "can-i"], args].concat()).stdout.trim().to_string();
    let deployments = "--as=system:serviceaccount:kube-system:deployment-controller";
    assert_eq!(can(&["create", "replicasets.apps", "-n", "default", deployments]), "yes");
    assert_eq!(can(&["create", "pods", "-n", "default", deployments]), "no");
    assert_eq!(can(&["get", "secrets", "-n", "default", deployments]), "no");
    assert_eq!(can(&["create", "pods", "-n", "default", "--as=system:kube-controller-manager"]), "no");
    assert_eq!(
        can(&["create", "pods", "-n", "default", "--as=system:serviceaccount:kube-system:replicaset-controller"]),
        "yes"
    );

    // A deleted ServiceAccount is made again at the controller's next refused request, and the
    // controller goes on (here: the ReplicaSet controller scaling up).
    c.kubectl(&["delete", "serviceaccount", "replicaset-controller", "-n", "kube-system"]).expect_ok();
    c.kubectl(&["scale", "deployment", "web", "--replicas=4"]).expect_ok();
    common::eventually(90, pods(4));
    common::eventually(30, || {
        c.kubectl(&["get", "serviceaccount", "replicaset-controller", "-n", "kube-system"]).ok.then_some(())
    });

    // The garbage collector, without the rights a role grants, still finishes a foreground
    // delete of it (owners and finalizers are not an escalation).
    c.kubectl(&["create", "clusterrole", "powerful", "--verb=*", "--resource=pods,secrets"]).expect_ok();
    c.kubectl(&["delete", "clusterrole", "powerful", "--cascade=foreground", "--wait=false"]).expect_ok();
    common::eventually(30, || (!c.kubectl(&["get", "clusterrole", "powerful"]).ok).then_some(()));

    // Namespaces get their `default` ServiceAccount (as upstream's service account
    // controller), Services their EndpointSlices (as upstream's EndpointSlice controller).
    c.kubectl(&["create", "namespace", "fresh"]).expect_ok();
    common::eventually(30, || c.kubectl(&["get", "serviceaccount", "default", "-n", "fresh"]).ok.then_some(()));
    c.kubectl(&["expose", "deployment", "web", "--port=80"]).expect_ok();
    common::eventually(30, || {
        let out =
            c.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "name"]).expect_ok();
        (!out.trim().is_empty()).then_some(())
    });
}
