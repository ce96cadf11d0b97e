//! A pods watch for the workload benches: a LIST of the selected pods, then a WATCH from its
//! resourceVersion (resumed from the last one seen when the server ends the stream), every
//! change stamped when it arrived. The watch is the store's own sequence of states, so what a
//! bench computes from it after each event (pods active at once, nodes without an available
//! pod) is what the cluster went through, not what a poll happened to catch.

use crate::http::Conn;
use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent;
use k8s_openapi::List;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One change of one pod.
pub(crate) struct PodEvent {
    /// The pod as it is now, or as it was deleted.
    pub pod: Pod,
    pub deleted: bool,
    pub at: Instant,
}

pub(crate) struct PodWatch {
    rx: mpsc::UnboundedReceiver<anyhow::Result<PodEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one line of a watch stream says: a change, a bookmark's resourceVersion, or an error.
enum Line {
    Change(Box<PodEvent>, Option<String>),
    Bookmark(Option<String>),
}

fn parse(raw: &[u8], at: Instant) -> anyhow::Result<Line> {
    let ev: WatchEvent<Pod> = serde_json::from_slice(raw).context("watch event")?;
    let change = |pod: Pod, deleted: bool| {
        let rv = pod.metadata.resource_version.clone();
        Line::Change(Box::new(PodEvent { pod, deleted, at }), rv)
    };
    Ok(match ev {
        WatchEvent::Added(p) | WatchEvent::Modified(p) => change(p, false),
        WatchEvent::Deleted(p) => change(p, true),
        WatchEvent::Bookmark { resource_version, .. } => Line::Bookmark(Some(resource_version)),
        WatchEvent::ErrorStatus(s) => bail!("watch error: {}", serde_json::to_value(s)?),
        WatchEvent::ErrorOther(o) => bail!("watch error: {}", o.0),
    })
}

impl PodWatch {
    /// Lists the pods `collection` (e.g. `/api/v1/namespaces/default/pods`) holds that match
    /// `selector` (URL-encoded) and watches them; the listed pods come first, as changes.
    pub(crate) async fn start(addr: &str, collection: &str, selector: &str) -> anyhow::Result<PodWatch> {
        let (code, body) =
            Conn::open(addr).await?.request("GET", &format!("{collection}?labelSelector={selector}"), "", b"").await?;
        if code != 200 {
            bail!("LIST {collection}: {code} {}", String::from_utf8_lossy(&body));
        }
        let list: List<Pod> = serde_json::from_slice(&body)?;
        let mut rv = list.metadata.resource_version.context("list without resourceVersion")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        for pod in list.items {
            let _ = tx.send(Ok(PodEvent { pod, deleted: false, at: now }));
        }
        let (addr, base) =
            (addr.to_string(), format!("{collection}?watch=true&allowWatchBookmarks=true&labelSelector={selector}"));
        let task = tokio::spawn(async move {
            loop {
                let path = format!("{base}&resourceVersion={rv}");
                let streamed = async {
                    let mut conn = Conn::open(&addr).await?;
                    conn.send_head("GET", &path, "application/json", b"").await?;
                    let (code, _, _) = conn.read_head().await?;
                    if code != 200 {
                        bail!("watch {path}: HTTP {code}");
                    }
                    let mut pending = Vec::new();
                    while let Some(chunk) = conn.next_chunk().await? {
                        let at = Instant::now();
                        pending.extend_from_slice(&chunk);
                        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                            let raw: Vec<u8> = pending.drain(..=pos).collect();
                            let (ev, seen) = match parse(&raw, at)? {
                                Line::Change(ev, seen) => (Some(*ev), seen),
                                Line::Bookmark(seen) => (None, seen),
                            };
                            if let Some(seen) = seen {
                                rv = seen;
                            }
                            if let Some(ev) = ev {
                                if tx.send(Ok(ev)).is_err() {
                                    return Ok(false);
                                }
                            }
                        }
                    }
                    // The server ended the stream (its watch timeout): resume from `rv`.
                    Ok(true)
                };
                match streamed.await {
                    Ok(true) => continue,
                    Ok(false) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(PodWatch { rx, task })
    }

    /// Every change received so far (without waiting).
    pub(crate) fn drain(&mut self) -> anyhow::Result<Vec<PodEvent>> {
        let mut out = Vec::new();
        while let Ok(ev) = self.rx.try_recv() {
            out.push(ev?);
        }
        Ok(out)
    }

    /// Waits up to `wait` for changes; those that came.
    pub(crate) async fn next(&mut self, wait: Duration) -> anyhow::Result<Vec<PodEvent>> {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(ev)) => {
                let mut out = vec![ev?];
                out.extend(self.drain()?);
                Ok(out)
            }
            Ok(None) => bail!("the pods watch ended"),
            Err(_) => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_changes_bookmarks_or_errors() {
        let at = Instant::now();
        let pod = json!({"metadata": {"name": "p", "resourceVersion": "7"}});
        let line = |t: &str, o: &serde_json::Value| json!({"type": t, "object": o}).to_string().into_bytes();
        match parse(&line("MODIFIED", &pod), at).unwrap() {
            Line::Change(ev, rv) => {
                assert_eq!((ev.pod.metadata.name.as_deref(), ev.deleted, rv.as_deref()), (Some("p"), false, Some("7")))
            }
            Line::Bookmark(_) => panic!("a change"),
        }
        assert!(matches!(parse(&line("DELETED", &pod), at).unwrap(), Line::Change(ev, _) if ev.deleted));
        let bookmark = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}});
        assert!(matches!(parse(&line("BOOKMARK", &bookmark), at).unwrap(), Line::Bookmark(Some(rv)) if rv == "9"));
        assert!(parse(&line("ERROR", &json!({"kind": "Status", "code": 410})), at).is_err());
    }
}
