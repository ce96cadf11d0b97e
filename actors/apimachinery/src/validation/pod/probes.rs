//! Probes and lifecycle hooks, and the handlers they run.

use serde_json::Value;

use super::{exactly_one, port_num, validate_port_num_or_name};
use crate::status::Cause;
use crate::validation::names;
use crate::validation::util::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

pub(super) fn probe(errs: &mut Vec<Cause>, pr: Option<&Value>, grace: Option<i64>, p: &str, kind: ProbeKind) {
    let Some(pr) = pr else {
        return;
    };
    handler(errs, pr, &["exec", "httpGet", "tcpSocket", "grpc"], grace, p);
    for field in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
        nonnegative_field(errs, pr, field, &child(p, field));
    }
    let tgp = child(p, "terminationGracePeriodSeconds");
    if let Some(t) = get(pr, "terminationGracePeriodSeconds") {
        if kind == ProbeKind::Readiness {
            errs.push(Cause::invalid(&tgp, t, "must not be set for readinessProbes"));
        } else if as_int(t).is_none_or(|n| n <= 0) {
            errs.push(Cause::invalid(&tgp, t, "must be greater than 0"));
        }
    }
    if kind != ProbeKind::Readiness {
        let st = get_int(pr, "successThreshold").unwrap_or(0);
        if st != 1 {
            errs.push(Cause::invalid(child(p, "successThreshold"), &Value::from(st), "must be 1"));
        }
    }
}

pub(super) fn lifecycle(errs: &mut Vec<Cause>, lc: &Value, grace: Option<i64>, p: &str) {
    for hook in ["postStart", "preStop"] {
        if let Some(h) = get(lc, hook) {
            handler(errs, h, &["exec", "httpGet", "tcpSocket", "sleep"], grace, &child(p, hook));
        }
    }
}

/// Exactly one handler among `kinds`, each well formed.
fn handler(errs: &mut Vec<Cause>, h: &Value, kinds: &[&str], grace: Option<i64>, p: &str) {
    exactly_one(errs, h, kinds, p, "handler type", |errs, kind, x, kp| match kind {
        "exec" if get_arr(x, "command").is_empty() => {
            errs.push(Cause::required(child(kp, "command")));
        }
        "httpGet" => {
            if get_str(x, "path").is_empty() {
                errs.push(Cause::required(child(kp, "path")));
            }
            validate_port_num_or_name(errs, get(x, "port"), &child(kp, "port"));
            let scheme = get_str(x, "scheme");
            if !matches!(scheme, "HTTP" | "HTTPS") {
                errs.push(Cause::not_supported(child(kp, "scheme"), &str_value(scheme), &["HTTP", "HTTPS"]));
            }
            for header in get_arr(x, "httpHeaders") {
                let n = get_str(header, "name");
                invalid_each(errs, &child(kp, "httpHeaders"), n, names::http_header_name_errors(n));
            }
        }
        "tcpSocket" => validate_port_num_or_name(errs, get(x, "port"), &child(kp, "port")),
        "grpc" => port_num(errs, get_int(x, "port").unwrap_or(0), &child(kp, "port")),
        "sleep" => {
            let secs = get_int(x, "seconds").unwrap_or(0);
            if let Some(g) = grace {
                if secs <= 0 || secs > g {
                    errs.push(Cause::invalid(
                            kp,
                            &Value::from(secs),
                            format!(
                                "must be greater than 0 and less than terminationGracePeriodSeconds ({g}). Enable AllowPodLifecycleSleepActionZeroValue feature gate for zero sleep."
                            ),
                        ));
                }
            }
        }
        _ => {}
    });
}
