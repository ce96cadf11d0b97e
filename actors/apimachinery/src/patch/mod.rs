//! Patch support for the `PATCH` verb.
//!
//! [`strategic`] applies Kubernetes strategic merge patches over `serde_json::Value` (and
//! computes them the way kubectl does); [`patch_meta`] is the hand-written table of the
//! `patchStrategy`/`patchMergeKey` tags that the Kubernetes Go types declare, which tells
//! the merge how each list behaves.

pub mod patch_meta;
pub mod strategic;

/// Why a strategic merge patch could not be applied or computed.
///
/// The messages follow the wording of the upstream Go implementation where one exists, so
/// that kubectl users see familiar text inside the `Status` the server returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is valid JSON but not an object.
    #[error("json: cannot unmarshal {found} into Go value of type map[string]interface {{}}")]
    PatchNotObject { found: &'static str },
    /// A document to be patched (or compared) is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A list item lacks the merge key that its list declares.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    /// A value has a different JSON type than the merge requires.
    #[error("expected a {expected}, but received a {found}")]
    BadArgType { expected: &'static str, found: &'static str },
    /// A `$patch` directive with an unknown value.
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType { directive: String, map: String },
    /// `$patch: merge` inside a list, which upstream never implemented.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// A list whose items are lists.
    #[error("lists of lists are not supported")]
    NoListOfLists,
    /// A list whose items are not all of the same JSON type.
    #[error("list element types are not identical: {0}")]
    MixedListElements(String),
    /// A merging list of objects for which no merge key is known.
    #[error("cannot merge lists without merge key for {0}")]
    NoMergeKeyForList(String),
    /// A malformed `$deleteFromPrimitiveList/<field>` directive.
    #[error("invalid patch format of primitive list")]
    BadPatchFormatForPrimitiveList,
    /// A malformed `$retainKeys` directive, or a patch setting keys it does not retain.
    #[error("invalid patch format of retainKeys")]
    BadPatchFormatForRetainKeys,
    /// A malformed `$setElementOrder/<field>` directive.
    #[error("invalid patch format of setElementOrder list")]
    BadPatchFormatForSetElementOrderList,
    /// The items of a patch list are not in the order its `$setElementOrder` list gives.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}")]
    SetElementOrderMismatch { patch: String, order: String },
    /// Two patches being combined carry different `$retainKeys` lists for the same map.
    #[error("{0} and {1} are not deep equal: this may happen when calculating the 3-way diff patch")]
    RetainKeysMismatch(String, String),
}

/// Names the JSON type of a value the way Go's decoder does in its error messages.
pub(crate) fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}
