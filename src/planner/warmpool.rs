//! Warm-pool sizing: keep the growth expected over the cold-start horizon warm.
//!
//! target = clamp(ceil(max(0, forecast − now) / replicas per node) + min, min, max). A warm
//! instance starts in seconds, so growth the forecast sees coming is served without waiting a
//! cold start; `min` is the floor kept for surprises.

use super::demand::Want;
use crate::config::PoolConfig;
use crate::model::{Action, NodeGroup, Reason};

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

/// `SetWarmPool` for each warm group of the pool whose target changes. `rpn_of(group)` gives
/// the replicas one of its warm instances serves.
pub(crate) fn size(
    pool: &PoolConfig,
    groups: &[&NodeGroup],
    want: Option<Want>,
    rpn_of: impl Fn(usize) -> u32,
) -> Vec<Action> {
    if !pool.warm_pool.enabled {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let Some(wp) = &g.warm_pool else { continue };
        let (forecast, t) = target(pool, want, rpn_of(gi));
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
    out
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
        let acts = size(&pool, &[&same, &other, &no_warm], None, |_| 1);
        assert_eq!(acts.len(), 1);
        assert_eq!(acts[0].group().as_str(), "g2");
        pool.warm_pool.enabled = false;
        assert!(size(&pool, &[&other], None, |_| 1).is_empty());
    }
}
