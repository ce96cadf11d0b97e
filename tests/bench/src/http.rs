//! A minimal HTTP/1.1 keep-alive client: enough for JSON requests and chunked watch streams
//! (shared by every bench).

use crate::kubeconfig::{AsyncStream, Endpoint};
use anyhow::{bail, Context as _};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{LazyLock, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// How to reach each API server a bench started or was given, by address.
static ENDPOINTS: LazyLock<Mutex<HashMap<String, Endpoint>>> = LazyLock::new(Default::default);

/// Connections to `endpoint.addr` go as it says (TLS with its credentials, or plain).
pub(crate) fn register(endpoint: Endpoint) {
    ENDPOINTS.lock().unwrap().insert(endpoint.addr.clone(), endpoint);
}

/// Registers the server of the kubeconfig at `path`; its address.
pub(crate) fn register_kubeconfig(path: &Path) -> anyhow::Result<String> {
    let endpoint = Endpoint::from_kubeconfig(path)?;
    let addr = endpoint.addr.clone();
    register(endpoint);
    Ok(addr)
}

pub(crate) struct Conn {
    reader: BufReader<Box<dyn AsyncStream>>,
    host: String,
}

impl Conn {
    /// A connection to `addr`, as registered (plain HTTP if it never was).
    pub(crate) async fn open(addr: &str) -> anyhow::Result<Conn> {
        let endpoint = ENDPOINTS.lock().unwrap().get(addr).cloned().unwrap_or_else(|| Endpoint::plain(addr));
        let s = endpoint.connect().await?;
        Ok(Conn { reader: BufReader::new(s), host: addr.to_string() })
    }

    pub(crate) async fn send_head(&mut self, method: &str, path: &str, ct: &str, body: &[u8]) -> anyhow::Result<()> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        // TLS keeps records until flushed.
        s.flush().await?;
        Ok(())
    }

    pub(crate) async fn read_head(&mut self) -> anyhow::Result<(u16, Option<usize>, bool)> {
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let code: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("bad status line")?;
        let (mut len, mut chunked) = (None, false);
        loop {
            line.clear();
            self.reader.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().ok();
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        Ok((code, len, chunked))
    }

    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        ct: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        self.send_head(method, path, ct, body).await?;
        let (code, len, chunked) = self.read_head().await?;
        let mut buf = Vec::new();
        if chunked {
            while let Some(chunk) = self.next_chunk().await? {
                buf.extend_from_slice(&chunk);
            }
        } else {
            buf.resize(len.unwrap_or(0), 0);
            self.reader.read_exact(&mut buf).await?;
        }
        Ok((code, buf))
    }

    pub(crate) async fn next_chunk(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let n = usize::from_str_radix(line.trim(), 16).context("bad chunk size")?;
        let mut buf = vec![0; n + 2];
        self.reader.read_exact(&mut buf).await?;
        buf.truncate(n);
        Ok(if n == 0 { None } else { Some(buf) })
    }
}

/// One request; its body, or an error naming the request unless the status is `want`.
pub(crate) async fn expect(
    conn: &mut Conn,
    method: &str,
    path: &str,
    ct: &str,
    body: &[u8],
    want: u16,
) -> anyhow::Result<Vec<u8>> {
    let (code, body) = conn.request(method, path, ct, body).await?;
    if code != want {
        bail!("{method} {path}: {code} {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

/// One JSON request on a fresh connection; status and JSON body (null if not JSON).
pub(crate) async fn json_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (code, buf) = Conn::open(addr).await?.request(method, path, "application/json", body.as_bytes()).await?;
    Ok((code, serde_json::from_slice(&buf).unwrap_or(serde_json::Value::Null)))
}

/// One JSON request whose status must be one of `ok`; its JSON body.
pub(crate) async fn expect_json(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    ok: &[u16],
) -> anyhow::Result<serde_json::Value> {
    let (code, v) = json_request(addr, method, path, body).await?;
    if !ok.contains(&code) {
        bail!("{method} {path}: {code} {v}");
    }
    Ok(v)
}

/// The items of a LIST.
pub(crate) async fn list_items(addr: &str, path: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    Ok(expect_json(addr, "GET", path, None, &[200]).await?["items"].as_array().cloned().unwrap_or_default())
}
