//! The order of merged lists: `$setElementOrder/<field>` directives, and upstream's rule
//! for where the items of the patch go among the items only the server has.

use serde_json::{Map, Value};

use super::list::{element_kind, merge_list_field, Kind};
use super::{
    bad_arg_type, clean_list, extract_key, no_merge_key, remove_key, MergeOptions, PatchError, Schema,
    DELETE_DIRECTIVE, DIRECTIVE_MARKER, REPLACE_DIRECTIVE, SET_ELEMENT_ORDER_PREFIX,
};

/// Processes each `$setElementOrder/<field>` of the patch together with `<field>`: merges
/// the list, then orders it. Handled fields are removed from the patch.
pub(super) fn merge_set_element_order(
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

pub(super) fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, PatchError> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let key_of = |v: &Value| -> Result<Value, PatchError> {
        let m = v.as_object().ok_or_else(|| bad_arg_type("object", v))?;
        m.get(merge_key).cloned().ok_or_else(|| no_merge_key(v, merge_key))
    };
    Ok(key_of(left)? == key_of(right)?)
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
pub(super) fn partition_by_presence(
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
pub(super) fn normalize_element_order(
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
pub(super) fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
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
