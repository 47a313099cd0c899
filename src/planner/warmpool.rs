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
use crate::model::{Action, History, NodeGroup, NodeGroupId, Reason, Timestamp};

/// Target warm size for one group whose warm instances serve `rpn` replicas each.
pub(crate) fn target(pool: &PoolConfig, want: Option<Want>, rpn: u32) -> (u32, u32) {
    let w = &pool.warm_pool;
    let (forecast, growth) = match want {
        Some(want) => (want.replicas, want.replicas.saturating_sub(want.now)),
        None => (0, 0),
    };
    let nodes = growth.div_ceil(rpn.max(1));
    (forecast, (nodes + w.min).clamp(w.min, w.max))
}

/// `SetWarmPool` for each warm group of the pool whose target changes, and the groups whose
/// warm pool is wanted at (at least) its current size (for `History::warm_needed_at`).
/// `rpn_of(group)` gives the replicas one of its warm instances serves.
pub(crate) fn size(
    pool: &PoolConfig,
    groups: &[&NodeGroup],
    want: Option<Want>,
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
        let (forecast, t) = target(pool, want, rpn_of(gi));
        if t >= wp.target_size {
            needed.push(g.id.clone());
        } else {
            let hold = history
                .warm_needed_at
                .get(&g.id)
                .is_some_and(|at| now.secs_since(*at) < pool.disruption.unneeded_time_s as f64);
            if hold {
                continue;
            }
        }
        if t != wp.target_size {
            out.push(Action::SetWarmPool {
                pool: pool.name.clone(),
                group: g.id.clone(),
                size: t,
                reason: Reason::WarmPoolSizing {
                    forecast_replicas: forecast,
                    target: t,
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
        pool.warm_pool.max = 4;
        let want = |now, fc: u32| {
            Some(Want {
                replicas: fc.max(now),
                now,
                by_forecast: fc > now,
            })
        };
        // (want, rpn, target)
        let cases = [
            (None, 1, 1),
            (want(5, 5), 1, 1),
            (want(5, 7), 1, 3),
            (want(5, 7), 8, 2),
            (want(0, 40), 1, 4),
            (want(9, 3), 1, 1),
        ];
        for (w, rpn, t) in cases {
            assert_eq!(target(&pool, w, rpn).1, t, "{w:?} {rpn}");
        }
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
        let (acts, needed) = size(&pool, &[&same, &other, &no_warm], None, |_| 1, &h, t);
        assert_eq!(acts.len(), 1);
        assert_eq!(acts[0].group().as_str(), "g2");
        assert_eq!(
            needed,
            vec![same.id.clone()],
            "g2 is wanted smaller than it is"
        );
        pool.warm_pool.enabled = false;
        assert!(size(&pool, &[&other], None, |_| 1, &h, t).0.is_empty());
    }

    #[test]
    fn grows_at_once_and_shrinks_after_the_unneeded_time() {
        let mut pool = pool_cfg("llm");
        pool.warm_pool.enabled = true;
        pool.warm_pool.min = 1;
        pool.warm_pool.max = 8;
        pool.disruption.unneeded_time_s = 300;
        let g = group("g", "llm").warm(3, 3).build();
        let t0 = Timestamp::from_secs(10_000);
        let mut h = History::default();
        h.warm_needed_at.insert(g.id.clone(), t0);
        let growth = |n: u32| {
            Some(Want {
                replicas: 2 + n,
                now: 2,
                by_forecast: n > 0,
            })
        };
        // Growth of 4 → target 5: raised at once, whatever the clock says.
        let (acts, needed) = size(&pool, &[&g], growth(4), |_| 1, &h, t0.plus_secs(1.0));
        assert!(
            matches!(acts[..], [Action::SetWarmPool { size: 5, .. }]),
            "{acts:?}"
        );
        assert_eq!(needed, vec![g.id.clone()]);
        // No growth → target 1, but the pool was wanted at 3 within 300 s: held.
        let (acts, needed) = size(&pool, &[&g], growth(0), |_| 1, &h, t0.plus_secs(299.0));
        assert!(acts.is_empty() && needed.is_empty(), "{acts:?}");
        // 300 s after it was last wanted: shrunk.
        let (acts, _) = size(&pool, &[&g], growth(0), |_| 1, &h, t0.plus_secs(300.0));
        assert!(
            matches!(acts[..], [Action::SetWarmPool { size: 1, .. }]),
            "{acts:?}"
        );
    }
}
