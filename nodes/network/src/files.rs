//! The files a sandbox gives its containers: /etc/hosts, /etc/resolv.conf, /etc/hostname.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;

/// The node's resolver configuration, which pods with dnsPolicy Default get.
pub const NODE_RESOLV_CONF: &str = "/etc/resolv.conf";
/// The node's hosts file, which host-network pods get.
pub const NODE_HOSTS: &str = "/etc/hosts";

/// glibc reads at most three nameservers; kubelet cuts the list there too.
const MAX_NAMESERVERS: usize = 3;
/// kubelet's limit of search domains (MaxDNSSearchPaths).
const MAX_SEARCHES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A pod's /etc/resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl DnsConfig {
    /// Parses resolv.conf text (`nameserver`, `search`/`domain`, `options`; the last `search`
    /// wins, as in glibc).
    pub fn parse(text: &str) -> Self {
        let mut dns = DnsConfig::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => dns.nameservers.extend(fields.next().map(str::to_string)),
                Some("search" | "domain") => dns.searches = fields.map(str::to_string).collect(),
                Some("options") => dns.options.extend(fields.map(str::to_string)),
                _ => {}
            }
        }
        dns
    }

    /// The node's resolver configuration as a pod in its own network namespace can use it:
    /// loopback nameservers (systemd-resolved's 127.0.0.53, a local dnsmasq) answer only in the
    /// node's namespace, so they are dropped.
    pub fn from_node() -> Result<Self, FilesError> {
        let mut dns = Self::read(Path::new(NODE_RESOLV_CONF))?;
        dns.nameservers.retain(|ns| !ns.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()));
        Ok(dns)
    }

    /// A resolv.conf file as it is, loopback nameservers included.
    pub fn read(path: &Path) -> Result<Self, FilesError> {
        std::fs::read_to_string(path)
            .map(|text| Self::parse(&text))
            .map_err(|source| FilesError::Read { path: path.display().to_string(), source })
    }

    /// resolv.conf text, within glibc's and kubelet's limits.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut seen = std::collections::HashSet::new();
        let searches: Vec<&str> =
            self.searches.iter().map(String::as_str).filter(|s| seen.insert(*s)).take(MAX_SEARCHES).collect();
        if !searches.is_empty() {
            out.push_str(&format!("search {}\n", searches.join(" ")));
        }
        for ns in self.nameservers.iter().take(MAX_NAMESERVERS) {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// An extra /etc/hosts line (pod.spec.hostAliases).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

/// kubelet's managed hosts file of a pod with its own network namespace: localhost entries, the
/// pod's own name (with its FQDN when it has a subdomain), then host aliases.
pub fn pod_hosts(ip: Option<IpAddr>, hostname: &str, fqdn: Option<&str>, aliases: &[HostAlias]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        match fqdn {
            Some(fqdn) => out.push_str(&format!("{ip}\t{fqdn}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    push_aliases(&mut out, aliases);
    out
}

/// A host-network pod's hosts file: the node's, plus host aliases.
pub fn node_hosts(node_hosts: &str, aliases: &[HostAlias]) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (host network).\n");
    out.push_str(node_hosts);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    push_aliases(&mut out, aliases);
    out
}

fn push_aliases(out: &mut String, aliases: &[HostAlias]) {
    if aliases.is_empty() {
        return;
    }
    out.push_str("\n# Entries added by HostAliases.\n");
    for a in aliases {
        out.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join("\t")));
    }
}

/// Writes a file by rename, so a reader (or a crash) never sees half of it.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), FilesError> {
    let err = |source| FilesError::Write { path: path.display().to_string(), source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, content).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_resolv_conf() {
        let dns = DnsConfig::parse(
            "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2 # corp\ndomain old.example\n\
             search a.example b.example\noptions ndots:2 edns0\noptions timeout:1\n",
        );
        assert_eq!(dns.nameservers, ["127.0.0.53", "10.0.0.2"]);
        assert_eq!(dns.searches, ["a.example", "b.example"]);
        assert_eq!(dns.options, ["ndots:2", "edns0", "timeout:1"]);
        assert_eq!(
            dns.render(),
            "search a.example b.example\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions ndots:2 edns0 timeout:1\n"
        );
    }

    #[test]
    fn render_keeps_three_nameservers_and_unique_searches() {
        let dns = DnsConfig {
            nameservers: (1..=5).map(|i| format!("10.0.0.{i}")).collect(),
            searches: vec!["x".into(), "y".into(), "x".into()],
            options: vec![],
        };
        assert_eq!(dns.render(), "search x y\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n");
    }

    #[test]
    fn hosts_files() {
        let aliases = [HostAlias { ip: "10.1.1.1".into(), hostnames: vec!["foo".into(), "bar".into()] }];
        let h = pod_hosts(
            Some("10.9.0.5".parse().unwrap()),
            "web-0",
            Some("web-0.web.default.svc.cluster.local"),
            &aliases,
        );
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(h.contains("\n10.9.0.5\tweb-0.web.default.svc.cluster.local\tweb-0\n"), "{h}");
        assert!(h.ends_with("\n# Entries added by HostAliases.\n10.1.1.1\tfoo\tbar\n"), "{h}");
        let h = pod_hosts(Some("10.9.0.5".parse().unwrap()), "p", None, &[]);
        assert!(h.ends_with("fe00::2\tip6-allrouters\n10.9.0.5\tp\n"), "{h}");
        let h = node_hosts("127.0.0.1 localhost\n10.0.0.1 node1", &aliases);
        assert_eq!(
            h,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n10.0.0.1 node1\n\n\
             # Entries added by HostAliases.\n10.1.1.1\tfoo\tbar\n"
        );
    }
}
