//! The pure planner: `plan(snapshot, config, history, now) -> Plan`.
//!
//! No I/O, clock, randomness or environment: the same inputs give the same plan, byte for
//! byte (ordered maps, stable sorts, ties broken by id). Per pool, in order:
//!
//! 0. [`launches`]: launches the cloud accepted but will not fulfil are taken back and their
//!    offerings backed off — in this plan, so the pool falls back at once.
//! 1. [`eligible`]: the pool's offerings as node templates; each unusable one gets a decision.
//! 2. [`health`]: stuck launches terminated, drifted model caches replaced, warm-ups completed.
//! 3. [`binpack`]: pending pods onto in-flight room first, then new nodes chosen by
//!    [`capacity`] (cheapest effective cost, spot/on-demand split, fallback, warm pools first,
//!    limits).
//! 4. [`demand`]: signal-driven replicas (and the forecast) on top of what the pods opened,
//!    plus, with an `slo`, the spare running replicas [`headroom`] learnt; then `min_nodes`.
//! 5. [`warmpool`]: warm-pool targets from the forecast growth (and the learnt warm headroom).
//! 6. [`scaledown`]: unneeded nodes, removed after their time, cool-down and budget.
//! 7. [`consolidate`]: busy nodes replaced by cheaper offerings when it pays.
//! 8. [`rebalance`]: spot nodes the cloud called at risk are replaced first, then drained.
//!
//! Every pending pod, every unusable offering and every unneeded node kept gets a decision.

mod binpack;
mod capacity;
mod consolidate;
mod demand;
mod eligible;
mod fit;
#[cfg(any(test, feature = "testkit"))]
pub mod fixtures;
pub mod headroom;
mod health;
mod hold;
pub(crate) mod launches;
mod rebalance;
pub mod rejects;
pub mod rules;
mod scaledown;
mod warmpool;

use crate::config::{Config, Mode, PoolConfig};
use crate::model::{
    Action, CapacityType, Decision, History, Instance, InstanceId, LifecycleState, Node, NodeGroup,
    NodeGroupId, Outcome, PendingPod, Plan, PoolSummary, Reason, Snapshot, Subject, Timestamp,
};
use binpack::{Bin, Class, ClassFit, Fate};
use capacity::{Cause, Chooser, Cost};
use eligible::Template;
use fit::{PodSpec, Room};
use std::collections::{BTreeMap, BTreeSet};

/// Requested-but-unseen instances counted per group at most (a group of 10,000 GPU nodes is
/// beyond any real fleet; a corrupt desired value must not size the planner's memory).
const MAX_UNSEEN_PER_GROUP: u32 = 10_000;

/// Plan one tick. Pure: see the module documentation.
pub fn plan(snapshot: &Snapshot, config: &Config, history: &History, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let failures = launches::failed(snapshot, config, history, now);
    let backed_off;
    let history = if failures.is_empty() {
        history
    } else {
        backed_off = launches::backed_off(history, &failures, now);
        &backed_off
    };
    launches::release(&failures, history, &mut plan.actions, &mut plan.decisions);
    let lost = Lost::of(&failures);
    let nodes: BTreeMap<&InstanceId, &Node> =
        snapshot.nodes.iter().map(|n| (&n.instance, n)).collect();
    let ctxs = pool_contexts(config, snapshot, &lost, history, now, &mut plan.decisions);

    // Pending pods matter only where Kubernetes schedules them. The GPU pods still running on
    // draining nodes (a spot notice, a replacement) are demand too when the pool's serving
    // nodes have no room for them: they need a new home before their node goes, so capacity is
    // launched now rather than after their eviction (`scaledown::displaced`).
    let displaced: Vec<PendingPod> = if config.mode == Mode::Kubernetes {
        ctxs.iter()
            .flat_map(|ctx| scaledown::displaced(ctx, &nodes, now))
            .collect()
    } else {
        Vec::new()
    };
    let pods_owned;
    let pods: &[PendingPod] = if displaced.is_empty() {
        &snapshot.pending_pods
    } else {
        pods_owned = [snapshot.pending_pods.as_slice(), &displaced].concat();
        &pods_owned
    };
    let mut classes = if config.mode == Mode::Kubernetes {
        binpack::classes(pods)
    } else {
        Vec::new()
    };
    let mut fates: Vec<Option<Fate>> = vec![None; pods.len()];
    // Pods the scheduler refuses for a constraint not modelled here: neither demand nor a
    // reason to keep a node (`rejects`).
    let (refused, new_rejects) = rejects::blocked(snapshot, history, &config.kubernetes, now);
    let pending = snapshot.pending_pods.len();
    block_refused(&mut classes, &pods[..pending], &refused, &mut fates);
    plan.scheduler_rejects = new_rejects;
    let (pod_pool, pool_classes) = assign_pools(&classes, &ctxs, &mut fates);

    let mut in_flight_of = vec![0u32; ctxs.len()];
    let mut fits = Vec::new();
    for (pi, ctx) in ctxs.iter().enumerate() {
        in_flight_of[pi] = plan_pool(
            ctx,
            config.mode,
            config.tick_interval.as_secs(),
            snapshot,
            history,
            now,
            &nodes,
            &pool_classes[pi],
            &mut fates,
            &mut fits,
            &mut plan,
        );
    }
    // Displaced pods (indices past the pending ones) are running: only pending ones are kept.
    plan.fits_serving = fits
        .into_iter()
        .filter_map(|(m, inst)| Some((pods[..pending].get(m)?.key(), inst)))
        .collect();

    pod_decisions(
        pods,
        &fates,
        &pod_pool,
        &in_flight_of,
        &ctxs,
        &mut plan.decisions,
    );
    plan.launch_failures = failures;
    hold::pause(config, snapshot, &mut plan);
    plan
}

/// One context per configured pool, in config order; each unusable offering gets a decision.
fn pool_contexts<'a>(
    config: &'a Config,
    snapshot: &'a Snapshot,
    lost: &Lost<'_>,
    history: &History,
    now: Timestamp,
    decisions: &mut Vec<Decision>,
) -> Vec<PoolCtx<'a>> {
    let mut by_group: BTreeMap<&NodeGroupId, Vec<&Instance>> = BTreeMap::new();
    for i in &snapshot.instances {
        by_group.entry(&i.group).or_default().push(i);
    }
    config
        .pools
        .iter()
        .map(|p| PoolCtx {
            spot_notice: config.provider.spot_notice(),
            ..PoolCtx::new(p, snapshot, &by_group, lost, history, now, decisions)
        })
        .collect()
}

/// Each class of pods to its pool ([`assign_pool`]): the pool of each pod, and the classes
/// (with their fit) of each pool. A class that matches no pool is blocked.
#[allow(clippy::type_complexity)]
fn assign_pools<'c, 'a>(
    classes: &'c [Class<'a>],
    ctxs: &[PoolCtx<'a>],
    fates: &mut [Option<Fate>],
) -> (Vec<Option<usize>>, Vec<Vec<(&'c Class<'a>, ClassFit)>>) {
    let mut pod_pool: Vec<Option<usize>> = vec![None; fates.len()];
    let mut pool_classes: Vec<Vec<(&Class<'_>, ClassFit)>> =
        (0..ctxs.len()).map(|_| Vec::new()).collect();
    for class in classes {
        match assign_pool(class, ctxs) {
            Some((pi, fit)) => {
                for &m in &class.members {
                    pod_pool[m] = Some(pi);
                }
                pool_classes[pi].push((class, fit));
            }
            None => {
                for &m in &class.members {
                    fates[m] = Some(Fate::Blocked(Reason::NotInAnyPool));
                }
            }
        }
    }
    (pod_pool, pool_classes)
}

/// A decision for every pod with a fate, in pod order. `pod_pool`: each pod's pool;
/// `in_flight_of`: each pool's in-flight node count.
fn pod_decisions(
    pods: &[PendingPod],
    fates: &[Option<Fate>],
    pod_pool: &[Option<usize>],
    in_flight_of: &[u32],
    ctxs: &[PoolCtx<'_>],
    decisions: &mut Vec<Decision>,
) {
    for (i, pod) in pods.iter().enumerate() {
        let Some(fate) = &fates[i] else { continue };
        let (outcome, reason) = match fate {
            Fate::Existing { .. } => (Outcome::Satisfied, Reason::FitsServingNode),
            Fate::InFlight => (
                Outcome::Satisfied,
                Reason::CoveredByInFlight {
                    in_flight_nodes: pod_pool[i].map_or(0, |p| in_flight_of[p]),
                },
            ),
            Fate::New { tpl, warm } => {
                let Some(pi) = pod_pool[i] else { continue };
                let t = &ctxs[pi].tpls[*tpl];
                (
                    Outcome::Acted,
                    Reason::PlacedOnNewNode {
                        group: t.group_ref.id.clone(),
                        offering: t.key.clone(),
                        warm: *warm,
                    },
                )
            }
            Fate::Blocked(r) => (Outcome::Blocked, r.clone()),
        };
        decisions.push(Decision {
            subject: Subject::Pod(pod.key()),
            outcome,
            reason,
        });
    }
}

/// Take the pods the scheduler refuses (`rejects`) out of their classes: blocked with the
/// refusal, neither demand nor a reason to keep a node. `pending`: the pending pods, which come
/// first in the planner's pod list.
fn block_refused(
    classes: &mut Vec<Class<'_>>,
    pending: &[PendingPod],
    refused: &BTreeMap<String, Reason>,
    fates: &mut [Option<Fate>],
) {
    if refused.is_empty() {
        return;
    }
    for class in classes.iter_mut() {
        class.members.retain(|&m| {
            let r = pending.get(m).and_then(|p| refused.get(&p.key()));
            if let Some(r) = r {
                fates[m] = Some(Fate::Blocked(r.clone()));
            }
            r.is_none()
        });
    }
    classes.retain(|c| !c.members.is_empty());
}

/// The pods placed on a serving node's free room, with that node's instance.
fn serving_fits(
    classes: &[(&Class<'_>, ClassFit)],
    fates: &[Option<Fate>],
    bins: &[Bin<'_>],
    fits: &mut Vec<(usize, InstanceId)>,
) {
    for (c, _) in classes {
        for &m in &c.members {
            if let Some(Fate::Existing { bin }) = fates[m]
                && let Some(inst) = bins.get(bin).and_then(|b| b.serving)
            {
                fits.push((m, inst.clone()));
            }
        }
    }
}

/// What the cloud will not deliver, per group: requested instances with nothing behind them,
/// and listed instances stuck for good. Neither is capacity on its way.
#[derive(Default)]
struct Lost<'f> {
    unseen: BTreeMap<&'f NodeGroupId, u32>,
    instances: BTreeSet<&'f InstanceId>,
}

impl<'f> Lost<'f> {
    fn of(failures: &'f [crate::model::LaunchFailureRecord]) -> Self {
        let mut l = Lost::default();
        for f in failures {
            if f.instances.is_empty() {
                *l.unseen.entry(&f.group).or_default() += f.count;
            } else {
                l.instances.extend(f.instances.iter());
            }
        }
        l
    }
}

/// The pool a class of pods belongs to: the one it names, else the first (in config order)
/// with an offering it fits, else the one where it got furthest past labels and taints (so
/// the reason names a resource). `None`: it matches no pool.
fn assign_pool<'a>(class: &Class<'a>, ctxs: &[PoolCtx<'a>]) -> Option<(usize, ClassFit)> {
    if let Some(p) = class.pool {
        let pi = ctxs.iter().position(|c| &c.cfg.name == p)?;
        return Some((pi, binpack::class_fit(&class.spec, &ctxs[pi].tpls)));
    }
    let mut best: Option<(usize, ClassFit, u8)> = None;
    for (pi, c) in ctxs.iter().enumerate() {
        let fit = binpack::class_fit(&class.spec, &c.tpls);
        if fit.fits_allowed {
            return Some((pi, fit));
        }
        if let Some(stage) = fit
            .closest
            .as_ref()
            .filter(|m| m.past_labels())
            .map(|m| m.stage())
            && best.as_ref().is_none_or(|b| stage > b.2)
        {
            best = Some((pi, fit, stage));
        }
    }
    best.map(|(pi, f, _)| (pi, f))
}

/// One pool's groups, templates and instances.
pub(crate) struct PoolCtx<'a> {
    pub cfg: &'a PoolConfig,
    pub groups: Vec<&'a NodeGroup>,
    pub tpls: Vec<Template<'a>>,
    /// Instances of the pool's groups, by id.
    pub instances: Vec<&'a Instance>,
    /// Index into `groups` of each instance.
    pub inst_group: Vec<usize>,
    /// The template each instance runs on, if its offering is listed.
    pub inst_tpl: Vec<Option<usize>>,
    /// The template capacity of a group is assumed to be when its instances are not visible
    /// yet: its first usable offering, else its first listed one.
    pub default_tpl: Vec<Option<usize>>,
    /// Requested instances of each group the cloud will not deliver (see [`Lost`]).
    pub lost_unseen: Vec<u32>,
    /// Listed instances stuck for good (not capacity, not in flight).
    pub lost: BTreeSet<&'a InstanceId>,
    /// Serving instances the cloud recommended rebalancing away from, to be replaced
    /// (`disruption.rebalance: prelaunch`): not capacity, their pods displaced.
    pub at_risk: BTreeSet<&'a InstanceId>,
    /// Instances whose voluntary drain was given up recently (`History::drain_abandoned`,
    /// within the larger of `disruption.unneeded_time_s` and `drain_timeout_s`): no voluntary
    /// disruption picks them.
    pub held_back: BTreeMap<&'a InstanceId, Timestamp>,
    /// How long before a spot reclaim the cloud says so (`ProviderKind::spot_notice`);
    /// `None`: not known (the simulated cloud).
    pub spot_notice: Option<std::time::Duration>,
}

impl<'a> PoolCtx<'a> {
    fn new(
        cfg: &'a PoolConfig,
        snapshot: &'a Snapshot,
        by_group: &BTreeMap<&NodeGroupId, Vec<&'a Instance>>,
        lost: &Lost<'_>,
        history: &History,
        now: Timestamp,
        decisions: &mut Vec<Decision>,
    ) -> Self {
        let mut groups: Vec<&NodeGroup> = snapshot
            .groups
            .iter()
            .filter(|g| g.pool == cfg.name)
            .collect();
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        let tpls = eligible::templates(cfg, &groups, history, now, decisions);
        let mut exact: BTreeMap<(usize, &str, CapacityType, &str), usize> = BTreeMap::new();
        let mut by_type: BTreeMap<(usize, &str), usize> = BTreeMap::new();
        for (ti, t) in tpls.iter().enumerate() {
            exact
                .entry((
                    t.group,
                    t.key.instance_type.as_str(),
                    t.key.capacity_type,
                    t.key.zone.as_str(),
                ))
                .or_insert(ti);
            by_type
                .entry((t.group, t.key.instance_type.as_str()))
                .or_insert(ti);
        }
        let mut instances = Vec::new();
        let mut inst_group = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            for &i in by_group.get(&g.id).map_or(&[][..], |v| &v[..]) {
                instances.push((i, gi));
            }
        }
        instances.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let inst_tpl = instances
            .iter()
            .map(|(i, gi)| {
                exact
                    .get(&(
                        *gi,
                        i.instance_type.as_str(),
                        i.capacity_type,
                        i.zone.as_str(),
                    ))
                    .or_else(|| by_type.get(&(*gi, i.instance_type.as_str())))
                    .copied()
            })
            .collect();
        let default_tpl = groups
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                let of = |o: &crate::model::Offering| {
                    tpls.iter()
                        .position(|t| t.group == gi && std::ptr::eq(t.offering, o))
                };
                g.offerings
                    .iter()
                    .filter_map(of)
                    .find(|&t| tpls[t].usable())
                    .or_else(|| g.offerings.first().and_then(of))
            })
            .collect();
        let (instances, groups_of): (Vec<_>, Vec<_>) = instances.into_iter().unzip();
        inst_group.extend(groups_of);
        let lost_unseen = groups
            .iter()
            .map(|g| lost.unseen.get(&g.id).copied().unwrap_or(0))
            .collect();
        let lost = instances
            .iter()
            .map(|i| &i.id)
            .filter(|id| lost.instances.contains(id))
            .collect();
        let at_risk = if cfg.disruption.rebalance == crate::config::RebalancePolicy::Prelaunch {
            instances
                .iter()
                .filter(|i| i.state == LifecycleState::Ready && history.at_risk.contains_key(&i.id))
                .map(|i| &i.id)
                .collect()
        } else {
            BTreeSet::new()
        };
        // As long as the drain was refused, and no shorter than the unneeded time.
        let cool_off = cfg
            .unneeded_time()
            .max(cfg.disruption.drain_timeout)
            .as_secs_f64();
        let held_back = instances
            .iter()
            .filter_map(|i| {
                let at = *history.drain_abandoned.get(&i.id)?;
                (now.secs_since(at) < cool_off).then_some((&i.id, at))
            })
            .collect();
        PoolCtx {
            cfg,
            groups,
            tpls,
            instances,
            inst_group,
            inst_tpl,
            default_tpl,
            lost_unseen,
            lost,
            at_risk,
            held_back,
            spot_notice: None,
        }
    }

    /// Live capacity (Ready, Launching, Starting, and desired-but-not-yet-visible), excluding
    /// instances this plan removes, with the free room of the in-flight part.
    fn account(
        &self,
        nodes: &BTreeMap<&InstanceId, &'a Node>,
        gone: &BTreeSet<&InstanceId>,
    ) -> Account<'a> {
        let mut a = Account::default();
        let mut visible = vec![0u32; self.groups.len()];
        let add = |a: &mut Account<'a>, tpl: Option<usize>, ct: CapacityType| {
            a.live_nodes += 1;
            if ct == CapacityType::OnDemand {
                a.live_on_demand += 1;
            }
            if let Some(t) = tpl {
                a.live_cost.add(self.tpls[t].price);
                a.live_replicas += self.tpls[t].rpn;
            }
        };
        for (ii, inst) in self.instances.iter().enumerate() {
            use LifecycleState::*;
            if inst.state.counts_in_desired() {
                visible[self.inst_group[ii]] += 1;
            }
            if gone.contains(&inst.id)
                || self.lost.contains(&inst.id)
                || self.at_risk.contains(&inst.id)
            {
                continue;
            }
            let tpl = self.inst_tpl[ii];
            // Spot capacity a reclaim can take: instances the cloud lists (not a desired count
            // it has not delivered — a late stockout leaves desired raised with nothing
            // behind it, and nothing there can be reclaimed).
            if let (Some(t), Launching | Starting | Ready, CapacityType::Spot) =
                (tpl, inst.state, inst.capacity_type)
            {
                a.live_spot_replicas += self.tpls[t].rpn;
            }
            match inst.state {
                Launching | Starting => {
                    add(&mut a, tpl, inst.capacity_type);
                    a.in_flight += 1;
                    if let Some(t) = tpl {
                        let mut room = Room::EMPTY;
                        if let Some(n) = nodes.get(&inst.id) {
                            for p in &n.pods {
                                room.take(&self.tpls[t].caps, &PodSpec::running(p), 1);
                            }
                        }
                        a.bins.push(Bin {
                            tpl: t,
                            room,
                            serving: None,
                        });
                    }
                }
                Ready => {
                    add(&mut a, tpl, inst.capacity_type);
                    a.ready += 1;
                    // Serving replicas: as `scaledown::serving` counts them (a Ready instance
                    // whose node still loads the model serves nothing yet).
                    if let Some(t) = tpl
                        && nodes.get(&inst.id).is_none_or(|n| n.serving_ready)
                    {
                        a.ready_replicas += self.tpls[t].rpn;
                    }
                    // The free room of a serving, schedulable node takes pending pods before
                    // any new node is counted (Cluster Autoscaler's `filterOutSchedulable`):
                    // a pod that turned pending just before a node became ready is bound there
                    // by the scheduler moments later.
                    if let (Some(t), Some(n)) = (tpl, nodes.get(&inst.id))
                        && n.serving_ready
                        && !n.cordoned
                        && n.unhealthy.is_none()
                    {
                        let mut room = Room::EMPTY;
                        for p in &n.pods {
                            room.take(&self.tpls[t].caps, &PodSpec::running(p), 1);
                        }
                        a.bins.push(Bin {
                            tpl: t,
                            room,
                            serving: Some(&inst.id),
                        });
                    }
                }
                _ => {}
            }
        }
        for (gi, g) in self.groups.iter().enumerate() {
            // Desired counts instances the cloud is creating but not listing yet (and Draining
            // ones, which stay in desired until terminated): the difference is in flight.
            // Minus what the cloud said it will not deliver. Bounded: a desired count read
            // from the cloud must not size the planner's memory.
            let unseen = g
                .desired
                .saturating_sub(visible[gi])
                .saturating_sub(self.lost_unseen[gi])
                .min(MAX_UNSEEN_PER_GROUP);
            let Some(t) = self.default_tpl[gi] else {
                continue;
            };
            for _ in 0..unseen {
                add(&mut a, Some(t), self.tpls[t].capacity_type());
                a.bins.push(Bin {
                    tpl: t,
                    room: Room::EMPTY,
                    serving: None,
                });
            }
            a.in_flight += unseen;
        }
        a
    }
}

#[derive(Default)]
struct Account<'a> {
    bins: Vec<Bin<'a>>,
    live_nodes: u32,
    live_on_demand: u32,
    live_cost: Cost,
    live_replicas: u32,
    /// The part of `live_replicas` on spot instances the cloud lists.
    live_spot_replicas: u32,
    ready: u32,
    ready_replicas: u32,
    in_flight: u32,
}

/// (cold, template, cause, fell back): how launches are grouped into actions.
type LaunchKey = (bool, usize, Cause, bool);

fn push_unique(v: &mut Vec<Reason>, r: Reason) {
    if !v.iter().any(|x| x.code() == r.code()) {
        v.push(r);
    }
}

/// Plan one pool; returns its in-flight node count (for pod decisions).
#[allow(clippy::too_many_arguments)]
fn plan_pool<'a>(
    ctx: &PoolCtx<'a>,
    mode: Mode,
    tick_s: u64,
    snapshot: &'a Snapshot,
    history: &History,
    now: Timestamp,
    nodes: &BTreeMap<&InstanceId, &'a Node>,
    classes: &[(&Class<'a>, ClassFit)],
    fates: &mut [Option<Fate>],
    fits: &mut Vec<(usize, InstanceId)>,
    plan: &mut Plan,
) -> u32 {
    let pool = ctx.cfg;
    let demand = snapshot.demand.get(&pool.name);
    let stale = stale_inputs(ctx, snapshot, demand);
    let slo_headroom = slo_headroom(ctx, tick_s, demand, history, now);
    let want = demand::wanted(
        pool,
        demand,
        slo_headroom.as_ref().map_or(0, |h| h.running.replicas),
    );
    let hr_running = slo_headroom.as_ref().map(|h| &h.running);
    let hr_warm = slo_headroom.as_ref().and_then(|h| h.warm.as_ref());
    if let Some(h) = hr_running {
        plan.decisions.push(Decision {
            subject: Subject::Pool(pool.name.clone()),
            outcome: Outcome::Held,
            reason: Reason::SloHeadroom(h.clone()),
        });
    }

    let mut budget = disruption_budget(ctx, history, now);
    let gone = health::check(
        ctx,
        nodes,
        now,
        &mut budget,
        &mut plan.actions,
        &mut plan.decisions,
    );
    let mut acct = ctx.account(nodes, &gone);
    let mut chooser = Chooser::new(
        pool,
        &ctx.tpls,
        &ctx.groups,
        acct.live_nodes,
        acct.live_on_demand,
        acct.live_cost,
    );
    let expected = scale_up(
        ctx,
        &mut acct,
        want,
        hr_running,
        classes,
        &mut chooser,
        fates,
        fits,
        plan,
    );
    let scaled_up = chooser.new_nodes > 0;

    let standby = warmpool::spot_standby(pool, ctx.spot_notice, acct.live_spot_replicas);
    let warm = warmpool::size(
        pool,
        &ctx.groups,
        want,
        hr_warm,
        standby,
        |gi| ctx.default_tpl[gi].map_or(1, |t| ctx.tpls[t].rpn),
        |gi| ctx.default_tpl[gi].map_or(crate::model::Price::Unknown, |t| ctx.tpls[t].price),
        history,
        now,
    );
    plan.actions.extend(warm.actions);
    plan.warm_needed.extend(warm.needed);
    plan.decisions.extend(warm.held);

    let down = Down {
        mode,
        history,
        now,
        nodes,
        expected: &expected,
        want,
        scaled_up,
        in_flight: acct.in_flight,
    };
    let (removed, removed_cost) = scale_down(
        ctx,
        &down,
        gone,
        stale,
        &snapshot.cache,
        &mut budget,
        &mut chooser,
        plan,
    );

    plan.pools.push(PoolSummary {
        spot_standby_replicas: standby.map_or(0, |s| s.spot_replicas),
        ..pool_summary(
            ctx,
            demand,
            classes,
            &acct,
            &chooser,
            want,
            (removed, removed_cost),
            slo_headroom,
        )
    });
    acct.in_flight
}

/// The pool's figures after this plan. `removed`: the nodes scale-down removed, and their
/// cost; `slo_headroom`: what the learner recommended.
#[allow(clippy::too_many_arguments)]
fn pool_summary(
    ctx: &PoolCtx<'_>,
    demand: Option<&crate::model::PoolDemand>,
    classes: &[(&Class<'_>, ClassFit)],
    acct: &Account<'_>,
    chooser: &Chooser<'_, '_>,
    want: Option<demand::Want>,
    (removed, removed_cost): (u32, Cost),
    slo_headroom: Option<headroom::Headroom>,
) -> PoolSummary {
    let pool = ctx.cfg;
    let (headroom_running, headroom_warm) = match slo_headroom {
        Some(h) => (Some(h.running), h.warm),
        None => (None, None),
    };
    PoolSummary {
        pool: pool.name.clone(),
        desired_nodes: (acct.live_nodes + chooser.new_nodes).saturating_sub(removed),
        ready_nodes: acct.ready,
        ready_replicas: acct.ready_replicas,
        in_flight_nodes: acct.in_flight,
        warm_instances: ctx
            .groups
            .iter()
            .map(|g| g.warm_pool.as_ref().map_or(0, |w| w.ready))
            .sum(),
        pending_pods: classes.iter().map(|(c, _)| c.members.len() as u32).sum(),
        wanted_replicas: want.map(|w| w.replicas),
        forecast_replicas: demand
            .and_then(|d| d.replicas_forecast)
            .filter(|_| pool.forecast.enabled),
        cost_per_hour: acct.live_cost.known + chooser.new_cost.known - removed_cost.known,
        unpriced_nodes: (acct.live_cost.unpriced + chooser.new_cost.unpriced)
            .saturating_sub(removed_cost.unpriced),
        headroom_running,
        headroom_warm,
        spot_standby_replicas: 0,
        slo_attainment: demand.and_then(|d| d.slo_attainment).map(|a| a.fraction),
    }
}

/// The inputs too old to remove capacity on: stale signals (all of them when there is no
/// reading at all) and groups whose instances are as listed earlier.
fn stale_inputs(
    ctx: &PoolCtx<'_>,
    snapshot: &Snapshot,
    demand: Option<&crate::model::PoolDemand>,
) -> Vec<String> {
    let pool = ctx.cfg;
    let mut stale: Vec<String> = match demand {
        Some(d) => d.stale_signals().into_iter().map(str::to_owned).collect(),
        // Signals configured but no reading at all: as stale as it gets.
        None => pool.signals.iter().map(|s| s.name.clone()).collect(),
    };
    for g in &ctx.groups {
        if let Some(at) = snapshot.stale_groups.get(&g.id) {
            stale.push(format!("group {} (instances as listed at {at})", g.id));
        }
    }
    stale
}

/// The pool's voluntary-disruption budget this tick: what is draining already and what the
/// window has used.
fn disruption_budget(ctx: &PoolCtx<'_>, history: &History, now: Timestamp) -> scaledown::Budget {
    let pool = ctx.cfg;
    let draining = ctx
        .instances
        .iter()
        .filter(|i| i.state == LifecycleState::Draining)
        .count() as u32;
    let in_window =
        history.disruptions_in_window(&pool.name, now, pool.disruption.budget.window.as_secs_f64())
            as u32;
    scaledown::Budget::new(&pool.disruption.budget, draining, in_window)
}

/// Pods, then signals on top, then the minimum: the launches go into `chooser`, their actions
/// and the pool's scale-up decisions into `plan`. Returns the serving nodes pending pods are
/// expected on: neither removed nor used as room for another node's pods this tick.
#[allow(clippy::too_many_arguments)]
fn scale_up<'a>(
    ctx: &PoolCtx<'a>,
    acct: &mut Account<'a>,
    want: Option<demand::Want>,
    hr_running: Option<&crate::model::HeadroomExplain>,
    classes: &[(&Class<'a>, ClassFit)],
    chooser: &mut Chooser<'_, 'a>,
    fates: &mut [Option<Fate>],
    fits: &mut Vec<(usize, InstanceId)>,
    plan: &mut Plan,
) -> BTreeSet<&'a InstanceId> {
    let pool = ctx.cfg;
    let subject = || Subject::Pool(pool.name.clone());
    let mut stops = binpack::pack(classes, &ctx.tpls, &mut acct.bins, chooser, fates);
    serving_fits(classes, fates, &acct.bins, fits);
    let expected: BTreeSet<&InstanceId> = classes
        .iter()
        .flat_map(|(c, _)| c.members.iter())
        .filter_map(|&m| match fates[m] {
            Some(Fate::Existing { bin }) => acct.bins.get(bin).and_then(|b| b.serving),
            _ => None,
        })
        .collect();
    let pod_nodes = chooser.launches.len() as u32;
    let capacity_replicas = acct.live_replicas
        + chooser
            .launches
            .iter()
            .map(|l| ctx.tpls[l.tpl].rpn)
            .sum::<u32>();
    if let Some(w) = want
        && let Some(r) = demand::cover_replicas(w, capacity_replicas, &ctx.tpls, chooser)
    {
        push_unique(&mut stops, r);
    }
    if let Some(r) = demand::cover_min_nodes(pool, &ctx.tpls, chooser) {
        push_unique(&mut stops, r);
    }

    let pods_on_new = classes
        .iter()
        .flat_map(|(c, _)| c.members.iter())
        .filter(|&&m| matches!(fates[m], Some(Fate::New { .. })))
        .count() as u32;
    let primary = Primary {
        pods_on_new,
        pod_nodes,
        want,
        capacity_replicas,
        hr_running,
    };
    let signal_nodes = launch_actions(ctx, chooser, &primary, &mut plan.actions);
    if pod_nodes > 0 {
        plan.decisions.push(Decision {
            subject: subject(),
            outcome: Outcome::Acted,
            reason: Reason::PendingPods {
                pods: pods_on_new,
                nodes: pod_nodes,
            },
        });
    }
    if let Some(w) = want
        && signal_nodes > 0
    {
        plan.decisions.push(Decision {
            subject: subject(),
            outcome: Outcome::Acted,
            reason: demand::reason(pool, w, capacity_replicas, hr_running),
        });
    }
    for r in &stops {
        plan.decisions.push(Decision {
            subject: subject(),
            outcome: Outcome::Blocked,
            reason: r.clone(),
        });
    }
    if chooser.new_nodes == 0
        && stops.is_empty()
        && (want.is_some() || !classes.is_empty())
        && let Some(reason) = covered(classes, fates, want.is_some(), acct.in_flight)
    {
        plan.decisions.push(Decision {
            subject: subject(),
            outcome: Outcome::Satisfied,
            reason,
        });
    }
    expected
}

/// What the primary reason of a launch is made of (a fallback's reason replaces it).
struct Primary<'h> {
    /// Pending pods placed on new nodes, and the nodes launched for pods.
    pods_on_new: u32,
    pod_nodes: u32,
    want: Option<demand::Want>,
    /// Replicas the live capacity and the pods' launches serve.
    capacity_replicas: u32,
    hr_running: Option<&'h crate::model::HeadroomExplain>,
}

/// The chosen launches as actions, one per (warm, template, cause, fell back); warm starts
/// first. Returns the nodes launched for the signals (and the forecast).
fn launch_actions(
    ctx: &PoolCtx<'_>,
    chooser: &Chooser<'_, '_>,
    primary: &Primary<'_>,
    actions: &mut Vec<Action>,
) -> u32 {
    let pool = ctx.cfg;
    let mut grouped: BTreeMap<LaunchKey, (u32, Option<Reason>)> = BTreeMap::new();
    for l in &chooser.launches {
        let e = grouped
            .entry((!l.warm, l.tpl, l.cause, l.fallback.is_some()))
            .or_insert((0, None));
        e.0 += 1;
        if e.1.is_none() {
            e.1.clone_from(&l.fallback);
        }
    }
    let mut signal_nodes = 0;
    for ((cold, tpl, cause, _), (count, fallback)) in grouped {
        let warm = !cold;
        let t = &ctx.tpls[tpl];
        let primary = match cause {
            Cause::Pods => Reason::PendingPods {
                pods: primary.pods_on_new,
                nodes: primary.pod_nodes,
            },
            Cause::Signal | Cause::Forecast => {
                signal_nodes += count;
                match primary.want {
                    Some(w) => {
                        demand::reason(pool, w, primary.capacity_replicas, primary.hr_running)
                    }
                    None => Reason::MinNodes {
                        min: pool.limits.min_nodes,
                    },
                }
            }
            Cause::MinNodes | Cause::Consolidate => Reason::MinNodes {
                min: pool.limits.min_nodes,
            },
        };
        let reason = fallback.unwrap_or(primary);
        actions.push(if warm {
            Action::StartWarm {
                pool: pool.name.clone(),
                group: t.group_ref.id.clone(),
                count,
                reason,
            }
        } else {
            Action::ScaleUp {
                pool: pool.name.clone(),
                group: t.group_ref.id.clone(),
                offering: t.key.clone(),
                count,
                reason,
            }
        });
    }
    signal_nodes
}

/// Why a pool that launched nothing and was stopped by nothing is fine as it is: its pods
/// (and its signals) are covered by nodes in flight, else by its capacity. `None` while some
/// of its pods stay blocked.
fn covered(
    classes: &[(&Class<'_>, ClassFit)],
    fates: &[Option<Fate>],
    wanted: bool,
    in_flight: u32,
) -> Option<Reason> {
    let on_in_flight = classes
        .iter()
        .flat_map(|(c, _)| c.members.iter())
        .any(|&m| matches!(fates[m], Some(Fate::InFlight)));
    let all_placed = classes
        .iter()
        .flat_map(|(c, _)| c.members.iter())
        .all(|&m| !matches!(fates[m], Some(Fate::Blocked(_))));
    all_placed.then_some(if on_in_flight || (in_flight > 0 && wanted) {
        Reason::CoveredByInFlight {
            in_flight_nodes: in_flight,
        }
    } else {
        Reason::CoveredByCapacity
    })
}

/// What a pool's scale-down reads of the tick and of its scale-up.
struct Down<'d, 'a> {
    mode: Mode,
    history: &'d History,
    now: Timestamp,
    nodes: &'d BTreeMap<&'d InstanceId, &'a Node>,
    /// Serving nodes pending pods are expected on.
    expected: &'d BTreeSet<&'a InstanceId>,
    want: Option<demand::Want>,
    scaled_up: bool,
    /// Nodes in flight before this plan's launches.
    in_flight: u32,
}

/// At-risk spot nodes drained, then, unless scale-down is held, unneeded nodes removed and
/// busy ones consolidated. `gone`: what health checks removed. Returns the nodes removed and
/// their cost.
#[allow(clippy::too_many_arguments)]
fn scale_down<'a>(
    ctx: &PoolCtx<'a>,
    down: &Down<'_, 'a>,
    gone: BTreeSet<&'a InstanceId>,
    stale: Vec<String>,
    cache: &crate::model::CacheState,
    budget: &mut scaledown::Budget,
    chooser: &mut Chooser<'_, 'a>,
    plan: &mut Plan,
) -> (u32, Cost) {
    let pool = ctx.cfg;
    let mut leaving = gone;
    leaving.extend(rebalance::drains(
        ctx,
        down.nodes,
        down.in_flight + chooser.new_nodes,
        down.now,
        budget,
        &mut plan.actions,
        &mut plan.decisions,
    ));
    leaving.extend(ctx.at_risk.iter().copied());
    let serving = scaledown::serving(ctx, down.nodes, &leaving);
    let mut removed = 0u32;
    let mut removed_cost = Cost::default();
    let mut unneeded = BTreeSet::new();
    let held = hold::scale_down(pool, stale, cache);
    if held.is_none() {
        let res = scaledown::scale_down(
            ctx,
            down.mode,
            &serving,
            down.expected,
            down.want,
            down.scaled_up,
            down.history,
            down.now,
            budget,
            &mut plan.actions,
            &mut plan.decisions,
        );
        removed = res.removed.len() as u32;
        removed_cost = res.removed_cost;
        unneeded = res.unneeded;
        if pool.disruption.consolidation && !down.scaled_up {
            consolidate::consolidate(
                ctx,
                down.mode,
                &serving,
                &unneeded,
                down.in_flight,
                chooser,
                &mut plan.actions,
                &mut plan.decisions,
            );
        }
    } else if let Some(reason) = held {
        plan.decisions.push(Decision {
            subject: Subject::Pool(pool.name.clone()),
            outcome: Outcome::Held,
            reason,
        });
    }
    plan.unneeded.extend(unneeded.into_iter().cloned());
    (removed, removed_cost)
}

/// With an `slo`: the standing headroom the pool's learner recommends now.
fn slo_headroom(
    ctx: &PoolCtx<'_>,
    tick_s: u64,
    demand: Option<&crate::model::PoolDemand>,
    history: &History,
    now: Timestamp,
) -> Option<headroom::Headroom> {
    let pool = ctx.cfg;
    let slo = pool.slo.as_ref()?;
    let empty = crate::model::SloLearner::default();
    let st = history.slo.get(&pool.name).unwrap_or(&empty);
    let warm_pool = pool.warm_pool.on() && ctx.groups.iter().any(|g| g.warm_pool.is_some());
    Some(headroom::recommend(
        st,
        slo,
        headroom::Horizons::of(pool, tick_s),
        warm_pool,
        demand.and_then(|d| d.replicas_now).unwrap_or(0),
        now,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::fixtures::*;

    fn kinds(p: &Plan) -> Vec<String> {
        p.actions.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn spot_in_backoff_falls_back_to_on_demand() {
        let mut pool = pool_cfg("llm");
        pool.capacity.spot_share = crate::config::Share::ONE;
        let snap = snapshot()
            .pods(gpu_pod(8).model("H100").times(2))
            .group(p5_spot())
            .group(p5_od())
            .build();
        let mut h = History::default();
        let spot = offering("p5.48xlarge", CapacityType::Spot, "us-east-1a", 40.0).key();
        h.record_launch_failure(&spot, "InsufficientInstanceCapacity", T0);
        let p = plan(&snap, &config(vec![pool]), &h, T0);
        assert_eq!(p.actions.len(), 1, "{:?}", kinds(&p));
        let Action::ScaleUp {
            offering,
            count,
            reason,
            ..
        } = &p.actions[0]
        else {
            panic!("{:?}", p.actions)
        };
        assert_eq!(offering.capacity_type, CapacityType::OnDemand);
        assert_eq!(*count, 2);
        assert_eq!(reason.code(), "fallback");
        assert!(reason.to_string().contains("InsufficientInstanceCapacity"));
        let pods: Vec<_> = p
            .decisions
            .iter()
            .filter(|d| matches!(d.subject, Subject::Pod(_)))
            .map(|d| d.outcome)
            .collect();
        assert_eq!(pods, vec![Outcome::Acted, Outcome::Acted]);
    }

    /// A spot interruption warning at T0 sets the p5 spot offering aside for 3 minutes while
    /// another offering can serve; with none, it stays the last resort.
    #[test]
    fn an_interrupted_spot_offering_is_set_aside_while_another_can_serve() {
        let spot = offering("p5.48xlarge", CapacityType::Spot, "us-east-1a", 40.0).key();
        // (on-demand group too, planned at, capacity type of the first launch)
        let cases = [
            (true, T0, CapacityType::OnDemand),
            (true, T0.plus_secs(181.0), CapacityType::Spot),
            (false, T0, CapacityType::Spot),
        ];
        for (with_od, at, want) in cases {
            let mut pool = pool_cfg("llm");
            pool.capacity.spot_share = crate::config::Share::ONE;
            let mut snap = snapshot()
                .pods(gpu_pod(8).model("H100").times(2))
                .group(p5_spot());
            if with_od {
                snap = snap.group(p5_od());
            }
            let snap = snap.build();
            let mut h = History::default();
            h.record_spot_interruption(&spot, T0);
            let p = plan(&snap, &config(vec![pool]), &h, at);
            let Some(Action::ScaleUp {
                offering, count, ..
            }) = p.actions.first()
            else {
                panic!("{:?}", kinds(&p))
            };
            assert_eq!(
                (offering.capacity_type, *count),
                (want, 2),
                "on-demand group {with_od}, at {at}"
            );
        }
    }

    /// `gpupool plan` on a spot group whose desired was raised and whose launch AWS reported
    /// failed later: not "covered by 2 node(s) already launching" but taken back, backed off
    /// and replaced by on-demand in the same plan.
    #[test]
    fn a_late_spot_stockout_is_taken_back_and_falls_back_in_the_same_plan() {
        let mut pool = pool_cfg("llm");
        pool.capacity.spot_share = crate::config::Share::ONE;
        let spot = offering("p5.48xlarge", CapacityType::Spot, "us-east-1a", 40.0).key();
        let mut spot_group = p5_spot().desired(2).build();
        spot_group
            .unfulfilled
            .push(crate::model::UnfulfilledLaunch {
                offering: spot.clone(),
                failure: crate::model::LaunchFailure::InsufficientCapacity,
                count: 2,
                message:
                    "Could not launch Spot Instances. InsufficientInstanceCapacity - There is no \
                      Spot capacity available that matches your request."
                        .into(),
                at: T0.plus_secs(-20.0),
                instances: vec![],
            });
        let snap = snapshot()
            .pods(gpu_pod(8).model("H100").times(2))
            .group(spot_group)
            .group(p5_od())
            .build();
        let h = History::default();
        let p = plan(&snap, &config(vec![pool.clone()]), &h, T0);
        let Action::ReleaseUnfulfilled {
            group,
            count,
            reason,
            ..
        } = &p.actions[0]
        else {
            panic!("{:?}", kinds(&p))
        };
        assert_eq!((group.as_str(), *count), ("p5-spot", 2));
        assert!(reason.to_string().contains("backing off until"), "{reason}");
        let ups: Vec<_> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::ScaleUp {
                    offering, count, ..
                } => Some((offering.capacity_type, *count)),
                _ => None,
            })
            .collect();
        assert_eq!(ups, vec![(CapacityType::OnDemand, 2)], "{:?}", kinds(&p));
        assert_eq!(p.launch_failures.len(), 1);
        // The same snapshot without the failure report waits for the two "in flight".
        let mut quiet = snap.clone();
        quiet.groups[0].unfulfilled.clear();
        let p = plan(&quiet, &config(vec![pool]), &h, T0);
        assert!(
            p.actions
                .iter()
                .all(|a| !matches!(a, Action::ScaleUp { .. })),
            "{:?}",
            kinds(&p)
        );
    }

    /// p4d.24xlarge as EC2 describes it (8 × A100, 40960 MiB each) carries no MIG profiles of
    /// its own: the built-in catalog supplies them, and the pool's MIG policy shapes them.
    #[test]
    fn mig_pods_scale_up_on_catalog_profiles_under_each_strategy() {
        use crate::config::{MigPolicy, MigStrategy};
        let mut o = offering("p4d.24xlarge", CapacityType::OnDemand, "us-east-1a", 32.77).build();
        o.instance_type.gpu = crate::model::GpuInfo {
            model: "A100".into(),
            count: 8,
            memory_mib_per_gpu: 40_960,
            mig_profiles: gpupool_provider::mig::profiles_for("A100", 40_960),
        };
        let run = |policy: Option<MigPolicy>, pods: Vec<PendingPod>| {
            let mut pool = pool_cfg("llm");
            pool.requirements.mig = policy;
            let snap = snapshot()
                .pods(pods)
                .group(group("p4d", "llm").offering(o.clone()))
                .build();
            plan(&snap, &config(vec![pool]), &History::default(), T0)
        };
        let new_nodes = |p: &Plan| -> u32 {
            p.actions
                .iter()
                .map(|a| match a {
                    Action::ScaleUp { count, .. } => *count,
                    _ => 0,
                })
                .sum()
        };
        let blocked = |p: &Plan| -> Vec<String> {
            p.decisions
                .iter()
                .filter(|d| matches!(d.subject, Subject::Pod(_)) && d.outcome == Outcome::Blocked)
                .map(|d| d.reason.to_string())
                .collect()
        };
        // Catalog as is: 8 GPUs × 7 slices of 1g.5gb.
        let p = run(None, mig_pod("1g.5gb", 14).times(4));
        assert_eq!(new_nodes(&p), 1, "{:?}", kinds(&p));
        // mixed, limited to 3g.20gb: a 1g.5gb pod has no node.
        let mixed = MigPolicy {
            strategy: MigStrategy::Mixed,
            profiles: vec!["3g.20gb".into()],
        };
        let p = run(Some(mixed), mig_pod("1g.5gb", 1).times(1));
        assert_eq!(new_nodes(&p), 0);
        assert!(
            blocked(&p)[0].contains("MIG profile 1g.5gb not offered"),
            "{:?}",
            blocked(&p)
        );
        // single 1g.5gb: every slice is an nvidia.com/gpu, 56 per node.
        let single = MigPolicy {
            strategy: MigStrategy::Single,
            profiles: vec!["1g.5gb".into()],
        };
        let p = run(Some(single), gpu_pod(1).times(60));
        assert_eq!(new_nodes(&p), 2, "{:?}", kinds(&p));
        // none: whole GPUs only.
        let none = MigPolicy {
            strategy: MigStrategy::None,
            profiles: vec![],
        };
        let p = run(Some(none), mig_pod("1g.5gb", 1).times(1));
        assert_eq!(new_nodes(&p), 0);
        // single with a profile this GPU lacks: the offering is not allowed, and says why.
        let wrong = MigPolicy {
            strategy: MigStrategy::Single,
            profiles: vec!["1g.20gb".into()],
        };
        let p = run(Some(wrong), gpu_pod(1).times(1));
        assert_eq!(new_nodes(&p), 0, "{:?} {:?}", kinds(&p), p.decisions);
        assert!(
            p.decisions.iter().any(|d| d
                .reason
                .to_string()
                .contains("MIG profile 1g.20gb (strategy single)")),
            "{:?}",
            p.decisions
        );
    }

    /// Issue seen on a real control plane: a node turned ready just before the scheduler
    /// retried an Unschedulable pod; gpupool launched one more node for it. A pending pod that
    /// fits a serving node's free room is not demand (Cluster Autoscaler's
    /// `filterOutSchedulable`), and that node is not scaled down under it.
    #[test]
    fn a_pending_pod_that_fits_a_serving_node_launches_nothing_and_keeps_that_node() {
        let mut pool = pool_cfg("llm");
        pool.disruption.unneeded_time = Some(std::time::Duration::ZERO);
        pool.disruption.scale_down_delay_after_add = Some(std::time::Duration::ZERO);
        let serving = |busy: bool| {
            let mut n = node("i-1", "llm", CapacityType::OnDemand);
            if busy {
                n = n.pod(running_pod("already-there", 1));
            }
            snapshot()
                .pending(gpu_pod(1).tolerate("nvidia.com/gpu"))
                .group(g5_od())
                .instance(instance(
                    "i-1",
                    "g5-od",
                    "g5.xlarge",
                    CapacityType::OnDemand,
                ))
                .node(n)
                .build()
        };
        let mut h = History::default();
        h.unneeded_since.insert("i-1".into(), T0.plus_secs(-3600.0));
        let p = plan(&serving(false), &config(vec![pool.clone()]), &h, T0);
        assert!(p.actions.is_empty(), "{:?}", kinds(&p));
        assert!(
            p.decisions
                .iter()
                .any(|d| d.reason.code() == "fits_serving_node"),
            "{:?}",
            p.decisions
        );
        // Its one GPU taken: the pod needs a new node.
        let p = plan(&serving(true), &config(vec![pool]), &h, T0);
        let ups: u32 = p
            .actions
            .iter()
            .map(|a| match a {
                Action::ScaleUp { count, .. } => *count,
                _ => 0,
            })
            .sum();
        assert_eq!(ups, 1, "{:?}", kinds(&p));
    }

    #[test]
    fn pods_on_a_draining_node_get_capacity_before_they_are_evicted() {
        let cfg = config(vec![pool_cfg("llm")]);
        let leaving = instance("i-1", "g5-od", "g5.xlarge", CapacityType::OnDemand)
            .state(LifecycleState::Draining)
            .build();
        let with_pods = |terminating: bool| {
            let mut p = running_pod("server-0", 1);
            p.terminating = terminating;
            let mut ds = running_pod("dcgm", 0);
            ds.daemon = true;
            snapshot()
                .group(g5_od())
                .instance(leaving.clone())
                .node(node("i-1", "llm", CapacityType::OnDemand).pod(p).pod(ds))
                .build()
        };
        let launches = |p: &Plan| {
            p.actions
                .iter()
                .filter(|a| matches!(a, Action::ScaleUp { .. }))
                .count()
        };
        // A GPU pod still running on the draining node: one node for it, now.
        let p = plan(&with_pods(false), &cfg, &History::default(), T0);
        assert!(
            matches!(p.actions[..], [Action::ScaleUp { count: 1, .. }]),
            "{:?}",
            kinds(&p)
        );
        // Already evicted (terminating): its owner's new pending pod is the demand, not it.
        let p = plan(&with_pods(true), &cfg, &History::default(), T0);
        assert_eq!(launches(&p), 0, "{:?}", kinds(&p));
        // A serving node with a free GPU takes it (what scale-down counted on when it drained
        // the node): nothing is launched.
        let mut snap = with_pods(false);
        snap.instances
            .push(instance("i-2", "g5-od", "g5.xlarge", CapacityType::OnDemand).build());
        snap.groups[0].desired += 1;
        snap.nodes
            .push(node("i-2", "llm", CapacityType::OnDemand).build());
        let p = plan(&snap, &cfg, &History::default(), T0);
        assert_eq!(launches(&p), 0, "{:?}", kinds(&p));
    }

    #[test]
    fn second_tick_with_launches_in_flight_does_nothing_new() {
        let pool = pool_cfg("llm");
        let cfg = config(vec![pool]);
        let snap = snapshot()
            .pods(gpu_pod(1).model("A10G").times(3))
            .group(g5_od())
            .demand("llm", 3, Some(5))
            .build();
        let p1 = plan(&snap, &cfg, &History::default(), T0);
        let launched: u32 = p1
            .actions
            .iter()
            .map(|a| match a {
                Action::ScaleUp { count, .. } => *count,
                _ => 0,
            })
            .sum();
        assert_eq!(
            launched,
            5,
            "forecast 5 replicas of 1 GPU: {:?}",
            kinds(&p1)
        );
        // The cloud raised desired but lists no instance yet.
        let mut snap2 = snap.clone();
        snap2.groups[0].desired += launched;
        let p2 = plan(&snap2, &cfg, &History::default(), T0.plus_secs(10.0));
        assert!(p2.actions.is_empty(), "{:?}", kinds(&p2));
        assert!(p2.decisions.iter().all(|d| d.outcome != Outcome::Acted));
    }

    #[test]
    fn pods_and_signals_describe_the_same_capacity() {
        // 4 pending 1-GPU pods and a signal wanting 4 replicas: 4 nodes, not 8.
        let snap = snapshot()
            .pods(gpu_pod(1).model("A10G").times(4))
            .group(g5_od())
            .demand("llm", 4, None)
            .build();
        let p = plan(
            &snap,
            &config(vec![pool_cfg("llm")]),
            &History::default(),
            T0,
        );
        assert_eq!(p.pools[0].desired_nodes, 4, "{:?}", kinds(&p));
    }

    #[test]
    fn unknown_pool_and_unmatched_pods() {
        let snap = snapshot()
            .pending(gpu_pod(1).pool("nope").name("a"))
            .pending(gpu_pod(1).selector("team", "other").name("b"))
            .group(g5_od())
            .build();
        let p = plan(
            &snap,
            &config(vec![pool_cfg("llm")]),
            &History::default(),
            T0,
        );
        let codes: Vec<_> = p
            .decisions
            .iter()
            .filter(|d| matches!(d.subject, Subject::Pod(_)))
            .map(|d| d.reason.code())
            .collect();
        assert_eq!(codes, vec!["not_in_any_pool", "not_in_any_pool"]);
    }

    #[test]
    fn deterministic() {
        let snap = snapshot()
            .pods(gpu_pod(1).times(30))
            .pods(gpu_pod(2).model("A10G").times(7))
            .pods(mig_pod("1g.10gb", 2).times(9))
            .group(p5_spot())
            .group(p5_od())
            .group(g5_spot())
            .group(g5_od().warm(2, 1))
            .demand("llm", 50, Some(60))
            .build();
        let mut pool = pool_cfg("llm");
        pool.capacity.spot_share = crate::config::Share::new(0.5).unwrap();
        pool.limits.max_nodes = 40;
        let cfg = config(vec![pool]);
        let a = serde_json::to_string(&plan(&snap, &cfg, &History::default(), T0)).unwrap();
        let b = serde_json::to_string(&plan(&snap, &cfg, &History::default(), T0)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn running_spot_capacity_is_held_warm_on_demand() {
        // Two spot nodes serve; the on-demand group keeps a warm pool of 0. On AWS's 120-s
        // notice a 150-s cold start is late, so both are held warm.
        let snap = snapshot()
            .group(g5_spot())
            .group(g5_od().warm(0, 0))
            .instance(instance("i-1", "g5-spot", "g5.xlarge", CapacityType::Spot))
            .instance(instance("i-2", "g5-spot", "g5.xlarge", CapacityType::Spot))
            .demand("llm", 2, None)
            .build();
        let mut pool = pool_cfg("llm");
        pool.warm_pool.enabled = Some(true);
        pool.scale_up.cold_start = std::time::Duration::from_secs(150);
        let mut cfg = config(vec![pool]);
        cfg.provider = crate::config::ProviderKind::Aws;
        let p = plan(&snap, &cfg, &History::default(), T0);
        let warm: Vec<_> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::SetWarmPool { size, reason, .. } => Some((*size, reason.code())),
                _ => None,
            })
            .collect();
        assert_eq!(warm, vec![(2, "spot_standby")], "{:?}", p.actions);
        assert_eq!(p.pools[0].spot_standby_replicas, 2);
        // Two more spot launches asked for and not delivered (a late stockout: desired
        // raised, nothing listed): nothing there to reclaim, the standby stays 2.
        let mut short = snap.clone();
        short.groups[0].desired = 4;
        let p2 = plan(&short, &cfg, &History::default(), T0);
        assert_eq!(p2.pools[0].spot_standby_replicas, 2);
        // A cold start within the notice (100 s, under 120 s) is in time: none held.
        cfg.pools[0].scale_up.cold_start = std::time::Duration::from_secs(100);
        let p = plan(&snap, &cfg, &History::default(), T0);
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::SetWarmPool { .. })),
            "{:?}",
            p.actions
        );
    }

    #[test]
    fn summary_per_pool() {
        let snap = snapshot()
            .group(g5_od())
            .group(group("other", "b").offering(offering(
                "g5.xlarge",
                CapacityType::OnDemand,
                "us-east-1a",
                1.0,
            )))
            .instance(instance(
                "i-1",
                "g5-od",
                "g5.xlarge",
                CapacityType::OnDemand,
            ))
            .demand("llm", 1, None)
            .build();
        let p = plan(
            &snap,
            &config(vec![pool_cfg("llm"), pool_cfg("b")]),
            &History::default(),
            T0,
        );
        assert_eq!(p.pools.len(), 2);
        assert_eq!(p.pools[0].ready_nodes, 1);
        assert_eq!(
            p.pools[0].cost_per_hour,
            crate::model::Money::from_dollars(1.006)
        );
        assert_eq!(p.pools[0].wanted_replicas, Some(1));
        assert_eq!(p.pools[1].desired_nodes, 0);
    }
}
