//! Schema-driven conversion of protobuf messages into Kubernetes JSON.
//!
//! Zero-value rules (Go's gogo-protobuf writes every non-pointer field, even
//! when zero, so presence on the wire says nothing for those):
//! * pointer fields (`*` in the table) are emitted whenever present, zero or not;
//! * non-pointer scalars are emitted when non-zero, or when zero and the Go JSON
//!   tag has no `omitempty` (`!` in the table) — exactly as `encoding/json` does;
//! * non-pointer messages are emitted only when they decode to a non-empty
//!   object (Go would emit `{}`; we drop it, which is equivalent for the API);
//! * repeated fields and maps are emitted when they have at least one element;
//! * a zero `Time`/`MicroTime` (JSON `null` in Go) is never emitted.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::schema::{Field, Message, Schema, Shape, Type};
use super::time::{format_rfc3339, GO_ZERO_TIME_SECONDS};
use super::wire::{Reader, WireValue};
use super::DecodeError;

/// Well beyond the deepest nesting in the schema; guards recursion anyway.
const MAX_DEPTH: usize = 64;

const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const RAW: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";

fn malformed(msg: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(msg.into())
}

fn unsupported(field: u32, message: &str) -> DecodeError {
    DecodeError::UnsupportedField { field, message: message.to_string() }
}

/// Iterates a message's fields, wrapping wire errors with the message name.
fn for_each_field<'a>(
    buf: &'a [u8],
    message: &str,
    mut f: impl FnMut(u32, WireValue<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut reader = Reader::new(buf);
    loop {
        match reader.next_field() {
            Ok(Some((number, value))) => f(number, value)?,
            Ok(None) => return Ok(()),
            Err(e) => return Err(malformed(format!("{message}: {e}"))),
        }
    }
}

fn expect_bytes<'a>(value: WireValue<'a>, field: u32, message: &str) -> Result<&'a [u8], DecodeError> {
    match value {
        WireValue::Bytes(b) => Ok(b),
        other => Err(malformed(format!(
            "field {field} of {message} has wire type {}, expected length-delimited",
            other.type_name()
        ))),
    }
}

fn expect_varint(value: WireValue<'_>, field: u32, message: &str) -> Result<u64, DecodeError> {
    match value {
        WireValue::Varint(v) => Ok(v),
        other => {
            Err(malformed(format!("field {field} of {message} has wire type {}, expected varint", other.type_name())))
        }
    }
}

fn utf8(bytes: &[u8], field: u32, message: &str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed(format!("field {field} of {message} is not valid UTF-8")))
}

/// Decodes one message into a JSON object.
pub(crate) fn decode_message(
    schema: &Schema,
    msg: &Message,
    buf: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, DecodeError> {
    let mut out = Map::new();
    decode_into(schema, msg, buf, depth, &mut out)?;
    Ok(out)
}

fn decode_into(
    schema: &Schema,
    msg: &Message,
    buf: &[u8],
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(malformed(format!("{}: nesting deeper than {MAX_DEPTH}", msg.name)));
    }
    let mut seen: Vec<u32> = Vec::new();
    for_each_field(buf, &msg.name, |number, value| {
        let field = msg.field(number).ok_or_else(|| unsupported(number, &msg.name))?;
        match &field.shape {
            Shape::Single => {
                if seen.contains(&number) {
                    return Err(malformed(format!(
                        "field {number} ({}) of {} appears more than once",
                        field.json, msg.name
                    )));
                }
                seen.push(number);
                if field.inline {
                    let Type::Message(name) = &field.ty else {
                        return Err(malformed(format!("inline field {number} of {} is not a message", msg.name)));
                    };
                    let sub = lookup(schema, name)?;
                    let bytes = expect_bytes(value, number, &msg.name)?;
                    return decode_into(schema, sub, bytes, depth + 1, out);
                }
                if let Some(v) = decode_value(schema, msg, field, &field.ty, value, depth)? {
                    if keep(field, &v) {
                        out.insert(field.json.clone(), v);
                    }
                }
                Ok(())
            }
            Shape::Repeated => {
                let mut items = Vec::new();
                match (&field.ty, value) {
                    (Type::Int32 | Type::Int64 | Type::Bool, WireValue::Bytes(packed)) => {
                        let mut r = Reader::new(packed);
                        while !r.is_empty() {
                            let v = r
                                .read_varint()
                                .map_err(|e| malformed(format!("packed field {number} of {}: {e}", msg.name)))?;
                            items.push(scalar_from_varint(&field.ty, v));
                        }
                    }
                    (Type::Double, WireValue::Bytes(packed)) => {
                        if packed.len() % 8 != 0 {
                            return Err(malformed(format!(
                                "packed field {number} of {} has length {} (not a multiple of 8)",
                                msg.name,
                                packed.len()
                            )));
                        }
                        for chunk in packed.chunks_exact(8) {
                            let mut arr = [0u8; 8];
                            arr.copy_from_slice(chunk);
                            items.push(double(u64::from_le_bytes(arr), number, &msg.name)?);
                        }
                    }
                    (ty, value) => {
                        let v = decode_value(schema, msg, field, ty, value, depth)?;
                        items.push(v.unwrap_or(Value::Null));
                    }
                }
                if items.is_empty() {
                    return Ok(());
                }
                match out.entry(field.json.clone()).or_insert_with(|| Value::Array(Vec::new())) {
                    Value::Array(arr) => arr.extend(items),
                    _ => {
                        return Err(malformed(format!(
                            "field {number} of {} collides with another JSON field",
                            msg.name
                        )))
                    }
                }
                Ok(())
            }
            Shape::Map(key_ty) => {
                let entry = expect_bytes(value, number, &msg.name)?;
                let entry_name = format!("{}.{}Entry", msg.name, field.json);
                let mut key: Option<Value> = None;
                let mut val: Option<Value> = None;
                for_each_field(entry, &entry_name, |n, v| {
                    match n {
                        1 => key = decode_value(schema, msg, field, key_ty, v, depth)?,
                        2 => val = decode_value(schema, msg, field, &field.ty, v, depth)?,
                        other => return Err(unsupported(other, &entry_name)),
                    }
                    Ok(())
                })?;
                let key = match key {
                    Some(Value::String(s)) => s,
                    None => String::new(),
                    Some(_) => return Err(malformed(format!("{entry_name}: non-string map key"))),
                };
                let val = val.unwrap_or_else(|| zero_json(&field.ty));
                match out.entry(field.json.clone()).or_insert_with(|| Value::Object(Map::new())) {
                    Value::Object(map) => {
                        map.insert(key, val);
                    }
                    _ => {
                        return Err(malformed(format!(
                            "field {number} of {} collides with another JSON field",
                            msg.name
                        )))
                    }
                }
                Ok(())
            }
        }
    })
}

fn lookup<'s>(schema: &'s Schema, name: &str) -> Result<&'s Message, DecodeError> {
    schema.message(name).ok_or_else(|| malformed(format!("schema has no message {name}")))
}

/// Whether a decoded single (non-repeated, non-map) value is emitted.
fn keep(field: &Field, v: &Value) -> bool {
    if field.pointer {
        return true;
    }
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Null => false,
        _ if !field.omitempty => true,
        Value::String(s) => !s.is_empty(),
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() != Some(0) && n.as_f64() != Some(0.0),
        Value::Array(a) => !a.is_empty(),
    }
}

/// JSON for a map value that is absent from its entry (Go's zero value).
fn zero_json(ty: &Type) -> Value {
    match ty {
        Type::String | Type::Bytes => Value::String(String::new()),
        Type::Quantity => Value::String("0".into()),
        Type::Int32 | Type::Int64 | Type::IntOrString => Value::Number(0.into()),
        Type::Double => Value::Number(0.into()),
        Type::Bool => Value::Bool(false),
        Type::Message(_) => Value::Object(Map::new()),
        Type::Time | Type::MicroTime | Type::RawJson => Value::Null,
    }
}

fn scalar_from_varint(ty: &Type, v: u64) -> Value {
    match ty {
        // Truncation to 32 bits is protobuf's int32 semantics.
        Type::Int32 => Value::Number((v as i32).into()),
        Type::Bool => Value::Bool(v != 0),
        _ => Value::Number((v as i64).into()),
    }
}

fn double(bits: u64, field: u32, message: &str) -> Result<Value, DecodeError> {
    Number::from_f64(f64::from_bits(bits))
        .map(Value::Number)
        .ok_or_else(|| malformed(format!("field {field} of {message} is not a finite number")))
}

/// Decodes one value of `ty`. `None` means "JSON null" (zero Time, empty raw).
fn decode_value(
    schema: &Schema,
    msg: &Message,
    field: &Field,
    ty: &Type,
    value: WireValue<'_>,
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    let n = field.number;
    let name = msg.name.as_str();
    Ok(match ty {
        Type::Int32 | Type::Int64 | Type::Bool => Some(scalar_from_varint(ty, expect_varint(value, n, name)?)),
        Type::Double => match value {
            WireValue::Fixed64(bits) => Some(double(bits, n, name)?),
            other => {
                return Err(malformed(format!(
                    "field {n} of {name} has wire type {}, expected 64-bit",
                    other.type_name()
                )))
            }
        },
        Type::String => Some(Value::String(utf8(expect_bytes(value, n, name)?, n, name)?)),
        Type::Bytes => {
            Some(Value::String(base64::engine::general_purpose::STANDARD.encode(expect_bytes(value, n, name)?)))
        }
        Type::Message(sub) => {
            let sub = lookup(schema, sub)?;
            let bytes = expect_bytes(value, n, name)?;
            Some(Value::Object(decode_message(schema, sub, bytes, depth + 1)?))
        }
        Type::Time | Type::MicroTime => {
            let bytes = expect_bytes(value, n, name)?;
            let micro = *ty == Type::MicroTime;
            decode_time(bytes, micro)?.map(Value::String)
        }
        Type::Quantity => {
            let bytes = expect_bytes(value, n, name)?;
            let mut s = String::new();
            for_each_field(bytes, QUANTITY, |f, v| match f {
                1 => {
                    s = utf8(expect_bytes(v, f, QUANTITY)?, f, QUANTITY)?;
                    Ok(())
                }
                other => Err(unsupported(other, QUANTITY)),
            })?;
            (!s.is_empty()).then_some(Value::String(s))
        }
        Type::IntOrString => {
            let bytes = expect_bytes(value, n, name)?;
            let (mut kind, mut int_val, mut str_val) = (0u64, 0i32, String::new());
            for_each_field(bytes, INT_OR_STRING, |f, v| {
                match f {
                    1 => kind = expect_varint(v, f, INT_OR_STRING)?,
                    2 => int_val = expect_varint(v, f, INT_OR_STRING)? as i32,
                    3 => str_val = utf8(expect_bytes(v, f, INT_OR_STRING)?, f, INT_OR_STRING)?,
                    other => return Err(unsupported(other, INT_OR_STRING)),
                }
                Ok(())
            })?;
            Some(match kind {
                0 => Value::Number(int_val.into()),
                1 => Value::String(str_val),
                other => {
                    return Err(malformed(format!("{INT_OR_STRING} in field {n} of {name} has unknown type {other}")))
                }
            })
        }
        Type::RawJson => {
            let bytes = expect_bytes(value, n, name)?;
            let mut raw: &[u8] = &[];
            for_each_field(bytes, RAW, |f, v| match f {
                1 => {
                    raw = expect_bytes(v, f, RAW)?;
                    Ok(())
                }
                other => Err(unsupported(other, RAW)),
            })?;
            if raw.is_empty() {
                None
            } else {
                Some(
                    serde_json::from_slice(raw)
                        .map_err(|e| malformed(format!("field {n} of {name} does not hold valid JSON: {e}")))?,
                )
            }
        }
    })
}

/// Decodes a `meta/v1` Time/MicroTime (`{1 seconds int64, 2 nanos int32}`).
/// Like Go: an empty message or Go's zero time yields `None` (JSON null);
/// `Time` drops the nanoseconds (second precision), `MicroTime` keeps
/// microseconds.
fn decode_time(bytes: &[u8], micro: bool) -> Result<Option<String>, DecodeError> {
    let name = if micro { MICRO_TIME } else { TIME };
    if bytes.is_empty() {
        return Ok(None);
    }
    let (mut seconds, mut nanos) = (0i64, 0i64);
    for_each_field(bytes, name, |f, v| {
        match f {
            1 => seconds = expect_varint(v, f, name)? as i64,
            2 => nanos = i64::from(expect_varint(v, f, name)? as i32),
            other => return Err(unsupported(other, name)),
        }
        Ok(())
    })?;
    if !micro {
        nanos = 0;
    }
    // Normalise nanos into [0, 1e9) like Go's time.Unix.
    let seconds = seconds
        .checked_add(nanos.div_euclid(1_000_000_000))
        .ok_or_else(|| malformed(format!("{name} out of range")))?;
    let nanos = nanos.rem_euclid(1_000_000_000);
    if seconds == GO_ZERO_TIME_SECONDS && nanos == 0 {
        return Ok(None);
    }
    let micros = micro.then_some((nanos / 1000) as u32);
    format_rfc3339(seconds, micros)
        .map(Some)
        .ok_or_else(|| malformed(format!("{name} {seconds}s is outside years 0000-9999")))
}
