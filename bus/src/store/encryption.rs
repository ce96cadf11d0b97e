//! Encryption at rest (upstream's `EncryptionConfiguration`, the file of
//! `--encryption-provider-config`, parsed by the API server): the objects of the listed
//! resources are stored encrypted, in the objects stream, its archive and the history, and
//! decrypted on every read of this store. The stored form is upstream's:
//! `k8s:enc:aesgcm:v1:<key name>:` then a 12-byte random nonce and the AES-GCM ciphertext and
//! tag, the object's subject as additional data (a ciphertext moved to another key does not
//! decrypt). Writes use the first provider; reads take any configured key by its name, and
//! plain JSON when `identity` is among the providers (objects written before encryption).

use bytes::Bytes;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeSet;

const PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";

#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("key {0:?}: an AES-GCM key is 16 or 32 bytes")]
    KeySize(String),
    #[error("key name {0:?} must be non-empty, without ':'")]
    KeyName(String),
    #[error("an encrypted object's key {0:?} is not configured")]
    UnknownKey(String),
    #[error("an object did not decrypt (a wrong key, or the data was changed)")]
    Decrypt,
    #[error("an object is stored unencrypted and `identity` is not among the providers")]
    Plain,
    #[error("cannot encrypt: no randomness")]
    Random,
}

/// One AES-GCM key.
pub struct AesGcmKey {
    pub name: String,
    key: LessSafeKey,
}

impl AesGcmKey {
    pub fn new(name: &str, secret: &[u8]) -> Result<AesGcmKey, EncryptionError> {
        if name.is_empty() || name.contains(':') {
            return Err(EncryptionError::KeyName(name.to_string()));
        }
        let algorithm = match secret.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            _ => return Err(EncryptionError::KeySize(name.to_string())),
        };
        let key = UnboundKey::new(algorithm, secret).map_err(|_| EncryptionError::KeySize(name.to_string()))?;
        Ok(AesGcmKey { name: name.to_string(), key: LessSafeKey::new(key) })
    }
}

/// A provider, in the configuration's order.
pub enum Provider {
    AesGcm(Vec<AesGcmKey>),
    Identity,
}

/// What is encrypted and how.
pub struct Encryption {
    /// `resource.group` as upstream names them (`secrets`, `configmaps`, `*.apps`, `*.*`).
    resources: BTreeSet<String>,
    providers: Vec<Provider>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption").field("resources", &self.resources).finish_non_exhaustive()
    }
}

impl Encryption {
    pub fn new(resources: impl IntoIterator<Item = String>, providers: Vec<Provider>) -> Encryption {
        Encryption { resources: resources.into_iter().collect(), providers, rng: SystemRandom::new() }
    }

    /// Whether objects of `resource` in `group` ("" or "core": the core group) are encrypted.
    pub fn covers(&self, group: &str, resource: &str) -> bool {
        let group = if group == "core" { "" } else { group };
        let named = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
        self.resources.contains(&named)
            || self.resources.contains("*.*")
            || (group.is_empty() && self.resources.contains("*."))
            || self.resources.contains(&format!("*.{group}"))
    }

    fn accepts_plain(&self) -> bool {
        self.providers.iter().any(|p| matches!(p, Provider::Identity))
    }

    /// The stored form of `value` at `subject` (the first provider's).
    pub fn encrypt(&self, subject: &str, value: &[u8]) -> Result<Bytes, EncryptionError> {
        let Some(Provider::AesGcm(keys)) = self.providers.first() else { return Ok(Bytes::copy_from_slice(value)) };
        let Some(key) = keys.first() else { return Ok(Bytes::copy_from_slice(value)) };
        let mut nonce = [0u8; 12];
        self.rng.fill(&mut nonce).map_err(|_| EncryptionError::Random)?;
        let mut sealed = value.to_vec();
        key.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(subject.as_bytes()), &mut sealed)
            .map_err(|_| EncryptionError::Random)?;
        let mut out = Vec::with_capacity(PREFIX.len() + key.name.len() + 1 + 12 + sealed.len());
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(key.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out.into())
    }

    /// The object stored as `stored` at `subject`.
    pub fn decrypt(&self, subject: &str, stored: Bytes) -> Result<Bytes, EncryptionError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return if self.accepts_plain() { Ok(stored) } else { Err(EncryptionError::Plain) };
        };
        let colon = rest.iter().position(|b| *b == b':').ok_or(EncryptionError::Decrypt)?;
        let name = String::from_utf8_lossy(&rest[..colon]).into_owned();
        let sealed = &rest[colon + 1..];
        if sealed.len() < 12 + 16 {
            return Err(EncryptionError::Decrypt);
        }
        let key = self
            .providers
            .iter()
            .filter_map(|p| match p {
                Provider::AesGcm(keys) => Some(keys),
                Provider::Identity => None,
            })
            .flatten()
            .find(|k| k.name == name)
            .ok_or(EncryptionError::UnknownKey(name))?;
        let nonce = Nonce::try_assume_unique_for_key(&sealed[..12]).map_err(|_| EncryptionError::Decrypt)?;
        let mut buf = sealed[12..].to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(subject.as_bytes()), &mut buf)
            .map_err(|_| EncryptionError::Decrypt)?;
        Ok(Bytes::copy_from_slice(plain))
    }
}

/// Whether stored bytes are encrypted (what `kubus` tools show instead of their content).
pub fn is_encrypted(stored: &[u8]) -> bool {
    stored.starts_with(b"k8s:enc:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(providers: Vec<Provider>) -> Encryption {
        Encryption::new(["secrets".to_string()], providers)
    }

    #[test]
    fn objects_round_trip_and_are_bound_to_their_subject() {
        let e = enc(vec![Provider::AesGcm(vec![AesGcmKey::new("k1", &[7; 32]).unwrap()]), Provider::Identity]);
        let stored = e.encrypt("kubus.c.obj.core.secrets.ns.s", br#"{"data":{"k":"djE="}}"#).unwrap();
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:k1:") && is_encrypted(&stored));
        assert!(!stored.windows(4).any(|w| w == b"djE="), "the plain text is in the stored form");
        assert_eq!(
            &e.decrypt("kubus.c.obj.core.secrets.ns.s", stored.clone()).unwrap()[..],
            br#"{"data":{"k":"djE="}}"#
        );
        assert!(matches!(
            e.decrypt("kubus.c.obj.core.secrets.ns.other", stored.clone()),
            Err(EncryptionError::Decrypt)
        ));
        // Plain objects (from before encryption) read while identity is a provider.
        assert_eq!(&e.decrypt("x", Bytes::from_static(b"{}")).unwrap()[..], b"{}");
        let strict = enc(vec![Provider::AesGcm(vec![AesGcmKey::new("k2", &[8; 16]).unwrap()])]);
        assert!(matches!(strict.decrypt("x", Bytes::from_static(b"{}")), Err(EncryptionError::Plain)));
        assert!(matches!(strict.decrypt("kubus.c.obj.core.secrets.ns.s", stored), Err(EncryptionError::UnknownKey(_))));
        assert!(e.covers("", "secrets") && e.covers("core", "secrets") && !e.covers("", "configmaps"));
        assert!(AesGcmKey::new("k", &[0; 20]).is_err());
    }
}
