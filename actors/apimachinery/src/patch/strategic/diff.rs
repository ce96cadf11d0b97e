//! Computing strategic merge patches, as kubectl does for `apply` and `edit`.
//!
//! A two-way patch turns `original` into `modified`. The three-way patch of `kubectl apply`
//! combines the deletions from the last-applied configuration (`original`) to the new one
//! (`modified`) with the changes and additions from the live object (`current`) to
//! `modified`, so that fields set by others and never applied are left alone. Like kubectl
//! (`--overwrite` is the default), it does not look for conflicting changes.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::list::{element_kind, Kind};
use super::order::{merge_key_equal, sort_by_order};
use super::{
    json_type_name, merge_map, no_merge_key, MergeOptions, PatchError, Schema, Strategy, DELETE_DIRECTIVE,
    DELETE_FROM_PRIMITIVE_LIST_PREFIX, DIRECTIVE_MARKER, RETAIN_KEYS_DIRECTIVE, SET_ELEMENT_ORDER_PREFIX,
};

/// What a diff records.
#[derive(Debug, Clone, Copy, Default)]
struct DiffOptions {
    /// Emit `$setElementOrder/<field>` for changed merging lists.
    set_element_order: bool,
    /// Record only deletions.
    ignore_changes_and_additions: bool,
    /// Record only changes and additions.
    ignore_deletions: bool,
    /// Emit `$retainKeys` for this object (its field has the retainKeys strategy).
    build_retain_keys: bool,
}

/// Combining the deletions patch with the changes patch keeps directives and nulls.
const COMBINE: MergeOptions = MergeOptions { merge_parallel_list: false, ignore_unmatched_nulls: false };

/// The patch that turns `original` into `modified`, both objects of the table type
/// `root_type`, as `kubectl edit` computes it.
pub fn create_two_way_merge_patch(
    original: &Value,
    modified: &Value,
    root_type: Option<&str>,
) -> Result<Value, PatchError> {
    let opts = DiffOptions { set_element_order: true, ..DiffOptions::default() };
    let (original, modified) = (as_object(original)?, as_object(modified)?);
    diff_maps(&original, &modified, Schema { ty: root_type }, opts).map(Value::Object)
}

/// The patch `kubectl apply` sends: `original` is the last-applied configuration,
/// `modified` the new configuration and `current` the live object.
pub fn create_three_way_merge_patch(
    original: &Value,
    modified: &Value,
    current: &Value,
    root_type: Option<&str>,
) -> Result<Value, PatchError> {
    let (original, modified, current) = (as_object(original)?, as_object(modified)?, as_object(current)?);
    let schema = Schema { ty: root_type };
    let delta = diff_maps(
        &current,
        &modified,
        schema,
        DiffOptions { ignore_deletions: true, set_element_order: true, ..DiffOptions::default() },
    )?;
    let deletions = diff_maps(
        &original,
        &modified,
        schema,
        DiffOptions { ignore_changes_and_additions: true, set_element_order: true, ..DiffOptions::default() },
    )?;
    merge_map(deletions, delta, schema, COMBINE).map(Value::Object)
}

fn as_object(v: &Value) -> Result<Cow<'_, Map<String, Value>>, PatchError> {
    match v {
        Value::Object(m) => Ok(Cow::Borrowed(m)),
        Value::Null => Ok(Cow::Owned(Map::new())),
        _ => Err(PatchError::BadJsonDoc),
    }
}

fn diff_maps(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    schema: Schema<'_>,
    opts: DiffOptions,
) -> Result<Map<String, Value>, PatchError> {
    let mut patch = Map::new();
    let mut retain_keys = Vec::new();
    for (key, modified_value) in modified {
        if opts.build_retain_keys && !modified_value.is_null() {
            retain_keys.push(Value::String(key.clone()));
        }
        let Some(original_value) = original.get(key) else {
            if !opts.ignore_changes_and_additions {
                patch.insert(key.clone(), modified_value.clone());
            }
            continue;
        };
        if key == DIRECTIVE_MARKER {
            if original_value.as_str().is_none() || modified_value.as_str().is_none() {
                return Err(PatchError::BadArgType { expected: "string", found: json_type_name(modified_value) });
            }
            if original_value != modified_value {
                patch.insert(key.clone(), modified_value.clone());
            }
            continue;
        }
        match (original_value, modified_value) {
            (Value::Object(o), Value::Object(m)) => map_diff(key, o, m, &mut patch, schema, opts)?,
            (Value::Array(o), Value::Array(m)) => slice_diff(key, o, m, &mut patch, schema, opts)?,
            // Scalars, or a change of type: replace.
            (o, m) => {
                if !opts.ignore_changes_and_additions && o != m {
                    patch.insert(key.clone(), m.clone());
                }
            }
        }
    }

    if !opts.ignore_deletions {
        for key in original.keys() {
            if !modified.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }

    // Retain keys only when something changes here, or when keys must be cleared.
    let clears_keys = original.iter().any(|(k, v)| !v.is_null() && !modified.contains_key(k));
    if !retain_keys.is_empty() && (!patch.is_empty() || clears_keys) {
        patch.insert(RETAIN_KEYS_DIRECTIVE.to_string(), Value::Array(sort_scalars(retain_keys)));
    }
    Ok(patch)
}

fn map_diff(
    key: &str,
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema<'_>,
    opts: DiffOptions,
) -> Result<(), PatchError> {
    let (sub, meta) = schema.lookup(key);
    if meta.strategy == Strategy::Replace {
        if !opts.ignore_changes_and_additions {
            patch.insert(key.to_string(), Value::Object(modified.clone()));
        }
        return Ok(());
    }
    let opts = DiffOptions { build_retain_keys: meta.strategy == Strategy::RetainKeys, ..opts };
    let diff = diff_maps(original, modified, sub, opts)?;
    if !diff.is_empty() {
        patch.insert(key.to_string(), Value::Object(diff));
    }
    Ok(())
}

fn slice_diff(
    key: &str,
    original: &[Value],
    modified: &[Value],
    patch: &mut Map<String, Value>,
    schema: Schema<'_>,
    opts: DiffOptions,
) -> Result<(), PatchError> {
    let (sub, meta) = schema.lookup(key);
    if !meta.strategy.merges_lists() {
        if !opts.ignore_changes_and_additions && original != modified {
            patch.insert(key.to_string(), Value::Array(modified.to_vec()));
        }
        return Ok(());
    }
    let opts = DiffOptions { build_retain_keys: meta.strategy == Strategy::RetainKeys, ..opts };
    let merge_key = meta.merge_key.unwrap_or("");
    let (additions, deletions, order) = diff_lists(original, modified, sub, merge_key, opts, key)?;
    if !additions.is_empty() {
        patch.insert(key.to_string(), Value::Array(additions));
    }
    if !deletions.is_empty() {
        patch.insert(format!("{DELETE_FROM_PRIMITIVE_LIST_PREFIX}/{key}"), Value::Array(deletions));
    }
    if !order.is_empty() {
        patch.insert(format!("{SET_ELEMENT_ORDER_PREFIX}/{key}"), Value::Array(order));
    }
    Ok(())
}

/// Diffs a merging list into the patch list (changes, additions, and `$patch: delete`
/// items), the parallel deletion list for primitives, and the `$setElementOrder` list.
type ListDiff = (Vec<Value>, Vec<Value>, Vec<Value>);

fn diff_lists(
    original: &[Value],
    modified: &[Value],
    schema: Schema<'_>,
    merge_key: &str,
    opts: DiffOptions,
    field: &str,
) -> Result<ListDiff, PatchError> {
    if original.is_empty() {
        if modified.is_empty() || opts.ignore_changes_and_additions {
            return Ok(Default::default());
        }
        return Ok((modified.to_vec(), Vec::new(), Vec::new()));
    }
    let Some(kind) = element_kind(&[original, modified])? else {
        return Ok(Default::default());
    };

    if kind == Kind::Object {
        if merge_key.is_empty() {
            return Err(PatchError::NoMergeKeyForList(schema.describe(field)));
        }
        let (changes, deletions) = diff_lists_of_maps(original, modified, schema, merge_key, opts)?;
        let mut list = sort_by_order(changes, modified, merge_key, kind)?;
        let order_same = is_order_same(original, modified, merge_key)?;
        list.extend(deletions);
        let mut order = Vec::new();
        if opts.set_element_order
            && ((!opts.ignore_changes_and_additions && (!list.is_empty() || !order_same))
                || (!opts.ignore_deletions && !list.is_empty()))
        {
            // Each item reduced to its merge key.
            order = modified
                .iter()
                .map(|v| {
                    let mut m = Map::new();
                    m.insert(merge_key.to_string(), v.get(merge_key).cloned().unwrap_or(Value::Null));
                    Value::Object(m)
                })
                .collect();
        }
        return Ok((list, Vec::new(), order));
    }

    let (additions, deletions) = diff_lists_of_scalars(original, modified, opts);
    let additions = sort_by_order(additions, modified, merge_key, kind)?;
    let mut order = Vec::new();
    if opts.set_element_order
        && ((!opts.ignore_deletions && !deletions.is_empty())
            || (!opts.ignore_changes_and_additions && original != modified))
    {
        order = modified.to_vec();
    }
    Ok((additions, deletions, order))
}

fn is_order_same(original: &[Value], modified: &[Value], merge_key: &str) -> Result<bool, PatchError> {
    if original.len() != modified.len() {
        return Ok(false);
    }
    for (o, m) in original.iter().zip(modified) {
        if !merge_key_equal(o, m, merge_key)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Walks both lists sorted by their Go string form, collecting values only in `modified`
/// (additions) and values only in `original` (deletions).
fn diff_lists_of_scalars(original: &[Value], modified: &[Value], opts: DiffOptions) -> (Vec<Value>, Vec<Value>) {
    let original = sort_scalars(original.to_vec());
    let modified = sort_scalars(modified.to_vec());
    let (mut additions, mut deletions) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < original.len() || j < modified.len() {
        let o = original.get(i).map(go_string);
        let m = modified.get(j).map(go_string);
        match (o, m) {
            (Some(o), Some(m)) if o == m => {
                i += 1;
                j += 1;
            }
            (Some(o), Some(m)) if o < m => {
                if !opts.ignore_deletions {
                    deletions.push(original[i].clone());
                }
                i += 1;
            }
            (Some(_), None) => {
                if !opts.ignore_deletions {
                    deletions.push(original[i].clone());
                }
                i += 1;
            }
            _ => {
                if !opts.ignore_changes_and_additions {
                    additions.push(modified[j].clone());
                }
                j += 1;
            }
        }
    }
    (additions, dedup_like_upstream(deletions))
}

/// Walks both lists sorted by merge key: matching items are diffed recursively, items
/// only in `modified` are added whole, items only in `original` get a delete directive.
fn diff_lists_of_maps(
    original: &[Value],
    modified: &[Value],
    schema: Schema<'_>,
    merge_key: &str,
    opts: DiffOptions,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let original = sort_by_merge_key(original, merge_key)?;
    let modified = sort_by_merge_key(modified, merge_key)?;
    let (mut changes, mut deletions) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < original.len() || j < modified.len() {
        let o = original.get(i);
        let m = modified.get(j);
        match (o, m) {
            (Some((ok, o)), Some((mk, m))) if ok == mk => {
                let mut diff = diff_maps(object(o)?, object(m)?, schema, opts)?;
                if !diff.is_empty() {
                    diff.insert(merge_key.to_string(), m[merge_key].clone());
                    changes.push(Value::Object(diff));
                }
                i += 1;
                j += 1;
            }
            (Some((ok, o)), Some((mk, _))) if ok < mk => {
                if !opts.ignore_deletions {
                    deletions.push(delete_directive(merge_key, &o[merge_key]));
                }
                i += 1;
            }
            (Some((_, o)), None) => {
                if !opts.ignore_deletions {
                    deletions.push(delete_directive(merge_key, &o[merge_key]));
                }
                i += 1;
            }
            (_, Some((_, m))) => {
                if !opts.ignore_changes_and_additions {
                    changes.push((*m).clone());
                }
                j += 1;
            }
            (None, None) => break,
        }
    }
    Ok((changes, deletions))
}

fn object(v: &Value) -> Result<&Map<String, Value>, PatchError> {
    v.as_object().ok_or(PatchError::BadArgType { expected: "object", found: json_type_name(v) })
}

fn delete_directive(merge_key: &str, value: &Value) -> Value {
    let mut m = Map::new();
    m.insert(merge_key.to_string(), value.clone());
    m.insert(DIRECTIVE_MARKER.to_string(), Value::String(DELETE_DIRECTIVE.to_string()));
    Value::Object(m)
}

/// The items paired with the Go string form of their merge key, sorted by it.
fn sort_by_merge_key<'v>(list: &'v [Value], merge_key: &str) -> Result<Vec<(String, &'v Value)>, PatchError> {
    let mut keyed = Vec::with_capacity(list.len());
    for item in list {
        let Some(k) = item.get(merge_key) else {
            return Err(no_merge_key(item, merge_key));
        };
        keyed.push((go_string(k), item));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keyed)
}

/// Sorts scalars by their Go string form, the order upstream diffs and emits them in.
fn sort_scalars(mut list: Vec<Value>) -> Vec<Value> {
    list.sort_by_cached_key(go_string);
    list
}

/// Removes duplicates the way upstream does (each duplicate is overwritten by the last
/// item), so that deletion lists come out in the same order as kubectl's.
fn dedup_like_upstream(mut list: Vec<Value>) -> Vec<Value> {
    let mut i = 0;
    while i + 1 < list.len() {
        let mut j = i + 1;
        while j < list.len() {
            if list[i] == list[j] {
                list.swap_remove(j);
            } else {
                j += 1;
            }
        }
        i += 1;
    }
    list
}

/// A scalar as Go's `%v` prints it, which is what upstream sorts and compares by.
fn go_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategic_merge;
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: Option<&str> = Some("io.k8s.api.apps.v1.Deployment");
    const POD: Option<&str> = Some("io.k8s.api.core.v1.Pod");

    #[test]
    fn three_way_patch_for_image_edit_and_label_removal() {
        let original = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "frontend"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.25"},
                {"name": "sidecar", "image": "busybox"}
            ]}}}
        });
        let mut modified = original.clone();
        modified["metadata"]["labels"] = json!({"app": "web"});
        modified["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        let mut current = original.clone();
        current["metadata"]["uid"] = json!("u1");
        current["spec"]["replicas"] = json!(1);
        current["spec"]["template"]["spec"]["containers"][1]["imagePullPolicy"] = json!("Always");

        let patch = create_three_way_merge_patch(&original, &modified, &current, DEPLOYMENT).unwrap();
        assert_eq!(
            patch,
            json!({
                "metadata": {"labels": {"tier": null}},
                "spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [{"image": "nginx:1.26", "name": "nginx"}]
                }}}
            })
        );
        let applied = strategic_merge(&current, &patch, DEPLOYMENT).unwrap();
        assert_eq!(applied["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(applied["spec"]["replicas"], 1);
        assert_eq!(applied["spec"]["template"]["spec"]["containers"][1]["imagePullPolicy"], "Always");
        assert_eq!(applied["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
    }

    #[test]
    fn three_way_patch_deletes_containers_and_finalizers_and_retains_keys() {
        let original = json!({
            "metadata": {"finalizers": ["a", "b"]},
            "spec": {
                "containers": [{"name": "x"}, {"name": "y"}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            }
        });
        let modified = json!({
            "metadata": {"finalizers": ["b"]},
            "spec": {
                "containers": [{"name": "x"}],
                "volumes": [{"name": "v", "configMap": {"name": "c"}}]
            }
        });
        let patch = create_three_way_merge_patch(&original, &modified, &original, POD).unwrap();
        assert_eq!(
            patch,
            json!({
                "metadata": {
                    "$setElementOrder/finalizers": ["b"],
                    "$deleteFromPrimitiveList/finalizers": ["a"]
                },
                "spec": {
                    "$setElementOrder/containers": [{"name": "x"}],
                    "containers": [{"name": "y", "$patch": "delete"}],
                    "$setElementOrder/volumes": [{"name": "v"}],
                    "volumes": [{"$retainKeys": ["configMap", "name"], "name": "v", "configMap": {"name": "c"}, "emptyDir": null}]
                }
            })
        );
        let applied = strategic_merge(&original, &patch, POD).unwrap();
        assert_eq!(applied, modified);
    }

    #[test]
    fn two_way_patch_round_trips() {
        let original =
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "args": ["x"]}]}});
        let modified = json!({"metadata": {"labels": {"b": "2"}}, "spec": {"containers": [{"name": "c", "args": ["y"]}, {"name": "d"}]}});
        let patch = create_two_way_merge_patch(&original, &modified, POD).unwrap();
        assert_eq!(patch["metadata"]["labels"], json!({"a": null, "b": "2"}));
        assert_eq!(strategic_merge(&original, &patch, POD).unwrap(), modified);
        assert_eq!(create_two_way_merge_patch(&modified, &modified, POD).unwrap(), json!({}));
    }
}
