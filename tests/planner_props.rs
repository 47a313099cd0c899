//! Planner invariants over generated worlds (proptest; regressions in `proptest-regressions/`).
//!
//! - never above `max_nodes` or `max_cost_per_hour` after the plan;
//! - never below current demand after scale-down;
//! - applying the plan's launches as in-flight instances and planning again adds nothing
//!   (when no limit stopped growth);
//! - every pending pod gets exactly one decision; a pod is blocked as "no offering fits" only
//!   when no usable offering fits it, and pods placed on new or in-flight nodes fit their GPUs;
//! - never more voluntary disruption than the budget.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

use gpupool::config::{Config, PoolConfig};
use gpupool::model::{
    Action, CapacityType, History, Instance, InstanceId, LifecycleState, Money, Outcome, Plan,
    Reason, Snapshot, Subject, Timestamp,
};
use gpupool::planner::plan;
use gpupool::testkit::planner::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const GROUPS: usize = 5;

/// Candidate groups: (id, type, capacity type, price, tainted).
const GROUP_DEFS: [(&str, &str, CapacityType, f64, bool); GROUPS] = [
    ("g5-spot", "g5.xlarge", CapacityType::Spot, 0.40, false),
    ("g5-od", "g5.xlarge", CapacityType::OnDemand, 1.006, false),
    (
        "g5x12-od",
        "g5.12xlarge",
        CapacityType::OnDemand,
        5.672,
        false,
    ),
    ("p5-spot", "p5.48xlarge", CapacityType::Spot, 40.0, true),
    ("p5-od", "p5.48xlarge", CapacityType::OnDemand, 98.32, true),
];

#[derive(Clone, Debug)]
struct Params {
    groups: u8,
    unavailable: u8,
    backoff: u8,
    busy: u8,
    warm_ready: u32,
    instances: Vec<(usize, u8, u32, bool)>,
    pods: Vec<(u8, u8, bool)>,
    demand: Option<(u32, u32, bool)>,
    extra_nodes: u32,
    extra_cost: Option<u32>,
    per_tick: u32,
    spot_share: u8,
    base: u32,
    min_nodes: u32,
    at_once: u32,
    window_extra: u32,
    in_window: u32,
    unneeded_long: bool,
    consolidation: bool,
    cache_drift: bool,
}

fn params() -> impl Strategy<Value = Params> {
    (
        (
            1u8..32,
            0u8..32,
            0u8..32,
            prop::bool::weighted(0.15),
            0u32..3,
        ),
        prop::collection::vec(
            (0usize..GROUPS, 0u8..5, 0u32..3, prop::bool::weighted(0.1)),
            0..10,
        ),
        prop::collection::vec((0u8..6, 0u8..3, prop::bool::weighted(0.8)), 0..30),
        prop::option::of((0u32..20, 0u32..25, prop::bool::weighted(0.2))),
        (
            0u32..15,
            prop::option::of(0u32..300),
            1u32..25,
            0u8..3,
            0u32..3,
            0u32..3,
        ),
        (
            1u32..4,
            0u32..4,
            0u32..3,
            any::<bool>(),
            any::<bool>(),
            prop::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (groups, unavailable, backoff, busy, warm_ready),
                instances,
                pods,
                demand,
                (extra_nodes, extra_cost, per_tick, spot_share, base, min_nodes),
                (at_once, window_extra, in_window, unneeded_long, consolidation, cache_drift),
            )| Params {
                groups,
                unavailable,
                backoff,
                busy: if busy { 0b1_0000 } else { 0 },
                warm_ready,
                instances,
                pods,
                demand,
                extra_nodes,
                extra_cost,
                per_tick,
                spot_share,
                base,
                min_nodes,
                at_once,
                window_extra,
                in_window,
                unneeded_long,
                consolidation,
                cache_drift,
            },
        )
}

struct World {
    snap: Snapshot,
    cfg: Config,
    hist: History,
}

fn price_of(snap: &Snapshot, group: &str, itype: &str) -> Money {
    snap.groups
        .iter()
        .find(|g| g.id.as_str() == group)
        .and_then(|g| {
            g.offerings
                .iter()
                .find(|o| o.instance_type.name.as_str() == itype)
        })
        .and_then(|o| o.price_per_hour.known())
        .unwrap_or(Money::ZERO)
}

fn gpus_of(itype: &str) -> u32 {
    instance_type(itype).gpu.count
}

fn live(i: &Instance) -> bool {
    matches!(
        i.state,
        LifecycleState::Launching | LifecycleState::Starting | LifecycleState::Ready
    )
}

fn build(p: &Params) -> World {
    let on = |mask: u8, gi: usize| mask & (1 << gi) != 0;
    let mut s = snapshot();
    let mut hist = History::default();
    let present: Vec<usize> = (0..GROUPS).filter(|&gi| on(p.groups, gi)).collect();
    for &gi in &present {
        let (id, itype, ct, price, tainted) = GROUP_DEFS[gi];
        let mut o = offering(itype, ct, "us-east-1a", price);
        if on(p.unavailable, gi) && gi % 2 == 0 {
            o = o.unavailable();
        }
        if on(p.backoff, gi) && gi % 2 == 1 {
            hist.record_launch_failure(&o.key(), "InsufficientInstanceCapacity", T0);
        }
        let mut g = group(id, "llm").offering(o);
        if tainted {
            g = g.taint(gpu_taint());
        }
        if on(p.busy, gi) {
            g = g.busy();
        }
        if id == "g5-od" {
            g = g.warm(p.warm_ready, p.warm_ready);
        }
        s = s.group(g);
    }
    let mut pool = pool_cfg("llm");
    pool.model_cache = Some("m@v2".into());
    for (k, &(gsel, state, pods, dnd)) in p.instances.iter().enumerate() {
        let Some(&gi) = present.get(gsel % present.len().max(1)) else {
            continue;
        };
        let (gid, itype, ct, _, _) = GROUP_DEFS[gi];
        let id = format!("i-{k}");
        let st = match state {
            0 | 1 => LifecycleState::Ready,
            2 => LifecycleState::Launching,
            3 => LifecycleState::Draining,
            _ => LifecycleState::Warm,
        };
        let mut ib = instance(&id, gid, itype, ct)
            .state(st)
            .launched(T0.plus_secs(-(100.0 * (k as f64 + 1.0))));
        ib = ib.cache(if p.cache_drift && k == 0 {
            "m@v1"
        } else {
            "m@v2"
        });
        s = s.instance(ib);
        if st == LifecycleState::Ready {
            let mut n = node(&id, "llm", ct);
            for j in 0..pods.min(gpus_of(itype)) {
                n = n.pod(running_pod(&format!("w-{k}-{j}"), 1));
            }
            if dnd {
                n = n.do_not_disrupt(&format!("keep-{k}"));
            }
            s = s.node(n);
        }
        if p.unneeded_long {
            hist.unneeded_since
                .insert(id.as_str().into(), Timestamp::from_secs(0));
        }
    }
    for (k, &(shape, model, tolerates)) in p.pods.iter().enumerate() {
        let mut b = match shape {
            0 | 1 => gpu_pod(1),
            2 => gpu_pod(2),
            3 => gpu_pod(4),
            4 => gpu_pod(8),
            _ => gpu_pod(16),
        };
        b = match model {
            0 => b,
            1 => b.model("A10G"),
            _ => b.model("H100"),
        };
        if tolerates {
            b = b.tolerate("nvidia.com/gpu");
        }
        s = s.pending(b.name(&format!("p-{k}")));
    }
    if let Some((now, fc, stale)) = p.demand {
        s = s.demand("llm", now, Some(fc));
        if stale {
            s = s.stale("llm", "prom");
        }
    }
    let snap = s.build();
    for k in 0..p.in_window {
        hist.record_disruption(&"llm".into(), &format!("old-{k}").as_str().into(), T0);
    }

    let live_nodes = snap.instances.iter().filter(|i| live(i)).count() as u32;
    let live_cost: Money = snap
        .instances
        .iter()
        .filter(|i| live(i))
        .map(|i| price_of(&snap, i.group.as_str(), i.instance_type.as_str()))
        .sum();
    pool.limits.max_nodes = (live_nodes + p.extra_nodes).max(1);
    pool.limits.max_cost_per_hour = p
        .extra_cost
        .map(|c| Money::from_dollars(live_cost.dollars() + f64::from(c) + 0.01));
    pool.limits.min_nodes = p.min_nodes.min(pool.limits.max_nodes);
    pool.scale_up.max_nodes_per_tick = p.per_tick;
    pool.capacity.spot_share =
        gpupool::config::Share::new(f64::from(p.spot_share) / 2.0).expect("0..=1");
    pool.capacity.on_demand_base = p.base.min(pool.limits.max_nodes);
    pool.disruption.consolidation = p.consolidation;
    pool.disruption.budget.max_disrupted_at_once = p.at_once;
    pool.disruption.budget.max_per_window = Some(p.at_once + p.window_extra);
    World {
        snap,
        cfg: config(vec![pool]),
        hist,
    }
}

fn pool(w: &World) -> &PoolConfig {
    &w.cfg.pools[0]
}

/// Instance ids terminated or drained by the plan.
fn removed(plan: &Plan) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for a in &plan.actions {
        match a {
            Action::ScaleDown { instances, .. } => {
                out.extend(instances.iter().map(|i| i.to_string()));
            }
            Action::Drain { instance, .. } => {
                out.insert(instance.to_string());
            }
            _ => {}
        }
    }
    out
}

/// New nodes of the plan: (group, instance type, capacity type, zone, warm, count).
fn launches(w: &World, plan: &Plan) -> Vec<(String, String, CapacityType, String, bool, u32)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::ScaleUp {
                group,
                offering,
                count,
                ..
            } => Some((
                group.to_string(),
                offering.instance_type.to_string(),
                offering.capacity_type,
                offering.zone.to_string(),
                false,
                *count,
            )),
            Action::StartWarm { group, count, .. } => {
                let g = w.snap.group(group)?;
                let o = g.offerings.first()?;
                Some((
                    group.to_string(),
                    o.instance_type.name.to_string(),
                    o.capacity_type,
                    o.zone.to_string(),
                    true,
                    *count,
                ))
            }
            _ => None,
        })
        .collect()
}

fn check_limits(w: &World, plan: &Plan) -> Result<(), TestCaseError> {
    let gone = removed(plan);
    let kept: Vec<&Instance> = w
        .snap
        .instances
        .iter()
        .filter(|i| live(i) && !gone.contains(i.id.as_str()))
        .collect();
    let l = launches(w, plan);
    let new_nodes: u32 = l.iter().map(|x| x.5).sum();
    let nodes_after = kept.len() as u32 + new_nodes;
    prop_assert!(
        nodes_after <= pool(w).limits.max_nodes,
        "{nodes_after} nodes > max {}",
        pool(w).limits.max_nodes
    );
    if let Some(max) = pool(w).limits.max_cost_per_hour {
        let cost: Money = kept
            .iter()
            .map(|i| price_of(&w.snap, i.group.as_str(), i.instance_type.as_str()))
            .sum::<Money>()
            + l.iter()
                .map(|x| price_of(&w.snap, &x.0, &x.1) * x.5)
                .sum::<Money>();
        prop_assert!(cost <= max, "{cost} > {max}");
    }
    prop_assert!(new_nodes <= pool(w).scale_up.max_nodes_per_tick + 4 * GROUPS as u32);
    Ok(())
}

fn check_demand(w: &World, plan: &Plan) -> Result<(), TestCaseError> {
    let Some(d) = w.snap.demand.get(&"llm".into()) else {
        return Ok(());
    };
    let Some(now) = d.replicas_now else {
        return Ok(());
    };
    let gone = removed(plan);
    let serving = |skip: &BTreeSet<String>| -> u32 {
        w.snap
            .instances
            .iter()
            .filter(|i| i.state == LifecycleState::Ready && !skip.contains(i.id.as_str()))
            .map(|i| gpus_of(i.instance_type.as_str()))
            .sum()
    };
    let before = serving(&BTreeSet::new());
    // Drift replacement drains a serving node on purpose (its replacement is launched in the
    // same plan); scale-down must never cut below demand on top of that.
    let drift: BTreeSet<String> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Drain {
                instance, reason, ..
            } if reason.code() == "drift" => Some(instance.to_string()),
            _ => None,
        })
        .collect();
    let before_drift = serving(&drift);
    let after = serving(&gone);
    prop_assert!(
        after >= now.min(before_drift).min(before),
        "serving {after} replicas after the plan, demand {now}, before {before}"
    );
    Ok(())
}

fn check_budget(w: &World, plan: &Plan) -> Result<(), TestCaseError> {
    let ready: BTreeSet<&str> = w
        .snap
        .instances
        .iter()
        .filter(|i| i.state == LifecycleState::Ready)
        .map(|i| i.id.as_str())
        .collect();
    let disrupted = removed(plan)
        .iter()
        .filter(|i| ready.contains(i.as_str()))
        .count() as u32;
    let b = &pool(w).disruption.budget;
    let draining = w
        .snap
        .instances
        .iter()
        .filter(|i| i.state == LifecycleState::Draining)
        .count() as u32;
    let in_window =
        w.hist
            .disruptions_in_window(&"llm".into(), T0, b.window.as_secs_f64()) as u32;
    prop_assert!(disrupted <= b.max_disrupted_at_once.saturating_sub(draining));
    prop_assert!(
        disrupted
            <= b.max_per_window
                .map_or(u32::MAX, |m| m.saturating_sub(in_window))
    );
    Ok(())
}

/// Independent check: does some usable offering fit a pending pod of the generated shapes?
fn some_usable_offering_fits(w: &World, pod: &gpupool::model::PendingPod) -> bool {
    let gpus = match &pod.gpu {
        gpupool::model::GpuRequest::Whole { count } => *count,
        _ => 0,
    };
    w.snap.groups.iter().any(|g| {
        g.offerings.iter().any(|o| {
            o.available
                && w.hist.in_backoff(&o.key(), T0).is_none()
                && o.instance_type.gpu.count >= gpus
                && pod
                    .node_selector
                    .values()
                    .all(|m| *m == o.instance_type.gpu.model)
                && (g.taints.is_empty() || !pod.tolerations.is_empty())
        })
    })
}

fn check_pods(w: &World, plan: &Plan) -> Result<(), TestCaseError> {
    let mut acted_gpus = 0u32;
    for pod in &w.snap.pending_pods {
        let ds: Vec<_> = plan
            .decisions
            .iter()
            .filter(|d| d.subject == Subject::Pod(pod.key()))
            .collect();
        prop_assert_eq!(ds.len(), 1, "pod {} has {} decisions", pod.key(), ds.len());
        let d = ds[0];
        let gpus = match &pod.gpu {
            gpupool::model::GpuRequest::Whole { count } => *count,
            _ => 0,
        };
        match d.outcome {
            Outcome::Acted => acted_gpus += gpus,
            Outcome::Satisfied => {}
            Outcome::Blocked => {
                let code = d.reason.code();
                if code == "no_offering_fits" {
                    prop_assert!(
                        !some_usable_offering_fits(w, pod),
                        "{} blocked ({}) but a usable offering fits",
                        pod.key(),
                        d.reason
                    );
                } else {
                    prop_assert!(
                        [
                            "at_max_nodes",
                            "at_max_cost",
                            "max_nodes_per_tick",
                            "group_at_max_size",
                            "activity_in_progress",
                            "offering_in_backoff",
                            "offering_unavailable",
                            "not_in_any_pool",
                        ]
                        .contains(&code),
                        "unexpected reason {code}"
                    );
                }
            }
            Outcome::Held => prop_assert!(false, "pods are never held"),
        }
    }
    let new_gpus: u32 = launches(w, plan).iter().map(|x| gpus_of(&x.1) * x.5).sum();
    prop_assert!(
        acted_gpus <= new_gpus,
        "{acted_gpus} GPUs placed on {new_gpus} new"
    );
    Ok(())
}

/// The world after the shell applied the plan: launches are in flight, removals gone.
fn apply(w: &World, plan: &Plan) -> Snapshot {
    let mut s = w.snap.clone();
    let gone = removed(plan);
    for i in &mut s.instances {
        if gone.contains(i.id.as_str()) {
            i.state = LifecycleState::Terminating;
        }
    }
    for g in &mut s.groups {
        let n = s
            .instances
            .iter()
            .filter(|i| {
                i.group == g.id && gone.contains(i.id.as_str()) && i.state != LifecycleState::Warm
            })
            .count() as u32;
        g.desired = g.desired.saturating_sub(n);
    }
    for (k, (group, itype, ct, zone, warm, count)) in launches(w, plan).into_iter().enumerate() {
        for j in 0..count {
            let st = if warm {
                LifecycleState::Starting
            } else {
                LifecycleState::Launching
            };
            let inst = instance(&format!("new-{k}-{j}"), &group, &itype, ct)
                .zone(&zone)
                .state(st)
                .launched(T0)
                .cache("m@v2")
                .build();
            s.instances.push(inst);
        }
        if let Some(g) = s.groups.iter_mut().find(|g| g.id.as_str() == group) {
            g.desired += count;
            if warm && let Some(wp) = &mut g.warm_pool {
                wp.ready = wp.ready.saturating_sub(count);
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/planner_props.txt"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold(p in params()) {
        let w = build(&p);
        let plan1 = plan(&w.snap, &w.cfg, &w.hist, T0);
        check_limits(&w, &plan1)?;
        check_demand(&w, &plan1)?;
        check_budget(&w, &plan1)?;
        check_pods(&w, &plan1)?;
    }

    #[test]
    fn replanning_with_launches_in_flight_adds_nothing(p in params()) {
        let w = build(&p);
        let plan1 = plan(&w.snap, &w.cfg, &w.hist, T0);
        // When a limit stopped growth (per-tick, max nodes, max cost, group size) some pods
        // were left without capacity; on the next tick they may fit leftover in-flight room
        // and a cheaper arrangement may launch more. The invariant is about plans that placed
        // everything they could.
        let limit_hit = plan1
            .decisions
            .iter()
            .any(|d| matches!(d.subject, Subject::Pool(_)) && d.outcome == Outcome::Blocked);
        prop_assume!(!limit_hit);
        let snap2 = apply(&w, &plan1);
        let plan2 = plan(&snap2, &w.cfg, &w.hist, T0);
        // A consolidation replacement may first become possible on the second plan (the
        // first plan's scale-down freed room in a group at its max size); what must never
        // happen is a second replacement for a node the first plan already replaces, or any
        // other launch for the same need.
        let replaced_by_plan1: Vec<&InstanceId> = plan1
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::ScaleUp { reason: Reason::Consolidate { replaces, .. }, .. } => {
                    Some(replaces)
                }
                _ => None,
            })
            .collect();
        let again: Vec<String> = plan2
            .actions
            .iter()
            .filter(|a| match a {
                Action::ScaleUp { reason: Reason::Consolidate { replaces, .. }, .. } => {
                    replaced_by_plan1.contains(&replaces)
                }
                Action::ScaleUp { .. } | Action::StartWarm { .. } => true,
                _ => false,
            })
            .map(|a| a.to_string())
            .collect();
        prop_assert!(again.is_empty(), "second plan launches again: {again:?}\nfirst: {:?}",
            plan1.actions.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    }
}
