use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::selector::{format_label_selector, format_labels, selector_string};
use super::*;
use crate::time::parse_rfc3339;

const NOW: &str = "2024-05-01T12:00:00Z";

fn now() -> SystemTime {
    parse_rfc3339(NOW).unwrap()
}

/// RFC 3339 text of the instant `secs` seconds before [`NOW`].
fn ago(secs: u64) -> String {
    format_rfc3339(now() - Duration::from_secs(secs))
}

fn strings(cells: &[Value]) -> Vec<String> {
    cells
        .iter()
        .map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn row(group: &str, resource: &str, obj: Value) -> Vec<String> {
    let cells = cells(group, resource, &obj, now());
    assert_eq!(cells.len(), column_definitions(group, resource).len(), "one cell per column");
    strings(&cells)
}

fn pod(spec: Value, status: Value) -> Value {
    json!({
        "metadata": {"name": "web", "creationTimestamp": ago(3600)},
        "spec": spec,
        "status": status,
    })
}

fn one_container() -> Value {
    json!({"containers": [{"name": "app", "image": "nginx"}]})
}

/// READY, STATUS and RESTARTS of a pod.
fn pod_summary(p: Value) -> (String, String, String) {
    let r = row("", "pods", p);
    (r[1].clone(), r[2].clone(), r[3].clone())
}

fn pod_status(p: Value) -> String {
    pod_summary(p).1
}

fn hd(secs: u64) -> String {
    human_duration(Duration::from_secs(secs))
}

#[test]
fn human_duration_thresholds() {
    const M: u64 = 60;
    const H: u64 = 3600;
    const D: u64 = 24 * H;
    const Y: u64 = 365 * D;
    let cases = [
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (2 * M, "2m"),
        (2 * M + 3, "2m3s"),
        (9 * M + 59, "9m59s"),
        (10 * M, "10m"),
        (10 * M + 30, "10m"),
        (179 * M + 59, "179m"),
        (3 * H, "3h"),
        (3 * H + 5 * M, "3h5m"),
        (7 * H + 59 * M, "7h59m"),
        (8 * H, "8h"),
        (47 * H + 59 * M, "47h"),
        (2 * D, "2d"),
        (3 * D + 4 * H, "3d4h"),
        (7 * D + 23 * H, "7d23h"),
        (8 * D, "8d"),
        (729 * D, "729d"),
        (2 * Y, "2y"),
        (2 * Y + D, "2y1d"),
        (7 * Y + 364 * D, "7y364d"),
        (8 * Y, "8y"),
        (8 * Y + 100 * D, "8y"),
    ];
    for (secs, want) in cases {
        assert_eq!(hd(secs), want, "{secs}s");
    }
    assert_eq!(human_duration(Duration::from_millis(1999)), "1s");
}

#[test]
fn human_duration_tolerates_small_clock_skew() {
    assert_eq!(clock::human_nanos(-1_500_000_000), "0s");
    assert_eq!(clock::human_nanos(-2_000_000_000), "<invalid>");
    let future = now() + Duration::from_secs(30);
    assert_eq!(clock::since(now(), Some(future)), "<invalid>");
    assert_eq!(clock::since(now(), None), "<unknown>");
}

#[test]
fn rfc3339_parsing() {
    let base = parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
    let since_epoch = base.duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(since_epoch.as_secs(), 1_714_564_800);
    assert_eq!(parse_rfc3339("2024-05-01T14:30:00+02:30").unwrap(), base, "offsets are subtracted");
    assert_eq!(parse_rfc3339("2024-05-01T11:00:00-01:00").unwrap(), base);
    let micro = parse_rfc3339("2024-05-01T12:00:00.250000Z").unwrap();
    assert_eq!(micro.duration_since(base).unwrap(), Duration::from_millis(250));
    let long = parse_rfc3339("2024-05-01T12:00:00.1234567891Z").unwrap();
    assert_eq!(long.duration_since(base).unwrap(), Duration::from_nanos(123_456_789));
    assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
    for bad in [
        "",
        "2024-05-01",
        "2024-05-01 12:00:00Z",
        "2024-05-01T12:00:00",
        "2024-05-01T12:00:00.Z",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:00:00+0200",
        "2024-05-01T12:00:00Zjunk",
    ] {
        assert!(parse_rfc3339(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn rfc3339_formatting_round_trips() {
    for s in [
        "2024-05-01T12:00:00Z",
        "2000-02-29T23:59:59Z",
        "1969-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ] {
        assert_eq!(format_rfc3339(parse_rfc3339(s).unwrap()), s);
    }
    // Go's RFC3339 layout drops fractional seconds.
    let t = parse_rfc3339("2024-05-01T12:00:00.999Z").unwrap();
    assert_eq!(format_rfc3339(t), "2024-05-01T12:00:00Z");
}

#[test]
fn printers_are_unique_and_fill_every_column() {
    let minimal = json!({"metadata": {"name": "x"}});
    for (i, p) in PRINTERS.iter().enumerate() {
        let name = format!("{}/{}", p.group, p.resource);
        assert!(!PRINTERS[..i].iter().any(|o| (o.group, o.resource) == (p.group, p.resource)), "{name} twice");
        assert!(std::ptr::eq(printer(p.group, p.resource), p), "{name}");
        assert_eq!((p.cells)(&minimal, now()).len(), p.columns.len(), "{name}");
    }
}

#[test]
fn default_table_for_unknown_resources() {
    let cols = column_definitions("example.com", "widgets");
    assert_eq!(cols.len(), 2);
    assert_eq!(cols[0]["name"], "Name");
    assert_eq!(cols[0]["format"], "name");
    assert_eq!(cols[1]["name"], "Created At");
    assert_eq!(cols[1]["type"], "date");
    let obj = json!({"metadata": {"name": "w1", "creationTimestamp": "2024-05-01T13:00:00+01:00"}});
    assert_eq!(row("example.com", "widgets", obj), ["w1", "2024-05-01T12:00:00Z"]);
    let unset = json!({"metadata": {"name": "w2"}});
    assert_eq!(row("example.com", "widgets", unset)[1], "0001-01-01T00:00:00Z");
    // A kind with a printer, but in the wrong group, is not special.
    assert_eq!(column_definitions("example.com", "pods").len(), 2);
}

#[test]
fn column_definitions_match_upstream() {
    let names = |group: &str, resource: &str| -> Vec<(String, u64)> {
        column_definitions(group, resource)
            .iter()
            .map(|c| {
                assert!(c["description"].as_str().is_some_and(|d| !d.is_empty()));
                (c["name"].as_str().unwrap().to_string(), c["priority"].as_u64().unwrap())
            })
            .collect()
    };
    let plain = |cols: Vec<(String, u64)>, priority: u64| -> Vec<String> {
        cols.into_iter().filter(|(_, p)| *p == priority).map(|(n, _)| n).collect()
    };
    let pods = names("", "pods");
    assert_eq!(plain(pods.clone(), 0), ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(plain(pods, 1), ["IP", "Node", "Nominated Node", "Readiness Gates"]);
    assert_eq!(plain(names("", "services"), 0), ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]);
    assert_eq!(plain(names("", "services"), 1), ["Selector"]);
    assert_eq!(
        plain(names("", "nodes"), 1),
        ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]
    );
    let events = names("", "events");
    assert_eq!(
        events.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen", "Count", "Name"]
    );
    assert_eq!(plain(events, 1), ["Subobject", "Source", "First Seen", "Count", "Name"]);
    assert_eq!(names("events.k8s.io", "events"), names("", "events"));
    assert_eq!(plain(names("apps", "deployments"), 0), ["Name", "Ready", "Up-to-date", "Available", "Age"]);
    assert_eq!(plain(names("apps", "replicasets"), 1), ["Containers", "Images", "Selector"]);
    let rs = column_definitions("apps", "replicasets");
    assert_eq!(rs[1]["type"], "integer");
    assert_eq!(rs[0]["format"], "name");
    assert_eq!(rs[1]["format"], "");
    assert_eq!(plain(names("coordination.k8s.io", "leases"), 0), ["Name", "Holder", "Age"]);
}

#[test]
fn pod_running_and_wide_columns() {
    let p = pod(
        json!({"containers": [{"name": "app"}], "nodeName": "node-1"}),
        json!({
            "phase": "Running",
            "podIPs": [{"ip": "10.0.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": ago(3000)}}
            }]
        }),
    );
    assert_eq!(row("", "pods", p), ["web", "1/1", "Running", "0", "60m", "10.0.0.5", "node-1", "<none>", "<none>"]);

    let unscheduled = pod(one_container(), json!({"phase": "Pending", "nominatedNodeName": "n2"}));
    let r = row("", "pods", unscheduled);
    assert_eq!(r[1..], ["0/1", "Pending", "0", "60m", "<none>", "<none>", "n2", "<none>"]);
}

#[test]
fn pod_cell_types() {
    let p = pod(one_container(), json!({"phase": "Running"}));
    let c = cells("", "pods", &p, now());
    assert!(c.iter().all(Value::is_string), "every pod cell is a string");
}

#[test]
fn pod_waiting_reasons() {
    for reason in ["ContainerCreating", "CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff"] {
        let p = pod(
            one_container(),
            json!({
                "phase": "Pending",
                "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": reason}}}]
            }),
        );
        assert_eq!(pod_summary(p), ("0/1".into(), reason.into(), "0".into()));
    }
}

#[test]
fn pod_restarts_show_time_of_last_restart() {
    let p = pod(
        json!({"containers": [{"name": "a"}, {"name": "b"}]}),
        json!({
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "a", "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}
                },
                {
                    "name": "b", "restartCount": 1, "ready": true,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(3000)}}
                }
            ]
        }),
    );
    assert_eq!(pod_summary(p), ("1/2".into(), "CrashLoopBackOff".into(), "5 (2m ago)".into()));

    // Without a finish time there is nothing to report beyond the count.
    let p = pod(
        one_container(),
        json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "restartCount": 2, "ready": true, "state": {"running": {}}}]
        }),
    );
    assert_eq!(pod_summary(p).2, "2");
}

#[test]
fn pod_terminated_reasons() {
    let terminated = |t: Value| {
        pod(
            one_container(),
            json!({
                "phase": "Failed",
                "containerStatuses": [{"name": "app", "state": {"terminated": t}}]
            }),
        )
    };
    assert_eq!(pod_status(terminated(json!({"exitCode": 137, "reason": "OOMKilled"}))), "OOMKilled");
    assert_eq!(pod_status(terminated(json!({"exitCode": 0, "signal": 9}))), "Signal:9");
    assert_eq!(pod_status(terminated(json!({"exitCode": 3}))), "ExitCode:3");
    let done = pod(
        one_container(),
        json!({
            "phase": "Succeeded",
            "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
        }),
    );
    assert_eq!(pod_summary(done), ("0/1".into(), "Completed".into(), "0".into()));
}

#[test]
fn pod_completed_with_running_container_is_running_or_not_ready() {
    let mixed = |ready_condition: &str| {
        pod(
            json!({"containers": [{"name": "job"}, {"name": "server"}]}),
            json!({
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": ready_condition}],
                "containerStatuses": [
                    {"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "server", "ready": true, "state": {"running": {}}}
                ]
            }),
        )
    };
    assert_eq!(pod_summary(mixed("True")), ("1/2".into(), "Running".into(), "0".into()));
    assert_eq!(pod_status(mixed("False")), "NotReady");
}

#[test]
fn pod_init_container_progress() {
    let spec = json!({
        "initContainers": [{"name": "i1"}, {"name": "i2"}],
        "containers": [{"name": "app"}]
    });
    let fresh = pod(
        spec.clone(),
        json!({
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}},
                {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}}
            ],
            "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]
        }),
    );
    assert_eq!(pod_summary(fresh), ("0/1".into(), "Init:0/2".into(), "0".into()));
    let second = pod(
        spec,
        json!({
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "state": {"running": {}}}
            ]
        }),
    );
    assert_eq!(pod_status(second), "Init:1/2");
}

#[test]
fn pod_init_container_failures() {
    let init = |state: Value| {
        pod(
            json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]}),
            json!({
                "phase": "Pending",
                "initContainerStatuses": [{
                    "name": "i1", "restartCount": 3, "state": state,
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}
                }],
                "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]
            }),
        )
    };
    assert_eq!(
        pod_summary(init(json!({"waiting": {"reason": "CrashLoopBackOff"}}))),
        ("0/1".into(), "Init:CrashLoopBackOff".into(), "3 (30s ago)".into())
    );
    assert_eq!(pod_status(init(json!({"terminated": {"exitCode": 1, "reason": "Error"}}))), "Init:Error");
    assert_eq!(pod_status(init(json!({"terminated": {"exitCode": 2}}))), "Init:ExitCode:2");
    assert_eq!(pod_status(init(json!({"terminated": {"exitCode": 143, "signal": 15}}))), "Init:Signal:15");
}

#[test]
fn pod_sidecars_count_towards_ready_and_restarts() {
    let p = pod(
        json!({
            "initContainers": [
                {"name": "setup"},
                {"name": "proxy", "restartPolicy": "Always"}
            ],
            "containers": [{"name": "app"}]
        }),
        json!({
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"}
            ],
            "initContainerStatuses": [
                {
                    "name": "setup", "restartCount": 7,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(10)}}
                },
                {
                    "name": "proxy", "restartCount": 1, "started": true, "ready": true,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(600)}}
                }
            ],
            "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}]
        }),
    );
    // Restarts of the finished init container no longer count.
    assert_eq!(pod_summary(p), ("2/2".into(), "Running".into(), "1 (10m ago)".into()));

    let starting = pod(
        json!({
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}]
        }),
        json!({
            "phase": "Pending",
            "initContainerStatuses": [{"name": "proxy", "started": false, "state": {"running": {}}}]
        }),
    );
    assert_eq!(pod_summary(starting), ("0/2".into(), "Init:0/1".into(), "0".into()));
}

#[test]
fn pod_deletion_states() {
    let deleting = |phase: &str, reason: Option<&str>| {
        let mut p = pod(
            one_container(),
            json!({
                "phase": phase,
                "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}]
            }),
        );
        p["metadata"]["deletionTimestamp"] = json!(ago(5));
        if let Some(r) = reason {
            p["status"]["reason"] = json!(r);
        }
        p
    };
    assert_eq!(pod_status(deleting("Running", None)), "Terminating");
    assert_eq!(pod_status(deleting("Running", Some("NodeLost"))), "Unknown");
    // Finished pods keep their final status while being deleted.
    let mut done = deleting("Succeeded", None);
    done["status"]["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
    assert_eq!(pod_status(done), "Completed");
}

#[test]
fn pod_status_reason_and_scheduling_gates() {
    let evicted = pod(one_container(), json!({"phase": "Failed", "reason": "Evicted"}));
    assert_eq!(pod_status(evicted), "Evicted");
    let gated = pod(
        one_container(),
        json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]
        }),
    );
    assert_eq!(pod_status(gated), "SchedulingGated");
    let blank = json!({"metadata": {"name": "x"}});
    assert_eq!(row("", "pods", blank), ["x", "0/0", "", "0", "<unknown>", "<none>", "<none>", "<none>", "<none>"]);
}

#[test]
fn pod_readiness_gates() {
    let p = pod(
        json!({
            "containers": [{"name": "app"}],
            "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]
        }),
        json!({
            "phase": "Running",
            "podIP": "10.1.1.1",
            "conditions": [
                {"type": "example.com/lb", "status": "True"},
                {"type": "example.com/dns", "status": "False"}
            ]
        }),
    );
    let r = row("", "pods", p);
    assert_eq!(r[5], "10.1.1.1");
    assert_eq!(r[8], "1/2");
}

#[test]
fn pod_row_conditions() {
    let done = pod(one_container(), json!({"phase": "Succeeded"}));
    let conds = row_conditions("", "pods", &done);
    assert_eq!(conds.len(), 1);
    assert_eq!(conds[0]["type"], "Completed");
    assert_eq!(conds[0]["status"], "True");
    assert_eq!(conds[0]["reason"], "Succeeded");
    let running = pod(one_container(), json!({"phase": "Running"}));
    assert!(row_conditions("", "pods", &running).is_empty());
    assert!(row_conditions("", "services", &done).is_empty());
}

#[test]
fn services() {
    let cluster_ip = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(90)},
        "spec": {
            "type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "selector": {"tier": "front", "app": "web"}
        }
    });
    assert_eq!(
        row("", "services", cluster_ip),
        ["web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP,53/UDP", "90s", "app=web,tier=front"]
    );
    let node_port = json!({
        "metadata": {"name": "np"},
        "spec": {
            "type": "NodePort", "clusterIP": "10.96.0.11",
            "externalIPs": ["1.2.3.4"],
            "ports": [{"port": 80, "nodePort": 30080}]
        }
    });
    assert_eq!(row("", "services", node_port)[1..5], ["NodePort", "10.96.0.11", "1.2.3.4", "80:30080/TCP"]);
    let pending = json!({
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"]}
    });
    let r = row("", "services", pending);
    assert_eq!(r[3], "<pending>");
    assert_eq!(r[4], "<none>");
    assert_eq!(r[6], "<none>");
    let provisioned = json!({
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]},
        "status": {"loadBalancer": {"ingress": [
            {"ip": "5.5.5.5"}, {"hostname": "lb.example.com"}, {"ip": "5.5.5.5"}
        ]}}
    });
    assert_eq!(row("", "services", provisioned)[3], "5.5.5.5,lb.example.com,9.9.9.9");
    let external = json!({
        "metadata": {"name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}
    });
    assert_eq!(row("", "services", external)[1..4], ["ExternalName", "<none>", "db.example.com"]);
    let headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIPs": ["None"]}});
    assert_eq!(row("", "services", headless)[1..3], ["ClusterIP", "None"]);
}

#[test]
fn endpoints() {
    let ep = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(7200)},
        "subsets": [
            {
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                "ports": [{"port": 80}, {"port": 443}]
            },
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}
        ]
    });
    assert_eq!(row("", "endpoints", ep), ["web", "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more...", "120m"]);
    let v6 = json!({"metadata": {"name": "v6"}, "subsets": [
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}
    ]});
    assert_eq!(row("", "endpoints", v6)[1], "[fd00::1]:8080");
    let headless = json!({"metadata": {"name": "h"}, "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}
    ]});
    assert_eq!(row("", "endpoints", headless)[1], "10.0.0.1,10.0.0.2");
    let empty = json!({"metadata": {"name": "e"}});
    assert_eq!(row("", "endpoints", empty)[1], "<none>");
    let not_ready = json!({"metadata": {"name": "n"}, "subsets": [
        {"notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"port": 80}]}
    ]});
    assert_eq!(row("", "endpoints", not_ready)[1], "");
}

#[test]
fn namespaces() {
    let ns = json!({
        "metadata": {"name": "kube-system", "creationTimestamp": ago(3 * 86400 + 4 * 3600)},
        "status": {"phase": "Active"}
    });
    assert_eq!(row("", "namespaces", ns), ["kube-system", "Active", "3d4h"]);
    let terminating = json!({"metadata": {"name": "old"}, "status": {"phase": "Terminating"}});
    assert_eq!(row("", "namespaces", terminating)[1], "Terminating");
}

#[test]
fn nodes() {
    let node = json!({
        "metadata": {
            "name": "node-1",
            "creationTimestamp": ago(10 * 86400),
            "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/worker": "",
                "node-role.kubernetes.io/": "",
                "kubernetes.io/role": "worker",
                "kubernetes.io/hostname": "node-1"
            }
        },
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"}
            ],
            "addresses": [
                {"type": "Hostname", "address": "node-1"},
                {"type": "InternalIP", "address": "192.168.1.10"},
                {"type": "InternalIP", "address": "192.168.1.11"}
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0",
                "osImage": "Debian GNU/Linux 12",
                "kernelVersion": "6.1.0",
                "containerRuntimeVersion": "kubus://0.1.0"
            }
        }
    });
    assert_eq!(
        row("", "nodes", node),
        [
            "node-1",
            "Ready,SchedulingDisabled",
            "control-plane,worker",
            "10d",
            "v1.32.0",
            "192.168.1.10",
            "<none>",
            "Debian GNU/Linux 12",
            "6.1.0",
            "kubus://0.1.0"
        ]
    );
    let not_ready = json!({
        "metadata": {"name": "n2"},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}
    });
    let r = row("", "nodes", not_ready);
    assert_eq!(r[1..3], ["NotReady", "<none>"]);
    assert_eq!(r[7..], ["<unknown>", "<unknown>", "<unknown>"]);
    let bare = json!({"metadata": {"name": "n3"}});
    assert_eq!(row("", "nodes", bare)[1], "Unknown");
}

#[test]
fn config_maps_secrets_and_service_accounts() {
    let cm = json!({
        "metadata": {"name": "cfg", "creationTimestamp": ago(30)},
        "data": {"a": "1", "b": "2"},
        "binaryData": {"c": "AA=="}
    });
    let c = cells("", "configmaps", &cm, now());
    assert_eq!(c, [json!("cfg"), json!(3), json!("30s")]);
    let empty_cm = json!({"metadata": {"name": "empty"}});
    assert_eq!(cells("", "configmaps", &empty_cm, now())[1], json!(0));

    let secret = json!({
        "metadata": {"name": "tls", "creationTimestamp": ago(30)},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""}
    });
    assert_eq!(
        cells("", "secrets", &secret, now()),
        [json!("tls"), json!("kubernetes.io/tls"), json!(2), json!("30s")]
    );
    let opaque = json!({"metadata": {"name": "o"}});
    assert_eq!(row("", "secrets", opaque)[1..3], ["Opaque", "0"]);

    let sa = json!({
        "metadata": {"name": "default", "creationTimestamp": ago(30)},
        "secrets": [{"name": "default-token"}]
    });
    assert_eq!(cells("", "serviceaccounts", &sa, now()), [json!("default"), json!(1), json!("30s")]);
}

#[test]
fn core_events() {
    let ev = json!({
        "metadata": {"name": "web.17a"},
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff",
        "message": "  Back-off restarting failed container\n",
        "type": "Warning",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(600),
        "lastTimestamp": ago(45),
        "count": 7
    });
    let c = cells("", "events", &ev, now());
    assert_eq!(
        strings(&c),
        [
            "45s",
            "Warning",
            "BackOff",
            "pod/web",
            "spec.containers{app}",
            "kubelet, node-1",
            "Back-off restarting failed container",
            "10m",
            "7",
            "web.17a"
        ]
    );
    assert_eq!(c[8], json!(7), "COUNT is an integer");

    // No lastTimestamp: LAST SEEN repeats FIRST SEEN; no count means one.
    let single = json!({
        "metadata": {"name": "e"},
        "involvedObject": {"kind": "Node"},
        "reportingComponent": "scheduler",
        "eventTime": ago(5)
    });
    let r = row("", "events", single);
    assert_eq!(r[0], "5s");
    assert_eq!(r[3], "node");
    assert_eq!(r[5], "scheduler");
    assert_eq!(r[7], "5s");
    assert_eq!(r[8], "1");
}

#[test]
fn events_k8s_io_events() {
    let ev = json!({
        "metadata": {"name": "web.17b"},
        "regarding": {"kind": "Deployment", "name": "web"},
        "reason": "ScalingReplicaSet",
        "note": "Scaled up replica set web-abc to 3",
        "type": "Normal",
        "reportingController": "deployment-controller",
        "reportingInstance": "kcm-1",
        "eventTime": ago(3600),
        "series": {"count": 4, "lastObservedTime": ago(65)}
    });
    assert_eq!(
        row("events.k8s.io", "events", ev),
        [
            "65s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller, kcm-1",
            "Scaled up replica set web-abc to 3",
            "60m",
            "4",
            "web.17b"
        ]
    );
    let legacy = json!({
        "metadata": {"name": "x"},
        "regarding": {"kind": "Pod", "name": "p"},
        "deprecatedSource": {"component": "kubelet"},
        "deprecatedFirstTimestamp": ago(300),
        "deprecatedLastTimestamp": ago(200),
        "deprecatedCount": 2
    });
    let r = row("events.k8s.io", "events", legacy);
    assert_eq!(r[0], "3m20s");
    assert_eq!(r[5], "kubelet");
    assert_eq!(r[7], "5m");
    assert_eq!(r[8], "2");
}

#[test]
fn leases() {
    let lease = json!({
        "metadata": {"name": "kube-scheduler", "creationTimestamp": ago(200)},
        "spec": {"holderIdentity": "node-1_abc"}
    });
    assert_eq!(row("coordination.k8s.io", "leases", lease), ["kube-scheduler", "node-1_abc", "3m20s"]);
    let free = json!({"metadata": {"name": "free"}, "spec": {}});
    assert_eq!(row("coordination.k8s.io", "leases", free)[1], "");
}

#[test]
fn deployments() {
    let d = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(300)},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx:1.27"},
                {"name": "log", "image": "busybox"}
            ]}}
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    let c = cells("apps", "deployments", &d, now());
    assert_eq!(
        c,
        [
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("5m"),
            json!("app,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web")
        ]
    );
    let fresh = json!({"metadata": {"name": "new"}, "spec": {"selector": {}}});
    let r = row("apps", "deployments", fresh);
    assert_eq!(r[1..4], ["0/1", "0", "0"]);
    assert_eq!(r[7], "", "an empty selector prints as nothing here");
    let bad = json!({"metadata": {"name": "bad"}, "spec": {"selector": {
        "matchExpressions": [{"key": "app", "operator": "Near"}]
    }}});
    assert_eq!(row("apps", "deployments", bad)[7], "<invalid>");
}

#[test]
fn replica_sets() {
    let rs = json!({
        "metadata": {"name": "web-6d4b", "creationTimestamp": ago(300)},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web", "pod-template-hash": "6d4b"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "canary"]}]
            },
            "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}
        },
        "status": {"replicas": 3, "readyReplicas": 1}
    });
    let c = cells("apps", "replicasets", &rs, now());
    assert_eq!(
        c,
        [
            json!("web-6d4b"),
            json!(3),
            json!(3),
            json!(1),
            json!("5m"),
            json!("app"),
            json!("nginx"),
            json!("app=web,env in (canary,prod),pod-template-hash=6d4b")
        ]
    );
    let unselective = json!({"metadata": {"name": "x"}, "spec": {"replicas": 0}});
    let r = row("apps", "replicasets", unselective);
    assert_eq!(r[1..4], ["0", "0", "0"]);
    assert_eq!(r[5..], ["", "", "<none>"]);
}

#[test]
fn label_maps() {
    assert_eq!(format_labels(&json!(null)), "<none>");
    assert_eq!(format_labels(&json!({})), "<none>");
    // Ordered by key, so `a` comes before `a.b` even though `.` < `=`.
    assert_eq!(format_labels(&json!({"a.b": "2", "a": "1", "z": ""})), "a=1,a.b=2,z=");
}

#[test]
fn label_selectors() {
    let sel = json!({
        "matchLabels": {"tier": "front"},
        "matchExpressions": [
            {"key": "env", "operator": "NotIn", "values": ["qa", "dev"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "app", "operator": "Exists"},
            {"key": "example.com/zone", "operator": "In", "values": ["b"]}
        ]
    });
    assert_eq!(format_label_selector(&sel), "app,env notin (dev,qa),example.com/zone in (b),!legacy,tier=front");
    assert_eq!(format_label_selector(&json!(null)), "<none>");
    assert_eq!(format_label_selector(&json!({})), "<none>");
    assert_eq!(selector_string(&json!(null)), Ok(String::new()));
    for bad in [
        json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
        json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
        json!({"matchLabels": {"bad key": "x"}}),
        json!({"matchLabels": {"app": "-x"}}),
        json!({"matchLabels": {"Example.com/app": "x"}}),
    ] {
        assert_eq!(format_label_selector(&bad), "<error>", "{bad}");
    }
}
