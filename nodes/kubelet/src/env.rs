//! A container's environment, as the kubelet makes it: `envFrom` sources first, then `env` in
//! order with `$(VAR)` expansion against what is already defined, values from the pod's own
//! fields (downward API), its resources, ConfigMaps and Secrets. A missing required source is
//! a `CreateContainerConfigError`, retried on the next sync.

use crate::objects::ObjectSource;
use kubus_apimachinery::validation::parse_quantity;
use serde_json::Value;

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
    pub pod: &'a Value,
    pub pod_ips: &'a [String],
    pub host_ip: &'a str,
    /// The node's capacity, for resourceFieldRef of a container without a limit.
    pub node_allocatable: &'a Value,
}

/// Resolves `container`'s environment; `base` is the image's (overridden by the pod's).
pub async fn resolve(
    facts: &PodFacts<'_>,
    container: &Value,
    base: &[(String, String)],
    extra: &[(String, String)],
    source: &dyn ObjectSource,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = facts.pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let mut env: Vec<(String, String)> = base.to_vec();
    for (k, v) in extra {
        set(&mut env, k, v.clone());
    }
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or("");
        let (kind, r) = if from["configMapRef"].is_object() {
            ("configmap", &from["configMapRef"])
        } else if from["secretRef"].is_object() {
            ("secret", &from["secretRef"])
        } else {
            continue;
        };
        let name = r["name"].as_str().unwrap_or("");
        let optional = r["optional"].as_bool().unwrap_or(false);
        match fetch(source, kind, ns, name).await? {
            Some(obj) => {
                for (k, v) in data_of(kind, &obj) {
                    // Upstream skips keys that are not valid variable names (with an event).
                    if is_env_name(&format!("{prefix}{k}")) {
                        set(&mut env, &format!("{prefix}{k}"), v);
                    }
                }
            }
            None if optional => {}
            None => return Err(EnvError::SourceNotFound { kind, name: name.to_string() }),
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let Some(name) = var["name"].as_str() else { continue };
        let value = if let Some(v) = var["value"].as_str() {
            Some(expand(v, &env))
        } else if let Some(from) = var.get("valueFrom") {
            value_from(facts, container, from, ns, source).await?
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            set(&mut env, name, value);
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

async fn fetch(source: &dyn ObjectSource, kind: &'static str, ns: &str, name: &str) -> Result<Option<Value>, EnvError> {
    source.get(kind, ns, name).await.map_err(|message| EnvError::Fetch { kind, name: name.to_string(), message })
}

/// The string data of a ConfigMap or Secret (Secret values are base64 in the API).
pub fn data_of(kind: &str, obj: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(m) = obj["data"].as_object() {
        for (k, v) in m {
            let s = v.as_str().unwrap_or("");
            let s =
                if kind == "secret" { String::from_utf8_lossy(&crate::volumes::b64(s)).into_owned() } else { s.into() };
            out.push((k.clone(), s));
        }
    }
    if kind == "secret" {
        if let Some(m) = obj["stringData"].as_object() {
            out.extend(m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())));
        }
    }
    out
}

async fn value_from(
    facts: &PodFacts<'_>,
    container: &Value,
    from: &Value,
    ns: &str,
    source: &dyn ObjectSource,
) -> Result<Option<String>, EnvError> {
    if let Some(f) = from["fieldRef"]["fieldPath"].as_str() {
        return field_value(facts, f).map(Some);
    }
    if from["resourceFieldRef"].is_object() {
        return resource_value(facts, container, &from["resourceFieldRef"]).map(Some);
    }
    for (kind, key_ref) in [("configmap", &from["configMapKeyRef"]), ("secret", &from["secretKeyRef"])] {
        if !key_ref.is_object() {
            continue;
        }
        let name = key_ref["name"].as_str().unwrap_or("");
        let key = key_ref["key"].as_str().unwrap_or("");
        let optional = key_ref["optional"].as_bool().unwrap_or(false);
        return match fetch(source, kind, ns, name).await? {
            Some(obj) => match data_of(kind, &obj).into_iter().find(|(k, _)| k == key) {
                Some((_, v)) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(EnvError::KeyNotFound {
                    kind,
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    key: key.to_string(),
                }),
            },
            None if optional => Ok(None),
            None => Err(EnvError::SourceNotFound { kind, name: name.to_string() }),
        };
    }
    Ok(Some(String::new()))
}

/// The downward API's fields (`fieldRef.fieldPath`).
pub fn field_value(facts: &PodFacts<'_>, path: &str) -> Result<String, EnvError> {
    let pod = facts.pod;
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")?;
        Some(rest.to_string())
    };
    Ok(match path {
        "metadata.name" => s(&pod["metadata"]["name"]),
        "metadata.namespace" => s(&pod["metadata"]["namespace"]),
        "metadata.uid" => s(&pod["metadata"]["uid"]),
        "spec.nodeName" => s(&pod["spec"]["nodeName"]),
        "spec.serviceAccountName" => s(&pod["spec"]["serviceAccountName"]),
        "status.hostIP" => facts.host_ip.to_string(),
        "status.hostIPs" => facts.host_ip.to_string(),
        "status.podIP" => facts.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => facts.pod_ips.join(","),
        "metadata.labels" | "metadata.annotations" => {
            let map = &pod["metadata"][path.trim_start_matches("metadata.")];
            let mut lines: Vec<String> = map
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("").replace('"', "\\\"")))
                .collect();
            lines.sort();
            lines.join("\n")
        }
        _ => {
            if let Some(k) = subscript("metadata.labels") {
                s(&pod["metadata"]["labels"][&k])
            } else if let Some(k) = subscript("metadata.annotations") {
                s(&pod["metadata"]["annotations"][&k])
            } else {
                return Err(EnvError::FieldPath(path.to_string()));
            }
        }
    })
}

/// `resourceFieldRef`: a container's request or limit (the node's allocatable for a missing
/// limit, as upstream), divided by `divisor` and rounded up.
pub fn resource_value(facts: &PodFacts<'_>, container: &Value, r: &Value) -> Result<String, EnvError> {
    let resource = r["resource"].as_str().unwrap_or("");
    let target = match r["containerName"].as_str() {
        Some(name) if !name.is_empty() => facts.pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .ok_or_else(|| EnvError::Resource(format!("container {name} not found")))?,
        _ => container,
    };
    let (section, res) =
        resource.split_once('.').ok_or_else(|| EnvError::Resource(format!("bad resource {resource}")))?;
    let quantity = target["resources"][section][res]
        .as_str()
        .map(String::from)
        .or_else(|| (section == "limits").then(|| facts.node_allocatable[res].as_str().map(String::from)).flatten())
        .unwrap_or_else(|| "0".to_string());
    let q = parse_quantity(&quantity).map_err(EnvError::Resource)?;
    let divisor =
        r["divisor"].as_str().map(parse_quantity).transpose().map_err(EnvError::Resource)?.filter(|d| !d.is_zero());
    let (num, den) = match divisor {
        Some(d) => (q.milli_value(), d.milli_value()),
        None if res == "cpu" => (q.milli_value(), 1000),
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
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "web"}},
            "spec": {"nodeName": "node1"}});
        let facts =
            PodFacts { pod: &pod, pod_ips: &["10.0.0.5".into()], host_ip: "1.2.3.4", node_allocatable: &json!({}) };
        assert_eq!(field_value(&facts, "metadata.labels['app']").unwrap(), "web");
        assert_eq!(field_value(&facts, "status.podIP").unwrap(), "10.0.0.5");
        assert_eq!(field_value(&facts, "spec.nodeName").unwrap(), "node1");
        assert!(field_value(&facts, "spec.bogus").is_err());
    }

    #[test]
    fn resource_fields() {
        let pod = json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]}});
        let c = pod["spec"]["containers"][0].clone();
        let facts = PodFacts { pod: &pod, pod_ips: &[], host_ip: "", node_allocatable: &json!({"cpu": "2"}) };
        let r = |v: Value| resource_value(&facts, &c, &v).unwrap();
        assert_eq!(r(json!({"resource": "limits.memory"})), (64 * 1024 * 1024).to_string());
        assert_eq!(r(json!({"resource": "limits.memory", "divisor": "1Mi"})), "64");
        assert_eq!(r(json!({"resource": "requests.cpu"})), "1");
        assert_eq!(r(json!({"resource": "requests.cpu", "divisor": "1m"})), "250");
        assert_eq!(r(json!({"resource": "limits.cpu"})), "2");
    }
}
