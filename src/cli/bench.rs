//! `gpupool bench planner`: time the pure planner on synthetic worlds (benchmark S3).
//!
//! - binpack: 400 offerings (12 AWS GPU shapes × on-demand/spot × 17 zones, truncated to 400)
//!   × {1k, 5k, 20k, 50k} pending pods of mixed shapes (1/2/4/8 GPUs, MIG slices, time-sliced,
//!   GPU-model selectors, some pods not tolerating the GPU taint);
//! - interruption storm: 25 spot nodes lost, 2,000 pods to re-place while 175 nodes serve,
//!   the lost offerings in backoff with raised risk;
//! - consolidation scan: 1,000 busy serving nodes, each checked for a cheaper replacement.
//!
//! Everything is generated here (no file is read) and deterministic (no RNG: shapes cycle by
//! index). Figures are the median of several runs. Reported, never asserted.

use anyhow::Context;
use gpupool::config::{Config, PoolConfig};
use gpupool::model::{
    CapacityType, History, Instance, LifecycleState, Node, NodeGroup, PendingPod, Snapshot,
};
use gpupool::planner::fixtures::{
    CATALOG, T0, config, gpu_pod, gpu_taint, group, instance, mig_pod, node, offering,
    on_demand_price, pool_cfg, running_pod, shared_pod, snapshot,
};
use serde::Serialize;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// Time the planner: bin-packing at scale, an interruption storm, a consolidation scan.
    Planner {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Scenario {
    name: String,
    pods: usize,
    offerings: usize,
    nodes: usize,
    ms: f64,
    pods_per_sec: f64,
    actions: usize,
    decisions: usize,
}

#[derive(Serialize)]
struct Report {
    scenarios: Vec<Scenario>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let What::Planner { json } = args.what;
    let mut scenarios = Vec::new();
    for pods in [1_000, 5_000, 20_000, 50_000] {
        let (snap, cfg) = binpack_world(pods);
        scenarios.push(measure(
            &format!("binpack-{}k", pods / 1000),
            &snap,
            &cfg,
            &History::default(),
        ));
    }
    let (snap, cfg, hist) = storm_world();
    scenarios.push(measure("interruption-storm", &snap, &cfg, &hist));
    let (snap, cfg) = consolidation_world();
    scenarios.push(measure(
        "consolidation-scan",
        &snap,
        &cfg,
        &History::default(),
    ));

    if json {
        println!(
            "{}",
            serde_json::to_string(&Report { scenarios }).context("serialising report")?
        );
    } else {
        println!(
            "{:<22} {:>7} {:>9} {:>6} {:>10} {:>12} {:>8}",
            "scenario", "pods", "offerings", "nodes", "ms", "pods/s", "actions"
        );
        for s in &scenarios {
            println!(
                "{:<22} {:>7} {:>9} {:>6} {:>10.2} {:>12.0} {:>8}",
                s.name, s.pods, s.offerings, s.nodes, s.ms, s.pods_per_sec, s.actions
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(name: &str, snap: &Snapshot, cfg: &Config, hist: &History) -> Scenario {
    // Median of 5 runs, after one warm-up run (allocator, caches).
    let mut plan = gpupool::planner::plan(snap, cfg, hist, snap.taken_at);
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = gpupool_provider::clock::monotonic();
        plan = gpupool::planner::plan(snap, cfg, hist, snap.taken_at);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let secs = times[times.len() / 2];
    let pods = snap.pending_pods.len();
    Scenario {
        name: name.to_owned(),
        pods,
        offerings: snap.groups.iter().map(|g| g.offerings.len()).sum(),
        nodes: snap.nodes.len(),
        ms: secs * 1000.0,
        pods_per_sec: if secs > 0.0 { pods as f64 / secs } else { 0.0 },
        actions: plan.actions.len(),
        decisions: plan.decisions.len(),
    }
}

const ZONES: usize = 17;
const OFFERINGS: usize = 400;

/// One group per (instance type, capacity type), its offerings spread over zones, 400 in all.
/// Spot is 30–70% of on-demand by zone, with a zone-dependent interruption risk.
fn groups_400(pool: &str) -> Vec<NodeGroup> {
    let mut groups = Vec::new();
    let mut n = 0;
    'outer: for ct in [CapacityType::OnDemand, CapacityType::Spot] {
        for (ti, e) in CATALOG.iter().enumerate() {
            let name = e.0;
            let mut g = group(&format!("{name}-{ct}"), pool)
                .taint(gpu_taint())
                .max(100_000);
            for z in 0..ZONES {
                if n == OFFERINGS {
                    groups.push(g.build());
                    break 'outer;
                }
                let od = on_demand_price(name);
                let (price, risk) = match ct {
                    CapacityType::OnDemand => (od, 0.0),
                    CapacityType::Spot => {
                        let f = 0.3 + 0.1 * ((z + ti) % 5) as f64;
                        (od * f, 0.02 + 0.02 * (z % 4) as f64)
                    }
                };
                let zone = format!("us-east-{}{}", 1 + z / 6, (b'a' + (z % 6) as u8) as char);
                g = g.offering(offering(name, ct, &zone, price).risk(risk));
                n += 1;
            }
            groups.push(g.build());
        }
    }
    groups
}

fn big_pool(name: &str) -> PoolConfig {
    let mut p = pool_cfg(name);
    p.capacity.spot_share = 0.7;
    p.capacity.on_demand_base = 2;
    p.limits.max_nodes = 1_000_000;
    p.scale_up.max_nodes_per_tick = 1_000_000;
    p
}

/// Pod `i` of a deterministic mix: 35% 1 GPU, 15% 2, 10% 4, 10% 8 (H100/A100 selectors), 12%
/// MIG slices, 10% time-sliced, 5% CPU-heavy 1 GPU, 3% not tolerating the GPU taint.
fn mixed_pod(i: usize) -> PendingPod {
    let name = format!("p{i}");
    let b = match i % 100 {
        0..35 => gpu_pod(1),
        35..50 => gpu_pod(2).model(if i.is_multiple_of(2) { "A10G" } else { "L4" }),
        50..60 => gpu_pod(4),
        60..70 => gpu_pod(8).model(if i.is_multiple_of(3) { "H100" } else { "A100" }),
        70..76 => mig_pod("1g.10gb", 1),
        76..82 => mig_pod("2g.20gb", 1),
        82..92 => shared_pod(1),
        92..97 => gpu_pod(1).cpu(16_000).mem(65_536),
        _ => {
            return gpu_pod(1).name(&name).build();
        }
    };
    b.name(&name).tolerate("nvidia.com/gpu").build()
}

fn binpack_world(pods: usize) -> (Snapshot, Config) {
    let mut s = snapshot();
    for g in groups_400("bench") {
        s = s.group(g);
    }
    let s = s.pods((0..pods).map(mixed_pod).collect()).build();
    (s, config(vec![big_pool("bench")]))
}

/// 200 spot p4de nodes served the pool; 25 were reclaimed. Their 2,000 pods are pending again.
fn storm_world() -> (Snapshot, Config, History) {
    let mut s = snapshot();
    for g in groups_400("bench") {
        s = s.group(g);
    }
    let mut snap = s
        .pods(
            (0..2_000)
                .map(|i| {
                    let b = if i % 2 == 0 {
                        mig_pod("1g.10gb", 1)
                    } else {
                        shared_pod(1)
                    };
                    b.name(&format!("evicted-{i}"))
                        .tolerate("nvidia.com/gpu")
                        .build()
                })
                .collect(),
        )
        .build();
    let gid = format!("p4de.24xlarge-{}", CapacityType::Spot);
    let mut hist = History::default();
    for k in 0..200 {
        let zone = format!("us-east-1{}", (b'a' + (k % 6) as u8) as char);
        let lost = k < 25;
        let inst = instance(
            &format!("i-{k:04}"),
            &gid,
            "p4de.24xlarge",
            CapacityType::Spot,
        )
        .zone(&zone)
        .build();
        if lost {
            // The lost offerings: learned risk up, and one zone's launches failing.
            hist.record_interruption(&key_of(&inst));
            if k == 0 {
                hist.record_launch_failure(&key_of(&inst), "InsufficientInstanceCapacity", T0);
            }
            continue;
        }
        let mut n = node(inst.id.as_str(), "bench", CapacityType::Spot);
        for p in 0..8 {
            n = n.pod(running_pod(&format!("{}-w{p}", inst.id), 1));
        }
        add_instance(&mut snap, inst, n.build());
    }
    (snap, config(vec![big_pool("bench")]), hist)
}

fn key_of(i: &Instance) -> gpupool::model::OfferingKey {
    gpupool::model::OfferingKey {
        instance_type: i.instance_type.clone(),
        capacity_type: i.capacity_type,
        zone: i.zone.clone(),
    }
}

fn add_instance(snap: &mut Snapshot, inst: Instance, node: Node) {
    if let Some(g) = snap.groups.iter_mut().find(|g| g.id == inst.group) {
        g.desired += 1;
    }
    snap.instances.push(inst);
    snap.nodes.push(node);
}

/// 1,000 serving on-demand nodes of several shapes, each running one or two 1-GPU pods: every
/// one is checked for a cheaper replacement that holds its pods.
fn consolidation_world() -> (Snapshot, Config) {
    let mut snap = snapshot();
    for g in groups_400("bench") {
        snap = snap.group(g);
    }
    let mut snap = snap.build();
    let shapes = ["g5.12xlarge", "g5.48xlarge", "g6.12xlarge", "p4d.24xlarge"];
    for k in 0..1_000 {
        let itype = shapes[k % shapes.len()];
        let gid = format!("{itype}-{}", CapacityType::OnDemand);
        let zone = format!("us-east-1{}", (b'a' + (k % 6) as u8) as char);
        let inst = instance(&format!("i-{k:04}"), &gid, itype, CapacityType::OnDemand)
            .zone(&zone)
            .state(LifecycleState::Ready)
            .build();
        let mut n = node(inst.id.as_str(), "bench", CapacityType::OnDemand);
        for p in 0..(1 + k % 2) {
            n = n.pod(running_pod(&format!("{}-w{p}", inst.id), 1));
        }
        add_instance(&mut snap, inst, n.build());
    }
    let mut pool = big_pool("bench");
    pool.disruption.budget.max_disrupted_at_once = 10;
    pool.disruption.budget.max_per_window = Some(20);
    (snap, config(vec![pool]))
}
