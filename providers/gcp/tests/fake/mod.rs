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
//!   `targetStoppedSize` + `targetSuspendedSize` beside it (`InstanceGroupManager`).
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
//! - A stockout or quota is not an operation error: the resize succeeds and the VMs stay
//!   `currentAction: CREATING` with `lastAttempt.errors` while the MIG retries — what Cluster
//!   Autoscaler's gce provider reads (`autoscaling_gce_client.go`, `FetchMigInstances`).
//! - Operation `insertTime` carries a UTC offset, and list filters compare values as strings.
//!
//! VMs move one step per [`FakeCompute::advance`] call, so tests control time and never sleep.
//!
//! The server is hand-written HTTP/1.1 on tokio (keep-alive, Content-Length bodies): the
//! client speaks HTTP/1.1 only, and this keeps axum/hyper out of every build that includes
//! the fake (the crate's tests, the root package's tests and the `fake_compute` example).

#![allow(dead_code)] // each including test uses a different part

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A VM's place in its MIG's plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Vm {
    pub name: String,
    pub zone: String,
    /// `instanceStatus`; empty while the VM does not exist yet.
    pub status: String,
    /// `currentAction`.
    pub action: String,
    /// Created (or being stopped/suspended) for the standby pool: `STOPPED` or `SUSPENDED`, the
    /// status it is parked in once its initial delay is over (its `targetStatus`).
    pub park_as: Option<String>,
    pub created: String,
    pub labels: BTreeMap<String, String>,
    pub last_attempt_errors: Vec<(String, String)>,
    pub ip: String,
}

impl Vm {
    /// Part of the standby pool (parked, or on its way there), and of which kind.
    fn standby_kind(&self) -> Option<&str> {
        if self.action == "DELETING" {
            return None;
        }
        if let Some(k) = &self.park_as {
            return Some(k.as_str());
        }
        match (self.action.as_str(), self.status.as_str()) {
            ("NONE", "STOPPED" | "TERMINATED") => Some("STOPPED"),
            ("NONE", "SUSPENDED") => Some("SUSPENDED"),
            _ => None,
        }
    }
    fn is_standby(&self) -> bool {
        self.standby_kind().is_some()
    }
    /// Counted in `targetSize`: running, or on its way to running.
    fn is_active(&self) -> bool {
        self.action != "DELETING" && !self.is_standby()
    }
    /// Stopped or suspended with nothing pending: what start/resume accept.
    fn parked(&self, status: &str) -> bool {
        self.action == "NONE" && self.park_as.is_none() && self.status == status
    }
}

#[derive(Clone, Debug)]
pub struct Mig {
    /// `zones/<zone>` or `regions/<region>`.
    pub scope: String,
    pub name: String,
    pub template: String,
    pub zones: Vec<String>,
    pub target_size: i64,
    pub target_stopped_size: i64,
    pub target_suspended_size: i64,
    /// `None`: no standbyPolicy; else `MANUAL` / `SCALE_OUT_POOL`.
    pub standby_mode: Option<String>,
    pub vms: Vec<Vm>,
    counter: u64,
    /// Labels a VM sets on itself once running (what the startup script does when the model
    /// cache is warm).
    pub warm_labels: BTreeMap<String, String>,
    /// The next resize/patch operation ends with this error `(code, message)`. Not how a MIG
    /// reports a stockout (see [`FakeCompute::stockout`]); for operation-level failures only.
    pub fail_next: Option<(String, String)>,
}

#[derive(Default)]
struct World {
    project: String,
    endpoint: String,
    templates: BTreeMap<String, Value>,
    migs: Vec<Mig>,
    /// All operations by name, with the scope that owns them.
    ops: BTreeMap<String, Value>,
    op_counter: u64,
    /// `(zone, machine type) → (code, message)`: new VMs there stay CREATING with that error as
    /// their `lastAttempt`.
    stockouts: BTreeMap<(String, String), (String, String)>,
    /// Largest page the fake returns, whatever `maxResults` asks (exercises pagination).
    page_size: usize,
    /// "METHOD path" of every request, for assertions.
    calls: Vec<String>,
    /// Bodies of deleteInstances calls.
    delete_bodies: Vec<Value>,
    /// `(verb, body)` of start/resume/stop/suspendInstances calls, in order.
    standby_calls: Vec<(String, Value)>,
    /// `filter` query parameters received, in order.
    filters: Vec<String>,
    ip_counter: u32,
}

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

/// The machine type of a template, `""` if unknown.
fn machine_type<'a>(templates: &'a BTreeMap<String, Value>, template: &str) -> &'a str {
    templates
        .get(template)
        .and_then(|t| t["properties"]["machineType"].as_str())
        .unwrap_or_default()
}

/// The UTC offset of the times the fake writes. Compute writes `insertTime`,
/// `creationTimestamp` & co. as RFC 3339 with an offset (`2026-11-23T07:00:00.123-08:00`, the
/// form `gcloud … operations list --format=json` shows); the reference says only "RFC3339 text
/// format". ASSUMPTION: a fixed -08:00 (real responses follow US Pacific time with its DST).
pub const OFFSET_S: i64 = -8 * 3600;

/// `t` as Compute writes times: RFC 3339 with milliseconds and the [`OFFSET_S`] offset.
pub fn rfc3339_with_offset(t: gpupool_provider::Timestamp) -> String {
    let local = gpupool_gcp::util::format_rfc3339(t.plus_secs(OFFSET_S as f64));
    let sign = if OFFSET_S < 0 { '-' } else { '+' };
    let (h, m) = (OFFSET_S.abs() / 3600, OFFSET_S.abs() % 3600 / 60);
    format!("{}{sign}{h:02}:{m:02}", local.trim_end_matches('Z'))
}

pub fn now_ts() -> gpupool_provider::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    gpupool_provider::Timestamp::from_millis(ms)
}

fn now_rfc3339() -> String {
    rfc3339_with_offset(now_ts())
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
                    let _ = serve(stream, w).await;
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
        let t = json!({
            "kind": "compute#instanceTemplate",
            "id": "1000",
            "name": name,
            "selfLink": self_link,
            "creationTimestamp": now_rfc3339(),
            "properties": {
                "machineType": machine_type,
                "guestAccelerators": acc,
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
    /// `standby = Some((mode, n))`, `n` STOPPED VMs (`targetStoppedSize`) under that
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
            let status = if i < running { "RUNNING" } else { "STOPPED" };
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
            m.warm_labels = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let wl = m.warm_labels.clone();
            for vm in m.vms.iter_mut().filter(|v| !v.status.is_empty()) {
                vm.labels.extend(wl.clone());
            }
        }
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

    /// Preempt a VM: a `compute.instances.preempted` zone operation (the type the preemption
    /// docs tell to filter zone operations on), the VM TERMINATED and being recreated by its MIG
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
    /// `lastAttempt.errors`), a standby-bound RUNNING VM → STOPPING/SUSPENDING → STOPPED/
    /// SUSPENDED, STARTING/RESUMING/RECREATING → RUNNING, DELETING → gone.
    ///
    /// ASSUMPTION: one step stands for the initial delay and for each transition; the
    /// reference gives no durations.
    pub fn advance(&self) {
        let mut guard = self.w();
        let World {
            migs,
            templates,
            stockouts,
            ip_counter,
            ..
        } = &mut *guard;
        let mut next_ip = *ip_counter;
        for m in migs.iter_mut() {
            let machine = machine_type(templates, &m.template).to_owned();
            m.vms.retain(|v| v.action != "DELETING");
            for vm in &mut m.vms {
                let creating = matches!(vm.action.as_str(), "CREATING" | "RECREATING");
                if creating
                    && let Some((code, message)) =
                        stockouts.get(&(vm.zone.clone(), machine.clone()))
                {
                    // The MIG keeps the VM in CREATING and retries; the attempt's errors are what
                    // listManagedInstances shows (autoscaling_gce_client.go reads exactly this).
                    vm.last_attempt_errors = vec![(code.clone(), message.clone())];
                    continue;
                }
                match (vm.action.as_str(), vm.status.as_str()) {
                    ("CREATING", _) | ("RECREATING", _) => {
                        vm.last_attempt_errors.clear();
                        vm.status = "RUNNING".into();
                        vm.action = "NONE".into();
                        vm.created = now_rfc3339();
                        next_ip += 1;
                        vm.ip = format!("10.128.0.{}", next_ip % 250 + 2);
                        vm.labels.extend(m.warm_labels.clone());
                    }
                    ("NONE", "RUNNING") if vm.park_as.is_some() => {
                        let suspend = vm.park_as.as_deref() == Some("SUSPENDED");
                        let step = if suspend { "SUSPENDING" } else { "STOPPING" };
                        vm.action = step.into();
                        vm.status = step.into();
                    }
                    ("STOPPING", _) | ("SUSPENDING", _) => {
                        vm.status = vm.park_as.take().unwrap_or_else(|| "STOPPED".into());
                        vm.action = "NONE".into();
                    }
                    ("STARTING", _) | ("RESUMING", _) => {
                        vm.action = "NONE".into();
                        vm.status = "RUNNING".into();
                        vm.labels.extend(m.warm_labels.clone());
                    }
                    _ => {}
                }
            }
        }
        *ip_counter = next_ip;
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

fn new_vm(w: &mut World, m: &mut Mig, status: &str, action: &str, park_as: Option<&str>) -> Vm {
    m.counter += 1;
    // Regional MIGs spread over their zones in turn. ASSUMPTION: the reference says a regional
    // MIG distributes VMs across its distributionPolicy zones ("targetShape": EVEN by default),
    // not in which order; round-robin is the fake's choice.
    let zone = if m.scope.starts_with("zones/") {
        m.scope.trim_start_matches("zones/").to_owned()
    } else {
        m.zones[(m.counter as usize - 1) % m.zones.len().max(1)].clone()
    };
    let labels = w
        .templates
        .get(&m.template)
        .and_then(|t| t["properties"]["labels"].as_object().cloned())
        .unwrap_or_default();
    w.ip_counter += 1;
    let mut vm = Vm {
        // "Instances are named by appending a hyphen and a random four-character string to the
        // base instance name" (InstanceGroupManager.baseInstanceName); the fake counts in hex.
        name: format!("{}-{:04x}", m.name, m.counter),
        zone,
        status: status.to_owned(),
        action: action.to_owned(),
        park_as: park_as.map(str::to_owned),
        created: if status.is_empty() {
            String::new()
        } else {
            now_rfc3339()
        },
        labels: labels
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        last_attempt_errors: Vec::new(),
        ip: format!("10.128.0.{}", w.ip_counter % 250 + 2),
    };
    if status == "RUNNING" {
        vm.labels.extend(m.warm_labels.clone());
    }
    vm
}

/// Bring a MIG's VMs in line with its targets, the way the MIG does.
fn reconcile(w: &mut World, idx: usize) {
    let mut m = w.migs[idx].clone();
    let active = m.vms.iter().filter(|v| v.is_active()).count() as i64;
    let mut deficit = m.target_size - active;
    if deficit > 0 {
        if m.standby_mode.as_deref() == Some("SCALE_OUT_POOL") {
            // "MIG automatically resumes or starts VMs in the standby pool when the group scales
            // out" (InstanceGroupManagerStandbyPolicy.mode). ASSUMPTION: suspended before stopped
            // (the docs name no order; resuming is the faster of the two).
            for (status, action) in [("SUSPENDED", "RESUMING"), ("STOPPED", "STARTING")] {
                for vm in m.vms.iter_mut().filter(|v| v.parked(status)) {
                    if deficit == 0 {
                        break;
                    }
                    vm.action = action.into();
                    deficit -= 1;
                }
            }
        }
        // MANUAL mode "does not automatically resume or start VMs in the standby pool": the
        // resize creates new VMs.
        for _ in 0..deficit {
            let vm = new_vm(w, &mut m, "", "CREATING", None);
            m.vms.push(vm);
        }
    } else if deficit < 0 {
        // Resize down. The reference: "the group arbitrarily chooses the order in which VMs are
        // deleted"; ASSUMPTION: the fake deletes the newest.
        let mut n = -deficit;
        for vm in m.vms.iter_mut().rev() {
            if n == 0 {
                break;
            }
            if vm.is_active() {
                vm.action = "DELETING".into();
                n -= 1;
            }
        }
    }
    // The standby pool follows its own targets; in SCALE_OUT_POOL mode this is the documented
    // "replenishes the standby pool afterwards". ASSUMPTION (docs silent): a raised target adds
    // new VMs that initialise and are then parked; a lowered one deletes the newest standby VMs.
    for (kind, target) in [
        ("STOPPED", m.target_stopped_size),
        ("SUSPENDED", m.target_suspended_size),
    ] {
        let have = m
            .vms
            .iter()
            .filter(|v| v.standby_kind() == Some(kind))
            .count() as i64;
        for _ in have..target {
            let vm = new_vm(w, &mut m, "", "CREATING", Some(kind));
            m.vms.push(vm);
        }
        let mut n = have - target;
        for vm in m.vms.iter_mut().rev() {
            if n <= 0 {
                break;
            }
            if vm.standby_kind() == Some(kind) {
                vm.action = "DELETING".into();
                vm.park_as = None;
                n -= 1;
            }
        }
    }
    w.migs[idx] = m;
}

fn new_op(
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

fn mig_json(w: &World, m: &Mig) -> Value {
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

fn vm_url(w: &World, vm: &Vm) -> String {
    format!(
        "{}/compute/v1/projects/{}/zones/{}/instances/{}",
        w.endpoint, w.project, vm.zone, vm.name
    )
}

fn managed_json(w: &World, vm: &Vm) -> Value {
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
    if !vm.last_attempt_errors.is_empty() {
        j["lastAttempt"] = json!({"errors": {"errors": vm.last_attempt_errors.iter()
            .map(|(c, m)| json!({"code": c, "message": m})).collect::<Vec<_>>()}});
    }
    j
}

fn instance_json(w: &World, m: &Mig, vm: &Vm) -> Value {
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
        "networkInterfaces": [{"name": "nic0", "networkIP": vm.ip}],
        "selfLink": vm_url(w, vm),
    })
}

fn google_error(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"error": {"code": code, "message": message,
        "errors": [{"domain": "global", "reason": reason, "message": message}]}}),
    )
}

fn not_found(resource: &str) -> (u16, Value) {
    google_error(
        404,
        "notFound",
        &format!("The resource '{resource}' was not found"),
    )
}

/// Compute's list filter, the subset gpupool sends: `field op "value"` terms, optionally in
/// parentheses, joined by spaces (AND). `Err` for anything else (→ 400 invalid filter).
fn parse_filter(f: &str) -> Result<Vec<(String, String, String)>, String> {
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

fn matches(item: &Value, terms: &[(String, String, String)]) -> bool {
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

fn page(
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

fn route(
    w: &mut World,
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> (u16, Value) {
    w.calls.push(format!("{method} {path}"));
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
    let page_size = w.page_size;
    match (method, seg.as_slice()) {
        ("GET", ["global", "instanceTemplates", name]) => match w.templates.get(*name) {
            Some(t) => (200, t.clone()),
            None => not_found(&format!(
                "projects/{}/global/instanceTemplates/{name}",
                w.project
            )),
        },
        ("GET", [kind @ ("zones" | "regions"), loc, "instanceGroupManagers"]) => {
            let scope = format!("{kind}/{loc}");
            let items: Vec<Value> = w
                .migs
                .iter()
                .filter(|m| m.scope == scope)
                .map(|m| mig_json(w, m))
                .filter(|j| matches(j, &filter))
                .collect();
            (
                200,
                page(
                    items,
                    query,
                    page_size,
                    "items",
                    "compute#instanceGroupManagerList",
                ),
            )
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
        ("GET", ["zones", zone, "instances"]) => {
            let items: Vec<Value> = w
                .migs
                .iter()
                .flat_map(|m| m.vms.iter().map(move |v| (m, v)))
                .filter(|(_, v)| v.zone == *zone && !v.status.is_empty())
                .map(|(m, v)| instance_json(w, m, v))
                .filter(|j| matches(j, &filter))
                .collect();
            (
                200,
                page(items, query, page_size, "items", "compute#instanceList"),
            )
        }
        ("GET", [kind @ ("zones" | "regions"), loc, "operations", name]) => {
            let scope_url = format!(
                "{}/compute/v1/projects/{}/{kind}/{loc}",
                w.endpoint, w.project
            );
            let field = if *kind == "zones" { "zone" } else { "region" };
            match w.ops.get_mut(*name) {
                Some(op) if op[field] == json!(scope_url) => {
                    let out = op.clone();
                    // ASSUMPTION: a MIG operation "is marked DONE if the … request is successful"
                    // with no stated delay; the fake answers RUNNING and is DONE from the next
                    // read on, so a client that does not poll sees it unfinished.
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
        ("GET", ["zones", zone, "operations"]) => {
            let url = format!(
                "{}/compute/v1/projects/{}/zones/{zone}",
                w.endpoint, w.project
            );
            let mut items: Vec<Value> = w
                .ops
                .values()
                .filter(|o| o["zone"] == json!(url))
                .filter(|o| matches(o, &filter))
                .cloned()
                .collect();
            items.sort_by(|a, b| a["insertTime"].as_str().cmp(&b["insertTime"].as_str()));
            (
                200,
                page(items, query, page_size, "items", "compute#operationList"),
            )
        }
        _ => not_found(path),
    }
}

fn mig_call(
    w: &mut World,
    idx: usize,
    method: &str,
    verb: &[&str],
    query: &BTreeMap<String, String>,
    body: &[u8],
    scope: &str,
) -> (u16, Value) {
    let target = format!(
        "{}/compute/v1/projects/{}/{scope}/instanceGroupManagers/{}",
        w.endpoint, w.project, w.migs[idx].name
    );
    // The running operation a mutating call answers with.
    let op = |w: &mut World, verb: &str, error: Option<(String, String)>| {
        let op_type = format!("compute.instanceGroupManagers.{verb}");
        (200, new_op(w, scope, &op_type, &target, "RUNNING", error))
    };
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
    match (method, verb) {
        ("GET", []) => (200, mig_json(w, &w.migs[idx])),
        ("POST", ["listManagedInstances"]) => {
            let items: Vec<Value> = w.migs[idx].vms.iter().map(|v| managed_json(w, v)).collect();
            let mut j = page(items, query, w.page_size, "managedInstances", "");
            if let Some(o) = j.as_object_mut() {
                o.remove("kind");
                o.remove("id");
            }
            (200, j)
        }
        ("POST", ["resize"]) => {
            let Some(size) = query
                .get("size")
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s >= 0)
            else {
                return google_error(400, "invalid", "Invalid value for field 'size'");
            };
            if let Some(err) = w.migs[idx].fail_next.take() {
                return op(w, "resize", Some(err));
            }
            w.migs[idx].target_size = size;
            reconcile(w, idx);
            op(w, "resize", None)
        }
        ("PATCH", []) => {
            if let Some(err) = w.migs[idx].fail_next.take() {
                return op(w, "patch", Some(err));
            }
            let m = &mut w.migs[idx];
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
            reconcile(w, idx);
            op(w, "patch", None)
        }
        ("POST", ["deleteInstances"]) => {
            w.delete_bodies.push(body.clone());
            let skip = body["skipInstancesOnValidationError"]
                .as_bool()
                .unwrap_or(false);
            let urls: Vec<String> = body["instances"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let names: Vec<String> = urls
                .iter()
                .map(|u| u.rsplit('/').next().unwrap_or(u).to_owned())
                .collect();
            let m = &mut w.migs[idx];
            for n in &names {
                match m
                    .vms
                    .iter_mut()
                    .find(|v| &v.name == n && v.action != "DELETING")
                {
                    Some(vm) => {
                        // "reduces the targetSize … by the number of instances that you delete".
                        // ASSUMPTION (docs silent): a standby VM lowers its own standby target
                        // instead, since it is not counted in targetSize.
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
                            &format!(
                                "The instance '{n}' is not a member of the managed instance group"
                            ),
                        );
                    }
                }
            }
            op(w, "deleteInstances", None)
        }
        (
            "POST",
            [
                verb
                @ ("startInstances" | "resumeInstances" | "stopInstances" | "suspendInstances"),
            ],
        ) => {
            w.standby_calls.push(((*verb).to_owned(), body.clone()));
            let names: Vec<String> = body["instances"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str())
                        .map(|u| u.rsplit('/').next().unwrap_or(u).to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if names.is_empty() || names.len() > 1000 {
                return google_error(400, "invalid", "Between 1 and 1000 instances are required");
            }
            let m = &mut w.migs[idx];
            // "You can only specify instances that are stopped" (startInstances; suspended for
            // resumeInstances, running for stop/suspendInstances). ASSUMPTION: one VM in the
            // wrong state fails the whole request with 400 before anything changes.
            let ok = |v: &Vm| match *verb {
                "startInstances" => v.parked("STOPPED") || v.parked("TERMINATED"),
                "resumeInstances" => v.parked("SUSPENDED"),
                _ => v.is_active() && v.status == "RUNNING" && v.action == "NONE",
            };
            for n in &names {
                if !m.vms.iter().any(|v| &v.name == n && ok(v)) {
                    return google_error(
                        400,
                        "invalid",
                        &format!("Instance '{n}' cannot be used in {verb} in its current state"),
                    );
                }
            }
            let k = names.len() as i64;
            for vm in m.vms.iter_mut().filter(|v| names.contains(&v.name)) {
                match *verb {
                    "startInstances" => vm.action = "STARTING".into(),
                    "resumeInstances" => vm.action = "RESUMING".into(),
                    "stopInstances" => vm.park_as = Some("STOPPED".into()),
                    _ => vm.park_as = Some("SUSPENDED".into()),
                }
            }
            // start/resume: "increases the targetSize and decreases the targetStoppedSize
            // (targetSuspendedSize)"; stop/suspend: the reverse.
            match *verb {
                "startInstances" => {
                    m.target_size += k;
                    m.target_stopped_size -= k;
                }
                "resumeInstances" => {
                    m.target_size += k;
                    m.target_suspended_size -= k;
                }
                "stopInstances" => {
                    m.target_size -= k;
                    m.target_stopped_size += k;
                }
                _ => {
                    m.target_size -= k;
                    m.target_suspended_size += k;
                }
            }
            reconcile(w, idx);
            op(w, verb, None)
        }
        _ => google_error(404, "notFound", "Unknown method"),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn serve(stream: TcpStream, world: Arc<Mutex<World>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("/").to_owned(),
        );
        let mut content_length = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    content_length = v.trim().parse().unwrap_or(0);
                } else if k == "connection" && v.trim().eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut body = vec![0u8; content_length.min(8 << 20)];
        reader.read_exact(&mut body).await?;
        let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
        let query: BTreeMap<String, String> = qs
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        let (status, json) = {
            let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
            route(&mut w, &method, &percent_decode(path), &query, &body)
        };
        let payload = json.to_string();
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            _ => "Error",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        );
        let s = reader.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(payload.as_bytes()).await?;
        s.flush().await?;
        if close {
            return Ok(());
        }
    }
}
