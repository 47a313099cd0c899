//! The YAML as users write it: serde structs, parsed strictly (`deny_unknown_fields`). Nothing
//! outside `config` reads these; [`super::validate`] checks them and builds the typed
//! [`super::Config`] the rest of the program uses (signals as an enum, cron windows parsed,
//! durations and prices in their units).
//!
//! Only the structs whose validated form differs live here; sections that are the same in both
//! (requirements, capacity, limits, …) are shared with the typed config.

use super::*;
use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Which cloud drives the node groups.
    #[serde(default)]
    pub provider: ProviderKind,
    /// Kubernetes (pending pods + signals) or VM-only (signals only).
    #[serde(default)]
    pub mode: Mode,
    /// Seconds between controller ticks.
    #[serde(default = "d_tick")]
    pub tick_interval_s: u64,
    #[serde(default)]
    pub aws: Option<AwsConfig>,
    #[serde(default)]
    pub gcp: Option<GcpConfig>,
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Simulator-only (`sim: { seed }`): read only to say it belongs to a scenario
    /// (validation refuses it with that message).
    #[serde(default)]
    pub sim: Option<IgnoredAny>,
    /// Where the controller keeps what it must not forget across restarts (`crate::state`).
    #[serde(default)]
    pub state: StateConfig,
    /// Shadow mode: observe and plan every tick, but never call a mutating cloud API, never
    /// cordon, evict or write Events. What gpupool would have done is logged, counted
    /// (`gpupool_shadow_actions_total`) and shown on `/status` next to what the groups' current
    /// manager actually did, with the fleet cost difference (`gpupool run --dry-run` too).
    #[serde(default)]
    pub dry_run: bool,
    /// Price adjustments (negotiated discounts).
    #[serde(default)]
    pub pricing: RawPricing,
    pub pools: Vec<RawPool>,
}

fn d_tick() -> u64 {
    10
}

/// One class of interchangeable GPU capacity for one workload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: PoolName,
    pub requirements: Requirements,
    /// The shape of one serving replica (VM-only and signal-driven demand).
    #[serde(default)]
    pub replica: ReplicaShape,
    #[serde(default)]
    pub capacity: RawCapacity,
    #[serde(default)]
    pub warm_pool: WarmPoolPolicy,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub disruption: DisruptionPolicy,
    #[serde(default)]
    pub scale_up: ScaleUpPolicy,
    /// `<model>@<version>` every serving node must hold in its cache; instances reporting an
    /// older one are replaced (drift).
    #[serde(default)]
    pub model_cache: Option<String>,
    /// Demand signals; the largest demand wins.
    #[serde(default)]
    pub signals: Vec<RawSignal>,
    #[serde(default)]
    pub forecast: ForecastPolicy,
    /// The pool's service-level objective. With it, gpupool learns the standing headroom
    /// (spare running replicas) and the warm-pool size that meet it at least cost
    /// (`planner::headroom`); without it, `disruption.headroom_replicas` and the warm pool's
    /// `min`/`max` are used as set.
    #[serde(default)]
    pub slo: Option<SloPolicy>,
    /// VM-only readiness: a URL template per instance, `{ip}` replaced by its private IP.
    #[serde(default)]
    pub health_url: Option<String>,
    /// VM-only: a command run before an instance is terminated, to deregister it (`{id}`,
    /// `{ip}` substituted). Its failure holds the termination.
    #[serde(default)]
    pub deregister_command: Option<Vec<String>>,
    /// VM-only: requests in flight on one instance, so scale-in picks idle instances and waits
    /// for work to finish. A Prometheus query with `{instance}` (instance id) or `{ip}`.
    #[serde(default)]
    pub in_flight_query: Option<InFlightQueryConfig>,
    /// Observe and plan this pool but take no action on it (no launch, no drain, no
    /// termination): `Reason::Paused` on `/status` and in `gpupool plan`.
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub scale_down: ScaleDownPolicy,
}

/// One demand signal. Exactly one source key per entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignal {
    /// Name in reasons and metrics; defaults to the source kind and index.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub prometheus: Option<PrometheusSignal>,
    #[serde(default)]
    pub cloudwatch: Option<CloudWatchSignal>,
    #[serde(default)]
    pub sqs: Option<SqsSignal>,
    #[serde(default)]
    pub cron: Option<RawCron>,
    #[serde(default)]
    pub latency: Option<LatencySignal>,
    /// The simulator's queue signal: accepted in a scenario's `gpupool:` section only (the
    /// scenario loader takes it out before the config is loaded); read here only to say so.
    #[serde(default)]
    pub sim_queue: Option<IgnoredAny>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCron {
    /// Cron expression (with seconds field) for when the window starts, e.g. `0 0 8 * * Mon-Fri`.
    pub start: String,
    /// Cron expression for when it ends.
    pub end: String,
    pub desired: u32,
    #[serde(default = "d_tz")]
    pub timezone: String,
}

fn d_tz() -> String {
    "UTC".into()
}

impl RawPool {
    /// See [`PoolConfig::unneeded_time`].
    pub fn unneeded_time(&self) -> std::time::Duration {
        unneeded_time(&self.disruption, self.slo.is_some(), &self.scale_up)
    }
}

impl RawSignal {
    /// The source keys this entry sets (validation requires exactly one).
    pub fn sources(&self) -> impl Iterator<Item = &'static str> {
        [
            ("prometheus", self.prometheus.is_some()),
            ("cloudwatch", self.cloudwatch.is_some()),
            ("sqs", self.sqs.is_some()),
            ("cron", self.cron.is_some()),
            ("latency", self.latency.is_some()),
            ("sim-queue", self.sim_queue.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, set)| set.then_some(kind))
    }

    /// The name reasons and metrics use: as written, else `<kind>-<index>`.
    pub fn display_name(&self, index: usize) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let kind = self.sources().next().unwrap_or("signal");
        format!("{kind}-{index}")
    }
}

/// How list prices become the prices gpupool compares and reports.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    /// Fraction taken off every *on-demand* price (0 ≤ discount < 1): a Compute Savings Plan,
    /// an EDP or a committed-use discount, e.g. 0.28 for 28 % off. Spot prices are market
    /// prices those discounts do not cover, so they stay as the cloud quotes them. This moves
    /// the spot/on-demand trade-off, cost figures and `limits.max_cost_per_hour`. 0: list price.
    #[serde(default)]
    pub discount: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapacity {
    /// Nodes that are always on-demand, before any spot.
    #[serde(default)]
    pub on_demand_base: u32,
    /// Share of nodes above the base that may be spot (0 = on-demand only, 1 = all spot).
    #[serde(default)]
    pub spot_share: f64,
    /// Order to try capacity types in when the preferred one is short.
    #[serde(default = "d_fallback")]
    pub fallback: Vec<CapacityType>,
    /// Highest price per hour accepted for one spot instance.
    #[serde(default)]
    pub max_spot_price_per_hour: Option<f64>,
    /// How much an interruption costs, in hours of the instance's price (lost warm-up and
    /// re-queued work); effective price = price × (1 + risk × penalty).
    #[serde(default = "d_penalty")]
    pub interruption_penalty_hours: f64,
}

impl Default for RawCapacity {
    fn default() -> Self {
        RawCapacity {
            on_demand_base: 0,
            spot_share: 0.0,
            fallback: d_fallback(),
            max_spot_price_per_hour: None,
            interruption_penalty_hours: d_penalty(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub min_nodes: u32,
    #[serde(default = "d_max_nodes")]
    pub max_nodes: u32,
    /// Ceiling on the pool's running cost in dollars per hour.
    #[serde(default)]
    pub max_cost_per_hour: Option<f64>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            min_nodes: 0,
            max_nodes: d_max_nodes(),
            max_cost_per_hour: None,
        }
    }
}
