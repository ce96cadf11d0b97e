//! authorization.k8s.io/v1 access reviews and authentication.k8s.io/v1 SelfSubjectReview and
//! TokenReview: create-only, never stored, answered by the authorizer and the token
//! authenticator (what `kubectl auth can-i` and `kubectl auth whoami` ask, and what a webhook
//! or proxy asks of a token it was shown).

use super::rbac::{Rbac, RoleSource};
use super::{Attributes, Authorizer};
use crate::authn::{TokenAuthenticator, UserInfo};
use crate::request::{ApiResponse, ResourcePath};
use k8s_openapi::api::authentication::v1 as authn_v1;
use k8s_openapi::api::authorization::v1 as authz_v1;
use kubus_apimachinery::status::Cause;
use kubus_apimachinery::StatusError;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A review resource: create-only, answered here, listed in discovery with verbs ["create"].
pub struct ReviewResource {
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Its OpenAPI schema (the k8s-openapi type's) and the definition name it is filed under.
    pub schema: kubus_apimachinery::resource::SchemaFn,
    pub definition: &'static str,
}

const fn review(
    group: &'static str,
    resource: &'static str,
    singular: &'static str,
    kind: &'static str,
    schema: kubus_apimachinery::resource::SchemaFn,
    definition: &'static str,
) -> ReviewResource {
    ReviewResource { group, version: "v1", resource, singular, kind, namespaced: false, schema, definition }
}

/// The review resources served.
pub const REVIEWS: &[ReviewResource] = &[
    review(
        "authentication.k8s.io",
        "selfsubjectreviews",
        "selfsubjectreview",
        "SelfSubjectReview",
        |g| g.subschema_for::<authn_v1::SelfSubjectReview>(),
        "io.k8s.api.authentication.v1.SelfSubjectReview",
    ),
    review(
        "authentication.k8s.io",
        "tokenreviews",
        "tokenreview",
        "TokenReview",
        |g| g.subschema_for::<authn_v1::TokenReview>(),
        "io.k8s.api.authentication.v1.TokenReview",
    ),
    ReviewResource {
        namespaced: true,
        ..review(
            "authorization.k8s.io",
            "localsubjectaccessreviews",
            "localsubjectaccessreview",
            "LocalSubjectAccessReview",
            |g| g.subschema_for::<authz_v1::LocalSubjectAccessReview>(),
            "io.k8s.api.authorization.v1.LocalSubjectAccessReview",
        )
    },
    review(
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        |g| g.subschema_for::<authz_v1::SelfSubjectAccessReview>(),
        "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
    ),
    review(
        "authorization.k8s.io",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        "SelfSubjectRulesReview",
        |g| g.subschema_for::<authz_v1::SelfSubjectRulesReview>(),
        "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
    ),
    review(
        "authorization.k8s.io",
        "subjectaccessreviews",
        "subjectaccessreview",
        "SubjectAccessReview",
        |g| g.subschema_for::<authz_v1::SubjectAccessReview>(),
        "io.k8s.api.authorization.v1.SubjectAccessReview",
    ),
];

/// The verbs discovery lists for a review resource.
pub const VERBS: &[&str] = &["create"];

/// The review resource a path names, if it is one.
pub fn find(p: &ResourcePath) -> Option<&'static ReviewResource> {
    REVIEWS.iter().find(|r| r.group == p.group && r.version == p.version && r.resource == p.resource)
}

/// Whether a path is one of the review resources served here.
pub fn is_review(p: &ResourcePath) -> bool {
    find(p).is_some()
}

/// Answers a review created by `user`.
pub fn serve<S: RoleSource>(
    authz: &dyn Authorizer,
    rbac: &Rbac<S>,
    tokens: &dyn TokenAuthenticator,
    user: &UserInfo,
    method: &str,
    p: &ResourcePath,
    body: Value,
) -> Result<ApiResponse, StatusError> {
    let Some(review) = find(p) else {
        return Err(StatusError::route_not_found());
    };
    if method != "POST" || p.name.is_some() || p.namespace.is_some() != review.namespaced {
        return Err(StatusError::method_not_allowed());
    }
    let kind = review.kind;
    let mut out = json!({"kind": kind, "apiVersion": format!("{}/{}", p.group, p.version),
        "metadata": {"creationTimestamp": null}});
    if !body["spec"].is_null() {
        out["spec"] = body["spec"].clone();
    }
    let spec = &body["spec"];
    match kind {
        "SelfSubjectReview" => {
            out["status"] = json!({"userInfo": user.to_json()});
        }
        "TokenReview" => {
            out["status"] = token_review(tokens, spec);
        }
        "SelfSubjectRulesReview" => {
            let ns = spec["namespace"].as_str().unwrap_or_default();
            let rules = rbac.rules_for(user, ns);
            let resource_rules: Vec<Value> = rules
                .iter()
                .filter(|r| r.non_resource_urls.is_empty())
                .map(|r| {
                    let mut v = json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
                    if !r.resource_names.is_empty() {
                        v["resourceNames"] = json!(r.resource_names);
                    }
                    v
                })
                .collect();
            let non_resource_rules: Vec<Value> = rules
                .iter()
                .filter(|r| !r.non_resource_urls.is_empty())
                .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
                .collect();
            out["status"] =
                json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false});
        }
        _ => {
            let subject = match kind {
                "SelfSubjectAccessReview" => user.clone(),
                _ => subject_of(kind, spec)?,
            };
            let attrs = attributes_of(kind, &subject, spec, p.namespace.as_deref())?;
            let d = authz.authorize(&attrs);
            let mut status = json!({"allowed": d.allowed()});
            if !d.reason().is_empty() {
                status["reason"] = json!(d.reason());
            }
            if matches!(d, super::Decision::Deny(_)) {
                status["denied"] = json!(true);
            }
            out["status"] = status;
        }
    }
    Ok(ApiResponse::json(201, &out))
}

/// A TokenReview's status: who the token authenticates as and for which of the asked audiences
/// (the API's when none are asked), or why not, in upstream's terms.
fn token_review(tokens: &dyn TokenAuthenticator, spec: &Value) -> Value {
    let token = spec["token"].as_str().unwrap_or_default();
    let asked: Vec<&str> = spec["audiences"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let audiences = if asked.is_empty() { crate::authn::API_AUDIENCES.to_vec() } else { asked };
    // One check, whatever the number of audiences asked.
    let checked = if token.is_empty() { None } else { tokens.authenticate_token(token, &audiences) };
    match checked {
        Some((user, valid_for)) => json!({"authenticated": true, "user": user.to_json(), "audiences": valid_for}),
        None => json!({"user": {}, "error": "[invalid bearer token, service account token has been invalidated]"}),
    }
}

/// The user a SubjectAccessReview asks about.
fn subject_of(kind: &str, spec: &Value) -> Result<UserInfo, StatusError> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
    };
    let name = spec["user"].as_str().unwrap_or_default().to_string();
    let groups = strings(&spec["groups"]);
    if name.is_empty() && groups.is_empty() {
        return Err(StatusError::invalid(
            "authorization.k8s.io",
            kind,
            "",
            vec![Cause::invalid("spec.user", &json!(""), "at least one of user or group must be specified")],
        ));
    }
    let extra: BTreeMap<String, Vec<String>> =
        spec["extra"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect()).unwrap_or_default();
    Ok(UserInfo { name, uid: spec["uid"].as_str().unwrap_or_default().to_string(), groups, extra })
}

fn attributes_of(kind: &str, user: &UserInfo, spec: &Value, path_ns: Option<&str>) -> Result<Attributes, StatusError> {
    let (res, non_res) = (&spec["resourceAttributes"], &spec["nonResourceAttributes"]);
    let invalid = |field: &str, msg: &str| {
        StatusError::invalid("authorization.k8s.io", kind, "", vec![Cause::invalid(field, &Value::Null, msg)])
    };
    match (res.is_object(), non_res.is_object()) {
        (true, true) => {
            Err(invalid("spec.nonResourceAttributes", "cannot be specified in combination with resourceAttributes"))
        }
        (false, false) => Err(invalid(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        (false, true) => Ok(Attributes::non_resource(
            user,
            non_res["verb"].as_str().unwrap_or_default(),
            non_res["path"].as_str().unwrap_or_default(),
        )),
        (true, false) => {
            let s = |k: &str| res[k].as_str().unwrap_or_default();
            if let Some(ns) = path_ns {
                if s("namespace") != ns {
                    return Err(StatusError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {} {ns}",
                        s("namespace")
                    )));
                }
            }
            let mut a = Attributes::resource(user, s("verb"), s("group"), s("resource"), s("namespace"), s("name"));
            a.subresource = s("subresource").to_string();
            a.api_version = s("version").to_string();
            Ok(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorization::rbac::tests::fixture;
    use std::sync::Arc;

    /// Knows no token (TokenReview is tested with the real authenticator in token.rs).
    struct NoTokens;
    impl TokenAuthenticator for NoTokens {
        fn authenticate_token(&self, _: &str, _: &[&str]) -> Option<(UserInfo, Vec<String>)> {
            None
        }
    }

    fn path(group: &str, resource: &str, ns: Option<&str>) -> ResourcePath {
        ResourcePath {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(str::to_string),
            resource: resource.into(),
            name: None,
            subresource: None,
        }
    }

    fn body(r: &ApiResponse) -> Value {
        match &r.body {
            crate::request::Body::Full(b) => serde_json::from_slice(b).unwrap(),
            _ => panic!("not a full body"),
        }
    }

    #[test]
    fn reviews_answer_from_the_authorizer() {
        let source = Arc::new(fixture());
        let chain = crate::authorization::chain(source.clone());
        let rbac = Rbac { source };
        let alice = UserInfo::new("alice", &["system:authenticated"]);
        let ssar =
            |ns: &str| json!({"spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": ns}}});
        let p = path("authorization.k8s.io", "selfsubjectaccessreviews", None);
        let r = serve(&chain, &rbac, &NoTokens, &alice, "POST", &p, ssar("team-a")).unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(body(&r)["status"]["allowed"], true);
        let r = serve(&chain, &rbac, &NoTokens, &alice, "POST", &p, ssar("default")).unwrap();
        assert_eq!(body(&r)["status"]["allowed"], false);

        let p = path("authorization.k8s.io", "subjectaccessreviews", None);
        let sar = json!({"spec": {"user": "bob", "resourceAttributes": {"verb": "delete", "group": "apps", "resource": "deployments", "namespace": "team-b"}}});
        assert_eq!(body(&serve(&chain, &rbac, &NoTokens, &alice, "POST", &p, sar).unwrap())["status"]["allowed"], true);
        let e = serve(&chain, &rbac, &NoTokens, &alice, "POST", &p, json!({"spec": {"user": "bob"}})).err().unwrap();
        assert_eq!(e.code, 422);

        let p = path("authorization.k8s.io", "localsubjectaccessreviews", Some("team-a"));
        let e = serve(&chain, &rbac, &NoTokens, &alice, "POST", &p, json!({"spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "x"}}}))
            .err()
            .unwrap();
        assert_eq!(e.code, 400);

        let p = path("authorization.k8s.io", "selfsubjectrulesreviews", None);
        let r = body(
            &serve(&chain, &rbac, &NoTokens, &alice, "POST", &p, json!({"spec": {"namespace": "team-a"}})).unwrap(),
        );
        assert_eq!(r["status"]["resourceRules"][0]["resources"], json!(["pods", "pods/log"]));
        assert_eq!(r["status"]["nonResourceRules"][0]["nonResourceURLs"], json!(["/healthz", "/apis/*"]));

        let p = path("authentication.k8s.io", "selfsubjectreviews", None);
        let r = body(&serve(&chain, &rbac, &NoTokens, &alice, "POST", &p, json!({})).unwrap());
        assert_eq!(r["status"]["userInfo"], json!({"username": "alice", "groups": ["system:authenticated"]}));
    }
}
