//! `spec.podFailurePolicy`: what a failed pod means for its Job (upstream's
//! `matchPodFailurePolicy`). Rules are tried in order; the first that matches decides.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kubus_apimachinery::ObjectExt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The Job fails at once; the message says which rule and why.
    FailJob(String),
    /// The failure does not count towards backoffLimit.
    Ignore,
    /// Counted as usual (also when no rule matches).
    Count,
}

/// What `policy` says of the failed `pod`.
pub fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else { return Verdict::Count };
    for (i, rule) in policy.rules.iter().enumerate() {
        let hit = if let Some(req) = &rule.on_exit_codes {
            exit_code_match(req, pod).map(|(container, code)| {
                format!(
                    "Container {container} for pod {}/{} failed with exit code {code} matching {} rule at index {i}",
                    pod.namespace(),
                    pod.name(),
                    rule.action
                )
            })
        } else {
            let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
            let matched = rule
                .on_pod_conditions
                .iter()
                .flatten()
                .any(|p| conditions.into_iter().flatten().any(|c| c.type_ == p.type_ && c.status == p.status));
            matched.then(|| {
                format!(
                    "Pod {}/{} has condition matching {} rule at index {i}",
                    pod.namespace(),
                    pod.name(),
                    rule.action
                )
            })
        };
        if let Some(message) = hit {
            return match rule.action.as_str() {
                "FailJob" => Verdict::FailJob(message),
                "Ignore" => Verdict::Ignore,
                _ => Verdict::Count,
            };
        }
    }
    Verdict::Count
}

/// The first container (init containers included) that ended with a code the requirement
/// matches; exit code 0 never matches (a succeeded container is not a failure).
fn exit_code_match(req: &PodFailurePolicyOnExitCodesRequirement, pod: &Pod) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?;
    let all: Vec<&ContainerStatus> =
        status.container_statuses.iter().flatten().chain(status.init_container_statuses.iter().flatten()).collect();
    all.into_iter().find_map(|cs| {
        if req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
            return None;
        }
        let code = cs.state.as_ref()?.terminated.as_ref()?.exit_code;
        let listed = req.values.contains(&code);
        let matches = code != 0 && if req.operator == "In" { listed } else { !listed };
        matches.then(|| (cs.name.clone(), code))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule};
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn failed(code: i32, condition: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some("p".into()), namespace: Some("ns".into()), ..Default::default() },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated { exit_code: code, ..Default::default() }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                conditions: condition
                    .map(|c| vec![PodCondition { type_: c.into(), status: "True".into(), ..Default::default() }]),
                ..Default::default()
            }),
        }
    }

    fn codes(action: &str, op: &str, values: &[i32]) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: op.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let policy = PodFailurePolicy {
            rules: vec![
                PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_exit_codes: None,
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                    }]),
                },
                codes("FailJob", "In", &[42]),
                codes("Count", "NotIn", &[1]),
            ],
        };
        assert_eq!(judge(Some(&policy), &failed(1, Some("DisruptionTarget"))), Verdict::Ignore);
        assert_eq!(
            judge(Some(&policy), &failed(42, None)),
            Verdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()
            )
        );
        assert_eq!(judge(Some(&policy), &failed(3, None)), Verdict::Count);
        assert_eq!(judge(Some(&policy), &failed(1, None)), Verdict::Count, "no rule matches");
        assert_eq!(judge(None, &failed(42, None)), Verdict::Count);
        // NotIn never matches a clean exit.
        let not_in = PodFailurePolicy { rules: vec![codes("FailJob", "NotIn", &[5])] };
        assert_eq!(judge(Some(&not_in), &failed(0, None)), Verdict::Count);
    }
}
