//! How many replicas a resource metric asks for (upstream's `ReplicaCalculator`): the usage
//! of the target's pods against their requests (a utilization target) or per pod (an
//! average-value target), with upstream's treatment of pods that are not ready yet, have no
//! metrics, or are going away, and its 10% tolerance.

use std::collections::BTreeMap;

/// Within this ratio of the target nothing changes (upstream's
/// --horizontal-pod-autoscaler-tolerance).
pub const TOLERANCE: f64 = 0.1;

/// What the calculator needs of one pod of the target.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    pub name: String,
    /// Counted as it is: Running and Ready (for CPU: not in its start-up period either).
    pub state: PodState,
    /// Sum of the containers' requests of the resource (milli-units); None when a container
    /// requests none.
    pub request: Option<i64>,
    /// Sum of the containers' usage (milli-units); None when the pod has no metrics.
    pub usage: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Ready,
    /// Not ready yet, or (CPU) just started: its usage says nothing of the load.
    Unready,
    /// Being deleted or failed: left out entirely.
    Ignored,
}

/// The target of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// averageUtilization: percent of the requests.
    Utilization(i64),
    /// averageValue: milli-units per pod.
    AverageValue(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub replicas: i32,
    /// Current average utilization (percent of requests), for utilization targets.
    pub utilization: Option<i64>,
    /// Current average usage per pod (milli-units).
    pub average_value: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CalculatorError {
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest { resource: String, container: String, pod: String },
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetrics,
}

/// The replicas the metric asks for, given the current replica count.
pub fn replicas(current: i32, pods: &[PodSample], target: Target) -> Result<Recommendation, CalculatorError> {
    if pods.is_empty() {
        return Err(CalculatorError::NoPods);
    }
    let mut ready = 0usize;
    let mut metrics: BTreeMap<&str, i64> = BTreeMap::new();
    let mut unready: Vec<&PodSample> = Vec::new();
    let mut missing: Vec<&PodSample> = Vec::new();
    for p in pods {
        match (p.state, p.usage) {
            (PodState::Ignored, _) => {}
            (_, None) => missing.push(p),
            (PodState::Unready, Some(_)) => unready.push(p),
            (PodState::Ready, Some(u)) => {
                ready += 1;
                metrics.insert(&p.name, u);
            }
        }
    }
    if metrics.is_empty() {
        return Err(CalculatorError::NoMetrics);
    }
    let requests: BTreeMap<&str, i64> = pods.iter().filter_map(|p| Some((p.name.as_str(), p.request?))).collect();
    let ratio_of = |metrics: &BTreeMap<&str, i64>| -> (f64, Option<i64>, i64) {
        let usage: i64 = metrics.values().sum();
        let average = usage / metrics.len() as i64;
        match target {
            Target::Utilization(t) => {
                let requested: i64 = metrics.keys().filter_map(|n| requests.get(n)).sum();
                let utilization = if requested > 0 { usage * 100 / requested } else { 0 };
                (utilization as f64 / t as f64, Some(utilization), average)
            }
            Target::AverageValue(t) => (usage as f64 / (t as f64 * metrics.len() as f64), None, average),
        }
    };
    let (ratio, utilization, average_value) = ratio_of(&metrics);
    let keep = |replicas: i32| Recommendation { replicas, utilization, average_value };
    let scale_up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if (1.0 - ratio).abs() <= TOLERANCE {
            return Ok(keep(current));
        }
        return Ok(keep((ratio * ready as f64).ceil() as i32));
    }
    // Pods without metrics count as using their whole request when the load falls and
    // nothing when it rises; unready pods nothing when it rises: each guess damps the change.
    let mut guessed = metrics.clone();
    for p in &missing {
        let assumed = match target {
            Target::Utilization(_) if ratio < 1.0 => requests.get(p.name.as_str()).copied().unwrap_or(0),
            Target::AverageValue(t) if ratio < 1.0 => t,
            _ => 0,
        };
        guessed.insert(&p.name, assumed);
    }
    if scale_up_with_unready {
        for p in &unready {
            guessed.insert(&p.name, 0);
        }
    }
    let (new_ratio, _, _) = ratio_of(&guessed);
    if (1.0 - new_ratio).abs() <= TOLERANCE || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Ok(keep(current));
    }
    let proposed = (new_ratio * guessed.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && proposed > current) || (new_ratio > 1.0 && proposed < current) {
        return Ok(keep(current));
    }
    Ok(keep(proposed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, state: PodState, request: i64, usage: Option<i64>) -> PodSample {
        PodSample { name: name.into(), state, request: Some(request), usage }
    }

    #[test]
    fn busy_pods_ask_for_more_replicas_in_proportion() {
        // One pod at 1000m of a 100m request against a 50% target: 20 replicas.
        let pods = [pod("a", PodState::Ready, 100, Some(1000))];
        let r = replicas(1, &pods, Target::Utilization(50)).unwrap();
        assert_eq!((r.replicas, r.utilization), (20, Some(1000)));
        // Three pods at 30% against 50%: ceil(0.6 * 3) = 2.
        let pods: Vec<_> = ["a", "b", "c"].iter().map(|n| pod(n, PodState::Ready, 100, Some(30))).collect();
        assert_eq!(replicas(3, &pods, Target::Utilization(50)).unwrap().replicas, 2);
    }

    #[test]
    fn within_tolerance_nothing_changes() {
        let pods: Vec<_> = ["a", "b"].iter().map(|n| pod(n, PodState::Ready, 100, Some(54))).collect();
        assert_eq!(replicas(2, &pods, Target::Utilization(50)).unwrap().replicas, 2);
    }

    #[test]
    fn missing_and_unready_pods_damp_the_change() {
        // Load falls, but a pod without metrics is assumed at its request: 2 ready at 10% and
        // one at 100% -> 40% of 50% -> ceil(0.8 * 3) = 3: no change.
        let pods = [
            pod("a", PodState::Ready, 100, Some(10)),
            pod("b", PodState::Ready, 100, Some(10)),
            pod("c", PodState::Ready, 100, None),
        ];
        assert_eq!(replicas(3, &pods, Target::Utilization(50)).unwrap().replicas, 3);
        // Load rises with an unready pod: it counts as 0: (200 + 0) / 200 = 100% of 50% -> 4.
        let pods = [pod("a", PodState::Ready, 100, Some(200)), pod("b", PodState::Unready, 100, Some(500))];
        assert_eq!(replicas(2, &pods, Target::Utilization(50)).unwrap().replicas, 4);
    }

    #[test]
    fn average_value_targets_divide_usage_per_pod() {
        let pods: Vec<_> = ["a", "b"].iter().map(|n| pod(n, PodState::Ready, 0, Some(300))).collect();
        let r = replicas(2, &pods, Target::AverageValue(100)).unwrap();
        assert_eq!((r.replicas, r.average_value), (6, 300));
    }

    #[test]
    fn nothing_to_measure_is_an_error() {
        assert_eq!(replicas(1, &[], Target::Utilization(50)), Err(CalculatorError::NoPods));
        let pods = [pod("a", PodState::Ignored, 100, Some(10))];
        assert_eq!(replicas(1, &pods, Target::Utilization(50)), Err(CalculatorError::NoMetrics));
    }
}
