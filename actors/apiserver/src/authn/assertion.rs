//! Certificate assertions: how nodes and components holding a client certificate authenticate
//! over NATS, where there is no TLS handshake to show the certificate (the client side is
//! `kubus_bus::credential`). An assertion is an ES256 JWS whose `x5c` header carries the
//! certificate and whose claims are `{aud, iat, exp}`; it authenticates as the certificate
//! would over HTTPS (the same verifier: the cluster CA, client use, validity; CN the user, O the
//! groups) once its signature verifies under the certificate's key and its audience and times
//! hold. Verified assertions are cached by their hash until they expire, so a client pays the
//! certificate and signature checks once per assertion, not per request.

use super::{TokenAuthenticator, UserInfo};
use crate::tls::{PeerAuth, ServerTls};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kubus_bus::credential::{Jws, MAX_LIFETIME, P256_SPKI_PREFIX};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Clock difference tolerated on `iat` and `exp` (a client's clock a minute off still works).
const LEEWAY: u64 = 60;
/// Cached assertions kept at most (a client re-signs every few minutes, so this is many
/// thousands of clients); past it, expired entries go, and if none had, the cache starts over.
const CACHE_LIMIT: usize = 50_000;
/// The longest bearer token taken over NATS (an assertion carries a certificate or two).
const MAX_TOKEN: usize = 16 * 1024;

/// Authenticates certificate assertions made for this cluster.
pub struct CertificateAssertions {
    tls: ServerTls,
    audience: String,
    /// SHA-256 of an assertion: who it authenticated, and until when.
    verified: Mutex<HashMap<[u8; 32], (UserInfo, u64)>>,
}

#[derive(serde::Deserialize)]
struct Claims {
    aud: String,
    iat: u64,
    exp: u64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl CertificateAssertions {
    pub fn new(tls: ServerTls, cluster: &str) -> CertificateAssertions {
        CertificateAssertions {
            tls,
            audience: kubus_bus::credential::audience(cluster),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The user `token` authenticates, if it is a valid assertion of this cluster.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.check(token).flatten()
    }

    /// None if `token` is not an assertion (no certificate in its header); else the user it
    /// authenticates, if it is a valid assertion of this cluster. A client sends the same
    /// assertion for minutes: after the first, a request costs a hash and a lookup.
    fn check(&self, token: &str) -> Option<Option<UserInfo>> {
        let now = now_secs();
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((user, exp)) = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&hash) {
            return Some((*exp + LEEWAY > now).then(|| user.clone()));
        }
        let jws = Jws::parse(token);
        let x5c = jws.as_ref().and_then(|j| j.header.get("x5c"))?;
        let (user, exp) = match self.verify(jws.as_ref()?, x5c, now) {
            Some(verified) => verified,
            None => return Some(None),
        };
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= CACHE_LIMIT {
            verified.retain(|_, (_, exp)| *exp + LEEWAY > now);
            if verified.len() >= CACHE_LIMIT {
                verified.clear();
            }
        }
        verified.insert(hash, (user.clone(), exp));
        Some(Some(user))
    }

    fn verify(&self, jws: &Jws<'_>, x5c: &serde_json::Value, now: u64) -> Option<(UserInfo, u64)> {
        let certificates = x5c.as_array().filter(|c| !c.is_empty() && c.len() <= 4)?;
        let claims: Claims = serde_json::from_slice(&jws.payload).ok()?;
        if claims.aud != self.audience
            || claims.exp + LEEWAY <= now
            || claims.iat > now + LEEWAY
            || claims.exp.saturating_sub(claims.iat) > MAX_LIFETIME.as_secs()
        {
            return None;
        }
        let chain: Vec<CertificateDer<'static>> = certificates
            .iter()
            .map(|c| STANDARD.decode(c.as_str()?).ok().map(CertificateDer::from))
            .collect::<Option<_>>()?;
        // The certificate as an HTTPS client's: the cluster CA, client use, valid now.
        let PeerAuth::Verified(user) = self.tls.peer_auth(Some(&chain)) else { return None };
        let leaf = webpki::EndEntityCert::try_from(&chain[0]).ok()?;
        let spki = leaf.subject_public_key_info();
        let point = spki.as_ref().strip_prefix(&P256_SPKI_PREFIX[..])?;
        jws.signed_by(point).then_some((user, claims.exp))
    }
}

/// The bearer tokens a request over NATS may carry: a ServiceAccount token, as over HTTPS, or a
/// certificate assertion (one check per token, by its kind: neither pays the other's
/// signature check).
pub struct NatsTokens<'a> {
    pub service_accounts: &'a dyn TokenAuthenticator,
    pub assertions: &'a CertificateAssertions,
}

impl TokenAuthenticator for NatsTokens<'_> {
    fn authenticate_token(&self, token: &str, audiences: &[&str]) -> Option<(UserInfo, Vec<String>)> {
        if token.len() > MAX_TOKEN {
            return None;
        }
        match self.assertions.check(token) {
            Some(user) => Some((user?, vec![self.assertions.audience.clone()])),
            None => self.service_accounts.authenticate_token(token, audiences),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ClusterPki, ServingNames};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use kubus_bus::credential::Credential;

    fn new_pki() -> ClusterPki {
        let names = ServingNames::for_cluster("h", &[], "10.96.0.1".parse().unwrap(), "cluster.local");
        ClusterPki::ephemeral(&names).unwrap()
    }

    fn bearer(c: &Credential) -> String {
        c.authorization().unwrap().unwrap().strip_prefix("Bearer ").unwrap().to_string()
    }

    #[test]
    fn an_assertion_authenticates_as_its_certificate() {
        let pki = new_pki();
        let assertions = CertificateAssertions::new(ServerTls::new(&pki).unwrap(), "c");
        let node = pki.issue_client("system:node:n1", &["system:nodes"]).unwrap();
        let credential = Credential::certificate(&node.cert_pem, &node.key_pem, "c").unwrap();
        let token = bearer(&credential);
        let user = assertions.authenticate(&token).expect("a valid assertion");
        assert_eq!(user.name, "system:node:n1");
        assert_eq!(user.groups, ["system:nodes", "system:authenticated"]);
        // Cached: the same answer again; the client re-signs only after minutes.
        assert_eq!(assertions.authenticate(&token), Some(user));
        assert_eq!(bearer(&credential), token);

        // Another cluster's audience, a tampered claim or signature, alg none: refused.
        let other = Credential::certificate(&node.cert_pem, &node.key_pem, "other").unwrap();
        assert!(assertions.authenticate(&bearer(&other)).is_none());
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(r#"{"aud":"kubus-nats:c","iat":1,"exp":99999999999}"#);
        assert!(assertions.authenticate(&format!("{}.{forged_claims}.{}", parts[0], parts[2])).is_none());
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        assert!(assertions
            .authenticate(&format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig)))
            .is_none());
        let none = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"alg": "none", "x5c": serde_json::from_slice::<serde_json::Value>(
                &URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap()["x5c"]})
            .to_string(),
        );
        assert!(assertions.authenticate(&format!("{none}.{}.", parts[1])).is_none());

        // Signed with another certificate's key while naming this one: refused.
        let other_node = pki.issue_client("system:node:n2", &["system:nodes"]).unwrap();
        assert!(Credential::certificate(&node.cert_pem, &other_node.key_pem, "c").is_err());

        // A certificate of another CA: refused, however well signed.
        let foreign = new_pki().issue_client("system:node:n1", &["system:nodes"]).unwrap();
        let foreign = Credential::certificate(&foreign.cert_pem, &foreign.key_pem, "c").unwrap();
        assert!(assertions.authenticate(&bearer(&foreign)).is_none());
        // The admin certificate asserts the administrator.
        let admin = Credential::certificate(&pki.admin.cert_pem, &pki.admin.key_pem, "c").unwrap();
        assert!(assertions.authenticate(&bearer(&admin)).unwrap().in_group("system:masters"));
    }
}
