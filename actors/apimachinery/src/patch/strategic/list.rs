//! Merging the lists of a patch into the lists of the original: lists of objects item by
//! item by their merge key (with the `$patch` items of the list applied first), lists of
//! primitives as an ordered set.

use serde_json::Value;

use super::order::{normalize_element_order, partition_by_presence};
use super::patch_meta::FieldMeta;
use super::{
    bad_arg_type, bad_patch_type, clean, clean_list, merge_map, no_merge_key, MergeOptions, PatchError, Schema,
    DELETE_DIRECTIVE, DIRECTIVE_MARKER, MERGE_DIRECTIVE, REPLACE_DIRECTIVE,
};

/// Merges two lists according to the strategy of their field.
pub(super) fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: Schema<'_>,
    meta: &FieldMeta,
    is_delete_list: bool,
    opts: MergeOptions,
    what: &str,
) -> Result<Vec<Value>, PatchError> {
    if meta.strategy.merges_lists() || is_delete_list {
        merge_list(original, patch, schema, meta.merge_key.unwrap_or(""), is_delete_list, opts, what)
    } else {
        Ok(clean_list(patch, opts))
    }
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: Schema<'_>,
    merge_key: &str,
    is_delete_list: bool,
    opts: MergeOptions,
    what: &str,
) -> Result<Vec<Value>, PatchError> {
    let Some(kind) = element_kind(&[&original, &patch])? else {
        return Ok(original);
    };

    if kind != Kind::Object {
        if opts.merge_parallel_list && is_delete_list {
            return Ok(original.into_iter().filter(|v| !patch.contains(v)).collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (patch_items, server_only) = partition_by_presence(merged, &patch, "", kind)?;
        return normalize_element_order(patch_items, server_only, &patch, &original, "", kind);
    }

    if merge_key.is_empty() {
        return Err(PatchError::NoMergeKeyForList(what.to_string()));
    }
    let (original, patch) = apply_list_directives(original, patch, merge_key, opts)?;
    let merged = merge_list_items(original.clone(), &patch, merge_key, schema, opts)?;
    let (patch_items, server_only) = partition_by_presence(merged, &patch, merge_key, kind)?;
    normalize_element_order(patch_items, server_only, &patch, &original, merge_key, kind)
}

/// Applies the `$patch` items of a merging list of objects: `delete` removes the items
/// with the same key from the original, `replace` discards the original altogether.
/// Returns the new original and the patch items left to merge.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
    opts: MergeOptions,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE_MARKER) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some(DELETE_DIRECTIVE) => {
                let Some(key_value) = item.get(merge_key) else {
                    return Err(no_merge_key(&item, merge_key));
                };
                original.retain(|o| o.get(merge_key) != Some(key_value));
            }
            // Keep scanning so that the other directive items are dropped too.
            Some(REPLACE_DIRECTIVE) => replace = true,
            Some(MERGE_DIRECTIVE) => return Err(PatchError::MergeDirectiveInList),
            _ => {
                let map = item.as_object().cloned().unwrap_or_default();
                return Err(bad_patch_type(directive, &map));
            }
        }
    }
    if replace {
        Ok((clean_list(plain, opts), Vec::new()))
    } else {
        Ok((original, plain))
    }
}

/// Merges each patch item into the original item with the same merge key, or appends it.
fn merge_list_items(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    schema: Schema<'_>,
    opts: MergeOptions,
) -> Result<Vec<Value>, PatchError> {
    for item in patch {
        let Some(patch_map) = item.as_object() else {
            return Err(bad_arg_type("object", item));
        };
        let Some(key_value) = patch_map.get(merge_key) else {
            return Err(no_merge_key(item, merge_key));
        };
        match original.iter().position(|o| o.get(merge_key) == Some(key_value)) {
            Some(pos) => {
                let Value::Object(o) = std::mem::take(&mut original[pos]) else {
                    return Err(bad_arg_type("object", &original[pos]));
                };
                original[pos] = Value::Object(merge_map(o, patch_map.clone(), schema, opts)?);
            }
            None => {
                if let Some(v) = clean(item.clone(), opts) {
                    original.push(v);
                }
            }
        }
    }
    Ok(original)
}

/// The JSON type shared by the items of a list, which decides how the list merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The kind of the items of all `lists`, `None` when they are all empty.
pub(super) fn element_kind(lists: &[&[Value]]) -> Result<Option<Kind>, PatchError> {
    let mut found: Option<Kind> = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let kind = match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Object,
            Value::Array(_) => return Err(PatchError::NoListOfLists),
        };
        match found {
            None => found = Some(kind),
            Some(k) if k != kind => {
                let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                return Err(PatchError::MixedListElements(Value::Array(all).to_string()));
            }
            Some(_) => {}
        }
    }
    Ok(found)
}
