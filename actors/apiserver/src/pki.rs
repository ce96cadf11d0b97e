//! The cluster's certificate authority and the certificates the API server is reached with, kept
//! in `<data dir>/pki` as kubeadm keeps `/etc/kubernetes/pki` and k3s its `server/tls`:
//! `ca.crt`/`ca.key` (10 years, never regenerated), `apiserver.crt`/`.key` (serving, 1 year, for
//! every name and address the API is reached at) and `admin.crt`/`.key` (a client certificate
//! for `kubernetes-admin` in `system:masters`, 1 year, what the kubeconfig carries).
//!
//! At every start the leaves are reused if they still verify under the CA 90 days from now (and
//! the serving one for every wanted name), else issued anew, as k3s renews its certificates.
//! Keys are ECDSA P-256 (as k3s). The CA's name is derived from its key, so the issuer is rebuilt
//! from `ca.key` alone (no certificate parser needed), and a `ca.crt` that `ca.key` did not make
//! is refused rather than silently replaced.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

/// The CA's lifetime (kubeadm's and k3s's).
const CA_LIFETIME: Duration = Duration::from_secs(3650 * 24 * 3600);
/// A leaf's lifetime (kubeadm's and k3s's).
const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// A leaf that would not verify this far ahead is issued anew at start (k3s's window).
const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 3600);
/// Clocks of clients and servers differ a little.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The admin client certificate's user and group (kubeadm's admin.conf before 1.29).
pub const ADMIN_USER: &str = "kubernetes-admin";
pub const ADMIN_GROUP: &str = "system:masters";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}: not a PEM certificate or key")]
    Pem(PathBuf),
    #[error(
        "{0} was not issued by the key in ca.key (a CA made elsewhere?); Kubus does not take a custom CA yet: \
         move the pki directory away to have a new one made"
    )]
    ForeignCa(PathBuf),
}

/// Every name and address clients reach the API server at: what its serving certificate is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ServingNames {
    /// Loopback, the host's name and address, and the `kubernetes` Service by its names and
    /// first address (what a pod reaches the API at), as kubeadm's apiserver certificate has.
    pub fn for_cluster(host: &str, addresses: &[IpAddr], service_ip: IpAddr, cluster_domain: &str) -> ServingNames {
        let mut dns: Vec<String> = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
            .into_iter()
            .map(String::from)
            .collect();
        dns.push(format!("kubernetes.default.svc.{cluster_domain}"));
        if !host.is_empty() {
            dns.push(host.to_string());
        }
        let mut ips = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST), service_ip];
        ips.extend(addresses.iter().copied().filter(|a| !a.is_unspecified()));
        dns.dedup();
        ips.sort();
        ips.dedup();
        ServingNames { dns, ips }
    }

    fn sans(&self) -> Result<Vec<SanType>, rcgen::Error> {
        let mut out: Vec<SanType> = self.ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        for d in &self.dns {
            out.push(SanType::DnsName(d.clone().try_into()?));
        }
        Ok(out)
    }

    fn server_names(&self) -> Vec<ServerName<'static>> {
        let ips = self.ips.iter().map(|ip| ServerName::IpAddress((*ip).into()));
        let dns = self.dns.iter().filter_map(|d| ServerName::try_from(d.clone()).ok());
        ips.chain(dns).collect()
    }
}

/// A certificate and its key, PEM-encoded.
#[derive(Clone)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key in a log line.
        f.debug_struct("CertAndKey").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// The cluster's CA and the API server's certificates.
#[derive(Debug, Clone)]
pub struct ClusterPki {
    pub ca_pem: String,
    pub serving: CertAndKey,
    pub admin: CertAndKey,
    /// Issues the in-process components' and nodes' client certificates.
    ca: std::sync::Arc<Ca>,
}

/// The CA as an issuer, rebuilt from its key.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// Never the key in a log line.
impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("pem", &self.pem).finish_non_exhaustive()
    }
}

fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut p = CertificateParams::default();
    let id: String = p.key_identifier(key).iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("kubus-ca@{id}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p
}

fn client_params(user: &str, groups: &[&str]) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    for g in groups {
        dn.push(DnType::OrganizationName, *g);
    }
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

/// A P-256 public key (its uncompressed point) whose private half is elsewhere.
struct RemoteKey(Vec<u8>);

impl rcgen::PublicKeyData for RemoteKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn validity(p: &mut CertificateParams, lifetime: Duration) {
    let now = SystemTime::now();
    p.not_before = OffsetDateTime::from(now - BACKDATE);
    p.not_after = OffsetDateTime::from(now + lifetime);
}

impl Ca {
    fn create() -> Result<(Ca, KeyPair), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(&key);
        validity(&mut params, CA_LIFETIME);
        let cert = params.self_signed(&key)?;
        let issuer = Issuer::new(ca_params(&key), KeyPair::from_pem(&key.serialize_pem())?);
        Ok((Ca { issuer, der: cert.der().clone(), pem: cert.pem() }, key))
    }

    fn from_key(key_pem: &str, der: CertificateDer<'static>, pem: &str) -> Result<Ca, rcgen::Error> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Ca { issuer: Issuer::new(ca_params(&key), key), der, pem: pem.to_string() })
    }

    fn issue(&self, mut params: CertificateParams) -> Result<CertAndKey, PkiError> {
        let key = KeyPair::generate()?;
        validity(&mut params, LEAF_LIFETIME);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    fn serving(&self, names: &ServingNames) -> Result<CertAndKey, PkiError> {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        p.distinguished_name = dn;
        p.subject_alt_names = names.sans()?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Set explicitly: with one CA for both, this is what keeps a serving certificate from
        // being taken as a client's and the other way round.
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(p)
    }

    fn client(&self, user: &str, groups: &[&str]) -> Result<CertAndKey, PkiError> {
        self.issue(client_params(user, groups))
    }

    /// A client certificate for a key held elsewhere (a joining node's), PEM.
    fn client_for_key(&self, user: &str, groups: &[&str], key: &RemoteKey) -> Result<String, PkiError> {
        let mut params = client_params(user, groups);
        validity(&mut params, LEAF_LIFETIME);
        params.use_authority_key_identifier_extension = true;
        Ok(params.signed_by(key, &self.issuer)?.pem())
    }

    /// Refuses a certificate whose key is not this one (a leaf the key signs must verify under
    /// the certificate).
    fn check_pair(&self, cert_path: &Path) -> Result<(), PkiError> {
        let probe = self.client("kubus-ca-check", &[])?;
        match self.verifies(&probe.cert_pem, webpki::KeyUsage::client_auth(), SystemTime::now(), &[]) {
            true => Ok(()),
            false => Err(PkiError::ForeignCa(cert_path.to_path_buf())),
        }
    }

    /// Whether `cert_pem` verifies under this CA for `usage` at `at` (and for every name).
    fn verifies(&self, cert_pem: &str, usage: webpki::KeyUsage, at: SystemTime, names: &[ServerName<'_>]) -> bool {
        let Ok(der) = CertificateDer::from_pem_slice(cert_pem.as_bytes()) else { return false };
        let (Ok(ee), Ok(anchor)) = (webpki::EndEntityCert::try_from(&der), webpki::anchor_from_trusted_cert(&self.der))
        else {
            return false;
        };
        let at = UnixTime::since_unix_epoch(at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default());
        ee.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &[anchor], &[], at, usage, None, None).is_ok()
            && names.iter().all(|n| ee.verify_is_valid_for_subject_name(n).is_ok())
    }
}

impl ClusterPki {
    /// A CA and certificates kept in memory only (tests and benchmarks).
    pub fn ephemeral(names: &ServingNames) -> Result<ClusterPki, PkiError> {
        let (ca, _) = Ca::create()?;
        Ok(ClusterPki {
            ca_pem: ca.pem.clone(),
            serving: ca.serving(names)?,
            admin: ca.client(ADMIN_USER, &[ADMIN_GROUP])?,
            ca: std::sync::Arc::new(ca),
        })
    }

    /// The CA of `dir` (made there if missing) as one PEM text, certificate then key: what the
    /// API servers of one cluster share (the first to start publishes its own).
    pub fn local_ca_bundle(dir: &Path) -> Result<String, PkiError> {
        prepare(dir)?;
        load_ca(dir, &mut Vec::new())?;
        let (cert, key) = (read(&dir.join("ca.crt"))?, read(&dir.join("ca.key"))?);
        Ok(format!("{}\n{}\n", cert.unwrap_or_default().trim(), key.unwrap_or_default().trim()))
    }

    /// Makes the CA of `bundle` (see [`ClusterPki::local_ca_bundle`]) the one of `dir`; true if
    /// it was another. The certificates the other CA issued no longer verify, so the next
    /// [`ClusterPki::load_or_create`] issues them anew.
    pub fn adopt_ca_bundle(dir: &Path, bundle: &str) -> Result<bool, PkiError> {
        const END: &str = "-----END CERTIFICATE-----";
        let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
        let split = bundle.find(END).map(|i| i + END.len()).ok_or_else(|| PkiError::Pem(ca_crt.clone()))?;
        let (cert, key) = (format!("{}\n", bundle[..split].trim()), format!("{}\n", bundle[split..].trim()));
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).map_err(|_| PkiError::Pem(ca_crt.clone()))?;
        let ca = Ca::from_key(&key, der.into_owned(), &cert).map_err(|_| PkiError::Pem(ca_key.clone()))?;
        ca.check_pair(&ca_crt)?;
        let same =
            |path: &Path, want: &str| Ok::<_, PkiError>(read(path)?.is_some_and(|have| have.trim() == want.trim()));
        if same(&ca_crt, &cert)? && same(&ca_key, &key)? {
            return Ok(false);
        }
        prepare(dir)?;
        write(&ca_key, &key, 0o600)?;
        write(&ca_crt, &cert, 0o644)?;
        Ok(true)
    }

    /// Loads the PKI of `dir` (made if missing), issuing anew what is missing, expires within
    /// 90 days or (the serving certificate) lacks one of `names`. Returns what it wrote.
    pub fn load_or_create(dir: &Path, names: &ServingNames) -> Result<(ClusterPki, Vec<String>), PkiError> {
        prepare(dir)?;
        let mut wrote = Vec::new();
        let ca = load_ca(dir, &mut wrote)?;
        let renew_at = SystemTime::now() + RENEW_BEFORE;
        let wanted = names.server_names();
        let mut leaf = |name: &str,
                        usage: webpki::KeyUsage,
                        check: &[ServerName<'_>],
                        make: &dyn Fn() -> Result<CertAndKey, PkiError>| {
            let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
            if let (Some(cert_pem), Some(key_pem)) = (read(&crt)?, read(&key)?) {
                if ca.verifies(&cert_pem, usage, renew_at, check) && KeyPair::from_pem(&key_pem).is_ok() {
                    return Ok(CertAndKey { cert_pem, key_pem });
                }
            }
            let made = make()?;
            write(&key, &made.key_pem, 0o600)?;
            write(&crt, &made.cert_pem, 0o644)?;
            wrote.push(format!("issued {}", crt.display()));
            Ok::<_, PkiError>(made)
        };
        let serving = leaf("apiserver", webpki::KeyUsage::server_auth(), &wanted, &|| ca.serving(names))?;
        let admin = leaf("admin", webpki::KeyUsage::client_auth(), &[], &|| ca.client(ADMIN_USER, &[ADMIN_GROUP]))?;
        Ok((ClusterPki { ca_pem: ca.pem.clone(), serving, admin, ca: std::sync::Arc::new(ca) }, wrote))
    }

    /// A client certificate for `user` in `groups` from the CA kept in `dir` (never made here:
    /// a missing CA is an error), and the CA certificate; `kubus kubeconfig user` and a node
    /// agent on the machine of its control plane.
    pub fn issue_client_in(dir: &Path, user: &str, groups: &[&str]) -> Result<(String, CertAndKey), PkiError> {
        // Both halves must be there: load_ca makes a new CA when either is missing.
        for half in ["ca.crt", "ca.key"] {
            let path = dir.join(half);
            if read(&path)?.is_none() {
                let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no cluster CA here");
                return Err(PkiError::Io { path, source });
            }
        }
        let ca = load_ca(dir, &mut Vec::new())?;
        Ok((ca.pem.clone(), ca.client(user, groups)?))
    }

    /// A client certificate (PEM) for `user` in `groups` and the P-256 key whose uncompressed
    /// point is `public_point`: a joining node made the key and keeps it.
    pub fn issue_client_for_key(&self, user: &str, groups: &[&str], public_point: &[u8]) -> Result<String, PkiError> {
        if public_point.len() != 65 || public_point[0] != 4 {
            return Err(PkiError::Generate(rcgen::Error::CouldNotParseKeyPair));
        }
        self.ca.client_for_key(user, groups, &RemoteKey(public_point.to_vec()))
    }

    /// The embedded NATS server's certificate for `names`, from the CA of `dir` (made there if
    /// missing), issued anew at every start: `nats.crt` holds it followed by the CA's (a
    /// joining node pins the CA it finds in the chain), `nats.key` its key. Returns the CA.
    pub fn issue_nats_serving_in(dir: &Path, names: &ServingNames) -> Result<String, PkiError> {
        prepare(dir)?;
        let ca = load_ca(dir, &mut Vec::new())?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kubus-nats");
        p.distinguished_name = dn;
        p.subject_alt_names = names.sans()?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let made = ca.issue(p)?;
        write(&dir.join("nats.key"), &made.key_pem, 0o600)?;
        write(&dir.join("nats.crt"), &format!("{}\n{}", made.cert_pem.trim(), ca.pem.trim()), 0o644)?;
        Ok(ca.pem.clone())
    }

    /// A client certificate for `user` in `groups`, issued now and kept in memory (the
    /// in-process components' identities, made anew at every start, and `kubus kubeconfig user`).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertAndKey, PkiError> {
        self.ca.client(user, groups)
    }
}

/// Makes `dir` (owner only).
fn prepare(dir: &Path) -> Result<(), PkiError> {
    let io = |source| PkiError::Io { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// The CA of `dir`, made there if missing (noted in `wrote`).
fn load_ca(dir: &Path, wrote: &mut Vec<String>) -> Result<Ca, PkiError> {
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    match (read(&ca_crt)?, read(&ca_key)?) {
        (Some(cert), Some(key)) => {
            let der = CertificateDer::from_pem_slice(cert.as_bytes()).map_err(|_| PkiError::Pem(ca_crt.clone()))?;
            let ca = Ca::from_key(&key, der.into_owned(), &cert).map_err(|_| PkiError::Pem(ca_key.clone()))?;
            ca.check_pair(&ca_crt)?;
            Ok(ca)
        }
        _ => {
            let (ca, key) = Ca::create()?;
            write(&ca_key, &key.serialize_pem(), 0o600)?;
            write(&ca_crt, &ca.pem, 0o644)?;
            wrote.push(format!("made a new cluster CA in {}", ca_crt.display()));
            Ok(ca)
        }
    }
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io { path: path.to_path_buf(), source }),
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key.
/// The temporary file is made anew with `mode` (a leftover one could have wider modes), and
/// the mode is set again in case the umask narrowed it. Keys, certificates and kubeconfigs.
pub fn write(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(err)?;
    f.write_all(contents.as_bytes()).and_then(|_| f.sync_all()).map_err(err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn names() -> ServingNames {
        ServingNames::for_cluster(
            "node-a",
            &[IpAddr::from([192, 0, 2, 7])],
            IpAddr::from([10, 96, 0, 1]),
            "cluster.local",
        )
    }

    fn ca_of(pki: &ClusterPki, key_pem: &str) -> Ca {
        let der = CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap().into_owned();
        Ca::from_key(key_pem, der, &pki.ca_pem).unwrap()
    }

    fn dir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("kubus-pki-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn made_once_then_reused_and_each_certificate_is_for_its_use_only() {
        let d = dir();
        let (first, wrote) = ClusterPki::load_or_create(&d, &names()).unwrap();
        assert_eq!(wrote.len(), 3, "{wrote:?}");
        let mode = |f: &str| std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            (mode("ca.key"), mode("apiserver.key"), mode("admin.key"), mode("ca.crt")),
            (0o600, 0o600, 0o600, 0o644)
        );
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        // A restart reuses everything.
        let (again, wrote) = ClusterPki::load_or_create(&d, &names()).unwrap();
        assert!(wrote.is_empty(), "{wrote:?}");
        assert_eq!(
            (again.ca_pem, again.serving.cert_pem.clone()),
            (first.ca_pem.clone(), first.serving.cert_pem.clone())
        );
        let ca = ca_of(&first, &std::fs::read_to_string(d.join("ca.key")).unwrap());
        let now = SystemTime::now();
        let server = webpki::KeyUsage::server_auth();
        let client = webpki::KeyUsage::client_auth();
        let wanted = names().server_names();
        assert!(ca.verifies(&first.serving.cert_pem, server, now, &wanted));
        assert!(ca.verifies(&first.admin.cert_pem, client, now, &[]));
        // Neither works as the other.
        assert!(!ca.verifies(&first.serving.cert_pem, client, now, &[]));
        assert!(!ca.verifies(&first.admin.cert_pem, server, now, &[]));
        // A year's leaves, a ten years' CA.
        assert!(!ca.verifies(&first.admin.cert_pem, client, now + 366 * DAY, &[]));
        assert!(ca.verifies(&ca.client("x", &[]).unwrap().cert_pem, client, now + 364 * DAY, &[]));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_new_address_or_a_lost_file_reissues_only_that() {
        let d = dir();
        let (first, _) = ClusterPki::load_or_create(&d, &names()).unwrap();
        let mut moved = names();
        moved.ips.push(IpAddr::from([198, 51, 100, 9]));
        let (second, wrote) = ClusterPki::load_or_create(&d, &moved).unwrap();
        assert_eq!(wrote, [format!("issued {}", d.join("apiserver.crt").display())]);
        assert_ne!(second.serving.cert_pem, first.serving.cert_pem);
        assert_eq!((second.ca_pem, second.admin.cert_pem), (first.ca_pem.clone(), first.admin.cert_pem.clone()));
        std::fs::remove_file(d.join("admin.key")).unwrap();
        let (_, wrote) = ClusterPki::load_or_create(&d, &moved).unwrap();
        assert_eq!(wrote, [format!("issued {}", d.join("admin.crt").display())]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_ca_certificate_its_key_did_not_make_is_refused() {
        let d = dir();
        ClusterPki::load_or_create(&d, &names()).unwrap();
        let other = ClusterPki::ephemeral(&names()).unwrap();
        std::fs::write(d.join("ca.crt"), &other.ca_pem).unwrap();
        let err = ClusterPki::load_or_create(&d, &names()).unwrap_err();
        assert!(matches!(err, PkiError::ForeignCa(_)), "{err}");
        assert!(err.to_string().contains("ca.crt was not issued by the key in ca.key"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_serving_certificate_covers_the_clusters_names() {
        let n = names();
        for want in ["kubernetes.default.svc.cluster.local", "kubernetes", "localhost", "node-a"] {
            assert!(n.dns.iter().any(|d| d == want), "{want}");
        }
        for ip in ["127.0.0.1", "::1", "10.96.0.1", "192.0.2.7"] {
            assert!(n.ips.contains(&ip.parse().unwrap()), "{ip}");
        }
        let unspecified =
            ServingNames::for_cluster("", &[IpAddr::from([0, 0, 0, 0])], IpAddr::from([10, 96, 0, 1]), "x");
        assert!(!unspecified.ips.iter().any(|ip| ip.is_unspecified()));
    }

    #[test]
    fn control_planes_share_the_first_ones_ca() {
        let base = dir();
        let (a, b) = (base.join("a"), base.join("b"));
        let first = ClusterPki::local_ca_bundle(&a).unwrap();
        // Asking again gives the same CA: it was kept.
        assert_eq!(ClusterPki::local_ca_bundle(&a).unwrap(), first);
        let (own, _) = ClusterPki::load_or_create(&b, &names()).unwrap();
        assert!(!ClusterPki::adopt_ca_bundle(&a, &first).unwrap(), "its own CA is no change");
        assert!(ClusterPki::adopt_ca_bundle(&b, &first).unwrap());
        let (shared, wrote) = ClusterPki::load_or_create(&b, &names()).unwrap();
        assert_ne!(shared.ca_pem, own.ca_pem);
        assert_eq!(shared.ca_pem.trim(), first[..first.find("-----END CERTIFICATE-----").unwrap() + 25].trim());
        // The other CA's certificates no longer verify, so they were issued anew.
        assert!(
            wrote.iter().any(|w| w.contains("apiserver.crt")) && wrote.iter().any(|w| w.contains("admin.crt")),
            "{wrote:?}"
        );
        assert_eq!(ClusterPki::local_ca_bundle(&b).unwrap(), first);
        // A bundle whose key is not its certificate's is refused.
        let other = ClusterPki::local_ca_bundle(&base.join("c")).unwrap();
        let end = first.find("-----END CERTIFICATE-----").unwrap() + 25;
        let mismatched =
            format!("{}\n{}", &first[..end], &other[other.find("-----END CERTIFICATE-----").unwrap() + 25..]);
        assert!(matches!(ClusterPki::adopt_ca_bundle(&b, &mismatched), Err(PkiError::ForeignCa(_))));
        let _ = std::fs::remove_dir_all(base);
    }
}
