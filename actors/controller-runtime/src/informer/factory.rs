//! One informer per resource for a whole process (client-go's shared informer factory): every
//! actor that watches pods shares one reflector and one copy of every pod. Code that handles
//! every resource alike (the garbage collector) sees them through [`DynInformer`], which shows
//! metadata only. A process that needs only some objects of a resource (a kubelet's own pods)
//! asks for an informer selected by a field selector, fed through the API server. A node
//! agent's factory reads everything through the API server ([`InformerFactory::from_api`]):
//! only the control plane reads the object stream, and the API server authorizes the rest.

use super::{ApiSource, Change, Informer, Source};
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::resource::{self, TypeVisitor};
use kubus_apimachinery::{Object, ResourceInfo};
use kubus_bus::api::ApiClient;
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
    /// Calls `f` with one cached object's metadata, if it is there (without copying it).
    fn inspect(&self, namespace: &str, name: &str, f: &mut dyn FnMut(&ObjectMeta)) -> bool;
    /// A loop calling `handler` with every change from the moment it is called, in order; it
    /// runs while the returned future is polled (so it ends with its owner).
    fn on_change(&self, handler: Box<dyn FnMut(MetaChange<'_>) + Send>) -> BoxFuture<'static, ()>;
    fn wait_synced(&self) -> BoxFuture<'static, ()>;
    /// How many cached objects are in `namespace` (from the namespace index).
    fn count_in_namespace(&self, namespace: &str) -> usize;
}

impl<K: Object> DynInformer for Informer<K> {
    fn info(&self) -> &'static ResourceInfo {
        Informer::info(self)
    }

    fn for_each_meta(&self, f: &mut dyn FnMut(&ObjectMeta)) {
        self.read(|c| c.values().for_each(|o| f(o.metadata())));
    }

    fn inspect(&self, namespace: &str, name: &str, f: &mut dyn FnMut(&ObjectMeta)) -> bool {
        let key = (namespace.to_string(), name.to_string());
        self.read(|c| c.get(&key).map(|o| f(o.metadata())).is_some())
    }

    fn on_change(&self, mut handler: Box<dyn FnMut(MetaChange<'_>) + Send>) -> BoxFuture<'static, ()> {
        let mut rx = self.subscribe();
        Box::pin(async move {
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
        })
    }

    fn wait_synced(&self) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move { Informer::wait_synced(&this).await })
    }

    fn count_in_namespace(&self, namespace: &str) -> usize {
        self.count(super::BY_NAMESPACE, namespace)
    }
}

/// By (group, resource): an `Informer<K>` of that resource's type.
type Informers = HashMap<(&'static str, &'static str), Box<dyn Any + Send + Sync>>;
/// By (group, resource, field selector): a selected `Informer<K>`.
type SelectedInformers = HashMap<(&'static str, &'static str, String), Box<dyn Any + Send + Sync>>;

/// Where a factory's informers read from.
#[derive(Clone)]
enum Backing {
    /// The object stream on JetStream (the control plane). (Both handles are large: boxed.)
    Store(Box<Store>),
    /// The API server, as any other client (node agents).
    Api(Box<ApiClient>),
}

#[derive(Clone)]
pub struct InformerFactory {
    backing: Backing,
    informers: Arc<Mutex<Informers>>,
    selected: Arc<Mutex<SelectedInformers>>,
    /// Where reflectors run (None: on the thread that first asks for the resource).
    arbiter: Option<actix::ArbiterHandle>,
}

impl InformerFactory {
    pub fn new(store: Store) -> Self {
        Self::with_backing(Backing::Store(Box::new(store)))
    }

    /// A factory whose informers list and watch through the API server with `api`'s identity
    /// (node agents: they hold no right to the object stream, and the watch cache fans out).
    pub fn from_api(api: ApiClient) -> Self {
        Self::with_backing(Backing::Api(Box::new(api)))
    }

    fn with_backing(backing: Backing) -> Self {
        InformerFactory { backing, informers: Default::default(), selected: Default::default(), arbiter: None }
    }

    /// Runs every reflector of this factory on `arbiter` (a thread of their own in `kubus up`).
    pub fn on_arbiter(mut self, arbiter: actix::ArbiterHandle) -> Self {
        self.arbiter = Some(arbiter);
        self
    }

    /// An informer of K fed by the backing, `field_selector` picking objects ("" for all).
    fn start<K: Object>(&self, field_selector: &str) -> Informer<K> {
        let source = match &self.backing {
            Backing::Store(store) if field_selector.is_empty() => Source::Store((**store).clone()),
            Backing::Store(store) => Source::Api(ApiSource::new(
                ApiClient::new(store.context().client(), &store.config().cluster, "informer"),
                field_selector,
            )),
            Backing::Api(api) => Source::Api(ApiSource::new((**api).clone(), field_selector)),
        };
        Informer::<K>::start_from(source, self.arbiter.as_ref())
    }

    /// The informer of K's resource (all namespaces), started on first use.
    pub fn get<K: Object>(&self) -> Informer<K> {
        let info = resource::of::<K>();
        let mut map = self.informers.lock().expect("factory lock");
        map.entry((info.group, info.resource))
            .or_insert_with(|| Box::new(self.start::<K>("")))
            .downcast_ref::<Informer<K>>()
            .expect("one type per resource")
            .clone()
    }

    /// The informer of the objects of K's resource that `field_selector` picks (e.g.
    /// `spec.nodeName=node-1`), listed and watched through the API server, which filters them;
    /// started on first use and shared per (resource, selector). Its metrics carry the same
    /// resource label as [`InformerFactory::get`]'s, so a process should hold one of the two.
    pub fn get_selected<K: Object>(&self, field_selector: &str) -> Informer<K> {
        let info = resource::of::<K>();
        let mut map = self.selected.lock().expect("factory lock");
        map.entry((info.group, info.resource, field_selector.to_string()))
            .or_insert_with(|| Box::new(self.start::<K>(field_selector)))
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
                if info.is_storage() {
                    self.1.push(Arc::new(self.0.get::<K>()));
                }
            }
        }
        let mut collect = Collect(self, Vec::new());
        resource::for_each_type(&mut collect);
        collect.1
    }
}
