//! Who a request is from: upstream's `user.Info` ([`UserInfo`]), set once per request by
//! [`authenticate`] from what the transport presented, then replaced by an impersonated user
//! when the request asks for one and may ([`impersonation`]).

pub mod impersonation;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Upstream's well-known group names (k8s.io/apiserver/pkg/authentication/user).
pub const SYSTEM_PRIVILEGED_GROUP: &str = "system:masters";
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";
pub const NODES_GROUP: &str = "system:nodes";
pub const KUBE_PROXY: &str = "system:kube-proxy";
pub const KUBE_CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
pub const KUBE_SCHEDULER: &str = "system:kube-scheduler";
/// ServiceAccount users are `system:serviceaccount:<namespace>:<name>`.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";

/// The identity a request runs as (upstream's user.Info).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The user as authentication.k8s.io/v1 UserInfo JSON (SelfSubjectReview, SubjectAccessReview).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"username": self.name});
        if !self.uid.is_empty() {
            v["uid"] = self.uid.clone().into();
        }
        if !self.groups.is_empty() {
            v["groups"] = serde_json::json!(self.groups);
        }
        if !self.extra.is_empty() {
            v["extra"] = serde_json::json!(self.extra);
        }
        v
    }
}

/// `(namespace, name)` of a ServiceAccount user name.
pub fn service_account_of(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// The groups every ServiceAccount of `namespace` is in.
pub fn service_account_groups(namespace: &str) -> [String; 2] {
    [SERVICE_ACCOUNTS_GROUP.to_string(), format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}")]
}

/// What a request presented to prove who it is, and who it asks to act as: the
/// `Authorization` and `Impersonate-*` headers (names lowercased), as each transport has them.
#[derive(Clone, Default)]
pub struct Presented {
    pub headers: Vec<(String, String)>,
}

/// Credentials never reach a log line: the Authorization value shows only its scheme.
impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(n, v)| match n.as_str() {
                "authorization" => (n.as_str(), format!("{} <redacted>", v.split(' ').next().unwrap_or_default())),
                _ => (n.as_str(), v.clone()),
            })
            .collect();
        f.debug_struct("Presented").field("headers", &shown).finish()
    }
}

impl Presented {
    /// Keeps the headers authentication and impersonation read.
    pub fn from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Presented {
        let headers = headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .filter(|(n, _)| n == "authorization" || n.starts_with("impersonate-"))
            .collect();
        Presented { headers }
    }

    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The local administrator, as the admin kubeconfig kubeadm writes identifies it.
pub fn cluster_admin() -> UserInfo {
    UserInfo::new("kubernetes-admin", &[SYSTEM_PRIVILEGED_GROUP, ALL_AUTHENTICATED])
}

/// Authenticates a request: the one place a request's identity comes from.
///
/// Stand-in until #13's authentication (client certificates, ServiceAccount tokens) lands: the
/// API port is not yet reachable with credentials, so a request over HTTP is the local
/// administrator, and so is a request from an internal component over NATS (the envelope
/// carries no credential yet). Replacing this function is all that authentication changes in
/// the request path; authorization already reads only the returned user.
pub fn authenticate(_presented: &Presented, _transport: &str) -> UserInfo {
    cluster_admin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_credentials_never_print() {
        let p = Presented::from_headers([
            ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.secret.sig"),
            ("Impersonate-User", "jane"),
            ("Accept", "application/json"),
        ]);
        let shown = format!("{p:?}");
        assert!(!shown.contains("eyJ") && !shown.contains("secret"), "{shown}");
        assert!(shown.contains("Bearer <redacted>") && shown.contains("jane"), "{shown}");
        assert!(!shown.contains("accept"), "only what authentication reads is kept: {shown}");
    }
}
