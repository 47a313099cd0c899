//! Cloud events → what the controller does about them. A spot notice drains and replaces the
//! instance before the reclaim (serving until a lead before it: `interruption_drain_s` when
//! set, else learnt from the longest request measured — see [`spot_drain_start`]); a
//! scheduled change drains it before the maintenance, within the pool's drain timeout; a
//! rebalance recommendation raises the offering's risk (and with `rebalance: prelaunch` starts
//! the replacement now); an instance that stopped or is going away closes its drain; a launch
//! failure backs its offering off.

use crate::config::RebalancePolicy;
use crate::model::{
    LeadBasis, OfferingKey, ProviderEventKind, Reason, RequestDuration, SpotDrainStart, Timestamp,
};
use std::time::Duration;

/// The pool policy an event is judged by (from the pool of the instance's group).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventPolicy {
    pub drain_timeout: Duration,
    /// Serve until this long before a spot reclaim (`interruption_drain_s`); `None`: learnt
    /// from `request_duration`, or at the notice.
    pub interruption_drain: Option<Duration>,
    pub rebalance: RebalancePolicy,
    /// The controller's tick interval: a drain starts at a tick, so up to one is lost.
    pub tick: Duration,
    /// The pool's latest measured longest request and when the controller read it (the
    /// previous tick's demand: events are handled before this tick's demand is read).
    pub request_duration: Option<(Timestamp, RequestDuration)>,
}

/// A measurement read longer ago than this many ticks is not used: the controller reads
/// demand every tick, so anything older means reads failed or ticks held since — unknown.
pub const REQUEST_DURATION_MAX_AGE_TICKS: u32 = 2;

/// When the drain of a spot instance reclaimed at `deadline` starts, for a notice handled at
/// `now`. The operator's `configured` lead wins; else a known, fresh `measured` duration
/// gives ⌈longest⌉ + one `tick` (the drain starts at a tick, so a tick can be lost); a lead
/// that is not shorter than the notice left (`deadline − now`) drains at the notice, and so
/// does an unknown duration — a measurement read more than
/// [`REQUEST_DURATION_MAX_AGE_TICKS`] ticks ago, or one that is not a plausible duration
/// (`RequestDuration::measured` keeps NaN and negatives out; checked again here) — never
/// serving on, and so draining late, on missing data.
pub fn spot_drain_start(
    configured: Option<Duration>,
    measured: Option<(Timestamp, RequestDuration)>,
    tick: Duration,
    deadline: Timestamp,
    now: Timestamp,
) -> SpotDrainStart {
    let tick_s = tick.as_secs_f64().ceil() as u64;
    let max_age_s = tick.as_secs_f64() * f64::from(REQUEST_DURATION_MAX_AGE_TICKS);
    let basis = match configured {
        Some(lead) => LeadBasis::Configured {
            lead_s: lead.as_secs(),
        },
        None => match measured {
            Some((read_at, d))
                if now.secs_since(read_at) <= max_age_s
                    && RequestDuration::measured(d.longest_s, d.window_s).is_some() =>
            {
                LeadBasis::Measured {
                    longest_s: d.longest_s,
                    window_s: d.window_s,
                    tick_s,
                }
            }
            _ => return SpotDrainStart::AtNoticeUnknown,
        },
    };
    let notice_s = deadline.secs_since(now).max(0.0);
    if (basis.lead_s() as f64) < notice_s {
        SpotDrainStart::BeforeReclaim { basis }
    } else {
        SpotDrainStart::AtNoticeLeadTooLong {
            basis,
            notice_s: notice_s.floor() as u64,
        }
    }
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
            let start = spot_drain_start(
                p.interruption_drain,
                p.request_duration,
                p.tick,
                *deadline,
                now,
            );
            let start_at = match start.lead_s() {
                Some(lead_s) => deadline.plus_secs(-(lead_s as f64)).max(now),
                None => now,
            };
            EventResponse::Drain {
                deadline: *deadline,
                start_at,
                reason: Reason::SpotInterruption {
                    deadline: *deadline,
                    start,
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
            tick: Duration::from_secs(10),
            request_duration: None,
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
        let spot_reason = |d, start| Reason::SpotInterruption {
            deadline: t(d),
            start,
        };
        let configured = |lead_s| SpotDrainStart::BeforeReclaim {
            basis: LeadBasis::Configured { lead_s },
        };
        let measured = Some((
            t(now - 10),
            RequestDuration {
                longest_s: 40.6,
                window_s: 3600,
            },
        ));
        let learnt = EventPolicy {
            request_duration: measured,
            ..policy(None, RebalancePolicy::Ignore)
        };
        let learnt_basis = LeadBasis::Measured {
            longest_s: 40.6,
            window_s: 3600,
            tick_s: 10,
        };
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
            ("spot: durations unknown, drain at the notice", spot(1120), Some(policy(None, ignore)),
                drain(1120, 1000, spot_reason(1120, SpotDrainStart::AtNoticeUnknown), true)),
            ("spot: serve until the configured lead before the reclaim", spot(1120), Some(policy(Some(50), ignore)),
                drain(1120, 1070, spot_reason(1120, configured(50)), true)),
            ("spot: serve until the learnt lead (41 + 10 s) before the reclaim", spot(1120), Some(learnt),
                drain(1120, 1069, spot_reason(1120, SpotDrainStart::BeforeReclaim { basis: learnt_basis }), true)),
            ("spot: a lead longer than the notice drains now", spot(1120), Some(policy(Some(600), ignore)),
                drain(1120, 1000, spot_reason(1120, SpotDrainStart::AtNoticeLeadTooLong {
                    basis: LeadBasis::Configured { lead_s: 600 }, notice_s: 120 }), true)),
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

    #[test]
    fn the_drain_lead_is_configured_or_learnt_and_never_late_on_missing_data() {
        let t = Timestamp::from_secs;
        let (now, deadline) = (1000, 1120);
        let tick = Duration::from_secs(10);
        let d = |longest_s: f64| RequestDuration {
            longest_s,
            window_s: 3600,
        };
        let m = |longest_s, window_s| LeadBasis::Measured {
            longest_s,
            window_s,
            tick_s: 10,
        };
        let before = |basis| SpotDrainStart::BeforeReclaim { basis };
        let too_long = |basis, notice_s| SpotDrainStart::AtNoticeLeadTooLong { basis, notice_s };
        let unknown = SpotDrainStart::AtNoticeUnknown;
        let fresh = |x: f64| Some((t(now - 10), d(x)));
        // (name, configured lead, measurement, deadline, start, lead)
        type Case = (
            &'static str,
            Option<u64>,
            Option<(Timestamp, RequestDuration)>,
            i64,
            SpotDrainStart,
            Option<u64>,
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("configured wins over a measurement", Some(50), fresh(40.6), deadline, before(LeadBasis::Configured { lead_s: 50 }), Some(50)),
            ("configured without a measurement", Some(50), None, deadline, before(LeadBasis::Configured { lead_s: 50 }), Some(50)),
            ("configured, not shorter than the notice left", Some(30), None, now + 30, too_long(LeadBasis::Configured { lead_s: 30 }, 30), None),
            ("known: ceil(40.6) + one tick = 51 s", None, fresh(40.6), deadline, before(m(40.6, 3600)), Some(51)),
            ("known, whole seconds are not rounded up again", None, fresh(40.0), deadline, before(m(40.0, 3600)), Some(50)),
            ("known, nothing long: one tick", None, fresh(0.0), deadline, before(m(0.0, 3600)), Some(10)),
            ("known, lead equal to the notice: at the notice", None, fresh(110.0), deadline, too_long(m(110.0, 3600), 120), None),
            ("known, lead beyond the notice: at the notice", None, fresh(115.2), deadline, too_long(m(115.2, 3600), 120), None),
            ("known, GCP's 30 s notice is too short", None, fresh(40.6), now + 30, too_long(m(40.6, 3600), 30), None),
            ("a late notice with less left than the lead: at the notice", None, fresh(40.6), now + 45, too_long(m(40.6, 3600), 45), None),
            ("unknown: at the notice", None, None, deadline, unknown, None),
            ("read two ticks ago: still the latest", None, Some((t(now - 20), d(40.6))), deadline, before(m(40.6, 3600)), Some(51)),
            ("read three ticks ago (reads failed since): unknown", None, Some((t(now - 30), d(40.6))), deadline, unknown, None),
            ("NaN never makes a lead", None, fresh(f64::NAN), deadline, unknown, None),
            ("negative never makes a lead", None, fresh(-5.0), deadline, unknown, None),
            ("infinite never makes a lead", None, fresh(f64::INFINITY), deadline, unknown, None),
            ("implausibly long (over an hour): unknown", None, fresh(7680.0), deadline, unknown, None),
        ];
        for (name, configured, measured, dl, want, lead) in cases {
            let got = spot_drain_start(
                configured.map(Duration::from_secs),
                measured,
                tick,
                t(dl),
                t(now),
            );
            assert_eq!(got, want, "{name}");
            assert_eq!(got.lead_s(), lead, "{name}");
        }
        // Rendered at the edge, saying which lead and why.
        assert_eq!(
            before(m(40.6, 3600)).to_string(),
            "serving until 51 s before the reclaim: the longest request in the last hour took 40.6 s, plus one 10-s tick"
        );
        assert_eq!(
            unknown.to_string(),
            "draining at the notice: request durations unknown"
        );
        assert_eq!(
            too_long(m(40.6, 600), 30).to_string(),
            "draining at the notice: a 51 s lead (the longest request in the last 10 min took 40.6 s, plus one 10-s tick) does not fit the 30 s left"
        );
    }
}
