//! What a node agent takes of its machine, claimed before it starts: the pod bridge and the
//! pod and Service ranges routed to it (per network namespace) and the pods' parent cgroup (per
//! machine). Two clusters on one machine (two `kubus up` with their own data dirs) would
//! otherwise share a bridge, fight over routes and delete each other's pods. A claim is a file
//! under /run/kubus/claims held with an exclusive lock for the agent's lifetime, so a crashed
//! agent's claims end with it; a second agent asking for a taken resource is refused with the
//! holder and the flag to change. `kubus node-reset` claims what it removes the same way, so it
//! never removes what a live agent holds.
//!
//! Claims are checked and taken under one lock of the directory (`.lock`): two agents starting
//! at once cannot both find a resource free, and a record is never read while it is written.

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

/// Whether two cgroup paths are one or one lies below the other: removing the upper one (as
/// `kubus node-reset` does) removes the pods of the lower one with it.
pub fn cgroups_nest(a: &str, b: &str) -> bool {
    cgroup_within(a, b) || cgroup_within(b, a)
}

/// Whether cgroup `a` is `b` or lies below it.
fn cgroup_within(a: &str, b: &str) -> bool {
    let parts = |p: &str| p.split('/').filter(|c| !c.is_empty() && *c != ".").map(String::from).collect::<Vec<_>>();
    parts(a).starts_with(&parts(b))
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

/// The claims directory, locked while this lives.
struct Registry {
    dir: PathBuf,
    _lock: File,
}

impl Registry {
    /// Opens `dir` and takes its lock (waiting for another claimant's check and take, which
    /// are short).
    fn lock(dir: &Path) -> Result<Registry, ClaimError> {
        let io = |source| ClaimError::Io { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = OpenOptions::new().write(true).create(true).truncate(false).open(dir.join(".lock")).map_err(io)?;
        lock.lock().map_err(io)?;
        Ok(Registry { dir: dir.to_path_buf(), _lock: lock })
    }

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
        // Readers hold the directory's lock too, so none sees the record half written.
        f.set_len(0).map_err(|e| self.io(e))?;
        f.write_all(record.as_bytes()).map_err(|e| self.io(e))?;
        Ok(Ok(f))
    }

    /// The values of `kind` claimed in `scope` by live holders: (value, holder).
    fn live(&self, kind: &str, scope: &str) -> Vec<(String, String)> {
        let prefix = format!("{kind}.{scope}.");
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter_map(|e| {
                let mut f = File::open(e.path()).ok()?;
                // A claim nobody holds is left over from a holder that ended. (Claimants wait
                // for the directory's lock, so this probe never makes one of them fail.)
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

const BRIDGE_HINT: &str =
    "pass --bridge NAME (and --cgroup-root, --cluster-cidr, --service-cidr) of its own to run a second cluster on this machine";
const CGROUP_HINT: &str =
    "pass --cgroup-root PATH of its own (neither inside nor above another agent's) to run a second cluster on this machine";

/// Claims `want` in `dir` for `holder` (as a refused claimant is told).
fn claim_as(dir: &Path, holder: &str, want: &HostResources<'_>) -> Result<Claims, ClaimError> {
    let registry = Registry::lock(dir)?;
    let ns = netns();
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
    exclusive("bridge", &ns, want.bridge, format!("bridge {}", want.bridge), BRIDGE_HINT)?;
    let cgroup = want.cgroup_root;
    for (other, other_holder) in registry.live("cgroup", "host") {
        if cgroups_nest(&other, cgroup) {
            let what = match (cgroup_within(cgroup, &other), cgroup_within(&other, cgroup)) {
                (true, true) => format!("cgroup root {cgroup}"),
                (true, false) => format!("cgroup root {cgroup} (inside {other})"),
                _ => format!("cgroup root {cgroup} (containing {other})"),
            };
            return Err(ClaimError::Taken { what, holder: other_holder, hint: CGROUP_HINT });
        }
    }
    exclusive("cgroup", "host", cgroup, format!("cgroup root {cgroup}"), CGROUP_HINT)?;
    for (kind, range, hint) in [
        ("pods", want.pod_range, "give this cluster a pod range that does not overlap it (kubus up --cluster-cidr, kubus node --node-cluster-cidr)"),
        ("services", want.service_range, "pass --service-cidr CIDR that does not overlap it"),
    ] {
        let Some(range) = range else { continue };
        for (other, other_holder) in registry.live(kind, &ns) {
            if overlaps(&other, range) && !other_holder.contains(&format!(" {} ", want.owner)) {
                let what = format!("{kind} range {range} (overlapping {other})");
                return Err(ClaimError::Taken { what, holder: other_holder, hint });
            }
        }
        exclusive(kind, &ns, range, format!("{kind} range {range}"), hint)?;
    }
    Ok(Claims { _files: files })
}

/// Claims `want` in `dir` (normally [`CLAIMS_DIR`]).
pub fn claim_in(dir: &Path, want: &HostResources<'_>) -> Result<Claims, ClaimError> {
    claim_as(dir, &format!("the node agent of {} (pid {})", want.owner, std::process::id()), want)
}

/// Claims `want` in [`CLAIMS_DIR`].
pub fn claim(want: &HostResources<'_>) -> Result<Claims, ClaimError> {
    claim_in(Path::new(CLAIMS_DIR), want)
}

/// Claims, in `dir`, the bridge and cgroup root that `kubus node-reset` of the node in `owner`
/// is about to remove, for as long as it removes them: refused ([`ClaimError::Taken`], naming
/// the holder) while a live node agent holds the bridge or a cgroup root nested with this one;
/// a node agent starting meanwhile is refused in turn.
pub fn claim_for_reset_in(dir: &Path, owner: &str, bridge: &str, cgroup_root: &str) -> Result<Claims, ClaimError> {
    let want = HostResources { owner, bridge, cgroup_root, pod_range: None, service_range: None };
    claim_as(dir, &format!("`kubus node-reset` of {owner} (pid {})", std::process::id()), &want)
}

/// [`claim_for_reset_in`] [`CLAIMS_DIR`].
pub fn claim_for_reset(owner: &str, bridge: &str, cgroup_root: &str) -> Result<Claims, ClaimError> {
    claim_for_reset_in(Path::new(CLAIMS_DIR), owner, bridge, cgroup_root)
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

    #[test]
    fn cgroup_roots_nest() {
        assert!(cgroups_nest("/kubus", "/kubus/b") && cgroups_nest("/kubus/b/", "/kubus"));
        assert!(cgroups_nest("/kubus", "/kubus/") && cgroups_nest("/", "/kubus"));
        assert!(!cgroups_nest("/kubus", "/kubus-b") && !cgroups_nest("/kubus/a", "/kubus/b"));
    }

    #[test]
    fn a_cgroup_root_inside_or_around_a_held_one_is_refused() {
        let d = dir("nested");
        let first = claim_in(&d, &want("/var/lib/a", "kb0", "/kubus/b", "10.244.0.0/16")).unwrap();
        let err = claim_in(&d, &want("/var/lib/b", "kb1", "/kubus", "10.250.0.0/16")).unwrap_err().to_string();
        assert!(err.contains("cgroup root /kubus (containing /kubus/b)") && err.contains("/var/lib/a"), "{err}");
        let err = claim_in(&d, &want("/var/lib/b", "kb1", "/kubus/b/c", "10.250.0.0/16")).unwrap_err().to_string();
        assert!(err.contains("cgroup root /kubus/b/c (inside /kubus/b)") && err.contains("--cgroup-root"), "{err}");
        let err = claim_in(&d, &want("/var/lib/b", "kb1", "/kubus/b/", "10.250.0.0/16")).unwrap_err().to_string();
        assert!(err.contains("cgroup root /kubus/b/ is already used by the node agent of /var/lib/a"), "{err}");
        let beside = HostResources {
            service_range: Some("10.112.0.0/16"),
            ..want("/var/lib/b", "kb1", "/kubus/c", "10.250.0.0/16")
        };
        let second = claim_in(&d, &beside).unwrap();
        drop((first, second));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_reset_is_refused_what_a_live_agent_holds() {
        let d = dir("reset");
        let agent = claim_in(&d, &want("/var/lib/a", "kubus0", "/kubus/a", "10.244.0.0/16")).unwrap();
        let err = claim_for_reset_in(&d, "/var/lib/b", "kubus0", "/kubus-b").unwrap_err();
        assert!(
            matches!(&err, ClaimError::Taken { what, holder, .. }
            if what == "bridge kubus0" && holder.starts_with("the node agent of /var/lib/a (pid")),
            "{err}"
        );
        // Its default cgroup root contains the agent's.
        let err = claim_for_reset_in(&d, "/var/lib/b", "kb1", "/kubus").unwrap_err();
        assert!(err.to_string().contains("cgroup root /kubus (containing /kubus/a)"), "{err}");
        // What nobody holds is reset, and no agent takes it meanwhile.
        let reset = claim_for_reset_in(&d, "/var/lib/b", "kb1", "/kubus-b").unwrap();
        let err = claim_in(&d, &want("/var/lib/b", "kb1", "/kubus-c", "10.250.0.0/16")).unwrap_err();
        assert!(err.to_string().contains("`kubus node-reset` of /var/lib/b"), "{err}");
        drop((agent, reset));
        // The agent gone (its claims released), its own node can be reset.
        drop(claim_for_reset_in(&d, "/var/lib/a", "kubus0", "/kubus/a").unwrap());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn of_agents_claiming_at_once_exactly_one_wins() {
        let d = dir("race");
        // Each asks for resources of its own but for pod ranges that all overlap (and are
        // recorded in files of their own): only the check and the take as one step refuse all
        // but one. The files left by one round are stale in the next.
        let agents: Vec<(String, String, String, String, String)> = (0..6)
            .map(|i| {
                let (owner, bridge, cgroup) = (format!("/var/lib/n{i}"), format!("kb{i}"), format!("/kubus-n{i}"));
                (owner, bridge, cgroup, format!("10.0.0.0/{}", 8 + 2 * i), format!("172.16.{i}.0/24"))
            })
            .collect();
        for round in 0..20 {
            let barrier = std::sync::Barrier::new(agents.len());
            let won = std::thread::scope(|s| {
                let tries: Vec<_> = agents
                    .iter()
                    .map(|(owner, bridge, cgroup, pods, services)| {
                        let (d, barrier) = (&d, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            let want = HostResources {
                                owner,
                                bridge,
                                cgroup_root: cgroup,
                                pod_range: Some(pods),
                                service_range: Some(services),
                            };
                            claim_in(d, &want).ok()
                        })
                    })
                    .collect();
                // Every claim is held until every thread has tried.
                let claims: Vec<_> = tries.into_iter().map(|t| t.join().unwrap()).collect();
                claims.iter().filter(|c| c.is_some()).count()
            });
            assert_eq!(won, 1, "round {round}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
