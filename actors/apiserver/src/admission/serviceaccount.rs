//! The ServiceAccount admission plugin's token volume: a new pod gets the projected volume
//! `kube-api-access-<suffix>` (a token of its ServiceAccount for the API's audience, the cluster
//! CA from the `kube-root-ca.crt` ConfigMap, its namespace) mounted read-only at
//! `/var/run/secrets/kubernetes.io/serviceaccount` in every container, as upstream mounts it,
//! so in-cluster clients (client-go's in-cluster config, kubectl in a pod) reach the API as the
//! ServiceAccount. Skipped when the pod or its ServiceAccount sets
//! `automountServiceAccountToken: false` (the pod's choice wins); a container that mounts
//! something of its own at that path keeps it. (That the pod's ServiceAccount defaults to `default` is in the defaulting.)

use crate::cache::WatchCache;
use serde_json::{json, Value};

/// Where the token, CA and namespace appear in a container (upstream's path).
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Upstream's token lifetime for this volume: an hour and seven seconds, the odd seconds
/// telling its tokens apart from others.
const TOKEN_EXPIRATION: i64 = 3607;
/// Characters of generated name suffixes (upstream's, without vowels and look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Adds the token volume and its mounts to `pod` (a create), where it belongs.
pub fn admit_pod(cache: &WatchCache, pod: &mut Value) {
    let spec = &pod["spec"];
    let automount = match spec["automountServiceAccountToken"].as_bool() {
        Some(pod_says) => pod_says,
        None => {
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
            let sa = spec["serviceAccountName"].as_str().unwrap_or("default");
            let key = (ns.to_string(), sa.to_string());
            cache
                .get(&(String::new(), "serviceaccounts".into()), &key)
                .and_then(|sa| sa.decode::<k8s_openapi::api::core::v1::ServiceAccount>().ok())
                .and_then(|sa| sa.automount_service_account_token)
                .unwrap_or(true)
        }
    };
    let mounts_it_itself = |c: &Value| {
        c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"].as_str() == Some(MOUNT_PATH))
    };
    let containers =
        || ["initContainers", "containers"].into_iter().flat_map(|f| spec[f].as_array().into_iter().flatten());
    if !automount || containers().all(mounts_it_itself) {
        return;
    }
    let name = format!("kube-api-access-{}", suffix());
    let volume = json!({"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}});
    let spec = &mut pod["spec"];
    match spec["volumes"].as_array_mut() {
        Some(volumes) => volumes.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
    let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
    for field in ["initContainers", "containers"] {
        // A container that mounts something of its own there keeps it (upstream decides per container).
        for c in spec[field].as_array_mut().into_iter().flatten().filter(|c| !mounts_it_itself(c)) {
            match c["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                None => c["volumeMounts"] = json!([mount.clone()]),
            }
        }
    }
}

fn suffix() -> String {
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| SUFFIX_ALPHABET[*b as usize % SUFFIX_ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra: Value) -> Value {
        let mut p = json!({"metadata": {"name": "p", "namespace": "team-a"},
            "spec": {"serviceAccountName": "default", "initContainers": [{"name": "init"}],
                     "containers": [{"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}, {"name": "b"}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}});
        if let Some(m) = extra.as_object() {
            p["spec"].as_object_mut().unwrap().extend(m.clone());
        }
        p
    }

    #[test]
    fn every_container_mounts_the_token_volume_unless_the_pod_opts_out() {
        let cache = WatchCache::new(10);
        let mut p = pod(json!({}));
        admit_pod(&cache, &mut p);
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        let name = volumes[1]["name"].as_str().unwrap();
        assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5, "{name}");
        let sources = &volumes[1]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"], "metadata.namespace");
        for (field, i) in [("initContainers", 0), ("containers", 0), ("containers", 1)] {
            let mounts = p["spec"][field][i]["volumeMounts"].as_array().unwrap();
            let last = mounts.last().unwrap();
            assert_eq!(
                (last["name"].as_str(), last["mountPath"].as_str(), last["readOnly"].as_bool()),
                (Some(name), Some(MOUNT_PATH), Some(true))
            );
        }
        let mut opted_out = pod(json!({"automountServiceAccountToken": false}));
        admit_pod(&cache, &mut opted_out);
        assert_eq!(opted_out["spec"]["volumes"].as_array().unwrap().len(), 1);
        let mut own = pod(json!({}));
        own["spec"]["containers"][1]["volumeMounts"] = json!([{"name": "data", "mountPath": MOUNT_PATH}]);
        admit_pod(&cache, &mut own);
        assert_eq!(own["spec"]["volumes"].as_array().unwrap().len(), 2);
        assert_eq!(own["spec"]["containers"][1]["volumeMounts"], json!([{"name": "data", "mountPath": MOUNT_PATH}]));
        assert_eq!(own["spec"]["containers"][0]["volumeMounts"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_service_account_may_opt_out_and_the_pod_may_opt_back_in() {
        let cache = WatchCache::new(10);
        cache.replace(Vec::new(), Vec::new(), 1);
        cache.apply(kubus_bus::Event {
            kind: kubus_bus::EventType::Added,
            key: kubus_bus::Key::new("", "serviceaccounts", Some("team-a"), "default"),
            revision: 2,
            value: bytes::Bytes::from(
                json!({"metadata": {"name": "default", "namespace": "team-a"}, "automountServiceAccountToken": false})
                    .to_string(),
            ),
        });
        let mut p = pod(json!({}));
        admit_pod(&cache, &mut p);
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        let mut p = pod(json!({"automountServiceAccountToken": true}));
        admit_pod(&cache, &mut p);
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 2);
    }
}
