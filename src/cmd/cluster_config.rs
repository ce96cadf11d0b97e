//! The cluster's network settings as a ConfigMap, `kube-system/kubus-cluster-config` (the role
//! kubeadm's ClusterConfiguration plays): `kubus up` writes the pod and service ranges and the
//! DNS domain it runs with, and a node agent joining with only a NATS URL reads them, so its
//! kube-proxy routes the right service range and pod traffic between nodes is not masqueraded.

use kubus_runtime::Client;
use serde_json::{json, Value};

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kubus-cluster-config";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterNetwork {
    pub pod_subnet: Option<String>,
    pub service_subnet: Option<String>,
    pub dns_domain: Option<String>,
}

impl ClusterNetwork {
    fn from_configmap(cm: &Value) -> ClusterNetwork {
        let field = |k: &str| cm["data"][k].as_str().filter(|v| !v.is_empty()).map(String::from);
        ClusterNetwork {
            pod_subnet: field("podSubnet"),
            service_subnet: field("serviceSubnet"),
            dns_domain: field("dnsDomain"),
        }
    }
}

/// Creates or updates the ConfigMap (the control plane's flags are the truth).
pub async fn publish(client: &Client, net: &ClusterNetwork) -> anyhow::Result<()> {
    let data = json!({
        "podSubnet": net.pod_subnet.clone().unwrap_or_default(),
        "serviceSubnet": net.service_subnet.clone().unwrap_or_default(),
        "dnsDomain": net.dns_domain.clone().unwrap_or_default(),
    });
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE}, "data": data});
    match client.create("", "configmaps", Some(NAMESPACE), &cm).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => {
            client.merge_patch("", "configmaps", Some(NAMESPACE), NAME, None, &json!({"data": data})).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// What the control plane published; None when it is not there (an older or foreign control
/// plane): the agent then keeps its own flags' defaults.
pub async fn fetch(client: &Client) -> Option<ClusterNetwork> {
    match client.get("", "configmaps", Some(NAMESPACE), NAME).await {
        Ok(cm) => Some(ClusterNetwork::from_configmap(&cm)),
        Err(e) => {
            tracing::info!(error = %e, "no {NAMESPACE}/{NAME}: using this node's flags only");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_absent() {
        let cm = json!({"data": {"podSubnet": "10.244.0.0/16", "serviceSubnet": "", "dnsDomain": "corp.local"}});
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
