//! The fake's state: MIGs, their VMs, and how a MIG moves its VMs towards its targets.

use crate::now_rfc3339;
use serde_json::Value;
use std::collections::BTreeMap;

/// A VM's place in its MIG's plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Vm {
    pub name: String,
    pub zone: String,
    /// `instanceStatus`; empty while the VM does not exist yet.
    pub status: String,
    /// `currentAction`.
    pub action: String,
    /// Created (or being stopped/suspended) for the standby pool: `STOPPED` or `SUSPENDED`, how
    /// it is parked once its initial delay is over (its `targetStatus`; a stopped VM's
    /// `instanceStatus` is then TERMINATED, see [`at_rest_status`]).
    pub park_as: Option<String>,
    pub created: String,
    pub labels: BTreeMap<String, String>,
    pub last_attempt_errors: Vec<(String, String)>,
    pub ip: String,
}

impl Vm {
    /// Part of the standby pool (parked, or on its way there), and of which kind.
    pub(crate) fn standby_kind(&self) -> Option<&str> {
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
    pub(crate) fn is_standby(&self) -> bool {
        self.standby_kind().is_some()
    }
    /// Counted in `targetSize`: running, or on its way to running. A standby VM is not:
    /// `targetSize` is "the target number of running instances for this managed instance group",
    /// and the standby pool has its own targets, `targetStoppedSize` / `targetSuspendedSize`
    /// (InstanceGroupManager, Compute API reference); `startInstances` "increases the targetSize
    /// and decreases the targetStoppedSize" by the VMs started, `stopInstances` "reduces the
    /// targetSize and increases the targetStoppedSize" (instanceGroupManagers.startInstances /
    /// stopInstances; the same text is in google-cloud-compute-v1 4.1's client docs). "About
    /// suspending and stopping VMs in a MIG"
    /// (https://cloud.google.com/compute/docs/instance-groups/suspended-and-stopped-vms-in-mig):
    /// the standby pool is kept "ready to start when the MIG resizes up".
    pub(crate) fn is_active(&self) -> bool {
        self.action != "DELETING" && !self.is_standby()
    }
    /// Parked in the standby pool as `kind` (`STOPPED` or `SUSPENDED`) with nothing pending:
    /// what start/resume accept.
    pub(crate) fn parked(&self, kind: &str) -> bool {
        let status_fits = match kind {
            "SUSPENDED" => self.status == "SUSPENDED",
            _ => matches!(self.status.as_str(), "TERMINATED" | "STOPPED"),
        };
        self.action == "NONE" && self.park_as.is_none() && status_fits
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
    pub(crate) counter: u64,
    /// Labels a VM sets on itself once running (what the startup script does when the model
    /// cache is warm).
    pub warm_labels: BTreeMap<String, String>,
    /// The next resize/patch operation ends with this error `(code, message)`. Not how a MIG
    /// reports a stockout (see [`FakeCompute::stockout`]); for operation-level failures only.
    pub fail_next: Option<(String, String)>,
}

#[derive(Default)]
pub(crate) struct World {
    pub(crate) project: String,
    pub(crate) endpoint: String,
    pub(crate) templates: BTreeMap<String, Value>,
    pub(crate) migs: Vec<Mig>,
    /// All operations by name, with the scope that owns them.
    pub(crate) ops: BTreeMap<String, Value>,
    pub(crate) op_counter: u64,
    /// `(zone, machine type) → (code, message)`: new VMs there stay CREATING with that error as
    /// their `lastAttempt`.
    pub(crate) stockouts: BTreeMap<(String, String), (String, String)>,
    /// Largest page the fake returns, whatever `maxResults` asks (exercises pagination).
    pub(crate) page_size: usize,
    /// "METHOD path" of every request, for assertions.
    pub(crate) calls: Vec<String>,
    /// Bodies of deleteInstances calls.
    pub(crate) delete_bodies: Vec<Value>,
    /// `(verb, body)` of start/resume/stop/suspendInstances calls, in order.
    pub(crate) standby_calls: Vec<(String, Value)>,
    /// `filter` query parameters received, in order.
    pub(crate) filters: Vec<String>,
    pub(crate) ip_counter: u32,
    /// VM name → labels another writer sets just before the next `setLabels` on that VM is
    /// handled ([`crate::FakeCompute::race_next_set_labels`]).
    pub(crate) label_race: BTreeMap<String, BTreeMap<String, String>>,
    /// Rate-limit answers still to give, each for the next request whatever it is
    /// ([`crate::FakeCompute::rate_limit_next`]).
    pub(crate) rate_limits: std::collections::VecDeque<crate::RateLimit>,
}

/// The machine type of a template, `""` if unknown.
pub(crate) fn machine_type<'a>(templates: &'a BTreeMap<String, Value>, template: &str) -> &'a str {
    templates
        .get(template)
        .and_then(|t| t["properties"]["machineType"].as_str())
        .unwrap_or_default()
}

pub(crate) fn new_vm(
    w: &mut World,
    m: &mut Mig,
    status: &str,
    action: &str,
    park_as: Option<&str>,
) -> Vm {
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
pub(crate) fn reconcile(w: &mut World, idx: usize) {
    let mut m = w.migs[idx].clone();
    let active = m.vms.iter().filter(|v| v.is_active()).count() as i64;
    let mut deficit = m.target_size - active;
    if deficit > 0 {
        if m.standby_mode.as_deref() == Some("SCALE_OUT_POOL") {
            // "MIG automatically resumes or starts VMs in the standby pool when the group scales
            // out" (InstanceGroupManagerStandbyPolicy.mode). ASSUMPTION: suspended before stopped
            // (the docs name no order; resuming is the faster of the two).
            for (kind, action) in [("SUSPENDED", "RESUMING"), ("STOPPED", "STARTING")] {
                for vm in m.vms.iter_mut().filter(|v| v.parked(kind)) {
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

impl World {
    /// One step of every VM (see [`crate::FakeCompute::advance`]).
    pub(crate) fn advance(&mut self) {
        let World {
            migs,
            templates,
            stockouts,
            ip_counter,
            ..
        } = self;
        for m in migs.iter_mut() {
            let machine = machine_type(templates, &m.template).to_owned();
            m.vms.retain(|v| v.action != "DELETING");
            for vm in &mut m.vms {
                match stockouts.get(&(vm.zone.clone(), machine.clone())) {
                    Some(error) if matches!(vm.action.as_str(), "CREATING" | "RECREATING") => {
                        // "CREATING: … If the group fails to create this instance, it will try
                        // again until it is successful" (ManagedInstance.currentAction): the VM
                        // stays CREATING, and the failed attempt shows as its `lastAttempt.errors`
                        // ("Encountered errors during the last attempt to create or delete the
                        // instance", ManagedInstance.lastAttempt) from the first attempt on — what
                        // Cluster Autoscaler's gce provider reads (autoscaling_gce_client.go,
                        // FetchMigInstances). Nothing fails at resize time: the resize operation
                        // "is marked DONE when the resize actions are scheduled"
                        // (instanceGroupManagers.resize).
                        vm.last_attempt_errors = vec![error.clone()];
                    }
                    _ => step(vm, &m.warm_labels, ip_counter),
                }
            }
        }
    }
}

/// One lifecycle step of a VM that is not held back by a stockout.
fn step(vm: &mut Vm, warm_labels: &BTreeMap<String, String>, ip_counter: &mut u32) {
    match (vm.action.as_str(), vm.status.as_str()) {
        ("CREATING", _) | ("RECREATING", _) => {
            vm.last_attempt_errors.clear();
            vm.status = "RUNNING".into();
            vm.action = "NONE".into();
            vm.created = now_rfc3339();
            *ip_counter += 1;
            vm.ip = format!("10.128.0.{}", *ip_counter % 250 + 2);
            vm.labels.extend(warm_labels.clone());
        }
        ("NONE", "RUNNING") if vm.park_as.is_some() => {
            let suspend = vm.park_as.as_deref() == Some("SUSPENDED");
            let step = if suspend { "SUSPENDING" } else { "STOPPING" };
            vm.action = step.into();
            vm.status = step.into();
        }
        ("STOPPING", _) | ("SUSPENDING", _) => {
            let kind = vm.park_as.take().unwrap_or_else(|| "STOPPED".into());
            vm.status = at_rest_status(&kind).into();
            vm.action = "NONE".into();
        }
        ("STARTING", _) | ("RESUMING", _) => {
            vm.action = "NONE".into();
            vm.status = "RUNNING".into();
            vm.labels.extend(warm_labels.clone());
        }
        _ => {}
    }
}

/// The `instanceStatus` of a VM parked in the standby pool as `kind` (its `targetStatus`,
/// `STOPPED` or `SUSPENDED`). A stopped VM's status is TERMINATED: "From the RUNNING state, you
/// can move a compute instance to the SUSPENDED or TERMINATED states" (Compute Engine instance
/// lifecycle, https://cloud.google.com/compute/docs/instances/instance-lifecycle; STOPPING "will
/// move to TERMINATED once the instance has stopped"). The `Instance.status` enum also lists
/// STOPPED, which the fake never writes.
pub(crate) fn at_rest_status(kind: &str) -> &'static str {
    if kind == "SUSPENDED" {
        "SUSPENDED"
    } else {
        "TERMINATED"
    }
}
