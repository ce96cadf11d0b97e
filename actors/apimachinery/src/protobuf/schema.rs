//! Table-driven description of the Kubernetes protobuf messages we decode.
//!
//! The tables live in `table_*.rs` as text in a small line-based syntax:
//!
//! ```text
//! package <alias> <full.package.name>     starts a package section
//! message <Name>                           starts a message in that package
//!   <number> <jsonName> <type> [flags]     one field
//! ```
//!
//! `<type>` is one of `string int32 int64 bool bytes double time microtime
//! quantity intstr rawjson`, a message name (`Name` in the current package or
//! `alias.Name`), `[]<type>` for repeated fields or `map[<key>]<value>`.
//!
//! Flags (taken from the Go struct definitions):
//! * `*` – the Go field is a pointer: presence on the wire means non-nil, so
//!   zero values (`0`, `false`, `""`, `{}`) are kept.
//! * `!` – the Go JSON tag has no `omitempty`: a zero scalar is still emitted,
//!   as Go's `encoding/json` would.
//! * `inline` – an embedded Go struct (`json:",inline"`): protobuf nests it as a
//!   message, JSON flattens its fields into the parent. Its json name is `-`.
//!
//! Runs of lines that several messages share are written once, as macros the
//! tables splice in with `concat!` (`object_message!`, `probe_condition_fields!`).

use std::collections::HashMap;
use std::sync::OnceLock;

use super::{
    table_apps, table_autoscaling, table_batch, table_core, table_core_pod, table_core_volume, table_meta, table_misc,
};

/// The message of a top-level object with a spec and a status of its own types:
/// `<Name>` with `1 metadata`, `2 spec <Name>Spec` and `3 status <Name>Status`.
macro_rules! object_message {
    ($name:literal) => {
        concat!(
            "message ",
            $name,
            "\n  1 metadata meta.ObjectMeta\n  2 spec ",
            $name,
            "Spec\n  3 status ",
            $name,
            "Status\n"
        )
    };
}

/// The fields of the conditions that record when they were last probed (pods, jobs).
macro_rules! probe_condition_fields {
    () => {
        r#"  1 type string !
  2 status string !
  3 lastProbeTime time
  4 lastTransitionTime time
  5 reason string
  6 message string
"#
    };
}

pub(super) use {object_message, probe_condition_fields};

/// Element type of a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Type {
    String,
    Int32,
    Int64,
    Bool,
    Bytes,
    Double,
    /// meta/v1 Time: `{1 seconds, 2 nanos}` → RFC 3339 with seconds precision.
    Time,
    /// meta/v1 MicroTime: like Time but with microsecond precision.
    MicroTime,
    /// resource.Quantity: `{1 string}` → string.
    Quantity,
    /// intstr.IntOrString: `{1 type, 2 intVal, 3 strVal}` → number or string.
    IntOrString,
    /// runtime.RawExtension / meta/v1 FieldsV1: `{1 raw}` → embedded JSON.
    RawJson,
    /// Nested message, by full name (e.g. `io.k8s.api.core.v1.PodSpec`).
    Message(String),
}

/// Cardinality of a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    Single,
    Repeated,
    /// Map with the given key type (entries are `{1 key, 2 value}`).
    Map(Type),
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) number: u32,
    pub(crate) json: String,
    pub(crate) ty: Type,
    pub(crate) shape: Shape,
    pub(crate) pointer: bool,
    pub(crate) omitempty: bool,
    pub(crate) inline: bool,
}

#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) name: String,
    /// Sorted by field number.
    pub(crate) fields: Vec<Field>,
}

impl Message {
    pub(crate) fn field(&self, number: u32) -> Option<&Field> {
        self.fields.binary_search_by_key(&number, |f| f.number).ok().map(|i| &self.fields[i])
    }
}

#[derive(Debug)]
pub(crate) struct Schema {
    messages: HashMap<String, Message>,
}

impl Schema {
    pub(crate) fn message(&self, name: &str) -> Option<&Message> {
        self.messages.get(name)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// `(apiVersion, kind, message)` of every top-level object we decode.
/// `DeleteOptions` is accepted under any apiVersion (see [`top_level_message`]).
pub(crate) const KINDS: &[(&str, &str, &str)] = &[
    ("v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"),
    ("v1", "Secret", "io.k8s.api.core.v1.Secret"),
    ("v1", "Namespace", "io.k8s.api.core.v1.Namespace"),
    ("v1", "ServiceAccount", "io.k8s.api.core.v1.ServiceAccount"),
    ("v1", "Service", "io.k8s.api.core.v1.Service"),
    ("v1", "Pod", "io.k8s.api.core.v1.Pod"),
    ("v1", "PodTemplate", "io.k8s.api.core.v1.PodTemplate"),
    ("v1", "Event", "io.k8s.api.core.v1.Event"),
    ("v1", "Node", "io.k8s.api.core.v1.Node"),
    ("v1", "Endpoints", "io.k8s.api.core.v1.Endpoints"),
    ("v1", "ResourceQuota", "io.k8s.api.core.v1.ResourceQuota"),
    ("v1", "LimitRange", "io.k8s.api.core.v1.LimitRange"),
    ("apps/v1", "Deployment", "io.k8s.api.apps.v1.Deployment"),
    ("apps/v1", "ReplicaSet", "io.k8s.api.apps.v1.ReplicaSet"),
    ("autoscaling/v1", "HorizontalPodAutoscaler", "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler"),
    ("batch/v1", "Job", "io.k8s.api.batch.v1.Job"),
    ("batch/v1", "CronJob", "io.k8s.api.batch.v1.CronJob"),
    ("policy/v1", "Eviction", "io.k8s.api.policy.v1.Eviction"),
    ("policy/v1", "PodDisruptionBudget", "io.k8s.api.policy.v1.PodDisruptionBudget"),
    ("coordination.k8s.io/v1", "Lease", "io.k8s.api.coordination.v1.Lease"),
    ("scheduling.k8s.io/v1", "PriorityClass", "io.k8s.api.scheduling.v1.PriorityClass"),
    ("events.k8s.io/v1", "Event", "io.k8s.api.events.v1.Event"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", "io.k8s.api.authorization.v1.SelfSubjectAccessReview"),
    ("authentication.k8s.io/v1", "TokenRequest", "io.k8s.api.authentication.v1.TokenRequest"),
    ("authentication.k8s.io/v1", "SelfSubjectReview", "io.k8s.api.authentication.v1.SelfSubjectReview"),
    ("authorization.k8s.io/v1", "SubjectAccessReview", "io.k8s.api.authorization.v1.SubjectAccessReview"),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview", "io.k8s.api.authorization.v1.LocalSubjectAccessReview"),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview", "io.k8s.api.authorization.v1.SelfSubjectRulesReview"),
    ("rbac.authorization.k8s.io/v1", "Role", "io.k8s.api.rbac.v1.Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "io.k8s.api.rbac.v1.ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "io.k8s.api.rbac.v1.RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "io.k8s.api.rbac.v1.ClusterRoleBinding"),
];

/// Full message name for a top-level `(apiVersion, kind)`, if supported.
pub(crate) fn top_level_message(api_version: &str, kind: &str) -> Option<String> {
    if kind == "DeleteOptions" && !api_version.is_empty() {
        return Some(format!("{META}.DeleteOptions"));
    }
    KINDS.iter().find(|(v, k, _)| *v == api_version && *k == kind).map(|(_, _, m)| (*m).to_string())
}

/// The parsed built-in schema (parsed once; the tables are static and covered
/// by tests, so a parse failure is a programming error).
pub(crate) fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        parse(&[
            table_meta::TEXT,
            table_core::TEXT,
            table_core_pod::TEXT,
            table_core_volume::TEXT,
            table_apps::TEXT,
            table_autoscaling::TEXT,
            table_batch::TEXT,
            table_misc::TEXT,
        ])
        .unwrap_or_else(|e| panic!("built-in protobuf schema is invalid: {e}"))
    })
}

/// Parses table texts into a schema and checks that every referenced
/// message exists.
pub(crate) fn parse(texts: &[&str]) -> Result<Schema, String> {
    // First pass: package aliases, so tables may reference each other.
    let mut aliases: HashMap<&str, &str> = HashMap::new();
    for text in texts {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"package") {
                let [_, alias, full] = words[..] else {
                    return Err(format!("bad package line {line:?}"));
                };
                aliases.insert(alias, full);
            }
        }
    }

    let mut messages: HashMap<String, Message> = HashMap::new();
    for text in texts {
        let mut package: Option<&str> = None;
        let mut current: Option<Message> = None;
        for (lineno, line) in text.lines().enumerate() {
            let ctx = |e: String| format!("line {}: {e} in {line:?}", lineno + 1);
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first() {
                None => continue,
                Some(&"package") => {
                    finish(&mut messages, current.take())?;
                    package = Some(words[2]);
                }
                Some(&"message") => {
                    finish(&mut messages, current.take())?;
                    let pkg = package.ok_or_else(|| ctx("message before package".into()))?;
                    let [_, name] = words[..] else {
                        return Err(ctx("bad message line".into()));
                    };
                    current = Some(Message { name: format!("{pkg}.{name}"), fields: Vec::new() });
                }
                Some(_) => {
                    let pkg = package.ok_or_else(|| ctx("field before package".into()))?;
                    let msg = current.as_mut().ok_or_else(|| ctx("field before message".into()))?;
                    let field = parse_field(&words, pkg, &aliases).map_err(ctx)?;
                    msg.fields.push(field);
                }
            }
        }
        finish(&mut messages, current.take())?;
    }

    // Referential integrity.
    for msg in messages.values() {
        for f in &msg.fields {
            if let Type::Message(name) = &f.ty {
                if !messages.contains_key(name) {
                    return Err(format!("{}.{} references unknown message {name}", msg.name, f.json));
                }
            }
        }
    }
    for (_, _, name) in KINDS {
        if !messages.contains_key(*name) {
            return Err(format!("top-level message {name} missing"));
        }
    }
    if !messages.contains_key(&format!("{META}.DeleteOptions")) {
        return Err("DeleteOptions missing".into());
    }
    Ok(Schema { messages })
}

fn finish(messages: &mut HashMap<String, Message>, msg: Option<Message>) -> Result<(), String> {
    let Some(mut msg) = msg else { return Ok(()) };
    msg.fields.sort_by_key(|f| f.number);
    if msg.fields.windows(2).any(|w| w[0].number == w[1].number) {
        return Err(format!("{} has duplicate field numbers", msg.name));
    }
    let name = msg.name.clone();
    if messages.insert(name.clone(), msg).is_some() {
        return Err(format!("message {name} defined twice"));
    }
    Ok(())
}

fn parse_field(words: &[&str], pkg: &str, aliases: &HashMap<&str, &str>) -> Result<Field, String> {
    let [num, json, ty, flags @ ..] = words else {
        return Err("field needs number, json name and type".into());
    };
    let number: u32 = num.parse().map_err(|_| format!("bad field number {num:?}"))?;
    if number == 0 || number >= (1 << 29) {
        return Err(format!("field number {number} out of range"));
    }
    let (shape, elem) = if let Some(rest) = ty.strip_prefix("map[") {
        let (key, value) = rest.split_once(']').ok_or_else(|| format!("bad map type {ty:?}"))?;
        let key = parse_type(key, pkg, aliases)?;
        if key != Type::String {
            return Err(format!("map key must be string in {ty:?}"));
        }
        (Shape::Map(key), parse_type(value, pkg, aliases)?)
    } else if let Some(rest) = ty.strip_prefix("[]") {
        (Shape::Repeated, parse_type(rest, pkg, aliases)?)
    } else {
        (Shape::Single, parse_type(ty, pkg, aliases)?)
    };
    let mut field =
        Field { number, json: (*json).to_string(), ty: elem, shape, pointer: false, omitempty: true, inline: false };
    for flag in flags {
        match *flag {
            "*" => field.pointer = true,
            "!" => field.omitempty = false,
            "inline" => field.inline = true,
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    let is_message = matches!(field.ty, Type::Message(_));
    if field.inline != (field.json == "-") {
        return Err("inline fields must be named '-' and vice versa".into());
    }
    if field.inline && (!is_message || field.shape != Shape::Single) {
        return Err("inline fields must be single messages".into());
    }
    Ok(field)
}

fn parse_type(word: &str, pkg: &str, aliases: &HashMap<&str, &str>) -> Result<Type, String> {
    Ok(match word {
        "string" => Type::String,
        "int32" => Type::Int32,
        "int64" => Type::Int64,
        "bool" => Type::Bool,
        "bytes" => Type::Bytes,
        "double" => Type::Double,
        "time" => Type::Time,
        "microtime" => Type::MicroTime,
        "quantity" => Type::Quantity,
        "intstr" => Type::IntOrString,
        "rawjson" => Type::RawJson,
        name => {
            let full = match name.split_once('.') {
                Some((alias, rest)) => {
                    let p = aliases.get(alias).ok_or_else(|| format!("unknown package alias {alias:?}"))?;
                    format!("{p}.{rest}")
                }
                None => format!("{pkg}.{name}"),
            };
            if !name.rsplit('.').next().is_some_and(|n| n.starts_with(|c: char| c.is_ascii_uppercase())) {
                return Err(format!("unknown type {word:?}"));
            }
            Type::Message(full)
        }
    })
}
