use super::*;
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kubus_bus::{EmbeddedNats, StoreConfig};
use std::sync::atomic::AtomicUsize;

fn list(items: &[(&str, &str)]) -> ResourceList {
    let api: BTreeMap<String, ApiQuantity> =
        items.iter().map(|(k, v)| (k.to_string(), ApiQuantity(v.to_string()))).collect();
    quota::parse_list(Some(&api))
}

fn quota_json(name: &str, hard: &[(&str, &str)], used: &[(&str, &str)]) -> Value {
    let map = |items: &[(&str, &str)]| items.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map>();
    type Map = serde_json::Map<String, Value>;
    json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name, "namespace": "ns"},
        "spec": {"hard": map(hard)}, "status": {"hard": map(hard), "used": map(used)}})
}

fn running(name: &str, hard: &[(&str, &str)], used: &[(&str, &str)]) -> Running {
    Running::new(name.into(), StoredQuota { value: Arc::new(quota_json(name, hard, used)), revision: 1 }).unwrap()
}

fn pods() -> &'static ResourceInfo {
    resource::find("", "v1", "pods").unwrap()
}

fn charge(name: &str, quotas: &[&str], pods_: &str, dry_run: bool) -> Request {
    Request::Charge(Charge {
        info: pods(),
        name: name.into(),
        quotas: quotas.iter().map(|q| q.to_string()).collect(),
        delta: list(&[("pods", pods_)]),
        dry_run,
    })
}

type Answer = oneshot::Receiver<Result<Charges, StatusError>>;

fn waiter(request: Request) -> (Waiter, Answer) {
    let (reply, answer) = oneshot::channel();
    (Waiter { request, reply }, answer)
}

fn batch(requests: Vec<Request>) -> (Batch, Vec<Answer>) {
    let (waiters, answers): (Vec<_>, Vec<_>) = requests.into_iter().map(waiter).unzip();
    (Batch::new(waiters), answers)
}

fn answered(mut a: Answer) -> Result<Charges, StatusError> {
    a.try_recv().expect("answered")
}

fn message(r: Result<Charges, StatusError>) -> String {
    r.expect_err("refused").message
}

#[test]
fn a_charge_over_the_limit_in_the_middle_of_a_batch_is_refused_and_the_others_pass() {
    let (mut batch, answers) = batch(vec![
        charge("a", &["q"], "1", false),
        charge("b", &["q"], "4", false),
        charge("c", &["q"], "2", false),
        charge("d", &["q"], "1", true),
        charge("e", &["q"], "2", false),
    ]);
    let mut quotas = vec![running("q", &[("pods", "5")], &[("pods", "1")])];
    assert_eq!(batch.unsettled_quotas(), BTreeSet::from(["q".to_string()]));
    batch.check(&mut quotas);
    // a and c are added (1 + 1 + 2); the dry run d is checked against 4 but not added.
    assert_eq!(quotas[0].used, list(&[("pods", "4")]));
    assert!(quotas[0].changed());
    batch.settle("q");
    assert!(batch.answer().is_empty());
    let mut answers = answers.into_iter().map(answered);
    assert_eq!(answers.next().unwrap(), Ok(vec![("q".into(), list(&[("pods", "1")]))]));
    assert_eq!(
        message(answers.next().unwrap()),
        "pods \"b\" is forbidden: exceeded quota: q, requested: pods=4, used: pods=2, limited: pods=5"
    );
    assert_eq!(answers.next().unwrap(), Ok(vec![("q".into(), list(&[("pods", "2")]))]));
    assert_eq!(answers.next().unwrap(), Ok(vec![]));
    assert_eq!(
        message(answers.next().unwrap()),
        "pods \"e\" is forbidden: exceeded quota: q, requested: pods=2, used: pods=4, limited: pods=5"
    );
}

#[test]
fn a_charge_refused_by_one_of_its_quotas_adds_to_none() {
    let (mut batch, answers) = batch(vec![charge("a", &["wide", "tight"], "1", false)]);
    let mut quotas = vec![
        running("tight", &[("pods", "1")], &[("pods", "1")]),
        running("wide", &[("pods", "10")], &[("pods", "0")]),
    ];
    batch.check(&mut quotas);
    assert!(quotas.iter().all(|q| !q.changed()));
    batch.settle("tight");
    batch.settle("wide");
    assert!(batch.answer().is_empty());
    let [a] = <[Answer; 1]>::try_from(answers).ok().unwrap();
    assert!(message(answered(a)).contains("exceeded quota: tight, requested: pods=1, used: pods=1, limited: pods=1"));
}

#[test]
fn a_quota_that_does_not_track_the_usage_is_not_charged() {
    let (mut batch, answers) = batch(vec![charge("a", &["cpu"], "1", false)]);
    let mut quotas = vec![running("cpu", &[("requests.cpu", "1")], &[("requests.cpu", "0")])];
    batch.check(&mut quotas);
    assert!(!quotas[0].changed());
    batch.settle("cpu");
    batch.answer();
    assert_eq!(answered(answers.into_iter().next().unwrap()), Ok(vec![]));
}

#[test]
fn a_lost_write_is_checked_again_and_a_waiter_failing_then_gives_back_what_was_written() {
    // One waiter charged to two quotas: the write of "a" succeeds, "b" conflicts; the re-read
    // "b" has no room left, so the waiter is refused and its charge to "a" is given back.
    let (mut batch, answers) = batch(vec![charge("x", &["a", "b"], "1", false)]);
    let mut quotas = vec![running("a", &[("pods", "5")], &[("pods", "0")]), running("b", &[("pods", "2")], &[])];
    batch.check(&mut quotas);
    batch.settle("a");
    batch.retry("b");
    assert_eq!(batch.unsettled_quotas(), BTreeSet::from(["b".to_string()]));
    let mut again = vec![running("b", &[("pods", "2")], &[("pods", "2")])];
    batch.check(&mut again);
    assert!(!again[0].changed());
    batch.settle("b");
    assert_eq!(batch.answer(), vec![vec![("a".to_string(), list(&[("pods", "1")]))]]);
    let [x] = <[Answer; 1]>::try_from(answers).ok().unwrap();
    assert!(message(answered(x)).contains("exceeded quota: b, requested: pods=1, used: pods=2, limited: pods=2"));
}

#[test]
fn refunds_never_go_below_zero_and_waiters_that_went_are_not_charged() {
    let (gone, answer) = waiter(charge("gone", &["q"], "1", false));
    drop(answer);
    let (refund, _answer) = waiter(Request::Refund(vec![("q".into(), list(&[("pods", "3")]))]));
    let mut batch = Batch::new(vec![gone, refund]);
    let mut quotas = vec![running("q", &[("pods", "5")], &[("pods", "2")])];
    batch.check(&mut quotas);
    assert_eq!(quotas[0].used, list(&[("pods", "0")]));
    assert_eq!(batch.entries.len(), 1);
}

// With a real store (Debian's nats-server): the queue, the worker, and the writes. The watch
// cache is not fed here, so it has no copies at hand: the first round of a batch reads the
// store, or starts from what the worker wrote last.

struct Env {
    dir: std::path::PathBuf,
    nats: EmbeddedNats,
    quotas: QuotaStore,
}

impl Env {
    async fn start(tag: &str) -> Env {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("kubus-quota-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let nats = EmbeddedNats::start(&dir, "127.0.0.1:0", None).await.expect("nats-server starts");
        let client = kubus_bus::connect(nats.url(), "test").await.unwrap();
        let store = Store::open(client, StoreConfig { cluster: tag.into(), ..Default::default() }).await.unwrap();
        Env { dir, nats, quotas: QuotaStore { store, cache: WatchCache::new(16) } }
    }

    async fn create_quota(&self, name: &str, hard: &[(&str, &str)], used: &[(&str, &str)]) -> u64 {
        let key = Storage::key(quotas_info(), Some("ns"), name);
        let value = serde_json::to_vec(&quota_json(name, hard, used)).unwrap();
        self.quotas.store.create(&key, Bytes::from(value)).await.unwrap()
    }

    async fn stored(&self, name: &str) -> StoredQuota {
        self.quotas.get("ns", name).await.unwrap().unwrap()
    }

    /// The stored quota's used and revision.
    async fn used(&self, name: &str) -> (ResourceList, u64) {
        let q = self.stored(name).await;
        let typed = ResourceQuota::deserialize(&*q.value).unwrap();
        (status_list(&typed, true), q.revision)
    }

    async fn stop(self) {
        self.nats.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Charges of one pod each, all queued before the worker runs (the test runtime has one
/// thread: the worker starts when every charge is waiting).
async fn charge_all<A: QuotaAccessor>(
    evaluator: &QuotaEvaluator<A>,
    n: usize,
    quota: &str,
) -> Vec<Result<Charges, StatusError>> {
    let charges =
        (0..n).map(|i| evaluator.evaluate("ns", charge(&format!("p{i}"), &[quota], "1", false))).collect::<Vec<_>>();
    futures::future::join_all(charges).await
}

fn refused(results: &[Result<Charges, StatusError>]) -> Vec<(usize, String)> {
    results.iter().enumerate().filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e.message.clone()))).collect()
}

#[tokio::test]
async fn concurrent_charges_take_exactly_the_free_slots_in_one_write() {
    let env = Env::start("batch").await;
    let created = env.create_quota("five", &[("pods", "5")], &[("pods", "0")]).await;
    let evaluator = QuotaEvaluator::new(env.quotas.clone());
    let results = charge_all(&evaluator, 20, "five").await;
    assert!(results[..5].iter().all(|r| r == &Ok(vec![("five".to_string(), list(&[("pods", "1")]))])));
    let refused = refused(&results);
    assert_eq!(refused.len(), 15);
    for (i, message) in refused {
        assert_eq!(
            message,
            format!(
                "pods \"p{i}\" is forbidden: exceeded quota: five, requested: pods=1, used: pods=5, limited: pods=5"
            )
        );
    }
    let (used, revision) = env.used("five").await;
    assert_eq!(used, list(&[("pods", "5")]));
    assert_eq!(revision, created + 1, "one status write for the whole batch");

    // A refund through the same queue; a second one cannot go below zero.
    let four = vec![("five".to_string(), list(&[("pods", "4")]))];
    assert_eq!(evaluator.evaluate("ns", Request::Refund(four.clone())).await, Ok(vec![]));
    assert_eq!(evaluator.evaluate("ns", Request::Refund(four)).await, Ok(vec![]));
    assert_eq!(env.used("five").await.0, list(&[("pods", "0")]));
    env.stop().await;
}

#[tokio::test]
async fn batches_are_bounded_and_waiters_that_went_are_not_charged() {
    let env = Env::start("bounded").await;
    let created = env.create_quota("many", &[("pods", "1000")], &[("pods", "0")]).await;
    let evaluator = QuotaEvaluator::new(env.quotas.clone());
    // A request that goes before its batch is taken (its client went away) is not charged,
    // and the namespace goes on.
    assert!(evaluator.evaluate("ns", charge("gone", &["many"], "7", false)).now_or_never().is_none());
    let n = 2 * MAX_BATCH + 10;
    let results = charge_all(&evaluator, n, "many").await;
    assert!(results.iter().all(Result::is_ok));
    let (used, revision) = env.used("many").await;
    assert_eq!(used, list(&[("pods", &n.to_string())]));
    // Three bounded batches (the first with the dropped charge, skipped), one write each.
    assert_eq!(revision, created + 3);
    assert!(lock(&evaluator.inner.namespaces).is_empty(), "the worker is done");
    env.stop().await;
}

/// The real store with what a busy cluster does to it: another writer (another API server,
/// say) charging the quota just before the evaluator's `nth` write, and a watch cache whose
/// copy lags behind.
struct Busy {
    quotas: QuotaStore,
    lagging: Option<StoredQuota>,
    other_writer: Option<(usize, &'static str)>,
    updates: AtomicUsize,
}

impl Busy {
    fn new(env: &Env) -> Busy {
        Busy { quotas: env.quotas.clone(), lagging: None, other_writer: None, updates: AtomicUsize::new(0) }
    }
}

impl QuotaAccessor for Busy {
    fn cached(&self, _: &str, _: &str) -> Option<StoredQuota> {
        self.lagging.clone()
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Option<StoredQuota>, StatusError> {
        self.quotas.get(namespace, name).await
    }

    async fn update(
        &self,
        namespace: &str,
        name: &str,
        quota: &Value,
        revision: u64,
    ) -> Result<Option<u64>, StatusError> {
        let n = self.updates.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((_, used)) = self.other_writer.filter(|(nth, _)| *nth == n) {
            let mut current = self.quotas.get(namespace, name).await?.expect("the quota is there");
            Arc::make_mut(&mut current.value)["status"]["used"] = json!({"pods": used});
            assert!(self.quotas.update(namespace, name, &current.value, current.revision).await?.is_some());
        }
        self.quotas.update(namespace, name, quota, revision).await
    }
}

#[tokio::test]
async fn a_lost_race_re_reads_the_quota_and_checks_the_batch_again() {
    let env = Env::start("conflict").await;
    env.create_quota("three", &[("pods", "3")], &[("pods", "0")]).await;
    let evaluator = QuotaEvaluator::new(Busy { other_writer: Some((1, "2")), ..Busy::new(&env) });
    let results = charge_all(&evaluator, 3, "three").await;
    // First round: all three fit in 0 of 3, but the write loses to the other writer's 2.
    // Second round: one more fits.
    assert_eq!(results[0], Ok(vec![("three".to_string(), list(&[("pods", "1")]))]));
    assert_eq!(
        refused(&results),
        [1, 2].map(|i| (
            i,
            format!(
                "pods \"p{i}\" is forbidden: exceeded quota: three, requested: pods=1, used: pods=3, limited: pods=3"
            )
        ))
    );
    assert_eq!(env.used("three").await.0, list(&[("pods", "3")]));
    assert!(STATUS_WRITES.with_label_values(&["conflict"]).get() > 0);
    env.stop().await;
}

#[tokio::test]
async fn a_stale_copy_loses_its_write_and_is_read_again() {
    // The watch cache still has the quota as created; the store has 2 pods charged since.
    let env = Env::start("stale").await;
    env.create_quota("three", &[("pods", "3")], &[("pods", "0")]).await;
    let lagging = env.stored("three").await;
    let mut now = lagging.clone();
    Arc::make_mut(&mut now.value)["status"]["used"] = json!({"pods": "2"});
    env.quotas.update("ns", "three", &now.value, now.revision).await.unwrap().unwrap();
    let evaluator = QuotaEvaluator::new(Busy { lagging: Some(lagging), ..Busy::new(&env) });
    let results = charge_all(&evaluator, 3, "three").await;
    assert!(results[0].is_ok());
    assert_eq!(refused(&results).len(), 2);
    assert_eq!(env.used("three").await.0, list(&[("pods", "3")]));
    env.stop().await;
}

#[tokio::test]
async fn what_the_worker_wrote_last_is_checked_by_its_next_write() {
    // Two batches in a row; between them another writer charges the quota, so the second
    // batch, starting from the worker's own last write, loses its race and checks again.
    let env = Env::start("known").await;
    env.create_quota("q", &[("pods", "200")], &[("pods", "0")]).await;
    let evaluator = QuotaEvaluator::new(Busy { other_writer: Some((2, "178")), ..Busy::new(&env) });
    let results = charge_all(&evaluator, 2 * MAX_BATCH, "q").await;
    // 128 in the first batch; 200 - 178 = 22 of the second.
    assert!(results[..MAX_BATCH + 22].iter().all(Result::is_ok));
    assert_eq!(refused(&results).len(), MAX_BATCH - 22);
    assert!(refused(&results)[0].1.ends_with("used: pods=200, limited: pods=200"));
    assert_eq!(env.used("q").await.0, list(&[("pods", "200")]));
    env.stop().await;
}
