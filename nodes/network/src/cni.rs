//! A CNI runtime (spec 1.0): runs the plugins of a network configuration list as child processes.
//!
//! There is no libcni for Rust, so the chaining rules of the spec live here: ADD in order with each
//! plugin's result as the next one's `prevResult`, DEL in reverse order with the saved result,
//! `runtimeConfig` only for the capabilities a plugin declares.

use crate::metrics::CNI_PLUGIN_SECONDS;
use serde_json::{json, Map, Value};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tracing::{debug, info_span, Instrument};

/// The CNI spec version of the configurations built here (Debian 12's plugins speak up to 1.0.0).
pub const CNI_VERSION: &str = "1.0.0";

/// How long one plugin may run; a hung plugin must not hang the pod worker forever.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    #[error("failed to run CNI plugin {plugin}: {source}")]
    Spawn {
        plugin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} {command} failed (code {code}): {msg}{}", details_suffix(.details))]
    Plugin { plugin: String, command: &'static str, code: u64, msg: String, details: String },
    #[error("CNI plugin {plugin} {command} exited with {status}: {output}")]
    Exit { plugin: String, command: &'static str, status: String, output: String },
    #[error("CNI plugin {plugin} {command} did not finish within {}s", PLUGIN_TIMEOUT.as_secs())]
    Timeout { plugin: String, command: &'static str },
    #[error("CNI plugin {plugin} {command} printed an invalid result: {source}")]
    BadResult {
        plugin: String,
        command: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid CNI network configuration: {0}")]
    Config(String),
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(": {details}")
    }
}

/// A network configuration list (`.conflist`): a name, a version and the plugins in ADD order.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
}

impl ConfList {
    pub fn new(name: &str, plugins: Vec<Value>) -> Result<Self, CniError> {
        for p in &plugins {
            if !p["type"].is_string() {
                return Err(CniError::Config(format!("plugin without a \"type\" in network {name}: {p}")));
            }
        }
        Ok(ConfList { name: name.to_string(), cni_version: CNI_VERSION.to_string(), plugins })
    }

    /// The list as a `.conflist` file shows it.
    pub fn to_json(&self) -> Value {
        json!({"cniVersion": self.cni_version, "name": self.name, "plugins": self.plugins})
    }

    /// The stdin of one plugin: its object plus `name`, `cniVersion`, `prevResult` and the
    /// `runtimeConfig` entries of the capabilities it declares (never `capabilities` itself).
    pub fn plugin_input(&self, plugin: &Value, prev: Option<&Value>, runtime_config: &Map<String, Value>) -> Value {
        let mut conf = plugin.as_object().cloned().unwrap_or_default();
        let capabilities = conf.remove("capabilities");
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        let mut rc = Map::new();
        if let Some(Value::Object(caps)) = capabilities {
            for (cap, on) in caps {
                if on.as_bool() == Some(true) {
                    if let Some(v) = runtime_config.get(&cap) {
                        rc.insert(cap, v.clone());
                    }
                }
            }
        }
        if !rc.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(rc));
        }
        Value::Object(conf)
    }
}

/// What a runtime tells the plugins about one attachment.
#[derive(Clone, Debug, Default)]
pub struct Attachment {
    pub container_id: String,
    /// None when the namespace is already gone (allowed for DEL).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS` pairs, e.g. `K8S_POD_NAME`.
    pub args: Vec<(String, String)>,
    /// Capability arguments by capability name, e.g. `portMappings`.
    pub runtime_config: Map<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
}

impl CniCommand {
    fn as_str(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
        }
    }
}

/// Finds and runs plugin binaries.
#[derive(Clone, Debug)]
pub struct CniRuntime {
    bin_dirs: Vec<PathBuf>,
}

impl CniRuntime {
    pub fn new(bin_dirs: Vec<PathBuf>) -> Self {
        CniRuntime { bin_dirs }
    }

    /// The binary of a plugin type: the first `CNI_PATH` directory holding it.
    pub fn find(&self, plugin: &str) -> Result<PathBuf, CniError> {
        let not_found = || CniError::PluginNotFound {
            plugin: plugin.to_string(),
            dirs: self.bin_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"),
        };
        // A type is a file name; a path would escape the plugin directories.
        if plugin.is_empty() || plugin.contains('/') || plugin.starts_with('.') {
            return Err(not_found());
        }
        self.bin_dirs.iter().map(|d| d.join(plugin)).find(|p| p.is_file()).ok_or_else(not_found)
    }

    /// ADD every plugin in order; the last plugin's output is the network's result.
    pub async fn add(&self, list: &ConfList, att: &Attachment) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let input = list.plugin_input(plugin, prev.as_ref(), &att.runtime_config);
            let stdout = self.exec(CniCommand::Add, plugin_type(plugin), &input, att).await?;
            let result: Value = serde_json::from_str(stdout.trim()).map_err(|source| CniError::BadResult {
                plugin: plugin_type(plugin).to_string(),
                command: "ADD",
                source,
            })?;
            debug!(result = %result, "CNI plugin result");
            prev = Some(result);
        }
        prev.ok_or_else(|| CniError::Config(format!("network {} has no plugins", list.name)))
    }

    /// DEL every plugin in reverse order, each with `prev` (the saved ADD result, if still known).
    /// Every plugin runs even if an earlier one fails, so one failure leaks as little as possible;
    /// the first error is returned.
    pub async fn del(&self, list: &ConfList, att: &Attachment, prev: Option<&Value>) -> Result<(), CniError> {
        let mut first_err = None;
        for plugin in list.plugins.iter().rev() {
            let input = list.plugin_input(plugin, prev, &att.runtime_config);
            if let Err(e) = self.exec(CniCommand::Del, plugin_type(plugin), &input, att).await {
                tracing::warn!(error = %e, "CNI DEL failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Runs one plugin: the CNI_* environment, the configuration on stdin; returns its stdout (the
    /// result of an ADD), or its error object as an error.
    pub async fn exec(
        &self,
        command: CniCommand,
        plugin: &str,
        input: &Value,
        att: &Attachment,
    ) -> Result<String, CniError> {
        let span = info_span!("cni_plugin", plugin, command = command.as_str(), container_id = %att.container_id);
        let started = Instant::now();
        let result =
            async { Self::run_plugin(self.plugin_command(command, plugin, att)?, command, plugin, input).await }
                .instrument(span)
                .await;
        CNI_PLUGIN_SECONDS.with_label_values(&[plugin, command.as_str()]).observe(started.elapsed().as_secs_f64());
        result
    }

    /// The plugin's process: its path, and the CNI_* environment of `command` for `att`.
    fn plugin_command(&self, command: CniCommand, plugin: &str, att: &Attachment) -> Result<Command, CniError> {
        let path = self.find(plugin)?;
        let cni_path = std::env::join_paths(&self.bin_dirs).unwrap_or_default();
        let cni_args = att.args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";");
        // Plugins shell out to iptables and friends, so they need a PATH even when ours is unset.
        let path_env = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/sbin:/usr/bin:/sbin:/bin"));
        let mut cmd = Command::new(&path);
        cmd.env_clear()
            .env("PATH", path_env)
            .env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &att.container_id)
            .env("CNI_NETNS", att.netns.as_deref().unwrap_or(Path::new("")))
            .env("CNI_IFNAME", &att.ifname)
            .env("CNI_ARGS", cni_args)
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Ok(cmd)
    }

    /// Runs a plugin's process with `input` on stdin; returns its stdout, or its error.
    async fn run_plugin(
        mut cmd: Command,
        command: CniCommand,
        plugin: &str,
        input: &Value,
    ) -> Result<String, CniError> {
        let spawn_err = |source| CniError::Spawn { plugin: plugin.to_string(), source };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let stdin_data = serde_json::to_vec(input).expect("a JSON value serializes");
        debug!(input = %input, "running CNI plugin");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let io = async move {
            // A plugin may exit before reading all of stdin (e.g. on a parse error): a broken pipe
            // is then not our error, its output tells what happened.
            let _ = stdin.write_all(&stdin_data).await;
            drop(stdin);
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout(PLUGIN_TIMEOUT, io).await {
            Ok(out) => out.map_err(spawn_err)?,
            Err(_) => return Err(CniError::Timeout { plugin: plugin.to_string(), command: command.as_str() }),
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(plugin_error(plugin, command.as_str(), &output.status, &stdout, &output.stderr));
        }
        Ok(stdout.into_owned())
    }
}

fn plugin_type(plugin: &Value) -> &str {
    plugin["type"].as_str().unwrap_or_default()
}

/// The spec's error object (`code`, `msg`, `details`) when the plugin printed one, else the raw
/// output and exit status.
fn plugin_error(
    plugin: &str,
    command: &'static str,
    status: &std::process::ExitStatus,
    stdout: &str,
    stderr: &[u8],
) -> CniError {
    if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(stdout.trim()) {
        if let Some(msg) = obj.get("msg").and_then(Value::as_str) {
            return CniError::Plugin {
                plugin: plugin.to_string(),
                command,
                code: obj.get("code").and_then(Value::as_u64).unwrap_or(0),
                msg: msg.to_string(),
                details: obj.get("details").and_then(Value::as_str).unwrap_or_default().to_string(),
            };
        }
    }
    let stderr = String::from_utf8_lossy(stderr);
    let output = [stdout.trim(), stderr.trim()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ");
    CniError::Exit { plugin: plugin.to_string(), command, status: status.to_string(), output }
}

/// The first IP address of interface `ifname` inside the sandbox in a CNI 1.0 result (an address
/// without interface index counts too, as older plugins leave it out).
pub fn result_ip(result: &Value, ifname: &str) -> Option<std::net::IpAddr> {
    let interfaces = result["interfaces"].as_array();
    let ips = result["ips"].as_array()?;
    let on_ifname = |ip: &&Value| match ip["interface"].as_u64() {
        Some(i) => interfaces.and_then(|ifs| ifs.get(i as usize)).is_some_and(|itf| {
            itf["name"].as_str() == Some(ifname) && itf["sandbox"].as_str().is_some_and(|s| !s.is_empty())
        }),
        None => true,
    };
    ips.iter().filter(on_ifname).find_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_input_adds_name_version_prev_and_declared_capabilities_only() {
        let list = ConfList::new(
            "kubus",
            vec![
                json!({"type": "bridge", "bridge": "kb0"}),
                json!({"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}}),
            ],
        )
        .unwrap();
        let mut rc = Map::new();
        rc.insert("portMappings".into(), json!([{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]));
        rc.insert("bandwidth".into(), json!({"ingressRate": 1}));

        let first = list.plugin_input(&list.plugins[0], None, &rc);
        assert_eq!(first, json!({"type": "bridge", "bridge": "kb0", "name": "kubus", "cniVersion": "1.0.0"}));

        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let second = list.plugin_input(&list.plugins[1], Some(&prev), &rc);
        assert_eq!(
            second,
            json!({"type": "portmap", "name": "kubus", "cniVersion": "1.0.0", "prevResult": prev,
                   "runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]}})
        );
    }

    #[test]
    fn conflist_needs_plugin_types() {
        assert!(matches!(ConfList::new("x", vec![json!({"bridge": "kb0"})]), Err(CniError::Config(_))));
    }

    #[test]
    fn result_ip_picks_the_sandbox_interface() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "kb0", "mac": "aa"}, {"name": "veth1", "mac": "bb"},
                           {"name": "eth0", "mac": "cc", "sandbox": "/run/ns/net"}],
            "ips": [{"interface": 0, "address": "10.9.0.1/24"}, {"interface": 2, "address": "10.9.0.7/24", "gateway": "10.9.0.1"}]
        });
        assert_eq!(result_ip(&result, "eth0"), Some("10.9.0.7".parse().unwrap()));
        assert_eq!(result_ip(&result, "eth1"), None);
        assert_eq!(result_ip(&json!({"ips": [{"address": "fd00::5/64"}]}), "eth0"), Some("fd00::5".parse().unwrap()));
    }

    #[test]
    fn error_object_becomes_plugin_error_with_message() {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(1 << 8);
        let e = plugin_error(
            "host-local",
            "ADD",
            &status,
            r#"{"code":999,"msg":"no IP addresses available","details":"range full"}"#,
            b"",
        );
        assert_eq!(e.to_string(), "CNI plugin host-local ADD failed (code 999): no IP addresses available: range full");
        let e = plugin_error("bridge", "DEL", &status, "", b"panic: oops\n");
        assert_eq!(e.to_string(), "CNI plugin bridge DEL exited with exit status: 1: panic: oops");
    }

    #[test]
    fn find_refuses_paths_and_reports_dirs() {
        let rt = CniRuntime::new(vec![PathBuf::from("/nonexistent-a"), PathBuf::from("/nonexistent-b")]);
        let e = rt.find("../bin/sh").unwrap_err();
        assert!(e.to_string().contains("/nonexistent-a:/nonexistent-b"), "{e}");
        assert!(rt.find("bridge").is_err());
    }

    #[tokio::test]
    async fn exec_passes_the_cni_environment_and_reads_the_result_or_the_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("kubus-cni-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plugin = |name: &str, script: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        plugin(
            "echo",
            r#"printf '%s %s %s %s %s ' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH"; cat"#,
        );
        plugin("fail", r#"cat >/dev/null; echo '{"code": 7, "msg": "no bridge"}'; exit 1"#);
        let rt = CniRuntime::new(vec![dir.clone()]);
        let att = Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            args: vec![("K8S_POD_NAME".into(), "web".into())],
            ..Default::default()
        };
        let out = rt.exec(CniCommand::Add, "echo", &json!({"name": "kubus"}), &att).await.unwrap();
        assert_eq!(out, format!("ADD c1 eth0 K8S_POD_NAME=web {} {{\"name\":\"kubus\"}}", dir.display()));
        let err = rt.exec(CniCommand::Del, "fail", &json!({}), &att).await.unwrap_err();
        assert!(matches!(&err, CniError::Plugin { code: 7, command: "DEL", msg, .. } if msg == "no bridge"), "{err}");
        let missing = rt.exec(CniCommand::Check, "bridge", &json!({}), &att).await.unwrap_err();
        assert!(matches!(missing, CniError::PluginNotFound { .. }), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
