//! The store against a real nats-server (Debian's, started as the embedded default).

use futures::StreamExt;
use kubus_bus::store::archive::Archive;
use kubus_bus::store::KeyPrefix;
use kubus_bus::{EmbeddedNats, EventType, Key, Store, StoreConfig, StoreError};
use std::path::PathBuf;

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("kubus-bus-{tag}-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

async fn setup(tag: &str) -> (TempDir, EmbeddedNats, Store) {
    let dir = TempDir::new(tag);
    let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0", None).await.expect("nats-server starts");
    let client = kubus_bus::connect(nats.url(), "test").await.unwrap();
    let store = Store::open(client, StoreConfig { history: 4, ..Default::default() }).await.unwrap();
    (dir, nats, store)
}

fn b(s: &str) -> bytes::Bytes {
    bytes::Bytes::from(s.to_string())
}

#[tokio::test]
async fn crud_with_compare_and_swap() {
    let (_dir, nats, store) = setup("crud").await;
    let k = Key::new("", "configmaps", Some("default"), "a.b:c");
    let r1 = store.create(&k, b("{\"v\":1}")).await.unwrap();
    assert!(matches!(store.create(&k, b("{}")).await, Err(StoreError::AlreadyExists(_))));
    let r2 = store.update(&k, b("{\"v\":2}"), r1).await.unwrap();
    assert!(r2 > r1);
    match store.update(&k, b("{\"v\":3}"), r1).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, r2),
        other => panic!("expected conflict, got {other:?}"),
    }
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!((got.revision, &got.value[..]), (r2, &b"{\"v\":2}"[..]));
    let r3 = store.delete(&k, b("{\"v\":2}"), r2).await.unwrap();
    assert!(store.get(&k).await.unwrap().is_none());
    assert!(matches!(store.update(&k, b("{}"), r2).await, Err(StoreError::NotFound(_))));
    assert!(r3 > r2);
    // A deleted name can be created again.
    store.create(&k, b("{\"v\":4}")).await.unwrap();
    nats.stop().await;
}

#[tokio::test]
async fn list_then_watch_has_no_gap_and_no_duplicate() {
    let (_dir, nats, store) = setup("lw").await;
    for i in 0..20 {
        let ns = if i % 2 == 0 { "a" } else { "b" };
        store.create(&Key::new("", "pods", Some(ns), &format!("p{i}")), b("{}")).await.unwrap();
    }
    store.create(&Key::new("apps", "deployments", Some("a"), "d"), b("{}")).await.unwrap();
    let (items, rev) = store.list(&KeyPrefix::new("", "pods", None)).await.unwrap();
    assert_eq!(items.len(), 20);
    let (in_a, _) = store.list(&KeyPrefix::new("", "pods", Some("a"))).await.unwrap();
    assert_eq!(in_a.len(), 10);
    let (none, _) = store.list(&KeyPrefix::new("", "services", None)).await.unwrap();
    assert!(none.is_empty());

    let mut watch = store.watch(Some(&KeyPrefix::new("", "pods", None)), rev).await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut revs = vec![];
            for i in 0..30 {
                let k = Key::new("", "pods", Some("a"), &format!("n{i}"));
                revs.push(store.create(&k, b("{}")).await.unwrap());
                // Writes to another type must not reach this watch.
                store.create(&Key::new("", "secrets", Some("a"), &format!("s{i}")), b("{}")).await.unwrap();
            }
            let k = Key::new("", "pods", Some("a"), "p0");
            let cur = store.get(&k).await.unwrap().unwrap();
            revs.push(store.delete(&k, cur.value, cur.revision).await.unwrap());
            revs
        })
    };
    let revs = writer.await.unwrap();
    let mut seen = vec![];
    while seen.len() < revs.len() {
        let ev =
            tokio::time::timeout(std::time::Duration::from_secs(10), watch.next()).await.unwrap().unwrap().unwrap();
        seen.push(ev.revision);
        if ev.revision == *revs.last().unwrap() {
            assert_eq!(ev.kind, EventType::Deleted);
            assert_eq!(ev.key.name, "p0");
        } else {
            assert_eq!(ev.kind, EventType::Added);
        }
    }
    assert_eq!(seen, revs);
    nats.stop().await;
}

#[tokio::test]
async fn archive_keeps_every_revision_and_rebuilds_the_past() {
    let (_dir, nats, store) = setup("archive").await;
    let k = Key::new("", "configmaps", Some("default"), "cm");
    let mut rev = store.create(&k, b("{\"v\":0}")).await.unwrap();
    let mut revs = vec![rev];
    // More updates than the objects stream's per-key history (4).
    for i in 1..10 {
        rev = store.update(&k, b(&format!("{{\"v\":{i}}}")), rev).await.unwrap();
        revs.push(rev);
    }
    let archive = Archive::open(store.context(), store.config()).await.unwrap();
    // The mirror is asynchronous: wait for it to catch up.
    for _ in 0..100 {
        if archive.bounds().await.unwrap().1 >= rev {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let history = archive.history(&k).await.unwrap();
    assert_eq!(history.iter().map(|h| h.0).collect::<Vec<_>>(), revs);
    let past = archive.state_at(None, revs[3]).await.unwrap();
    assert_eq!(past.len(), 1);
    assert_eq!(&past[0].value[..], b"{\"v\":3}");
    // Compacting the deleted object's history in the objects stream leaves the archive whole.
    let del = store.delete(&k, b("{\"v\":9}"), rev).await.unwrap();
    store.compact_deleted(&[(k.clone(), del)]).await.unwrap();
    for _ in 0..100 {
        if archive.bounds().await.unwrap().1 >= del {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(archive.history(&k).await.unwrap().len(), 11);
    assert!(archive.state_at(None, del).await.unwrap().is_empty());
    nats.stop().await;
}

#[tokio::test]
async fn compaction_drops_deleted_objects_and_makes_older_watches_gone() {
    let (_dir, nats, store) = setup("compaction").await;
    let key = |i: usize| Key::new("", "configmaps", Some("default"), &format!("cm-{i}"));
    let mut tombstones = Vec::new();
    for i in 0..50 {
        let rev = store.create(&key(i), b("{}")).await.unwrap();
        let rev = store.update(&key(i), b("{\"v\":1}"), rev).await.unwrap();
        if i % 5 != 0 {
            tombstones.push((key(i), store.delete(&key(i), b("{\"v\":1}"), rev).await.unwrap()));
        }
    }
    let before = store.list_all().await.unwrap();
    assert_eq!((before.objects.len(), before.tombstones.len()), (10, 40));
    assert_eq!(messages(&store).await, 50 * 2 + 40);
    // A watch from before the deletions is fine until they are compacted.
    let old = before.tombstones[0].1 - 1;
    assert!(store.watch(None, old).await.is_ok());

    let newest = tombstones.iter().map(|t| t.1).max().unwrap();
    assert_eq!(store.compact_deleted(&tombstones).await.unwrap(), 40 * 3);
    assert_eq!(store.compacted_revision().await.unwrap(), newest);
    // What a relist reads is what the cluster holds now.
    let after = store.list_all().await.unwrap();
    assert_eq!((after.objects.len(), after.tombstones.len()), (10, 0));
    assert_eq!(messages(&store).await, 10 * 2);
    // A watch resuming from before the compacted revision is told to relist, as after an etcd
    // compaction; one from a fresh list's revision is not.
    match store.watch(None, old).await {
        Err(StoreError::Gone { requested, oldest }) => assert_eq!((requested, oldest), (old, newest + 1)),
        Err(e) => panic!("expected Gone, got {e}"),
        Ok(_) => panic!("expected Gone, got a watch"),
    }
    let mut watch = store.watch(None, after.revision).await.unwrap();
    // A name whose history was compacted is created again, and the watch sees it.
    let rev = store.create(&key(1), b("{\"again\":true}")).await.unwrap();
    let ev = watch.next().await.unwrap().unwrap();
    assert_eq!((ev.kind, ev.key, ev.revision), (EventType::Added, key(1), rev));
    // The compacted revision never goes down, and compacting again is harmless.
    store.compact_deleted(&tombstones[..1]).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), newest);
    nats.stop().await;
}

/// Messages the objects stream holds.
async fn messages(store: &Store) -> u64 {
    let mut s = store.context().get_stream(store.config().objects_stream()).await.unwrap();
    s.info().await.unwrap().state.messages
}
