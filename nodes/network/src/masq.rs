//! Masquerading of pod traffic that leaves the cluster CIDR (kubenet's non-masquerade CIDR).
//!
//! The bridge plugin's `ipMasq` masquerades everything not in the node's pod CIDR, which would
//! hide pod IPs from pods on other nodes. With a cluster CIDR the node instead keeps one chain of
//! its own: traffic from the pod CIDR to the cluster CIDR (or multicast) keeps its source,
//! everything else is masqueraded.

use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum MasqError {
    #[error("failed to run {program}: {source}")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} {args} failed: {stderr}")]
    Failed { program: &'static str, args: String, stderr: String },
}

/// The masquerade rules of one node bridge.
#[derive(Clone, Debug)]
pub struct Masquerade {
    pub bridge: String,
    pub pod_cidr: String,
    pub cluster_cidr: String,
}

impl Masquerade {
    /// The nat chain; bridge names are at most 15 characters, iptables chain names 28.
    pub fn chain(&self) -> String {
        format!("KUBUS-MASQ-{}", self.bridge)
    }

    fn iptables(&self) -> (&'static str, &'static str) {
        if self.pod_cidr.contains(':') {
            ("ip6tables", "ip6tables-restore")
        } else {
            ("iptables", "iptables-restore")
        }
    }

    fn jump_rule(&self) -> Vec<String> {
        let comment = format!("kubus: masquerade pods of {} leaving the cluster", self.bridge);
        ["POSTROUTING", "-s", &self.pod_cidr, "-m", "comment", "--comment", &comment, "-j", &self.chain()]
            .map(String::from)
            .to_vec()
    }

    /// Creates or refreshes the chain (atomically, by iptables-restore without flushing the rest
    /// of the table) and the POSTROUTING jump to it.
    pub async fn ensure(&self) -> Result<(), MasqError> {
        let (iptables, restore) = self.iptables();
        let chain = self.chain();
        let multicast = if self.pod_cidr.contains(':') { "ff00::/8" } else { "224.0.0.0/4" };
        let rules = format!(
            "*nat\n:{chain} - [0:0]\n-A {chain} -d {} -j RETURN\n-A {chain} -d {multicast} -j RETURN\n\
             -A {chain} -j MASQUERADE\nCOMMIT\n",
            self.cluster_cidr
        );
        run(restore, &["-w", "--noflush"], Some(rules.as_bytes())).await?;
        let jump = self.jump_rule();
        let mut check = vec!["-w".to_string(), "-t".into(), "nat".into(), "-C".into()];
        check.extend(jump.iter().cloned());
        if run(iptables, &check.iter().map(String::as_str).collect::<Vec<_>>(), None).await.is_err() {
            let mut append = vec!["-w".to_string(), "-t".into(), "nat".into(), "-A".into()];
            append.extend(jump);
            run(iptables, &append.iter().map(String::as_str).collect::<Vec<_>>(), None).await?;
        }
        Ok(())
    }

    /// Removes the jump and the chain; absent ones are fine.
    pub async fn remove(&self) -> Result<(), MasqError> {
        let (iptables, _) = self.iptables();
        let mut delete = vec!["-w".to_string(), "-t".into(), "nat".into(), "-D".into()];
        delete.extend(self.jump_rule());
        let delete: Vec<&str> = delete.iter().map(String::as_str).collect();
        // A jump appended twice (two agents racing) needs two deletions.
        while run(iptables, &delete, None).await.is_ok() {}
        let chain = self.chain();
        if run(iptables, &["-w", "-t", "nat", "-S", &chain], None).await.is_ok() {
            run(iptables, &["-w", "-t", "nat", "-F", &chain], None).await?;
            run(iptables, &["-w", "-t", "nat", "-X", &chain], None).await?;
        }
        Ok(())
    }
}

/// Removes the bridge plugin's ipMasq rules of one attachment: the POSTROUTING jumps whose
/// comment names the network and container, and the chains they jump to. The plugin does this on
/// DEL only while the pod's namespace exists (it learns the addresses from the pod's interface);
/// without it the rules would leak and block the next DEL of the same pod ("chain busy").
pub async fn remove_bridge_ipmasq(ipv6: bool, network: &str, container_id: &str) -> Result<(), MasqError> {
    let (iptables, restore) = if ipv6 { ("ip6tables", "ip6tables-restore") } else { ("iptables", "iptables-restore") };
    // As iptables -S prints the comment utils.FormatComment made (Go %q quoting).
    let comment = format!("--comment \"name: \\\"{network}\\\" id: \\\"{container_id}\\\"\"");
    let mut chains = Vec::new();
    for _ in 0..16 {
        let rules = output(iptables, &["-w", "-t", "nat", "-S", "POSTROUTING"]).await?;
        let Some(rule) = rules.lines().find(|l| l.starts_with("-A POSTROUTING ") && l.contains(&comment)) else {
            break;
        };
        if let Some(target) = rule.split_whitespace().skip_while(|w| *w != "-j").nth(1) {
            chains.push(target.to_string());
        }
        // Deleted by its specification, as `-S` printed it (iptables-restore parses the
        // quoting), never by index: other agents and plugins change the chain concurrently.
        let delete = format!("*nat\n-D {}\nCOMMIT\n", &rule[3..]);
        if let Err(e) = run(restore, &["-w", "--noflush"], Some(delete.as_bytes())).await {
            // Someone else deleted it first: look again.
            tracing::debug!(error = %e, "the bridge's masquerade rule changed while being removed");
        }
    }
    for chain in chains.iter().filter(|c| c.starts_with("CNI-")) {
        if run(iptables, &["-w", "-t", "nat", "-S", chain], None).await.is_ok() {
            run(iptables, &["-w", "-t", "nat", "-F", chain], None).await?;
            run(iptables, &["-w", "-t", "nat", "-X", chain], None).await?;
        }
    }
    Ok(())
}

async fn output(program: &'static str, args: &[&str]) -> Result<String, MasqError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| MasqError::Spawn { program, source })?;
    if !out.status.success() {
        return Err(MasqError::Failed {
            program,
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn run(program: &'static str, args: &[&str], stdin: Option<&[u8]>) -> Result<(), MasqError> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::null());
    cmd.stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| MasqError::Spawn { program, source })?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).await.map_err(|source| MasqError::Spawn { program, source })?;
    }
    let out = child.wait_with_output().await.map_err(|source| MasqError::Spawn { program, source })?;
    if !out.status.success() {
        return Err(MasqError::Failed {
            program,
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
