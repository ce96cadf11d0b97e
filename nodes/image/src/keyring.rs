//! Registry credentials from a pod's image pull secrets (`kubernetes.io/dockerconfigjson` and
//! the legacy `kubernetes.io/dockercfg`), matched to an image as upstream's credential keyring
//! (`BasicDockerKeyring`) does: a key is a host (globs such as `*.example.com` allowed, port
//! exact) with an optional path that must prefix the image's repository; the most specific
//! keys come first, and `index.docker.io` stands for Docker Hub images.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use crate::RegistryAuthConfig;

/// The key Docker Hub's credentials are stored under.
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// Why a pull secret's data could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("invalid docker config: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid auth of {0}: not base64 of user:password")]
    Auth(String),
}

/// One registry's entry of a docker config.
#[derive(Deserialize, Default)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// base64 of `user:password`; wins over the two fields (as docker and upstream read it).
    #[serde(default)]
    auth: String,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

/// Credentials by registry key, in the order upstream consults them.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    /// (key, credentials), sorted by key in reverse order like upstream's index.
    entries: Vec<(String, RegistryAuthConfig)>,
}

impl Keyring {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the `.dockerconfigjson` of a secret (`{"auths": {...}}`).
    pub fn add_docker_config_json(&mut self, data: &[u8]) -> Result<(), KeyringError> {
        let cfg: ConfigJson = serde_json::from_slice(data)?;
        self.add(cfg.auths)
    }

    /// Adds the `.dockercfg` of a secret (the entries without the `auths` wrapper).
    pub fn add_dockercfg(&mut self, data: &[u8]) -> Result<(), KeyringError> {
        let cfg: BTreeMap<String, Entry> = serde_json::from_slice(data)?;
        self.add(cfg)
    }

    fn add(&mut self, entries: BTreeMap<String, Entry>) -> Result<(), KeyringError> {
        for (location, e) in entries {
            let (mut username, mut password) = (e.username, e.password);
            if !e.auth.is_empty() {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(e.auth.trim())
                    .map_err(|_| KeyringError::Auth(location.clone()))?;
                let text = String::from_utf8(decoded).map_err(|_| KeyringError::Auth(location.clone()))?;
                let (u, p) = text.split_once(':').ok_or_else(|| KeyringError::Auth(location.clone()))?;
                (username, password) = (u.to_string(), p.to_string());
            }
            self.entries.push((key_of(&location), RegistryAuthConfig { username, password }));
        }
        // Reverse order puts `host/longer/path` before `host/path` before `host`.
        self.entries.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(())
    }

    /// The credentials for an image (`registry/repository`, no tag), most specific first.
    pub fn lookup(&self, registry: &str, repository: &str) -> Vec<RegistryAuthConfig> {
        let image = format!("{registry}/{repository}");
        let found: Vec<RegistryAuthConfig> =
            self.entries.iter().filter(|(k, _)| urls_match(k, &image)).map(|(_, c)| c.clone()).collect();
        if !found.is_empty() {
            return found;
        }
        if matches!(registry, "docker.io" | "index.docker.io" | "registry-1.docker.io") {
            return self.entries.iter().filter(|(k, _)| k == DEFAULT_REGISTRY_HOST).map(|(_, c)| c.clone()).collect();
        }
        vec![]
    }
}

/// A config location as a key: no scheme, `/v1/` or `/v2/` prefixes dropped, no trailing `/`.
fn key_of(location: &str) -> String {
    let rest = location.strip_prefix("https://").or_else(|| location.strip_prefix("http://")).unwrap_or(location);
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, String::new()));
    let path = path.strip_prefix("/v2").or_else(|| path.strip_prefix("/v1")).unwrap_or(&path);
    let path = path.trim_end_matches('/');
    format!("{host}{path}")
}

/// upstream's `URLsMatchStr`: host labels match with globs, ports exactly, and the key's path
/// is a prefix of the image's.
fn urls_match(key: &str, image: &str) -> bool {
    let split = |s: &str| -> (String, String) {
        let (host, path) = s.split_once('/').map(|(h, p)| (h, p.to_string())).unwrap_or((s, String::new()));
        (host.to_ascii_lowercase(), path)
    };
    let ((key_host, key_path), (image_host, image_path)) = (split(key), split(image));
    let port =
        |h: &str| h.rsplit_once(':').map(|(h, p)| (h.to_string(), p.to_string())).unwrap_or((h.into(), "".into()));
    let ((kh, kp), (ih, ip)) = (port(&key_host), port(&image_host));
    if kp != ip {
        return false;
    }
    let (kl, il): (Vec<&str>, Vec<&str>) = (kh.split('.').collect(), ih.split('.').collect());
    if kl.len() != il.len() || !kl.iter().zip(&il).all(|(k, i)| glob(k, i)) {
        return false;
    }
    // Path prefix by whole segments ("team" matches "team/app", not "teamwork/app").
    key_path.is_empty() || image_path == key_path || image_path.starts_with(&format!("{key_path}/"))
}

/// `*` in a host label matches any run of characters (Go's path.Match on one label).
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((prefix, rest)) => {
            let Some(s) = s.strip_prefix(prefix) else { return false };
            (0..=s.len()).any(|i| s.is_char_boundary(i) && glob(rest, &s[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(v: Vec<RegistryAuthConfig>) -> Vec<String> {
        v.into_iter().map(|c| c.username).collect()
    }

    #[test]
    fn docker_config_json_matching() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw1");
        let json = format!(
            r#"{{"auths": {{
                "https://registry.example.com:5000/v2/": {{"auth": "{auth}"}},
                "registry.example.com:5000/team": {{"username": "bob", "password": "pw2"}},
                "*.corp.example": {{"username": "carol", "password": "pw3"}},
                "https://index.docker.io/v1/": {{"username": "dave", "password": "pw4"}}}}}}"#
        );
        let mut k = Keyring::default();
        k.add_docker_config_json(json.as_bytes()).unwrap();
        // The more specific path first, then the host.
        assert_eq!(users(k.lookup("registry.example.com:5000", "team/app")), ["bob", "alice"]);
        assert_eq!(users(k.lookup("registry.example.com:5000", "teamwork/app")), ["alice"]);
        assert_eq!(k.lookup("registry.example.com:5000", "x")[0].password, "pw1");
        // Ports must match; globs span one label.
        assert!(k.lookup("registry.example.com", "team/app").is_empty());
        assert_eq!(users(k.lookup("eu.corp.example", "a")), ["carol"]);
        assert!(k.lookup("a.eu.corp.example", "a").is_empty());
        // Docker Hub images use index.docker.io's credentials.
        assert_eq!(users(k.lookup("docker.io", "library/busybox")), ["dave"]);
    }

    #[test]
    fn legacy_dockercfg_and_bad_data() {
        let mut k = Keyring::default();
        k.add_dockercfg(br#"{"127.0.0.1:5000": {"username": "u", "password": "p", "email": "e@x"}}"#).unwrap();
        assert_eq!(users(k.lookup("127.0.0.1:5000", "team/app")), ["u"]);
        assert!(k.add_docker_config_json(b"not json").is_err());
        assert!(k.add_docker_config_json(br#"{"auths": {"h": {"auth": "bm8tY29sb24="}}}"#).is_err(), "no colon");
    }
}
