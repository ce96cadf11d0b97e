//! The kube-dns Service of a cluster whose DNS is the control plane's `ClusterDns` actor: a
//! Service without a selector at a fixed ClusterIP and the EndpointSlice that points at the
//! machine running the DNS (kept current at every start: the port may be picked anew).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_controller_runtime::Client;
use serde_json::json;
use std::net::IpAddr;

const NAMESPACE: &str = "kube-system";
const NAME: &str = "kube-dns";

pub async fn ensure_kube_dns(client: &Client, cluster_ip: IpAddr, endpoint: IpAddr, port: u16) -> anyhow::Result<()> {
    let ports = json!([
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": port},
    ]);
    let svc: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "KubusDNS", "kubernetes.io/cluster-service": "true"}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip.to_string(), "ports": ports}}))?;
    match client.create(&svc).await {
        Ok(_) => {}
        // It exists (from an earlier start, or another control plane): its address is taken
        // by itself, so the create reports the IP (422) or the name (409).
        Err(e)
            if e.is_conflict() || (e.code() == Some(422) && client.get::<Service>(NAMESPACE, NAME).await.is_ok()) =>
        {
            client.merge_patch::<Service>(NAMESPACE, NAME, &json!({"spec": {"ports": ports}})).await?;
        }
        Err(e) => return Err(e.into()),
    }
    let slice_ports = json!([
        {"name": "dns", "port": port, "protocol": "UDP"},
        {"name": "dns-tcp", "port": port, "protocol": "TCP"},
    ]);
    let endpoints = json!([{"addresses": [endpoint.to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}]);
    let slice: EndpointSlice = serde_json::from_value(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": NAME, "endpointslice.kubernetes.io/managed-by": "kubus-up.kubus.io"}},
        "addressType": if endpoint.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": endpoints, "ports": slice_ports}),
    )?;
    match client.create(&slice).await {
        Ok(_) => {}
        Err(e) if e.is_conflict() => {
            let patch = json!({"endpoints": endpoints, "ports": slice_ports});
            client.merge_patch::<EndpointSlice>(NAMESPACE, NAME, &patch).await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
