//! `kubus bench api`: throughput and latency of the API server over HTTPS with a client
//! certificate (authentication and RBAC on every request), as kubectl uses it; `--insecure-http`
//! measures the plain development port beside it. Starts its own cluster (embedded nats-server
//! in a temp dir) unless `--kubeconfig` names one. Figures are recorded in docs/benchmarks.md.

use anyhow::bail;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent;
use kubus_apiserver::{ApiServer, ApiServerConfig};
use kubus_bus::{EmbeddedNats, Store, StoreConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::host;
use crate::http::{expect, Conn};
use crate::stats::{pct, report, sorted};

/// Runs `total` operations over `conc` connections; `op(conn, i)` does operation `i`.
pub(crate) async fn phase<F, Fut>(
    addr: &str,
    total: usize,
    conc: usize,
    op: F,
) -> anyhow::Result<(Vec<Duration>, Duration)>
where
    F: Fn(Conn, usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = anyhow::Result<Conn>> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (next, op, addr) = (next.clone(), op.clone(), addr.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut conn = Conn::open(&addr).await?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                conn = op(conn, i).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, started.elapsed()))
}

fn cm(i: usize, v: usize) -> Vec<u8> {
    serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":format!("bench-{i}"),"labels":{"bench":"yes"}},
        "data":{"value": v.to_string(), "payload": "x".repeat(512)}})
    .to_string()
    .into_bytes()
}

pub(crate) struct Options {
    pub objects: usize,
    pub concurrency: usize,
    pub watchers: usize,
    pub kubeconfig: Option<std::path::PathBuf>,
    pub insecure_http: bool,
    pub quota: bool,
    pub admission_cost: bool,
    pub nats: bool,
    /// `default`, `none` or `request` (see `kubus bench api --help`).
    pub audit: String,
}

pub(crate) async fn run(opts: Options) -> anyhow::Result<()> {
    let Options {
        objects,
        concurrency,
        watchers,
        kubeconfig,
        insecure_http,
        quota,
        admission_cost,
        nats: over_nats,
        audit,
    } = opts;
    use kubus_apiserver::audit::policy::Policy;
    let audit = match audit.as_str() {
        "none" => None,
        "request" => {
            Some(Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Request\n", "request")?)
        }
        _ => Some(Policy::default_policy()),
    }
    .map(|policy| kubus_apiserver::AuditConfig { policy, max_age: kubus_bus::store::audit::DEFAULT_MAX_AGE });
    if over_nats && (kubeconfig.is_some() || quota || admission_cost) {
        bail!("--nats measures the bench's own API server over NATS: leave out --kubeconfig, --quota and --admission-cost");
    }
    if admission_cost && kubeconfig.is_some() {
        bail!("--admission-cost times the API server's code in this process: leave out --kubeconfig");
    }
    if insecure_http && kubeconfig.is_some() {
        bail!("--insecure-http is how the bench's own API server serves: leave out --kubeconfig");
    }
    let mut _own = None;
    let addr =
        match kubeconfig {
            Some(path) => crate::http::register_kubeconfig(&path)?,
            None => {
                let dir = std::env::temp_dir().join(format!("kubus-bench-{}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                let nats = EmbeddedNats::start(&dir, "127.0.0.1:0", None).await?;
                let client = kubus_bus::connect(nats.url(), "bench").await?;
                let store =
                    Store::open(client.clone(), StoreConfig { cluster: "bench".into(), ..Default::default() }).await?;
                let pki = kubus_apiserver::pki::ClusterPki::ephemeral(
                    &kubus_apiserver::pki::ServingNames::for_cluster("", &[], "10.96.0.1".parse()?, "cluster.local"),
                )?;
                let tls = if insecure_http { None } else { Some(kubus_apiserver::tls::ServerTls::new(&pki)?) };
                let api = ApiServer::start(
                    store,
                    client,
                    ApiServerConfig {
                        bind: "127.0.0.1:0".parse()?,
                        cluster: "bench".into(),
                        watch_cache_events: 100_000,
                        http_workers: 2,
                        tombstone_retention: std::time::Duration::from_secs(3600),
                        event_ttl: std::time::Duration::from_secs(3600),
                        service_ranges: Default::default(),
                        tls,
                        advertise: None,
                        audit: audit.clone(),
                    },
                )
                .await?;
                let addr = api.addr.to_string();
                if over_nats {
                    let credential = match insecure_http {
                        true => kubus_bus::credential::Credential::None,
                        false => kubus_bus::credential::Credential::certificate(
                            &pki.admin.cert_pem,
                            &pki.admin.key_pem,
                            "bench",
                        )?,
                    };
                    let client = kubus_bus::connect(nats.url(), "bench-client").await?;
                    let api_client =
                        kubus_bus::api::ApiClient::new(client, "bench", "bench").with_credential(credential);
                    let result = over_nats_phases(api_client, objects, concurrency, insecure_http).await;
                    api.stop().await;
                    nats.stop().await;
                    let _ = std::fs::remove_dir_all(dir);
                    return result;
                }
                crate::http::register(match insecure_http {
                    true => crate::kubeconfig::Endpoint::plain(&addr),
                    false => crate::kubeconfig::Endpoint::tls(
                        &addr,
                        pki.ca_pem.as_bytes(),
                        Some((pki.admin.cert_pem.as_bytes(), pki.admin.key_pem.as_bytes())),
                    )?,
                });
                _own = Some((dir, nats, api));
                addr
            }
        };
    let ns = "/api/v1/namespaces/default/configmaps";
    println!("kubus bench api: {objects} ConfigMaps (~0.6 KiB), {concurrency} concurrent clients, {watchers} watchers, server {}://{addr}{}", if insecure_http { "http" } else { "https" }, if quota { ", ConfigMaps under a ResourceQuota" } else { "" });
    if quota {
        create_quota(&mut Conn::open(&addr).await?, "default").await?;
    }

    // Watchers: each holds a watch on configmaps; delivery latency is measured on updates.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut watch_tasks = Vec::new();
    for _ in 0..watchers {
        let (addr, tx) = (addr.clone(), tx.clone());
        watch_tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr).await?;
            c.send_head(
                "GET",
                "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&labelSelector=bench%3Dwatch",
                "application/json",
                b"",
            )
            .await?;
            c.read_head().await?;
            let mut pending = Vec::new();
            while let Some(chunk) = c.next_chunk().await? {
                pending.extend_from_slice(&chunk);
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    if let Some(i) = seq_of(&line) {
                        let _ = tx.send((i, Instant::now()));
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }

    let before = Costs::now(_own.as_ref().map(|(dir, _, _)| dir.as_path()));
    let (lat, wall) = phase(&addr, objects, concurrency, move |mut c, i| async move {
        expect(&mut c, "POST", ns, "application/json", &cm(i, 0), 201).await?;
        Ok(c)
    })
    .await?;
    let create_p99 = pct(&sorted(lat.clone()), 0.99);
    report("create", lat, wall);
    if _own.is_some() {
        Costs::now(_own.as_ref().map(|(dir, _, _)| dir.as_path())).report_since(&before, objects);
    }
    let (lat, wall) = phase(&addr, objects, concurrency, move |mut c, i| async move {
        expect(&mut c, "GET", &format!("{ns}/bench-{i}"), "application/json", b"", 200).await?;
        Ok(c)
    })
    .await?;
    report("get", lat, wall);
    let (lat, wall) = phase(&addr, objects, concurrency, move |mut c, i| async move {
        let patch = format!(r#"{{"data":{{"value":"{i}"}}}}"#);
        expect(&mut c, "PATCH", &format!("{ns}/bench-{i}"), "application/merge-patch+json", patch.as_bytes(), 200)
            .await?;
        Ok(c)
    })
    .await?;
    report("update (merge patch)", lat, wall);
    let lists = 50.max(objects / 100);
    let (lat, wall) = phase(&addr, lists, concurrency.min(4), move |mut c, _| async move {
        expect(&mut c, "GET", &format!("{ns}?limit=500"), "application/json", b"", 200).await?;
        Ok(c)
    })
    .await?;
    report("list (500 per page)", lat, wall);

    // Watch delivery: one labelled object updated repeatedly; every watcher must see each update.
    let mut c = Conn::open(&addr).await?;
    let body = serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"watched","labels":{"bench":"watch"}},"data":{"seq":"0"}}).to_string();
    expect(&mut c, "POST", ns, "application/json", body.as_bytes(), 201).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}
    let rounds = 200;
    let mut lat = Vec::new();
    let started = Instant::now();
    for seq in 1..=rounds {
        let patch = format!(r#"{{"data":{{"seq":"{seq}"}}}}"#);
        let sent = Instant::now();
        expect(&mut c, "PATCH", &format!("{ns}/watched"), "application/merge-patch+json", patch.as_bytes(), 200)
            .await?;
        let mut got = 0;
        while got < watchers {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some((i, at))) if i == seq => {
                    lat.push(at.duration_since(sent));
                    got += 1;
                }
                Ok(Some(_)) => {}
                _ => bail!("watchers missed update {seq} ({got}/{watchers} delivered)"),
            }
        }
    }
    report(&format!("watch delivery x{watchers}"), lat, started.elapsed());
    for t in watch_tasks {
        t.abort();
    }
    if let (true, Some((_, _, api))) = (admission_cost, &_own) {
        crate::admission_cost::run(&api.state.storage, &addr, objects, concurrency, create_p99).await?;
    }
    if let Some((dir, nats, api)) = _own {
        api.stop().await;
        nats.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// `objects` creates, gets and merge patches, and lists of 500, over NATS through `api`, from
/// `concurrency` tasks sharing one connection (as a process's components do).
async fn over_nats_phases(
    api: kubus_bus::api::ApiClient,
    objects: usize,
    concurrency: usize,
    unauthenticated: bool,
) -> anyhow::Result<()> {
    println!(
        "kubus bench api --nats: {objects} ConfigMaps (~0.6 KiB), {concurrency} concurrent requesters, {}",
        if unauthenticated {
            "no credentials (development cluster)"
        } else {
            "admin certificate assertion per request"
        }
    );
    let phase = |total: usize, conc: usize, method: &'static str, make: fn(usize) -> Request| {
        let api = api.clone();
        async move {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..conc {
                let (api, next) = (api.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= total {
                            return Ok::<_, anyhow::Error>(lat);
                        }
                        let Request { path, query, content_type, body } = make(i);
                        let req = kubus_bus::api::ApiRequest {
                            method: method.into(),
                            path,
                            query: query.into(),
                            content_type: content_type.map(str::to_string),
                            accept: Some("application/json".into()),
                            body,
                            user_agent: String::new(),
                        };
                        let t = Instant::now();
                        let resp = api.send(req).await?;
                        if resp.status >= 300 {
                            bail!("{method} answered {}: {}", resp.status, String::from_utf8_lossy(&resp.body));
                        }
                        lat.push(t.elapsed());
                    }
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            Ok::<_, anyhow::Error>((all, started.elapsed()))
        }
    };
    let (lat, wall) = phase(objects, concurrency, "POST", |i| Request {
        path: NS.into(),
        query: "",
        content_type: Some("application/json"),
        body: cm(i, 0),
    })
    .await?;
    report("create", lat, wall);
    let (lat, wall) = phase(objects, concurrency, "GET", |i| Request {
        path: format!("{NS}/bench-{i}"),
        query: "",
        content_type: None,
        body: Vec::new(),
    })
    .await?;
    report("get", lat, wall);
    let (lat, wall) = phase(objects, concurrency, "PATCH", |i| Request {
        path: format!("{NS}/bench-{i}"),
        query: "",
        content_type: Some("application/merge-patch+json"),
        body: format!(r#"{{"data":{{"value":"{i}"}}}}"#).into_bytes(),
    })
    .await?;
    report("update (merge patch)", lat, wall);
    let lists = 50.max(objects / 100);
    let (lat, wall) = phase(lists, concurrency.min(4), "GET", |_| Request {
        path: NS.into(),
        query: "limit=500",
        content_type: None,
        body: Vec::new(),
    })
    .await?;
    report("list (500 per page)", lat, wall);
    Ok(())
}

/// One request of a NATS phase.
struct Request {
    path: String,
    query: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

const NS: &str = "/api/v1/namespaces/default/configmaps";

/// A ResourceQuota `bench` on ConfigMaps in `ns`, with the quota controller's part (status.hard
/// and used) written directly: the bench runs the API server alone.
pub(crate) async fn create_quota(c: &mut Conn, ns: &str) -> anyhow::Result<()> {
    let q = serde_json::json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "bench"},
        "spec": {"hard": {"configmaps": "1000000", "count/configmaps": "1000000"}}});
    let quotas = format!("/api/v1/namespaces/{ns}/resourcequotas");
    let created: serde_json::Value =
        serde_json::from_slice(&expect(c, "POST", &quotas, "application/json", q.to_string().as_bytes(), 201).await?)?;
    let mut with_status = created.clone();
    with_status["status"] =
        serde_json::json!({"hard": created["spec"]["hard"], "used": {"configmaps": "0", "count/configmaps": "0"}});
    let status = format!("{quotas}/bench/status");
    expect(c, "PUT", &status, "application/json", with_status.to_string().as_bytes(), 200).await?;
    Ok(())
}

/// Sum and count of one of the in-process API server's histograms so far, over the series
/// whose labels include `labels`.
pub(crate) fn histogram(name: &str, labels: &[(&str, &str)]) -> (f64, u64) {
    prometheus::gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)))
        .map(|m| (m.get_histogram().get_sample_sum(), m.get_histogram().get_sample_count()))
        .fold((0.0, 0), |(s, c), (s2, c2)| (s + s2, c + c2))
}

/// What a phase cost, read before and after it: CPU of this process (API server and bench
/// clients) and of the nats-server, the machine's busy share, and quota admission's figures.
struct Costs {
    process_ticks: u64,
    nats_ticks: u64,
    machine: (u64, u64),
    batches: (f64, u64),
    batch_seconds: (f64, u64),
    admission_seconds: (f64, u64),
    conflicts: u64,
}

impl Costs {
    fn now(dir: Option<&std::path::Path>) -> Costs {
        let nats_pid = dir
            .and_then(|d| std::fs::read_to_string(d.join("nats-server.pid")).ok())
            .and_then(|p| p.trim().parse::<u32>().ok());
        Costs {
            process_ticks: host::own_cpu_ticks(std::process::id()).unwrap_or(0),
            nats_ticks: nats_pid.and_then(host::own_cpu_ticks).unwrap_or(0),
            machine: host::machine_ticks().unwrap_or((0, 0)),
            batches: histogram("kubus_apiserver_quota_batch_size", &[]),
            batch_seconds: histogram("kubus_apiserver_quota_batch_duration_seconds", &[]),
            admission_seconds: histogram(
                "apiserver_admission_controller_admission_duration_seconds",
                &[("name", "ResourceQuota"), ("operation", "CREATE")],
            ),
            conflicts: prometheus::gather()
                .iter()
                .filter(|f| f.name() == "kubus_apiserver_quota_status_writes_total")
                .flat_map(|f| f.get_metric())
                .filter(|m| m.get_label().iter().any(|l| l.name() == "result" && l.value() == "conflict"))
                .map(|m| m.get_counter().get_value() as u64)
                .sum(),
        }
    }

    fn report_since(&self, before: &Costs, ops: usize) {
        let tick_us = 1e6 / host::clock_ticks_per_second();
        let us_per_op = |after: u64, before: u64| after.saturating_sub(before) as f64 * tick_us / ops as f64;
        let busy = (self.machine.0 - before.machine.0) as f64 / (self.machine.1 - before.machine.1).max(1) as f64;
        println!(
            "  CPU per op {:.0} us (API server and bench clients {:.0} us, nats-server {:.0} us), machine busy {:.0}%",
            us_per_op(self.process_ticks + self.nats_ticks, before.process_ticks + before.nats_ticks),
            us_per_op(self.process_ticks, before.process_ticks),
            us_per_op(self.nats_ticks, before.nats_ticks),
            100.0 * busy
        );
        let mean = |a: (f64, u64), b: (f64, u64)| (a.0 - b.0) / (a.1 - b.1).max(1) as f64;
        let batches = self.batches.1 - before.batches.1;
        if batches > 0 {
            println!(
                "  quota admission: mean {:.3} ms per create; {batches} batches of mean {:.1} creates, {:.3} ms; {} lost writes",
                1e3 * mean(self.admission_seconds, before.admission_seconds),
                mean(self.batches, before.batches),
                1e3 * mean(self.batch_seconds, before.batch_seconds),
                self.conflicts - before.conflicts,
            );
        }
    }
}

/// The `seq` a watch event line carries in its ConfigMap's data, if any.
pub(crate) fn seq_of(line: &[u8]) -> Option<usize> {
    let (WatchEvent::Added(cm) | WatchEvent::Modified(cm) | WatchEvent::Deleted(cm)) =
        serde_json::from_slice::<WatchEvent<ConfigMap>>(line).ok()?
    else {
        return None;
    };
    cm.data?.get("seq")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines_give_their_seq() {
        let line = |t: &str, data: serde_json::Value| {
            serde_json::json!({"type": t, "object": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "watched"}, "data": data}})
            .to_string()
            .into_bytes()
        };
        assert_eq!(seq_of(&line("MODIFIED", serde_json::json!({"seq": "7"}))), Some(7));
        assert_eq!(seq_of(&line("ADDED", serde_json::json!({"seq": "0"}))), Some(0));
        assert_eq!(seq_of(&line("MODIFIED", serde_json::json!({"value": "1"}))), None);
        assert_eq!(seq_of(br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#), None);
        assert_eq!(seq_of(b"{not json"), None);
    }
}
