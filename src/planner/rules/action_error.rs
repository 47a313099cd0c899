//! A provider error on an action → what the controller does next. Capacity that is not there
//! (InsufficientInstanceCapacity, a quota on a launch) backs the offering off and re-plans in
//! the same tick so the fallback offering is tried at once; throttling skips the group's
//! remaining actions this tick (asking again only deepens the throttling); anything else waits
//! for the next tick's fresh view — a write that failed may still have been applied, so it is
//! never retried blindly (`controller/observe.rs`).

use crate::model::{Action, OfferingKey};
use gpupool_provider::ProviderError;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Put this offering into backoff (`History::record_launch_failure`).
    pub back_off: Option<OfferingKey>,
    /// Plan again in this tick, with the backoff in place.
    pub replan: bool,
    /// Skip the rest of this action's group's actions this tick.
    pub skip_group: bool,
}

pub fn respond(action: &Action, e: &ProviderError) -> ErrorResponse {
    match e {
        ProviderError::InsufficientCapacity { offering } => ErrorResponse {
            back_off: Some(offering.clone()),
            replan: true,
            skip_group: false,
        },
        // A quota names no offering; on a launch it is the launched offering's. On another
        // action (a warm pool resize) it backs nothing off.
        ProviderError::QuotaExceeded { .. } => match action {
            Action::ScaleUp { offering, .. } => ErrorResponse {
                back_off: Some(offering.clone()),
                replan: true,
                skip_group: false,
            },
            _ => ErrorResponse::default(),
        },
        ProviderError::Throttled { .. } => ErrorResponse {
            skip_group: true,
            ..ErrorResponse::default()
        },
        ProviderError::NotFound { .. }
        | ProviderError::InvalidConfig(_)
        | ProviderError::Transient { .. } => ErrorResponse::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, NodeGroupId, Reason};

    fn key(t: &str) -> OfferingKey {
        OfferingKey {
            instance_type: t.into(),
            capacity_type: CapacityType::Spot,
            zone: "us-east-1a".into(),
        }
    }

    #[test]
    fn capacity_backs_off_and_replans_throttling_skips_the_group_the_rest_waits() {
        let up = Action::ScaleUp {
            pool: "p".into(),
            group: NodeGroupId::new("g"),
            offering: key("p5.48xlarge"),
            count: 1,
            reason: Reason::MinNodes { min: 1 },
        };
        let warm = Action::SetWarmPool {
            pool: "p".into(),
            group: NodeGroupId::new("g"),
            size: 2,
            reason: Reason::MinNodes { min: 1 },
        };
        let backoff = |k: &str| ErrorResponse {
            back_off: Some(key(k)),
            replan: true,
            skip_group: false,
        };
        let nothing = ErrorResponse::default();
        let skip = ErrorResponse {
            skip_group: true,
            ..ErrorResponse::default()
        };
        let transient = || ProviderError::Transient {
            call: "SetDesiredCapacity",
            target: "g".into(),
            source: "HTTP 500".into(),
        };
        let ice = |k: &str| ProviderError::InsufficientCapacity { offering: key(k) };
        let quota = || ProviderError::QuotaExceeded {
            what: "vCPU".into(),
        };
        let throttled = || ProviderError::Throttled { retry_after_ms: 0 };
        let not_found = || ProviderError::NotFound { what: "g".into() };
        let invalid = || ProviderError::InvalidConfig("x".into());
        #[rustfmt::skip]
        let cases: Vec<(&str, &Action, ProviderError, ErrorResponse)> = vec![
            ("capacity error names its offering", &up, ice("g6.xlarge"), backoff("g6.xlarge")),
            ("capacity error on any action", &warm, ice("g6.xlarge"), backoff("g6.xlarge")),
            ("quota on a launch: the launched offering", &up, quota(), backoff("p5.48xlarge")),
            ("quota elsewhere backs nothing off", &warm, quota(), nothing.clone()),
            ("throttled: skip the group", &up, throttled(), skip.clone()),
            ("transient: wait for the next tick", &up, transient(), nothing.clone()),
            ("not found: wait for the next tick", &up, not_found(), nothing.clone()),
            ("invalid config: wait for the next tick", &up, invalid(), nothing.clone()),
        ];
        for (name, action, e, want) in cases {
            assert_eq!(respond(action, &e), want, "{name}");
        }
    }
}
