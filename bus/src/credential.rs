//! What a client presents with each API request over NATS, so the API server authenticates it
//! as it does an HTTPS request: NATS carries no identity a responder could trust (one account
//! does not tell a subscriber who published), so the credential travels in the message as an
//! `Authorization: Bearer` header.
//!
//! Two kinds of bearer token:
//! - a token the cluster issued (a ServiceAccount's), sent as it is;
//! - a **certificate assertion**: a short-lived ES256 JWS signed with the key of a client
//!   certificate the cluster CA issued, the certificate in its `x5c` header. The API server checks
//!   the certificate as it checks an HTTPS client's (CN the user, O the groups), then the
//!   signature, audience and expiry. Nodes and components hold certificates, not tokens; the
//!   assertion proves they hold the key without sending it, and expires within minutes.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The start of a P-256 public key's SubjectPublicKeyInfo (algorithm and curve, then the BIT
/// STRING header); the 65-byte uncompressed point follows.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A compact JWS (ES256) of `claims` under `header` (already base64url-encoded), signed with
/// `key`: the ServiceAccount tokens the API server issues and the assertions clients make.
pub fn sign_jws(
    key: &EcdsaKeyPair,
    rng: &SystemRandom,
    header: &str,
    claims: &serde_json::Value,
) -> Result<String, ring::error::Unspecified> {
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = key.sign(rng, signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
}

/// A compact JWS taken apart: its header and payload decoded, its signature still to check
/// ([`Jws::signed_by`]), so a caller can refuse by the header before paying for ECDSA.
pub struct Jws<'a> {
    pub header: serde_json::Value,
    pub payload: Vec<u8>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a> Jws<'a> {
    /// None unless `token` is three base64url parts with a JSON header.
    pub fn parse(token: &'a str) -> Option<Jws<'a>> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        if payload.contains('.') {
            return None;
        }
        Some(Jws {
            header: serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?,
            payload: URL_SAFE_NO_PAD.decode(payload).ok()?,
            signing_input,
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    /// Whether the header says ES256 and the signature verifies under the uncompressed P-256
    /// point `public`.
    pub fn signed_by(&self, public: &[u8]) -> bool {
        use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
        self.header["alg"] == "ES256"
            && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
                .verify(self.signing_input.as_bytes(), &self.signature)
                .is_ok()
    }
}

/// The audience of a cluster's certificate assertions: an assertion made for one cluster is
/// refused by another's API servers.
pub fn audience(cluster: &str) -> String {
    format!("kubus-nats:{cluster}")
}

/// How long an assertion is valid; the API server refuses a longer one ([`MAX_LIFETIME`]).
pub const LIFETIME: Duration = Duration::from_secs(600);
/// The longest validity an API server accepts.
pub const MAX_LIFETIME: Duration = Duration::from_secs(900);
/// A new assertion is signed once the current one is this old: requests never carry one about
/// to expire, and signing stays rare (one per client every few minutes).
const RESIGN_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the client certificate is not PEM")]
    Certificate,
    #[error("the client key is not a PKCS#8 P-256 key (Kubus issues those; `openssl pkcs8 -topk8 -nocrypt` converts)")]
    Key,
    #[error("the client certificate and key do not belong together")]
    Mismatch,
    #[error("cannot sign: {0}")]
    Sign(&'static str),
}

/// A caller's credential (cheap to clone; [`Credential::None`] presents nothing).
#[derive(Clone, Default)]
pub enum Credential {
    /// Nothing: only an API server without TLS (development) takes such requests.
    #[default]
    None,
    /// A bearer token the cluster issued, kept as its header value (`Bearer <token>`).
    Token(Arc<str>),
    /// A client certificate, presented by assertions signed with its key.
    Certificate(Arc<CertificateAssertion>),
    /// A bearer token its holder renews before it expires (a controller's ServiceAccount token).
    Renewed(Arc<RenewedToken>),
}

/// Credentials never reach a log line.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::Certificate(a) => write!(f, "Certificate({:?})", a.audience),
            Credential::Renewed(_) => f.write_str("Renewed(<redacted>)"),
        }
    }
}

impl Credential {
    /// A client certificate and its key (PEM), for the API servers of `cluster`.
    pub fn certificate(cert_pem: &str, key_pem: &str, cluster: &str) -> Result<Credential, CredentialError> {
        Ok(Credential::Certificate(Arc::new(CertificateAssertion::new(cert_pem, key_pem, cluster)?)))
    }

    pub fn token(token: &str) -> Credential {
        Credential::Token(format!("Bearer {}", token.trim()).into())
    }

    /// The `Authorization` header value to send, if any.
    pub fn authorization(&self) -> Result<Option<Arc<str>>, CredentialError> {
        match self {
            Credential::None => Ok(None),
            Credential::Token(value) => Ok(Some(value.clone())),
            Credential::Certificate(a) => Ok(Some(a.current()?)),
            Credential::Renewed(t) => Ok(t.current()),
        }
    }

    /// Tells the credential's holder the API server refused it (401), so a renewed token is
    /// renewed now rather than at its due time (its ServiceAccount may have been replaced).
    pub fn refused(&self) {
        if let Credential::Renewed(t) = self {
            t.stale.notify_one();
        }
    }
}

/// A bearer token replaced by its holder (`set`) before it expires; requests take the latest.
#[derive(Default)]
pub struct RenewedToken {
    current: std::sync::RwLock<Option<Arc<str>>>,
    /// Signalled when the API server refused the token.
    pub stale: tokio::sync::Notify,
}

impl RenewedToken {
    /// From now on requests present `token`.
    pub fn set(&self, token: &str) {
        let value: Arc<str> = format!("Bearer {}", token.trim()).into();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(value);
    }

    /// The header value to send (None until the first token is set).
    pub fn current(&self) -> Option<Arc<str>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Signs assertions for one client certificate.
pub struct CertificateAssertion {
    /// The JWS header, encoded once: `{"alg":"ES256","typ":"JWT","x5c":[<certificate>]}`.
    header: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    audience: String,
    /// The header value in use (`Bearer <assertion>`) and when it was signed: every request
    /// sends it, so it is made once per signature.
    current: Mutex<Option<(Arc<str>, SystemTime)>>,
}

impl CertificateAssertion {
    pub fn new(cert_pem: &str, key_pem: &str, cluster: &str) -> Result<CertificateAssertion, CredentialError> {
        let chain: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| CredentialError::Certificate)?;
        if chain.is_empty() {
            return Err(CredentialError::Certificate);
        }
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| CredentialError::Key)?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.secret_pkcs8_der(), &rng)
            .map_err(|_| CredentialError::Key)?;
        // The leaf's public key ends its SubjectPublicKeyInfo (an uncompressed P-256 point).
        use ring::signature::KeyPair as _;
        let public = key.public_key().as_ref();
        if !chain[0].as_ref().windows(public.len()).any(|w| w == public) {
            return Err(CredentialError::Mismatch);
        }
        let x5c: Vec<String> = chain.iter().map(|c| STANDARD.encode(c.as_ref())).collect();
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": x5c});
        Ok(CertificateAssertion {
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            key,
            rng,
            audience: audience(cluster),
            current: Mutex::new(None),
        })
    }

    /// `Bearer <assertion>` to send now: the current one, or a new one once it is
    /// [`RESIGN_AFTER`] old.
    pub fn current(&self) -> Result<Arc<str>, CredentialError> {
        let now = SystemTime::now();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, signed)) = current.as_ref() {
            if now.duration_since(*signed).is_ok_and(|age| age < RESIGN_AFTER) {
                return Ok(token.clone());
            }
        }
        let iat =
            now.duration_since(UNIX_EPOCH).map_err(|_| CredentialError::Sign("the clock is before 1970"))?.as_secs();
        let claims = serde_json::json!({"aud": self.audience, "iat": iat, "exp": iat + LIFETIME.as_secs()});
        let token =
            sign_jws(&self.key, &self.rng, &self.header, &claims).map_err(|_| CredentialError::Sign("ECDSA failed"))?;
        let value: Arc<str> = format!("Bearer {token}").into();
        *current = Some((value.clone(), now));
        Ok(value)
    }
}
