//! An in-process fake of the Compute Engine REST API (v1), for the subset gpupool calls.
//!
//! There is no Google emulator for Compute Engine, so tests run the real client against this:
//! documented paths, JSON field names and enum values, `compute#operation` long-running
//! operations (PENDING/RUNNING → DONE, read back through `zoneOperations.get` /
//! `regionOperations.get`), paginated lists (`maxResults` / `pageToken` / `nextPageToken`),
//! `filter` expressions, and Google's error body
//! (`{"error":{"code":404,"message":…,"errors":[{"domain":"global","reason":"notFound",…}]}}`).
//!
//! MIG behaviour modelled, each rule with its source (the Compute API reference unless said
//! otherwise); rules the documentation does not state are marked ASSUMPTION where they are
//! implemented:
//! - `targetSize` is "the target number of running instances"; the standby pool is
//!   `targetStoppedSize` + `targetSuspendedSize` beside it and not part of `targetSize`
//!   (`InstanceGroupManager`; "About suspending and stopping VMs in a MIG",
//!   <https://cloud.google.com/compute/docs/instance-groups/suspended-and-stopped-vms-in-mig>).
//! - A stopped VM's `instanceStatus` is `TERMINATED`, a suspended one's `SUSPENDED` ("From the
//!   RUNNING state, you can move a compute instance to the SUSPENDED or TERMINATED states",
//!   Compute Engine instance lifecycle); its `targetStatus` says `STOPPED` / `SUSPENDED`.
//! - `resize` sets `targetSize`. In `SCALE_OUT_POOL` standby mode the MIG "automatically resumes
//!   or starts VMs in the standby pool when the group scales out, and replenishes the standby
//!   pool afterwards"; in `MANUAL` mode (the default) it "does not automatically resume or
//!   start VMs in the standby pool" and creates new VMs (`InstanceGroupManagerStandbyPolicy`).
//! - `startInstances`/`resumeInstances` take stopped/suspended VMs only and raise `targetSize`,
//!   lowering `targetStoppedSize`/`targetSuspendedSize` by as many; `stopInstances`/
//!   `suspendInstances` take running VMs and do the reverse.
//! - `deleteInstances` "reduces the targetSize … by the number of instances that you delete".
//! - Raising `targetStoppedSize`/`targetSuspendedSize` (patch) makes the MIG create VMs that run
//!   through `standbyPolicy.initialDelaySec` and are then stopped/suspended ("Accelerate scale
//!   out with suspended and stopped VMs"); managed instances report that eventual status as
//!   `targetStatus`.
//! - A stockout or quota is not an operation error, and it is late: the resize operation "is
//!   marked DONE when the resize actions are scheduled even if the group has not yet added or
//!   deleted any instances. You must separately verify the status of the creating or deleting
//!   actions with the listmanagedinstances method" (`instanceGroupManagers.resize`). The VMs
//!   stay `currentAction: CREATING` ("If the group fails to create this instance, it will try
//!   again until it is successful", `ManagedInstance.currentAction`; counted in
//!   `currentActions.creating`), and from the MIG's first attempt on (the next
//!   [`FakeCompute::advance`], never in the resize's own reply) carry `lastAttempt.errors`
//!   ("errors during the last attempt to create or delete the instance",
//!   `ManagedInstance.lastAttempt`) — what Cluster Autoscaler's gce provider reads
//!   (`autoscaling_gce_client.go`, `FetchMigInstances`).
//! - `instances.get` returns a VM's `labels` with their `labelFingerprint`;
//!   `instances.setLabels` replaces the whole set and refuses a stale or missing fingerprint
//!   with HTTP 412 `conditionNotMet` ("Labels fingerprint either invalid or resource labels have
//!   changed", `InstancesSetLabelsRequest.labelFingerprint`; the error body as reported in
//!   googleapis/google-cloud-go#7802 and skypilot-org/skypilot#4571).
//! - A rate quota refuses a request with HTTP 403 (`rateLimitExceeded`, and in the newer form
//!   also an `ErrorInfo` reason `RATE_LIMIT_EXCEEDED`) or 429 `RESOURCE_EXHAUSTED`, when a test
//!   asks for it ([`FakeCompute::rate_limit_next`]).
//! - Operation `insertTime` carries a UTC offset, and list filters compare values as strings.
//! - Instance templates carry `properties.disks` (`AttachedDisk`): an image-sized boot disk by
//!   default, or the disks a test sets ([`FakeCompute::set_template_disks`]), `diskSizeGb` written
//!   as the int64 JSON string the API sends.
//!
//! VMs move one step per [`FakeCompute::advance`] call, so tests control time and never sleep.
//!
//! The server is hand-written HTTP/1.1 on tokio (keep-alive, Content-Length bodies): the
//! client speaks HTTP/1.1 only, and this keeps axum/hyper out of every build that includes
//! the fake (the GCP crate's tests and `fake_compute` example, the root package's tests).
//!
//! This crate is test support: `gpupool-gcp` and `gpupool` name it as a dev-dependency only, so
//! no release build contains it. It is a crate of its own rather than a feature of
//! `gpupool-gcp` because a dev-dependency cannot be optional: the root package would build the
//! GCP SDK for every `cargo test`, `gcp` feature or not; this crate builds without it. It
//! depends on `gpupool-provider` only (timestamps, the clock), not on the provider it fakes for,
//! so it writes Compute's wire format itself and cannot mirror a provider mistake.
//!
//! Modules: `world` (MIGs, VMs, reconciliation, lifecycle steps), `api` (one handler per REST
//! method), `wire` (resources, operations, pages, filters, errors), `http` (the server).

mod api;
mod http;
mod wire;
mod world;

pub use api::instance_names;
pub use world::{Mig, Vm};

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use wire::new_op;
use world::{World, at_rest_status, new_vm};

/// A running fake; dropped → the server task is aborted.
pub struct FakeCompute {
    pub addr: SocketAddr,
    world: Arc<Mutex<World>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCompute {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The template labels that put a MIG in gpupool's pool `pool` (the provider's
/// `gpupool-io-pool` / `gpupool-io-enabled`, spelled out so the fake stays independent of it).
pub fn pool_labels(pool: &str) -> [(&'static str, &str); 2] {
    [("gpupool-io-pool", pool), ("gpupool-io-enabled", "true")]
}

/// The UTC offset of the times the fake writes. Compute writes `insertTime`,
/// `creationTimestamp` & co. as RFC 3339 with an offset (`2026-11-23T07:00:00.123-08:00`, the
/// form `gcloud … operations list --format=json` shows); the reference says only "RFC3339 text
/// format". ASSUMPTION: a fixed -08:00 (real responses follow US Pacific time with its DST).
pub const OFFSET_S: i64 = -8 * 3600;

/// `t` as Compute writes times: RFC 3339 with milliseconds and the [`OFFSET_S`] offset.
pub fn rfc3339_with_offset(t: gpupool_provider::Timestamp) -> String {
    let offset = chrono::FixedOffset::east_opt(OFFSET_S as i32).expect("OFFSET_S is within ±24 h");
    chrono::DateTime::from_timestamp_millis(t.millis())
        .unwrap_or_default()
        .with_timezone(&offset)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

/// The wall clock (through `gpupool_provider::clock`, the one place that reads it).
pub fn now_ts() -> gpupool_provider::Timestamp {
    gpupool_provider::clock::wall_clock()
}

pub(crate) fn now_rfc3339() -> String {
    rfc3339_with_offset(now_ts())
}

/// One disk of a fake instance template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateDisk<'a> {
    /// A disk each VM creates: `initializeParams.diskType` (the short name templates use) and
    /// `diskSizeGb`. `None` leaves the size out: the boot disk (the first, created from a
    /// `sourceImage`) then takes its image's size, another disk Compute's 500 GB default.
    Created {
        disk_type: &'a str,
        size_gb: Option<i64>,
    },
    /// A Local SSD: `type: SCRATCH`, `initializeParams.diskType: local-ssd`, 375 GB.
    LocalSsd,
}

/// `properties.disks[i]` as Compute writes it (Compute API reference, `AttachedDisk`,
/// `AttachedDiskInitializeParams`): `type` PERSISTENT or SCRATCH, `boot` on the first disk,
/// `initializeParams.diskType` without a URL in templates ("When creating an instance template
/// … you specify the disk type without a URL, for example, hyperdisk-balanced"), and
/// `diskSizeGb` as a JSON string — it is an int64, which the API's JSON writes as a string
/// (the discovery document gives it `"type": "string", "format": "int64"`).
fn disk_json(i: usize, d: &TemplateDisk<'_>) -> Value {
    let boot = i == 0;
    match d {
        TemplateDisk::Created { disk_type, size_gb } => {
            let mut init = json!({ "diskType": disk_type });
            if boot {
                init["sourceImage"] = json!("projects/debian-cloud/global/images/family/debian-12");
            }
            if let Some(gb) = size_gb {
                init["diskSizeGb"] = json!(gb.to_string());
            }
            json!({
                "kind": "compute#attachedDisk",
                "type": "PERSISTENT",
                "mode": "READ_WRITE",
                "boot": boot,
                "autoDelete": true,
                "deviceName": format!("disk-{i}"),
                "index": i,
                "initializeParams": init,
            })
        }
        TemplateDisk::LocalSsd => json!({
            "kind": "compute#attachedDisk",
            "type": "SCRATCH",
            "mode": "READ_WRITE",
            "interface": "NVME",
            "autoDelete": true,
            "index": i,
            "initializeParams": { "diskType": "local-ssd", "diskSizeGb": "375" },
        }),
    }
}

/// A test's `(key, value)` label pairs as a VM holds them.
fn owned(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// How a rate-quota refusal is written (see `wire::rate_limit_error` for the sources).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimit {
    /// HTTP 403, legacy `errors[].reason = rateLimitExceeded` only.
    Legacy,
    /// HTTP 403, the legacy array plus a `google.rpc.ErrorInfo` with reason
    /// `RATE_LIMIT_EXCEEDED` in `details`.
    ErrorInfo,
    /// HTTP 429 `RESOURCE_EXHAUSTED`.
    TooManyRequests,
}

impl FakeCompute {
    /// Start on a free loopback port.
    pub async fn start(project: &str) -> std::io::Result<FakeCompute> {
        Self::start_on(project, "127.0.0.1:0".parse().expect("literal address")).await
    }

    pub async fn start_on(project: &str, addr: SocketAddr) -> std::io::Result<FakeCompute> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let world = Arc::new(Mutex::new(World {
            project: project.to_owned(),
            endpoint: format!("http://{addr}"),
            page_size: 2,
            ..World::default()
        }));
        let w = world.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let w = w.clone();
                tokio::spawn(async move {
                    let _ = http::serve(stream, w).await;
                });
            }
        });
        Ok(FakeCompute { addr, world, task })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A global instance template. `accelerators`: `(type, count)`; `spot` sets
    /// `scheduling.provisioningModel = SPOT`.
    pub fn add_template(
        &self,
        name: &str,
        machine_type: &str,
        accelerators: &[(&str, i64)],
        spot: bool,
        labels: &[(&str, &str)],
    ) {
        let mut w = self.w();
        let self_link = format!(
            "{}/compute/v1/projects/{}/global/instanceTemplates/{name}",
            w.endpoint, w.project
        );
        let acc: Vec<Value> = accelerators
            .iter()
            .map(|(t, n)| json!({"acceleratorType": t, "acceleratorCount": n}))
            .collect();
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        // Every VM has a boot disk; this one takes its image's size (no `diskSizeGb`), as
        // `gcloud compute instance-templates create` writes it without `--boot-disk-size`.
        let disks = vec![disk_json(
            0,
            &TemplateDisk::Created {
                disk_type: "pd-balanced",
                size_gb: None,
            },
        )];
        let t = json!({
            "kind": "compute#instanceTemplate",
            "id": "1000",
            "name": name,
            "selfLink": self_link,
            "creationTimestamp": now_rfc3339(),
            "properties": {
                "machineType": machine_type,
                "guestAccelerators": acc,
                "disks": disks,
                "labels": labels,
                "scheduling": {
                    "provisioningModel": if spot { "SPOT" } else { "STANDARD" },
                    "onHostMaintenance": "TERMINATE",
                    "automaticRestart": !spot,
                },
            },
        });
        w.templates.insert(name.to_owned(), t);
    }

    /// Replace a template's `properties.disks` (the first disk is the boot disk).
    pub fn set_template_disks(&self, name: &str, disks: &[TemplateDisk<'_>]) {
        let mut w = self.w();
        if let Some(t) = w.templates.get_mut(name) {
            t["properties"]["disks"] = disks
                .iter()
                .enumerate()
                .map(|(i, d)| disk_json(i, d))
                .collect();
        }
    }

    /// A g2-standard-8 template with one L4, SPOT or STANDARD, labelled into `pool`.
    pub fn add_l4_template(&self, name: &str, spot: bool, pool: &str) {
        self.add_template(
            name,
            "g2-standard-8",
            &[("nvidia-l4", 1)],
            spot,
            &pool_labels(pool),
        );
    }

    /// An on-demand a2-highgpu-1g template (one A100) labelled into `pool`.
    pub fn add_a100_template(&self, name: &str, pool: &str) {
        self.add_template(
            name,
            "a2-highgpu-1g",
            &[("nvidia-tesla-a100", 1)],
            false,
            &pool_labels(pool),
        );
    }

    /// A MIG: `scope` is `zones/<zone>` or `regions/<region>` (then `zones` are its
    /// distribution policy). Starts with `running` VMs already RUNNING (`targetSize`) and, with
    /// `standby = Some((mode, n))`, `n` stopped VMs (status TERMINATED; `targetStoppedSize`) under that
    /// `standbyPolicy.mode`.
    pub fn add_mig(
        &self,
        scope: &str,
        name: &str,
        template: &str,
        zones: &[&str],
        running: i64,
        standby: Option<(&str, i64)>,
    ) {
        let mut w = self.w();
        let stopped = standby.map_or(0, |s| s.1);
        let mut mig = Mig {
            scope: scope.to_owned(),
            name: name.to_owned(),
            template: template.to_owned(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
            target_size: running,
            target_stopped_size: stopped,
            target_suspended_size: 0,
            standby_mode: standby.map(|s| s.0.to_owned()),
            vms: Vec::new(),
            counter: 0,
            warm_labels: BTreeMap::new(),
            fail_next: None,
        };
        for i in 0..running + stopped {
            let status = if i < running {
                "RUNNING"
            } else {
                at_rest_status("STOPPED")
            };
            let vm = new_vm(&mut w, &mut mig, status, "NONE", None);
            mig.vms.push(vm);
        }
        w.migs.push(mig);
    }

    /// Turn `n` of a MIG's stopped standby VMs into suspended ones (a suspended pool:
    /// `targetStoppedSize` → `targetSuspendedSize`).
    pub fn suspend_standby(&self, mig: &str, n: i64) {
        let mut w = self.w();
        if let Some(m) = w.migs.iter_mut().find(|m| m.name == mig) {
            let mut moved = 0;
            for vm in m.vms.iter_mut().filter(|v| v.parked("STOPPED")) {
                if moved == n {
                    break;
                }
                vm.status = "SUSPENDED".into();
                moved += 1;
            }
            m.target_stopped_size -= moved;
            m.target_suspended_size += moved;
        }
    }

    pub fn set_warm_labels(&self, mig: &str, labels: &[(&str, &str)]) {
        let mut w = self.w();
        if let Some(m) = w.migs.iter_mut().find(|m| m.name == mig) {
            m.warm_labels = owned(labels);
            let wl = m.warm_labels.clone();
            for vm in m.vms.iter_mut().filter(|v| !v.status.is_empty()) {
                vm.labels.extend(wl.clone());
            }
        }
    }

    /// The next request (whatever it is) is refused for the project's rate quota, in the form
    /// `limit` names; call again to queue more.
    pub fn rate_limit_next(&self, limit: RateLimit) {
        self.w().rate_limits.push_back(limit);
    }

    /// Another writer changes VM `vm`'s labels between gpupool's `instances.get` and its next
    /// `instances.setLabels` on it: `labels` are merged in first, so the fingerprint gpupool
    /// read is stale by the time its write is handled.
    pub fn race_next_set_labels(&self, vm: &str, labels: &[(&str, &str)]) {
        self.w().label_race.insert(vm.to_owned(), owned(labels));
    }

    /// The labels of VM `vm` as the fake holds them (`None`: no such VM).
    pub fn vm_labels(&self, vm: &str) -> Option<BTreeMap<String, String>> {
        self.snapshot()
            .into_iter()
            .find(|v| v.name == vm)
            .map(|v| v.labels)
    }

    pub fn set_page_size(&self, n: usize) {
        self.w().page_size = n.max(1);
    }

    /// The next resize/patch of `mig` fails with this operation error code.
    pub fn fail_next(&self, mig: &str, code: &str, message: &str) {
        let mut w = self.w();
        if let Some(m) = w.migs.iter_mut().find(|m| m.name == mig) {
            m.fail_next = Some((code.to_owned(), message.to_owned()));
        }
    }

    /// New VMs of `machine_type` in `zone` cannot be created until cleared: they stay
    /// `CREATING` and, from the MIG's first attempt on (the next [`FakeCompute::advance`]), carry
    /// `lastAttempt.errors` with `ZONE_RESOURCE_POOL_EXHAUSTED` and the message Compute uses.
    pub fn stockout(&self, zone: &str, machine_type: &str) {
        self.stockout_with(
            zone,
            machine_type,
            "ZONE_RESOURCE_POOL_EXHAUSTED",
            &format!(
                "The zone 'projects/{}/zones/{zone}' does not have enough resources available \
                 to fulfill the request.  Try a different zone, or try again later.",
                self.w().project
            ),
        );
    }

    /// Like [`FakeCompute::stockout`] with any `lastAttempt` error (`QUOTA_EXCEEDED`,
    /// `ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS`, …).
    pub fn stockout_with(&self, zone: &str, machine_type: &str, code: &str, message: &str) {
        self.w().stockouts.insert(
            (zone.to_owned(), machine_type.to_owned()),
            (code.to_owned(), message.to_owned()),
        );
    }

    /// Capacity is back everywhere: the MIG's next attempt creates the stuck VMs.
    pub fn clear_stockouts(&self) {
        self.w().stockouts.clear();
    }

    /// Preempt a VM: a `compute.instances.preempted` zone operation (the type "Create and use
    /// Spot VMs" tells to filter zone operations on to detect a preemption,
    /// <https://cloud.google.com/compute/docs/instances/create-use-spot>), the VM TERMINATED and
    /// being recreated by its MIG
    /// (the MIG keeps `targetSize` running VMs; a preempted Spot VM is recreated when capacity
    /// allows, or stays RECREATING with `lastAttempt.errors` under a stockout). Returns the
    /// operation's name.
    pub fn preempt(&self, vm_name: &str) -> Option<String> {
        let mut w = self.w();
        let (zone, project, endpoint) = {
            let vm = w
                .migs
                .iter()
                .flat_map(|m| m.vms.iter())
                .find(|v| v.name == vm_name)?;
            (vm.zone.clone(), w.project.clone(), w.endpoint.clone())
        };
        for m in &mut w.migs {
            for vm in m.vms.iter_mut().filter(|v| v.name == vm_name) {
                vm.status = "TERMINATED".into();
                vm.action = "RECREATING".into();
            }
        }
        let target =
            format!("{endpoint}/compute/v1/projects/{project}/zones/{zone}/instances/{vm_name}");
        let op = new_op(
            &mut w,
            &format!("zones/{zone}"),
            "compute.instances.preempted",
            &target,
            "DONE",
            None,
        );
        op["name"].as_str().map(str::to_owned)
    }

    /// Like [`FakeCompute::preempt`], dated `at` (`insertTime`, `startTime`, `endTime`).
    pub fn preempt_at(&self, vm_name: &str, at: gpupool_provider::Timestamp) -> Option<String> {
        let name = self.preempt(vm_name)?;
        let when = rfc3339_with_offset(at);
        if let Some(op) = self.w().ops.get_mut(&name) {
            for f in ["insertTime", "startTime", "endTime"] {
                op[f] = json!(when);
            }
        }
        Some(name)
    }

    /// One step of every VM: CREATING → RUNNING (or, out of capacity, CREATING with
    /// `lastAttempt.errors`), a standby-bound RUNNING VM → STOPPING/SUSPENDING → TERMINATED/
    /// SUSPENDED, STARTING/RESUMING/RECREATING → RUNNING, DELETING → gone.
    ///
    /// ASSUMPTION: one step stands for the initial delay and for each transition; the
    /// reference gives no durations.
    pub fn advance(&self) {
        self.w().advance();
    }

    /// Advance until no VM changes (bounded).
    pub fn settle(&self) {
        for _ in 0..8 {
            let before = self.snapshot();
            self.advance();
            if self.snapshot() == before {
                return;
            }
        }
    }

    fn snapshot(&self) -> Vec<Vm> {
        self.w().migs.iter().flat_map(|m| m.vms.clone()).collect()
    }

    pub fn mig(&self, name: &str) -> Option<Mig> {
        self.w().migs.iter().find(|m| m.name == name).cloned()
    }

    /// VMs of a MIG with a given status and no pending action.
    pub fn count(&self, mig: &str, status: &str) -> usize {
        self.mig(mig).map_or(0, |m| {
            m.vms
                .iter()
                .filter(|v| v.status == status && v.action == "NONE")
                .count()
        })
    }

    pub fn operation(&self, name: &str) -> Option<Value> {
        self.w().ops.get(name).cloned()
    }

    pub fn calls(&self) -> Vec<String> {
        self.w().calls.clone()
    }

    pub fn delete_bodies(&self) -> Vec<Value> {
        self.w().delete_bodies.clone()
    }

    /// `(verb, body)` of every start/resume/stop/suspendInstances call.
    pub fn standby_calls(&self) -> Vec<(String, Value)> {
        self.w().standby_calls.clone()
    }

    /// Every `filter` query parameter received.
    pub fn filters(&self) -> Vec<String> {
        self.w().filters.clone()
    }

    /// Names of a MIG's VMs that are CREATING with a `lastAttempt` error.
    pub fn stuck(&self, mig: &str) -> Vec<String> {
        self.mig(mig).map_or_else(Vec::new, |m| {
            m.vms
                .iter()
                .filter(|v| v.action == "CREATING" && !v.last_attempt_errors.is_empty())
                .map(|v| v.name.clone())
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_with_milliseconds_and_the_offset() {
        let t = gpupool_provider::Timestamp::from_millis(1_795_000_000_123);
        // 2026-11-18T11:06:40.123Z, eight hours earlier at -08:00.
        assert_eq!(rfc3339_with_offset(t), "2026-11-18T03:06:40.123-08:00");
    }

    #[test]
    fn a_stopped_standby_vm_reports_terminated_and_targets_stopped() {
        let mut w = World {
            endpoint: "http://fake".into(),
            project: "p".into(),
            ..World::default()
        };
        let mut m = Mig {
            scope: "zones/z".into(),
            name: "m".into(),
            template: "t".into(),
            zones: vec!["z".into()],
            target_size: 0,
            target_stopped_size: 1,
            target_suspended_size: 0,
            standby_mode: None,
            vms: Vec::new(),
            counter: 0,
            warm_labels: BTreeMap::new(),
            fail_next: None,
        };
        let vm = new_vm(&mut w, &mut m, at_rest_status("STOPPED"), "NONE", None);
        let j = wire::managed_json(&w, &vm);
        assert_eq!(j["instanceStatus"], "TERMINATED");
        assert_eq!(j["targetStatus"], "STOPPED");
        assert!(vm.is_standby() && !vm.is_active() && vm.parked("STOPPED"));
    }
}
