//! Field selectors: the `fieldSelector` query syntax (`a=b,c!=d`, `\` escapes in values), the
//! per-resource lists of selectable fields, and reading those fields from an object's JSON.

use std::fmt;

use serde_json::Value;

use super::names::go_quote;
use crate::status::StatusError;

/// A field term compares for equality (`=` or `==`) or inequality (`!=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    field: String,
    operator: FieldOperator,
    value: String,
}

impl FieldTerm {
    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn operator(&self) -> FieldOperator {
        self.operator
    }

    /// The value with escapes removed.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for FieldTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A field selector: the AND of its terms; no terms selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses the `fieldSelector` query syntax. Field names are not checked here; that
    /// depends on the resource, see [`FieldSelector::validate_for`].
    pub fn parse(s: &str) -> Result<Self, StatusError> {
        let mut parts = split_terms(s);
        // Upstream sorts the raw terms, which fixes the order terms print in.
        parts.sort_unstable();
        let mut terms = Vec::with_capacity(parts.len());
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, operator, raw)) = split_term(part) else {
                return Err(StatusError::bad_request(format!("invalid selector: '{s}'; can't understand '{part}'")));
            };
            let value = unescape_value(raw).map_err(StatusError::bad_request)?;
            terms.push(FieldTerm { field: field.to_string(), operator, value });
        }
        Ok(FieldSelector { terms })
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Checks every field against what the API server lets clients select on for this
    /// resource (`group` is "" for the core group), failing on the first unsupported one with
    /// upstream's message for that resource.
    pub fn validate_for(&self, group: &str, resource: &str) -> Result<(), StatusError> {
        let (fields, style) = selectable_fields(group, resource);
        self.check(|f| fields.contains(&f), style)
    }

    /// Like [`FieldSelector::validate_for`], for a custom resource: its CRD's
    /// `selectableFields` (JSON paths, with or without the leading `.`) plus `metadata.name`,
    /// and `metadata.namespace` unless the resource is cluster-scoped.
    pub fn validate_custom(&self, cluster_scoped: bool, selectable: &[&str]) -> Result<(), StatusError> {
        self.check(
            |f| {
                f == "metadata.name"
                    || (!cluster_scoped && f == "metadata.namespace")
                    || selectable.iter().any(|s| s.strip_prefix('.').unwrap_or(s) == f)
            },
            Unsupported::NotSupported,
        )
    }

    fn check(&self, allowed: impl Fn(&str) -> bool, style: Unsupported) -> Result<(), StatusError> {
        match self.terms.iter().find(|t| !allowed(&t.field)) {
            None => Ok(()),
            Some(t) => Err(StatusError::bad_request(style.message(&t.field))),
        }
    }

    /// Whether an object (as JSON) satisfies every term. Fields are read the way the API
    /// server builds its field sets: absent means "", booleans are "true"/"false".
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let actual = field_value(obj, &t.field);
            match t.operator {
                FieldOperator::Equals => actual == t.value,
                FieldOperator::NotEquals => actual != t.value,
            }
        })
    }

    /// Whether fields read through `get` satisfy every term; None when `get` does not know one
    /// of the fields (the caller then reads the object itself).
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Option<bool> {
        let mut all = true;
        for t in &self.terms {
            let actual = get(&t.field)?;
            all &= match t.operator {
                FieldOperator::Equals => actual == t.value,
                FieldOperator::NotEquals => actual != t.value,
            };
        }
        Some(all)
    }

    /// The value `field` must equal, if some `=` term pins it (e.g. `spec.nodeName` for a
    /// node agent's watch).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|t| t.field == field && t.operator == FieldOperator::Equals).map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// Which message a resource's field label conversion gives for an unsupported field.
#[derive(Debug, Clone, Copy)]
enum Unsupported {
    /// The default for resources without their own conversion.
    NotKnown,
    NotSupported,
    /// batch/v1 Job words it its own way.
    Job,
}

impl Unsupported {
    fn message(self, field: &str) -> String {
        match self {
            Unsupported::NotKnown => format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                go_quote(field)
            ),
            Unsupported::NotSupported => format!("field label not supported: {field}"),
            Unsupported::Job => format!("field label {} not supported for Job", go_quote(field)),
        }
    }
}

const META: &[&str] = &["metadata.name", "metadata.namespace"];

const PODS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
    // Old clients' name for spec.nodeName.
    "spec.host",
];

const CORE_EVENTS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

const EVENTS_V1: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

/// The fields upstream's field label conversion accepts per resource. Cluster-scoped kinds
/// with their own conversion (nodes, namespaces, CSRs) reject `metadata.namespace`; apps/v1
/// ReplicaSets have none, so `status.replicas` is rejected there as upstream does.
fn selectable_fields(group: &str, resource: &str) -> (&'static [&'static str], Unsupported) {
    use Unsupported::{Job, NotKnown, NotSupported};
    match (group, resource) {
        ("", "pods") => (PODS, NotSupported),
        ("", "nodes") => (&["metadata.name", "spec.unschedulable"], NotSupported),
        ("", "replicationcontrollers") => (&["metadata.name", "metadata.namespace", "status.replicas"], NotSupported),
        ("", "events") => (CORE_EVENTS, NotSupported),
        ("events.k8s.io", "events") => (EVENTS_V1, NotSupported),
        ("", "namespaces") => (&["status.phase", "metadata.name"], NotSupported),
        ("", "secrets") => (&["type", "metadata.namespace", "metadata.name"], NotSupported),
        ("", "services") => (&["metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"], NotSupported),
        ("batch", "jobs") => (&["metadata.name", "metadata.namespace", "status.successful"], Job),
        ("certificates.k8s.io", "certificatesigningrequests") => (&["metadata.name", "spec.signerName"], NotSupported),
        _ => (META, NotKnown),
    }
}

/// The fields a stored resource can be selected on (what a cache reads out of each object
/// once, so that selecting never has to decode it). events.k8s.io names of Event fields
/// (`regarding.*`, `reportingController`) are the same values under other names.
pub fn stored_fields(group: &str, resource: &str) -> &'static [&'static str] {
    selectable_fields(group, resource).0
}

/// The value a field selector compares for `field` of `obj` (absent reads as "").
pub fn value_of(obj: &Value, field: &str) -> String {
    field_value(obj, field)
}

/// A selectable field's value. A few fields are computed rather than read at their path;
/// events are accepted in both their core/v1 and events.k8s.io/v1 shapes.
fn field_value(obj: &Value, field: &str) -> String {
    let kind = obj.get("kind").and_then(Value::as_str);
    match field {
        "spec.host" => text(lookup(obj, "spec.nodeName")),
        // Pods report only their primary IP; the list form is accepted but never set.
        "status.podIP" => {
            let primary = obj.pointer("/status/podIPs/0/ip").or_else(|| lookup(obj, "status.podIP"));
            text(primary)
        }
        "status.podIPs" if typed_kind(kind, &["Pod"]) => String::new(),
        // Go bools and ints have zero values, so an absent field reads as false / 0.
        "spec.hostNetwork" | "spec.unschedulable" if typed_kind(kind, &["Pod", "Node"]) => {
            or_zero(text(lookup(obj, field)), "false")
        }
        "status.replicas" if typed_kind(kind, &["ReplicationController"]) => or_zero(text(lookup(obj, field)), "0"),
        // A Job's succeeded count is selected under another name.
        "status.successful" if typed_kind(kind, &["Job"]) => or_zero(text(lookup(obj, "status.succeeded")), "0"),
        // Events: "source" falls back to the reporting controller, as upstream computes it.
        "source" if typed_kind(kind, &["Event"]) => first_non_empty(
            obj,
            &["source.component", "deprecatedSource.component", "reportingComponent", "reportingController"],
        ),
        "reportingComponent" | "reportingController" if typed_kind(kind, &["Event"]) => {
            first_non_empty(obj, &["reportingComponent", "reportingController"])
        }
        _ => match event_reference_part(field) {
            Some(rest) if typed_kind(kind, &["Event"]) => {
                let core = format!("involvedObject.{rest}");
                let v1 = format!("regarding.{rest}");
                first_non_empty(obj, &[&core, &v1])
            }
            _ => text(lookup(obj, field)),
        },
    }
}

/// `kind` of `involvedObject.kind` / `regarding.kind`: the two names of an event's object.
fn event_reference_part(field: &str) -> Option<&str> {
    field.strip_prefix("involvedObject.").or_else(|| field.strip_prefix("regarding."))
}

fn or_zero(s: String, zero: &str) -> String {
    if s.is_empty() {
        zero.to_string()
    } else {
        s
    }
}

/// True when the object is one of `kinds`, or carries no kind at all.
fn typed_kind(kind: Option<&str>, kinds: &[&str]) -> bool {
    kind.is_none_or(|k| kinds.contains(&k))
}

fn lookup<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, key| v.get(key)).filter(|v| !v.is_null())
}

fn first_non_empty(obj: &Value, paths: &[&str]) -> String {
    paths.iter().map(|p| text(lookup(obj, p))).find(|s| !s.is_empty()).unwrap_or_default()
}

/// Scalars as the API server's field sets hold them; anything else reads as "".
fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Splits on commas not escaped by a backslash; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator. Field names have no escaping, so the first `!=`,
/// `==` or `=` wins; `==` is tried before `=` so no `=` is left on the value.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] =
        [("!=", FieldOperator::NotEquals), ("==", FieldOperator::Equals), ("=", FieldOperator::Equals)];
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        OPERATORS.iter().find(|(op, _)| rest.starts_with(op)).map(|(op, kind)| (&term[..i], *kind, &rest[op.len()..]))
    })
}

/// Undoes `\\`, `\,` and `\=`; a bare `,` or `=` or any other escape is an error.
fn unescape_value(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(format!("invalid field selector: invalid escape sequence: \\{c}"));
            }
            out.push(c);
            escaped = false;
        } else {
            match c {
                '\\' => escaped = true,
                // Upstream prints the rune as its code point number.
                ',' | '=' => return Err(format!("invalid field selector: unescaped character in value: {}", c as u32)),
                c => out.push(c),
            }
        }
    }
    if escaped {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap()
    }

    fn pod(node: Option<&str>, phase: &str) -> Value {
        let mut p = json!({
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"restartPolicy": "Always"},
            "status": {"phase": phase, "podIPs": [{"ip": "10.0.0.7"}]}
        });
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    }

    #[test]
    fn parses_operators_and_sorts_terms() {
        let s = sel("status.phase!=Running,metadata.name==web,spec.nodeName=n1");
        let terms: Vec<(&str, FieldOperator, &str)> =
            s.terms().iter().map(|t| (t.field(), t.operator(), t.value())).collect();
        assert_eq!(
            terms,
            vec![
                ("metadata.name", FieldOperator::Equals, "web"),
                ("spec.nodeName", FieldOperator::Equals, "n1"),
                ("status.phase", FieldOperator::NotEquals, "Running"),
            ]
        );
        assert_eq!(s.to_string(), "metadata.name=web,spec.nodeName=n1,status.phase!=Running");
        assert!(sel("").is_empty());
        assert!(sel(",,").is_empty());
    }

    #[test]
    fn escapes_round_trip() {
        let s = sel(r"metadata.name=a\,b\=c\\d,type=x");
        assert_eq!(s.terms()[0].value(), r"a,b=c\d");
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d,type=x");
        assert_eq!(FieldSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn parse_errors_read_like_upstream() {
        let e = FieldSelector::parse("a=b,nonsense").unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.message, "invalid selector: 'a=b,nonsense'; can't understand 'nonsense'");
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().message,
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\x").unwrap_err().message,
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\").unwrap_err().message,
            r"invalid field selector: invalid escape sequence: \"
        );
    }

    #[test]
    fn first_operator_splits_the_term() {
        let s = sel(r"a!=b\=c");
        assert_eq!(s.terms()[0].field(), "a");
        assert_eq!(s.terms()[0].operator(), FieldOperator::NotEquals);
        assert_eq!(s.terms()[0].value(), "b=c");
        assert_eq!(sel("a!b=c").terms()[0].field(), "a!b");
        assert!(FieldSelector::parse("a!=b==c").is_err());
        assert_eq!(sel("x==").terms()[0].value(), "");
    }

    #[test]
    fn pod_fields_validate_and_match() {
        let s = sel("spec.nodeName=n1,status.phase=Running,spec.restartPolicy=Always");
        s.validate_for("", "pods").unwrap();
        assert!(s.matches(&pod(Some("n1"), "Running")));
        assert!(!s.matches(&pod(Some("n2"), "Running")));
        assert!(!s.matches(&pod(Some("n1"), "Pending")));
        let ip = sel("status.podIP=10.0.0.7");
        assert!(ip.matches(&pod(None, "Pending")));
        let host = sel("spec.host=n1");
        host.validate_for("", "pods").unwrap();
        assert!(host.matches(&pod(Some("n1"), "Running")));
    }

    #[test]
    fn empty_node_name_selects_unscheduled_pods() {
        let s = sel("spec.nodeName=");
        s.validate_for("", "pods").unwrap();
        assert!(s.matches(&pod(None, "Pending")));
        assert!(!s.matches(&pod(Some("n1"), "Running")));
        let scheduled = sel("spec.nodeName!=");
        assert!(scheduled.matches(&pod(Some("n1"), "Running")));
        assert!(!scheduled.matches(&pod(None, "Pending")));
    }

    #[test]
    fn booleans_default_to_false() {
        let s = sel("spec.hostNetwork=false");
        s.validate_for("", "pods").unwrap();
        assert!(s.matches(&pod(None, "Pending")));
        let mut host = pod(None, "Pending");
        host["spec"]["hostNetwork"] = json!(true);
        assert!(sel("spec.hostNetwork=true").matches(&host));
        assert!(!s.matches(&host));
        let node = json!({"kind": "Node", "metadata": {"name": "n1"}, "spec": {}});
        let cordoned = sel("spec.unschedulable=true");
        cordoned.validate_for("", "nodes").unwrap();
        assert!(!cordoned.matches(&node));
        assert!(sel("spec.unschedulable=false").matches(&node));
    }

    #[test]
    fn unsupported_fields_are_rejected_per_resource() {
        let e = sel("foo=bar").validate_for("", "pods").unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.reason, "BadRequest");
        assert_eq!(e.message, "field label not supported: foo");
        let only_metadata = "is not a known field selector: only \"metadata.name\", \"metadata.namespace\"";
        for (selector, group, resource, message) in [
            ("spec.replicas=1", "apps", "deployments", format!("\"spec.replicas\" {only_metadata}")),
            ("status.replicas=1", "apps", "replicasets", format!("\"status.replicas\" {only_metadata}")),
            ("status.active=1", "batch", "jobs", "field label \"status.active\" not supported for Job".to_string()),
            ("metadata.namespace=x", "", "nodes", "field label not supported: metadata.namespace".to_string()),
        ] {
            assert_eq!(sel(selector).validate_for(group, resource).unwrap_err().message, message, "{selector}");
        }
        assert!(sel("metadata.name=a,metadata.namespace=b").validate_for("", "configmaps").is_ok());
        assert!(sel("type=kubernetes.io/tls").validate_for("", "secrets").is_ok());
        assert!(sel("status.phase=Active").validate_for("", "namespaces").is_ok());
        assert!(sel("spec.clusterIP=None,spec.type=ClusterIP").validate_for("", "services").is_ok());
        assert!(sel("status.replicas=0").validate_for("", "replicationcontrollers").is_ok());
        assert!(sel("spec.signerName=x").validate_for("certificates.k8s.io", "certificatesigningrequests").is_ok());
        assert!(sel("type=Warning").validate_for("", "secrets").is_ok());
    }

    #[test]
    fn generic_fields_match() {
        let secret = json!({"kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}, "type": "Opaque"});
        assert!(sel("type=Opaque,metadata.namespace=ns").matches(&secret));
        assert!(sel("metadata.namespace!=default").matches(&secret));
        let svc = json!({"kind": "Service", "spec": {"clusterIP": "None", "type": "ClusterIP"}});
        assert!(sel("spec.clusterIP=None").matches(&svc));
        let ns = json!({"kind": "Namespace", "metadata": {"name": "x"}, "status": {"phase": "Terminating"}});
        assert!(sel("status.phase=Terminating").matches(&ns));
        // Cluster-scoped objects have no namespace, which reads as "".
        assert!(sel("metadata.namespace=").matches(&ns));
    }

    #[test]
    fn counts_default_to_zero() {
        let rc = json!({"kind": "ReplicationController", "status": {}});
        assert!(sel("status.replicas=0").matches(&rc));
        let job = json!({"kind": "Job", "status": {"succeeded": 1}});
        sel("status.successful=1").validate_for("batch", "jobs").unwrap();
        assert!(sel("status.successful=1").matches(&job));
        assert!(sel("status.successful=0").matches(&json!({"kind": "Job"})));
    }

    #[test]
    fn event_fields_in_both_shapes() {
        let core = json!({
            "kind": "Event",
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"},
            "reason": "Scheduled",
            "type": "Normal",
            "source": {"component": "default-scheduler"},
            "reportingComponent": "default-scheduler"
        });
        let s = sel(
            "involvedObject.kind=Pod,involvedObject.name=web,reason=Scheduled,source=default-scheduler,type=Normal",
        );
        s.validate_for("", "events").unwrap();
        assert!(s.matches(&core));
        assert!(sel("reportingComponent=default-scheduler").matches(&core));

        let v1 = json!({
            "kind": "Event",
            "apiVersion": "events.k8s.io/v1",
            "regarding": {"kind": "Pod", "name": "web"},
            "reason": "Pulled",
            "reportingController": "kubelet"
        });
        let s = sel("regarding.kind=Pod,regarding.name=web,reportingController=kubelet,source=kubelet");
        s.validate_for("events.k8s.io", "events").unwrap();
        assert!(s.matches(&v1));
        // Without source.component, "source" falls back to the reporting controller.
        assert!(sel("involvedObject.name=web,source=kubelet").matches(&v1));
        assert_eq!(
            sel("involvedObject.name=web").validate_for("events.k8s.io", "events").unwrap_err().message,
            "field label not supported: involvedObject.name"
        );
    }

    #[test]
    fn custom_resources() {
        let s = sel("spec.color=blue,metadata.namespace=ns");
        s.validate_custom(false, &[".spec.color"]).unwrap();
        assert_eq!(
            s.validate_custom(true, &[".spec.color"]).unwrap_err().message,
            "field label not supported: metadata.namespace"
        );
        let obj = json!({"kind": "Widget", "metadata": {"namespace": "ns"}, "spec": {"color": "blue", "size": 3}});
        assert!(s.matches(&obj));
        assert!(sel("spec.size=3").matches(&obj));
    }

    #[test]
    fn exact_match_and_everything() {
        let s = sel("spec.nodeName=n1,status.phase!=Failed");
        assert_eq!(s.requires_exact_match("spec.nodeName"), Some("n1"));
        assert_eq!(s.requires_exact_match("status.phase"), None);
        assert!(FieldSelector::everything().matches(&json!({})));
        assert_eq!(FieldSelector::everything().to_string(), "");
    }
}
