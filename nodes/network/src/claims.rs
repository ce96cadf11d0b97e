//! What a node agent takes of its machine, claimed before it starts: the pod bridge and the
//! pod and Service ranges routed to it (per network namespace) and the pods' parent cgroup (per
//! machine). Two clusters on one machine (two `kubus up` with their own data dirs) would
//! otherwise share a bridge, fight over routes and delete each other's pods. A claim is a file
//! under /run/kubus/claims held with an exclusive lock for the agent's lifetime, so a crashed
//! agent's claims end with it; a second agent asking for a taken resource is refused with the
//! holder and the flag to change.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub const CLAIMS_DIR: &str = "/run/kubus/claims";

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("{what} is already used by {holder}: {hint}")]
    Taken { what: String, holder: String, hint: &'static str },
    #[error("cannot record the claim in {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// What one node agent asks for.
#[derive(Debug, Clone)]
pub struct HostResources<'a> {
    /// Who claims (the agent's data dir), shown to a second agent that is refused.
    pub owner: &'a str,
    pub bridge: &'a str,
    pub cgroup_root: &'a str,
    /// The cluster's pod range (or the node's own pod CIDR when the cluster's is not known).
    pub pod_range: Option<&'a str>,
    pub service_range: Option<&'a str>,
}

/// Held claims: released when dropped (or when the process ends).
#[derive(Debug)]
pub struct Claims {
    _files: Vec<File>,
}

fn parse_v4_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(ip) & mask, len))
}

/// Whether two IPv4 ranges share an address (unparsable ones are compared as text).
pub fn overlaps(a: &str, b: &str) -> bool {
    match (parse_v4_cidr(a), parse_v4_cidr(b)) {
        (Some((na, la)), Some((nb, lb))) => {
            let len = la.min(lb);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            na & mask == nb & mask
        }
        _ => a == b,
    }
}

/// The network namespace this process is in (claims on bridges and routes are per namespace).
fn netns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.to_string_lossy().trim_start_matches("net:[").trim_end_matches(']').to_string())
        .unwrap_or_else(|_| "host".into())
}

fn file_name(kind: &str, scope: &str, value: &str) -> String {
    let value: String = value.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect();
    format!("{kind}.{scope}.{value}")
}

struct Registry {
    dir: PathBuf,
}

impl Registry {
    fn io(&self, source: std::io::Error) -> ClaimError {
        ClaimError::Io { path: self.dir.clone(), source }
    }

    /// Takes the claim file `name`, recording `record`; refused if another process holds it.
    fn take(&self, name: &str, record: &str) -> Result<Result<File, String>, ClaimError> {
        let path = self.dir.join(name);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| self.io(e))?;
        if f.try_lock().is_err() {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            return Ok(Err(holder.lines().next().unwrap_or("another node agent").to_string()));
        }
        f.set_len(0).map_err(|e| self.io(e))?;
        f.write_all(record.as_bytes()).map_err(|e| self.io(e))?;
        Ok(Ok(f))
    }

    /// The ranges of `kind` claimed in `scope` by live agents: (range, holder).
    fn live_ranges(&self, kind: &str, scope: &str) -> Vec<(String, String)> {
        let prefix = format!("{kind}.{scope}.");
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter_map(|e| {
                let mut f = File::open(e.path()).ok()?;
                // A claim nobody holds is left over from an agent that ended.
                if f.try_lock_shared().is_ok() {
                    return None;
                }
                let mut text = String::new();
                f.read_to_string(&mut text).ok()?;
                let mut lines = text.lines();
                let holder = lines.next()?.to_string();
                Some((lines.next()?.to_string(), holder))
            })
            .collect()
    }
}

/// Claims `want` in `dir` (normally [`CLAIMS_DIR`]).
pub fn claim_in(dir: &Path, want: &HostResources<'_>) -> Result<Claims, ClaimError> {
    let registry = Registry { dir: dir.to_path_buf() };
    std::fs::create_dir_all(dir).map_err(|e| registry.io(e))?;
    let ns = netns();
    let holder = format!("the node agent of {} (pid {})", want.owner, std::process::id());
    let mut files = Vec::new();
    let mut exclusive = |kind: &str, scope: &str, value: &str, what: String, hint: &'static str| match registry
        .take(&file_name(kind, scope, value), &format!("{holder}\n{value}\n"))?
    {
        Ok(f) => {
            files.push(f);
            Ok(())
        }
        Err(other) => Err(ClaimError::Taken { what, holder: other, hint }),
    };
    exclusive(
        "bridge",
        &ns,
        want.bridge,
        format!("bridge {}", want.bridge),
        "pass --bridge NAME (and --cgroup-root, --cluster-cidr, --service-cidr) of its own to run a second cluster on this machine",
    )?;
    exclusive(
        "cgroup",
        "host",
        want.cgroup_root,
        format!("cgroup root {}", want.cgroup_root),
        "pass --cgroup-root PATH of its own to run a second cluster on this machine",
    )?;
    for (kind, range, hint) in [
        ("pods", want.pod_range, "pass --cluster-cidr CIDR that does not overlap it"),
        ("services", want.service_range, "pass --service-cidr CIDR that does not overlap it"),
    ] {
        let Some(range) = range else { continue };
        for (other, other_holder) in registry.live_ranges(kind, &ns) {
            if overlaps(&other, range) && !other_holder.contains(&format!(" {} ", want.owner)) {
                let what = format!("{kind} range {range} (overlapping {other})");
                return Err(ClaimError::Taken { what, holder: other_holder, hint });
            }
        }
        exclusive(kind, &ns, range, format!("{kind} range {range}"), hint)?;
    }
    Ok(Claims { _files: files })
}

/// Claims `want` in [`CLAIMS_DIR`].
pub fn claim(want: &HostResources<'_>) -> Result<Claims, ClaimError> {
    claim_in(Path::new(CLAIMS_DIR), want)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kubus-claims-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn want<'a>(owner: &'a str, bridge: &'a str, cgroup: &'a str, pods: &'a str) -> HostResources<'a> {
        HostResources { owner, bridge, cgroup_root: cgroup, pod_range: Some(pods), service_range: Some("10.96.0.0/12") }
    }

    #[test]
    fn ranges_overlap() {
        assert!(overlaps("10.244.0.0/16", "10.244.3.0/24"));
        assert!(overlaps("10.244.3.0/24", "10.244.0.0/16"));
        assert!(!overlaps("10.244.0.0/16", "10.245.0.0/16"));
        assert!(overlaps("0.0.0.0/0", "192.168.1.0/24"));
    }

    #[test]
    fn a_second_agent_is_refused_until_the_first_lets_go() {
        let d = dir("second");
        // Locks are per open file description, so a claim held here refuses a second claim
        // from this same process as it would one from another process.
        let first = claim_in(&d, &want("/var/lib/a", "kubus0", "/kubus", "10.244.0.0/16")).unwrap();
        let err = claim_in(&d, &want("/var/lib/b", "kubus0", "/kubus-b", "10.250.0.0/16")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bridge kubus0") && msg.contains("/var/lib/a") && msg.contains("--bridge"), "{msg}");
        let err = claim_in(&d, &want("/var/lib/b", "kb1", "/kubus", "10.250.0.0/16")).unwrap_err();
        assert!(err.to_string().contains("cgroup root /kubus"), "{err}");
        let err = claim_in(
            &d,
            &HostResources {
                service_range: Some("10.100.0.0/16"),
                ..want("/var/lib/b", "kb1", "/kubus-b", "10.244.7.0/24")
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("overlapping 10.244.0.0/16") && err.to_string().contains("--cluster-cidr"),
            "{err}"
        );
        // Ranges of its own: accepted beside the first.
        let second = claim_in(
            &d,
            &HostResources {
                service_range: Some("10.112.0.0/16"),
                ..want("/var/lib/b", "kb1", "/kubus-b", "10.250.0.0/16")
            },
        )
        .unwrap();
        drop((first, second));
        // Released: the first one's resources can be taken again.
        let again = claim_in(&d, &want("/var/lib/b", "kubus0", "/kubus", "10.244.0.0/16")).unwrap();
        drop(again);
        let _ = std::fs::remove_dir_all(&d);
    }
}
