//! The Endpoints controller: for every Service with a selector, an Endpoints object of the
//! same name listing the matching pods' IPs (ready ones in `addresses`, the others in
//! `notReadyAddresses`) with the Service's ports resolved against each pod (named target
//! ports look up the container port of that name). Pods resolving ports differently land in
//! different subsets. Endpoints hold at most 1,000 addresses, as upstream's (ready ones kept
//! first, the object annotated as truncated). Each Service also gets the EndpointSlices
//! kube-proxy and the cluster DNS read, in slices of at most 100 endpoints changed
//! incrementally (see [`crate::endpointslice`]); for a Service without a selector, the
//! Endpoints the user wrote are mirrored into them (upstream's EndpointSlice mirroring
//! controller), so a Service pointing at addresses outside the cluster works as it does
//! upstream.
//!
//! A sync reads the Service's candidate pods from a label index (the pods carrying its
//! rarest selector label) and its slices from the slices' index by Service; a pod event queues
//! the Services of the pod's namespace that select it, and a change of one of its slices by
//! anyone else queues the Service.

use crate::endpointslice::{
    self, revision, slice_labels, WriteTracker, CONTROLLER, MANAGED_BY, MAX_ENDPOINTS_PER_SLICE,
    MAX_MIRRORED_PER_SUBSET, MIRRORING, SERVICE_NAME,
};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubus_apimachinery::selector::labels_match;
use kubus_apimachinery::{pod, Object, ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::informer::indexes::{self, SLICE_SERVICE};
use kubus_controller_runtime::{Change, Client, DeleteParams, Informer, InformerFactory};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Upstream's `--concurrent-endpoint-syncs` default.
pub const WORKERS: usize = 5;

const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Upstream's endpoints controller `maxCapacity`: addresses an Endpoints object holds at most.
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;
/// The annotation of an Endpoints object cut to [`MAX_ENDPOINTS_ADDRESSES`], and its value
/// (upstream's `v1.EndpointsOverCapacity`).
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const TRUNCATED: &str = "truncated";
/// When to look again at a Service whose informers have not yet seen this controller's writes.
const STALE_RETRY: Duration = Duration::from_millis(100);

pub struct EndpointsController {
    client: Client,
    /// Writes EndpointSlices (as upstream's EndpointSlice controller).
    slices_client: Client,
    pods: Informer<Pod>,
    services: Informer<Service>,
    endpoints: Informer<Endpoints>,
    slices: Informer<EndpointSlice>,
    /// Slice writes by Service, until the slices informer has them.
    slice_writes: Arc<WriteTracker>,
    /// Endpoints writes, until the endpoints informer has them.
    endpoints_writes: WriteTracker,
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

/// The address's hostname (upstream's endpoints controller): the pod's `spec.hostname` when
/// its `spec.subdomain` names this Service, so the cluster DNS answers
/// `<hostname>.<service>.<ns>.svc` (what StatefulSet pods rely on).
fn endpoint_hostname(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod::spec(pod);
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(svc.name()) && pod.namespace() == svc.namespace()).then(|| hostname.to_string())
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
            hostname: endpoint_hostname(svc, pod),
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

/// Cuts subsets to at most `max` addresses as upstream's `truncateEndpoints` does: ready
/// addresses go first (not ready ones only fill the room they leave, or are all dropped when
/// the ready ones alone are too many), and the room is shared among subsets in proportion to
/// what each holds, rounded up, so the last subsets may get less. Returns whether it cut.
pub fn truncate(subsets: &mut Vec<EndpointSubset>, max: usize) -> bool {
    let count = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= max {
        return false;
    }
    let cut_ready = ready > max;
    // Both totals are non-zero here: the list cut holds more than its room.
    let (room, total) = if cut_ready { (max, ready) } else { (max - ready, not_ready) };
    let mut left = room;
    for s in subsets.iter_mut() {
        if cut_ready {
            s.not_ready_addresses = None;
        }
        let list = if cut_ready { &mut s.addresses } else { &mut s.not_ready_addresses };
        let share = (count(list) * room).div_ceil(total).min(left);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(share);
        }
        left -= count(list);
        if count(list) == 0 {
            *list = None;
        }
    }
    subsets.retain(|s| count(&s.addresses) + count(&s.not_ready_addresses) > 0);
    true
}

/// Sets or removes the over-capacity annotation.
fn mark_over_capacity(meta: &mut ObjectMeta, truncated: bool) {
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), TRUNCATED.into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if annotations.is_empty() {
        meta.annotations = None;
    }
}

/// The Service an EndpointSlice of this controller belongs to.
fn slice_owner(slice: &EndpointSlice) -> Option<ObjectKey> {
    let ours = matches!(slice.label(MANAGED_BY), Some(CONTROLLER | MIRRORING));
    let svc = slice.label(SERVICE_NAME).filter(|_| ours)?;
    Some((slice.namespace().to_string(), svc.to_string()))
}

/// Starts the controller; the future runs it until dropped.
pub fn run(client: Client, slices_client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let (pods, services) = (factory.get::<Pod>(), factory.get::<Service>());
    let (endpoints, slices) = (factory.get::<Endpoints>(), factory.get::<EndpointSlice>());
    indexes::by_label(&pods);
    indexes::slices_by_service(&slices);
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
    // A slice changed or deleted by anyone else queues its Service (upstream recreates what a
    // user deletes); the echoes of this controller's own writes do not.
    let slice_writes = Arc::new(WriteTracker::default());
    let slice_changes = {
        let tracker = slice_writes.clone();
        move |change: &Change<EndpointSlice>| -> Vec<ObjectKey> {
            let (slice, old, resource_version) = match change {
                Change::Applied { old, new } => (new, old.as_ref(), new.resource_version()),
                Change::Deleted(slice) => (slice, None, None),
                Change::Resynced => return Vec::new(),
            };
            let owner = slice_owner(slice);
            let mut keys = Vec::new();
            if let Some(key) = &owner {
                if !tracker.observed(key, slice.name(), resource_version) {
                    keys.push(key.clone());
                }
            }
            // Relabelled away from a Service: that one lost a slice.
            keys.extend(old.and_then(|o| slice_owner(o)).filter(|k| Some(k) != owner.as_ref()));
            keys
        }
    };
    let ctrl = Controller::new("endpoints", services.clone())
        .watches(pods.clone(), services_of_pod)
        .watches(endpoints.clone(), selectorless)
        .watches_changes(slices.clone(), slice_changes)
        .workers(workers);
    let reconciler = EndpointsController {
        client,
        slices_client,
        pods,
        services,
        endpoints,
        slices,
        slice_writes,
        endpoints_writes: WriteTracker::default(),
    };
    ctrl.run(Arc::new(reconciler))
}

async fn delete_ignoring_absent<K: Object>(client: &Client, ns: &str, name: &str) -> Result<(), Error> {
    match client.delete::<K>(ns, name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl EndpointsController {
    /// The pods a Service selects, through the label index.
    fn candidates(&self, ns: &str, selector: &BTreeMap<String, String>) -> Vec<Arc<Pod>> {
        self.pods.read(|c| indexes::matching_labels(c, ns, selector))
    }

    /// Writes a plan of the Service's slices, recording each write for [`WriteTracker`].
    async fn write_slices(&self, key: &ObjectKey, plan: endpointslice::Plan) -> Result<(), Error> {
        for slice in &plan.create {
            let made = self.slices_client.create(slice).await?;
            self.slice_writes.wrote(key, made.name(), made.resource_version());
        }
        for slice in &plan.update {
            let made = self.slices_client.replace(slice).await?;
            self.slice_writes.wrote(key, made.name(), made.resource_version());
        }
        // Deletes last: what replaces a deleted slice (one of an earlier Service of this name, or
        // of the other manager) is there first.
        for name in &plan.delete {
            delete_ignoring_absent::<EndpointSlice>(&self.slices_client, &key.0, name).await?;
            self.slice_writes.deleted(key, name);
        }
        Ok(())
    }

    /// Brings the Service's slices of `managed_by` to `desired` (None: it should have none) and
    /// deletes those of this controller's other manager (the Service gained or lost its
    /// selector). Slices of any other manager are left alone.
    async fn sync_slices(
        &self,
        svc: &Service,
        slices: &[Arc<EndpointSlice>],
        managed_by: &str,
        desired: Option<(BTreeMap<String, String>, BTreeMap<endpointslice::PortsKey, endpointslice::Group>)>,
    ) -> Result<(), Error> {
        let other = if managed_by == CONTROLLER { MIRRORING } else { CONTROLLER };
        let of = |manager: &str| -> Vec<Arc<EndpointSlice>> {
            slices.iter().filter(|s| s.label(MANAGED_BY) == Some(manager)).cloned().collect()
        };
        let (mine, theirs) = (of(managed_by), of(other));
        let mut plan = match desired {
            Some((labels, groups)) => endpointslice::plan(svc, &labels, &mine, groups, MAX_ENDPOINTS_PER_SLICE),
            None => endpointslice::Plan {
                delete: mine.iter().map(|s| s.name().to_string()).collect(),
                ..Default::default()
            },
        };
        plan.delete.extend(theirs.iter().map(|s| s.name().to_string()));
        if plan.is_empty() {
            return Ok(());
        }
        self.write_slices(&svc.key(), plan).await
    }

    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let Some(svc) = self.services.get_key(key) else {
            // The Service is gone: so are its endpoints (its slices go with it, by the garbage
            // collector, as their owner).
            self.slice_writes.forget(key);
            self.endpoints_writes.forget(key);
            if self.endpoints.get_key(key).is_some() {
                delete_ignoring_absent::<Endpoints>(&self.client, ns, name).await?;
            }
            return Ok(Action::Done);
        };
        let slices = self.slices.by_index(SLICE_SERVICE, &format!("{ns}/{name}"));
        let cached = |n: &str| slices.iter().find(|s| s.name() == n).and_then(|s| revision(s.resource_version()));
        if self.slice_writes.is_stale(key, cached) {
            return Ok(Action::RequeueAfter(STALE_RETRY));
        }
        let Some(sel) = selector(&svc) else {
            // Without a selector the user manages the Endpoints: mirror them. Without Endpoints
            // the user (or `kubus up`, for kube-dns) may manage slices directly: leave those.
            let desired = match self.endpoints.get_key(key) {
                Some(ep) if ep.label(SKIP_MIRROR) != Some("true") => {
                    let groups =
                        endpointslice::groups(ep.subsets.as_deref().unwrap_or(&[]), Some(MAX_MIRRORED_PER_SUBSET));
                    Some((slice_labels(&svc, ep.labels(), MIRRORING), groups))
                }
                _ => None,
            };
            self.sync_slices(&svc, &slices, MIRRORING, desired).await?;
            return Ok(Action::Done);
        };
        let cached = |_: &str| self.endpoints.get_key(key).and_then(|e| revision(e.resource_version()));
        if self.endpoints_writes.is_stale(key, cached) {
            return Ok(Action::RequeueAfter(STALE_RETRY));
        }
        let mut subsets = subsets(&svc, &self.candidates(ns, sel));
        let desired = (slice_labels(&svc, svc.labels(), CONTROLLER), endpointslice::groups(&subsets, None));
        self.sync_slices(&svc, &slices, CONTROLLER, Some(desired)).await?;
        // The slices hold every endpoint; the Endpoints object at most its capacity.
        let truncated = truncate(&mut subsets, MAX_ENDPOINTS_ADDRESSES);
        let labels = svc.metadata.labels.clone();
        let written = match self.endpoints.get_key(key) {
            Some(cur)
                if cur.subsets.as_deref().unwrap_or(&[]) == subsets.as_slice()
                    && cur.labels() == svc.labels()
                    && cur.annotation(OVER_CAPACITY) == truncated.then_some(TRUNCATED) =>
            {
                return Ok(Action::Done);
            }
            Some(cur) => {
                let mut ep =
                    Endpoints { metadata: ObjectMeta { labels, ..cur.metadata.clone() }, subsets: Some(subsets) };
                mark_over_capacity(&mut ep.metadata, truncated);
                self.client.replace(&ep).await?
            }
            None => {
                let mut ep = Endpoints {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(ns.to_string()),
                        labels,
                        ..Default::default()
                    },
                    subsets: Some(subsets),
                };
                mark_over_capacity(&mut ep.metadata, truncated);
                match self.client.create(&ep).await {
                    Ok(made) => made,
                    Err(e) if e.is_conflict() => return Ok(Action::RequeueAfter(Duration::from_millis(100))),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        self.endpoints_writes.wrote(key, name, written.resource_version());
        Ok(Action::Done)
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
    fn addresses_carry_the_hostname_of_pods_in_the_service_subdomain() {
        let with = |hostname: Option<&str>, subdomain: &str| {
            let mut p = (*pod("web-0", "10.0.0.1", Some(8080), true, "web")).clone();
            let spec = p.spec.as_mut().unwrap();
            spec.hostname = hostname.map(String::from);
            spec.subdomain = Some(subdomain.into());
            subsets(&service(false), &[Arc::new(p)])[0].addresses.as_ref().unwrap()[0].hostname.clone()
        };
        assert_eq!(with(Some("web-0"), "web"), Some("web-0".into()));
        assert_eq!(with(Some("web-0"), "other"), None, "another Service's subdomain");
        assert_eq!(with(None, "web"), None, "no hostname of its own");
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
        // A new Service's slice, as the controller creates it.
        let slice = |subsets: &[EndpointSubset], managed_by: &str| {
            let labels = slice_labels(&svc, svc.labels(), managed_by);
            let groups = endpointslice::groups(subsets, None);
            let mut plan = endpointslice::plan(&svc, &labels, &[], groups, MAX_ENDPOINTS_PER_SLICE);
            assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (1, 0, 0));
            plan.create.remove(0)
        };
        let s = slice(&subsets(&svc, &pods), CONTROLLER);
        let target = |name: &str| json!({"kind": "Pod", "namespace": "prod", "name": name, "uid": format!("u-{name}")});
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"generateName": "web-", "namespace": "prod",
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
        let empty = slice(&[], MIRRORING);
        assert_eq!((empty.endpoints.len(), empty.ports), (0, Some(vec![])));
    }

    /// Subsets of `ready` and `not_ready` pods on port 8080 and, when `other` is set, as many
    /// on port 9090 (a pod per address, named by index).
    fn many(ready: usize, not_ready: usize, other: bool) -> Vec<EndpointSubset> {
        let mut pods = Vec::new();
        for (i, port) in [8080, 9090].into_iter().take(if other { 2 } else { 1 }).enumerate() {
            for n in 0..ready + not_ready {
                let ip = format!("10.{i}.{}.{}", n / 250, n % 250 + 1);
                pods.push(pod(&format!("p{i}-{n:05}"), &ip, Some(port), n < ready, "web"));
            }
        }
        subsets(&service(false), &pods)
    }

    fn counts(subsets: &[EndpointSubset]) -> Vec<(usize, usize)> {
        let n = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
        subsets.iter().map(|s| (n(&s.addresses), n(&s.not_ready_addresses))).collect()
    }

    #[test]
    fn endpoints_are_truncated_at_1000_ready_addresses_first() {
        // Under capacity: untouched.
        let mut small = many(600, 400, false);
        assert!(!truncate(&mut small, MAX_ENDPOINTS_ADDRESSES));
        assert_eq!(counts(&small), [(600, 400)]);
        // Too many ready ones: not ready ones all go, the ready ones are shared in proportion.
        let mut big = many(900, 100, true);
        big[1].addresses.as_mut().unwrap().truncate(300);
        assert!(truncate(&mut big, MAX_ENDPOINTS_ADDRESSES));
        assert_eq!(counts(&big), [(750, 0), (250, 0)]);
        // Room left by the ready ones goes to not ready ones, in proportion, rounded up.
        let mut mixed = many(300, 400, true);
        mixed[1].not_ready_addresses.as_mut().unwrap().truncate(200);
        assert!(truncate(&mut mixed, MAX_ENDPOINTS_ADDRESSES));
        assert_eq!(counts(&mixed), [(300, 267), (300, 133)]);
        // The first addresses (by pod name) stay.
        let ips: Vec<&str> = mixed[0].not_ready_addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips[0], "10.0.1.51");
        // A subset of only not ready addresses left with none is dropped.
        let mut lopsided = many(1000, 0, false);
        lopsided.extend(many(0, 5, true).into_iter().skip(1));
        assert!(truncate(&mut lopsided, MAX_ENDPOINTS_ADDRESSES));
        assert_eq!(counts(&lopsided), [(1000, 0)]);
    }

    #[test]
    fn the_over_capacity_annotation_is_set_and_removed() {
        let mut meta =
            ObjectMeta { annotations: Some([("keep".to_string(), "me".to_string())].into()), ..Default::default() };
        mark_over_capacity(&mut meta, true);
        assert_eq!(meta.annotations.as_ref().unwrap().get(OVER_CAPACITY).map(String::as_str), Some("truncated"));
        mark_over_capacity(&mut meta, false);
        assert_eq!(meta.annotations, Some([("keep".to_string(), "me".to_string())].into()));
        let mut bare = ObjectMeta::default();
        mark_over_capacity(&mut bare, false);
        assert_eq!(bare.annotations, None);
        // 3,000 pods: the slices hold them all, the Endpoints object 1,000.
        let mut all = many(3000, 0, false);
        let groups = endpointslice::groups(&all, None);
        assert_eq!(groups.values().map(|g| g.endpoints.len()).sum::<usize>(), 3000);
        assert!(truncate(&mut all, MAX_ENDPOINTS_ADDRESSES));
        assert_eq!(counts(&all), [(1000, 0)]);
        // Far under NATS's 1 MiB payload limit.
        let bytes = serde_json::to_vec(&Endpoints { subsets: Some(all), ..Default::default() }).unwrap().len();
        assert!(bytes < 512 * 1024, "{bytes} bytes");
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
