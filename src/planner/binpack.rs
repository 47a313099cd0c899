//! Pending pods onto node templates.
//!
//! Identical pods (same requests, selectors, tolerations, pool) form one equivalence class;
//! whether a class fits a template, and how many of its pods one node holds, is computed once
//! per class × template. Packing is first-fit decreasing by class: free room on in-flight nodes
//! first (so a second tick never launches the same capacity again), then room on nodes this
//! plan already opened, then new nodes of the offering cheapest per pod placed (the
//! [`Chooser`] applies the capacity split, warm pools and limits).

use super::capacity::{Cause, Chooser, Pick, best_unusable};
use super::eligible::{Status, Template};
use super::fit::{Miss, PodSpec, Room, static_fit};
use crate::model::{PendingPod, PoolName, Reason};
use std::collections::HashMap;

/// Pods that schedule identically.
pub(crate) struct Class<'a> {
    pub spec: PodSpec<'a>,
    pub pool: Option<&'a PoolName>,
    /// Indices into the snapshot's pending pods, in snapshot order.
    pub members: Vec<usize>,
}

/// Group pending pods into classes, in order of first appearance.
pub(crate) fn classes(pods: &[PendingPod]) -> Vec<Class<'_>> {
    let mut index: HashMap<(Option<&PoolName>, PodSpec<'_>), usize> = HashMap::new();
    let mut out: Vec<Class<'_>> = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        let spec = PodSpec::pending(p);
        let key = (p.pool.as_ref(), spec);
        match index.get(&key) {
            Some(&c) => out[c].members.push(i),
            None => {
                index.insert(key, out.len());
                out.push(Class {
                    spec,
                    pool: p.pool.as_ref(),
                    members: vec![i],
                });
            }
        }
    }
    out
}

/// A class against every template of one pool.
pub(crate) struct ClassFit {
    /// Pods of the class one empty node of each template holds (0: does not fit).
    pub per_node: Vec<u32>,
    /// Some usable or unusable (not `NotAllowed`) template fits.
    pub fits_allowed: bool,
    /// The constraint of the closest allowed template, when none fits.
    pub closest: Option<Miss>,
}

pub(crate) fn class_fit(spec: &PodSpec<'_>, tpls: &[Template<'_>]) -> ClassFit {
    let mut per_node = Vec::with_capacity(tpls.len());
    let mut fits_allowed = false;
    let mut closest: Option<Miss> = None;
    for t in tpls {
        match static_fit(spec, &t.labels, &t.taints, &t.caps) {
            Ok(n) => {
                fits_allowed |= t.status != Status::NotAllowed;
                per_node.push(n);
            }
            Err(m) => {
                per_node.push(0);
                if t.status != Status::NotAllowed {
                    closest = Some(match closest {
                        None => m,
                        Some(c) if m.stage() > c.stage() => m,
                        Some(c) if m.stage() == c.stage() => c.widest(m),
                        Some(c) => c,
                    });
                }
            }
        }
    }
    ClassFit {
        per_node,
        fits_allowed,
        closest,
    }
}

/// Why no usable template of the pool fits a class: an unusable offering that would fit (in
/// backoff, unavailable, too expensive), else the closest constraint.
pub(crate) fn no_fit_reason(fit: &ClassFit, tpls: &[Template<'_>]) -> Reason {
    for (i, t) in tpls.iter().enumerate() {
        if let Status::Unusable(r) = &t.status
            && fit.per_node[i] > 0
        {
            return r.clone();
        }
    }
    Reason::NoOfferingFits {
        constraint: fit
            .closest
            .as_ref()
            .map_or_else(|| "the pool has no offerings".to_owned(), |m| m.describe()),
    }
}

/// What happened to one pending pod.
#[derive(Clone, Debug)]
pub(crate) enum Fate {
    /// Fits the free room of a node already serving (`bin` indexes the pool's bins): the
    /// scheduler places it there (Cluster Autoscaler's `filterOutSchedulable`); not demand.
    Existing {
        bin: usize,
    },
    InFlight,
    New {
        tpl: usize,
        warm: bool,
    },
    Blocked(Reason),
}

/// A node pods can be placed on: serving, in flight already, or opened by this plan.
#[derive(Clone)]
pub(crate) struct Bin<'a> {
    pub tpl: usize,
    pub room: Room<'a>,
    /// The serving node's instance, for a node already serving.
    pub serving: Option<&'a crate::model::InstanceId>,
}

/// Pack the pool's classes. `bins` holds the in-flight nodes on entry and the new nodes as
/// well on return. Returns the limit reasons that stopped growth.
///
/// The final assignment is *canonical*: a fixed procedure over the multiset of nodes (in
/// flight + new), not the history of how nodes were opened. Next tick the same nodes are in
/// flight and the same procedure finds the same assignment, so nothing is launched twice.
/// Rounds: place canonically; open new nodes first-fit decreasing for what is left (the
/// [`Chooser`] picks offerings and applies limits); place canonically again over all nodes.
/// If the canonical placement still leaves pods out after a few rounds, the first-fit
/// assignment of the last round is used.
pub(crate) fn pack<'a>(
    classes: &[(&Class<'a>, ClassFit)],
    tpls: &[Template<'a>],
    bins: &mut Vec<Bin<'a>>,
    chooser: &mut Chooser<'_, 'a>,
    fates: &mut [Option<Fate>],
) -> Vec<Reason> {
    const ROUNDS: usize = 4;
    let in_flight = bins.len();
    let initial = bins.clone();
    // Largest first; ties by first appearance so the order is stable across ticks.
    let mut ffd: Vec<usize> = (0..classes.len()).collect();
    ffd.sort_by(|&a, &b| {
        let (ca, cb) = (&classes[a].0, &classes[b].0);
        cb.spec
            .ffd_key()
            .cmp(&ca.spec.ffd_key())
            .then(ca.members[0].cmp(&cb.members[0]))
    });
    // Room is tried on the most specialised templates first (those the fewest classes fit):
    // a pod that could go anywhere must not take the only room another pod fits in.
    let mut flex = vec![0u32; tpls.len()];
    let mut options = vec![0u32; classes.len()];
    for (ci, (_, fit)) in classes.iter().enumerate() {
        for (t, n) in fit.per_node.iter().enumerate() {
            flex[t] += u32::from(*n > 0);
            options[ci] += u32::from(*n > 0);
        }
    }
    let mut tpl_order: Vec<usize> = (0..tpls.len()).collect();
    tpl_order.sort_by_key(|&t| (flex[t], t));
    let mut constrained = ffd.clone();
    constrained.sort_by_key(|&c| options[c]);
    let orders = [&constrained[..], &ffd[..]];

    let mut limits = Vec::new();
    let mut blocked: Vec<Option<Reason>> = vec![None; classes.len()];
    let mut current = canonical(classes, tpls, &tpl_order, &orders, &initial);
    for round in 0..ROUNDS {
        if current.unplaced(classes) == 0 {
            break;
        }
        let before = chooser.launches.len();
        let opened = open_for_rest(
            classes,
            tpls,
            &tpl_order,
            &ffd,
            in_flight,
            current,
            chooser,
            &mut blocked,
            &mut limits,
        );
        if chooser.launches.len() == before || round + 1 == ROUNDS {
            current = opened;
            break;
        }
        let mut all = initial.clone();
        all.extend(chooser.launches.iter().map(|l| Bin {
            serving: None,
            tpl: l.tpl,
            room: Room::EMPTY,
        }));
        // The canonical placement wins even when it serves fewer pods than first fit did:
        // the next round opens nodes for its leftovers, so the final nodes are ones the
        // canonical procedure fills completely, next tick too.
        current = canonical(classes, tpls, &tpl_order, &orders, &all);
    }

    for (ci, (c, fit)) in classes.iter().enumerate() {
        let mut next = 0usize;
        for &(bi, k) in &current.got[ci] {
            let fate = if bi < in_flight {
                if initial[bi].serving.is_some() {
                    Fate::Existing { bin: bi }
                } else {
                    Fate::InFlight
                }
            } else {
                let l = &chooser.launches[bi - in_flight];
                Fate::New {
                    tpl: l.tpl,
                    warm: l.warm,
                }
            };
            for &m in &c.members[next..next + k] {
                fates[m] = Some(fate.clone());
            }
            next += k;
        }
        if next < c.members.len() {
            let reason = blocked[ci]
                .clone()
                .unwrap_or_else(|| no_fit_reason(fit, tpls));
            for &m in &c.members[next..] {
                fates[m] = Some(Fate::Blocked(reason.clone()));
            }
        }
    }
    *bins = current.bins;
    limits
}

/// An assignment: the nodes' rooms, and per class the (node, pods) it got, in member order.
struct Placement<'a> {
    bins: Vec<Bin<'a>>,
    got: Vec<Vec<(usize, usize)>>,
}

impl Placement<'_> {
    fn placed(&self, ci: usize) -> usize {
        self.got[ci].iter().map(|(_, k)| k).sum()
    }
    fn unplaced(&self, classes: &[(&Class<'_>, ClassFit)]) -> usize {
        (0..classes.len())
            .map(|ci| classes[ci].0.members.len() - self.placed(ci))
            .sum()
    }
}

/// Place every class on `start` (a fixed procedure of the nodes' templates and rooms): nodes of
/// one template in canonical order (fullest first), classes in each of `orders`, keeping the
/// order that leaves the fewest pods out.
fn canonical<'a>(
    classes: &[(&Class<'a>, ClassFit)],
    tpls: &[Template<'a>],
    tpl_order: &[usize],
    orders: &[&[usize]],
    start: &[Bin<'a>],
) -> Placement<'a> {
    let mut by_tpl: Vec<Vec<usize>> = vec![Vec::new(); tpls.len()];
    for (bi, b) in start.iter().enumerate() {
        by_tpl[b.tpl].push(bi);
    }
    for list in &mut by_tpl {
        // Nodes of one template differ only by their room: fullest first, then by position
        // (in-flight before new), so equal nodes are interchangeable.
        list.sort_by_key(|&bi| {
            let r = &start[bi].room;
            (
                std::cmp::Reverse((r.slots_used, r.cpu_used, r.mem_used)),
                bi,
            )
        });
    }
    let mut best: Option<Placement<'a>> = None;
    for order in orders {
        let mut p = Placement {
            bins: start.to_vec(),
            got: vec![Vec::new(); classes.len()],
        };
        for &ci in order.iter() {
            let got = &mut p.got[ci];
            fill(
                &classes[ci],
                tpls,
                tpl_order,
                &by_tpl,
                &mut p.bins,
                0,
                |r, bi| {
                    got.push((bi, r.len()));
                },
            );
        }
        if best
            .as_ref()
            .is_none_or(|b| p.unplaced(classes) < b.unplaced(classes))
        {
            best = Some(p);
        }
    }
    best.unwrap_or(Placement {
        bins: start.to_vec(),
        got: vec![Vec::new(); classes.len()],
    })
}

/// First-fit decreasing for the pods `current` leaves out: room on new nodes first, then new
/// nodes from the chooser. Records why pods that get no node are blocked.
#[allow(clippy::too_many_arguments)]
fn open_for_rest<'a>(
    classes: &[(&Class<'a>, ClassFit)],
    tpls: &[Template<'a>],
    tpl_order: &[usize],
    ffd: &[usize],
    in_flight: usize,
    mut current: Placement<'a>,
    chooser: &mut Chooser<'_, 'a>,
    blocked: &mut [Option<Reason>],
    limits: &mut Vec<Reason>,
) -> Placement<'a> {
    let mut by_tpl: Vec<Vec<usize>> = vec![Vec::new(); tpls.len()];
    for (bi, b) in current.bins.iter().enumerate().skip(in_flight) {
        by_tpl[b.tpl].push(bi);
    }
    for &ci in ffd {
        let (class, fit) = &classes[ci];
        let total = class.members.len();
        let placed = current.placed(ci);
        if placed == total {
            continue;
        }
        let got = &mut current.got[ci];
        let mut next = fill(
            &classes[ci],
            tpls,
            tpl_order,
            &by_tpl,
            &mut current.bins,
            placed,
            |r, bi| got.push((bi, r.len())),
        );
        while next < total {
            let left = u32::try_from(total - next).unwrap_or(u32::MAX);
            let (pick, fallback) = chooser.choose(
                |t| fit.per_node[t],
                left,
                |ct| best_unusable(tpls, ct, |t| fit.per_node[t] > 0),
            );
            match pick {
                Pick::Open { tpl, warm } => {
                    chooser.open(tpl, warm, Cause::Pods, fallback);
                    let caps = &tpls[tpl].caps;
                    let mut room = Room::EMPTY;
                    let k = room.fit_count(caps, &class.spec, left).max(1) as usize;
                    room.take(caps, &class.spec, k as u32);
                    by_tpl[tpl].push(current.bins.len());
                    got.push((current.bins.len(), k.min(total - next)));
                    current.bins.push(Bin {
                        tpl,
                        room,
                        serving: None,
                    });
                    next = (next + k).min(total);
                }
                Pick::Blocked(r) => {
                    if !limits.iter().any(|l: &Reason| l.code() == r.code()) {
                        limits.push(r.clone());
                    }
                    blocked[ci] = Some(r);
                    break;
                }
                Pick::NoFit => {
                    blocked[ci] = Some(no_fit_reason(fit, tpls));
                    break;
                }
            }
        }
    }
    current
}

/// Place the class's members from `next` on the bins listed in `by_tpl` (specialised
/// templates first); `on_place(range, bin)` is told which members went where. Returns the new
/// `next`.
fn fill<'a>(
    class: &(&Class<'a>, ClassFit),
    tpls: &[Template<'a>],
    tpl_order: &[usize],
    by_tpl: &[Vec<usize>],
    bins: &mut [Bin<'a>],
    mut next: usize,
    mut on_place: impl FnMut(std::ops::Range<usize>, usize),
) -> usize {
    let (class, fit) = class;
    let total = class.members.len();
    for &t in tpl_order {
        if fit.per_node[t] == 0 {
            continue;
        }
        let caps = &tpls[t].caps;
        for &bi in &by_tpl[t] {
            if next == total {
                return next;
            }
            let bin = &mut bins[bi];
            let left = u32::try_from(total - next).unwrap_or(u32::MAX);
            let k = bin.room.fit_count(caps, &class.spec, left);
            if k == 0 {
                continue;
            }
            bin.room.take(caps, &class.spec, k);
            on_place(next..next + k as usize, bi);
            next += k as usize;
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, History, Money};
    use crate::planner::eligible::templates;
    use crate::planner::fixtures::*;

    struct Run {
        fates: Vec<Option<Fate>>,
        opened: Vec<String>,
    }

    fn run(pods: Vec<PendingPod>, groups: Vec<crate::model::NodeGroup>, in_flight: &[&str]) -> Run {
        let pool = pool_cfg("llm");
        let refs: Vec<_> = groups.iter().collect();
        let ts = templates(&pool, &refs, &History::default(), T0, &mut Vec::new());
        let cls = classes(&pods);
        let fits: Vec<_> = cls.iter().map(|c| (c, class_fit(&c.spec, &ts))).collect();
        let mut bins: Vec<Bin<'_>> = in_flight
            .iter()
            .map(|name| Bin {
                serving: None,
                tpl: ts
                    .iter()
                    .position(|t| t.key.instance_type.as_str() == *name)
                    .unwrap(),
                room: Room::EMPTY,
            })
            .collect();
        let mut chooser = Chooser::new(&pool, &ts, &refs, bins.len() as u32, 0, Money::ZERO);
        let mut fates = vec![None; pods.len()];
        pack(&fits, &ts, &mut bins, &mut chooser, &mut fates);
        let opened = chooser
            .launches
            .iter()
            .map(|l| ts[l.tpl].key.instance_type.to_string())
            .collect();
        Run { fates, opened }
    }

    fn catalog_group() -> crate::model::NodeGroup {
        let mut g = group("od", "llm");
        for (name, ..) in CATALOG {
            g = g.offering(offering(
                name,
                CapacityType::OnDemand,
                "us-east-1a",
                on_demand_price(name),
            ));
        }
        g.build()
    }

    #[test]
    fn identical_pods_form_one_class() {
        let mut pods = gpu_pod(1).times(5);
        pods.extend(gpu_pod(2).times(2));
        pods.push(gpu_pod(1).model("H100").build());
        let cls = classes(&pods);
        let sizes: Vec<_> = cls.iter().map(|c| c.members.len()).collect();
        assert_eq!(sizes, vec![5, 2, 1]);
    }

    #[test]
    fn table() {
        // (pods, in-flight types, new instance types opened, blocked reason of the last pod)
        type Case = (
            Vec<PendingPod>,
            Vec<&'static str>,
            Vec<&'static str>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            // 8 pods of one H100 each: one p5 node (8 per node) is cheaper per pod than 8 nodes.
            (
                gpu_pod(1).model("H100").times(8),
                vec![],
                vec!["p5.48xlarge"],
                None,
            ),
            // One small pod takes the cheapest node that fits.
            (vec![gpu_pod(1).build()], vec![], vec!["g4dn.xlarge"], None),
            // In-flight capacity absorbs the pods first.
            (
                gpu_pod(1).model("A10G").times(4),
                vec!["g5.12xlarge"],
                vec![],
                None,
            ),
            // … and only the remainder opens a node.
            (
                gpu_pod(1).model("A10G").times(5),
                vec!["g5.12xlarge"],
                vec!["g5.xlarge"],
                None,
            ),
            // MIG slices need a type offering the profile.
            (
                mig_pod("1g.10gb", 1).times(3).into_iter().collect(),
                vec![],
                vec!["p4de.24xlarge"],
                None,
            ),
            (
                vec![mig_pod("1g.20gb", 1).build()],
                vec![],
                vec![],
                Some("no offering fits: MIG profile 1g.20gb not offered"),
            ),
            (
                vec![gpu_pod(16).build()],
                vec![],
                vec![],
                Some("no offering fits: needs 16 GPUs, largest eligible offering has 8"),
            ),
            (
                vec![gpu_pod(1).selector("x", "y").build()],
                vec![],
                vec![],
                Some("no offering fits: nodeSelector x=y"),
            ),
            (
                vec![gpu_pod(1).cpu(500_000).build()],
                vec![],
                vec![],
                Some("no offering fits: needs 500000 mCPU, largest eligible offering has 192000"),
            ),
        ];
        for (i, (pods, inflight, want_opened, want_blocked)) in cases.into_iter().enumerate() {
            let n = pods.len();
            let r = run(pods, vec![catalog_group()], &inflight);
            assert_eq!(r.opened, want_opened, "case {i}");
            match want_blocked {
                None => assert!(
                    r.fates
                        .iter()
                        .all(|f| !matches!(f, Some(Fate::Blocked(_)) | None)),
                    "case {i}: {:?}",
                    r.fates
                ),
                Some(text) => match &r.fates[n - 1] {
                    Some(Fate::Blocked(reason)) => assert_eq!(reason.to_string(), text, "case {i}"),
                    other => panic!("case {i}: {other:?}"),
                },
            }
        }
    }

    #[test]
    fn taints_must_be_tolerated() {
        let g = g5_od().taint(gpu_taint()).build();
        let r = run(vec![gpu_pod(1).build()], vec![g.clone()], &[]);
        match &r.fates[0] {
            Some(Fate::Blocked(reason)) => assert_eq!(
                reason.to_string(),
                "no offering fits: taint nvidia.com/gpu=present:NoSchedule not tolerated"
            ),
            other => panic!("{other:?}"),
        }
        let r = run(
            vec![gpu_pod(1).tolerate("nvidia.com/gpu").build()],
            vec![g],
            &[],
        );
        assert!(matches!(r.fates[0], Some(Fate::New { .. })));
    }

    #[test]
    fn smaller_pods_fill_room_left_by_larger_ones() {
        // A 3-GPU pod opens a 4-GPU node; the 1-GPU pod fills the last GPU.
        let mut pods = vec![gpu_pod(1).model("A10G").build()];
        pods.push(gpu_pod(3).model("A10G").build());
        let r = run(pods, vec![catalog_group()], &[]);
        assert_eq!(r.opened, vec!["g5.12xlarge"]);
    }
}
