//! Paged lists: the first page of a LIST with `limit` keeps what the whole list matched (the
//! objects' pointers, in key order) for a while, and the continue token names it, so every
//! later page is a binary search from the last key plus `limit` objects, consistent at the
//! first page's revision however fast the cluster churns. Without a snapshot (another API
//! server issued the token, or it expired) a page is rebuilt from the watch cache's history.
//! Snapshots live as long as etcd keeps a revision by default (5 minutes), and only so many
//! are kept at once.

use crate::cache::{CachedObject, ObjKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a paged list may take between its pages (etcd's default compaction interval).
pub const TTL: Duration = Duration::from_secs(300);
/// Paged lists in progress at once; the oldest snapshot goes first beyond this.
pub const MAX_SNAPSHOTS: usize = 64;

/// What a list was asked for: a continue token is only valid for the same query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub gr: (String, String),
    pub namespace: Option<String>,
    pub labels: String,
    pub fields: String,
}

struct Snapshot {
    query: ListQuery,
    revision: u64,
    taken: Instant,
    /// Every object the list matched, in key order.
    items: Arc<Vec<Arc<CachedObject>>>,
}

#[derive(Default)]
pub struct ListSnapshots {
    next: std::sync::atomic::AtomicU64,
    snapshots: Mutex<HashMap<u64, Snapshot>>,
}

/// A page of a snapshot: its objects, the last one's key, and how many follow.
pub struct Page {
    pub items: Vec<Arc<CachedObject>>,
    pub last: Option<ObjKey>,
    pub remaining: usize,
}

impl ListSnapshots {
    /// Keeps a list's matches; returns the id its continue tokens carry.
    pub fn keep(&self, query: ListQuery, revision: u64, items: Vec<Arc<CachedObject>>) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut map = self.snapshots.lock().expect("snapshots lock");
        map.retain(|_, s| s.taken.elapsed() < TTL);
        while map.len() >= MAX_SNAPSHOTS {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.taken).map(|(id, _)| *id) else { break };
            map.remove(&oldest);
        }
        map.insert(id, Snapshot { query, revision, taken: Instant::now(), items: Arc::new(items) });
        crate::metrics::LIST_SNAPSHOTS.set(map.len() as i64);
        id
    }

    /// The page after `after` of snapshot `id`, if it is still kept and was taken for this
    /// query at this revision.
    pub fn page(&self, id: u64, query: &ListQuery, revision: u64, after: &ObjKey, limit: usize) -> Option<Page> {
        let items = {
            let mut map = self.snapshots.lock().expect("snapshots lock");
            let s = map.get(&id)?;
            if s.taken.elapsed() >= TTL {
                map.remove(&id);
                crate::metrics::LIST_SNAPSHOTS.set(map.len() as i64);
                return None;
            }
            if &s.query != query || s.revision != revision {
                return None;
            }
            s.items.clone()
        };
        let start = items.partition_point(|o| !o.is_after(after));
        let end = (start + limit).min(items.len());
        let page = &items[start..end];
        let remaining = items.len() - end;
        if remaining == 0 {
            // The last page: nobody continues from here.
            self.forget(id);
        }
        Some(Page { items: page.to_vec(), last: page.last().map(|o| o.key()), remaining })
    }

    fn forget(&self, id: u64) {
        let mut map = self.snapshots.lock().expect("snapshots lock");
        map.remove(&id);
        crate::metrics::LIST_SNAPSHOTS.set(map.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(labels: &str) -> ListQuery {
        ListQuery { gr: (String::new(), "pods".into()), namespace: None, labels: labels.into(), fields: String::new() }
    }

    fn items(n: usize) -> Vec<Arc<CachedObject>> {
        let pods = (String::new(), "pods".to_string());
        (0..n)
            .map(|i| {
                let pod = json!({"metadata": {"namespace": "ns", "name": format!("p{i:04}")}, "i": i});
                Arc::new(CachedObject::new(&pods, &pod))
            })
            .collect()
    }

    #[test]
    fn pages_follow_the_last_key_and_the_last_page_forgets_the_snapshot() {
        let lists = ListSnapshots::default();
        let id = lists.keep(query(""), 7, items(250));
        let first = ("ns".to_string(), "p0099".to_string());
        let page = lists.page(id, &query(""), 7, &first, 100).unwrap();
        assert_eq!((page.items.len(), page.remaining), (100, 50));
        assert_eq!(page.items[0].value()["i"], 100);
        assert_eq!(page.last, Some(("ns".to_string(), "p0199".to_string())));
        let last = lists.page(id, &query(""), 7, &page.last.unwrap(), 100).unwrap();
        assert_eq!((last.items.len(), last.remaining), (50, 0));
        assert!(lists.page(id, &query(""), 7, &first, 100).is_none(), "forgotten after its last page");
    }

    #[test]
    fn a_token_serves_only_its_own_query_and_snapshots_are_bounded() {
        let lists = ListSnapshots::default();
        let id = lists.keep(query("app=web"), 7, items(10));
        let after = ("ns".to_string(), String::new());
        assert!(lists.page(id, &query(""), 7, &after, 5).is_none(), "other selector");
        assert!(lists.page(id, &query("app=web"), 8, &after, 5).is_none(), "other revision");
        assert!(lists.page(id + 1, &query("app=web"), 7, &after, 5).is_none(), "unknown id");
        for _ in 0..MAX_SNAPSHOTS {
            lists.keep(query(""), 9, items(1));
        }
        assert!(lists.page(id, &query("app=web"), 7, &after, 5).is_none(), "the oldest went first");
        assert_eq!(lists.snapshots.lock().unwrap().len(), MAX_SNAPSHOTS);
    }
}
