//! `gpupool plan`: run the pure planner on a recorded snapshot and explain, pool by pool,
//! every action and every non-action ("why did or didn't it scale?").

use anyhow::Context;
use gpupool::config::Config;
use gpupool::model::{
    Decision, History, Outcome, Plan, PoolName, Snapshot, Subject, Timestamp, bounds,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot JSON (what the controller observed in one tick).
    #[arg(long)]
    pub snapshot: PathBuf,
    /// gpupool config YAML.
    #[arg(long)]
    pub config: PathBuf,
    /// Print the plan as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Plan as of this time, in Unix seconds (default: the snapshot's `taken_at`).
    #[arg(long)]
    pub at: Option<f64>,
    /// History JSON (backoffs, unneeded-since clocks, disruptions, last scale-ups).
    #[arg(long)]
    pub history: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.snapshot)
        .with_context(|| format!("reading snapshot {}", args.snapshot.display()))?;
    let snapshot: Snapshot = serde_json::from_str(&text)
        .with_context(|| format!("parsing snapshot {}", args.snapshot.display()))?;
    // Numbers from a file are untrusted: range-check them here, once, not in the planner.
    bounds::check_snapshot(&snapshot)
        .with_context(|| format!("snapshot {} out of range", args.snapshot.display()))?;
    let config = Config::load_file(&args.config)
        .with_context(|| format!("loading config {}", args.config.display()))?;
    let history: History = match &args.history {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading history {}", p.display()))?;
            let h: History = serde_json::from_str(&text)
                .with_context(|| format!("parsing history {}", p.display()))?;
            bounds::check_history(&h)
                .with_context(|| format!("history {} out of range", p.display()))?;
            h
        }
        None => History::default(),
    };
    let now = match args.at {
        Some(at) => Timestamp::try_from_secs_f64(at).context("--at")?,
        None => snapshot.taken_at,
    };
    let plan = gpupool::planner::plan(&snapshot, &config, &history, now);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).context("serialising plan")?
        );
    } else {
        print!("{}", render(&plan, &snapshot, now));
    }
    Ok(ExitCode::SUCCESS)
}

/// The pool a decision is about, found through the snapshot (offerings and instances name
/// their group, groups name their pool).
fn pool_of(d: &Decision, snapshot: &Snapshot) -> Option<PoolName> {
    match &d.subject {
        Subject::Pool(p) => Some(p.clone()),
        Subject::Group(g) => snapshot.group(g).map(|g| g.pool.clone()),
        Subject::Instance(i) => snapshot
            .instances
            .iter()
            .find(|x| &x.id == i)
            .and_then(|x| snapshot.group(&x.group))
            .map(|g| g.pool.clone()),
        Subject::Offering(k) => snapshot
            .groups
            .iter()
            .find(|g| g.offerings.iter().any(|o| &o.key() == k))
            .map(|g| g.pool.clone()),
        Subject::Pod(_) => None,
    }
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Acted => "acted",
        Outcome::Satisfied => "satisfied",
        Outcome::Held => "held",
        Outcome::Blocked => "blocked",
    }
}

/// Human-readable plan: per pool its figures, actions and decisions; then pending pods grouped
/// by what happens to them (thousands of identical lines help nobody).
pub fn render(plan: &Plan, snapshot: &Snapshot, now: Timestamp) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan at {now}: {} action(s), {} decision(s)",
        plan.actions.len(),
        plan.decisions.len()
    );
    let mut idle = Vec::new();
    for p in &plan.pools {
        let has_groups = snapshot.groups.iter().any(|g| g.pool == p.pool);
        if !has_groups && !plan.actions.iter().any(|a| a.pool() == &p.pool) {
            idle.push(p.pool.as_str());
            continue;
        }
        let wants = p.wanted_replicas.map_or_else(
            || "no signal demand".to_owned(),
            |r| format!("signals want {r} replica(s)"),
        );
        let _ = writeln!(
            s,
            "\npool {}: {} ready, {} in flight, {} warm, {} pending pod(s), {wants}; after the \
             plan {} node(s), {}/h",
            p.pool,
            p.ready_nodes,
            p.in_flight_nodes,
            p.warm_instances,
            p.pending_pods,
            p.desired_nodes,
            p.cost_per_hour
        );
        // With an `slo`: the standing headroom and why (see `planner::headroom`).
        for h in [&p.headroom_running, &p.headroom_warm]
            .into_iter()
            .flatten()
        {
            let _ = writeln!(s, "  headroom ({}): {h}", h.kind.as_str());
        }
        if p.spot_standby_replicas > 0 {
            let _ = writeln!(
                s,
                "  spot standby: {} spot replica(s) held warm against a reclaim",
                p.spot_standby_replicas
            );
        }
        let actions: Vec<_> = plan
            .actions
            .iter()
            .filter(|a| a.pool() == &p.pool)
            .collect();
        if actions.is_empty() {
            let _ = writeln!(s, "  actions: none");
        } else {
            let _ = writeln!(s, "  actions:");
            for a in actions {
                let _ = writeln!(s, "    {a}");
            }
        }
        let decisions: Vec<_> = plan
            .decisions
            .iter()
            .filter(|d| pool_of(d, snapshot).as_ref() == Some(&p.pool))
            .collect();
        if !decisions.is_empty() {
            let _ = writeln!(s, "  decisions:");
            for d in decisions {
                let _ = writeln!(s, "    {d}");
            }
        }
        let unneeded: Vec<_> = plan
            .unneeded
            .iter()
            .filter(|i| {
                snapshot
                    .instances
                    .iter()
                    .find(|x| &x.id == *i)
                    .and_then(|x| snapshot.group(&x.group))
                    .is_some_and(|g| g.pool == p.pool)
            })
            .map(|i| i.as_str())
            .collect();
        if !unneeded.is_empty() {
            let _ = writeln!(s, "  unneeded: {}", unneeded.join(", "));
        }
    }
    if !idle.is_empty() {
        let _ = writeln!(
            s,
            "
pools with no node group in this snapshot: {}",
            idle.join(", ")
        );
    }
    let mut pods: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    for d in &plan.decisions {
        if let Subject::Pod(name) = &d.subject {
            pods.entry((outcome(d.outcome).to_owned(), d.reason.to_string()))
                .or_default()
                .push(name);
        }
    }
    if !pods.is_empty() {
        let _ = writeln!(s, "\npending pods:");
        for ((o, reason), names) in pods {
            const SHOWN: usize = 5;
            let mut list = names
                .iter()
                .take(SHOWN)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if names.len() > SHOWN {
                let _ = write!(list, ", … and {} more", names.len() - SHOWN);
            }
            let _ = writeln!(s, "  {o} ({}): {reason} — {list}", names.len());
        }
    }
    s
}
