//! The TokenRequest API (`POST serviceaccounts/{name}/token`, what `kubectl create token` and
//! projected service-account token volumes use): a JWT for the ServiceAccount, bound to a pod
//! when the request names one, with the claims upstream issues. Tokens are signed (HS256) with
//! the cluster's signing key, a Secret in kube-system made once by whichever API server comes
//! first, so every API server of the cluster signs alike.

use crate::storage::Storage;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use kubus_apimachinery::{resource, Cause, StatusError};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

pub const SIGNING_KEY_SECRET: &str = "kubus-service-account-signing-key";
/// Upstream's default issuer and audience.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const DEFAULT_EXPIRATION: i64 = 3600;
/// Upstream refuses tokens shorter than ten minutes.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 48 * 3600;

#[derive(Default)]
pub struct TokenIssuer {
    key: OnceCell<Vec<u8>>,
}

impl TokenIssuer {
    /// The cluster's key: read from its Secret, or created there first.
    async fn key(&self, storage: &Storage) -> Result<&[u8], StatusError> {
        self.key
            .get_or_try_init(|| async {
                let secrets = resource::find("", "v1", "secrets").expect("secrets are served");
                let read = |s: &Value| {
                    s["data"]["key"].as_str().and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
                };
                if let Ok(s) = storage.get(secrets, Some("kube-system"), SIGNING_KEY_SECRET).await {
                    if let Some(k) = read(&s).filter(|k| k.len() >= 32) {
                        return Ok(k);
                    }
                }
                let fresh: Vec<u8> =
                    uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).copied().collect();
                let body = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": SIGNING_KEY_SECRET, "namespace": "kube-system"},
                    "data": {"key": base64::engine::general_purpose::STANDARD.encode(&fresh)}});
                match storage.create(secrets, Some("kube-system"), body, &Default::default()).await {
                    Ok(_) => Ok(fresh),
                    // Another API server made it first: use its key.
                    Err(e) if e.code == 409 => {
                        let s = storage.get(secrets, Some("kube-system"), SIGNING_KEY_SECRET).await?;
                        read(&s).ok_or_else(|| StatusError::internal("the service account signing key is unreadable"))
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .map(Vec::as_slice)
    }

    /// Answers a TokenRequest for ServiceAccount `ns/name`.
    pub async fn issue(&self, storage: &Storage, ns: &str, name: &str, req: &Value) -> Result<Value, StatusError> {
        let sas = resource::find("", "v1", "serviceaccounts").expect("serviceaccounts are served");
        let sa = storage.get(sas, Some(ns), name).await?;
        let spec = &req["spec"];
        let expiration = spec["expirationSeconds"].as_i64().unwrap_or(DEFAULT_EXPIRATION);
        if expiration < MIN_EXPIRATION {
            return Err(StatusError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                name,
                vec![Cause::invalid(
                    "spec.expirationSeconds",
                    &json!(expiration),
                    "may not specify a duration less than 10 minutes",
                )],
            ));
        }
        let expiration = expiration.min(MAX_EXPIRATION);
        let audiences: Vec<String> = spec["audiences"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .filter(|a: &Vec<String>| !a.is_empty())
            .unwrap_or_else(|| vec![ISSUER.to_string()]);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}});
        let bound = &spec["boundObjectRef"];
        if bound["kind"] == "Pod" {
            let pods = resource::find("", "v1", "pods").expect("pods are served");
            let pod_name = bound["name"].as_str().unwrap_or("");
            let pod = storage.get(pods, Some(ns), pod_name).await?;
            if bound["uid"].as_str().is_some_and(|u| !u.is_empty() && pod["metadata"]["uid"] != u) {
                return Err(StatusError::conflict(
                    "",
                    "pods",
                    pod_name,
                    "the UID in the bound object reference does not match",
                ));
            }
            k8s["pod"] = json!({"name": pod_name, "uid": pod["metadata"]["uid"]});
            if let Some(node) = pod["spec"]["nodeName"].as_str() {
                k8s["node"] = json!({"name": node});
            }
        }
        let claims = json!({
            "aud": audiences, "exp": now + expiration, "iat": now, "nbf": now, "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": format!("system:serviceaccount:{ns}:{name}"),
            "kubernetes.io": k8s,
        });
        let key = self.key(storage).await?;
        let token = sign(key, &claims);
        let expires = kubus_apimachinery::time::format_rfc3339(
            UNIX_EPOCH + std::time::Duration::from_secs((now + expiration) as u64),
        );
        Ok(json!({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": if bound.is_object() { bound.clone() } else { Value::Null }},
            "status": {"token": token, "expirationTimestamp": expires},
        }))
    }
}

/// A compact JWS (HS256) of `claims`.
pub fn sign(key: &[u8], claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Checks a token's signature and expiry; its claims if valid (nothing serves TokenReview yet,
/// so only the tests check what `sign` makes).
#[cfg(test)]
pub fn verify(key: &[u8], token: &str) -> Option<Value> {
    let (signing_input, sig) = token.rsplit_once('.')?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).ok()?).ok()?;
    let payload = signing_input.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    (claims["exp"].as_i64()? > now).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_tampering_fails() {
        let key = b"0123456789abcdef0123456789abcdef";
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let t = sign(key, &json!({"sub": "system:serviceaccount:default:x", "exp": now + 60}));
        assert_eq!(verify(key, &t).unwrap()["sub"], "system:serviceaccount:default:x");
        assert!(verify(b"another key of thirty-two bytes!", &t).is_none());
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(json!({"sub": "system:admin", "exp": now + 60}).to_string());
        parts[1] = &forged;
        assert!(verify(key, &parts.join(".")).is_none());
        let expired = sign(key, &json!({"exp": now - 1}));
        assert!(verify(key, &expired).is_none());
    }
}
