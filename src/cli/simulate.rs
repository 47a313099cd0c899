//! `gpupool simulate`: replay a scenario against gpupool and the baselines, side by side.

use anyhow::Context;
use gpupool::sim::metrics::PolicySummary;
use gpupool::sim::world::{Cloud, StockoutMode};
use gpupool::sim::{Policy, RunOptions, Scenario, report, run_scenario};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A shipped scenario (quick, s1-bursty, s1-conv, s1-diurnal, s2-spot, s3-servegen) or a
    /// path to a scenario YAML file.
    #[arg(long)]
    pub scenario: String,
    /// `all`, or a comma-separated list of gpupool, gpupool-noforecast, static-peak, hpa-ca, karpenter, oracle.
    #[arg(long, default_value = "all")]
    pub policy: String,
    /// RNG seed; default from GPUPOOL_SIM_SEED, else the scenario's seed.
    #[arg(long, env = "GPUPOOL_SIM_SEED")]
    pub seed: Option<u64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write an HTML report (index.html with SVG charts) into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print every cloud call each policy made to stderr (time, call, group, detail).
    #[arg(long)]
    pub actions: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let seed = args.seed.unwrap_or(scenario.file.seed);
    let policies = Policy::parse_list(&args.policy)?;
    let name = scenario.file.name.clone();
    let slo = scenario.file.slo.queue_wait_s;
    let cloud = scenario.file.cloud();
    let stockout_mode = scenario.file.faults.stockout_mode;
    let bar = ProgressBar::new(1000 * policies.len() as u64);
    if args.json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {percent:>3}% {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let names: Vec<&'static str> = policies.iter().map(|p| p.name()).collect();
    let progress = |i: usize, f: f64| {
        bar.set_message(names.get(i).copied().unwrap_or(""));
        bar.set_position((i as f64 * 1000.0 + f.clamp(0.0, 1.0) * 1000.0) as u64);
    };
    let result = run_scenario(scenario, &RunOptions { seed, policies }, &progress)
        .with_context(|| format!("simulating {name}"))?;
    bar.finish_and_clear();

    if args.actions {
        for r in &result.runs {
            for c in &r.calls {
                eprintln!(
                    "{:<12} t={:>8.1}s {:<14} {:<12} {} {}",
                    r.summary.policy,
                    c.at_ms as f64 / 1000.0,
                    c.call,
                    c.group,
                    c.detail,
                    if c.ok { "" } else { "(failed)" }
                );
            }
        }
    }
    let rows: Vec<&PolicySummary> = result.runs.iter().map(|r| &r.summary).collect();
    if args.json {
        let v = serde_json::json!({
            "scenario": name,
            "seed": seed,
            "slo_queue_wait_s": slo,
            "cloud": cloud,
            "stockout_mode": stockout_mode,
            "policies": rows,
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
            "scenario {name}  seed {seed}  SLO queue wait <= {slo} s  requests {}  stockouts {} ({})",
            result.prepared.reqs.len(),
            match stockout_mode {
                StockoutMode::Late => "late",
                StockoutMode::Immediate => "immediate",
                StockoutMode::Silent => "silent",
            },
            match cloud {
                Some(Cloud::Aws) | None => "aws-like",
                Some(Cloud::Gcp) => "gcp-like",
            }
        );
        println!(
            "{:<18} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>5} {:>8} {:>8}",
            "policy",
            "SLO",
            "p50 s",
            "p99 s",
            "p99.9 s",
            "cost $",
            "spot $",
            "xoracle",
            "GPU-h",
            "idle-h",
            "actions",
            "hurt",
            "cut",
            "api s",
            "ready s"
        );
        for s in rows {
            println!(
                "{:<18} {:>8.4} {:>8.2} {:>8.2} {:>9.2} {:>9.2} {:>8.2} {:>8.3} {:>7.1} {:>7.1} {:>7} {:>6} {:>5} {:>8.1} {:>8.1}",
                s.policy,
                s.slo_attainment,
                s.queue_wait_p50_s,
                s.queue_wait_p99_s,
                s.queue_wait_p999_s,
                s.cost_usd,
                s.spot_cost_usd,
                s.cost_vs_oracle,
                s.gpu_hours,
                s.idle_gpu_hours,
                s.scale_actions,
                s.requests_hurt_by_preemption,
                s.requests_cut_short,
                s.reaction_to_api_s_p50,
                s.reaction_to_ready_s_p50
            );
        }
        // Late stockouts: how many launches the cloud accepted and failed, and how fast each
        // policy had capacity on its way elsewhere once the failure was reported.
        for s in result.runs.iter().map(|r| &r.summary) {
            if s.failed_launches == 0 {
                continue;
            }
            let secs = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.0} s"));
            println!(
                "{:<18} failed launches {}: fallback after the report p50 {}, max {}{}",
                s.policy,
                s.failed_launches,
                secs(s.failure_to_fallback_s_p50),
                secs(s.failure_to_fallback_s_max),
                if s.failed_launches_without_fallback > 0 {
                    format!(" ({} never fell back)", s.failed_launches_without_fallback)
                } else {
                    String::new()
                }
            );
        }
    }
    if let Some(dir) = &args.report {
        report::write(&result, dir)?;
        if !args.json {
            println!("report: {}", dir.join("index.html").display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
