//! ImageLocality: prefers nodes that already hold the pod's images, weighted by image size
//! and by how widely the image is spread (so one node holding it does not attract
//! everything).

use k8s_openapi::api::core::v1::{Container, Pod};
use kubus_apimachinery::pod::spec;

use crate::framework::{
    ClusterSnapshot, CycleState, NodeInfo, Plugin, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};

pub const NAME: &str = "ImageLocality";
const PRE_SCORE_KEY: &str = "PreScoreImageLocality";
const MB: i64 = 1024 * 1024;
/// Below this the image is cheap to pull and locality does not matter.
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

#[derive(Debug, Default, Clone, Copy)]
pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// Adds ":latest" to an untagged reference, as upstream does before looking it up.
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    if colon.is_none_or(|c| slash.is_some_and(|s| c < s)) {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

#[derive(Clone)]
struct PreScoreState {
    /// (normalized image, nodes having it / all nodes), one entry per container.
    images: Vec<(String, f64)>,
    containers: i64,
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(&self, state: &mut CycleState, pod: &Pod, _nodes: &[&NodeInfo], snapshot: &ClusterSnapshot) -> Status {
        let spec = spec(pod);
        let containers: Vec<&Container> = spec.init_containers.iter().flatten().chain(&spec.containers).collect();
        let total = snapshot.nodes().len().max(1) as f64;
        let images = containers
            .iter()
            .filter_map(|c| c.image.as_deref())
            .map(normalized_image_name)
            .map(|name| {
                let spread = snapshot.image_num_nodes(&name) as f64 / total;
                (name, spread)
            })
            .collect();
        state.write(PRE_SCORE_KEY, PreScoreState { images, containers: containers.len() as i64 });
        Status::Ok
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return 0;
        };
        if node.images().is_empty() || s.containers == 0 {
            return 0;
        }
        let sum: i64 = s
            .images
            .iter()
            .filter_map(|(name, spread)| node.images().get(name).map(|size| (*size as f64 * spread) as i64))
            .sum();
        let max_threshold = MAX_CONTAINER_THRESHOLD * s.containers;
        let clamped = sum.clamp(MIN_THRESHOLD, max_threshold.max(MIN_THRESHOLD));
        MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use serde_json::json;

    #[test]
    fn normalizes_untagged_names() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.25"), "nginx:1.25");
        assert_eq!(normalized_image_name("reg:5000/nginx"), "reg:5000/nginx:latest");
    }

    #[test]
    fn node_with_large_image_scores_higher() {
        let with_image =
            set(node("a", "4", "8Gi"), "/status/images", json!([{"names": ["nginx:latest"], "sizeBytes": 500 * MB}]));
        let snap = snapshot(vec![with_image, node("b", "4", "8Gi")], &[]);
        let p = pod("p", None, None);
        let mut st = state(&p);
        let nodes: Vec<&NodeInfo> = snap.nodes().iter().collect();
        assert!(ImageLocality.pre_score(&mut st, &p, &nodes, &snap).is_ok());
        // 500Mi × 1/2 spread = 250Mi → 100 × (250 − 23) / (1000 − 23) = 23
        assert_eq!(ImageLocality.score(&st, &p, nodes[0]), 23);
        assert_eq!(ImageLocality.score(&st, &p, nodes[1]), 0);
    }
}
