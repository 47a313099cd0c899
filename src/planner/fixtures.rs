//! Builders for planner inputs: `snapshot().pending(gpu_pod(8).model("H100")).group(p5_od())`.
//!
//! Compiled for unit tests and, with the `testkit` feature (turned on only by this crate's
//! dev-dependency on itself), for `tests/` and `benches/` through `crate::testkit`; never in a
//! release build. Nothing here reads files or clocks.

use crate::config::{
    CapacityPolicy, Config, DisruptionPolicy, ForecastPolicy, KubernetesConfig, Limits,
    MetricsConfig, Mode, PoolConfig, ProviderKind, ReplicaShape, Requirements, ScaleUpPolicy,
    WarmPoolPolicy,
};
use crate::model::{
    CapacityType, GpuInfo, GpuRequest, Instance, InstanceId, InstanceType, InstanceTypeName,
    LifecycleState, MigProfile, Node, NodeGroup, NodeGroupId, Offering, OfferingKey, PendingPod,
    PoolDemand, PoolName, RunningPod, SignalReading, Snapshot, Taint, TaintEffect, Timestamp,
    Toleration, TolerationOperator, WarmPool, Zone, labels,
};
use std::collections::BTreeMap;

/// A fixed "now" for fixtures (2023-11-14T22:13:20Z).
pub const T0: Timestamp = Timestamp::from_secs(1_700_000_000);

/// `(name, gpu model, gpus, vcpu, memory MiB, GPU memory MiB, on-demand $/h, MIG profiles)`.
pub type CatalogEntry = (
    &'static str,
    &'static str,
    u32,
    u32,
    u64,
    u64,
    f64,
    &'static [(&'static str, u32)],
);

/// Shapes and us-east-1 prices of common AWS GPU types, rounded:
/// shapes and us-east-1 prices of common AWS GPU types, rounded.
pub const CATALOG: &[CatalogEntry] = &[
    ("g4dn.xlarge", "T4", 1, 4, 16_384, 16_384, 0.526, &[]),
    ("g4dn.12xlarge", "T4", 4, 48, 196_608, 16_384, 3.912, &[]),
    ("g5.xlarge", "A10G", 1, 4, 16_384, 24_576, 1.006, &[]),
    ("g5.2xlarge", "A10G", 1, 8, 32_768, 24_576, 1.212, &[]),
    ("g5.12xlarge", "A10G", 4, 48, 196_608, 24_576, 5.672, &[]),
    ("g5.48xlarge", "A10G", 8, 192, 786_432, 24_576, 16.288, &[]),
    ("g6.xlarge", "L4", 1, 4, 16_384, 23_034, 0.805, &[]),
    ("g6.12xlarge", "L4", 4, 48, 196_608, 23_034, 4.602, &[]),
    ("g6.48xlarge", "L4", 8, 192, 786_432, 23_034, 13.350, &[]),
    (
        "p4d.24xlarge",
        "A100",
        8,
        96,
        1_179_648,
        40_960,
        32.773,
        &[
            ("1g.5gb", 7),
            ("2g.10gb", 3),
            ("3g.20gb", 2),
            ("7g.40gb", 1),
        ],
    ),
    (
        "p4de.24xlarge",
        "A100",
        8,
        96,
        1_179_648,
        81_920,
        40.966,
        &[
            ("1g.10gb", 7),
            ("2g.20gb", 3),
            ("3g.40gb", 2),
            ("7g.80gb", 1),
        ],
    ),
    (
        "p5.48xlarge",
        "H100",
        8,
        192,
        2_097_152,
        81_920,
        98.32,
        &[
            ("1g.10gb", 7),
            ("2g.20gb", 3),
            ("3g.40gb", 2),
            ("7g.80gb", 1),
        ],
    ),
];

/// The instance type of a catalog entry. Names outside [`CATALOG`] get a one-A10G shape so a
/// fixture never fails to build.
pub fn instance_type(name: &str) -> InstanceType {
    let e = CATALOG.iter().find(|e| e.0 == name).unwrap_or(&CATALOG[2]);
    InstanceType {
        name: InstanceTypeName::from(name),
        vcpu: e.3,
        memory_mib: e.4,
        gpu: GpuInfo {
            model: e.1.into(),
            count: e.2,
            memory_mib_per_gpu: e.5,
            mig_profiles: e
                .7
                .iter()
                .map(|(n, p)| MigProfile {
                    name: (*n).into(),
                    per_gpu: *p,
                })
                .collect(),
        },
    }
}

/// On-demand price of a catalog type.
pub fn on_demand_price(name: &str) -> f64 {
    CATALOG.iter().find(|e| e.0 == name).map_or(1.0, |e| e.6)
}

// ---------------------------------------------------------------------------------------------
// offerings and groups

pub struct OfferingBuilder(Offering);

pub fn offering(itype: &str, ct: CapacityType, zone: &str, price: f64) -> OfferingBuilder {
    OfferingBuilder(Offering {
        instance_type: instance_type(itype),
        capacity_type: ct,
        zone: Zone::from(zone),
        price_per_hour: crate::model::Price::from_dollars(price),
        interruption_risk_per_hour: if ct == CapacityType::Spot { 0.05 } else { 0.0 },
        available: true,
    })
}

impl OfferingBuilder {
    pub fn unavailable(mut self) -> Self {
        self.0.available = false;
        self
    }
    /// No price known for this type in its region.
    pub fn unpriced(mut self) -> Self {
        self.0.price_per_hour = crate::model::Price::Unknown;
        self
    }
    pub fn risk(mut self, r: f64) -> Self {
        self.0.interruption_risk_per_hour = r;
        self
    }
    pub fn key(&self) -> OfferingKey {
        self.0.key()
    }
    pub fn build(self) -> Offering {
        self.0
    }
}

impl From<OfferingBuilder> for Offering {
    fn from(b: OfferingBuilder) -> Offering {
        b.0
    }
}

pub struct GroupBuilder(NodeGroup);

pub fn group(id: &str, pool: &str) -> GroupBuilder {
    GroupBuilder(NodeGroup {
        id: NodeGroupId::from(id),
        pool: PoolName::from(pool),
        offerings: Vec::new(),
        min_size: 0,
        max_size: 100,
        desired: 0,
        labels: BTreeMap::new(),
        taints: Vec::new(),
        warm_pool: None,
        activity_in_progress: false,
        unfulfilled: Vec::new(),
    })
}

impl GroupBuilder {
    pub fn offering(mut self, o: impl Into<Offering>) -> Self {
        self.0.offerings.push(o.into());
        self
    }
    pub fn desired(mut self, n: u32) -> Self {
        self.0.desired = n;
        self
    }
    pub fn min(mut self, n: u32) -> Self {
        self.0.min_size = n;
        self
    }
    pub fn max(mut self, n: u32) -> Self {
        self.0.max_size = n;
        self
    }
    pub fn warm(mut self, target: u32, ready: u32) -> Self {
        self.0.warm_pool = Some(WarmPool {
            target_size: target,
            ready,
            warming: 0,
            standing_cost_per_hour: crate::model::Price::Unknown,
        });
        self
    }
    pub fn busy(mut self) -> Self {
        self.0.activity_in_progress = true;
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.labels.insert(k.into(), v.into());
        self
    }
    pub fn taint(mut self, t: Taint) -> Self {
        self.0.taints.push(t);
        self
    }
    pub fn build(self) -> NodeGroup {
        self.0
    }
}

impl From<GroupBuilder> for NodeGroup {
    fn from(b: GroupBuilder) -> NodeGroup {
        b.0
    }
}

/// `nvidia.com/gpu=present:NoSchedule`, the taint GPU node groups usually carry.
pub fn gpu_taint() -> Taint {
    Taint {
        key: "nvidia.com/gpu".into(),
        value: "present".into(),
        effect: TaintEffect::NoSchedule,
    }
}

/// Spot g5.xlarge (1×A10G) in two zones, pool `llm`.
pub fn g5_spot() -> GroupBuilder {
    group("g5-spot", "llm")
        .offering(offering(
            "g5.xlarge",
            CapacityType::Spot,
            "us-east-1a",
            0.40,
        ))
        .offering(offering(
            "g5.xlarge",
            CapacityType::Spot,
            "us-east-1b",
            0.42,
        ))
}

/// On-demand g5.xlarge, pool `llm`.
pub fn g5_od() -> GroupBuilder {
    group("g5-od", "llm").offering(offering(
        "g5.xlarge",
        CapacityType::OnDemand,
        "us-east-1a",
        1.006,
    ))
}

/// Spot p5.48xlarge (8×H100), pool `llm`.
pub fn p5_spot() -> GroupBuilder {
    group("p5-spot", "llm").offering(offering(
        "p5.48xlarge",
        CapacityType::Spot,
        "us-east-1a",
        40.0,
    ))
}

/// On-demand p5.48xlarge (8×H100), pool `llm`.
pub fn p5_od() -> GroupBuilder {
    group("p5-od", "llm").offering(offering(
        "p5.48xlarge",
        CapacityType::OnDemand,
        "us-east-1a",
        98.32,
    ))
}

// ---------------------------------------------------------------------------------------------
// pods

pub struct PodBuilder(PendingPod);

fn pod(name: &str, gpu: GpuRequest) -> PodBuilder {
    PodBuilder(PendingPod {
        namespace: "default".into(),
        name: name.into(),
        pool: None,
        gpu,
        cpu_milli: 1000,
        memory_mib: 4096,
        node_selector: BTreeMap::new(),
        affinity: Vec::new(),
        tolerations: Vec::new(),
        pending_since: T0,
    })
}

/// A pod asking for `n` whole GPUs (1 CPU, 4 GiB).
pub fn gpu_pod(n: u32) -> PodBuilder {
    pod(&format!("gpu{n}"), GpuRequest::Whole { count: n })
}

/// A pod asking for `count` MIG slices of `profile`.
pub fn mig_pod(profile: &str, count: u32) -> PodBuilder {
    pod(
        &format!("mig-{profile}"),
        GpuRequest::Mig {
            profile: profile.into(),
            count,
        },
    )
}

/// A pod asking for `count` time-sliced replicas (4 per GPU).
pub fn shared_pod(count: u32) -> PodBuilder {
    pod(
        "shared",
        GpuRequest::Shared {
            count,
            replicas_per_gpu: 4,
        },
    )
}

impl PodBuilder {
    pub fn name(mut self, n: &str) -> Self {
        self.0.name = n.into();
        self
    }
    pub fn pool(mut self, p: &str) -> Self {
        self.0.pool = Some(PoolName::from(p));
        self
    }
    pub fn model(self, m: &str) -> Self {
        self.selector(labels::GPU_MODEL, m)
    }
    pub fn selector(mut self, k: &str, v: &str) -> Self {
        self.0.node_selector.insert(k.into(), v.into());
        self
    }
    pub fn tolerate(mut self, key: &str) -> Self {
        self.0.tolerations.push(Toleration {
            key: Some(key.into()),
            operator: TolerationOperator::Exists,
            value: None,
            effect: None,
        });
        self
    }
    pub fn cpu(mut self, milli: u64) -> Self {
        self.0.cpu_milli = milli;
        self
    }
    pub fn mem(mut self, mib: u64) -> Self {
        self.0.memory_mib = mib;
        self
    }
    pub fn build(self) -> PendingPod {
        self.0
    }
    /// `n` copies named `<name>-0 … <name>-(n-1)`.
    pub fn times(self, n: usize) -> Vec<PendingPod> {
        (0..n)
            .map(|i| {
                let mut p = self.0.clone();
                p.name = format!("{}-{i}", self.0.name);
                p
            })
            .collect()
    }
}

impl From<PodBuilder> for PendingPod {
    fn from(b: PodBuilder) -> PendingPod {
        b.0
    }
}

/// A running workload pod using `gpus` whole GPUs.
pub fn running_pod(name: &str, gpus: u32) -> RunningPod {
    RunningPod {
        namespace: "default".into(),
        name: name.into(),
        gpu: if gpus == 0 {
            GpuRequest::None
        } else {
            GpuRequest::Whole { count: gpus }
        },
        cpu_milli: 500,
        memory_mib: 1024,
        daemon: false,
        do_not_disrupt: false,
        terminating: false,
        node_selector: BTreeMap::new(),
        affinity: Vec::new(),
        tolerations: vec![Toleration {
            key: None,
            operator: TolerationOperator::Exists,
            value: None,
            effect: None,
        }],
    }
}

// ---------------------------------------------------------------------------------------------
// instances and nodes

pub struct InstanceBuilder(Instance);

/// A Ready instance launched at `T0 − 1 h`.
pub fn instance(id: &str, group: &str, itype: &str, ct: CapacityType) -> InstanceBuilder {
    InstanceBuilder(Instance {
        id: InstanceId::from(id),
        group: NodeGroupId::from(group),
        instance_type: InstanceTypeName::from(itype),
        capacity_type: ct,
        zone: Zone::from("us-east-1a"),
        state: LifecycleState::Ready,
        launched_at: T0.plus_secs(-3600.0),
        model_cache: None,
        provider_id: None,
        protected_from_scale_in: false,
        awaiting_lifecycle_hook: false,
        private_ip: None,
        drain_deadline: None,
    })
}

impl InstanceBuilder {
    pub fn state(mut self, s: LifecycleState) -> Self {
        self.0.state = s;
        self
    }
    pub fn zone(mut self, z: &str) -> Self {
        self.0.zone = Zone::from(z);
        self
    }
    pub fn launched(mut self, t: Timestamp) -> Self {
        self.0.launched_at = t;
        self
    }
    pub fn cache(mut self, c: &str) -> Self {
        self.0.model_cache = Some(c.into());
        self
    }
    pub fn hook(mut self) -> Self {
        self.0.awaiting_lifecycle_hook = true;
        self
    }
    pub fn protected(mut self) -> Self {
        self.0.protected_from_scale_in = true;
        self
    }
    pub fn build(self) -> Instance {
        self.0
    }
}

impl From<InstanceBuilder> for Instance {
    fn from(b: InstanceBuilder) -> Instance {
        b.0
    }
}

pub struct NodeBuilder(Node);

/// A serving-ready, empty node for an instance.
pub fn node(instance: &str, pool: &str, ct: CapacityType) -> NodeBuilder {
    NodeBuilder(Node::serving(
        format!("node-{instance}"),
        InstanceId::from(instance),
        PoolName::from(pool),
        ct,
        crate::model::InFlight::NotMeasured,
    ))
}

impl NodeBuilder {
    pub fn pod(mut self, p: RunningPod) -> Self {
        self.0.pods.push(p);
        self
    }
    pub fn do_not_disrupt(mut self, name: &str) -> Self {
        let mut p = running_pod(name, 1);
        p.do_not_disrupt = true;
        self.0.pods.push(p);
        self
    }
    pub fn scale_down_disabled(mut self) -> Self {
        self.0.scale_down_disabled = true;
        self
    }
    pub fn not_ready(mut self) -> Self {
        self.0.serving_ready = false;
        self
    }
    pub fn requests(mut self, n: u32) -> Self {
        self.0.in_flight_requests = crate::model::InFlight::Known(n);
        self
    }
    pub fn build(self) -> Node {
        self.0
    }
}

impl From<NodeBuilder> for Node {
    fn from(b: NodeBuilder) -> Node {
        b.0
    }
}

// ---------------------------------------------------------------------------------------------
// snapshot

pub struct SnapshotBuilder(Snapshot);

pub fn snapshot() -> SnapshotBuilder {
    SnapshotBuilder(Snapshot {
        taken_at: T0,
        ..Snapshot::default()
    })
}

impl SnapshotBuilder {
    pub fn pending(mut self, p: impl Into<PendingPod>) -> Self {
        self.0.pending_pods.push(p.into());
        self
    }
    pub fn pods(mut self, ps: Vec<PendingPod>) -> Self {
        self.0.pending_pods.extend(ps);
        self
    }
    pub fn group(mut self, g: impl Into<NodeGroup>) -> Self {
        self.0.groups.push(g.into());
        self
    }
    /// An instance; also raises its group's desired size so it is not counted twice.
    pub fn instance(mut self, i: impl Into<Instance>) -> Self {
        let i = i.into();
        if matches!(
            i.state,
            LifecycleState::Launching
                | LifecycleState::Starting
                | LifecycleState::Ready
                | LifecycleState::Draining
        ) && let Some(g) = self.0.groups.iter_mut().find(|g| g.id == i.group)
        {
            g.desired += 1;
        }
        self.0.instances.push(i);
        self
    }
    pub fn node(mut self, n: impl Into<Node>) -> Self {
        self.0.nodes.push(n.into());
        self
    }
    /// A fresh signal `queue` wanting `now` replicas now and `forecast` within the horizon.
    pub fn demand(mut self, pool: &str, now: u32, forecast: Option<u32>) -> Self {
        self.0.demand.insert(
            PoolName::from(pool),
            PoolDemand {
                replicas_now: Some(now),
                replicas_forecast: forecast,
                readings: vec![SignalReading {
                    name: "queue".into(),
                    value: Some(f64::from(now)),
                    replicas: Some(now),
                    stale: false,
                    observed_at: Some(T0),
                }],
                slo_attainment: None,
                request_duration: None,
            },
        );
        self
    }
    /// Mark a signal of the pool stale (adds the reading if missing).
    pub fn stale(mut self, pool: &str, signal: &str) -> Self {
        let d = self.0.demand.entry(PoolName::from(pool)).or_default();
        d.readings.push(SignalReading {
            name: signal.into(),
            value: None,
            replicas: None,
            stale: true,
            observed_at: None,
        });
        self
    }
    pub fn build(self) -> Snapshot {
        self.0
    }
}

impl From<SnapshotBuilder> for Snapshot {
    fn from(b: SnapshotBuilder) -> Snapshot {
        b.0
    }
}

// ---------------------------------------------------------------------------------------------
// config

/// A pool with every policy at its default.
pub fn pool_cfg(name: &str) -> PoolConfig {
    PoolConfig {
        name: PoolName::from(name),
        requirements: Requirements::default(),
        replica: ReplicaShape::default(),
        capacity: CapacityPolicy::default(),
        warm_pool: WarmPoolPolicy::default(),
        limits: Limits::default(),
        disruption: DisruptionPolicy::default(),
        scale_up: ScaleUpPolicy::default(),
        model_cache: None,
        signals: Vec::new(),
        forecast: ForecastPolicy::default(),
        slo: None,
        health_url: None,
        deregister_command: None,
        in_flight_query: None,
        paused: false,
        scale_down: crate::config::ScaleDownPolicy::default(),
    }
}

/// A Kubernetes-mode, simulated-provider config with these pools.
pub fn config(pools: Vec<PoolConfig>) -> Config {
    Config {
        provider: ProviderKind::Sim,
        mode: Mode::Kubernetes,
        tick_interval: std::time::Duration::from_secs(10),
        aws: None,
        gcp: None,
        kubernetes: KubernetesConfig::default(),
        metrics: MetricsConfig::default(),
        state: Default::default(),
        dry_run: false,
        pricing: Default::default(),
        pools,
    }
}
