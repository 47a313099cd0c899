//! The controller in VM-only mode: real Prometheus scraping a synthetic exporter, the real
//! `SignalDemand`, the real `VmCluster` (HTTP health checks, deregister command, in-flight
//! metric) and the real planner, against a small in-memory Auto Scaling group provider (the
//! AWS provider crate is exercised against moto in its own tests).
//!
//! Ticks are driven with explicit timestamps: wall-clock based, so Prometheus evaluates
//! queries at times it has data for, and advanced virtually through the unneeded time (queries
//! a few minutes ahead still fall inside Prometheus' 5-minute lookback).

mod signals_harness;

use async_trait::async_trait;
use gpupool::config::Config;
use gpupool::controller::{Controller, Metrics};
use gpupool::model::{
    CapacityType, GpuInfo, Instance, InstanceId, InstanceType, LifecycleState, Money, NodeGroup,
    NodeGroupId, Offering, PoolName, ProviderEvent, Timestamp,
};
use gpupool::signals::{ServingReplicas, SignalDemand};
use gpupool::vmonly::{InFlightQuery, VmCluster};
use gpupool_provider::{NodeGroupProvider, ProviderError};
use prometheus_client::registry::Registry;
use signals_harness::{Exporter, Prometheus, wall_now};
use std::sync::{Arc, Mutex};

const WAITING: &str = "vllm:num_requests_waiting{model_name=\"llama\"}";

/// One Auto Scaling group whose instances are Ready as soon as they are launched.
#[derive(Default)]
struct Asg {
    desired: u32,
    instances: Vec<Instance>,
    next: u32,
    terminated: Vec<InstanceId>,
}

#[derive(Clone, Default)]
struct MemAsg(Arc<Mutex<Asg>>);

fn offering() -> Offering {
    Offering {
        instance_type: InstanceType {
            name: "g5.xlarge".into(),
            vcpu: 4,
            memory_mib: 16_384,
            gpu: GpuInfo {
                model: "A10G".into(),
                count: 1,
                memory_mib_per_gpu: 24_576,
                mig_profiles: Vec::new(),
            },
        },
        capacity_type: CapacityType::OnDemand,
        zone: "us-east-1a".into(),
        price_per_hour: Money::from_dollars(1.006),
        interruption_risk_per_hour: 0.0,
        available: true,
    }
}

#[async_trait]
impl NodeGroupProvider for MemAsg {
    fn name(&self) -> &'static str {
        "mem"
    }
    async fn node_groups(&self) -> gpupool_provider::Result<Vec<NodeGroup>> {
        let a = self.0.lock().unwrap();
        Ok(vec![NodeGroup {
            id: NodeGroupId::from("asg-llama"),
            pool: PoolName::from("llama"),
            offerings: vec![offering()],
            min_size: 0,
            max_size: 10,
            desired: a.desired,
            labels: Default::default(),
            taints: Vec::new(),
            warm_pool: None,
            activity_in_progress: false,
        }])
    }
    async fn instances(&self, _g: &NodeGroupId) -> gpupool_provider::Result<Vec<Instance>> {
        Ok(self.0.lock().unwrap().instances.clone())
    }
    async fn increase(&self, _g: &NodeGroupId, delta: u32) -> gpupool_provider::Result<()> {
        let mut a = self.0.lock().unwrap();
        if a.desired + delta > 10 {
            return Err(ProviderError::InvalidConfig("above max_size".into()));
        }
        for _ in 0..delta {
            a.next += 1;
            let n = a.next;
            a.instances.push(Instance {
                id: InstanceId::new(format!("i-{n}")),
                group: NodeGroupId::from("asg-llama"),
                instance_type: "g5.xlarge".into(),
                capacity_type: CapacityType::OnDemand,
                zone: "us-east-1a".into(),
                state: LifecycleState::Ready,
                launched_at: Timestamp::from_secs(0),
                model_cache: None,
                provider_id: None,
                protected_from_scale_in: false,
                awaiting_lifecycle_hook: false,
                private_ip: Some(format!("10.0.0.{n}")),
            });
        }
        a.desired += delta;
        Ok(())
    }
    async fn terminate(
        &self,
        _g: &NodeGroupId,
        ids: &[InstanceId],
    ) -> gpupool_provider::Result<()> {
        let mut a = self.0.lock().unwrap();
        for id in ids {
            if let Some(pos) = a.instances.iter().position(|i| &i.id == id) {
                a.instances.remove(pos);
                a.desired -= 1;
                a.terminated.push(id.clone());
            }
        }
        Ok(())
    }
    async fn set_warm_pool_size(&self, _g: &NodeGroupId, _s: u32) -> gpupool_provider::Result<()> {
        Err(ProviderError::InvalidConfig("no warm pool".into()))
    }
    async fn complete_warmup(
        &self,
        _g: &NodeGroupId,
        _i: &InstanceId,
    ) -> gpupool_provider::Result<()> {
        Ok(())
    }
    async fn poll_events(&self) -> gpupool_provider::Result<Vec<ProviderEvent>> {
        Ok(Vec::new())
    }
    async fn ack_event(&self, _a: &str) -> gpupool_provider::Result<()> {
        Ok(())
    }
}

fn config(prom: &str, exporter: std::net::SocketAddr, dereg_log: &std::path::Path) -> Config {
    Config::load(&format!(
        r#"
mode: vm-only
tick_interval_s: 10
pools:
  - name: llama
    requirements: {{ gpu_models: [A10G] }}
    replica: {{ gpus: 1, replicas_per_instance: 1 }}
    limits: {{ min_nodes: 0, max_nodes: 10 }}
    scale_up: {{ cold_start_s: 60 }}
    disruption: {{ unneeded_time_s: 120, scale_down_delay_after_add_s: 0, drain_timeout_s: 600, max_provision_time_s: 600 }}
    forecast: {{ enabled: false }}
    health_url: "http://{exporter}/health/{{ip}}"
    deregister_command: ["sh", "-c", "echo \"$0\" >> {log}", "{{id}}"]
    signals:
      - name: waiting
        prometheus:
          url: {prom}
          query: sum(vllm:num_requests_waiting{{model_name="llama"}})
          target_per_replica: 5
          stale_after_s: 60
          timeout_s: 2
"#,
        log = dereg_log.display()
    ))
    .expect("test config is valid")
}

fn metric_line(reg: &Registry, prefix: &str) -> Option<String> {
    gpupool::controller::metrics::encode(reg)
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_only_controller_scales_on_the_queue_holds_when_stale_and_drains_before_scale_in() {
    let exporter = Exporter::start().await;
    exporter.gauges.set(WAITING, "0");
    let mut prom = Prometheus::start(exporter.addr).await;
    prom.wait_for(&format!("sum({WAITING})"), "0").await;

    let dir = std::env::temp_dir().join(format!("gpupool-vmonly-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dereg_log = dir.join("deregistered.log");
    let _ = std::fs::remove_file(&dereg_log);
    let cfg = Arc::new(config(&prom.url, exporter.addr, &dereg_log));

    let asg = MemAsg::default();
    let provider: Arc<dyn NodeGroupProvider> = Arc::new(asg.clone());
    let serving = Arc::new(ServingReplicas::default());
    let cluster = VmCluster::new(cfg.clone(), provider.clone())
        .unwrap()
        .with_serving(serving.clone())
        .with_in_flight_query(
            PoolName::from("llama"),
            InFlightQuery {
                url: prom.url.clone(),
                query: "sum(vllm:num_requests_running{instance_id=\"{instance}\"})".into(),
            },
        )
        .with_drain_grace_s(30.0);
    let demand = SignalDemand::new().unwrap().with_serving(serving.clone());
    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut ctl = Controller::new(
        cfg.clone(),
        provider,
        Box::new(cluster),
        Box::new(demand),
        metrics,
    );
    let desired = || asg.0.lock().unwrap().desired;

    // Idle queue: nothing launched.
    let t0 = wall_now();
    ctl.tick(t0).await.unwrap();
    assert_eq!(desired(), 0);

    // Rising queue: 12 waiting / 5 per replica → 3 instances within two ticks of Prometheus
    // having scraped it.
    exporter.gauges.set(WAITING, "12");
    prom.wait_for(&format!("sum({WAITING})"), "12").await;
    let mut t = wall_now();
    for _ in 0..2 {
        ctl.tick(t).await.unwrap();
        if desired() >= 3 {
            break;
        }
        t = t.plus_secs(10.0);
    }
    assert_eq!(
        desired(),
        3,
        "desired capacity follows the queue within two ticks"
    );
    // Every VM answers its health check: serving replicas are published for the guard-rail.
    ctl.tick(t.plus_secs(10.0)).await.unwrap();
    assert_eq!(serving.get(&PoolName::from("llama")), Some(3));
    for i in 1..=3 {
        exporter.gauges.set(
            &format!("vllm:num_requests_running{{instance_id=\"i-{i}\"}}"),
            "2",
        );
    }

    // The queue drains to 1 (one replica's worth), then Prometheus dies: the signal is stale,
    // the controller reports it and holds — no scale-in however long it lasts.
    exporter.gauges.set(WAITING, "1");
    prom.wait_for(&format!("sum({WAITING})"), "1").await;
    prom.wait_for("sum(vllm:num_requests_running)", "6").await;
    prom.kill();
    let hold_start = wall_now();
    for k in 0..30 {
        ctl.tick(hold_start.plus_secs(10.0 * k as f64))
            .await
            .unwrap();
    }
    assert_eq!(
        desired(),
        3,
        "stale signal: no scale-in across 300 s (> unneeded time)"
    );
    assert!(
        ctl.draining().next().is_none(),
        "stale signal: nothing drained"
    );
    assert_eq!(
        metric_line(
            &registry,
            "gpupool_signal_stale{pool=\"llama\",signal=\"waiting\"}"
        )
        .as_deref(),
        Some("gpupool_signal_stale{pool=\"llama\",signal=\"waiting\"} 1")
    );

    // Prometheus back: fresh again; 1 waiting → 1 replica, so two instances become unneeded.
    prom.restart().await;
    prom.wait_for(&format!("sum({WAITING})"), "1").await;
    prom.wait_for("sum(vllm:num_requests_running)", "6").await;
    let fresh = wall_now();
    let mut first_drain_at: Option<f64> = None;
    let mut k = 0;
    while first_drain_at.is_none() && k < 30 {
        let now = fresh.plus_secs(10.0 * k as f64);
        ctl.tick(now).await.unwrap();
        if ctl.draining().next().is_some() {
            first_drain_at = Some(now.secs_since(fresh));
        }
        k += 1;
    }
    assert_eq!(
        metric_line(
            &registry,
            "gpupool_signal_stale{pool=\"llama\",signal=\"waiting\"}"
        )
        .as_deref(),
        Some("gpupool_signal_stale{pool=\"llama\",signal=\"waiting\"} 0")
    );
    let first_drain_at = first_drain_at.expect("scale-in starts once the signal is fresh");
    assert!(
        first_drain_at >= 120.0,
        "scale-in waits the unneeded time, started after {first_drain_at} s"
    );

    // The drain deregisters the VM, then waits for its in-flight requests (2) to finish.
    let draining: Vec<InstanceId> = ctl.draining().map(|(id, _)| id.clone()).collect();
    let now = fresh.plus_secs(10.0 * k as f64);
    ctl.tick(now).await.unwrap();
    let log = std::fs::read_to_string(&dereg_log).unwrap_or_default();
    for id in &draining {
        assert!(
            log.lines().any(|l| l == id.as_str()),
            "{id} deregistered before termination: {log:?}"
        );
    }
    assert!(
        asg.0.lock().unwrap().terminated.is_empty(),
        "in-flight work keeps the VMs"
    );
    assert_eq!(desired(), 3);

    // In-flight reaches 0 → drained → terminated. The disruption budget (one at a time) drains
    // the second unneeded VM after the first; each goes through deregister + wait-for-idle.
    let mut now = now;
    let mut draining = draining;
    let mut running = 6;
    for _round in 0..2 {
        assert_eq!(draining.len(), 1, "budget: one drain at a time");
        let id = draining[0].clone();
        let log = std::fs::read_to_string(&dereg_log).unwrap_or_default();
        assert!(
            log.lines().any(|l| l == id.as_str()),
            "{id} deregistered before termination"
        );
        exporter.gauges.set(
            &format!("vllm:num_requests_running{{instance_id=\"{id}\"}}"),
            "0",
        );
        running -= 2;
        prom.wait_for("sum(vllm:num_requests_running)", &running.to_string())
            .await;
        let before = asg.0.lock().unwrap().terminated.len();
        for _ in 0..5 {
            now = now.plus_secs(10.0);
            ctl.tick(now).await.unwrap();
            if asg.0.lock().unwrap().terminated.len() > before {
                break;
            }
        }
        assert_eq!(
            asg.0.lock().unwrap().terminated.last(),
            Some(&id),
            "{id} terminated once idle"
        );
        // The next unneeded VM: its drain starts within a few ticks.
        for _ in 0..5 {
            draining = ctl.draining().map(|(id, _)| id.clone()).collect();
            if !draining.is_empty() || asg.0.lock().unwrap().terminated.len() == 2 {
                break;
            }
            now = now.plus_secs(10.0);
            ctl.tick(now).await.unwrap();
        }
        if asg.0.lock().unwrap().terminated.len() == 2 {
            break;
        }
    }
    let terminated = asg.0.lock().unwrap().terminated.clone();
    assert_eq!(
        terminated.len(),
        2,
        "two idle VMs scaled in: {terminated:?}"
    );
    assert_eq!(desired(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
