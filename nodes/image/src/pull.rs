//! Pulls over the OCI distribution API, through mirrors, into the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_client::client::{current_platform_resolver, Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    OciDescriptor, OciImageManifest, OciManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use crate::config::ConfigFile;
use crate::digest::{chain_ids, digest_of};
use crate::reference::{self, digest_name, repository_of, tagged_name};
use crate::registries::Endpoint;
use crate::store::lock;
use crate::{metrics, ImageError, ImageInfo, ImageStore, IoContext, Keyring, Layer, PullPolicy, Pulled};

/// All four manifest types: the registry answers 404 for an OCI manifest unless asked for it.
const ACCEPT: &[&str] =
    &[OCI_IMAGE_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE];

impl ImageStore {
    /// Makes `image` present according to `policy`: `Always` re-resolves the reference at the
    /// registry and fetches missing blobs; `IfNotPresent` pulls only when absent; `Never` fails
    /// with [`ImageError::NeverPull`] when absent. Concurrent calls for one image pull once.
    pub async fn ensure(&self, image: &str, policy: PullPolicy) -> Result<Pulled, ImageError> {
        self.ensure_with(image, policy, &Keyring::default()).await
    }

    /// As [`ImageStore::ensure`], pulling with the credentials of `keyring` that match the
    /// image (a pod's image pull secrets): each in turn until one works. Without any, the
    /// node's own (`--registries`) or none are used.
    pub async fn ensure_with(&self, image: &str, policy: PullPolicy, keyring: &Keyring) -> Result<Pulled, ImageError> {
        let span = tracing::info_span!("ensure_image", image, ?policy, pulled = tracing::field::Empty);
        self.ensure_inner(image, policy, keyring).instrument(span).await
    }

    async fn ensure_inner(&self, image: &str, policy: PullPolicy, keyring: &Keyring) -> Result<Pulled, ImageError> {
        let start = Instant::now();
        let reference = reference::parse(image)?;
        let lock = self.inner.image_locks.get(&reference.to_string());
        let _held = lock.lock().await;
        if policy != PullPolicy::Always {
            if let Some(info) = self.get(&reference.to_string()) {
                // Layers may be missing after a crash between GC steps; unpacking is a no-op otherwise.
                let store = self.clone();
                let layers = info.layers().to_vec();
                spawn_blocking(move || store.ensure_layers(&layers)).await?;
                self.touch(&info.id);
                tracing::Span::current().record("pulled", false);
                return Ok(Pulled { image: info, pulled: false, duration: start.elapsed(), downloaded_bytes: 0 });
            }
            if policy == PullPolicy::Never {
                return Err(ImageError::NeverPull(image.to_string()));
            }
        }
        tracing::Span::current().record("pulled", true);
        let result = self.pull(&reference, keyring).await;
        let duration = start.elapsed();
        metrics::PULL_SECONDS.observe(duration.as_secs_f64());
        match result {
            Ok((info, downloaded_bytes)) => {
                metrics::PULLS.with_label_values(&["success"]).inc();
                tracing::info!(id = %info.id, downloaded_bytes, ms = duration.as_millis() as u64, "image pulled");
                Ok(Pulled { image: info, pulled: true, duration, downloaded_bytes })
            }
            Err(e) => {
                metrics::PULLS.with_label_values(&["failure"]).inc();
                tracing::warn!(error = %e, "image pull failed");
                Err(e)
            }
        }
    }

    /// Tries each endpoint (mirrors in order, then the registry itself).
    async fn pull(&self, reference: &Reference, keyring: &Keyring) -> Result<(ImageInfo, u64), ImageError> {
        let mut errors = Vec::new();
        let mut denied = false;
        let pod_credentials = keyring.lookup(reference.registry(), reference.repository());
        for ep in self.inner.registries.endpoints(reference.registry()) {
            let auths: Vec<RegistryAuth> = if pod_credentials.is_empty() {
                vec![self.auth_for(&ep)]
            } else {
                pod_credentials.iter().map(|c| RegistryAuth::Basic(c.username.clone(), c.password.clone())).collect()
            };
            for auth in auths {
                let span = tracing::info_span!("pull_from", host = %ep.host, mirror = ep.mirror);
                match self.pull_from(reference, &ep, &auth).instrument(span).await {
                    Ok(r) => return Ok(r),
                    Err(e) => {
                        tracing::warn!(host = %ep.host, error = %e, "pull attempt failed");
                        denied |= matches!(e, ImageError::Unauthorized { .. });
                        errors.push(format!("{}: {e}", ep.host));
                    }
                }
            }
        }
        let (image, message) = (reference.to_string(), errors.join("; "));
        Err(if denied { ImageError::Unauthorized { image, message } } else { ImageError::Pull { image, message } })
    }

    async fn pull_from(
        &self,
        reference: &Reference,
        ep: &Endpoint,
        auth: &RegistryAuth,
    ) -> Result<(ImageInfo, u64), ImageError> {
        let target = if ep.mirror {
            // Same repository and tag/digest on the mirror host (set_mirror_registry would add ?ns=).
            match (reference.tag(), reference.digest()) {
                (_, Some(d)) => Reference::with_digest(ep.host.clone(), reference.repository().into(), d.into()),
                (Some(t), None) => Reference::with_tag(ep.host.clone(), reference.repository().into(), t.into()),
                (None, None) => unreachable!("parsed references carry a tag or a digest"),
            }
        } else {
            reference.clone()
        };
        let client = self.client_for(ep, auth)?;
        let registry_err = |e: oci_client::errors::OciDistributionError| match e {
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                ImageError::Unauthorized { image: target.to_string(), message: e.to_string() }
            }
            e => ImageError::Invalid(e.to_string()),
        };

        let (raw, digest) = client.pull_manifest_raw(&target, auth, ACCEPT).await.map_err(registry_err)?;
        let digest = check_digest("manifest", &raw, &digest)?;
        let (manifest_raw, manifest_digest, manifest, index) = match parse_manifest(&raw)? {
            OciManifest::Image(m) => (raw, digest, m, None),
            OciManifest::ImageIndex(idx) => {
                let chosen = current_platform_resolver(&idx.manifests).ok_or_else(|| {
                    ImageError::Invalid(format!(
                        "no manifest for linux/{} in the image index",
                        oci_client::config::Architecture::default()
                    ))
                })?;
                let (raw2, d2) = client
                    .pull_manifest_raw(&target.clone_with_digest(chosen.clone()), auth, ACCEPT)
                    .await
                    .map_err(registry_err)?;
                let d2 = check_digest("platform manifest", &raw2, &d2)?;
                if d2 != chosen {
                    return Err(ImageError::Digest { what: "platform manifest".into(), expected: chosen, actual: d2 });
                }
                match parse_manifest(&raw2)? {
                    OciManifest::Image(m) => (raw2, d2, m, Some((raw, digest))),
                    OciManifest::ImageIndex(_) => return Err(ImageError::Invalid("nested image index".into())),
                }
            }
        };
        let mut keys = vec![manifest.config.digest.clone(), manifest_digest.clone()];
        keys.extend(index.as_ref().map(|(_, d)| d.clone()));
        keys.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        let _pins = self.pin(keys);

        let mut downloaded = self.fetch_blob(&client, &target, &manifest.config).await?;
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config = ConfigFile::parse(&config_bytes)?;
        let layers = layers_of(&manifest, &config)?;
        for l in &manifest.layers {
            downloaded += self.fetch_blob(&client, &target, l).await?;
        }
        self.write_blob(&manifest_digest, &manifest_raw)?;
        if let Some((raw, d)) = &index {
            self.write_blob(d, raw)?;
        }
        let store = self.clone();
        let unpack = layers.clone();
        let _pins_chain = self.pin(layers.iter().map(|l| l.chain_id.clone()));
        spawn_blocking(move || store.ensure_layers(&unpack)).await?;

        let pulled_by = index.as_ref().map(|(_, d)| d.clone()).unwrap_or_else(|| manifest_digest.clone());
        let info = ImageInfo {
            id: manifest.config.digest.clone(),
            names: Vec::new(),
            repo_digests: Vec::new(),
            size: manifest.config.size.max(0) as u64 + layers.iter().map(|l| l.size).sum::<u64>(),
            config: config.image_config(),
            manifest_digest,
            layers,
            index_digest: index.map(|(_, d)| d),
            last_used: 0,
        };
        let names: Vec<String> = tagged_name(reference).into_iter().collect();
        let repo_digest = digest_name(reference).unwrap_or_else(|| format!("{}@{pulled_by}", repository_of(reference)));
        let info = self.record(info, &names, &[repo_digest])?;
        Ok((info, downloaded))
    }

    /// Downloads a blob into `blobs/` unless present; returns the bytes downloaded. oci-client
    /// checks the digest while streaming into a temporary file, which is renamed only then.
    async fn fetch_blob(&self, client: &Client, target: &Reference, desc: &OciDescriptor) -> Result<u64, ImageError> {
        let path = self.blob_path(&desc.digest)?;
        let lock = self.inner.blob_locks.get(&desc.digest);
        let _held = lock.lock().await;
        if path.exists() {
            return Ok(0);
        }
        let tmp = self.tmp_path("blob");
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.ctx(|| format!("creating {}", tmp.display()))?;
            client
                .pull_blob(target, desc, &mut file)
                .await
                .map_err(|e| ImageError::Invalid(format!("blob {}: {e}", desc.digest)))?;
            file.flush().await.ctx(|| "flushing blob".into())?;
            file.sync_all().await.ctx(|| "syncing blob".into())?;
            let len = file.metadata().await.ctx(|| "blob size".into())?.len();
            if desc.size > 0 && len != desc.size as u64 {
                return Err(ImageError::Invalid(format!(
                    "blob {} has {len} bytes, the manifest says {}",
                    desc.digest, desc.size
                )));
            }
            tokio::fs::rename(&tmp, &path).await.ctx(|| format!("storing blob {}", desc.digest))?;
            Ok(len)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// One client per endpoint kind and credentials, kept for its connection pool and token
    /// cache: an oci-client Client keeps the first credentials it was given for a registry, so
    /// pulls with other credentials (another pod's secret, or none) need a client of their own.
    fn client_for(&self, ep: &Endpoint, auth: &RegistryAuth) -> Result<Arc<Client>, ImageError> {
        let tls = self.inner.registries.config(&ep.host).and_then(|c| c.tls.clone()).unwrap_or_default();
        let who = match auth {
            RegistryAuth::Basic(u, p) => digest_of(format!("{u}:{p}").as_bytes()),
            RegistryAuth::Bearer(t) => digest_of(t.as_bytes()),
            _ => String::new(),
        };
        let key = format!("{}|{}|{}|{who}", ep.host, ep.plain_http, tls.insecure_skip_verify);
        let mut clients = lock(&self.inner.clients);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let mut extra = Vec::new();
        if let Some(ca) = &tls.ca_file {
            let data = std::fs::read(ca).ctx(|| format!("reading CA file {}", ca.display()))?;
            extra.push(Certificate { encoding: CertificateEncoding::Pem, data });
        }
        let config = ClientConfig {
            protocol: if ep.plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
            accept_invalid_certificates: tls.insecure_skip_verify,
            extra_root_certificates: extra,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let client =
            Arc::new(Client::try_from(config).map_err(|e| ImageError::Invalid(format!("registry client: {e}")))?);
        clients.insert(key, client.clone());
        Ok(client)
    }

    fn auth_for(&self, ep: &Endpoint) -> RegistryAuth {
        match self.inner.registries.config(&ep.host).and_then(|c| c.auth.as_ref()) {
            Some(a) if !a.username.is_empty() => RegistryAuth::Basic(a.username.clone(), a.password.clone()),
            _ => RegistryAuth::Anonymous,
        }
    }
}

pub(crate) fn parse_manifest(raw: &[u8]) -> Result<OciManifest, ImageError> {
    let v: serde_json::Value = serde_json::from_slice(raw).map_err(crate::json_err("manifest"))?;
    if v.get("schemaVersion").and_then(|s| s.as_u64()) != Some(2) {
        return Err(ImageError::Invalid("only schema version 2 manifests are supported".into()));
    }
    serde_json::from_value(v).map_err(crate::json_err("manifest"))
}

/// The registry's digest must be the content's sha256 (blobs are stored under it).
fn check_digest(what: &str, raw: &[u8], claimed: &str) -> Result<String, ImageError> {
    let actual = digest_of(raw);
    if actual != claimed {
        return Err(ImageError::Digest { what: what.into(), expected: claimed.into(), actual });
    }
    Ok(actual)
}

/// Layers of a manifest with their diffIDs and ChainIDs from the config.
pub(crate) fn layers_of(manifest: &OciImageManifest, config: &ConfigFile) -> Result<Vec<Layer>, ImageError> {
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::Invalid(format!(
            "manifest has {} layers, config {} diff_ids",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    let chains = chain_ids(diff_ids);
    Ok(manifest
        .layers
        .iter()
        .zip(diff_ids)
        .zip(chains)
        .map(|((l, diff), chain)| Layer {
            digest: l.digest.clone(),
            media_type: l.media_type.clone(),
            size: l.size.max(0) as u64,
            diff_id: diff.clone(),
            chain_id: chain,
        })
        .collect())
}

pub(crate) async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| ImageError::Invalid(format!("blocking task failed: {e}")))?
}
