//! Helpers shared by the validators: upstream-style field paths, lenient typed access into
//! `serde_json::Value`, and the few cause shapes `status.rs` has no constructor for.

use serde_json::{Map, Value};

use crate::status::{Cause, CauseType};

pub(crate) const IS_NEGATIVE: &str = "must be greater than or equal to 0";
pub(crate) const IMMUTABLE: &str = "field is immutable";

/// Stands in for an absent object so lookups on it simply find nothing.
pub(crate) static NULL: Value = Value::Null;

pub(crate) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Map keys render unquoted inside brackets, as upstream's `Path.Key` does.
pub(crate) fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

/// A present, non-null member.
pub(crate) fn get<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.get(k).filter(|x| !x.is_null())
}

/// A member or `NULL`, so nested lookups can chain without unwrapping.
pub(crate) fn sub<'a>(v: &'a Value, k: &str) -> &'a Value {
    get(v, k).unwrap_or(&NULL)
}

/// A string member; absent or non-string reads as "" like an unset Go string.
pub(crate) fn get_str<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn get_obj<'a>(v: &'a Value, k: &str) -> Option<&'a Map<String, Value>> {
    v.get(k).and_then(Value::as_object)
}

pub(crate) fn get_arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    match v.get(k) {
        Some(Value::Array(a)) => a.as_slice(),
        _ => &[],
    }
}

pub(crate) fn get_bool(v: &Value, k: &str) -> bool {
    v.get(k).and_then(Value::as_bool).unwrap_or(false)
}

/// Integers may arrive as `3` or `3.0`; both mean the same to a Go int field.
pub(crate) fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18).map(|f| f as i64))
}

pub(crate) fn get_int(v: &Value, k: &str) -> Option<i64> {
    get(v, k).and_then(as_int)
}

/// Reads an integer member, reporting a present non-integer (upstream would fail to decode it).
pub(crate) fn int_field(errs: &mut Vec<Cause>, v: &Value, k: &str, path: &str) -> Option<i64> {
    let x = get(v, k)?;
    match as_int(x) {
        Some(n) => Some(n),
        None => {
            errs.push(Cause::invalid(path, x, "must be an integer"));
            None
        }
    }
}

pub(crate) fn str_value(s: &str) -> Value {
    Value::String(s.to_string())
}

pub(crate) fn required_detail(path: &str, detail: &str) -> Cause {
    if detail.is_empty() {
        Cause::required(path)
    } else {
        Cause::new(CauseType::FieldValueRequired, path, format!("Required value: {detail}"))
    }
}

/// How upstream prints a bad value inside a message: strings quoted, the rest as JSON.
pub(crate) fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

pub(crate) fn not_found(path: &str, value: &Value) -> Cause {
    Cause::new(CauseType::FieldValueNotFound, path, format!("Not found: {}", render(value)))
}

pub(crate) fn too_long(path: &str, max: usize) -> Cause {
    Cause::new(CauseType::FieldValueTooLong, path, format!("Too long: may not be more than {max} bytes"))
}

pub(crate) fn duplicate_detail(path: &str, value: &Value, detail: &str) -> Cause {
    Cause::new(CauseType::FieldValueDuplicate, path, format!("Duplicate value: {}: {detail}", render(value)))
}

pub(crate) fn nonnegative(errs: &mut Vec<Cause>, value: i64, path: &str) {
    if value < 0 {
        errs.push(Cause::invalid(path, &Value::from(value), IS_NEGATIVE));
    }
}

/// Reads an optional integer member and requires it to be >= 0.
pub(crate) fn nonnegative_field(errs: &mut Vec<Cause>, v: &Value, k: &str, path: &str) {
    if let Some(n) = int_field(errs, v, k, path) {
        nonnegative(errs, n, path);
    }
}

/// One `field.Invalid` per message, the way upstream reports multi-message format checks.
pub(crate) fn invalid_each(errs: &mut Vec<Cause>, path: &str, value: &str, msgs: Vec<String>) {
    let v = str_value(value);
    errs.extend(msgs.into_iter().map(|m| Cause::invalid(path, &v, m)));
}

/// Upstream's `RegexError`, including its peculiar example separators.
pub(crate) fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{ex}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

/// Drops nulls and empty collections: upstream compares with semantic equality, where a nil
/// and an empty list or map are the same, and JSON round trips lose that difference anyway.
pub(crate) fn normalized(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(a) => {
            let items: Vec<Value> = a.iter().map(|x| normalized(x).unwrap_or(Value::Null)).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(m) => {
            let out: Map<String, Value> = m.iter().filter_map(|(k, x)| normalized(x).map(|n| (k.clone(), n))).collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        other => Some(other.clone()),
    }
}

pub(crate) fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    a.and_then(normalized) == b.and_then(normalized)
}

/// A short old/new listing of the leaves that differ, standing in for upstream's `cmp.Diff`.
pub(crate) fn describe_diff(old: &Value, new: &Value) -> String {
    let mut lines = Vec::new();
    diff_into("", normalized(old).as_ref(), normalized(new).as_ref(), &mut lines);
    format!("  {{\n{}\n  }}", lines.join("\n"))
}

fn diff_into(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff_into(&child(path, k), a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_into(&index(path, i), Some(x), Some(y), out);
            }
        }
        _ => {
            if let Some(o) = old {
                out.push(format!("-   {path}: {o}"));
            }
            if let Some(n) = new {
                out.push(format!("+   {path}: {n}"));
            }
        }
    }
}

/// Removes exact repeats, as upstream's error aggregation does.
pub(crate) fn dedup(causes: Vec<Cause>) -> Vec<Cause> {
    let mut out: Vec<Cause> = Vec::with_capacity(causes.len());
    for c in causes {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}
