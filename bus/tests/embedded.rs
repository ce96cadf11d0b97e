//! The embedded nats-server is Kubus's own: a port held by another NATS server is refused with
//! the holder named, and a child killed with SIGKILL comes back on the same address and store,
//! with clients reconnecting by themselves.

use kubus_bus::embedded::EmbeddedError;
use kubus_bus::{EmbeddedNats, Key, Store, StoreConfig};
use std::path::PathBuf;
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn a_port_held_by_another_nats_server_is_refused() {
    let port = free_port();
    let plain = PlainNats(
        std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is installed"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "plain nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dir = temp_dir("embedded-taken");
    let err = EmbeddedNats::start(&dir.0, &format!("127.0.0.1:{port}")).await.err().expect("refused");
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
    let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0").await.expect("starts");
    let recorded = std::fs::read_to_string(dir.0.join("nats.listen")).unwrap();
    assert_eq!(format!("nats://{recorded}"), nats.url());
    assert_eq!(kubus_bus::embedded::default_listen(&dir.0), recorded);
    let client = kubus_bus::connect(nats.url(), "embedded-test").await.unwrap();
    nats.verify(&client).await.expect("connected to our own server");
    let store = Store::open(client, StoreConfig::default()).await.unwrap();
    let key = Key::new("", "configmaps", Some("default"), "before");
    store.create(&key, bytes::Bytes::from_static(b"{}")).await.unwrap();

    let pid: u32 = std::fs::read_to_string(dir.0.join("nats-server.pid")).unwrap().trim().parse().unwrap();
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
