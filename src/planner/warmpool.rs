//! Warm-pool sizing: keep the growth expected over the cold-start horizon warm.
//!
//! target = clamp(ceil(max(0, forecast − now) / replicas per node) + min, min, max). A warm
//! instance starts in seconds, so growth the forecast sees coming is served without waiting a
//! cold start; `min` is the floor kept for surprises.
//!
//! **Spot standby.** A spot reclaim comes with a notice (AWS 120 s, GCP 30 s) shorter than a
//! GPU node's cold start (minutes: image pull and model load), so a replacement launched cold
//! at the notice serves only after the reclaimed node is gone, and the requests it served wait
//! for the gap. A warm instance starts in seconds. So a pool that runs spot capacity and can
//! keep a warm pool also holds, warm, as many instances as its running spot capacity: a
//! stopped instance costs its disk only. All of it, not a share: reclaims are correlated — in
//! SkyPilot's 16-node V100 availability trace (us-west-2, 2023-08-27,
//! `data/spot/skypilot_aws_availability_2023-08-27_v100_16node_us-west-2.csv`) both zones
//! drop to 0–1 nodes at once — so one event can take the whole spot share. Not held when the
//! cold start is no longer than the cloud's notice (a cold replacement is in time). The warm
//! pool holds the larger of the standby and the growth it keeps for the SLO or the forecast,
//! not their sum: either a reclaim or a surge draws on it, and both within one cold start is
//! a joint tail the SLO's miss budget is for (the running spare still covers the first
//! seconds of growth). Measured on s2-spot, seeds 42 / 1 / 7: the sum cost $27.1 / 27.4 /
//! 25.9, the larger $24.2 / 23.1 / 22.9, at the same 99.7–99.9 % SLO; on the held-out
//! `benches/validation/code-spot.yaml` the two are within noise (SLO 88.0–89.7 %, cost
//! $13.96–15.12 against $14.75–14.96). Only spot instances
//! the cloud lists count: a launch it accepted and did not deliver (a late stockout) holds no
//! standby — counting those, every retry of spot during s2-spot's 20-minute outage warmed
//! instances for capacity that never came ($24.2 → $22.3 at seed 42 without them).
//!
//! A warm pool grows at once but shrinks only once its target has stayed lower for a while
//! ([`shrink_hold`]): growing it launches instances that run (and are billed) while they warm
//! the cache, so following a flickering forecast down and up again wastes a cold start each
//! time (in the simulator, s1-bursty: 40 resizes in an hour without a hold). How long is the
//! ski-rental break-even of a warm instance: keeping an unneeded one costs its disks an hour,
//! re-creating one costs a warm-up at the instance's price.

use super::demand::Want;
use crate::config::PoolConfig;
use crate::model::{
    Action, Decision, HeadroomExplain, History, NodeGroup, NodeGroupId, Outcome, Price, Reason,
    Subject, Timestamp,
};
use std::time::Duration;

/// How long a group's warm-pool target is held after it was last wanted at that size. An
/// unneeded warm instance costs `standing` an hour (its disks; the pool's
/// `warm_pool.standing_cost_per_hour` when set, else what the provider reports); re-creating
/// one costs a warm-up: `price` for the cold start. Keeping it until it has cost what a warm-up
/// costs is the ski-rental break-even (never more than twice the hindsight optimum, Karlin et
/// al. 1988 — the rule the pool's unneeded time follows for running nodes). At least the
/// pool's `unneeded_time_s`, at most the SLO learner's half-life (`headroom::HALF_LIFE_S`:
/// growth older than that weighs under half). Either price unknown: the unneeded time, as
/// before — unknown is not cheap.
pub(crate) fn shrink_hold(pool: &PoolConfig, price: Price, standing: Price) -> Duration {
    let floor = pool.unneeded_time();
    let standing = pool
        .warm_pool
        .standing_cost_per_hour
        .map_or(standing, Price::from_dollars);
    let (Some(p), Some(s)) = (price.known(), standing.known()) else {
        return floor;
    };
    let cap = super::headroom::HALF_LIFE_S;
    let warm_up = p.dollars() * pool.scale_up.cold_start.as_secs_f64() / 3600.0;
    let break_even_s = if s.dollars() > 0.0 {
        (warm_up / s.dollars() * 3600.0).min(cap)
    } else {
        cap
    };
    floor.max(Duration::from_secs_f64(break_even_s))
}

/// Spot capacity a reclaim can take before a cold replacement serves: held warm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Standby {
    /// The pool's live spot replicas.
    pub spot_replicas: u32,
    /// The cloud's interruption notice, seconds; `None`: not stated (the simulated cloud).
    pub notice_s: Option<u64>,
    pub cold_start_s: u64,
}

/// The spot standby a pool holds warm (see the module documentation), `None` when it holds
/// none: no warm pool, no spot capacity running, or a cold start no longer than the notice.
pub(crate) fn spot_standby(
    pool: &PoolConfig,
    notice: Option<Duration>,
    live_spot_replicas: u32,
) -> Option<Standby> {
    let cold = pool.scale_up.cold_start;
    let in_time = notice.is_some_and(|n| cold <= n);
    (pool.warm_pool.on() && live_spot_replicas > 0 && !in_time).then(|| Standby {
        spot_replicas: live_spot_replicas,
        notice_s: notice.map(|n| n.as_secs()),
        cold_start_s: cold.as_secs(),
    })
}

/// The largest warm pool the pool keeps (`warm_pool.max` in effect, at least `min`).
fn ceiling(pool: &PoolConfig) -> u32 {
    let w = &pool.warm_pool;
    w.max_for(pool.slo.is_some(), pool.limits.max_nodes)
        .max(w.min)
}

/// Target warm size for one group whose warm instances serve `rpn` replicas each. With an
/// `slo`, `slo_warm` replicas (the learner's warm headroom, `planner::headroom`) replace the
/// `min` cushion when larger; the forecast growth still counts.
pub(crate) fn target(
    pool: &PoolConfig,
    want: Option<Want>,
    rpn: u32,
    slo_warm: Option<u32>,
) -> (u32, u32) {
    let w = &pool.warm_pool;
    let (forecast, growth) = match want {
        Some(want) => (want.forecast, want.forecast.saturating_sub(want.now)),
        None => (0, 0),
    };
    let rpn = rpn.max(1);
    let nodes = growth.div_ceil(rpn);
    let max = ceiling(pool);
    let t = match slo_warm {
        Some(hr) => nodes.max(hr.div_ceil(rpn)).max(w.min),
        None => nodes + w.min,
    };
    (forecast, t.clamp(w.min, max))
}

/// What [`size`] decided for a pool's warm groups.
#[derive(Debug, Default)]
pub(crate) struct Sizing {
    /// `SetWarmPool` for each warm group whose target changes.
    pub actions: Vec<Action>,
    /// The groups whose warm pool is wanted at (at least) its current size (for
    /// `History::warm_needed_at`).
    pub needed: Vec<NodeGroupId>,
    /// Groups wanted smaller but held at their size by [`shrink_hold`], and for how long.
    pub held: Vec<Decision>,
}

/// Size each warm group of the pool. `rpn_of(group)` gives the replicas one of its warm
/// instances serves, `price_of(group)` what one costs an hour running.
#[allow(clippy::too_many_arguments)]
pub(crate) fn size(
    pool: &PoolConfig,
    groups: &[&NodeGroup],
    want: Option<Want>,
    slo_warm: Option<&HeadroomExplain>,
    standby: Option<Standby>,
    rpn_of: impl Fn(usize) -> u32,
    price_of: impl Fn(usize) -> Price,
    history: &History,
    now: Timestamp,
) -> Sizing {
    let mut s = Sizing::default();
    if !pool.warm_pool.on() {
        return s;
    }
    for (gi, g) in groups.iter().enumerate() {
        let Some(wp) = &g.warm_pool else { continue };
        let rpn = rpn_of(gi);
        let (forecast, growth) = target(pool, want, rpn, slo_warm.map(|h| h.replicas));
        let spare = standby.map_or(0, |s| s.spot_replicas.div_ceil(rpn.max(1)));
        let t = growth.max(spare).min(ceiling(pool).max(growth));
        if t >= wp.target_size {
            s.needed.push(g.id.clone());
        } else {
            let hold_s = shrink_hold(pool, price_of(gi), wp.standing_cost_per_hour).as_secs_f64();
            let since = history
                .warm_needed_at
                .get(&g.id)
                .map(|at| now.secs_since(*at).max(0.0));
            if let Some(since) = since.filter(|s| *s < hold_s) {
                s.held.push(Decision {
                    subject: Subject::Group(g.id.clone()),
                    outcome: Outcome::Held,
                    reason: Reason::WarmPoolHeld {
                        size: wp.target_size,
                        wanted: t,
                        unneeded_for_s: since as u64,
                        hold_s: hold_s.ceil() as u64,
                    },
                });
                continue;
            }
        }
        if t != wp.target_size {
            s.actions.push(Action::SetWarmPool {
                pool: pool.name.clone(),
                group: g.id.clone(),
                size: t,
                reason: match (slo_warm, standby) {
                    (_, Some(s)) if spare > 0 && spare >= growth => Reason::SpotStandby {
                        spot_replicas: s.spot_replicas,
                        notice_s: s.notice_s,
                        cold_start_s: s.cold_start_s,
                        growth: growth.min(t),
                        target: t,
                    },
                    // The learnt warm headroom sets the size (not the forecast growth).
                    (Some(h), _)
                        if h.replicas.div_ceil(rpn.max(1)) >= t && t > pool.warm_pool.min =>
                    {
                        Reason::SloHeadroom(h.clone())
                    }
                    _ => Reason::WarmPoolSizing {
                        forecast_replicas: forecast,
                        target: t,
                    },
                },
            });
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::fixtures::*;

    /// [`size`] with one replica per warm instance, instances at `price`, no SLO headroom.
    fn sized(
        pool: &PoolConfig,
        groups: &[&NodeGroup],
        want: Option<Want>,
        standby: Option<Standby>,
        price: Price,
        h: &History,
        now: Timestamp,
    ) -> (Vec<Action>, Vec<NodeGroupId>) {
        let s = size(pool, groups, want, None, standby, |_| 1, |_| price, h, now);
        (s.actions, s.needed)
    }

    #[test]
    fn target_table() {
        let mut pool = pool_cfg("p");
        pool.warm_pool.enabled = Some(true);
        pool.warm_pool.min = 1;
        pool.warm_pool.max = Some(4);
        let want = |now, fc: u32| {
            Some(Want {
                replicas: fc.max(now),
                now,
                forecast: fc.max(now),
                by_forecast: fc > now,
                headroom: 0,
            })
        };
        // (want, rpn, SLO warm headroom, target)
        let cases = [
            (None, 1, None, 1),
            (want(5, 5), 1, None, 1),
            (want(5, 7), 1, None, 3),
            (want(5, 7), 8, None, 2),
            (want(0, 40), 1, None, 4),
            (want(9, 3), 1, None, 1),
            // With an SLO the learnt headroom replaces the `min` cushion …
            (want(5, 5), 1, Some(3), 3),
            (want(5, 7), 1, Some(1), 2),
            (want(5, 5), 2, Some(3), 2),
            (want(5, 5), 1, Some(0), 1),
            // … within `max` when one is set.
            (want(5, 5), 1, Some(9), 4),
        ];
        for (w, rpn, hr, t) in cases {
            assert_eq!(target(&pool, w, rpn, hr).1, t, "{w:?} {rpn} {hr:?}");
        }
        // With an SLO and no `max`, the pool's max_nodes bounds it.
        pool.warm_pool.max = None;
        pool.slo = Some(crate::config::SloPolicy {
            queue_wait_s: 1.0,
            attainment: 0.99,
            attainment_query: None,
        });
        pool.limits.max_nodes = 12;
        assert_eq!(target(&pool, want(5, 5), 1, Some(9)).1, 9);
        assert_eq!(target(&pool, want(5, 5), 1, Some(30)).1, 12);
    }

    #[test]
    fn only_changed_targets_are_emitted() {
        let mut pool = pool_cfg("llm");
        pool.warm_pool.enabled = Some(true);
        pool.warm_pool.min = 1;
        let same = g5_od().warm(1, 1).build();
        let other = group("g2", "llm").warm(3, 0).build();
        let no_warm = g5_spot().build();
        let h = History::default();
        let t = Timestamp::from_secs(1000);
        let (acts, needed) = sized(
            &pool,
            &[&same, &other, &no_warm],
            None,
            None,
            Price::Unknown,
            &h,
            t,
        );
        assert_eq!(acts.len(), 1);
        assert_eq!(acts[0].group().as_str(), "g2");
        assert_eq!(
            needed,
            vec![same.id.clone()],
            "g2 is wanted smaller than it is"
        );
        pool.warm_pool.enabled = Some(false);
        assert!(
            sized(&pool, &[&other], None, None, Price::Unknown, &h, t)
                .0
                .is_empty()
        );
    }

    #[test]
    fn grows_at_once_and_shrinks_after_the_unneeded_time() {
        let mut pool = pool_cfg("llm");
        pool.warm_pool.enabled = Some(true);
        pool.warm_pool.min = 1;
        pool.warm_pool.max = Some(8);
        pool.disruption.unneeded_time = Some(std::time::Duration::from_secs(300));
        let g = group("g", "llm").warm(3, 3).build();
        let t0 = Timestamp::from_secs(10_000);
        let mut h = History::default();
        h.warm_needed_at.insert(g.id.clone(), t0);
        let growth = |n: u32| {
            Some(Want {
                replicas: 2 + n,
                now: 2,
                forecast: 2 + n,
                by_forecast: n > 0,
                headroom: 0,
            })
        };
        // Growth of 4 → target 5: raised at once, whatever the clock says.
        let (acts, needed) = sized(
            &pool,
            &[&g],
            growth(4),
            None,
            Price::Unknown,
            &h,
            t0.plus_secs(1.0),
        );
        assert!(
            matches!(acts[..], [Action::SetWarmPool { size: 5, .. }]),
            "{acts:?}"
        );
        assert_eq!(needed, vec![g.id.clone()]);
        // No growth → target 1, but the pool was wanted at 3 within 300 s: held.
        let (acts, needed) = sized(
            &pool,
            &[&g],
            growth(0),
            None,
            Price::Unknown,
            &h,
            t0.plus_secs(299.0),
        );
        assert!(acts.is_empty() && needed.is_empty(), "{acts:?}");
        // 300 s after it was last wanted: shrunk.
        let (acts, _) = sized(
            &pool,
            &[&g],
            growth(0),
            None,
            Price::Unknown,
            &h,
            t0.plus_secs(300.0),
        );
        assert!(
            matches!(acts[..], [Action::SetWarmPool { size: 1, .. }]),
            "{acts:?}"
        );
    }

    #[test]
    fn spot_standby_table() {
        let mut pool = pool_cfg("llm");
        pool.scale_up.cold_start = Duration::from_secs(150);
        let aws = Some(Duration::from_secs(120));
        let long_notice = Some(Duration::from_secs(150));
        // (warm pool on, live spot replicas, notice, standby held)
        let cases = [
            (true, 9, aws, Some(9)),
            // The simulated cloud states no notice: held.
            (true, 9, None, Some(9)),
            // A cold replacement launched at the notice is in time.
            (true, 9, long_notice, None),
            (true, 0, aws, None),
            (false, 9, aws, None),
        ];
        for (on, spot, notice, held) in cases {
            pool.warm_pool.enabled = Some(on);
            let got = spot_standby(&pool, notice, spot).map(|s| s.spot_replicas);
            assert_eq!(got, held, "{on} {spot} {notice:?}");
        }
    }

    #[test]
    fn spot_standby_sets_the_warm_target_when_larger_and_says_so() {
        let mut pool = pool_cfg("llm");
        pool.warm_pool.enabled = Some(true);
        pool.warm_pool.min = 1;
        pool.warm_pool.max = Some(6);
        let g = g5_od().warm(1, 1).build();
        let h = History::default();
        let t = Timestamp::from_secs(1000);
        let standby = Some(Standby {
            spot_replicas: 4,
            notice_s: Some(120),
            cold_start_s: 150,
        });
        // The larger of min 1 for growth and 4 for the spot capacity; two replicas per warm
        // instance halve the standby.
        for (rpn, want) in [(1, 4), (2, 2)] {
            let acts = size(
                &pool,
                &[&g],
                None,
                None,
                standby,
                |_| rpn,
                |_| Price::Unknown,
                &h,
                t,
            )
            .actions;
            let [
                Action::SetWarmPool {
                    size: got, reason, ..
                },
            ] = &acts[..]
            else {
                panic!("{acts:?}");
            };
            assert_eq!(*got, want);
            assert_eq!(reason.code(), "spot_standby");
            let text = reason.to_string();
            assert!(
                text.contains("4 spot replica(s)") && text.contains("120-s notice"),
                "{text}"
            );
        }
        // Within `warm_pool.max`.
        let standby = standby.map(|s| Standby {
            spot_replicas: 30,
            ..s
        });
        let (acts, _) = sized(&pool, &[&g], None, standby, Price::Unknown, &h, t);
        assert!(
            matches!(acts[..], [Action::SetWarmPool { size: 6, .. }]),
            "{acts:?}"
        );
    }

    #[test]
    fn shrink_hold_table() {
        let mut pool = pool_cfg("llm");
        pool.scale_up.cold_start = Duration::from_secs(180);
        pool.disruption.unneeded_time = Some(Duration::from_secs(180));
        let p = Price::from_dollars;
        // (instance $/h, standing $/h from the provider, config override, hold s)
        let cases = [
            // $1.20/h × 180 s = $0.06 a warm-up; $0.03/h of disks: 2 h to break even.
            (p(1.2), p(0.03), None, 7200.0),
            // The pool's figure wins over the provider's.
            (p(1.2), p(0.03), Some(0.06), 3600.0),
            (p(1.2), Price::Unknown, Some(0.06), 3600.0),
            // Never under the unneeded time, never over the learner's half-life.
            (p(1.2), p(100.0), None, 180.0),
            (p(1.2), p(0.0001), None, super::super::headroom::HALF_LIFE_S),
            (p(1.2), p(0.0), None, super::super::headroom::HALF_LIFE_S),
            // Unknown is not cheap: the unneeded time.
            (Price::Unknown, p(0.03), None, 180.0),
            (p(1.2), Price::Unknown, None, 180.0),
        ];
        for (price, standing, cfg, hold) in cases {
            pool.warm_pool.standing_cost_per_hour = cfg;
            let got = shrink_hold(&pool, price, standing).as_secs_f64();
            assert!(
                (got - hold).abs() < 1e-6,
                "{price} {standing} {cfg:?}: {got}"
            );
        }
    }

    #[test]
    fn a_priced_warm_pool_shrinks_at_the_break_even() {
        let mut pool = pool_cfg("llm");
        pool.warm_pool.enabled = Some(true);
        pool.scale_up.cold_start = Duration::from_secs(180);
        pool.disruption.unneeded_time = Some(Duration::from_secs(180));
        let mut g = g5_od().warm(3, 3).build();
        if let Some(w) = g.warm_pool.as_mut() {
            w.standing_cost_per_hour = Price::from_dollars(0.03);
        }
        let t0 = Timestamp::from_secs(10_000);
        let mut h = History::default();
        h.warm_needed_at.insert(g.id.clone(), t0);
        let at = |s: f64| {
            size(
                &pool,
                &[&g],
                None,
                None,
                None,
                |_| 1,
                |_| Price::from_dollars(1.2),
                &h,
                t0.plus_secs(s),
            )
        };
        // Past the unneeded time, short of the 2-h break-even: held, and said so.
        for s in [181.0, 7199.0] {
            let sizing = at(s);
            assert!(sizing.actions.is_empty());
            let [d] = &sizing.held[..] else {
                panic!("{:?}", sizing.held);
            };
            assert_eq!(d.outcome, Outcome::Held);
            assert_eq!(d.reason.code(), "warm_pool_held");
            let text = d.reason.to_string();
            assert!(
                text.contains("held at 3 (0 wanted)") && text.contains("of the 7200 s"),
                "{text}"
            );
        }
        let sizing = at(7200.0);
        assert!(sizing.held.is_empty());
        assert!(matches!(
            sizing.actions[..],
            [Action::SetWarmPool { size: 0, .. }]
        ));
    }
}
