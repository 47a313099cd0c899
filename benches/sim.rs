//! Simulator benchmarks: `cargo bench --bench sim [-- --json]`.
//!
//! Wall time per simulated day of the shipped S1 scenarios (`s1-bursty`: 57 minutes of the
//! bursty Azure code trace; `s1-diurnal`: three days of Alibaba's diffusion trace), for gpupool
//! (the real controller and planner against `SimProvider`) and two baselines, plus the time to
//! prepare the scenario (requests, demand and the oracle's lower bound). One run each at the
//! scenario's own seed; figures are printed, never asserted.
//!
//! Run without `--bench` (as `cargo test --benches` does) it runs gpupool on `quick` only.

use gpupool::sim::run::{Policy, prepare, run_prepared};
use gpupool::sim::{Scenario, SimError};
use gpupool_provider::clock;
use serde::Serialize;
use std::process::ExitCode;

const DAY_MS: f64 = 86_400_000.0;

#[derive(Serialize)]
struct Figure {
    scenario: String,
    /// `"prepare"` for loading and preparing the scenario (oracle included), else a policy.
    what: &'static str,
    simulated_days: f64,
    wall_s: f64,
    /// Wall seconds per simulated day.
    wall_s_per_day: f64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let json = args.iter().any(|a| a == "--json");
    let (scenarios, policies): (&[&str], &[Policy]) = if full {
        (
            &["s1-bursty", "s1-diurnal"],
            &[Policy::Gpupool, Policy::HpaCa, Policy::Karpenter],
        )
    } else {
        eprintln!("sim bench: smoke run (cargo bench --bench sim for the figures)");
        (&["quick"], &[Policy::Gpupool])
    };
    let mut figures = Vec::new();
    for name in scenarios {
        if let Err(e) = bench_scenario(name, policies, &mut figures) {
            eprintln!("sim bench: {name}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if json {
        match serde_json::to_string(&figures) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("sim bench: serialising figures: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_table(&figures);
    }
    ExitCode::SUCCESS
}

fn bench_scenario(name: &str, policies: &[Policy], out: &mut Vec<Figure>) -> Result<(), SimError> {
    let t = clock::monotonic();
    let sc = Scenario::load(name)?;
    let seed = sc.file.seed;
    let mut prepared = prepare(sc, seed)?;
    let prepare_s = t.elapsed().as_secs_f64();
    let days = prepared.end_ms as f64 / DAY_MS;
    let figure = |what: &'static str, wall_s: f64| Figure {
        scenario: name.to_owned(),
        what,
        simulated_days: days,
        wall_s,
        wall_s_per_day: if days > 0.0 { wall_s / days } else { 0.0 },
    };
    out.push(figure("prepare", prepare_s));
    // Each policy alone on the same prepared scenario (handed back by every run), so each
    // time is that policy's own.
    for pol in policies {
        let t = clock::monotonic();
        let run = run_prepared(prepared, &[*pol], &|_, _| {})?;
        out.push(figure(pol.name(), t.elapsed().as_secs_f64()));
        prepared = run.prepared;
    }
    Ok(())
}

fn print_table(figures: &[Figure]) {
    println!("simulator benchmark (one run per row, the scenario's seed)");
    println!(
        "{:<12} {:<12} {:>9} {:>10} {:>12}",
        "scenario", "what", "sim days", "wall s", "wall s/day"
    );
    for f in figures {
        println!(
            "{:<12} {:<12} {:>9.3} {:>10.2} {:>12.2}",
            f.scenario, f.what, f.simulated_days, f.wall_s, f.wall_s_per_day
        );
    }
}
