//! The image config blob (OCI image config / docker container image v1, the same JSON).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{json_err, ImageError};

/// What a container takes from its image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// `port/proto`, e.g. `80/tcp`.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// The parts of the config file the store reads.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    stop_signal: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ConfigFile {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let file: Self = serde_json::from_slice(bytes).map_err(json_err("image config"))?;
        if file.rootfs.kind != "layers" {
            return Err(ImageError::Invalid(format!("image config rootfs type {:?}", file.rootfs.kind)));
        }
        if !file.os.is_empty() && file.os != "linux" {
            return Err(ImageError::Invalid(format!("image is for os {:?}, not linux", file.os)));
        }
        // A foreign architecture would only fail later with "exec format error".
        let here = oci_client::config::Architecture::default().to_string();
        if !file.architecture.is_empty() && file.architecture != here {
            return Err(ImageError::Invalid(format!(
                "image is for architecture {:?}, this node is {here:?}",
                file.architecture
            )));
        }
        Ok(file)
    }

    pub(crate) fn image_config(&self) -> ImageConfig {
        let c = self.config.as_ref();
        let none_if_empty = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
        ImageConfig {
            entrypoint: c.and_then(|c| c.entrypoint.clone()).unwrap_or_default(),
            cmd: c.and_then(|c| c.cmd.clone()).unwrap_or_default(),
            env: c.and_then(|c| c.env.clone()).unwrap_or_default(),
            working_dir: c.and_then(|c| none_if_empty(&c.working_dir)),
            user: c.and_then(|c| none_if_empty(&c.user)),
            exposed_ports: c
                .and_then(|c| c.exposed_ports.as_ref())
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default(),
            labels: c.and_then(|c| c.labels.clone()).unwrap_or_default(),
            stop_signal: c.and_then(|c| none_if_empty(&c.stop_signal)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_style_config() {
        let c = ConfigFile::parse(
            br#"{"os":"linux","config":{"User":"1000","ExposedPorts":{"80/tcp":{}},
            "Env":["PATH=/bin"],"Entrypoint":["/e"],"Cmd":["a","b"],"WorkingDir":"/w","Labels":{"k":"v"}},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#,
        )
        .unwrap();
        let ic = c.image_config();
        assert_eq!(ic.entrypoint, ["/e"]);
        assert_eq!(ic.cmd, ["a", "b"]);
        assert_eq!(ic.env, ["PATH=/bin"]);
        assert_eq!(ic.working_dir.as_deref(), Some("/w"));
        assert_eq!(ic.user.as_deref(), Some("1000"));
        assert_eq!(ic.exposed_ports, ["80/tcp"]);
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        assert!(ConfigFile::parse(br#"{"os":"windows","rootfs":{"type":"layers"}}"#).is_err());
        assert!(ConfigFile::parse(br#"{"architecture":"s390x","rootfs":{"type":"layers"}}"#).is_err());
        assert_eq!(
            ConfigFile::parse(br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap().image_config(),
            ImageConfig::default()
        );
    }
}
