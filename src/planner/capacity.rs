//! Capacity choice: which offering each new node is launched from.
//!
//! - Offerings are compared by *effective* hourly cost, price × (1 + (risk + learned risk) ×
//!   interruption penalty hours), per pod or replica the node would hold.
//! - The spot/on-demand split is kept node by node: the next node is on-demand while the
//!   pool's on-demand count is below `on_demand_base + ceil((total − base) × (1 − spot_share))`
//!   for the total *including* that node, so after any number of nodes the split is exact.
//! - If the preferred capacity type has no usable offering, the next type in
//!   `capacity.fallback` is used and the action says so (`Reason::Fallback`).
//! - Warm pools first: a group with stopped, cache-warm instances is started before anything
//!   is launched cold (seconds instead of minutes).
//! - Limits: pool max nodes and max $/h, group max size, nodes per tick; groups with a scaling
//!   activity in progress are skipped.

use super::eligible::Template;
use crate::config::PoolConfig;
use crate::model::{CapacityType, History, Money, Offering, OfferingKey, Price, Reason};

/// Price × (1 + (risk + learned risk) × penalty hours); unknown stays unknown.
pub(crate) fn effective_price(
    pool: &PoolConfig,
    o: &Offering,
    key: &OfferingKey,
    history: &History,
) -> Price {
    let boost = history.risk_boost.get(key).copied().unwrap_or(0.0);
    let risk = (o.interruption_risk_per_hour + boost).max(0.0);
    o.price_per_hour
        .scale(1.0 + risk * pool.capacity.interruption_penalty_hours)
}

/// Hourly cost of a set of nodes: the sum of the prices that are known, and how many nodes
/// have none. Unknown is not zero: an unpriced node is counted apart, never as $0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cost {
    pub known: Money,
    pub unpriced: u32,
}

impl Cost {
    pub fn add(&mut self, p: Price) {
        match p {
            Price::Known(m) => self.known += m,
            Price::Unknown => self.unpriced += 1,
        }
    }
}

impl From<Money> for Cost {
    fn from(known: Money) -> Self {
        Cost { known, unpriced: 0 }
    }
}

/// Whether one more node at `price` keeps the pool under `max_cost_per_hour`, counting
/// unknown prices conservatively: an unknown price cannot be shown to fit under any cap, so
/// under a cap an unknown-priced offering is refused (`PriceUnknown`) and a pool that already
/// runs unpriced nodes launches nothing more (`CostUnknown`) until a price is known (the Pricing
/// API, the regional table, or a price override). Without a cap nothing is refused here.
pub(crate) fn cost_cap_block(
    max_per_hour: Option<Money>,
    so_far: Cost,
    price: Price,
    offering: &OfferingKey,
) -> Option<Reason> {
    let max = max_per_hour?;
    let Price::Known(p) = price else {
        return Some(Reason::PriceUnknown {
            offering: offering.clone(),
            max_per_hour: max,
        });
    };
    if so_far.unpriced > 0 {
        return Some(Reason::CostUnknown {
            unpriced_nodes: so_far.unpriced,
            max_per_hour: max,
        });
    }
    let would_be = so_far.known + p;
    (would_be > max).then_some(Reason::AtMaxCost {
        max_per_hour: max,
        would_be,
    })
}

/// On-demand nodes wanted when the pool has `total` nodes.
pub(crate) fn on_demand_target(pool: &PoolConfig, total: u32) -> u32 {
    let base = pool.capacity.on_demand_base;
    if total <= base {
        return total;
    }
    let above = f64::from(total - base) * pool.capacity.spot_share.complement().get();
    // The epsilon keeps 0.1 × 30 = 3.0000000000000004 from rounding up to 4.
    base + (above - 1e-9).ceil().max(0.0) as u32
}

/// Why a node is launched; becomes the action's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Cause {
    Pods,
    Signal,
    Forecast,
    MinNodes,
    Consolidate,
}

/// One node this plan adds.
#[derive(Clone, Debug)]
pub(crate) struct Launch {
    pub tpl: usize,
    pub warm: bool,
    pub cause: Cause,
    pub fallback: Option<Reason>,
}

pub(crate) enum Pick {
    Open {
        tpl: usize,
        warm: bool,
    },
    /// A limit or the groups stop growth.
    Blocked(Reason),
    /// No usable template fits at all; the caller knows why.
    NoFit,
}

/// The pool's capacity bookkeeping while a plan is built.
pub(crate) struct Chooser<'t, 'a> {
    pool: &'t PoolConfig,
    tpls: &'t [Template<'a>],
    pub live_nodes: u32,
    pub live_on_demand: u32,
    pub live_cost: Cost,
    pub new_nodes: u32,
    pub new_on_demand: u32,
    pub new_cost: Cost,
    group_room: Vec<u32>,
    group_busy: Vec<bool>,
    warm_left: Vec<u32>,
    /// The template warm instances of each group are assumed to be (its first usable one).
    warm_tpl: Vec<Option<usize>>,
    pub launches: Vec<Launch>,
}

impl<'t, 'a> Chooser<'t, 'a> {
    pub fn new(
        pool: &'t PoolConfig,
        tpls: &'t [Template<'a>],
        groups: &[&crate::model::NodeGroup],
        live_nodes: u32,
        live_on_demand: u32,
        live_cost: impl Into<Cost>,
    ) -> Self {
        let live_cost = live_cost.into();
        let mut warm_tpl = vec![None; groups.len()];
        for (gi, g) in groups.iter().enumerate() {
            // First usable offering in the group's own order: warm instances were launched
            // from its launch template.
            warm_tpl[gi] = g.offerings.iter().find_map(|o| {
                tpls.iter()
                    .position(|t| t.group == gi && t.usable() && std::ptr::eq(t.offering, o))
            });
        }
        Chooser {
            pool,
            tpls,
            live_nodes,
            live_on_demand,
            live_cost,
            new_nodes: 0,
            new_on_demand: 0,
            new_cost: Cost::default(),
            group_room: groups
                .iter()
                .map(|g| g.max_size.saturating_sub(g.desired))
                .collect(),
            group_busy: groups.iter().map(|g| g.activity_in_progress).collect(),
            warm_left: groups
                .iter()
                .map(|g| g.warm_pool.as_ref().map_or(0, |w| w.ready))
                .collect(),
            warm_tpl,
            launches: Vec::new(),
        }
    }

    /// The capacity type the next node should have to keep the split.
    pub fn preferred(&self) -> CapacityType {
        let total = self.live_nodes + self.new_nodes + 1;
        if self.live_on_demand + self.new_on_demand < on_demand_target(self.pool, total) {
            CapacityType::OnDemand
        } else {
            CapacityType::Spot
        }
    }

    fn pool_limit(&self) -> Option<Reason> {
        let l = &self.pool.limits;
        if self.new_nodes >= self.pool.scale_up.max_nodes_per_tick {
            return Some(Reason::MaxNodesPerTick {
                max: self.pool.scale_up.max_nodes_per_tick,
            });
        }
        if self.live_nodes + self.new_nodes >= l.max_nodes {
            return Some(Reason::AtMaxNodes { max: l.max_nodes });
        }
        None
    }

    fn cost_limit(&self, t: &Template<'_>) -> Option<Reason> {
        let so_far = Cost {
            known: self.live_cost.known + self.new_cost.known,
            unpriced: self.live_cost.unpriced + self.new_cost.unpriced,
        };
        cost_cap_block(self.pool.limits.max_cost_per_hour, so_far, t.price, &t.key)
    }

    fn group_block(&self, t: &Template<'_>) -> Option<Reason> {
        if self.group_busy[t.group] {
            return Some(Reason::ActivityInProgress {
                group: t.group_ref.id.clone(),
            });
        }
        if self.group_room[t.group] == 0 {
            return Some(Reason::GroupAtMaxSize {
                group: t.group_ref.id.clone(),
                max: t.group_ref.max_size,
            });
        }
        None
    }

    /// Is `a` (holding `na` units) cheaper per unit than `b` (holding `nb`)? Integer
    /// cross-multiplication, so the choice never depends on float rounding. An unknown price
    /// is never cheaper than a known one.
    fn cheaper(&self, a: usize, na: u32, b: usize, nb: u32) -> bool {
        let (pa, pb) = (self.tpls[a].eff_price, self.tpls[b].eff_price);
        let (Price::Known(pa), Price::Known(pb)) = (pa, pb) else {
            // Templates are sorted by (price, key, group), unknown last: on a tie the lower
            // index wins.
            return pa < pb || (pa == pb && a < b);
        };
        let ca = i128::from(pa.micros()) * i128::from(nb);
        let cb = i128::from(pb.micros()) * i128::from(na);
        ca < cb || (ca == cb && a < b)
    }

    /// Choose the template for one more node. `per_node(t)` is how many of the units being
    /// placed (pods of one class, replicas, nodes) one node of usable template `t` holds (0: it
    /// does not fit); `remaining` caps it so a big node is not chosen for one small pod.
    /// `fallback_from(ct)` names the best unusable offering of a capacity type and why it is
    /// unusable, for the fallback reason.
    pub fn choose(
        &self,
        per_node: impl Fn(usize) -> u32,
        remaining: u32,
        fallback_from: impl Fn(CapacityType) -> Option<(OfferingKey, Reason)>,
    ) -> (Pick, Option<Reason>) {
        if let Some(r) = self.pool_limit() {
            return (Pick::Blocked(r), None);
        }
        let mut any_fit = false;
        let mut group_reason = None;
        let mut cost_reason = None;
        let mut best_warm: Option<(usize, u32)> = None;
        let mut best: [Option<(usize, u32)>; 2] = [None, None];
        for (i, t) in self.tpls.iter().enumerate() {
            if !t.usable() {
                continue;
            }
            let pn = per_node(i);
            if pn == 0 {
                continue;
            }
            any_fit = true;
            if let Some(r) = self.group_block(t) {
                group_reason.get_or_insert(r);
                continue;
            }
            // Over the cost cap: skip it like a full group, so a cheaper offering (or the
            // fallback capacity type) is used rather than nothing.
            if let Some(r) = self.cost_limit(t) {
                cost_reason.get_or_insert(r);
                continue;
            }
            let n = pn.min(remaining.max(1));
            if self.warm_left[t.group] > 0 && self.warm_tpl[t.group] == Some(i) {
                match best_warm {
                    Some((b, nb)) if !self.cheaper(i, n, b, nb) => {}
                    _ => best_warm = Some((i, n)),
                }
            }
            let slot = &mut best[ct_index(t.capacity_type())];
            match *slot {
                Some((b, nb)) if !self.cheaper(i, n, b, nb) => {}
                _ => *slot = Some((i, n)),
            }
        }
        if !any_fit {
            return (Pick::NoFit, None);
        }
        if let Some((i, _)) = best_warm {
            return (Pick::Open { tpl: i, warm: true }, None);
        }
        let pref = self.preferred();
        let order = std::iter::once(pref).chain(
            self.pool
                .capacity
                .fallback
                .iter()
                .copied()
                .filter(move |c| *c != pref),
        );
        // The best of each allowed capacity type in preference order; an unknown-priced one
        // is the last choice, after a known-priced one of any allowed type (`min_by_key`
        // keeps the first of equals, so the preference order holds among the known).
        let pick = order
            .filter_map(|ct| best[ct_index(ct)].map(|(i, _)| (ct, i)))
            .min_by_key(|&(_, i)| self.tpls[i].eff_price.is_unknown());
        if let Some((ct, i)) = pick {
            let fallback =
                (ct != pref)
                    .then(|| fallback_from(pref))
                    .flatten()
                    .map(|(from, why)| Reason::Fallback {
                        from,
                        to: self.tpls[i].key.clone(),
                        why: why.to_string(),
                    });
            return (
                Pick::Open {
                    tpl: i,
                    warm: false,
                },
                fallback,
            );
        }
        let why = cost_reason
            .or(group_reason)
            .or_else(|| fallback_from(pref).map(|(_, r)| r))
            .unwrap_or_else(|| Reason::NoOfferingFits {
                constraint: format!(
                    "no usable {pref} offering fits and capacity.fallback allows no other type"
                ),
            });
        (Pick::Blocked(why), None)
    }

    /// Can one more node of exactly this template be launched (consolidation)?
    pub fn check_specific(&self, tpl: usize) -> Option<Reason> {
        let t = &self.tpls[tpl];
        self.pool_limit()
            .or_else(|| self.group_block(t))
            .or_else(|| self.cost_limit(t))
    }

    /// Record one new node.
    pub fn open(&mut self, tpl: usize, warm: bool, cause: Cause, fallback: Option<Reason>) {
        let t = &self.tpls[tpl];
        self.new_nodes += 1;
        if t.capacity_type() == CapacityType::OnDemand {
            self.new_on_demand += 1;
        }
        self.new_cost.add(t.price);
        self.group_room[t.group] = self.group_room[t.group].saturating_sub(1);
        if warm {
            self.warm_left[t.group] = self.warm_left[t.group].saturating_sub(1);
        }
        self.launches.push(Launch {
            tpl,
            warm,
            cause,
            fallback,
        });
    }
}

fn ct_index(ct: CapacityType) -> usize {
    match ct {
        CapacityType::OnDemand => 0,
        CapacityType::Spot => 1,
    }
}

/// The cheapest unusable template of a capacity type for which `fits` holds, with the reason
/// it is unusable (for `Reason::Fallback`).
pub(crate) fn best_unusable(
    tpls: &[Template<'_>],
    ct: CapacityType,
    fits: impl Fn(usize) -> bool,
) -> Option<(OfferingKey, Reason)> {
    tpls.iter().enumerate().find_map(|(i, t)| match &t.status {
        super::eligible::Status::Unusable(r) if t.capacity_type() == ct && fits(i) => {
            Some((t.key.clone(), r.clone()))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::eligible::templates;
    use crate::planner::fixtures::*;

    #[test]
    fn on_demand_target_table() {
        let mut pool = pool_cfg("p");
        // (base, spot_share, total, on-demand wanted)
        let cases = [
            (0, 0.0, 5, 5),
            (0, 1.0, 5, 0),
            (2, 1.0, 5, 2),
            (2, 0.5, 5, 4),
            (2, 0.5, 1, 1),
            (1, 0.9, 31, 4),
            (0, 0.7, 10, 3),
        ];
        for (base, share, total, want) in cases {
            pool.capacity.on_demand_base = base;
            pool.capacity.spot_share = crate::config::Share::new(share).unwrap();
            assert_eq!(
                on_demand_target(&pool, total),
                want,
                "{base} {share} {total}"
            );
        }
    }

    #[test]
    fn risk_raises_effective_price() {
        let mut pool = pool_cfg("p");
        pool.capacity.interruption_penalty_hours = 2.0;
        let o = offering("g5.xlarge", CapacityType::Spot, "us-east-1a", 1.0)
            .risk(0.1)
            .build();
        let mut h = History::default();
        assert_eq!(
            effective_price(&pool, &o, &o.key(), &h),
            Price::from_dollars(1.2)
        );
        h.record_interruption(&o.key());
        assert_eq!(
            effective_price(&pool, &o, &o.key(), &h),
            Price::from_dollars(1.3)
        );
    }

    #[test]
    fn split_alternates_to_keep_the_share_and_falls_back() {
        let mut pool = pool_cfg("llm");
        pool.capacity.spot_share = crate::config::Share::new(0.5).unwrap();
        let groups = [g5_spot().build(), g5_od().build()];
        let refs: Vec<_> = groups.iter().collect();
        let ts = templates(&pool, &refs, &History::default(), T0, &mut Vec::new());
        let mut c = Chooser::new(&pool, &ts, &refs, 0, 0, Money::ZERO);
        let mut cts = Vec::new();
        for _ in 0..4 {
            let (Pick::Open { tpl, warm }, fb) = c.choose(|_| 1, 1, |_| None) else {
                panic!("should open");
            };
            cts.push(ts[tpl].capacity_type());
            c.open(tpl, warm, Cause::Pods, fb);
        }
        use CapacityType::*;
        assert_eq!(cts, vec![OnDemand, Spot, OnDemand, Spot]);
    }

    #[test]
    fn limits_block_in_order() {
        let mut pool = pool_cfg("llm");
        pool.limits.max_nodes = 3;
        pool.limits.max_cost_per_hour = Some(Money::from_dollars(2.5));
        pool.scale_up.max_nodes_per_tick = 2;
        let groups = [g5_od().build()];
        let refs: Vec<_> = groups.iter().collect();
        let tpl_pool = pool.clone();
        let ts = templates(&tpl_pool, &refs, &History::default(), T0, &mut Vec::new());
        // 1 live node: cost 1.006 + 1.006 fits 2.5, the next would not.
        let mut c = Chooser::new(&pool, &ts, &refs, 1, 1, Money::from_dollars(1.006));
        let (Pick::Open { tpl, .. }, _) = c.choose(|_| 1, 1, |_| None) else {
            panic!("first fits");
        };
        c.open(tpl, false, Cause::Pods, None);
        let (Pick::Blocked(r), _) = c.choose(|_| 1, 1, |_| None) else {
            panic!("cost blocks");
        };
        assert_eq!(r.code(), "at_max_cost");
        pool.limits.max_cost_per_hour = None;
        let mut c = Chooser::new(&pool, &ts, &refs, 1, 1, Money::ZERO);
        c.open(0, false, Cause::Pods, None);
        c.open(0, false, Cause::Pods, None);
        let (Pick::Blocked(r), _) = c.choose(|_| 1, 1, |_| None) else {
            panic!("blocked");
        };
        assert_eq!(r.code(), "max_nodes_per_tick");
    }

    #[test]
    fn warm_group_is_started_before_cheaper_cold_capacity() {
        let mut pool = pool_cfg("llm");
        pool.capacity.spot_share = crate::config::Share::ONE;
        let groups = [g5_spot().build(), g5_od().warm(2, 1).build()];
        let refs: Vec<_> = groups.iter().collect();
        let ts = templates(&pool, &refs, &History::default(), T0, &mut Vec::new());
        let mut c = Chooser::new(&pool, &ts, &refs, 0, 0, Money::ZERO);
        let (Pick::Open { tpl, warm }, _) = c.choose(|_| 1, 1, |_| None) else {
            panic!()
        };
        assert!(warm);
        assert_eq!(ts[tpl].group_ref.id.as_str(), "g5-od");
        c.open(tpl, warm, Cause::Pods, None);
        let (Pick::Open { tpl, warm }, _) = c.choose(|_| 1, 1, |_| None) else {
            panic!()
        };
        assert!(!warm, "only one warm instance was ready");
        assert_eq!(ts[tpl].capacity_type(), CapacityType::Spot);
    }

    #[test]
    fn busy_and_full_groups_are_skipped_with_a_reason() {
        let pool = pool_cfg("llm");
        let groups = [g5_od().busy().build()];
        let refs: Vec<_> = groups.iter().collect();
        let ts = templates(&pool, &refs, &History::default(), T0, &mut Vec::new());
        let c = Chooser::new(&pool, &ts, &refs, 0, 0, Money::ZERO);
        let (Pick::Blocked(r), _) = c.choose(|_| 1, 1, |_| None) else {
            panic!()
        };
        assert_eq!(r.code(), "activity_in_progress");
        let groups = [g5_od().max(0).build()];
        let refs: Vec<_> = groups.iter().collect();
        let ts = templates(&pool, &refs, &History::default(), T0, &mut Vec::new());
        let c = Chooser::new(&pool, &ts, &refs, 0, 0, Money::ZERO);
        let (Pick::Blocked(r), _) = c.choose(|_| 1, 1, |_| None) else {
            panic!()
        };
        assert_eq!(r.code(), "group_at_max_size");
    }

    #[test]
    fn cost_cap_counts_unknown_prices_conservatively() {
        let key = offering("g6.xlarge", CapacityType::OnDemand, "ap-east-2a", 1.0).key();
        let d = Money::from_dollars;
        let cost = |known: f64, unpriced: u32| Cost {
            known: d(known),
            unpriced,
        };
        // (cap, cost so far, next node's price, refusal expected)
        let cases = [
            (None, cost(0.0, 0), Price::Unknown, None),
            (None, cost(5.0, 3), Price::from_dollars(1.0), None),
            (
                Some(10.0),
                cost(0.0, 0),
                Price::Unknown,
                Some("price_unknown"),
            ),
            (
                Some(10.0),
                cost(1.0, 1),
                Price::from_dollars(1.0),
                Some("cost_unknown"),
            ),
            (
                Some(10.0),
                cost(1.0, 1),
                Price::Unknown,
                Some("price_unknown"),
            ),
            (Some(10.0), cost(8.0, 0), Price::from_dollars(2.0), None),
            (
                Some(10.0),
                cost(8.5, 0),
                Price::from_dollars(2.0),
                Some("at_max_cost"),
            ),
        ];
        for (cap, so_far, price, want) in cases {
            let got = cost_cap_block(cap.map(Money::from_dollars), so_far, price, &key);
            assert_eq!(
                got.as_ref().map(|r| r.code()),
                want,
                "{cap:?} {so_far:?} {price}"
            );
        }
        let mut c = Cost::default();
        c.add(Price::from_dollars(1.5));
        c.add(Price::Unknown);
        assert_eq!(
            c,
            cost(1.5, 1),
            "an unknown price is counted apart, not as $0"
        );
    }

    #[test]
    fn unknown_priced_offering_is_the_last_choice() {
        // (cheap offering unpriced?, cap, spot share, picked group, or the refusal)
        type Case<'a> = (bool, Option<f64>, f64, Result<&'a str, &'a str>);
        let cases: [Case<'_>; 5] = [
            (false, None, 0.0, Ok("cheap")),
            // Never the cheapest: the known, dearer offering wins.
            (true, None, 0.0, Ok("dear")),
            // Last choice also across capacity types: a known spot fallback comes before an
            // unknown-priced offering of the preferred (on-demand) type.
            (true, None, 0.0, Ok("dear")),
            // Unknown but the only one left (dear group full): used without a cap ...
            (true, None, 0.0, Ok("cheap")),
            // ... and refused under one.
            (true, Some(100.0), 0.0, Err("price_unknown")),
        ];
        for (i, (unpriced, cap, share, want)) in cases.into_iter().enumerate() {
            let mut pool = pool_cfg("llm");
            pool.capacity.spot_share = crate::config::Share::new(share).unwrap();
            pool.capacity.fallback = vec![CapacityType::Spot];
            pool.limits.max_cost_per_hour = cap.map(Money::from_dollars);
            let cheap = offering("g5.xlarge", CapacityType::OnDemand, "us-east-1a", 0.5);
            let cheap = if unpriced { cheap.unpriced() } else { cheap };
            let dear_ct = if i == 2 {
                CapacityType::Spot
            } else {
                CapacityType::OnDemand
            };
            let dear = offering("g5.xlarge", dear_ct, "us-east-1b", 2.0);
            let dear_max = if i >= 3 { 0 } else { 10 };
            let groups = [
                group("cheap", "llm").offering(cheap).build(),
                group("dear", "llm").offering(dear).max(dear_max).build(),
            ];
            let refs: Vec<_> = groups.iter().collect();
            let ts = templates(&pool, &refs, &History::default(), T0, &mut Vec::new());
            let c = Chooser::new(&pool, &ts, &refs, 0, 0, Money::ZERO);
            let got = match c.choose(|_| 1, 1, |_| None) {
                (Pick::Open { tpl, .. }, _) => Ok(ts[tpl].group_ref.id.as_str()),
                (Pick::Blocked(r), _) => Err(r.code()),
                (Pick::NoFit, _) => Err("no_fit"),
            };
            assert_eq!(got, want, "case {i}");
        }
    }
}
