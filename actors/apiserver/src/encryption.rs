//! `--encryption-provider-config`: upstream's `EncryptionConfiguration`
//! (`apiserver.config.k8s.io/v1`), read into the store's encryption at rest
//! ([`kubus_bus::store::encryption`]). Kubus takes the `aesgcm` and `identity` providers, for one
//! `resources` entry; anything else is refused by name rather than stored in the clear.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kubus_bus::store::encryption::{AesGcmKey, Encryption, Provider};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum EncryptionConfigError {
    #[error("cannot read the encryption configuration {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the encryption configuration {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
struct ResourceConfig {
    resources: Vec<String>,
    providers: Vec<serde_yaml::Mapping>,
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct Key {
    name: String,
    secret: String,
}

/// The store's encryption of the configuration in `text` (`path` names it in errors).
pub fn parse(text: &str, path: &str) -> Result<Encryption, EncryptionConfigError> {
    let invalid = |reason: String| EncryptionConfigError::Invalid { path: path.to_string(), reason };
    let config: Config = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if config.kind != "EncryptionConfiguration"
        || !matches!(config.api_version.as_str(), "apiserver.config.k8s.io/v1" | "apiserver.config.k8s.io/v1beta1")
    {
        return Err(invalid(format!(
            "kind {:?} and apiVersion {:?} (want EncryptionConfiguration, apiserver.config.k8s.io/v1)",
            config.kind, config.api_version
        )));
    }
    let [entry] = <[ResourceConfig; 1]>::try_from(config.resources)
        .map_err(|r| invalid(format!("Kubus takes one resources entry yet, not {}", r.len())))?;
    if entry.resources.is_empty() || entry.providers.is_empty() {
        return Err(invalid("an entry needs resources and providers".into()));
    }
    let mut providers = Vec::new();
    for p in entry.providers {
        let (name, value) = p.iter().next().ok_or_else(|| invalid("an empty provider".into()))?;
        match name.as_str() {
            Some("identity") => providers.push(Provider::Identity),
            Some("aesgcm") => {
                let keys: Keys = serde_yaml::from_value(value.clone()).map_err(|e| invalid(format!("aesgcm: {e}")))?;
                if keys.keys.is_empty() {
                    return Err(invalid("aesgcm needs at least one key".into()));
                }
                let keys = keys
                    .keys
                    .iter()
                    .map(|k| {
                        let secret = STANDARD
                            .decode(k.secret.trim())
                            .map_err(|_| invalid(format!("key {:?}: the secret is not base64", k.name)))?;
                        AesGcmKey::new(&k.name, &secret).map_err(|e| invalid(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                providers.push(Provider::AesGcm(keys));
            }
            other => {
                return Err(invalid(format!(
                    "provider {:?} is not supported by Kubus yet (aesgcm and identity are)",
                    other.unwrap_or_default()
                )))
            }
        }
    }
    Ok(Encryption::new(entry.resources, providers))
}

pub fn read(path: &Path) -> Result<Encryption, EncryptionConfigError> {
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|source| EncryptionConfigError::Read { path: shown.clone(), source })?;
    parse(&text, &shown)
}

#[cfg(test)]
mod tests {
    #[test]
    fn upstream_files_are_read_and_unknown_providers_refused() {
        let good = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key1\n        secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n  - identity: {}\n";
        let e = super::parse(good, "f").unwrap();
        assert!(e.covers("", "secrets") && !e.covers("", "configmaps"));
        let cbc = good.replace("aesgcm", "aescbc");
        assert!(super::parse(&cbc, "f").unwrap_err().to_string().contains("\"aescbc\" is not supported"));
        let short = good.replace("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "c2hvcnQ=");
        assert!(super::parse(&short, "f").is_err());
        assert!(super::parse("apiVersion: v1\nkind: ConfigMap\n", "f").is_err());
    }
}
