//! Impersonation (upstream's filter, what `kubectl --as=alice --as-group=g` sends): the
//! authenticated user must be allowed `impersonate` on each thing it asks to be, then the
//! request runs as that user.

use super::{
    service_account_groups, service_account_of, Presented, UserInfo, ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, ANONYMOUS,
};
use crate::authorization::{forbidden, Attributes, Authorizer};
use kubus_apimachinery::StatusError;
use std::collections::BTreeMap;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// The user a request runs as: `user` itself, or the user it impersonates when it may.
pub fn impersonate(authz: &dyn Authorizer, user: UserInfo, presented: &Presented) -> Result<UserInfo, StatusError> {
    let name = presented.values(USER).next().map(str::to_string);
    let groups: Vec<String> = presented.values(GROUP).map(str::to_string).collect();
    let uid = presented.values(UID).next().map(str::to_string);
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (h, v) in &presented.headers {
        if let Some(key) = h.strip_prefix(EXTRA_PREFIX) {
            // Extra keys are percent-encoded in header names.
            extra
                .entry(percent_encoding::percent_decode_str(key).decode_utf8_lossy().to_ascii_lowercase())
                .or_default()
                .push(v.clone());
        }
    }
    let Some(name) = name else {
        if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
            return Err(StatusError::bad_request(format!(
                "requested {} without impersonating a user",
                describe(&groups, uid.as_deref(), &extra)
            )));
        }
        return Ok(user);
    };
    // Each thing asked for is checked as upstream names it.
    let check = |verb_target: Attributes| -> Result<(), StatusError> {
        match authz.authorize(&verb_target) {
            d if d.allowed() => Ok(()),
            d => Err(forbidden(&verb_target, d.reason())),
        }
    };
    let mut groups_out = groups.clone();
    match service_account_of(&name) {
        Some((ns, sa)) => {
            check(Attributes::resource(&user, "impersonate", "", "serviceaccounts", ns, sa))?;
            if groups.is_empty() {
                groups_out.extend(service_account_groups(ns));
            }
        }
        None => check(Attributes::resource(&user, "impersonate", "", "users", "", &name))?,
    }
    for g in &groups {
        check(Attributes::resource(&user, "impersonate", "", "groups", "", g))?;
    }
    for (key, values) in &extra {
        for v in values {
            check(Attributes::resource(
                &user,
                "impersonate",
                AUTHENTICATION_GROUP,
                &format!("userextras/{key}"),
                "",
                v,
            ))?;
        }
    }
    if let Some(uid) = &uid {
        check(Attributes::resource(&user, "impersonate", AUTHENTICATION_GROUP, "uids", "", uid))?;
    }
    // Everyone but the anonymous user is authenticated, unless the request says otherwise.
    if name != ANONYMOUS {
        if !groups_out.iter().any(|g| g == ALL_AUTHENTICATED || g == ALL_UNAUTHENTICATED) {
            groups_out.push(ALL_AUTHENTICATED.into());
        }
    } else if !groups_out.iter().any(|g| g == ALL_UNAUTHENTICATED) {
        groups_out.push(ALL_UNAUTHENTICATED.into());
    }
    Ok(UserInfo { name, uid: uid.unwrap_or_default(), groups: groups_out, extra })
}

fn describe(groups: &[String], uid: Option<&str>, extra: &BTreeMap<String, Vec<String>>) -> String {
    let mut parts: Vec<String> = groups.iter().map(|g| format!("{{Group  {g}  authentication.k8s.io/v1  }}")).collect();
    for (k, vs) in extra {
        for v in vs {
            parts.push(format!("{{UserExtra  {v}  authentication.k8s.io/v1  {k}}}"));
        }
    }
    if let Some(u) = uid {
        parts.push(format!("{{UID  {u}  authentication.k8s.io/v1  }}"));
    }
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorization::rbac::tests::fixture;
    use serde_json::json;

    fn presented(h: &[(&str, &str)]) -> Presented {
        Presented::from_headers(crate::authn::Channel::Nats, h.iter().copied())
    }

    #[test]
    fn admin_impersonates_and_others_may_not() {
        let chain = crate::authorization::chain(fixture());
        let admin = crate::authn::cluster_admin();
        let u = impersonate(&chain, admin.clone(), &presented(&[("Impersonate-User", "alice")])).unwrap();
        assert_eq!(u, UserInfo::new("alice", &["system:authenticated"]));
        let u = impersonate(
            &chain,
            admin.clone(),
            &presented(&[("Impersonate-User", "system:serviceaccount:ci:bot"), ("Impersonate-Extra-Scopes", "x")]),
        )
        .unwrap();
        assert_eq!(u.groups, ["system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"]);
        assert_eq!(u.extra["scopes"], ["x"]);
        let u = impersonate(&chain, admin.clone(), &presented(&[])).unwrap();
        assert_eq!(u, admin);
        let e = impersonate(&chain, admin, &presented(&[("Impersonate-Group", "g")])).unwrap_err();
        assert_eq!(e.code, 400);

        let alice = UserInfo::new("alice", &["system:authenticated"]);
        let e = impersonate(&chain, alice, &presented(&[("Impersonate-User", "bob")])).unwrap_err();
        assert_eq!(
            e.message,
            r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let mut f = fixture();
        f.add("clusterroles", json!({"metadata": {"name": "imp"},
            "rules": [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["bob"]}]}))
            .add("clusterrolebindings", json!({"metadata": {"name": "imp"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "imp"},
            "subjects": [{"kind": "User", "name": "alice"}]}));
        let chain = crate::authorization::chain(f);
        let alice = UserInfo::new("alice", &["system:authenticated"]);
        assert_eq!(impersonate(&chain, alice.clone(), &presented(&[("Impersonate-User", "bob")])).unwrap().name, "bob");
        let e = impersonate(&chain, alice, &presented(&[("Impersonate-User", "bob"), ("Impersonate-Group", "admins")]))
            .unwrap_err();
        assert!(e.message.starts_with(r#"groups "admins" is forbidden"#), "{}", e.message);
    }
}
