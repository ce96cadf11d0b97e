//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`).
//!
//! The semantics follow upstream's `strategicpatch` package (server side: the patch's
//! parallel directives are applied, nulls that match nothing are dropped):
//!
//! - a `null` value deletes its key; objects merge key by key;
//! - lists whose field has the `merge` strategy merge item by item: objects by their merge
//!   key, primitives as an ordered set; other lists are replaced whole. As upstream, items
//!   the patch adds go ahead of the items only the server has, unless the patch places
//!   them with `$setElementOrder` (kubectl always sends one);
//! - `$patch: replace` / `$patch: delete` in an object replace or empty it; in a merging
//!   list, `{"$patch": "delete", <key>: v}` removes the items with that key and
//!   `{"$patch": "replace"}` makes the rest of the patch list the whole new list;
//! - `$retainKeys: [..]` clears the keys of the object not listed;
//! - `$deleteFromPrimitiveList/<field>: [..]` removes values from a primitive list;
//! - `$setElementOrder/<field>: [..]` fixes the relative order of the listed items, while
//!   items only the server knows keep their place relative to their former neighbours.
//!
//! [`create_two_way_merge_patch`] and [`create_three_way_merge_patch`] compute patches
//! the way kubectl's `edit` and client-side `apply` do.
//!
//! Upstream hands the merged map to a typed decoder, which silently drops leftovers such as
//! nulls or directive keys inside values copied verbatim from the patch; Kubus stores the
//! JSON itself, so such values are cleaned here the same way before they enter the result.

use serde_json::{Map, Value};

use super::patch_meta::{self, FieldMeta, Strategy};
use super::{json_type_name, PatchError};

mod diff;
mod list;
mod order;
#[cfg(test)]
mod tests;

pub use diff::{create_three_way_merge_patch, create_two_way_merge_patch};
use list::merge_list_field;
use order::merge_set_element_order;

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

/// How a merge treats directives and nulls: applying a patch to an object consumes them,
/// while combining two patches (for the three-way patch) must carry them along.
#[derive(Debug, Clone, Copy)]
struct MergeOptions {
    /// Apply `$deleteFromPrimitiveList`, `$setElementOrder` and `$retainKeys` rather than
    /// copy them into the result.
    merge_parallel_list: bool,
    /// Drop a `null` whose key is absent from the original instead of keeping it.
    ignore_unmatched_nulls: bool,
}

const APPLY: MergeOptions = MergeOptions { merge_parallel_list: true, ignore_unmatched_nulls: true };

/// Where in the patch-metadata table the merge currently is.
#[derive(Debug, Clone, Copy)]
struct Schema<'a> {
    ty: Option<&'a str>,
}

impl<'a> Schema<'a> {
    /// The metadata of `key` and the schema of its value (or of its items, for lists).
    fn lookup(self, key: &str) -> (Schema<'a>, FieldMeta) {
        match self.ty.and_then(|t| patch_meta::field(t, key)) {
            Some(meta) => (Schema { ty: meta.child_type }, meta),
            None => (Schema { ty: None }, FieldMeta::default()),
        }
    }

    fn describe(self, key: &str) -> String {
        match self.ty {
            Some(t) => format!("field {key:?} of {t}"),
            None => format!("field {key:?}"),
        }
    }
}

/// Applies strategic merge `patch` to `original`, an object of the table type `root_type`
/// (see [`patch_meta::root_type`]). Without a type, or below fields the table does not
/// know, objects still merge and directives are still honoured but lists are replaced,
/// much like a JSON merge patch.
///
/// A `null` patch changes nothing, as upstream decodes it to an empty map; any other
/// non-object patch is an error.
pub fn strategic_merge(original: &Value, patch: &Value, root_type: Option<&str>) -> Result<Value, PatchError> {
    let patch = match patch {
        Value::Object(p) => p.clone(),
        Value::Null => Map::new(),
        other => return Err(PatchError::PatchNotObject { found: json_type_name(other) }),
    };
    let original = match original {
        Value::Object(o) => o.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::BadJsonDoc),
    };
    merge_map(original, patch, Schema { ty: root_type }, APPLY).map(Value::Object)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema<'_>,
    opts: MergeOptions,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER).cloned() {
        return directive_in_map(&directive, patch, opts);
    }
    apply_retain_keys(&mut original, &mut patch, opts)?;
    merge_set_element_order(&mut original, &mut patch, schema, opts)?;

    // Deletions from primitive lists go last so that a list merged by another key of the
    // same patch is pruned afterwards rather than refilled (upstream leaves this to map
    // iteration order).
    let (deletions, others): (Vec<_>, Vec<_>) =
        patch.into_iter().partition(|(k, _)| k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX));
    for (key, value) in others.into_iter().chain(deletions) {
        merge_field(&mut original, key, value, schema, opts)?;
    }
    Ok(original)
}

/// Handles an object carrying `$patch`, which replaces or empties it instead of merging.
fn directive_in_map(
    directive: &Value,
    mut patch: Map<String, Value>,
    opts: MergeOptions,
) -> Result<Map<String, Value>, PatchError> {
    match directive.as_str() {
        Some(REPLACE_DIRECTIVE) => {
            remove_key(&mut patch, DIRECTIVE_MARKER);
            // When combining patches the replacement is itself a patch and stays as is.
            Ok(if opts.merge_parallel_list { clean_map(patch, opts) } else { patch })
        }
        Some(DELETE_DIRECTIVE) => Ok(Map::new()),
        _ => Err(bad_patch_type(directive, &patch)),
    }
}

/// Merges one key of a patch object into the original object.
fn merge_field(
    original: &mut Map<String, Value>,
    key: String,
    patch_value: Value,
    schema: Schema<'_>,
    opts: MergeOptions,
) -> Result<(), PatchError> {
    let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
        if !opts.merge_parallel_list {
            original.insert(key, patch_value);
            return Ok(());
        }
        (extract_key(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?, true)
    } else {
        (key, false)
    };

    if patch_value.is_null() {
        remove_key(original, &key);
        if opts.ignore_unmatched_nulls {
            return Ok(());
        }
    }

    let Some(slot) = original.get_mut(&key) else {
        // Nothing to merge with: a deletion list has nothing to delete from, anything
        // else is taken as it is.
        if !is_delete_list {
            if let Some(v) = clean(patch_value, opts) {
                original.insert(key, v);
            }
        }
        return Ok(());
    };

    let merged = match (std::mem::take(slot), patch_value) {
        (Value::Object(o), Value::Object(p)) => {
            let (sub, meta) = schema.lookup(&key);
            if meta.strategy == Strategy::Replace {
                Some(Value::Object(clean_map(p, opts)))
            } else {
                Some(Value::Object(merge_map(o, p, sub, opts)?))
            }
        }
        (Value::Array(o), Value::Array(p)) => {
            let (sub, meta) = schema.lookup(&key);
            let what = schema.describe(&key);
            Some(Value::Array(merge_list_field(o, p, sub, &meta, is_delete_list, opts, &what)?))
        }
        // A deletion list only ever removes from a list.
        (o, _) if is_delete_list => Some(o),
        (_, p) => clean(p, opts),
    };
    match merged {
        Some(v) => *slot = v,
        None => {
            remove_key(original, &key);
        }
    }
    Ok(())
}

/// Clears the keys of `original` absent from the patch's `$retainKeys` list.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    opts: MergeOptions,
) -> Result<(), PatchError> {
    let Some(retain) = remove_key(patch, RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    if !opts.merge_parallel_list {
        // Combining patches: both must agree on what to retain.
        return match original.get(RETAIN_KEYS_DIRECTIVE) {
            Some(existing) if *existing != retain => {
                Err(PatchError::RetainKeysMismatch(existing.to_string(), retain.to_string()))
            }
            Some(_) => Ok(()),
            None => {
                original.insert(RETAIN_KEYS_DIRECTIVE.to_string(), retain);
                Ok(())
            }
        };
    }
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadPatchFormatForRetainKeys);
    };
    let retained = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    // A patch may not set a key it asks to clear.
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) || k.starts_with(SET_ELEMENT_ORDER_PREFIX) {
            continue;
        }
        if !retained(k) {
            return Err(PatchError::BadPatchFormatForRetainKeys);
        }
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

/// Prepares a patch value that enters the result without merging: objects holding a
/// `$patch` directive are dropped (`None` at the top), nulls are dropped when applying,
/// and so are the parallel directive keys, which have nothing to act on.
fn clean(value: Value, opts: MergeOptions) -> Option<Value> {
    match value {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE_MARKER) {
                return None;
            }
            Some(Value::Object(clean_map(m, opts)))
        }
        Value::Array(a) => Some(Value::Array(clean_list(a, opts))),
        other => Some(other),
    }
}

fn clean_map(map: Map<String, Value>, opts: MergeOptions) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map {
        if opts.ignore_unmatched_nulls && v.is_null() {
            continue;
        }
        if opts.merge_parallel_list && is_parallel_directive(&k) {
            continue;
        }
        if let Some(v) = clean(v, opts) {
            out.insert(k, v);
        }
    }
    out
}

fn clean_list(list: Vec<Value>, opts: MergeOptions) -> Vec<Value> {
    list.into_iter().filter_map(|v| clean(v, opts)).collect()
}

fn is_parallel_directive(key: &str) -> bool {
    key == RETAIN_KEYS_DIRECTIVE
        || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
}

/// The field name in `$prefix/<field>`.
fn extract_key(key: &str, prefix: &str) -> Result<String, PatchError> {
    match key.split_once('/') {
        Some((p, field)) if p == prefix => Ok(field.to_string()),
        _ if prefix == SET_ELEMENT_ORDER_PREFIX => Err(PatchError::BadPatchFormatForSetElementOrderList),
        _ => Err(PatchError::BadPatchFormatForPrimitiveList),
    }
}

/// Removes a key without disturbing the order of the others (`Map::remove` may swap
/// entries when serde_json keeps insertion order).
fn remove_key(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let value = map.get(key).cloned()?;
    map.retain(|k, _| k != key);
    Some(value)
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::NoMergeKey { map: item.to_string(), key: key.to_string() }
}

fn bad_arg_type(expected: &'static str, found: &Value) -> PatchError {
    PatchError::BadArgType { expected, found: json_type_name(found) }
}

fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> PatchError {
    PatchError::BadPatchType {
        directive: directive.as_str().map_or_else(|| directive.to_string(), str::to_string),
        map: Value::Object(map.clone()).to_string(),
    }
}
