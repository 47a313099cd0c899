//! Auto Scaling lifecycle states → gpupool's [`LifecycleState`]. Pure.

use aws_sdk_autoscaling::types::LifecycleState as Asg;
use gpupool_provider::LifecycleState;

/// How one ASG / warm-pool instance state reads for gpupool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub state: LifecycleState,
    /// Held by a lifecycle hook (`…:Wait`) until someone completes the action.
    pub awaiting_hook: bool,
}

/// Map a state. `was_warm` says the instance was seen in the warm pool before: a `Pending`
/// instance that left the warm pool is *starting* from a warm disk, not launching cold.
///
/// | ASG state | gpupool |
/// | --- | --- |
/// | `Pending`, `Pending:Proceed`, `Quarantined` | Launching (Starting if it was warm) |
/// | `Pending:Wait` | same, awaiting the hook |
/// | `Warmed:Pending`, `Warmed:Pending:Proceed` / `:Wait` | Warming (`:Wait` awaits the hook) |
/// | `Warmed:Stopped`, `Warmed:Hibernated`, `Warmed:Running` | Warm |
/// | `InService`, root-volume replacement states | Ready |
/// | `Standby`, `EnteringStandby` | Draining (out of service, still billed) |
/// | `Terminating*`, `Terminated`, `Warmed:Terminat*`, `Detaching`, `Detached` | Terminating |
pub fn map_state(s: &Asg, was_warm: bool) -> Mapped {
    use LifecycleState as L;
    let launching = if was_warm { L::Starting } else { L::Launching };
    let (state, awaiting_hook) = match s {
        Asg::Pending | Asg::PendingProceed | Asg::Quarantined => (launching, false),
        Asg::PendingWait => (launching, true),
        Asg::WarmedPending | Asg::WarmedPendingProceed | Asg::WarmedPendingRetained => {
            (L::Warming, false)
        }
        Asg::WarmedPendingWait => (L::Warming, true),
        Asg::WarmedStopped | Asg::WarmedHibernated | Asg::WarmedRunning => (L::Warm, false),
        Asg::InService
        | Asg::ReplacingRootVolume
        | Asg::ReplacingRootVolumeProceed
        | Asg::ReplacingRootVolumeWait
        | Asg::RootVolumeReplaced => (L::Ready, false),
        Asg::Standby | Asg::EnteringStandby => (L::Draining, false),
        Asg::Terminating
        | Asg::TerminatingWait
        | Asg::TerminatingProceed
        | Asg::TerminatingRetained
        | Asg::Terminated
        | Asg::WarmedTerminating
        | Asg::WarmedTerminatingWait
        | Asg::WarmedTerminatingProceed
        | Asg::WarmedTerminatingRetained
        | Asg::WarmedTerminated
        | Asg::Detaching
        | Asg::Detached => (L::Terminating, false),
        // A state added after this SDK version: count it as leaving, the only reading that
        // can neither double-count capacity nor pick it as a victim.
        _ => (L::Terminating, false),
    };
    Mapped {
        state,
        awaiting_hook,
    }
}

/// Counts toward the group's desired capacity as an instance that is there or on its way:
/// pending (a launch hook may hold it) or in service. Warm-pool members do not count (Auto
/// Scaling user guide, "Warm pools": "As instances leave the warm pool, they count toward the
/// desired capacity of the group"), nor do instances leaving the group, nor `Standby` ones (the
/// group launches a replacement for an instance put in standby without decrement; Auto Scaling
/// user guide, "Temporarily remove instances from your Auto Scaling group").
pub fn counts_toward_desired(s: &Asg) -> bool {
    matches!(
        map_state(s, false).state,
        LifecycleState::Launching | LifecycleState::Ready
    )
}

/// Held by a *launch* lifecycle hook: `Pending:Wait` (into service) or `Warmed:Pending:Wait`
/// (into the warm pool). The terminating hook's `Terminating:Wait` is not gpupool's to complete.
pub fn awaits_launch_hook(s: &Asg) -> bool {
    matches!(s, Asg::PendingWait | Asg::WarmedPendingWait)
}

/// Already on its way out: terminating it again is a no-op.
pub fn is_leaving(s: &Asg) -> bool {
    map_state(s, false).state == LifecycleState::Terminating
}

/// Kubernetes `spec.providerID` of an EC2 instance.
pub fn provider_id(zone: &str, instance_id: &str) -> String {
    format!("aws:///{zone}/{instance_id}")
}

/// Of instances carrying a drain mark (`(id, mark value)`), those whose marked deadline is more
/// than `grace` before `now`: what `sweep_released` may terminate once it has checked they are
/// in no group. A mark that is not a sane time is skipped — never taken for an old one.
pub fn overdue_released(
    marked: &[(String, Option<String>)],
    now: gpupool_provider::Timestamp,
    grace: std::time::Duration,
) -> Vec<String> {
    marked
        .iter()
        .filter(|(_, mark)| {
            mark.as_deref()
                .and_then(gpupool_provider::decode_drain_deadline)
                .is_some_and(|d| now.secs_since(d) > grace.as_secs_f64())
        })
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleState as L;

    #[test]
    fn states_map_as_documented() {
        let m = |s: &str, warm| {
            let s = Asg::from(s);
            let r = map_state(&s, warm);
            (r.state, r.awaiting_hook)
        };
        assert_eq!(m("Pending", false), (L::Launching, false));
        assert_eq!(m("Pending:Wait", false), (L::Launching, true));
        assert_eq!(m("Pending:Wait", true), (L::Starting, true));
        assert_eq!(m("Pending", true), (L::Starting, false));
        assert_eq!(m("Warmed:Pending", false), (L::Warming, false));
        assert_eq!(m("Warmed:Pending:Wait", false), (L::Warming, true));
        assert_eq!(m("Warmed:Stopped", false), (L::Warm, false));
        assert_eq!(m("Warmed:Hibernated", false), (L::Warm, false));
        assert_eq!(m("InService", false), (L::Ready, false));
        assert_eq!(m("Standby", false), (L::Draining, false));
        assert_eq!(m("Terminating:Wait", false), (L::Terminating, false));
        assert_eq!(m("Warmed:Terminated", false), (L::Terminating, false));
        assert_eq!(m("Detaching", false), (L::Terminating, false));
        assert_eq!(m("Some:Future:State", false), (L::Terminating, false));
        assert!(is_leaving(&Asg::from("Terminating")));
        for (s, counts) in [
            ("Pending", true),
            ("Pending:Wait", true),
            ("InService", true),
            ("Standby", false),
            ("Warmed:Stopped", false),
            ("Warmed:Pending:Wait", false),
            ("Terminating", false),
        ] {
            assert_eq!(counts_toward_desired(&Asg::from(s)), counts, "{s}");
        }
        assert!(awaits_launch_hook(&Asg::from("Pending:Wait")));
        assert!(awaits_launch_hook(&Asg::from("Warmed:Pending:Wait")));
        assert!(!awaits_launch_hook(&Asg::from("Terminating:Wait")));
        assert!(!awaits_launch_hook(&Asg::from("InService")));
        assert!(!is_leaving(&Asg::from("InService")));
    }

    #[test]
    fn provider_ids_match_kubernetes() {
        assert_eq!(
            provider_id("us-east-1a", "i-0abc"),
            "aws:///us-east-1a/i-0abc"
        );
    }

    #[test]
    fn only_sane_marks_older_than_the_grace_are_overdue() {
        let now = gpupool_provider::Timestamp::from_secs(1_767_225_600);
        let grace = std::time::Duration::from_secs(300);
        let mark = |s: i64| Some((1_767_225_600 - s).to_string());
        let marked = vec![
            ("i-old".to_owned(), mark(301)),
            ("i-within-grace".to_owned(), mark(299)),
            ("i-future".to_owned(), mark(-600)),
            (
                "i-garbage".to_owned(),
                Some("2026-01-01T00:00:00Z".to_owned()),
            ),
            ("i-empty".to_owned(), Some(String::new())),
            ("i-no-value".to_owned(), None),
        ];
        assert_eq!(
            overdue_released(&marked, now, grace),
            vec!["i-old".to_owned()]
        );
    }
}
