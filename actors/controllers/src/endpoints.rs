//! The Endpoints controller: for every Service with a selector, an Endpoints object of the
//! same name listing the matching pods' IPs (ready ones in `addresses`, the others in
//! `notReadyAddresses`) with the Service's ports resolved against each pod (named target
//! ports look up the container port of that name). Pods resolving ports differently land in
//! different subsets. Each Service also gets the EndpointSlice kube-proxy and the cluster DNS
//! read; for a Service without a selector, the Endpoints the user wrote are mirrored into it
//! (upstream's EndpointSlice mirroring controller), so a Service pointing at addresses outside
//! the cluster works as it does upstream.

use crate::owner;
use crate::replicaset::is_pod_ready;
use crate::Informers;
use futures::future::BoxFuture;
use kubus_apimachinery::selector::LabelSelector;
use kubus_runtime::controller::{self, Action, ReconcileResult, Reconciler};
use kubus_runtime::informer::{key_of, ObjectKey};
use kubus_runtime::{Change, Client, Informer, WorkQueue};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct EndpointsController {
    client: Client,
    informers: Informers,
    services: Informer,
    endpoints: Informer,
    slices: Informer,
    queue: Arc<WorkQueue<ObjectKey>>,
}

/// The managed-by label of slices mirrored from user-written Endpoints.
const MIRRORING: &str = "endpointslicemirroring-controller.k8s.io";

/// (name, port, protocol) of a Service port on one pod.
type ResolvedPort = (String, i64, String);

/// The port a Service port reaches on one pod, if the pod has it.
fn resolve(service_port: &Value, pod: &Value) -> Option<i64> {
    match &service_port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => pod["spec"]["containers"]
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["containerPort"].as_i64()),
        _ => service_port["port"].as_i64(),
    }
}

impl EndpointsController {
    pub fn new(
        client: Client,
        informers: Informers,
        services: Informer,
        endpoints: Informer,
        slices: Informer,
    ) -> Self {
        EndpointsController { client, informers, services, endpoints, slices, queue: WorkQueue::new("endpoints") }
    }

    /// The Service's EndpointSlice (one per Service here, named after it and labelled as
    /// upstream labels them), owned by the Service so that the garbage collector removes it.
    async fn sync_slice(&self, svc: &Value, subsets: &[Value], managed_by: &str) -> Result<(), String> {
        let (ns, name) = (owner::namespace(svc), owner::name(svc));
        let mut endpoints = Vec::new();
        let mut ports: Vec<Value> = Vec::new();
        for s in subsets {
            if ports.is_empty() {
                ports = s["ports"].as_array().cloned().unwrap_or_default();
            }
            for (list, ready) in [("addresses", true), ("notReadyAddresses", false)] {
                for a in s[list].as_array().into_iter().flatten() {
                    endpoints.push(json!({"addresses": [a["ip"]], "conditions": {"ready": ready, "serving": ready, "terminating": false},
                        "nodeName": a["nodeName"], "targetRef": a["targetRef"]}));
                }
            }
        }
        let labels = json!({"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": managed_by});
        let desired = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                "ownerReferences": [crate::owner::controller_ref(svc, "v1", "Service")]},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports});
        match self.slices.get(ns, name) {
            Some(cur)
                if cur["endpoints"].as_array().cloned().unwrap_or_default()
                    == desired["endpoints"].as_array().cloned().unwrap_or_default()
                    && cur["ports"].as_array().cloned().unwrap_or_default() == ports
                    && cur["metadata"]["labels"] == desired["metadata"]["labels"] =>
            {
                Ok(())
            }
            Some(cur) => {
                let mut next = desired.clone();
                next["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                self.client
                    .update("discovery.k8s.io", "endpointslices", Some(ns), name, None, &next)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            None => match self.client.create("discovery.k8s.io", "endpointslices", Some(ns), &desired).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_conflict() => Err("endpoint slice raced; retrying".into()),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    /// Whether the Service of this name (an Endpoints' or the Service itself) has no selector.
    fn selectorless(&self, obj: &Value) -> bool {
        self.services
            .get(owner::namespace(obj), owner::name(obj))
            .is_some_and(|s| s["spec"]["selector"].as_object().is_none_or(|m| m.is_empty()))
    }

    fn enqueue_all(&self) {
        for s in self.services.list() {
            self.queue.add(key_of(&s));
        }
    }

    fn on_pod(&self, pod: &Value) {
        let ns = owner::namespace(pod);
        for s in self.services.list().iter().filter(|s| owner::namespace(s) == ns) {
            let Some(sel) = s["spec"]["selector"].as_object() else { continue };
            if LabelSelector::from_set(sel).matches_object(pod) {
                self.queue.add((ns.to_string(), owner::name(s).to_string()));
            }
        }
    }

    async fn sync(&self, key: ObjectKey) -> ReconcileResult {
        let (ns, name) = (&key.0, &key.1);
        let Some(svc) = self.services.get(ns, name) else {
            // The Service is gone: so are its endpoints.
            if self.endpoints.get(ns, name).is_some() {
                match self.client.delete("", "endpoints", Some(ns), name, "").await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            return Ok(Action::Done);
        };
        let Some(selector) = svc["spec"]["selector"].as_object().filter(|s| !s.is_empty()) else {
            // Without a selector the user manages the Endpoints: mirror them. Without Endpoints
            // the user (or `kubus up`, for kube-dns) may manage the slice directly: leave it.
            let mirrored = |s: &Value| s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == MIRRORING;
            match self.endpoints.get(ns, name) {
                Some(ep) if ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] != "true" => {
                    let subsets = ep["subsets"].as_array().cloned().unwrap_or_default();
                    self.sync_slice(&svc, &subsets, MIRRORING).await?;
                }
                _ => {
                    if self.slices.get(ns, name).is_some_and(|s| mirrored(&s)) {
                        match self.client.delete("discovery.k8s.io", "endpointslices", Some(ns), name, "").await {
                            Ok(_) => {}
                            Err(e) if e.is_not_found() => {}
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                }
            }
            return Ok(Action::Done);
        };
        let selector = LabelSelector::from_set(selector);
        let ports: Vec<Value> = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
        let publish_not_ready = svc["spec"]["publishNotReadyAddresses"].as_bool().unwrap_or(false);
        // Subsets keyed by the resolved port list.
        let mut subsets: BTreeMap<Vec<ResolvedPort>, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
        let mut pods: Vec<Arc<Value>> =
            self.informers.pods.list().into_iter().filter(|p| owner::namespace(p) == ns).collect();
        pods.sort_by(|a, b| owner::name(a).cmp(owner::name(b)));
        for pod in pods {
            let ip = pod["status"]["podIP"].as_str().unwrap_or("");
            if ip.is_empty() || owner::is_deleting(&pod) || !selector.matches_object(&pod) {
                continue;
            }
            if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
                continue;
            }
            let resolved: Vec<ResolvedPort> = ports
                .iter()
                .filter_map(|p| {
                    let port = resolve(p, &pod)?;
                    Some((
                        p["name"].as_str().unwrap_or("").to_string(),
                        port,
                        p["protocol"].as_str().unwrap_or("TCP").to_string(),
                    ))
                })
                .collect();
            if resolved.is_empty() && !ports.is_empty() {
                continue;
            }
            let address = json!({"ip": ip, "nodeName": pod["spec"]["nodeName"],
                "targetRef": {"kind": "Pod", "namespace": ns, "name": owner::name(&pod), "uid": owner::uid(&pod)}});
            let entry = subsets.entry(resolved).or_default();
            if is_pod_ready(&pod) || publish_not_ready {
                entry.0.push(address);
            } else {
                entry.1.push(address);
            }
        }
        let subsets: Vec<Value> = subsets
            .into_iter()
            .map(|(ports, (ready, not_ready))| {
                let mut s = Map::new();
                if !ready.is_empty() {
                    s.insert("addresses".into(), Value::Array(ready));
                }
                if !not_ready.is_empty() {
                    s.insert("notReadyAddresses".into(), Value::Array(not_ready));
                }
                let ports: Vec<Value> = ports
                    .into_iter()
                    .map(|(n, p, proto)| {
                        let mut v = json!({"port": p, "protocol": proto});
                        if !n.is_empty() {
                            v["name"] = json!(n);
                        }
                        v
                    })
                    .collect();
                s.insert("ports".into(), Value::Array(ports));
                Value::Object(s)
            })
            .collect();
        self.sync_slice(&svc, &subsets, "endpointslice-controller.k8s.io").await?;
        let labels = svc["metadata"]["labels"].clone();
        match self.endpoints.get(ns, name) {
            Some(cur)
                if cur["subsets"].as_array().cloned().unwrap_or_default() == subsets
                    && cur["metadata"]["labels"] == labels =>
            {
                Ok(Action::Done)
            }
            Some(cur) => {
                let mut ep = (*cur).clone();
                ep["subsets"] = Value::Array(subsets);
                ep["metadata"]["labels"] = labels;
                self.client
                    .update("", "endpoints", Some(ns), name, None, &ep)
                    .await
                    .map(|_| Action::Done)
                    .map_err(|e| e.to_string())
            }
            None => {
                let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "labels": labels}, "subsets": subsets});
                match self.client.create("", "endpoints", Some(ns), &ep).await {
                    Ok(_) => Ok(Action::Done),
                    Err(e) if e.is_conflict() => Ok(Action::RequeueAfter(std::time::Duration::from_millis(100))),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }
}

impl Reconciler for EndpointsController {
    fn name(&self) -> &'static str {
        "endpoints"
    }
    fn reconcile(&self, key: ObjectKey) -> BoxFuture<'_, ReconcileResult> {
        Box::pin(self.sync(key))
    }
}

pub fn run(ctrl: Arc<EndpointsController>) -> Vec<BoxFuture<'static, ()>> {
    let c = ctrl.clone();
    let feed: BoxFuture<'static, ()> = Box::pin(async move {
        let mut svc_changes = c.services.subscribe();
        let mut pod_changes = c.informers.pods.subscribe();
        let mut endpoints_changes = c.endpoints.subscribe();
        c.services.wait_synced().await;
        c.endpoints.wait_synced().await;
        c.slices.wait_synced().await;
        c.informers.pods.wait_synced().await;
        c.enqueue_all();
        loop {
            tokio::select! {
                ch = svc_changes.recv() => match ch {
                    Ok(Change::Applied { new, .. }) => c.queue.add(key_of(&new)),
                    Ok(Change::Deleted(s)) => c.queue.add(key_of(&s)),
                    Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.enqueue_all(),
                    Err(_) => return,
                },
                // User-written Endpoints of selectorless Services are mirrored; this controller's
                // own writes (Services with a selector) come back here too and are skipped.
                ch = endpoints_changes.recv() => match ch {
                    Ok(Change::Applied { new: e, .. }) | Ok(Change::Deleted(e)) => {
                        if c.selectorless(&e) {
                            c.queue.add(key_of(&e));
                        }
                    }
                    Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        for s in c.services.list().iter().filter(|s| c.selectorless(s)) {
                            c.queue.add(key_of(s));
                        }
                    }
                    Err(_) => return,
                },
                ch = pod_changes.recv() => match ch {
                    Ok(Change::Applied { old, new }) => {
                        c.on_pod(&new);
                        if let Some(old) = old {
                            c.on_pod(&old);
                        }
                    }
                    Ok(Change::Deleted(p)) => c.on_pod(&p),
                    Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.enqueue_all(),
                    Err(_) => return,
                },
            }
        }
    });
    let queue = ctrl.queue.clone();
    let mut loops = controller::workers(ctrl, queue, 2);
    loops.push(feed);
    loops
}
