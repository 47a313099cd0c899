//! `gpupool simulate`: replay a scenario against gpupool and the baselines, side by side.

use anyhow::Context;
use gpupool::sim::run::{PolicyRun, ScenarioRun};
use gpupool::sim::tune::tune_runs;
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
    /// `all`, or a comma-separated list of gpupool, gpupool-noforecast, static-peak, hpa-ca,
    /// hpa-ca-default, karpenter, oracle.
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
    /// Also sweep each baseline's knob (static-peak: fleet size; hpa-ca, hpa-ca-default,
    /// karpenter: min replicas × target per replica) and report the cheapest setting meeting
    /// the scenario's `slo.attainment` beside the baseline's default run.
    #[arg(long)]
    pub tune_baselines: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let seed = args.seed.unwrap_or(scenario.file.seed);
    let policies = Policy::parse_list(&args.policy)?;
    let name = scenario.file.name.clone();
    let tuned_count = if args.tune_baselines {
        policies.iter().filter(|p| p.is_baseline()).count()
    } else {
        0
    };
    let bar = ProgressBar::new(1000 * (policies.len() + tuned_count) as u64);
    if args.json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{msg:>20} [{bar:40}] {percent:>3}% {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut names: Vec<String> = policies.iter().map(|p| p.name().to_owned()).collect();
    if args.tune_baselines {
        names.extend(
            policies
                .iter()
                .filter(|p| p.is_baseline())
                .map(|p| format!("tune {}", p.name())),
        );
    }
    let progress = |i: usize, f: f64| {
        bar.set_message(names.get(i).cloned().unwrap_or_default());
        bar.set_position((i as f64 * 1000.0 + f.clamp(0.0, 1.0) * 1000.0) as u64);
    };
    let n_policies = policies.len();
    let mut result = run_scenario(scenario, &RunOptions { seed, policies }, &progress)
        .with_context(|| format!("simulating {name}"))?;
    if args.tune_baselines {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ScenarioRun { prepared, runs } = &mut result;
        tune_runs(prepared, runs, threads, &|k, f| progress(n_policies + k, f));
    }
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
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&json_summary(&result, seed, args.tune_baselines)?)?
        );
    } else {
        print_table(&result, seed);
        if args.tune_baselines {
            print_tuned(&result);
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

/// The `--json` object: the summary rows, with each baseline's `tuned` point (or null) and
/// `sweep` under `--tune-baselines`, and why the oracle failed when it did.
fn json_summary(result: &ScenarioRun, seed: u64, tuned: bool) -> anyhow::Result<serde_json::Value> {
    let f = &result.prepared.scenario.file;
    let mut rows = Vec::with_capacity(result.runs.len());
    for r in &result.runs {
        let mut row = serde_json::to_value(&r.summary)?;
        if tuned
            && is_baseline(r)
            && let Some(obj) = row.as_object_mut()
        {
            obj.insert("tuned".into(), serde_json::to_value(&r.tuned)?);
            obj.insert("sweep".into(), serde_json::to_value(&r.sweep)?);
        }
        rows.push(row);
    }
    Ok(serde_json::json!({
        "scenario": f.name,
        "seed": seed,
        "slo_queue_wait_s": f.slo.queue_wait_s,
        "slo_attainment_target": f.slo.attainment,
        "cloud": f.cloud(),
        "stockout_mode": f.faults.stockout_mode,
        "oracle_error": result.prepared.oracle.as_ref().err().map(ToString::to_string),
        "policies": rows,
    }))
}

fn is_baseline(r: &PolicyRun) -> bool {
    Policy::ALL
        .into_iter()
        .any(|p| p.is_baseline() && p.name() == r.summary.policy)
}

fn print_table(result: &ScenarioRun, seed: u64) {
    let f = &result.prepared.scenario.file;
    println!(
        "scenario {}  seed {seed}  SLO queue wait <= {} s  requests {}  stockouts {} ({})",
        f.name,
        f.slo.queue_wait_s,
        result.prepared.reqs.len(),
        match f.faults.stockout_mode {
            StockoutMode::Late => "late",
            StockoutMode::Immediate => "immediate",
            StockoutMode::Silent => "silent",
        },
        match f.cloud() {
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
    for s in result.runs.iter().map(|r| &r.summary) {
        println!(
            "{:<18} {:>8.4} {:>8.2} {:>8.2} {:>9.2} {:>9.2} {:>8.2} {:>8} {:>7.1} {:>7.1} {:>7} {:>6} {:>5} {:>8.1} {:>8.1}",
            s.policy,
            s.slo_attainment,
            s.queue_wait_p50_s,
            s.queue_wait_p99_s,
            s.queue_wait_p999_s,
            s.cost_usd,
            s.spot_cost_usd,
            s.cost_vs_oracle
                .map_or_else(|| "n/a".to_owned(), |x| format!("{x:.3}")),
            s.gpu_hours,
            s.idle_gpu_hours,
            s.scale_actions,
            s.requests_hurt_by_preemption,
            s.requests_cut_short,
            s.reaction_to_api_s_p50,
            s.reaction_to_ready_s_p50
        );
    }
    if let Err(e) = &result.prepared.oracle {
        println!("oracle             failed: {e}; cost ÷ oracle is n/a");
    }
    print_failed_launches(result);
    print_error_budgets(result);
}

/// Where each policy that missed its target spent the SLO's error budget: a burst before
/// anything was learnt, or misses spread over the replay.
fn print_error_budgets(result: &ScenarioRun) {
    let clock = |s: f64| format!("{:02}:{:02}", (s / 60.0).floor() as u64, (s % 60.0) as u64);
    for s in result.runs.iter().map(|r| &r.summary) {
        let b = &s.error_budget;
        let (Some(spent), Some(minute)) = (b.spent_at_s, b.worst_minute_s) else {
            continue;
        };
        println!(
            "{:<18} error budget {} requests, {} waited past the SLO: spent by {} into the \
             replay; worst minute {}–{} ({} late)",
            s.policy,
            b.budget,
            b.misses,
            clock(spent),
            clock(minute),
            clock(minute + 60.0),
            b.worst_minute_misses
        );
    }
}

/// Late stockouts: how many launches the cloud accepted and failed, and how fast each policy
/// had capacity on its way elsewhere once the failure was reported.
fn print_failed_launches(result: &ScenarioRun) {
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

/// One line per baseline: its tuned setting beside the default run above.
fn print_tuned(result: &ScenarioRun) {
    let p = &result.prepared;
    let target = p.scenario.file.slo.attainment;
    for r in result.runs.iter().filter(|r| is_baseline(r)) {
        let tried = r.sweep.len();
        match &r.tuned {
            Some(t) => println!(
                "{:<18} tuned {:<28} SLO {:.4}  cost $ {:.2}  xoracle {}  ({tried} settings tried)",
                r.summary.policy,
                t.setting,
                t.slo_attainment,
                t.cost_usd,
                p.cost_vs_oracle(t.cost_usd)
                    .map_or_else(|| "n/a".to_owned(), |x| format!("{x:.3}")),
            ),
            None => println!(
                "{:<18} tuned: no setting reached SLO {target} ({tried} settings tried, best {:.4})",
                r.summary.policy,
                r.sweep
                    .iter()
                    .map(|x| x.slo_attainment)
                    .fold(f64::NAN, f64::max),
            ),
        }
    }
}
