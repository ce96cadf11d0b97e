//! Secrets encrypted at rest (issue #13): with upstream's `EncryptionConfiguration` (aesgcm,
//! then identity) a Secret is stored as `k8s:enc:aesgcm:v1:<key>:...` in the objects stream and
//! its archive, reads back through kubectl (also after a restart), and other resources stay
//! plain.

mod common;
use common::Cluster;

/// The configuration file, removed however the test ends.
struct ConfigFile(std::path::PathBuf);

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const CONFIG: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - aesgcm:
      keys:
      - name: key1
        secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
  - identity: {}
";

/// The last stored payload of `subject` in stream `stream`.
fn stored(c: &Cluster, stream: &str, subject: &str) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let nats = kubus_bus::connect(&c.nats_url(), "e2e-raw").await.unwrap();
        let js = async_nats::jetstream::new(nats);
        let stream = js.get_stream(stream).await.unwrap();
        stream.get_last_raw_message_by_subject(subject).await.expect("the object is stored").payload.to_vec()
    })
}

#[test]
fn secrets_are_stored_encrypted_and_read_back() {
    let file = ConfigFile(std::env::temp_dir().join(format!("kubus-encryption-{}.yaml", std::process::id())));
    std::fs::write(&file.0, CONFIG).unwrap();
    let path = file.0.display().to_string();
    let mut c = Cluster::start_with("encryption", &["--encryption-provider-config", &path]);
    c.kubectl(&["create", "secret", "generic", "db", "--from-literal=password=hunter2-s3cr3t"]).expect_ok();
    c.kubectl(&["create", "configmap", "plain", "--from-literal=k=visible-value"]).expect_ok();
    let read = |c: &Cluster| c.kubectl(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]).expect_ok();
    // base64 of the value, as the API shows it.
    assert_eq!(read(&c), "aHVudGVyMi1zM2NyM3Q=");

    let secret_subject = "kubus.e2e.obj.core.secrets.default.db";
    let raw = stored(&c, "KUBUS_e2e_OBJECTS", secret_subject);
    assert!(raw.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "{}", String::from_utf8_lossy(&raw));
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(!text.contains("aHVudGVyMi1zM2NyM3Q") && !text.contains("\"db\""), "plain text in the stored Secret");
    // The history keeps it encrypted too.
    let archived = common::eventually(10, || {
        let a = stored(&c, "KUBUS_e2e_ARCHIVE", secret_subject);
        (!a.is_empty()).then_some(a)
    });
    assert!(archived.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
    // Other resources stay plain JSON.
    let plain = stored(&c, "KUBUS_e2e_OBJECTS", "kubus.e2e.obj.core.configmaps.default.plain");
    assert!(String::from_utf8_lossy(&plain).contains("visible-value"));

    // An update is encrypted again; a restart reads everything back.
    c.kubectl(&["label", "secret", "db", "tier=backend"]).expect_ok();
    assert!(stored(&c, "KUBUS_e2e_OBJECTS", secret_subject).starts_with(b"k8s:enc:aesgcm:v1:key1:"));
    c.restart();
    assert_eq!(read(&c), "aHVudGVyMi1zM2NyM3Q=");
    let labels = c.kubectl(&["get", "secret", "db", "-o", "jsonpath={.metadata.labels.tier}"]).expect_ok();
    assert_eq!(labels, "backend");
    // A bad configuration stops the start with its reason.
    std::fs::write(&file.0, CONFIG.replace("aesgcm", "kms")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubus"))
        .args(["up", "--no-node", "--cluster", "e2e-bad", "--encryption-provider-config", &path, "--data-dir"])
        .arg(c.dir.join("bad"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && err.contains("provider \"kms\" is not supported"), "{err}");
}
