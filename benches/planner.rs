//! Planner benchmarks (benchmark S3): `cargo bench --bench planner [-- --json] [-- --runs N]`.
//!
//! Times the pure planner on the test kit's synthetic fleets (`gpupool::testkit::fleet`):
//! bin-packing 1k…50k pending pods over 400 offerings, an interruption storm, a consolidation
//! scan, and a plan over 5,000 existing nodes and 50,000 pending pods. Each figure is the
//! median of several runs after one warm-up run; peak RSS is the process's high-water mark
//! (`VmHWM`, reset through `/proc/self/clear_refs` before each scenario's runs) on Linux and
//! "unknown" elsewhere. Figures are printed, never asserted.
//!
//! Run without `--bench` (as `cargo test --benches` does) it plans one small world once, so
//! the harness itself is exercised by tests without the cost of the full sizes.

use gpupool::testkit::fleet::{self, World};
use gpupool_provider::clock;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Serialize)]
struct Figure {
    name: String,
    pods: usize,
    offerings: usize,
    nodes: usize,
    runs: usize,
    /// Median wall time of one plan, milliseconds.
    ms: f64,
    pods_per_sec: f64,
    actions: usize,
    decisions: usize,
    /// Resident set before planning (the world is built), MiB; `None` where unreadable.
    rss_before_mib: Option<f64>,
    /// Highest resident set while planning, MiB; `None` where unreadable.
    peak_rss_mib: Option<f64>,
    /// `"plan"` when the high-water mark was reset before planning, `"process"` when it could
    /// not be (then it is the whole run's peak), `"unknown"` when it could not be read.
    peak_rss_scope: &'static str,
}

struct Options {
    json: bool,
    runs: usize,
    full: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        json: false,
        runs: 5,
        full: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => o.full = true,
            "--json" => o.json = true,
            "--runs" => {
                let v = args.next().ok_or("--runs needs a number")?;
                o.runs = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--runs {v}: expected a positive number"))?;
            }
            // Anything else (libtest flags `cargo test --benches` passes, filters) is ignored.
            _ => {}
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("planner bench: {e}");
            return ExitCode::from(2);
        }
    };
    let figures = if o.full {
        full(o.runs)
    } else {
        eprintln!("planner bench: smoke run (cargo bench --bench planner for the figures)");
        vec![measure(
            "smoke-fleet-50-nodes",
            &fleet::fleet_world(50, 500),
            1,
        )]
    };
    if o.json {
        match serde_json::to_string(&figures) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("planner bench: serialising figures: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_table(&figures);
    }
    ExitCode::SUCCESS
}

fn full(runs: usize) -> Vec<Figure> {
    let mut figures = Vec::new();
    for pods in [1_000, 5_000, 20_000, 50_000] {
        let w = fleet::binpack_world(pods);
        figures.push(measure(&format!("binpack-{}k", pods / 1000), &w, runs));
    }
    figures.push(measure("interruption-storm", &fleet::storm_world(), runs));
    figures.push(measure(
        "consolidation-scan",
        &fleet::consolidation_world(),
        runs,
    ));
    // The fleet plan is the slowest; fewer runs keep the whole benchmark within minutes.
    figures.push(measure(
        "fleet-5k-nodes-50k-pods",
        &fleet::fleet_world(5_000, 50_000),
        runs.min(3),
    ));
    figures
}

fn measure(name: &str, w: &World, runs: usize) -> Figure {
    let rss_before = status_kib("VmRSS:");
    let reset = reset_peak_rss();
    let now = w.snapshot.taken_at;
    // One warm-up run (allocator, caches), then the timed runs.
    let mut plan = gpupool::planner::plan(&w.snapshot, &w.config, &w.history, now);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = clock::monotonic();
        plan = gpupool::planner::plan(&w.snapshot, &w.config, &w.history, now);
        times.push(t.elapsed().as_secs_f64());
    }
    let peak = status_kib("VmHWM:");
    times.sort_by(f64::total_cmp);
    let secs = times[times.len() / 2];
    let pods = w.snapshot.pending_pods.len();
    Figure {
        name: name.to_owned(),
        pods,
        offerings: w.snapshot.groups.iter().map(|g| g.offerings.len()).sum(),
        nodes: w.snapshot.nodes.len(),
        runs,
        ms: secs * 1000.0,
        pods_per_sec: if secs > 0.0 { pods as f64 / secs } else { 0.0 },
        actions: plan.actions.len(),
        decisions: plan.decisions.len(),
        rss_before_mib: rss_before.map(mib),
        peak_rss_mib: peak.map(mib),
        peak_rss_scope: match (peak, reset) {
            (None, _) => "unknown",
            (Some(_), true) => "plan",
            (Some(_), false) => "process",
        },
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A `kB` field of `/proc/self/status` (Linux); `None` elsewhere or when unreadable.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Reset `VmHWM` to the current RSS (Linux ≥ 4.0: writing 5 to `clear_refs`, proc(5)).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn print_table(figures: &[Figure]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("planner benchmark (median of N runs after a warm-up; {cores} cores visible)");
    println!(
        "{:<24} {:>6} {:>9} {:>6} {:>4} {:>10} {:>11} {:>8} {:>9} {:>10} {:>10}",
        "scenario",
        "pods",
        "offerings",
        "nodes",
        "runs",
        "ms",
        "pods/s",
        "actions",
        "decisions",
        "rss MiB",
        "peak MiB"
    );
    for f in figures {
        let show = |v: Option<f64>| v.map_or("unknown".to_owned(), |m| format!("{m:.0}"));
        let peak = match f.peak_rss_scope {
            "process" => format!("{}*", show(f.peak_rss_mib)),
            _ => show(f.peak_rss_mib),
        };
        println!(
            "{:<24} {:>6} {:>9} {:>6} {:>4} {:>10.2} {:>11.0} {:>8} {:>9} {:>10} {:>10}",
            f.name,
            f.pods,
            f.offerings,
            f.nodes,
            f.runs,
            f.ms,
            f.pods_per_sec,
            f.actions,
            f.decisions,
            show(f.rss_before_mib),
            peak
        );
    }
    if figures.iter().any(|f| f.peak_rss_scope == "process") {
        println!("* peak of the whole process: the high-water mark could not be reset here");
    }
}
