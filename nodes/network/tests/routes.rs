//! Routes to other nodes' pod CIDRs with the real `ip`, as root: a veth link `kr<tok>` plays the
//! link the nodes share; the pod CIDRs are random 10.x.y.0/24 not routed on this host. A guard
//! deletes the link (its peer and every route through it go with it) even when an assertion fails.

use kubus_network::{PodRoutes, RouteTable};
use std::io::Read;
use std::process::Command;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    b
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Link(String);
impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// Removes the routes the test installed whatever happens (declared after `Dir`, so it runs
/// before the state dir goes).
struct Undo(std::path::PathBuf);
impl Drop for Undo {
    fn drop(&mut self) {
        if let Ok(mut r) = PodRoutes::load(&self.0) {
            let _ = r.remove_all();
        }
    }
}

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn routes_follow_the_nodes_and_are_removed_on_reset() {
    let routes_now = ip(&["-4", "route"]);
    let [a, b, c, d] = loop {
        let [a, b, c, d] = random_bytes::<4>();
        let (a, c) = (200 + a % 50, 200 + c % 50);
        let free = [
            format!("10.{a}.{b}."),
            format!("10.{c}.{d}."),
            format!("10.{c}.{}.", d.wrapping_add(1)),
            format!("10.{c}.{}.", d.wrapping_add(2)),
            format!("100.{}.{b}.", 64 + a % 64),
        ]
        .iter()
        .all(|p| !routes_now.contains(p.as_str()));
        if free && a != c {
            break [a, b, c, d];
        }
    };
    let tok = format!("{:02x}{:02x}{:02x}", a, b, d);
    let link = Link(format!("kr{tok}"));
    let net = format!("100.{}.{b}", 64 + a % 64);
    // A veth pair, both ends up, has carrier (this kernel has no dummy links).
    let peer = format!("{}p", link.0);
    ip(&["link", "add", &link.0, "type", "veth", "peer", "name", &peer]);
    ip(&["link", "set", &peer, "up"]);
    ip(&["addr", "add", &format!("{net}.1/24"), "dev", &link.0]);
    ip(&["link", "set", &link.0, "up"]);
    let state = Dir(std::env::temp_dir().join(format!("kubus-routes-{tok}")));
    std::fs::create_dir_all(&state.0).unwrap();

    let (cidr_b, cidr_c) = (format!("10.{a}.{b}.0/24"), format!("10.{c}.{d}.0/24"));
    let mut desired: RouteTable = [
        (cidr_b.clone(), format!("{net}.11").parse().unwrap()),
        (cidr_c.clone(), format!("{net}.12").parse().unwrap()),
    ]
    .into();
    // A node whose address is this host's own: its pod CIDR is local, no route.
    desired.insert(format!("10.{a}.{}.0/24", b.wrapping_add(1)), format!("{net}.1").parse().unwrap());
    let _undo = Undo(state.0.clone());
    let mut routes = PodRoutes::load(&state.0).unwrap();
    let stats = routes.sync(&desired).unwrap();
    assert_eq!((stats.installed, stats.local, stats.failed.len()), (2, 1, 0), "{stats:?}");
    assert!(ip(&["route", "show", &cidr_b]).contains(&format!("via {net}.11 dev {}", link.0)));
    assert!(ip(&["route", "show", &cidr_c]).contains(&format!("via {net}.12")));

    // Everything in place: a sync writes nothing.
    let stats = routes.sync(&desired).unwrap();
    assert_eq!((stats.installed, stats.written, stats.removed), (2, 0, 0), "{stats:?}");

    // A node that moved gets its route rewritten; one that left loses it; a route deleted by
    // someone else comes back on the next sync, and only it is written.
    ip(&["route", "del", &cidr_c]);
    let stats = routes.sync(&desired).unwrap();
    assert_eq!((stats.written, stats.failed.len()), (1, 0), "{stats:?}");
    assert!(ip(&["route", "show", &cidr_c]).contains(&format!("via {net}.12")));
    desired.insert(cidr_b.clone(), format!("{net}.21").parse().unwrap());
    let stats = routes.sync(&desired).unwrap();
    assert_eq!((stats.written, stats.failed.len()), (1, 0), "{stats:?}");
    assert!(ip(&["route", "show", &cidr_b]).contains(&format!("via {net}.21")));
    desired.remove(&cidr_c);
    routes.sync(&desired).unwrap();
    assert_eq!(ip(&["route", "show", &cidr_c]).trim(), "");

    // Single routes, as a Node change moves them: one moves, one comes, one goes, one
    // whose gateway is this host's own gets none.
    let cidr_d = format!("10.{c}.{}.0/24", d.wrapping_add(1));
    let own = format!("10.{c}.{}.0/24", d.wrapping_add(2));
    let changes = [
        (cidr_b.clone(), Some(format!("{net}.31").parse().unwrap())),
        (cidr_d.clone(), Some(format!("{net}.14").parse().unwrap())),
        (own.clone(), Some(format!("{net}.1").parse().unwrap())),
    ];
    let stats = routes.update(&changes).unwrap();
    assert_eq!((stats.installed, stats.written, stats.local, stats.failed.len()), (2, 2, 1, 0), "{stats:?}");
    assert!(ip(&["route", "show", &cidr_b]).contains(&format!("via {net}.31")));
    assert!(ip(&["route", "show", &cidr_d]).contains(&format!("via {net}.14")));
    assert_eq!(ip(&["route", "show", &own]).trim(), "");
    let stats = routes.update(&[(cidr_d.clone(), None)]).unwrap();
    assert_eq!((stats.installed, stats.removed), (1, 1), "{stats:?}");
    assert_eq!(ip(&["route", "show", &cidr_d]).trim(), "");
    desired.insert(cidr_b.clone(), format!("{net}.31").parse().unwrap());

    // A gateway the kernel refuses (here a multicast address): reported, not fatal.
    desired.insert(cidr_c.clone(), "224.0.0.9".parse().unwrap());
    let stats = routes.sync(&desired).unwrap();
    assert_eq!(stats.failed.len(), 1, "{stats:?}");
    assert_eq!(stats.failed[0].0, cidr_c);

    // A restarted agent knows what it installed; reset removes exactly that.
    let mut again = PodRoutes::load(&state.0).unwrap();
    assert_eq!(again.installed().len(), 1);
    assert_eq!(again.remove_all().unwrap(), 1);
    assert_eq!(ip(&["route", "show", &cidr_b]).trim(), "");
    assert!(!state.0.join("routes.json").exists());
}
