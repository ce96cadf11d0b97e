//! The actions probes and lifecycle hooks run, with one runner for both (upstream's prober and
//! lifecycle handler runner share their exec and HTTP code the same way): `exec` in the
//! container, `httpGet` over HTTP or HTTPS (the certificate is not verified, as upstream's
//! probes and hooks do not), `tcpSocket`, `grpc` (grpc.health.v1 Health/Check over HTTP/2
//! cleartext) and `sleep`. What differs between the two uses is how a result is judged: a probe
//! fails on an HTTP status outside 200-399, a hook only when the request itself fails.

use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    ContainerPort, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, SleepAction, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Runs a command in the container: exit code and combined output.
pub type ExecFn =
    Arc<dyn Fn(Vec<String>, Duration) -> BoxFuture<'static, Result<(i32, Vec<u8>), String>> + Send + Sync>;

/// The container an action runs against.
pub struct Target {
    /// The pod's namespace, name and uid (the probes' metric labels).
    pub pod: (String, String, String),
    pub container: String,
    pub container_id: String,
    /// The address `httpGet`, `tcpSocket` and `grpc` go to when they name no host.
    pub pod_ip: Option<IpAddr>,
    /// The container's ports, for named ports.
    pub ports: Vec<ContainerPort>,
    pub exec: ExecFn,
}

/// What a probe or a hook does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Exec(Vec<String>),
    HttpGet(HTTPGetAction),
    TcpSocket(TCPSocketAction),
    Grpc(GRPCAction),
    Sleep(i64),
}

impl Action {
    /// The probe's handler; None when it has none (the API server refuses such a probe).
    pub fn of_probe(p: &Probe) -> Option<Action> {
        if let Some(e) = &p.exec {
            return Some(Action::Exec(e.command.clone().unwrap_or_default()));
        }
        if let Some(g) = &p.http_get {
            return Some(Action::HttpGet(g.clone()));
        }
        if let Some(t) = &p.tcp_socket {
            return Some(Action::TcpSocket(t.clone()));
        }
        p.grpc.as_ref().map(|g| Action::Grpc(g.clone()))
    }

    /// The lifecycle hook's handler (tcpSocket is accepted by the API for compatibility and,
    /// as upstream, does nothing: None).
    pub fn of_hook(h: &LifecycleHandler) -> Option<Action> {
        if let Some(e) = &h.exec {
            return Some(Action::Exec(e.command.clone().unwrap_or_default()));
        }
        if let Some(g) = &h.http_get {
            return Some(Action::HttpGet(g.clone()));
        }
        h.sleep.as_ref().map(|SleepAction { seconds }| Action::Sleep(*seconds))
    }
}

/// Who runs the action: results are judged, and requests identify themselves, as upstream's
/// prober and lifecycle handlers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Probe,
    Hook,
}

impl Use {
    fn user_agent(self) -> &'static str {
        match self {
            Use::Probe => "kube-probe/1.32",
            Use::Hook => "kube-lifecycle/1.32",
        }
    }
}

/// Runs `action` once within `timeout`; the error is the message upstream reports.
pub async fn run(action: &Action, target: &Target, purpose: Use, timeout: Duration) -> Result<(), String> {
    match action {
        Action::Exec(argv) => {
            let (code, out) = (target.exec)(argv.clone(), timeout).await?;
            if code == 0 {
                return Ok(());
            }
            let out = String::from_utf8_lossy(&out);
            Err(match purpose {
                Use::Probe => format!("command exited with {code}: {}", out.trim_end()),
                Use::Hook => format!("command '{}' exited with {code}: {out}", argv.join(" ")),
            })
        }
        Action::HttpGet(g) => {
            let host = host_of(g.host.as_deref(), target)?;
            let port = resolve_port(&g.port, &target.ports)?;
            let https = g.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("https"));
            let path = g.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
            let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
            let url = format!("{}://{}{path}", if https { "https" } else { "http" }, host_port(host, port));
            let headers: Vec<(String, String)> =
                g.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
            let req =
                HttpRequest { host, port, https, path: &path, headers: &headers, user_agent: purpose.user_agent() };
            let code = tokio::time::timeout(timeout, http_get(&req))
                .await
                .map_err(|_| {
                    format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
                })?
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            match purpose {
                Use::Probe if !(200..400).contains(&code) => Err(format!("HTTP probe failed with statuscode: {code}")),
                _ => Ok(()),
            }
        }
        Action::TcpSocket(t) => {
            let host = host_of(t.host.as_deref(), target)?;
            let port = resolve_port(&t.port, &target.ports)?;
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("dial tcp {}: {e}", host_port(host, port))),
                Err(_) => Err(format!("dial tcp {}: i/o timeout", host_port(host, port))),
            }
        }
        Action::Grpc(g) => {
            let host = target.pod_ip.ok_or("the pod has no IP yet")?;
            let port = u16::try_from(g.port).map_err(|_| format!("invalid port {}", g.port))?;
            grpc_health_check(host, port, g.service.as_deref().unwrap_or(""), timeout).await
        }
        Action::Sleep(secs) => {
            // Bounded by the caller's timeout: a preStop sleep ends with the grace period.
            let d = Duration::from_secs(u64::try_from(*secs).unwrap_or(0));
            match tokio::time::timeout(timeout, tokio::time::sleep(d)).await {
                Ok(()) => Ok(()),
                Err(_) => Err("container terminated before sleep hook finished".into()),
            }
        }
    }
}

fn host_of(host: Option<&str>, target: &Target) -> Result<IpAddr, String> {
    match host.filter(|h| !h.is_empty()) {
        Some(h) => h.parse::<IpAddr>().map_err(|_| format!("invalid host {h}")),
        None => target.pod_ip.ok_or_else(|| "the pod has no IP yet".to_string()),
    }
}

fn host_port(host: IpAddr, port: u16) -> String {
    if host.is_ipv6() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
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

struct HttpRequest<'a> {
    host: IpAddr,
    port: u16,
    https: bool,
    path: &'a str,
    headers: &'a [(String, String)],
    user_agent: &'static str,
}

/// A GET with HTTP/1.1 over TCP or TLS; the response's status code.
async fn http_get(req: &HttpRequest<'_>) -> Result<u16, String> {
    let tcp = tokio::net::TcpStream::connect((req.host, req.port))
        .await
        .map_err(|e| format!("dial tcp {}: connect: {e}", host_port(req.host, req.port)))?;
    if !req.https {
        return http_exchange(tcp, req).await;
    }
    let connector = tokio_rustls::TlsConnector::from(TLS_CONFIG.clone());
    let name = rustls::pki_types::ServerName::IpAddress(req.host.into());
    match connector.connect(name, tcp).await {
        Ok(tls) => http_exchange(tls, req).await,
        // Go's client says so when the first bytes back are not a TLS record.
        Err(e) if is_plain_http_answer(&e) => Err("http: server gave HTTP response to HTTPS client".into()),
        Err(e) => Err(format!("tls: {e}")),
    }
}

fn is_plain_http_answer(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)))
}

async fn http_exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, req: &HttpRequest<'_>) -> Result<u16, String> {
    let HttpRequest { host, port, path, headers, user_agent, .. } = req;
    let mut text = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nConnection: close\r\n",
        host_port(*host, *port)
    );
    for (k, v) in headers.iter() {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    // The status line is all that is judged.
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        let n = stream.read(&mut buf[got..]).await.map_err(|e| e.to_string())?;
        got += n;
        if n == 0 || buf[..got].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| "malformed HTTP response".to_string())
}

/// TLS for probes and hooks: any certificate is accepted (upstream sets InsecureSkipVerify),
/// but the handshake's signatures are still checked against the certificate presented.
static TLS_CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
});

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// grpc.health.v1 HealthCheckResponse.ServingStatus names.
fn serving_status_name(n: u64) -> String {
    match n {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// gRPC status code names (as grpc-go prints them).
fn grpc_code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES.get(code as usize).map(|s| s.to_string()).unwrap_or_else(|| format!("Code({code})"))
}

/// The length-prefixed gRPC message of a HealthCheckRequest (`string service = 1`).
pub fn health_check_request(service: &str) -> Bytes {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(5 + msg.len());
    framed.push(0);
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    framed.into()
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.first()?;
        buf.advance(1);
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The `status` of a length-prefixed HealthCheckResponse (`ServingStatus status = 1`); unknown
/// fields are skipped, as protobuf readers do.
pub fn health_check_status(framed: &[u8]) -> Result<u64, String> {
    if framed.len() < 5 || framed[0] != 0 {
        return Err("malformed health response".into());
    }
    let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
    let mut msg = framed.get(5..5 + len).ok_or("truncated health response")?;
    let mut status = 0;
    while !msg.is_empty() {
        let key = get_varint(&mut msg).ok_or("malformed health response")?;
        match (key >> 3, key & 7) {
            (1, 0) => status = get_varint(&mut msg).ok_or("malformed health response")?,
            (_, 0) => {
                get_varint(&mut msg).ok_or("malformed health response")?;
            }
            (_, 2) => {
                let n = get_varint(&mut msg).ok_or("malformed health response")? as usize;
                msg = msg.get(n..).ok_or("malformed health response")?;
            }
            (_, 1) => msg = msg.get(8..).ok_or("malformed health response")?,
            (_, 5) => msg = msg.get(4..).ok_or("malformed health response")?,
            _ => return Err("malformed health response".into()),
        }
    }
    Ok(status)
}

/// Go's rendering of a duration as upstream's messages print it ("1s").
fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// grpc.health.v1.Health/Check over HTTP/2 cleartext; SERVING passes. Messages as upstream's
/// gRPC prober words them.
async fn grpc_health_check(host: IpAddr, port: u16, service: &str, timeout: Duration) -> Result<(), String> {
    let addr = host_port(host, port);
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?;
        h2::client::handshake(tcp).await.map_err(|e| e.to_string())
    };
    let (client, conn) = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(format!("timeout: failed to connect service {addr:?} within {}: {e}", go_duration(timeout)))
        }
        Err(_) => {
            return Err(format!(
                "timeout: failed to connect service {addr:?} within {}: context deadline exceeded",
                go_duration(timeout)
            ))
        }
    };
    // The connection task ends when the exchange is over (or is dropped with this guard).
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let _guard = AbortOnDrop(conn);
    let call = async {
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", "kube-probe/1.32")
            .header("grpc-timeout", format!("{}m", timeout.as_millis().max(1)))
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, mut send) = client.send_request(req, false).map_err(|e| e.to_string())?;
        send.send_data(health_check_request(service), true).map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        let (parts, mut body) = response.into_parts();
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        // grpc-status comes in the trailers, or in the headers of a trailers-only answer.
        let trailers = body.trailers().await.map_err(|e| e.to_string())?.unwrap_or_default();
        let field = |name: &str| {
            trailers.get(name).or_else(|| parts.headers.get(name)).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        let code: u32 = field("grpc-status").and_then(|s| s.parse().ok()).unwrap_or(2);
        Ok::<_, String>((parts.status, code, field("grpc-message").unwrap_or_default(), data))
    };
    let (http_status, code, message, data) = match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("health rpc probe failed: {e}")),
        Err(_) => return Err(format!("timeout: health rpc did not complete within {}", go_duration(timeout))),
    };
    if http_status != http::StatusCode::OK {
        return Err(format!("health rpc probe failed: rpc error: code = Unknown desc = HTTP status {http_status}"));
    }
    match code {
        0 => {}
        12 => {
            return Err(format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): rpc error: code = Unimplemented desc = {message}"
            ))
        }
        4 => return Err(format!("timeout: health rpc did not complete within {}", go_duration(timeout))),
        c => return Err(format!("health rpc probe failed: rpc error: code = {} desc = {message}", grpc_code_name(c))),
    }
    match health_check_status(&data)? {
        1 => Ok(()),
        s => Err(format!("service unhealthy (responded with {:?})", serving_status_name(s))),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exec_fails() -> ExecFn {
        Arc::new(|_, _| Box::pin(async { Ok((1, b"no".to_vec())) }))
    }

    fn target(ip: &str) -> Target {
        Target {
            pod: Default::default(),
            container: "c".into(),
            container_id: "id".into(),
            pod_ip: Some(ip.parse().unwrap()),
            ports: vec![],
            exec: exec_fails(),
        }
    }

    #[test]
    fn handler_selection_for_probes_and_hooks() {
        let probe: Probe = serde_json::from_value(json!({"grpc": {"port": 9000, "service": "s"}})).unwrap();
        assert_eq!(Action::of_probe(&probe), Some(Action::Grpc(GRPCAction { port: 9000, service: Some("s".into()) })));
        let probe: Probe = serde_json::from_value(json!({"exec": {"command": ["true"]}})).unwrap();
        assert_eq!(Action::of_probe(&probe), Some(Action::Exec(vec!["true".into()])));
        let hook: LifecycleHandler = serde_json::from_value(json!({"sleep": {"seconds": 5}})).unwrap();
        assert_eq!(Action::of_hook(&hook), Some(Action::Sleep(5)));
        let hook: LifecycleHandler = serde_json::from_value(json!({"httpGet": {"port": 80}})).unwrap();
        assert!(matches!(Action::of_hook(&hook), Some(Action::HttpGet(_))));
        // tcpSocket hooks are accepted by the API but do nothing (upstream).
        let hook: LifecycleHandler = serde_json::from_value(json!({"tcpSocket": {"port": 80}})).unwrap();
        assert_eq!(Action::of_hook(&hook), None);
    }

    #[test]
    fn named_ports() {
        let ports = vec![ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() }];
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &ports).unwrap(), 8080);
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports).unwrap(), 80);
        assert!(resolve_port(&IntOrString::String("nope".into()), &ports).is_err());
    }

    #[test]
    fn health_check_messages() {
        assert_eq!(&health_check_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(&health_check_request("ab")[..], &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']);
        assert_eq!(health_check_status(&[0, 0, 0, 0, 2, 0x08, 1]).unwrap(), 1);
        // An unknown string field before the status is skipped; an empty message is UNKNOWN.
        assert_eq!(health_check_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 2]).unwrap(), 2);
        assert_eq!(health_check_status(&[0, 0, 0, 0, 0]).unwrap(), 0);
        assert!(health_check_status(&[0, 0, 0, 0, 9, 0x08]).is_err());
    }

    #[tokio::test]
    async fn probes_judge_status_codes_and_hooks_do_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut b = [0u8; 512];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
            }
        });
        let t = target("127.0.0.1");
        let get: HTTPGetAction = serde_json::from_value(json!({"port": port, "path": "/x"})).unwrap();
        let action = Action::HttpGet(get);
        let probe = run(&action, &t, Use::Probe, Duration::from_secs(1)).await;
        assert_eq!(probe.unwrap_err(), "HTTP probe failed with statuscode: 503");
        assert!(run(&action, &t, Use::Hook, Duration::from_secs(1)).await.is_ok());
        // HTTPS against a plain HTTP server fails with Go's words for it.
        let mut https: HTTPGetAction = serde_json::from_value(json!({"port": port, "scheme": "HTTPS"})).unwrap();
        let err = run(&Action::HttpGet(https.clone()), &t, Use::Probe, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err, format!("Get \"https://127.0.0.1:{port}/\": http: server gave HTTP response to HTTPS client"));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let tcp = |port: u16| Action::TcpSocket(TCPSocketAction { host: None, port: IntOrString::Int(port.into()) });
        assert!(run(&tcp(port), &t, Use::Probe, Duration::from_secs(1)).await.is_ok());
        assert!(run(&tcp(closed), &t, Use::Probe, Duration::from_secs(1)).await.is_err());
        https.port = IntOrString::Int(closed.into());
        let err = run(&Action::HttpGet(https), &t, Use::Hook, Duration::from_secs(1)).await.unwrap_err();
        assert!(err.contains("connect: Connection refused"), "{err}");
        let err = run(&Action::Exec(vec!["sh".into(), "-c".into(), "exit 1".into()]), &t, Use::Hook, Duration::MAX)
            .await
            .unwrap_err();
        assert_eq!(err, "command 'sh -c exit 1' exited with 1: no");
    }

    /// A grpc.health.v1 server on h2 answering every Check with `status`, or with a
    /// trailers-only Unimplemented when None.
    async fn health_server(status: Option<u8>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut conn = h2::server::handshake(s).await.unwrap();
                    while let Some(Ok((req, mut respond))) = conn.accept().await {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        let head = http::Response::builder().status(200).header("content-type", "application/grpc");
                        match status {
                            Some(s) => {
                                let mut send = respond.send_response(head.body(()).unwrap(), false).unwrap();
                                send.send_data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, s]), false).unwrap();
                                let mut trailers = http::HeaderMap::new();
                                trailers.insert("grpc-status", "0".parse().unwrap());
                                send.send_trailers(trailers).unwrap();
                            }
                            None => {
                                let head = head.header("grpc-status", "12").header("grpc-message", "nope");
                                respond.send_response(head.body(()).unwrap(), true).unwrap();
                            }
                        }
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_health_checks_against_a_real_http2_server() {
        let t = target("127.0.0.1");
        let check = |port: u16| Action::Grpc(GRPCAction { port: port.into(), service: Some("svc".into()) });
        let second = Duration::from_secs(1);
        assert!(run(&check(health_server(Some(1)).await), &t, Use::Probe, second).await.is_ok());
        let err = run(&check(health_server(Some(2)).await), &t, Use::Probe, second).await.unwrap_err();
        assert_eq!(err, "service unhealthy (responded with \"NOT_SERVING\")");
        let err = run(&check(health_server(None).await), &t, Use::Probe, second).await.unwrap_err();
        assert!(err.starts_with("this server does not implement the grpc health protocol"), "{err}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = run(&check(closed), &t, Use::Probe, second).await.unwrap_err();
        assert!(
            err.starts_with(&format!("timeout: failed to connect service \"127.0.0.1:{closed}\" within 1s")),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hooks_end_with_their_time_or_the_grace_period() {
        let t = target("127.0.0.1");
        assert!(run(&Action::Sleep(5), &t, Use::Hook, Duration::from_secs(10)).await.is_ok());
        assert!(run(&Action::Sleep(50), &t, Use::Hook, Duration::from_secs(10)).await.is_err());
    }
}
