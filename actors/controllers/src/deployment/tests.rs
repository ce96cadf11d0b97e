use super::*;
use k8s_openapi::api::apps::v1::{
    DeploymentCondition, DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiSelector;
use kubus_apimachinery::time::time;
use std::time::Duration;

/// A template as the API server stores it after defaulting, with the empty members Go
/// clients send (`resources: {}`, `securityContext: {}`, empty lists).
fn stored_template() -> Value {
    json!({
        "metadata": {"creationTimestamp": null, "labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T12:00:00Z"}},
        "spec": {
            "containers": [{
                "name": "web",
                "image": "busybox",
                "command": ["sh", "-c", "echo hello > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"],
                "args": [],
                "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY"}],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {},
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"},
                    "periodSeconds": 2, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "Always",
                "securityContext": {}
            }, {
                "name": "sidecar",
                "image": "busybox:1.36",
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}},
                "ports": [{"containerPort": 9090, "protocol": "UDP"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "nodeSelector": {},
            "tolerations": [],
            "securityContext": {},
            "schedulerName": "default-scheduler"
        }
    })
}

#[test]
fn template_hash_is_stable_across_the_typed_round_trip() {
    let json = stored_template();
    let from_json = template_hash(&canonical(&json), 0);
    let typed: PodTemplateSpec = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(template_hash(&canonical_template(Some(&typed)), 0), from_json);
    // The value itself is what ReplicaSets in existing stores are named by (checked against
    // an independent implementation of the canonical JSON and FNV-1a).
    assert_eq!(from_json, "x8ldxlk");
    // Collisions change it; the hash label and empty members do not.
    assert_ne!(template_hash(&canonical_template(Some(&typed)), 1), from_json);
    let mut labelled = typed.clone();
    labelled.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(HASH_LABEL.into(), "x".into());
    labelled.spec.as_mut().unwrap().containers[1].env = Some(vec![]);
    assert_eq!(canonical_template(Some(&labelled)), canonical(&json));
    let mut changed = typed;
    changed.spec.as_mut().unwrap().containers[0].image = Some("busybox:2".into());
    assert_ne!(canonical_template(Some(&changed)), canonical(&json));
}

fn deployment(replicas: i32, surge: Option<IntOrString>, unavailable: Option<IntOrString>) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("prod".into()),
            uid: Some("u-d".into()),
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: ApiSelector { match_labels: Some([("app".into(), "web".into())].into()), ..Default::default() },
            template: serde_json::from_value(stored_template()).unwrap(),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment { max_surge: surge, max_unavailable: unavailable }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[test]
fn surge_and_unavailable_round_as_upstream() {
    let pct = |s: &str| Some(IntOrString::String(s.into()));
    // Defaults: 25% each; surge rounds up, unavailable down.
    assert_eq!(surge_and_unavailable(&deployment(10, None, None)), (3, 2));
    assert_eq!(surge_and_unavailable(&deployment(10, pct("10%"), pct("15%"))), (1, 1));
    assert_eq!(surge_and_unavailable(&deployment(3, Some(IntOrString::Int(2)), Some(IntOrString::Int(5)))), (2, 3));
    // Never both zero.
    assert_eq!(surge_and_unavailable(&deployment(12, Some(IntOrString::Int(0)), pct("0%"))), (0, 1));
    assert_eq!(surge_and_unavailable(&deployment(1, pct("0%"), None)), (0, 1));
}

fn replica_set(name: &str, replicas: i32, current: i32, available: i32) -> Arc<ReplicaSet> {
    Arc::new(ReplicaSet {
        metadata: ObjectMeta { name: Some(name.into()), generation: Some(1), ..Default::default() },
        spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
        status: Some(ReplicaSetStatus {
            replicas: current,
            available_replicas: Some(available),
            ready_replicas: Some(available),
            observed_generation: Some(1),
            ..Default::default()
        }),
    })
}

#[test]
fn a_rolling_step_stays_within_surge_and_availability() {
    // 12 wanted, maxSurge 3, maxUnavailable 0: the new set grows by 3 first; nothing old
    // goes until new pods are available.
    let new_rs = replica_set("new", 0, 0, 0);
    let old = vec![replica_set("old", 12, 12, 12)];
    let (target, scaled) = rolling_step(12, 3, 0, &new_rs, &old);
    assert_eq!((target, scaled.len()), (3, 0));
    // Three new ones available: three old ones can go.
    let new_rs = replica_set("new", 3, 3, 3);
    let (target, scaled) = rolling_step(12, 3, 0, &new_rs, &old);
    assert_eq!(target, 3);
    assert_eq!(scaled.iter().map(|(r, n)| (r.name().to_string(), *n)).collect::<Vec<_>>(), [("old".into(), 9)]);
    // Unhealthy old replicas go first (they count for nothing), within maxUnavailable.
    let old = vec![replica_set("a", 4, 4, 4), replica_set("b", 8, 8, 2)];
    let new_rs = replica_set("new", 3, 3, 0);
    let (_, scaled) = rolling_step(12, 3, 3, &new_rs, &old);
    assert_eq!(scaled.iter().map(|(r, n)| (r.name().to_string(), *n)).collect::<Vec<_>>(), [("b".into(), 5)]);
    // Scaled above what is wanted: back down at once.
    let (target, _) = rolling_step(4, 1, 1, &replica_set("new", 10, 10, 10), &[]);
    assert_eq!(target, 4);
}

#[test]
fn the_new_replica_set_carries_the_hash_revision_and_owner() {
    let d = deployment(3, None, None);
    let annotations = BTreeMap::from([(REVISION.to_string(), "4".to_string())]);
    let rs = new_replica_set(&d, 2, annotations);
    let hash = template_hash(&canonical(&stored_template()), 0);
    assert_eq!(rs.name(), format!("web-{hash}"));
    assert_eq!(rs.namespace(), "prod");
    assert_eq!(rs.label(HASH_LABEL), Some(hash.as_str()));
    assert_eq!(rs.annotation(REVISION), Some("4"));
    let owner = rs.controller_ref().unwrap();
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("Deployment", "web", "u-d"));
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!((spec.replicas, spec.min_ready_seconds), (Some(2), Some(0)));
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(selector.get(HASH_LABEL), Some(&hash));
    assert_eq!(selector.get("app").map(String::as_str), Some("web"));
    let template_labels = spec.template.as_ref().unwrap().metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(template_labels.get(HASH_LABEL), Some(&hash));
    // Its template is the Deployment's: the next sync finds it as the new ReplicaSet.
    assert_eq!(canonical_template(template_of(&rs)), canonical_template(Some(&d.spec.as_ref().unwrap().template)));
    // A collision count makes another name.
    let mut collided = d.clone();
    collided.status = Some(DeploymentStatus { collision_count: Some(1), ..Default::default() });
    assert_ne!(new_replica_set(&collided, 2, BTreeMap::new()).name(), rs.name());
}

#[test]
fn only_another_replica_set_under_the_hashed_name_is_a_collision() {
    let d = deployment(3, None, None);
    // The one an earlier sync made (the API server may have filled in its template since).
    let mut made = new_replica_set(&d, 3, BTreeMap::new());
    made.spec.as_mut().unwrap().template.as_mut().unwrap().spec.as_mut().unwrap().containers[0].args = Some(vec![]);
    assert!(is_new_replica_set(&d, &made));
    // Another Deployment's, an orphan, or another template of the same name are collisions.
    let mut other_owner = made.clone();
    other_owner.metadata.owner_references.as_mut().unwrap()[0].uid = "u-other".into();
    assert!(!is_new_replica_set(&d, &other_owner));
    let mut orphan = made.clone();
    orphan.metadata.owner_references = None;
    assert!(!is_new_replica_set(&d, &orphan));
    let mut other_template = made;
    other_template.spec.as_mut().unwrap().template.as_mut().unwrap().spec.as_mut().unwrap().containers[0].image =
        Some("busybox:2".into());
    assert!(!is_new_replica_set(&d, &other_template));
}

fn cond<'a>(s: &'a DeploymentStatus, t: &str) -> &'a DeploymentCondition {
    s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn status_conditions_follow_the_rollout() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
    let mut d = deployment(3, None, None);
    // Just created: not yet available, progressing with the new ReplicaSet.
    let new_rs = replica_set("web-abc", 3, 0, 0);
    let s = status::desired(&d, Some(&new_rs), &[], "NewReplicaSetCreated", now);
    assert_eq!(s.requeue, Some(Duration::from_secs(30)));
    assert_eq!(
        (s.status.replicas, s.status.updated_replicas, s.status.available_replicas, s.status.unavailable_replicas),
        (Some(0), Some(0), Some(0), Some(3))
    );
    let available = cond(&s.status, "Available");
    assert_eq!((available.status.as_str(), available.reason.as_deref()), ("False", Some("MinimumReplicasUnavailable")));
    let progressing = cond(&s.status, "Progressing");
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetCreated"));
    assert_eq!(progressing.message.as_deref(), Some("Created new replica set \"web-abc\""));
    assert!(status::differs(None, &s.status));
    assert!(!status::differs(Some(&s.status), &s.status));

    // Later, nothing changed: the same conditions, with their times kept.
    d.status = Some(s.status.clone());
    let later = now + Duration::from_secs(5);
    let again = status::desired(&d, Some(&new_rs), &[], "FoundNewReplicaSet", later);
    let p = cond(&again.status, "Progressing");
    assert_eq!(p.reason.as_deref(), Some("NewReplicaSetCreated"), "the last progress reason stays");
    assert_eq!(p.last_transition_time, Some(time(now)));
    assert_eq!(cond(&again.status, "Available").last_update_time, Some(time(now)));
    assert!(status::differs(d.status.as_ref(), &again.status), "the message changed");

    // Past the deadline without progress: ProgressDeadlineExceeded, and it sticks.
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(2);
    let stuck = status::desired(&d, Some(&new_rs), &[], "FoundNewReplicaSet", now + Duration::from_secs(3));
    let p = cond(&stuck.status, "Progressing");
    assert_eq!((p.status.as_str(), p.reason.as_deref()), ("False", Some("ProgressDeadlineExceeded")));
    assert_eq!(p.message.as_deref(), Some("ReplicaSet \"web-abc\" has timed out progressing."));
    d.status = Some(stuck.status.clone());
    let still = status::desired(&d, Some(&new_rs), &[], "ReplicaSetUpdated", now + Duration::from_secs(4));
    assert_eq!(cond(&still.status, "Progressing").reason.as_deref(), Some("ProgressDeadlineExceeded"));

    // Complete: every replica updated and available.
    let done_rs = replica_set("web-abc", 3, 3, 3);
    let done = status::desired(&d, Some(&done_rs), &[], "FoundNewReplicaSet", now);
    assert_eq!(done.requeue, None);
    let p = cond(&done.status, "Progressing");
    assert_eq!((p.status.as_str(), p.reason.as_deref()), ("True", Some("NewReplicaSetAvailable")));
    assert_eq!(p.message.as_deref(), Some("ReplicaSet \"web-abc\" has successfully progressed."));
    let a = cond(&done.status, "Available");
    assert_eq!((a.status.as_str(), a.reason.as_deref()), ("True", Some("MinimumReplicasAvailable")));
    assert_eq!(a.message.as_deref(), Some("Deployment has minimum availability."));

    // Paused: Unknown, no requeue.
    let paused = status::desired(&d, Some(&done_rs), &[], "DeploymentPaused", now);
    assert_eq!(paused.requeue, None);
    let p = cond(&paused.status, "Progressing");
    assert_eq!((p.status.as_str(), p.reason.as_deref()), ("Unknown", Some("DeploymentPaused")));
}

#[test]
fn status_patches_keep_their_shape_and_the_collision_count() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800);
    let mut d = deployment(2, None, None);
    let old = vec![replica_set("web-old", 0, 0, 0)];
    let s = status::desired(&d, Some(&replica_set("web-new", 2, 2, 2)), &old, "ReplicaSetUpdated", now);
    d.status = Some(DeploymentStatus { collision_count: Some(2), ..Default::default() });
    let stamp = "2024-05-01T12:00:00Z";
    assert_eq!(
        status::patch(&d, &s.status),
        json!({"status": {
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
            "availableReplicas": 2, "unavailableReplicas": 0, "collisionCount": 2,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.", "lastUpdateTime": stamp, "lastTransitionTime": stamp},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                    "message": "ReplicaSet \"web-new\" has successfully progressed.", "lastUpdateTime": stamp,
                    "lastTransitionTime": stamp}]}})
    );
    // Zero counts and absent ones are the same status; a lastUpdateTime alone is no change.
    let mut current = s.status.clone();
    current.unavailable_replicas = None;
    current.conditions.as_mut().unwrap()[0].last_update_time = None;
    assert!(!status::differs(Some(&current), &s.status));
    current.observed_generation = Some(1);
    assert!(status::differs(Some(&current), &s.status));
}

/// `rs` failing to create pods since `at` (its ReplicaFailure condition).
fn failing(rs: &ReplicaSet, message: &str, at: SystemTime) -> Arc<ReplicaSet> {
    let mut rs = rs.clone();
    rs.status.as_mut().unwrap().conditions = Some(vec![k8s_openapi::api::apps::v1::ReplicaSetCondition {
        type_: "ReplicaFailure".into(),
        status: "True".into(),
        reason: Some("FailedCreate".into()),
        message: Some(message.into()),
        last_transition_time: Some(time(at)),
    }]);
    Arc::new(rs)
}

fn replica_failure(s: &DeploymentStatus) -> Option<&DeploymentCondition> {
    s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "ReplicaFailure")
}

#[test]
fn a_replica_sets_failure_is_the_deployments_until_it_clears() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
    let now = t0 + Duration::from_secs(60);
    let mut d = deployment(3, None, None);
    let quota = "pods \"web-abc-x\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1";
    let new_rs = failing(&replica_set("web-abc", 3, 1, 1), quota, t0);
    let s = status::desired(&d, Some(&new_rs), &[], "FoundNewReplicaSet", now).status;
    let f = replica_failure(&s).expect("the ReplicaSet's failure is shown");
    assert_eq!(
        (f.status.as_str(), f.reason.as_deref(), f.message.as_deref()),
        ("True", Some("FailedCreate"), Some(quota))
    );
    assert_eq!((f.last_transition_time.clone(), f.last_update_time.clone()), (Some(time(t0)), Some(time(t0))));
    assert!(status::differs(d.status.as_ref(), &s));

    // While it goes on, the condition is the one already shown, even if the message moves on.
    d.status = Some(s.clone());
    let other = failing(&replica_set("web-abc", 3, 1, 1), "another message", now);
    let again = status::desired(&d, Some(&other), &[], "FoundNewReplicaSet", now + Duration::from_secs(5)).status;
    assert_eq!(replica_failure(&again), replica_failure(&s));

    // The new ReplicaSet's failure is told before an old one's; an old one's if it is the only one.
    let fresh = deployment(3, None, None);
    let old = vec![failing(&replica_set("web-old", 1, 1, 1), "old trouble", t0)];
    let both = status::desired(&fresh, Some(&new_rs), &old, "ReplicaSetUpdated", now).status;
    assert_eq!(replica_failure(&both).and_then(|c| c.message.as_deref()), Some(quota));
    let healthy = replica_set("web-abc", 3, 3, 3);
    let only_old = status::desired(&fresh, Some(&healthy), &old, "ReplicaSetUpdated", now).status;
    assert_eq!(replica_failure(&only_old).and_then(|c| c.message.as_deref()), Some("old trouble"));

    // Paused, the Deployment keeps what it said.
    let paused = status::desired(&d, Some(&healthy), &[], "DeploymentPaused", now).status;
    assert_eq!(replica_failure(&paused), replica_failure(&s));

    // Cleared: gone from the Deployment too.
    let cleared = status::desired(&d, Some(&healthy), &[], "FoundNewReplicaSet", now).status;
    assert_eq!(replica_failure(&cleared), None);
    assert!(status::differs(d.status.as_ref(), &cleared));
    assert_eq!(cleared.conditions.as_ref().map(Vec::len), Some(2));
}
