//! Object keys and their NATS subjects.
//!
//! A subject token may not contain `.`, `*`, `>` or whitespace, and Kubernetes names may hold
//! dots (events, `system:node:x` style names, API groups). Every token is therefore encoded:
//! `[A-Za-z0-9-]` stays, any other byte becomes `_` and two lowercase hex digits. The encoding
//! is reversible and never yields a lone `_`, which stands for "no namespace".

use std::fmt;

/// Where one object lives: API group ("" for core), plural resource, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// A set of keys: one resource type, optionally narrowed to a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
}

const CORE_GROUP_TOKEN: &str = "core";
const NO_NAMESPACE_TOKEN: &str = "_";

pub fn encode_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push('_');
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

pub fn decode_token(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn group_token(group: &str) -> String {
    if group.is_empty() {
        CORE_GROUP_TOKEN.to_string()
    } else {
        encode_token(group)
    }
}

fn namespace_token(ns: &Option<String>) -> String {
    match ns {
        Some(ns) if !ns.is_empty() => encode_token(ns),
        _ => NO_NAMESPACE_TOKEN.to_string(),
    }
}

impl Key {
    pub fn new(group: &str, resource: &str, namespace: Option<&str>, name: &str) -> Self {
        Key {
            group: group.to_string(),
            resource: resource.to_string(),
            namespace: namespace.filter(|n| !n.is_empty()).map(str::to_string),
            name: name.to_string(),
        }
    }

    /// `<root>.<group>.<resource>.<namespace>.<name>`
    pub fn subject(&self, root: &str) -> String {
        format!(
            "{root}.{}.{}.{}.{}",
            group_token(&self.group),
            encode_token(&self.resource),
            namespace_token(&self.namespace),
            encode_token(&self.name)
        )
    }

    /// Parses a subject made by [`Key::subject`] with the same root.
    pub fn from_subject(root: &str, subject: &str) -> Option<Key> {
        let rest = subject.strip_prefix(root)?.strip_prefix('.')?;
        let mut parts = rest.split('.');
        let group = parts.next()?;
        let resource = parts.next()?;
        let ns = parts.next()?;
        let name = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Key {
            group: if group == CORE_GROUP_TOKEN { String::new() } else { decode_token(group)? },
            resource: decode_token(resource)?,
            namespace: if ns == NO_NAMESPACE_TOKEN { None } else { Some(decode_token(ns)?) },
            name: decode_token(name)?,
        })
    }

    pub fn prefix(&self) -> KeyPrefix {
        KeyPrefix { group: self.group.clone(), resource: self.resource.clone(), namespace: self.namespace.clone() }
    }
}

impl KeyPrefix {
    pub fn new(group: &str, resource: &str, namespace: Option<&str>) -> Self {
        KeyPrefix {
            group: group.to_string(),
            resource: resource.to_string(),
            namespace: namespace.filter(|n| !n.is_empty()).map(str::to_string),
        }
    }

    /// The wildcard subject matching every key under this prefix.
    pub fn filter(&self, root: &str) -> String {
        let ns = match &self.namespace {
            Some(ns) => encode_token(ns),
            None => "*".to_string(),
        };
        format!("{root}.{}.{}.{ns}.*", group_token(&self.group), encode_token(&self.resource))
    }

    pub fn contains(&self, key: &Key) -> bool {
        key.group == self.group
            && key.resource == self.resource
            && (self.namespace.is_none() || self.namespace == key.namespace)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gr =
            if self.group.is_empty() { self.resource.clone() } else { format!("{}.{}", self.resource, self.group) };
        match &self.namespace {
            Some(ns) => write!(f, "{gr}/{ns}/{}", self.name),
            None => write!(f, "{gr}/{}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_names() {
        for name in ["web", "pod.17a2b3c4d5e6", "system:node:worker-1", "a_b", "x*y>z", "ümlaut", "_"] {
            let k = Key::new("coordination.k8s.io", "leases", Some("kube-node-lease"), name);
            let s = k.subject("kubus.obj");
            assert_eq!(s.split('.').count(), 6, "{s}");
            assert_eq!(Key::from_subject("kubus.obj", &s), Some(k));
        }
    }

    #[test]
    fn cluster_scope_and_core_group() {
        let k = Key::new("", "nodes", None, "n1");
        assert_eq!(k.subject("r"), "r.core.nodes._.n1");
        assert_eq!(Key::from_subject("r", "r.core.nodes._.n1"), Some(k));
    }

    #[test]
    fn prefix_filters() {
        let p = KeyPrefix::new("apps", "deployments", Some("default"));
        assert_eq!(p.filter("r"), "r.apps.deployments.default.*");
        assert_eq!(KeyPrefix::new("", "pods", None).filter("r"), "r.core.pods.*.*");
    }
}
