//! `kubus bench api --admission-cost`: what upstream's request metrics and the admission chain
//! cost per request, timed in process on the API server's own code: for each ConfigMap create,
//! the request metrics (`RequestMetrics::begin` .. `end`, as the handler records them) around
//! the admission calls the create path makes, in its order, in a namespace without a quota and
//! in one whose ResourceQuota is charged by every create. The object itself is not stored, so
//! what is timed is what metrics and admission add to a create; the figures are set against the
//! create p99 measured over HTTP in the same run.

use crate::http::{expect, Conn};
use crate::stats::{pct, sorted};
use kubus_apimachinery::{resource, ResourceInfo};
use kubus_apiserver::admission::{self, Attributes};
use kubus_apiserver::authn;
use kubus_apiserver::handler::RequestMetrics;
use kubus_apiserver::request::{route, ApiRequest, Query};
use kubus_apiserver::storage::Storage;
use serde_json::{json, Value};
use std::cell::Cell;
use std::time::{Duration, Instant};

const FREE: &str = "cost-free";
const QUOTA: &str = "cost-quota";
const BATCH_SIZE: &str = "kubus_apiserver_quota_batch_size";

/// What one timed request does.
#[derive(Clone, Copy, PartialEq)]
enum Timed {
    /// Request metrics only.
    Metrics,
    /// Request metrics around the admission chain.
    Admission,
}

/// Sets up the two namespaces, then times `n` requests per row at one client and at `conc`.
pub(crate) async fn run(
    storage: &Storage,
    addr: &str,
    n: usize,
    conc: usize,
    create_p99_ms: f64,
) -> anyhow::Result<()> {
    let mut c = Conn::open(addr).await?;
    for ns in [FREE, QUOTA] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).to_string();
        expect(&mut c, "POST", "/api/v1/namespaces", "application/json", body.as_bytes(), 201).await?;
    }
    // A list without a resourceVersion is served once the watch cache has every write so far:
    // the namespaces are known to the writes that follow, and the quota to admission, which
    // reads both from that cache.
    expect(&mut c, "GET", "/api/v1/namespaces", "application/json", b"", 200).await?;
    crate::api::create_quota(&mut c, QUOTA).await?;
    expect(&mut c, "GET", &format!("/api/v1/namespaces/{QUOTA}/resourcequotas"), "application/json", b"", 200).await?;

    println!(
        "admission cost in process, {n} ConfigMap creates per row (not stored); create p99 over HTTP in this run: {create_p99_ms:.3} ms"
    );
    println!("{:<44} {:>7} {:>9} {:>9} {:>15}", "", "clients", "p50 ms", "p99 ms", "p99/create p99");
    let rows = [
        ("request metrics", FREE, Timed::Metrics),
        ("metrics + admission, no quota", FREE, Timed::Admission),
        ("metrics + admission, ResourceQuota charged", QUOTA, Timed::Admission),
    ];
    for clients in [1, conc] {
        for (name, ns, what) in rows {
            let batches = crate::api::histogram(BATCH_SIZE, &[]);
            let lat = sorted(time(storage, ns, n, clients, what).await?);
            let p99 = pct(&lat, 0.99);
            let (b_sum, b_count) = crate::api::histogram(BATCH_SIZE, &[]);
            let batched = if b_count > batches.1 {
                format!("  (mean quota batch {:.1})", (b_sum - batches.0) / (b_count - batches.1) as f64)
            } else {
                String::new()
            };
            println!(
                "{name:<44} {clients:>7} {:>9.4} {p99:>9.4} {:>14.1}%{batched}",
                pct(&lat, 0.5),
                100.0 * p99 / create_p99_ms
            );
        }
    }
    Ok(())
}

fn configmaps() -> &'static ResourceInfo {
    resource::find("", "v1", "configmaps").expect("configmaps are served")
}

/// `n` creates over `clients` concurrent loops (on this task: the loops interleave at the
/// awaits, as concurrent requests do).
async fn time(storage: &Storage, ns: &str, n: usize, clients: usize, what: Timed) -> anyhow::Result<Vec<Duration>> {
    let next = Cell::new(0);
    let one_client = || async {
        let mut lat = Vec::new();
        loop {
            let i = next.get();
            if i >= n {
                return Ok::<_, anyhow::Error>(lat);
            }
            next.set(i + 1);
            lat.push(create(storage, ns, i, what).await?);
        }
    };
    let mut all = Vec::with_capacity(n);
    for lat in futures::future::join_all((0..clients).map(|_| one_client())).await {
        all.extend(lat?);
    }
    Ok(all)
}

/// One create's metrics and admission, timed; the request and object are built before.
async fn create(storage: &Storage, ns: &str, i: usize, what: Timed) -> anyhow::Result<Duration> {
    let info = configmaps();
    let name = format!("cost-{}-{i}", if what == Timed::Metrics { "m" } else { "a" });
    let req = ApiRequest {
        method: "POST".into(),
        path: format!("/api/v1/namespaces/{ns}/configmaps"),
        query: String::new(),
        content_type: Some("application/json".into()),
        accept: Some("application/json".into()),
        body: Vec::new(),
        user_agent: "kubus-bench".into(),
    };
    // Who the create is from: the administrator, as the bench's client certificate makes it
    // (not timed: the rows are metrics and admission).
    let user = authn::cluster_admin();
    let mut obj: Value = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": {"bench": "yes"}},
        "data": {"value": "0", "payload": "x".repeat(512)}});
    let started = Instant::now();
    // The handler reads the route and query once per request; that is part of the cost.
    let (r, q) = (route(&req.path), Query::parse(&req.query));
    let metrics = RequestMetrics::begin(&req, &r, &q);
    if what == Timed::Admission {
        let a = Attributes { info, namespace: ns, name: &name, old: None, dry_run: false };
        admission::admit_create(storage, info, &mut obj).await?;
        admission::admit_in_namespace(storage, &a, &mut obj)?;
        admission::validate(storage, info, &obj, None, Some(&user)).await?;
        admission::validate_in_namespace(storage, &a, &obj).await?;
    }
    metrics.end(201, "http");
    Ok(started.elapsed())
}
