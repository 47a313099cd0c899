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

/// `kind`: `HeadroomKind::as_str` (running, warm), or [`SPOT_STANDBY_KIND`].
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HeadroomLabels {
    pub pool: String,
    pub kind: String,
}

/// `gpupool_pool_headroom_replicas{kind}` of the spot replicas a pool holds warm on standby.
pub const SPOT_STANDBY_KIND: &str = "spot_standby";

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

/// One provider call (the `NodeGroupProvider` method's name).
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub call: String,
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

/// `gpupool_build_info`'s labels: what is running (the same facts as `gpupool --version`).
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildInfoLabels {
    pub version: String,
    pub commit: String,
    pub features: String,
}

impl BuildInfoLabels {
    /// This binary's version, commit and cargo features (set by build.rs).
    pub fn this_build() -> BuildInfoLabels {
        BuildInfoLabels {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: env!("GPUPOOL_GIT_COMMIT").to_owned(),
            features: env!("GPUPOOL_FEATURES").to_owned(),
        }
    }
}

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
    /// Nodes whose price is unknown in their region (not in `estimated_cost_per_hour`).
    pub pool_unpriced_nodes: Family<PoolLabels, Gauge>,
    /// With an `slo`: standing headroom held (replicas), by kind.
    pub pool_headroom_replicas: Family<HeadroomLabels, Gauge>,
    /// With an `slo`: the measured attainment (absent while unknown).
    pub pool_slo_attainment: Family<PoolLabels, FGauge>,
    /// With an `slo`: the decayed mean of the readings over the last hours, the long window
    /// feedback relaxes against (absent while unknown).
    pub pool_slo_attainment_long: Family<PoolLabels, FGauge>,
    /// With an `slo`: its `attainment` target, beside the measured ones so that an alert can
    /// compare them (the error budget is `1 − target`).
    pub pool_slo_target: Family<PoolLabels, FGauge>,
    pub signal_value: Family<SignalLabels, FGauge>,
    pub signal_stale: Family<SignalLabels, Gauge>,
    pub scale_actions: Family<ActionLabels, Counter>,
    /// Shadow mode (`dry_run`): actions planned and not taken.
    pub shadow_actions: Family<ShadowLabels, Counter>,
    pub decisions: Family<DecisionLabels, Gauge>,
    pub interruptions: Family<InterruptionLabels, Counter>,
    pub launch_failures: Family<LaunchFailureLabels, Counter>,
    pub provider_errors: Family<ErrorLabels, Counter>,
    /// Latency of every provider call (`Instrumented`), by call.
    pub provider_call_duration_seconds: Family<CallLabels, Histogram, fn() -> Histogram>,
    pub drains_in_progress: Family<PoolLabels, Gauge>,
    /// VM-only: drain ticks on which the instance could not be deregistered (kept serving).
    pub deregister_failures: Family<PoolLabels, Counter>,
    /// VM-only: drains given up because deregistration kept failing; the VM was kept.
    pub drains_abandoned: Family<PoolLabels, Counter>,
    /// Drained spot instances left to the cloud's reclaim (AWS: detached with a decrement, not
    /// billed when reclaimed within their first hour) instead of terminated.
    pub spot_left_to_reclaim: Family<PoolLabels, Counter>,
    /// Instances left to a reclaim that did not come, terminated by the sweep.
    pub spot_release_swept: Counter,
    pub plan_duration_seconds: Histogram,
    pub ticks: Counter,
    pub ticks_held: Counter,
    pub last_tick_timestamp_seconds: FGauge,
    pub leader: Gauge,
    /// Always 1, labelled with the build (`version`, `commit`, `features`): the usual
    /// `*_build_info` idiom, so dashboards can join on it and a mixed rollout shows.
    pub build_info: Family<BuildInfoLabels, Gauge>,
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
            pool_unpriced_nodes: Family::default(),
            pool_headroom_replicas: Family::default(),
            pool_slo_attainment: Family::default(),
            pool_slo_attainment_long: Family::default(),
            pool_slo_target: Family::default(),
            signal_value: Family::default(),
            signal_stale: Family::default(),
            scale_actions: Family::default(),
            shadow_actions: Family::default(),
            decisions: Family::default(),
            interruptions: Family::default(),
            launch_failures: Family::default(),
            provider_errors: Family::default(),
            provider_call_duration_seconds: Family::new_with_constructor(call_duration_histogram),
            drains_in_progress: Family::default(),
            deregister_failures: Family::default(),
            drains_abandoned: Family::default(),
            spot_left_to_reclaim: Family::default(),
            spot_release_swept: Counter::default(),
            // 50 µs … ~1.6 s: planner latency spans that range from tiny pools to 50k pods.
            plan_duration_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            ticks: Counter::default(),
            ticks_held: Counter::default(),
            last_tick_timestamp_seconds: FGauge::default(),
            leader: Gauge::default(),
            build_info: Family::default(),
        }
    }
}

/// 5 ms … ~41 s: a cloud API call takes tens to hundreds of milliseconds, and the AWS and GCP
/// clients give up after their 20 s per-call timeout (`api_timeout_s`).
fn call_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
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
            "pool_headroom_replicas",
            "Standing headroom a pool with an slo holds: spare running replicas (kind=running) and replicas in its warm pool (kind=warm); spot replicas held warm against a reclaim (kind=spot_standby)",
            self.pool_headroom_replicas.clone(),
        );
        r.register(
            "pool_slo_attainment",
            "Fraction of recent requests that met the pool's slo.queue_wait_s, as measured (absent while unknown)",
            self.pool_slo_attainment.clone(),
        );
        r.register(
            "pool_slo_attainment_long",
            "The pool's measured attainment averaged over the last hours (readings decayed with a 6-h half-life): the long window SLO feedback relaxes only while it meets the target (absent while unknown)",
            self.pool_slo_attainment_long.clone(),
        );
        r.register(
            "pool_slo_target",
            "The pool's slo.attainment target, to compare the measured attainments with (1 − target is the error budget)",
            self.pool_slo_target.clone(),
        );
        r.register(
            "estimated_cost_per_hour",
            "Estimated running cost of the pool in dollars per hour",
            self.estimated_cost_per_hour.clone(),
        );
        r.register(
            "pool_unpriced_nodes",
            "Nodes of the pool (running and planned) whose hourly price is unknown in their region; not counted in estimated_cost_per_hour",
            self.pool_unpriced_nodes.clone(),
        );
        self.register_controller(r);
        self.register_build_and_process(registry);
    }

    /// Signals, actions, decisions, errors, drains and the loop itself.
    fn register_controller(&self, r: &mut Registry) {
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
            "provider_call_duration_seconds",
            "Latency of each cloud API call, by call",
            self.provider_call_duration_seconds.clone(),
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
            "spot_left_to_reclaim",
            "Drained spot instances left to the cloud's reclaim (detached with a decrement; AWS bills none of a reclaim within an instance's first hour) instead of terminated",
            self.spot_left_to_reclaim.clone(),
        );
        r.register(
            "spot_release_swept",
            "Instances left to a spot reclaim that had not come by the notice's deadline plus the grace, terminated",
            self.spot_release_swept.clone(),
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

    /// `gpupool_build_info` and the standard unprefixed `process_*` families every Prometheus
    /// client library exports (prometheus-client has no process collector, so gpupool reads
    /// /proc itself).
    fn register_build_and_process(&self, registry: &mut Registry) {
        self.build_info
            .get_or_create(&BuildInfoLabels::this_build())
            .set(1);
        registry.sub_registry_with_prefix("gpupool").register(
            "build_info",
            "Always 1; the labels say which gpupool build runs (version, commit, features)",
            self.build_info.clone(),
        );
        #[cfg(target_os = "linux")]
        registry.register_collector(Box::new(process::ProcessCollector));
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
        self.pool_unpriced_nodes.clear();
        self.pool_headroom_replicas.clear();
        self.pool_slo_attainment.clear();
        self.pool_slo_attainment_long.clear();
        self.pool_slo_target.clear();
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

/// Process metrics from `/proc/self` (Linux only; elsewhere the families are absent, never 0):
/// `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
/// `process_start_time_seconds` — the names and meanings of the Go client's process collector
/// (prometheus/client_golang `process_collector.go`), so the usual dashboards work. Read at
/// scrape time; a file that cannot be read or parsed leaves its families out of that scrape.
#[cfg(target_os = "linux")]
pub mod process {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    /// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ). Reading it needs `sysconf`, i.e.
    /// libc and `unsafe`; it is 100 on every Linux architecture in use, which is what
    /// prometheus/procfs assumes too (`proc_stat.go`: "USER_HZ is actually hardcoded to 100 on
    /// all Go-supported platforms").
    const USER_HZ: f64 = 100.0;

    /// What `/proc/self/stat` tells (proc(5): fields 14 utime, 15 stime, 22 starttime, 23 vsize).
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Stat {
        pub cpu_seconds: f64,
        /// Seconds after boot the process started.
        pub start_after_boot_s: f64,
        pub virtual_bytes: f64,
    }

    /// Parse `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may contain
    /// spaces and `)`, so fields are counted after the *last* `)`.
    pub fn parse_stat(text: &str) -> Option<Stat> {
        let rest = &text[text.rfind(')')? + 1..];
        // rest starts at field 3 (state): field n is index n - 3.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |n: usize| f.get(n - 3)?.parse::<f64>().ok();
        Some(Stat {
            cpu_seconds: (num(14)? + num(15)?) / USER_HZ,
            start_after_boot_s: num(22)? / USER_HZ,
            virtual_bytes: num(23)?,
        })
    }

    /// `VmRSS` from `/proc/<pid>/status`, in bytes (the file says kB, meaning KiB).
    pub fn parse_rss_bytes(status: &str) -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024.0)
    }

    /// `btime` (boot time, Unix seconds) from `/proc/stat`.
    pub fn parse_btime(stat: &str) -> Option<f64> {
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The soft `Max open files` limit from `/proc/<pid>/limits` (`unlimited` → absent).
    pub fn parse_max_fds(limits: &str) -> Option<f64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    #[derive(Debug)]
    pub struct ProcessCollector;

    fn gauge(
        e: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        v: Option<f64>,
    ) -> std::fmt::Result {
        let Some(v) = v else { return Ok(()) };
        let g = ConstGauge::new(v);
        g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
    }

    impl Collector for ProcessCollector {
        fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let read = |p: &str| std::fs::read_to_string(p).ok();
            let stat = read("/proc/self/stat").as_deref().and_then(parse_stat);
            if let Some(s) = stat {
                let c = ConstCounter::new(s.cpu_seconds);
                c.encode(e.encode_descriptor(
                    "process_cpu_seconds",
                    "Total user and system CPU time spent in seconds",
                    None,
                    c.metric_type(),
                )?)?;
            }
            gauge(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.map(|s| s.virtual_bytes),
            )?;
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                read("/proc/self/status")
                    .as_deref()
                    .and_then(parse_rss_bytes),
            )?;
            let btime = read("/proc/stat").as_deref().and_then(parse_btime);
            gauge(
                &mut e,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                stat.zip(btime).map(|(s, b)| b + s.start_after_boot_s),
            )?;
            let fds = std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64);
            gauge(
                &mut e,
                "process_open_fds",
                "Number of open file descriptors",
                fds,
            )?;
            gauge(
                &mut e,
                "process_max_fds",
                "Maximum number of open file descriptors",
                read("/proc/self/limits").as_deref().and_then(parse_max_fds),
            )
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn proc_files_parse() {
            // A command name with a space and a parenthesis, as proc(5) allows.
            let stat = "4242 (gpu pool) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 123456 987654321 5000 18446744073709551615";
            let s = parse_stat(stat).unwrap();
            assert_eq!(s.cpu_seconds, 3.0, "(250 + 50) ticks / 100");
            assert_eq!(s.start_after_boot_s, 1234.56);
            assert_eq!(s.virtual_bytes, 987_654_321.0);
            assert_eq!(parse_stat("garbage"), None);
            assert_eq!(
                parse_rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n"),
                Some(2_097_152.0)
            );
            assert_eq!(parse_btime("cpu 1 2\nbtime 1700000000\n"), Some(1.7e9));
            let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
            assert_eq!(parse_max_fds(limits), Some(1024.0));
            assert_eq!(
                parse_max_fds(
                    "Max open files            unlimited            unlimited            files\n"
                ),
                None
            );
        }

        #[test]
        fn this_process_is_described() {
            let mut r = prometheus_client::registry::Registry::default();
            r.register_collector(Box::new(ProcessCollector));
            let text = super::super::encode(&r);
            for name in [
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_open_fds ",
                "process_start_time_seconds ",
            ] {
                assert!(
                    text.lines().any(|l| l.starts_with(name)),
                    "{name} in {text}"
                );
            }
            let rss: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
                .unwrap()
                .parse()
                .unwrap();
            assert!(rss > 1e6, "a test process holds more than 1 MB: {rss}");
        }
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
        let b = BuildInfoLabels::this_build();
        assert!(
            text.contains(&format!(
                "gpupool_build_info{{version=\"{}\",commit=\"{}\",features=\"{}\"}} 1",
                b.version, b.commit, b.features
            )),
            "{text}"
        );
        assert!(!b.commit.is_empty() && !b.features.is_empty());
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
            &m.pool_unpriced_nodes,
        ] {
            drop(f.get_or_create(&PoolLabels::default()));
        }
        for f in [
            &m.estimated_cost_per_hour,
            &m.pool_slo_attainment,
            &m.pool_slo_attainment_long,
            &m.pool_slo_target,
        ] {
            drop(f.get_or_create(&PoolLabels::default()));
        }
        drop(
            m.pool_headroom_replicas
                .get_or_create(&HeadroomLabels::default()),
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
        drop(
            m.provider_call_duration_seconds
                .get_or_create(&CallLabels::default()),
        );
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
        for slo in ["gpupool_pool_slo_attainment", "gpupool_pool_slo_target"] {
            assert!(used.contains(slo), "the dashboard no longer shows {slo}");
        }
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
            "gpupool_pool_slo_attainment",
            "gpupool_pool_slo_attainment_long",
            "gpupool_pool_slo_target",
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
