//! Controllers at scale, driven as users drive them (issue #19): a Deployment of thousands of
//! replicas on hundreds of simulated nodes is created, becomes available, and is deleted with
//! cascading (background, then foreground) until its last pod is gone. The bounds are
//! generous for a loaded 2-core CI machine; before the indexed controllers and the incremental
//! garbage collector, a Deployment of this size stalled part way and its deletion crawled.

mod common;
use common::{eventually, Cluster};
use std::time::Instant;

const NODES: &str = "300";
const REPLICAS: i64 = 3000;

/// Pods in the default namespace, from a one-item page's remainingItemCount.
fn pod_count(c: &Cluster) -> i64 {
    let (code, list) = c.http("GET", "/api/v1/namespaces/default/pods?limit=1", None, None);
    assert_eq!(code, 200, "{list}");
    list["items"].as_array().map_or(0, |a| a.len() as i64)
        + list["metadata"]["remainingItemCount"].as_i64().unwrap_or(0)
}

fn available(c: &Cluster, name: &str) -> i64 {
    let (code, d) = c.http("GET", &format!("/apis/apps/v1/namespaces/default/deployments/{name}"), None, None);
    if code != 200 {
        return -1;
    }
    d["status"]["availableReplicas"].as_i64().unwrap_or(0)
}

fn deployment_exists(c: &Cluster, name: &str) -> bool {
    c.http("GET", &format!("/apis/apps/v1/namespaces/default/deployments/{name}"), None, None).0 == 200
}

#[test]
fn a_deployment_of_thousands_is_available_then_deleted_with_cascading() {
    let c = Cluster::start_with("scale", &["--sim-nodes", NODES]);
    eventually(60, || (c.kubectl(&["get", "nodes", "--no-headers"]).stdout.lines().count() >= 300).then_some(()));

    let started = Instant::now();
    c.kubectl(&["create", "deployment", "big", "--image=busybox", &format!("--replicas={REPLICAS}")]).expect_ok();
    eventually(240, || (available(&c, "big") == REPLICAS).then_some(()));
    eprintln!("{REPLICAS} replicas available in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(pod_count(&c), REPLICAS);

    let started = Instant::now();
    c.kubectl(&["delete", "deployment", "big", "--cascade=background", "--wait=false"]).expect_ok();
    eventually(240, || (pod_count(&c) == 0).then_some(()));
    eprintln!("background cascade removed {REPLICAS} pods in {:.1} s", started.elapsed().as_secs_f64());
    eventually(30, || c.kubectl(&["get", "replicasets", "--no-headers"]).stdout.trim().is_empty().then_some(()));

    c.kubectl(&["create", "deployment", "again", "--image=busybox", &format!("--replicas={REPLICAS}")]).expect_ok();
    eventually(240, || (available(&c, "again") == REPLICAS).then_some(()));
    let started = Instant::now();
    c.kubectl(&["delete", "deployment", "again", "--cascade=foreground", "--wait=false"]).expect_ok();
    // The Deployment waits for its dependents: it goes last.
    eventually(240, || (!deployment_exists(&c, "again")).then_some(()));
    assert_eq!(pod_count(&c), 0, "the Deployment went before its pods");
    eprintln!(
        "foreground cascade removed {REPLICAS} pods and the Deployment in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Nothing left queued once the work is done.
    eventually(30, || {
        let (_, metrics) = c.try_http("GET", "/metrics", None, None).ok()?;
        let queued: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("workqueue_depth{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (queued == 0.0).then_some(())
    });
}
