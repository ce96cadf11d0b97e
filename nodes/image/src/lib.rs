//! Images on a Kubus node (design: docs/design/node-agent.md §4).
//!
//! [`ImageStore`] keeps content-addressed blobs under `<root>/blobs/sha256/`, each layer unpacked
//! once per ChainID under `<root>/layers/<12 hex>/` (short, so overlay options for deep images
//! fit in a page), and the image records in `<root>/images.json`. Images come from registries
//! (OCI distribution through `oci-client`, with k3s-style mirrors), from OCI or docker-save
//! archives, or from the host's busybox. A container's root file system is an overlay of the
//! image's layers with the upper and work directories in the container's own directory.

mod archive;
mod busybox;
mod config;
mod digest;
mod keyring;
mod metrics;
mod overlay;
mod pull;
mod reference;
mod registries;
mod store;
mod unpack;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use config::ImageConfig;
pub use keyring::{Keyring, KeyringError};
pub use overlay::MountError;
pub use reference::normalize;
pub use registries::{Registries, RegistriesError, RegistryAuthConfig, RegistryConfig, RegistryTlsConfig};
pub use store::ImageStore;
pub use unpack::UnpackError;

/// An image in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Digest of the image config (`sha256:...`), as `docker images --digests` calls the id.
    pub id: String,
    /// Normalised tagged references (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    /// `repository@digest` of the manifest (or multi-arch index) it was pulled by.
    pub repo_digests: Vec<String>,
    /// Bytes of the config and the (compressed) layers, what node.status.images reports.
    pub size: u64,
    pub config: ImageConfig,
    /// Digest of the single-platform manifest.
    pub manifest_digest: String,
    layers: Vec<Layer>,
    /// Digest of the multi-arch index the manifest was chosen from, kept for GC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index_digest: Option<String>,
    /// Unix seconds of the last pull or lookup by ensure(); GC removes the least recently used first.
    #[serde(default)]
    last_used: u64,
}

impl ImageInfo {
    /// Layers, bottom first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
}

/// One layer of an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Digest of the blob as distributed (usually gzip-compressed).
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Digest of the uncompressed tar (`rootfs.diff_ids` of the config).
    pub diff_id: String,
    /// Identity of the layer stack up to this layer; names the unpacked directory.
    pub chain_id: String,
}

/// `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// Parses the Kubernetes value; an absent policy defaults as the API server does:
    /// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise.
    pub fn from_k8s(policy: Option<&str>, image: &str) -> Result<Self, ImageError> {
        match policy {
            Some("Always") => Ok(Self::Always),
            Some("IfNotPresent") => Ok(Self::IfNotPresent),
            Some("Never") => Ok(Self::Never),
            Some(other) => Err(ImageError::Invalid(format!("unknown imagePullPolicy {other:?}"))),
            None => {
                let r = reference::parse(image)?;
                Ok(if r.digest().is_none() && r.tag() == Some("latest") { Self::Always } else { Self::IfNotPresent })
            }
        }
    }
}

/// Result of [`ImageStore::ensure`].
#[derive(Clone, Debug)]
pub struct Pulled {
    pub image: ImageInfo,
    /// Whether a registry was contacted; false = served from the store.
    pub pulled: bool,
    pub duration: Duration,
    /// Blob bytes downloaded (0 when everything was already present).
    pub downloaded_bytes: u64,
}

/// Result of [`ImageStore::gc`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Ids of the images removed.
    pub images_removed: Vec<String>,
    pub layers_removed: usize,
    pub blobs_removed: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image name {image:?}: {reason}")]
    InvalidImageName { image: String, reason: String },
    /// Message as kubelet's.
    #[error("Container image {0:?} is not present with pull policy of Never")]
    NeverPull(String),
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("pulling {image}: {message}")]
    Pull { image: String, message: String },
    /// The registry answered but refused the credentials given (or their absence): unlike an
    /// unreachable registry, a local copy must not stand in for the pull.
    #[error("pulling {image}: {message}")]
    Unauthorized { image: String, message: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{context}: {source}")]
    Json { context: String, source: serde_json::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    Digest { what: String, expected: String, actual: String },
    #[error("unpacking layer {layer}: {source}")]
    Unpack { layer: String, source: UnpackError },
    #[error(transparent)]
    Registries(#[from] RegistriesError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("built-in busybox: {0}")]
    Busybox(String),
}

impl ImageError {
    /// The container `waiting.reason` kubelet reports for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidImageName { .. } => "InvalidImageName",
            Self::NeverPull(_) => "ErrImageNeverPull",
            _ => "ErrImagePull",
        }
    }
}

/// Attaches what was being done to an io error.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for Result<T, std::io::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ImageError> {
        self.map_err(|source| ImageError::Io { context: context(), source })
    }
}

pub(crate) fn json_err(context: impl Into<String>) -> impl FnOnce(serde_json::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Json { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_like_the_api_server() {
        assert_eq!(PullPolicy::from_k8s(None, "busybox").unwrap(), PullPolicy::Always);
        assert_eq!(PullPolicy::from_k8s(None, "busybox:latest").unwrap(), PullPolicy::Always);
        assert_eq!(PullPolicy::from_k8s(None, "busybox:1.35").unwrap(), PullPolicy::IfNotPresent);
        let d = format!("busybox@sha256:{}", "0".repeat(64));
        assert_eq!(PullPolicy::from_k8s(None, &d).unwrap(), PullPolicy::IfNotPresent);
        assert_eq!(PullPolicy::from_k8s(Some("Never"), "x").unwrap(), PullPolicy::Never);
        assert!(PullPolicy::from_k8s(Some("Sometimes"), "x").is_err());
    }

    #[test]
    fn errors_carry_kubelet_reasons() {
        assert_eq!(ImageError::NeverPull("x".into()).reason(), "ErrImageNeverPull");
        assert_eq!(
            ImageError::NeverPull("busybox".into()).to_string(),
            "Container image \"busybox\" is not present with pull policy of Never"
        );
        assert_eq!(ImageError::NotFound("x".into()).reason(), "ErrImagePull");
    }
}
