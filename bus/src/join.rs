//! Joining a node with a bootstrap token: the request a new node sends on `kubus.<c>.join`
//! and what it gets back.
//!
//! The node makes its own keys: an nkey (its NATS login) and a P-256 key (its client
//! certificate's). It sends both public keys with a proof that it holds the P-256 key (an
//! ES256 JWS over its name, nkey and the cluster), its bootstrap token in the `Authorization`
//! header. The API server authenticates the token as upstream's bootstrap authenticator does,
//! signs a certificate for `system:node:<name>` and lets the nkey log in as that node. Nothing
//! in the answer is secret (a certificate and the CA), so joiners sharing a token may share
//! an inbox.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The subject the API server answers join requests on.
pub fn subject(cluster: &str) -> String {
    format!("kubus.{cluster}.join")
}

/// The audience of a join proof: one cluster's proof is refused by another.
pub fn audience(cluster: &str) -> String {
    format!("kubus-join:{cluster}")
}

/// How old a proof may be.
pub const PROOF_MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub node_name: String,
    /// The node's nkey user public key (`U...`).
    pub nkey: String,
    /// The uncompressed P-256 point of the key the certificate is for, base64url.
    pub public_key: String,
    /// ES256 JWS by that key over [`ProofClaims`].
    pub proof: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProofClaims {
    pub aud: String,
    pub node_name: String,
    pub nkey: String,
    pub iat: u64,
}

/// The answer: a certificate or the refusal, as a Kubernetes `Status` object.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the control plane did not answer the join request on {subject} within {secs} s (is the token's NATS user there yet, and the URL the cluster's?)")]
    Timeout { subject: String, secs: u64 },
    #[error("the join request failed: {0}")]
    Request(String),
    #[error("the join was refused: {0}")]
    Refused(String),
    #[error("the join answer is not one: {0}")]
    Answer(String),
    #[error("cannot make the node's key")]
    Key,
}

/// A new node key: PKCS#8 DER.
pub fn new_key() -> Result<Vec<u8>, JoinError> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| JoinError::Key)
}

/// A PKCS#8 key as PEM (what a kubeconfig and [`crate::credential::Credential`] read).
pub fn key_pem(pkcs8: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

/// The request for node `node_name` with nkey `nkey` and the key `pkcs8`.
pub fn request(cluster: &str, node_name: &str, nkey: &str, pkcs8: &[u8]) -> Result<JoinRequest, JoinError> {
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).map_err(|_| JoinError::Key)?;
    let iat = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let claims = ProofClaims { aud: audience(cluster), node_name: node_name.into(), nkey: nkey.into(), iat };
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#);
    let claims = serde_json::to_value(&claims).expect("claims serialize");
    let proof = crate::credential::sign_jws(&key, &rng, &header, &claims).map_err(|_| JoinError::Key)?;
    Ok(JoinRequest {
        node_name: node_name.into(),
        nkey: nkey.into(),
        public_key: URL_SAFE_NO_PAD.encode(key.public_key().as_ref()),
        proof,
    })
}

/// Sends `req` with bootstrap token `token` and waits for the answer.
pub async fn send(
    client: &async_nats::Client,
    cluster: &str,
    token: &str,
    req: &JoinRequest,
    timeout: Duration,
) -> Result<JoinReply, JoinError> {
    let subject = subject(cluster);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {token}").as_str());
    let body = serde_json::to_vec(req).expect("a join request serializes");
    let asked = client.request_with_headers(subject.clone(), headers, body.into());
    let reply = match tokio::time::timeout(timeout, asked).await {
        Err(_) => return Err(JoinError::Timeout { subject, secs: timeout.as_secs() }),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
            return Err(JoinError::Timeout { subject, secs: timeout.as_secs() })
        }
        Ok(Err(e)) => return Err(JoinError::Request(e.to_string())),
        Ok(Ok(m)) => m,
    };
    let reply: JoinReply = serde_json::from_slice(&reply.payload).map_err(|e| JoinError::Answer(e.to_string()))?;
    if let Some(status) = &reply.status {
        return Err(JoinError::Refused(status["message"].as_str().unwrap_or("no reason given").to_string()));
    }
    Ok(reply)
}

impl JoinRequest {
    /// The proof's claims if it is signed by the request's key, for this cluster, recent, and
    /// about this request's node and nkey.
    pub fn verify(&self, cluster: &str, now: SystemTime) -> Option<ProofClaims> {
        let point = URL_SAFE_NO_PAD.decode(&self.public_key).ok()?;
        let jws = crate::credential::Jws::parse(&self.proof)?;
        if !jws.signed_by(&point) {
            return None;
        }
        let claims: ProofClaims = serde_json::from_slice(&jws.payload).ok()?;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let fresh = claims.iat + PROOF_MAX_AGE.as_secs() >= now && claims.iat <= now + 60;
        (fresh && claims.aud == audience(cluster) && claims.node_name == self.node_name && claims.nkey == self.nkey)
            .then_some(claims)
    }

    /// The SubjectPublicKeyInfo (DER) of the request's key.
    pub fn spki(&self) -> Option<Vec<u8>> {
        let point = URL_SAFE_NO_PAD.decode(&self.public_key).ok()?;
        (point.len() == 65).then(|| [&crate::credential::P256_SPKI_PREFIX[..], &point].concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_binds_key_node_nkey_and_cluster() {
        let key = new_key().unwrap();
        let req = request("c", "n1", "UKEY", &key).unwrap();
        let now = SystemTime::now();
        assert!(req.verify("c", now).is_some());
        assert!(req.verify("other", now).is_none());
        assert!(req.verify("c", now + Duration::from_secs(600)).is_none());
        let mut renamed = req.clone();
        renamed.node_name = "n2".into();
        assert!(renamed.verify("c", now).is_none());
        let mut other_key = req.clone();
        other_key.public_key = request("c", "n1", "UKEY", &new_key().unwrap()).unwrap().public_key;
        assert!(other_key.verify("c", now).is_none());
        assert_eq!(req.spki().unwrap().len(), 91);
    }
}
