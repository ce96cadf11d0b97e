//! The one request handler behind HTTP and NATS: routing, verbs and content negotiation.

use crate::authn::{Presented, UserInfo};
use crate::cache::{CachedObject, Gr, ObjKey, Start};
use crate::decode::FieldValidation;
use crate::list_snapshot::{ListQuery, ListSnapshots};
use crate::metrics::{INFLIGHT, REQUESTS, REQUEST_LATENCY};
use crate::openapi::OpenApi;
use crate::patch::{apply_patch, PatchKind};
use crate::registry::{strategy, Verbs};
use crate::render::{IncludeObject, Renderer};
use crate::request::{negotiate, route, ApiRequest, ApiResponse, Body, Query, Rendering, ResourcePath, Route};
use crate::storage::{DeleteOptions, Outcome, Storage, WriteOptions};
use crate::{discovery, watch};
use kubus_apimachinery::selector::{FieldSelector, LabelSelector};
use kubus_apimachinery::{resource, ResourceInfo, StatusError, Subresource};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Largest request body accepted (upstream's limit is 3 MiB).
pub const MAX_BODY: usize = 3 << 20;

#[derive(Clone)]
pub struct ApiState {
    pub storage: Storage,
    pub openapi: Arc<OpenApi>,
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// Issues ServiceAccount tokens (TokenRequest) and authenticates them.
    pub tokens: Arc<crate::token::ServiceAccountTokens>,
    /// Authenticates certificate assertions over NATS; None in a cluster without TLS, whose
    /// NATS service serves every request as the administrator (as its HTTP port does).
    pub assertions: Option<Arc<crate::authn::assertion::CertificateAssertions>>,
    /// Paged lists in progress.
    pub lists: Arc<ListSnapshots>,
    /// The nodes' latest usage reports (metrics.k8s.io).
    pub usage: Arc<crate::resource_metrics::UsageStore>,
    /// The authorizer chain (system:masters, then RBAC over the watch cache).
    pub authorizer: Arc<crate::authorization::Union>,
    /// Records requests on the audit stream, as the audit policy says.
    pub audit: Arc<crate::audit::Auditor>,
}

/// A pod stream admitted: who it runs as, and what the audit records of it.
pub struct StreamAdmission {
    pub user: UserInfo,
    audit: Option<Audited>,
    received: std::time::SystemTime,
}

/// What the audit policy records of a request, known once its user is.
struct Audited {
    level: crate::audit::policy::Level,
    attrs: crate::authorization::Attributes,
    /// Who authenticated, when the request impersonated `attrs.user`.
    authenticated: Option<UserInfo>,
}

impl ApiState {
    /// Handles one request as the development administrator (tests of a cluster without TLS).
    pub async fn handle(&self, req: ApiRequest, transport: &'static str) -> ApiResponse {
        self.handle_presented(req, transport, &Presented::unsecured()).await
    }

    /// How requests over NATS authenticate here: by their bearer token, unless the cluster
    /// has no TLS (then as its HTTP port: the administrator).
    pub fn nats_channel(&self) -> crate::authn::Channel {
        match self.assertions {
            Some(_) => crate::authn::Channel::Nats,
            None => crate::authn::Channel::Unsecured,
        }
    }

    /// Who a request is from and whether it may do what it asks: authentication, then
    /// impersonation, then authorization of what the request is (the one place each happens).
    /// What the audit policy records of it is noted in `audit` once the user is known.
    fn admit(
        &self,
        req: &ApiRequest,
        r: &Route,
        q: &Query,
        presented: &Presented,
        audit: &mut Option<Audited>,
    ) -> Result<UserInfo, StatusError> {
        let (authenticated, user) = self.identify_as(presented, &req.path)?;
        let attrs = crate::authorization::request_attributes(&user, req, r, q);
        let result = self.authorize(&attrs);
        *audit = self.audited(authenticated, &user, attrs);
        result.map(|()| user)
    }

    /// What the audit policy records of a request of `attrs`, by who authenticated (as
    /// upstream's: impersonating a component does not lower what is recorded).
    fn audited(
        &self,
        authenticated: UserInfo,
        user: &UserInfo,
        attrs: crate::authorization::Attributes,
    ) -> Option<Audited> {
        let level = match authenticated.name == user.name {
            true => self.audit.level(&attrs),
            false => {
                self.audit.level(&crate::authorization::Attributes { user: authenticated.clone(), ..attrs.clone() })
            }
        };
        let impersonated = (authenticated.name != user.name).then_some(authenticated);
        (level > crate::audit::policy::Level::None).then_some(Audited { level, attrs, authenticated: impersonated })
    }

    /// Who authenticated, and the user the request runs as (another if it impersonates).
    fn identify_as(&self, presented: &Presented, path: &str) -> Result<(UserInfo, UserInfo), StatusError> {
        let user = match (&presented.channel, &self.assertions) {
            (crate::authn::Channel::Nats, Some(assertions)) => {
                let tokens = crate::authn::assertion::NatsTokens { service_accounts: &*self.tokens, assertions };
                crate::authn::authenticate(presented, path, &tokens)?
            }
            _ => crate::authn::authenticate(presented, path, &*self.tokens)?,
        };
        crate::authn::check_inboxes(&user, presented, &self.storage.store.config().cluster)?;
        let effective = crate::authn::impersonation::impersonate(&*self.authorizer, user.clone(), presented)?;
        Ok((user, effective))
    }

    /// Admits a pod stream (`log`, `exec`, `attach`, `portforward`), served outside the
    /// request handler: reading logs is `get` on pods/log, the others `create` on their
    /// subresource (what upstream checks for both their POST and WebSocket forms).
    /// The admission is audited as the policy says (upstream records `create pods/exec`): a
    /// refusal at once, an admitted stream by [`ApiState::audit_stream`] once its pod is found.
    pub fn admit_stream(
        &self,
        presented: &Presented,
        namespace: &str,
        name: &str,
        subresource: &str,
    ) -> Result<StreamAdmission, StatusError> {
        let received = std::time::SystemTime::now();
        // A pod stream is never a public-info path.
        let (authenticated, user) = self.identify_as(presented, "")?;
        let verb = if subresource == "log" { "get" } else { "create" };
        let mut attrs = crate::authorization::Attributes::resource(
            &user,
            verb,
            "",
            &format!("pods/{subresource}"),
            namespace,
            name,
        );
        attrs.api_version = "v1".into();
        let audit = self.audited(authenticated, &user, attrs.clone());
        let admission = StreamAdmission { user, audit, received };
        if let Err(e) = self.authorize(&attrs) {
            self.audit_stream(&admission, e.code);
            return Err(e);
        }
        Ok(admission)
    }

    /// Records a pod stream on the audit stream with the code it was answered with.
    pub fn audit_stream(&self, admission: &StreamAdmission, code: u16) {
        let Some(a) = &admission.audit else { return };
        let req = ApiRequest {
            method: if a.attrs.verb == "get" { "GET" } else { "POST" }.into(),
            path: format!("/api/v1/namespaces/{}/pods/{}/{}", a.attrs.namespace, a.attrs.name, a.attrs.subresource),
            query: String::new(),
            content_type: None,
            accept: None,
            body: Vec::new(),
            user_agent: String::new(),
        };
        let entry = crate::audit::Entry {
            attrs: &a.attrs,
            authenticated: a.authenticated.as_ref(),
            req: &req,
            code,
            received: admission.received,
            response: None,
        };
        self.audit.record(a.level, entry);
    }

    /// Refuses what `attrs` asks unless the authorizer allows it (upstream's 403).
    pub fn authorize(&self, attrs: &crate::authorization::Attributes) -> Result<(), StatusError> {
        let decisions = &crate::metrics::AUTHORIZATION_DECISIONS;
        match self.authorizer.decide(attrs) {
            (d, [kind, name]) if d.allowed() => {
                decisions.with_label_values(&[kind, name, "allowed"]).inc();
                Ok(())
            }
            (d, [kind, name]) => {
                decisions.with_label_values(&[kind, name, "denied"]).inc();
                Err(crate::authorization::forbidden(attrs, d.reason()))
            }
        }
    }

    /// Handles one request with the credentials and impersonation headers it presented.
    pub async fn handle_presented(
        &self,
        req: ApiRequest,
        transport: &'static str,
        presented: &Presented,
    ) -> ApiResponse {
        let span = tracing::info_span!("api_request", method = %req.method, path = %req.path, transport);
        // The route and query are read once, for metrics, authorization and serving.
        let (r, q) = (route(&req.path), Query::parse(&req.query));
        let metrics = RequestMetrics::begin(&req, &r, &q);
        let received = std::time::SystemTime::now();
        let mut audited = None;
        let resp = async {
            let user = match self.admit(&req, &r, &q, presented, &mut audited) {
                Ok(u) => u,
                Err(e) => return ApiResponse::error(&e),
            };
            match self.dispatch(&req, r, &q, &user).await {
                Ok(r) => r,
                Err(e) => ApiResponse::error(&e),
            }
        }
        .instrument(span)
        .await;
        if let Some(a) = audited {
            let response = match &resp.body {
                crate::request::Body::Full(b) => Some(&b[..]),
                crate::request::Body::Stream(_) => None,
            };
            let entry = crate::audit::Entry {
                attrs: &a.attrs,
                authenticated: a.authenticated.as_ref(),
                req: &req,
                code: resp.status,
                received,
                response,
            };
            self.audit.record(a.level, entry);
        }
        metrics.end(resp.status, transport);
        if resp.status >= 500 {
            tracing::warn!(method = %req.method, path = %req.path, status = resp.status, "request failed");
        }
        resp
    }

    async fn dispatch(
        &self,
        req: &ApiRequest,
        r: Route,
        q: &Query,
        user: &UserInfo,
    ) -> Result<ApiResponse, StatusError> {
        if req.body.len() > MAX_BODY {
            return Err(StatusError::too_large(format!("limit is {MAX_BODY}")));
        }
        let get_only = |r: ApiResponse| {
            if req.method == "GET" || req.method == "HEAD" {
                Ok(r)
            } else {
                Err(StatusError::method_not_allowed())
            }
        };
        match r {
            Route::Version => get_only(ApiResponse::json(200, &discovery::version())),
            Route::Health(which) => {
                let ok = which == "livez" || self.ready.load(std::sync::atomic::Ordering::Relaxed);
                if q.flag("verbose") {
                    let body = format!(
                        "[{}]ping ok\n[{}]watch-cache-synced {}\n{} {}\n",
                        "+",
                        if ok { "+" } else { "-" },
                        if ok { "ok" } else { "failed" },
                        which,
                        if ok { "check passed" } else { "check failed" }
                    );
                    return get_only(ApiResponse::text(if ok { 200 } else { 500 }, &body));
                }
                get_only(ApiResponse::text(
                    if ok { 200 } else { 500 },
                    if ok { "ok" } else { "watch cache not synced" },
                ))
            }
            Route::Metrics => get_only(
                ApiResponse::text(200, &crate::metrics::render())
                    .with_content_type("text/plain; version=0.0.4; charset=utf-8"),
            ),
            Route::Root(legacy) => get_only(discovery::root(legacy, req.accept.as_deref())),
            Route::Group(g) => get_only(discovery::group(&g)?),
            Route::GroupVersion(g, v) => get_only(discovery::group_version(&g, &v)?),
            Route::OpenApiV3Root => get_only(ApiResponse::json(200, &self.openapi.root())),
            Route::OpenApiV3(gv) => get_only(ApiResponse::json(200, self.openapi.group_version(&gv)?)),
            // Not served (clients use v3): a path without a route.
            Route::OpenApiV2 => Err(StatusError::route_not_found()),
            // Readable by every ServiceAccount (system:service-account-issuer-discovery), so
            // other systems can check this cluster's tokens.
            Route::OidcDiscovery => get_only(
                ApiResponse::json(200, &crate::token::discovery_document()).with_content_type("application/json"),
            ),
            Route::Jwks => get_only(
                ApiResponse::json(200, &self.tokens.issuer.jwks()).with_content_type("application/jwk-set+json"),
            ),
            Route::Resource(p) if p.group == kubus_apimachinery::metrics_api::GROUP => {
                crate::resource_metrics::serve(&self.usage, &self.storage.cache, req, q, &p)
            }
            Route::Resource(p) if crate::authorization::review::is_review(&p) => {
                let rbac = crate::authorization::rbac::Rbac { source: self.storage.cache.clone() };
                let body = parse_body(req)?;
                crate::authorization::review::serve(
                    &*self.authorizer,
                    &rbac,
                    &*self.tokens,
                    user,
                    &req.method,
                    &p,
                    body,
                )
            }
            Route::Resource(p) => self.resource(req, q, p, user).await,
            Route::NotFound => Err(StatusError::route_not_found()),
        }
    }

    async fn resource(
        &self,
        req: &ApiRequest,
        q: &Query,
        p: ResourcePath,
        user: &UserInfo,
    ) -> Result<ApiResponse, StatusError> {
        // Paths no route of upstream's serves: an unknown resource, a cluster-scoped one under
        // a namespace, a subresource the resource does not have (as `ephemeralcontainers`, which
        // kubectl debug tells from a missing pod by the empty details).
        let info = resource::find(&p.group, &p.version, &p.resource).ok_or_else(StatusError::route_not_found)?;
        if p.namespace.is_some() && !info.namespaced {
            return Err(StatusError::route_not_found());
        }
        let ns = p.namespace.as_deref();
        let sub = match p.subresource.as_deref() {
            None => None,
            Some(s) => Some(
                info.subresources.iter().copied().find(|x| x.name() == s).ok_or_else(StatusError::route_not_found)?,
            ),
        };
        let collection_get = p.name.is_none() && req.method == "GET";
        let rendering = negotiate(req.accept.as_deref(), collection_get)?;
        let renderer = Renderer::new(rendering, info, IncludeObject::parse(q.get("includeObject")));
        let mut write = write_options(q)?;
        write.user = Some(user.clone());
        let method = req.method.as_str();
        match (&p.name, method) {
            (None, "GET") if q.flag("watch") => self.watch(Collection::new(info, ns, q)?, q, renderer),
            (None, "GET") => self.list(Collection::new(info, ns, q)?, q, renderer).await,
            (None, "POST") => {
                let body = parse_body(req)?;
                let out = self.storage.create(info, ns, body, &write).await?;
                Ok(respond(201, out, &renderer))
            }
            (None, "DELETE") => self.delete_collection(Collection::new(info, ns, q)?, q, req, renderer).await,
            (Some(name), _) => self.object(info, ns, name, sub, q, req, renderer, write).await,
            _ => Err(StatusError::method_not_allowed()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn object(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<Subresource>,
        q: &Query,
        req: &ApiRequest,
        renderer: Renderer,
        write: WriteOptions,
    ) -> Result<ApiResponse, StatusError> {
        let s = &self.storage;
        let method = req.method.as_str();
        match (sub, method) {
            (None | Some(Subresource::Status), "GET") => {
                let obj = s.get(info, ns, name).await?;
                Ok(ApiResponse::json(200, &renderer.object(obj)).with_content_type(renderer.content_type()))
            }
            (None | Some(Subresource::Status), "PUT") => {
                let out = s.update(info, ns, name, sub, parse_body(req)?, &write).await?;
                Ok(respond(200, out, &renderer))
            }
            (None | Some(Subresource::Status), "PATCH") => {
                let ct = req.content_type.as_deref().unwrap_or("");
                let out = s.patch(info, ns, name, sub, ct, &req.body, &write).await?;
                let code = if out.created { 201 } else { 200 };
                Ok(respond(code, out, &renderer))
            }
            (None, "DELETE") => {
                let opts = delete_options(q, req)?;
                let obj = s.delete(info, ns, name, &opts).await?;
                Ok(ApiResponse::json(200, &renderer.object(obj)).with_content_type(renderer.content_type()))
            }
            (Some(Subresource::Eviction), "POST") => {
                let body = parse_body(req)?;
                crate::eviction::evict(s, ns.unwrap_or("default"), name, &body).await?;
                Ok(ApiResponse::json(
                    201,
                    &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}),
                ))
            }
            (Some(Subresource::Token), "POST") => {
                let body = parse_body(req)?;
                if let Some(user) = &write.user {
                    crate::admission::noderestriction::validate_token_request(
                        &s.cache,
                        ns.unwrap_or("default"),
                        name,
                        &body,
                        user,
                    )?;
                }
                let out = self.tokens.issuer.issue(s, ns.unwrap_or("default"), name, &body).await?;
                Ok(ApiResponse::json(201, &out))
            }
            (Some(sub), _) if sub != Subresource::Status => {
                self.subresource(info, ns, name, sub, req, renderer, write).await
            }
            _ => Err(StatusError::method_not_allowed()),
        }
    }

    /// A subresource with rules of its own besides status (scale, binding, finalize): the
    /// kind's strategy says what the request reads or changes; this runs the verb.
    #[allow(clippy::too_many_arguments)]
    async fn subresource(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Subresource,
        req: &ApiRequest,
        renderer: Renderer,
        write: WriteOptions,
    ) -> Result<ApiResponse, StatusError> {
        let method = req.method.as_str();
        let rules = strategy(info).subresource(sub).filter(|r| match r.verbs() {
            Verbs::View => matches!(method, "GET" | "PUT" | "PATCH"),
            Verbs::Put => method == "PUT",
            Verbs::Post => method == "POST",
        });
        let Some(rules) = rules else {
            return Err(StatusError::method_not_allowed());
        };
        if method == "GET" {
            let obj = self.storage.get(info, ns, name).await?;
            return Ok(ApiResponse::json(200, &rules.view(&obj)));
        }
        let verbs = rules.verbs();
        // A view is written as JSON, whole (PUT) or as a patch of the current view (PATCH).
        let (patch, body) = match verbs {
            Verbs::View => {
                let kind = match method {
                    "PATCH" => Some(PatchKind::from_content_type(req.content_type.as_deref().unwrap_or(""))?),
                    _ => None,
                };
                let body: Value = serde_json::from_slice(&req.body)
                    .map_err(|e| StatusError::bad_request(format!("error decoding body: {e}")))?;
                (kind, body)
            }
            Verbs::Put | Verbs::Post => (None, parse_body(req)?),
        };
        rules.check(name, &body)?;
        let through = if rules.writes_object() { None } else { Some(sub) };
        let out = self
            .storage
            .update_with(info, ns, name, through, &write, |old| {
                if verbs != Verbs::View {
                    return Ok((rules.apply(name, old, &body)?, vec![]));
                }
                let desired = match patch {
                    Some(k) => apply_patch(k, &rules.view(old), &body, None)?,
                    None => body.clone(),
                };
                let mut new = rules.apply(name, old, &desired)?;
                // The view's resourceVersion, when the request named one, must match.
                let named = patch.is_none() || body["metadata"]["resourceVersion"].is_string();
                if let Some(rv) = desired["metadata"]["resourceVersion"].as_str().filter(|rv| named && !rv.is_empty()) {
                    new["metadata"]["resourceVersion"] = json!(rv);
                }
                Ok((new, vec![]))
            })
            .await?;
        Ok(match verbs {
            Verbs::View => ApiResponse::json(200, &rules.view(&out.object)),
            Verbs::Put => respond(200, out, &renderer),
            Verbs::Post => ApiResponse::json(
                201,
                &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}),
            ),
        })
    }

    async fn list(&self, c: Collection<'_>, q: &Query, renderer: Renderer) -> Result<ApiResponse, StatusError> {
        let Collection { info, ns, labels, fields } = c;
        let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
        let gr = storage_gr(info);
        let cache = &self.storage.cache;
        let query = ListQuery {
            gr: gr.clone(),
            namespace: ns.map(str::to_string),
            labels: q.get("labelSelector").unwrap_or_default().to_string(),
            fields: q.get("fieldSelector").unwrap_or_default().to_string(),
        };
        let unselected = labels.is_empty() && fields.is_empty();
        let respond = |items: Vec<Arc<CachedObject>>, revision: u64, cont: Option<String>, remaining: usize| {
            let remaining = (remaining > 0 && unselected).then_some(remaining);
            ApiResponse {
                status: 200,
                content_type: renderer.content_type().to_string(),
                body: Body::Full(renderer.list_cached(&items, revision, cont, remaining)),
                warnings: Vec::new(),
            }
        };
        let (items, revision, start_after) = if let Some(token) = q.get("continue") {
            let (rev, id, after) = decode_continue(token)?;
            // The list's snapshot, while this server keeps it: a search from the last key.
            if let Some(page) = self.lists.page(id, &query, rev, &after, limit.unwrap_or(usize::MAX)) {
                let cont = page.last.as_ref().filter(|_| page.remaining > 0).map(|last| encode_continue(rev, id, last));
                return Ok(respond(page.items, rev, cont, page.remaining));
            }
            (cache.list_at(&gr, ns, rev, Some(&after))?, rev, Some(after))
        } else {
            match (q.get("resourceVersion"), q.get("resourceVersionMatch")) {
                (Some(rv), Some("Exact")) => {
                    let rev = parse_rv(rv)?;
                    cache.wait_for(rev, Duration::from_secs(5)).await?;
                    (cache.list_at(&gr, ns, rev, None)?, rev, None)
                }
                (Some("0"), _) => {
                    let (items, rev) = cache.list(&gr, ns);
                    (items, rev, None)
                }
                (Some(rv), _) => {
                    cache.wait_for(parse_rv(rv)?, Duration::from_secs(5)).await?;
                    let (items, rev) = cache.list(&gr, ns);
                    (items, rev, None)
                }
                (None, _) => {
                    cache.wait_fresh(&self.storage.store).await?;
                    let (items, rev) = cache.list(&gr, ns);
                    (items, rev, None)
                }
            }
        };
        // Items come in key order; a continuation starts after its last key.
        let matched: Vec<Arc<CachedObject>> = items
            .into_iter()
            .filter(|o| start_after.as_ref().is_none_or(|after| o.is_after(after)))
            .filter(|o| o.matches(&labels, &fields))
            .collect();
        let Some(limit) = limit.filter(|l| *l < matched.len()) else {
            return Ok(respond(matched, revision, None, 0));
        };
        let page: Vec<Arc<CachedObject>> = matched[..limit].to_vec();
        let last = matched[limit - 1].key();
        let remaining = matched.len() - limit;
        let id = self.lists.keep(query, revision, matched);
        Ok(respond(page, revision, Some(encode_continue(revision, id, &last)), remaining))
    }

    fn watch(&self, c: Collection<'_>, q: &Query, renderer: Renderer) -> Result<ApiResponse, StatusError> {
        let Collection { info, ns, labels, fields } = c;
        let send_initial = q.flag("sendInitialEvents");
        let start = match q.get("resourceVersion") {
            _ if send_initial => Start::Now,
            None | Some("0") => Start::Now,
            Some(rv) => Start::After(parse_rv(rv)?),
        };
        let timeout = q.int("timeoutSeconds")?.filter(|t| *t > 0).map(|t| Duration::from_secs(t as u64));
        let content_type = match renderer.rendering {
            Rendering::Table => crate::request::TABLE_CONTENT_TYPE,
            _ => crate::request::JSON,
        };
        let spec = watch::WatchSpec {
            gr: storage_gr(info),
            namespace: ns.map(str::to_string),
            labels,
            fields,
            start,
            bookmarks: q.flag("allowWatchBookmarks"),
            send_initial_end_bookmark: send_initial,
            timeout,
            renderer,
            info,
            scope: if ns.is_some() { "namespace" } else { "cluster" },
        };
        let stream = watch::serve(&self.storage.cache, spec);
        Ok(ApiResponse {
            status: 200,
            content_type: content_type.to_string(),
            body: Body::Stream(stream),
            warnings: vec![],
        })
    }

    async fn delete_collection(
        &self,
        c: Collection<'_>,
        q: &Query,
        req: &ApiRequest,
        renderer: Renderer,
    ) -> Result<ApiResponse, StatusError> {
        let Collection { info, ns, labels, fields } = c;
        let opts = delete_options(q, req)?;
        let gr = storage_gr(info);
        self.storage.cache.wait_fresh(&self.storage.store).await?;
        let (items, _) = self.storage.cache.list(&gr, ns);
        let mut deleted = Vec::new();
        for o in items.iter().filter(|o| o.matches(&labels, &fields)) {
            let obj_ns = Some(o.namespace()).filter(|n| !n.is_empty());
            match self.storage.delete(info, obj_ns, o.name(), &opts).await {
                Ok(v) => deleted.push(v),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let rev = self.storage.cache.revision();
        Ok(ApiResponse::json(200, &renderer.list(deleted, rev, None, None)).with_content_type(renderer.content_type()))
    }
}

fn respond(code: u16, out: Outcome, renderer: &Renderer) -> ApiResponse {
    let mut r = ApiResponse::json(code, &renderer.object(out.object)).with_content_type(renderer.content_type());
    r.warnings =
        out.warnings.iter().map(|w| format!("299 - {}", serde_json::to_string(w).unwrap_or_default())).collect();
    r
}

/// The watch cache's name of a resource's storage (events.k8s.io shares core events').
fn storage_gr(info: &ResourceInfo) -> Gr {
    (info.storage_group.to_string(), info.storage_resource.to_string())
}

/// A request on a whole collection (list, watch, deletecollection): the resource, the
/// namespace (None: every one) and the request's selectors, checked for the resource.
struct Collection<'a> {
    info: &'static ResourceInfo,
    ns: Option<&'a str>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl<'a> Collection<'a> {
    fn new(info: &'static ResourceInfo, ns: Option<&'a str>, q: &Query) -> Result<Self, StatusError> {
        let (labels, fields) = q.selectors()?;
        fields.validate_for(info.group, info.resource)?;
        Ok(Collection { info, ns, labels, fields })
    }
}

fn parse_rv(rv: &str) -> Result<u64, StatusError> {
    rv.parse().map_err(|_| StatusError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// Continue tokens are opaque to clients: hex of `<revision>/<snapshot id>/<namespace>/<name>`
/// of the list's last object.
fn encode_continue(rev: u64, id: u64, last: &ObjKey) -> String {
    format!("{rev}/{id}/{}/{}", last.0, last.1).bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Result<(u64, u64, ObjKey), StatusError> {
    let bad = || StatusError::bad_request("continue key is not valid: the token was not issued by this server");
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Option<Vec<u8>> =
        (0..token.len()).step_by(2).map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok()).collect();
    let s = String::from_utf8(bytes.ok_or_else(bad)?).map_err(|_| bad())?;
    let mut parts = s.splitn(4, '/');
    let (Some(rev), Some(id), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    Ok((rev.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?, (ns.to_string(), name.to_string())))
}

pub(crate) fn parse_body(req: &ApiRequest) -> Result<Value, StatusError> {
    if req.body.is_empty() {
        return Err(StatusError::bad_request("the request body is empty"));
    }
    let ct = req.content_type.as_deref().unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(&req.body)
            .map_err(|e| StatusError::bad_request(format!("error decoding JSON body: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(&req.body)
            .map_err(|e| StatusError::bad_request(format!("error decoding YAML body: {e}"))),
        // client-go's typed clients (kubectl create ...) send protobuf for built-in kinds.
        kubus_apimachinery::protobuf::CONTENT_TYPE => {
            kubus_apimachinery::protobuf::decode(&req.body).map_err(|e| StatusError::bad_request(e.to_string()))
        }
        _ => Err(StatusError::unsupported_media_type(kubus_apimachinery::status::MEDIA_TYPES)),
    }
}

fn write_options(q: &Query) -> Result<WriteOptions, StatusError> {
    let dry_run = match q.get("dryRun") {
        None => false,
        Some("All") => true,
        Some(o) => {
            return Err(StatusError::bad_request(format!("Invalid dryRun value: {o:?}; supported values: \"All\"")))
        }
    };
    Ok(WriteOptions {
        dry_run,
        field_validation: FieldValidation::parse(q.get("fieldValidation"))?,
        field_manager: q.get("fieldManager").map(str::to_string),
        force: q.flag("force"),
        user: None,
    })
}

fn delete_options(q: &Query, req: &ApiRequest) -> Result<DeleteOptions, StatusError> {
    let b: Value = if req.body.is_empty() { json!({}) } else { parse_body(req)? };
    let dry = q.get("dryRun").map(str::to_string).or_else(|| b["dryRun"][0].as_str().map(str::to_string));
    let grace = match q.int("gracePeriodSeconds")? {
        Some(g) => Some(g),
        None => b["gracePeriodSeconds"].as_i64(),
    };
    Ok(DeleteOptions {
        dry_run: dry.as_deref() == Some("All"),
        grace_period: grace,
        propagation: q
            .get("propagationPolicy")
            .map(str::to_string)
            .or_else(|| b["propagationPolicy"].as_str().map(str::to_string)),
        precondition_uid: b["preconditions"]["uid"].as_str().map(str::to_string),
        precondition_rv: b["preconditions"]["resourceVersion"].as_str().map(str::to_string),
    })
}

/// Upstream's request metrics around one request: in flight from [`begin`](Self::begin) until
/// it is dropped (a request whose client went away too), counted and timed under its labels by
/// [`end`](Self::end) (`apiserver_request_total`, `apiserver_request_duration_seconds`).
pub struct RequestMetrics {
    info: RequestInfo,
    inflight: Option<prometheus::IntGauge>,
    started: Instant,
}

impl RequestMetrics {
    pub fn begin(req: &ApiRequest, r: &Route, q: &Query) -> RequestMetrics {
        let started = Instant::now();
        let info = RequestInfo::of(req, r, q);
        // Long-running requests (watches) are not in flight in upstream's sense.
        let inflight = (info.verb != "WATCH").then(|| {
            let kind = if matches!(info.verb, "GET" | "LIST") { "readOnly" } else { "mutating" };
            INFLIGHT.with_label_values(&[kind])
        });
        if let Some(g) = &inflight {
            g.inc();
        }
        RequestMetrics { info, inflight, started }
    }

    /// The request is answered with `status`.
    pub fn end(self, status: u16, transport: &'static str) {
        let labels = self.info.labels();
        let code = status.to_string();
        let mut counted = labels.to_vec();
        counted.extend([code.as_str(), transport]);
        REQUESTS.with_label_values(&counted).inc();
        REQUEST_LATENCY.with_label_values(&labels).observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for RequestMetrics {
    fn drop(&mut self) {
        if let Some(g) = &self.inflight {
            g.dec();
        }
    }
}

/// What upstream's request metrics say of a request: its verb (LIST, WATCH, APPLY, ... as
/// upstream spells them), resource coordinates and scope.
struct RequestInfo {
    verb: &'static str,
    dry_run: &'static str,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    scope: &'static str,
}

impl RequestInfo {
    fn of(req: &ApiRequest, r: &Route, q: &Query) -> RequestInfo {
        let dry_run = if q.get("dryRun").is_some() { "All" } else { "" };
        match r {
            Route::Resource(p) => {
                let verb = match (req.method.as_str(), p.name.is_some()) {
                    ("GET", false) if q.flag("watch") => "WATCH",
                    ("GET", true) if q.flag("watch") => "WATCH",
                    ("GET", false) => "LIST",
                    ("GET", true) => "GET",
                    ("DELETE", false) => "DELETECOLLECTION",
                    ("DELETE", true) => "DELETE",
                    ("PATCH", _)
                        if req.content_type.as_deref().is_some_and(|c| c.starts_with("application/apply-patch")) =>
                    {
                        "APPLY"
                    }
                    ("PATCH", _) => "PATCH",
                    ("POST", _) => "POST",
                    ("PUT", _) => "PUT",
                    ("HEAD", _) => "GET",
                    _ => "CONNECT",
                };
                let scope = match (&p.name, &p.namespace) {
                    (Some(_), _) => "resource",
                    (None, Some(_)) => "namespace",
                    (None, None) => "cluster",
                };
                RequestInfo {
                    verb,
                    dry_run,
                    group: p.group.clone(),
                    version: p.version.clone(),
                    resource: p.resource.clone(),
                    subresource: p.subresource.clone().unwrap_or_default(),
                    scope,
                }
            }
            // Non-resource paths (discovery, openapi, health, metrics).
            _ => RequestInfo {
                verb: match req.method.as_str() {
                    "GET" | "HEAD" => "GET",
                    "POST" => "POST",
                    "PUT" => "PUT",
                    "PATCH" => "PATCH",
                    "DELETE" => "DELETE",
                    _ => "CONNECT",
                },
                dry_run,
                group: String::new(),
                version: String::new(),
                resource: String::new(),
                subresource: String::new(),
                scope: "",
            },
        }
    }

    /// Values in the order of [`crate::metrics::REQUEST_LABELS`].
    fn labels(&self) -> [&str; 8] {
        [
            self.verb,
            self.dry_run,
            &self.group,
            &self.version,
            &self.resource,
            &self.subresource,
            self.scope,
            "apiserver",
        ]
    }
}
