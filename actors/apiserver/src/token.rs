//! ServiceAccount tokens: the TokenRequest API (`POST serviceaccounts/{name}/token`, what
//! `kubectl create token` and projected service-account token volumes use) issues a JWT for the
//! ServiceAccount, bound to a pod, secret or node when the request names one, with the claims
//! upstream issues; and [`ServiceAccountTokens`] authenticates them as upstream's
//! service-account authenticator does.
//!
//! Tokens are signed ES256 (ECDSA P-256, as `--service-account-key-file` may hold) with the
//! cluster's key, kept in the store's keys stream and never in a Secret: whoever may read
//! Secrets cannot mint tokens, and every API server of the cluster signs and verifies alike.

use crate::authn::{service_account_groups, TokenAuthenticator, UserInfo, ALL_AUTHENTICATED, SERVICE_ACCOUNT_PREFIX};
use crate::cache::{CachedObject, WatchCache};
use crate::storage::Storage;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kubus_apimachinery::{resource, Cause, StatusError};
use kubus_bus::credential::{sign_jws, Jws, P256_SPKI_PREFIX};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The signing key's name in the store's keys stream.
pub const SIGNING_KEY: &str = "service-account-signing-key";
/// Where an older Kubus kept an HS256 key, readable through the Secrets API; removed at start.
pub const LEGACY_SIGNING_KEY_SECRET: &str = "kubus-service-account-signing-key";
/// Upstream's default issuer and audience.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const DEFAULT_EXPIRATION: i64 = 3600;
/// Upstream refuses tokens shorter than ten minutes.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 48 * 3600;
/// Clocks differ: a token is taken this long before its nbf (upstream's leeway).
const LEEWAY: i64 = 60;
/// A token bound to a pod being deleted stays valid this long after the deletion started, so
/// the pod can finish its graceful shutdown (upstream's grace).
const DELETED_POD_GRACE: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    #[error("the service account signing key is not a P-256 PKCS#8 key: {0}")]
    Key(String),
    #[error("reading the service account signing key from the store: {0}")]
    Store(#[from] kubus_bus::StoreError),
}

/// Signs ServiceAccount tokens and checks their signatures.
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    /// The key's id (`kid`): base64url of the SHA-256 of its public key's DER, as upstream.
    kid: String,
    rng: SystemRandom,
}

impl TokenIssuer {
    /// The cluster's key, read from the store's keys stream (made there by the first API server).
    pub async fn load(store: &kubus_bus::Store) -> Result<TokenIssuer, TokenKeyError> {
        // Made before it is needed: a failure is an error here, never an empty key stored.
        let fresh = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|e| TokenKeyError::Key(e.to_string()))?;
        let pkcs8 = store.cluster_secret(SIGNING_KEY, || fresh.as_ref().to_vec()).await?;
        TokenIssuer::from_pkcs8(&pkcs8)
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<TokenIssuer, TokenKeyError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| TokenKeyError::Key(e.to_string()))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(&spki));
        Ok(TokenIssuer { key, kid, rng })
    }

    /// A key made here and kept nowhere (tests and benchmarks).
    pub fn ephemeral() -> TokenIssuer {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("the system's random source works");
        TokenIssuer::from_pkcs8(pkcs8.as_ref()).expect("a key just made is valid")
    }

    /// The public key as a JSON Web Key Set (`/openid/v1/jwks`, as upstream serves it).
    pub fn jwks(&self) -> Value {
        // An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
        let point = self.key.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        json!({"keys": [{"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}]})
    }

    /// A compact JWS (ES256) of `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": self.kid}).to_string());
        sign_jws(&self.key, &self.rng, &header, claims).expect("ECDSA signing does not fail")
    }

    /// The claims of a token this key signed (ES256, this key's id, a good signature), read
    /// into `T`, or None. Times, issuer and audiences are the caller's to check.
    pub fn verify_signature<T: serde::de::DeserializeOwned>(&self, token: &str) -> Option<T> {
        let jws = Jws::parse(token)?;
        if jws.header["kid"].as_str().is_some_and(|k| k != self.kid) || !jws.signed_by(self.key.public_key().as_ref()) {
            return None;
        }
        serde_json::from_slice(&jws.payload).ok()
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
        let now = now_secs();
        let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}});
        let bound = &spec["boundObjectRef"];
        if bound.is_object() {
            let (kind, bound_name) = (bound["kind"].as_str().unwrap_or(""), bound["name"].as_str().unwrap_or(""));
            let (resource_name, namespace) = match kind {
                "Pod" => ("pods", Some(ns)),
                "Secret" => ("secrets", Some(ns)),
                "Node" => ("nodes", None),
                _ => {
                    return Err(StatusError::invalid(
                        "authentication.k8s.io",
                        "TokenRequest",
                        name,
                        vec![Cause::not_supported(
                            "spec.boundObjectRef.kind",
                            &json!(kind),
                            &["Pod", "Node", "Secret"],
                        )],
                    ))
                }
            };
            let info = resource::find("", "v1", resource_name).expect("pods, secrets and nodes are served");
            let obj = storage.get(info, namespace, bound_name).await?;
            let uid = &obj["metadata"]["uid"];
            if bound["uid"].as_str().is_some_and(|u| !u.is_empty() && uid != u) {
                return Err(StatusError::conflict(
                    "",
                    resource_name,
                    bound_name,
                    "the UID in the bound object reference does not match",
                ));
            }
            // A pod's token is its own ServiceAccount's: upstream refuses to bind another's.
            if kind == "Pod" && obj["spec"]["serviceAccountName"].as_str().unwrap_or("default") != name {
                return Err(StatusError::bad_request(format!(
                    "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
                )));
            }
            let field = &kind.to_ascii_lowercase();
            k8s[field] = json!({"name": bound_name, "uid": uid});
            if let Some(node) = obj["spec"]["nodeName"].as_str().filter(|_| kind == "Pod") {
                k8s["node"] = json!({"name": node});
            }
        }
        let claims = json!({
            "aud": audiences, "exp": now + expiration, "iat": now, "nbf": now, "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": format!("{SERVICE_ACCOUNT_PREFIX}{ns}:{name}"),
            "kubernetes.io": k8s,
        });
        let token = self.sign(&claims);
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

/// The issuer's OpenID Connect discovery document (`/.well-known/openid-configuration`).
pub fn discovery_document() -> Value {
    json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}/openid/v1/jwks"),
        "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"]})
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

/// What a token claims of its ServiceAccount and the object it is bound to.
#[derive(Debug, Default, Clone, serde::Deserialize)]
struct Claims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: String,
    #[serde(default)]
    aud: Audiences,
    exp: Option<i64>,
    nbf: Option<i64>,
    #[serde(default)]
    jti: String,
    #[serde(rename = "kubernetes.io", default)]
    k8s: K8sClaims,
}

/// `aud` is a string or a list of strings.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(untagged)]
enum Audiences {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl Audiences {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Audiences::One(a) => a == aud,
            Audiences::Many(all) => all.iter().any(|a| a == aud),
            Audiences::None => false,
        }
    }
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
struct K8sClaims {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    serviceaccount: Ref,
    pod: Option<Ref>,
    secret: Option<Ref>,
    node: Option<Ref>,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
struct Ref {
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
}

/// The uid and deletion time of a cached object.
fn meta_of(obj: &CachedObject) -> Option<(String, Option<SystemTime>)> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        uid: String,
        #[serde(rename = "deletionTimestamp")]
        deletion: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Object {
        metadata: Meta,
    }
    let o: Object = obj.decode().ok()?;
    Some((o.metadata.uid, o.metadata.deletion.as_deref().and_then(kubus_apimachinery::time::parse_rfc3339)))
}

/// Authenticates the bearer tokens this cluster issued: bootstrap tokens
/// ([`crate::authn::bootstrap`]), and ServiceAccount tokens as upstream's service-account token
/// authenticator: signature, issuer, audience, times, and the ServiceAccount and the object the
/// token is bound to still existing as they were (same uid) in the watch cache.
pub struct ServiceAccountTokens {
    pub issuer: std::sync::Arc<TokenIssuer>,
    cache: WatchCache,
    /// SHA-256 of a token whose signature verified: its claims. A controller or pod sends its
    /// token with every request; the signature is checked once, the times and the objects it
    /// is bound to every time.
    signed: std::sync::Mutex<std::collections::HashMap<[u8; 32], std::sync::Arc<Claims>>>,
}

/// Tokens whose signature check is remembered; past it, expired ones go, and if none had, the
/// cache starts over.
const SIGNED_LIMIT: usize = 50_000;
/// Tokens longer than this (many audiences) are checked every time.
const MAX_CACHED_TOKEN: usize = 4096;

impl ServiceAccountTokens {
    pub fn new(issuer: std::sync::Arc<TokenIssuer>, cache: WatchCache) -> Self {
        ServiceAccountTokens { issuer, cache, signed: Default::default() }
    }

    /// The claims of `token` if this cluster's key signed it.
    fn signed_claims(&self, token: &str) -> Option<std::sync::Arc<Claims>> {
        use sha2::Digest as _;
        let hash: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.signed.lock().unwrap_or_else(|e| e.into_inner()).get(&hash) {
            return Some(claims.clone());
        }
        let claims = std::sync::Arc::new(self.issuer.verify_signature::<Claims>(token)?);
        // Only what can authenticate is remembered, and no outsized token.
        let now = now_secs();
        if claims.iss != ISSUER || claims.exp.is_none_or(|exp| exp <= now) || token.len() > MAX_CACHED_TOKEN {
            return Some(claims);
        }
        let mut signed = self.signed.lock().unwrap_or_else(|e| e.into_inner());
        if signed.len() >= SIGNED_LIMIT {
            signed.retain(|_, c| c.exp.is_some_and(|exp| exp > now));
            if signed.len() >= SIGNED_LIMIT {
                signed.clear();
            }
        }
        signed.insert(hash, claims.clone());
        Some(claims)
    }

    fn live(&self, resource: &str, namespace: &str, r: &Ref) -> Option<Option<SystemTime>> {
        let obj = self.cache.get(&(String::new(), resource.to_string()), &(namespace.to_string(), r.name.clone()))?;
        let (uid, deleted) = meta_of(&obj)?;
        // A reference without a uid names whatever holds the name (upstream: legacy claims).
        (r.uid.is_empty() || uid == r.uid).then_some(deleted)
    }
}

impl TokenAuthenticator for ServiceAccountTokens {
    fn authenticate_token(&self, token: &str, audiences: &[&str]) -> Option<(UserInfo, Vec<String>)> {
        // A bootstrap token is never a JWT: its shape says which authenticator it is for.
        if crate::authn::bootstrap::parse(token).is_some() {
            // Not for any audience asked for: only the API's own (upstream wraps audience-agnostic
            // authenticators so).
            let matched: Vec<String> =
                audiences.iter().filter(|a| crate::authn::API_AUDIENCES.contains(a)).map(|a| a.to_string()).collect();
            if matched.is_empty() {
                return None;
            }
            let user = crate::authn::bootstrap::authenticate(&self.cache, token)?;
            return Some((user, matched));
        }
        let claims = self.signed_claims(token)?;
        let now = now_secs();
        let matched: Vec<String> = audiences.iter().filter(|a| claims.aud.contains(a)).map(|a| a.to_string()).collect();
        if claims.iss != ISSUER || matched.is_empty() {
            return None;
        }
        if claims.exp.is_none_or(|exp| exp <= now) || claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY) {
            return None;
        }
        let k = &claims.k8s;
        let (ns, sa) = crate::authn::service_account_of(&claims.sub)?;
        if ns != k.namespace || sa != k.serviceaccount.name {
            return None;
        }
        // The ServiceAccount must still exist (the same one) and not be going away.
        if self.live("serviceaccounts", ns, &k.serviceaccount)?.is_some() {
            return None;
        }
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(pod) = &k.pod {
            if let Some(deleted) = self.live("pods", ns, pod)? {
                let since = deleted.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
                if since + DELETED_POD_GRACE < now {
                    return None;
                }
            }
            extra.insert("authentication.kubernetes.io/pod-name".into(), vec![pod.name.clone()]);
            extra.insert("authentication.kubernetes.io/pod-uid".into(), vec![pod.uid.clone()]);
        }
        if let Some(secret) = &k.secret {
            if self.live("secrets", ns, secret)?.is_some() {
                return None;
            }
        }
        if let Some(node) = &k.node {
            // A pod's node is informative unless the token is bound to the node itself.
            if k.pod.is_none() && self.live("nodes", "", node)?.is_some() {
                return None;
            }
            extra.insert("authentication.kubernetes.io/node-name".into(), vec![node.name.clone()]);
            if !node.uid.is_empty() {
                extra.insert("authentication.kubernetes.io/node-uid".into(), vec![node.uid.clone()]);
            }
        }
        if !claims.jti.is_empty() {
            extra.insert("authentication.kubernetes.io/credential-id".into(), vec![format!("JTI={}", claims.jti)]);
        }
        let [all, in_ns] = service_account_groups(ns);
        let user = UserInfo {
            name: claims.sub.clone(),
            uid: k.serviceaccount.uid.clone(),
            groups: vec![all, in_ns, ALL_AUTHENTICATED.to_string()],
            extra,
        };
        Some((user, matched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_bus::{EventType, Key};
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    fn put(cache: &WatchCache, resource: &str, ns: Option<&str>, name: &str, meta: Value, revision: u64) {
        let mut metadata = json!({"name": name});
        if let Some(ns) = ns {
            metadata["namespace"] = ns.into();
        }
        metadata.as_object_mut().unwrap().extend(meta.as_object().unwrap().clone());
        cache.apply(kubus_bus::Event {
            kind: EventType::Added,
            key: Key::new("", resource, ns, name),
            revision,
            value: bytes::Bytes::from(json!({"metadata": metadata}).to_string()),
        });
    }

    fn claims(exp_in: i64, pod: Option<(&str, &str)>) -> Value {
        let now = now_secs();
        let mut k8s = json!({"namespace": "team-a", "serviceaccount": {"name": "reader", "uid": "sa-1"}});
        if let Some((name, uid)) = pod {
            k8s["pod"] = json!({"name": name, "uid": uid});
        }
        json!({"iss": ISSUER, "aud": [ISSUER], "sub": "system:serviceaccount:team-a:reader", "iat": now, "nbf": now,
            "exp": now + exp_in, "jti": "j-1", "kubernetes.io": k8s})
    }

    #[test]
    fn tokens_authenticate_only_while_signed_current_and_bound() {
        let cache = WatchCache::new(100);
        cache.replace(Vec::new(), Vec::new(), 1);
        put(&cache, "serviceaccounts", Some("team-a"), "reader", json!({"uid": "sa-1"}), 2);
        put(&cache, "pods", Some("team-a"), "worker", json!({"uid": "pod-1"}), 3);
        let issuer = std::sync::Arc::new(TokenIssuer::ephemeral());
        let tokens = ServiceAccountTokens::new(issuer.clone(), cache.clone());
        let api = crate::authn::API_AUDIENCES;

        let user = tokens.authenticate_token(&issuer.sign(&claims(600, None)), api).expect("a good token").0;
        assert_eq!(user.name, "system:serviceaccount:team-a:reader");
        assert_eq!(user.uid, "sa-1");
        assert_eq!(user.groups, ["system:serviceaccounts", "system:serviceaccounts:team-a", "system:authenticated"]);
        assert_eq!(user.extra["authentication.kubernetes.io/credential-id"], ["JTI=j-1"]);
        // Another audience, an expired token, another key, a tampered payload: refused.
        assert!(tokens.authenticate_token(&issuer.sign(&claims(600, None)), &["vault"]).is_none());
        assert!(tokens.authenticate_token(&issuer.sign(&claims(-1, None)), api).is_none());
        assert!(tokens.authenticate_token(&TokenIssuer::ephemeral().sign(&claims(600, None)), api).is_none());
        let good = issuer.sign(&claims(600, None));
        let parts: Vec<&str> = good.split('.').collect();
        let mut forged = claims(600, None);
        forged["sub"] = "system:serviceaccount:team-a:admin".into();
        forged["kubernetes.io"]["serviceaccount"]["name"] = "admin".into();
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(forged.to_string()), parts[2]);
        assert!(tokens.authenticate_token(&forged, api).is_none());
        // Bound to a pod: valid while that pod (that uid) exists.
        let bound = issuer.sign(&claims(600, Some(("worker", "pod-1"))));
        let user = tokens.authenticate_token(&bound, api).expect("the pod exists").0;
        assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], ["worker"]);
        assert!(tokens.authenticate_token(&issuer.sign(&claims(600, Some(("worker", "pod-0")))), api).is_none());
        // A pod being deleted keeps its token a minute, then not.
        let just_now = kubus_apimachinery::time::format_rfc3339(SystemTime::now());
        put(&cache, "pods", Some("team-a"), "worker", json!({"uid": "pod-1", "deletionTimestamp": just_now}), 4);
        assert!(tokens.authenticate_token(&bound, api).is_some());
        let long_ago =
            kubus_apimachinery::time::format_rfc3339(SystemTime::now() - std::time::Duration::from_secs(120));
        put(&cache, "pods", Some("team-a"), "worker", json!({"uid": "pod-1", "deletionTimestamp": long_ago}), 5);
        assert!(tokens.authenticate_token(&bound, api).is_none());
        // A ServiceAccount made anew under the same name is another account.
        put(&cache, "serviceaccounts", Some("team-a"), "reader", json!({"uid": "sa-2"}), 6);
        assert!(tokens.authenticate_token(&issuer.sign(&claims(600, None)), api).is_none());
    }

    #[test]
    fn the_key_id_is_the_public_key_hash_and_survives_a_reload() {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let (a, b) =
            (TokenIssuer::from_pkcs8(pkcs8.as_ref()).unwrap(), TokenIssuer::from_pkcs8(pkcs8.as_ref()).unwrap());
        assert_eq!(a.kid, b.kid);
        assert_eq!(a.kid.len(), 43, "base64url of 32 bytes");
        let t = a.sign(&json!({"sub": "x"}));
        assert_eq!(b.verify_signature::<Value>(&t).unwrap()["sub"], "x");
        assert!(TokenIssuer::from_pkcs8(b"not a key").is_err());
        // The published key verifies the tokens, as another system checking them would.
        let jwk = &a.jwks()["keys"][0];
        assert_eq!(
            (jwk["kid"].as_str(), jwk["crv"].as_str(), jwk["alg"].as_str()),
            (Some(a.kid.as_str()), Some("P-256"), Some("ES256"))
        );
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
        let (input, sig) = t.rsplit_once('.').unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .expect("the JWKS key verifies a token");
    }
}
