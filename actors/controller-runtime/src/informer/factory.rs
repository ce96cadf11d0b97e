//! One informer per resource for a whole process (client-go's shared informer factory): every
//! actor that watches pods shares one reflector and one copy of every pod. Code that handles
//! every resource alike (the garbage collector) sees them through [`DynInformer`], which shows
//! metadata only.

use super::{Change, Informer};
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::resource::{self, TypeVisitor};
use kubus_apimachinery::{Object, ResourceInfo};
use kubus_bus::Store;
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast::error::RecvError;

/// A change as metadata (see [`DynInformer::on_change`]).
#[derive(Debug)]
pub enum MetaChange<'a> {
    Applied {
        old: Option<&'a ObjectMeta>,
        new: &'a ObjectMeta,
    },
    Deleted(&'a ObjectMeta),
    /// Refilled from a list, or the handler fell behind: re-read everything.
    Resynced,
}

/// An informer of any resource, by its metadata.
pub trait DynInformer: Send + Sync {
    fn info(&self) -> &'static ResourceInfo;
    /// Calls `f` with every cached object's metadata, under the cache's lock.
    fn for_each_meta(&self, f: &mut dyn FnMut(&ObjectMeta));
    /// The metadata of one cached object.
    fn meta(&self, namespace: &str, name: &str) -> Option<ObjectMeta>;
    /// Calls `handler` with every change from now on, in order, on a task of its own.
    fn on_change(&self, handler: Box<dyn FnMut(MetaChange<'_>) + Send>);
    fn wait_synced(&self) -> BoxFuture<'static, ()>;
}

impl<K: Object> DynInformer for Informer<K> {
    fn info(&self) -> &'static ResourceInfo {
        Informer::info(self)
    }

    fn for_each_meta(&self, f: &mut dyn FnMut(&ObjectMeta)) {
        self.read(|c| c.values().for_each(|o| f(o.metadata())));
    }

    fn meta(&self, namespace: &str, name: &str) -> Option<ObjectMeta> {
        self.get(namespace, name).map(|o| o.metadata().clone())
    }

    fn on_change(&self, mut handler: Box<dyn FnMut(MetaChange<'_>) + Send>) {
        let mut rx = self.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(Change::Applied { old, new }) => {
                        handler(MetaChange::Applied { old: old.as_deref().map(|o| o.metadata()), new: new.metadata() })
                    }
                    Ok(Change::Deleted(o)) => handler(MetaChange::Deleted(o.metadata())),
                    Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => handler(MetaChange::Resynced),
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    fn wait_synced(&self) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move { Informer::wait_synced(&this).await })
    }
}

/// By (group, resource): an `Informer<K>` of that resource's type.
type Informers = HashMap<(&'static str, &'static str), Box<dyn Any + Send + Sync>>;

#[derive(Clone)]
pub struct InformerFactory {
    store: Store,
    informers: Arc<Mutex<Informers>>,
}

impl InformerFactory {
    pub fn new(store: Store) -> Self {
        InformerFactory { store, informers: Default::default() }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The informer of K's resource (all namespaces), started on first use.
    pub fn get<K: Object>(&self) -> Informer<K> {
        let info = resource::of::<K>();
        let mut map = self.informers.lock().expect("factory lock");
        map.entry((info.group, info.resource))
            .or_insert_with(|| Box::new(Informer::<K>::start(self.store.clone())))
            .downcast_ref::<Informer<K>>()
            .expect("one type per resource")
            .clone()
    }

    /// An informer of every stored resource (started on first use), by metadata.
    pub fn all(&self) -> Vec<Arc<dyn DynInformer>> {
        struct Collect<'a>(&'a InformerFactory, Vec<Arc<dyn DynInformer>>);
        impl TypeVisitor for Collect<'_> {
            fn visit<K: Object>(&mut self, info: &'static ResourceInfo) {
                // Other versions of a stored resource (events.k8s.io Events) share its storage.
                if (info.storage_group, info.storage_resource) == (info.group, info.resource) {
                    self.1.push(Arc::new(self.0.get::<K>()));
                }
            }
        }
        let mut collect = Collect(self, Vec::new());
        resource::for_each_type(&mut collect);
        collect.1
    }
}
