//! Compute's wire format: resources, operations, list pages, filters and Google's error body.

use crate::now_rfc3339;
use crate::world::{Mig, Vm, World, machine_type};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub(crate) fn new_op(
    w: &mut World,
    scope: &str,
    op_type: &str,
    target: &str,
    status: &str,
    error: Option<(String, String)>,
) -> Value {
    w.op_counter += 1;
    let name = format!(
        "operation-{}-{:06}",
        w.op_counter,
        w.op_counter * 7919 % 1_000_000
    );
    let base = format!("{}/compute/v1/projects/{}", w.endpoint, w.project);
    let mut op = json!({
        "kind": "compute#operation",
        "id": (4_000_000_000u64 + w.op_counter).to_string(),
        "name": name,
        "operationType": op_type,
        "targetLink": target,
        "status": status,
        "progress": if status == "DONE" { 100 } else { 0 },
        "insertTime": now_rfc3339(),
        "startTime": now_rfc3339(),
        "selfLink": format!("{base}/{scope}/operations/{name}"),
        "user": "gpupool@example.iam.gserviceaccount.com",
    });
    let (kind, loc) = scope.split_once('/').unwrap_or(("zones", scope));
    op[if kind == "zones" { "zone" } else { "region" }] = json!(format!("{base}/{kind}/{loc}"));
    if let Some((code, message)) = error {
        op["error"] = json!({"errors": [{"code": code, "message": message}]});
        op["httpErrorStatusCode"] = json!(if code == "QUOTA_EXCEEDED" { 403 } else { 503 });
        op["httpErrorMessage"] = json!(if code == "QUOTA_EXCEEDED" {
            "FORBIDDEN"
        } else {
            "SERVICE UNAVAILABLE"
        });
    }
    if status == "DONE" {
        op["endTime"] = json!(now_rfc3339());
    }
    w.ops.insert(name, op.clone());
    op
}

pub(crate) fn mig_json(w: &World, m: &Mig) -> Value {
    let base = format!("{}/compute/v1/projects/{}", w.endpoint, w.project);
    let template = format!("{base}/global/instanceTemplates/{}", m.template);
    let stable = m.vms.iter().all(|v| v.action == "NONE");
    let count = |a: &str| m.vms.iter().filter(|v| v.action == a).count();
    let mut j = json!({
        "kind": "compute#instanceGroupManager",
        "id": "5000",
        "name": m.name,
        "selfLink": format!("{base}/{}/instanceGroupManagers/{}", m.scope, m.name),
        "instanceGroup": format!("{base}/{}/instanceGroups/{}", m.scope, m.name),
        "baseInstanceName": m.name,
        "instanceTemplate": template,
        "versions": [{"name": "primary", "instanceTemplate": template}],
        "targetSize": m.target_size,
        "targetStoppedSize": m.target_stopped_size,
        "targetSuspendedSize": m.target_suspended_size,
        "status": {"isStable": stable},
        // "creating: The number of instances in the managed instance group that are scheduled to
        // be created or are currently being created. If the group fails to create any of these
        // instances, it tries again until it creates the instance successfully"
        // (InstanceGroupManagerActionsSummary): a VM stuck on a stockout stays counted here.
        "currentActions": {
            "none": count("NONE"), "creating": count("CREATING"), "deleting": count("DELETING"),
            "recreating": count("RECREATING"), "starting": count("STARTING"), "stopping": count("STOPPING"),
            "resuming": count("RESUMING"), "suspending": count("SUSPENDING"),
        },
    });
    let (kind, loc) = m.scope.split_once('/').unwrap_or(("zones", ""));
    if kind == "zones" {
        j["zone"] = json!(format!("{base}/zones/{loc}"));
    } else {
        j["region"] = json!(format!("{base}/regions/{loc}"));
        j["distributionPolicy"] = json!({
            "zones": m.zones.iter().map(|z| json!({"zone": format!("{base}/zones/{z}")})).collect::<Vec<_>>(),
            "targetShape": "ANY",
        });
    }
    if let Some(mode) = &m.standby_mode {
        j["standbyPolicy"] = json!({"mode": mode, "initialDelaySec": 300});
    }
    j
}

pub(crate) fn vm_url(w: &World, vm: &Vm) -> String {
    format!(
        "{}/compute/v1/projects/{}/zones/{}/instances/{}",
        w.endpoint, w.project, vm.zone, vm.name
    )
}

pub(crate) fn managed_json(w: &World, vm: &Vm) -> Value {
    let mut j = json!({
        "instance": vm_url(w, vm),
        "name": vm.name,
        "currentAction": vm.action,
        "version": {"name": "primary"},
    });
    if !vm.status.is_empty() {
        j["instanceStatus"] = json!(vm.status);
        j["id"] = json!(vm.name.len() as u64 * 1_000_003);
    }
    // "The eventual status of the instance" (ManagedInstance.targetStatus).
    j["targetStatus"] = json!(if vm.action == "DELETING" {
        "DELETED"
    } else {
        match vm.standby_kind() {
            Some("SUSPENDED") => "SUSPENDED",
            Some(_) => "STOPPED",
            None => "RUNNING",
        }
    });
    // "Encountered errors during the last attempt to create or delete the instance"
    // (ManagedInstance.lastAttempt.errors), shown while the MIG keeps retrying a CREATING VM.
    if !vm.last_attempt_errors.is_empty() {
        j["lastAttempt"] = json!({"errors": {"errors": vm.last_attempt_errors.iter()
            .map(|(c, m)| json!({"code": c, "message": m})).collect::<Vec<_>>()}});
    }
    j
}

pub(crate) fn instance_json(w: &World, m: &Mig, vm: &Vm) -> Value {
    let machine = machine_type(&w.templates, &m.template);
    json!({
        "kind": "compute#instance",
        "id": (vm.name.len() as u64 * 1_000_003).to_string(),
        "name": vm.name,
        "zone": format!("{}/compute/v1/projects/{}/zones/{}", w.endpoint, w.project, vm.zone),
        "machineType": format!("{}/compute/v1/projects/{}/zones/{}/machineTypes/{machine}", w.endpoint, w.project, vm.zone),
        "status": vm.status,
        "creationTimestamp": vm.created,
        "labels": vm.labels,
        "labelFingerprint": label_fingerprint(&vm.labels),
        "networkInterfaces": [{"name": "nic0", "networkIP": vm.ip}],
        "selfLink": vm_url(w, vm),
    })
}

/// A VM's `labelFingerprint`: opaque to clients, changed by every change of the labels. The
/// real one is base64 of a hash; this is the hex of FNV-1a over the sorted labels (clients
/// must only send it back).
pub(crate) fn label_fingerprint(labels: &std::collections::BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

pub(crate) fn google_error(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"error": {"code": code, "message": message,
        "errors": [{"domain": "global", "reason": reason, "message": message}]}}),
    )
}

/// A rate-quota refusal in the form `limit` names. Sources:
/// - [`RateLimit::Legacy`]: "If your project exceeds a rate quota, you receive a 403 error with
///   the reason rateLimitExceeded" (Compute Engine rate quotas,
///   <https://cloud.google.com/compute/api-quota>); the body as the audit-log example of
///   "Troubleshoot operation limits" shows it: `{"code":403,"message":"Rate Limit Exceeded",
///   "errors":[{"message":"Rate Limit Exceeded","reason":"rateLimitExceeded","domain":
///   "usageLimits"}]}`.
/// - [`RateLimit::ErrorInfo`]: "If the quota is a rate quota, then 403 RATE_LIMIT_EXCEEDED is
///   returned" (Cloud Quotas, "Troubleshoot quota errors",
///   <https://cloud.google.com/docs/quotas/troubleshoot>), which Google's APIs carry as a
///   `google.rpc.ErrorInfo` in `details` beside the legacy array. ASSUMPTION: no captured
///   Compute body with both was found; the pairing follows the documented pieces. It matters
///   because Google's client reads `details` when present and the legacy array only otherwise
///   (google-cloud-gax 1.15, `error/rpc.rs`, `TryFrom<&Bytes> for Status`).
/// - [`RateLimit::TooManyRequests`]: HTTP 429 `RESOURCE_EXHAUSTED` "Quota exceeded for quota
///   metric 'Read requests' and limit 'Read requests per minute' of service
///   'compute.googleapis.com'", as reported for Compute reads.
pub(crate) fn rate_limit_error(limit: crate::RateLimit) -> (u16, Value) {
    let legacy = json!([{"message": "Rate Limit Exceeded", "domain": "usageLimits",
        "reason": "rateLimitExceeded"}]);
    match limit {
        crate::RateLimit::Legacy => (
            403,
            json!({"error": {"code": 403, "message": "Rate Limit Exceeded", "errors": legacy}}),
        ),
        crate::RateLimit::ErrorInfo => (
            403,
            json!({"error": {"code": 403, "message": "Rate Limit Exceeded", "errors": legacy,
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
                    "metadata": {"service": "compute.googleapis.com"}}]}}),
        ),
        crate::RateLimit::TooManyRequests => (
            429,
            json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                "message": "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service 'compute.googleapis.com'"}}),
        ),
    }
}

pub(crate) fn not_found(resource: &str) -> (u16, Value) {
    google_error(
        404,
        "notFound",
        &format!("The resource '{resource}' was not found"),
    )
}

/// Compute's list filter, the subset gpupool sends: `field op "value"` terms, optionally in
/// parentheses, joined by spaces (AND). `Err` for anything else (→ 400 invalid filter).
pub(crate) fn parse_filter(f: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut terms = Vec::new();
    let mut rest = f.trim();
    while !rest.is_empty() {
        let paren = rest.starts_with('(');
        if paren {
            rest = &rest[1..];
        }
        let field_end = rest
            .find(|c: char| c.is_whitespace() || "=!<>".contains(c))
            .ok_or("no operator")?;
        let field = rest[..field_end].to_owned();
        rest = rest[field_end..].trim_start();
        let op_len = rest.chars().take_while(|c| "=!<>".contains(*c)).count();
        let op = rest[..op_len].to_owned();
        if !["=", "!=", ">", "<", ">=", "<="].contains(&op.as_str()) {
            return Err(format!("bad operator {op:?}"));
        }
        rest = rest[op_len..].trim_start();
        let v = rest.strip_prefix('"').ok_or("value must be quoted")?;
        let end = v.find('"').ok_or("unterminated value")?;
        terms.push((field, op, v[..end].to_owned()));
        rest = v[end + 1..].trim_start();
        if paren {
            rest = rest
                .strip_prefix(')')
                .ok_or("unbalanced parenthesis")?
                .trim_start();
        }
    }
    Ok(terms)
}

pub(crate) fn matches(item: &Value, terms: &[(String, String, String)]) -> bool {
    terms.iter().all(|(field, op, want)| {
        let mut v = item;
        for part in field.split('.') {
            v = &v[part];
        }
        let have = match v {
            Value::String(s) => s.clone(),
            Value::Null => return op == "!=",
            other => other.to_string(),
        };
        // ASSUMPTION (the filter reference documents `=`, `!=`, `>`, `<` on field values but no
        // time type): values compare as strings, so an `insertTime` written with an offset does
        // not order against a UTC string — the reason the provider compares times itself.
        match op.as_str() {
            "=" => have == *want,
            "!=" => have != *want,
            ">" => have > *want,
            "<" => have < *want,
            ">=" => have >= *want,
            _ => have <= *want,
        }
    })
}

pub(crate) fn page(
    items: Vec<Value>,
    query: &BTreeMap<String, String>,
    page_size: usize,
    field: &str,
    kind: &str,
) -> Value {
    let start: usize = query
        .get("pageToken")
        .and_then(|t| t.strip_prefix("p").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let max = query
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(500usize)
        .min(page_size);
    let end = (start + max).min(items.len());
    let mut j = json!({"kind": kind, "id": "list"});
    j[field] = Value::Array(items[start.min(end)..end].to_vec());
    if end < items.len() {
        j["nextPageToken"] = json!(format!("p{end}"));
    }
    j
}
