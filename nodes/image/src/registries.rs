//! Registry mirrors and credentials from a k3s-style `registries.yaml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors of loading a registries file.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing registries config: {0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("mirror endpoint {endpoint:?} of {registry}: {reason}")]
    Endpoint { registry: String, endpoint: String, reason: &'static str },
}

/// Mirrors and per-host settings, as in k3s:
/// `mirrors: {docker.io: {endpoint: [http://127.0.0.1:5000]}}`,
/// `configs: {"host:port": {auth: {username, password}, tls: {insecure_skip_verify, ca_file}}}`.
/// A mirror key `"*"` applies to every registry without its own entry.
#[derive(Clone, Debug, Default)]
pub struct Registries {
    mirrors: BTreeMap<String, Vec<Endpoint>>,
    configs: BTreeMap<String, RegistryConfig>,
}

/// Settings of one registry host.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RegistryConfig {
    #[serde(default)]
    pub auth: Option<RegistryAuthConfig>,
    #[serde(default)]
    pub tls: Option<RegistryTlsConfig>,
}

#[derive(Clone, Deserialize)]
pub struct RegistryAuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

impl std::fmt::Debug for RegistryAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuthConfig").field("username", &self.username).finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct RegistryTlsConfig {
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Where one pull attempt goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host[:port]` as the distribution API sees it.
    pub host: String,
    pub plain_http: bool,
    pub mirror: bool,
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    mirrors: BTreeMap<String, MirrorFile>,
    #[serde(default)]
    configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Deserialize)]
struct MirrorFile {
    #[serde(default)]
    endpoint: Vec<String>,
}

impl Registries {
    /// Reads `path`; a missing file means no mirrors and no credentials (as k3s).
    pub fn load(path: &Path) -> Result<Self, RegistriesError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_yaml(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(RegistriesError::Read { path: path.to_path_buf(), source }),
        }
    }

    pub fn from_yaml(text: &str) -> Result<Self, RegistriesError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let file: File = serde_yaml::from_str(text)?;
        let mut mirrors = BTreeMap::new();
        for (registry, m) in file.mirrors {
            let endpoints = m
                .endpoint
                .iter()
                .map(|e| {
                    parse_endpoint(e).map_err(|reason| RegistriesError::Endpoint {
                        registry: registry.clone(),
                        endpoint: e.clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            mirrors.insert(registry, endpoints);
        }
        Ok(Self { mirrors, configs: file.configs })
    }

    /// Endpoints to try for `registry`, in order: its mirrors, then the registry itself.
    pub(crate) fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out = self.mirrors.get(registry).or_else(|| self.mirrors.get("*")).cloned().unwrap_or_default();
        let upstream = Endpoint { host: registry.to_string(), plain_http: is_loopback(registry), mirror: false };
        if !out.iter().any(|e| e.host == upstream.host) {
            out.push(upstream);
        }
        out
    }

    pub(crate) fn config(&self, host: &str) -> Option<&RegistryConfig> {
        self.configs.get(host).or_else(|| {
            if host == "docker.io" {
                self.configs.get("registry-1.docker.io")
            } else {
                None
            }
        })
    }
}

fn parse_endpoint(s: &str) -> Result<Endpoint, &'static str> {
    let (plain_http, rest) = if let Some(r) = s.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("https://") {
        (false, r)
    } else if s.contains("://") {
        return Err("only http:// and https:// endpoints are supported");
    } else {
        (false, s)
    };
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, p.trim_end_matches('/'))).unwrap_or((rest, ""));
    if host.is_empty() {
        return Err("no host");
    }
    // The distribution API lives at /v2 of the host; k3s' path rewriting is not supported.
    if !path.is_empty() && path != "v2" {
        return Err("endpoints with a path other than /v2 are not supported");
    }
    Ok(Endpoint { host: host.to_string(), plain_http, mirror: true })
}

/// Loopback registries are spoken to over plain HTTP, as docker does for `localhost`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map(|(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host }).unwrap_or(host)
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k3s_registries_yaml() {
        let r = Registries::from_yaml(
            r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com/v2/"
configs:
  "mirror.example.com":
    auth: {username: u, password: secretpw}
    tls: {insecure_skip_verify: true}
"#,
        )
        .unwrap();
        let eps = r.endpoints("docker.io");
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0], Endpoint { host: "127.0.0.1:5000".into(), plain_http: true, mirror: true });
        assert_eq!(eps[1], Endpoint { host: "mirror.example.com".into(), plain_http: false, mirror: true });
        assert_eq!(eps[2], Endpoint { host: "docker.io".into(), plain_http: false, mirror: false });
        let c = r.config("mirror.example.com").unwrap();
        assert_eq!(c.auth.as_ref().unwrap().username, "u");
        assert!(c.tls.as_ref().unwrap().insecure_skip_verify);
        assert_eq!(c.auth.as_ref().unwrap().password, "secretpw");
        assert!(!format!("{c:?}").contains("secretpw"), "credentials stay out of logs");
        assert_eq!(r.endpoints("quay.io"), vec![Endpoint { host: "quay.io".into(), plain_http: false, mirror: false }]);
    }

    #[test]
    fn wildcard_mirror_and_bad_endpoints() {
        let r = Registries::from_yaml("mirrors:\n  \"*\":\n    endpoint: [\"http://localhost:1\"]\n").unwrap();
        assert_eq!(r.endpoints("ghcr.io")[0].host, "localhost:1");
        assert!(Registries::from_yaml("mirrors:\n  a:\n    endpoint: [\"ftp://x\"]\n").is_err());
        assert!(Registries::from_yaml("mirrors:\n  a:\n    endpoint: [\"https://x/some/path\"]\n").is_err());
        let missing = std::env::temp_dir().join(format!("kubus-no-such-{}", std::process::id()));
        assert!(Registries::load(&missing).unwrap().mirrors.is_empty());
    }

    #[test]
    fn loopback_hosts_use_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("docker.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
