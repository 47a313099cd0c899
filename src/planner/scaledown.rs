//! Scale-down: which serving nodes are unneeded, and which of those to remove now.
//!
//! A node is *unneeded* when the pool keeps enough without it: serving replicas ≥ signal
//! demand + headroom, nodes ≥ `min_nodes`, on-demand nodes ≥ `on_demand_base`, and (Kubernetes
//! mode) its workload pods fit the free room of the nodes that stay. Nothing is unneeded while
//! any signal of the pool is stale: a missing metric must never look like zero demand.
//!
//! An unneeded node is removed only after `unneeded_time_s` (the shell keeps the since-clock),
//! `scale_down_delay_after_add_s` after the pool's last scale-up, and within the disruption
//! budget. Empty Kubernetes nodes are terminated; nodes with work are drained (the shell
//! terminates them once drained). A VM-only node is always drained, idle or not: a load
//! balancer may route to it until its `deregister_command` ran, and its in-flight count may be
//! unknown. Every unneeded node kept gets a decision saying why.

use super::PoolCtx;
use super::demand::Want;
use super::fit::{PodSpec, Room, label_mismatch};
use crate::config::{DisruptionBudget, Mode};
use crate::model::{
    Action, CapacityType, Decision, GpuRequest, History, Instance, InstanceId, LifecycleState,
    Node, NodeGroupId, Outcome, PendingPod, Price, Reason, Subject, Timestamp, tolerates_all,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// What is left of the pool's disruption budget in this plan.
pub(crate) struct Budget {
    policy: DisruptionBudget,
    at_once_left: u32,
    /// `None`: no per-window limit.
    window_left: Option<u32>,
}

impl Budget {
    /// `draining`: instances of the pool already draining; `in_window`: voluntary disruptions
    /// recorded in the current window.
    pub fn new(policy: &DisruptionBudget, draining: u32, in_window: u32) -> Self {
        Budget {
            policy: policy.clone(),
            at_once_left: policy.max_disrupted_at_once.saturating_sub(draining),
            window_left: policy.max_per_window.map(|m| m.saturating_sub(in_window)),
        }
    }
    pub fn left(&self) -> u32 {
        self.at_once_left.min(self.window_left.unwrap_or(u32::MAX))
    }
    /// Use one disruption if any is left.
    pub fn take(&mut self) -> bool {
        if self.left() == 0 {
            return false;
        }
        self.at_once_left -= 1;
        if let Some(w) = &mut self.window_left {
            *w -= 1;
        }
        true
    }
    pub fn exhausted(&self) -> Reason {
        Reason::BudgetExhausted {
            at_once: self.policy.max_disrupted_at_once,
            in_window: self.policy.max_per_window,
            window_s: self.policy.window_s,
        }
    }
}

/// A serving node of the pool, as scale-down and consolidation see it.
pub(crate) struct Serving<'a> {
    pub inst: &'a Instance,
    pub node: Option<&'a Node>,
    pub tpl: Option<usize>,
    pub rpn: u32,
    pub eff_price: Price,
    pub price: Price,
    pub empty: bool,
    pub protected: Option<Reason>,
}

/// Serving-ready instances of the pool that are not already being removed.
pub(crate) fn serving<'a>(
    ctx: &PoolCtx<'a>,
    nodes: &BTreeMap<&InstanceId, &'a Node>,
    gone: &BTreeSet<&InstanceId>,
) -> Vec<Serving<'a>> {
    let mut out = Vec::new();
    for (ii, &inst) in ctx.instances.iter().enumerate() {
        if inst.state != LifecycleState::Ready || gone.contains(&inst.id) {
            continue;
        }
        let node = nodes.get(&inst.id).copied();
        // A Ready instance whose node is not serving yet is still coming up: not capacity to
        // count on, not a node to remove.
        if node.is_some_and(|n| !n.serving_ready) {
            continue;
        }
        let tpl = ctx.inst_tpl[ii];
        let t = tpl.map(|t| &ctx.tpls[t]);
        let protected = if let Some(&since) = ctx.held_back.get(&inst.id) {
            Some(Reason::DrainAbandoned { since })
        } else if inst.protected_from_scale_in {
            Some(Reason::ScaleDownDisabled)
        } else if let Some(n) = node {
            if n.scale_down_disabled {
                Some(Reason::ScaleDownDisabled)
            } else {
                n.pods
                    .iter()
                    .find(|p| p.do_not_disrupt)
                    .map(|p| Reason::DoNotDisrupt {
                        pod: format!("{}/{}", p.namespace, p.name),
                    })
            }
        } else {
            None
        };
        out.push(Serving {
            inst,
            node,
            tpl,
            rpn: t.map_or(0, |t| t.rpn),
            // No template: nothing is known of its price (unknown is not zero).
            eff_price: t.map_or(Price::Unknown, |t| t.eff_price),
            price: t.map_or(Price::Unknown, |t| t.price),
            // Without a node record nothing is known about its work: treat it as busy so it is
            // drained, never cut.
            empty: node.is_some_and(|n| n.is_empty()),
            protected,
        });
    }
    out
}

/// Free room of one serving node, for the "do its pods fit elsewhere" simulation.
struct Target<'c> {
    labels: BTreeMap<String, String>,
    taints: &'c [crate::model::Taint],
    caps: super::fit::Caps<'c>,
    room: Room<'c>,
}

pub(crate) struct ScaleDownResult<'a> {
    pub unneeded: BTreeSet<&'a InstanceId>,
    /// Instances removed (terminated or drained) by this plan.
    pub removed: Vec<&'a InstanceId>,
    pub removed_cost: super::capacity::Cost,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn scale_down<'c, 'a: 'c>(
    ctx: &'c PoolCtx<'a>,
    mode: Mode,
    serving: &[Serving<'a>],
    expected: &BTreeSet<&'a InstanceId>,
    want: Option<Want>,
    scaled_up: bool,
    history: &History,
    now: Timestamp,
    budget: &mut Budget,
    actions: &mut Vec<Action>,
    decisions: &mut Vec<Decision>,
) -> ScaleDownResult<'a> {
    let pool = ctx.cfg;
    let d = &pool.disruption;
    let mut res = ScaleDownResult {
        unneeded: BTreeSet::new(),
        removed: Vec::new(),
        removed_cost: super::capacity::Cost::default(),
    };
    let need = want.map_or(0, |w| w.replicas) + d.headroom_replicas;
    let mut cap: u32 = serving.iter().map(|s| s.rpn).sum();
    let mut count = serving.len() as u32;
    let mut on_demand = serving
        .iter()
        .filter(|s| s.inst.capacity_type == CapacityType::OnDemand)
        .count() as u32;

    // Free room of every serving node (Kubernetes mode), indexed like `serving`.
    let mut targets: Vec<Option<Target<'c>>> = Vec::new();
    if mode == Mode::Kubernetes {
        targets = free_room(ctx, serving);
    }
    // Nodes pending pods are expected on this tick count as having received pods: kept, and
    // not room for anyone else's.
    let mut received: Vec<bool> = serving
        .iter()
        .map(|s| expected.contains(&s.inst.id))
        .collect();
    for (i, r) in received.iter().enumerate() {
        if *r && let Some(t) = targets.get_mut(i) {
            *t = None;
        }
    }
    let mut marked = vec![false; serving.len()];
    // A group cannot shrink below its own min size: AWS refuses a terminate-with-decrement
    // there ("cannot decrement below min size", TerminateInstanceInAutoScalingGroup), and a
    // terminate without decrement is replaced at once. Such a node is kept, and said so.
    let mut group_left: BTreeMap<&NodeGroupId, (u32, u32)> = ctx
        .groups
        .iter()
        .map(|g| (&g.id, (g.desired, g.min_size)))
        .collect();

    let mut order: Vec<usize> = (0..serving.len()).collect();
    let by_victim = |s: &Serving<'_>| {
        (
            !s.empty,
            Reverse(s.eff_price),
            Reverse(s.inst.launched_at),
            s.inst.capacity_type == CapacityType::OnDemand,
        )
    };
    if d.consolidation {
        // Keep the cheapest capacity: a replacement launched by consolidation is empty when it
        // starts serving, and must not be the node removed instead of the one it replaces.
        order.sort_by(|&a, &b| {
            let (sa, sb) = (&serving[a], &serving[b]);
            (Reverse(sa.eff_price), by_victim(sa), &sa.inst.id).cmp(&(
                Reverse(sb.eff_price),
                by_victim(sb),
                &sb.inst.id,
            ))
        });
    } else {
        order.sort_by(|&a, &b| {
            let (sa, sb) = (&serving[a], &serving[b]);
            (by_victim(sa), &sa.inst.id).cmp(&(by_victim(sb), &sb.inst.id))
        });
    }

    for &i in &order {
        let s = &serving[i];
        let od = s.inst.capacity_type == CapacityType::OnDemand;
        let capacity_hold = if cap.saturating_sub(s.rpn) < need {
            Some(Reason::NeededForDemand)
        } else if count <= pool.limits.min_nodes {
            Some(Reason::AtMinNodes {
                min: pool.limits.min_nodes,
            })
        } else if od && on_demand <= pool.capacity.on_demand_base {
            Some(Reason::OnDemandBase {
                base: pool.capacity.on_demand_base,
            })
        } else if let Some(&(left, min)) = group_left.get(&s.inst.group)
            && left <= min
        {
            Some(Reason::GroupAtMinSize {
                group: s.inst.group.clone(),
                min,
            })
        } else {
            None
        };
        if let Some(r) = capacity_hold {
            // Busy nodes needed for demand are the normal case; say something only about the
            // surprising one, an empty node that is kept.
            if s.empty {
                decisions.push(held(s.inst, r));
            }
            continue;
        }
        if let Some(r) = &s.protected {
            decisions.push(held(s.inst, r.clone()));
            continue;
        }
        if received[i] {
            // Pods of another unneeded node were placed here in the simulation.
            continue;
        }
        if mode == Mode::Kubernetes
            && let Some(node) = s.node
            && !s.empty
        {
            match fit_elsewhere(node, i, &mut targets, &marked) {
                Ok(hosts) => {
                    for h in hosts {
                        received[h] = true;
                    }
                }
                // Its pods have nowhere else to go: the node is needed, the normal state of a
                // busy pool, so no decision (it would be one line per node per tick).
                Err(_) => continue,
            }
        }
        marked[i] = true;
        if let Some((left, _)) = group_left.get_mut(&s.inst.group) {
            *left = left.saturating_sub(1);
        }
        cap -= s.rpn;
        count -= 1;
        if od {
            on_demand -= 1;
        }
        res.unneeded.insert(&s.inst.id);
    }

    // Of the unneeded, remove those that waited long enough, within cool-down and budget.
    let since_up = if scaled_up {
        Some(0.0)
    } else {
        history
            .last_scale_up
            .get(&pool.name)
            .map(|t| now.secs_since(*t).max(0.0))
    };
    let mut ready_to_go: Vec<usize> = Vec::new();
    for &i in &order {
        if !marked[i] {
            continue;
        }
        let s = &serving[i];
        let since = history
            .unneeded_since
            .get(&s.inst.id)
            .copied()
            .unwrap_or(now);
        let for_s = now.secs_since(since).max(0.0) as u64;
        if for_s < pool.unneeded_time_s() {
            decisions.push(held(
                s.inst,
                Reason::UnneededTooShort {
                    unneeded_for_s: for_s,
                    need_s: pool.unneeded_time_s(),
                },
            ));
        } else if let Some(up) = since_up
            && (up as u64) < pool.scale_down_delay_after_add_s()
        {
            decisions.push(held(
                s.inst,
                Reason::ScaleDownCooldown {
                    since_scale_up_s: up as u64,
                    need_s: pool.scale_down_delay_after_add_s(),
                },
            ));
        } else {
            ready_to_go.push(i);
        }
    }
    ready_to_go.sort_by(|&a, &b| {
        let (sa, sb) = (&serving[a], &serving[b]);
        (by_victim(sa), &sa.inst.id).cmp(&(by_victim(sb), &sb.inst.id))
    });
    for i in ready_to_go {
        let s = &serving[i];
        if !budget.take() {
            decisions.push(held(s.inst, budget.exhausted()));
            continue;
        }
        let since = history
            .unneeded_since
            .get(&s.inst.id)
            .copied()
            .unwrap_or(now);
        let for_s = now.secs_since(since).max(0.0) as u64;
        let reason = if s.empty {
            Reason::Empty
        } else {
            Reason::Unneeded {
                unneeded_for_s: for_s,
            }
        };
        // Every scale-in drains. Kubernetes: an empty node is cordoned and its pods listed
        // again from the API server before it goes (a `Drain` that finishes in the same tick
        // when it is still empty) — the scheduler may have bound a pod since the cache was
        // read. VM-only: deregister + wait-for-idle first, even when the VM looks idle.
        actions.push(Action::Drain {
            pool: pool.name.clone(),
            group: s.inst.group.clone(),
            instance: s.inst.id.clone(),
            node: s.node.map(|n| n.name.clone()),
            deadline: Some(now.plus_secs(d.drain_timeout_s as f64)),
            reason,
        });
        res.removed.push(&s.inst.id);
        res.removed_cost.add(s.price);
    }
    res
}

fn held(i: &Instance, reason: Reason) -> Decision {
    Decision {
        subject: Subject::Instance(i.id.clone()),
        outcome: Outcome::Held,
        reason,
    }
}

/// Free room of each serving node, indexed like `serving` (`None`: template or node unknown).
fn free_room<'c>(ctx: &'c PoolCtx<'_>, serving: &[Serving<'c>]) -> Vec<Option<Target<'c>>> {
    serving
        .iter()
        .map(|s| {
            let t = &ctx.tpls[s.tpl?];
            let node = s.node?;
            let mut labels = t.labels.clone();
            labels.extend(node.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            let taints: &[crate::model::Taint] = if node.taints.is_empty() {
                &t.taints
            } else {
                &node.taints
            };
            let mut room = Room::EMPTY;
            for p in &node.pods {
                room.take(&t.caps, &PodSpec::running(p), 1);
            }
            Some(Target {
                labels,
                taints,
                caps: t.caps,
                room,
            })
        })
        .collect()
}

/// The GPU pods still running on the pool's leaving nodes (draining, or at risk with
/// `rebalance: prelaunch`): they need a home before their node goes, so they are pending demand
/// now — placed on serving nodes' free room first by the bin-packing, like every pending pod,
/// and on new capacity otherwise. Pods already being deleted are left out: their owners'
/// replacement pods are the demand.
pub(crate) fn displaced<'a>(
    ctx: &PoolCtx<'a>,
    nodes: &BTreeMap<&InstanceId, &'a Node>,
    now: Timestamp,
) -> Vec<PendingPod> {
    ctx.instances
        .iter()
        .filter(|i| i.state == LifecycleState::Draining || ctx.at_risk.contains(&i.id))
        .filter_map(|i| nodes.get(&i.id).copied())
        .flat_map(|n| n.workload_pods())
        .filter(|p| !p.terminating && p.gpu != GpuRequest::None)
        .map(|p| p.displaced(now))
        .collect()
}

/// Place every workload pod of `node` on the free room of other nodes that stay (first fit).
/// Commits the placements and returns the hosts used, or the first pod that does not fit.
fn fit_elsewhere<'c>(
    node: &'c Node,
    me: usize,
    targets: &mut [Option<Target<'c>>],
    marked: &[bool],
) -> Result<Vec<usize>, String> {
    let mut trial: Vec<(usize, Room<'c>)> = Vec::new();
    for p in node.workload_pods() {
        let spec = PodSpec::running(p);
        let mut placed = false;
        for (ti, t) in targets.iter().enumerate() {
            if ti == me || marked[ti] {
                continue;
            }
            let Some(t) = t else { continue };
            let room = trial
                .iter()
                .rev()
                .find(|(x, _)| *x == ti)
                .map_or(t.room, |(_, r)| *r);
            if room.fit_count(&t.caps, &spec, 1) == 0
                || !tolerates_all(spec.tolerations, t.taints)
                || label_mismatch(spec.node_selector, spec.affinity, &t.labels).is_some()
            {
                continue;
            }
            let mut room = room;
            room.take(&t.caps, &spec, 1);
            trial.push((ti, room));
            placed = true;
            break;
        }
        if !placed {
            return Err(format!("{}/{}", p.namespace, p.name));
        }
    }
    let mut hosts = Vec::new();
    for (ti, room) in trial {
        if let Some(t) = &mut targets[ti] {
            // Later entries for the same host carry the accumulated room.
            t.room = room;
        }
        if !hosts.contains(&ti) {
            hosts.push(ti);
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use crate::model::{CapacityType, History, Outcome, Subject, Timestamp};
    use crate::planner::fixtures::*;
    use crate::planner::plan;

    fn three_ready() -> SnapshotBuilder {
        snapshot()
            .group(g5_od())
            .instance(instance(
                "i-1",
                "g5-od",
                "g5.xlarge",
                CapacityType::OnDemand,
            ))
            .instance(instance(
                "i-2",
                "g5-od",
                "g5.xlarge",
                CapacityType::OnDemand,
            ))
            .instance(instance(
                "i-3",
                "g5-od",
                "g5.xlarge",
                CapacityType::OnDemand,
            ))
            .node(node("i-1", "llm", CapacityType::OnDemand).pod(running_pod("a", 1)))
            .node(node("i-2", "llm", CapacityType::OnDemand))
            .node(node("i-3", "llm", CapacityType::OnDemand))
    }

    fn long_unneeded() -> History {
        let mut h = History::default();
        for i in ["i-1", "i-2", "i-3"] {
            h.unneeded_since.insert(i.into(), Timestamp::from_secs(0));
        }
        h
    }

    fn summary(p: &crate::model::Plan) -> Vec<String> {
        let mut v: Vec<String> = p
            .actions
            .iter()
            .map(|a| format!("{} {}", a.kind(), a.reason().map_or("", |r| r.code())))
            .collect();
        v.extend(p.decisions.iter().filter_map(|d| match &d.subject {
            Subject::Instance(i) => Some(format!("{i} {}", d.reason.code())),
            _ => None,
        }));
        v
    }

    #[test]
    fn table() {
        let mut pool = pool_cfg("llm");
        pool.disruption.consolidation = false;
        pool.disruption.budget.max_disrupted_at_once = 1;
        // (snapshot, history, pool tweak, expected actions+instance decisions, unneeded count)
        type Tweak = fn(&mut crate::config::PoolConfig);
        fn keep(_: &mut crate::config::PoolConfig) {}
        fn no_headroom(p: &mut crate::config::PoolConfig) {
            p.disruption.headroom_replicas = 0;
        }
        fn min3(p: &mut crate::config::PoolConfig) {
            p.limits.min_nodes = 3;
        }
        fn min1_budget3(p: &mut crate::config::PoolConfig) {
            p.limits.min_nodes = 1;
            p.disruption.budget.max_disrupted_at_once = 3;
            p.disruption.budget.max_per_window = Some(3);
        }
        type Case = (
            &'static str,
            crate::model::Snapshot,
            History,
            Tweak,
            Vec<&'static str>,
            usize,
        );
        let cases: Vec<Case> = vec![
            (
                "demand 1: two empty unneeded, budget 1 removes one",
                three_ready().demand("llm", 1, None).build(),
                long_unneeded(),
                keep,
                vec!["drain empty", "i-3 budget_exhausted"],
                2,
            ),
            (
                "stale signal holds everything",
                three_ready()
                    .demand("llm", 1, None)
                    .stale("llm", "prom")
                    .build(),
                long_unneeded(),
                keep,
                vec![],
                0,
            ),
            (
                "too short",
                three_ready().demand("llm", 3, None).build(),
                History::default(),
                no_headroom,
                vec!["i-2 needed_for_demand", "i-3 needed_for_demand"],
                0,
            ),
            (
                "fresh unneeded waits",
                three_ready().demand("llm", 2, None).build(),
                History::default(),
                keep,
                vec!["i-3 needed_for_demand", "i-2 unneeded_too_short"],
                1,
            ),
            (
                "min nodes keeps them",
                three_ready().demand("llm", 0, None).build(),
                long_unneeded(),
                min3,
                vec!["i-2 at_min_nodes", "i-3 at_min_nodes"],
                0,
            ),
            (
                "min 1 keeps the busy node, both empty go",
                three_ready().demand("llm", 0, None).build(),
                long_unneeded(),
                min1_budget3,
                vec!["drain empty", "drain empty"],
                2,
            ),
            (
                "the group's own min size 2 keeps one of the two empty nodes",
                {
                    let mut s = three_ready().demand("llm", 0, None).build();
                    s.groups[0].min_size = 2;
                    s
                },
                long_unneeded(),
                min1_budget3,
                vec!["drain empty", "i-3 group_at_min_size"],
                1,
            ),
        ];
        for (name, snap, hist, tweak, want, unneeded) in cases {
            let mut p = pool.clone();
            tweak(&mut p);
            let plan = plan(&snap, &config(vec![p]), &hist, T0);
            let got = summary(&plan);
            assert_eq!(got, want, "{name}");
            assert_eq!(plan.unneeded.len(), unneeded, "{name}");
        }
    }

    #[test]
    fn a_node_whose_voluntary_drain_was_abandoned_is_left_alone_for_a_while() {
        let mut pool = pool_cfg("llm");
        pool.disruption.budget.max_disrupted_at_once = 3;
        pool.disruption.budget.max_per_window = Some(3);
        let snap = three_ready().demand("llm", 0, None).build();
        let mut h = long_unneeded();
        h.record_drain_abandoned(&"i-1".into(), T0.plus_secs(-60.0));
        let got = summary(&plan(&snap, &config(vec![pool.clone()]), &h, T0));
        assert!(got.contains(&"i-1 drain_abandoned".to_string()), "{got:?}");
        // Only the two empty nodes go (cordoned and re-checked: Kubernetes mode).
        assert_eq!(
            got.iter().filter(|g| g.starts_with("drain ")).count(),
            2,
            "{got:?}"
        );
        // After max(unneeded_time_s 600 s, drain_timeout_s 900 s) it is a candidate again.
        h.drain_abandoned.insert("i-1".into(), T0.plus_secs(-899.0));
        let got = summary(&plan(&snap, &config(vec![pool.clone()]), &h, T0));
        assert!(got.contains(&"i-1 drain_abandoned".to_string()), "{got:?}");
        h.drain_abandoned.insert("i-1".into(), T0.plus_secs(-901.0));
        let got = summary(&plan(&snap, &config(vec![pool]), &h, T0));
        assert!(!got.contains(&"i-1 drain_abandoned".to_string()), "{got:?}");
    }

    #[test]
    fn stale_signal_is_reported() {
        let snap = three_ready()
            .demand("llm", 1, None)
            .stale("llm", "prom")
            .build();
        let p = plan(&snap, &config(vec![pool_cfg("llm")]), &long_unneeded(), T0);
        let d = p
            .decisions
            .iter()
            .find(|d| d.reason.code() == "data_stale")
            .unwrap();
        assert_eq!(d.outcome, Outcome::Held);
        assert!(d.reason.to_string().contains("prom"));
    }

    #[test]
    fn cooldown_after_scale_up_and_protection() {
        let mut h = long_unneeded();
        h.last_scale_up.insert("llm".into(), T0.plus_secs(-60.0));
        let snap = snapshot()
            .group(g5_od())
            .instance(instance(
                "i-1",
                "g5-od",
                "g5.xlarge",
                CapacityType::OnDemand,
            ))
            .instance(instance("i-2", "g5-od", "g5.xlarge", CapacityType::OnDemand).protected())
            .instance(instance(
                "i-3",
                "g5-od",
                "g5.xlarge",
                CapacityType::OnDemand,
            ))
            .node(node("i-1", "llm", CapacityType::OnDemand).do_not_disrupt("keep"))
            .node(node("i-3", "llm", CapacityType::OnDemand))
            .demand("llm", 0, None)
            .build();
        let p = plan(&snap, &config(vec![pool_cfg("llm")]), &h, T0);
        let got = summary(&p);
        assert!(got.contains(&"i-1 do_not_disrupt".to_string()), "{got:?}");
        assert!(
            got.contains(&"i-2 scale_down_disabled".to_string()),
            "{got:?}"
        );
        assert!(
            got.contains(&"i-3 scale_down_cooldown".to_string()),
            "{got:?}"
        );
        assert!(p.actions.is_empty());
    }

    /// VM-only: an unneeded VM is drained (deregister + wait-for-idle) whatever its in-flight
    /// state — a known 0, no series, unreadable — and never terminated directly. An unknown
    /// count is not idle: the VM with a known 0 goes first.
    #[test]
    fn vm_only_scale_in_always_drains() {
        use crate::model::{Action, InFlight};
        let mut pool = pool_cfg("llm");
        pool.disruption.consolidation = false;
        pool.disruption.budget.max_disrupted_at_once = 3;
        pool.disruption.budget.max_per_window = Some(3);
        let vm = |id: &str, f: InFlight| {
            let mut n = node(id, "llm", CapacityType::OnDemand).build();
            n.in_flight_requests = f;
            n
        };
        let snap = three_ready().demand("llm", 0, None).build();
        let mut snap = snap;
        snap.nodes = vec![
            vm("i-1", InFlight::Unreadable),
            vm("i-2", InFlight::NoSeries),
            vm("i-3", InFlight::Known(0)),
        ];
        let mut cfg = config(vec![pool]);
        cfg.mode = crate::config::Mode::VmOnly;
        let p = plan(&snap, &cfg, &long_unneeded(), T0);
        let drained: Vec<&str> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Drain { instance, .. } => Some(instance.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(drained, vec!["i-3", "i-1", "i-2"], "{:?}", p.actions);
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::ScaleDown { .. })),
            "no VM is terminated before it was deregistered: {:?}",
            p.actions
        );
        let reasons: Vec<&str> = p
            .actions
            .iter()
            .filter_map(|a| a.reason())
            .map(|r| r.code())
            .collect();
        assert_eq!(reasons[0], "empty", "the idle VM is named as such");
    }

    #[test]
    fn busy_node_is_drained_not_terminated() {
        let mut pool = pool_cfg("llm");
        pool.disruption.consolidation = false;
        // Two 4-GPU nodes each running one 1-GPU pod; demand none: one can go, its pod moves.
        let snap = snapshot()
            .group(group("g", "llm").offering(offering(
                "g5.12xlarge",
                CapacityType::OnDemand,
                "us-east-1a",
                5.672,
            )))
            .instance(instance("i-a", "g", "g5.12xlarge", CapacityType::OnDemand))
            .instance(
                instance("i-b", "g", "g5.12xlarge", CapacityType::OnDemand)
                    .launched(T0.plus_secs(-10.0)),
            )
            .node(node("i-a", "llm", CapacityType::OnDemand).pod(running_pod("a", 1)))
            .node(node("i-b", "llm", CapacityType::OnDemand).pod(running_pod("b", 1)))
            .build();
        let mut h = History::default();
        h.unneeded_since
            .insert("i-a".into(), Timestamp::from_secs(0));
        h.unneeded_since
            .insert("i-b".into(), Timestamp::from_secs(0));
        let p = plan(&snap, &config(vec![pool]), &h, T0);
        assert_eq!(
            p.unneeded,
            vec!["i-b".into()],
            "newest first, the other hosts its pod"
        );
        assert!(
            matches!(&p.actions[..], [crate::model::Action::Drain { instance, .. }] if instance.as_str() == "i-b")
        );
    }
}
