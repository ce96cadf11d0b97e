//! The strategy of kinds without rules of their own (ConfigMaps, Secrets, Nodes, Events,
//! Leases, ...): defaulting and validation by kind, status kept apart from the rest when the
//! kind has a status subresource, deletion by finalizers only.

use super::Strategy;
use kubus_apimachinery::ResourceInfo;

pub struct DefaultStrategy {
    pub info: &'static ResourceInfo,
}

impl Strategy for DefaultStrategy {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }
}
