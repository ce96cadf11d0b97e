//! The embedded nats-server is Kubus's own: a port held by another NATS server is refused with
//! the holder named, a client of it refuses (and on a reconnection, ends its process for)
//! another server on its address, and a child killed with SIGKILL comes back on the same
//! address and store, with clients reconnecting by themselves.

use kubus_bus::embedded::EmbeddedError;
use kubus_bus::{EmbeddedNats, Key, Store, StoreConfig};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let dir = TempDir(std::env::temp_dir().join(format!("kubus-{name}-{}-{nanos}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    dir
}

/// A plain nats-server, as a user would run one, killed when the test ends.
struct PlainNats(std::process::Child);
impl Drop for PlainNats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl PlainNats {
    /// On 127.0.0.1:`port`, named `name` when given; returns once it accepts connections.
    fn start(port: u16, name: Option<&str>) -> PlainNats {
        let mut args = vec!["-a".to_string(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        if let Some(name) = name {
            args.extend(["-n".to_string(), name.to_string()]);
        }
        let plain = PlainNats(
            Command::new("nats-server")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server is installed"),
        );
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "plain nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        plain
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The process group of a process, from /proc/<pid>/stat.
fn process_group(pid: &str) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(2).unwrap().to_string()
}

#[tokio::test]
async fn a_port_held_by_another_nats_server_is_refused() {
    let port = free_port();
    let plain = PlainNats::start(port, None);
    let dir = temp_dir("embedded-taken");
    let err = EmbeddedNats::start(&dir.0, &format!("127.0.0.1:{port}"), None).await.err().expect("refused");
    match &err {
        EmbeddedError::PortTaken { holder, .. } => {
            assert!(holder.contains(&format!("pid {}", plain.0.id())) && holder.contains("nats-server"), "{holder}")
        }
        other => panic!("expected PortTaken, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")) && message.contains("--nats-listen"), "{message}");
}

#[tokio::test]
async fn a_killed_server_comes_back_and_clients_reconnect() {
    let dir = temp_dir("embedded-restart");
    let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0", None).await.expect("starts");
    let recorded = std::fs::read_to_string(dir.0.join("nats.listen")).unwrap();
    assert_eq!(format!("nats://{recorded}"), nats.public_url());
    assert_eq!(kubus_bus::embedded::default_listen(&dir.0), recorded);
    let client = kubus_bus::connect_to_embedded(nats.url(), "embedded-test", nats.server_name(), nats.login())
        .await
        .expect("connected to our own server");
    let store = Store::open(client, StoreConfig::default()).await.unwrap();
    let key = Key::new("", "configmaps", Some("default"), "before");
    store.create(&key, bytes::Bytes::from_static(b"{}")).await.unwrap();

    let pid: u32 = std::fs::read_to_string(dir.0.join("nats-server.pid")).unwrap().trim().parse().unwrap();
    // Ctrl-C in a terminal signals the foreground process group: not the child's.
    assert_ne!(process_group(&pid.to_string()), process_group("self"));
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    // Writes succeed again within seconds, on the same store (the object written before is
    // still there).
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    while !nats.is_up() {
        assert!(started.elapsed() < Duration::from_secs(20), "the server never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("server back {:?} after SIGKILL", started.elapsed());
    let after = Key::new("", "configmaps", Some("default"), "after");
    loop {
        if store.create(&after, bytes::Bytes::from_static(b"{}")).await.is_ok() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "writes never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("writes back {:?} after SIGKILL", started.elapsed());
    assert!(nats.is_up());
    assert!(store.get(&key).await.unwrap().is_some());
    let new_pid: u32 = std::fs::read_to_string(dir.0.join("nats-server.pid")).unwrap().trim().parse().unwrap();
    assert_ne!(pid, new_pid);
    nats.stop().await;
    assert!(
        !std::path::Path::new(&format!("/proc/{new_pid}")).exists() || {
            // The stop waits for the child; give the kernel a moment to reap it.
            tokio::time::sleep(Duration::from_millis(200)).await;
            !std::path::Path::new(&format!("/proc/{new_pid}/exe")).exists()
        }
    );
}

#[tokio::test]
async fn only_clients_with_the_password_get_in() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("embedded-auth");
    let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0", None).await.expect("starts");
    // Without credentials, or with a wrong password: refused by the server.
    let wrong = async_nats::ConnectOptions::new().user_and_password("kubus".into(), "not-it".into());
    for options in [async_nats::ConnectOptions::new(), wrong] {
        let refused = options.connect(nats.public_url()).await.expect_err("refused");
        assert!(refused.to_string().to_lowercase().contains("authorization"), "{refused}");
    }
    let client = kubus_bus::connect(nats.url(), "auth-test").await.expect("the password lets in");
    client.flush().await.unwrap();
    // The password and the configuration holding it are the owner's only; a restart keeps it.
    for file in ["nats.password", "nats-server.conf"] {
        let mode = std::fs::metadata(dir.0.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let url = nats.url().to_string();
    nats.stop().await;
    let again =
        EmbeddedNats::start(&dir.0, &kubus_bus::embedded::default_listen(&dir.0), None).await.expect("restarts");
    assert_eq!(again.url(), url);
    again.stop().await;
}

#[tokio::test]
async fn an_ipv6_listen_address_works() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let dir = temp_dir("embedded-ipv6");
    let nats = EmbeddedNats::start(&dir.0, "[::1]:0", None).await.expect("starts on ::1");
    assert!(nats.public_url().starts_with("nats://[::1]:"), "{}", nats.public_url());
    let recorded = std::fs::read_to_string(dir.0.join("nats.listen")).unwrap();
    assert_eq!(format!("nats://{recorded}"), nats.public_url());
    let client = kubus_bus::connect_to_embedded(nats.url(), "ipv6-test", nats.server_name(), nats.login())
        .await
        .expect("connected to our own server over IPv6");
    client.publish("ipv6.test", "hello".into()).await.unwrap();
    client.flush().await.unwrap();
    nats.stop().await;
}

#[tokio::test]
async fn a_client_of_the_embedded_server_refuses_another_server() {
    let port = free_port();
    let _other = PlainNats::start(port, Some("someone-else"));
    let err =
        kubus_bus::connect_to_embedded(&format!("nats://127.0.0.1:{port}"), "test", "kubus-ours", &Default::default())
            .await
            .expect_err("another server refused");
    match &err {
        EmbeddedError::NotOurs { addr, expected, found } => {
            assert_eq!(
                (addr.as_str(), expected.as_str(), found.as_str()),
                (&*format!("127.0.0.1:{port}"), "kubus-ours", "someone-else")
            )
        }
        other => panic!("expected NotOurs, got {other}"),
    }
}

/// The client side of `a_reconnection_to_another_server_ends_the_process`, run in a process of
/// its own (it ends that process); does nothing in a plain test run.
#[tokio::test]
async fn client_process_of_an_embedded_server() {
    let (Ok(url), Ok(name)) = (std::env::var("KUBUS_TEST_EMBEDDED_URL"), std::env::var("KUBUS_TEST_EMBEDDED_NAME"))
    else {
        return;
    };
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    let _client =
        kubus_bus::connect_to_embedded(&url, "client-process", &name, &Default::default()).await.expect("connected");
    println!("connected");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn a_reconnection_to_another_server_ends_the_process() {
    let port = free_port();
    let ours = PlainNats::start(port, Some("kubus-ours"));
    let mut client = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "client_process_of_an_embedded_server", "--nocapture", "--test-threads", "1"])
        .env("KUBUS_TEST_EMBEDDED_URL", format!("nats://127.0.0.1:{port}"))
        .env("KUBUS_TEST_EMBEDDED_NAME", "kubus-ours")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(client.stdout.take().unwrap());
    let (connected_tx, connected) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            // libtest prints the test's name on the same line.
            if line.ends_with("connected") {
                let _ = connected_tx.send(());
            }
        }
    });
    connected.recv_timeout(Duration::from_secs(20)).expect("the client connected to its server");

    // Its server goes, another one takes the address, the client reconnects to it.
    drop(ours);
    let _other = PlainNats::start(port, Some("someone-else"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = client.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = client.kill();
            panic!("the client process went on with another server");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("someone-else"), "{stderr}");
}

/// The control plane's components beside the store log in by nkeys with less than the
/// administrator's rights: the informers read the objects stream (list, then watch) and write
/// nothing; the controller manager and scheduler reach the API subjects and no stream.
#[tokio::test]
async fn component_logins_do_only_their_part() {
    use futures::StreamExt;
    use kubus_bus::nats_users::{component_inbox_prefix, new_nkey, Component};
    use kubus_bus::store::KeyPrefix;
    let dir = temp_dir("embedded-components");
    let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0", None).await.expect("starts");
    let admin = kubus_bus::connect(nats.url(), "admin").await.unwrap();
    let store = Store::open(admin, StoreConfig { cluster: "cp".into(), ..Default::default() }).await.unwrap();
    store.create(&Key::new("", "pods", Some("a"), "before"), "{}".into()).await.unwrap();

    let login = |component| {
        let (public, seed) = new_nkey().unwrap();
        nats.users().register_component("cp", component, &public).unwrap();
        kubus_bus::Login {
            nkey_seed: Some(seed),
            inbox_prefix: Some(component_inbox_prefix("cp", component)),
            ..Default::default()
        }
    };
    let (informers_login, requests_login) = (login(Component::Informers), login(Component::Requests));
    // Denials come back as server errors only (a denied request times out).
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let connect = |name: &'static str, login: kubus_bus::Login| {
        let errors = errors.clone();
        let url = nats.public_url().to_string();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let errors = errors.clone();
                let options = async_nats::ConnectOptions::new()
                    .nkey(login.nkey_seed.clone().unwrap())
                    .custom_inbox_prefix(login.inbox_prefix.clone().unwrap())
                    .event_callback(move |e| {
                        let errors = errors.clone();
                        async move {
                            if let async_nats::Event::ServerError(e) = e {
                                errors.lock().unwrap().push(e.to_string());
                            }
                        }
                    });
                match options.connect(&url).await {
                    Ok(c) => return c,
                    // The server may still be reloading its users.
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("{name}: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("{name} cannot log in: {e}"),
                }
            }
        }
    };

    // The informers list and watch.
    let informers = connect("informers", informers_login).await;
    let reader = Store::attach(informers.clone(), "cp").await.expect("the informers attach");
    let pods = KeyPrefix::new("", "pods", None);
    let (items, rev) = reader.list(&pods).await.expect("the informers list");
    assert_eq!(items.len(), 1);
    let mut watch = reader.watch(Some(&pods), rev).await.expect("the informers watch");
    store.create(&Key::new("", "pods", Some("a"), "after"), "{}".into()).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("an event in time");
    assert!(event.is_some());
    // ... and write nothing: neither an object nor a stream.
    let subject = Key::new("", "pods", Some("a"), "forged").subject(&store.config().root());
    let js = async_nats::jetstream::new(informers.clone());
    let forged =
        tokio::time::timeout(Duration::from_secs(3), async { js.publish(subject, "{}".into()).await?.await }).await;
    assert!(!matches!(forged, Ok(Ok(_))), "the informers' login wrote an object");
    assert!(js.delete_stream(store.config().objects_stream()).await.is_err());

    // The controller manager's and scheduler's login reaches the API subject, and no stream.
    let requests = connect("requests", requests_login).await;
    let js = async_nats::jetstream::new(requests.clone());
    let info = tokio::time::timeout(Duration::from_secs(3), js.get_stream(store.config().objects_stream())).await;
    assert!(!matches!(info, Ok(Ok(_))), "the components' login read the objects stream");
    requests.publish(kubus_bus::api::api_subject("cp"), "x".into()).await.unwrap();
    requests.flush().await.unwrap();
    let seen = errors.lock().unwrap().clone();
    assert!(seen.iter().any(|e| e.contains("Permissions Violation")), "{seen:?}");
    assert!(!seen.iter().any(|e| e.contains("kubus.cp.api\"")), "the API subject was refused: {seen:?}");
    drop(store);
    nats.stop().await;
}
