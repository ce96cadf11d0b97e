//! Label maps and label selectors rendered as text, the way upstream prints
//! them in the SELECTOR columns.

use serde_json::Value;

use super::list;

/// A label map as `k1=v1,k2=v2` ordered by key, or `<none>` when empty
/// (upstream `labels.FormatLabels`).
pub(super) fn format_labels(labels: &Value) -> String {
    let mut pairs: Vec<(&str, &str)> = labels
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    // Sort by key, not by the joined text: `a` must precede `a.b`.
    pairs.sort_unstable();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A `metav1.LabelSelector` as `<error>`, `<none>` (selects everything or
/// nothing) or its requirement text (upstream `metav1.FormatLabelSelector`).
pub(super) fn format_label_selector(selector: &Value) -> String {
    match selector_string(selector) {
        Err(()) => "<error>".to_string(),
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
    }
}

/// The text of the selector once converted to requirements, e.g.
/// `app=web,tier in (a,b),!legacy`. An absent or empty selector renders as
/// the empty string; a selector upstream would reject is an error.
pub(super) fn selector_string(selector: &Value) -> Result<String, ()> {
    if !selector.is_object() {
        return Ok(String::new());
    }
    let mut requirements = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (key, value) in labels {
            let value = value.as_str().unwrap_or("").to_string();
            requirements.push(Requirement::new(key, Operator::Equals, vec![value])?);
        }
    }
    for expr in list(selector, &["matchExpressions"]) {
        let operator = match expr["operator"].as_str().unwrap_or("") {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            _ => return Err(()),
        };
        let values = list(expr, &["values"])
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or(()))
            .collect::<Result<Vec<_>, _>>()?;
        let key = expr["key"].as_str().unwrap_or("");
        requirements.push(Requirement::new(key, operator, values)?);
    }
    // Requirements print in key order whatever order they were given in.
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(requirements.iter().map(Requirement::render).collect::<Vec<_>>().join(","))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Operator {
    Equals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Applies the same checks upstream does before it will print a selector.
    fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, ()> {
        let arity_ok = match operator {
            Operator::Equals => values.len() == 1,
            Operator::In | Operator::NotIn => !values.is_empty(),
            Operator::Exists | Operator::DoesNotExist => values.is_empty(),
        };
        if !arity_ok || !is_qualified_name(key) || !values.iter().all(|v| is_label_value(v)) {
            return Err(());
        }
        Ok(Requirement { key: key.to_string(), operator, values })
    }

    fn render(&self) -> String {
        let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let joined = sorted.join(",");
        match self.operator {
            Operator::Equals => format!("{}={joined}", self.key),
            Operator::In => format!("{} in ({joined})", self.key),
            Operator::NotIn => format!("{} notin ({joined})", self.key),
            Operator::Exists => self.key.clone(),
            Operator::DoesNotExist => format!("!{}", self.key),
        }
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name part.
fn is_qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_part(name),
        None => is_name_part(key),
    }
}

fn is_name_part(s: &str) -> bool {
    s.len() <= 63 && is_alnum_bounded(s)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_name_part(s)
}

/// Non-empty, alphanumeric at both ends, `-`, `_` or `.` in between.
fn is_alnum_bounded(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            match (b.first(), b.last()) {
                (Some(first), Some(last)) => {
                    let lower_alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
                    lower_alnum(first) && lower_alnum(last) && b.iter().all(|c| lower_alnum(c) || *c == b'-')
                }
                _ => false,
            }
        })
}
