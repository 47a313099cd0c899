//! Operator holds on a pool, applied to the plan: a paused pool (`paused: true`) is planned
//! but not acted on, and a pool's voluntary scale-down holds while `scale_down.enabled` is
//! false, while the cluster cache is relisting after a watch error, or while a signal is stale.

use crate::config::{Config, PoolConfig};
use crate::model::{CacheState, Decision, Outcome, Plan, PoolName, Reason, Snapshot, Subject};
use std::collections::BTreeSet;

/// Why the pool's voluntary scale-down (unneeded nodes, consolidation) holds this tick, if it
/// does. The operator's switch first, then the cluster cache, then stale signals: the first
/// reason an operator can act on is the one shown.
pub(super) fn scale_down(
    pool: &PoolConfig,
    stale: Vec<String>,
    cache: &CacheState,
) -> Option<Reason> {
    if !pool.scale_down.enabled {
        return Some(Reason::PoolScaleDownDisabled);
    }
    if let CacheState::Relisting { since, resources } = cache {
        return Some(Reason::CacheNotCurrent {
            since: *since,
            resources: resources.clone(),
        });
    }
    if !stale.is_empty() {
        return Some(Reason::DataStale { signals: stale });
    }
    None
}

/// Take every action of a paused pool out of the plan; the pool, and each pending pod a
/// removed launch was for, is `Held` with `Reason::Paused` instead.
pub(super) fn pause(config: &Config, snapshot: &Snapshot, plan: &mut Plan) {
    let paused: BTreeSet<&PoolName> = config
        .pools
        .iter()
        .filter(|p| p.paused)
        .map(|p| &p.name)
        .collect();
    if paused.is_empty() {
        return;
    }
    plan.actions.retain(|a| !paused.contains(a.pool()));
    let paused_group =
        |g: &crate::model::NodeGroupId| snapshot.group(g).is_some_and(|g| paused.contains(&g.pool));
    for d in &mut plan.decisions {
        let withheld = match (&d.subject, &d.reason) {
            (Subject::Pool(p), _) => paused.contains(p) && d.outcome == Outcome::Acted,
            (Subject::Pod(_), Reason::PlacedOnNewNode { group, .. }) => paused_group(group),
            _ => false,
        };
        if withheld {
            d.outcome = Outcome::Held;
            d.reason = Reason::Paused;
        }
    }
    for p in paused {
        let d = Decision {
            subject: Subject::Pool(p.clone()),
            outcome: Outcome::Held,
            reason: Reason::Paused,
        };
        if !plan.decisions.contains(&d) {
            plan.decisions.push(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Timestamp, WatchedResource};
    use crate::planner::fixtures::*;

    #[test]
    fn scale_down_holds_for_the_first_reason_an_operator_can_act_on() {
        let relisting = CacheState::Relisting {
            since: Timestamp::from_secs(5),
            resources: vec![WatchedResource::Pods],
        };
        let stale = || vec!["prometheus:queue".to_owned()];
        let mut off = pool_cfg("p");
        off.scale_down.enabled = false;
        let on = pool_cfg("p");
        type Case<'a> = (
            &'a str,
            &'a PoolConfig,
            Vec<String>,
            &'a CacheState,
            Option<&'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            ("all clear", &on, vec![], &CacheState::Current, None),
            (
                "disabled",
                &off,
                stale(),
                &relisting,
                Some("pool_scale_down_disabled"),
            ),
            (
                "relisting",
                &on,
                stale(),
                &relisting,
                Some("cache_not_current"),
            ),
            (
                "stale signal",
                &on,
                stale(),
                &CacheState::Current,
                Some("data_stale"),
            ),
        ];
        for (name, pool, stale, cache, want) in cases {
            let got = scale_down(pool, stale, cache);
            assert_eq!(got.as_ref().map(Reason::code), want, "{name}");
        }
    }

    #[test]
    fn a_paused_pool_keeps_its_decisions_and_loses_its_actions() {
        let mut paused = pool_cfg("llm");
        paused.paused = true;
        paused.limits.min_nodes = 2;
        let cfg = config(vec![paused]);
        let s: Snapshot = snapshot().group(g5_spot().desired(0)).build();
        let plan = crate::planner::plan(&s, &cfg, &Default::default(), s.taken_at);
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(
            plan.decisions
                .iter()
                .any(|d| d.subject == Subject::Pool("llm".into())
                    && d.outcome == Outcome::Held
                    && d.reason == Reason::Paused)
        );
        // The same pool unpaused launches its minimum: the hold is what removed it.
        let mut cfg = cfg;
        cfg.pools[0].paused = false;
        let plan = crate::planner::plan(&s, &cfg, &Default::default(), s.taken_at);
        assert!(!plan.actions.is_empty());
    }
}
