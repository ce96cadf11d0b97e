//! ControllerRevisions (upstream `pkg/controller/history`): the history of a DaemonSet's or
//! StatefulSet's pod templates, which `kubectl rollout history` shows and `kubectl rollout
//! undo` patches back. Each revision records the template as a strategic merge patch that
//! replaces it, is named `<owner>-<hash>`, carries the hash as `controller-revision-hash`, and
//! numbers revisions upwards; going back to an old template renumbers its revision as the
//! newest instead of making another.

use crate::deployment::{canonical_template, template_hash};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kubus_apimachinery::meta::{controller_ref, refers_to};
use kubus_apimachinery::{Object, ObjectExt};
use kubus_controller_runtime::controller::Error;
use kubus_controller_runtime::{Client, DeleteParams, Informer};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The label pods and revisions carry with their template's hash.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// The data a revision records for a template: a patch that puts it back whole.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision records.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// The hash of a template (and the owner's collision count), as names and labels carry it.
pub fn hash(template: &PodTemplateSpec, collisions: i32) -> String {
    template_hash(&canonical_template(Some(template)), i64::from(collisions))
}

/// The revisions `owner` controls, oldest first.
pub fn owned<O: Object>(revisions: &Informer<ControllerRevision>, owner: &O) -> Vec<Arc<ControllerRevision>> {
    let mut revs: Vec<Arc<ControllerRevision>> = revisions
        .controlled_by(owner.uid())
        .into_iter()
        .filter(|r| r.controller_ref().is_some_and(refers_to::<O>))
        .collect();
    revs.sort_by_key(|r| (r.revision, r.name().to_string()));
    revs
}

fn same_template(rev: &ControllerRevision, template: &PodTemplateSpec) -> bool {
    template_of(rev).is_some_and(|t| canonical_template(Some(&t)) == canonical_template(Some(template)))
}

/// The revision of `owner`'s current template, created (or renumbered as the newest) when
/// needed; answers it and its hash.
pub async fn ensure_current<O: Object>(
    client: &Client,
    revisions: &[Arc<ControllerRevision>],
    owner: &O,
    template: &PodTemplateSpec,
    labels: &BTreeMap<String, String>,
    collisions: i32,
) -> Result<(ControllerRevision, String), Error> {
    let newest = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    if let Some(rev) = revisions.iter().rev().find(|r| same_template(r, template)) {
        let h = rev.labels().get(REVISION_HASH).cloned().unwrap_or_else(|| hash(template, collisions));
        if rev.revision == newest {
            return Ok(((**rev).clone(), h));
        }
        // Rolled back to an older template: it becomes the newest revision again.
        let patch = json!({"revision": newest + 1, "metadata": {"resourceVersion": rev.resource_version()}});
        let updated = client.merge_patch::<ControllerRevision>(rev.namespace(), rev.name(), &patch).await?;
        return Ok((updated, h));
    }
    let h = hash(template, collisions);
    let mut labels = labels.clone();
    labels.insert(REVISION_HASH.into(), h.clone());
    let rev = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{h}", owner.name())),
            namespace: Some(owner.namespace().to_string()),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(template))),
        revision: newest + 1,
    };
    match client.create(&rev).await {
        Ok(created) => Ok((created, h)),
        // Made by an earlier sync the informer has not shown yet: the same template, so the
        // same revision.
        Err(e) if e.is_already_exists() => Ok((rev, h)),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the oldest revisions beyond `limit`, sparing the current one and those a live pod
/// still carries (by hash or by name).
pub async fn prune(
    client: &Client,
    revisions: &[Arc<ControllerRevision>],
    current: &str,
    in_use: &HashSet<String>,
    limit: i32,
) -> Result<(), Error> {
    // Pods carry a revision's hash (DaemonSets) or its name (StatefulSets).
    let spare = |r: &ControllerRevision| {
        let h = r.labels().get(REVISION_HASH).map(String::as_str).unwrap_or_default();
        r.name() == current || in_use.contains(h) || in_use.contains(r.name())
    };
    let prunable: Vec<&Arc<ControllerRevision>> = revisions.iter().filter(|r| !spare(r)).collect();
    let excess = prunable.len().saturating_sub(limit.max(0) as usize);
    for r in prunable.into_iter().take(excess) {
        match client.delete::<ControllerRevision>(r.namespace(), r.name(), &DeleteParams::default()).await {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("app".into(), "agent".into())].into()), ..Default::default() }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn revisions_record_a_replacing_patch_of_the_template() {
        let t = template("busybox:1");
        let data = revision_data(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1");
        let rev = ControllerRevision { data: Some(RawExtension(data)), ..Default::default() };
        assert!(same_template(&rev, &t));
        assert!(!same_template(&rev, &template("busybox:2")));
        assert_ne!(hash(&t, 0), hash(&template("busybox:2"), 0));
        assert_ne!(hash(&t, 0), hash(&t, 1), "a collision count changes the hash");
    }
}
