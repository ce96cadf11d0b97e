//! ConfigMaps and Secrets: key format, the 1 MiB size cap, base64 payloads, secret types and
//! the `immutable` flag.

use serde_json::{Map, Value};

use super::meta::{self, NameRule, Scope};
use super::names;
use super::util::*;
use crate::status::Cause;

/// Upstream's `MaxSecretSize`, shared by ConfigMaps.
const MAX_SIZE: usize = 1024 * 1024;
const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded base64, as Go's JSON encoding of `[]byte`.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strict standard base64 like Go's decoder: padding required, line breaks ignored. The
/// error names the offending byte as Go's does.
pub(crate) fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let symbols: Vec<(usize, u8)> = s.bytes().enumerate().filter(|(_, c)| *c != b'\r' && *c != b'\n').collect();
    let illegal = |i: usize| format!("illegal base64 data at input byte {i}");
    if !symbols.len().is_multiple_of(4) {
        let start = symbols.len() / 4 * 4;
        return Err(illegal(symbols.get(start).map_or(s.len(), |(p, _)| *p)));
    }
    let quads = symbols.len() / 4;
    let mut out = Vec::with_capacity(quads * 3);
    for (q, quad) in symbols.chunks(4).enumerate() {
        // Padding may only close the final group, and at most two of its places.
        let pad = quad.iter().rev().take_while(|(_, c)| *c == b'=').count();
        if pad > 2 || (pad > 0 && q + 1 != quads) {
            return Err(illegal(quad[4 - pad].0));
        }
        let mut n: u32 = 0;
        for &(pos, c) in &quad[..4 - pad] {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return Err(illegal(pos)),
            };
            n = (n << 6) | u32::from(v);
        }
        n <<= 6 * pad;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

fn data_keys(errs: &mut Vec<Cause>, k: &str, path: &str) {
    invalid_each(errs, path, k, names::config_map_key_errors(k));
}

pub(crate) fn validate_config_map(cm: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(cm, Scope::Namespaced, NameRule::Subdomain);
    let empty = Map::new();
    let data = get_obj(cm, "data").unwrap_or(&empty);
    let binary = get_obj(cm, "binaryData").unwrap_or(&empty);
    let mut total = 0usize;
    for (k, v) in data {
        let p = key("data", k);
        data_keys(&mut errs, k, &p);
        if binary.contains_key(k) {
            errs.push(Cause::invalid(&p, &str_value(k), "duplicate of key present in binaryData"));
        }
        match v {
            Value::String(s) => total += s.len(),
            other => errs.push(Cause::invalid(&p, other, "must be a string")),
        }
    }
    for (k, v) in binary {
        let p = key("binaryData", k);
        data_keys(&mut errs, k, &p);
        match v.as_str().map(base64_decode) {
            Some(Ok(bytes)) => total += bytes.len(),
            Some(Err(e)) => errs.push(Cause::invalid(&p, &str_value(k), e)),
            None => errs.push(Cause::invalid(&p, v, "must be a base64 string")),
        }
    }
    if total > MAX_SIZE {
        // The empty path means the whole object, as upstream reports it.
        errs.push(too_long("", MAX_SIZE));
    }
    errs
}

pub(crate) fn validate_config_map_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    if get_bool(old, "immutable") {
        if !get_bool(new, "immutable") {
            errs.push(Cause::forbidden("immutable", IMMUTABLE_WHEN_SET));
        }
        for field in ["data", "binaryData"] {
            if !semantic_eq(get(new, field), get(old, field)) {
                errs.push(Cause::forbidden(field, IMMUTABLE_WHEN_SET));
            }
        }
    }
    errs.extend(validate_config_map(new));
    errs
}

pub(crate) fn validate_secret(secret: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(secret, Scope::Namespaced, NameRule::Subdomain);
    let empty = Map::new();
    let mut decoded: Map<String, Value> = Map::new();
    let mut total = 0usize;
    for (k, v) in get_obj(secret, "data").unwrap_or(&empty) {
        let p = key("data", k);
        data_keys(&mut errs, k, &p);
        match v.as_str().map(base64_decode) {
            Some(Ok(bytes)) => {
                total += bytes.len();
                decoded.insert(k.clone(), Value::from(bytes));
            }
            // Never echo secret material back.
            Some(Err(e)) => errs.push(Cause::invalid(&p, &str_value("<secret contents redacted>"), e)),
            None => errs.push(Cause::invalid(&p, &str_value("<secret contents redacted>"), "must be a base64 string")),
        }
    }
    // stringData is folded into data by the defaulter; anything left still counts.
    for (k, v) in get_obj(secret, "stringData").unwrap_or(&empty) {
        data_keys(&mut errs, k, &key("data", k));
        let bytes = v.as_str().unwrap_or("").as_bytes().to_vec();
        total += bytes.len();
        decoded.insert(k.clone(), Value::from(bytes));
    }
    if total > MAX_SIZE {
        errs.push(too_long("data", MAX_SIZE));
    }

    let has = |k: &str| decoded.contains_key(k);
    let bytes_of = |k: &str| -> Vec<u8> {
        decoded
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|b| b.as_u64().map(|b| b as u8)).collect())
            .unwrap_or_default()
    };
    let json_object = |k: &str, errs: &mut Vec<Cause>| {
        if let Err(e) = serde_json::from_slice::<Map<String, Value>>(&bytes_of(k)) {
            errs.push(Cause::invalid(key("data", k), &str_value("<secret contents redacted>"), e.to_string()));
        }
    };
    match get_str(secret, "type") {
        "kubernetes.io/service-account-token" => {
            let ann = sub(sub(secret, "metadata"), "annotations");
            if get_str(ann, SA_NAME_ANNOTATION).is_empty() {
                errs.push(Cause::required(key("metadata.annotations", SA_NAME_ANNOTATION)));
            }
        }
        "kubernetes.io/dockercfg" => {
            if has(".dockercfg") {
                json_object(".dockercfg", &mut errs);
            } else {
                errs.push(Cause::required("data[.dockercfg]"));
            }
        }
        "kubernetes.io/dockerconfigjson" => {
            if has(".dockerconfigjson") {
                json_object(".dockerconfigjson", &mut errs);
            } else {
                errs.push(Cause::required("data[.dockerconfigjson]"));
            }
        }
        // Either may be empty, but one of them must be there.
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(Cause::required("data[username]"));
            errs.push(Cause::required("data[password]"));
        }
        "kubernetes.io/ssh-auth" if bytes_of("ssh-privatekey").is_empty() => {
            errs.push(Cause::required("data[ssh-privatekey]"));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(Cause::required(key("data", k)));
                }
            }
        }
        _ => {}
    }
    errs
}

pub(crate) fn validate_secret_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let new_type = get_str(new, "type");
    if new_type != get_str(old, "type") {
        errs.push(Cause::invalid("type", &str_value(new_type), IMMUTABLE));
    }
    if get_bool(old, "immutable") {
        if !get_bool(new, "immutable") {
            errs.push(Cause::forbidden("immutable", IMMUTABLE_WHEN_SET));
        }
        if !semantic_eq(get(new, "data"), get(old, "data")) || get(new, "stringData").and_then(normalized).is_some() {
            errs.push(Cause::forbidden("data", IMMUTABLE_WHEN_SET));
        }
    }
    errs.extend(validate_secret(new));
    errs
}
