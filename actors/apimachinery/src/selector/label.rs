//! Label selectors: the `labelSelector` query syntax (`a=b,c in (x,y),!d`) and the
//! `metav1.LabelSelector` object form (`matchLabels` / `matchExpressions`).
//!
//! The parser follows upstream's grammar token by token, error messages included, because
//! kubectl shows the server's message unchanged and scripts compare against it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::names::{go_quote, label_key_errors, label_value_errors};
use crate::status::StatusError;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

mod parser;

/// How a requirement relates a label's value to its value set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// The spelling upstream uses for the operator (`selection.Operator`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One term of a selector: a key, an operator and the values it compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, checking key and value syntax and the operator's arity.
    pub fn new(key: impl Into<String>, operator: Operator, values: Vec<String>) -> Result<Self, StatusError> {
        Self::checked(key.into(), operator, values).map_err(StatusError::bad_request)
    }

    /// Upstream's `NewRequirement`: every problem is reported, aggregated into one message.
    fn checked(key: String, operator: Operator, values: Vec<String>) -> Result<Self, String> {
        let mut errs = Vec::new();
        let key_errs = label_key_errors(&key);
        if !key_errs.is_empty() {
            errs.push(invalid("key", &go_quote(&key), &key_errs.join("; ")));
        }
        let arity = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(detail) = arity {
            errs.push(invalid("values", &go_string_slice(&values), detail));
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(invalid(
                        &format!("values[{i}]"),
                        &go_quote(v),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = label_value_errors(v);
            if !value_errs.is_empty() {
                errs.push(invalid(&format!("values[{i}][{key}]"), &go_quote(v), &value_errs.join("; ")));
            }
        }
        match aggregate(errs) {
            Some(message) => Err(message),
            None => Ok(Requirement { key, operator, values }),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values in the order given (sorted and deduplicated when parsed from a string).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// Whether this requirement holds for a label set.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.holds_for(labels.get(&self.key).map(label_text).as_deref())
    }

    /// Whether this requirement holds for typed labels.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.holds_for(labels.get(&self.key).map(String::as_str))
    }

    /// Whether this requirement holds for labels read through `get` (None: no such label).
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.holds_for(get(&self.key))
    }

    /// Whether it holds when the key's label has this value (None: no such label).
    fn holds_for(&self, found: Option<&str>) -> bool {
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => found.is_some_and(|v| self.has_value(v)),
            // An absent label is "not equal" to anything, as upstream.
            Operator::NotIn | Operator::NotEquals => found.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => found.is_some(),
            Operator::DoesNotExist => found.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // Non-numeric label values never satisfy an inequality.
                let Some(actual) = found.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [bound] = self.values.as_slice() else {
                    return false;
                };
                let Ok(bound) = bound.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        // Values print sorted so equal selectors print the same whatever their input order.
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "{}{op}({values})", self.key)
        } else {
            write!(f, "{}{op}{values}", self.key)
        }
    }
}

/// A label selector: the AND of its requirements, or the selector that matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Matches every label set (the empty selector).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Matches no label set: what a null `metav1.LabelSelector` means.
    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// Parses the string syntax of the `labelSelector` query parameter.
    pub fn parse(s: &str) -> Result<Self, StatusError> {
        let requirements = parser::parse(s).map_err(StatusError::bad_request)?;
        Ok(LabelSelector::sorted(requirements))
    }

    /// Converts a `metav1.LabelSelector` object: null matches nothing, `{}` everything.
    pub fn from_json(sel: &Value) -> Result<Self, StatusError> {
        let obj = match sel {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(obj) => obj,
            other => return Err(bad_shape("label selector", "object", other)),
        };
        let empty = Map::new();
        let match_labels = match obj.get("matchLabels") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(other) => return Err(bad_shape("matchLabels", "object", other)),
        };
        let expressions: &[Value] = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(other) => return Err(bad_shape("matchExpressions", "array", other)),
        };
        if match_labels.is_empty() && expressions.is_empty() {
            return Ok(LabelSelector::everything());
        }
        let mut requirements = Vec::with_capacity(match_labels.len() + expressions.len());
        for (key, value) in match_labels {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => return Err(bad_shape("matchLabels value", "string", other)),
            };
            requirements.push(Requirement::new(key.clone(), Operator::Equals, vec![value])?);
        }
        for expr in expressions {
            requirements.push(expression(expr)?);
        }
        Ok(LabelSelector::sorted(requirements))
    }

    /// Converts a typed `metav1.LabelSelector`: None matches nothing, an empty one everything.
    pub fn from_typed(sel: Option<&metav1::LabelSelector>) -> Result<Self, StatusError> {
        let Some(sel) = sel else {
            return Ok(LabelSelector::nothing());
        };
        let match_labels = sel.match_labels.as_ref().into_iter().flatten();
        let expressions = sel.match_expressions.as_deref().unwrap_or(&[]);
        let mut requirements = Vec::new();
        for (key, value) in match_labels {
            requirements.push(Requirement::new(key.clone(), Operator::Equals, vec![value.clone()])?);
        }
        for e in expressions {
            let operator = match e.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(StatusError::bad_request(format!(
                        "{} is not a valid label selector operator",
                        go_quote(other)
                    )))
                }
            };
            requirements.push(Requirement::new(e.key.clone(), operator, e.values.clone().unwrap_or_default())?);
        }
        Ok(LabelSelector::sorted(requirements))
    }

    /// Exact-match selector for a typed label map (a Service's `spec.selector`); an empty map
    /// selects everything. The map is trusted, not validated.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement { key: k.clone(), operator: Operator::Equals, values: vec![v.clone()] })
            .collect();
        LabelSelector::sorted(requirements)
    }

    /// Exact-match selector for a label map, e.g. a Service's or ReplicationController's
    /// `spec.selector`; an empty map selects everything. The map is trusted, not validated.
    pub fn from_set(labels: &Map<String, Value>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![label_text(v).into_owned()],
            })
            .collect();
        LabelSelector::sorted(requirements)
    }

    /// Requirements are kept sorted by key, as upstream does, so printing is deterministic.
    fn sorted(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when the selector does not restrict anything (`nothing()` is not empty).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True only for `nothing()`.
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether typed labels satisfy every requirement.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches_labels(labels))
    }

    /// Whether labels read through `get` (None: no such label) satisfy every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches_with(&get))
    }

    /// Matches an object by its `metadata.labels` (absent labels are an empty set).
    pub fn matches_object(&self, obj: &Value) -> bool {
        match obj.pointer("/metadata/labels") {
            Some(Value::Object(labels)) => self.matches(labels),
            _ => self.matches(&Map::new()),
        }
    }

    /// The one value `key` must have, if the selector pins it (`key=v`, `key==v`, `key in (v)`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Whether `labels` carry every label of an equality selector (a Service's `spec.selector`,
/// a template's labels); an empty one matches everything, as upstream's `SelectorFromSet`.
/// [`LabelSelector::from_labels`] answers alike, but this builds nothing per object checked.
pub fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One `matchExpressions` entry.
fn expression(expr: &Value) -> Result<Requirement, StatusError> {
    let Value::Object(expr) = expr else {
        return Err(bad_shape("matchExpressions item", "object", expr));
    };
    let key = match expr.get("key") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(bad_shape("key", "string", other)),
    };
    let operator = match expr.get("operator") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(bad_shape("operator", "string", other)),
    };
    let operator = match operator {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(StatusError::bad_request(format!("{} is not a valid label selector operator", go_quote(other))))
        }
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(bad_shape("values item", "string", other)),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad_shape("values", "array", other)),
    };
    Requirement::new(key, operator, values)
}

fn bad_shape(what: &str, expected: &str, got: &Value) -> StatusError {
    StatusError::bad_request(format!("invalid {what}: expected {expected}, got {got}"))
}

/// A label's value as text; labels are strings, anything else is compared by its JSON form.
fn label_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

/// A field error as upstream prints it: `<path>: Invalid value: <value>: <detail>`.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value}: {detail}")
}

/// A `[]string` as Go's `%#v` prints it, for messages about value sets.
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Upstream's error aggregate: duplicates dropped, one message bare, several bracketed.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut unique: Vec<String> = Vec::new();
    for e in errs {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    match unique.len() {
        0 => None,
        1 => unique.pop(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

#[cfg(test)]
mod tests;
