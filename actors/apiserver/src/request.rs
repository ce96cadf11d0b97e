//! The API server's request model: HTTP and NATS requests are both turned into an
//! [`ApiRequest`] and answered by the same handler.

use bytes::Bytes;
use futures::stream::BoxStream;
use kubus_apimachinery::StatusError;
use std::collections::HashMap;

pub use kubus_bus::api::ApiRequest;

/// Parsed query parameters (last value wins, as upstream's decoder does for scalars).
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// The `labelSelector` and `fieldSelector` parameters (absent: everything).
    pub fn selectors(
        &self,
    ) -> Result<(kubus_apimachinery::selector::LabelSelector, kubus_apimachinery::selector::FieldSelector), StatusError>
    {
        use kubus_apimachinery::selector::{FieldSelector, LabelSelector};
        let labels = match self.get("labelSelector") {
            Some(s) => LabelSelector::parse(s)?,
            None => LabelSelector::everything(),
        };
        let fields = match self.get("fieldSelector") {
            Some(s) => FieldSelector::parse(s)?,
            None => FieldSelector::everything(),
        };
        Ok((labels, fields))
    }

    pub fn parse(raw: &str) -> Query {
        Query(form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
    /// A boolean parameter: present bare, `true` or `1`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.0.get(key).map(String::as_str), Some("true" | "1" | ""))
    }
    pub fn int(&self, key: &str) -> Result<Option<i64>, StatusError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| StatusError::bad_request(format!("invalid value {v:?} for query parameter {key}"))),
        }
    }
}

/// What a request answers with: a whole body, or a stream of watch events.
pub enum Body {
    Full(Bytes),
    Stream(BoxStream<'static, Bytes>),
}

pub struct ApiResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Body,
    /// `Warning` headers (already formatted as `299 - "text"`).
    pub warnings: Vec<String>,
}

pub const JSON: &str = "application/json";
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

impl ApiResponse {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        ApiResponse {
            status,
            content_type: JSON.into(),
            body: Body::Full(Bytes::from(value.to_string())),
            warnings: Vec::new(),
        }
    }
    pub fn with_content_type(mut self, ct: &str) -> Self {
        self.content_type = ct.to_string();
        self
    }
    pub fn text(status: u16, text: &str) -> Self {
        ApiResponse {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: Body::Full(Bytes::from(text.to_string())),
            warnings: Vec::new(),
        }
    }
    pub fn error(e: &StatusError) -> Self {
        ApiResponse::json(e.code, &e.to_status())
    }
}

/// How the client wants objects rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    Json,
    /// `meta.k8s.io/v1` Table (kubectl get).
    Table,
    /// `meta.k8s.io/v1` PartialObjectMetadata(List).
    Metadata,
}

/// The watch stream types a collection's GET also produces (upstream's stream serializers).
const STREAM_MEDIA_TYPES: &[&str] =
    &["application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch"];

/// Reads the Accept header as upstream's apiserver does, for what Kubus renders. First as
/// go-restful routes: some accepted type (parameters aside) must be `*/*` or one the route
/// produces, else a 406 naming what it produces (`watchable`: a collection's GET, which
/// produces watch streams too). Then as the handler's negotiation: the first rendering Kubus
/// can give (YAML is answered with JSON, which is YAML too).
pub fn negotiate(accept: Option<&str>, watchable: bool) -> Result<Rendering, StatusError> {
    use kubus_apimachinery::status::MEDIA_TYPES;
    let accept = accept.map(str::trim).filter(|a| !a.is_empty()).unwrap_or("*/*");
    let entries: Vec<(&str, Vec<&str>)> = accept
        .split(',')
        .map(|part| {
            let mut params = part.split(';').map(str::trim);
            (params.next().unwrap_or(""), params.collect())
        })
        .collect();
    if !entries.iter().any(|(media, _)| *media == "*/*" || MEDIA_TYPES.contains(media)) {
        let mut available = MEDIA_TYPES.to_vec();
        if watchable {
            available.extend(STREAM_MEDIA_TYPES);
        }
        let message = format!("406: Not Acceptable\n\nAvailable representations: {}", available.join(", "));
        return Err(StatusError::server_response(406, &message));
    }
    for (media, params) in &entries {
        if !matches!(*media, "application/json" | "application/yaml" | "*/*" | "application/*") {
            continue;
        }
        let as_ = params.iter().find_map(|p| p.strip_prefix("as="));
        let g = params.iter().find_map(|p| p.strip_prefix("g="));
        match (as_, g) {
            (Some("Table"), Some("meta.k8s.io")) => return Ok(Rendering::Table),
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                return Ok(Rendering::Metadata)
            }
            (Some(_), _) => continue,
            (None, _) => return Ok(Rendering::Json),
        }
    }
    Err(StatusError::not_acceptable(MEDIA_TYPES))
}

/// The object a path names, as in `/apis/apps/v1/namespaces/default/deployments/web/scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// What a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    Health(String),
    Metrics,
    /// `/api` or `/apis`.
    Root(bool),
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    GroupVersion(String, String),
    OpenApiV3Root,
    OpenApiV3(String),
    OpenApiV2,
    /// `/.well-known/openid-configuration`: the ServiceAccount issuer's discovery document.
    OidcDiscovery,
    /// `/openid/v1/jwks`: the keys ServiceAccount tokens are signed with.
    Jwks,
    Resource(ResourcePath),
    NotFound,
}

pub fn route(path: &str) -> Route {
    let path = path.trim_end_matches('/');
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Route::Version,
        [h @ ("healthz" | "readyz" | "livez"), rest @ ..] => {
            Route::Health(std::iter::once(*h).chain(rest.iter().copied()).collect::<Vec<_>>().join("/"))
        }
        ["metrics"] => Route::Metrics,
        ["api"] => Route::Root(true),
        ["apis"] => Route::Root(false),
        ["openapi", "v3"] => Route::OpenApiV3Root,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["openapi", "v2"] => Route::OpenApiV2,
        [".well-known", "openid-configuration"] => Route::OidcDiscovery,
        ["openid", "v1", "jwks"] => Route::Jwks,
        ["api", v] => Route::GroupVersion(String::new(), v.to_string()),
        ["apis", g] => Route::Group(g.to_string()),
        ["apis", g, v] => Route::GroupVersion(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let mk = |ns: Option<&str>, res: &str, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            namespace: ns.map(str::to_string),
            resource: res.to_string(),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    match rest {
        // `/api/v1/namespaces/x` is the namespace itself, and so are its subresources;
        // deeper paths are namespaced objects.
        ["namespaces", name, sub @ ("status" | "finalize")] => mk(None, "namespaces", Some(name), Some(sub)),
        ["namespaces", ns, res] => mk(Some(ns), res, None, None),
        ["namespaces", ns, res, name] => mk(Some(ns), res, Some(name), None),
        ["namespaces", ns, res, name, sub] => mk(Some(ns), res, Some(name), Some(sub)),
        [res] => mk(None, res, None, None),
        [res, name] => mk(None, res, Some(name), None),
        [res, name, sub] => mk(None, res, Some(name), Some(sub)),
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/api/v1/namespaces/default"),
            Route::Resource(ResourcePath {
                group: "".into(),
                version: "v1".into(),
                namespace: None,
                resource: "namespaces".into(),
                name: Some("default".into()),
                subresource: None
            })
        );
        assert_eq!(
            route("/api/v1/namespaces/default/pods/p/status"),
            Route::Resource(ResourcePath {
                group: "".into(),
                version: "v1".into(),
                namespace: Some("default".into()),
                resource: "pods".into(),
                name: Some("p".into()),
                subresource: Some("status".into())
            })
        );
        assert_eq!(
            route("/apis/apps/v1/deployments"),
            Route::Resource(ResourcePath {
                group: "apps".into(),
                version: "v1".into(),
                namespace: None,
                resource: "deployments".into(),
                name: None,
                subresource: None
            })
        );
        assert_eq!(route("/apis/apps/v1"), Route::GroupVersion("apps".into(), "v1".into()));
        assert_eq!(route("/openapi/v3/apis/apps/v1"), Route::OpenApiV3("apis/apps/v1".into()));
    }

    #[test]
    fn accept_negotiation() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl), true).unwrap(), Rendering::Table);
        assert_eq!(negotiate(Some("application/json, */*"), false).unwrap(), Rendering::Json);
        assert_eq!(negotiate(None, false).unwrap(), Rendering::Json);
        assert_eq!(negotiate(Some("application/yaml"), false).unwrap(), Rendering::Json);
        // Protobuf alone: past the route, but nothing Kubus renders (the handler's 406).
        let e = negotiate(Some("application/vnd.kubernetes.protobuf"), false).unwrap_err();
        assert_eq!((e.code, e.details()), (406, None));
        let e = negotiate(Some("application/json;as=Nonsense;g=meta.k8s.io"), false).unwrap_err();
        assert_eq!((e.code, e.details()), (406, None));
        // A type no route produces: go-restful's 406, which lists what the route produces.
        let e = negotiate(Some("text/html"), true).unwrap_err();
        assert_eq!(e.message, "406: Not Acceptable\n\nAvailable representations: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json;stream=watch, application/vnd.kubernetes.protobuf;stream=watch");
        assert!(e.details().is_some());
    }

    #[test]
    fn query_decoding() {
        let q = Query::parse("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=true&limit=5");
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.int("limit").unwrap(), Some(5));
    }
}
