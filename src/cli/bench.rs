//! `gpupool bench planner`: says where the planner benchmarks are.
//!
//! They are Cargo benchmarks (`benches/planner.rs`, `benches/sim.rs`) built on the test kit's
//! synthetic fleets, which a release binary does not carry: run them from a source checkout.
//! The command stays so that scripts and muscle memory get directions instead of "unknown
//! subcommand"; it exits non-zero because it measured nothing.

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// Moved to `cargo bench --bench planner` (a source checkout): prints how to run it.
    Planner {
        /// Accepted for compatibility; `cargo bench --bench planner -- --json` prints JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the benchmarks are and how to run them.
pub const DIRECTIONS: &str = "\
the planner benchmarks are Cargo benchmarks now; from a source checkout of gpupool run
  cargo bench --bench planner             # bin-packing 1k-50k pods, interruption storm,
                                          # consolidation scan, 5,000 nodes + 50,000 pods
                                          # (time and peak RSS)
  cargo bench --bench planner -- --json   # the same as one JSON object
  cargo bench --bench sim                 # simulator wall time per simulated day";

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let What::Planner { json: _ } = args.what;
    eprintln!("{DIRECTIONS}");
    Ok(ExitCode::from(2))
}
