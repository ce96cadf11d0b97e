//! A container's environment, as the kubelet makes it: `envFrom` sources first, then `env` in
//! order with `$(VAR)` expansion against what is already defined, values from the pod's own
//! fields (downward API), its resources, ConfigMaps and Secrets. A missing required source is
//! a `CreateContainerConfigError`, retried on the next sync.

use crate::objects::{ObjectSource, SourceKind, SourceObject};
use k8s_openapi::api::core::v1::{Container, EnvVarSource, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kubus_apimachinery::quantity::parse_quantity;
use kubus_apimachinery::{pod, ObjectExt};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvError {
    #[error("{kind} \"{name}\" not found")]
    SourceNotFound { kind: &'static str, name: String },
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound { kind: &'static str, namespace: String, name: String, key: String },
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    #[error("{0}")]
    Resource(String),
    #[error("could not read {kind} {name}: {message}")]
    Fetch { kind: &'static str, name: String, message: String },
}

/// Everything a container's variables may refer to besides ConfigMaps and Secrets.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ips: &'a [String],
    pub host_ip: &'a str,
    /// The node's capacity, for resourceFieldRef of a container without a limit.
    pub node_allocatable: &'a BTreeMap<String, ApiQuantity>,
}

/// Resolves `container`'s environment; `base` is the image's (overridden by the pod's).
pub async fn resolve(
    facts: &PodFacts<'_>,
    container: &Container,
    base: &[(String, String)],
    extra: &[(String, String)],
    source: &dyn ObjectSource,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = facts.pod.namespace_or_default();
    let mut env: Vec<(String, String)> = base.to_vec();
    for (k, v) in extra {
        set(&mut env, k, v.clone());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, name, optional) = if let Some(r) = &from.config_map_ref {
            (SourceKind::ConfigMap, r.name.as_str(), r.optional.unwrap_or(false))
        } else if let Some(r) = &from.secret_ref {
            (SourceKind::Secret, r.name.as_str(), r.optional.unwrap_or(false))
        } else {
            continue;
        };
        match fetch(source, kind, ns, name).await? {
            Some(obj) => {
                for (k, v) in obj.strings() {
                    // Upstream skips keys that are not valid variable names (with an event).
                    if is_env_name(&format!("{prefix}{k}")) {
                        set(&mut env, &format!("{prefix}{k}"), v);
                    }
                }
            }
            None if optional => {}
            None => return Err(EnvError::SourceNotFound { kind: kind.name(), name: name.to_string() }),
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(v) = &var.value {
            Some(expand(v, &env))
        } else if let Some(from) = &var.value_from {
            value_from(facts, container, from, ns, source).await?
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            set(&mut env, &var.name, value);
        }
    }
    Ok(env)
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(e) => e.1 = value,
        None => env.push((name.to_string(), value)),
    }
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with(|c: char| c.is_ascii_digit()) && s.chars().all(|c| c.is_ascii_graphic() && c != '=')
}

async fn fetch(
    source: &dyn ObjectSource,
    kind: SourceKind,
    ns: &str,
    name: &str,
) -> Result<Option<SourceObject>, EnvError> {
    source.get(kind, ns, name).await.map_err(|message| EnvError::Fetch {
        kind: kind.name(),
        name: name.to_string(),
        message,
    })
}

async fn value_from(
    facts: &PodFacts<'_>,
    container: &Container,
    from: &EnvVarSource,
    ns: &str,
    source: &dyn ObjectSource,
) -> Result<Option<String>, EnvError> {
    if let Some(f) = &from.field_ref {
        return field_value(facts, &f.field_path).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        return resource_value(facts, container, r).map(Some);
    }
    let key_ref = match (&from.config_map_key_ref, &from.secret_key_ref) {
        (Some(r), _) => Some((SourceKind::ConfigMap, &r.name, &r.key, r.optional)),
        (None, Some(r)) => Some((SourceKind::Secret, &r.name, &r.key, r.optional)),
        (None, None) => None,
    };
    let Some((kind, name, key, optional)) = key_ref else { return Ok(Some(String::new())) };
    let optional = optional.unwrap_or(false);
    match fetch(source, kind, ns, name).await? {
        Some(obj) => match obj.strings().into_iter().find(|(k, _)| k == key) {
            Some((_, v)) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(EnvError::KeyNotFound {
                kind: kind.name(),
                namespace: ns.to_string(),
                name: name.to_string(),
                key: key.to_string(),
            }),
        },
        None if optional => Ok(None),
        None => Err(EnvError::SourceNotFound { kind: kind.name(), name: name.to_string() }),
    }
}

/// `key="value"` lines of a label or annotation map, sorted, as the downward API writes them.
fn map_lines(map: &BTreeMap<String, String>) -> String {
    let mut lines: Vec<String> = map.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\""))).collect();
    lines.sort();
    lines.join("\n")
}

/// The downward API's fields (`fieldRef.fieldPath`).
pub fn field_value(facts: &PodFacts<'_>, path: &str) -> Result<String, EnvError> {
    let pod = facts.pod;
    let spec = pod::spec(pod);
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")?;
        Some(rest.to_string())
    };
    let text = |v: Option<&String>| v.cloned().unwrap_or_default();
    Ok(match path {
        "metadata.name" => pod.name().to_string(),
        "metadata.namespace" => pod.namespace().to_string(),
        "metadata.uid" => pod.uid().to_string(),
        "spec.nodeName" => text(spec.node_name.as_ref()),
        "spec.serviceAccountName" => text(spec.service_account_name.as_ref()),
        "status.hostIP" => facts.host_ip.to_string(),
        "status.hostIPs" => facts.host_ip.to_string(),
        "status.podIP" => facts.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => facts.pod_ips.join(","),
        "metadata.labels" => map_lines(pod.labels()),
        "metadata.annotations" => map_lines(pod.annotations()),
        _ => {
            if let Some(k) = subscript("metadata.labels") {
                text(pod.labels().get(&k))
            } else if let Some(k) = subscript("metadata.annotations") {
                text(pod.annotations().get(&k))
            } else {
                return Err(EnvError::FieldPath(path.to_string()));
            }
        }
    })
}

/// `resourceFieldRef`: a container's request or limit (the node's allocatable for a missing
/// limit, as upstream), divided by `divisor` and rounded up.
pub fn resource_value(
    facts: &PodFacts<'_>,
    container: &Container,
    r: &ResourceFieldSelector,
) -> Result<String, EnvError> {
    let resource = r.resource.as_str();
    let target = match r.container_name.as_deref() {
        Some(name) if !name.is_empty() => pod::spec(facts.pod)
            .containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| EnvError::Resource(format!("container {name} not found")))?,
        _ => container,
    };
    let (section, res) =
        resource.split_once('.').ok_or_else(|| EnvError::Resource(format!("bad resource {resource}")))?;
    let list = target.resources.as_ref().and_then(|r| match section {
        "limits" => r.limits.as_ref(),
        "requests" => r.requests.as_ref(),
        _ => None,
    });
    let quantity = list
        .and_then(|l| l.get(res))
        .or_else(|| (section == "limits").then(|| facts.node_allocatable.get(res)).flatten())
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".to_string());
    let q = parse_quantity(&quantity).map_err(EnvError::Resource)?;
    let divisor = r
        .divisor
        .as_ref()
        .map(|d| parse_quantity(&d.0))
        .transpose()
        .map_err(EnvError::Resource)?
        .filter(|d| !d.is_zero());
    let (num, den) = match divisor {
        Some(d) => (q.milli_value(), d.milli_value()),
        None => (q.milli_value(), 1000),
    };
    Ok(((num + den - 1) / den).to_string())
}

/// `$(VAR)` expansion as upstream: defined variables are substituted, undefined references
/// stay as written, `$$` is a literal `$`.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if bytes[i + 1] == b'(' {
                if let Some(end) = input[i + 2..].find(')') {
                    let name = &input[i + 2..i + 2 + end];
                    match env.iter().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&input[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn quantities(v: serde_json::Value) -> BTreeMap<String, ApiQuantity> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn expansion() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("a$", &env), "a$");
        assert_eq!(expand("é$(A", &env), "é$(A");
    }

    #[test]
    fn downward_fields() {
        let pod = pod(json!({"metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "web"}},
            "spec": {"nodeName": "node1", "containers": []}}));
        let alloc = BTreeMap::new();
        let facts = PodFacts { pod: &pod, pod_ips: &["10.0.0.5".into()], host_ip: "1.2.3.4", node_allocatable: &alloc };
        assert_eq!(field_value(&facts, "metadata.labels['app']").unwrap(), "web");
        assert_eq!(field_value(&facts, "status.podIP").unwrap(), "10.0.0.5");
        assert_eq!(field_value(&facts, "spec.nodeName").unwrap(), "node1");
        assert!(field_value(&facts, "spec.bogus").is_err());
    }

    #[test]
    fn resource_fields() {
        let pod = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]}}),
        );
        let c = pod::spec(&pod).containers[0].clone();
        let alloc = quantities(json!({"cpu": "2"}));
        let facts = PodFacts { pod: &pod, pod_ips: &[], host_ip: "", node_allocatable: &alloc };
        let r = |v: serde_json::Value| resource_value(&facts, &c, &serde_json::from_value(v).unwrap()).unwrap();
        assert_eq!(r(json!({"resource": "limits.memory"})), (64 * 1024 * 1024).to_string());
        assert_eq!(r(json!({"resource": "limits.memory", "divisor": "1Mi"})), "64");
        assert_eq!(r(json!({"resource": "requests.cpu"})), "1");
        assert_eq!(r(json!({"resource": "requests.cpu", "divisor": "1m"})), "250");
        assert_eq!(r(json!({"resource": "limits.cpu"})), "2");
    }
}
