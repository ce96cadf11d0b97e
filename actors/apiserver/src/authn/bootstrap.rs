//! Bootstrap tokens, as upstream's bootstrap token authenticator: a token `<id>.<secret>`
//! (`[a-z0-9]{6}.[a-z0-9]{16}`) names the Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token`, whose `token-secret` must match, whose
//! `usage-bootstrap-authentication` must be "true" and whose `expiration` (if any) must be in
//! the future. The user is `system:bootstrap:<id>` in `system:bootstrappers` and the groups of
//! `auth-extra-groups` (each must start with `system:bootstrappers:`).

use super::{UserInfo, ALL_AUTHENTICATED};
use crate::cache::WatchCache;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::collections::BTreeMap;
use std::time::SystemTime;

pub const BOOTSTRAP_TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const BOOTSTRAP_USER_PREFIX: &str = "system:bootstrap:";
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// The group `kubus token create` puts its tokens in (kubeadm's default for node tokens).
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const NAMESPACE: &str = "kube-system";

/// `(id, secret)` of a string shaped as a bootstrap token.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// A bootstrap token Secret's data, decoded.
pub struct TokenSecret {
    pub id: String,
    pub secret: String,
    pub expiration: Option<SystemTime>,
    pub authentication: bool,
    pub extra_groups: Vec<String>,
}

impl TokenSecret {
    /// The token of a cached Secret (JSON), if it is a well-formed bootstrap token Secret.
    pub fn from_secret(secret: &serde_json::Value) -> Option<TokenSecret> {
        if secret["type"] != BOOTSTRAP_TOKEN_SECRET_TYPE
            || secret["metadata"]["namespace"] != NAMESPACE
            || !secret["metadata"]["deletionTimestamp"].is_null()
        {
            return None;
        }
        let data: BTreeMap<String, String> = secret["data"]
            .as_object()?
            .iter()
            .filter_map(|(k, v)| {
                let bytes = STANDARD.decode(v.as_str()?).ok()?;
                Some((k.clone(), String::from_utf8(bytes).ok()?))
            })
            .collect();
        let id = data.get("token-id")?.clone();
        let name = secret["metadata"]["name"].as_str()?;
        if name != format!("{SECRET_PREFIX}{id}") {
            return None;
        }
        let expiration = match data.get("expiration") {
            // An expiration that does not parse makes the token invalid (upstream).
            Some(e) => Some(kubus_apimachinery::time::parse_rfc3339(e)?),
            None => None,
        };
        let extra_groups: Vec<String> = data
            .get("auth-extra-groups")
            .map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Some(TokenSecret {
            secret: data.get("token-secret")?.clone(),
            expiration,
            authentication: data.get("usage-bootstrap-authentication").is_some_and(|v| v == "true"),
            extra_groups,
            id,
        })
    }

    /// Whether the token may authenticate at `now`.
    pub fn valid_for_authentication(&self, now: SystemTime) -> bool {
        parse(&format!("{}.{}", self.id, self.secret)).is_some()
            && self.authentication
            && self.expiration.is_none_or(|e| e > now)
            && self.extra_groups.iter().all(|g| g.starts_with(&format!("{BOOTSTRAPPERS_GROUP}:")))
    }
}

/// The tokens of the cache's bootstrap token Secrets that may authenticate now.
pub fn valid_tokens(cache: &WatchCache, now: SystemTime) -> Vec<TokenSecret> {
    let gr = (String::new(), "secrets".to_string());
    let (secrets, _) = cache.list(&gr, Some(NAMESPACE));
    secrets
        .iter()
        .filter(|s| s.name().starts_with(SECRET_PREFIX))
        .filter_map(|s| TokenSecret::from_secret(&s.value()))
        .filter(|t| t.valid_for_authentication(now))
        .collect()
}

/// The user of bootstrap token `token`, if the cache holds its Secret and it is valid now.
pub fn authenticate(cache: &WatchCache, token: &str) -> Option<UserInfo> {
    let (id, secret) = parse(token)?;
    let gr = (String::new(), "secrets".to_string());
    let cached = cache.get(&gr, &(NAMESPACE.to_string(), format!("{SECRET_PREFIX}{id}")))?;
    let t = TokenSecret::from_secret(&cached.value())?;
    // Every byte compared, whatever differs first: the time taken tells nothing of the secret.
    let same = t.secret.len() == secret.len()
        && t.secret.bytes().zip(secret.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same || t.id != id || !t.valid_for_authentication(SystemTime::now()) {
        return None;
    }
    let mut groups = vec![BOOTSTRAPPERS_GROUP.to_string()];
    groups.extend(t.extra_groups.iter().filter(|g| !groups.contains(g)).cloned().collect::<Vec<_>>());
    groups.push(ALL_AUTHENTICATED.to_string());
    Some(UserInfo { name: format!("{BOOTSTRAP_USER_PREFIX}{id}"), uid: String::new(), groups, extra: BTreeMap::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(data: serde_json::Value) -> serde_json::Value {
        let data: serde_json::Map<_, _> = data
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), json!(STANDARD.encode(v.as_str().unwrap()))))
            .collect();
        json!({"metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
               "type": BOOTSTRAP_TOKEN_SECRET_TYPE, "data": data})
    }

    #[test]
    fn tokens_authenticate_only_when_usable_and_current() {
        let cache = WatchCache::new(100);
        cache.replace(Vec::new(), Vec::new(), 1);
        let put = |value: serde_json::Value, rev: u64| {
            cache.apply(kubus_bus::Event {
                kind: kubus_bus::EventType::Added,
                key: kubus_bus::Key::new("", "secrets", Some("kube-system"), "bootstrap-token-abcdef"),
                revision: rev,
                value: bytes::Bytes::from(value.to_string()),
            })
        };
        put(
            secret(json!({"token-id": "abcdef", "token-secret": "0123456789abcdef",
                "usage-bootstrap-authentication": "true", "auth-extra-groups": DEFAULT_NODE_TOKEN_GROUP,
                "expiration": "2999-01-01T00:00:00Z"})),
            2,
        );
        let user = authenticate(&cache, "abcdef.0123456789abcdef").expect("a valid token");
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(user.groups, [BOOTSTRAPPERS_GROUP, DEFAULT_NODE_TOKEN_GROUP, ALL_AUTHENTICATED]);
        assert!(authenticate(&cache, "abcdef.0123456789abcdee").is_none(), "wrong secret");
        assert!(authenticate(&cache, "abcdeg.0123456789abcdef").is_none(), "no such token");
        assert!(authenticate(&cache, "abcdef.0123456789ABCDEF").is_none(), "not a token's shape");
        assert_eq!(valid_tokens(&cache, SystemTime::now()).len(), 1);
        put(
            secret(json!({"token-id": "abcdef", "token-secret": "0123456789abcdef",
                "usage-bootstrap-authentication": "true", "expiration": "2001-01-01T00:00:00Z"})),
            3,
        );
        assert!(authenticate(&cache, "abcdef.0123456789abcdef").is_none(), "expired");
        put(
            secret(json!({"token-id": "abcdef", "token-secret": "0123456789abcdef",
                "usage-bootstrap-authentication": "true", "auth-extra-groups": "system:masters"})),
            4,
        );
        assert!(authenticate(&cache, "abcdef.0123456789abcdef").is_none(), "a group outside system:bootstrappers:");
        put(secret(json!({"token-id": "abcdef", "token-secret": "0123456789abcdef"})), 5);
        assert!(authenticate(&cache, "abcdef.0123456789abcdef").is_none(), "not for authentication");
    }
}
