//! The run loop's CloudWatch outlet: each tick's per-pool figures as custom metrics, for
//! dashboards and alarms (`gpupool run` plugs it in when `aws.publish_cloudwatch` is set).

use crate::model::Timestamp;

/// Publishes each tick's per-pool figures to CloudWatch (namespace `gpupool`, dimension
/// `Pool`) for dashboards and alarms, and the group-level gauges per group (dimension
/// `AutoScalingGroupName`, [`crate::model::group_figures`], at most `MAX_GROUP_SERIES`
/// groups). They stop when gpupool stops, so they are no fallback; a group's `DesiredNodes`
/// is the heartbeat the Terraform module's `fallback_scaling` alarm checks. A failed publish
/// is logged and never fails the tick.
pub struct CloudWatchPublisher(gpupool_aws::AwsMetrics);

impl CloudWatchPublisher {
    pub fn new(metrics: gpupool_aws::AwsMetrics) -> Self {
        CloudWatchPublisher(metrics)
    }

    pub async fn publish(
        &self,
        plan: &crate::model::Plan,
        snapshot: Option<&crate::model::Snapshot>,
        now: Timestamp,
    ) {
        let data = data(plan, snapshot, now);
        if let Err(e) = self.0.publish(&data).await {
            tracing::warn!(error = %super::error_chain(&e), "CloudWatch PutMetricData failed");
        }
    }
}

/// One tick's datums: per group (dimension `AutoScalingGroupName`, from
/// [`crate::model::group_figures`] of `snapshot`) and per pool (dimension `Pool`). Pure: the
/// publisher sends exactly this, and the moto test publishes it too.
pub fn data(
    plan: &crate::model::Plan,
    snapshot: Option<&crate::model::Snapshot>,
    now: Timestamp,
) -> Vec<gpupool_aws::Datum> {
    use gpupool_aws::{Datum, MetricUnit};
    let mut data = Vec::new();
    for g in snapshot
        .map(|s| crate::model::group_figures::group_figures(s, plan))
        .unwrap_or_default()
    {
        for (metric, v) in [
            ("DesiredNodes", g.desired),
            ("ReadyNodes", g.ready),
            ("PendingNodes", g.pending),
            ("WarmInstances", g.warm),
        ] {
            data.push(Datum::for_group(
                metric,
                &g.group,
                f64::from(v),
                MetricUnit::Count,
                now,
            ));
        }
    }
    for s in &plan.pools {
        let mut put = |metric: &str, value: f64, unit: MetricUnit| {
            data.push(Datum {
                metric: metric.into(),
                pool: Some(s.pool.clone()),
                group: None,
                value,
                unit,
                at: now,
            });
        };
        put(
            "DesiredNodes",
            f64::from(s.desired_nodes),
            MetricUnit::Count,
        );
        put("ReadyNodes", f64::from(s.ready_nodes), MetricUnit::Count);
        put(
            "InFlightNodes",
            f64::from(s.in_flight_nodes),
            MetricUnit::Count,
        );
        put(
            "WarmInstances",
            f64::from(s.warm_instances),
            MetricUnit::Count,
        );
        put(
            "PendingGpuPods",
            f64::from(s.pending_pods),
            MetricUnit::Count,
        );
        if let Some(w) = s.wanted_replicas {
            put("WantedReplicas", f64::from(w), MetricUnit::Count);
        }
        put(
            "EstimatedCostPerHour",
            s.cost_per_hour.dollars(),
            MetricUnit::None,
        );
    }
    data
}
