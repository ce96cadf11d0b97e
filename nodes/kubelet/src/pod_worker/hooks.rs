//! Lifecycle hooks, as upstream runs them. postStart runs right after the container started;
//! the worker waits for it (so the container is reported neither Running nor started before
//! it returns), and a failure kills the container, which then restarts by the pod's restart
//! policy. preStop runs before the container is signalled, within the grace period, and the
//! time it takes comes off that period (see `teardown.rs`).

use super::{PodWorker, WorkerMsg};
use crate::handlers::{self, Action, Use};
use k8s_openapi::api::core::v1::Container;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::events::EventType;
use std::time::Duration;

/// Which hook of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hook {
    PostStart,
    PreStop,
}

/// The container's hook of this kind, if it has one that does something.
pub(super) fn hook_action(c: &Container, hook: Hook) -> Option<Action> {
    let lifecycle = c.lifecycle.as_ref()?;
    let handler = match hook {
        Hook::PostStart => lifecycle.post_start.as_ref()?,
        Hook::PreStop => lifecycle.pre_stop.as_ref()?,
    };
    Action::of_hook(handler)
}

/// Upstream's message for a failed hook (`handlerRunner.Run`).
pub(super) fn hook_failure_message(action: &Action, container: &str, pod: &str, error: &str) -> String {
    match action {
        Action::Exec(argv) => {
            // The command as Go's %v prints a []string; the output as %q.
            let output = error.split_once(" exited with ").and_then(|(_, r)| r.split_once(": ")).map_or("", |(_, o)| o);
            format!(
                "Exec lifecycle hook ([{}]) for Container {container:?} in Pod {pod:?} failed - error: {error}, message: {output:?}",
                argv.join(" ")
            )
        }
        Action::HttpGet(g) => format!(
            "HTTP lifecycle hook ({}) for Container {container:?} in Pod {pod:?} failed - error: {error}",
            g.path.as_deref().unwrap_or("")
        ),
        Action::Sleep(s) => {
            format!("Sleep lifecycle hook ({s}) for Container {container:?} in Pod {pod:?} failed - error: {error}")
        }
        other => format!("Cannot run handler: invalid handler: {other:?}"),
    }
}

impl PodWorker {
    /// `name_namespace(uid)`, as upstream's messages name a pod.
    pub(super) fn pod_label(&self) -> String {
        format!("{}_{}({})", self.name(), self.ns(), self.uid)
    }

    /// Runs the postStart hook of the container's run `id`. Ok(true): it passed (or there is
    /// none); Ok(false): it failed and the container was killed; Err(()): the pod is going away
    /// meanwhile (the hook is abandoned, termination takes over).
    pub(super) async fn post_start(&mut self, c: &Container, id: &str) -> Result<bool, ()> {
        let Some(action) = hook_action(c, Hook::PostStart) else { return Ok(true) };
        let target = self.handler_target(&c.name, c, id);
        // Upstream gives postStart no timeout; the pod's deletion ends the wait instead.
        let hook = handlers::run(&action, &target, Use::Hook, Duration::MAX);
        tokio::pin!(hook);
        let result = loop {
            tokio::select! {
                r = &mut hook => break r,
                m = self.rx.recv() => match m {
                    Some(WorkerMsg::Update(p)) => {
                        self.updated |= super::changed_by_user(&self.pod, &p);
                        self.pod = p;
                        if self.pod.is_deleting() {
                            return Err(());
                        }
                    }
                    Some(WorkerMsg::Removed) | None => {
                        self.removed = true;
                        return Err(());
                    }
                    // The container's own exit (or another's) is taken in after the hook.
                    Some(m @ WorkerMsg::Exited { .. }) => self.pending.push_back(m),
                },
            }
        };
        let Err(error) = result else { return Ok(true) };
        let msg = hook_failure_message(&action, &c.name, &self.pod_label(), &error);
        tracing::info!(container = %c.name, %msg, "postStart hook failed");
        self.event(EventType::Warning, "FailedPostStartHook", &msg).await;
        self.event(EventType::Normal, "Killing", "FailedPostStartHook").await;
        self.stop_container(&c.name, id, self.grace_period()).await;
        self.on_exit(id).await;
        Ok(false)
    }

    /// Runs the preStop hook (if any) within `grace`; the time it took.
    pub(super) async fn pre_stop(&self, name: &str, id: &str, grace: Duration) -> Duration {
        let t0 = tokio::time::Instant::now();
        let Some(c) = self.container_spec(name) else { return Duration::ZERO };
        let Some(action) = hook_action(c, Hook::PreStop).filter(|_| !grace.is_zero()) else {
            return Duration::ZERO;
        };
        let target = self.handler_target(name, c, id);
        match tokio::time::timeout(grace, handlers::run(&action, &target, Use::Hook, grace)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let msg = hook_failure_message(&action, name, &self.pod_label(), &error);
                self.event(EventType::Warning, "FailedPreStopHook", &msg).await;
            }
            Err(_) => tracing::info!(container = %name, "preStop hook not completed in grace period"),
        }
        t0.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hooks_and_their_failure_messages() {
        let c: Container = serde_json::from_value(json!({"name": "app", "lifecycle": {
            "postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}},
            "preStop": {"httpGet": {"path": "/quit", "port": 80}}}}))
        .unwrap();
        let post = hook_action(&c, Hook::PostStart).unwrap();
        assert_eq!(post, Action::Exec(vec!["sh".into(), "-c".into(), "exit 3".into()]));
        assert_eq!(
            hook_failure_message(&post, "app", "web_default(u1)", "command 'sh -c exit 3' exited with 3: oops"),
            "Exec lifecycle hook ([sh -c exit 3]) for Container \"app\" in Pod \"web_default(u1)\" failed - error: \
             command 'sh -c exit 3' exited with 3: oops, message: \"oops\""
        );
        let pre = hook_action(&c, Hook::PreStop).unwrap();
        assert_eq!(
            hook_failure_message(&pre, "app", "p", "Get \"http://1.2.3.4:80/quit\": refused"),
            "HTTP lifecycle hook (/quit) for Container \"app\" in Pod \"p\" failed - error: Get \"http://1.2.3.4:80/quit\": refused"
        );
        let none: Container = serde_json::from_value(json!({"name": "x"})).unwrap();
        assert!(hook_action(&none, Hook::PreStop).is_none());
    }
}
