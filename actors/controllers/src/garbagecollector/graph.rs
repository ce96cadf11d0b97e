//! The garbage collector's owner/dependent graph (upstream's `uidToNode`), kept incrementally
//! from every informer's changes. Only objects that take part in ownership are nodes: those
//! with owner references or with the `orphan`/`foregroundDeletion` finalizers; edges go from an
//! owner's uid to its dependents. Whether an owner exists is read from its own informer, so an
//! object with no owner references and no such finalizer (a Lease, a Node, a ReplicaSet with
//! no pods yet) costs one lookup per change and is never stored or queued.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubus_apimachinery::meta::group_of;
use kubus_apimachinery::{resource, ResourceInfo};
use kubus_controller_runtime::client::Propagation;
use std::collections::{HashMap, HashSet, VecDeque};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// How many deleted or verified-absent objects are remembered, so that the dependents of a
/// deleted owner are collected without asking the API server whether it is gone.
const ABSENT_CACHE: usize = 100_000;

/// An object as an owner reference names it: group, kind, namespace ("" when cluster-scoped),
/// name and uid. Absence is recorded by all of them, not by uid alone, so one dependent's
/// wrong reference (a wrong kind or name) never makes a live owner look gone to the others
/// (upstream's absentOwnerCache, after kubernetes#65200).
pub fn coordinates(info: &ResourceInfo, namespace: &str, name: &str, uid: &str) -> String {
    let ns = if info.namespaced { namespace } else { "" };
    format!("{}/{}/{ns}/{name}/{uid}", info.group, info.kind)
}

/// The coordinates an owner reference of a dependent in `namespace` names (None: a kind this
/// server does not serve).
pub fn owner_coordinates(r: &OwnerReference, namespace: &str) -> Option<String> {
    let info = resource::by_kind(group_of(&r.api_version), &r.kind)?;
    Some(coordinates(info, namespace, &r.name, &r.uid))
}

/// Whether an owner reference names an object of this resource.
fn names(r: &OwnerReference, info: &ResourceInfo) -> bool {
    r.kind == info.kind && group_of(&r.api_version) == info.group
}

pub type Uid = String;

/// An object taking part in ownership.
#[derive(Debug, Clone)]
pub struct Node {
    pub info: &'static ResourceInfo,
    pub namespace: String,
    pub name: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
    pub resource_version: String,
}

impl Node {
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: waits for its blocking dependents.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// Being deleted with a policy the collector carries out (orphan or foreground).
    fn deleting_with_policy(&self) -> bool {
        self.deleting && (self.has_finalizer(ORPHAN) || self.has_finalizer(FOREGROUND))
    }
}

fn takes_part(meta: &ObjectMeta) -> bool {
    meta.owner_references.as_ref().is_some_and(|r| !r.is_empty())
        || meta.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == FOREGROUND || f == ORPHAN))
}

fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or("")
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
    /// Owner uid -> its dependents' uids (the owner need not be a node).
    dependents: HashMap<Uid, HashSet<Uid>>,
    absent: HashSet<Uid>,
    absent_order: VecDeque<Uid>,
}

impl Graph {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.dependents.is_empty()
    }

    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Known to be gone (deleted, or verified absent), by [`coordinates`].
    pub fn is_absent(&self, coordinates: &str) -> bool {
        self.absent.contains(coordinates)
    }

    pub fn mark_absent(&mut self, coordinates: &str) {
        if self.absent.insert(coordinates.to_string()) {
            self.absent_order.push_back(coordinates.to_string());
            if self.absent_order.len() > ABSENT_CACHE {
                if let Some(old) = self.absent_order.pop_front() {
                    self.absent.remove(&old);
                }
            }
        }
    }

    /// Records an object as it is now; returns the uids to look at.
    pub fn observe(&mut self, info: &'static ResourceInfo, meta: &ObjectMeta) -> Vec<Uid> {
        let id = uid(meta);
        if id.is_empty() || (!self.nodes.contains_key(id) && !takes_part(meta)) {
            return Vec::new();
        }
        let mut queue = Vec::new();
        let node = Node {
            info,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
        };
        let old = self.nodes.remove(id);
        let old_owners: HashSet<&str> = old.iter().flat_map(|o| o.owners.iter().map(|r| r.uid.as_str())).collect();
        let new_owners: HashSet<&str> = node.owners.iter().map(|r| r.uid.as_str()).collect();
        for gone in old_owners.difference(&new_owners) {
            self.unlink(gone, id, &mut queue);
        }
        for added in new_owners.difference(&old_owners) {
            self.dependents.entry(added.to_string()).or_default().insert(id.to_string());
        }
        // An owner deleting in the foreground waits only for blocking references: one that
        // stops blocking may be all it waited for.
        for r in &node.owners {
            let was = old.iter().flat_map(|o| o.owners.iter()).find(|o| o.uid == r.uid);
            if was.is_some_and(|w| w.block_owner_deletion != r.block_owner_deletion)
                && self.nodes.get(&r.uid).is_some_and(Node::deleting_dependents)
            {
                queue.push(r.uid.clone());
            }
        }
        let owners_changed = old.is_none() || old_owners != new_owners;
        let newly_deleting = node.deleting && old.as_ref().is_none_or(|o| !o.deleting);
        let policy_changed =
            old.as_ref().is_none_or(|o| o.finalizers != node.finalizers || o.deleting != node.deleting);
        if (!node.owners.is_empty() && owners_changed) || (node.deleting_with_policy() && policy_changed) {
            queue.push(id.to_string());
        }
        // A dependent that starts going away may be all a foreground-deleting owner waits for.
        if newly_deleting {
            for o in &node.owners {
                if self.nodes.get(&o.uid).is_some_and(Node::deleting_dependents) {
                    queue.push(o.uid.clone());
                }
            }
        }
        if takes_part(meta) {
            self.nodes.insert(id.to_string(), node);
        }
        queue
    }

    /// An object was deleted: its owners may be done waiting, its dependents are orphans.
    pub fn remove(&mut self, info: &'static ResourceInfo, meta: &ObjectMeta) -> Vec<Uid> {
        let (ns, name) = (meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""));
        self.remove_object(info, ns, name, uid(meta))
    }

    fn remove_object(&mut self, info: &'static ResourceInfo, namespace: &str, name: &str, id: &str) -> Vec<Uid> {
        if id.is_empty() {
            return Vec::new();
        }
        self.mark_absent(&coordinates(info, namespace, name, id));
        let mut queue: Vec<Uid> = self.dependents.get(id).into_iter().flatten().cloned().collect();
        if let Some(node) = self.nodes.remove(id) {
            for r in &node.owners {
                self.unlink(&r.uid, id, &mut queue);
            }
        }
        queue
    }

    /// Drops the edge owner -> dependent; an owner deleting in the foreground is queued, as it
    /// may have nothing left to wait for.
    fn unlink(&mut self, owner: &str, dependent: &str, queue: &mut Vec<Uid>) {
        if let Some(deps) = self.dependents.get_mut(owner) {
            deps.remove(dependent);
            if deps.is_empty() {
                self.dependents.remove(owner);
            }
        }
        if self.nodes.get(owner).is_some_and(Node::deleting_dependents) {
            queue.push(owner.to_string());
        }
    }

    /// Reconciles the graph with one resource's informer contents (after a relist, a lag or
    /// a periodic resync): its objects missing from them were deleted meanwhile, as nodes or
    /// as owners of dependents. `visit` calls its argument with every object's metadata (the
    /// informer's `for_each_meta`). Returns what of the resource still waits for the
    /// collector: deletions with a policy, dependents whose owners are gone, and the
    /// dependents of owners found gone.
    pub fn resync(&mut self, info: &'static ResourceInfo, visit: impl FnOnce(&mut dyn FnMut(&ObjectMeta))) -> Vec<Uid> {
        let mut queue = Vec::new();
        let mut seen = HashSet::new();
        visit(&mut |meta: &ObjectMeta| {
            queue.extend(self.observe(info, meta));
            seen.insert(uid(meta).to_string());
        });
        let gone: Vec<(String, String, Uid)> = self
            .nodes
            .iter()
            .filter(|(u, n)| std::ptr::eq(n.info, info) && !seen.contains(*u))
            .map(|(u, n)| (n.namespace.clone(), n.name.clone(), u.clone()))
            .collect();
        for (ns, name, u) in gone {
            queue.extend(self.remove_object(info, &ns, &name, &u));
        }
        // Owners of this resource that are not nodes themselves (a Deployment, a ReplicaSet
        // without owners) are only edges: find the ones that went.
        let gone_owners: Vec<(String, String, Uid)> = self
            .dependents
            .iter()
            .filter(|(owner, _)| !seen.contains(*owner))
            .filter_map(|(owner, deps)| {
                let dep = deps.iter().find_map(|d| self.nodes.get(d))?;
                let r = dep.owners.iter().find(|r| &r.uid == owner && names(r, info))?;
                Some((dep.namespace.clone(), r.name.clone(), owner.clone()))
            })
            .collect();
        for (ns, name, u) in gone_owners {
            queue.extend(self.remove_object(info, &ns, &name, &u));
        }
        for (u, n) in &self.nodes {
            let dangling = || {
                n.owners.iter().any(|r| owner_coordinates(r, &n.namespace).is_some_and(|c| self.absent.contains(&c)))
            };
            if std::ptr::eq(n.info, info) && (n.deleting_with_policy() || dangling()) {
                queue.push(u.clone());
            }
        }
        queue
    }

    /// The dependents of an owner that are nodes.
    pub fn dependents(&self, owner: &str) -> Vec<(Uid, &Node)> {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.clone(), n)))
            .collect()
    }

    /// Dependents whose reference to `owner` blocks its foreground deletion.
    pub fn blocking_dependents(&self, owner: &str) -> Vec<(Uid, &Node)> {
        self.dependents(owner)
            .into_iter()
            .filter(|(_, n)| n.owners.iter().any(|r| r.uid == owner && r.block_owner_deletion == Some(true)))
            .collect()
    }
}

/// What an owner reference points at, as far as the collector knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not deleting its dependents first.
    Solid,
    /// Exists and is being deleted in the foreground: its dependents go first.
    WaitingForDependents,
    /// Gone.
    Dangling,
}

/// What the collector does about one object as a dependent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Delete it with this propagation policy.
    Delete(Propagation),
    /// Remove these owner references (other owners remain).
    RemoveOwners(Vec<Uid>),
    /// Its owners wait for it in the foreground while one of its own dependents waits in the
    /// foreground too (a possible cycle): make its references non-blocking, then delete it in
    /// the foreground.
    UnblockThenDelete,
}

/// The dependent side of upstream's `attemptToDeleteItem`, given what each owner reference
/// points at; `has_deleting_dependents`: one of its own dependents is deleting in the
/// foreground.
pub fn decide(node: &Node, owners: &[(Uid, OwnerState)], has_deleting_dependents: bool) -> Decision {
    if node.deleting || owners.is_empty() {
        return Decision::Nothing;
    }
    let count = |s: OwnerState| owners.iter().filter(|(_, o)| *o == s).count();
    let (solid, waiting) = (count(OwnerState::Solid), count(OwnerState::WaitingForDependents));
    if solid > 0 {
        if solid == owners.len() {
            return Decision::Nothing;
        }
        let remove = owners.iter().filter(|(_, o)| *o != OwnerState::Solid).map(|(u, _)| u.clone()).collect();
        return Decision::RemoveOwners(remove);
    }
    if waiting > 0 {
        if has_deleting_dependents {
            return Decision::UnblockThenDelete;
        }
        return Decision::Delete(Propagation::Foreground);
    }
    // Every owner is gone: the object's own finalizers choose the policy, else Background.
    let policy = if node.has_finalizer(ORPHAN) {
        Propagation::Orphan
    } else if node.has_finalizer(FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Decision::Delete(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kubus_apimachinery::resource;

    fn pods() -> &'static ResourceInfo {
        resource::of::<k8s_openapi::api::core::v1::Pod>()
    }
    fn replicasets() -> &'static ResourceInfo {
        resource::of::<k8s_openapi::api::apps::v1::ReplicaSet>()
    }
    fn leases() -> &'static ResourceInfo {
        resource::of::<k8s_openapi::api::coordination::v1::Lease>()
    }

    fn meta(uid: &str, owners: &[&str], finalizers: &[&str], deleting: bool) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            name: Some(format!("n-{uid}")),
            namespace: Some("default".into()),
            owner_references: (!owners.is_empty()).then(|| {
                owners
                    .iter()
                    .map(|o| OwnerReference {
                        uid: o.to_string(),
                        kind: "ReplicaSet".into(),
                        api_version: "apps/v1".into(),
                        name: format!("n-{o}"),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    })
                    .collect()
            }),
            finalizers: (!finalizers.is_empty()).then(|| finalizers.iter().map(|f| f.to_string()).collect()),
            deletion_timestamp: deleting.then(|| Time(Default::default())),
            ..Default::default()
        }
    }

    fn sorted(mut v: Vec<Uid>) -> Vec<Uid> {
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn objects_outside_ownership_cost_nothing() {
        let mut g = Graph::default();
        for i in 0..1000 {
            assert!(g.observe(leases(), &meta(&format!("lease-{i}"), &[], &[], false)).is_empty());
            assert!(g.observe(replicasets(), &meta(&format!("rs-{i}"), &[], &[], false)).is_empty());
        }
        assert!(g.is_empty());
        assert!(g.remove(leases(), &meta("lease-1", &[], &[], false)).is_empty());
    }

    #[test]
    fn a_new_dependent_is_looked_at_once() {
        let mut g = Graph::default();
        assert_eq!(g.observe(pods(), &meta("p1", &["rs1"], &[], false)), vec!["p1".to_string()]);
        assert_eq!(g.dependents("rs1").len(), 1);
        // Status updates that leave ownership alone queue nothing.
        assert!(g.observe(pods(), &meta("p1", &["rs1"], &[], false)).is_empty());
    }

    #[test]
    fn adoption_and_release_move_the_edge() {
        let mut g = Graph::default();
        // An orphan pod is not in the graph; adoption adds it.
        assert!(g.observe(pods(), &meta("p1", &[], &[], false)).is_empty());
        assert_eq!(g.observe(pods(), &meta("p1", &["rs1"], &[], false)), vec!["p1".to_string()]);
        assert_eq!(g.dependents("rs1").len(), 1);
        // Released and adopted by another owner.
        g.observe(pods(), &meta("p1", &["rs2"], &[], false));
        assert!(g.dependents("rs1").is_empty());
        assert_eq!(g.dependents("rs2").len(), 1);
        // Released for good: the pod leaves the graph.
        g.observe(pods(), &meta("p1", &[], &[], false));
        assert!(g.get("p1").is_none());
        assert!(g.is_empty());
    }

    #[test]
    fn deleting_an_owner_queues_its_dependents_as_orphans() {
        let mut g = Graph::default();
        g.observe(pods(), &meta("p1", &["rs1"], &[], false));
        g.observe(pods(), &meta("p2", &["rs1"], &[], false));
        assert_eq!(
            sorted(g.remove(replicasets(), &meta("rs1", &[], &[], false))),
            vec!["p1".to_string(), "p2".to_string()]
        );
        assert!(g.is_absent(&coordinates(replicasets(), "default", "n-rs1", "rs1")));
        let p1 = g.get("p1").unwrap().clone();
        assert_eq!(
            decide(&p1, &[("rs1".to_string(), OwnerState::Dangling)], false),
            Decision::Delete(Propagation::Background)
        );
        g.remove(pods(), &meta("p1", &["rs1"], &[], false));
        g.remove(pods(), &meta("p2", &["rs1"], &[], false));
        assert!(g.is_empty());
    }

    #[test]
    fn owner_missing_with_other_owners_left_only_drops_the_reference() {
        let mut g = Graph::default();
        g.observe(pods(), &meta("p1", &["a", "b"], &[], false));
        let p1 = g.get("p1").unwrap().clone();
        let owners = vec![("a".to_string(), OwnerState::Dangling), ("b".to_string(), OwnerState::Solid)];
        assert_eq!(decide(&p1, &owners, false), Decision::RemoveOwners(vec!["a".to_string()]));
        let all_solid = vec![("a".to_string(), OwnerState::Solid), ("b".to_string(), OwnerState::Solid)];
        assert_eq!(decide(&p1, &all_solid, false), Decision::Nothing);
        // The dependent's own finalizer chooses the policy once every owner is gone.
        g.observe(pods(), &meta("p2", &["a"], &[ORPHAN], false));
        let p2 = g.get("p2").unwrap().clone();
        assert_eq!(
            decide(&p2, &[("a".to_string(), OwnerState::Dangling)], false),
            Decision::Delete(Propagation::Orphan)
        );
    }

    #[test]
    fn foreground_deletion_waits_for_blocking_dependents() {
        let mut g = Graph::default();
        g.observe(pods(), &meta("p1", &["rs1"], &[], false));
        // The owner starts deleting in the foreground: it becomes a node and is queued.
        assert_eq!(g.observe(replicasets(), &meta("rs1", &[], &[FOREGROUND], true)), vec!["rs1".to_string()]);
        assert_eq!(g.blocking_dependents("rs1").len(), 1);
        let p1 = g.get("p1").unwrap().clone();
        let waiting = vec![("rs1".to_string(), OwnerState::WaitingForDependents)];
        assert_eq!(decide(&p1, &waiting, false), Decision::Delete(Propagation::Foreground));
        // The dependent starts deleting, then goes: each time the owner is queued again.
        assert_eq!(g.observe(pods(), &meta("p1", &["rs1"], &[], true)), vec!["rs1".to_string()]);
        assert_eq!(g.remove(pods(), &meta("p1", &["rs1"], &[], false)), vec!["rs1".to_string()]);
        assert!(g.blocking_dependents("rs1").is_empty());
        // The owner drops its finalizer and is deleted: nothing is left.
        g.observe(replicasets(), &meta("rs1", &[], &[], true));
        g.remove(replicasets(), &meta("rs1", &[], &[], false));
        assert!(g.is_empty());
    }

    #[test]
    fn orphaning_owner_is_queued_and_lists_its_dependents() {
        let mut g = Graph::default();
        g.observe(pods(), &meta("p1", &["rs1"], &[], false));
        assert_eq!(g.observe(replicasets(), &meta("rs1", &[], &[ORPHAN], true)), vec!["rs1".to_string()]);
        assert_eq!(g.dependents("rs1").len(), 1);
        // The dependent is released: the edge goes, the pod leaves the graph.
        g.observe(pods(), &meta("p1", &[], &[], false));
        assert!(g.dependents("rs1").is_empty());
        g.observe(replicasets(), &meta("rs1", &[], &[], true));
        assert!(g.remove(replicasets(), &meta("rs1", &[], &[], false)).is_empty());
        assert!(g.is_empty());
    }

    #[test]
    fn cycles_are_unblocked() {
        let mut g = Graph::default();
        // a owns b, b owns a, both deleting in the foreground: neither is a dependent to delete.
        g.observe(replicasets(), &meta("a", &["b"], &[FOREGROUND], true));
        g.observe(replicasets(), &meta("b", &["a"], &[FOREGROUND], true));
        let b = g.get("b").unwrap().clone();
        assert_eq!(decide(&b, &[("a".to_string(), OwnerState::WaitingForDependents)], true), Decision::Nothing);
        // c (owned by a, owning b) is not deleting yet and its own dependent waits in the
        // foreground: it is unblocked before it is deleted.
        g.observe(replicasets(), &meta("c", &["a"], &[], false));
        let c = g.get("c").unwrap().clone();
        let waiting = vec![("a".to_string(), OwnerState::WaitingForDependents)];
        assert_eq!(decide(&c, &waiting, true), Decision::UnblockThenDelete);
        assert_eq!(decide(&c, &waiting, false), Decision::Delete(Propagation::Foreground));
    }

    #[test]
    fn a_wrong_reference_never_makes_a_live_owner_absent() {
        let mut g = Graph::default();
        g.observe(pods(), &meta("p1", &["rs1"], &[], false));
        // Some object named with the owner's uid under other coordinates is gone...
        g.mark_absent(&coordinates(replicasets(), "default", "wrong-name", "rs1"));
        // ...which says nothing about the owner as the pod names it.
        let r = &g.get("p1").unwrap().owners[0];
        assert!(!g.is_absent(&owner_coordinates(r, "default").unwrap()));
        // Cluster-scoped kinds ignore the dependent's namespace.
        let nodes = resource::of::<k8s_openapi::api::core::v1::Node>();
        assert_eq!(coordinates(nodes, "default", "n1", "u"), coordinates(nodes, "", "n1", "u"));
    }

    #[test]
    fn resync_finds_owners_deleted_in_a_gap() {
        let mut g = Graph::default();
        // The ReplicaSet is no node (no owners, no finalizers): only an edge to its pods.
        g.observe(pods(), &meta("p1", &["rs1"], &[], false));
        assert!(g.resync(replicasets(), |f| f(&meta("rs1", &[], &[], false))).is_empty());
        // Deleted while the informer relisted: the next resync does not see it.
        assert_eq!(g.resync(replicasets(), |_| {}), vec!["p1".to_string()]);
        assert!(g.is_absent(&coordinates(replicasets(), "default", "n-rs1", "rs1")));
        // A resync of another resource does not take it for one of its own.
        let mut h = Graph::default();
        h.observe(pods(), &meta("p1", &["rs1"], &[], false));
        assert!(h.resync(leases(), |_| {}).is_empty());
    }

    #[test]
    fn a_reference_that_stops_blocking_requeues_the_waiting_owner() {
        let mut g = Graph::default();
        g.observe(pods(), &meta("p1", &["rs1"], &[], false));
        g.observe(replicasets(), &meta("rs1", &[], &[FOREGROUND], true));
        let mut unblocked = meta("p1", &["rs1"], &[], false);
        unblocked.owner_references.as_mut().unwrap()[0].block_owner_deletion = Some(false);
        assert_eq!(g.observe(pods(), &unblocked), vec!["rs1".to_string()]);
        assert!(g.blocking_dependents("rs1").is_empty());
    }

    #[test]
    fn resync_finds_deletions_missed_in_between() {
        let mut g = Graph::default();
        g.observe(pods(), &meta("p1", &["rs1"], &[], false));
        g.observe(pods(), &meta("p2", &["rs1"], &[], false));
        // A relist of pods no longer has p2, and rs1 was seen deleted meanwhile.
        g.remove(replicasets(), &meta("rs1", &[], &[], false));
        let q = g.resync(pods(), |f| f(&meta("p1", &["rs1"], &[], false)));
        assert_eq!(sorted(q), vec!["p1".to_string()]);
        assert!(g.get("p2").is_none() && g.is_absent(&coordinates(pods(), "default", "n-p2", "p2")));
    }
}
