//! Signal-driven demand: replicas the signals (and forecast) want against the replicas the
//! pool's live nodes serve. Pods and signals describe the *same* capacity (the pending pods are
//! the replicas the signals asked for), so nodes opened for pods count as replica capacity
//! before signal nodes are added: the plan takes the max of the two needs, never the sum.

use super::capacity::{Cause, Chooser, Pick};
use super::eligible::Template;
use crate::config::PoolConfig;
use crate::model::{PoolDemand, Reason};

/// What the signals want.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Want {
    /// max(replicas_now + SLO headroom, forecast when enabled).
    pub replicas: u32,
    pub now: u32,
    /// max(replicas_now, forecast when enabled): demand without the standing headroom.
    pub forecast: u32,
    /// Whether the forecast is what sets `replicas`.
    pub by_forecast: bool,
    /// Spare running replicas the pool's `slo` asks for (0 without one).
    pub headroom: u32,
}

/// The replicas wanted from the pool's demand, plus `headroom` spare running replicas (the
/// SLO learner's, `planner::headroom`) on top of the demand now.
pub(crate) fn wanted(
    pool: &PoolConfig,
    demand: Option<&PoolDemand>,
    headroom: u32,
) -> Option<Want> {
    let d = demand?;
    let forecast = d.replicas_forecast.filter(|_| pool.forecast.enabled);
    if d.replicas_now.is_none() && forecast.is_none() {
        return None;
    }
    let now = d.replicas_now.unwrap_or(0);
    let fc = forecast.unwrap_or(0);
    let with_headroom = now.saturating_add(headroom);
    Some(Want {
        replicas: with_headroom.max(fc),
        now,
        forecast: now.max(fc),
        by_forecast: fc > with_headroom,
        headroom,
    })
}

/// The reason a signal-driven scale-up gives; `headroom` explains the SLO's spare replicas
/// when they are what sets the want.
pub(crate) fn reason(
    pool: &PoolConfig,
    want: Want,
    capacity_replicas: u32,
    headroom: Option<&crate::model::HeadroomExplain>,
) -> Reason {
    if let Some(h) = headroom
        && !want.by_forecast
        && want.headroom > 0
        && capacity_replicas >= want.now
    {
        return Reason::SloHeadroom(h.clone());
    }
    if want.by_forecast {
        Reason::Forecast {
            forecast_replicas: want.replicas,
            capacity_replicas,
            horizon_s: pool.forecast_horizon().as_secs(),
        }
    } else {
        Reason::SignalDemand {
            wanted_replicas: want.replicas,
            capacity_replicas,
        }
    }
}

/// Add nodes until `capacity_replicas` covers the want. Returns the reason growth stopped
/// early, if it did.
pub(crate) fn cover_replicas(
    want: Want,
    mut capacity_replicas: u32,
    tpls: &[Template<'_>],
    chooser: &mut Chooser<'_, '_>,
) -> Option<Reason> {
    let cause = if want.by_forecast {
        Cause::Forecast
    } else {
        Cause::Signal
    };
    while capacity_replicas < want.replicas {
        let missing = want.replicas - capacity_replicas;
        let (pick, fallback) = chooser.choose(
            |t| tpls[t].rpn,
            missing,
            |ct| super::capacity::best_unusable(tpls, ct, |t| tpls[t].rpn > 0),
        );
        match pick {
            Pick::Open { tpl, warm } => {
                chooser.open(tpl, warm, cause, fallback);
                capacity_replicas += tpls[tpl].rpn;
            }
            Pick::Blocked(r) => return Some(r),
            Pick::NoFit => {
                return Some(Reason::NoOfferingFits {
                    constraint: "no usable offering serves one replica (replica.gpus, cpu_milli, \
                                 memory_mib)"
                        .into(),
                });
            }
        }
    }
    None
}

/// Add nodes until the pool has `limits.min_nodes`.
pub(crate) fn cover_min_nodes(
    pool: &PoolConfig,
    tpls: &[Template<'_>],
    chooser: &mut Chooser<'_, '_>,
) -> Option<Reason> {
    while chooser.live_nodes + chooser.new_nodes < pool.limits.min_nodes {
        let (pick, fallback) = chooser.choose(
            |_| 1,
            1,
            |ct| super::capacity::best_unusable(tpls, ct, |_| true),
        );
        match pick {
            Pick::Open { tpl, warm } => chooser.open(tpl, warm, Cause::MinNodes, fallback),
            Pick::Blocked(r) => return Some(r),
            Pick::NoFit => {
                return Some(Reason::NoOfferingFits {
                    constraint: "the pool has no usable offering".into(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, History, Money};
    use crate::planner::eligible::templates;
    use crate::planner::fixtures::*;

    fn demand(now: Option<u32>, fc: Option<u32>) -> PoolDemand {
        PoolDemand {
            replicas_now: now,
            replicas_forecast: fc,
            readings: vec![],
            slo_attainment: None,
            request_duration: None,
        }
    }

    #[test]
    fn want_table() {
        let mut pool = pool_cfg("p");
        // (now, forecast, forecast enabled, SLO headroom, (replicas, by forecast))
        let cases = [
            (None, None, true, 0, None),
            (Some(3), None, true, 0, Some((3, false))),
            (Some(3), Some(5), true, 0, Some((5, true))),
            (Some(3), Some(5), false, 0, Some((3, false))),
            (Some(6), Some(5), true, 0, Some((6, false))),
            (None, Some(2), true, 0, Some((2, true))),
            (Some(3), Some(5), true, 4, Some((7, false))),
            (Some(3), Some(9), true, 4, Some((9, true))),
            (None, None, true, 4, None),
        ];
        for (now, fc, enabled, hr, want) in cases {
            pool.forecast.enabled = enabled;
            let got =
                wanted(&pool, Some(&demand(now, fc)), hr).map(|w| (w.replicas, w.by_forecast));
            assert_eq!(got, want, "{now:?} {fc:?} {enabled} {hr}");
        }
        assert_eq!(wanted(&pool, None, 0), None);
    }

    #[test]
    fn replicas_round_up_to_whole_nodes() {
        let mut pool = pool_cfg("llm");
        pool.replica.gpus = 2;
        let groups = [group("g", "llm")
            .offering(offering(
                "g5.12xlarge",
                CapacityType::OnDemand,
                "us-east-1a",
                5.672,
            ))
            .build()];
        let refs: Vec<_> = groups.iter().collect();
        let tpl_pool = pool.clone();
        let ts = templates(&tpl_pool, &refs, &History::default(), T0, &mut Vec::new());
        assert_eq!(ts[0].rpn, 2);
        let mut c = Chooser::new(&pool, &ts, &refs, 1, 1, Money::ZERO);
        let want = Want {
            replicas: 7,
            now: 7,
            forecast: 7,
            by_forecast: false,
            headroom: 0,
        };
        // One live node serves 2; 5 more replicas need ceil(5/2) = 3 nodes.
        assert_eq!(cover_replicas(want, 2, &ts, &mut c), None);
        assert_eq!(c.new_nodes, 3);
        pool.limits.max_nodes = 2;
        let mut c = Chooser::new(&pool, &ts, &refs, 1, 1, Money::ZERO);
        let r = cover_replicas(want, 2, &ts, &mut c).unwrap();
        assert_eq!(r.code(), "at_max_nodes");
        assert_eq!(c.new_nodes, 1);
    }
}
