//! The node heartbeat: a Lease per node in `kube-node-lease`, renewed by its kubelet (and by
//! the simulated nodes); the node lifecycle controller reads it.

use crate::{Client, ClientError};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::time::micro_time;
use serde_json::json;
use std::time::SystemTime;

pub const NAMESPACE: &str = "kube-node-lease";

/// Renews the node's Lease (creating it the first time) for `duration_seconds`.
pub async fn renew(client: &Client, node: &str, duration_seconds: u64) -> Result<(), ClientError> {
    let spec = LeaseSpec {
        holder_identity: Some(node.to_string()),
        lease_duration_seconds: Some(i32::try_from(duration_seconds).unwrap_or(i32::MAX)),
        renew_time: Some(micro_time(SystemTime::now())),
        ..Default::default()
    };
    match client.merge_patch::<Lease>(NAMESPACE, node, &json!({ "spec": spec })).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_string()),
                    namespace: Some(NAMESPACE.to_string()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            client.create(&lease).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}
