//! Discovery: `/version`, legacy discovery (`/api`, `/apis`, resource lists) and aggregated
//! discovery (apidiscovery.k8s.io/v2), which kubectl asks for first and which spares it one
//! request per group-version. The stored resources come from the resource table, the
//! review resources (create-only, never stored) from [`review::REVIEWS`].

use crate::authorization::review::{self, ReviewResource};
use crate::request::ApiResponse;
use crate::resource_metrics;
use kubus_apimachinery::metrics_api;
use kubus_apimachinery::{resource, ResourceInfo, StatusError, Subresource};
use serde_json::{json, Value};

/// The Kubernetes version whose API is served. kubectl's dispatcher picks the client matching
/// the server's minor version, so this must name the kubectl the project is tested with.
pub const KUBERNETES_VERSION: &str = "v1.32.0";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": format!("{KUBERNETES_VERSION}+kubus-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn wants_aggregated(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').next().is_some_and(|first| {
            first.contains("as=APIGroupDiscoveryList") && first.contains("v=v2") && !first.contains("v2beta1")
        })
    })
}

fn sub_response_kind(r: &ResourceInfo, s: Subresource) -> Value {
    match s {
        Subresource::Scale => json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
        Subresource::Binding => json!({"group": "", "version": "v1", "kind": "Binding"}),
        Subresource::Token => json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}),
        Subresource::Eviction => json!({"group": "policy", "version": "v1", "kind": "Eviction"}),
        _ => json!({"group": r.group, "version": r.version, "kind": r.kind}),
    }
}

fn sub_verbs(s: Subresource) -> Vec<&'static str> {
    match s {
        Subresource::Binding | Subresource::Token | Subresource::Eviction => vec!["create"],
        Subresource::Finalize => vec!["update"],
        _ => vec!["get", "patch", "update"],
    }
}

/// The groups and versions served: the stored resources' and the reviews'.
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out = resource::groups();
    for r in review::REVIEWS {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

fn reviews_in<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ReviewResource> + 'a {
    review::REVIEWS.iter().filter(move |r| r.group == group && r.version == version)
}

fn scope(namespaced: bool) -> &'static str {
    if namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

fn aggregated_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let mut resources: Vec<Value> = resource::all()
                .iter()
                .filter(|r| r.group == group && r.version == *v)
                .map(|r| {
                    let subs: Vec<Value> = r
                        .subresources
                        .iter()
                        .map(|s| json!({"subresource": s.name(), "responseKind": sub_response_kind(r, *s), "verbs": sub_verbs(*s)}))
                        .collect();
                    json!({
                        "resource": r.resource,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": scope(r.namespaced),
                        "singularResource": r.singular,
                        "verbs": ResourceInfo::VERBS,
                        "shortNames": r.short_names,
                        "categories": r.categories,
                        "subresources": subs,
                    })
                })
                .collect();
            resources.extend(reviews_in(group, v).map(|r| {
                json!({
                    "resource": r.resource,
                    "responseKind": {"group": "", "version": "", "kind": r.kind},
                    "scope": scope(r.namespaced),
                    "singularResource": r.singular,
                    "verbs": review::VERBS,
                })
            }));
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// metrics.k8s.io, served from the nodes' usage reports rather than the store (what an
/// aggregated metrics-server adds to discovery upstream).
fn aggregated_metrics_group() -> Value {
    let resources: Vec<Value> = resource_metrics::RESOURCES
        .iter()
        .map(|(r, singular, kind, namespaced)| {
            json!({
                "resource": r,
                "responseKind": {"group": metrics_api::GROUP, "version": metrics_api::VERSION, "kind": kind},
                "scope": if *namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": singular,
                "verbs": resource_metrics::VERBS,
            })
        })
        .collect();
    json!({"metadata": {"name": metrics_api::GROUP, "creationTimestamp": null},
        "versions": [{"version": metrics_api::VERSION, "resources": resources, "freshness": "Current"}]})
}

/// `/api` (legacy = true) or `/apis`.
pub fn root(legacy: bool, accept: Option<&str>) -> ApiResponse {
    let groups = groups();
    if wants_aggregated(accept) {
        let mut items: Vec<Value> =
            groups.iter().filter(|(g, _)| g.is_empty() == legacy).map(|(g, vs)| aggregated_group(g, vs)).collect();
        if !legacy {
            items.push(aggregated_metrics_group());
        }
        let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
        return ApiResponse::json(200, &body).with_content_type(AGGREGATED);
    }
    if legacy {
        return ApiResponse::json(
            200,
            &json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
            }),
        );
    }
    let mut list: Vec<Value> = groups.iter().filter(|(g, _)| !g.is_empty()).map(|(g, vs)| api_group(g, vs)).collect();
    list.push(api_group(metrics_api::GROUP, &[metrics_api::VERSION]));
    ApiResponse::json(200, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}))
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

pub fn group(group: &str) -> Result<ApiResponse, StatusError> {
    if group == metrics_api::GROUP {
        let mut body = api_group(group, &[metrics_api::VERSION]);
        body["kind"] = json!("APIGroup");
        body["apiVersion"] = json!("v1");
        return Ok(ApiResponse::json(200, &body));
    }
    let groups = groups();
    let (g, vs) = groups.iter().find(|(g, _)| *g == group && !g.is_empty()).ok_or_else(not_found)?;
    let mut body = api_group(g, vs);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(ApiResponse::json(200, &body))
}

fn not_found() -> StatusError {
    StatusError::route_not_found()
}

pub fn group_version(group: &str, version: &str) -> Result<ApiResponse, StatusError> {
    if group == metrics_api::GROUP {
        if version != metrics_api::VERSION {
            return Err(not_found());
        }
        let resources: Vec<Value> = resource_metrics::RESOURCES
            .iter()
            .map(|(r, singular, kind, namespaced)| {
                json!({"name": r, "singularName": singular, "namespaced": namespaced, "kind": kind,
                    "verbs": resource_metrics::VERBS})
            })
            .collect();
        return Ok(ApiResponse::json(
            200,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": metrics_api::API_VERSION, "resources": resources}),
        ));
    }
    let mut resources = Vec::new();
    for r in resource::all().iter().filter(|r| r.group == group && r.version == version) {
        resources.push(json!({
            "name": r.resource, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": ResourceInfo::VERBS, "shortNames": r.short_names, "categories": r.categories,
        }));
        for s in r.subresources {
            let rk = sub_response_kind(r, *s);
            let mut entry = json!({
                "name": format!("{}/{}", r.resource, s.name()), "singularName": "", "namespaced": r.namespaced,
                "kind": rk["kind"], "verbs": sub_verbs(*s),
            });
            // A subresource answering in another group names it, as upstream's discovery does:
            // kubectl drain finds the eviction API (policy/v1) this way, and falls back to
            // plain deletes (ignoring disruption budgets) when it cannot.
            if rk["group"] != json!(r.group) || rk["version"] != json!(r.version) {
                entry["group"] = rk["group"].clone();
                entry["version"] = rk["version"].clone();
            }
            resources.push(entry);
        }
    }
    for r in reviews_in(group, version) {
        resources.push(json!({
            "name": r.resource, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": review::VERBS,
        }));
    }
    if resources.is_empty() {
        return Err(not_found());
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Ok(ApiResponse::json(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Body;

    fn json_of(r: ApiResponse) -> Value {
        let Body::Full(bytes) = r.body else { panic!("streamed discovery") };
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn reviews_are_listed_create_only_everywhere() {
        let groups = json_of(root(false, None));
        for g in ["authorization.k8s.io", "authentication.k8s.io"] {
            assert!(groups["groups"].as_array().unwrap().iter().any(|x| x["name"] == g), "{g} in /apis");
            assert_eq!(json_of(group(g).unwrap())["preferredVersion"]["version"], "v1");
        }
        let authz = json_of(group_version("authorization.k8s.io", "v1").unwrap());
        let local = authz["resources"].as_array().unwrap().iter().find(|r| r["name"] == "localsubjectaccessreviews");
        let local = local.expect("localsubjectaccessreviews listed");
        assert_eq!((local["namespaced"].clone(), local["verbs"].clone()), (json!(true), json!(["create"])));
        assert_eq!(authz["resources"].as_array().unwrap().len(), 4);
        let authn = json_of(group_version("authentication.k8s.io", "v1").unwrap());
        assert_eq!(authn["resources"][0]["kind"], "SelfSubjectReview");

        let aggregated = json_of(root(false, Some(AGGREGATED)));
        let reviews: Vec<(String, Value)> = aggregated["items"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["versions"][0]["resources"].as_array().unwrap().clone())
            .filter(|r| r["resource"].as_str().unwrap().ends_with("reviews"))
            .map(|r| (r["resource"].as_str().unwrap().to_string(), r["verbs"].clone()))
            .collect();
        assert_eq!(reviews.len(), review::REVIEWS.len(), "{reviews:?}");
        assert!(reviews.iter().all(|(_, verbs)| *verbs == json!(["create"])));
    }
}
