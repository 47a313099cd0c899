//! The VM-only drain mark on GCP, end to end against the fake Compute server: a scale-in drain
//! labels its VM `gpupool-io-drain-deadline=<epoch seconds>` (`instances.get` +
//! `instances.setLabels` with the label fingerprint) before the VM is deregistered; the process
//! is killed mid-drain *and its state file deleted*; a new controller finds the label, resumes
//! the drain with the same deadline, keeps the VM while its requests are in flight, and deletes
//! it once idle — no other VM deregistered. A drain given up (deregistration keeps failing)
//! removes the label, keeping the VM's other labels. The GCP counterpart of
//! `aws_drain_mark.rs`; run with `cargo test --features gcp --test gcp_drain_mark`.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines
#![cfg(feature = "gcp")]

#[path = "support/drain_rig.rs"]
mod drain_rig;
#[path = "support/markers.rs"]
mod markers;

use drain_rig::{Clock, TempDir, tick};
use gpupool::config::Config;
use gpupool::controller::Controller;
use gpupool::model::{InstanceId, Timestamp};
use gpupool_gcp::{GcpCredentials, GcpPoolSettings, GcpProvider, GcpSettings};
use gpupool_gcp_fake::FakeCompute;
use gpupool_provider::{DRAIN_DEADLINE_LABEL, decode_drain_deadline, encode_drain_deadline};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PROJECT: &str = "gpupool-test";
const MIG: &str = "llama-od";

fn config(
    fake: &FakeCompute,
    dir: &Path,
    prom: std::net::SocketAddr,
    deregister: &[&str],
) -> Config {
    let argv: Vec<String> = deregister.iter().map(|a| format!("{a:?}")).collect();
    let yaml = format!(
        r#"provider: gcp
mode: vm-only
tick_interval_s: 10
state: {{ path: "{state}" }}
gcp:
  project: {PROJECT}
  region: us-central1
  zones: [us-central1-a]
  endpoint_url: "{endpoint}"
  operation_deadline_s: 10
pools:
  - name: llama
    requirements: {{ gpu_models: [L4] }}
    replica: {{ gpus: 1, replicas_per_instance: 1 }}
    capacity: {{ spot_share: 0.0 }}
    limits: {{ min_nodes: 1, max_nodes: 4 }}
    deregister_command: [{argv}]
    in_flight_query: {{ url: "http://{prom}", query: "vllm_in_flight{{instance=\"{{instance}}\"}}" }}
    disruption: {{ unneeded_time_s: 0, scale_down_delay_after_add_s: 0, drain_timeout_s: 600, deregister_give_up_s: 60 }}
"#,
        state = dir.join("state.json").display(),
        endpoint = fake.endpoint(),
        argv = argv.join(", "),
    );
    Config::load(&yaml).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// One gpupool process: the real GCP provider, the real VM-only cluster, the state file.
async fn process(cfg: &Arc<Config>) -> Controller {
    let g = cfg.gcp.as_ref().expect("gcp section");
    let mut s = GcpSettings::new(&g.project, &g.region);
    s.zones = g.zones.clone();
    s.endpoint_url = g.endpoint_url.clone();
    s.credentials = GcpCredentials::for_endpoint(g.endpoint_url.as_deref());
    s.operation_deadline = g.operation_deadline;
    // Tests poll operations quickly; production keeps the 1 s default.
    s.operation_poll_interval = Duration::from_millis(5);
    s.pools = vec![GcpPoolSettings::new("llama".into()).with_max_group_size(4)];
    drain_rig::process(cfg, Arc::new(GcpProvider::new(s).await.unwrap()))
}

/// The drain label of a VM as the fake Compute holds it.
fn drain_label(fake: &FakeCompute, vm: &str) -> Option<String> {
    fake.vm_labels(vm)?.get(DRAIN_DEADLINE_LABEL).cloned()
}

/// The operator's own `team` label on a VM, which gpupool's label writes must keep.
fn team_label(fake: &FakeCompute, vm: &str) -> Option<String> {
    fake.vm_labels(vm)?.get("team").cloned()
}

/// The MIG's VMs that are running with nothing pending, sorted.
fn running(fake: &FakeCompute) -> Vec<String> {
    let mut v: Vec<String> = fake
        .mig(MIG)
        .unwrap()
        .vms
        .iter()
        .filter(|v| v.status == "RUNNING" && v.action == "NONE")
        .map(|v| v.name.clone())
        .collect();
    v.sort();
    v
}

/// A zonal on-demand L4 MIG with two running VMs, each carrying a label of the operator's.
async fn two_vm_mig() -> (FakeCompute, Vec<String>) {
    let fake = FakeCompute::start(PROJECT).await.unwrap();
    fake.add_l4_template("llama-l4", false, "llama");
    fake.add_mig(
        "zones/us-central1-a",
        MIG,
        "llama-l4",
        &["us-central1-a"],
        2,
        None,
    );
    fake.set_warm_labels(MIG, &[("team", "inference")]);
    let ids = running(&fake);
    assert_eq!(ids.len(), 2);
    (fake, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_survives_the_loss_of_process_and_state_file_through_its_vm_label() {
    let (fake, ids) = two_vm_mig().await;
    let dir = TempDir::new("resume");
    let counts = Arc::new(Mutex::new(BTreeMap::new()));
    // Both VMs busy: the drain deregisters one and then waits for its requests.
    for id in &ids {
        counts.lock().unwrap().insert(id.clone(), 2);
    }
    let prom = drain_rig::prometheus(counts.clone()).await;
    let marker = format!("{}/deregistered-{{id}}", dir.0.display());
    let cfg = Arc::new(config(&fake, &dir.0, prom, &["touch", &marker]));
    let mut clock = Clock(0);

    // 1. Demand 1 of 2 VMs: one VM is drained — labelled, deregistered, kept while busy.
    let mut first = process(&cfg).await;
    let mut drain = None;
    for _ in 0..5 {
        tick(&mut first, &mut clock).await;
        drain = first.draining().next().map(|(i, d)| (i.clone(), d));
        if drain.is_some() && !markers::deregistered(&dir.0).is_empty() {
            break;
        }
    }
    let (victim, deadline) = drain.expect("a scale-in drain started");
    assert_eq!(markers::deregistered(&dir.0), vec![victim.to_string()]);
    let label = drain_label(&fake, victim.as_str());
    assert_eq!(
        label.as_deref(),
        Some(encode_drain_deadline(deadline).as_str()),
        "the drain is labelled on its VM with its deadline"
    );
    assert_eq!(
        team_label(&fake, victim.as_str()).as_deref(),
        Some("inference"),
        "setLabels replaces the whole set: the operator's label was written back"
    );
    let other = ids.iter().find(|i| *i != victim.as_str()).unwrap().clone();
    assert_eq!(
        drain_label(&fake, &other),
        None,
        "only the drained VM is labelled"
    );
    assert_eq!(running(&fake).len(), 2, "busy: kept");

    // 2. The process dies and its state file is lost.
    drop(first);
    std::fs::remove_file(dir.0.join("state.json")).expect("the state file existed");
    std::fs::remove_file(dir.0.join(format!("deregistered-{victim}"))).unwrap();

    // 3. A new process: the drain is resumed from the label, with the same deadline (to the
    //    second the label holds), the VM deregistered again and kept while requests run.
    let mut second = process(&cfg).await;
    let r = tick(&mut second, &mut clock).await;
    assert!(r.held.is_none(), "{:?}", r.held);
    let resumed: Vec<(InstanceId, Timestamp)> =
        second.draining().map(|(i, d)| (i.clone(), d)).collect();
    let labelled = decode_drain_deadline(label.as_deref().unwrap()).unwrap();
    assert_eq!(
        resumed,
        vec![(victim.clone(), labelled)],
        "resumed from the label"
    );
    assert!(labelled <= deadline && deadline.secs_since(labelled) < 1.0);
    assert_eq!(markers::deregistered(&dir.0), vec![victim.to_string()]);
    assert!(r.terminated_after_drain.is_empty());
    assert_eq!(running(&fake).len(), 2, "busy: still kept");

    // 4. Its requests finish: deleted; the other VM untouched.
    counts.lock().unwrap().insert(victim.to_string(), 0);
    let mut terminated = Vec::new();
    for _ in 0..5 {
        let r = tick(&mut second, &mut clock).await;
        terminated.extend(r.terminated_after_drain);
        if !terminated.is_empty() {
            break;
        }
    }
    assert_eq!(terminated, vec![victim.clone()]);
    fake.advance();
    assert_eq!(
        running(&fake),
        vec![other.clone()],
        "the drained VM went, the other stayed"
    );
    assert_eq!(fake.mig(MIG).unwrap().target_size, 1);
    assert_eq!(markers::deregistered(&dir.0), vec![victim.to_string()]);
    println!(
        "FAULT-ROW | Crash: kill mid-drain and state file lost (GCP) | drain resumed from the VM label with the same deadline, VM deleted only once idle, no other VM touched | label {} read back; resumed with that deadline; kept while busy, deleted once idle; the other VM never deregistered",
        label.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_given_up_removes_its_label_and_keeps_the_others() {
    let (fake, ids) = two_vm_mig().await;
    let dir = TempDir::new("giveup");
    let prom = drain_rig::prometheus(Arc::new(Mutex::new(BTreeMap::new()))).await;
    // Deregistration always fails: the drain is given up after deregister_give_up_s (60 s).
    let cfg = Arc::new(config(&fake, &dir.0, prom, &["false"]));
    let mut clock = Clock(0);
    let mut ctl = process(&cfg).await;
    let mut labelled = None;
    for _ in 0..5 {
        tick(&mut ctl, &mut clock).await;
        if let Some((id, _)) = ctl.draining().next() {
            labelled = Some((id.clone(), drain_label(&fake, id.as_str())));
            break;
        }
    }
    let (victim, label) = labelled.expect("a scale-in drain started");
    assert!(
        label.is_some(),
        "labelled while deregistration is attempted"
    );
    // 10 s per tick: past the 60 s give-up within a dozen ticks.
    let mut gone = false;
    for _ in 0..12 {
        tick(&mut ctl, &mut clock).await;
        if drain_label(&fake, victim.as_str()).is_none() {
            gone = true;
            break;
        }
    }
    assert!(gone, "the label of the drain given up was removed");
    assert_eq!(
        team_label(&fake, victim.as_str()).as_deref(),
        Some("inference"),
        "the operator's label survived both writes"
    );
    assert!(ids.contains(&victim.to_string()));
    assert_eq!(running(&fake).len(), 2, "the VM was kept");
}
