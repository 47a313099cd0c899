//! The controller's own metrics (`/metrics`), on an explicitly passed prometheus-client
//! `Registry` (no global registry). Label values are pool names, signal names from config and
//! fixed codes (`Reason::code`, `ProviderError::kind`): bounded by configuration, never by
//! object names or error text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    pub pool: String,
    pub signal: String,
}

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub pool: String,
    pub direction: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterruptionLabels {
    pub pool: String,
    pub kind: String,
}

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaunchFailureLabels {
    pub pool: String,
    /// `LaunchFailure::as_str`: insufficient_capacity, quota_exceeded, unsupported, timed_out…
    pub failure: String,
}

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub call: String,
    pub kind: String,
}

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub pool: String,
    pub outcome: String,
    pub reason: String,
}

/// Shadow mode: an action the plan would have taken, by kind (`ShadowAction::as_str`).
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    pub pool: String,
    pub action: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// Every metric family gpupool exports.
#[derive(Clone)]
pub struct Metrics {
    pub pool_desired_nodes: Family<PoolLabels, Gauge>,
    pub pool_ready_nodes: Family<PoolLabels, Gauge>,
    pub pool_in_flight_nodes: Family<PoolLabels, Gauge>,
    pub pool_warm_instances: Family<PoolLabels, Gauge>,
    pub pool_pending_pods: Family<PoolLabels, Gauge>,
    pub pool_wanted_replicas: Family<PoolLabels, Gauge>,
    pub pool_forecast_replicas: Family<PoolLabels, Gauge>,
    pub estimated_cost_per_hour: Family<PoolLabels, FGauge>,
    pub signal_value: Family<SignalLabels, FGauge>,
    pub signal_stale: Family<SignalLabels, Gauge>,
    pub scale_actions: Family<ActionLabels, Counter>,
    /// Shadow mode (`dry_run`): actions planned and not taken.
    pub shadow_actions: Family<ShadowLabels, Counter>,
    pub decisions: Family<DecisionLabels, Gauge>,
    pub interruptions: Family<InterruptionLabels, Counter>,
    pub launch_failures: Family<LaunchFailureLabels, Counter>,
    pub provider_errors: Family<ErrorLabels, Counter>,
    pub drains_in_progress: Family<PoolLabels, Gauge>,
    /// VM-only: drain ticks on which the instance could not be deregistered (kept serving).
    pub deregister_failures: Family<PoolLabels, Counter>,
    /// VM-only: drains given up because deregistration kept failing; the VM was kept.
    pub drains_abandoned: Family<PoolLabels, Counter>,
    pub plan_duration_seconds: Histogram,
    pub ticks: Counter,
    pub ticks_held: Counter,
    pub last_tick_timestamp_seconds: FGauge,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            pool_desired_nodes: Family::default(),
            pool_ready_nodes: Family::default(),
            pool_in_flight_nodes: Family::default(),
            pool_warm_instances: Family::default(),
            pool_pending_pods: Family::default(),
            pool_wanted_replicas: Family::default(),
            pool_forecast_replicas: Family::default(),
            estimated_cost_per_hour: Family::default(),
            signal_value: Family::default(),
            signal_stale: Family::default(),
            scale_actions: Family::default(),
            shadow_actions: Family::default(),
            decisions: Family::default(),
            interruptions: Family::default(),
            launch_failures: Family::default(),
            provider_errors: Family::default(),
            drains_in_progress: Family::default(),
            deregister_failures: Family::default(),
            drains_abandoned: Family::default(),
            // 50 µs … ~1.6 s: planner latency spans that range from tiny pools to 50k pods.
            plan_duration_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            ticks: Counter::default(),
            ticks_held: Counter::default(),
            last_tick_timestamp_seconds: FGauge::default(),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Register every family under the `gpupool` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("gpupool");
        r.register(
            "pool_desired_nodes",
            "Nodes the pool should have after the last plan (serving + in flight)",
            self.pool_desired_nodes.clone(),
        );
        r.register(
            "pool_ready_nodes",
            "Serving-ready nodes per pool",
            self.pool_ready_nodes.clone(),
        );
        r.register(
            "pool_in_flight_nodes",
            "Nodes launching or starting per pool",
            self.pool_in_flight_nodes.clone(),
        );
        r.register(
            "pool_warm_instances",
            "Stopped cache-warm instances per pool",
            self.pool_warm_instances.clone(),
        );
        r.register(
            "pool_pending_pods",
            "Unschedulable GPU pods per pool",
            self.pool_pending_pods.clone(),
        );
        r.register(
            "pool_wanted_replicas",
            "Replicas the demand signals want per pool",
            self.pool_wanted_replicas.clone(),
        );
        r.register(
            "pool_forecast_replicas",
            "Replicas the forecast wants over the pool's cold-start horizon (absent when forecasting is off)",
            self.pool_forecast_replicas.clone(),
        );
        r.register(
            "estimated_cost_per_hour",
            "Estimated running cost of the pool in dollars per hour",
            self.estimated_cost_per_hour.clone(),
        );
        r.register(
            "signal_value",
            "Last value of each demand signal",
            self.signal_value.clone(),
        );
        r.register(
            "signal_stale",
            "1 while a demand signal is missing or stale (scale-down holds)",
            self.signal_stale.clone(),
        );
        r.register(
            "scale_actions",
            "Scale actions executed, by direction and reason",
            self.scale_actions.clone(),
        );
        r.register(
            "shadow_actions",
            "Shadow mode (dry_run): actions the plan would have taken, by pool and kind",
            self.shadow_actions.clone(),
        );
        r.register(
            "decisions",
            "Decisions of the last plan by outcome and reason",
            self.decisions.clone(),
        );
        r.register(
            "interruptions",
            "Spot interruptions, rebalance and scheduled-change events handled",
            self.interruptions.clone(),
        );
        r.register(
            "launch_failures",
            "Launches the cloud accepted but did not fulfil (late stockouts, quota, timeouts), each counted once",
            self.launch_failures.clone(),
        );
        r.register(
            "provider_errors",
            "Cloud API errors by call and kind",
            self.provider_errors.clone(),
        );
        r.register(
            "drains_in_progress",
            "Nodes being drained per pool",
            self.drains_in_progress.clone(),
        );
        r.register(
            "deregister_failures",
            "Drain steps on which a VM could not be deregistered (it is kept, not terminated)",
            self.deregister_failures.clone(),
        );
        r.register(
            "drains_abandoned",
            "Drains given up because deregistration kept failing (the VM stays in service)",
            self.drains_abandoned.clone(),
        );
        r.register(
            "plan_duration_seconds",
            "Time the pure planner took per tick",
            self.plan_duration_seconds.clone(),
        );
        r.register("ticks", "Controller ticks run", self.ticks.clone());
        r.register(
            "ticks_held",
            "Ticks that took no action because observation failed",
            self.ticks_held.clone(),
        );
        r.register(
            "last_tick_timestamp_seconds",
            "Unix time of the last completed tick",
            self.last_tick_timestamp_seconds.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
    }

    pub fn pool(pool: &str) -> PoolLabels {
        PoolLabels {
            pool: pool.to_owned(),
        }
    }

    /// Drop the gauges that describe the fleet as the last plan saw it (pools, signals,
    /// decisions). A replica that is not (or no longer) the leader exports none, so dashboards
    /// that sum over replicas count the fleet once and never a standby's stale view. Counters
    /// stay: they are this process's own history.
    pub fn clear_fleet_gauges(&self) {
        self.pool_desired_nodes.clear();
        self.pool_ready_nodes.clear();
        self.pool_in_flight_nodes.clear();
        self.pool_warm_instances.clear();
        self.pool_pending_pods.clear();
        self.pool_wanted_replicas.clear();
        self.pool_forecast_replicas.clear();
        self.estimated_cost_per_hour.clear();
        self.signal_value.clear();
        self.signal_stale.clear();
        self.decisions.clear();
        self.drains_in_progress.clear();
    }
}

#[cfg(test)]
mod fleet_gauge_tests {
    use super::*;

    #[test]
    fn a_replica_that_stops_leading_exports_no_fleet_gauges() {
        let m = Metrics::default();
        let mut r = Registry::default();
        m.register(&mut r);
        m.pool_desired_nodes
            .get_or_create(&Metrics::pool("p"))
            .set(3);
        m.ticks.inc();
        let text = |r: &Registry| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, r).unwrap();
            s
        };
        assert!(text(&r).contains("gpupool_pool_desired_nodes{pool=\"p\"} 3"));
        m.clear_fleet_gauges();
        let t = text(&r);
        assert!(!t.contains("gpupool_pool_desired_nodes{"), "{t}");
        assert!(t.contains("gpupool_ticks_total 1"), "counters stay: {t}");
    }
}

/// Render a registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    prometheus_client::encoding::text::encode(&mut out, registry).expect("encoding to a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_prefix_and_labels() {
        let m = Metrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        m.pool_desired_nodes
            .get_or_create(&Metrics::pool("llama"))
            .set(3);
        m.scale_actions
            .get_or_create(&ActionLabels {
                pool: "llama".into(),
                direction: "up".into(),
                reason: "pending_pods".into(),
            })
            .inc();
        let text = encode(&reg);
        assert!(
            text.contains("gpupool_pool_desired_nodes{pool=\"llama\"} 3"),
            "{text}"
        );
        assert!(text.contains(
            "gpupool_scale_actions_total{pool=\"llama\",direction=\"up\",reason=\"pending_pods\"} 1"
        ));
        assert!(text.contains("# TYPE gpupool_plan_duration_seconds histogram"));
    }

    /// Every `gpupool_*` series the shipped Grafana dashboard queries is one this registry
    /// exports (a renamed metric must not leave an empty panel behind).
    /// Every family gpupool exports, with each labelled family given a series so it renders.
    fn exported_families() -> Vec<String> {
        let m = Metrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        for f in [
            &m.pool_desired_nodes,
            &m.pool_ready_nodes,
            &m.pool_in_flight_nodes,
            &m.pool_warm_instances,
            &m.pool_pending_pods,
            &m.pool_wanted_replicas,
            &m.pool_forecast_replicas,
            &m.drains_in_progress,
        ] {
            drop(f.get_or_create(&PoolLabels::default()));
        }
        drop(
            m.estimated_cost_per_hour
                .get_or_create(&PoolLabels::default()),
        );
        drop(m.signal_value.get_or_create(&SignalLabels::default()));
        drop(m.signal_stale.get_or_create(&SignalLabels::default()));
        drop(m.scale_actions.get_or_create(&ActionLabels::default()));
        drop(m.decisions.get_or_create(&DecisionLabels::default()));
        drop(
            m.interruptions
                .get_or_create(&InterruptionLabels::default()),
        );
        drop(m.provider_errors.get_or_create(&ErrorLabels::default()));
        encode(&reg)
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// The `gpupool_*` names a text mentions.
    fn gpupool_names<'t>(
        lines: impl Iterator<Item = &'t str>,
    ) -> std::collections::BTreeSet<String> {
        let mut used = std::collections::BTreeSet::new();
        for line in lines {
            let mut rest = line;
            while let Some(i) = rest.find("gpupool_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                used.insert(name);
            }
        }
        used
    }

    /// Names in `used` that are no exported family (nor a counter's or histogram's series).
    fn unknown_metrics(used: &std::collections::BTreeSet<String>) -> Vec<&String> {
        let families = exported_families();
        let known = |n: &str| {
            families.iter().any(|f| f == n)
                || ["_total", "_bucket", "_sum", "_count"].iter().any(|s| {
                    n.strip_suffix(s)
                        .is_some_and(|b| families.iter().any(|f| f == b))
                })
        };
        used.iter().filter(|n| !known(n)).collect()
    }

    #[test]
    fn the_dashboard_queries_only_exported_metrics() {
        let dashboard = include_str!("../../deploy/grafana/gpupool.json");
        let used = gpupool_names(dashboard.lines());
        assert!(used.len() >= 10, "dashboard queries: {used:?}");
        let unknown = unknown_metrics(&used);
        assert!(
            unknown.is_empty(),
            "dashboard queries unknown metrics: {unknown:?}"
        );
        assert!(used.contains("gpupool_pool_forecast_replicas"));
    }

    /// Every metric the shipped alert rules use is one gpupool exports (deploy/prometheus; the
    /// Helm chart and the kustomize component carry the same groups, tests/manifests.sh).
    #[test]
    fn the_alert_rules_use_only_exported_metrics() {
        let rules = include_str!("../../deploy/prometheus/gpupool-rules.yaml");
        let used = gpupool_names(rules.lines().filter(|l| !l.trim_start().starts_with('#')));
        for want in [
            "gpupool_leader",
            "gpupool_signal_stale",
            "gpupool_ticks_held_total",
            "gpupool_decisions",
        ] {
            assert!(used.contains(want), "rules no longer use {want}: {used:?}");
        }
        let unknown = unknown_metrics(&used);
        assert!(
            unknown.is_empty(),
            "alert rules use unknown metrics: {unknown:?}"
        );
    }
}
