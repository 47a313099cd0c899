//! Kubernetes Events from the planner's decisions, as Cluster Autoscaler writes them, so
//! `kubectl describe pod` answers "why is my pod still pending?":
//!
//! - pods: `TriggeredScaleUp` (an action covers the pod) and `NotTriggerScaleUp` (blocked or
//!   held, with the planner's reason);
//! - nodes: `Drain`, `Replaced` (drained to be replaced: unhealthy, never serving-ready, model
//!   cache drift, spot notice, consolidation) and `ScaleDown`.
//!
//! A pod stuck for an hour is re-evaluated every tick; [`EventLimiter`] lets at most one event
//! per object and reason through per interval, so the API server is not flooded.

use crate::model::{Action, Decision, Outcome, Reason, Subject, Timestamp};
use std::collections::HashMap;

/// One event per object and reason per this many seconds.
pub const DEFAULT_EVENT_INTERVAL_S: u64 = 300;
/// Bound on remembered (object, reason) pairs; the oldest are forgotten first.
pub const LIMITER_MAX_ENTRIES: usize = 50_000;
/// Bound on events written per tick: the rest wait for a later tick (and are rate-limited
/// anyway), so publishing never stalls the control loop.
pub const MAX_EVENTS_PER_TICK: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Normal,
    Warning,
}

/// The object an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// `namespace/name`.
    Pod(String),
    /// A node found by the action's instance (`node` name when the planner knew it).
    Instance {
        instance: String,
        node: Option<String>,
    },
}

/// An event to write, before object lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub target: Target,
    pub kind: EventKind,
    /// CamelCase reason (`TriggeredScaleUp`).
    pub reason: &'static str,
    /// Short action verb (events.k8s.io `action`).
    pub action: &'static str,
    pub note: String,
}

/// Reasons that mean "this node goes away to be replaced", not "we have too many nodes".
fn is_replacement(r: &Reason) -> bool {
    matches!(
        r,
        Reason::NotServingReady { .. }
            | Reason::Unhealthy { .. }
            | Reason::Drift { .. }
            | Reason::SpotInterruption { .. }
            | Reason::Rebalance
            | Reason::Consolidate { .. }
    )
}

/// The events a plan calls for, in plan order. Pure.
pub fn plan_events(actions: &[Action], decisions: &[Decision]) -> Vec<PlannedEvent> {
    let mut out = Vec::new();
    for d in decisions {
        let Subject::Pod(key) = &d.subject else {
            continue;
        };
        let (reason, kind, note) = match d.outcome {
            Outcome::Acted => (
                "TriggeredScaleUp",
                EventKind::Normal,
                format!("pod triggered scale-up: {}", d.reason),
            ),
            Outcome::Blocked | Outcome::Held => (
                "NotTriggerScaleUp",
                EventKind::Normal,
                format!("pod didn't trigger scale-up: {}", d.reason),
            ),
            // Covered by capacity already serving or on its way: the scheduler will place it.
            Outcome::Satisfied => continue,
        };
        out.push(PlannedEvent {
            target: Target::Pod(key.clone()),
            kind,
            reason,
            action: "ScaleUp",
            note,
        });
    }
    for a in actions {
        match a {
            Action::Drain {
                instance,
                node,
                reason,
                ..
            } => {
                let (ev_reason, kind) = if is_replacement(reason) {
                    ("Replaced", EventKind::Warning)
                } else {
                    ("Drain", EventKind::Normal)
                };
                out.push(PlannedEvent {
                    target: Target::Instance {
                        instance: instance.to_string(),
                        node: node.clone(),
                    },
                    kind,
                    reason: ev_reason,
                    action: "Drain",
                    note: format!("draining node of instance {instance}: {reason}"),
                });
            }
            Action::ScaleDown {
                instances, reason, ..
            } => {
                for i in instances {
                    out.push(PlannedEvent {
                        target: Target::Instance {
                            instance: i.to_string(),
                            node: None,
                        },
                        kind: EventKind::Normal,
                        reason: "ScaleDown",
                        action: "ScaleDown",
                        note: format!("terminating instance {i}: {reason}"),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// At most one event per (object, reason) per interval. Time comes from the caller.
#[derive(Debug)]
pub struct EventLimiter {
    interval_s: u64,
    last: HashMap<(Target, &'static str), Timestamp>,
}

impl EventLimiter {
    pub fn new(interval_s: u64) -> Self {
        EventLimiter {
            interval_s,
            last: HashMap::new(),
        }
    }

    /// True (and remembered) when this event may be written at `now`.
    pub fn allow(&mut self, target: &Target, reason: &'static str, now: Timestamp) -> bool {
        let key = (target.clone(), reason);
        if let Some(&t) = self.last.get(&key)
            && now.secs_since(t) < self.interval_s as f64
        {
            return false;
        }
        if self.last.len() >= LIMITER_MAX_ENTRIES {
            self.forget_before(now);
        }
        if self.last.len() >= LIMITER_MAX_ENTRIES {
            // Still full of fresh entries: forget the oldest one to stay bounded.
            if let Some(oldest) = self
                .last
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(key, now);
        true
    }

    /// Drop entries whose interval has passed (they would allow anyway).
    pub fn forget_before(&mut self, now: Timestamp) {
        let interval = self.interval_s as f64;
        self.last.retain(|_, t| now.secs_since(*t) < interval);
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InstanceId, NodeGroupId, PoolName};

    fn pod_decision(outcome: Outcome, reason: Reason) -> Decision {
        Decision {
            subject: Subject::Pod("ml/p".into()),
            outcome,
            reason,
        }
    }

    #[test]
    fn decisions_and_actions_map_to_ca_style_events() {
        let decisions = vec![
            pod_decision(Outcome::Acted, Reason::PendingPods { pods: 1, nodes: 1 }),
            pod_decision(Outcome::Blocked, Reason::AtMaxNodes { max: 4 }),
            pod_decision(
                Outcome::Satisfied,
                Reason::CoveredByInFlight { in_flight_nodes: 1 },
            ),
            Decision {
                subject: Subject::Pool(PoolName::new("llm")),
                outcome: Outcome::Held,
                reason: Reason::Empty,
            },
        ];
        let drain = |reason| Action::Drain {
            pool: PoolName::new("llm"),
            group: NodeGroupId::new("g"),
            instance: InstanceId::new("i-1"),
            node: Some("n1".into()),
            deadline: None,
            reason,
        };
        let actions = vec![
            drain(Reason::Unhealthy {
                condition: "Xid 79".into(),
            }),
            drain(Reason::Unneeded {
                unneeded_for_s: 700,
            }),
            Action::ScaleDown {
                pool: PoolName::new("llm"),
                group: NodeGroupId::new("g"),
                instances: vec![InstanceId::new("i-2"), InstanceId::new("i-3")],
                reason: Reason::Empty,
            },
        ];
        let evs = plan_events(&actions, &decisions);
        let summary: Vec<_> = evs.iter().map(|e| e.reason).collect();
        assert_eq!(
            summary,
            vec![
                "TriggeredScaleUp",
                "NotTriggerScaleUp",
                "Replaced",
                "Drain",
                "ScaleDown",
                "ScaleDown"
            ]
        );
        assert_eq!(
            evs[1].note,
            "pod didn't trigger scale-up: pool is at its maximum of 4 node(s)"
        );
        assert_eq!(evs[2].kind, EventKind::Warning);
    }

    #[test]
    fn limiter_allows_one_per_object_and_reason_per_interval() {
        let mut l = EventLimiter::new(300);
        let p = Target::Pod("ml/p".into());
        let q = Target::Pod("ml/q".into());
        let t0 = Timestamp::from_secs(1000);
        assert!(l.allow(&p, "NotTriggerScaleUp", t0));
        assert!(!l.allow(&p, "NotTriggerScaleUp", t0.plus_secs(10.0)));
        assert!(l.allow(&p, "TriggeredScaleUp", t0.plus_secs(10.0)));
        assert!(l.allow(&q, "NotTriggerScaleUp", t0.plus_secs(10.0)));
        assert!(!l.allow(&p, "NotTriggerScaleUp", t0.plus_secs(299.0)));
        assert!(l.allow(&p, "NotTriggerScaleUp", t0.plus_secs(300.0)));
        l.forget_before(t0.plus_secs(10_000.0));
        assert!(l.is_empty());
    }
}
