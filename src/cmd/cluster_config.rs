//! The cluster's network settings as a ConfigMap, `kube-system/kubus-cluster-config` (the role
//! kubeadm's ClusterConfiguration plays): `kubus up` writes the pod and service ranges and the
//! DNS domain it runs with, and a node agent joining with only a NATS URL reads them, so its
//! kube-proxy routes the right service range and pod traffic between nodes is not masqueraded.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_controller_runtime::Client;
use serde_json::json;
use std::collections::BTreeMap;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = kubus_apiserver::authorization::bootstrap::CLUSTER_CONFIG_MAP;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterNetwork {
    pub pod_subnet: Option<String>,
    pub service_subnet: Option<String>,
    pub dns_domain: Option<String>,
}

impl ClusterNetwork {
    fn from_configmap(cm: &ConfigMap) -> ClusterNetwork {
        let field = |k: &str| cm.data.as_ref()?.get(k).filter(|v| !v.is_empty()).cloned();
        ClusterNetwork {
            pod_subnet: field("podSubnet"),
            service_subnet: field("serviceSubnet"),
            dns_domain: field("dnsDomain"),
        }
    }
}

/// Creates or updates the ConfigMap (the control plane's flags are the truth).
pub async fn publish(client: &Client, net: &ClusterNetwork) -> anyhow::Result<()> {
    let data: BTreeMap<String, String> =
        [("podSubnet", &net.pod_subnet), ("serviceSubnet", &net.service_subnet), ("dnsDomain", &net.dns_domain)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone().unwrap_or_default()))
            .collect();
    let cm = ConfigMap {
        metadata: ObjectMeta { name: Some(NAME.into()), namespace: Some(NAMESPACE.into()), ..Default::default() },
        data: Some(data.clone()),
        ..Default::default()
    };
    match client.create(&cm).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => {
            client.merge_patch::<ConfigMap>(NAMESPACE, NAME, &json!({"data": data})).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// What the control plane published; None when it is not there (an older or foreign control
/// plane): the agent then keeps its own flags' defaults.
pub async fn fetch(client: &Client) -> Option<ClusterNetwork> {
    // A node agent that starts with the wrong ranges masquerades pod traffic: an API server
    // not answering yet is waited for; only an answer that there is none means none.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match client.get::<ConfigMap>(NAMESPACE, NAME).await {
            Ok(cm) => return Some(ClusterNetwork::from_configmap(&cm)),
            Err(e) if e.code().is_some_and(|c| c < 500) || tokio::time::Instant::now() > deadline => {
                tracing::info!(error = %e, "no {NAMESPACE}/{NAME}: using this node's flags only");
                return None;
            }
            Err(e) => {
                tracing::info!(error = %e, "cannot read {NAMESPACE}/{NAME} yet; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_absent() {
        let cm: ConfigMap = serde_json::from_value(
            json!({"data": {"podSubnet": "10.244.0.0/16", "serviceSubnet": "", "dnsDomain": "corp.local"}}),
        )
        .unwrap();
        assert_eq!(
            ClusterNetwork::from_configmap(&cm),
            ClusterNetwork {
                pod_subnet: Some("10.244.0.0/16".into()),
                service_subnet: None,
                dns_domain: Some("corp.local".into())
            }
        );
    }
}
