//! Cloud events → what the controller does about them. A spot notice drains and replaces the
//! instance before the reclaim (serving until `interruption_drain_s` before it when set); a
//! scheduled change drains it before the maintenance, within the pool's drain timeout; a
//! rebalance recommendation raises the offering's risk (and with `rebalance: prelaunch` starts
//! the replacement now); an instance that stopped or is going away closes its drain; a launch
//! failure backs its offering off.

use crate::config::RebalancePolicy;
use crate::model::{OfferingKey, ProviderEventKind, Reason, Timestamp};
use std::time::Duration;

/// The pool policy an event is judged by (from the pool of the instance's group).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventPolicy {
    pub drain_timeout: Duration,
    /// Serve until this long before a spot reclaim; `None`: drain at the notice.
    pub interruption_drain: Option<Duration>,
    pub rebalance: RebalancePolicy,
}

/// An EC2 instance state, as `detail.state` of an "EC2 Instance State-change Notification".
/// The possible values are pending, running, stopping, stopped, shutting-down and terminated
/// (Amazon EC2 User Guide, "State change events for Amazon EC2 instances",
/// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-instance-state-changes.html).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl InstanceState {
    /// `None` for a value the documentation does not list: unknown is not "left".
    pub fn parse(s: &str) -> Option<InstanceState> {
        Some(match s {
            "pending" => InstanceState::Pending,
            "running" => InstanceState::Running,
            "stopping" => InstanceState::Stopping,
            "stopped" => InstanceState::Stopped,
            "shutting-down" => InstanceState::ShuttingDown,
            "terminated" => InstanceState::Terminated,
            _ => return None,
        })
    }

    /// Stopping or going away (stop: stopping → stopped; terminate: shutting-down →
    /// terminated, same source): it serves no more, so a drain of it is over.
    pub fn has_left(self) -> bool {
        matches!(
            self,
            InstanceState::Stopping
                | InstanceState::Stopped
                | InstanceState::ShuttingDown
                | InstanceState::Terminated
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventResponse {
    /// The event names an instance of no managed group: nothing to do.
    Unmanaged,
    /// Drain the instance from `start_at` and terminate it by `deadline` (the planner replaces
    /// it from the notice on, since it no longer counts as capacity). `spot_reclaim`: the
    /// cloud is reclaiming spot capacity — the offering's interruption risk goes up and it is
    /// set aside for a while (`History::record_spot_interruption`, after Karpenter's
    /// unavailable-offerings cache).
    Drain {
        deadline: Timestamp,
        start_at: Timestamp,
        reason: Reason,
        spot_reclaim: bool,
    },
    /// Advice, not a notice: the offering's risk goes up; with `prelaunch` the instance also
    /// stops counting as capacity now, so its replacement launches before any notice.
    Rebalance { prelaunch: bool },
    /// The instance stopped or is going away: a drain of it is closed.
    CloseDrain,
    /// A state change that ends nothing (pending, running, or an undocumented state).
    Ignore,
    /// A launch of `offering` failed: it backs off.
    BackOff {
        offering: OfferingKey,
        message: String,
    },
}

/// The response to one event at `now`. `policy` is the policy of the instance's pool, `None`
/// when the instance the event names is in no managed group.
pub fn respond(
    kind: &ProviderEventKind,
    policy: Option<&EventPolicy>,
    now: Timestamp,
) -> EventResponse {
    match kind {
        ProviderEventKind::SpotInterruption { deadline, .. } => {
            let Some(p) = policy else {
                return EventResponse::Unmanaged;
            };
            let start_at = match p.interruption_drain {
                Some(lead) => deadline.plus_secs(-lead.as_secs_f64()).max(now),
                None => now,
            };
            EventResponse::Drain {
                deadline: *deadline,
                start_at,
                reason: Reason::SpotInterruption {
                    deadline: *deadline,
                },
                spot_reclaim: true,
            }
        }
        ProviderEventKind::ScheduledChange { at, .. } => {
            let Some(p) = policy else {
                return EventResponse::Unmanaged;
            };
            // Drain well before the maintenance so in-flight work finishes.
            EventResponse::Drain {
                deadline: (*at).min(now.plus_secs(p.drain_timeout.as_secs_f64())),
                start_at: now,
                reason: Reason::Unhealthy {
                    condition: "scheduled maintenance".into(),
                },
                spot_reclaim: false,
            }
        }
        ProviderEventKind::RebalanceRecommendation { .. } => match policy {
            None => EventResponse::Unmanaged,
            Some(p) => EventResponse::Rebalance {
                prelaunch: p.rebalance == RebalancePolicy::Prelaunch,
            },
        },
        ProviderEventKind::InstanceStateChange { state, .. } => match InstanceState::parse(state) {
            Some(s) if s.has_left() => EventResponse::CloseDrain,
            _ => EventResponse::Ignore,
        },
        ProviderEventKind::LaunchFailed {
            offering, message, ..
        } => EventResponse::BackOff {
            offering: offering.clone(),
            message: message.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, InstanceId, LaunchFailure, NodeGroupId};

    fn policy(lead_s: Option<u64>, rebalance: RebalancePolicy) -> EventPolicy {
        EventPolicy {
            drain_timeout: Duration::from_secs(300),
            interruption_drain: lead_s.map(Duration::from_secs),
            rebalance,
        }
    }

    fn spot(deadline_s: i64) -> ProviderEventKind {
        ProviderEventKind::SpotInterruption {
            instance: InstanceId::new("i-1"),
            deadline: Timestamp::from_secs(deadline_s),
        }
    }

    fn drain(deadline_s: i64, start_s: i64, reason: Reason, spot_reclaim: bool) -> EventResponse {
        EventResponse::Drain {
            deadline: Timestamp::from_secs(deadline_s),
            start_at: Timestamp::from_secs(start_s),
            reason,
            spot_reclaim,
        }
    }

    #[test]
    fn each_event_gets_its_drain_deadline_risk_or_backoff() {
        let t = Timestamp::from_secs;
        let now = 1000;
        let spot_reason = |d| Reason::SpotInterruption { deadline: t(d) };
        let maintenance = Reason::Unhealthy {
            condition: "scheduled maintenance".into(),
        };
        let state = |s: &str| ProviderEventKind::InstanceStateChange {
            instance: InstanceId::new("i-1"),
            state: s.into(),
        };
        let offering = OfferingKey {
            instance_type: "p5.48xlarge".into(),
            capacity_type: CapacityType::Spot,
            zone: "us-east-1a".into(),
        };
        let ignore = RebalancePolicy::Ignore;
        let pre = RebalancePolicy::Prelaunch;
        #[rustfmt::skip]
        let cases: Vec<(&str, ProviderEventKind, Option<EventPolicy>, EventResponse)> = vec![
            ("spot: drain at the notice", spot(1120), Some(policy(None, ignore)), drain(1120, 1000, spot_reason(1120), true)),
            ("spot: serve until the lead before the reclaim", spot(1120), Some(policy(Some(50), ignore)), drain(1120, 1070, spot_reason(1120), true)),
            ("spot: a lead longer than the notice drains now", spot(1120), Some(policy(Some(600), ignore)), drain(1120, 1000, spot_reason(1120), true)),
            ("spot: unmanaged instance", spot(1120), None, EventResponse::Unmanaged),
            ("maintenance later than the drain timeout: timeout wins",
                ProviderEventKind::ScheduledChange { instance: InstanceId::new("i-1"), at: t(5000) },
                Some(policy(None, ignore)), drain(1300, 1000, maintenance.clone(), false)),
            ("maintenance sooner than the drain timeout: maintenance wins",
                ProviderEventKind::ScheduledChange { instance: InstanceId::new("i-1"), at: t(1100) },
                Some(policy(None, ignore)), drain(1100, 1000, maintenance.clone(), false)),
            ("rebalance advice only",
                ProviderEventKind::RebalanceRecommendation { instance: InstanceId::new("i-1") },
                Some(policy(None, ignore)), EventResponse::Rebalance { prelaunch: false }),
            ("rebalance with prelaunch",
                ProviderEventKind::RebalanceRecommendation { instance: InstanceId::new("i-1") },
                Some(policy(None, pre)), EventResponse::Rebalance { prelaunch: true }),
            ("stopped closes the drain", state("stopped"), None, EventResponse::CloseDrain),
            ("stopping closes the drain", state("stopping"), None, EventResponse::CloseDrain),
            ("shutting-down closes the drain", state("shutting-down"), None, EventResponse::CloseDrain),
            ("terminated closes the drain", state("terminated"), None, EventResponse::CloseDrain),
            ("running ends nothing", state("running"), None, EventResponse::Ignore),
            ("pending ends nothing", state("pending"), None, EventResponse::Ignore),
            ("an undocumented state is not taken as gone", state("hibernated"), None, EventResponse::Ignore),
            ("a failed launch backs off its offering",
                ProviderEventKind::LaunchFailed {
                    group: NodeGroupId::new("g"), offering: offering.clone(),
                    error: LaunchFailure::InsufficientCapacity, message: "no capacity".into(),
                },
                None, EventResponse::BackOff { offering: offering.clone(), message: "no capacity".into() }),
        ];
        for (name, kind, p, want) in cases {
            assert_eq!(respond(&kind, p.as_ref(), t(now)), want, "{name}");
        }
    }
}
