//! A Service's EndpointSlices as upstream's EndpointSlice reconciler keeps them: endpoints
//! grouped by the port list they resolve to, each group in slices of at most
//! [`MAX_ENDPOINTS_PER_SLICE`], changed incrementally. An endpoint stays in the slice it is in
//! (updated in place when it changes), removed endpoints leave their slices, new ones fill
//! slices with room before new slices are made, slices left empty are deleted (a Service
//! without endpoints keeps one empty placeholder), and only slices whose content changed are
//! written: no write grows with the Service.
//!
//! The same plan serves mirrored slices (selectorless Services with user-written Endpoints, as
//! upstream's mirroring controller, which mirrors at most [`MAX_MIRRORED_PER_SUBSET`] addresses
//! of each subset). [`WriteTracker`] tells a sync that its informer has not yet seen this
//! controller's last writes, so slices with generated names are never made twice.

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::meta::{controller_ref, is_controlled_by};
use kubus_apimachinery::{ObjectExt, ObjectKey};
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use kubus_controller_runtime::informer::indexes::SERVICE_NAME_LABEL as SERVICE_NAME;

/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Upstream's `--mirroring-max-endpoints-per-subset` default: addresses of one Endpoints subset
/// that are mirrored.
pub const MAX_MIRRORED_PER_SUBSET: usize = 1000;
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The manager of the slices of Services with a selector.
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// The manager of slices mirrored from user-written Endpoints.
pub const MIRRORING: &str = "endpointslicemirroring-controller.k8s.io";
/// Upstream's label on the slices of headless Services.
pub const HEADLESS: &str = "service.kubernetes.io/headless";

/// A port list in a canonical order, so that a slice's ports and a group's compare as sets
/// (upstream's port map key).
pub type PortsKey = Vec<(Option<String>, Option<i32>, Option<String>, Option<String>)>;

pub fn ports_key(ports: &[SlicePort]) -> PortsKey {
    let mut key: PortsKey =
        ports.iter().map(|p| (p.name.clone(), p.port, p.protocol.clone(), p.app_protocol.clone())).collect();
    key.sort();
    key
}

/// What identifies an endpoint from one sync to the next (the fields upstream hashes): its
/// addresses, hostname and target. Conditions, node and the target's uid change in place.
type EndpointId = (Vec<String>, Option<String>, Option<String>, Option<String>);

fn endpoint_id(ep: &Endpoint) -> EndpointId {
    let target = ep.target_ref.as_ref();
    (
        ep.addresses.clone(),
        ep.hostname.clone(),
        target.and_then(|t| t.namespace.clone()),
        target.and_then(|t| t.name.clone()),
    )
}

/// Endpoints that resolve the Service's ports the same way: one group of slices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub ports: Vec<SlicePort>,
    pub endpoints: Vec<Endpoint>,
}

fn endpoint(a: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![a.ip.clone()],
        conditions: Some(EndpointConditions { ready: Some(ready), serving: Some(ready), terminating: Some(false) }),
        hostname: a.hostname.clone(),
        node_name: a.node_name.clone(),
        target_ref: a.target_ref.clone(),
        ..Default::default()
    }
}

/// The endpoints of Endpoints subsets grouped by port list (subsets with the same ports share
/// a group). `per_subset` keeps at most that many addresses of each subset, ready ones first.
pub fn groups(subsets: &[EndpointSubset], per_subset: Option<usize>) -> BTreeMap<PortsKey, Group> {
    let mut out: BTreeMap<PortsKey, Group> = BTreeMap::new();
    for s in subsets {
        let ports: Vec<SlicePort> = (s.ports.iter().flatten())
            .map(|p| SlicePort {
                name: p.name.clone(),
                port: Some(p.port),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let group = out.entry(ports_key(&ports)).or_insert_with(|| Group { ports, endpoints: Vec::new() });
        let ready = s.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = s.not_ready_addresses.iter().flatten().map(|a| (a, false));
        let addresses = ready.chain(not_ready).take(per_subset.unwrap_or(usize::MAX));
        group.endpoints.extend(addresses.map(|(a, ready)| endpoint(a, ready)));
    }
    out
}

/// Whether a Service is headless (no ClusterIP).
fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// A slice's labels as upstream sets them: the source's (the Service's, or the mirrored
/// Endpoints') without the reserved keys, the Service's name, the manager, and the headless
/// marker for a Service without a ClusterIP.
pub fn slice_labels(svc: &Service, source: &BTreeMap<String, String>, managed_by: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = (source.iter())
        .filter(|(k, _)| ![SERVICE_NAME, MANAGED_BY, HEADLESS].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(SERVICE_NAME.into(), svc.name().into());
    labels.insert(MANAGED_BY.into(), managed_by.into());
    if is_headless(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels
}

/// The writes that bring a Service's slices to the desired endpoints.
#[derive(Debug, Default)]
pub struct Plan {
    /// New slices, named by the API server from `generateName: <service>-`.
    pub create: Vec<EndpointSlice>,
    /// Changed slices, carrying the resourceVersion they were read at.
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// An existing slice during planning: the endpoints it keeps and gets.
struct Slot<'a> {
    slice: &'a EndpointSlice,
    endpoints: Vec<Endpoint>,
    changed: bool,
}

fn with_content(
    old: &EndpointSlice,
    labels: &BTreeMap<String, String>,
    ports: Option<Vec<SlicePort>>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta { labels: Some(labels.clone()), ..old.metadata.clone() },
        address_type: old.address_type.clone(),
        endpoints,
        ports: ports.or_else(|| old.ports.clone()),
    }
}

fn new_slice(
    svc: &Service,
    labels: &BTreeMap<String, String>,
    ports: Vec<SlicePort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.name())),
            namespace: Some(svc.namespace().to_string()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![controller_ref(svc)]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(ports),
    }
}

/// Plans the writes that make `existing` (the Service's slices of one manager, as the informer
/// has them) hold the `desired` groups, in slices of at most `max` endpoints labelled `labels`.
pub fn plan(
    svc: &Service,
    labels: &BTreeMap<String, String>,
    existing: &[Arc<EndpointSlice>],
    desired: BTreeMap<PortsKey, Group>,
    max: usize,
) -> Plan {
    let max = max.max(1);
    let mut plan = Plan::default();
    let mut existing: Vec<&EndpointSlice> = existing.iter().map(|s| &**s).collect();
    existing.sort_by(|a, b| a.name().cmp(b.name()));
    let mut by_ports: BTreeMap<PortsKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        // A slice of an earlier Service of the same name (being collected) or of another address
        // type is not ours to fill.
        if is_controlled_by(s, svc) && s.address_type == "IPv4" {
            by_ports.entry(ports_key(s.ports.as_deref().unwrap_or(&[]))).or_default().push(s);
        } else {
            plan.delete.push(s.name().to_string());
        }
    }
    // Owned slices left with nothing: reused for new content, else deleted.
    let mut emptied: Vec<&EndpointSlice> = Vec::new();
    let mut fresh: Vec<(Vec<SlicePort>, Vec<Endpoint>)> = Vec::new();
    let mut remaining = 0;
    for (key, Group { ports, endpoints }) in desired {
        let mut wanted: BTreeMap<EndpointId, Endpoint> = BTreeMap::new();
        for ep in endpoints {
            wanted.entry(endpoint_id(&ep)).or_insert(ep);
        }
        // Endpoints stay where they are, in their desired state; a duplicate (in two slices)
        // stays in the first only.
        let mut slots: Vec<Slot<'_>> = (by_ports.remove(&key).unwrap_or_default().into_iter())
            .map(|slice| {
                let mut changed = slice.labels() != labels;
                let mut kept = Vec::with_capacity(slice.endpoints.len());
                for ep in &slice.endpoints {
                    match wanted.remove(&endpoint_id(ep)) {
                        Some(want) => {
                            changed |= want != *ep;
                            kept.push(want);
                        }
                        None => changed = true,
                    }
                }
                Slot { slice, endpoints: kept, changed }
            })
            .collect();
        // New endpoints go first to slices written anyway, then to the fullest with room.
        let mut order: Vec<usize> = (0..slots.len()).collect();
        order.sort_by_key(|&i| (!slots[i].changed, Reverse(slots[i].endpoints.len())));
        for i in order {
            let slot = &mut slots[i];
            while slot.endpoints.len() < max {
                let Some((_, ep)) = wanted.pop_first() else { break };
                slot.endpoints.push(ep);
                slot.changed = true;
            }
        }
        while !wanted.is_empty() {
            let chunk: Vec<Endpoint> = (0..max).map_while(|_| wanted.pop_first().map(|(_, ep)| ep)).collect();
            fresh.push((ports.clone(), chunk));
        }
        for slot in slots {
            if slot.endpoints.is_empty() {
                emptied.push(slot.slice);
            } else {
                remaining += 1;
                if slot.changed {
                    plan.update.push(with_content(slot.slice, labels, None, slot.endpoints));
                }
            }
        }
    }
    // Port lists no longer wanted.
    emptied.extend(by_ports.into_values().flatten());
    if remaining == 0 && fresh.is_empty() {
        // No endpoints: one empty slice stays (upstream's placeholder), the one there if it is.
        let placeholder = emptied.iter().position(|s| s.ports.as_deref().unwrap_or(&[]).is_empty());
        match placeholder {
            Some(i) => {
                let s = emptied.remove(i);
                if s.labels() != labels || s.ports.is_none() {
                    plan.update.push(with_content(s, labels, Some(Vec::new()), Vec::new()));
                }
            }
            None => fresh.push((Vec::new(), Vec::new())),
        }
    }
    // New content reuses slices that would be deleted: one write instead of two (upstream's
    // finalize does the same).
    emptied.reverse();
    for (ports, endpoints) in fresh {
        match emptied.pop() {
            Some(old) => plan.update.push(with_content(old, labels, Some(ports), endpoints)),
            None => plan.create.push(new_slice(svc, labels, ports, endpoints)),
        }
    }
    plan.delete.extend(emptied.iter().map(|s| s.name().to_string()));
    plan
}

/// How long a write may stay unseen by the informer before it is no longer waited for (a
/// relist can miss a slice someone else deleted meanwhile; upstream forgets on the delete event).
const EXPECTATION_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The object was written at this revision.
    Revision(u64),
    Deleted,
}

/// This controller's writes not yet seen by its informer, by owning Service and object name
/// (upstream's EndpointSliceTracker, with resourceVersions: they are global store sequence
/// numbers here, so a later state has a higher one). A sync whose informer lags its own writes
/// waits, or it would make again a slice whose creation it does not see yet.
#[derive(Default)]
pub struct WriteTracker {
    writes: Mutex<HashMap<ObjectKey, Pending>>,
}

/// An owner's writes not yet seen, by object name, with when they were made.
type Pending = HashMap<String, (Expect, Instant)>;

/// An object's resourceVersion as the store sequence it is.
pub fn revision(rv: Option<&str>) -> Option<u64> {
    rv.and_then(|v| v.parse().ok())
}

impl WriteTracker {
    fn expect(&self, owner: &ObjectKey, name: &str, expect: Expect) {
        let mut writes = self.writes.lock().expect("tracker lock");
        writes.entry(owner.clone()).or_default().insert(name.to_string(), (expect, Instant::now()));
    }

    /// Records a create or update answered with this resourceVersion.
    pub fn wrote(&self, owner: &ObjectKey, name: &str, resource_version: Option<&str>) {
        if let Some(rv) = revision(resource_version) {
            self.expect(owner, name, Expect::Revision(rv));
        }
    }

    pub fn deleted(&self, owner: &ObjectKey, name: &str) {
        self.expect(owner, name, Expect::Deleted);
    }

    /// Whether the informer misses one of the owner's writes; `cached` gives the revision the
    /// informer has of a name (None: it has no such object). Writes it has seen are forgotten.
    pub fn is_stale(&self, owner: &ObjectKey, cached: impl Fn(&str) -> Option<u64>) -> bool {
        let mut writes = self.writes.lock().expect("tracker lock");
        let Some(names) = writes.get_mut(owner) else { return false };
        names.retain(|name, (expect, at)| {
            let seen = match (*expect, cached(name)) {
                (Expect::Revision(rv), Some(have)) => have >= rv,
                (Expect::Revision(_), None) => false,
                (Expect::Deleted, present) => present.is_none(),
            };
            !seen && at.elapsed() < EXPECTATION_TTL
        });
        let stale = !names.is_empty();
        if !stale {
            writes.remove(owner);
        }
        stale
    }

    /// An informer change of `name` (`resource_version` None: deleted). True when it is the
    /// echo of this controller's own write, which needs no sync.
    pub fn observed(&self, owner: &ObjectKey, name: &str, resource_version: Option<&str>) -> bool {
        let mut writes = self.writes.lock().expect("tracker lock");
        let Some(names) = writes.get_mut(owner) else { return false };
        let Some((expect, _)) = names.get(name).copied() else { return false };
        let (done, echo) = match (expect, resource_version) {
            (Expect::Revision(rv), Some(v)) => match revision(Some(v)) {
                Some(have) => (have >= rv, have == rv),
                None => (false, false),
            },
            // Deleted by someone else: nothing more will come.
            (Expect::Revision(_), None) => (true, false),
            (Expect::Deleted, None) => (true, true),
            (Expect::Deleted, Some(_)) => (false, false),
        };
        if done {
            names.remove(name);
            if names.is_empty() {
                writes.remove(owner);
            }
        }
        echo
    }

    /// Drops what is known of an owner (the Service is gone).
    pub fn forget(&self, owner: &ObjectKey) {
        self.writes.lock().expect("tracker lock").remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointPort, ObjectReference, ServiceSpec};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn service() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u-svc".into()),
                labels: Some([("team".to_string(), "a".to_string())].into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec { cluster_ip: Some("10.96.0.9".into()), ..Default::default() }),
            status: None,
        }
    }

    fn address(i: usize, node: &str) -> EndpointAddress {
        EndpointAddress {
            ip: format!("10.244.{}.{}", i / 250, i % 250 + 1),
            node_name: Some(node.into()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some("prod".into()),
                name: Some(format!("web-{i}")),
                uid: Some(format!("u-{i}")),
                ..Default::default()
            }),
            hostname: None,
        }
    }

    fn port(n: i32) -> Vec<EndpointPort> {
        vec![EndpointPort { name: Some("http".into()), port: n, protocol: Some("TCP".into()), app_protocol: None }]
    }

    /// One subset of pods `range` on port 8080, all ready.
    fn subsets(range: std::ops::Range<usize>) -> Vec<EndpointSubset> {
        vec![EndpointSubset {
            addresses: Some(range.map(|i| address(i, "n1")).collect()),
            not_ready_addresses: None,
            ports: Some(port(8080)),
        }]
    }

    fn labels() -> BTreeMap<String, String> {
        slice_labels(&service(), service().labels(), CONTROLLER)
    }

    fn plan_for(existing: &[Arc<EndpointSlice>], subsets: &[EndpointSubset]) -> Plan {
        plan(&service(), &labels(), existing, groups(subsets, None), MAX_ENDPOINTS_PER_SLICE)
    }

    /// What the API server would hold after the plan: created slices get names and revisions.
    fn apply(existing: &[Arc<EndpointSlice>], plan: Plan) -> Vec<Arc<EndpointSlice>> {
        let mut by_name: BTreeMap<String, EndpointSlice> =
            existing.iter().map(|s| (s.name().to_string(), (**s).clone())).collect();
        for s in plan.update {
            by_name.insert(s.name().to_string(), s);
        }
        for name in plan.delete {
            by_name.remove(&name);
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        for mut s in plan.create {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("{}{n:05}", s.metadata.generate_name.take().unwrap());
            s.metadata.name = Some(name.clone());
            s.metadata.uid = Some(format!("uid-{name}"));
            s.metadata.resource_version = Some(n.to_string());
            by_name.insert(name, s);
        }
        by_name.into_values().map(Arc::new).collect()
    }

    fn sizes(slices: &[Arc<EndpointSlice>]) -> Vec<usize> {
        let mut v: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }

    fn names(slices: &[EndpointSlice]) -> Vec<String> {
        slices.iter().map(|s| s.name().to_string()).collect()
    }

    #[test]
    fn endpoints_are_split_into_slices_of_at_most_100() {
        let p = plan_for(&[], &subsets(0..250));
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (3, 0, 0));
        let slices = apply(&[], p);
        assert_eq!(sizes(&slices), [100, 100, 50]);
        let s = &slices[0];
        assert_eq!(s.metadata.generate_name, None, "the API server names them");
        assert_eq!(s.label(SERVICE_NAME), Some("web"));
        assert_eq!(s.label(MANAGED_BY), Some(CONTROLLER));
        assert_eq!(s.label("team"), Some("a"), "the Service's labels are copied");
        assert!(is_controlled_by(&**s, &service()), "owned by the Service (garbage collection)");
        assert_eq!(s.address_type, "IPv4");
        // Nothing changed: nothing to write.
        assert!(plan_for(&slices, &subsets(0..250)).is_empty());
    }

    #[test]
    fn a_changed_endpoint_is_updated_in_its_slice_only() {
        let slices = apply(&[], plan_for(&[], &subsets(0..300)));
        let mut changed = subsets(0..300);
        let addresses = changed[0].addresses.as_mut().unwrap();
        let moved = addresses.remove(123);
        changed[0].not_ready_addresses = Some(vec![moved]);
        let p = plan_for(&slices, &changed);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        let holder = slices.iter().find(|s| s.endpoints.iter().any(|e| e.addresses == ["10.244.0.124"])).unwrap();
        let updated = &p.update[0];
        assert_eq!(updated.name(), holder.name());
        assert_eq!(updated.metadata.resource_version, holder.metadata.resource_version);
        assert_eq!(updated.endpoints.len(), 100);
        // In place: same position, now not ready.
        let i = holder.endpoints.iter().position(|e| e.addresses == ["10.244.0.124"]).unwrap();
        assert_eq!(updated.endpoints[i].conditions.as_ref().unwrap().ready, Some(false));
    }

    #[test]
    fn removed_endpoints_empty_and_delete_slices_and_a_placeholder_stays() {
        let slices = apply(&[], plan_for(&[], &subsets(0..300)));
        // The endpoints of one whole slice go: that slice is deleted, the others are untouched.
        let first = &slices[0];
        let gone: Vec<String> = first.endpoints.iter().map(|e| e.addresses[0].clone()).collect();
        let mut fewer = subsets(0..300);
        fewer[0].addresses.as_mut().unwrap().retain(|a| !gone.contains(&a.ip));
        let p = plan_for(&slices, &fewer);
        assert_eq!((p.create.len(), p.update.len(), p.delete.clone()), (0, 0, vec![first.name().to_string()]));
        // A few leave another slice: it shrinks.
        let slices = apply(&slices, p);
        fewer[0].addresses.as_mut().unwrap().truncate(150);
        let slices = apply(&slices, plan_for(&slices, &fewer));
        assert_eq!(sizes(&slices).iter().sum::<usize>(), 150);
        assert!(sizes(&slices).iter().all(|n| (1..=100).contains(n)), "{:?}", sizes(&slices));
        // No endpoints at all: one empty slice stays, without ports, and stays as it is.
        let p = plan_for(&slices, &[]);
        assert!(p.create.is_empty(), "an emptied slice becomes the placeholder");
        let slices = apply(&slices, p);
        assert_eq!(sizes(&slices), [0]);
        assert_eq!(slices[0].ports, Some(vec![]));
        assert!(plan_for(&slices, &[]).is_empty());
        // A new Service without endpoints gets one.
        let p = plan_for(&[], &[]);
        assert_eq!((p.create.len(), p.create[0].endpoints.len(), p.create[0].ports.clone()), (1, 0, Some(vec![])));
        // Endpoints again: the placeholder takes them, nothing is deleted.
        let p = plan_for(&slices, &subsets(0..10));
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        assert_eq!(p.update[0].ports.as_deref().map(<[_]>::len), Some(1));
    }

    #[test]
    fn new_endpoints_fill_slices_with_room_before_new_slices() {
        let slices = apply(&[], plan_for(&[], &subsets(0..150)));
        assert_eq!(sizes(&slices), [100, 50]);
        let half = slices.iter().find(|s| s.endpoints.len() == 50).unwrap().name().to_string();
        // 30 more fit in the half-full slice.
        let p = plan_for(&slices, &subsets(0..180));
        assert_eq!((p.create.len(), names(&p.update), p.delete.len()), (0, vec![half.clone()], 0));
        let slices = apply(&slices, p);
        assert_eq!(sizes(&slices), [100, 80]);
        // 80 more: 20 fill it, 60 make a new slice.
        let p = plan_for(&slices, &subsets(0..260));
        assert_eq!((p.create.len(), names(&p.update)), (1, vec![half]));
        assert_eq!(p.create[0].endpoints.len(), 60);
        let slices = apply(&slices, p);
        assert_eq!(sizes(&slices), [100, 100, 60]);
        // A slice written anyway (one of its endpoints left) takes the new one first.
        let mut changed = subsets(0..261);
        changed[0].addresses.as_mut().unwrap().remove(0);
        let p = plan_for(&slices, &changed);
        assert_eq!((p.create.len(), p.update.len()), (0, 1));
        assert_eq!(p.update[0].endpoints.len(), 100);
    }

    #[test]
    fn distinct_port_lists_make_distinct_slices() {
        let mut two = subsets(0..120);
        two.push(EndpointSubset { ports: Some(port(9090)), ..subsets(200..230).remove(0) });
        let slices = apply(&[], plan_for(&[], &two));
        let mut by_port: Vec<(i32, usize)> =
            slices.iter().map(|s| (s.ports.as_ref().unwrap()[0].port.unwrap(), s.endpoints.len())).collect();
        by_port.sort();
        assert_eq!(by_port, [(8080, 20), (8080, 100), (9090, 30)]);
        // The 9090 pods go away: their slice is deleted, the 8080 ones stay as they are.
        let p = plan_for(&slices, &subsets(0..120));
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 0, 1));
        // Port lists compare as sets.
        let a =
            vec![SlicePort { port: Some(1), ..Default::default() }, SlicePort { port: Some(2), ..Default::default() }];
        let b: Vec<SlicePort> = a.iter().rev().cloned().collect();
        assert_eq!(ports_key(&a), ports_key(&b));
    }

    #[test]
    fn foreign_and_old_slices_are_replaced_and_labels_follow_the_service() {
        let slices = apply(&[], plan_for(&[], &subsets(0..50)));
        // A slice of an earlier Service of the same name is deleted, not filled.
        let mut old = (*slices[0]).clone();
        old.metadata.name = Some("web-old".into());
        old.metadata.owner_references.as_mut().unwrap()[0].uid = "u-gone".into();
        let mut with_old = slices.clone();
        with_old.push(Arc::new(old));
        let p = plan_for(&with_old, &subsets(0..50));
        assert_eq!((p.create.len(), p.update.len(), p.delete.clone()), (0, 0, vec!["web-old".to_string()]));
        // The Service's labels change: every slice is relabelled.
        let mut svc = service();
        svc.metadata.labels = Some([("team".to_string(), "b".to_string())].into());
        let relabelled = slice_labels(&svc, svc.labels(), CONTROLLER);
        let p = plan(&svc, &relabelled, &slices, groups(&subsets(0..50), None), MAX_ENDPOINTS_PER_SLICE);
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].label("team"), Some("b"));
        // Headless Services' slices carry upstream's marker; reserved keys are not copied.
        svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let source = [(MANAGED_BY.to_string(), "me".to_string())].into();
        let l = slice_labels(&svc, &source, MIRRORING);
        assert_eq!(
            (l.get(HEADLESS).map(String::as_str), l.get(MANAGED_BY).map(String::as_str)),
            (Some(""), Some(MIRRORING))
        );
    }

    #[test]
    fn mirrored_endpoints_are_capped_per_subset_and_split() {
        let mut user = subsets(0..1200);
        user[0].not_ready_addresses = Some((1200..1300).map(|i| address(i, "n2")).collect());
        user.push(EndpointSubset { ports: Some(port(9090)), ..subsets(1300..1350).remove(0) });
        let g = groups(&user, Some(MAX_MIRRORED_PER_SUBSET));
        let counts: Vec<usize> = g.values().map(|g| g.endpoints.len()).collect();
        assert_eq!(counts, [1000, 50], "at most 1,000 addresses of a subset, ready first");
        assert!(g
            .values()
            .next()
            .unwrap()
            .endpoints
            .iter()
            .all(|e| e.conditions.as_ref().unwrap().ready == Some(true)));
        let labels = slice_labels(&service(), &BTreeMap::new(), MIRRORING);
        let slices = apply(&[], plan(&service(), &labels, &[], g, MAX_ENDPOINTS_PER_SLICE));
        assert_eq!(slices.len(), 11);
        assert!(slices.iter().all(|s| s.endpoints.len() <= 100 && s.label(MANAGED_BY) == Some(MIRRORING)));
    }

    #[test]
    fn a_slice_of_100_endpoints_is_far_under_the_nats_payload_limit() {
        let mut many = subsets(0..100);
        for a in many[0].addresses.as_mut().unwrap() {
            a.node_name = Some("a-node-name-as-long-as-they-get-in-a-large-cluster-0123456789".into());
            a.hostname = Some("a-hostname-of-a-statefulset-pod-0123456789".into());
        }
        let p = plan_for(&[], &many);
        let bytes = serde_json::to_vec(&p.create[0]).unwrap().len();
        // NATS's default max_payload is 1 MiB; the whole slice is a small fraction of it.
        assert!(bytes < 64 * 1024, "{bytes} bytes");
        assert!(bytes > 10 * 1024, "{bytes} bytes: the slice holds its 100 endpoints");
    }

    #[test]
    fn the_tracker_waits_for_the_informer_to_see_its_writes() {
        let t = WriteTracker::default();
        let svc: ObjectKey = ("prod".into(), "web".into());
        assert!(!t.is_stale(&svc, |_| None));
        t.wrote(&svc, "web-abc", Some("10"));
        t.deleted(&svc, "web-old");
        // The informer has neither the new slice nor the deletion.
        let cache = |abc: Option<u64>, old: bool| {
            move |name: &str| match name {
                "web-abc" => abc,
                "web-old" => old.then_some(3),
                _ => None,
            }
        };
        assert!(t.is_stale(&svc, cache(None, true)));
        assert!(t.is_stale(&svc, cache(Some(9), false)));
        assert!(!t.is_stale(&svc, cache(Some(12), false)));
        // Forgotten once seen.
        assert!(!t.is_stale(&svc, |_| None));
        // Echoes of its own writes need no sync; someone else's change does.
        t.wrote(&svc, "web-abc", Some("20"));
        assert!(t.observed(&svc, "web-abc", Some("20")));
        assert!(!t.observed(&svc, "web-abc", Some("21")));
        t.deleted(&svc, "web-abc");
        assert!(t.observed(&svc, "web-abc", None));
        t.wrote(&svc, "web-def", Some("30"));
        assert!(!t.observed(&svc, "web-def", None), "deleted by someone else");
        assert!(!t.is_stale(&svc, |_| None), "and no longer waited for");
        t.wrote(&svc, "web-ghi", Some("40"));
        t.forget(&svc);
        assert!(!t.is_stale(&svc, |_| None));
    }
}
