//! Serving readiness: an instance the cloud calls running serves only once its node is
//! serving-ready (GPUs allocatable, model cache warm, health URL answering). Until then it is
//! in flight — counted once, neither as capacity nor as missing — from the moment the
//! controller first saw it not serving. Past the pool's `max_provision_time_s` a node that
//! exists is unhealthy (the planner drains and replaces it); an instance with no node at all
//! stays in flight and the planner's stuck-launch rule replaces it.

use crate::model::{LifecycleState, Timestamp};
use std::time::Duration;

/// What the cluster shows of an instance's node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSeen {
    pub serving_ready: bool,
    /// Already marked unhealthy for another cause.
    pub unhealthy: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Readiness {
    /// Not this rule's to judge: the cloud does not call the instance running, or its node
    /// serves, or it is already unhealthy for another cause.
    Settled,
    /// Running but not serving since `since`: in flight, as a launch of that time.
    InFlight { since: Timestamp },
    /// Its node has not become serving-ready `waited_s` after `since`, past the max
    /// provision time: unhealthy.
    TimedOut { since: Timestamp, waited_s: u64 },
}

/// The readiness of one instance at `now`; `not_serving_since` is when the controller first
/// saw it running and not serving (`None`: not before this tick).
pub fn readiness(
    state: LifecycleState,
    node: Option<NodeSeen>,
    not_serving_since: Option<Timestamp>,
    max_provision_time: Duration,
    now: Timestamp,
) -> Readiness {
    if state != LifecycleState::Ready {
        return Readiness::Settled;
    }
    if node.is_some_and(|n| n.serving_ready || n.unhealthy) {
        return Readiness::Settled;
    }
    let since = not_serving_since.unwrap_or(now);
    let waited = now.secs_since(since);
    if node.is_some() && waited > max_provision_time.as_secs_f64() {
        Readiness::TimedOut {
            since,
            waited_s: waited as u64,
        }
    } else {
        Readiness::InFlight { since }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleState::*;

    const SERVING: NodeSeen = NodeSeen {
        serving_ready: true,
        unhealthy: false,
    };
    const NOT_SERVING: NodeSeen = NodeSeen {
        serving_ready: false,
        unhealthy: false,
    };
    const UNHEALTHY: NodeSeen = NodeSeen {
        serving_ready: false,
        unhealthy: true,
    };

    /// name, cloud state, node, not serving since (s), now (s), expected.
    type Case = (
        &'static str,
        LifecycleState,
        Option<NodeSeen>,
        Option<i64>,
        i64,
        Readiness,
    );

    #[test]
    fn a_running_instance_is_in_flight_until_it_serves_and_unhealthy_past_the_max() {
        let t = Timestamp::from_secs;
        let max = Duration::from_secs(600);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("not running yet", Launching, None, None, 100, Readiness::Settled),
            ("draining is not judged", Draining, Some(NOT_SERVING), Some(0), 5000, Readiness::Settled),
            ("serves", Ready, Some(SERVING), Some(0), 5000, Readiness::Settled),
            ("unhealthy for another cause", Ready, Some(UNHEALTHY), Some(0), 5000, Readiness::Settled),
            ("first seen not serving: in flight from now", Ready, Some(NOT_SERVING), None, 100, Readiness::InFlight { since: t(100) }),
            ("no node yet: in flight", Ready, None, Some(10), 100, Readiness::InFlight { since: t(10) }),
            ("at the max: still in flight", Ready, Some(NOT_SERVING), Some(0), 600, Readiness::InFlight { since: t(0) }),
            ("past the max with a node: unhealthy", Ready, Some(NOT_SERVING), Some(0), 601, Readiness::TimedOut { since: t(0), waited_s: 601 }),
            ("past the max without a node: the stuck-launch rule's", Ready, None, Some(0), 5000, Readiness::InFlight { since: t(0) }),
        ];
        for (name, state, node, since, now, want) in cases {
            let got = readiness(*state, *node, since.map(t), max, t(*now));
            assert_eq!(got, *want, "{name}");
        }
    }
}
