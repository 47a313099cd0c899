//! A scenario is a trace and its time slice, the GPU type and replica model, the cold-start
//! and spot models, the SLO, and the gpupool `Config` (provider: sim) it runs with. The shipped
//! scenarios are embedded in the binary, so `--scenario quick` works from any directory; a path
//! to a YAML file works too.

use super::SimError;
use super::data::{AvailabilitySource, TraceSource};
use super::timing::ColdStartSpec;
use super::world::Faults;
use crate::config::Config;
use crate::model::CapacityType;
use serde::{Deserialize, Serialize};

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
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "d_seed")]
    pub seed: u64,
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSlice {
    pub source: TraceSource,
    /// Seconds from the trace's first request where the replay starts.
    #[serde(default)]
    pub start_s: f64,
    /// Length of the replay; the rest of the trace when absent.
    #[serde(default)]
    pub duration_s: Option<f64>,
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotSpec {
    /// Seconds between the interruption notice and the reclaim (AWS 120, GCP 30).
    #[serde(default = "d_notice")]
    pub notice_s: f64,
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

impl Default for SpotSpec {
    fn default() -> Self {
        SpotSpec {
            notice_s: d_notice(),
            availability_trace: None,
            start_tick: 0,
            price_per_hour: None,
        }
    }
}

fn d_notice() -> f64 {
    120.0
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
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            queue_wait_s: d_slo(),
        }
    }
}

fn d_slo() -> f64 {
    1.0
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
}

impl Scenario {
    /// `name` of a shipped scenario, or a path to a YAML file.
    pub fn load(name_or_path: &str) -> Result<Scenario, SimError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(text, name_or_path);
        }
        let path = std::path::Path::new(name_or_path);
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| SimError::Scenario {
                scenario: name_or_path.to_owned(),
                message: e.to_string(),
            })?;
            return Scenario::parse(&text, name_or_path);
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

    pub fn parse(text: &str, origin: &str) -> Result<Scenario, SimError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let file: ScenarioFile =
            serde_path_to_error::deserialize(de).map_err(|e| SimError::Scenario {
                scenario: origin.to_owned(),
                message: format!("{}: {}", e.path(), e.inner()),
            })?;
        let cfg_text = serde_yaml_ng::to_string(&file.gpupool).map_err(|e| SimError::Scenario {
            scenario: origin.to_owned(),
            message: format!("gpupool: {e}"),
        })?;
        let config = Config::load(&cfg_text).map_err(|e| SimError::Scenario {
            scenario: origin.to_owned(),
            message: format!("gpupool config: {e}"),
        })?;
        if config.pools.len() != 1 {
            return Err(SimError::Scenario {
                scenario: origin.to_owned(),
                message: "the simulator runs one pool per scenario".into(),
            });
        }
        if file.replica.concurrency == 0 || file.groups.is_empty() {
            return Err(SimError::Scenario {
                scenario: origin.to_owned(),
                message: "replica.concurrency must be ≥ 1 and at least one group is needed".into(),
            });
        }
        Ok(Scenario { file, config })
    }
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
}
