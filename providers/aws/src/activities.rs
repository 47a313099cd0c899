//! Reading Auto Scaling *scaling activities*: whether a change is still running, and which
//! launches failed and why. Pure functions over plain values, tested without a server.
//!
//! Auto Scaling launches asynchronously: `SetDesiredCapacity` succeeds, and an
//! `InsufficientInstanceCapacity` or a vCPU quota shows up minutes later as a *failed activity*
//! whose only machine-facing fields are `StatusCode = Failed` and a `StatusMessage`. There is
//! no error code field on an activity, so the message is the only evidence; in practice it
//! embeds the EC2 error code (`… InsufficientInstanceCapacity - There is no Spot capacity …`)
//! or AWS's fixed sentence for it (`We currently do not have sufficient p5.48xlarge capacity in
//! the Availability Zone you requested (us-east-1a)…`, `You have requested more vCPU capacity
//! than your current vCPU limit of 32 allows…`). [`classify_failure`] looks for exactly those.

use gpupool_provider::{CapacityType, InstanceTypeName, LaunchFailure, OfferingKey, Zone};

/// A scaling activity, reduced to what gpupool reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    pub id: String,
    pub status: Status,
    pub message: String,
    /// The activity's `Details` JSON (`{"Subnet ID": "...", "Availability Zone": "..."}`).
    pub details: Option<String>,
    /// Start time in epoch milliseconds.
    pub start_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Launching / terminating right now: the group's size is about to change.
    Running,
    /// Waiting on something that can take minutes and that the instance list already shows
    /// (a lifecycle hook, instance warm-up, connection draining). Not a reason to hold the group:
    /// gpupool's own model-cache hook keeps instances here for minutes.
    Waiting,
    Failed,
    Finished,
}

impl Status {
    /// From the API's `StatusCode` string.
    pub fn from_code(code: &str) -> Status {
        match code {
            "InProgress"
            | "PreInService"
            | "PendingSpotBidPlacement"
            | "WaitingForSpotInstanceRequestId"
            | "WaitingForSpotInstanceId"
            | "WaitingForInstanceId"
            | "InPlaceUpdateInProgress" => Status::Running,
            "Failed" => Status::Failed,
            "Successful" | "Cancelled" => Status::Finished,
            // MidLifecycleAction, WaitingForInstanceWarmup, WaitingFor(Elb)ConnectionDraining,
            // WaitingForInPlaceUpdate*, and any code added later.
            _ => Status::Waiting,
        }
    }
}

/// True while a launch or termination is being carried out.
pub fn in_progress(activities: &[Activity]) -> bool {
    activities.iter().any(|a| a.status == Status::Running)
}

/// Why a failed launch failed (see the module docs for the evidence used).
pub fn classify_failure(message: &str) -> LaunchFailure {
    let m = message.to_ascii_lowercase();
    let capacity = m.contains("insufficientinstancecapacity")
        || m.contains("insufficient capacity")
        || m.contains("spot capacity not available")
        || m.contains("no spot capacity available")
        || (m.contains("do not have sufficient") && m.contains("capacity"));
    let quota = m.contains("vcpulimitexceeded")
        || m.contains("instancelimitexceeded")
        || m.contains("maxspotinstancecountexceeded")
        || m.contains("vcpu limit")
        || m.contains("instance limit")
        || m.contains("request an adjustment to this limit");
    if capacity {
        LaunchFailure::InsufficientCapacity
    } else if quota {
        LaunchFailure::QuotaExceeded
    } else {
        LaunchFailure::Other
    }
}

/// The offering a failed launch was for. The type is the group's type named in the message
/// (the group's first type when none is named); the zone comes from the activity's
/// `Details` JSON, else a group zone named in the message, else the group's first zone; the
/// capacity type is spot when the message says so, else the group's.
pub fn failed_offering(
    activity: &Activity,
    types: &[InstanceTypeName],
    zones: &[Zone],
    group_capacity: CapacityType,
) -> Option<OfferingKey> {
    let msg = &activity.message;
    let instance_type = types
        .iter()
        // Longest names first so `g5.12xlarge` is not taken for `g5.1…`-prefixed names.
        .filter(|t| contains_word(msg, t.as_str()))
        .max_by_key(|t| t.as_str().len())
        .or_else(|| types.first())?
        .clone();
    let zone_from_details = activity
        .details
        .as_deref()
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| {
            v.get("Availability Zone")
                .and_then(|z| z.as_str())
                .map(Zone::from)
        });
    let zone = zone_from_details
        // AWS names the requested zone first, then the zones that do have capacity.
        .or_else(|| {
            zones
                .iter()
                .filter_map(|z| first_word_at(msg, z.as_str()).map(|i| (i, z)))
                .min_by_key(|(i, _)| *i)
                .map(|(_, z)| z.clone())
        })
        .or_else(|| zones.first().cloned())?;
    let capacity_type = if msg.to_ascii_lowercase().contains("spot") {
        CapacityType::Spot
    } else {
        group_capacity
    };
    Some(OfferingKey {
        instance_type,
        capacity_type,
        zone,
    })
}

/// `needle` occurs in `hay` not as part of a longer name (`us-east-1a` is not in
/// `us-east-1ab`, `g5.xlarge` is not in `g5.xlarge2`).
fn contains_word(hay: &str, needle: &str) -> bool {
    first_word_at(hay, needle).is_some()
}

/// Byte offset of the first whole-word occurrence of `needle` in `hay`.
fn first_word_at(hay: &str, needle: &str) -> Option<usize> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    hay.match_indices(needle).map(|(i, _)| i).find(|&i| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(is_name_char)
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Status messages as Auto Scaling writes them (AWS re:Post / Auto Scaling troubleshooting
    // guide "Troubleshoot Amazon EC2 Auto Scaling: EC2 instance launch failures").
    const ICE_OD: &str = "We currently do not have sufficient p5.48xlarge capacity in the \
        Availability Zone you requested (us-east-1a). Our system will be working on provisioning \
        additional capacity. You can currently get p5.48xlarge capacity by not specifying an \
        Availability Zone in your request or choosing us-east-1b, us-east-1c. Launching EC2 \
        instance failed.";
    const ICE_SPOT: &str = "Could not launch Spot Instances. InsufficientInstanceCapacity - \
        There is no Spot capacity available that matches your request. Launching EC2 instance \
        failed.";
    const VCPU: &str = "You have requested more vCPU capacity than your current vCPU limit of 32 \
        allows for the instance bucket that the specified instance type belongs to. Please visit \
        http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit. \
        Launching EC2 instance failed.";
    const OTHER: &str =
        "The security group 'sg-123' does not exist. Launching EC2 instance failed.";

    fn activity(message: &str, details: Option<&str>) -> Activity {
        Activity {
            id: "a-1".into(),
            status: Status::Failed,
            message: message.into(),
            details: details.map(str::to_owned),
            start_ms: Some(0),
        }
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(
            classify_failure(ICE_OD),
            LaunchFailure::InsufficientCapacity
        );
        assert_eq!(
            classify_failure(ICE_SPOT),
            LaunchFailure::InsufficientCapacity
        );
        assert_eq!(classify_failure(VCPU), LaunchFailure::QuotaExceeded);
        assert_eq!(
            classify_failure("Could not launch On-Demand Instances. VcpuLimitExceeded - x"),
            LaunchFailure::QuotaExceeded
        );
        assert_eq!(classify_failure(OTHER), LaunchFailure::Other);
    }

    #[test]
    fn offering_of_a_failure() {
        let types: Vec<InstanceTypeName> = vec!["p4d.24xlarge".into(), "p5.48xlarge".into()];
        let zones: Vec<Zone> = vec!["us-east-1b".into(), "us-east-1a".into()];
        let o = failed_offering(
            &activity(ICE_OD, None),
            &types,
            &zones,
            CapacityType::OnDemand,
        )
        .unwrap();
        assert_eq!(o.instance_type.as_str(), "p5.48xlarge");
        // The message names the requested zone first, then the alternatives.
        assert_eq!(o.zone.as_str(), "us-east-1a");
        let details = r#"{"Subnet ID":"subnet-2","Availability Zone":"us-east-1b"}"#;
        let o = failed_offering(
            &activity(ICE_OD, Some(details)),
            &types,
            &zones,
            CapacityType::OnDemand,
        )
        .unwrap();
        assert_eq!(
            o.zone.as_str(),
            "us-east-1b",
            "Details wins over the message"
        );
        let details = r#"{"Subnet ID":"subnet-1","Availability Zone":"us-east-1a"}"#;
        let o = failed_offering(
            &activity(ICE_OD, Some(details)),
            &types,
            &zones,
            CapacityType::OnDemand,
        )
        .unwrap();
        assert_eq!(o.zone.as_str(), "us-east-1a");
        assert_eq!(o.capacity_type, CapacityType::OnDemand);
        let o = failed_offering(
            &activity(ICE_SPOT, Some(details)),
            &types,
            &zones,
            CapacityType::OnDemand,
        )
        .unwrap();
        assert_eq!(o.capacity_type, CapacityType::Spot);
        assert_eq!(
            o.instance_type.as_str(),
            "p4d.24xlarge",
            "no type named: the primary"
        );
        assert!(
            failed_offering(&activity(ICE_OD, None), &[], &zones, CapacityType::Spot).is_none()
        );
    }

    #[test]
    fn names_match_whole_words_only() {
        assert!(contains_word("in us-east-1a.", "us-east-1a"));
        assert!(!contains_word("in us-east-1ab", "us-east-1a"));
        assert!(contains_word("(g5.xlarge)", "g5.xlarge"));
        assert!(!contains_word("g5.12xlarge", "2xlarge"));
    }

    #[test]
    fn only_running_activities_hold_the_group() {
        let mut a = activity("", None);
        assert!(!in_progress(std::slice::from_ref(&a)));
        a.status = Status::from_code("InProgress");
        assert!(in_progress(std::slice::from_ref(&a)));
        a.status = Status::from_code("MidLifecycleAction");
        assert_eq!(a.status, Status::Waiting);
        assert!(!in_progress(&[a]));
        assert_eq!(Status::from_code("Successful"), Status::Finished);
        assert_eq!(Status::from_code("Failed"), Status::Failed);
    }
}
