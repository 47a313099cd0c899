//! The real GCP provider (Google's official Rust client underneath) against the in-process fake
//! Compute server: discovery, resize, targeted deletion, standby pools, operation errors,
//! failed creations and preemptions.

mod fake;

use fake::FakeCompute;
use gpupool_gcp::{GcpCredentials, GcpPoolSettings, GcpProvider, GcpSettings};
use gpupool_provider::{
    CapacityType, InstanceId, LaunchFailure, LifecycleState, NodeGroupId, NodeGroupProvider,
    ProviderError, ProviderEventKind,
};
use std::time::Duration;

const PROJECT: &str = "gpupool-test";
const POOL_LABELS: &[(&str, &str)] =
    &[("gpupool-io-pool", "llama"), ("gpupool-io-enabled", "true")];

fn settings(fake: &FakeCompute) -> GcpSettings {
    let mut s = GcpSettings::new(PROJECT, "us-central1");
    s.zones = vec!["us-central1-a".into(), "us-central1-b".into()];
    s.endpoint_url = Some(fake.endpoint());
    s.credentials = GcpCredentials::for_endpoint(s.endpoint_url.as_deref());
    s.api_timeout = Duration::from_secs(10);
    s.operation_deadline = Duration::from_secs(10);
    s.operation_poll_interval = Duration::from_millis(5);
    s.pools = vec![GcpPoolSettings {
        name: "llama".into(),
        max_group_size: 6,
        model_cache: Some("llama-70b@v3".into()),
    }];
    s
}

/// A spot zonal MIG of g2 (L4), a regional on-demand a2 MIG with a MANUAL standby pool, and
/// two MIGs gpupool must ignore.
async fn world() -> anyhow::Result<(FakeCompute, GcpProvider)> {
    let fake = FakeCompute::start(PROJECT).await?;
    fake.add_template(
        "llama-g2-spot",
        "g2-standard-8",
        &[("nvidia-l4", 1)],
        true,
        POOL_LABELS,
    );
    fake.add_template(
        "llama-a2",
        "a2-highgpu-1g",
        &[("nvidia-tesla-a100", 1)],
        false,
        POOL_LABELS,
    );
    fake.add_template(
        "other",
        "g2-standard-8",
        &[],
        false,
        &[("gpupool-io-pool", "other"), ("gpupool-io-enabled", "true")],
    );
    fake.add_template("plain", "n1-standard-4", &[], false, &[]);
    fake.add_mig(
        "zones/us-central1-a",
        "llama-spot",
        "llama-g2-spot",
        &["us-central1-a"],
        1,
        None,
    );
    fake.add_mig(
        "regions/us-central1",
        "llama-od",
        "llama-a2",
        &["us-central1-a", "us-central1-b"],
        1,
        Some(("MANUAL", 2)),
    );
    fake.add_mig(
        "zones/us-central1-a",
        "other-pool",
        "other",
        &["us-central1-a"],
        1,
        None,
    );
    fake.add_mig(
        "zones/us-central1-b",
        "web",
        "plain",
        &["us-central1-b"],
        3,
        None,
    );
    fake.set_warm_labels("llama-spot", &[("gpupool-io-model-cache", "llama-70b_v3")]);
    let provider = GcpProvider::new(settings(&fake)).await?;
    Ok((fake, provider))
}

fn id(s: &str) -> NodeGroupId {
    NodeGroupId::new(s)
}

#[tokio::test]
async fn discovers_labelled_zonal_and_regional_migs_with_offerings() -> anyhow::Result<()> {
    let (fake, p) = world().await?;
    let mut groups = p.node_groups().await?;
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "regions/us-central1/llama-od",
            "zones/us-central1-a/llama-spot"
        ]
    );

    let od = &groups[0];
    assert_eq!(od.pool.as_str(), "llama");
    assert_eq!(od.desired, 1, "targetSize 3 less 2 stopped");
    assert_eq!(od.max_size, 6);
    assert_eq!(od.offerings.len(), 2, "one per distribution-policy zone");
    assert!(
        od.offerings
            .iter()
            .all(|o| o.capacity_type == CapacityType::OnDemand
                && o.instance_type.gpu.model == "A100"
                && o.interruption_risk_per_hour == 0.0)
    );
    let wp = od.warm_pool.as_ref().expect("standby pool");
    assert_eq!((wp.target_size, wp.ready, wp.warming), (2, 2, 0));

    let spot = &groups[1];
    assert_eq!(spot.offerings.len(), 1);
    let o = &spot.offerings[0];
    assert_eq!(
        (o.capacity_type, o.zone.as_str()),
        (CapacityType::Spot, "us-central1-a")
    );
    assert_eq!(o.instance_type.gpu.model, "L4");
    assert!(o.interruption_risk_per_hour > 0.0 && o.price_per_hour.micros() > 0);
    assert!(spot.warm_pool.is_none());

    // Lists were paged (the fake returns two items a page) and templates read once each.
    let calls = fake.calls();
    assert!(
        calls
            .iter()
            .filter(|c| c.ends_with("/global/instanceTemplates/llama-a2"))
            .count()
            == 1
    );
    p.node_groups().await?;
    assert_eq!(
        fake.calls()
            .iter()
            .filter(|c| c.contains("/global/instanceTemplates/"))
            .count(),
        calls
            .iter()
            .filter(|c| c.contains("/global/instanceTemplates/"))
            .count(),
        "templates are immutable: never read twice"
    );

    let inst = p.instances(&id("zones/us-central1-a/llama-spot")).await?;
    assert_eq!(inst.len(), 1);
    let i = &inst[0];
    assert_eq!(i.state, LifecycleState::Ready);
    assert_eq!(
        i.model_cache.as_deref(),
        Some("llama-70b@v3"),
        "label decoded to the pool's string"
    );
    assert_eq!(
        i.provider_id.as_deref(),
        Some(format!("gce://{PROJECT}/us-central1-a/{}", i.id).as_str())
    );
    assert!(i.private_ip.is_some() && i.launched_at.millis() > 0);
    Ok(())
}

#[tokio::test]
async fn increase_resizes_and_polls_the_operation_then_terminate_deletes_exactly()
-> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("zones/us-central1-a/llama-spot");
    p.increase(&g, 2).await?;
    assert_eq!(fake.mig("llama-spot").unwrap().target_size, 3);
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.starts_with("GET")
                && c.contains("/zones/us-central1-a/operations/operation-")),
        "the resize operation is read back until DONE: {:?}",
        fake.calls()
    );
    let launching = p.instances(&g).await?;
    assert_eq!(
        launching
            .iter()
            .filter(|i| i.state == LifecycleState::Launching)
            .count(),
        2
    );
    fake.advance();
    let ready = p.instances(&g).await?;
    assert_eq!(
        ready
            .iter()
            .filter(|i| i.state == LifecycleState::Ready)
            .count(),
        3
    );

    // Above the pool's maximum: refused before any call changes anything.
    let err = p.increase(&g, 4).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidConfig(_)), "{err}");
    assert_eq!(fake.mig("llama-spot").unwrap().target_size, 3);

    let victim = ready[1].id.clone();
    p.terminate(&g, &[victim.clone(), InstanceId::new("already-gone")])
        .await?;
    let m = fake.mig("llama-spot").unwrap();
    assert_eq!(m.target_size, 2, "deleteInstances lowers the target by one");
    let body = fake.delete_bodies().pop().unwrap();
    assert_eq!(body["skipInstancesOnValidationError"], true);
    assert_eq!(
        body["instances"].as_array().unwrap().len(),
        1,
        "only the VM that exists: {body}"
    );
    assert!(
        body["instances"][0]
            .as_str()
            .unwrap()
            .ends_with(&format!("/zones/us-central1-a/instances/{victim}"))
    );
    let after = p.instances(&g).await?;
    assert_eq!(
        after.iter().find(|i| i.id == victim).map(|i| i.state),
        Some(LifecycleState::Terminating)
    );
    fake.advance();
    assert!(p.instances(&g).await?.iter().all(|i| i.id != victim));
    // Terminating something already gone is success.
    p.terminate(&g, &[victim]).await?;
    Ok(())
}

#[tokio::test]
async fn manual_standby_pool_starts_stopped_vms_before_creating_new_ones() -> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("regions/us-central1/llama-od");
    let before = p.instances(&g).await?;
    assert_eq!(
        before
            .iter()
            .filter(|i| i.state == LifecycleState::Warm)
            .count(),
        2
    );

    p.increase(&g, 1).await?;
    let m = fake.mig("llama-od").unwrap();
    assert_eq!(
        (m.target_size, m.target_stopped_size),
        (3, 1),
        "one standby VM moved to running"
    );
    let now = p.instances(&g).await?;
    assert_eq!(now.len(), 3, "no VM created");
    assert_eq!(
        now.iter()
            .filter(|i| i.state == LifecycleState::Starting)
            .count(),
        1
    );
    fake.advance();
    let now = p.instances(&g).await?;
    assert_eq!(
        now.iter()
            .filter(|i| i.state == LifecycleState::Ready)
            .count(),
        2
    );
    assert_eq!(
        now.iter()
            .filter(|i| i.state == LifecycleState::Warm)
            .count(),
        1
    );

    // Refill the standby pool to 3: two new VMs, warming until the MIG stops them.
    p.set_warm_pool_size(&g, 3).await?;
    let m = fake.mig("llama-od").unwrap();
    assert_eq!(
        (m.target_size, m.target_stopped_size),
        (5, 3),
        "running VMs untouched"
    );
    let groups = p.node_groups().await?;
    let od = groups.iter().find(|x| x.id == g).unwrap();
    assert_eq!(od.desired, 2);
    let wp = od.warm_pool.as_ref().unwrap();
    assert_eq!((wp.target_size, wp.ready, wp.warming), (3, 1, 2));
    fake.settle();
    let groups = p.node_groups().await?;
    let wp = groups
        .iter()
        .find(|x| x.id == g)
        .unwrap()
        .warm_pool
        .clone()
        .unwrap();
    assert_eq!((wp.ready, wp.warming), (3, 0));
    assert_eq!(fake.count("llama-od", "RUNNING"), 2);
    Ok(())
}

#[tokio::test]
async fn scale_out_pool_mode_resize_starts_standby_vms_first() -> anyhow::Result<()> {
    let fake = FakeCompute::start(PROJECT).await?;
    fake.add_template(
        "llama-a2",
        "a2-highgpu-1g",
        &[("nvidia-tesla-a100", 1)],
        false,
        POOL_LABELS,
    );
    fake.add_mig(
        "zones/us-central1-b",
        "pool-out",
        "llama-a2",
        &["us-central1-b"],
        0,
        Some(("SCALE_OUT_POOL", 2)),
    );
    let p = GcpProvider::new(settings(&fake)).await?;
    p.node_groups().await?;
    let g = id("zones/us-central1-b/pool-out");
    p.increase(&g, 1).await?;
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.ends_with("/instanceGroupManagers/pool-out/resize"))
    );
    let inst = p.instances(&g).await?;
    assert_eq!(
        inst.iter()
            .filter(|i| i.state == LifecycleState::Starting)
            .count(),
        1
    );
    // The MIG refills its standby pool with a new VM, which is warming, not serving capacity.
    assert_eq!(
        inst.iter()
            .filter(|i| i.state == LifecycleState::Warming)
            .count(),
        1
    );
    assert_eq!(
        inst.iter()
            .filter(|i| i.state == LifecycleState::Launching)
            .count(),
        0
    );
    Ok(())
}

#[tokio::test]
async fn operation_errors_map_to_capacity_and_quota() -> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    fake.fail_next(
        "llama-od",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "The zone 'projects/gpupool-test/zones/us-central1-b' does not have enough resources available to fulfill the request.",
    );
    // MANUAL standby with stopped VMs: the call is a patch; it fails all the same.
    let err = p
        .increase(&id("regions/us-central1/llama-od"), 1)
        .await
        .unwrap_err();
    match err {
        ProviderError::InsufficientCapacity { offering } => {
            assert_eq!(
                offering.zone.as_str(),
                "us-central1-b",
                "zone taken from the message"
            );
            assert_eq!(offering.instance_type.as_str(), "a2-highgpu-1g");
            assert_eq!(offering.capacity_type, CapacityType::OnDemand);
        }
        other => panic!("expected InsufficientCapacity, got {other:?}"),
    }
    fake.fail_next(
        "llama-spot",
        "QUOTA_EXCEEDED",
        "Quota 'NVIDIA_L4_GPUS' exceeded. Limit: 1.0 in region us-central1.",
    );
    let err = p
        .increase(&id("zones/us-central1-a/llama-spot"), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::QuotaExceeded { .. }),
        "{err:?}"
    );
    // A group that does not exist: the API's 404 becomes NotFound.
    let err = p
        .instances(&id("zones/us-central1-a/nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn failed_creations_become_one_launch_failed_event_each() -> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("zones/us-central1-a/llama-spot");
    fake.stockout("us-central1-a", "g2-standard-8");
    p.increase(&g, 1).await?;
    fake.advance();
    p.instances(&g).await?;
    let events = p.poll_events().await?;
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            ProviderEventKind::LaunchFailed {
                group,
                offering,
                error,
                ..
            } => Some((group, offering, error)),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    let (group, offering, error) = failed[0];
    assert_eq!(group, &g);
    assert_eq!(*error, LaunchFailure::InsufficientCapacity);
    assert_eq!(
        (offering.zone.as_str(), offering.capacity_type),
        ("us-central1-a", CapacityType::Spot)
    );
    // The MIG retries the same VM; the same error is not reported twice.
    fake.advance();
    p.instances(&g).await?;
    assert!(
        p.poll_events()
            .await?
            .iter()
            .all(|e| !matches!(e.kind, ProviderEventKind::LaunchFailed { .. }))
    );
    Ok(())
}

#[tokio::test]
async fn preemption_operations_become_spot_interruptions_once() -> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("zones/us-central1-a/llama-spot");
    let vm = p.instances(&g).await?[0].id.clone();
    assert!(p.poll_events().await?.is_empty());
    let op = fake.preempt(vm.as_str()).expect("vm exists");
    let inserted = fake.operation(&op).expect("operation recorded")["insertTime"]
        .as_str()
        .and_then(gpupool_gcp::util::parse_rfc3339)
        .expect("insertTime is RFC 3339");
    let events = p.poll_events().await?;
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0].kind {
        ProviderEventKind::SpotInterruption { instance, deadline } => {
            assert_eq!(instance, &vm);
            assert_eq!(
                *deadline,
                inserted.plus_secs(30.0),
                "GCP's 30 s notice from the operation time"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(events[0].ack.is_none());
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.starts_with("GET") && c.ends_with("/zones/us-central1-a/operations")),
        "zoneOperations.list polled"
    );
    assert!(
        p.poll_events().await?.is_empty(),
        "deduplicated by operation id"
    );
    // The preempted VM is being recreated by its MIG.
    let states: Vec<_> = p
        .instances(&g)
        .await?
        .into_iter()
        .filter(|i| i.id == vm)
        .map(|i| i.state)
        .collect();
    assert_eq!(states, vec![LifecycleState::Launching]);
    Ok(())
}
