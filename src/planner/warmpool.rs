//! Warm-pool sizing: keep the growth expected over the cold-start horizon warm.
//!
//! target = clamp(ceil(max(0, forecast − now) / replicas per node) + min, min, max). A warm
//! instance starts in seconds, so growth the forecast sees coming is served without waiting a
//! cold start; `min` is the floor kept for surprises.
//!
//! A warm pool grows at once but shrinks only once its target has stayed lower for the pool's
//! `disruption.unneeded_time_s`: growing it launches instances that run (and are billed) while
//! they warm the cache, so following a flickering forecast down and up again wastes a cold
//! start each time (in the simulator, s1-bursty: 40 resizes in an hour without this).

use super::demand::Want;
use crate::config::PoolConfig;
use crate::model::{Action, HeadroomExplain, History, NodeGroup, NodeGroupId, Reason, Timestamp};

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
    let max = w
        .max_for(pool.slo.is_some(), pool.limits.max_nodes)
        .max(w.min);
    let t = match slo_warm {
        Some(hr) => nodes.max(hr.div_ceil(rpn)).max(w.min),
        None => nodes + w.min,
    };
    (forecast, t.clamp(w.min, max))
}

/// `SetWarmPool` for each warm group of the pool whose target changes, and the groups whose
/// warm pool is wanted at (at least) its current size (for `History::warm_needed_at`).
/// `rpn_of(group)` gives the replicas one of its warm instances serves.
#[allow(clippy::too_many_arguments)]
pub(crate) fn size(
    pool: &PoolConfig,
    groups: &[&NodeGroup],
    want: Option<Want>,
    slo_warm: Option<&HeadroomExplain>,
    rpn_of: impl Fn(usize) -> u32,
    history: &History,
    now: Timestamp,
) -> (Vec<Action>, Vec<NodeGroupId>) {
    let mut out = Vec::new();
    let mut needed = Vec::new();
    if !pool.warm_pool.enabled {
        return (out, needed);
    }
    for (gi, g) in groups.iter().enumerate() {
        let Some(wp) = &g.warm_pool else { continue };
        let rpn = rpn_of(gi);
        let (forecast, t) = target(pool, want, rpn, slo_warm.map(|h| h.replicas));
        if t >= wp.target_size {
            needed.push(g.id.clone());
        } else {
            let hold = history
                .warm_needed_at
                .get(&g.id)
                .is_some_and(|at| now.secs_since(*at) < pool.unneeded_time().as_secs_f64());
            if hold {
                continue;
            }
        }
        if t != wp.target_size {
            out.push(Action::SetWarmPool {
                pool: pool.name.clone(),
                group: g.id.clone(),
                size: t,
                reason: match slo_warm {
                    // The learnt warm headroom sets the size (not the forecast growth).
                    Some(h) if h.replicas.div_ceil(rpn.max(1)) >= t && t > pool.warm_pool.min => {
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
    (out, needed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::fixtures::*;

    #[test]
    fn target_table() {
        let mut pool = pool_cfg("p");
        pool.warm_pool.enabled = true;
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
        pool.warm_pool.enabled = true;
        pool.warm_pool.min = 1;
        let same = g5_od().warm(1, 1).build();
        let other = group("g2", "llm").warm(3, 0).build();
        let no_warm = g5_spot().build();
        let h = History::default();
        let t = Timestamp::from_secs(1000);
        let (acts, needed) = size(&pool, &[&same, &other, &no_warm], None, None, |_| 1, &h, t);
        assert_eq!(acts.len(), 1);
        assert_eq!(acts[0].group().as_str(), "g2");
        assert_eq!(
            needed,
            vec![same.id.clone()],
            "g2 is wanted smaller than it is"
        );
        pool.warm_pool.enabled = false;
        assert!(
            size(&pool, &[&other], None, None, |_| 1, &h, t)
                .0
                .is_empty()
        );
    }

    #[test]
    fn grows_at_once_and_shrinks_after_the_unneeded_time() {
        let mut pool = pool_cfg("llm");
        pool.warm_pool.enabled = true;
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
        let (acts, needed) = size(&pool, &[&g], growth(4), None, |_| 1, &h, t0.plus_secs(1.0));
        assert!(
            matches!(acts[..], [Action::SetWarmPool { size: 5, .. }]),
            "{acts:?}"
        );
        assert_eq!(needed, vec![g.id.clone()]);
        // No growth → target 1, but the pool was wanted at 3 within 300 s: held.
        let (acts, needed) = size(
            &pool,
            &[&g],
            growth(0),
            None,
            |_| 1,
            &h,
            t0.plus_secs(299.0),
        );
        assert!(acts.is_empty() && needed.is_empty(), "{acts:?}");
        // 300 s after it was last wanted: shrunk.
        let (acts, _) = size(
            &pool,
            &[&g],
            growth(0),
            None,
            |_| 1,
            &h,
            t0.plus_secs(300.0),
        );
        assert!(
            matches!(acts[..], [Action::SetWarmPool { size: 1, .. }]),
            "{acts:?}"
        );
    }
}
