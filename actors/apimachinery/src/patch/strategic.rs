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
pub use diff::{create_three_way_merge_patch, create_two_way_merge_patch};

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

/// Merges two lists according to the strategy of their field.
fn merge_list_field(
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

/// Processes each `$setElementOrder/<field>` of the patch together with `<field>`: merges
/// the list, then orders it. Handled fields are removed from the patch.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema<'_>,
    opts: MergeOptions,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX)).cloned().collect();
    for key in keys {
        let Some(order) = remove_key(patch, &key) else {
            continue;
        };
        if !opts.merge_parallel_list {
            // Combining patches: the directive is carried along and both must agree.
            match original.get(&key) {
                Some(existing) if *existing != order => return Err(PatchError::BadPatchFormatForSetElementOrderList),
                Some(_) => {}
                None => {
                    original.insert(key.clone(), order.clone());
                }
            }
        }
        let Value::Array(order) = order else {
            return Err(bad_arg_type("array", &order));
        };
        let field = extract_key(&key, SET_ELEMENT_ORDER_PREFIX)?;
        let original_list = list_at(original, &field)?;
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(bad_arg_type("array", other)),
        };
        let (sub, meta) = schema.lookup(&field);
        let merge_key = meta.merge_key.unwrap_or("");
        validate_patch_with_set_order(patch_list.as_deref().unwrap_or_default(), &order, merge_key)?;

        let kind =
            element_kind(&[original_list.as_deref().unwrap_or_default(), patch_list.as_deref().unwrap_or_default()])?;
        let server_order = match (&original_list, &patch_list) {
            (Some(o), Some(p))
                if meta.strategy.merges_lists() && kind == Some(Kind::Object) && !merge_key.is_empty() =>
            {
                reference_order(o, p, merge_key)
            }
            (Some(o), _) => o.clone(),
            (None, _) => Vec::new(),
        };
        let merged = match (original_list, patch_list) {
            (None, None) => continue,
            (Some(o), None) => o,
            (None, Some(p)) => clean_list(p, opts),
            (Some(o), Some(p)) => {
                let what = schema.describe(&field);
                merge_list_field(o, p, sub, &meta, false, opts, &what)?
            }
        };
        remove_key(patch, &field);
        let ordered = match kind {
            // Both lists empty: there is nothing to order.
            None => merged,
            Some(kind) => {
                let (patch_items, server_only) = partition_by_presence(merged, &order, merge_key, kind)?;
                normalize_element_order(patch_items, server_only, &order, &server_order, merge_key, kind)?
            }
        };
        original.insert(field, Value::Array(ordered));
    }
    Ok(())
}

/// The live order that server-only items keep when a merging list of objects is
/// reordered by `$setElementOrder`: the live list in which the items the patch appends
/// take over, in turn, the slots freed by the items it deletes. This is what upstream
/// observably does (it edits the live list in place while merging), so a server-only item
/// stays ahead of a new item that replaces one deleted after it.
fn reference_order(original: &[Value], patch: &[Value], merge_key: &str) -> Vec<Value> {
    let mut slots = original.to_vec();
    let mut len = slots.len();
    let mut replace = false;
    for item in patch {
        match item.get(DIRECTIVE_MARKER).and_then(Value::as_str) {
            Some(DELETE_DIRECTIVE) => {
                let Some(key) = item.get(merge_key) else {
                    continue;
                };
                while let Some(k) = slots[..len].iter().position(|o| o.get(merge_key) == Some(key)) {
                    // Shift left; the last slot keeps its stale value, as upstream's does.
                    for i in k..len - 1 {
                        slots[i] = slots[i + 1].clone();
                    }
                    len -= 1;
                }
            }
            Some(REPLACE_DIRECTIVE) => replace = true,
            _ => {}
        }
    }
    if replace {
        return slots;
    }
    let mut appended = Vec::new();
    for item in patch {
        let Some(key) = item.get(merge_key) else {
            continue;
        };
        if item.get(DIRECTIVE_MARKER).is_some() {
            continue;
        }
        let known =
            slots[..len.min(slots.len())].iter().chain(&appended).any(|o: &Value| o.get(merge_key) == Some(key));
        if !known {
            if len < slots.len() {
                slots[len] = item.clone();
            } else {
                appended.push(item.clone());
            }
            len += 1;
        }
    }
    slots
}

/// The list at `key`, treating an explicit `null` like an absent field.
fn list_at(map: &Map<String, Value>, key: &str) -> Result<Option<Vec<Value>>, PatchError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a.clone())),
        Some(other) => Err(bad_arg_type("array", other)),
    }
}

/// Checks that the patch list is ordered consistently with its `$setElementOrder` list
/// and names no item the order list omits (deletions aside).
fn validate_patch_with_set_order(patch: &[Value], order: &[Value], merge_key: &str) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(patch.len());
    for item in patch {
        if !merge_key.is_empty() {
            let Some(m) = item.as_object() else {
                return Err(bad_arg_type("object", item));
            };
            if m.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE) {
                continue;
            }
        }
        kept.push(item);
    }
    let (mut p, mut s) = (0, 0);
    while p < kept.len() && s < order.len() {
        if kept[p].get(DIRECTIVE_MARKER).is_some() {
            p += 1;
            continue;
        }
        if merge_key_equal(kept[p], &order[s], merge_key)? {
            p += 1;
        }
        s += 1;
    }
    if p < kept.len() && s >= order.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch: Value::Array(patch.to_vec()).to_string(),
            order: Value::Array(order.to_vec()).to_string(),
        });
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, PatchError> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let key_of = |v: &Value| -> Result<Value, PatchError> {
        let m = v.as_object().ok_or_else(|| bad_arg_type("object", v))?;
        m.get(merge_key).cloned().ok_or_else(|| no_merge_key(v, merge_key))
    };
    Ok(key_of(left)? == key_of(right)?)
}

/// The JSON type shared by the items of a list, which decides how the list merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The kind of the items of all `lists`, `None` when they are all empty.
fn element_kind(lists: &[&[Value]]) -> Result<Option<Kind>, PatchError> {
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

/// What identifies a list item when ordering: its merge key for objects of a keyed list,
/// the whole value otherwise. A missing key identifies as `None`, like upstream's nil.
fn identity<'v>(item: &'v Value, merge_key: &str, kind: Kind) -> Option<&'v Value> {
    if kind == Kind::Object && !merge_key.is_empty() {
        item.get(merge_key)
    } else {
        Some(item)
    }
}

fn index_of(list: &[Value], item: &Value, merge_key: &str, kind: Kind) -> Option<usize> {
    let id = identity(item, merge_key, kind);
    list.iter().position(|v| identity(v, merge_key, kind) == id)
}

/// Splits `merged` into the items present in `by` and the others (server-only items).
fn partition_by_presence(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let keyed = kind == Kind::Object && !merge_key.is_empty();
    let mut present = Vec::with_capacity(merged.len());
    let mut absent = Vec::with_capacity(merged.len());
    for item in merged {
        let found = if keyed {
            let Some(key_value) = item.get(merge_key) else {
                return Err(no_merge_key(&item, merge_key));
            };
            let mut found = false;
            for b in by {
                let Some(b) = b.as_object() else {
                    return Err(bad_arg_type("object", b));
                };
                if b.get(merge_key) == Some(key_value) {
                    found = true;
                    break;
                }
            }
            found
        } else {
            by.contains(&item)
        };
        if found {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// Orders the patch items by `patch_order` and the server-only items by `server_order`,
/// then interleaves them; see [`merge_sorted`].
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = sort_by_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted(server_only, patch_items, server_order, merge_key, kind))
}

/// Stable-sorts `items` by their position in `order`; items not in `order` go after
/// those that are, and `$patch: delete` items (present only when combining patches) last.
fn sort_by_order(items: Vec<Value>, order: &[Value], merge_key: &str, kind: Kind) -> Result<Vec<Value>, PatchError> {
    let keyed = kind == Kind::Object && !merge_key.is_empty();
    let mut deletions = Vec::new();
    let mut kept = Vec::with_capacity(items.len());
    if keyed {
        for v in order {
            if v.get(merge_key).is_none() {
                return Err(no_merge_key(v, merge_key));
            }
        }
    }
    for item in items {
        if keyed {
            if item.get(merge_key).is_none() {
                return Err(no_merge_key(&item, merge_key));
            }
            if item.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE) {
                deletions.push(item);
                continue;
            }
        }
        kept.push(item);
    }
    kept.sort_by_key(|item| index_of(order, item, merge_key, kind).unwrap_or(usize::MAX));
    kept.extend(deletions);
    Ok(kept)
}

/// Interleaves two sorted lists keeping the relative order within each. An item of
/// `left` (server-only) is placed before the next item of `right` (from the patch) only
/// when both appear in `server_order` and it came first there; otherwise the patch item
/// goes first. This is upstream's rule, which puts new items ahead of trailing
/// server-only ones when the patch gives no `$setElementOrder`.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (index_of(server_order, l, merge_key, kind), index_of(server_order, r, merge_key, kind)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POD: Option<&str> = Some("io.k8s.api.core.v1.Pod");
    const DEPLOYMENT: Option<&str> = Some("io.k8s.api.apps.v1.Deployment");
    const SERVICE: Option<&str> = Some("io.k8s.api.core.v1.Service");
    const NODE: Option<&str> = Some("io.k8s.api.core.v1.Node");

    fn apply(original: &Value, patch: Value, ty: Option<&str>) -> Value {
        strategic_merge(original, &patch, ty).unwrap()
    }

    fn pod(containers: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": containers}
        })
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn image_change_by_name_keeps_other_containers() {
        let orig = pod(json!([
            {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "busybox"}
        ]));
        let out = apply(&orig, json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}), POD);
        assert_eq!(
            out["spec"]["containers"],
            json!([
                {"name": "web", "image": "nginx:1.26", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "busybox"}
            ])
        );
        assert_eq!(out["metadata"], orig["metadata"]);
    }

    #[test]
    fn adding_a_container_keeps_existing_ones() {
        let orig = pod(json!([{"name": "web", "image": "nginx"}]));
        let out = apply(&orig, json!({"spec": {"containers": [{"name": "log", "image": "fluentd"}]}}), POD);
        // Upstream places a patch item with no anchor in the live list ahead of the
        // server-only items.
        assert_eq!(names(&out["spec"]["containers"]), ["log", "web"]);
        assert_eq!(out["spec"]["containers"][0]["image"], "fluentd");

        // With $setElementOrder (as kubectl sends it) the new container goes last.
        let out = apply(
            &orig,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
                "containers": [{"name": "log", "image": "fluentd"}]
            }}),
            POD,
        );
        assert_eq!(names(&out["spec"]["containers"]), ["web", "log"]);
        assert!(out["spec"].get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn patch_delete_removes_a_container() {
        let orig = pod(json!([{"name": "web", "image": "nginx"}, {"name": "log", "image": "fluentd"}]));
        let out = apply(&orig, json!({"spec": {"containers": [{"name": "log", "$patch": "delete"}]}}), POD);
        assert_eq!(out["spec"]["containers"], json!([{"name": "web", "image": "nginx"}]));
        // Deleting what is not there is not an error.
        let again = apply(&out, json!({"spec": {"containers": [{"name": "log", "$patch": "delete"}]}}), POD);
        assert_eq!(again, out);
    }

    #[test]
    fn env_merges_by_name() {
        let orig = pod(json!([{"name": "web", "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "2"},
            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ]}]));
        let out = apply(
            &orig,
            json!({"spec": {"containers": [{"name": "web", "env": [
                {"name": "B", "value": "two"},
                {"name": "C", "value": "3", "valueFrom": null},
                {"name": "A", "$patch": "delete"}
            ]}]}}),
            POD,
        );
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "B", "value": "two"}, {"name": "C", "value": "3"}])
        );
    }

    #[test]
    fn ports_merge_by_container_port() {
        let orig = pod(json!([{"name": "web", "ports": [
            {"containerPort": 80, "name": "http"},
            {"containerPort": 443, "name": "https"}
        ]}]));
        let out = apply(
            &orig,
            json!({"spec": {"containers": [{"name": "web", "ports": [
                {"containerPort": 443, "protocol": "TCP"},
                {"containerPort": 8080, "name": "alt"}
            ]}]}}),
            POD,
        );
        let ports = &out["spec"]["containers"][0]["ports"];
        assert_eq!(ports.as_array().unwrap().len(), 3);
        assert!(ports.as_array().unwrap().contains(&json!({"containerPort": 80, "name": "http"})));
        assert!(ports.as_array().unwrap().contains(&json!({"containerPort": 443, "name": "https", "protocol": "TCP"})));
        assert!(ports.as_array().unwrap().contains(&json!({"containerPort": 8080, "name": "alt"})));
    }

    #[test]
    fn volume_retain_keys_switches_source() {
        let mut orig = pod(json!([{"name": "web"}]));
        orig["spec"]["volumes"] = json!([
            {"name": "data", "emptyDir": {}},
            {"name": "cache", "emptyDir": {"medium": "Memory"}}
        ]);
        let out = apply(
            &orig,
            json!({"spec": {
                "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
                "volumes": [{"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cfg"}}]
            }}),
            POD,
        );
        assert_eq!(
            out["spec"]["volumes"],
            json!([
                {"name": "data", "configMap": {"name": "cfg"}},
                {"name": "cache", "emptyDir": {"medium": "Memory"}}
            ])
        );
        // Without the directive the old source stays, as upstream.
        let out = apply(&orig, json!({"spec": {"volumes": [{"name": "data", "configMap": {"name": "cfg"}}]}}), POD);
        assert_eq!(out["spec"]["volumes"][0], json!({"name": "data", "emptyDir": {}, "configMap": {"name": "cfg"}}));
    }

    #[test]
    fn set_element_order_reorders_and_keeps_server_only_items_in_place() {
        let orig = pod(json!([
            {"name": "a"}, {"name": "b", "image": "b"}, {"name": "x", "image": "server-only"},
            {"name": "c"}, {"name": "d"}
        ]));
        let out = apply(
            &orig,
            json!({"spec": {"$setElementOrder/containers": [
                {"name": "b"}, {"name": "a"}, {"name": "d"}, {"name": "c"}
            ]}}),
            POD,
        );
        // x followed b and preceded c in the live list, and still sits between them.
        assert_eq!(names(&out["spec"]["containers"]), ["b", "a", "x", "d", "c"]);
        assert_eq!(out["spec"]["containers"][0]["image"], "b");
    }

    #[test]
    fn set_element_order_must_agree_with_patch_list() {
        let orig = pod(json!([{"name": "a"}, {"name": "b"}]));
        let err = strategic_merge(
            &orig,
            &json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b", "image": "1"}, {"name": "a", "image": "2"}]
            }}),
            POD,
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::SetElementOrderMismatch { .. }), "{err}");
    }

    #[test]
    fn finalizers_merge_as_ordered_set_and_delete_from_primitive_list() {
        let orig = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
        let out = apply(&orig, json!({"metadata": {"finalizers": ["b", "c"]}}), POD);
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));

        let out = apply(&out, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zz"]}}), POD);
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));

        // Together with an order directive, as kubectl sends them.
        let out = apply(
            &out,
            json!({"metadata": {
                "$setElementOrder/finalizers": ["c"],
                "$deleteFromPrimitiveList/finalizers": ["b"]
            }}),
            POD,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["c"]));

        // Deleting from a list that does not exist does not create it.
        let out =
            apply(&json!({"metadata": {}}), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}), POD);
        assert_eq!(out, json!({"metadata": {}}));
    }

    #[test]
    fn replace_directive_in_map_and_list() {
        let orig = pod(json!([{"name": "web", "image": "nginx"}, {"name": "log"}]));
        let out = apply(&orig, json!({"metadata": {"labels": {"$patch": "replace", "only": "me"}}}), POD);
        assert_eq!(out["metadata"]["labels"], json!({"only": "me"}));
        assert_eq!(out["metadata"]["name"], "p");

        let out =
            apply(&orig, json!({"spec": {"containers": [{"name": "new", "image": "x"}, {"$patch": "replace"}]}}), POD);
        assert_eq!(out["spec"]["containers"], json!([{"name": "new", "image": "x"}]));

        let out = apply(&orig, json!({"spec": {"containers": [{"$patch": "replace"}]}}), POD);
        assert_eq!(out["spec"]["containers"], json!([]));
    }

    #[test]
    fn delete_directive_empties_a_map() {
        let orig = pod(json!([{"name": "web"}]));
        let out = apply(&orig, json!({"metadata": {"labels": {"$patch": "delete"}}}), POD);
        assert_eq!(out["metadata"]["labels"], json!({}));
        let out = apply(&orig, json!({"$patch": "delete"}), POD);
        assert_eq!(out, json!({}));
    }

    #[test]
    fn null_deletes_a_label() {
        let orig = pod(json!([{"name": "web"}]));
        let out = apply(&orig, json!({"metadata": {"labels": {"tier": null, "missing": null}}}), POD);
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    }

    #[test]
    fn deployment_strategy_retain_keys() {
        let orig = json!({
            "metadata": {"name": "d"},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
            }
        });
        let out = apply(&orig, json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}}), DEPLOYMENT);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(out["spec"]["replicas"], 2);

        // What kubectl apply sends for a retainKeys field.
        let out =
            apply(&orig, json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}), DEPLOYMENT);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

        // A patch may not set a key it asks to clear.
        let err = strategic_merge(
            &orig,
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}}),
            DEPLOYMENT,
        )
        .unwrap_err();
        assert_eq!(err, PatchError::BadPatchFormatForRetainKeys);
    }

    #[test]
    fn deployment_template_containers_merge() {
        let orig = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}}}});
        let out = apply(
            &orig,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "env": [{"name": "Y", "value": "2"}]}
            ]}}}}),
            DEPLOYMENT,
        );
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(names(containers), ["a", "b"]);
        assert_eq!(containers[0]["image"], "a:1");
        assert_eq!(containers[0]["env"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn service_ports_merge_by_port() {
        let orig = json!({"spec": {"type": "ClusterIP", "ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "https", "port": 443, "targetPort": 8443}
        ]}});
        let out = apply(
            &orig,
            json!({"spec": {
                "$setElementOrder/ports": [{"port": 80}, {"port": 443}, {"port": 9090}],
                "ports": [{"port": 80, "targetPort": 9000}, {"port": 9090, "name": "metrics"}]
            }}),
            SERVICE,
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 9000},
                {"name": "https", "port": 443, "targetPort": 8443},
                {"name": "metrics", "port": 9090}
            ])
        );
    }

    #[test]
    fn node_status_conditions_merge_by_type() {
        let orig = json!({"status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]
        }});
        let out = apply(
            &orig,
            json!({"status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"}]
            }}),
            NODE,
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}])
        );
        assert_eq!(out["status"]["addresses"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let orig = json!({"metadata": {"ownerReferences": [{"uid": "1", "kind": "ReplicaSet", "name": "rs"}]}});
        let out = apply(
            &orig,
            json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}, {"uid": "2", "kind": "X", "name": "x"}]}}),
            Some("io.k8s.api.core.v1.ConfigMap"),
        );
        let refs = out["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(refs.len(), 2);
        assert!(refs.contains(&json!({"uid": "1", "kind": "ReplicaSet", "name": "rs", "controller": true})));
    }

    #[test]
    fn lists_without_strategy_are_replaced() {
        let mut orig = pod(json!([{"name": "web", "args": ["a", "b"]}]));
        orig["spec"]["tolerations"] = json!([{"key": "k1", "operator": "Exists"}]);
        let out = apply(
            &orig,
            json!({"spec": {
                "tolerations": [{"key": "k2", "operator": "Exists", "value": null}],
                "containers": [{"name": "web", "args": ["c"]}]
            }}),
            POD,
        );
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "k2", "operator": "Exists"}]));
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["c"]));
    }

    #[test]
    fn unknown_root_type_behaves_like_merge_patch() {
        let orig = json!({
            "metadata": {"name": "w", "finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
            "spec": {"items": [{"name": "a", "v": 1}], "size": 1}
        });
        let patch = json!({
            "metadata": {"finalizers": ["b"], "labels": {"x": null, "z": "3"}},
            "spec": {"items": [{"name": "b"}], "extra": {"deep": {"k": "v", "gone": null}}}
        });
        let expected = json!({
            "metadata": {"name": "w", "finalizers": ["b"], "labels": {"y": "2", "z": "3"}},
            "spec": {"items": [{"name": "b"}], "size": 1, "extra": {"deep": {"k": "v"}}}
        });
        assert_eq!(apply(&orig, patch.clone(), None), expected);
        assert_eq!(apply(&orig, patch, Some("com.example.v1.Widget")), expected);
        // Directives still apply to objects.
        let out = apply(&orig, json!({"spec": {"$patch": "replace", "size": 2}}), None);
        assert_eq!(out["spec"], json!({"size": 2}));
    }

    #[test]
    fn kubectl_apply_patch_for_image_edit_and_label_removal() {
        let live = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "uid": "0b1c",
                "resourceVersion": "42",
                "labels": {"app": "web", "tier": "frontend"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"}
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                             "terminationMessagePath": "/dev/termination-log"},
                            {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]}
                        ],
                        "restartPolicy": "Always",
                        "dnsPolicy": "ClusterFirst"
                    }
                }
            },
            "status": {"replicas": 2}
        });
        // kubectl 1.32 three-way patch: new last-applied annotation, the removed label as
        // null, and the changed container with the order of all containers.
        let patch = json!({
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"},
                "labels": {"tier": null}
            },
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                "containers": [{"image": "nginx:1.26", "name": "nginx"}]
            }}}
        });
        let out = apply(&live, patch.clone(), DEPLOYMENT);
        let mut expected = live.clone();
        expected["metadata"]["labels"] = json!({"app": "web"});
        expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!("{\"new\":true}\n");
        expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        assert_eq!(out, expected);
        assert_eq!(apply(&out, patch, DEPLOYMENT), expected);
    }

    #[test]
    fn applying_a_patch_twice_is_idempotent() {
        let mut orig = pod(json!([
            {"name": "a", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "ports": [{"containerPort": 1}]}
        ]));
        orig["metadata"]["finalizers"] = json!(["f1", "f2"]);
        orig["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
        let patch = json!({
            "metadata": {"labels": {"tier": null, "new": "1"}, "finalizers": ["f3"],
                         "$deleteFromPrimitiveList/finalizers": ["f1"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}],
                "containers": [
                    {"name": "a", "$patch": "delete"},
                    {"name": "c", "image": "c", "env": [{"name": "Y", "value": "2"}]},
                    {"name": "b", "ports": [{"containerPort": 2}]}
                ],
                "volumes": [{"name": "v", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}}]
            }
        });
        let once = apply(&orig, patch.clone(), POD);
        let twice = apply(&once, patch, POD);
        assert_eq!(once, twice);
        assert_eq!(names(&once["spec"]["containers"]), ["c", "b"]);
        // The new finalizer has no anchor in the live list, so it goes first (upstream rule).
        assert_eq!(once["metadata"]["finalizers"], json!(["f3", "f2"]));
        assert_eq!(once["spec"]["volumes"], json!([{"name": "v", "secret": {"secretName": "s"}}]));
    }

    #[test]
    fn patch_order_is_kept_for_reordered_items() {
        let orig = pod(json!([{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}]));
        let out = apply(
            &orig,
            json!({"spec": {"containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}}),
            POD,
        );
        // "2" preceded "3" on the server, so it stays ahead of the patch items.
        assert_eq!(names(&out["spec"]["containers"]), ["2", "3", "1"]);
    }

    #[test]
    fn new_values_are_cleaned_of_nulls_and_directives() {
        let orig = json!({"metadata": {"name": "p"}});
        let out = apply(
            &orig,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "a", "image": null, "env": [{"name": "E", "$patch": "delete"}],
                                "$setElementOrder/env": [{"name": "E"}]}],
                "strategy": {"$retainKeys": ["type"], "type": "Recreate"}
            }}),
            POD,
        );
        assert_eq!(out["spec"], json!({"containers": [{"name": "a", "env": []}], "strategy": {"type": "Recreate"}}));
    }

    #[test]
    fn malformed_patches_are_rejected() {
        let orig = pod(json!([{"name": "web"}]));
        let err = |patch: Value| strategic_merge(&orig, &patch, POD).unwrap_err();
        assert_eq!(err(json!([1])), PatchError::PatchNotObject { found: "array" });
        assert_eq!(
            err(json!("x")).to_string(),
            "json: cannot unmarshal string into Go value of type map[string]interface {}"
        );
        assert!(matches!(err(json!({"spec": {"containers": [{"image": "no-name"}]}})), PatchError::NoMergeKey { .. }));
        assert_eq!(err(json!({"spec": {"containers": [{"$patch": "merge"}]}})), PatchError::MergeDirectiveInList);
        assert!(matches!(err(json!({"metadata": {"labels": {"$patch": "explode"}}})), PatchError::BadPatchType { .. }));
        assert!(matches!(err(json!({"spec": {"containers": ["web"]}})), PatchError::MixedListElements(_)));
        assert_eq!(
            err(json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}})),
            PatchError::BadPatchFormatForPrimitiveList
        );
        assert_eq!(strategic_merge(&json!([]), &json!({}), POD).unwrap_err(), PatchError::BadJsonDoc);
        // A null patch is an empty patch, as upstream decodes it.
        assert_eq!(strategic_merge(&orig, &Value::Null, POD).unwrap(), orig);
    }
}
