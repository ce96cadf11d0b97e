//! The JetStream source: a list of the resource's subjects, then an ordered consumer from the
//! list's revision (the control plane's informers, which need every object anyway).

use super::{decode, Informer};
use crate::metrics::INFORMER_DECODE_ERRORS;
use futures::StreamExt;
use kubus_apimachinery::Object;
use kubus_bus::store::KeyPrefix;
use kubus_bus::{Store, StoreError};
use std::time::Duration;

fn decode_logged<K: Object>(resource: &'static str, value: &[u8], revision: u64) -> Option<K> {
    match decode::<K>(value, revision) {
        Ok(o) => Some(o),
        Err(e) => {
            // The API server decodes every write through the same type, so this is a store
            // written by something else; skip the object rather than stop the feed.
            INFORMER_DECODE_ERRORS.with_label_values(&[resource]).inc();
            tracing::warn!(resource, revision, error = %e, "stored object does not decode");
            None
        }
    }
}

/// Lists and watches the store into `informer` until the process ends, re-listing when the
/// watch's revision is no longer held.
pub(super) async fn reflect<K: Object>(informer: &Informer<K>, store: &Store) {
    let info = informer.info();
    let resource = info.resource;
    let prefix = KeyPrefix::new(info.group, info.resource, None);
    let mut revision: Option<u64> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let after = match revision {
            Some(r) => r,
            None => match store.list(&prefix).await {
                Ok((objects, rev)) => {
                    informer.relisted(objects.iter().filter_map(|o| decode_logged(resource, &o.value, o.revision)));
                    revision = Some(rev);
                    rev
                }
                Err(e) => {
                    tracing::warn!(resource, error = %e, "informer list failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
        };
        let mut watch = match store.watch(Some(&prefix), after).await {
            Ok(w) => w,
            Err(StoreError::Gone { .. }) => {
                revision = None;
                continue;
            }
            Err(e) => {
                tracing::warn!(resource, error = %e, "informer watch failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        while let Some(Ok(ev)) = watch.next().await {
            revision = Some(ev.revision);
            if let Some(obj) = decode_logged(resource, &ev.value, ev.revision) {
                informer.applied(ev.kind, obj);
            }
        }
    }
}
