//! The ClusterRole aggregation controller (upstream `pkg/controller/clusterroleaggregation`):
//! a ClusterRole with an `aggregationRule` holds the rules of every ClusterRole its selectors
//! match. Any ClusterRole change queues every aggregating role, so a role labelled
//! `rbac.authorization.k8s.io/aggregate-to-view` after start is folded into `view` (and, as
//! `view` then changes, into `edit` and `admin`), and taken out again when the label goes.
//! The rule itself is the API server bootstrap's (`kubus_apimachinery::rbac`).

use futures::future::BoxFuture;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kubus_apimachinery::{rbac, ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::informer::Change;
use kubus_controller_runtime::{Client, Informer, InformerFactory};
use serde_json::Value;
use std::sync::Arc;

/// Upstream runs this controller with five workers.
pub const WORKERS: usize = 5;

/// The index of the ClusterRoles that aggregate others (every one under [`AGGREGATING`]).
const AGGREGATORS: &str = "aggregation-rule";
const AGGREGATING: &str = "aggregating";

pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let roles = factory.get::<ClusterRole>();
    roles.add_index(AGGREGATORS, |r: &ClusterRole| {
        r.aggregation_rule.as_ref().map(|_| AGGREGATING.to_string()).into_iter().collect()
    });
    // Any change may concern any aggregator's selectors: queue them all (a few), not every role.
    let aggregators = {
        let roles = roles.clone();
        move |change: &Change<ClusterRole>| match change {
            Change::Resynced => Vec::new(),
            _ => roles.by_index(AGGREGATORS, AGGREGATING).iter().map(|r| r.key()).collect(),
        }
    };
    // Upstream's work queue name.
    let ctrl = Controller::new("ClusterRoleAggregator", roles.clone())
        .watches_changes(roles.clone(), aggregators)
        .workers(workers);
    ctrl.run(Arc::new(ClusterRoleAggregation { client, roles }))
}

struct ClusterRoleAggregation {
    client: Client,
    roles: Informer<ClusterRole>,
}

/// The rules `role` should hold given every cluster role, or None when it does not aggregate
/// or already holds them.
pub fn desired_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Result<Option<Vec<PolicyRule>>, Error> {
    if role.aggregation_rule.is_none() {
        return Ok(None);
    }
    let json = |r: &ClusterRole| serde_json::to_value(r).map_err(|e| Error::InvalidObject(e.to_string()));
    let own = json(role)?;
    let others: Vec<Value> = all.iter().map(|r| json(r)).collect::<Result<_, _>>()?;
    let Some(rules) = rbac::aggregated_rules(&own, others.iter()) else { return Ok(None) };
    let have = own["rules"].as_array().map(Vec::as_slice).unwrap_or_default();
    if have == rules.as_slice() {
        return Ok(None);
    }
    serde_json::from_value(Value::Array(rules)).map(Some).map_err(|e| Error::InvalidObject(e.to_string()))
}

impl Reconciler for ClusterRoleAggregation {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(role) = self.roles.get_key(key) else { return Ok(Action::Done) };
        let Some(rules) = desired_rules(&role, &self.roles.list())? else { return Ok(Action::Done) };
        tracing::info!(clusterrole = %role.name(), rules = rules.len(), "aggregating cluster role rules");
        // The cached resourceVersion goes along: written from a stale cache, the update
        // conflicts and is retried once the cache has caught up.
        let updated = ClusterRole { rules: Some(rules), ..(*role).clone() };
        match self.client.replace(&updated).await {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(Action::Done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(v: Value) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn folds_labelled_roles_in_and_out() {
        let view = role(json!({"metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}));
        let base = role(
            json!({"metadata": {"name": "a-base", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        );
        let cron = json!({"metadata": {"name": "cron-viewer"},
            "rules": [{"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "list"]}]});
        let unlabelled = role(cron.clone());
        let mut labelled = cron;
        labelled["metadata"]["labels"] = json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"});
        let labelled = role(labelled);

        // Up to date: nothing to write; a role without an aggregation rule is never touched.
        assert!(desired_rules(&view, &[view.clone(), base.clone(), unlabelled.clone()]).unwrap().is_none());
        assert!(desired_rules(&base, &[view.clone(), base.clone()]).unwrap().is_none());

        let rules = desired_rules(&view, &[view.clone(), base.clone(), labelled.clone()]).unwrap().expect("changed");
        let resources: Vec<_> = rules.iter().map(|r| r.resources.clone().unwrap_or_default()).collect();
        assert_eq!(resources, [vec!["pods".to_string()], vec!["cronjobs".to_string()]]);

        // The label goes: so do its rules.
        let aggregated = role(json!({"metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]},
            "rules": serde_json::to_value(&rules).unwrap()}));
        let rules =
            desired_rules(&aggregated, &[aggregated.clone(), base.clone(), unlabelled]).unwrap().expect("changed");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].resources.as_deref(), Some(&["pods".to_string()][..]));
    }
}
