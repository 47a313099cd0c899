//! The VM-only drain mark on moto: a scale-in drain tags its instance with
//! `gpupool.io/drain-deadline` (the deadline, epoch seconds) before the VM is deregistered; the
//! process is killed mid-drain (controller dropped) *and its state file deleted*; a new
//! controller finds the tag, resumes the drain with the same deadline, keeps the VM while its
//! requests are in flight, and terminates it once idle — no other VM deregistered. A drain
//! given up (deregistration keeps failing) removes the tag. Run with
//! `cargo test --features aws --test aws_drain_mark`.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines
#![cfg(feature = "aws")]

#[path = "support/drain_rig.rs"]
mod drain_rig;
#[path = "support/markers.rs"]
mod markers;
#[path = "support/moto.rs"]
mod moto;

use drain_rig::{Clock, TempDir, tick};
use gpupool::config::Config;
use gpupool::controller::Controller;
use gpupool::model::{InstanceId, Timestamp};
use gpupool_aws::AwsProvider;
use gpupool_provider::{DRAIN_DEADLINE_TAG, decode_drain_deadline, encode_drain_deadline};
use moto::{GroupFixture, Moto};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn config(moto: &Moto, dir: &Path, prom: std::net::SocketAddr, deregister: &[&str]) -> Config {
    let argv: Vec<String> = deregister.iter().map(|a| format!("{a:?}")).collect();
    let yaml = format!(
        r#"provider: aws
mode: vm-only
tick_interval_s: 10
state: {{ path: "{state}" }}
aws: {{ region: us-east-1, endpoint_url: "{endpoint}", api_timeout_s: 10 }}
pools:
  - name: llama
    requirements: {{ gpu_models: [A10G] }}
    replica: {{ gpus: 1, replicas_per_instance: 1 }}
    capacity: {{ spot_share: 1.0 }}
    limits: {{ min_nodes: 1, max_nodes: 4 }}
    deregister_command: [{argv}]
    in_flight_query: {{ url: "http://{prom}", query: "vllm_in_flight{{instance=\"{{instance}}\"}}" }}
    disruption: {{ unneeded_time_s: 0, scale_down_delay_after_add_s: 0, drain_timeout_s: 600, deregister_give_up_s: 60 }}
"#,
        state = dir.join("state.json").display(),
        endpoint = moto.endpoint,
        argv = argv.join(", "),
    );
    Config::load(&yaml).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// One gpupool process on moto: the real AWS provider, the real VM-only cluster, the state file.
async fn process(moto: &Moto, cfg: &Arc<Config>) -> Controller {
    let provider = Arc::new(AwsProvider::new(moto.settings(&["llama"])).await.unwrap());
    drain_rig::process(cfg, provider)
}

/// The drain tag of an instance as EC2 reports it.
async fn drain_tag(c: &moto::Clients, id: &str) -> Option<String> {
    c.instance(id)
        .await
        .tags()
        .iter()
        .find(|t| t.key() == Some(DRAIN_DEADLINE_TAG))
        .and_then(|t| t.value().map(str::to_owned))
}

async fn two_vm_group(moto: &Moto) -> (moto::Clients, Vec<String>) {
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "llama-spot",
        zones: &["us-east-1a"],
        overrides: &["g5.xlarge"],
        on_demand_pct: 0,
        desired: 2,
        ..Default::default()
    })
    .await;
    let ids = c.desired("llama-spot").await.1;
    assert_eq!(ids.len(), 2);
    (c, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_survives_the_loss_of_process_and_state_file_through_its_instance_tag() {
    let moto = Moto::start();
    let (c, ids) = two_vm_group(&moto).await;
    let dir = TempDir::new("resume");
    let counts = Arc::new(Mutex::new(BTreeMap::new()));
    // Both VMs busy: the drain deregisters one and then waits for its requests.
    for id in &ids {
        counts.lock().unwrap().insert(id.clone(), 2);
    }
    let prom = drain_rig::prometheus(counts.clone()).await;
    let marker = format!("{}/deregistered-{{id}}", dir.0.display());
    let cfg = Arc::new(config(&moto, &dir.0, prom, &["touch", &marker]));
    let mut clock = Clock(0);

    // 1. Demand 1 of 2 VMs: one VM is drained — tagged, deregistered, kept while busy.
    let mut first = process(&moto, &cfg).await;
    let mut drain = None;
    for _ in 0..5 {
        tick(&mut first, &mut clock).await;
        drain = first.draining().next().map(|(i, d)| (i.clone(), d));
        if drain.is_some() && !markers::deregistered(&dir.0).is_empty() {
            break;
        }
    }
    let (victim, deadline) = drain.expect("a scale-in drain started");
    assert_eq!(
        markers::deregistered(&dir.0),
        vec![victim.to_string()],
        "deregistered"
    );
    let tag = drain_tag(&c, victim.as_str()).await;
    assert_eq!(
        tag.as_deref(),
        Some(encode_drain_deadline(deadline).as_str()),
        "the drain is tagged on its instance with its deadline"
    );
    let other = ids.iter().find(|i| *i != victim.as_str()).unwrap().clone();
    assert_eq!(
        drain_tag(&c, &other).await,
        None,
        "only the drained VM is tagged"
    );
    assert_eq!(c.desired("llama-spot").await.1.len(), 2, "busy: kept");

    // 2. The process dies and its state file is lost.
    drop(first);
    std::fs::remove_file(dir.0.join("state.json")).expect("the state file existed");
    std::fs::remove_file(dir.0.join(format!("deregistered-{victim}"))).unwrap();

    // 3. A new process: the drain is resumed from the tag, with the same deadline (to the
    //    second the tag holds), the VM deregistered again and kept while requests run.
    let mut second = process(&moto, &cfg).await;
    let r = tick(&mut second, &mut clock).await;
    assert!(r.held.is_none(), "{:?}", r.held);
    let resumed: Vec<(InstanceId, Timestamp)> =
        second.draining().map(|(i, d)| (i.clone(), d)).collect();
    let tagged = decode_drain_deadline(tag.as_deref().unwrap()).unwrap();
    assert_eq!(
        resumed,
        vec![(victim.clone(), tagged)],
        "resumed from the tag"
    );
    assert!(tagged <= deadline && deadline.secs_since(tagged) < 1.0);
    assert_eq!(
        markers::deregistered(&dir.0),
        vec![victim.to_string()],
        "deregistered again, only it"
    );
    assert!(r.terminated_after_drain.is_empty());
    assert_eq!(c.desired("llama-spot").await.1.len(), 2, "busy: still kept");

    // 4. Its requests finish: terminated; the other VM untouched.
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
    let live = c.desired("llama-spot").await.1;
    assert_eq!(
        live,
        vec![other.clone()],
        "the drained VM went, the other stayed"
    );
    assert_eq!(
        markers::deregistered(&dir.0),
        vec![victim.to_string()],
        "no other VM deregistered"
    );
    println!(
        "FAULT-ROW | Crash: kill mid-drain and state file lost | drain resumed from the instance tag with the same deadline, VM terminated only once idle, no other VM touched | tag {} read back; resumed with that deadline; kept while busy, terminated once idle; the other VM never deregistered",
        tag.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_given_up_removes_its_tag() {
    let moto = Moto::start();
    let (c, ids) = two_vm_group(&moto).await;
    let dir = TempDir::new("giveup");
    let prom = drain_rig::prometheus(Arc::new(Mutex::new(BTreeMap::new()))).await;
    // Deregistration always fails: the drain is given up after deregister_give_up_s (60 s).
    let cfg = Arc::new(config(&moto, &dir.0, prom, &["false"]));
    let mut clock = Clock(0);
    let mut ctl = process(&moto, &cfg).await;
    let mut tagged = None;
    for _ in 0..5 {
        tick(&mut ctl, &mut clock).await;
        if let Some((id, _)) = ctl.draining().next() {
            tagged = Some((id.clone(), drain_tag(&c, id.as_str()).await));
            break;
        }
    }
    let (victim, tag) = tagged.expect("a scale-in drain started");
    assert!(tag.is_some(), "tagged while deregistration is attempted");
    // 10 s per tick: past the 60 s give-up within a dozen ticks.
    let mut gone = false;
    for _ in 0..12 {
        tick(&mut ctl, &mut clock).await;
        if drain_tag(&c, victim.as_str()).await.is_none() {
            gone = true;
            break;
        }
    }
    assert!(gone, "the tag of the drain given up was removed");
    assert!(ids.contains(&victim.to_string()));
    assert_eq!(c.desired("llama-spot").await.1.len(), 2, "the VM was kept");
}
