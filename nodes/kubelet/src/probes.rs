//! Container probes (exec, httpGet, tcpSocket) with upstream's timing: initialDelaySeconds,
//! periodSeconds, timeoutSeconds, successThreshold, failureThreshold. One prober task per
//! container and probe kind reports each change of its result to the pod worker; liveness and
//! readiness probes wait until the startup probe (if any) has succeeded.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use prometheus::{register_int_counter_vec, IntCounterVec};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

static PROBES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_kubelet_probes_total",
        "Container probes run, by kind and result",
        &["probe", "result"]
    )
    .expect("registers once")
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Startup, ProbeKind::Liveness, ProbeKind::Readiness];

    /// The container's probe of this kind.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => c.startup_probe.as_ref(),
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
        }
    }
    fn label(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }
    /// As events name them ("Liveness probe failed: ...").
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// A probe's result crossing its threshold.
#[derive(Debug, Clone)]
pub struct ProbeUpdate {
    pub container: String,
    /// Which run of the container this prober watches.
    pub container_id: String,
    pub kind: ProbeKind,
    pub success: bool,
    /// Why it failed (for the Unhealthy event).
    pub message: String,
}

/// Runs a command in the container: exit code and combined output.
pub type ExecFn =
    Arc<dyn Fn(Vec<String>, Duration) -> BoxFuture<'static, Result<(i32, Vec<u8>), String>> + Send + Sync>;

pub struct ProbeTarget {
    pub container: String,
    pub container_id: String,
    pub pod_ip: Option<IpAddr>,
    pub ports: Vec<ContainerPort>,
    pub exec: ExecFn,
}

/// Runs `probe` until the returned task is aborted.
pub fn spawn(
    kind: ProbeKind,
    probe: Probe,
    target: ProbeTarget,
    mut started: watch::Receiver<bool>,
    updates: mpsc::UnboundedSender<ProbeUpdate>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let count = |v: Option<i32>, d: u64| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(d);
        let secs = |v: Option<i32>, d: u64| Duration::from_secs(count(v, d));
        let initial = secs(probe.initial_delay_seconds, 0);
        let period = secs(probe.period_seconds, 10).max(Duration::from_secs(1));
        let timeout = secs(probe.timeout_seconds, 1).max(Duration::from_secs(1));
        let success_threshold = count(probe.success_threshold, 1).max(1);
        let failure_threshold = count(probe.failure_threshold, 3).max(1);
        if kind != ProbeKind::Startup {
            while !*started.borrow() {
                if started.changed().await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(initial).await;
        let (mut successes, mut failures) = (0u64, 0u64);
        let mut reported: Option<bool> = None;
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let result = run_once(&probe, &target, timeout).await;
            PROBES.with_label_values(&[kind.label(), if result.is_ok() { "success" } else { "failure" }]).inc();
            let message = match &result {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                    String::new()
                }
                Err(m) => {
                    failures += 1;
                    successes = 0;
                    m.clone()
                }
            };
            let verdict = if successes >= success_threshold {
                Some(true)
            } else if failures >= failure_threshold {
                Some(false)
            } else {
                None
            };
            // Failures are reported every time they cross the threshold (each one may
            // restart the container); successes once per change.
            let send = match verdict {
                Some(true) => reported != Some(true),
                Some(false) => true,
                None => false,
            };
            if let Some(v) = verdict.filter(|_| send) {
                reported = Some(v);
                if !v {
                    failures = 0;
                }
                let update = ProbeUpdate {
                    container: target.container.clone(),
                    container_id: target.container_id.clone(),
                    kind,
                    success: v,
                    message,
                };
                if updates.send(update).is_err() {
                    return;
                }
                if kind == ProbeKind::Startup && v {
                    return;
                }
            }
        }
    })
}

async fn run_once(probe: &Probe, target: &ProbeTarget, timeout: Duration) -> Result<(), String> {
    if let Some(argv) = probe.exec.as_ref().and_then(|e| e.command.clone()) {
        let (code, out) = (target.exec)(argv, timeout).await?;
        return if code == 0 {
            Ok(())
        } else {
            Err(format!("command exited with {code}: {}", String::from_utf8_lossy(&out).trim_end()))
        };
    }
    if let Some(g) = &probe.http_get {
        let host = match g.host.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => h.parse::<IpAddr>().map_err(|_| format!("invalid probe host {h}"))?,
            None => target.pod_ip.ok_or("the pod has no IP yet")?,
        };
        let port = resolve_port(&g.port, &target.ports)?;
        if g.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("https")) {
            return Err("HTTPS probes are not supported by this node".into());
        }
        let path = g.path.as_deref().unwrap_or("/");
        let headers: Vec<(String, String)> =
            g.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
        return tokio::time::timeout(timeout, http_get(host, port, path, &headers))
            .await
            .map_err(|_| format!("Get \"http://{host}:{port}{path}\": context deadline exceeded"))?;
    }
    if let Some(t) = &probe.tcp_socket {
        let host = match t.host.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => h.parse::<IpAddr>().map_err(|_| format!("invalid probe host {h}"))?,
            None => target.pod_ip.ok_or("the pod has no IP yet")?,
        };
        let port = resolve_port(&t.port, &target.ports)?;
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    Err("the probe has no handler this node supports (exec, httpGet, tcpSocket)".into())
}

/// A port number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let name = match port {
        IntOrString::Int(n) => return u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(s) => s.as_str(),
    };
    if let Ok(n) = name.parse::<u16>() {
        return Ok(n);
    }
    ports
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .ok_or_else(|| format!("couldn't find port {name} in the container's ports"))
}

/// A GET with HTTP/1.1; 200-399 is success, as upstream.
async fn http_get(host: IpAddr, port: u16, path: &str, headers: &[(String, String)]) -> Result<(), String> {
    let url = format!("http://{host}:{port}{path}");
    let mut stream = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
    let host_header = if host.is_ipv6() { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        let n = stream.read(&mut buf[got..]).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        if n == 0 || buf[..got + n].windows(2).any(|w| w == b"\r\n") {
            got += n;
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_ports() {
        let ports = vec![ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() }];
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &ports).unwrap(), 8080);
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports).unwrap(), 80);
        assert!(resolve_port(&IntOrString::String("nope".into()), &ports).is_err());
    }

    #[tokio::test]
    async fn http_and_tcp_probes_against_real_listeners() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut b = [0u8; 512];
                let _ = s.read(&mut b).await;
                n += 1;
                let status = if n == 1 { "200 OK" } else { "503 Service Unavailable" };
                let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let exec: ExecFn = Arc::new(|_, _| Box::pin(async { Ok((1, b"no".to_vec())) }));
        let target = ProbeTarget {
            container: "c".into(),
            container_id: "id".into(),
            pod_ip: Some("127.0.0.1".parse().unwrap()),
            ports: vec![],
            exec,
        };
        let t = Duration::from_secs(1);
        let probe = self::probe(json!({"httpGet": {"path": "/", "port": port}}));
        assert!(run_once(&probe, &target, t).await.is_ok());
        assert!(run_once(&probe, &target, t).await.unwrap_err().contains("503"));
        assert!(run_once(&self::probe(json!({"tcpSocket": {"port": port}})), &target, t).await.is_ok());
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(run_once(&self::probe(json!({"tcpSocket": {"port": closed}})), &target, t).await.is_err());
        assert!(run_once(&self::probe(json!({"exec": {"command": ["x"]}})), &target, t)
            .await
            .unwrap_err()
            .contains("exited with 1"));
    }
}
