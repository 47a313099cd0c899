//! The per-group CloudWatch series (dimension `AutoScalingGroupName`) against moto's CloudWatch
//! (tests/support/moto.rs): the group figures of a plan, turned into datums by `gpupool run`'s
//! publisher (`controller::cloudwatch::data`, over `model::group_figures`), published
//! with `PutMetricData` and read back with `GetMetricData` by that dimension alone — what an
//! EC2 Auto Scaling policy, an alarm or the console's group monitoring tab asks for.
//! Run with `cargo test --features aws --test aws_cloudwatch_groups`.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines
#![cfg(feature = "aws")]

#[path = "support/moto.rs"]
mod moto;

use gpupool::model::{CapacityType, LifecycleState, Plan};
use gpupool::testkit::planner::{g5_od, g5_spot, instance, snapshot};
use gpupool_aws::{AwsMetrics, GROUP_DIMENSION};
use gpupool_provider::Timestamp;
use moto::Moto;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_gauges_are_published_per_auto_scaling_group() {
    let moto = Moto::start();
    let metrics = AwsMetrics::new(&moto.settings(&["llm"])).await.unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = Timestamp::from_secs(now_s - 60);

    let snap = snapshot()
        // The builder raises desired by one per live instance: 1 + 2 = 3.
        .group(g5_od().desired(1))
        .group(g5_spot().desired(1))
        .instance(
            instance("i-1", "g5-od", "g5.xlarge", CapacityType::OnDemand)
                .state(LifecycleState::Ready),
        )
        .instance(
            instance("i-2", "g5-od", "g5.xlarge", CapacityType::OnDemand)
                .state(LifecycleState::Launching),
        )
        .build();
    // Exactly what `gpupool run`'s publisher sends for this tick.
    let data = gpupool::controller::cloudwatch::data(&Plan::default(), Some(&snap), at);
    metrics.publish(&data).await.unwrap();

    let by_group = |g: &str| -> BTreeMap<String, String> {
        [(GROUP_DIMENSION.to_owned(), g.to_owned())].into()
    };
    // (group, metric, value): g5-od has 3 desired, 1 ready, 1 launching + 1 not listed yet.
    for (group, metric, want) in [
        ("g5-od", "DesiredNodes", 3.0),
        ("g5-od", "ReadyNodes", 1.0),
        ("g5-od", "PendingNodes", 2.0),
        ("g5-spot", "DesiredNodes", 1.0),
        ("g5-spot", "PendingNodes", 1.0),
    ] {
        let got = metrics
            .latest("gpupool", metric, &by_group(group), "Maximum", 60)
            .await
            .unwrap()
            .map(|(v, _)| v);
        assert_eq!(got, Some(want), "{group} {metric}");
    }
    // The series carries exactly that one dimension: asked with the pool as well, CloudWatch
    // (and moto) match no series.
    let mut with_pool = by_group("g5-od");
    with_pool.insert("Pool".into(), "llm".into());
    let none = metrics
        .latest("gpupool", "DesiredNodes", &with_pool, "Maximum", 60)
        .await
        .unwrap();
    assert_eq!(none, None);
}
