//! The real controller and planner driving the real GCP provider (Google's official Rust
//! client) against the in-process fake Compute server: discovery, growth, targeted deletion,
//! standby starts by name, a preemption turned into a replacement, and a stockout (VMs stuck
//! `CREATING` with `lastAttempt.errors`) taken back and turned into a fallback to another MIG in
//! the tick it is seen. Time is passed to `tick` explicitly, starting at the wall clock the
//! provider dates failures by; the fake's VMs move one step per `advance()`. Nothing sleeps to
//! wait for state.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines
#![cfg(feature = "gcp")]

use gpupool_gcp_fake as fake;

use async_trait::async_trait;
use fake::FakeCompute;
use gpupool::config::Config;
use gpupool::controller::{Cluster, ClusterError, ClusterView, Controller, DrainProgress, Metrics};
use gpupool::model::{Action, GpuRequest, Instance, LifecycleState, PendingPod, Timestamp};
use gpupool::testkit::doubles::FixedDemand;
use gpupool_gcp::{GcpCredentials, GcpPoolSettings, GcpProvider, GcpSettings};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PROJECT: &str = "gpupool-test";
const LABELS: &[(&str, &str)] = &[("gpupool-io-pool", "llama"), ("gpupool-io-enabled", "true")];

#[test]
fn label_keys_match_the_contract() {
    assert_eq!(gpupool_gcp::LABEL_POOL, gpupool::contract::GCP_LABEL_POOL);
    assert_eq!(
        gpupool_gcp::LABEL_ENABLED,
        gpupool::contract::GCP_LABEL_ENABLED
    );
    assert_eq!(
        gpupool_gcp::LABEL_MODEL_CACHE,
        gpupool::contract::GCP_LABEL_MODEL_CACHE
    );
}

/// Every Ready instance is a serving node (VM-only mode with healthy VMs); drains end at once.
/// `pending` are the pods the cluster reports unschedulable (Kubernetes mode).
struct ReadyCluster {
    drained: Arc<Mutex<Vec<String>>>,
    pending: Arc<Mutex<Vec<PendingPod>>>,
}

#[async_trait]
impl Cluster for ReadyCluster {
    async fn observe(
        &mut self,
        instances: &[Instance],
        _now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        let nodes = instances
            .iter()
            .filter(|i| i.state == LifecycleState::Ready)
            .map(|i| gpupool::testkit::doubles::serving_node(i, "llama", 0))
            .collect();
        Ok(ClusterView {
            nodes,
            pending_pods: self.pending.lock().unwrap().clone(),
        })
    }

    async fn drain(
        &mut self,
        instance: &Instance,
        _deadline: Timestamp,
        _now: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        self.drained.lock().unwrap().push(instance.id.to_string());
        Ok(DrainProgress::Drained)
    }
}

fn config(fake: &FakeCompute, capacity: &str, warm_pool: &str) -> anyhow::Result<Config> {
    config_in(fake, "vm-only", capacity, warm_pool)
}

fn config_in(
    fake: &FakeCompute,
    mode: &str,
    capacity: &str,
    warm_pool: &str,
) -> anyhow::Result<Config> {
    let yaml = format!(
        r#"
provider: gcp
mode: {mode}
gcp:
  project: {PROJECT}
  region: us-central1
  zones: [us-central1-a, us-central1-b]
  endpoint_url: "{endpoint}"
  operation_deadline_s: 10
pools:
  - name: llama
    requirements: {{ gpu_models: [L4, A100] }}
    replica: {{ gpus: 1, replicas_per_instance: 1 }}
    capacity: {capacity}
    warm_pool: {warm_pool}
    limits: {{ max_nodes: 6 }}
    disruption:
      unneeded_time_s: 0
      scale_down_delay_after_add_s: 0
      drain_timeout_s: 60
      budget: {{ max_disrupted_at_once: 4, max_per_window: 20 }}
    scale_up: {{ cold_start_s: 60 }}
    forecast: {{ enabled: false }}
    # Declared for validation only: the test's DemandSource supplies this signal's readings.
    signals:
      - name: fixed
        prometheus: {{ url: "http://127.0.0.1:9", query: "fixed", target_per_replica: 1 }}
"#,
        endpoint = fake.endpoint()
    );
    Ok(Config::load(&yaml)?)
}

/// What `gpupool run` does with the `gcp:` section and the pools.
fn settings(config: &Config) -> GcpSettings {
    let g = config.gcp.as_ref().expect("gcp section");
    let mut s = GcpSettings::new(&g.project, &g.region);
    s.zones = g.zones.clone();
    s.endpoint_url = g.endpoint_url.clone();
    s.credentials = GcpCredentials::for_endpoint(g.endpoint_url.as_deref());
    s.api_timeout = g.api_timeout;
    s.operation_deadline = g.operation_deadline;
    // Tests poll operations quickly; production keeps the 1 s default.
    s.operation_poll_interval = Duration::from_millis(5);
    s.pools = config
        .pools
        .iter()
        .map(|p| {
            GcpPoolSettings::new(p.name.clone())
                .with_max_group_size(p.limits.max_nodes)
                .with_model_cache(p.model_cache.clone())
                .with_launch_timeout(p.scale_up.launch_timeout)
        })
        .collect();
    s
}

struct Rig {
    fake: FakeCompute,
    controller: Controller,
    demand: Arc<Mutex<u32>>,
    drained: Arc<Mutex<Vec<String>>>,
    pending: Arc<Mutex<Vec<PendingPod>>>,
    now: Timestamp,
}

impl Rig {
    async fn new(fake: FakeCompute, capacity: &str, warm_pool: &str) -> anyhow::Result<Rig> {
        let config = config(&fake, capacity, warm_pool)?;
        Rig::with_config(fake, config).await
    }

    async fn with_config(fake: FakeCompute, config: Config) -> anyhow::Result<Rig> {
        let provider = GcpProvider::new(settings(&config)).await?;
        let demand = Arc::new(Mutex::new(0));
        let drained = Arc::new(Mutex::new(Vec::new()));
        let pending = Arc::new(Mutex::new(Vec::new()));
        let controller = Controller::new(
            Arc::new(config),
            Arc::new(provider),
            Box::new(ReadyCluster {
                drained: drained.clone(),
                pending: pending.clone(),
            }),
            Box::new(FixedDemand::new("llama", demand.clone())),
            Arc::new(Metrics::default()),
        );
        Ok(Rig {
            fake,
            controller,
            demand,
            drained,
            pending,
            // The provider dates a stuck VM's failure by the wall clock when it first sees it (the
            // API gives the error no time), so the controller's clock starts there too.
            now: Timestamp::from_millis(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis() as i64,
            ),
        })
    }

    fn want(&self, n: u32) {
        *self.demand.lock().unwrap() = n;
    }

    /// One controller tick, 20 s after the last.
    async fn tick(&mut self) -> anyhow::Result<gpupool::controller::TickReport> {
        self.tick_after(20.0).await
    }

    /// One controller tick, `secs` after the last.
    async fn tick_after(&mut self, secs: f64) -> anyhow::Result<gpupool::controller::TickReport> {
        self.now = self.now.plus_secs(secs);
        Ok(self.controller.tick(self.now).await?)
    }

    fn names(&self, mig: &str) -> Vec<String> {
        self.fake
            .mig(mig)
            .map(|m| m.vms.iter().map(|v| v.name.clone()).collect())
            .unwrap_or_default()
    }
}

const ON_DEMAND_ONLY: &str = "{ spot_share: 0.0, fallback: [on-demand] }";
const NO_WARM_POOL: &str = "{ enabled: false }";

#[tokio::test]
async fn grows_a_mig_then_deletes_exactly_the_chosen_vms() -> anyhow::Result<()> {
    let fake = FakeCompute::start(PROJECT).await?;
    fake.add_template(
        "llama-g2",
        "g2-standard-8",
        &[("nvidia-l4", 1)],
        false,
        LABELS,
    );
    fake.add_template("web", "n1-standard-4", &[], false, &[]);
    fake.add_mig(
        "zones/us-central1-a",
        "llama-od",
        "llama-g2",
        &["us-central1-a"],
        1,
        None,
    );
    fake.add_mig(
        "zones/us-central1-b",
        "web",
        "web",
        &["us-central1-b"],
        2,
        None,
    );
    let mut rig = Rig::new(fake, ON_DEMAND_ONLY, NO_WARM_POOL).await?;

    rig.want(3);
    let r = rig.tick().await?;
    assert!(r.held.is_none(), "{:?}", r.held);
    assert!(
        r.results.iter().all(|a| a.error.is_none()),
        "{:?}",
        r.results
    );
    assert_eq!(
        rig.fake.mig("llama-od").unwrap().target_size,
        3,
        "grown by the 2 missing replicas"
    );
    assert_eq!(
        rig.fake.mig("web").unwrap().target_size,
        2,
        "an unlabelled MIG is never touched"
    );
    rig.fake.advance();
    let r = rig.tick().await?;
    assert!(
        r.results.is_empty(),
        "steady state changes nothing: {:?}",
        r.results
    );

    rig.want(1);
    let before = rig.names("llama-od");
    let mut removed = Vec::new();
    for _ in 0..6 {
        let r = rig.tick().await?;
        // Removed either by a drain that finished (then deleted) or by a ScaleDown of
        // instances the planner found idle.
        removed.extend(r.terminated_after_drain.iter().map(|i| i.to_string()));
        for a in r.results.iter().filter(|a| a.error.is_none()) {
            if let Action::ScaleDown { instances, .. } = &a.action {
                removed.extend(instances.iter().map(|i| i.to_string()));
            }
        }
        rig.fake.advance();
        if rig.fake.mig("llama-od").unwrap().target_size == 1 {
            break;
        }
    }
    let m = rig.fake.mig("llama-od").unwrap();
    assert_eq!(m.target_size, 1);
    assert_eq!(removed.len(), 2, "{removed:?}");
    let after = rig.names("llama-od");
    for r in &removed {
        assert!(
            before.contains(r) && !after.contains(r),
            "{r} was chosen and deleted"
        );
    }
    // Each removal was a deleteInstances naming that VM, never a resize down that lets the
    // MIG pick a victim.
    let deleted: Vec<String> = rig
        .fake
        .delete_bodies()
        .iter()
        .flat_map(|b| b["instances"].as_array().cloned().unwrap_or_default())
        .filter_map(|u| {
            u.as_str()
                .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
        })
        .collect();
    assert_eq!(deleted.len(), 2);
    for d in &deleted {
        assert!(removed.contains(d));
    }
    // Idle VMs (no requests in flight) need no drain; whichever path the planner took, a
    // drain never ended in a second deletion.
    let drained = rig.drained.lock().unwrap().clone();
    assert!(
        drained.iter().all(|d| removed.contains(d)),
        "{drained:?} vs {removed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn standby_vms_start_before_any_new_vm_is_created() -> anyhow::Result<()> {
    let fake = FakeCompute::start(PROJECT).await?;
    fake.add_template(
        "llama-a2",
        "a2-highgpu-1g",
        &[("nvidia-tesla-a100", 1)],
        false,
        LABELS,
    );
    fake.add_mig(
        "regions/us-central1",
        "llama-a2",
        "llama-a2",
        &["us-central1-a", "us-central1-b"],
        0,
        Some(("MANUAL", 2)),
    );
    let standby = fake
        .mig("llama-a2")
        .unwrap()
        .vms
        .iter()
        .map(|v| v.name.clone())
        .collect::<Vec<_>>();
    let mut rig = Rig::new(
        fake,
        ON_DEMAND_ONLY,
        "{ enabled: true, min: 2, max: 2, warm_start_s: 30 }",
    )
    .await?;

    rig.want(1);
    let r = rig.tick().await?;
    assert!(
        r.results.iter().all(|a| a.error.is_none()),
        "{:?}",
        r.results
    );
    rig.fake.advance();
    let m = rig.fake.mig("llama-a2").unwrap();
    let running: Vec<&str> = m
        .vms
        .iter()
        .filter(|v| v.status == "RUNNING")
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(running.len(), 1, "{:?}", m.vms);
    assert!(
        standby.iter().any(|s| s == running[0]),
        "the running VM {} came from the standby pool",
        running[0]
    );
    // MANUAL standby mode: started by name (startInstances), not by a resize, which in that
    // mode would have created a new VM.
    let calls = rig.fake.standby_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, "startInstances");
    assert!(
        calls[0].1["instances"][0]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/instances/{}", running[0]))),
        "{:?}",
        calls[0].1
    );
    assert!(
        !rig.fake
            .calls()
            .iter()
            .any(|c| c.ends_with("/instanceGroupManagers/llama-a2/resize")),
        "no resize: the standby pool covered the scale-out"
    );
    assert_eq!(rig.fake.mig("llama-a2").unwrap().target_size, 1);

    // The controller refills the standby pool to its minimum: new VMs warm and stop.
    for _ in 0..4 {
        rig.tick().await?;
        rig.fake.advance();
    }
    rig.fake.settle();
    let m = rig.fake.mig("llama-a2").unwrap();
    assert_eq!(
        m.target_stopped_size, 2,
        "standby target back at the pool minimum"
    );
    // Stopped standby VMs report instanceStatus TERMINATED (Compute Engine instance lifecycle).
    assert_eq!(rig.fake.count("llama-a2", "TERMINATED"), 2);
    assert_eq!(rig.fake.count("llama-a2", "RUNNING"), 1);
    Ok(())
}

#[tokio::test]
async fn a_preemption_is_drained_and_replaced() -> anyhow::Result<()> {
    let fake = FakeCompute::start(PROJECT).await?;
    fake.add_template(
        "llama-spot",
        "g2-standard-8",
        &[("nvidia-l4", 1)],
        true,
        LABELS,
    );
    fake.add_mig(
        "zones/us-central1-a",
        "llama-spot",
        "llama-spot",
        &["us-central1-a"],
        2,
        None,
    );
    let mut rig = Rig::new(fake, "{ spot_share: 1.0, fallback: [spot] }", NO_WARM_POOL).await?;
    rig.want(2);
    let r = rig.tick().await?;
    assert!(r.results.is_empty(), "{:?}", r.results);

    let victim = rig.names("llama-spot")[0].clone();
    rig.fake.preempt(&victim).expect("vm exists");
    let r = rig.tick().await?;
    assert_eq!(r.events_handled, 1);
    assert_eq!(
        r.terminated_after_drain
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>(),
        vec![victim.clone()]
    );
    let deleted = rig.fake.delete_bodies();
    assert!(
        deleted[0]["instances"][0]
            .as_str()
            .unwrap()
            .ends_with(&victim)
    );
    for _ in 0..4 {
        rig.fake.advance();
        rig.tick().await?;
        if rig.fake.mig("llama-spot").unwrap().target_size == 2
            && !rig.names("llama-spot").contains(&victim)
        {
            break;
        }
    }
    rig.fake.settle();
    let names = rig.names("llama-spot");
    assert_eq!(
        rig.fake.mig("llama-spot").unwrap().target_size,
        2,
        "replacement launched"
    );
    assert!(!names.contains(&victim), "{names:?}");
    assert_eq!(rig.fake.count("llama-spot", "RUNNING"), 2);
    Ok(())
}

#[tokio::test]
async fn a_spot_mig_stuck_creating_is_released_and_on_demand_grows_in_the_same_tick()
-> anyhow::Result<()> {
    let fake = FakeCompute::start(PROJECT).await?;
    fake.add_template(
        "llama-spot",
        "g2-standard-8",
        &[("nvidia-l4", 1)],
        true,
        LABELS,
    );
    fake.add_template(
        "llama-od",
        "g2-standard-8",
        &[("nvidia-l4", 1)],
        false,
        LABELS,
    );
    fake.add_mig(
        "zones/us-central1-a",
        "llama-spot",
        "llama-spot",
        &["us-central1-a"],
        0,
        None,
    );
    fake.add_mig(
        "zones/us-central1-b",
        "llama-od",
        "llama-od",
        &["us-central1-b"],
        0,
        None,
    );
    // No L4 capacity in us-central1-a: the resize is accepted, the VMs never get created.
    fake.stockout("us-central1-a", "g2-standard-8");
    let mut rig = Rig::new(
        fake,
        "{ spot_share: 1.0, fallback: [spot, on-demand] }",
        NO_WARM_POOL,
    )
    .await?;
    rig.want(2);
    let r = rig.tick().await?;
    assert!(
        r.results.iter().all(|a| a.error.is_none()),
        "GCE accepts the resize: {:?}",
        r.results
    );
    assert_eq!(rig.fake.mig("llama-spot").unwrap().target_size, 2);
    assert_eq!(rig.fake.mig("llama-od").unwrap().target_size, 0);

    // The MIG tries, fails, and keeps the VMs CREATING with ZONE_RESOURCE_POOL_EXHAUSTED.
    rig.fake.advance();
    let mut stuck = rig.fake.stuck("llama-spot");
    stuck.sort();
    assert_eq!(stuck.len(), 2);

    // The very next tick: the stuck VMs are deleted and the on-demand MIG is resized up.
    let seen = std::time::Instant::now();
    let r = rig.tick().await?;
    // A figure for the README, not an assertion: wall time of the tick that saw the stuck VMs.
    println!(
        "stuck CREATING visible → deleteInstances + on-demand resize done: {} ms (one tick)",
        seen.elapsed().as_millis()
    );
    assert!(
        r.results.iter().all(|a| a.error.is_none()),
        "{:?}",
        r.results
    );
    let release = r
        .results
        .iter()
        .find_map(|a| match &a.action {
            Action::ReleaseUnfulfilled {
                group,
                count,
                instances,
                offering,
                ..
            } => Some((group, count, instances, offering)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no release in {:?}", r.results));
    assert_eq!(release.0.as_str(), "zones/us-central1-a/llama-spot");
    assert_eq!(*release.1, 2);
    let mut named: Vec<String> = release.2.iter().map(|i| i.to_string()).collect();
    named.sort();
    assert_eq!(named, stuck);
    assert_eq!(
        (release.3.zone.as_str(), release.3.capacity_type),
        ("us-central1-a", gpupool::model::CapacityType::Spot)
    );
    let mut deleted: Vec<String> = rig
        .fake
        .delete_bodies()
        .iter()
        .flat_map(|b| b["instances"].as_array().cloned().unwrap_or_default())
        .filter_map(|u| {
            u.as_str()
                .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
        })
        .collect();
    deleted.sort();
    assert_eq!(deleted, stuck, "exactly the stuck VMs were deleted");
    assert_eq!(
        rig.fake.mig("llama-spot").unwrap().target_size,
        0,
        "deleteInstances took the request back"
    );
    assert_eq!(
        rig.fake.mig("llama-od").unwrap().target_size,
        2,
        "fell back to the on-demand MIG in the same tick"
    );
    let plan = r.plan().expect("a plan");
    assert_eq!(plan.launch_failures.len(), 1, "{:?}", plan.launch_failures);
    assert!(
        plan.launch_failures[0]
            .message
            .contains("ZONE_RESOURCE_POOL_EXHAUSTED"),
        "{}",
        plan.launch_failures[0].message
    );

    // The spot offering is backed off: the next tick neither retries it nor launches twice.
    rig.fake.advance();
    let r = rig.tick_after(5.0).await?;
    assert!(
        !r.results
            .iter()
            .any(|a| matches!(&a.action, Action::ScaleUp { .. })),
        "{:?}",
        r.results
    );
    assert_eq!(rig.fake.mig("llama-spot").unwrap().target_size, 0);
    assert_eq!(rig.fake.mig("llama-od").unwrap().target_size, 2);
    assert_eq!(rig.fake.count("llama-od", "RUNNING"), 2);
    Ok(())
}

/// A pod asking one `nvidia.com/mig-1g.10gb` slice: only the A100 80 GB MIG can serve it, and
/// the GCP catalog is what says so (the Compute API reports no MIG profiles). The cheaper L4 MIG
/// of the same pool is passed over.
#[tokio::test]
async fn a_mig_slice_pod_scales_up_the_a100_80gb_mig_from_the_catalog() -> anyhow::Result<()> {
    let fake = FakeCompute::start(PROJECT).await?;
    fake.add_template(
        "llama-l4",
        "g2-standard-8",
        &[("nvidia-l4", 1)],
        false,
        LABELS,
    );
    fake.add_template(
        "llama-a100-80",
        "a2-ultragpu-1g",
        &[("nvidia-a100-80gb", 1)],
        false,
        LABELS,
    );
    fake.add_mig(
        "zones/us-central1-a",
        "llama-l4",
        "llama-l4",
        &["us-central1-a"],
        0,
        None,
    );
    fake.add_mig(
        "zones/us-central1-b",
        "llama-a100",
        "llama-a100-80",
        &["us-central1-b"],
        0,
        None,
    );
    let config = config_in(&fake, "kubernetes", ON_DEMAND_ONLY, NO_WARM_POOL)?;
    let mut rig = Rig::with_config(fake, config).await?;
    rig.pending.lock().unwrap().push(PendingPod {
        namespace: "serving".into(),
        name: "tiny-model-0".into(),
        pool: Some("llama".into()),
        gpu: GpuRequest::Mig {
            profile: "1g.10gb".into(),
            count: 1,
        },
        cpu_milli: 1000,
        memory_mib: 4096,
        node_selector: Default::default(),
        affinity: vec![],
        tolerations: vec![],
        pending_since: rig.now,
    });
    let r = rig.tick().await?;
    assert!(
        r.results.iter().all(|a| a.error.is_none()),
        "{:?}",
        r.results
    );
    let ups: Vec<(String, String, u32)> = r
        .results
        .iter()
        .filter_map(|a| match &a.action {
            Action::ScaleUp {
                group,
                offering,
                count,
                ..
            } => Some((
                group.to_string(),
                offering.instance_type.to_string(),
                *count,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        ups,
        vec![(
            "zones/us-central1-b/llama-a100".to_owned(),
            "a2-ultragpu-1g".to_owned(),
            1
        )],
        "{:?}",
        r.plan().map(|p| &p.decisions)
    );
    assert_eq!(rig.fake.mig("llama-a100").unwrap().target_size, 1);
    assert_eq!(rig.fake.mig("llama-l4").unwrap().target_size, 0);
    Ok(())
}
