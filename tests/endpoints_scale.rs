//! A Service of thousands of endpoints (issue #21), driven with the real kubectl: the Service
//! of a Deployment of 3,000 replicas on simulated nodes gets EndpointSlices of at most 100
//! endpoints that hold every pod, and an Endpoints object cut at upstream's 1,000 addresses with
//! the over-capacity annotation; scaled to 50 replicas, the slices shrink (emptied ones are
//! deleted) and the annotation goes; once the Service is deleted its slices go too. Before,
//! one slice held every endpoint: past roughly 4,500 it exceeded NATS's 1 MiB payload limit and
//! every pod change rewrote it whole. The bounds are generous for a loaded 2-core CI machine.

mod common;
use common::{eventually, Cluster};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const NODES: &str = "200";
const REPLICAS: usize = 3000;
const OF_SERVICE: &str = "kubernetes.io/service-name=big";
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// What the Service's EndpointSlices hold, as kubectl lists them.
#[derive(Debug)]
struct Slices {
    /// Endpoints in each slice.
    sizes: Vec<usize>,
    /// Distinct addresses over all slices, and how many of them are ready.
    addresses: BTreeSet<String>,
    ready: usize,
    managers: BTreeSet<String>,
}

impl Slices {
    fn total(&self) -> usize {
        self.sizes.iter().sum()
    }
}

fn slices(c: &Cluster) -> Slices {
    let list = c.get_json(&["endpointslices", "-l", OF_SERVICE]);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let endpoints = |s: &serde_json::Value| s["endpoints"].as_array().cloned().unwrap_or_default();
    let all: Vec<serde_json::Value> = items.iter().flat_map(endpoints).collect();
    Slices {
        sizes: items.iter().map(|s| endpoints(s).len()).collect(),
        addresses: all.iter().filter_map(|e| e["addresses"][0].as_str().map(String::from)).collect(),
        ready: all.iter().filter(|e| e["conditions"]["ready"] == true).count(),
        managers: (items.iter())
            .filter_map(|s| s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"].as_str())
            .map(String::from)
            .collect(),
    }
}

/// The Endpoints object's address count (ready and not) and its over-capacity annotation.
fn endpoints(c: &Cluster) -> (usize, Option<String>) {
    let ep = c.get_json(&["endpoints", "big"]);
    let count = |field: &str| {
        (ep["subsets"].as_array().into_iter().flatten()).map(|s| s[field].as_array().map_or(0, Vec::len)).sum::<usize>()
    };
    (
        count("addresses") + count("notReadyAddresses"),
        ep["metadata"]["annotations"][OVER_CAPACITY].as_str().map(String::from),
    )
}

/// The sum of the cluster's samples of a metric whose labels include every one of `labels`.
fn metric(c: &Cluster, name: &str, labels: &[&str]) -> f64 {
    let (_, text) = c.try_http("GET", "/metrics", None, None).expect("metrics");
    (text.lines())
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// EndpointSlice writes so far, and the endpoints controller's reconciles.
fn work(c: &Cluster) -> String {
    let writes = |op: &str| {
        let op = format!("operation=\"{op}\"");
        metric(c, "kubus_apiserver_writes_total", &["resource=\"endpointslices\"", &op]) as u64
    };
    let reconciles = |result: &str| {
        let result = format!("result=\"{result}\"");
        metric(c, "controller_runtime_reconcile_total", &["controller=\"endpoints\"", &result]) as u64
    };
    format!(
        "slice writes: {} create, {} update, {} delete; endpoints reconciles: {} success, {} requeue_after, {} error",
        writes("create"),
        writes("update"),
        writes("delete"),
        reconciles("success"),
        reconciles("requeue_after"),
        reconciles("error"),
    )
}

/// Polls `f` as `eventually` does, but at most once a second: each look lists thousands of
/// endpoints through kubectl.
fn slowly<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    eventually(secs, || {
        let v = f();
        if v.is_none() {
            std::thread::sleep(Duration::from_secs(1));
        }
        v
    })
}

#[test]
fn a_service_of_thousands_of_endpoints_is_sliced_by_100_and_its_endpoints_capped_at_1000() {
    let c = Cluster::start_with("endpoints-scale", &["--sim-nodes", NODES]);
    eventually(60, || (c.kubectl(&["get", "nodes", "--no-headers"]).stdout.lines().count() >= 200).then_some(()));

    // The Service first, so its slices grow as the pods come up, sync after sync.
    c.kubectl(&["create", "service", "clusterip", "big", "--tcp=80:8080"]).expect_ok();
    // No pods yet: one empty placeholder slice.
    slowly(30, || (slices(&c).sizes == [0]).then_some(()));
    let started = Instant::now();
    c.kubectl(&["create", "deployment", "big", "--image=busybox", &format!("--replicas={REPLICAS}")]).expect_ok();
    let full = slowly(300, || Some(slices(&c)).filter(|s| s.ready == REPLICAS));
    eprintln!(
        "{REPLICAS} ready endpoints in {} slices after {:.1} s; sizes {:?}",
        full.sizes.len(),
        started.elapsed().as_secs_f64(),
        full.sizes
    );
    eprintln!("{}", work(&c));
    assert_eq!(full.addresses.len(), REPLICAS, "each pod once");
    assert_eq!(full.total(), REPLICAS, "no endpoint in two slices");
    assert!(full.sizes.iter().all(|&n| n <= 100), "{:?}", full.sizes);
    // New endpoints fill slices with room before new ones are made: as full as they can be.
    assert_eq!(full.sizes.len(), REPLICAS / 100, "{:?}", full.sizes);
    assert_eq!(full.managers, BTreeSet::from(["endpointslice-controller.k8s.io".to_string()]));
    // The Endpoints object holds upstream's 1,000 and says it was cut.
    let (count, annotation) = slowly(60, || Some(endpoints(&c)).filter(|(n, _)| *n == 1000));
    assert_eq!((count, annotation.as_deref()), (1000, Some("truncated")));

    // Scaled down: the endpoints leave their slices, emptied slices are deleted, the Endpoints
    // object is whole again and the annotation goes.
    let started = Instant::now();
    c.kubectl(&["scale", "deployment", "big", "--replicas=50"]).expect_ok();
    let few = slowly(240, || Some(slices(&c)).filter(|s| s.total() == 50));
    eprintln!(
        "scaled to 50: {} slices after {:.1} s; sizes {:?}",
        few.sizes.len(),
        started.elapsed().as_secs_f64(),
        few.sizes
    );
    eprintln!("{}", work(&c));
    assert_eq!(few.addresses.len(), 50);
    assert!(few.sizes.iter().all(|&n| (1..=100).contains(&n)), "no empty slice stays: {:?}", few.sizes);
    assert!(few.sizes.len() < full.sizes.len(), "{:?}", few.sizes);
    let (count, annotation) = slowly(60, || Some(endpoints(&c)).filter(|(n, a)| *n == 50 && a.is_none()));
    assert_eq!((count, annotation), (50, None));

    // Deleted: its slices go with it (their owner), and its Endpoints.
    c.kubectl(&["delete", "service", "big"]).expect_ok();
    slowly(60, || slices(&c).sizes.is_empty().then_some(()));
    slowly(60, || c.kubectl(&["get", "endpoints", "big"]).stderr.contains("NotFound").then_some(()));
    // No write came near NATS's payload limit.
    assert!(!c.log().contains("maximum payload"), "a write exceeded the NATS payload limit");
}
