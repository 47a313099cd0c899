//! The simulator: real traces replayed against the real controller loop, with baselines and
//! the clairvoyant oracle, on a virtual clock and a seeded RNG.
//!
//! - [`data`]: the embedded real data (traces, cold-start timings, prices, spot traces).
//! - [`timing`]: cold launch / warm start distributions fitted to that data; serving speeds.
//! - [`scenario`]: scenario files (shipped ones embedded).
//! - [`trace`]: users' trace files (Azure, Mooncake, BurstGPT, per-minute counts).
//! - [`workload`]: requests with service times; per-bucket demand.
//! - [`world`]: the discrete-event world (instances, queue, spot, costs).
//! - [`provider`]: `SimProvider`, the `NodeGroupProvider` over the world.
//! - [`baselines`]: static-peak, HPA + Cluster Autoscaler, Karpenter-like.
//! - [`oracle`]: the minimum-cost lower bound (exact layers / SpotHedge-style ILP).
//! - [`tune`]: `--tune-baselines`, each baseline's knob swept for the cheapest setting
//!   meeting the SLO target.
//! - [`metrics`]: per-policy summary figures.
//! - [`run`]: prepares a scenario and runs the policies side by side.
//! - [`report`]: the HTML/SVG report.

pub mod baselines;
pub mod data;
pub mod gpupool;
pub mod metrics;
pub mod oracle;
pub mod provider;
pub mod report;
pub mod run;
pub mod scenario;
pub mod timing;
pub mod trace;
pub mod tune;
pub mod workload;
pub mod world;

pub use provider::{SharedWorld, SimProvider};
pub use run::{Policy, RunOptions, ScenarioRun, run_scenario};
pub use scenario::Scenario;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{file} line {line}: {message}")]
    Data {
        file: String,
        line: usize,
        message: String,
    },
    #[error("scenario {scenario}: {message}")]
    Scenario { scenario: String, message: String },
    /// A scenario's trace file that cannot be read, with its file, line and column (boxed:
    /// it is the largest variant and errors are rare).
    #[error(transparent)]
    Trace(Box<trace::TraceError>),
    /// A scenario value out of range, found where it is read.
    #[error("scenario {scenario}: {field} = {value}: {fix}")]
    InvalidValue {
        scenario: String,
        field: String,
        value: String,
        fix: String,
    },
    #[error(
        "unknown policy {0:?}; policies: gpupool, gpupool-noforecast, static-peak, hpa-ca, hpa-ca-default, karpenter, oracle"
    )]
    UnknownPolicy(String),
    #[error("writing the report to {path}")]
    Report {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("controller: {0}")]
    Controller(String),
}

impl From<trace::TraceError> for SimError {
    fn from(e: trace::TraceError) -> Self {
        SimError::Trace(Box::new(e))
    }
}
