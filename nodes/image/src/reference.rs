//! Image references as Kubernetes users write them, normalised the way docker/containerd do.

use oci_client::Reference;

use crate::digest::digest_hex;
use crate::ImageError;

/// Normalises an image reference: `busybox` -> `docker.io/library/busybox:latest`,
/// `quay.io/x/y@sha256:..` kept as is (a digest is never replaced by a tag).
pub fn normalize(image: &str) -> Result<String, ImageError> {
    Ok(parse(image)?.to_string())
}

pub(crate) fn parse(image: &str) -> Result<Reference, ImageError> {
    let image = image.trim();
    let reference: Reference = image.parse().map_err(|e: oci_client::ParseError| ImageError::InvalidImageName {
        image: image.to_string(),
        reason: e.to_string(),
    })?;
    // The grammar lets an uppercase first component through as a host; docker refuses it.
    if reference.repository().bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ImageError::InvalidImageName {
            image: image.to_string(),
            reason: "repository name must be lowercase".into(),
        });
    }
    if let Some(d) = reference.digest() {
        if digest_hex(d).is_none() {
            return Err(ImageError::InvalidImageName {
                image: image.to_string(),
                reason: "only sha256 digests are supported".into(),
            });
        }
    }
    Ok(reference)
}

/// `registry/repository` without tag or digest, the prefix of a repo digest.
pub(crate) fn repository_of(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

/// The name an image is listed under when the reference carries a tag (`repo:tag`).
pub(crate) fn tagged_name(reference: &Reference) -> Option<String> {
    reference.tag().map(|t| format!("{}:{t}", repository_of(reference)))
}

/// `repo@digest` when the reference pins a digest.
pub(crate) fn digest_name(reference: &Reference) -> Option<String> {
    reference.digest().map(|d| format!("{}@{d}", repository_of(reference)))
}

/// A bare image id (`sha256:<hex>`), which is not a reference.
pub(crate) fn is_image_id(s: &str) -> bool {
    digest_hex(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(normalize("busybox").unwrap(), "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1.35").unwrap(), "docker.io/library/busybox:1.35");
        assert_eq!(normalize("foo/bar").unwrap(), "docker.io/foo/bar:latest");
        assert_eq!(normalize("index.docker.io/library/nginx").unwrap(), "docker.io/library/nginx:latest");
        assert_eq!(normalize("127.0.0.1:5000/x/y:2").unwrap(), "127.0.0.1:5000/x/y:2");
        assert_eq!(normalize("localhost/y").unwrap(), "localhost/y:latest");
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(normalize(&format!("quay.io/a/b@{d}")).unwrap(), format!("quay.io/a/b@{d}"));
        assert_eq!(normalize(&format!("b:1@{d}")).unwrap(), format!("docker.io/library/b:1@{d}"));
    }

    #[test]
    fn refuses_bad_names() {
        for bad in ["", "UPPER/case", "a b", "x@sha256:12", &format!("x@sha512:{}", "a".repeat(128))] {
            let err = normalize(bad).unwrap_err();
            assert_eq!(err.reason(), "InvalidImageName", "{bad}: {err}");
        }
    }
}
