//! The Endpoints controller: for every Service with a selector, an Endpoints object of the
//! same name listing the matching pods' IPs (ready ones in `addresses`, the others in
//! `notReadyAddresses`) with the Service's ports resolved against each pod (named target
//! ports look up the container port of that name). Pods resolving ports differently land in
//! different subsets. Each Service also gets the EndpointSlice kube-proxy and the cluster DNS
//! read; for a Service without a selector, the Endpoints the user wrote are mirrored into it
//! (upstream's EndpointSlice mirroring controller), so a Service pointing at addresses outside
//! the cluster works as it does upstream.
//!
//! A sync reads the Service's candidate pods from a label index (the pods carrying its
//! rarest selector label); a pod event queues the Services of the pod's namespace that select
//! it.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubus_apimachinery::meta::controller_ref;
use kubus_apimachinery::selector::labels_match;
use kubus_apimachinery::{pod, Object, ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::informer::indexes;
use kubus_controller_runtime::{Client, DeleteParams, Informer, InformerFactory};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Upstream's `--concurrent-endpoint-syncs` is 5; this one has run with 2.
/// Upstream's `--concurrent-endpoint-syncs` default.
pub const WORKERS: usize = 5;

/// The managed-by label of slices mirrored from user-written Endpoints.
const MIRRORING: &str = "endpointslicemirroring-controller.k8s.io";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const SERVICE_NAME: &str = "kubernetes.io/service-name";
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

pub struct EndpointsController {
    client: Client,
    pods: Informer<Pod>,
    services: Informer<Service>,
    endpoints: Informer<Endpoints>,
    slices: Informer<EndpointSlice>,
}

/// (name, port, protocol) of a Service port on one pod.
type ResolvedPort = (String, i32, String);

/// The selector of a Service that selects pods (None: the user manages its endpoints).
fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

/// The port a Service port reaches on one pod, if the pod has it.
fn resolve(service_port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &service_port.target_port {
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod::spec(pod)
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
        None => Some(service_port.port),
    }
}

/// The Endpoints subsets of a Service's pods: pods with an IP that are neither terminal nor
/// being deleted, grouped by how the Service's ports resolve on them, sorted by pod name.
pub fn subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let ns = svc.namespace();
    let spec = svc.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
    let publish_not_ready = spec.and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let no_selector = BTreeMap::new();
    let selector = spec.and_then(|s| s.selector.as_ref()).unwrap_or(&no_selector);
    let mut pods: Vec<&Arc<Pod>> = pods.iter().collect();
    pods.sort_by(|a, b| a.name().cmp(b.name()));
    // (ready, not ready) addresses by the resolved port list.
    let mut groups: BTreeMap<Vec<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for pod in pods {
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).unwrap_or("");
        if ip.is_empty() || pod.is_deleting() || !labels_match(selector, pod.labels()) || pod::is_terminal(pod) {
            continue;
        }
        let resolved: Vec<ResolvedPort> = ports
            .iter()
            .filter_map(|p| {
                let port = resolve(p, pod)?;
                Some((p.name.clone().unwrap_or_default(), port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
            })
            .collect();
        if resolved.is_empty() && !ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip: ip.to_string(),
            node_name: pod::spec(pod).node_name.clone(),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some(ns.to_string()),
                name: Some(pod.name().to_string()),
                uid: Some(pod.uid().to_string()),
                ..Default::default()
            }),
            hostname: None,
        };
        let entry = groups.entry(resolved).or_default();
        if pod::is_ready(pod) || publish_not_ready {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: Some(
                ports
                    .into_iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name: (!name.is_empty()).then_some(name),
                        port,
                        protocol: Some(protocol),
                        app_protocol: None,
                    })
                    .collect(),
            ),
        })
        .collect()
}

/// The Service's EndpointSlice (one per Service here, named after it and labelled as
/// upstream labels them), owned by the Service so that the garbage collector removes it.
pub fn slice(svc: &Service, subsets: &[EndpointSubset], managed_by: &str) -> EndpointSlice {
    let mut endpoints = Vec::new();
    let mut ports: Vec<SlicePort> = Vec::new();
    for s in subsets {
        if ports.is_empty() {
            ports = s
                .ports
                .iter()
                .flatten()
                .map(|p| SlicePort {
                    name: p.name.clone(),
                    port: Some(p.port),
                    protocol: p.protocol.clone(),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect();
        }
        for (list, ready) in [(&s.addresses, true), (&s.not_ready_addresses, false)] {
            for a in list.iter().flatten() {
                endpoints.push(Endpoint {
                    addresses: vec![a.ip.clone()],
                    conditions: Some(EndpointConditions {
                        ready: Some(ready),
                        serving: Some(ready),
                        terminating: Some(false),
                    }),
                    node_name: a.node_name.clone(),
                    target_ref: a.target_ref.clone(),
                    ..Default::default()
                });
            }
        }
    }
    let labels = BTreeMap::from([
        (SERVICE_NAME.to_string(), svc.name().to_string()),
        (MANAGED_BY.to_string(), managed_by.to_string()),
    ]);
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(svc.name().to_string()),
            namespace: Some(svc.namespace().to_string()),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(svc)]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(ports),
    }
}

/// Starts the controller; the future runs it until dropped.
pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let (pods, services) = (factory.get::<Pod>(), factory.get::<Service>());
    let (endpoints, slices) = (factory.get::<Endpoints>(), factory.get::<EndpointSlice>());
    indexes::by_label(&pods);
    let services_of_pod = {
        let services = services.clone();
        move |p: &Pod| {
            services
                .namespace(p.namespace())
                .iter()
                .filter(|s| selector(s).is_some_and(|sel| labels_match(sel, p.labels())))
                .map(|s| s.key())
                .collect()
        }
    };
    // User-written Endpoints of selectorless Services are mirrored; this controller's own
    // writes (Services with a selector) come back here too and are skipped.
    let selectorless = {
        let services = services.clone();
        move |e: &Endpoints| {
            let svc = services.get(e.namespace(), e.name());
            svc.filter(|s| selector(s).is_none()).map(|_| e.key()).into_iter().collect()
        }
    };
    let ctrl = Controller::new("endpoints", services.clone())
        .watches(pods.clone(), services_of_pod)
        .watches(endpoints.clone(), selectorless)
        .workers(workers);
    let reconciler = EndpointsController { client, pods, services, endpoints, slices: slices.clone() };
    let run = ctrl.run(Arc::new(reconciler));
    Box::pin(async move {
        // Slices are read, not watched: only the cache must be filled first.
        slices.wait_synced().await;
        run.await
    })
}

impl EndpointsController {
    /// The pods a Service selects, through the label index.
    fn candidates(&self, ns: &str, selector: &BTreeMap<String, String>) -> Vec<Arc<Pod>> {
        self.pods.read(|c| indexes::matching_labels(c, ns, selector))
    }

    async fn sync_slice(&self, svc: &Service, subsets: &[EndpointSubset], managed_by: &str) -> Result<(), Error> {
        let mut desired = slice(svc, subsets, managed_by);
        match self.slices.get(svc.namespace(), svc.name()) {
            Some(cur)
                if cur.endpoints == desired.endpoints
                    && cur.ports.as_deref().unwrap_or(&[]) == desired.ports.as_deref().unwrap_or(&[])
                    && cur.labels() == desired.labels() =>
            {
                Ok(())
            }
            Some(cur) => {
                desired.metadata.resource_version = cur.metadata.resource_version.clone();
                self.client.replace(&desired).await?;
                Ok(())
            }
            None => {
                self.client.create(&desired).await?;
                Ok(())
            }
        }
    }

    async fn delete_ignoring_absent<K: Object>(&self, ns: &str, name: &str) -> Result<(), Error> {
        match self.client.delete::<K>(ns, name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let Some(svc) = self.services.get_key(key) else {
            // The Service is gone: so are its endpoints.
            if self.endpoints.get_key(key).is_some() {
                self.delete_ignoring_absent::<Endpoints>(ns, name).await?;
            }
            return Ok(Action::Done);
        };
        let Some(sel) = selector(&svc) else {
            // Without a selector the user manages the Endpoints: mirror them. Without Endpoints
            // the user (or `kubus up`, for kube-dns) may manage the slice directly: leave it.
            match self.endpoints.get_key(key) {
                Some(ep) if ep.label(SKIP_MIRROR) != Some("true") => {
                    self.sync_slice(&svc, ep.subsets.as_deref().unwrap_or(&[]), MIRRORING).await?;
                }
                _ => {
                    if self.slices.get_key(key).is_some_and(|s| s.label(MANAGED_BY) == Some(MIRRORING)) {
                        self.delete_ignoring_absent::<EndpointSlice>(ns, name).await?;
                    }
                }
            }
            return Ok(Action::Done);
        };
        let subsets = subsets(&svc, &self.candidates(ns, sel));
        self.sync_slice(&svc, &subsets, "endpointslice-controller.k8s.io").await?;
        let labels = svc.metadata.labels.clone();
        match self.endpoints.get_key(key) {
            Some(cur)
                if cur.subsets.as_deref().unwrap_or(&[]) == subsets.as_slice() && cur.labels() == svc.labels() =>
            {
                Ok(Action::Done)
            }
            Some(cur) => {
                let mut ep = (*cur).clone();
                ep.subsets = Some(subsets);
                ep.metadata.labels = labels;
                self.client.replace(&ep).await?;
                Ok(Action::Done)
            }
            None => {
                let ep = Endpoints {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(ns.to_string()),
                        labels,
                        ..Default::default()
                    },
                    subsets: Some(subsets),
                };
                match self.client.create(&ep).await {
                    Ok(_) => Ok(Action::Done),
                    Err(e) if e.is_conflict() => Ok(Action::RequeueAfter(Duration::from_millis(100))),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

impl Reconciler for EndpointsController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec};
    use serde_json::json;

    fn service(publish_not_ready: bool) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u-svc".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::String("http".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                publish_not_ready_addresses: Some(publish_not_ready),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, ip: &str, port: Option<i32>, ready: bool, app: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("prod".into()),
                uid: Some(format!("u-{name}")),
                labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: port.map(|p| {
                        vec![ContainerPort { name: Some("http".into()), container_port: p, ..Default::default() }]
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn subsets_group_pods_by_resolved_ports_and_readiness() {
        let mut done = (*pod("done", "10.0.0.9", Some(8080), true, "web")).clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let pods = vec![
            pod("b", "10.0.0.2", Some(8080), false, "web"),
            pod("a", "10.0.0.1", Some(8080), true, "web"),
            pod("c", "10.0.0.3", Some(9090), true, "web"),
            pod("no-ip", "", Some(8080), true, "web"),
            pod("no-port", "10.0.0.4", None, true, "web"),
            pod("other", "10.0.0.5", Some(8080), true, "db"),
            Arc::new(done),
        ];
        let got = serde_json::to_value(subsets(&service(false), &pods)).unwrap();
        let address = |ip: &str, name: &str| {
            json!({"ip": ip, "nodeName": "n1",
                "targetRef": {"kind": "Pod", "namespace": "prod", "name": name, "uid": format!("u-{name}")}})
        };
        assert_eq!(
            got,
            json!([
                {"addresses": [address("10.0.0.1", "a")], "notReadyAddresses": [address("10.0.0.2", "b")],
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
                {"addresses": [address("10.0.0.3", "c")], "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}]},
            ])
        );
        // publishNotReadyAddresses: every pod is an address.
        let all = subsets(&service(true), &pods);
        assert_eq!(all[0].addresses.as_ref().map(Vec::len), Some(2));
        assert!(all[0].not_ready_addresses.is_none());
    }

    #[test]
    fn numeric_and_defaulted_target_ports() {
        let mut svc = service(false);
        let ports = svc.spec.as_mut().unwrap().ports.as_mut().unwrap();
        ports[0].target_port = Some(IntOrString::Int(7070));
        ports[0].name = None;
        ports.push(ServicePort { port: 53, protocol: Some("UDP".into()), ..Default::default() });
        let got = subsets(&svc, &[pod("a", "10.0.0.1", None, true, "web")]);
        assert_eq!(
            serde_json::to_value(&got[0].ports).unwrap(),
            json!([{"port": 7070, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}])
        );
    }

    #[test]
    fn the_slice_lists_every_address_with_its_conditions() {
        let svc = service(false);
        let pods = vec![pod("a", "10.0.0.1", Some(8080), true, "web"), pod("b", "10.0.0.2", Some(8080), false, "web")];
        let s = slice(&svc, &subsets(&svc, &pods), "endpointslice-controller.k8s.io");
        let target = |name: &str| json!({"kind": "Pod", "namespace": "prod", "name": name, "uid": format!("u-{name}")});
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web", "namespace": "prod",
                    "labels": {SERVICE_NAME: "web", MANAGED_BY: "endpointslice-controller.k8s.io"},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "u-svc",
                        "controller": true, "blockOwnerDeletion": true}]},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true, "terminating": false},
                        "nodeName": "n1", "targetRef": target("a")},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": false, "terminating": false},
                        "nodeName": "n1", "targetRef": target("b")}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
        );
        // No subsets: an empty slice, ports included.
        let empty = slice(&svc, &[], MIRRORING);
        assert_eq!((empty.endpoints.len(), empty.ports), (0, Some(vec![])));
    }

    #[test]
    fn pods_are_indexed_by_namespace_and_label() {
        let p = pod("a", "10.0.0.1", None, true, "web");
        assert_eq!(indexes::label_values(&*p), ["prod/app=web"]);
        let mut cache: kubus_controller_runtime::informer::Cache<Pod> = Default::default();
        cache.add_index(indexes::LABEL, Arc::new(indexes::label_values::<Pod>));
        let mut tiered = (*pod("t", "10.0.0.2", None, true, "web")).clone();
        tiered.metadata.labels.as_mut().unwrap().insert("tier".into(), "front".into());
        let mut elsewhere = (*pod("x", "10.0.0.3", None, true, "web")).clone();
        elsewhere.metadata.namespace = Some("dev".into());
        for p in [p.clone(), pod("b", "10.0.0.4", None, true, "web"), pod("db", "10.0.0.5", None, true, "db")] {
            cache.insert(p.key(), p);
        }
        for p in [tiered, elsewhere] {
            cache.insert(p.key(), Arc::new(p));
        }
        let names = |sel: &[(&str, &str)]| {
            let sel: BTreeMap<String, String> = sel.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let mut v: Vec<String> =
                indexes::matching_labels(&cache, "prod", &sel).iter().map(|p| p.name().to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&[("app", "web")]), ["a", "b", "t"]);
        // Looked up by the rarest label, then the whole selector applies.
        assert_eq!(names(&[("app", "web"), ("tier", "front")]), ["t"]);
        assert!(names(&[("app", "cache")]).is_empty());
        assert!(selector(&service(false)).is_some_and(|s| labels_match(s, p.labels())));
        let mut headless = service(false);
        headless.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
        assert!(selector(&headless).is_none(), "an empty selector selects nothing here: mirrored instead");
    }
}
