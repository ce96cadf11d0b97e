//! The Kubus API server actor: the Kubernetes REST API that kubectl drives, over HTTP and over
//! NATS, validating every request and the only writer of state.
//!
//! Layout: [`request`] (the transport-neutral request, routing, negotiation), [`handler`]
//! (verbs), [`storage`] (the write path over the store, with [`decode`] and [`patch`]),
//! [`registry`] (each kind's strategy: defaults, status, validation, allocation, deletion,
//! subresources), [`error`] (store errors as statuses), [`cache`] (the watch cache and its
//! feeder actor), [`watch`], [`render`] (JSON, Tables, metadata), [`discovery`], [`openapi`],
//! [`convert`] (versions sharing storage), [`http`] and [`nats`] (the two transports),
//! [`resource_metrics`] (metrics.k8s.io from the nodes' usage reports, never stored).
#![forbid(unsafe_code)]

pub mod admission;
pub mod allocator;
pub mod audit;
pub mod authn;
pub mod authorization;
pub mod cache;
pub mod connection;
pub mod convert;
pub mod decode;
pub mod discovery;
pub mod encryption;
pub mod error;
pub mod event_ttl;
pub mod eviction;
pub mod handler;
pub mod http;
pub mod join;
pub mod kubeconfig;
pub mod list_snapshot;
pub mod metrics;
pub mod nats;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod registry;
pub mod render;
pub mod request;
pub mod resource_metrics;
pub mod state_metrics;
pub mod storage;
pub mod stream;
pub mod tls;
pub mod token;
pub mod watch;

use actix::Supervisor;
use kubus_bus::Store;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use handler::ApiState;

/// Asks a supervised actor to stop for good: it stops, and since its owner drops the last
/// address at the same time, its supervisor does not restart it.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Shutdown;

#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    pub bind: SocketAddr,
    pub cluster: String,
    /// Events the watch cache keeps at most per resource for watches that resume from a
    /// resourceVersion (it keeps those of the last 75 s up to this, and 1,000 at least).
    pub watch_cache_events: usize,
    pub http_workers: usize,
    pub service_ranges: allocator::ServiceRanges,
    /// How long the objects stream keeps a deleted object's tombstone (the archive keeps all).
    pub tombstone_retention: Duration,
    /// How long an Event lives after its last write (kube-apiserver's `--event-ttl`).
    pub event_ttl: Duration,
    /// The API port's TLS; `None` serves plain HTTP (`--insecure-http`: development only, on
    /// loopback, every request the local administrator).
    pub tls: Option<tls::ServerTls>,
    /// Where pods reach this API server (upstream's --advertise-address and --secure-port): the
    /// `kubernetes` Service's endpoints. None leaves them alone (an API server on loopback).
    pub advertise: Option<SocketAddr>,
    /// What is audited (None: nothing; Kubus's own API servers pass the default policy or
    /// `--audit-policy-file`), and how long the audit stream keeps events.
    pub audit: Option<AuditConfig>,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub policy: audit::policy::Policy,
    pub max_age: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error("cannot bind the API port {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("refusing to serve plain HTTP on {0}: without TLS every request is the cluster administrator, so only a loopback address may serve it")]
    InsecureBind(SocketAddr),
    #[error("cannot create the audit stream: {0}")]
    Audit(kubus_bus::StoreError),
    #[error("the watch cache did not sync within {0:?}")]
    CacheSync(Duration),
    #[error(transparent)]
    TokenKey(#[from] token::TokenKeyError),
    #[error("cannot create the initial objects (namespaces, the kubernetes service): {0}")]
    Bootstrap(kubus_apimachinery::StatusError),
}

/// A running API server.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub state: ApiState,
    http: actix_web::dev::ServerHandle,
    // Supervisors restart an actor only while someone holds its address.
    feeder: actix::Addr<cache::CacheFeeder>,
    nats: actix::Addr<nats::NatsService>,
    priority: actix::Addr<nats::NatsService>,
    /// The priority lane's thread.
    priority_arbiter: actix::Arbiter,
    compactor: actix::Addr<cache::Compactor>,
    event_ttl: actix::Addr<event_ttl::EventTtl>,
    usage: actix::Addr<resource_metrics::UsageReceiver>,
}

impl ApiServer {
    /// Starts the watch cache, the NATS service and the HTTP server as supervised actors and
    /// creates the namespaces every cluster has. Must run inside an actix system.
    pub async fn start(
        store: Store,
        client: async_nats::Client,
        config: ApiServerConfig,
    ) -> Result<ApiServer, ApiServerError> {
        if config.tls.is_none() && !config.bind.ip().is_loopback() {
            return Err(ApiServerError::InsecureBind(config.bind));
        }
        metrics::register();
        let cache = cache::WatchCache::new(config.watch_cache_events);
        authorization::rbac::index_bindings(&cache);
        state_metrics::StateMetrics::register(cache.clone());
        let feeder = {
            let (cache, store) = (cache.clone(), store.clone());
            Supervisor::start(move |_| cache::CacheFeeder { cache, store })
        };
        let sync_timeout = Duration::from_secs(60);
        let deadline = tokio::time::Instant::now() + sync_timeout;
        while !cache.is_synced() {
            if tokio::time::Instant::now() > deadline {
                return Err(ApiServerError::CacheSync(sync_timeout));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let compactor = {
            let (cache, store, retention) = (cache.clone(), store.clone(), config.tombstone_retention);
            Supervisor::start(move |_| cache::Compactor { cache, store, retention })
        };
        let issuer = token::TokenIssuer::load(&store).await?;
        let ready = Arc::new(AtomicBool::new(false));
        let authorizer = Arc::new(authorization::cluster_chain(cache.clone()));
        let tokens = Arc::new(token::ServiceAccountTokens::new(Arc::new(issuer), cache.clone()));
        let auditor = match &config.audit {
            Some(a) => {
                store.ensure_audit_stream(a.max_age).await.map_err(ApiServerError::Audit)?;
                audit::Auditor::start(client.clone(), store.config().audit_subject(), a.policy.clone())
            }
            None => audit::Auditor::disabled(),
        };
        let state = ApiState {
            storage: storage::Storage {
                allocator: allocator::Allocator::new(store.clone(), config.service_ranges.clone()),
                quota: admission::quota::evaluator::QuotaEvaluator::new(admission::quota::evaluator::QuotaStore {
                    store: store.clone(),
                    cache: cache.clone(),
                }),
                store,
                cache,
                mount_service_account_tokens: config.tls.is_some(),
            },
            openapi: Arc::new(openapi::OpenApi::build()),
            ready: ready.clone(),
            tokens,
            assertions: config
                .tls
                .as_ref()
                .map(|tls| Arc::new(authn::assertion::CertificateAssertions::new(tls.clone(), &config.cluster))),
            lists: Default::default(),
            usage: Default::default(),
            authorizer,
            audit: Arc::new(auditor),
        };
        bootstrap(&state, config.advertise).await.map_err(ApiServerError::Bootstrap)?;
        // Before serving: metrics.k8s.io answers from the nodes' reports.
        let usage = {
            let (client, cluster, store) = (client.clone(), config.cluster.clone(), state.usage.clone());
            Supervisor::start(move |_| resource_metrics::UsageReceiver { client, cluster, store })
        };
        let service = |subject: String, serving: &Arc<AtomicBool>| {
            let (client, state, serving) = (client.clone(), state.clone(), serving.clone());
            move |_: &mut actix::Context<nats::NatsService>| nats::NatsService {
                client,
                subject,
                state,
                serving: serving.clone(),
            }
        };
        let serving = Arc::new(AtomicBool::new(false));
        let nats = Supervisor::start(service(kubus_bus::api::api_subject(&config.cluster), &serving));
        // The priority lane has a thread of its own: the main one may be saturated by bulk work.
        let priority_serving = Arc::new(AtomicBool::new(false));
        let priority_arbiter = actix::Arbiter::new();
        priority_arbiter.spawn_fn(|| {
            let _ = std::fs::write("/proc/thread-self/comm", "apiserver-prio");
        });
        let priority = Supervisor::start_in_arbiter(
            &priority_arbiter.handle(),
            service(kubus_bus::api::api_priority_subject(&config.cluster), &priority_serving),
        );
        // Ready means reachable on both transports: internal actors start right after this.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !(serving.load(Ordering::Relaxed) && priority_serving.load(Ordering::Relaxed))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let streams = stream::StreamContext { client: client.clone(), cluster: config.cluster.clone() };
        let (server, addr) = http::serve(state.clone(), streams, config.bind, config.http_workers, config.tls.clone())
            .map_err(|e| ApiServerError::Bind(config.bind, e))?;
        let handle = server.handle();
        actix::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        ready.store(true, Ordering::Relaxed);
        tracing::info!(%addr, "API server ready");
        let event_ttl = {
            let (storage, ttl) = (state.storage.clone(), config.event_ttl);
            Supervisor::start(move |_| event_ttl::EventTtl { storage, ttl })
        };
        Ok(ApiServer {
            addr,
            state,
            http: handle,
            feeder,
            nats,
            priority,
            priority_arbiter,
            compactor,
            event_ttl,
            usage,
        })
    }

    /// Stops serving on both transports and stops the watch cache feed.
    pub async fn stop(self) {
        let ApiServer { http, feeder, nats, priority, priority_arbiter, compactor, event_ttl, usage, .. } = self;
        nats.do_send(Shutdown);
        usage.do_send(Shutdown);
        priority.do_send(Shutdown);
        feeder.do_send(Shutdown);
        compactor.do_send(Shutdown);
        event_ttl.do_send(Shutdown);
        // Addresses go before the actors stop, so their supervisors do not restart them.
        drop((nats, priority, feeder, compactor, event_ttl, usage));
        http.stop(true).await;
        priority_arbiter.stop();
    }
}

use kubus_apimachinery::volume::{DEFAULT_CLASS, LOCAL_PATH_CLASS, LOCAL_PATH_PROVISIONER};

/// The namespaces every Kubernetes cluster starts with.
async fn bootstrap(state: &ApiState, advertise: Option<SocketAddr>) -> Result<(), kubus_apimachinery::StatusError> {
    crate::authorization::bootstrap::reconcile(&state.storage).await?;
    let info = kubus_apimachinery::resource::find("", "v1", "namespaces").expect("namespaces are served");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match state.storage.create(info, None, body, &Default::default()).await {
            Ok(_) => tracing::info!(namespace = ns, "created namespace"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    // An older Kubus kept an HS256 token key in a Secret, where anyone who may read Secrets in
    // kube-system could mint tokens; the key now lives in the store's keys stream only.
    let secrets = kubus_apimachinery::resource::find("", "v1", "secrets").expect("secrets are served");
    let legacy = crate::token::LEGACY_SIGNING_KEY_SECRET;
    match state.storage.delete(secrets, Some("kube-system"), legacy, &Default::default()).await {
        Ok(_) => tracing::info!(secret = legacy, "removed the old service account signing key Secret"),
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    // The default StorageClass: node-local directories made on the node a pod lands on
    // (the role rancher's local-path-provisioner plays in k3s), served by every node agent.
    let classes = kubus_apimachinery::resource::find("storage.k8s.io", "v1", "storageclasses").expect("served");
    let sc = serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": LOCAL_PATH_CLASS,
            "annotations": {DEFAULT_CLASS: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
    match state.storage.create(classes, None, sc, &Default::default()).await {
        Ok(_) => tracing::info!(class = LOCAL_PATH_CLASS, "created the default storage class"),
        Err(e) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    // The built-in PriorityClasses, as upstream's scheduling bootstrap makes them.
    let classes = kubus_apimachinery::resource::find("scheduling.k8s.io", "v1", "priorityclasses").expect("served");
    for (name, value) in kubus_apimachinery::validation::scheduling::SYSTEM_PRIORITY_CLASSES {
        let description = match *name {
            "system-node-critical" => "Used for system critical pods that must not be moved from their current node.",
            _ => "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        };
        let pc = serde_json::json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "description": description});
        match state.storage.create(classes, None, pc, &Default::default()).await {
            Ok(_) => tracing::info!(class = name, "created the built-in priority class"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    // The API server's own Service, at the first address of the service range.
    let services = kubus_apimachinery::resource::find("", "v1", "services").expect("services are served");
    let ip = state.storage.allocator.ranges().first().to_string();
    // Its target port is the API server's own (upstream's --secure-port), 6443 by default.
    let target_port = advertise.map_or(6443, |a| a.port());
    let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": target_port}]}});
    // The namespace check reads the watch cache, which may not have seen `default` yet.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match state.storage.create(services, Some("default"), svc.clone(), &Default::default()).await {
            Ok(_) => tracing::info!(%ip, "created the kubernetes service"),
            Err(e) if e.code == 409 || e.code == 422 => {}
            Err(e) if e.code == 404 && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
            Err(e) => return Err(e),
        }
        break;
    }
    match advertise {
        Some(addr) => advertise_endpoints(state, addr).await,
        None => Ok(()),
    }
}

/// Points the `kubernetes` Service at this API server (the master endpoint reconciler's job):
/// its Endpoints, which the EndpointSlice mirroring copies into a slice for kube-proxy.
/// Every API server writes its own address: the last one started is the one pods reach.
async fn advertise_endpoints(state: &ApiState, addr: SocketAddr) -> Result<(), kubus_apimachinery::StatusError> {
    let info = kubus_apimachinery::resource::find("", "v1", "endpoints").expect("endpoints are served");
    let subsets = serde_json::json!([{"addresses": [{"ip": addr.ip().to_string()}],
        "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}]}]);
    let opts = Default::default();
    for _ in 0..5 {
        match state.storage.get(info, Some("default"), "kubernetes").await {
            Ok(mut current) => {
                if current["subsets"] == subsets {
                    return Ok(());
                }
                current["subsets"] = subsets.clone();
                match state.storage.update(info, Some("default"), "kubernetes", None, current, &opts).await {
                    Err(e) if e.code == 409 => continue,
                    r => return r.map(|_| tracing::info!(%addr, "the kubernetes service points here")),
                }
            }
            Err(e) if e.code == 404 => {
                let body = serde_json::json!({"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": "kubernetes", "namespace": "default"}, "subsets": subsets});
                match state.storage.create(info, Some("default"), body, &opts).await {
                    Err(e) if e.code == 409 => continue,
                    r => return r.map(|_| tracing::info!(%addr, "the kubernetes service points here")),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
