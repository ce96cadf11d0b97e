//! OpenAPI v3, generated from the k8s-openapi types' JSON schemas. kubectl needs it for
//! `apply` (it checks that PATCH takes `fieldValidation`, then leaves validation to the server,
//! and reads the strategic-merge keys from `x-kubernetes-patch-*`) and for `explain`.

use kubus_apimachinery::patch::patch_meta;
use kubus_apimachinery::{resource, ResourceInfo, StatusError};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

pub struct OpenApi {
    /// "api/v1" or "apis/<group>/<version>" -> document
    docs: BTreeMap<String, Value>,
    root: Value,
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn gvk(r: &ResourceInfo) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn param(name: &str, location: &str, description: &str) -> Value {
    json!({"name": name, "in": location, "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &ResourceInfo, verb: &str, op_id: &str, writes: bool, body_types: &[&str], list: bool) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{}", r.definition)});
    let mut params = vec![param("pretty", "query", "If 'true', then the output is pretty printed.")];
    if writes {
        params.push(param("dryRun", "query", "When present, indicates that modifications should not be persisted."));
        params.push(param(
            "fieldManager",
            "query",
            "A name associated with the actor or entity that is making these changes.",
        ));
        params.push(param(
            "fieldValidation",
            "query",
            "How the server handles unknown or duplicate fields: Ignore, Warn (default) or Strict.",
        ));
    }
    if list {
        for p in [
            "labelSelector",
            "fieldSelector",
            "limit",
            "continue",
            "resourceVersion",
            "resourceVersionMatch",
            "watch",
            "allowWatchBookmarks",
            "timeoutSeconds",
        ] {
            params.push(param(p, "query", ""));
        }
    }
    let mut op = json!({
        "operationId": op_id,
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": gvk(r),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
    });
    if !body_types.is_empty() {
        let content: Map<String, Value> = body_types
            .iter()
            .map(|t| (t.to_string(), json!({"schema": if *t == "application/json" { reference.clone() } else { json!({"type": "object"}) }})))
            .collect();
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

fn paths_for(r: &ResourceInfo, paths: &mut Map<String, Value>) {
    let base =
        if r.group.is_empty() { format!("/api/{}", r.version) } else { format!("/apis/{}/{}", r.group, r.version) };
    let coll = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.resource)
    } else {
        format!("{base}/{}", r.resource)
    };
    let item = format!("{coll}/{{name}}");
    let k = r.kind;
    let ns = if r.namespaced { "Namespaced" } else { "" };
    paths.insert(coll.clone(), json!({
        "get": operation(r, "list", &format!("list{ns}{k}"), false, &[], true),
        "post": operation(r, "post", &format!("create{ns}{k}"), true, &["application/json", "application/yaml"], false),
        "delete": operation(r, "deletecollection", &format!("deletecollection{ns}{k}"), false, &[], true),
    }));
    paths.insert(item.clone(), json!({
        "get": operation(r, "get", &format!("read{ns}{k}"), false, &[], false),
        "put": operation(r, "put", &format!("replace{ns}{k}"), true, &["application/json", "application/yaml"], false),
        "patch": operation(r, "patch", &format!("patch{ns}{k}"), true, PATCH_TYPES, false),
        "delete": operation(r, "delete", &format!("delete{ns}{k}"), false, &[], false),
    }));
    if r.namespaced {
        paths.insert(
            format!("{base}/{}", r.resource),
            json!({"get": operation(r, "list", &format!("list{k}ForAllNamespaces"), false, &[], true)}),
        );
    }
    for s in r.subresources {
        let name = s.name();
        let mut ops = Map::new();
        match name {
            "status" => {
                ops.insert("get".into(), operation(r, "get", &format!("read{ns}{k}Status"), false, &[], false));
                ops.insert(
                    "put".into(),
                    operation(r, "put", &format!("replace{ns}{k}Status"), true, &["application/json"], false),
                );
                ops.insert(
                    "patch".into(),
                    operation(r, "patch", &format!("patch{ns}{k}Status"), true, PATCH_TYPES, false),
                );
            }
            _ => continue,
        }
        paths.insert(format!("{item}/{name}"), Value::Object(ops));
    }
}

/// An OpenAPI v3 document of a group version.
fn document(paths: Map<String, Value>, schemas: Map<String, Value>) -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The schemas `kinds` define (with those they refer to), each kind's marked with its
/// group-version-kind as kubectl looks it up: `(schema, definition name, gvk)`.
fn schemas_of<'a>(
    kinds: impl Iterator<Item = (kubus_apimachinery::resource::SchemaFn, &'a str, Value)>,
) -> Map<String, Value> {
    let mut gen = schemars::gen::SchemaSettings::openapi3().into_generator();
    let mut marks = Vec::new();
    for (schema, definition, gvk) in kinds {
        schema(&mut gen);
        marks.push((definition, gvk));
    }
    let mut schemas: Map<String, Value> =
        gen.take_definitions().into_iter().map(|(k, v)| (k, serde_json::to_value(v).unwrap_or(Value::Null))).collect();
    for (definition, gvk) in marks {
        if let Some(s) = schemas.get_mut(definition).and_then(Value::as_object_mut) {
            s.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
    }
    schemas
}

fn build_gv(group: &str, version: &str) -> Value {
    let resources: Vec<&ResourceInfo> =
        resource::all().iter().filter(|r| r.group == group && r.version == version).collect();
    let mut schemas = schemas_of(resources.iter().map(|r| (r.schema, r.definition, gvk(r))));
    for (ty, field, key, strategy) in patch_meta::extensions() {
        if let Some(p) = schemas
            .get_mut(ty)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
            .and_then(Value::as_object_mut)
        {
            p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            if let Some(k) = key {
                p.insert("x-kubernetes-patch-merge-key".into(), json!(k));
            }
        }
    }
    let mut paths = Map::new();
    for r in &resources {
        paths_for(r, &mut paths);
    }
    document(paths, schemas)
}

/// The document of a group version of review resources (create-only, never stored): what
/// `kubectl explain subjectaccessreviews` reads.
fn build_reviews(group: &str, version: &str) -> Value {
    use crate::authorization::review::{ReviewResource, REVIEWS};
    let reviews: Vec<_> = REVIEWS.iter().filter(|r| r.group == group && r.version == version).collect();
    let gvk = |r: &ReviewResource| json!({"group": r.group, "version": r.version, "kind": r.kind});
    let schemas = schemas_of(reviews.iter().map(|r| (r.schema, r.definition, gvk(r))));
    let mut paths = Map::new();
    for r in &reviews {
        let gvk = gvk(r);
        let reference = json!({"$ref": format!("#/components/schemas/{}", r.definition)});
        let (ns, scope) = if r.namespaced { ("Namespaced", "/namespaces/{namespace}") } else { ("", "") };
        let params = ["dryRun", "fieldManager", "fieldValidation", "pretty"].map(|p| param(p, "query", ""));
        let content = json!({"application/json": {"schema": reference}});
        paths.insert(
            format!("/apis/{}/{}{scope}/{}", r.group, r.version, r.resource),
            json!({"post": {
                "operationId": format!("create{ns}{}", r.kind),
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "requestBody": {"content": content, "required": true},
                "responses": {"201": {"description": "Created", "content": content}},
            }}),
        );
    }
    document(paths, schemas)
}

impl OpenApi {
    pub fn build() -> OpenApi {
        let mut docs = BTreeMap::new();
        let mut root_paths = Map::new();
        let stored = resource::groups().into_iter().map(|(g, vs)| (g, vs, false));
        let reviews = [("authentication.k8s.io", vec!["v1"], true), ("authorization.k8s.io", vec!["v1"], true)];
        for (group, versions, review) in stored.chain(reviews) {
            for v in versions {
                let path = gv_path(group, v);
                let doc = if review { build_reviews(group, v) } else { build_gv(group, v) };
                let mut h = DefaultHasher::new();
                doc.to_string().hash(&mut h);
                root_paths.insert(
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={:016X}", h.finish())}),
                );
                docs.insert(path, doc);
            }
        }
        OpenApi { docs, root: json!({"paths": root_paths}) }
    }

    pub fn root(&self) -> Value {
        self.root.clone()
    }

    pub fn group_version(&self, gv: &str) -> Result<&Value, StatusError> {
        self.docs.get(gv.trim_end_matches('/')).ok_or_else(StatusError::route_not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_schema_has_gvk_and_merge_keys() {
        let api = OpenApi::build();
        let doc = api.group_version("api/v1").unwrap();
        let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        let containers = &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert!(api.root()["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap().contains("hash="));
    }

    #[test]
    fn review_groups_have_documents_for_explain() {
        let api = OpenApi::build();
        let authz = api.group_version("apis/authorization.k8s.io/v1").unwrap();
        let sar = &authz["components"]["schemas"]["io.k8s.api.authorization.v1.SubjectAccessReview"];
        assert_eq!(sar["x-kubernetes-group-version-kind"][0]["kind"], "SubjectAccessReview");
        assert!(sar["properties"]["spec"].is_object());
        let local = &authz["paths"]["/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews"];
        assert_eq!(local["post"]["operationId"], "createNamespacedLocalSubjectAccessReview");
        let authn = api.group_version("apis/authentication.k8s.io/v1").unwrap();
        assert!(authn["components"]["schemas"]["io.k8s.api.authentication.v1.SelfSubjectReview"].is_object());
        assert!(api.root()["paths"]["apis/authorization.k8s.io/v1"].is_object());
    }
}
