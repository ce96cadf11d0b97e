//! Who a request is from: upstream's `user.Info` ([`UserInfo`]), set once per request by
//! [`authenticate`] from what the transport presented, then replaced by an impersonated user
//! when the request asks for one and may ([`impersonation`]).

pub mod assertion;
pub mod bootstrap;
pub mod impersonation;

use kubus_apimachinery::StatusError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Upstream's well-known group names (k8s.io/apiserver/pkg/authentication/user).
pub const SYSTEM_PRIVILEGED_GROUP: &str = "system:masters";
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";
pub const NODES_GROUP: &str = "system:nodes";
pub const KUBE_PROXY: &str = "system:kube-proxy";
pub const KUBE_CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
pub const KUBE_SCHEDULER: &str = "system:kube-scheduler";
/// ServiceAccount users are `system:serviceaccount:<namespace>:<name>`.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";

/// The identity a request runs as (upstream's user.Info).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The user as authentication.k8s.io/v1 UserInfo JSON (SelfSubjectReview, SubjectAccessReview).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"username": self.name});
        if !self.uid.is_empty() {
            v["uid"] = self.uid.clone().into();
        }
        if !self.groups.is_empty() {
            v["groups"] = serde_json::json!(self.groups);
        }
        if !self.extra.is_empty() {
            v["extra"] = serde_json::json!(self.extra);
        }
        v
    }
}

/// `(namespace, name)` of a ServiceAccount user name.
pub fn service_account_of(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// The groups every ServiceAccount of `namespace` is in.
pub fn service_account_groups(namespace: &str) -> [String; 2] {
    [SERVICE_ACCOUNTS_GROUP.to_string(), format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}")]
}

/// How requests on a connection are authenticated, by the way they came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// HTTPS: what the client certificate established (if any).
    Tls(crate::tls::PeerAuth),
    /// A cluster without TLS (`--insecure-http`, development, loopback only): its HTTP port
    /// and its NATS service serve every request as the local administrator, as upstream's old
    /// insecure port did. (Without a CA there is no credential to check.)
    Unsecured,
    /// An API request over NATS: it presents a bearer token in its `Authorization` header (a
    /// ServiceAccount token or a certificate assertion), as an HTTPS request without a client
    /// certificate does.
    Nats,
}

/// What a request presented to prove who it is, and who it asks to act as: the channel it
/// came by, and the `Authorization` and `Impersonate-*` headers (names lowercased).
#[derive(Clone)]
pub struct Presented {
    pub channel: Channel,
    pub headers: Vec<(String, String)>,
    /// Over NATS: where the answer goes (the reply subject, a watch's `streamTo`).
    pub inboxes: Vec<String>,
}

/// Credentials never reach a log line: the Authorization value shows only its scheme.
impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(n, v)| match n.as_str() {
                "authorization" => (n.as_str(), format!("{} <redacted>", v.split(' ').next().unwrap_or_default())),
                _ => (n.as_str(), v.clone()),
            })
            .collect();
        f.debug_struct("Presented").field("channel", &self.channel).field("headers", &shown).finish()
    }
}

impl Presented {
    /// What came by `channel` with these headers; keeps those authentication and
    /// impersonation read.
    pub fn from_headers<'a>(channel: Channel, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Presented {
        let headers = headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .filter(|(n, _)| n == "authorization" || n.starts_with("impersonate-"))
            .collect();
        Presented { channel, headers, inboxes: Vec::new() }
    }

    /// This request, answered on `inboxes` (over NATS).
    pub fn answered_on(mut self, inboxes: impl IntoIterator<Item = String>) -> Presented {
        self.inboxes = inboxes.into_iter().collect();
        self
    }

    /// A request of the development administrator (tests of a cluster without TLS).
    pub fn unsecured() -> Presented {
        Presented { channel: Channel::Unsecured, headers: Vec::new(), inboxes: Vec::new() }
    }

    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The local administrator, as the admin kubeconfig kubeadm writes identifies it.
pub fn cluster_admin() -> UserInfo {
    UserInfo::new("kubernetes-admin", &[SYSTEM_PRIVILEGED_GROUP, ALL_AUTHENTICATED])
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Paths anyone may read without credentials: upstream's system:public-info-viewer role
/// grants exactly these. Load balancers and probes check health, and clients read the
/// version before they log in.
pub const PUBLIC_INFO_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];

/// Whether anonymous requests may reach `path` (the public-info paths and the health checks
/// below them) rather than be answered 401.
pub fn is_public_info(path: &str) -> bool {
    PUBLIC_INFO_PATHS.contains(&path) || ["/healthz/", "/livez/", "/readyz/"].iter().any(|p| path.starts_with(p))
}

/// The user a request without credentials runs as, where it is let in at all.
pub fn anonymous() -> UserInfo {
    UserInfo::new(ANONYMOUS, &[ALL_UNAUTHENTICATED])
}

/// Checks bearer tokens (the ServiceAccount tokens the cluster issued): the user a token
/// names and which of `audiences` it is for, if it is valid for at least one.
pub trait TokenAuthenticator: Send + Sync {
    fn authenticate_token(&self, token: &str, audiences: &[&str]) -> Option<(UserInfo, Vec<String>)>;
}

/// The audiences a token must be for to reach this API (upstream's `--api-audiences`, by
/// default the issuer).
pub const API_AUDIENCES: &[&str] = &[crate::token::ISSUER];

/// `authentication_attempts` by result, looked up once (every HTTPS request counts): an
/// identity (anonymous included), no acceptable credential, a credential that failed.
static AUTHENTICATED: std::sync::LazyLock<prometheus::IntCounter> =
    std::sync::LazyLock::new(|| crate::metrics::AUTHENTICATION_ATTEMPTS.with_label_values(&["success"]));
static NOT_AUTHENTICATED: std::sync::LazyLock<prometheus::IntCounter> =
    std::sync::LazyLock::new(|| crate::metrics::AUTHENTICATION_ATTEMPTS.with_label_values(&["failure"]));
static AUTHENTICATION_ERRORS: std::sync::LazyLock<prometheus::IntCounter> =
    std::sync::LazyLock::new(|| crate::metrics::AUTHENTICATION_ATTEMPTS.with_label_values(&["error"]));

/// Authenticates a request: the one place a request's identity comes from.
///
/// Over HTTPS, as upstream's authenticator chain: a client certificate the cluster CA issued
/// names the user (CN) and groups (O); else a bearer token must be one `tokens` accepts; a
/// certificate that does not verify or a token that fails is refused (a valid token still
/// wins over a bad certificate). A request with no credential (an `Authorization` that is not
/// a bearer token counts as none) is anonymous, and only the public-info paths take anonymous
/// requests: anything else is 401 (`path` decides). Over NATS the same holds with the bearer
/// token alone (`tokens` then also takes certificate assertions). A cluster without TLS
/// (`--insecure-http`) serves every request as the local administrator. Refusals are a bare
/// 401 "Unauthorized": nothing in it helps a caller guess why.
pub fn authenticate(
    presented: &Presented,
    path: &str,
    tokens: &dyn TokenAuthenticator,
) -> Result<UserInfo, StatusError> {
    use crate::tls::PeerAuth;
    let peer = match &presented.channel {
        Channel::Unsecured => return Ok(cluster_admin()),
        Channel::Nats => &PeerAuth::None,
        Channel::Tls(peer) => peer,
    };
    let (counter, result) = match peer {
        PeerAuth::Verified(user) => (&AUTHENTICATED, Ok(user.clone())),
        _ => match presented.values("authorization").next().and_then(bearer) {
            Some(token) => match tokens.authenticate_token(token, API_AUDIENCES) {
                Some((user, _)) => (&AUTHENTICATED, Ok(user)),
                None => (&AUTHENTICATION_ERRORS, Err(StatusError::unauthorized())),
            },
            None if *peer == PeerAuth::Invalid => (&AUTHENTICATION_ERRORS, Err(StatusError::unauthorized())),
            None if is_public_info(path) => (&AUTHENTICATED, Ok(anonymous())),
            None => (&NOT_AUTHENTICATED, Err(StatusError::unauthorized())),
        },
    };
    counter.inc();
    result
}

/// A node's answers over NATS go only to its own inbox prefix
/// ([`kubus_bus::nats_users::node_inbox_prefix`]), the one its NATS user may read: whoever
/// holds a node's credential but not its NATS login gets nothing back. Other users' answers go
/// to any inbox (their NATS users are the administrator's or their own tools').
pub fn check_inboxes(user: &UserInfo, presented: &Presented, cluster: &str) -> Result<(), StatusError> {
    let Some(node) = user.name.strip_prefix(NODE_USER_PREFIX).filter(|_| user.in_group(NODES_GROUP)) else {
        return Ok(());
    };
    let prefix = format!("{}.", kubus_bus::nats_users::node_inbox_prefix(cluster, node));
    match presented.inboxes.iter().find(|inbox| !inbox.starts_with(&prefix)) {
        None => Ok(()),
        Some(_) => {
            crate::metrics::NATS_INBOX_REFUSALS.inc();
            Err(StatusError::forbidden(
                "",
                "",
                "",
                format!("node {node:?} is answered only on its own inbox ({prefix}...): connect with its NATS login"),
            ))
        }
    }
}

/// The user name prefix of nodes (`system:node:<name>`).
pub const NODE_USER_PREFIX: &str = "system:node:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_credentials_never_print() {
        let p = Presented::from_headers(
            Channel::Nats,
            [
                ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.secret.sig"),
                ("Impersonate-User", "jane"),
                ("Accept", "application/json"),
            ],
        );
        let shown = format!("{p:?}");
        assert!(!shown.contains("eyJ") && !shown.contains("secret"), "{shown}");
        assert!(shown.contains("Bearer <redacted>") && shown.contains("jane"), "{shown}");
        assert!(!shown.contains("accept"), "only what authentication reads is kept: {shown}");
    }

    /// Accepts the one token "good" as ServiceAccount default/app.
    struct OneToken;
    impl TokenAuthenticator for OneToken {
        fn authenticate_token(&self, token: &str, audiences: &[&str]) -> Option<(UserInfo, Vec<String>)> {
            let user = UserInfo::new("system:serviceaccount:default:app", &[]);
            (token == "good" && audiences == API_AUDIENCES).then(|| (user, vec![API_AUDIENCES[0].to_string()]))
        }
    }

    fn authenticate(presented: &Presented, path: &str) -> Result<UserInfo, StatusError> {
        super::authenticate(presented, path, &OneToken)
    }

    #[test]
    fn each_channel_authenticates_as_upstream_would() {
        use crate::tls::PeerAuth;
        let tls = |peer: PeerAuth, headers: &[(&str, &str)]| {
            Presented::from_headers(Channel::Tls(peer), headers.iter().copied())
        };
        let jane = UserInfo::new("jane", &["dev", ALL_AUTHENTICATED]);
        assert_eq!(authenticate(&tls(PeerAuth::Verified(jane.clone()), &[]), "/api/v1/pods"), Ok(jane.clone()));
        // A verified certificate wins over a token, as upstream's union tries x509 first.
        let with_token = tls(PeerAuth::Verified(jane.clone()), &[("Authorization", "Bearer x")]);
        assert_eq!(authenticate(&with_token, "/api"), Ok(jane));
        // No credential: anonymous on the public-info paths only.
        for path in ["/healthz", "/livez", "/readyz", "/version", "/readyz/ping"] {
            assert_eq!(authenticate(&tls(PeerAuth::None, &[]), path), Ok(anonymous()), "{path}");
        }
        for path in ["/", "/api", "/metrics", "/versions", "/healthzx", "/openapi/v2"] {
            assert_eq!(authenticate(&tls(PeerAuth::None, &[]), path).unwrap_err().code, 401, "{path}");
        }
        // A bad certificate or an unknown token is refused even where anonymous is let in, and
        // the refusal says nothing more than upstream's.
        let refused = authenticate(&tls(PeerAuth::Invalid, &[]), "/version").unwrap_err();
        assert_eq!((refused.code, refused.reason, refused.message.as_str()), (401, "Unauthorized", "Unauthorized"));
        assert!(refused.details().is_none());
        let token = tls(PeerAuth::None, &[("Authorization", "Bearer not-a-token")]);
        assert_eq!(authenticate(&token, "/version").unwrap_err().code, 401);
        for good in ["Bearer good", "bearer  good ", "BEARER good"] {
            let token = tls(PeerAuth::None, &[("Authorization", good)]);
            assert_eq!(authenticate(&token, "/api").unwrap().name, "system:serviceaccount:default:app", "{good}");
        }
        // What is not a bearer token is no credential: anonymous, as upstream takes it.
        for not_bearer in ["Basic good", "Bearer", "Bearer ", "good"] {
            let p = tls(PeerAuth::None, &[("Authorization", not_bearer)]);
            assert_eq!(authenticate(&p, "/version"), Ok(anonymous()), "{not_bearer}");
            assert_eq!(authenticate(&p, "/api").unwrap_err().code, 401, "{not_bearer}");
        }
        // A good token wins over a bad certificate; a bad certificate alone is refused.
        let both = tls(PeerAuth::Invalid, &[("Authorization", "Bearer good")]);
        assert_eq!(authenticate(&both, "/api").unwrap().name, "system:serviceaccount:default:app");
        // Over NATS, the bearer token alone: nothing presented is anonymous.
        let nats = |headers: &[(&str, &str)]| Presented::from_headers(Channel::Nats, headers.iter().copied());
        assert_eq!(authenticate(&nats(&[]), "/api").unwrap_err().code, 401);
        assert_eq!(authenticate(&nats(&[]), "/version"), Ok(anonymous()));
        assert_eq!(
            authenticate(&nats(&[("Authorization", "Bearer good")]), "/api").unwrap().name,
            "system:serviceaccount:default:app"
        );
        assert_eq!(authenticate(&nats(&[("Authorization", "Bearer bad")]), "/version").unwrap_err().code, 401);
        // A cluster without TLS serves everyone as the administrator.
        assert_eq!(authenticate(&Presented::unsecured(), "/api"), Ok(cluster_admin()));
    }
}
