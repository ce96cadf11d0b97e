//! Joining with bootstrap tokens and what a node's NATS login may do (issue #13): `kubus token
//! create` makes an upstream bootstrap token Secret; with it a node gets its own certificate and
//! nkey; that login reaches the API subjects and its own node's subjects only: not another
//! node's, not the object stream, not every inbox. A bad or deleted token logs in nowhere.
//! (Joining from another network namespace over TLS, with real containers: tests/multinode.rs.)

mod common;
use common::Cluster;
use kubus_bus::api::{ApiClient, ApiRequest};
use kubus_bus::credential::Credential;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Logs in as bootstrap token `token` (retrying while its NATS user is being added).
async fn bootstrap_login(url: &str, token: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let (id, secret) = token.split_once('.').unwrap();
    let mut last = None;
    for _ in 0..20 {
        let options = async_nats::ConnectOptions::new()
            .user_and_password(format!("bootstrap-{id}"), secret.to_string())
            .custom_inbox_prefix(kubus_bus::nats_users::bootstrap_inbox_prefix("e2e", id));
        match options.connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap())
}

/// What a node gets by joining: its certificate (and key) and its nkey seed.
struct Joined {
    credential: Credential,
    seed: String,
}

async fn join(bootstrap: &async_nats::Client, token: &str, node: &str) -> Result<Joined, String> {
    let (nkey, seed) = kubus_bus::nats_users::new_nkey().unwrap();
    let key = kubus_bus::join::new_key().unwrap();
    let req = kubus_bus::join::request("e2e", node, &nkey, &key).unwrap();
    let reply = kubus_bus::join::send(bootstrap, "e2e", token, &req, Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    let cert = reply.certificate.expect("a certificate");
    let credential = Credential::certificate(&cert, &kubus_bus::join::key_pem(&key), "e2e").unwrap();
    Ok(Joined { credential, seed })
}

/// Connects as a joined node, collecting what the server reports (denials come only that way).
async fn node_login(url: &str, node: &str, seed: &str, errors: Arc<Mutex<Vec<String>>>) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .nkey(seed.to_string())
        .custom_inbox_prefix(kubus_bus::nats_users::node_inbox_prefix("e2e", node))
        .event_callback(move |event| {
            let errors = errors.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    errors.lock().unwrap().push(e.to_string().to_lowercase());
                }
            }
        })
        .connect(url)
        .await
        .expect("a joined node logs in with its nkey")
}

fn get(path: &str) -> ApiRequest {
    ApiRequest {
        method: "GET".into(),
        path: path.into(),
        query: String::new(),
        content_type: None,
        accept: Some("application/json".into()),
        body: Vec::new(),
        user_agent: String::new(),
    }
}

#[test]
fn joined_nodes_reach_only_their_own_subjects_and_bad_tokens_nothing() {
    let c = Cluster::start("natsauthz");
    let cmd = common::join_command(&c);
    let id = cmd.token.split_once('.').unwrap().0.to_string();
    // An upstream bootstrap token Secret, which kubeadm's tools read alike.
    let secret = c.get_json(&["secret", "-n", "kube-system", &format!("bootstrap-token-{id}")]);
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    assert!(cmd.ca_cert_hash.starts_with("sha256:") && cmd.ca_cert_hash.len() == 71, "{}", cmd.ca_cert_hash);
    let url = kubus_bus::redact(&c.nats_url());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let bootstrap = bootstrap_login(&url, &cmd.token).await.expect("the token logs in");
        let a = join(&bootstrap, &cmd.token, "node-a").await.expect("node-a joins");
        let b = join(&bootstrap, &cmd.token, "node-b").await.expect("node-b joins");
        // A bootstrap login may do nothing but join: not the API.
        let api = ApiClient::new(bootstrap.clone(), "e2e", "e2e-test").with_credential(Credential::token(&cmd.token));
        let denied = tokio::time::timeout(Duration::from_secs(3), api.send(get("/api/v1/namespaces"))).await;
        assert!(!matches!(denied, Ok(Ok(_))), "a bootstrap login reached the API");
        // A join proof must be signed by the key it is for.
        let mut forged =
            kubus_bus::join::request("e2e", "node-c", "UXXX", &kubus_bus::join::new_key().unwrap()).unwrap();
        forged.public_key =
            kubus_bus::join::request("e2e", "node-c", "UXXX", &kubus_bus::join::new_key().unwrap()).unwrap().public_key;
        let refused = kubus_bus::join::send(&bootstrap, "e2e", &cmd.token, &forged, Duration::from_secs(10)).await;
        assert!(refused.unwrap_err().to_string().contains("proof does not verify"));

        // node-a's login: the API with its own certificate, on its own inbox.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let node_a = node_login(&url, "node-a", &a.seed, errors.clone()).await;
        let api = ApiClient::new(node_a.clone(), "e2e", "kubelet").with_credential(a.credential.clone());
        let me = api.send(get("/api/v1/nodes/node-a")).await.expect("an answer");
        assert_eq!(me.status, 404, "authorized, not there yet: {}", String::from_utf8_lossy(&me.body));
        let other = api.send(get("/api/v1/namespaces/kube-system/secrets")).await.expect("an answer");
        assert_eq!(other.status, 403, "{}", String::from_utf8_lossy(&other.body));
        // node-b's certificate over node-a's login: its answer would go to node-a's inbox.
        let api_b = ApiClient::new(node_a.clone(), "e2e", "kubelet").with_credential(b.credential.clone());
        let stolen = api_b.send(get("/api/v1/nodes/node-b")).await.expect("an answer");
        let body = String::from_utf8_lossy(&stolen.body).into_owned();
        assert_eq!(stolen.status, 403, "{body}");
        assert!(body.contains("answered only on its own inbox"), "{body}");

        // Nothing of node-b's, of the streams, or of others' inboxes.
        let denied_subscriptions = [
            "kubus.e2e.node.node-b.stream",
            "kubus.e2e.node.node-b.stream.x.up",
            "kubus.e2e.node.*.stream",
            "kubus.e2e.obj.>",
            "kubus.e2e.keys.>",
            "kubus.e2e.api",
            "_INBOX.>",
            "_INBOX.e2e.node-node-b.>",
        ];
        let mut subscriptions = Vec::new();
        for subject in denied_subscriptions {
            subscriptions.push(node_a.subscribe(subject.to_string()).await.unwrap());
        }
        for subject in
            ["$JS.API.STREAM.INFO.KUBUS_e2e_OBJECTS", "kubus.e2e.node.node-b.usage", "kubus.e2e.obj.core.pods.x.y"]
        {
            node_a.publish(subject.to_string(), "{}".into()).await.unwrap();
        }
        node_a.flush().await.unwrap();
        let expected = denied_subscriptions.len() + 3;
        // (waited for here, not in a blocking loop: the reports arrive on this runtime)
        for _ in 0..100 {
            if errors.lock().unwrap().len() >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let errors = errors.lock().unwrap().clone();
        for subject in denied_subscriptions {
            let want = format!("permissions violation for subscription to \"{}\"", subject.to_lowercase());
            assert!(errors.iter().any(|e| e.contains(&want)), "{want} in {errors:?}");
        }
        assert!(
            errors
                .iter()
                .any(|e| e.contains("permissions violation for publish to \"$js.api.stream.info.kubus_e2e_objects\"")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("permissions violation for publish to \"kubus.e2e.node.node-b.usage\"")),
            "{errors:?}"
        );
        // ... and it is still connected: its own subjects work.
        assert_eq!(api.send(get("/api/v1/nodes/node-a")).await.unwrap().status, 404);

        // A wrong secret logs in nowhere.
        let refused = async_nats::ConnectOptions::new()
            .user_and_password(format!("bootstrap-{id}"), "0".repeat(16))
            .connect(&url)
            .await
            .expect_err("a wrong secret is refused");
        assert!(refused.to_string().to_lowercase().contains("authorization"), "{refused}");
    });

    // `kubus node` with a made-up token stops with a clear error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubus"))
        .args([
            "node",
            "--cluster",
            "e2e",
            "--nats",
            &url,
            "--token",
            "abcdef.0123456789abcdef",
            "--node-name",
            "node-x",
        ])
        .arg("--data-dir")
        .arg(c.dir.join("node-x"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("refused bootstrap token \"abcdef\""), "{text}");
    assert!(!c.dir.join("node-x/identity/node.nk").exists());

    // `kubus token list` and `delete` as kubeadm's: deleting takes the token's login away.
    let kubus_token = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubus"))
            .args(["token"])
            .args(args)
            .args(["--cluster", "e2e", "--data-dir"])
            .arg(&c.dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, listed, err) = kubus_token(&["list"]);
    assert!(ok, "{err}");
    let header: Vec<&str> =
        listed.lines().next().unwrap().split("   ").map(str::trim).filter(|s| !s.is_empty()).collect();
    assert_eq!(header, ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"], "{listed}");
    let row = listed.lines().find(|l| l.starts_with(&cmd.token)).unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains(" 23h ") && row.contains("authentication,signing"), "{row}");
    assert!(row.contains("system:bootstrappers:kubeadm:default-node-token"), "{row}");
    let (ok, _, err) = kubus_token(&["delete", "not-a-token"]);
    assert!(!ok && err.contains("didn't match pattern"), "{err}");
    let (ok, out, err) = kubus_token(&["delete", &cmd.token]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("bootstrap token \"{id}\" deleted"));
    assert!(!kubus_token(&["list"]).1.contains(&cmd.token));
    rt.block_on(async {
        let (id, secret) = cmd.token.split_once('.').unwrap();
        let mut refused = false;
        for _ in 0..20 {
            let login = async_nats::ConnectOptions::new()
                .user_and_password(format!("bootstrap-{id}"), secret.to_string())
                .connect(&url)
                .await;
            if login.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(refused, "a deleted token still logs in");
    });
}
