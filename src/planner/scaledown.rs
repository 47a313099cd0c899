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
use crate::config::{DisruptionBudget, Mode, PoolConfig};
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
            window_s: self.policy.window.as_secs(),
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
    let order = removal_order(serving, pool.disruption.consolidation);
    let marked = mark_unneeded(ctx, mode, serving, expected, want, &order, decisions);
    let unneeded = serving
        .iter()
        .zip(&marked)
        .filter(|(_, m)| **m)
        .map(|(s, _)| &s.inst.id)
        .collect();
    // Of the unneeded, remove those that waited long enough, within cool-down and budget.
    let since_up_s = since_scale_up_s(pool, scaled_up, history, now);
    let mut ready: Vec<usize> = Vec::new();
    for &i in order.iter().filter(|&&i| marked[i]) {
        let s = &serving[i];
        let waited_s = unneeded_for_s(history, &s.inst.id, now);
        match wait_reason(
            waited_s,
            since_up_s,
            pool.unneeded_time().as_secs(),
            pool.scale_down_delay_after_add().as_secs(),
        ) {
            Some(r) => decisions.push(held(s.inst, r)),
            None => ready.push(i),
        }
    }
    ready.sort_by(|&a, &b| victim_order(&serving[a], &serving[b]));
    let mut res = ScaleDownResult {
        unneeded,
        removed: Vec::new(),
        removed_cost: super::capacity::Cost::default(),
    };
    for i in ready {
        let s = &serving[i];
        if !budget.take() {
            decisions.push(held(s.inst, budget.exhausted()));
            continue;
        }
        let waited_s = unneeded_for_s(history, &s.inst.id, now);
        actions.push(drain(pool, s, waited_s, now));
        res.removed.push(&s.inst.id);
        res.removed_cost.add(s.price);
    }
    res
}

/// The order scale-down considers serving nodes in (indexes into `serving`): the likeliest
/// victims first. With consolidation the dearest capacity comes first whatever else: a
/// replacement launched by consolidation is empty when it starts serving, and must not be the
/// node removed instead of the one it replaces.
fn removal_order(serving: &[Serving<'_>], consolidation: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..serving.len()).collect();
    if consolidation {
        order.sort_by(|&a, &b| {
            let (sa, sb) = (&serving[a], &serving[b]);
            (Reverse(sa.eff_price), victim_key(sa), &sa.inst.id).cmp(&(
                Reverse(sb.eff_price),
                victim_key(sb),
                &sb.inst.id,
            ))
        });
    } else {
        order.sort_by(|&a, &b| victim_order(&serving[a], &serving[b]));
    }
    order
}

/// Empty before busy, dearer before cheaper (an unknown price first: the known-priced nodes are
/// kept), newer before older, spot before on-demand.
fn victim_key(s: &Serving<'_>) -> (bool, Reverse<Price>, Reverse<Timestamp>, bool) {
    (
        !s.empty,
        Reverse(s.eff_price),
        Reverse(s.inst.launched_at),
        s.inst.capacity_type == CapacityType::OnDemand,
    )
}

/// [`victim_key`], then the instance id so the order is total.
fn victim_order(a: &Serving<'_>, b: &Serving<'_>) -> std::cmp::Ordering {
    (victim_key(a), &a.inst.id).cmp(&(victim_key(b), &b.inst.id))
}

/// Mark, in `order`, the nodes the pool keeps enough without; returns the marks, indexed like
/// `serving`. An empty node kept for capacity and a protected node get a decision saying why.
fn mark_unneeded<'c, 'a: 'c>(
    ctx: &'c PoolCtx<'a>,
    mode: Mode,
    serving: &[Serving<'a>],
    expected: &BTreeSet<&'a InstanceId>,
    want: Option<Want>,
    order: &[usize],
    decisions: &mut Vec<Decision>,
) -> Vec<bool> {
    let mut keep = Keep::new(ctx, serving, want);
    let mut rehoming = Rehoming::new(ctx, mode, serving, expected);
    for &i in order {
        let s = &serving[i];
        let od = s.inst.capacity_type == CapacityType::OnDemand;
        if let Some(r) = keep.hold(s.rpn, od, &s.inst.group) {
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
        if rehoming.mark(i, s) {
            keep.remove(s.rpn, od, &s.inst.group);
        }
    }
    rehoming.marked
}

/// What the pool still has while scale-down marks nodes unneeded one by one, and the floors it
/// must stay on.
#[derive(Debug)]
struct Keep<'g> {
    /// Replicas needed: signal demand + headroom.
    need: u32,
    /// Replicas the serving nodes not marked yet serve.
    cap: u32,
    nodes: u32,
    on_demand: u32,
    min_nodes: u32,
    on_demand_base: u32,
    /// Per group, `(desired left, min size)`. A group cannot shrink below its own min size:
    /// AWS refuses a terminate-with-decrement there ("cannot decrement below min size",
    /// TerminateInstanceInAutoScalingGroup), and a terminate without decrement is replaced at
    /// once. Such a node is kept, and said so.
    group_left: BTreeMap<&'g NodeGroupId, (u32, u32)>,
}

impl<'g> Keep<'g> {
    fn new(ctx: &PoolCtx<'g>, serving: &[Serving<'_>], want: Option<Want>) -> Self {
        let pool = ctx.cfg;
        Keep {
            need: want.map_or(0, |w| w.replicas) + pool.disruption.headroom_replicas,
            cap: serving.iter().map(|s| s.rpn).sum(),
            nodes: serving.len() as u32,
            on_demand: serving
                .iter()
                .filter(|s| s.inst.capacity_type == CapacityType::OnDemand)
                .count() as u32,
            min_nodes: pool.limits.min_nodes,
            on_demand_base: pool.capacity.on_demand_base,
            group_left: ctx
                .groups
                .iter()
                .map(|g| (&g.id, (g.desired, g.min_size)))
                .collect(),
        }
    }

    /// Why a node serving `rpn` replicas in `group` must stay for the pool's capacity; `None`
    /// when the pool keeps enough without it.
    fn hold(&self, rpn: u32, on_demand: bool, group: &NodeGroupId) -> Option<Reason> {
        if self.cap.saturating_sub(rpn) < self.need {
            Some(Reason::NeededForDemand)
        } else if self.nodes <= self.min_nodes {
            Some(Reason::AtMinNodes {
                min: self.min_nodes,
            })
        } else if on_demand && self.on_demand <= self.on_demand_base {
            Some(Reason::OnDemandBase {
                base: self.on_demand_base,
            })
        } else if let Some(&(left, min)) = self.group_left.get(group)
            && left <= min
        {
            Some(Reason::GroupAtMinSize {
                group: group.clone(),
                min,
            })
        } else {
            None
        }
    }

    /// The node is marked unneeded: the pool no longer counts it.
    fn remove(&mut self, rpn: u32, on_demand: bool, group: &NodeGroupId) {
        if let Some((left, _)) = self.group_left.get_mut(group) {
            *left = left.saturating_sub(1);
        }
        self.cap -= rpn;
        self.nodes -= 1;
        if on_demand {
            self.on_demand -= 1;
        }
    }
}

/// Kubernetes mode's "do its pods fit elsewhere" simulation over the serving nodes, and the
/// nodes marked unneeded so far (both indexed like `serving`).
struct Rehoming<'c> {
    /// Kubernetes mode: a busy node's workload pods must fit the nodes that stay.
    simulate: bool,
    /// Free room of every serving node (`None`: unknown, or not room for anyone else's pods).
    targets: Vec<Option<Target<'c>>>,
    /// Nodes that receive pods in the simulation (or pending pods on this tick): kept.
    received: Vec<bool>,
    marked: Vec<bool>,
}

impl<'c> Rehoming<'c> {
    fn new<'a: 'c>(
        ctx: &'c PoolCtx<'a>,
        mode: Mode,
        serving: &[Serving<'a>],
        expected: &BTreeSet<&'a InstanceId>,
    ) -> Self {
        let simulate = mode == Mode::Kubernetes;
        let mut targets = if simulate {
            free_room(ctx, serving)
        } else {
            Vec::new()
        };
        // Nodes pending pods are expected on this tick count as having received pods: kept, and
        // not room for anyone else's.
        let received: Vec<bool> = serving
            .iter()
            .map(|s| expected.contains(&s.inst.id))
            .collect();
        for (t, r) in targets.iter_mut().zip(&received) {
            if *r {
                *t = None;
            }
        }
        Rehoming {
            simulate,
            targets,
            received,
            marked: vec![false; serving.len()],
        }
    }

    /// Mark node `i` unneeded if it can go: it received no pods of another node that goes and
    /// (Kubernetes mode, busy node) its workload pods fit the nodes that stay, where they are
    /// then placed. `false`: the node is needed, the normal state of a busy pool, so no
    /// decision (it would be one line per node per tick).
    fn mark(&mut self, i: usize, s: &Serving<'c>) -> bool {
        if self.received[i] {
            return false;
        }
        if self.simulate
            && let Some(node) = s.node
            && !s.empty
        {
            let Some(hosts) = fit_elsewhere(node, i, &mut self.targets, &self.marked) else {
                return false;
            };
            for h in hosts {
                self.received[h] = true;
            }
        }
        self.marked[i] = true;
        true
    }
}

/// Seconds since the pool last scaled up (0 when this plan does), `None` if it never did.
fn since_scale_up_s(
    pool: &PoolConfig,
    scaled_up: bool,
    history: &History,
    now: Timestamp,
) -> Option<u64> {
    if scaled_up {
        return Some(0);
    }
    history
        .last_scale_up
        .get(&pool.name)
        .map(|t| now.secs_since(*t).max(0.0) as u64)
}

/// Whole seconds the instance has been unneeded (0 when it just became so).
fn unneeded_for_s(history: &History, id: &InstanceId, now: Timestamp) -> u64 {
    let since = history.unneeded_since.get(id).copied().unwrap_or(now);
    now.secs_since(since).max(0.0) as u64
}

/// Why an unneeded node waits before it goes: unneeded for less than `need_unneeded_s`, or the
/// pool scaled up less than `need_after_add_s` ago. `None`: it may go now.
fn wait_reason(
    unneeded_for_s: u64,
    since_scale_up_s: Option<u64>,
    need_unneeded_s: u64,
    need_after_add_s: u64,
) -> Option<Reason> {
    if unneeded_for_s < need_unneeded_s {
        return Some(Reason::UnneededTooShort {
            unneeded_for_s,
            need_s: need_unneeded_s,
        });
    }
    match since_scale_up_s {
        Some(up) if up < need_after_add_s => Some(Reason::ScaleDownCooldown {
            since_scale_up_s: up,
            need_s: need_after_add_s,
        }),
        _ => None,
    }
}

/// The action that removes an unneeded serving node. Every scale-in drains. Kubernetes: an empty
/// node is cordoned and its pods listed again from the API server before it goes (a `Drain`
/// that finishes in the same tick when it is still empty) — the scheduler may have bound a pod
/// since the cache was read. VM-only: deregister + wait-for-idle first, even when the VM looks
/// idle.
fn drain(pool: &PoolConfig, s: &Serving<'_>, unneeded_for_s: u64, now: Timestamp) -> Action {
    let reason = if s.empty {
        Reason::Empty
    } else {
        Reason::Unneeded { unneeded_for_s }
    };
    Action::Drain {
        pool: pool.name.clone(),
        group: s.inst.group.clone(),
        instance: s.inst.id.clone(),
        node: s.node.map(|n| n.name.clone()),
        deadline: Some(now.plus_secs(pool.disruption.drain_timeout.as_secs_f64())),
        reason,
    }
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
/// Commits the placements and returns the hosts used; `None` (nothing committed) when a pod
/// fits nowhere.
fn fit_elsewhere<'c>(
    node: &'c Node,
    me: usize,
    targets: &mut [Option<Target<'c>>],
    marked: &[bool],
) -> Option<Vec<usize>> {
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
            return None;
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
    Some(hosts)
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

    /// The capacity floors, in the order they are checked: demand, `min_nodes`, the on-demand
    /// base, the group's own min size.
    #[test]
    fn capacity_hold_table() {
        use super::Keep;
        use crate::model::{NodeGroupId, Reason};
        let g: NodeGroupId = "g".into();
        let keep = |need, cap, nodes, on_demand, group_left: u32| Keep {
            need,
            cap,
            nodes,
            on_demand,
            min_nodes: 1,
            on_demand_base: 1,
            group_left: [(&g, (group_left, 1))].into_iter().collect(),
        };
        // (name, keep, rpn of the node, node on-demand, want)
        let cases = [
            ("enough without it", keep(2, 4, 3, 3, 3), 1, true, None),
            (
                "demand needs its replica",
                keep(4, 4, 3, 3, 3),
                1,
                false,
                Some(Reason::NeededForDemand),
            ),
            (
                "a node serving no replica never holds demand",
                keep(4, 4, 3, 0, 3),
                0,
                false,
                None,
            ),
            (
                "at min nodes",
                keep(0, 4, 1, 0, 3),
                1,
                false,
                Some(Reason::AtMinNodes { min: 1 }),
            ),
            (
                "on-demand base holds an on-demand node",
                keep(0, 4, 3, 1, 3),
                1,
                true,
                Some(Reason::OnDemandBase { base: 1 }),
            ),
            (
                "on-demand base does not hold a spot node",
                keep(0, 4, 3, 1, 3),
                1,
                false,
                None,
            ),
            (
                "group at its min size",
                keep(0, 4, 3, 0, 1),
                1,
                false,
                Some(Reason::GroupAtMinSize {
                    group: "g".into(),
                    min: 1,
                }),
            ),
            (
                "demand is said before min nodes",
                keep(4, 4, 1, 1, 1),
                1,
                true,
                Some(Reason::NeededForDemand),
            ),
        ];
        for (name, k, rpn, od, want) in cases {
            assert_eq!(k.hold(rpn, od, &g), want, "{name}");
        }
        let mut k = keep(0, 4, 3, 3, 3);
        k.remove(1, true, &g);
        assert_eq!(
            (k.cap, k.nodes, k.on_demand, k.group_left[&g]),
            (3, 2, 2, (2, 1))
        );
    }

    #[test]
    fn wait_reason_table() {
        use super::wait_reason;
        use crate::model::Reason;
        // (unneeded for, since scale-up, want)
        let cases = [
            (600, None, None),
            (
                599,
                None,
                Some(Reason::UnneededTooShort {
                    unneeded_for_s: 599,
                    need_s: 600,
                }),
            ),
            (
                599,
                Some(0),
                Some(Reason::UnneededTooShort {
                    unneeded_for_s: 599,
                    need_s: 600,
                }),
            ),
            (
                900,
                Some(299),
                Some(Reason::ScaleDownCooldown {
                    since_scale_up_s: 299,
                    need_s: 300,
                }),
            ),
            (900, Some(300), None),
        ];
        for (unneeded_for_s, since_up, want) in cases {
            assert_eq!(
                wait_reason(unneeded_for_s, since_up, 600, 300),
                want,
                "{unneeded_for_s} {since_up:?}"
            );
        }
    }

    /// Victims first: empty, dearer, newer, spot; with consolidation the dearest whatever else.
    #[test]
    fn removal_order_table() {
        use super::{Serving, removal_order};
        use crate::model::{Instance, Price};
        let inst = |id: &str, ct, launched_s: f64| -> Instance {
            instance(id, "g", "g5.xlarge", ct)
                .launched(T0.plus_secs(launched_s))
                .build()
        };
        let insts = [
            inst("busy-dear", CapacityType::OnDemand, 0.0),
            inst("empty-cheap", CapacityType::OnDemand, 0.0),
            inst("empty-cheap-new", CapacityType::OnDemand, 10.0),
            inst("empty-cheap-spot", CapacityType::Spot, 0.0),
        ];
        let serving: Vec<Serving<'_>> = insts
            .iter()
            .map(|i| {
                let dear = i.id.as_str() == "busy-dear";
                let price = Price::from_dollars(if dear { 5.0 } else { 1.0 });
                Serving {
                    inst: i,
                    node: None,
                    tpl: None,
                    rpn: 1,
                    eff_price: price,
                    price,
                    empty: !dear,
                    protected: None,
                }
            })
            .collect();
        let names = |order: Vec<usize>| -> Vec<&str> {
            order.iter().map(|&i| insts[i].id.as_str()).collect()
        };
        assert_eq!(
            names(removal_order(&serving, false)),
            [
                "empty-cheap-new",
                "empty-cheap-spot",
                "empty-cheap",
                "busy-dear"
            ]
        );
        assert_eq!(
            names(removal_order(&serving, true)),
            [
                "busy-dear",
                "empty-cheap-new",
                "empty-cheap-spot",
                "empty-cheap"
            ]
        );
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
