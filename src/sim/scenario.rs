//! A scenario is a trace and its time slice, the GPU type and replica model, the cold-start
//! and spot models, the SLO, and the gpupool `Config` (provider: sim) it runs with. The shipped
//! scenarios are embedded in the binary, so `--scenario quick` works from any directory; a path
//! to a YAML file works too.

use super::SimError;
use super::data::{self, AvailabilitySource, TraceSource};
use super::timing::ColdStartSpec;
use super::trace::{FileFormat, Location, RowFilter, TraceFile, TraceFormat, Window, per_minute};
use super::world::{Cloud, Faults};
use crate::config::Config;
use crate::model::{CapacityType, PoolName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The scenarios shipped in `scenarios/`, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("quick", include_str!("../../scenarios/quick.yaml")),
    ("s1-bursty", include_str!("../../scenarios/s1-bursty.yaml")),
    ("s1-conv", include_str!("../../scenarios/s1-conv.yaml")),
    (
        "s1-diurnal",
        include_str!("../../scenarios/s1-diurnal.yaml"),
    ),
    ("s2-spot", include_str!("../../scenarios/s2-spot.yaml")),
    (
        "s3-servegen",
        include_str!("../../scenarios/s3-servegen.yaml"),
    ),
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// How the simulated groups report a stockout: `aws` (desired stays raised, a failed
    /// scaling activity, no instance) or `gcp` (a VM stuck CREATING with `lastAttempt.errors`).
    /// When absent, inferred from the groups' zone names (see [`ScenarioFile::cloud`]).
    #[serde(default)]
    pub cloud: Option<Cloud>,
    pub trace: TraceSlice,
    pub replica: ReplicaModel,
    #[serde(default)]
    pub cold_start: ColdStartSpec,
    #[serde(default)]
    pub spot: SpotSpec,
    pub groups: Vec<GroupFile>,
    #[serde(default)]
    pub slo: Slo,
    #[serde(default)]
    pub signals: SignalSim,
    #[serde(default)]
    pub faults: Faults,
    #[serde(default)]
    pub oracle: OracleSpec,
    #[serde(default)]
    pub baselines: BaselineSpec,
    /// The gpupool configuration the `gpupool` policy runs with (validated like any config).
    pub gpupool: serde_yaml_ng::Value,
}

fn d_seed() -> u64 {
    1
}

impl ScenarioFile {
    /// The scenario's cloud: `cloud:` when given, else the flavour its zones are named in —
    /// AWS availability zones end in a letter right after the region's number (`us-west-2a`),
    /// GCP zones in `-<letter>` after it (`us-central1-b`). `None` when the zones mix or match
    /// neither (the scenario must then say `cloud:`).
    pub fn cloud(&self) -> Option<Cloud> {
        if self.cloud.is_some() {
            return self.cloud;
        }
        let flavour = |z: &str| {
            let b = z.as_bytes();
            match b {
                [.., d, l] if d.is_ascii_digit() && l.is_ascii_lowercase() => Some(Cloud::Aws),
                [.., d, b'-', l] if d.is_ascii_digit() && l.is_ascii_lowercase() => {
                    Some(Cloud::Gcp)
                }
                _ => None,
            }
        };
        let mut found = None;
        for z in self.groups.iter().flat_map(|g| &g.zones) {
            let f = flavour(z)?;
            if found.is_some_and(|x| x != f) {
                return None;
            }
            found = Some(f);
        }
        found
    }
}

/// The trace a scenario replays and the slice of it: a built-in `source:`, or a `file:` with
/// its `format:` (see [`super::trace`] for the formats and README "Replaying your own
/// traffic").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSlice {
    /// A built-in trace: `azure-code`, `azure-conv`, `alibaba-diffusion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TraceSource>,
    /// A trace file, relative to the scenario file (or absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The file's format: `azure`, `mooncake`, `burstgpt` or `per-minute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TraceFormat>,
    /// per-minute: the column holding each window's request count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_column: Option<String>,
    /// per-minute: seconds each row covers (60 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<f64>,
    /// CSV formats: only rows whose `column` equals `equals` are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<RowFilter>,
    /// per-minute: multiplies every count (1 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// per-minute: the most requests a minute (after `scale`); the excess is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_minute: Option<f64>,
    /// per-minute: the built-in trace token sizes are drawn from (seeded by `seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_like: Option<TraceSource>,
    /// Seconds from the trace's zero where the replay starts: its first request for a built-in
    /// or an Azure file, the timestamps' own zero for Mooncake and BurstGPT, the first
    /// window's start for per-minute.
    #[serde(default)]
    pub start_s: f64,
    /// Length of the replay; the rest of the trace when absent.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// The directory `file` is relative to: the scenario file's. `None` for a shipped
    /// scenario (or one parsed from text), whose `../data/traces/…` files are read from the
    /// binary ([`data::shipped_file`]); other relative paths are then read from the working
    /// directory.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// What a scenario's `trace:` names, checked.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceInput {
    Builtin(TraceSource),
    File(TraceFile),
}

/// The keys only a `per-minute` file reads.
const PER_MINUTE_KEYS: [&str; 5] = [
    "count_column",
    "window_s",
    "scale",
    "max_per_minute",
    "tokens_like",
];

impl TraceSlice {
    /// The replayed part, in seconds from the trace's zero.
    pub fn window(&self) -> Window {
        Window {
            start_s: self.start_s,
            end_s: self.duration_s.map(|d| self.start_s + d),
        }
    }

    /// Which of the file-only keys are set, by name.
    fn file_keys_set(&self) -> Vec<&'static str> {
        let set = [
            ("format", self.format.is_some()),
            ("filter", self.filter.is_some()),
            ("count_column", self.count_column.is_some()),
            ("window_s", self.window_s.is_some()),
            ("scale", self.scale.is_some()),
            ("max_per_minute", self.max_per_minute.is_some()),
            ("tokens_like", self.tokens_like.is_some()),
        ];
        set.iter().filter(|(_, on)| *on).map(|(k, _)| *k).collect()
    }

    /// The trace this names, or the first key that is wrong (for scenario `origin`).
    pub fn input(&self, origin: &str) -> Result<TraceInput, SimError> {
        let bad = |key: &str, value: String, fix: &str| SimError::InvalidValue {
            scenario: origin.to_owned(),
            field: format!("trace.{key}"),
            value,
            fix: fix.to_owned(),
        };
        let file = match (&self.source, &self.file) {
            (Some(_), Some(f)) => {
                return Err(bad(
                    "file",
                    f.display().to_string(),
                    "give either source: (a built-in trace) or file: (with format:), not both",
                ));
            }
            (None, None) => {
                return Err(bad(
                    "source",
                    "(absent)".into(),
                    "name a built-in trace (source: azure-code, azure-conv or \
                     alibaba-diffusion) or a file: with its format:",
                ));
            }
            (Some(src), None) => {
                if let Some(k) = self.file_keys_set().first() {
                    return Err(bad(
                        k,
                        "(set)".into(),
                        "only for a file: trace, not a source:",
                    ));
                }
                return Ok(TraceInput::Builtin(*src));
            }
            (None, Some(f)) => f,
        };
        let format = self.format.ok_or_else(|| {
            bad(
                "format",
                "(absent)".into(),
                "say how to read the file: azure, mooncake, burstgpt or per-minute",
            )
        })?;
        if format != TraceFormat::PerMinute {
            let set = self.file_keys_set();
            if let Some(k) = PER_MINUTE_KEYS.iter().find(|k| set.contains(k)) {
                return Err(bad(k, "(set)".into(), "only for format: per-minute"));
            }
        }
        if format == TraceFormat::Mooncake && self.filter.is_some() {
            return Err(bad(
                "filter",
                "(set)".into(),
                "only for the CSV formats (azure, burstgpt, per-minute)",
            ));
        }
        let file_format = match format {
            TraceFormat::Azure => FileFormat::Azure,
            TraceFormat::Mooncake => FileFormat::Mooncake,
            TraceFormat::Burstgpt => FileFormat::Burstgpt,
            TraceFormat::PerMinute => FileFormat::PerMinute(self.per_minute(&bad)?),
        };
        Ok(TraceInput::File(TraceFile {
            location: self.location(file),
            format: file_format,
            filter: self.filter.clone(),
        }))
    }

    /// The per-minute options, checked.
    fn per_minute(
        &self,
        bad: &dyn Fn(&str, String, &str) -> SimError,
    ) -> Result<per_minute::Spec, SimError> {
        let count_column = self.count_column.clone().ok_or_else(|| {
            bad(
                "count_column",
                "(absent)".into(),
                "name the column holding each window's request count",
            )
        })?;
        let tokens_like = self.tokens_like.ok_or_else(|| {
            bad(
                "tokens_like",
                "(absent)".into(),
                "name the built-in trace to draw token sizes from: azure-code, azure-conv \
                 or alibaba-diffusion",
            )
        })?;
        let window_s = self.window_s.unwrap_or(60.0);
        if !(window_s.is_finite() && (1.0..=86_400.0).contains(&window_s)) {
            return Err(bad(
                "window_s",
                window_s.to_string(),
                "seconds each row covers, 1..=86400 (60 by default)",
            ));
        }
        let scale = self.scale.unwrap_or(1.0);
        if !(scale.is_finite() && scale > 0.0 && scale <= 1e6) {
            return Err(bad(
                "scale",
                scale.to_string(),
                "a factor in (0, 1000000] on every count, 1 by default",
            ));
        }
        if let Some(m) = self.max_per_minute
            && !(m.is_finite() && m > 0.0 && m <= 1e9)
        {
            return Err(bad(
                "max_per_minute",
                m.to_string(),
                "requests a minute, > 0 and at most 1e9; omit it for no cap",
            ));
        }
        Ok(per_minute::Spec {
            count_column,
            window_s,
            scale,
            max_per_minute: self.max_per_minute,
            tokens_like,
        })
    }

    /// Where `file` is: beside the scenario file, or shipped in the binary.
    fn location(&self, file: &Path) -> Location {
        match &self.base_dir {
            Some(dir) => Location::Disk(dir.join(file)),
            None => match shipped_path(file).and_then(|p| data::shipped_file(&p).map(|t| (p, t))) {
                Some((path, text)) => Location::Shipped { path, text },
                None => Location::Disk(file.to_path_buf()),
            },
        }
    }
}

/// The repository path of `file` named by a shipped scenario (`scenarios/NAME.yaml`):
/// `../data/traces/x.csv` is `data/traces/x.csv`.
fn shipped_path(file: &Path) -> Option<String> {
    let mut parts = vec!["scenarios"];
    for c in file.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaModel {
    /// AWS instance type one replica runs on (price and GPU from `data/aws`).
    pub instance_type: String,
    /// Requests one replica serves at once.
    pub concurrency: u32,
    /// Prompt tokens per second; defaults by GPU model (see `timing::default_throughput`).
    #[serde(default)]
    pub prefill_tokens_per_s: Option<f64>,
    /// Output tokens per second per sequence; defaults by GPU model.
    #[serde(default)]
    pub decode_tokens_per_s: Option<f64>,
    /// Multiplies the trace's own execution time, where it has one (a faster GPU than the
    /// trace's, for example). 1 by default.
    #[serde(default = "d_one")]
    pub exec_time_scale: f64,
}

fn d_one() -> f64 {
    1.0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotSpec {
    /// Seconds between the interruption notice and the reclaim. Unset: the scenario's cloud's
    /// ([`SpotSpec::notice_for`]).
    #[serde(default)]
    pub notice_s: Option<f64>,
    /// Replay a real availability trace instead of the advisor hazard rate.
    #[serde(default)]
    pub availability_trace: Option<AvailabilitySource>,
    /// First tick of the availability trace the replay uses.
    #[serde(default)]
    pub start_tick: usize,
    /// Spot price per hour; when absent, on-demand × (1 − advisor savings %).
    #[serde(default)]
    pub price_per_hour: Option<f64>,
}

impl SpotSpec {
    /// The notice a reclaim comes with: `notice_s` when set, else the cloud's, the one the
    /// production controller assumes (`config::AWS_SPOT_NOTICE`, `config::GCP_SPOT_NOTICE`).
    pub fn notice_for(&self, cloud: Cloud) -> f64 {
        let cloud_notice = match cloud {
            Cloud::Aws => crate::config::AWS_SPOT_NOTICE,
            Cloud::Gcp => crate::config::GCP_SPOT_NOTICE,
        };
        self.notice_s.unwrap_or(cloud_notice.as_secs_f64())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupFile {
    pub id: String,
    pub capacity_type: CapacityType,
    pub zones: Vec<String>,
    #[serde(default)]
    pub min_size: u32,
    pub max_size: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// A request meets the SLO when it waited at most this long in the queue.
    #[serde(default = "d_slo")]
    pub queue_wait_s: f64,
    /// Share of requests that must meet `queue_wait_s`: the target a policy is judged
    /// against (and a tuned baseline must reach).
    #[serde(default = "d_attainment")]
    pub attainment: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            queue_wait_s: d_slo(),
            attainment: d_attainment(),
        }
    }
}

fn d_slo() -> f64 {
    1.0
}

fn d_attainment() -> f64 {
    0.99
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSim {
    /// Prometheus scrape interval: the controller sees the value of the last scrape.
    #[serde(default = "d_scrape")]
    pub scrape_interval_s: f64,
}

impl SignalSim {
    /// The scrape interval in milliseconds (at least 1).
    pub fn scrape_ms(&self) -> i64 {
        (self.scrape_interval_s * 1000.0).max(1.0) as i64
    }
}

impl Default for SignalSim {
    fn default() -> Self {
        SignalSim {
            scrape_interval_s: d_scrape(),
        }
    }
}

fn d_scrape() -> f64 {
    15.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OracleSpec {
    /// Tick aggregation of the oracle's demand and ILP.
    #[serde(default = "d_bucket")]
    pub bucket_s: f64,
}

impl Default for OracleSpec {
    fn default() -> Self {
        OracleSpec {
            bucket_s: d_bucket(),
        }
    }
}

fn d_bucket() -> f64 {
    60.0
}

/// Parameters of the baselines: their documented defaults, the same for every scenario except
/// the replica bounds, which come from the pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    #[serde(default = "d_min_replicas")]
    pub min_replicas: u32,
}

impl Default for BaselineSpec {
    fn default() -> Self {
        BaselineSpec {
            min_replicas: d_min_replicas(),
        }
    }
}

fn d_min_replicas() -> u32 {
    1
}

/// A parsed scenario with its validated gpupool config.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub file: ScenarioFile,
    pub config: Config,
    /// The simulator's queue signals per pool, taken out of the `gpupool:` section (the
    /// production config has no such signal; see [`take_sim_keys`]).
    pub sim_signals: BTreeMap<PoolName, Vec<SimSignal>>,
}

impl Scenario {
    /// `name` of a shipped scenario, or a path to a YAML file.
    pub fn load(name_or_path: &str) -> Result<Scenario, SimError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(text, name_or_path);
        }
        let path = Path::new(name_or_path);
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| SimError::Scenario {
                scenario: name_or_path.to_owned(),
                message: e.to_string(),
            })?;
            // A trace `file:` is relative to the scenario file.
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            return Scenario::parse_in(&text, name_or_path, Some(dir));
        }
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        Err(SimError::Scenario {
            scenario: name_or_path.to_owned(),
            message: format!(
                "no such scenario or file; shipped scenarios: {}",
                names.join(", ")
            ),
        })
    }

    /// A scenario from its text; a relative trace `file:` is looked up among the shipped
    /// files, then in the working directory (see [`TraceSlice::base_dir`]).
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, SimError> {
        Scenario::parse_in(text, origin, None)
    }

    /// A scenario from its text, its trace `file:` relative to `base_dir`.
    pub fn parse_in(
        text: &str,
        origin: &str,
        base_dir: Option<PathBuf>,
    ) -> Result<Scenario, SimError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut file: ScenarioFile =
            serde_path_to_error::deserialize(de).map_err(|e| SimError::Scenario {
                scenario: origin.to_owned(),
                message: format!("{}: {}", e.path(), e.inner()),
            })?;
        file.trace.base_dir = base_dir;
        let mut gpupool = file.gpupool.clone();
        let sim_signals = take_sim_keys(&mut gpupool, origin)?;
        let cfg_text = serde_yaml_ng::to_string(&gpupool).map_err(|e| SimError::Scenario {
            scenario: origin.to_owned(),
            message: format!("gpupool: {e}"),
        })?;
        let fed: std::collections::BTreeSet<PoolName> = sim_signals.keys().cloned().collect();
        let config =
            Config::load_with_demand_from(&cfg_text, &fed).map_err(|e| SimError::Scenario {
                scenario: origin.to_owned(),
                message: format!("gpupool config: {e}"),
            })?;
        if config.pools.len() != 1 {
            return Err(SimError::Scenario {
                scenario: origin.to_owned(),
                message: "the simulator runs one pool per scenario".into(),
            });
        }
        validate(&file, origin)?;
        for s in sim_signals.values().flatten() {
            validate_sim_queue(&s.queue, &s.name, origin)?;
        }
        let max_nodes = config.pools[0].limits.max_nodes;
        if file.baselines.min_replicas > max_nodes {
            return Err(SimError::InvalidValue {
                scenario: origin.to_owned(),
                field: "baselines.min_replicas".into(),
                value: file.baselines.min_replicas.to_string(),
                fix: format!("must be ≤ the pool's limits.max_nodes ({max_nodes})"),
            });
        }
        Ok(Scenario {
            file,
            config,
            sim_signals,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Simulator-only keys of the `gpupool:` section. The production config schema (`config::raw`)
// refuses them with a message saying they belong here; a scenario's loader takes them out of
// its `gpupool:` section before the rest is loaded as a production config.

/// The simulator's queue, with KEDA arithmetic on the value `metric` selects: replicas =
/// ceil(value / `target_per_replica`) once the value exceeds `activation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimQueueSignal {
    pub target_per_replica: f64,
    #[serde(default)]
    pub activation: f64,
    /// Count requests being served too (concurrency-based scaling). `queue` metric only.
    #[serde(default = "d_true")]
    pub include_in_flight: bool,
    /// What the value is; `queue` by default.
    #[serde(default)]
    pub metric: SimQueueMetric,
    /// The rate window of the `offered_load` metric (Prometheus `rate(...[window])`), seconds.
    #[serde(default = "d_load_window")]
    pub window_s: f64,
}

fn d_load_window() -> f64 {
    60.0
}

/// The value a simulator queue signal reads, as a Prometheus query over a vLLM deployment would.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimQueueMetric {
    /// Requests waiting (`vllm:num_requests_waiting`), plus those running
    /// (`vllm:num_requests_running`) with `include_in_flight`. Grows with backlog: while
    /// replacements cold-start, every request that arrives adds to it.
    #[default]
    Queue,
    /// Concurrent requests the offered traffic needs, by Little's law: the arrival rate over
    /// `window_s` times the mean service time of the requests completed over it (a gateway's
    /// request counter × `vllm:request_inference_time_seconds` sum/count). It does not count
    /// backlog, so it stays put while capacity cold-starts; divide by a replica's concurrency
    /// (times a utilisation target) for replicas.
    OfferedLoad,
}

fn d_true() -> bool {
    true
}

/// One `sim_queue` signal of a scenario's pool, taken out of its `gpupool:` section: its name
/// (as written, else `sim-queue-<index>` with its index among the pool's signals as written)
/// and the queue it reads.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSignal {
    pub name: String,
    pub queue: SimQueueSignal,
}

/// The source keys of a production signal, in the order default names take their kind from
/// (`config::raw::RawSignal::sources`).
const PRODUCTION_SOURCES: [&str; 5] = ["prometheus", "cloudwatch", "sqs", "cron", "latency"];

/// The simulator's queue signals per pool, taken out of `gpupool` (and `sim:`, a seed the
/// simulator never read, the scenario's `seed:` being the one used: still accepted, dropped).
/// Signals left behind whose default name would shift with the removal get their old name
/// written in, so every signal keeps the name it had.
fn take_sim_keys(
    gpupool: &mut serde_yaml_ng::Value,
    origin: &str,
) -> Result<BTreeMap<PoolName, Vec<SimSignal>>, SimError> {
    let err = |at: String, message: String| SimError::Scenario {
        scenario: origin.to_owned(),
        message: format!("gpupool.{at}: {message}"),
    };
    let mut out = BTreeMap::new();
    let Some(root) = gpupool.as_mapping_mut() else {
        return Ok(out);
    };
    if let Some(sim) = root.remove("sim") {
        let seed: Result<SimSeed, _> = serde_yaml_ng::from_value(sim);
        seed.map_err(|e| err("sim".into(), e.to_string()))?;
    }
    let Some(pools) = root.get_mut("pools").and_then(|p| p.as_sequence_mut()) else {
        return Ok(out);
    };
    for (i, pool) in pools.iter_mut().enumerate() {
        let name = pool
            .get("name")
            .and_then(|n| n.as_str())
            .map(PoolName::from);
        let Some(signals) = pool.get_mut("signals").and_then(|s| s.as_sequence_mut()) else {
            continue;
        };
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for (j, entry) in std::mem::take(signals).into_iter().enumerate() {
            let at = format!("pools[{i}].signals[{j}]");
            match sim_signal(&entry, j).map_err(|m| err(at, m))? {
                Some(s) => taken.push(s),
                None => kept.push((j, entry)),
            }
        }
        for (j, mut entry) in kept {
            if !taken.is_empty()
                && let Some(m) = entry.as_mapping_mut()
                && !m.contains_key("name")
                && let Some(kind) = PRODUCTION_SOURCES.iter().find(|k| m.contains_key(**k))
            {
                m.insert("name".into(), format!("{kind}-{j}").into());
            }
            signals.push(entry);
        }
        if let (Some(name), false) = (name, taken.is_empty()) {
            out.insert(name, taken);
        }
    }
    Ok(out)
}

/// `gpupool.sim` as it was accepted: an optional seed, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read only to check its shape
struct SimSeed {
    #[serde(default)]
    seed: Option<u64>,
}

/// The entry at signal index `j` as a simulator signal, `None` when it is a production one.
fn sim_signal(entry: &serde_yaml_ng::Value, j: usize) -> Result<Option<SimSignal>, String> {
    let Some(q) = entry.get("sim_queue") else {
        return Ok(None);
    };
    let found = PRODUCTION_SOURCES
        .iter()
        .filter(|k| entry.get(**k).is_some())
        .count()
        + 1;
    if found != 1 {
        return Err(format!(
            "must have exactly one source (prometheus, cloudwatch, sqs, cron, latency, sim_queue), found {found}"
        ));
    }
    if let Some(m) = entry.as_mapping()
        && let Some(k) = m
            .keys()
            .find_map(|k| k.as_str().filter(|k| !["name", "sim_queue"].contains(k)))
    {
        return Err(format!("unknown key `{k}` next to sim_queue"));
    }
    let queue: SimQueueSignal = serde_path_to_error::deserialize(q.clone())
        .map_err(|e| format!("sim_queue.{}: {}", e.path(), e.inner()))?;
    let name = match entry.get("name") {
        None => format!("sim-queue-{j}"),
        Some(n) => n
            .as_str()
            .ok_or_else(|| "name: must be text".to_owned())?
            .to_owned(),
    };
    Ok(Some(SimSignal { name, queue }))
}

/// Longest replay the simulator accepts: a week of virtual time. Baselines step every virtual
/// second and the world samples every 5 s, so a week is ≈ 600,000 steps per policy; beyond
/// that a run is hours of CPU for no new information (split it into several scenarios).
pub const MAX_DURATION_S: f64 = 7.0 * 86_400.0;
/// Largest group the simulator builds (instances are simulated one by one).
pub const MAX_GROUP_SIZE: u32 = 10_000;
/// Most requests one replica serves at once.
pub const MAX_CONCURRENCY: u32 = 4_096;

/// One value check: `field` must satisfy `ok`, else the error names the field, the value and
/// the fix.
fn check(origin: &str, field: &str, value: f64, ok: bool, fix: &str) -> Result<(), SimError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(SimError::InvalidValue {
            scenario: origin.to_owned(),
            field: field.to_owned(),
            value: value.to_string(),
            fix: fix.to_owned(),
        })
    }
}

/// Range checks of the values the simulator computes with, at the edge: a zero oracle bucket
/// would divide by zero, a huge duration would run forever, a NaN would poison every figure.
fn validate(f: &ScenarioFile, origin: &str) -> Result<(), SimError> {
    let c = |field: &str, v: f64, ok: bool, fix: &str| check(origin, field, v, ok, fix);
    f.trace.input(origin)?;
    c(
        "oracle.bucket_s",
        f.oracle.bucket_s,
        (1.0..=3600.0).contains(&f.oracle.bucket_s),
        "the oracle's time bucket must be 1..=3600 s; 60 is the usual value",
    )?;
    c(
        "trace.start_s",
        f.trace.start_s,
        f.trace.start_s >= 0.0,
        "seconds from the trace's first request, ≥ 0",
    )?;
    if let Some(d) = f.trace.duration_s {
        c(
            "trace.duration_s",
            d,
            d > 0.0 && d <= MAX_DURATION_S,
            "must be > 0 and at most 604800 (7 days); omit it to replay the rest of the trace",
        )?;
    }
    let r = &f.replica;
    c(
        "replica.concurrency",
        f64::from(r.concurrency),
        (1..=MAX_CONCURRENCY).contains(&r.concurrency),
        "requests one replica serves at once, 1..=4096 (vLLM's max_num_seqs)",
    )?;
    c(
        "replica.exec_time_scale",
        r.exec_time_scale,
        r.exec_time_scale > 0.0 && r.exec_time_scale <= 1000.0,
        "a factor in (0, 1000], 1 by default",
    )?;
    for (field, v) in [
        ("replica.prefill_tokens_per_s", r.prefill_tokens_per_s),
        ("replica.decode_tokens_per_s", r.decode_tokens_per_s),
    ] {
        if let Some(v) = v {
            c(
                field,
                v,
                v > 0.0,
                "tokens per second, > 0; omit it for the GPU model's default",
            )?;
        }
    }
    validate_models(f, origin)?;
    validate_groups(f, origin)
}

/// The cold-start, spot, SLO, scrape and fault models' values.
fn validate_models(f: &ScenarioFile, origin: &str) -> Result<(), SimError> {
    let c = |field: &str, v: f64, ok: bool, fix: &str| check(origin, field, v, ok, fix);
    let cs = &f.cold_start;
    for (field, v) in [
        ("cold_start.boot_s", cs.boot_s),
        ("cold_start.image_pull_s", cs.image_pull_s),
        ("cold_start.warm_min_s", cs.warm_min_s),
        ("cold_start.warm_max_s", cs.warm_max_s),
        ("cold_start.cache_disk_gb", cs.cache_disk_gb),
    ] {
        c(
            field,
            v,
            (0.0..=86_400.0).contains(&v),
            "seconds (or GB), 0..=86400",
        )?;
    }
    c(
        "cold_start.model_load_scale",
        cs.model_load_scale,
        cs.model_load_scale > 0.0 && cs.model_load_scale <= 100.0,
        "a factor in (0, 100], 1 by default",
    )?;
    c(
        "cold_start.warm_max_s",
        cs.warm_max_s,
        cs.warm_max_s >= cs.warm_min_s,
        "must be ≥ cold_start.warm_min_s",
    )?;
    c(
        "cold_start.cache_disk_mib_s",
        cs.cache_disk_mib_s,
        (1.0..=10_000.0).contains(&cs.cache_disk_mib_s),
        "the cache disk's provisioned throughput in MiB/s, 1..=10000 (gp3: 125 free, up to 2000)",
    )?;
    if let Some(read_s) = cs.model_read_s() {
        c(
            "cold_start.warm_min_s",
            cs.warm_min_s,
            read_s <= cs.warm_min_s,
            &format!(
                "a warm start reads the model from its cache disk: {read_s:.0} s at \
                 cold_start.cache_disk_mib_s = {} — raise the throughput or warm_min_s",
                cs.cache_disk_mib_s
            ),
        )?;
    }
    if let Some(n) = f.spot.notice_s {
        c(
            "spot.notice_s",
            n,
            (0.0..=3600.0).contains(&n),
            "seconds from notice to reclaim: 120 on AWS, 30 on GCP (the default for the cloud)",
        )?;
    }
    if let Some(p) = f.spot.price_per_hour {
        c(
            "spot.price_per_hour",
            p,
            p > 0.0 && p <= 1000.0,
            "dollars per hour, > 0",
        )?;
    }
    c(
        "slo.queue_wait_s",
        f.slo.queue_wait_s,
        (0.0..=86_400.0).contains(&f.slo.queue_wait_s),
        "seconds a request may wait in the queue, ≥ 0",
    )?;
    c(
        "signals.scrape_interval_s",
        f.signals.scrape_interval_s,
        (1.0..=3600.0).contains(&f.signals.scrape_interval_s),
        "Prometheus's scrape interval, 1..=3600 s; 15 is usual",
    )?;
    for (field, v) in [
        ("faults.stockout_prob", f.faults.stockout_prob),
        ("faults.throttle_prob", f.faults.throttle_prob),
    ] {
        c(field, v, (0.0..=1.0).contains(&v), "a probability in 0..=1")?;
    }
    Ok(())
}

/// The groups, and the cloud their zones name.
fn validate_groups(f: &ScenarioFile, origin: &str) -> Result<(), SimError> {
    let c = |field: &str, v: f64, ok: bool, fix: &str| check(origin, field, v, ok, fix);
    c(
        "groups",
        f.groups.len() as f64,
        !f.groups.is_empty(),
        "at least one group is needed",
    )?;
    for (k, g) in f.groups.iter().enumerate() {
        c(
            &format!("groups[{k}].max_size"),
            f64::from(g.max_size),
            g.max_size <= MAX_GROUP_SIZE,
            "at most 10000",
        )?;
        c(
            &format!("groups[{k}].min_size"),
            f64::from(g.min_size),
            g.min_size <= g.max_size,
            "must be ≤ max_size",
        )?;
        c(
            &format!("groups[{k}].zones"),
            g.zones.len() as f64,
            !g.zones.is_empty(),
            "list at least one zone",
        )?;
    }
    if f.cloud().is_none() {
        return Err(SimError::InvalidValue {
            scenario: origin.to_owned(),
            field: "cloud".into(),
            value: "(absent)".into(),
            fix: "the zones match neither AWS (us-west-2a) nor GCP (us-central1-b) naming, or \
                  mix both: say `cloud: aws` or `cloud: gcp`"
                .into(),
        });
    }
    Ok(())
}

/// A simulator queue signal's values, checked as the config checked them when it held them.
fn validate_sim_queue(q: &SimQueueSignal, name: &str, origin: &str) -> Result<(), SimError> {
    let field = |k: &str| format!("gpupool signal {name:?}: sim_queue.{k}");
    check(
        origin,
        &field("target_per_replica"),
        q.target_per_replica,
        q.target_per_replica > 0.0,
        "waiting requests per replica, a number above 0",
    )?;
    check(
        origin,
        &field("activation"),
        q.activation,
        q.activation >= 0.0,
        "activation threshold, 0 or more",
    )?;
    check(
        origin,
        &field("window_s"),
        q.window_s,
        q.window_s > 0.0,
        "rate window in seconds, above 0",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_parses() {
        for (name, _) in BUILTIN {
            let s = Scenario::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&s.file.name, name);
        }
    }

    #[test]
    fn unknown_scenario_names_the_shipped_ones() {
        let e = Scenario::load("nope").unwrap_err().to_string();
        assert!(e.contains("quick"), "{e}");
    }

    /// The quick scenario with `extra` YAML keys merged over it (later keys win per mapping).
    fn quick_with(edit: impl FnOnce(&mut serde_yaml_ng::Value)) -> Result<Scenario, SimError> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == "quick").unwrap();
        let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
        edit(&mut v);
        Scenario::parse(&serde_yaml_ng::to_string(&v).unwrap(), "edited")
    }

    fn set(v: &mut serde_yaml_ng::Value, path: &[&str], x: serde_yaml_ng::Value) {
        let mut cur = v;
        for k in &path[..path.len() - 1] {
            let m = cur.as_mapping_mut().unwrap();
            if !m.contains_key(*k) {
                m.insert((*k).into(), serde_yaml_ng::Mapping::new().into());
            }
            cur = m.get_mut(*k).unwrap();
        }
        cur.as_mapping_mut()
            .unwrap()
            .insert(path[path.len() - 1].into(), x);
    }

    fn invalid_field(r: Result<Scenario, SimError>) -> String {
        match r {
            Err(SimError::InvalidValue { field, fix, .. }) => {
                assert!(!fix.is_empty());
                field
            }
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_field() {
        let cases: Vec<(&[&str], serde_yaml_ng::Value)> = vec![
            (&["oracle", "bucket_s"], 0.0.into()),
            (&["oracle", "bucket_s"], (-5.0).into()),
            (&["trace", "duration_s"], 1e12.into()),
            (&["trace", "duration_s"], 0.0.into()),
            (&["trace", "duration_s"], f64::NAN.into()),
            (&["trace", "start_s"], f64::INFINITY.into()),
            (&["signals", "scrape_interval_s"], 0.0.into()),
            (&["faults", "stockout_prob"], 1.5.into()),
            (&["spot", "notice_s"], (-1.0).into()),
            (&["replica", "concurrency"], 0.into()),
            (&["replica", "concurrency"], 1_000_000.into()),
        ];
        for (path, value) in cases {
            let field = invalid_field(quick_with(|v| set(v, path, value.clone())));
            assert_eq!(field, path.join("."), "{value:?}");
        }
    }

    #[test]
    fn values_checked_against_other_parts_name_the_field() {
        let field = invalid_field(quick_with(|v| {
            set(v, &["baselines", "min_replicas"], 1000.into());
        }));
        assert_eq!(field, "baselines.min_replicas");
        // The warm start cannot be shorter than reading the model from the cache disk: 25 GB at
        // gp3's free 125 MiB/s is ≈ 190 s, past quick's 30-s warm minimum.
        let field = invalid_field(quick_with(|v| {
            set(v, &["cold_start", "cache_disk_mib_s"], 125.0.into());
        }));
        assert_eq!(field, "cold_start.warm_min_s");
        let field = invalid_field(quick_with(|v| {
            set(v, &["cold_start", "cache_disk_mib_s"], 0.0.into());
        }));
        assert_eq!(field, "cold_start.cache_disk_mib_s");
        let s2 = |edit: &dyn Fn(&mut serde_yaml_ng::Value)| {
            let (_, text) = BUILTIN.iter().find(|(n, _)| *n == "s2-spot").unwrap();
            let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
            edit(&mut v);
            Scenario::parse(&serde_yaml_ng::to_string(&v).unwrap(), "edited").unwrap()
        };
        let sc = s2(&|v| set(v, &["spot", "start_tick"], u64::MAX.into()));
        match crate::sim::run::prepare(sc, 1) {
            Err(SimError::InvalidValue { field, .. }) => assert_eq!(field, "spot.start_tick"),
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_group_larger_than_the_simulator_builds_is_refused() {
        let field = invalid_field(quick_with(|v| {
            let g = &mut v["groups"][0];
            g["max_size"] = 4_000_000_000u64.into();
        }));
        assert_eq!(field, "groups[0].max_size");
    }

    #[test]
    fn the_cloud_follows_the_zone_names_unless_given() {
        let s = Scenario::load("s2-spot").unwrap();
        assert_eq!(s.file.cloud(), Some(Cloud::Aws));
        let gcp = |v: &mut serde_yaml_ng::Value| {
            v["groups"][0]["zones"] = vec!["us-central1-a", "us-central1-b"].into();
        };
        assert_eq!(quick_with(gcp).unwrap().file.cloud(), Some(Cloud::Gcp));
        let mixed = |v: &mut serde_yaml_ng::Value| {
            v["groups"][0]["zones"] = vec!["us-central1-a", "us-east-1b"].into();
        };
        assert_eq!(invalid_field(quick_with(mixed)), "cloud");
        let given = |v: &mut serde_yaml_ng::Value| {
            v["groups"][0]["zones"] = vec!["z1"].into();
            set(v, &["cloud"], "gcp".into());
        };
        assert_eq!(quick_with(given).unwrap().file.cloud(), Some(Cloud::Gcp));
        // The spot notice follows the cloud unless the scenario sets it.
        let spot = SpotSpec::default();
        assert_eq!(spot.notice_for(Cloud::Aws), 120.0);
        assert_eq!(spot.notice_for(Cloud::Gcp), 30.0);
        let set_notice = SpotSpec {
            notice_s: Some(90.0),
            ..SpotSpec::default()
        };
        assert_eq!(set_notice.notice_for(Cloud::Gcp), 90.0);
        // …and reaches the simulated cloud: quick on GCP zones, no notice set, reclaims at 30 s.
        let on_gcp = quick_with(gcp).unwrap();
        assert_eq!(on_gcp.file.spot.notice_s, None);
        let p = crate::sim::run::prepare(on_gcp, 1).unwrap();
        assert_eq!(p.params.spot_notice_s, 30.0);
    }

    #[test]
    fn trace_keys_are_checked_against_the_source_or_format() {
        let per_minute = || TraceSlice {
            file: Some("counts.csv".into()),
            format: Some(TraceFormat::PerMinute),
            count_column: Some("requests".into()),
            tokens_like: Some(TraceSource::AzureConv),
            ..TraceSlice::default()
        };
        type Edit = fn(&mut TraceSlice);
        // (edit of a valid per-minute slice, the field refused; "" = accepted)
        let cases: [(Edit, &str); 14] = [
            (|_| {}, ""),
            (|t| t.source = Some(TraceSource::AzureCode), "trace.file"),
            (|t| t.file = None, "trace.source"),
            (|t| t.format = None, "trace.format"),
            (|t| t.count_column = None, "trace.count_column"),
            (|t| t.tokens_like = None, "trace.tokens_like"),
            (|t| t.window_s = Some(0.5), "trace.window_s"),
            (|t| t.window_s = Some(f64::NAN), "trace.window_s"),
            (|t| t.scale = Some(0.0), "trace.scale"),
            (|t| t.scale = Some(f64::INFINITY), "trace.scale"),
            (|t| t.max_per_minute = Some(-1.0), "trace.max_per_minute"),
            (
                |t| t.format = Some(TraceFormat::Burstgpt),
                "trace.count_column",
            ),
            (
                |t| {
                    *t = TraceSlice {
                        file: Some("m.jsonl".into()),
                        format: Some(TraceFormat::Mooncake),
                        filter: Some(RowFilter {
                            column: "a".into(),
                            equals: "b".into(),
                        }),
                        ..TraceSlice::default()
                    }
                },
                "trace.filter",
            ),
            (
                |t| {
                    *t = TraceSlice {
                        source: Some(TraceSource::AzureCode),
                        scale: Some(2.0),
                        ..TraceSlice::default()
                    }
                },
                "trace.scale",
            ),
        ];
        for (k, (edit, want)) in cases.iter().enumerate() {
            let mut t = per_minute();
            edit(&mut t);
            match (t.input("s"), *want) {
                (Ok(_), "") => {}
                (Err(SimError::InvalidValue { field, .. }), w) => assert_eq!(field, w, "case {k}"),
                (r, w) => panic!("case {k}: want {w:?}, got {:?}", r.map(|_| ())),
            }
        }
    }

    #[test]
    fn a_shipped_scenarios_trace_file_is_read_from_the_binary() {
        assert_eq!(
            shipped_path(Path::new("../data/traces/x.csv")).as_deref(),
            Some("data/traces/x.csv")
        );
        assert_eq!(
            shipped_path(Path::new("./a/../b.csv")).as_deref(),
            Some("scenarios/b.csv")
        );
        assert_eq!(shipped_path(Path::new("../../x.csv")), None);
        assert_eq!(shipped_path(Path::new("/abs/x.csv")), None);
        let t = TraceSlice {
            file: Some("../data/traces/alibaba_servegen_llm_requests_by_10min.csv".into()),
            ..TraceSlice::default()
        };
        let shipped = t.location(t.file.as_deref().unwrap());
        assert!(matches!(shipped, Location::Shipped { .. }), "{shipped:?}");
        let beside = TraceSlice {
            base_dir: Some("my/scenarios".into()),
            ..t.clone()
        };
        assert_eq!(
            beside.location(t.file.as_deref().unwrap()),
            Location::Disk(
                "my/scenarios/../data/traces/alibaba_servegen_llm_requests_by_10min.csv".into()
            )
        );
    }

    #[test]
    fn a_replay_too_long_for_its_bucket_is_refused_where_the_length_is_known() {
        // A week at 1 s buckets: 604,800 buckets, far above the oracle's bound.
        let sc = quick_with(|v| {
            set(v, &["oracle", "bucket_s"], 1.0.into());
            set(v, &["trace", "duration_s"], 604_800.0.into());
        })
        .unwrap();
        match crate::sim::run::prepare(sc, 1) {
            Err(SimError::InvalidValue { field, .. }) => assert_eq!(field, "oracle.bucket_s"),
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn queue_signals_are_taken_out_of_the_gpupool_section_keeping_every_name() {
        let s = Scenario::load("quick").unwrap();
        let pool = &s.config.pools[0];
        assert!(
            pool.signals.is_empty(),
            "the production config has no sim signal"
        );
        let sims = &s.sim_signals[&pool.name];
        let names: Vec<&str> = sims.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["load", "queue"]);
        assert_eq!(sims[0].queue.metric, SimQueueMetric::OfferedLoad);
        assert!(sims[1].queue.include_in_flight);

        // Unnamed: a sim signal is `sim-queue-<index>`, and a production signal after it keeps
        // the default name its index gave it before the sim one was taken out.
        let s = quick_with(|v| {
            let signals: serde_yaml_ng::Value = serde_yaml_ng::from_str(
                "- sim_queue: { target_per_replica: 8 }\n- cron: { start: \"0 0 8 * * *\", end: \"0 0 18 * * *\", desired: 1 }\n",
            )
            .unwrap();
            v["gpupool"]["pools"][0]["signals"] = signals;
            v["gpupool"]["sim"] = serde_yaml_ng::from_str("{ seed: 7 }").unwrap();
        })
        .unwrap();
        let pool = &s.config.pools[0];
        assert_eq!(s.sim_signals[&pool.name][0].name, "sim-queue-0");
        assert_eq!(pool.signals.len(), 1);
        assert_eq!(pool.signals[0].name, "cron-1");
    }

    #[test]
    fn bad_queue_signals_are_refused_naming_the_key() {
        let with = |signal: &str| {
            let signal = signal.to_owned();
            quick_with(move |v| {
                v["gpupool"]["pools"][0]["signals"] = serde_yaml_ng::from_str(&signal).unwrap();
            })
        };
        let field = invalid_field(with("- sim_queue: { target_per_replica: 0 }"));
        assert_eq!(
            field,
            "gpupool signal \"sim-queue-0\": sim_queue.target_per_replica"
        );
        for (signal, want) in [
            (
                "- sim_queue: { target_per_replica: 8, metrik: queue }",
                "gpupool.pools[0].signals[0]: sim_queue.metrik",
            ),
            (
                "- sim_queue: { target_per_replica: 8 }\n  prometheus: { url: \"http://p:9090\", query: up, target_per_replica: 1 }",
                "gpupool.pools[0].signals[0]: must have exactly one source",
            ),
        ] {
            let e = with(signal).unwrap_err().to_string();
            assert!(e.contains(want), "{signal}: {e}");
        }
    }
}
