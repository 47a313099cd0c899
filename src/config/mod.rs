//! Configuration: one YAML file, parsed strictly (`deny_unknown_fields`, so a typo is an error,
//! not a silently ignored key) and then validated as a whole. Validation reports *every*
//! mistake at once, each with its path, the value and the fix:
//! `pools[1].capacity.spot_share: must be in 0..=1, got 1.5`.
//!
//! Two layers: [`raw`] holds the serde structs of the YAML users write (and sections that are
//! the same in both layers live here, shared); validation ([`Config::load`]) checks them and
//! builds the typed [`Config`] — the only form the rest of the program reads: each signal's
//! source an enum ([`SignalSource`]) with its name resolved, cron windows parsed once with their
//! zone ([`CronWindow`]), shares as [`Share`], prices and caps as [`Money`], durations as
//! [`Duration`] (the YAML keeps its `_s` keys in whole seconds). A `Config` value has passed
//! every check. Keys only the simulator reads (`sim_queue` signals, `sim:`) are not part of
//! this schema: a scenario's loader (`sim::scenario`) takes them out of its `gpupool:` section,
//! and a live config naming them is told they belong to a scenario.

mod access;
pub mod cron;
mod lint;
mod parse;
pub mod raw;
mod units;
mod validate;

pub use cron::CronWindow;
pub use units::Share;
pub use validate::{ConfigError, Issue};

use crate::model::{CapacityType, Money, PoolName, Taint};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The validated configuration: what [`Config::load`] returns and every consumer reads. Only
/// validation builds one (from the YAML's [`raw::RawConfig`]), so a `Config` value has passed
/// every check. Field meanings and defaults: [`raw::RawConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub provider: ProviderKind,
    pub mode: Mode,
    /// Time between controller ticks (`tick_interval_s`).
    pub tick_interval: Duration,
    pub aws: Option<AwsConfig>,
    pub gcp: Option<GcpConfig>,
    pub kubernetes: KubernetesConfig,
    pub metrics: MetricsConfig,
    pub state: StateConfig,
    pub dry_run: bool,
    pub pricing: PricingConfig,
    pub pools: Vec<PoolConfig>,
}

/// Durable state. VM-only: a file written atomically at `path`; without a path, the file
/// `state.json` under `$STATE_DIRECTORY` when systemd sets it (`StateDirectory=gpupool` in
/// the shipped unit), else nothing is persisted (logged at start). Kubernetes: `path` is not
/// used (the ConfigMap store, `state::configmap`, is not enabled yet).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub path: Option<String>,
}

/// How list prices become the prices gpupool compares and reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PricingConfig {
    /// Fraction taken off every on-demand price, below 1 (see [`raw::RawPricing`]).
    pub discount: Share,
}

impl PricingConfig {
    /// Apply the discount to the on-demand offerings of `groups` (pure; the controller calls it
    /// on every observation, before planning). A no-op at 0.
    pub fn apply(&self, groups: &mut [gpupool_provider::NodeGroup]) {
        if self.discount == Share::ZERO {
            return;
        }
        let keep = self.discount.complement().get();
        for o in groups.iter_mut().flat_map(|g| g.offerings.iter_mut()) {
            if o.capacity_type == CapacityType::OnDemand {
                o.price_per_hour = o.price_per_hour.scale(keep);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// The built-in simulated cloud (no account needed).
    #[default]
    Sim,
    Aws,
    Gcp,
}

/// AWS's two-minute Spot Instance interruption notice (Amazon EC2 User Guide, "Spot Instance
/// interruption notices").
pub const AWS_SPOT_NOTICE: Duration = Duration::from_secs(120);
/// GCP's 30-s preemption notice (Compute Engine docs, "Preemption process": "Compute Engine
/// sends a preemption notice … 30 seconds").
pub const GCP_SPOT_NOTICE: Duration = Duration::from_secs(30);
pub use gpupool_provider::AWS_SPOT_RECLAIM_FREE;

impl ProviderKind {
    /// How long before a spot reclaim the cloud says so ([`AWS_SPOT_NOTICE`],
    /// [`GCP_SPOT_NOTICE`]). `None` for the simulated cloud, whose notice each scenario sets
    /// (by default its cloud's, `sim::scenario::SpotSpec::notice_for`).
    pub fn spot_notice(self) -> Option<Duration> {
        match self {
            ProviderKind::Aws => Some(AWS_SPOT_NOTICE),
            ProviderKind::Gcp => Some(GCP_SPOT_NOTICE),
            ProviderKind::Sim => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Kubernetes,
    VmOnly,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    pub region: String,
    /// Override for tests and VPC endpoints (also `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// SQS queue fed by EventBridge with interruption / rebalance / state-change events.
    #[serde(default)]
    pub interruption_queue_url: Option<String>,
    /// Publish gpupool's figures to CloudWatch (namespace `gpupool`).
    #[serde(default)]
    pub publish_cloudwatch: bool,
    /// Per-call timeout (`api_timeout_s`).
    #[serde(
        rename = "api_timeout_s",
        with = "units::secs",
        default = "d_api_timeout"
    )]
    pub api_timeout: Duration,
    /// Ask the AWS Price List API (`pricing:GetProducts`) for live on-demand prices in
    /// `region`, daily; off: the shipped tables only (isolated VPCs).
    #[serde(default = "d_true")]
    pub price_list_api: bool,
    /// On-demand dollars per hour by instance type, over every other source: for types no
    /// source prices in `region` (their price is otherwise unknown) or negotiated prices.
    #[serde(default)]
    pub price_overrides: std::collections::BTreeMap<String, f64>,
}

fn d_api_timeout() -> Duration {
    Duration::from_secs(20)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    pub project: String,
    /// Region of regional MIGs; zonal MIGs are found in its zones.
    pub region: String,
    #[serde(default)]
    pub zones: Vec<String>,
    /// Override for tests and private endpoints.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Per-call timeout (`api_timeout_s`).
    #[serde(
        rename = "api_timeout_s",
        with = "units::secs",
        default = "d_api_timeout"
    )]
    pub api_timeout: Duration,
    /// How long to wait for a long-running operation before reporting it
    /// (`operation_deadline_s`).
    #[serde(
        rename = "operation_deadline_s",
        with = "units::secs",
        default = "d_op_deadline"
    )]
    pub operation_deadline: Duration,
}

fn d_op_deadline() -> Duration {
    Duration::from_secs(120)
}

/// How GPU resources are named in this cluster. Configuration, not code: Cluster Autoscaler
/// hard-codes `nvidia.com/gpu` and stalls on MIG and time-sliced nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Whole-GPU resource names.
    #[serde(default = "d_whole")]
    pub gpu_resources: Vec<String>,
    /// MIG resources are `<mig_resource_prefix><profile>` (e.g. `nvidia.com/mig-1g.10gb`).
    #[serde(default = "d_mig_prefix")]
    pub mig_resource_prefix: String,
    /// Time-sliced / MPS resources and how many replicas one physical GPU offers.
    #[serde(default = "d_shared")]
    pub shared_gpu_resources: Vec<SharedGpuResource>,
    /// Node conditions that mean the GPU is unhealthy (node-problem-detector, DCGM exporter).
    #[serde(default)]
    pub gpu_unhealthy_conditions: Vec<String>,
    /// Lease for leader election.
    #[serde(default = "d_lease")]
    pub lease_name: String,
    #[serde(default = "d_ns")]
    pub lease_namespace: String,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            gpu_resources: d_whole(),
            mig_resource_prefix: d_mig_prefix(),
            shared_gpu_resources: d_shared(),
            gpu_unhealthy_conditions: Vec::new(),
            lease_name: d_lease(),
            lease_namespace: d_ns(),
        }
    }
}

fn d_whole() -> Vec<String> {
    vec!["nvidia.com/gpu".into(), "amd.com/gpu".into()]
}
fn d_mig_prefix() -> String {
    "nvidia.com/mig-".into()
}
fn d_shared() -> Vec<SharedGpuResource> {
    vec![SharedGpuResource {
        name: "nvidia.com/gpu.shared".into(),
        replicas_per_gpu: 4,
    }]
}
fn d_lease() -> String {
    "gpupool-leader".into()
}
fn d_ns() -> String {
    "kube-system".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedGpuResource {
    pub name: String,
    pub replicas_per_gpu: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`. Default `0.0.0.0:8080`: every interface,
    /// so the kubelet and Prometheus reach the pod IP; on a VM reachable by others prefer
    /// `127.0.0.1:8080` or a private address. Connections are limited and time out (see
    /// `server::ServerLimits`).
    #[serde(default = "d_listen")]
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: d_listen() }
    }
}

fn d_listen() -> String {
    "0.0.0.0:8080".into()
}

/// One class of interchangeable GPU capacity for one workload, validated. Field meanings:
/// [`raw::RawPool`].
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    pub name: PoolName,
    pub requirements: Requirements,
    pub replica: ReplicaShape,
    pub capacity: CapacityPolicy,
    pub warm_pool: WarmPoolPolicy,
    pub limits: Limits,
    pub disruption: DisruptionPolicy,
    pub scale_up: ScaleUpPolicy,
    pub model_cache: Option<String>,
    /// Demand signals; the largest demand wins.
    pub signals: Vec<Signal>,
    pub forecast: ForecastPolicy,
    pub slo: Option<SloPolicy>,
    pub health_url: Option<String>,
    pub deregister_command: Option<Vec<String>>,
    pub in_flight_query: Option<InFlightQueryConfig>,
    pub paused: bool,
    pub scale_down: ScaleDownPolicy,
}
/// Cluster Autoscaler's `--scale-down-enabled`, per pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleDownPolicy {
    /// `false`: unneeded nodes are never drained or consolidated away (scale-up, and the
    /// replacement of broken or reclaimed nodes, go on).
    #[serde(default = "d_true")]
    pub enabled: bool,
}

impl Default for ScaleDownPolicy {
    fn default() -> Self {
        ScaleDownPolicy { enabled: true }
    }
}

/// A pool's objective: `attainment` of requests wait at most `queue_wait_s` in the queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloPolicy {
    /// Longest acceptable queue wait (time from arrival to the start of service), seconds.
    pub queue_wait_s: f64,
    /// Fraction of requests that must meet `queue_wait_s`, in (0, 1), e.g. 0.99.
    #[serde(default = "d_attainment")]
    pub attainment: f64,
    /// How the measured attainment is read live: a Prometheus query returning the fraction
    /// of requests that met `queue_wait_s` over a recent window. Unset (or a query that
    /// returns nothing): no feedback, the learned demand-growth quantile alone decides.
    /// The simulator measures it from the simulated queue waits itself.
    #[serde(default)]
    pub attainment_query: Option<AttainmentQuery>,
}

fn d_attainment() -> f64 {
    0.99
}

/// A Prometheus instant query for a measured figure: SLO attainment (`slo.attainment_query`)
/// or the longest request duration (`disruption.request_duration_query`). For attainment,
/// with vLLM's queue-time histogram
/// and a 1 s objective: `sum(rate(vllm:request_queue_time_seconds_bucket{le="1.0"}[10m])) /
/// sum(rate(vllm:request_queue_time_seconds_count[10m]))` with `window_s: 600` (`le` must be
/// one of the histogram's bucket bounds; check what your server exports).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttainmentQuery {
    /// Prometheus base URL.
    pub url: String,
    pub query: String,
    /// The range the query measures over (`window_s`; `[10m]` → 600). For attainment,
    /// feedback waits at least this long between two steps, so one bad stretch is not counted
    /// again and again; for request durations it names the window in the drain's reason.
    #[serde(rename = "window_s", with = "units::secs")]
    pub window: Duration,
    /// `stale_after_s`.
    #[serde(rename = "stale_after_s", with = "units::secs", default = "d_stale")]
    pub stale_after: Duration,
    /// `timeout_s`.
    #[serde(rename = "timeout_s", with = "units::secs", default = "d_sig_timeout")]
    pub timeout: Duration,
    /// `slo.attainment_query` only: a query returning how many requests the attainment
    /// covers, over the same window (vLLM: `sum(increase(vllm:request_queue_time_seconds_count
    /// [10m]))`). A reading that covers fewer than `1 / (1 − attainment)` requests (100 for
    /// 0.99) is unknown — a handful of requests says nothing about a 1 % tail, and one slow
    /// request in three would read 67 % and raise the headroom — and so is one whose count is
    /// not known (no answer, stale, NaN). This is the rule the simulator applies to its own
    /// measurement. Unset: the count cannot be told, and every fresh fraction counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_query: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InFlightQueryConfig {
    /// Prometheus base URL.
    pub url: String,
    /// e.g. `sum(vllm:num_requests_running{instance="{ip}:8000"})`.
    pub query: String,
    /// Credentials, TLS and headers, as for a `prometheus` signal.
    #[serde(default)]
    pub auth: Option<PrometheusAuth>,
    #[serde(default)]
    pub tls: Option<PrometheusTls>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl InFlightQueryConfig {
    pub fn access(&self) -> PrometheusAccess<'_> {
        PrometheusAccess {
            url: &self.url,
            auth: self.auth.as_ref(),
            tls: self.tls.as_ref(),
            headers: &self.headers,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// Accepted GPU models (normalised upper-case: `H100`, `A100`, `L4`…). Empty: any.
    #[serde(default)]
    pub gpu_models: Vec<String>,
    /// Exact GPUs per node, if the pool needs one shape.
    #[serde(default)]
    pub gpus_per_node: Option<u32>,
    #[serde(default)]
    pub min_gpu_memory_gib: Option<u32>,
    /// Zones allowed. Empty: any zone the groups span.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Instance types allowed. Empty: any that meets the GPU requirements.
    #[serde(default)]
    pub instance_types: Vec<String>,
    /// Labels nodes of this pool carry (added to the node template).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Taint>,
    /// How the nodes' MIG-capable GPUs are partitioned (the NVIDIA GPU operator's
    /// `mig.strategy` and the mig-manager layout). Unset: the built-in catalog of the GPU
    /// (`gpupool_provider::mig`) as the `mixed` strategy exposes it, any one profile per node.
    #[serde(default)]
    pub mig: Option<MigPolicy>,
}

/// The GPU operator's MIG strategies (NVIDIA GPU Operator docs, "GPU Operator with MIG"):
/// `none` — whole GPUs (`nvidia.com/gpu`); `single` — every GPU split into one profile and each
/// slice advertised as `nvidia.com/gpu`; `mixed` — slices advertised per profile as
/// `nvidia.com/mig-<profile>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigStrategy {
    None,
    Single,
    Mixed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigPolicy {
    pub strategy: MigStrategy,
    /// `mixed`: the profiles the pool's nodes may be partitioned into (empty: any the GPU
    /// offers). `single`: exactly one, e.g. `[1g.10gb]`. `none`: must be empty.
    #[serde(default)]
    pub profiles: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaShape {
    /// Whole GPUs per replica.
    #[serde(default = "d_one")]
    pub gpus: u32,
    #[serde(default)]
    pub cpu_milli: u64,
    #[serde(default)]
    pub memory_mib: u64,
    /// VM-only: replicas one instance serves (overrides the GPU arithmetic).
    #[serde(default)]
    pub replicas_per_instance: Option<u32>,
}

impl Default for ReplicaShape {
    fn default() -> Self {
        ReplicaShape {
            gpus: 1,
            cpu_milli: 0,
            memory_mib: 0,
            replicas_per_instance: None,
        }
    }
}

fn d_one() -> u32 {
    1
}

/// A pool's capacity mix, validated: the spot share a [`Share`], the spot price cap
/// [`Money`]. Field meanings and defaults: [`raw::RawCapacity`].
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityPolicy {
    pub on_demand_base: u32,
    pub spot_share: Share,
    pub fallback: Vec<CapacityType>,
    pub max_spot_price_per_hour: Option<Money>,
    /// Hours of the instance's price an interruption costs.
    pub interruption_penalty_hours: f64,
}

impl Default for CapacityPolicy {
    fn default() -> Self {
        CapacityPolicy {
            on_demand_base: 0,
            spot_share: Share::ZERO,
            fallback: d_fallback(),
            max_spot_price_per_hour: None,
            interruption_penalty_hours: d_penalty(),
        }
    }
}

fn d_fallback() -> Vec<CapacityType> {
    vec![CapacityType::Spot, CapacityType::OnDemand]
}
fn d_penalty() -> f64 {
    0.5
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmPoolPolicy {
    /// Whether gpupool sizes the warm pools of the pool's groups. Unset: yes when the pool
    /// has an `slo` (it then chooses the warm-pool size, `planner::headroom`) and a warm start
    /// is faster than its cold start; no otherwise. Only groups the cloud gives a warm pool
    /// (an AWS Auto Scaling group with a warm pool, a GCP MIG with a standby policy) are
    /// sized: this never creates one. Resolved by validation: read it with [`Self::on`].
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub min: u32,
    /// Largest warm-pool size. Unset: 4 without an `slo`; with one, the pool's
    /// `limits.max_nodes` (the learned size decides).
    #[serde(default)]
    pub max: Option<u32>,
    /// Seconds a warm instance takes to serve after start (boot + load from local disk).
    #[serde(
        rename = "warm_start_s",
        with = "units::secs",
        default = "d_warm_start"
    )]
    pub warm_start: Duration,
    /// What one stopped warm instance costs per hour (its disks: EBS gp3 is $0.08 per
    /// GB-month in us-east-1, so a 200-GB cache disk is about $0.022/h), when the provider
    /// does not report it. With it, a warm pool shrinks only once keeping an unneeded warm
    /// instance has cost what warming a new one would (`planner::warmpool::shrink_hold`).
    #[serde(default)]
    pub standing_cost_per_hour: Option<f64>,
}

impl Default for WarmPoolPolicy {
    fn default() -> Self {
        WarmPoolPolicy {
            enabled: None,
            min: 0,
            max: None,
            warm_start: d_warm_start(),
            standing_cost_per_hour: None,
        }
    }
}

/// Warm-pool ceiling when neither `warm_pool.max` nor an `slo` says otherwise.
pub const DEFAULT_WARM_MAX: u32 = 4;

impl WarmPoolPolicy {
    /// Whether the pool's warm pools are sized (`enabled`, as validation resolved it).
    pub fn on(&self) -> bool {
        self.enabled == Some(true)
    }

    /// `enabled` as a pool states it, unset resolved: on for a pool with an `slo` whose warm
    /// start is faster than its cold start (otherwise a warm pool would not help).
    pub fn resolved(&self, slo: bool, cold_start: Duration) -> bool {
        self.enabled.unwrap_or(slo && self.warm_start < cold_start)
    }

    /// The warm-pool ceiling in effect for `pool` (see `max`).
    pub fn max_for(&self, slo: bool, max_nodes: u32) -> u32 {
        match (self.max, slo) {
            (Some(m), _) => m,
            (None, false) => DEFAULT_WARM_MAX,
            (None, true) => max_nodes,
        }
    }
}
fn d_warm_start() -> Duration {
    Duration::from_secs(45)
}

/// A pool's bounds, validated: the cost ceiling [`Money`] per hour. Field meanings and
/// defaults: [`raw::RawLimits`].
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub min_nodes: u32,
    pub max_nodes: u32,
    pub max_cost_per_hour: Option<Money>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_nodes: 0,
            max_nodes: d_max_nodes(),
            max_cost_per_hour: None,
        }
    }
}

fn d_max_nodes() -> u32 {
    10
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisruptionPolicy {
    /// Remove empty nodes and replace nodes by cheaper offerings.
    #[serde(default = "d_true")]
    pub consolidation: bool,
    /// A node must be unneeded this long before it is removed. Unset: 600 s (Cluster
    /// Autoscaler's `scale-down-unneeded-time`); with an `slo`, the pool's cold start (see
    /// [`PoolConfig::unneeded_time`]).
    #[serde(rename = "unneeded_time_s", with = "units::opt_secs", default)]
    pub unneeded_time: Option<Duration>,
    /// No scale-down for this long after a scale-up (flap guard). Unset: 300 s; with an
    /// `slo`, 0 (see [`PoolConfig::scale_down_delay_after_add`]).
    #[serde(
        rename = "scale_down_delay_after_add_s",
        with = "units::opt_secs",
        default
    )]
    pub scale_down_delay_after_add: Option<Duration>,
    #[serde(default)]
    pub budget: DisruptionBudget,
    /// Longest a drain may take before the instance is terminated anyway (and reported).
    #[serde(rename = "drain_timeout_s", with = "units::secs", default = "d_drain")]
    pub drain_timeout: Duration,
    /// A node not serving-ready after this long is replaced.
    #[serde(
        rename = "max_provision_time_s",
        with = "units::secs",
        default = "d_provision"
    )]
    pub max_provision_time: Duration,
    /// Spare replicas kept above demand when scaling down.
    #[serde(default)]
    pub headroom_replicas: u32,
    /// On a spot interruption notice, keep serving and start the drain only this many seconds
    /// before the reclaim (the longest request you serve must fit). The replacement is launched
    /// at once either way. Unset: learnt from `request_duration_query` — the longest request
    /// measured, rounded up, plus one tick — when that is known and shorter than the notice;
    /// otherwise drain as soon as the notice arrives (the safe default when request durations
    /// are unknown). Set, it wins over the measurement. AWS gives 120 s of notice, GCP 30 s.
    #[serde(rename = "interruption_drain_s", with = "units::opt_secs", default)]
    pub interruption_drain: Option<Duration>,
    /// How the longest request recently served is read live, for the learnt drain lead
    /// (`interruption_drain_s` unset): a Prometheus instant query returning one value in
    /// seconds, with `window_s` the range it covers (named in the drain's reason) and the
    /// same `stale_after_s` / `timeout_s` as `slo.attainment_query`. Only a fresh, finite,
    /// non-negative value of at most 3600 s counts; anything else is unknown and the drain
    /// starts at the notice. With vLLM, whose end-to-end latency histogram is
    /// `vllm:e2e_request_latency_seconds` (vLLM docs, design/metrics.md):
    /// `histogram_quantile(1, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[1h])))`
    /// with `window_s: 3600`. On a classic histogram `histogram_quantile` interpolates
    /// linearly within the bucket the quantile falls in, so φ = 1 returns the upper bound of
    /// the bucket holding the longest request — long by up to one bucket width, the safe
    /// side — while φ < 1 (e.g. 0.999) may land below the longest request; a quantile in the
    /// `+Inf` bucket returns the highest finite bound, which is short: requests longer than
    /// the largest bucket are not seen (Prometheus docs, querying/functions#histogram_quantile;
    /// promql/quantile.go `bucketQuantile`). The simulator measures the longest completed
    /// request of the last hour itself.
    #[serde(default)]
    pub request_duration_query: Option<AttainmentQuery>,
    /// What an AWS EC2 rebalance recommendation (a spot instance at elevated risk of
    /// interruption, usually minutes to hours before any notice) does. `prelaunch`: launch the
    /// replacement now, within the pool's limits, and drain the at-risk node once the
    /// replacement serves (or at the interruption notice, whichever comes first), within the
    /// disruption budget. `ignore`: only raise the offering's learned risk.
    #[serde(default)]
    pub rebalance: RebalancePolicy,
    /// VM-only: how long a drain keeps retrying a failing `deregister_command` (once a tick)
    /// before it gives up. A VM that could not be deregistered is never terminated: when this
    /// runs out its drain is abandoned and the VM kept in service, still registered
    /// (`gpupool_drains_abandoned_total`, a warning in the log); scale-in may pick it again
    /// after `unneeded_time_s`.
    #[serde(
        rename = "deregister_give_up_s",
        with = "units::secs",
        default = "d_deregister_give_up"
    )]
    pub deregister_give_up: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebalancePolicy {
    #[default]
    Prelaunch,
    Ignore,
}

impl Default for DisruptionPolicy {
    fn default() -> Self {
        DisruptionPolicy {
            consolidation: true,
            unneeded_time: None,
            scale_down_delay_after_add: None,
            budget: DisruptionBudget::default(),
            drain_timeout: d_drain(),
            max_provision_time: d_provision(),
            headroom_replicas: 0,
            interruption_drain: None,
            request_duration_query: None,
            rebalance: RebalancePolicy::default(),
            deregister_give_up: d_deregister_give_up(),
        }
    }
}

fn d_true() -> bool {
    true
}
/// Default `unneeded_time_s` without an `slo`.
pub const DEFAULT_UNNEEDED_TIME: Duration = Duration::from_secs(600);
/// Default `scale_down_delay_after_add_s` without an `slo`.
pub const DEFAULT_SCALE_DOWN_DELAY_AFTER_ADD: Duration = Duration::from_secs(300);
fn d_drain() -> Duration {
    Duration::from_secs(900)
}
fn d_provision() -> Duration {
    Duration::from_secs(900)
}
fn d_deregister_give_up() -> Duration {
    Duration::from_secs(600)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisruptionBudget {
    /// Nodes being drained or replaced at the same time.
    #[serde(default = "d_one")]
    pub max_disrupted_at_once: u32,
    /// Voluntary disruptions per window. Unset: no rate limit, only `max_disrupted_at_once`
    /// — the defaults of Cluster Autoscaler (no rate window; `--max-drain-parallelism` 1)
    /// and Karpenter (a NodePool's default budget is `nodes: 10%` at once, no schedule). A
    /// default rate limit would keep the nodes a burst brought for hours after it ended.
    #[serde(default)]
    pub max_per_window: Option<u32>,
    #[serde(rename = "window_s", with = "units::secs", default = "d_window")]
    pub window: Duration,
}

impl Default for DisruptionBudget {
    fn default() -> Self {
        DisruptionBudget {
            max_disrupted_at_once: 1,
            max_per_window: None,
            window: d_window(),
        }
    }
}

fn d_window() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleUpPolicy {
    /// Expected seconds from launch to serving for a cold instance (boot, image pull, model
    /// load). Used for the forecast horizon and consolidation's cold-start cost.
    #[serde(rename = "cold_start_s", with = "units::secs", default = "d_cold")]
    pub cold_start: Duration,
    /// Most nodes launched in one tick per pool (a bound on a runaway signal).
    #[serde(default = "d_max_per_tick")]
    pub max_nodes_per_tick: u32,
    /// A launch the cloud accepted that shows neither an instance nor an error for this long
    /// is taken for failed: taken back, its offering backed off, the pool falls back. Clouds
    /// report most stockouts themselves (AWS failed scaling activities, GCP `lastAttempt`
    /// errors, both seen in a tick); this bounds the silent case. Not `max_provision_time_s`,
    /// which is about instances that exist but do not serve.
    #[serde(
        rename = "launch_timeout_s",
        with = "units::secs",
        default = "d_launch_timeout"
    )]
    pub launch_timeout: Duration,
}

impl Default for ScaleUpPolicy {
    fn default() -> Self {
        ScaleUpPolicy {
            cold_start: d_cold(),
            max_nodes_per_tick: d_max_per_tick(),
            launch_timeout: d_launch_timeout(),
        }
    }
}

fn d_launch_timeout() -> Duration {
    Duration::from_secs(300)
}

fn d_cold() -> Duration {
    Duration::from_secs(300)
}
fn d_max_per_tick() -> u32 {
    20
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastPolicy {
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Forecast horizon; defaults to the pool's cold start.
    #[serde(rename = "horizon_s", with = "units::opt_secs", default)]
    pub horizon: Option<Duration>,
    /// Seasonal period for time-of-day patterns (1 day); seasonality is used once history
    /// covers two periods.
    #[serde(rename = "season_s", with = "units::secs", default = "d_season")]
    pub season: Duration,
}

impl Default for ForecastPolicy {
    fn default() -> Self {
        ForecastPolicy {
            enabled: true,
            horizon: None,
            season: d_season(),
        }
    }
}

fn d_season() -> Duration {
    Duration::from_secs(86_400)
}

/// One validated demand signal: its name (as written, else `<kind>-<index>`) and its one
/// source.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    /// Name in reasons and metrics.
    pub name: String,
    pub source: SignalSource,
}

/// Where a signal's value comes from: exactly one source per signal (the YAML's entry sets
/// one key; validation refuses none or several).
#[derive(Clone, Debug, PartialEq)]
pub enum SignalSource {
    Prometheus(PrometheusSignal),
    CloudWatch(CloudWatchSignal),
    Sqs(SqsSignal),
    Cron(CronSignal),
    Latency(LatencySignal),
}

impl SignalSource {
    /// The source's key in the YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            SignalSource::Prometheus(_) => "prometheus",
            SignalSource::CloudWatch(_) => "cloudwatch",
            SignalSource::Sqs(_) => "sqs",
            SignalSource::Cron(_) => "cron",
            SignalSource::Latency(_) => "latency",
        }
    }

    /// The Prometheus endpoint the signal queries, if it queries one.
    pub fn prometheus_access(&self) -> Option<PrometheusAccess<'_>> {
        match self {
            SignalSource::Prometheus(p) => Some(p.access()),
            SignalSource::Latency(l) => Some(l.access()),
            _ => None,
        }
    }

    /// Whether reading it takes a network call (Prometheus, latency, CloudWatch, SQS).
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            SignalSource::Prometheus(_)
                | SignalSource::Latency(_)
                | SignalSource::CloudWatch(_)
                | SignalSource::Sqs(_)
        )
    }
}
/// KEDA-style scaling arithmetic: replicas = ceil(value / target_per_replica) once the value
/// exceeds `activation` (below it, a pool at zero stays at zero).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSignal {
    /// Prometheus base URL (`http://prometheus:9090`).
    pub url: String,
    pub query: String,
    pub target_per_replica: f64,
    #[serde(default)]
    pub activation: f64,
    /// A value older than this is stale (`stale_after_s`).
    #[serde(rename = "stale_after_s", with = "units::secs", default = "d_stale")]
    pub stale_after: Duration,
    /// Per-query timeout (`timeout_s`).
    #[serde(rename = "timeout_s", with = "units::secs", default = "d_sig_timeout")]
    pub timeout: Duration,
    /// Credentials for the Prometheus API (none by default). See [`PrometheusAuth`].
    #[serde(default)]
    pub auth: Option<PrometheusAuth>,
    /// TLS trust and client certificate for an `https://` URL.
    #[serde(default)]
    pub tls: Option<PrometheusTls>,
    /// Extra request headers, e.g. `X-Scope-OrgID: tenant-1` for Mimir/Cortex/Thanos tenants
    /// (KEDA's `customHeaders`). Not for secrets: header values are config text; use `auth`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn d_stale() -> Duration {
    Duration::from_secs(60)
}
fn d_sig_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchSignal {
    pub namespace: String,
    pub metric_name: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(default = "d_stat")]
    pub stat: String,
    pub target_per_replica: f64,
    #[serde(default)]
    pub activation: f64,
    /// A datapoint older than this is stale (`stale_after_s`).
    #[serde(rename = "stale_after_s", with = "units::secs", default = "d_cw_stale")]
    pub stale_after: Duration,
}

fn d_stat() -> String {
    "Average".into()
}
fn d_cw_stale() -> Duration {
    Duration::from_secs(300)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsSignal {
    pub queue_url: String,
    pub target_per_replica: f64,
    #[serde(default)]
    pub activation: f64,
    /// Count messages in flight (received, not deleted) as demand too.
    #[serde(default = "d_true")]
    pub include_in_flight: bool,
}

/// A validated cron signal: `desired` replicas while the window is open. The window's
/// expressions and zone were parsed once, at load.
#[derive(Clone, Debug, PartialEq)]
pub struct CronSignal {
    pub window: CronWindow,
    pub desired: u32,
}
/// How gpupool proves who it is to a Prometheus-API server: the authentication modes KEDA's
/// Prometheus scaler offers (`authModes: bearer | basic | tls | custom`, plus AWS SigV4 for
/// Amazon Managed Service for Prometheus and Google credentials for Managed Service for
/// Prometheus; <https://keda.sh/docs/latest/scalers/prometheus/>, kedacore/keda#5373, #4675).
/// Secrets are never config text: they are read from a file (re-read on every query, so a
/// rotated token is picked up) or an environment variable, and never logged.
/// Exactly one mode is set (validation refuses none or several); [`PrometheusAuth::kind`]
/// gives it typed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusAuth {
    /// `Authorization: Bearer <file contents, trimmed>` (e.g. a projected service-account token).
    #[serde(default)]
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// `Authorization: Bearer <$NAME>`.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// HTTP basic auth.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// AWS Signature Version 4 with the default credential chain (Amazon Managed Service for
    /// Prometheus). Needs a build with the `aws` feature.
    #[serde(default)]
    pub sigv4: Option<Sigv4Auth>,
    /// A Google access token from Application Default Credentials with the `monitoring.read`
    /// scope (Google Cloud Managed Service for Prometheus). Needs the `gcp` feature.
    #[serde(default)]
    pub google: Option<GoogleAuth>,
}

/// The authentication mode a [`PrometheusAuth`] selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind<'a> {
    BearerTokenFile(&'a std::path::Path),
    BearerTokenEnv(&'a str),
    Basic(&'a BasicAuth),
    Sigv4(&'a Sigv4Auth),
    Google,
}

impl PrometheusAuth {
    /// The names of the modes set (validation wants exactly one).
    pub fn modes(&self) -> Vec<&'static str> {
        [
            ("bearer_token_file", self.bearer_token_file.is_some()),
            ("bearer_token_env", self.bearer_token_env.is_some()),
            ("basic", self.basic.is_some()),
            ("sigv4", self.sigv4.is_some()),
            ("google", self.google.is_some()),
        ]
        .into_iter()
        .filter_map(|(m, set)| set.then_some(m))
        .collect()
    }

    /// The mode, when exactly one is set.
    pub fn kind(&self) -> Option<AuthKind<'_>> {
        if self.modes().len() != 1 {
            return None;
        }
        if let Some(p) = &self.bearer_token_file {
            return Some(AuthKind::BearerTokenFile(p));
        }
        if let Some(n) = &self.bearer_token_env {
            return Some(AuthKind::BearerTokenEnv(n));
        }
        if let Some(b) = &self.basic {
            return Some(AuthKind::Basic(b));
        }
        if let Some(s) = &self.sigv4 {
            return Some(AuthKind::Sigv4(s));
        }
        self.google.as_ref().map(|_| AuthKind::Google)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    /// File holding the password (trailing newline trimmed). Exactly one of the two.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sigv4Auth {
    /// The workspace's region; defaults to `aws.region`.
    #[serde(default)]
    pub region: Option<String>,
    /// The signing service name: `aps` for Amazon Managed Service for Prometheus.
    #[serde(default = "d_sigv4_service")]
    pub service: String,
}

fn d_sigv4_service() -> String {
    "aps".into()
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleAuth {}

/// TLS for an `https://` Prometheus URL. Without it the platform's trust roots apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusTls {
    /// PEM bundle of CAs trusted in addition to the platform's roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
    /// Accept any server certificate (KEDA's `unsafeSsl`). Only when set explicitly, never
    /// together with `ca_file`, and check-config warns about it.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// The connection settings of one Prometheus endpoint, borrowed from a signal's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrometheusAccess<'a> {
    pub url: &'a str,
    pub auth: Option<&'a PrometheusAuth>,
    pub tls: Option<&'a PrometheusTls>,
    pub headers: &'a BTreeMap<String, String>,
}

impl PrometheusSignal {
    pub fn access(&self) -> PrometheusAccess<'_> {
        PrometheusAccess {
            url: &self.url,
            auth: self.auth.as_ref(),
            tls: self.tls.as_ref(),
            headers: &self.headers,
        }
    }
}

impl LatencySignal {
    pub fn access(&self) -> PrometheusAccess<'_> {
        PrometheusAccess {
            url: &self.url,
            auth: self.auth.as_ref(),
            tls: self.tls.as_ref(),
            headers: &self.headers,
        }
    }
}

/// Latency guard-rail: when the query's value exceeds `target`, add capacity in proportion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySignal {
    pub url: String,
    pub query: String,
    /// Target in the query's unit (seconds for a p95 TTFT).
    pub target: f64,
    /// A value older than this is stale (`stale_after_s`).
    #[serde(rename = "stale_after_s", with = "units::secs", default = "d_stale")]
    pub stale_after: Duration,
    /// Per-query timeout (`timeout_s`).
    #[serde(rename = "timeout_s", with = "units::secs", default = "d_sig_timeout")]
    pub timeout: Duration,
    /// Credentials for the Prometheus API (none by default). See [`PrometheusAuth`].
    #[serde(default)]
    pub auth: Option<PrometheusAuth>,
    /// TLS trust and client certificate for an `https://` URL.
    #[serde(default)]
    pub tls: Option<PrometheusTls>,
    /// Extra request headers, e.g. `X-Scope-OrgID: tenant-1` for Mimir/Cortex/Thanos tenants
    /// (KEDA's `customHeaders`). Not for secrets: header values are config text; use `auth`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl Config {
    /// Parse and validate: every unknown key, wrong type and semantic mistake is reported at
    /// once (see `parse`). A Kubernetes ConfigMap manifest is read through its `config.yaml`.
    pub fn load(text: &str) -> Result<Config, ConfigError> {
        Self::load_with_demand_from(text, &std::collections::BTreeSet::new())
    }

    /// [`Config::load`] for a config whose pools in `fed_elsewhere` take their demand from
    /// outside it (a simulator scenario's queue signals, `sim::scenario`): a VM-only pool there
    /// needs no signal of its own.
    pub fn load_with_demand_from(
        text: &str,
        fed_elsewhere: &std::collections::BTreeSet<PoolName>,
    ) -> Result<Config, ConfigError> {
        let doc = parse::document(text).map_err(|(line, message)| ConfigError::Parse {
            path: String::new(),
            line,
            message,
        })?;
        let mut issues = Vec::new();
        let raw: Option<raw::RawConfig> = parse::typed(doc, &mut issues);
        let Some(raw) = raw else {
            return Err(ConfigError::Invalid(issues));
        };
        match validate::validate(&raw, fed_elsewhere) {
            Ok(cfg) if issues.is_empty() => Ok(cfg),
            Ok(_) => Err(ConfigError::Invalid(issues)),
            Err(more) => {
                issues.extend(more);
                Err(ConfigError::Invalid(issues))
            }
        }
    }

    pub fn load_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::load(&text)
    }

    /// What this config needs that this binary was built without (cargo features `aws`,
    /// `gcp`, `kube`): `gpupool check-config` says so at once instead of `run` failing later.
    pub fn unsupported_by_this_build(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        let mut need = |on: bool, path: &str, what: &str, feature: &str| {
            if !on {
                out.push(Issue {
                    path: path.into(),
                    message: format!(
                        "{what} needs a gpupool built with `--features {feature}`, and this binary \
                         was built without it (use the release image, or `cargo build --release \
                         --features aws,gcp,kube`)"
                    ),
                });
            }
        };
        match self.provider {
            ProviderKind::Aws => need(cfg!(feature = "aws"), "provider", "aws", "aws"),
            ProviderKind::Gcp => need(cfg!(feature = "gcp"), "provider", "gcp", "gcp"),
            ProviderKind::Sim => {}
        }
        if self.mode == Mode::Kubernetes && self.provider != ProviderKind::Sim {
            need(cfg!(feature = "kube"), "mode", "kubernetes", "kube");
        }
        for (path, access) in self.prometheus_endpoints() {
            match access.auth.and_then(PrometheusAuth::kind) {
                Some(AuthKind::Sigv4(_)) => need(
                    cfg!(feature = "aws"),
                    &format!("{path}.auth.sigv4"),
                    "SigV4 signing",
                    "aws",
                ),
                Some(AuthKind::Google) => need(
                    cfg!(feature = "gcp"),
                    &format!("{path}.auth.google"),
                    "Google authentication",
                    "gcp",
                ),
                _ => {}
            }
        }
        out
    }

    /// Settings that are valid but that an operator should know about (`check-config` prints
    /// them; they never stop a load): credentials over plain http, unverified TLS, cron
    /// windows that never open after `now`, PromQL that does not parse, an `slo` nothing
    /// measures or whose readings do not count their requests.
    pub fn warnings(&self, now: crate::model::Timestamp) -> Vec<Issue> {
        let mut out = lint::cron_windows(self, now);
        out.extend(lint::promql(self));
        out.extend(lint::attainment_unmeasured(self));
        out.extend(lint::attainment_counts(self));
        out.extend(lint::aws_prices(self));
        for (path, access) in self.prometheus_endpoints() {
            out.extend(access::warnings(&path, access));
        }
        out
    }

    /// Every Prometheus endpoint the config queries, with its config path
    /// (`pools[0].signals[1].latency`).
    pub fn prometheus_endpoints(&self) -> Vec<(String, PrometheusAccess<'_>)> {
        let mut out = Vec::new();
        for (i, p) in self.pools.iter().enumerate() {
            for (j, s) in p.signals.iter().enumerate() {
                if let Some(a) = s.source.prometheus_access() {
                    out.push((format!("pools[{i}].signals[{j}].{}", s.source.kind()), a));
                }
            }
            if let Some(q) = &p.in_flight_query {
                out.push((format!("pools[{i}].in_flight_query"), q.access()));
            }
        }
        out
    }

    pub fn pool(&self, name: &PoolName) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| &p.name == name)
    }
}

impl PoolConfig {
    /// Replicas one node of the pool serves, as far as the config alone says:
    /// `replica.replicas_per_instance` (VM-only), else `requirements.gpus_per_node` divided by
    /// a replica's GPUs; `None` when neither says. The one config-level figure (the forecast's
    /// cap and the SLO learner's feedback bound use it); the planner's per-offering figure
    /// (`planner::eligible::replicas_per_node`) starts from the same override and otherwise
    /// counts the instance type's own GPUs, CPU and memory.
    pub fn configured_replicas_per_node(&self) -> Option<u32> {
        if let Some(n) = self.replica.replicas_per_instance {
            return Some(n.max(1));
        }
        let gpus = self.requirements.gpus_per_node?;
        (self.replica.gpus > 0).then(|| (gpus / self.replica.gpus).max(1))
    }

    /// How long a node must be unneeded before it goes. Set: as set. Unset without an `slo`:
    /// 600 s. Unset with an `slo`: the pool's cold start — the ski-rental break-even (Karlin,
    /// Manasse, Rudolph & Sleator, "Competitive snoopy caching", Algorithmica 1988): keeping
    /// an idle node as long as bringing one back takes costs what bringing it back costs, and
    /// holding exactly that long is never worse than twice the best choice in hindsight,
    /// whatever the traffic does next. The standing headroom the SLO needs is held
    /// explicitly (`planner::headroom`), so this only decides how soon surplus goes.
    pub fn unneeded_time(&self) -> Duration {
        unneeded_time(&self.disruption, self.slo.is_some(), &self.scale_up)
    }

    /// No scale-down this long after a scale-up. Set: as set. Unset without an `slo`: 300 s.
    /// Unset with an `slo`: 0 — each node already waits `unneeded_time_s`, and the learnt
    /// headroom moves by a replica at a time, so a pool-wide pause after every such step
    /// would keep every surplus node the SLO does not ask for.
    pub fn scale_down_delay_after_add(&self) -> Duration {
        match (self.disruption.scale_down_delay_after_add, &self.slo) {
            (Some(v), _) => v,
            (None, None) => DEFAULT_SCALE_DOWN_DELAY_AFTER_ADD,
            (None, Some(_)) => Duration::ZERO,
        }
    }

    /// Horizon the forecast looks ahead: at least the cold start.
    pub fn forecast_horizon(&self) -> Duration {
        self.forecast.horizon.unwrap_or(self.scale_up.cold_start)
    }
}

/// [`PoolConfig::unneeded_time`] from the sections it depends on (validation checks it on the
/// raw pool).
fn unneeded_time(d: &DisruptionPolicy, slo: bool, up: &ScaleUpPolicy) -> Duration {
    match (d.unneeded_time, slo) {
        (Some(v), _) => v,
        (None, false) => DEFAULT_UNNEEDED_TIME,
        (None, true) => up.cold_start,
    }
}
