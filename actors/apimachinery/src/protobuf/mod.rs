//! Decoder for Kubernetes protobuf request bodies
//! (`Content-Type: application/vnd.kubernetes.protobuf`) into Kubernetes JSON.
//!
//! A body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown`
//! envelope: `1 typeMeta {1 apiVersion, 2 kind}`, `2 raw` (the typed object),
//! `3 contentEncoding`, `4 contentType`. The typed object is decoded with the
//! field tables in `table_*.rs` (see `schema.rs` for their syntax and
//! `decode.rs` for how zero values and Go pointer fields are treated).
//!
//! Nothing is silently dropped: any field number missing from the tables, any
//! unsupported kind and any malformed input is an error, so the caller can
//! answer 415/400 and ask the client to send JSON instead.

mod decode;
mod schema;
mod table_apps;
mod table_autoscaling;
mod table_batch;
mod table_core;
mod table_core_pod;
mod table_core_volume;
mod table_meta;
mod table_misc;
mod time;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use wire::{Reader, WireValue};

/// Media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\x00";

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is not a well-formed Kubernetes protobuf body.
    #[error("malformed protobuf: {0}")]
    Malformed(String),
    /// The `(apiVersion, kind)` in the envelope has no decoder here.
    #[error("unsupported protobuf kind {api_version} {kind}; send application/json")]
    UnsupportedKind { api_version: String, kind: String },
    /// A field number this decoder does not know (decoding it would lose data).
    #[error("protobuf field {field} of {message} is not supported; send application/json")]
    UnsupportedField { field: u32, message: String },
    /// The envelope declares a content encoding or an inner content type
    /// other than plain protobuf.
    #[error("unsupported protobuf envelope {what} {value:?}; send application/json")]
    UnsupportedEnvelope { what: &'static str, value: String },
}

/// Whether `decode` handles objects of this `apiVersion` and `kind`.
pub fn supports(api_version: &str, kind: &str) -> bool {
    schema::top_level_message(api_version, kind).is_some()
}

/// `(apiVersion, kind)` pairs `decode` handles (plus `DeleteOptions` under any
/// apiVersion).
pub fn supported_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    schema::KINDS.iter().map(|(v, k, _)| (*v, *k))
}

const UNKNOWN: &str = "runtime.Unknown";
const TYPE_META: &str = "runtime.TypeMeta";

/// Decodes a Kubernetes protobuf body into the equivalent Kubernetes JSON
/// object, including `apiVersion` and `kind` taken from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| DecodeError::Malformed("body does not start with the k8s\\0 magic prefix".into()))?;

    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: Option<&[u8]> = None;
    let mut content_encoding = String::new();
    let mut content_type = String::new();

    let mut reader = Reader::new(envelope);
    while let Some((number, value)) =
        reader.next_field().map_err(|e| DecodeError::Malformed(format!("{UNKNOWN}: {e}")))?
    {
        let bytes = match value {
            WireValue::Bytes(b) => b,
            other => {
                return Err(DecodeError::Malformed(format!(
                    "field {number} of {UNKNOWN} has wire type {}, expected length-delimited",
                    other.type_name()
                )))
            }
        };
        match number {
            1 => {
                let mut tm = Reader::new(bytes);
                while let Some((n, v)) =
                    tm.next_field().map_err(|e| DecodeError::Malformed(format!("{TYPE_META}: {e}")))?
                {
                    let target = match n {
                        1 => &mut api_version,
                        2 => &mut kind,
                        other => return Err(DecodeError::UnsupportedField { field: other, message: TYPE_META.into() }),
                    };
                    *target = envelope_string(v, n, TYPE_META)?;
                }
            }
            2 => raw = Some(bytes),
            3 => content_encoding = envelope_string(value, number, UNKNOWN)?,
            4 => content_type = envelope_string(value, number, UNKNOWN)?,
            other => return Err(DecodeError::UnsupportedField { field: other, message: UNKNOWN.into() }),
        }
    }

    if kind.is_empty() || api_version.is_empty() {
        return Err(DecodeError::Malformed("envelope has no typeMeta apiVersion/kind".into()));
    }
    if !content_encoding.is_empty() {
        return Err(DecodeError::UnsupportedEnvelope { what: "contentEncoding", value: content_encoding });
    }
    if !content_type.is_empty() && content_type != CONTENT_TYPE {
        return Err(DecodeError::UnsupportedEnvelope { what: "contentType", value: content_type });
    }
    let unsupported_kind = || DecodeError::UnsupportedKind { api_version: api_version.clone(), kind: kind.clone() };
    let message_name = schema::top_level_message(&api_version, &kind).ok_or_else(unsupported_kind)?;
    let schema = schema::schema();
    let message = schema.message(&message_name).ok_or_else(unsupported_kind)?;

    let raw = raw.ok_or_else(|| DecodeError::Malformed("envelope has no raw object".into()))?;
    let object = decode::decode_message(schema, message, raw, 0)?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version));
    out.insert("kind".into(), Value::String(kind));
    out.extend(object);
    Ok(Value::Object(out))
}

fn envelope_string(value: WireValue<'_>, number: u32, message: &str) -> Result<String, DecodeError> {
    match value {
        WireValue::Bytes(b) => String::from_utf8(b.to_vec())
            .map_err(|_| DecodeError::Malformed(format!("field {number} of {message} is not valid UTF-8"))),
        other => Err(DecodeError::Malformed(format!(
            "field {number} of {message} has wire type {}, expected length-delimited",
            other.type_name()
        ))),
    }
}
