//! HTTPS and authentication (issue #13) with the real kubectl: the admin kubeconfig `kubus up`
//! writes reaches the API over TLS with the cluster CA checked; a client certificate the
//! cluster CA signed (made here with openssl, as an operator would) names the user and groups
//! RBAC sees; anonymous requests, foreign certificates and unknown tokens get a bare 401 except
//! on the health and version paths; plain HTTP is refused on the HTTPS port; `--insecure-http`
//! is refused beyond loopback.

mod common;
use common::{raw_request, unique_dir, Cluster};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A directory of the test's own, removed when the test ends, passed or failed.
struct WorkDir(std::path::PathBuf);

impl WorkDir {
    fn new(tag: &str) -> WorkDir {
        let dir = unique_dir(tag);
        std::fs::create_dir_all(&dir).unwrap();
        WorkDir(dir)
    }
}

impl std::ops::Deref for WorkDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A client certificate for `cn` in groups `orgs`, signed by the CA whose files are in `ca_dir`;
/// the (cert, key) paths.
fn client_cert(dir: &Path, ca_dir: &Path, cn: &str, orgs: &[&str]) -> (String, String) {
    let subject: String = std::iter::once(format!("/CN={cn}")).chain(orgs.iter().map(|o| format!("/O={o}"))).collect();
    let (key, csr, crt) = (format!("{cn}.key"), format!("{cn}.csr"), format!("{cn}.crt"));
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key]);
    openssl(dir, &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr]);
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage = clientAuth\n").unwrap();
    let (ca_crt, ca_key) = (ca_dir.join("ca.crt"), ca_dir.join("ca.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            ca_crt.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "client.ext",
            "-out",
            &crt,
        ],
    );
    (dir.join(crt).display().to_string(), dir.join(key).display().to_string())
}

fn kubeconfig_for(c: &Cluster, dir: &Path, name: &str, cert: &str, key: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.kubeconfig"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    certificate-authority: {}\n    server: https://127.0.0.1:{}\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: {name}\n    namespace: default\ncurrent-context: c\n\
         users:\n- name: {name}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n",
        c.dir.join("pki/ca.crt").display(),
        c.port
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl").env("KUBECONFIG", kubeconfig).args(args).output().expect("kubectl runs")
}

#[test]
fn https_client_certificates_and_anonymous_requests() {
    let c = Cluster::start("authn");
    let work = WorkDir::new("authn-certs");

    // The admin kubeconfig: https, CA and admin certificate inline, readable by its owner only.
    let kubeconfig = std::fs::read_to_string(c.kubeconfig()).unwrap();
    assert!(kubeconfig.contains(&format!("server: https://127.0.0.1:{}", c.port)), "{kubeconfig}");
    assert!(kubeconfig.contains("certificate-authority-data:") && kubeconfig.contains("client-key-data:"));
    let mode = std::fs::metadata(c.kubeconfig()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the kubeconfig holds a private key");
    let me = c.kubectl(&["auth", "whoami"]).expect_ok();
    assert!(me.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Username", "kubernetes-admin"]), "{me}");
    assert!(me.contains("[system:masters system:authenticated]"), "{me}");

    // Anonymous: the public-info paths answer, everything else is a bare 401 Status.
    let anonymous = c.endpoint().anonymous();
    let get = |path: &str, headers: &[(&str, &str)]| {
        raw_request(&anonymous, "GET", path, "application/json", headers, None, None).expect("request")
    };
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(get(path, &[]).0, 200, "{path} is public");
    }
    // Upstream's Status, with nothing that says why.
    let unauthorized = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    let status = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap_or_default();
    for path in ["/api/v1/namespaces", "/api/v1/namespaces/kube-system/secrets", "/metrics", "/apis", "/"] {
        let (code, body) = get(path, &[]);
        assert_eq!((code, status(&body)), (401, unauthorized.clone()), "{path}");
    }
    // A token no authenticator knows is refused the same way, even on a public path.
    let (code, body) = get("/api/v1/namespaces", &[("Authorization", "Bearer not-a-token")]);
    assert_eq!((code, status(&body)), (401, unauthorized));
    assert_eq!(get("/version", &[("Authorization", "Bearer not-a-token")]).0, 401);
    // Impersonation asked by an anonymous client gets no further.
    assert_eq!(get("/api/v1/namespaces", &[("Impersonate-User", "kubernetes-admin")]).0, 401);

    // kubectl with a made-up token is told it is unauthorized.
    let anon_config = work.join("token.kubeconfig");
    std::fs::write(
        &anon_config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    certificate-authority: {}\n    server: https://127.0.0.1:{}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: nobody\ncurrent-context: c\nusers:\n- name: nobody\n  user:\n    token: not-a-token\n",
            c.dir.join("pki/ca.crt").display(),
            c.port
        ),
    )
    .unwrap();
    let out = kubectl_with(&anon_config, &["get", "pods"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("You must be logged in to the server"), "{err}");

    // A certificate the cluster CA signed: CN is the user, O the groups; RBAC decides the rest.
    let (cert, key) = client_cert(&work, &c.dir.join("pki"), "jane", &["dev", "qa"]);
    let jane = kubeconfig_for(&c, &work, "jane", &cert, &key);
    let out = kubectl_with(&jane, &["auth", "whoami"]);
    let who = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(who.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Username", "jane"]), "{who}");
    assert!(who.contains("[dev qa system:authenticated]"), "{who}");
    let out = kubectl_with(&jane, &["get", "pods"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{err}"
    );
    c.kubectl(&["create", "rolebinding", "dev-view", "--clusterrole=view", "--group=dev", "-n", "default"]).expect_ok();
    common::eventually(10, || kubectl_with(&jane, &["get", "pods"]).status.success().then_some(()));
    // The same user may not impersonate anyone.
    let out = kubectl_with(&jane, &["get", "pods", "--as=kubernetes-admin"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot impersonate"), "{out:?}");

    // A certificate from another CA is refused with the same bare 401.
    let other_ca = work.join("other-ca");
    std::fs::create_dir_all(&other_ca).unwrap();
    openssl(&other_ca, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
    openssl(
        &other_ca,
        &["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=other-ca", "-days", "1", "-out", "ca.crt"],
    );
    let (cert, key) = client_cert(&work, &other_ca, "mallory", &["system:masters"]);
    let mallory = kubeconfig_for(&c, &work, "mallory", &cert, &key);
    let out = kubectl_with(&mallory, &["get", "pods"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("You must be logged in to the server"), "{err}");

    // kubectl checks the server against the cluster CA: another CA's trust fails the handshake.
    let wrong_trust = work.join("wrong-trust.kubeconfig");
    let text = std::fs::read_to_string(&jane)
        .unwrap()
        .replace(&c.dir.join("pki/ca.crt").display().to_string(), &other_ca.join("ca.crt").display().to_string());
    std::fs::write(&wrong_trust, text).unwrap();
    let out = kubectl_with(&wrong_trust, &["get", "pods"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("certificate signed by unknown authority"), "{err}");

    // Plain HTTP to the HTTPS port gets no API at all.
    let plain = common::raw_request(
        &kubus_bench::kubeconfig::Endpoint::plain(&format!("127.0.0.1:{}", c.port)),
        "GET",
        "/api/v1/namespaces",
        "application/json",
        &[],
        None,
        None,
    );
    // Told in upstream's (Go's) words.
    let (code, body) = plain.expect("an answer");
    assert_eq!((code, body.as_str()), (400, "Client sent an HTTP request to an HTTPS server.\n"));
    let metrics = c.http("GET", "/metrics", None, None).1;
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.lines().any(|l| l.starts_with("apiserver_tls_handshake_errors_total ") && !l.ends_with(" 0")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("authentication_attempts{result=\"failure\"}")), "{text}");
}

#[test]
fn insecure_http_is_for_loopback_only() {
    let dir = WorkDir::new("insecure");
    let out = Command::new(env!("CARGO_BIN_EXE_kubus"))
        .args(["up", "--no-node", "--insecure-http", "--api-address", "0.0.0.0", "--data-dir"])
        .arg(&*dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--insecure-http") && err.contains("loopback"), "{err}");
    drop(dir);

    // On loopback it serves plain HTTP, every request the administrator, and says so in the kubeconfig.
    let c = Cluster::start_with("insecure", &["--insecure-http"]);
    let kubeconfig = std::fs::read_to_string(c.kubeconfig()).unwrap();
    assert!(kubeconfig.contains(&format!("server: http://127.0.0.1:{}", c.port)), "{kubeconfig}");
    let me = c.kubectl(&["auth", "whoami"]).expect_ok();
    assert!(me.contains("kubernetes-admin"), "{me}");
    assert!(!c.dir.join("pki").exists(), "no PKI is made for plain HTTP");
}

/// A kubeconfig that trusts the cluster CA and presents only `token`.
fn token_kubeconfig(c: &Cluster, dir: &Path, name: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.kubeconfig"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    certificate-authority: {}\n    server: https://127.0.0.1:{}\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: {name}\ncurrent-context: c\n\
         users:\n- name: {name}\n  user:\n    token: {token}\n",
        c.dir.join("pki/ca.crt").display(),
        c.port
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn service_account_tokens_carry_their_account_permissions() {
    use base64::Engine as _;
    let c = Cluster::start("satoken");
    let work = WorkDir::new("satoken");
    c.kubectl(&["create", "namespace", "team-a"]).expect_ok();
    c.kubectl(&["create", "serviceaccount", "reader", "-n", "team-a"]).expect_ok();
    c.kubectl(&["create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", "team-a"]).expect_ok();
    c.kubectl(&[
        "create",
        "rolebinding",
        "reader",
        "--role=pod-reader",
        "--serviceaccount=team-a:reader",
        "-n",
        "team-a",
    ])
    .expect_ok();
    let token = c.kubectl(&["create", "token", "reader", "-n", "team-a"]).expect_ok().trim().to_string();
    let reader = token_kubeconfig(&c, &work, "reader", &token);

    // Who the token is, as upstream names a ServiceAccount.
    let out = kubectl_with(&reader, &["auth", "whoami"]);
    let who = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        who.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Username", "system:serviceaccount:team-a:reader"]),
        "{who}"
    );
    assert!(who.contains("[system:serviceaccounts system:serviceaccounts:team-a system:authenticated]"), "{who}");
    assert!(who.contains("authentication.kubernetes.io/credential-id") && who.contains("JTI="), "{who}");

    // Its Role: pods in its namespace, nothing elsewhere; can-i agrees.
    let out = kubectl_with(&reader, &["get", "pods", "-n", "team-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kubectl_with(&reader, &["get", "pods", "-n", "default"]);
    assert!(
        stderr(&out).contains(r#"pods is forbidden: User "system:serviceaccount:team-a:reader" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&kubectl_with(&reader, &["auth", "can-i", "list", "pods", "-n", "team-a"])).trim(), "yes");
    assert_eq!(stdout(&kubectl_with(&reader, &["auth", "can-i", "list", "pods", "-n", "default"])).trim(), "no");
    assert_eq!(stdout(&kubectl_with(&reader, &["auth", "can-i", "delete", "pods", "-n", "team-a"])).trim(), "no");

    // TokenReview answers for a good token and refuses a bad one.
    let review = |t: &str| {
        let body =
            serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": t}});
        // Client-side validation of a kind without PATCH needs /openapi/v2, not served yet.
        let out =
            c.kubectl_stdin(&["create", "--validate=false", "-f", "-", "-o", "json"], &body.to_string()).expect_ok();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["status"].clone()
    };
    let good = review(&token);
    assert_eq!(good["authenticated"], true, "{good}");
    assert_eq!(good["user"]["username"], "system:serviceaccount:team-a:reader", "{good}");
    assert_eq!(good["audiences"], serde_json::json!(["https://kubernetes.default.svc.cluster.local"]), "{good}");
    let bad = review("not-a-token");
    assert!(bad["authenticated"] != true && bad["error"].is_string(), "{bad}");

    // Forgeries: another subject under the same signature, and an HS256 token (the old scheme).
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "system:serviceaccount:kube-system:default".into();
    claims["kubernetes.io"]["namespace"] = "kube-system".into();
    let forged = format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
    let hs256 = format!("{}.{}.{}", b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#), parts[1], b64.encode([7u8; 32]));
    let none = format!("{}.{}.", b64.encode(r#"{"alg":"none"}"#), parts[1]);
    for t in [&forged, &hs256, &none] {
        let out = kubectl_with(&token_kubeconfig(&c, &work, "forged", t), &["get", "pods", "-n", "team-a"]);
        assert!(stderr(&out).contains("You must be logged in to the server"), "{}", stderr(&out));
    }
    // Every ServiceAccount may read the issuer's discovery document and public key, so other
    // systems can check these tokens; the key is the one that signed the token.
    let bearer = format!("Bearer {token}");
    let anonymous = c.endpoint().anonymous();
    let get_as_reader = |path: &str| {
        let (code, body) =
            raw_request(&anonymous, "GET", path, "application/json", &[("Authorization", &bearer)], None, None)
                .unwrap();
        (code, serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default())
    };
    let (code, discovery) = get_as_reader("/.well-known/openid-configuration");
    assert_eq!((code, discovery["issuer"].as_str()), (200, Some("https://kubernetes.default.svc.cluster.local")));
    assert_eq!(discovery["jwks_uri"], "https://kubernetes.default.svc.cluster.local/openid/v1/jwks");
    let (code, jwks) = get_as_reader("/openid/v1/jwks");
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!((code, &jwks["keys"][0]["kid"]), (200, &header["kid"]), "{jwks}");
    assert_eq!((jwks["keys"][0]["kty"].as_str(), jwks["keys"][0]["crv"].as_str()), (Some("EC"), Some("P-256")));
    let anon = raw_request(&anonymous, "GET", "/openid/v1/jwks", "application/json", &[], None, None).unwrap();
    assert_eq!(anon.0, 401);
    // The signing key is nowhere in the API.
    c.kubectl(&["get", "secret", "-n", "kube-system", "kubus-service-account-signing-key"]).expect_err("NotFound");
    let secrets = c.kubectl(&["get", "secrets", "-A", "-o", "name"]).expect_ok();
    assert!(!secrets.contains("signing"), "{secrets}");

    // A pod's token is its own ServiceAccount's only.
    c.kubectl(&["run", "other", "-n", "team-a", "--image=busybox", "--restart=Never"]).expect_ok();
    c.kubectl(&["create", "token", "reader", "-n", "team-a", "--bound-object-kind=Pod", "--bound-object-name=other"])
        .expect_err(
            r#"cannot bind token for serviceaccount "reader" to pod running with different serviceaccount name."#,
        );
    // A token bound to a pod lives as long as the pod.
    let as_reader = r#"--overrides={"spec": {"serviceAccountName": "reader"}}"#;
    c.kubectl(&["run", "worker", "-n", "team-a", "--image=busybox", "--restart=Never", as_reader]).expect_ok();
    let bound = c
        .kubectl(&[
            "create",
            "token",
            "reader",
            "-n",
            "team-a",
            "--bound-object-kind=Pod",
            "--bound-object-name=worker",
        ])
        .expect_ok()
        .trim()
        .to_string();
    let bound_config = token_kubeconfig(&c, &work, "bound", &bound);
    let out = kubectl_with(&bound_config, &["auth", "whoami", "-o", "json"]);
    assert!(
        stdout(&out).contains("authentication.kubernetes.io/pod-name") && stdout(&out).contains("worker"),
        "{out:?}"
    );
    c.kubectl(&["delete", "pod", "worker", "-n", "team-a", "--grace-period=0", "--force"]).expect_ok();
    common::eventually(10, || {
        stderr(&kubectl_with(&bound_config, &["get", "pods", "-n", "team-a"]))
            .contains("You must be logged in to the server")
            .then_some(())
    });
    // A pod of the same name later is another pod: the token stays refused.
    c.kubectl(&["run", "worker", "-n", "team-a", "--image=busybox", "--restart=Never", as_reader]).expect_ok();
    assert!(stderr(&kubectl_with(&bound_config, &["get", "pods", "-n", "team-a"])).contains("You must be logged in"));

    // Deleting the ServiceAccount revokes its tokens.
    c.kubectl(&["delete", "serviceaccount", "reader", "-n", "team-a"]).expect_ok();
    common::eventually(10, || {
        stderr(&kubectl_with(&reader, &["get", "pods", "-n", "team-a"])).contains("You must be logged in").then_some(())
    });
}

#[test]
fn a_pod_reaches_the_api_through_the_kubernetes_service_as_its_service_account() {
    let c = Cluster::start_with_node("incluster", &[]);
    c.kubectl(&["create", "serviceaccount", "lister"]).expect_ok();
    c.kubectl(&["create", "role", "pod-lister", "--verb=get,list", "--resource=pods"]).expect_ok();
    c.kubectl(&["create", "rolebinding", "lister", "--role=pod-lister", "--serviceaccount=default:lister"]).expect_ok();
    // The kubernetes Service points at the API server's HTTPS port on the node's address.
    let endpoints = c.get_json(&["endpoints", "kubernetes"]);
    assert_eq!(endpoints["subsets"][0]["ports"][0]["port"], c.port, "{endpoints}");
    assert_eq!(endpoints["subsets"][0]["ports"][0]["name"], "https", "{endpoints}");
    let service = c.get_json(&["service", "kubernetes"]);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], c.port, "{service}");
    // Every namespace holds the cluster CA for in-cluster clients.
    common::eventually(30, || {
        let cm = c.get_json(&["configmap", "kube-root-ca.crt"]);
        let ca = std::fs::read_to_string(c.dir.join("pki/ca.crt")).unwrap();
        (cm["data"]["ca.crt"] == ca.as_str()).then_some(())
    });
    // kubectl inside the pod (the host's static binary), with nothing but what the pod was
    // given: the kubernetes Service's environment, the token, CA and namespace files.
    let kubectl = std::fs::canonicalize(
        String::from_utf8(Command::new("sh").args(["-c", "command -v kubectl"]).output().unwrap().stdout)
            .unwrap()
            .trim(),
    )
    .unwrap();
    // kube-proxy may not have the Service's endpoints yet when the pod starts: wait for them.
    let script = "K=/opt/kubectl; SA=/var/run/secrets/kubernetes.io/serviceaccount; \
                  for i in $(seq 30); do $K version >/dev/null 2>&1 && break; sleep 1; done; \
                  echo ns=$(cat $SA/namespace); echo host=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; \
                  $K get pods -o name; echo list=$?; $K get pods -n kube-system 2>&1; echo other=$?; $K auth whoami 2>&1";
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n  serviceAccountName: lister\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, '{script}']\n    env: [{{name: HOME, value: /tmp}}]\n    volumeMounts: [{{name: kubectl, mountPath: /opt/kubectl, readOnly: true}}]\n  volumes: [{{name: kubectl, hostPath: {{path: {}, type: File}}}}]\n",
        kubectl.display()
    ));
    let pod = c.wait_pod("client", 120, "Succeeded or Failed", |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    });
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["name"].as_str().unwrap_or("").starts_with("kube-api-access-")), "{pod}");
    let logs = c.kubectl(&["logs", "client"]).expect_ok();
    let service_ip = c.get_json(&["service", "kubernetes"])["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(logs.contains("ns=default") && logs.contains(&format!("host={service_ip}:443")), "{logs}");
    assert!(logs.contains("pod/client") && logs.contains("list=0"), "{logs}");
    assert!(
        logs.contains(r#"pods is forbidden: User "system:serviceaccount:default:lister" cannot list resource "pods" in API group "" in the namespace "kube-system""#)
            && logs.contains("other=1"),
        "{logs}"
    );
    assert!(logs.contains("authentication.kubernetes.io/pod-name") && logs.contains("client"), "{logs}");
}
