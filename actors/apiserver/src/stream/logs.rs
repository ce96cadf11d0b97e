//! `GET .../pods/{name}/log`: the container's log as chunked text/plain, streamed from the node
//! agent for as long as it sends (with `follow`, until the container stops or the client leaves).

use super::{container_status, count_bytes, pick_container, Active, MultiQuery, PodTarget, Rejection, StreamContext};
use actix_web::{HttpRequest, HttpResponse};
use kubus_apimachinery::{Cause, StatusError};
use kubus_bus::stream::{channel, open_stream, Incoming, LogRequest, StreamKind};
use serde_json::{json, Value};

pub(crate) async fn serve(
    req: &HttpRequest,
    q: &MultiQuery,
    pod: &Value,
    ctx: &StreamContext,
) -> Result<HttpResponse, Rejection> {
    if req.method() != actix_web::http::Method::GET {
        return Err(StatusError::method_not_allowed().into());
    }
    let target = PodTarget::of_unscheduled_ok(pod)?;
    let container = pick_container(pod, q.get("container"))?;
    let log = LogRequest {
        namespace: target.namespace.clone(),
        pod: target.name.clone(),
        uid: target.uid.clone(),
        container: container.clone(),
        follow: q.flag("follow")?,
        previous: q.flag("previous")?,
        timestamps: q.flag("timestamps")?,
        tail_lines: q.int("tailLines")?,
        since_seconds: q.int("sinceSeconds")?,
        since_time: q.get("sinceTime").map(str::to_string),
        limit_bytes: q.int("limitBytes")?,
    };
    validate(&log)?;
    if target.node.is_empty() {
        return Err(StatusError::bad_request(format!("pod {} does not have a host assigned", target.name)).into());
    }
    check_container_state(pod, &target.name, &container, log.previous)?;
    let (tx, rx) = open_stream(&ctx.client, &ctx.cluster, &target.node, StreamKind::Logs(log)).await?;
    // The sender travels with the body: when the client leaves, actix drops the body, and the
    // node hears a reset and stops following.
    let body = futures::stream::unfold((rx, tx, Active::new("logs")), |(mut rx, tx, active)| async move {
        loop {
            match rx.recv().await? {
                Incoming::Data(channel::STDOUT, b) => {
                    count_bytes("logs", "to_client", b.len());
                    return Some((Ok::<_, std::convert::Infallible>(b), (rx, tx, active)));
                }
                Incoming::Done(Err(e)) => {
                    tracing::info!(error = %e, "log stream ended with an error");
                    return None;
                }
                Incoming::Done(Ok(_)) => return None,
                Incoming::Reset(reason) => {
                    tracing::info!(%reason, "log stream reset by the node");
                    return None;
                }
                _ => {}
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/plain")
        .insert_header(("Cache-Control", "no-cache, private"))
        .streaming(body))
}

impl PodTarget {
    /// Like [`PodTarget::of`], but lets the container checks run first (their messages are
    /// more useful than "no host" for a pod that is only pending).
    fn of_unscheduled_ok(pod: &Value) -> Result<PodTarget, Rejection> {
        match PodTarget::of(pod) {
            Ok(t) => Ok(t),
            Err(_) => Ok(PodTarget {
                namespace: pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
                name: pod["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                uid: pod["metadata"]["uid"].as_str().map(str::to_string),
                node: String::new(),
            }),
        }
    }
}

/// Upstream's PodLogOptions validation (422 Invalid).
fn validate(log: &LogRequest) -> Result<(), StatusError> {
    let mut causes = Vec::new();
    if let Some(t) = log.tail_lines.filter(|t| *t < 0) {
        causes.push(Cause::invalid("tailLines", &json!(t), "must be greater than or equal to 0"));
    }
    if let Some(l) = log.limit_bytes.filter(|l| *l < 1) {
        causes.push(Cause::invalid("limitBytes", &json!(l), "must be greater than 0"));
    }
    if let Some(s) = log.since_seconds.filter(|s| *s < 1) {
        causes.push(Cause::invalid("sinceSeconds", &json!(s), "must be greater than 0"));
    }
    if log.since_seconds.is_some() && log.since_time.is_some() {
        causes.push(Cause::forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"));
    }
    if let Some(t) = &log.since_time {
        if kubus_apimachinery::time::parse_rfc3339(t).is_none() {
            return Err(StatusError::bad_request(format!("invalid value {t:?} for sinceTime: not an RFC 3339 time")));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(StatusError::invalid("", "PodLogOptions", &log.pod, causes))
    }
}

/// What kubelet answers from the container's status (validateContainerLogStatus), decided here
/// where the pod is at hand: a container that never ran has no log yet.
fn check_container_state(pod: &Value, pod_name: &str, container: &str, previous: bool) -> Result<(), StatusError> {
    let Some(status) = container_status(pod, container) else { return Ok(()) };
    let last_terminated = status["lastState"]["terminated"].is_object();
    if previous {
        if !last_terminated {
            return Err(StatusError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{pod_name}\" not found"
            )));
        }
        return Ok(());
    }
    let state = &status["state"];
    if state["running"].is_object() || state["terminated"].is_object() || last_terminated {
        return Ok(());
    }
    if let Some(waiting) = state["waiting"].as_object() {
        let reason = waiting.get("reason").and_then(Value::as_str).unwrap_or("");
        let why = match reason {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            r => r.to_string(),
        };
        return Err(StatusError::bad_request(format!(
            "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {why}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_and_previous_follow_kubelet() {
        let pod = json!({"status": {"containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}},
            {"name": "b", "state": {"running": {}}, "lastState": {}},
        ]}});
        assert_eq!(
            check_container_state(&pod, "p", "a", false).unwrap_err().message,
            "container \"a\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        assert!(check_container_state(&pod, "p", "b", false).is_ok());
        assert_eq!(
            check_container_state(&pod, "p", "b", true).unwrap_err().message,
            "previous terminated container \"b\" in pod \"p\" not found"
        );
        let bad = LogRequest { pod: "p".into(), tail_lines: Some(-1), limit_bytes: Some(0), ..Default::default() };
        assert_eq!(validate(&bad).unwrap_err().code, 422);
    }
}
