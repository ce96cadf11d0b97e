//! Authorization: whether a user may do what a request asks, as upstream's authorizer chain.
//!
//! [`Attributes`] are what a request asks (upstream's RequestInfo and authorizer.Attributes),
//! [`Authorizer`] answers with a [`Decision`]; the API server's chain is [`Union`] of the
//! privileged-group authorizer (`system:masters` may do anything) and [`rbac`]. [`forbidden`]
//! is upstream's 403. [`escalation`] stops a user from granting what they do not hold,
//! [`bootstrap`] reconciles the default roles at start, [`review`] serves the access reviews.

pub mod bootstrap;
pub mod controller_roles;
pub mod escalation;
pub mod node;
pub mod rbac;
pub mod review;

use crate::authn::{UserInfo, SYSTEM_PRIVILEGED_GROUP};
use crate::request::{ApiRequest, Query, Route};
use kubus_apimachinery::StatusError;

/// What a request asks to do (upstream's authorizer.Attributes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub user: UserInfo,
    pub verb: String,
    /// A request on a resource (as opposed to a non-resource path such as `/healthz`).
    pub resource_request: bool,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The path of a non-resource request.
    pub path: String,
}

impl Attributes {
    pub fn resource(user: &UserInfo, verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: namespace.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: name.into(),
            ..Default::default()
        }
    }
    pub fn non_resource(user: &UserInfo, verb: &str, path: &str) -> Self {
        Attributes { user: user.clone(), verb: verb.into(), path: path.into(), ..Default::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
    /// Not decided: the next authorizer in the chain asks; at the end it is a denial.
    NoOpinion(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(r) | Decision::Deny(r) | Decision::NoOpinion(r) => r,
        }
    }
}

pub trait Authorizer: Send + Sync {
    fn authorize(&self, a: &Attributes) -> Decision;
    /// Its `type` and `name` in `apiserver_authorization_decisions_total` (upstream's).
    fn metric_labels(&self) -> [&'static str; 2] {
        ["RBAC", "rbac"]
    }
}

/// Upstream's privileged-group authorizer: members of `system:masters` may do anything.
pub struct PrivilegedGroup;

impl Authorizer for PrivilegedGroup {
    fn authorize(&self, a: &Attributes) -> Decision {
        if a.user.in_group(SYSTEM_PRIVILEGED_GROUP) {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}

/// Authorizers asked in order until one decides (upstream's union authorizer).
pub struct Union(pub Vec<Box<dyn Authorizer>>);

impl Union {
    /// The decision, and the metric labels of the authorizer that made it (the last one's
    /// when none did).
    pub fn decide(&self, a: &Attributes) -> (Decision, [&'static str; 2]) {
        let mut reasons = Vec::new();
        for z in &self.0 {
            match z.authorize(a) {
                Decision::NoOpinion(r) => {
                    if !r.is_empty() {
                        reasons.push(r)
                    }
                }
                d => return (d, z.metric_labels()),
            }
        }
        let last = self.0.last().map_or(["RBAC", "rbac"], |z| z.metric_labels());
        (Decision::NoOpinion(reasons.join("\n")), last)
    }
}

impl Authorizer for Union {
    fn authorize(&self, a: &Attributes) -> Decision {
        self.decide(a).0
    }
}

/// The API server's chain over its watch cache: the privileged group, the Node authorizer,
/// then RBAC (upstream's `--authorization-mode=Node,RBAC`).
pub fn cluster_chain(cache: crate::cache::WatchCache) -> Union {
    Union(vec![
        Box::new(PrivilegedGroup),
        Box::new(node::NodeAuthorizer::new(cache.clone())),
        Box::new(rbac::Rbac { source: cache }),
    ])
}

/// The privileged group, then RBAC over `source`.
pub fn chain<S: rbac::RoleSource + 'static>(source: S) -> Union {
    Union(vec![Box::new(PrivilegedGroup), Box::new(rbac::Rbac { source })])
}

/// The attributes of a request as upstream's RequestInfoFactory reads its path: the verb
/// from the method (list/watch/deletecollection for collections), the namespace (a namespace
/// is in itself), and a name from a `metadata.name` field selector on lists and watches.
/// `r` and `q` are the request's route and query, parsed once by the handler.
pub fn request_attributes(user: &UserInfo, req: &ApiRequest, r: &Route, q: &Query) -> Attributes {
    let p = match r {
        Route::Resource(p) => p,
        _ => {
            let verb = match req.method.as_str() {
                "HEAD" => "get".to_string(),
                m => m.to_ascii_lowercase(),
            };
            return Attributes::non_resource(user, &verb, &req.path);
        }
    };
    let mut name = p.name.clone().unwrap_or_default();
    let verb = match (req.method.as_str(), p.name.is_some()) {
        ("GET" | "HEAD", _) if q.flag("watch") => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => return Attributes::non_resource(user, &m.to_ascii_lowercase(), &req.path),
    };
    if matches!(verb, "list" | "watch") {
        if let Some(n) = q.get("fieldSelector").and_then(single_name) {
            name = n;
        }
    }
    let namespace = match (&p.namespace, p.resource.as_str(), &p.name) {
        (Some(ns), _, _) => ns.clone(),
        (None, "namespaces", Some(n)) => n.clone(),
        _ => String::new(),
    };
    Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        namespace,
        api_group: p.group.clone(),
        api_version: p.version.clone(),
        resource: p.resource.clone(),
        subresource: p.subresource.clone().unwrap_or_default(),
        name,
        path: req.path.clone(),
    }
}

/// The name a `metadata.name=x` (or `==`) field selector narrows a list to.
fn single_name(selector: &str) -> Option<String> {
    if selector.contains(',') {
        return None;
    }
    let rest = selector.strip_prefix("metadata.name")?;
    let v = rest.strip_prefix("==").or_else(|| rest.strip_prefix('='))?;
    (!v.is_empty()).then(|| v.to_string())
}

/// Upstream's 403 for a refused request: `pods is forbidden: User "alice" cannot list
/// resource "pods" in API group "" in the namespace "team-a"`.
pub fn forbidden(a: &Attributes, reason: &str) -> StatusError {
    let mut msg = if !a.resource_request {
        format!("User {:?} cannot {} path {:?}", a.user.name, a.verb, a.path)
    } else {
        let resource =
            if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
        if a.namespace.is_empty() {
            format!(
                "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
                a.user.name, a.verb, resource, a.api_group
            )
        } else {
            format!(
                "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
                a.user.name, a.verb, resource, a.api_group, a.namespace
            )
        }
    };
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    StatusError::forbidden(&a.api_group, &a.resource, &a.name, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::route;

    fn req(method: &str, path: &str, query: &str) -> ApiRequest {
        ApiRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            content_type: None,
            accept: None,
            body: vec![],
            user_agent: String::new(),
        }
    }

    fn request_attributes(user: &UserInfo, r: &ApiRequest) -> Attributes {
        super::request_attributes(user, r, &route(&r.path), &Query::parse(&r.query))
    }

    #[test]
    fn attributes_of_requests() {
        let u = UserInfo::new("alice", &[]);
        let a = request_attributes(&u, &req("GET", "/api/v1/namespaces/team-a/pods", ""));
        assert_eq!((a.verb.as_str(), a.namespace.as_str(), a.resource.as_str()), ("list", "team-a", "pods"));
        let a = request_attributes(&u, &req("GET", "/api/v1/namespaces/team-a/pods", "watch=true"));
        assert_eq!(a.verb, "watch");
        let a = request_attributes(&u, &req("GET", "/api/v1/pods", "fieldSelector=metadata.name%3Dweb"));
        assert_eq!((a.verb.as_str(), a.name.as_str(), a.namespace.as_str()), ("list", "web", ""));
        let a = request_attributes(&u, &req("GET", "/api/v1/namespaces/team-a", ""));
        assert_eq!((a.verb.as_str(), a.namespace.as_str(), a.name.as_str()), ("get", "team-a", "team-a"));
        let a = request_attributes(&u, &req("DELETE", "/apis/apps/v1/namespaces/x/deployments", ""));
        assert_eq!((a.verb.as_str(), a.api_group.as_str()), ("deletecollection", "apps"));
        let a = request_attributes(&u, &req("PUT", "/apis/apps/v1/namespaces/x/deployments/d/scale", ""));
        assert_eq!((a.verb.as_str(), a.subresource.as_str(), a.name.as_str()), ("update", "scale", "d"));
        let a = request_attributes(&u, &req("GET", "/healthz", ""));
        assert!(!a.resource_request);
        assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", "/healthz"));
    }

    #[test]
    fn forbidden_messages_as_upstream() {
        let u = UserInfo::new("alice", &[]);
        let e = forbidden(&Attributes::resource(&u, "list", "", "pods", "team-a", ""), "");
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team-a""#
        );
        let e = forbidden(&Attributes::resource(&u, "get", "", "nodes", "", "n1"), "");
        assert_eq!(
            e.message,
            r#"nodes "n1" is forbidden: User "alice" cannot get resource "nodes" in API group "" at the cluster scope"#
        );
        let e = forbidden(&Attributes::resource(&u, "create", "apps", "deployments/scale", "x", "d"), "");
        assert_eq!(
            e.message,
            r#"deployments.apps "d" is forbidden: User "alice" cannot create resource "deployments/scale" in API group "apps" in the namespace "x""#
        );
        let e = forbidden(&Attributes::non_resource(&u, "get", "/metrics"), "");
        assert_eq!(e.message, r#"forbidden: User "alice" cannot get path "/metrics""#);
        assert_eq!(e.code, 403);
    }
}
