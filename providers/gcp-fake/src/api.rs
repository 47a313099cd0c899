//! The Compute REST methods the fake serves: a router, and one handler per method.

use crate::now_rfc3339;
use crate::wire::{
    google_error, instance_json, label_fingerprint, managed_json, matches, mig_json, new_op,
    not_found, page, parse_filter,
};
use crate::world::{Vm, World, reconcile};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A parsed `filter` query parameter (empty: no filter).
type Filter = Vec<(String, String, String)>;
type Query = BTreeMap<String, String>;
type Reply = (u16, Value);

/// Answer one request; `path` is percent-decoded.
pub(crate) fn route(w: &mut World, method: &str, path: &str, query: &Query, body: &[u8]) -> Reply {
    w.calls.push(format!("{method} {path}"));
    if let Some(limit) = w.rate_limits.pop_front() {
        return crate::wire::rate_limit_error(limit);
    }
    let prefix = format!("/compute/v1/projects/{}/", w.project);
    let Some(rest) = path.strip_prefix(&prefix) else {
        return not_found(path);
    };
    let seg: Vec<&str> = rest.split('/').collect();
    if let Some(f) = query.get("filter") {
        w.filters.push(f.clone());
    }
    let filter = match query.get("filter").map(|f| parse_filter(f)) {
        Some(Err(e)) => {
            return google_error(
                400,
                "invalid",
                &format!("Invalid value for field 'filter': {e}"),
            );
        }
        Some(Ok(t)) => t,
        None => Vec::new(),
    };
    match (method, seg.as_slice()) {
        ("GET", ["global", "instanceTemplates", name]) => get_template(w, name),
        ("GET", [kind @ ("zones" | "regions"), loc, "instanceGroupManagers"]) => {
            list_migs(w, &format!("{kind}/{loc}"), &filter, query)
        }
        (
            _,
            [
                kind @ ("zones" | "regions"),
                loc,
                "instanceGroupManagers",
                name,
                verb @ ..,
            ],
        ) => {
            let scope = format!("{kind}/{loc}");
            let Some(idx) = w
                .migs
                .iter()
                .position(|m| m.scope == scope && m.name == *name)
            else {
                return not_found(&format!(
                    "projects/{}/{scope}/instanceGroupManagers/{name}",
                    w.project
                ));
            };
            mig_call(w, idx, method, verb, query, body, &scope)
        }
        ("GET", ["zones", zone, "instances"]) => list_instances(w, zone, &filter, query),
        ("GET", ["zones", zone, "instances", name]) => get_instance(w, zone, name),
        ("POST", ["zones", zone, "instances", name, "setLabels"]) => {
            set_labels(w, zone, name, body)
        }
        ("GET", [kind @ ("zones" | "regions"), loc, "operations", name]) => {
            get_operation(w, kind, loc, name)
        }
        ("GET", ["zones", zone, "operations"]) => list_operations(w, zone, &filter, query),
        _ => not_found(path),
    }
}

fn get_template(w: &World, name: &str) -> Reply {
    match w.templates.get(name) {
        Some(t) => (200, t.clone()),
        None => not_found(&format!(
            "projects/{}/global/instanceTemplates/{name}",
            w.project
        )),
    }
}

fn list_migs(w: &World, scope: &str, filter: &Filter, query: &Query) -> Reply {
    let items: Vec<Value> = w
        .migs
        .iter()
        .filter(|m| m.scope == scope)
        .map(|m| mig_json(w, m))
        .filter(|j| matches(j, filter))
        .collect();
    let kind = "compute#instanceGroupManagerList";
    (200, page(items, query, w.page_size, "items", kind))
}

/// `instances.list` of a zone: every VM that exists (a VM still being created has no instance
/// resource yet).
fn list_instances(w: &World, zone: &str, filter: &Filter, query: &Query) -> Reply {
    let items: Vec<Value> = w
        .migs
        .iter()
        .flat_map(|m| m.vms.iter().map(move |v| (m, v)))
        .filter(|(_, v)| v.zone == zone && !v.status.is_empty())
        .map(|(m, v)| instance_json(w, m, v))
        .filter(|j| matches(j, filter))
        .collect();
    let kind = "compute#instanceList";
    (200, page(items, query, w.page_size, "items", kind))
}

/// The VM `name` of `zone` that exists (has an instance resource), with its MIG.
fn vm_index(w: &World, zone: &str, name: &str) -> Option<(usize, usize)> {
    w.migs.iter().enumerate().find_map(|(mi, m)| {
        m.vms
            .iter()
            .position(|v| v.zone == zone && v.name == name && !v.status.is_empty())
            .map(|vi| (mi, vi))
    })
}

fn instance_not_found(w: &World, zone: &str, name: &str) -> Reply {
    not_found(&format!(
        "projects/{}/zones/{zone}/instances/{name}",
        w.project
    ))
}

/// `instances.get`: the VM with its `labels` and `labelFingerprint`.
fn get_instance(w: &World, zone: &str, name: &str) -> Reply {
    match vm_index(w, zone, name) {
        Some((mi, vi)) => (200, instance_json(w, &w.migs[mi], &w.migs[mi].vms[vi])),
        None => instance_not_found(w, zone, name),
    }
}

/// `instances.setLabels`: replaces the VM's whole label set. `labelFingerprint` is "Fingerprint
/// of the previous set of labels for this resource, used to prevent conflicts. Provide the
/// latest fingerprint value when making a request to add or change labels"
/// (`InstancesSetLabelsRequest`, Compute API reference). A stale or missing one is refused with
/// HTTP 412, reason `conditionNotMet`, "Labels fingerprint either invalid or resource labels
/// have changed" — the error body reported from the real API in googleapis/google-cloud-go#7802
/// (an empty fingerprint) and skypilot-org/skypilot#4571 (another tool's write in between).
/// A racing write set up with [`crate::FakeCompute::race_next_set_labels`] lands first.
fn set_labels(w: &mut World, zone: &str, name: &str, body: &[u8]) -> Reply {
    let Some((mi, vi)) = vm_index(w, zone, name) else {
        return instance_not_found(w, zone, name);
    };
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return google_error(400, "parseError", &format!("Parse Error: {e}")),
    };
    if let Some(other) = w.label_race.remove(name) {
        w.migs[mi].vms[vi].labels.extend(other);
    }
    let current = label_fingerprint(&w.migs[mi].vms[vi].labels);
    if body["labelFingerprint"].as_str() != Some(current.as_str()) {
        return google_error(
            412,
            "conditionNotMet",
            "Labels fingerprint either invalid or resource labels have changed",
        );
    }
    let Some(labels) = body["labels"].as_object() else {
        // ASSUMPTION: the request's `labels` map is required; the reference does not say what
        // an absent one does, and gpupool always sends the whole set.
        return google_error(400, "required", "Required field 'labels' not specified");
    };
    let labels: BTreeMap<String, String> = labels
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    w.migs[mi].vms[vi].labels = labels;
    let target = crate::wire::vm_url(w, &w.migs[mi].vms[vi]);
    let scope = format!("zones/{zone}");
    (
        200,
        new_op(w, &scope, "setLabels", &target, "RUNNING", None),
    )
}

fn get_operation(w: &mut World, kind: &str, loc: &str, name: &str) -> Reply {
    let scope_url = format!(
        "{}/compute/v1/projects/{}/{kind}/{loc}",
        w.endpoint, w.project
    );
    let field = if kind == "zones" { "zone" } else { "region" };
    match w.ops.get_mut(name) {
        Some(op) if op[field] == json!(scope_url) => {
            let out = op.clone();
            // ASSUMPTION: a MIG operation "is marked DONE if the … request is successful" with
            // no stated delay; the fake answers RUNNING and is DONE from the next read on, so a
            // client that does not poll sees it unfinished.
            if op["status"] != "DONE" {
                op["status"] = json!("DONE");
                op["progress"] = json!(100);
                op["endTime"] = json!(now_rfc3339());
            }
            (200, out)
        }
        _ => not_found(&format!(
            "projects/{}/{kind}/{loc}/operations/{name}",
            w.project
        )),
    }
}

/// `zoneOperations.list`, oldest first.
fn list_operations(w: &World, zone: &str, filter: &Filter, query: &Query) -> Reply {
    let url = format!(
        "{}/compute/v1/projects/{}/zones/{zone}",
        w.endpoint, w.project
    );
    let mut items: Vec<Value> = w
        .ops
        .values()
        .filter(|o| o["zone"] == json!(url))
        .filter(|o| matches(o, filter))
        .cloned()
        .collect();
    items.sort_by(|a, b| a["insertTime"].as_str().cmp(&b["insertTime"].as_str()));
    let kind = "compute#operationList";
    (200, page(items, query, w.page_size, "items", kind))
}

/// A method of MIG `idx` (`verb` empty: the MIG itself).
fn mig_call(
    w: &mut World,
    idx: usize,
    method: &str,
    verb: &[&str],
    query: &Query,
    body: &[u8],
    scope: &str,
) -> Reply {
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return google_error(
                    400,
                    "parseError",
                    &format!("Invalid JSON payload received. {e}"),
                );
            }
        }
    };
    let call = MigCall { idx, scope };
    match (method, verb) {
        ("GET", []) => (200, mig_json(w, &w.migs[idx])),
        ("POST", ["listManagedInstances"]) => list_managed(w, idx, query),
        ("POST", ["resize"]) => resize(w, &call, query),
        ("PATCH", []) => patch(w, &call, &body),
        ("POST", ["deleteInstances"]) => delete_instances(w, &call, &body),
        (
            "POST",
            [
                verb
                @ ("startInstances" | "resumeInstances" | "stopInstances" | "suspendInstances"),
            ],
        ) => standby_verb(w, &call, verb, &body),
        _ => google_error(404, "notFound", "Unknown method"),
    }
}

/// The MIG a mutating call is about.
struct MigCall<'s> {
    idx: usize,
    /// `zones/<zone>` or `regions/<region>`.
    scope: &'s str,
}

impl MigCall<'_> {
    /// The running operation a mutating call answers with (`error`: the operation fails).
    fn op(&self, w: &mut World, verb: &str, error: Option<(String, String)>) -> Reply {
        let target = format!(
            "{}/compute/v1/projects/{}/{}/instanceGroupManagers/{}",
            w.endpoint, w.project, self.scope, w.migs[self.idx].name
        );
        let op_type = format!("compute.instanceGroupManagers.{verb}");
        let op = new_op(w, self.scope, &op_type, &target, "RUNNING", error);
        (200, op)
    }
}

fn list_managed(w: &World, idx: usize, query: &Query) -> Reply {
    let items: Vec<Value> = w.migs[idx].vms.iter().map(|v| managed_json(w, v)).collect();
    let mut j = page(items, query, w.page_size, "managedInstances", "");
    if let Some(o) = j.as_object_mut() {
        o.remove("kind");
        o.remove("id");
    }
    (200, j)
}

/// `resize` sets `targetSize`; the operation "is marked DONE when the resize actions are
/// scheduled even if the group has not yet added or deleted any instances"
/// (instanceGroupManagers.resize): a stockout shows later, on the VMs.
fn resize(w: &mut World, call: &MigCall<'_>, query: &Query) -> Reply {
    let Some(size) = query
        .get("size")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|s| *s >= 0)
    else {
        return google_error(400, "invalid", "Invalid value for field 'size'");
    };
    if let Some(err) = w.migs[call.idx].fail_next.take() {
        return call.op(w, "resize", Some(err));
    }
    w.migs[call.idx].target_size = size;
    reconcile(w, call.idx);
    call.op(w, "resize", None)
}

/// `patch` (JSON merge) of the target sizes. "This number changes when you … manually change
/// the targetStoppedSize using the update method" (InstanceGroupManager.targetStoppedSize;
/// likewise targetSuspendedSize).
fn patch(w: &mut World, call: &MigCall<'_>, body: &Value) -> Reply {
    if let Some(err) = w.migs[call.idx].fail_next.take() {
        return call.op(w, "patch", Some(err));
    }
    let m = &mut w.migs[call.idx];
    for (field, slot) in [
        ("targetSize", &mut m.target_size),
        ("targetStoppedSize", &mut m.target_stopped_size),
        ("targetSuspendedSize", &mut m.target_suspended_size),
    ] {
        if let Some(v) = body.get(field).and_then(Value::as_i64) {
            *slot = v;
        }
    }
    if m.target_size < 0 || m.target_stopped_size < 0 || m.target_suspended_size < 0 {
        return google_error(400, "invalid", "Target sizes must not be negative");
    }
    reconcile(w, call.idx);
    call.op(w, "patch", None)
}

/// The instance names (last URL segment) of a request body's `instances` (start, resume,
/// stop, suspend, delete). Public for tests that inspect the bodies the fake recorded.
pub fn instance_names(body: &Value) -> Vec<String> {
    body["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str())
                .map(|u| u.rsplit('/').next().unwrap_or(u).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn delete_instances(w: &mut World, call: &MigCall<'_>, body: &Value) -> Reply {
    w.delete_bodies.push(body.clone());
    let skip = body["skipInstancesOnValidationError"]
        .as_bool()
        .unwrap_or(false);
    let names = instance_names(body);
    let m = &mut w.migs[call.idx];
    for n in &names {
        match m
            .vms
            .iter_mut()
            .find(|v| &v.name == n && v.action != "DELETING")
        {
            Some(vm) => {
                // "reduces the targetSize … by the number of instances that you delete".
                // ASSUMPTION (docs silent): a standby VM lowers its own standby target instead,
                // since it is not counted in targetSize.
                match vm.standby_kind() {
                    Some("SUSPENDED") => m.target_suspended_size -= 1,
                    Some(_) => m.target_stopped_size -= 1,
                    None => m.target_size -= 1,
                }
                vm.action = "DELETING".into();
                vm.park_as = None;
            }
            None if skip => {}
            None => {
                return google_error(
                    400,
                    "invalid",
                    &format!("The instance '{n}' is not a member of the managed instance group"),
                );
            }
        }
    }
    call.op(w, "deleteInstances", None)
}

/// `startInstances`, `resumeInstances`, `stopInstances` or `suspendInstances`.
fn standby_verb(w: &mut World, call: &MigCall<'_>, verb: &str, body: &Value) -> Reply {
    w.standby_calls.push((verb.to_owned(), body.clone()));
    let names = instance_names(body);
    if names.is_empty() || names.len() > 1000 {
        return google_error(400, "invalid", "Between 1 and 1000 instances are required");
    }
    let m = &mut w.migs[call.idx];
    // "You can only specify instances that are stopped" (startInstances; suspended for
    // resumeInstances, running for stop/suspendInstances). ASSUMPTION: one VM in the wrong state
    // fails the whole request with 400 before anything changes.
    if let Some(n) = names
        .iter()
        .find(|n| !m.vms.iter().any(|v| &v.name == *n && accepts(verb, v)))
    {
        return google_error(
            400,
            "invalid",
            &format!("Instance '{n}' cannot be used in {verb} in its current state"),
        );
    }
    for vm in m.vms.iter_mut().filter(|v| names.contains(&v.name)) {
        match verb {
            "startInstances" => vm.action = "STARTING".into(),
            "resumeInstances" => vm.action = "RESUMING".into(),
            "stopInstances" => vm.park_as = Some("STOPPED".into()),
            _ => vm.park_as = Some("SUSPENDED".into()),
        }
    }
    // start/resume: "increases the targetSize and decreases the targetStoppedSize
    // (targetSuspendedSize)"; stop/suspend: the reverse.
    let k = names.len() as i64;
    let standby = if matches!(verb, "startInstances" | "stopInstances") {
        &mut m.target_stopped_size
    } else {
        &mut m.target_suspended_size
    };
    let into_running = if matches!(verb, "startInstances" | "resumeInstances") {
        k
    } else {
        -k
    };
    *standby -= into_running;
    m.target_size += into_running;
    reconcile(w, call.idx);
    call.op(w, verb, None)
}

/// Whether `verb` may name `vm`: stopped VMs for start, suspended for resume, running ones with
/// nothing pending for stop/suspend.
fn accepts(verb: &str, vm: &Vm) -> bool {
    match verb {
        "startInstances" => vm.parked("STOPPED"),
        "resumeInstances" => vm.parked("SUSPENDED"),
        _ => vm.is_active() && vm.status == "RUNNING" && vm.action == "NONE",
    }
}
