use super::*;
use serde_json::json;

const POD: Option<&str> = Some("io.k8s.api.core.v1.Pod");
const DEPLOYMENT: Option<&str> = Some("io.k8s.api.apps.v1.Deployment");
const SERVICE: Option<&str> = Some("io.k8s.api.core.v1.Service");
const NODE: Option<&str> = Some("io.k8s.api.core.v1.Node");

fn apply(original: &Value, patch: Value, ty: Option<&str>) -> Value {
    strategic_merge(original, &patch, ty).unwrap()
}

fn pod(containers: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}},
        "spec": {"containers": containers}
    })
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
}

#[test]
fn image_change_by_name_keeps_other_containers() {
    let orig = pod(json!([
        {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "busybox"}
    ]));
    let out = apply(&orig, json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}), POD);
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name": "web", "image": "nginx:1.26", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "busybox"}
        ])
    );
    assert_eq!(out["metadata"], orig["metadata"]);
}

#[test]
fn adding_a_container_keeps_existing_ones() {
    let orig = pod(json!([{"name": "web", "image": "nginx"}]));
    let out = apply(&orig, json!({"spec": {"containers": [{"name": "log", "image": "fluentd"}]}}), POD);
    // Upstream places a patch item with no anchor in the live list ahead of the
    // server-only items.
    assert_eq!(names(&out["spec"]["containers"]), ["log", "web"]);
    assert_eq!(out["spec"]["containers"][0]["image"], "fluentd");

    // With $setElementOrder (as kubectl sends it) the new container goes last.
    let out = apply(
        &orig,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
            "containers": [{"name": "log", "image": "fluentd"}]
        }}),
        POD,
    );
    assert_eq!(names(&out["spec"]["containers"]), ["web", "log"]);
    assert!(out["spec"].get("$setElementOrder/containers").is_none());
}

#[test]
fn patch_delete_removes_a_container() {
    let orig = pod(json!([{"name": "web", "image": "nginx"}, {"name": "log", "image": "fluentd"}]));
    let out = apply(&orig, json!({"spec": {"containers": [{"name": "log", "$patch": "delete"}]}}), POD);
    assert_eq!(out["spec"]["containers"], json!([{"name": "web", "image": "nginx"}]));
    // Deleting what is not there is not an error.
    let again = apply(&out, json!({"spec": {"containers": [{"name": "log", "$patch": "delete"}]}}), POD);
    assert_eq!(again, out);
}

#[test]
fn env_merges_by_name() {
    let orig = pod(json!([{"name": "web", "env": [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]}]));
    let out = apply(
        &orig,
        json!({"spec": {"containers": [{"name": "web", "env": [
            {"name": "B", "value": "two"},
            {"name": "C", "value": "3", "valueFrom": null},
            {"name": "A", "$patch": "delete"}
        ]}]}}),
        POD,
    );
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([{"name": "B", "value": "two"}, {"name": "C", "value": "3"}])
    );
}

#[test]
fn ports_merge_by_container_port() {
    let orig = pod(json!([{"name": "web", "ports": [
        {"containerPort": 80, "name": "http"},
        {"containerPort": 443, "name": "https"}
    ]}]));
    let out = apply(
        &orig,
        json!({"spec": {"containers": [{"name": "web", "ports": [
            {"containerPort": 443, "protocol": "TCP"},
            {"containerPort": 8080, "name": "alt"}
        ]}]}}),
        POD,
    );
    let ports = &out["spec"]["containers"][0]["ports"];
    assert_eq!(ports.as_array().unwrap().len(), 3);
    assert!(ports.as_array().unwrap().contains(&json!({"containerPort": 80, "name": "http"})));
    assert!(ports.as_array().unwrap().contains(&json!({"containerPort": 443, "name": "https", "protocol": "TCP"})));
    assert!(ports.as_array().unwrap().contains(&json!({"containerPort": 8080, "name": "alt"})));
}

#[test]
fn volume_retain_keys_switches_source() {
    let mut orig = pod(json!([{"name": "web"}]));
    orig["spec"]["volumes"] = json!([
        {"name": "data", "emptyDir": {}},
        {"name": "cache", "emptyDir": {"medium": "Memory"}}
    ]);
    let out = apply(
        &orig,
        json!({"spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
            "volumes": [{"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cfg"}}]
        }}),
        POD,
    );
    assert_eq!(
        out["spec"]["volumes"],
        json!([
            {"name": "data", "configMap": {"name": "cfg"}},
            {"name": "cache", "emptyDir": {"medium": "Memory"}}
        ])
    );
    // Without the directive the old source stays, as upstream.
    let out = apply(&orig, json!({"spec": {"volumes": [{"name": "data", "configMap": {"name": "cfg"}}]}}), POD);
    assert_eq!(out["spec"]["volumes"][0], json!({"name": "data", "emptyDir": {}, "configMap": {"name": "cfg"}}));
}

#[test]
fn set_element_order_reorders_and_keeps_server_only_items_in_place() {
    let orig = pod(json!([
        {"name": "a"}, {"name": "b", "image": "b"}, {"name": "x", "image": "server-only"},
        {"name": "c"}, {"name": "d"}
    ]));
    let out = apply(
        &orig,
        json!({"spec": {"$setElementOrder/containers": [
            {"name": "b"}, {"name": "a"}, {"name": "d"}, {"name": "c"}
        ]}}),
        POD,
    );
    // x followed b and preceded c in the live list, and still sits between them.
    assert_eq!(names(&out["spec"]["containers"]), ["b", "a", "x", "d", "c"]);
    assert_eq!(out["spec"]["containers"][0]["image"], "b");
}

#[test]
fn set_element_order_must_agree_with_patch_list() {
    let orig = pod(json!([{"name": "a"}, {"name": "b"}]));
    let err = strategic_merge(
        &orig,
        &json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "1"}, {"name": "a", "image": "2"}]
        }}),
        POD,
    )
    .unwrap_err();
    assert!(matches!(err, PatchError::SetElementOrderMismatch { .. }), "{err}");
}

#[test]
fn finalizers_merge_as_ordered_set_and_delete_from_primitive_list() {
    let orig = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
    let out = apply(&orig, json!({"metadata": {"finalizers": ["b", "c"]}}), POD);
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));

    let out = apply(&out, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zz"]}}), POD);
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));

    // Together with an order directive, as kubectl sends them.
    let out = apply(
        &out,
        json!({"metadata": {
            "$setElementOrder/finalizers": ["c"],
            "$deleteFromPrimitiveList/finalizers": ["b"]
        }}),
        POD,
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["c"]));

    // Deleting from a list that does not exist does not create it.
    let out = apply(&json!({"metadata": {}}), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}), POD);
    assert_eq!(out, json!({"metadata": {}}));
}

#[test]
fn replace_directive_in_map_and_list() {
    let orig = pod(json!([{"name": "web", "image": "nginx"}, {"name": "log"}]));
    let out = apply(&orig, json!({"metadata": {"labels": {"$patch": "replace", "only": "me"}}}), POD);
    assert_eq!(out["metadata"]["labels"], json!({"only": "me"}));
    assert_eq!(out["metadata"]["name"], "p");

    let out =
        apply(&orig, json!({"spec": {"containers": [{"name": "new", "image": "x"}, {"$patch": "replace"}]}}), POD);
    assert_eq!(out["spec"]["containers"], json!([{"name": "new", "image": "x"}]));

    let out = apply(&orig, json!({"spec": {"containers": [{"$patch": "replace"}]}}), POD);
    assert_eq!(out["spec"]["containers"], json!([]));
}

#[test]
fn delete_directive_empties_a_map() {
    let orig = pod(json!([{"name": "web"}]));
    let out = apply(&orig, json!({"metadata": {"labels": {"$patch": "delete"}}}), POD);
    assert_eq!(out["metadata"]["labels"], json!({}));
    let out = apply(&orig, json!({"$patch": "delete"}), POD);
    assert_eq!(out, json!({}));
}

#[test]
fn null_deletes_a_label() {
    let orig = pod(json!([{"name": "web"}]));
    let out = apply(&orig, json!({"metadata": {"labels": {"tier": null, "missing": null}}}), POD);
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn deployment_strategy_retain_keys() {
    let orig = json!({
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        }
    });
    let out = apply(&orig, json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}}), DEPLOYMENT);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(out["spec"]["replicas"], 2);

    // What kubectl apply sends for a retainKeys field.
    let out = apply(&orig, json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}), DEPLOYMENT);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

    // A patch may not set a key it asks to clear.
    let err = strategic_merge(
        &orig,
        &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}}),
        DEPLOYMENT,
    )
    .unwrap_err();
    assert_eq!(err, PatchError::BadPatchFormatForRetainKeys);
}

#[test]
fn deployment_template_containers_merge() {
    let orig = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
        {"name": "b", "image": "b:1"}
    ]}}}});
    let out = apply(
        &orig,
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "env": [{"name": "Y", "value": "2"}]}
        ]}}}}),
        DEPLOYMENT,
    );
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(names(containers), ["a", "b"]);
    assert_eq!(containers[0]["image"], "a:1");
    assert_eq!(containers[0]["env"].as_array().unwrap().len(), 2);
}

#[test]
fn service_ports_merge_by_port() {
    let orig = json!({"spec": {"type": "ClusterIP", "ports": [
        {"name": "http", "port": 80, "targetPort": 8080},
        {"name": "https", "port": 443, "targetPort": 8443}
    ]}});
    let out = apply(
        &orig,
        json!({"spec": {
            "$setElementOrder/ports": [{"port": 80}, {"port": 443}, {"port": 9090}],
            "ports": [{"port": 80, "targetPort": 9000}, {"port": 9090, "name": "metrics"}]
        }}),
        SERVICE,
    );
    assert_eq!(
        out["spec"]["ports"],
        json!([
            {"name": "http", "port": 80, "targetPort": 9000},
            {"name": "https", "port": 443, "targetPort": 8443},
            {"name": "metrics", "port": 9090}
        ])
    );
}

#[test]
fn node_status_conditions_merge_by_type() {
    let orig = json!({"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]
    }});
    let out = apply(
        &orig,
        json!({"status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "n1"}]
        }}),
        NODE,
    );
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}])
    );
    assert_eq!(out["status"]["addresses"].as_array().unwrap().len(), 2);
}

#[test]
fn owner_references_merge_by_uid() {
    let orig = json!({"metadata": {"ownerReferences": [{"uid": "1", "kind": "ReplicaSet", "name": "rs"}]}});
    let out = apply(
        &orig,
        json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}, {"uid": "2", "kind": "X", "name": "x"}]}}),
        Some("io.k8s.api.core.v1.ConfigMap"),
    );
    let refs = out["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(refs.len(), 2);
    assert!(refs.contains(&json!({"uid": "1", "kind": "ReplicaSet", "name": "rs", "controller": true})));
}

#[test]
fn lists_without_strategy_are_replaced() {
    let mut orig = pod(json!([{"name": "web", "args": ["a", "b"]}]));
    orig["spec"]["tolerations"] = json!([{"key": "k1", "operator": "Exists"}]);
    let out = apply(
        &orig,
        json!({"spec": {
            "tolerations": [{"key": "k2", "operator": "Exists", "value": null}],
            "containers": [{"name": "web", "args": ["c"]}]
        }}),
        POD,
    );
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "k2", "operator": "Exists"}]));
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["c"]));
}

#[test]
fn unknown_root_type_behaves_like_merge_patch() {
    let orig = json!({
        "metadata": {"name": "w", "finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
        "spec": {"items": [{"name": "a", "v": 1}], "size": 1}
    });
    let patch = json!({
        "metadata": {"finalizers": ["b"], "labels": {"x": null, "z": "3"}},
        "spec": {"items": [{"name": "b"}], "extra": {"deep": {"k": "v", "gone": null}}}
    });
    let expected = json!({
        "metadata": {"name": "w", "finalizers": ["b"], "labels": {"y": "2", "z": "3"}},
        "spec": {"items": [{"name": "b"}], "size": 1, "extra": {"deep": {"k": "v"}}}
    });
    assert_eq!(apply(&orig, patch.clone(), None), expected);
    assert_eq!(apply(&orig, patch, Some("com.example.v1.Widget")), expected);
    // Directives still apply to objects.
    let out = apply(&orig, json!({"spec": {"$patch": "replace", "size": 2}}), None);
    assert_eq!(out["spec"], json!({"size": 2}));
}

#[test]
fn kubectl_apply_patch_for_image_edit_and_label_removal() {
    let live = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "0b1c",
            "resourceVersion": "42",
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "terminationMessagePath": "/dev/termination-log"},
                        {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]}
                    ],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst"
                }
            }
        },
        "status": {"replicas": 2}
    });
    // kubectl 1.32 three-way patch: new last-applied annotation, the removed label as
    // null, and the changed container with the order of all containers.
    let patch = json!({
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"},
            "labels": {"tier": null}
        },
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.26", "name": "nginx"}]
        }}}
    });
    let out = apply(&live, patch.clone(), DEPLOYMENT);
    let mut expected = live.clone();
    expected["metadata"]["labels"] = json!({"app": "web"});
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!("{\"new\":true}\n");
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    assert_eq!(out, expected);
    assert_eq!(apply(&out, patch, DEPLOYMENT), expected);
}

#[test]
fn applying_a_patch_twice_is_idempotent() {
    let mut orig = pod(json!([
        {"name": "a", "env": [{"name": "X", "value": "1"}]},
        {"name": "b", "ports": [{"containerPort": 1}]}
    ]));
    orig["metadata"]["finalizers"] = json!(["f1", "f2"]);
    orig["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
    let patch = json!({
        "metadata": {"labels": {"tier": null, "new": "1"}, "finalizers": ["f3"],
                     "$deleteFromPrimitiveList/finalizers": ["f1"]},
        "spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}],
            "containers": [
                {"name": "a", "$patch": "delete"},
                {"name": "c", "image": "c", "env": [{"name": "Y", "value": "2"}]},
                {"name": "b", "ports": [{"containerPort": 2}]}
            ],
            "volumes": [{"name": "v", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}}]
        }
    });
    let once = apply(&orig, patch.clone(), POD);
    let twice = apply(&once, patch, POD);
    assert_eq!(once, twice);
    assert_eq!(names(&once["spec"]["containers"]), ["c", "b"]);
    // The new finalizer has no anchor in the live list, so it goes first (upstream rule).
    assert_eq!(once["metadata"]["finalizers"], json!(["f3", "f2"]));
    assert_eq!(once["spec"]["volumes"], json!([{"name": "v", "secret": {"secretName": "s"}}]));
}

#[test]
fn patch_order_is_kept_for_reordered_items() {
    let orig = pod(json!([{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}]));
    let out =
        apply(&orig, json!({"spec": {"containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}}), POD);
    // "2" preceded "3" on the server, so it stays ahead of the patch items.
    assert_eq!(names(&out["spec"]["containers"]), ["2", "3", "1"]);
}

#[test]
fn new_values_are_cleaned_of_nulls_and_directives() {
    let orig = json!({"metadata": {"name": "p"}});
    let out = apply(
        &orig,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "image": null, "env": [{"name": "E", "$patch": "delete"}],
                            "$setElementOrder/env": [{"name": "E"}]}],
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"}
        }}),
        POD,
    );
    assert_eq!(out["spec"], json!({"containers": [{"name": "a", "env": []}], "strategy": {"type": "Recreate"}}));
}

#[test]
fn malformed_patches_are_rejected() {
    let orig = pod(json!([{"name": "web"}]));
    let err = |patch: Value| strategic_merge(&orig, &patch, POD).unwrap_err();
    assert_eq!(err(json!([1])), PatchError::PatchNotObject { found: "array" });
    assert_eq!(
        err(json!("x")).to_string(),
        "json: cannot unmarshal string into Go value of type map[string]interface {}"
    );
    assert!(matches!(err(json!({"spec": {"containers": [{"image": "no-name"}]}})), PatchError::NoMergeKey { .. }));
    assert_eq!(err(json!({"spec": {"containers": [{"$patch": "merge"}]}})), PatchError::MergeDirectiveInList);
    assert!(matches!(err(json!({"metadata": {"labels": {"$patch": "explode"}}})), PatchError::BadPatchType { .. }));
    assert!(matches!(err(json!({"spec": {"containers": ["web"]}})), PatchError::MixedListElements(_)));
    assert_eq!(
        err(json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}})),
        PatchError::BadPatchFormatForPrimitiveList
    );
    assert_eq!(strategic_merge(&json!([]), &json!({}), POD).unwrap_err(), PatchError::BadJsonDoc);
    // A null patch is an empty patch, as upstream decodes it.
    assert_eq!(strategic_merge(&orig, &Value::Null, POD).unwrap(), orig);
}
