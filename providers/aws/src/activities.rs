//! Reading Auto Scaling *scaling activities*: whether a change is still running, which launch
//! the group could not carry out and why. Pure functions over plain values, tested without a
//! server.
//!
//! Auto Scaling launches asynchronously: `SetDesiredCapacity` succeeds, and a stockout or a
//! quota shows up minutes later as a *failed activity* whose only machine-facing fields are
//! `StatusCode = Failed` and a `StatusMessage`, while the group's desired capacity stays raised
//! with nothing behind it. There is no error code field on an activity, so the message is the
//! only evidence; in practice it embeds the EC2 error code after a fixed prefix
//! (`Could not launch Spot Instances. UnfulfillableCapacity - Unable to fulfill capacity …`)
//! or is AWS's fixed sentence for it (`We currently do not have sufficient p5.48xlarge capacity
//! in the Availability Zone you requested (us-east-1a)…`, `You have requested more vCPU
//! capacity than your current vCPU limit of 32 allows…`). [`classify_failure`] reads the code
//! first and the sentences only when there is no code.
//!
//! [`outstanding_failure`] decides when such a failure still stands for capacity that will not
//! come, the way Cluster Autoscaler's AWS provider does
//! (`cluster-autoscaler/cloudprovider/aws/auto_scaling_groups.go`:
//! `createPlaceholdersForDesiredNonStartedInstances` counts `desired − len(instances)` as
//! placeholders and `isNodeGroupAvailable` marks them unfulfillable when a `Failed` activity
//! started after CA's own last size change of the group).

use gpupool_provider::{
    CapacityType, InstanceTypeName, LaunchFailure, OfferingKey, Timestamp, UnfulfilledLaunch, Zone,
};

/// A scaling activity, reduced to what gpupool reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    pub id: String,
    pub status: Status,
    pub message: String,
    /// The activity's `Description`: `Launching a new EC2 instance: i-…`, `Launching a new EC2
    /// instance.  Status Reason: …` (failed), `Terminating EC2 instance: i-…`.
    pub description: String,
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

/// Whether the group cannot take a change of size now: only while it is being deleted. The
/// `AutoScalingGroup.Status` field is "the current state of the group when the
/// DeleteAutoScalingGroup operation is in progress" (Auto Scaling API reference) and is absent
/// otherwise.
///
/// A launch or termination still running is *not* a reason: `SetDesiredCapacity` takes a new
/// size while the group carries out the last one (Cluster Autoscaler sets it with no check of
/// activities, `cloudprovider/aws/auto_scaling_groups.go` `setAsgSizeNoLock`), and the
/// planner already counts a raised desired capacity that lists no instance yet as capacity on
/// its way, so a second raise is not a double launch. Holding the group until every launch
/// activity ended (a minute or more per launch without a lifecycle hook) left a pool with one
/// group unable to follow a burst that grows over several ticks.
pub fn busy(group_status: Option<&str>) -> bool {
    group_status.is_some_and(|s| !s.trim().is_empty())
}

/// EC2 error codes as Auto Scaling embeds them in a failed launch's status message, after
/// `Could not launch Spot Instances. ` / `Could not launch On-Demand Instances. ` and before
/// ` - <EC2's message>`. The set is Karpenter's "unfulfillable capacity" codes
/// (`karpenter-provider-aws` `pkg/errors/errors.go`: InsufficientInstanceCapacity,
/// MaxSpotInstanceCountExceeded, VcpuLimitExceeded, UnfulfillableCapacity, Unsupported) plus
/// InstanceLimitExceeded, EC2's older per-type instance quota.
const CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    // EC2 Fleet's code for "no capacity in any pool the request allows"; for a spot group it is
    // a stockout of every type × zone the group may use (AWS re:Post knowledge center
    // "eks-troubleshoot-spot-instances": "Could not launch Spot Instances.
    // UnfulfillableCapacity - Unable to fulfill capacity due to your request configuration.
    // Please adjust your request and try again. Launching EC2 instance failed.").
    "UnfulfillableCapacity",
];
const QUOTA_CODES: &[&str] = &[
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "InstanceLimitExceeded",
];
/// The type is not offered in the requested zone ("Could not launch On-Demand Instances.
/// Unsupported - Your requested instance type (g4dn.xlarge) is not supported in your requested
/// Availability Zone (ca-central-1d). Please retry your request by not specifying an
/// Availability Zone or choosing ca-central-1a, ca-central-1b. Launching EC2 instance
/// failed.", as quoted from an Auto Scaling activity in public EKS troubleshooting notes).
const UNSUPPORTED_CODE: &str = "Unsupported";

/// The EC2 error code a failed launch's message names, if it has the `<Code> - ` shape after
/// the "Could not launch … Instances." prefix (or at the start).
fn embedded_code(message: &str) -> Option<&str> {
    let rest = match message.find("Instances. ") {
        Some(i) => &message[i + "Instances. ".len()..],
        None => message,
    };
    let (code, _) = rest.split_once(" - ")?;
    let code = code.trim();
    (!code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
        .then_some(code)
}

/// Why a failed launch failed (see the module docs for the evidence used). The EC2 error code
/// decides when the message carries one; otherwise AWS's fixed sentences for the on-demand
/// stockout, the vCPU / instance limits and the unsupported zone do.
pub fn classify_failure(message: &str) -> LaunchFailure {
    if let Some(code) = embedded_code(message) {
        if CAPACITY_CODES.contains(&code) {
            return LaunchFailure::InsufficientCapacity;
        }
        if QUOTA_CODES.contains(&code) {
            return LaunchFailure::QuotaExceeded;
        }
        if code == UNSUPPORTED_CODE {
            return LaunchFailure::Unsupported;
        }
    }
    let m = message.to_ascii_lowercase();
    let capacity = m.contains("insufficientinstancecapacity")
        || m.contains("unfulfillablecapacity")
        || m.contains("insufficient capacity")
        || m.contains("spot capacity not available")
        || m.contains("no spot capacity available")
        || (m.contains("do not have sufficient") && m.contains("capacity"));
    let quota = m.contains("vcpulimitexceeded")
        || m.contains("instancelimitexceeded")
        || m.contains("maxspotinstancecountexceeded")
        || m.contains("max spot instance count exceeded")
        || m.contains("vcpu limit")
        || m.contains("instance limit")
        || m.contains("request an adjustment to this limit");
    let unsupported = m.contains("is not supported in your requested availability zone");
    if capacity {
        LaunchFailure::InsufficientCapacity
    } else if quota {
        LaunchFailure::QuotaExceeded
    } else if unsupported {
        LaunchFailure::Unsupported
    } else {
        LaunchFailure::Other
    }
}

impl Activity {
    /// A launch into the group itself (not into its warm pool, not a termination). Auto
    /// Scaling's descriptions start with "Launching a new EC2 instance"; a launch that fills the
    /// warm pool says "into warm pool" and does not stand for desired capacity (warm instances
    /// are not counted in it: Auto Scaling user guide, "Warm pools", core concepts). When the
    /// description is empty the message's closing "Launching EC2 instance failed." decides.
    /// Assumption (the API reference does not list the descriptions): the texts above, seen in
    /// `aws autoscaling describe-scaling-activities` output.
    pub fn is_group_launch(&self) -> bool {
        let d = self.description.to_ascii_lowercase();
        if d.is_empty() {
            return self.message.contains("Launching EC2 instance failed");
        }
        d.starts_with("launching") && !d.contains("warm pool")
    }
}

/// The group's launch that the cloud accepted and reports it cannot fulfil, while it is
/// outstanding: the newest launch activity of the group failed, it started no earlier than
/// this provider's own last increase of the group (`last_increase_ms`; `None` after a restart:
/// any failure counts), and the group wants more instances than it lists (`desired > listed`,
/// listed = instances pending or in service, not warm-pool members, not leaving). `count` is
/// `desired − listed`. `now_ms` stands for the activity's start time when the API gave none.
///
/// An older failure never poisons a newer request: once gpupool raised the group again, only
/// an activity started since then speaks for it (Cluster Autoscaler's `lastUpdateTime` rule).
/// A launch still running (`InProgress` and the spot-request states) is newer than the failure
/// and means the group is trying again: nothing is reported.
#[allow(clippy::too_many_arguments)]
pub fn outstanding_failure(
    activities: &[Activity],
    last_increase_ms: Option<i64>,
    desired: u32,
    listed: u32,
    types: &[InstanceTypeName],
    zones: &[Zone],
    capacity: CapacityType,
    now_ms: i64,
) -> Option<UnfulfilledLaunch> {
    if desired <= listed {
        return None;
    }
    // DescribeScalingActivities lists the newest first; sort anyway so the rule does not rest
    // on the order of a page. Among equal start times the first listed wins.
    let newest = activities
        .iter()
        .filter(|a| a.is_group_launch())
        .enumerate()
        .max_by_key(|(i, a)| (a.start_ms.unwrap_or(now_ms), std::cmp::Reverse(*i)))
        .map(|(_, a)| a)?;
    if newest.status != Status::Failed {
        return None;
    }
    let started = newest.start_ms.unwrap_or(now_ms);
    if last_increase_ms.is_some_and(|t| started < t) {
        return None;
    }
    let offering = failed_offering(newest, types, zones, capacity)?;
    Some(UnfulfilledLaunch {
        offering,
        failure: classify_failure(&newest.message),
        count: desired - listed,
        message: newest.message.clone(),
        at: Timestamp::from_millis(started),
        instances: Vec::new(),
    })
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
    // guide "Troubleshoot Amazon EC2 Auto Scaling: EC2 instance launch failures"; the spot ones
    // from AWS re:Post knowledge center "eks-troubleshoot-spot-instances" and a
    // `describe-scaling-activities` output quoted in public EKS notes).
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
    const UNFULFILLABLE: &str = "Could not launch Spot Instances. UnfulfillableCapacity - Unable \
        to fulfill capacity due to your request configuration. Please adjust your request and try \
        again. Launching EC2 instance failed.";
    const UNFULFILLABLE_2021: &str = "Could not launch Spot Instances. UnfulfillableCapacity - \
        There is no capacity available that matches your request. Launching EC2 instance failed.";
    const MAX_SPOT: &str = "Could not launch Spot Instances. MaxSpotInstanceCountExceeded - Max \
        spot instance count exceeded. Launching EC2 instance failed.";
    const VCPU_OD: &str = "Could not launch On-Demand Instances. VcpuLimitExceeded - You have \
        requested more vCPU capacity than your current vCPU limit of 0 allows for the instance \
        bucket that the specified instance type belongs to. Please visit \
        http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit. \
        Launching EC2 instance failed.";
    const UNSUPPORTED: &str = "Could not launch On-Demand Instances. Unsupported - Your requested \
        instance type (g4dn.xlarge) is not supported in your requested Availability Zone \
        (ca-central-1d). Please retry your request by not specifying an Availability Zone or \
        choosing ca-central-1a, ca-central-1b. Launching EC2 instance failed.";
    // A configuration error with the same shape: the code decides, not the word "capacity".
    const BAD_PARAMS: &str = "Could not launch Spot Instances. InvalidParameterCombination - The \
        specified instance type is not eligible for Free Tier. Launching EC2 instance failed.";

    fn activity(message: &str, details: Option<&str>) -> Activity {
        Activity {
            id: "a-1".into(),
            status: Status::Failed,
            message: message.into(),
            description: format!("Launching a new EC2 instance.  Status Reason: {message}"),
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
        for m in [UNFULFILLABLE, UNFULFILLABLE_2021] {
            assert_eq!(
                classify_failure(m),
                LaunchFailure::InsufficientCapacity,
                "{m}"
            );
        }
        assert_eq!(classify_failure(MAX_SPOT), LaunchFailure::QuotaExceeded);
        assert_eq!(classify_failure(VCPU_OD), LaunchFailure::QuotaExceeded);
        assert_eq!(classify_failure(UNSUPPORTED), LaunchFailure::Unsupported);
        assert_eq!(classify_failure(BAD_PARAMS), LaunchFailure::Other);
        assert_eq!(
            classify_failure("Max spot instance count exceeded"),
            LaunchFailure::QuotaExceeded,
            "the sentence without the code prefix"
        );
    }

    #[test]
    fn unsupported_names_the_requested_zone() {
        let types: Vec<InstanceTypeName> = vec!["g4dn.xlarge".into()];
        let zones: Vec<Zone> = vec!["ca-central-1a".into(), "ca-central-1d".into()];
        let o = failed_offering(
            &activity(UNSUPPORTED, None),
            &types,
            &zones,
            CapacityType::OnDemand,
        )
        .unwrap();
        assert_eq!(
            o.zone.as_str(),
            "ca-central-1d",
            "requested zone, not an alternative"
        );
        assert_eq!(o.capacity_type, CapacityType::OnDemand);
    }

    fn at(message: &str, status: Status, start_ms: i64) -> Activity {
        Activity {
            id: format!("a-{start_ms}"),
            status,
            message: message.into(),
            description: "Launching a new EC2 instance.  Status Reason: x".into(),
            details: Some(r#"{"Subnet ID":"subnet-1","Availability Zone":"us-east-1a"}"#.into()),
            start_ms: Some(start_ms),
        }
    }

    #[test]
    fn an_outstanding_failure_stands_for_desired_minus_listed() {
        let types: Vec<InstanceTypeName> = vec!["g5.xlarge".into(), "g5.2xlarge".into()];
        let zones: Vec<Zone> = vec!["us-east-1a".into(), "us-east-1b".into()];
        let spot = CapacityType::Spot;
        let acts = vec![at(UNFULFILLABLE, Status::Failed, 5_000)];
        let u = outstanding_failure(&acts, Some(4_000), 3, 1, &types, &zones, spot, 9_000)
            .expect("newest launch failed after our increase");
        assert_eq!(u.count, 2);
        assert_eq!(u.failure, LaunchFailure::InsufficientCapacity);
        assert_eq!(u.at, Timestamp::from_millis(5_000));
        assert_eq!(u.offering.instance_type.as_str(), "g5.xlarge");
        assert_eq!(u.offering.zone.as_str(), "us-east-1a");
        assert_eq!(u.offering.capacity_type, CapacityType::Spot);
        assert!(u.instances.is_empty());
        // After a restart nothing is known of our increases: the failure still counts.
        assert!(outstanding_failure(&acts, None, 3, 1, &types, &zones, spot, 9_000).is_some());
        // An old failure does not poison a newer request.
        assert!(
            outstanding_failure(&acts, Some(6_000), 3, 1, &types, &zones, spot, 9_000).is_none()
        );
        // Everything requested is there (or was taken back): nothing outstanding.
        assert!(
            outstanding_failure(&acts, Some(4_000), 1, 1, &types, &zones, spot, 9_000).is_none()
        );
        // The group retries: a newer launch is running.
        let retrying = vec![
            at("", Status::Running, 7_000),
            at(UNFULFILLABLE, Status::Failed, 5_000),
        ];
        assert!(
            outstanding_failure(&retrying, Some(4_000), 3, 1, &types, &zones, spot, 9_000)
                .is_none()
        );
        // A newer successful launch (partly fulfilled) also ends it; listing order does not
        // matter, start times do.
        let recovered = vec![
            at(UNFULFILLABLE, Status::Failed, 5_000),
            at("", Status::Finished, 8_000),
        ];
        assert!(
            outstanding_failure(&recovered, Some(4_000), 3, 2, &types, &zones, spot, 9_000)
                .is_none()
        );
        // Terminations and warm-pool fills are not launches of the group.
        let mut term = at("", Status::Finished, 8_000);
        term.description = "Terminating EC2 instance: i-0abc".into();
        let mut warm = at("", Status::Finished, 8_500);
        warm.description = "Launching a new EC2 instance into warm pool: i-0def".into();
        let acts = vec![term, warm, at(MAX_SPOT, Status::Failed, 5_000)];
        let u = outstanding_failure(&acts, Some(4_000), 2, 0, &types, &zones, spot, 9_000).unwrap();
        assert_eq!(u.failure, LaunchFailure::QuotaExceeded);
        assert_eq!(u.count, 2);
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
    fn only_a_group_being_deleted_is_busy() {
        assert!(!busy(None));
        assert!(!busy(Some("")));
        assert!(busy(Some("Delete in progress")));
        // Activities are classified for the failure rule, not to hold the group.
        assert_eq!(Status::from_code("InProgress"), Status::Running);
        assert_eq!(Status::from_code("MidLifecycleAction"), Status::Waiting);
        assert_eq!(Status::from_code("Successful"), Status::Finished);
        assert_eq!(Status::from_code("Failed"), Status::Failed);
    }
}
