//! Where an informer's list and watch come from. Both sources feed the same cache, indexes and
//! fan-out; only how objects arrive differs.

use super::api_source::{self, ApiSource};
use super::{store_source, Informer};
use kubus_apimachinery::Object;
use kubus_bus::Store;

// Made once per informer and moved into its task: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    /// Every object of the resource, straight from JetStream.
    Store(Store),
    /// The objects a field selector picks, listed and watched through the API server (whose
    /// watch cache filters them), as upstream's kubelet watches only its own pods.
    Api(ApiSource),
}

impl Source {
    /// Feeds `informer` until the process ends.
    pub(super) async fn reflect<K: Object>(&self, informer: &Informer<K>) {
        match self {
            Source::Store(store) => store_source::reflect(informer, store).await,
            Source::Api(api) => api_source::reflect(informer, api).await,
        }
    }
}
