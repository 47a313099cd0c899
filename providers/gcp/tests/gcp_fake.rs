//! The real GCP provider (Google's official Rust client underneath) against the in-process fake
//! Compute server: discovery, resize, targeted deletion, standby pools (start/resume by name
//! before resizing, pool size through targetStoppedSize/targetSuspendedSize, SCALE_OUT_POOL),
//! operation errors, stuck creations reported as unfulfilled and released, preemptions, and the
//! VM-only drain label (instances.get + setLabels with the label fingerprint).
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

use gpupool_gcp_fake as fake;

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
    s.pools = vec![
        GcpPoolSettings::new("llama".into())
            .with_max_group_size(6)
            .with_model_cache(Some("llama-70b@v3".into())),
    ];
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
    assert_eq!(od.desired, 1, "targetSize counts the running VM only");
    assert!(od.unfulfilled.is_empty());
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
    assert!(
        o.interruption_risk_per_hour > 0.0
            && o.price_per_hour.known().is_some_and(|m| m.micros() > 0)
    );
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

fn count(inst: &[gpupool_provider::Instance], state: LifecycleState) -> usize {
    inst.iter().filter(|i| i.state == state).count()
}

/// Position of the first call whose path ends with `suffix`.
fn call_index(fake: &FakeCompute, suffix: &str) -> Option<usize> {
    fake.calls().iter().position(|c| c.ends_with(suffix))
}

#[tokio::test]
async fn manual_standby_vms_are_started_by_name_before_the_resize() -> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("regions/us-central1/llama-od");
    let before = p.instances(&g).await?;
    assert_eq!(count(&before, LifecycleState::Warm), 2);
    let stopped: Vec<String> = fake
        .mig("llama-od")
        .unwrap()
        .vms
        .iter()
        // A stopped VM's instanceStatus is TERMINATED (Compute Engine instance lifecycle).
        .filter(|v| v.status == "TERMINATED")
        .map(|v| v.name.clone())
        .collect();

    // Three more running VMs: both standby VMs by name, then one new VM.
    p.increase(&g, 3).await?;
    let calls = fake.standby_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, "startInstances");
    let mut named = gpupool_gcp_fake::instance_names(&calls[0].1);
    named.sort();
    assert_eq!(named, stopped, "the stopped VMs, by name");
    let start = call_index(&fake, "/instanceGroupManagers/llama-od/startInstances").unwrap();
    let resize = call_index(&fake, "/instanceGroupManagers/llama-od/resize").unwrap();
    assert!(start < resize, "standby VMs start before the resize");
    let m = fake.mig("llama-od").unwrap();
    assert_eq!(
        (m.target_size, m.target_stopped_size),
        (4, 0),
        "startInstances moved 2 from the standby target to targetSize, the resize added 1"
    );
    let now = p.instances(&g).await?;
    assert_eq!(now.len(), 4, "one VM created");
    assert_eq!(count(&now, LifecycleState::Starting), 2);
    assert_eq!(count(&now, LifecycleState::Launching), 1);
    assert_eq!(count(&now, LifecycleState::Ready), 1);
    fake.advance();
    assert_eq!(count(&p.instances(&g).await?, LifecycleState::Ready), 4);

    // A resize alone in MANUAL mode would have created new VMs: with no standby VM left, the
    // next increase is a resize and nothing else.
    p.increase(&g, 1).await?;
    assert_eq!(fake.standby_calls().len(), 1);
    assert_eq!(fake.mig("llama-od").unwrap().target_size, 5);
    Ok(())
}

#[tokio::test]
async fn the_standby_pool_is_sized_through_target_stopped_size_only() -> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("regions/us-central1/llama-od");
    p.set_warm_pool_size(&g, 4).await?;
    let m = fake.mig("llama-od").unwrap();
    assert_eq!(
        (m.target_size, m.target_stopped_size),
        (1, 4),
        "running VMs untouched"
    );
    // The two new standby VMs initialise before they are stopped: warming, not serving.
    let groups = p.node_groups().await?;
    let od = groups.iter().find(|x| x.id == g).unwrap();
    assert_eq!(od.desired, 1);
    let wp = od.warm_pool.as_ref().unwrap();
    assert_eq!((wp.target_size, wp.ready, wp.warming), (4, 2, 2));
    let inst = p.instances(&g).await?;
    assert_eq!(count(&inst, LifecycleState::Warming), 2);
    assert_eq!(count(&inst, LifecycleState::Ready), 1);
    fake.settle();
    let groups = p.node_groups().await?;
    let wp = groups
        .iter()
        .find(|x| x.id == g)
        .unwrap()
        .warm_pool
        .clone()
        .unwrap();
    assert_eq!((wp.ready, wp.warming), (4, 0));
    assert_eq!(fake.count("llama-od", "RUNNING"), 1);
    assert_eq!(fake.count("llama-od", "TERMINATED"), 4);

    // Shrinking the pool lowers targetStoppedSize; the running target stays.
    p.set_warm_pool_size(&g, 1).await?;
    let m = fake.mig("llama-od").unwrap();
    assert_eq!((m.target_size, m.target_stopped_size), (1, 1));
    fake.settle();
    assert_eq!(fake.count("llama-od", "TERMINATED"), 1);
    assert_eq!(fake.count("llama-od", "RUNNING"), 1);
    // Same size again: no call.
    let n = fake.calls().len();
    p.set_warm_pool_size(&g, 1).await?;
    assert!(
        !fake.calls()[n..].iter().any(|c| c.starts_with("PATCH")),
        "{:?}",
        &fake.calls()[n..]
    );
    Ok(())
}

#[tokio::test]
async fn a_suspended_pool_is_resumed_by_name_and_sized_through_target_suspended_size()
-> anyhow::Result<()> {
    let (fake, p) = world().await?;
    fake.suspend_standby("llama-od", 2);
    p.node_groups().await?;
    let g = id("regions/us-central1/llama-od");
    p.increase(&g, 1).await?;
    let calls = fake.standby_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, "resumeInstances");
    assert_eq!(gpupool_gcp_fake::instance_names(&calls[0].1).len(), 1);
    assert!(
        call_index(&fake, "/instanceGroupManagers/llama-od/resize").is_none(),
        "fully served from the pool: no resize"
    );
    let m = fake.mig("llama-od").unwrap();
    assert_eq!(
        (
            m.target_size,
            m.target_stopped_size,
            m.target_suspended_size
        ),
        (2, 0, 1)
    );
    let groups = p.node_groups().await?;
    let wp = groups.iter().find(|x| x.id == g).unwrap().warm_pool.clone();
    assert_eq!(wp.map(|w| (w.target_size, w.ready)), Some((1, 1)));
    p.set_warm_pool_size(&g, 2).await?;
    let m = fake.mig("llama-od").unwrap();
    assert_eq!(
        (
            m.target_size,
            m.target_stopped_size,
            m.target_suspended_size
        ),
        (2, 0, 2),
        "a suspended pool grows through targetSuspendedSize"
    );
    fake.settle();
    assert_eq!(fake.count("llama-od", "SUSPENDED"), 2);
    assert_eq!(fake.count("llama-od", "RUNNING"), 2);
    Ok(())
}

#[tokio::test]
async fn scale_out_pool_mode_is_a_plain_resize_the_mig_serves_from_standby() -> anyhow::Result<()> {
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
    assert!(call_index(&fake, "/instanceGroupManagers/pool-out/resize").is_some());
    assert!(
        fake.standby_calls().is_empty(),
        "the MIG starts standby VMs itself in SCALE_OUT_POOL mode; naming them would lower \
         targetStoppedSize and stop it from refilling the pool"
    );
    let m = fake.mig("pool-out").unwrap();
    assert_eq!((m.target_size, m.target_stopped_size), (1, 2));
    let inst = p.instances(&g).await?;
    assert_eq!(count(&inst, LifecycleState::Starting), 1);
    // The MIG refills its standby pool with a new VM, which is warming, not serving capacity.
    assert_eq!(count(&inst, LifecycleState::Warming), 1);
    assert_eq!(count(&inst, LifecycleState::Launching), 0);
    fake.settle();
    assert_eq!(fake.count("pool-out", "RUNNING"), 1);
    assert_eq!(fake.count("pool-out", "TERMINATED"), 2);
    Ok(())
}

#[tokio::test]
async fn operation_errors_map_onto_provider_errors() -> anyhow::Result<()> {
    // MIG stockouts do not arrive this way (see the stuck-creation test below); an operation
    // can still end in an error, and its code decides the variant.
    let (fake, p) = world().await?;
    p.node_groups().await?;
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
    fake.fail_next("llama-spot", "INTERNAL_ERROR", "Internal error.");
    let err = p
        .increase(&id("zones/us-central1-a/llama-spot"), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    // A group that does not exist: the API's 404 becomes NotFound.
    let err = p
        .instances(&id("zones/us-central1-a/nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn stuck_creations_are_unfulfilled_at_once_and_released_by_deleting_them()
-> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("zones/us-central1-a/llama-spot");
    fake.stockout("us-central1-a", "g2-standard-8");
    p.increase(&g, 2).await?;
    let spot = |groups: Vec<gpupool_provider::NodeGroup>| {
        groups.into_iter().find(|x| x.id == g).expect("spot group")
    };
    // Accepted; the MIG has not tried yet: on its way, nothing unfulfilled.
    assert!(spot(p.node_groups().await?).unfulfilled.is_empty());

    fake.advance();
    let stuck = fake.stuck("llama-spot");
    assert_eq!(stuck.len(), 2);
    let group = spot(p.node_groups().await?);
    assert_eq!(
        group.desired, 3,
        "targetSize stays raised while the MIG retries"
    );
    assert_eq!(group.unfulfilled.len(), 1, "{:?}", group.unfulfilled);
    let u = &group.unfulfilled[0];
    assert_eq!(u.failure, LaunchFailure::InsufficientCapacity);
    assert_eq!(
        (
            u.offering.instance_type.as_str(),
            u.offering.capacity_type,
            u.offering.zone.as_str()
        ),
        ("g2-standard-8", CapacityType::Spot, "us-central1-a")
    );
    assert_eq!(u.count, 2);
    let mut names: Vec<String> = u.instances.iter().map(|i| i.to_string()).collect();
    names.sort();
    assert_eq!(names, stuck);
    assert!(
        u.message
            .starts_with("ZONE_RESOURCE_POOL_EXHAUSTED: The zone"),
        "{}",
        u.message
    );
    let first_at = u.at;
    assert!(first_at.millis() > 0);

    // The stuck VMs are still listed, as launching: the planner leaves them out by name.
    let inst = p.instances(&g).await?;
    for n in &stuck {
        assert_eq!(
            inst.iter().find(|i| i.id.as_str() == n).map(|i| i.state),
            Some(LifecycleState::Launching)
        );
    }
    // One path only: no LaunchFailed events besides.
    assert!(
        p.poll_events()
            .await?
            .iter()
            .all(|e| !matches!(e.kind, ProviderEventKind::LaunchFailed { .. }))
    );
    // The MIG retries; the failure keeps the time it was first seen.
    fake.advance();
    let again = spot(p.node_groups().await?);
    assert_eq!(again.unfulfilled[0].at, first_at);

    let released = p.release_unfulfilled(&g, u.count, &u.instances).await?;
    assert_eq!(released, 2);
    let body = fake.delete_bodies().pop().unwrap();
    assert_eq!(body["skipInstancesOnValidationError"], true);
    let mut deleted = gpupool_gcp_fake::instance_names(&body);
    deleted.sort();
    assert_eq!(deleted, stuck, "exactly the stuck VMs");
    assert_eq!(
        fake.mig("llama-spot").unwrap().target_size,
        1,
        "deleteInstances took the request back"
    );
    assert!(spot(p.node_groups().await?).unfulfilled.is_empty());
    // Idempotent: asking again takes back nothing and deletes nothing.
    let n = fake.delete_bodies().len();
    assert_eq!(p.release_unfulfilled(&g, u.count, &u.instances).await?, 0);
    assert_eq!(fake.delete_bodies().len(), n);
    assert_eq!(
        fake.count("llama-spot", "RUNNING"),
        1,
        "the running VM untouched"
    );
    Ok(())
}

#[tokio::test]
async fn a_vm_created_after_all_is_neither_unfulfilled_nor_released() -> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("zones/us-central1-a/llama-spot");
    fake.stockout_with(
        "us-central1-a",
        "g2-standard-8",
        "QUOTA_EXCEEDED",
        "Quota 'PREEMPTIBLE_NVIDIA_L4_GPUS' exceeded.  Limit: 1.0 in region us-central1.",
    );
    p.increase(&g, 1).await?;
    fake.advance();
    let groups = p.node_groups().await?;
    let u = groups
        .iter()
        .find(|x| x.id == g)
        .unwrap()
        .unfulfilled
        .clone();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].failure, LaunchFailure::QuotaExceeded);
    // Capacity returns and the MIG's retry succeeds before gpupool releases it.
    fake.clear_stockouts();
    fake.advance();
    let groups = p.node_groups().await?;
    assert!(
        groups
            .iter()
            .find(|x| x.id == g)
            .unwrap()
            .unfulfilled
            .is_empty()
    );
    assert_eq!(p.release_unfulfilled(&g, 1, &u[0].instances).await?, 0);
    assert!(fake.delete_bodies().is_empty());
    assert_eq!(fake.count("llama-spot", "RUNNING"), 2);
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

#[tokio::test]
async fn preemption_times_are_compared_in_the_client_across_the_zone_offset() -> anyhow::Result<()>
{
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("zones/us-central1-a/llama-spot");
    p.increase(&g, 2).await?;
    fake.advance();
    let vms: Vec<InstanceId> = p.instances(&g).await?.into_iter().map(|i| i.id).collect();
    assert_eq!(vms.len(), 3);
    // The first poll sets each zone's cursor a minute back.
    assert!(p.poll_events().await?.is_empty());

    let now = fake::now_ts();
    // Written `…-08:00`: as a string this sorts hours before the UTC cursor, so a filter on
    // insertTime would drop it; parsed, it is newer than the cursor.
    fake.preempt_at(vms[0].as_str(), now).expect("vm exists");
    // Half an hour old: before the cursor, however it is written.
    fake.preempt_at(vms[1].as_str(), now.plus_secs(-1800.0))
        .expect("vm exists");
    let events = p.poll_events().await?;
    let hit: Vec<&InstanceId> = events
        .iter()
        .filter_map(|e| match &e.kind {
            ProviderEventKind::SpotInterruption { instance, .. } => Some(instance),
            _ => None,
        })
        .collect();
    assert_eq!(hit, vec![&vms[0]], "{events:?}");

    // The filter names the operation type only; no time comparison is left to the server.
    let filters: Vec<String> = fake
        .filters()
        .into_iter()
        .filter(|f| f.contains("operationType"))
        .collect();
    assert!(!filters.is_empty());
    for f in &filters {
        assert_eq!(f, "operationType = \"compute.instances.preempted\"");
    }
    // A later preemption, also offset, is found after the cursor moved to the first one.
    fake.preempt_at(vms[2].as_str(), now.plus_secs(5.0))
        .expect("vm exists");
    let events = p.poll_events().await?;
    assert_eq!(events.len(), 1, "{events:?}");
    Ok(())
}

#[tokio::test]
async fn a_vm_in_creation_with_no_error_past_the_launch_timeout_is_unfulfilled()
-> anyhow::Result<()> {
    let fake = FakeCompute::start(PROJECT).await?;
    fake.add_l4_template("llama-g2-spot", true, "llama");
    fake.add_mig(
        "zones/us-central1-a",
        "llama-spot",
        "llama-g2-spot",
        &["us-central1-a"],
        0,
        None,
    );
    // A timeout of zero: the silent case without waiting for it (tests never sleep).
    let mut s = settings(&fake);
    s.pools = vec![
        GcpPoolSettings::new("llama".into())
            .with_max_group_size(6)
            .with_launch_timeout(Duration::ZERO),
    ];
    let p = GcpProvider::new(s).await?;
    p.node_groups().await?;
    let g = id("zones/us-central1-a/llama-spot");
    p.increase(&g, 1).await?;
    // The MIG has not created it and says nothing.
    let groups = p.node_groups().await?;
    let u = &groups.iter().find(|x| x.id == g).unwrap().unfulfilled;
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(u[0].failure, LaunchFailure::TimedOut);
    assert_eq!(u[0].instances.len(), 1);
    assert!(
        u[0].message.contains("no error reported"),
        "{}",
        u[0].message
    );
    assert_eq!(p.release_unfulfilled(&g, 1, &u[0].instances).await?, 1);
    assert_eq!(fake.mig("llama-spot").unwrap().target_size, 0);
    Ok(())
}

#[tokio::test]
async fn a_regional_mig_reports_the_stockout_of_its_one_zone_as_that_offering() -> anyhow::Result<()>
{
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("regions/us-central1/llama-od");
    fake.stockout("us-central1-b", "a2-highgpu-1g");
    // Two standby VMs started by name, two new VMs spread over us-central1-a and -b.
    p.increase(&g, 4).await?;
    fake.advance();
    let stuck = fake.stuck("llama-od");
    assert_eq!(
        stuck.len(),
        1,
        "only the VM placed in us-central1-b is stuck"
    );
    let groups = p.node_groups().await?;
    let od = groups.iter().find(|x| x.id == g).unwrap();
    assert_eq!(od.unfulfilled.len(), 1, "{:?}", od.unfulfilled);
    let u = &od.unfulfilled[0];
    assert_eq!(
        (
            u.offering.zone.as_str(),
            u.offering.instance_type.as_str(),
            u.offering.capacity_type
        ),
        ("us-central1-b", "a2-highgpu-1g", CapacityType::OnDemand)
    );
    assert_eq!(
        u.instances
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>(),
        stuck
    );
    assert!(u.message.contains("zones/us-central1-b"), "{}", u.message);
    Ok(())
}

/// One raw request to the fake (what the provider never sends: stop/suspend), its status code.
async fn post(fake: &FakeCompute, path: &str, body: &str) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(fake.addr).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        fake.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line in {out:?}"))?;
    Ok(code)
}

/// The fake's own standby semantics, as the reference states them: stopInstances lowers
/// targetSize and raises targetStoppedSize, suspendInstances likewise for targetSuspendedSize,
/// and only running VMs may be named.
#[tokio::test]
async fn the_fake_stops_and_suspends_as_documented() -> anyhow::Result<()> {
    let (fake, p) = world().await?;
    let g = id("zones/us-central1-a/llama-spot");
    p.node_groups().await?;
    p.increase(&g, 1).await?;
    fake.advance();
    let names: Vec<String> = fake
        .mig("llama-spot")
        .unwrap()
        .vms
        .iter()
        .map(|v| v.name.clone())
        .collect();
    let base = format!(
        "/compute/v1/projects/{PROJECT}/zones/us-central1-a/instanceGroupManagers/llama-spot"
    );
    let body = |n: &str| format!(r#"{{"instances":["zones/us-central1-a/instances/{n}"]}}"#);
    assert_eq!(
        post(&fake, &format!("{base}/stopInstances"), &body(&names[0])).await?,
        200
    );
    assert_eq!(
        post(&fake, &format!("{base}/suspendInstances"), &body(&names[1])).await?,
        200
    );
    let m = fake.mig("llama-spot").unwrap();
    assert_eq!(
        (
            m.target_size,
            m.target_stopped_size,
            m.target_suspended_size
        ),
        (0, 1, 1)
    );
    // Stopping a VM that is not running is refused, and changes nothing.
    assert_eq!(
        post(&fake, &format!("{base}/stopInstances"), &body(&names[0])).await?,
        400
    );
    fake.settle();
    assert_eq!(fake.count("llama-spot", "TERMINATED"), 1);
    assert_eq!(fake.count("llama-spot", "SUSPENDED"), 1);
    // And the provider sees a pool of two, nothing running.
    let groups = p.node_groups().await?;
    let spot = groups.iter().find(|x| x.id == g).unwrap();
    assert_eq!(spot.desired, 0);
    assert_eq!(
        spot.warm_pool.as_ref().map(|w| (w.target_size, w.ready)),
        Some((2, 2))
    );
    Ok(())
}

/// A standby VM costs its template's disks while stopped, priced at the Persistent Disk table
/// and by the Terraform module's arithmetic (GB × $/GB-month ÷ 730); Hyperdisk, Local SSD and
/// suspended pools are unknown, never their priced part alone.
#[tokio::test]
async fn a_standby_vm_costs_its_template_disks_and_unknown_when_unpriced() -> anyhow::Result<()> {
    use fake::TemplateDisk::{Created, LocalSsd};
    use gpupool_provider::{Money, Price};
    let (fake, p) = world().await?;
    fake.set_template_disks(
        "llama-a2",
        &[
            Created {
                disk_type: "pd-balanced",
                size_gb: Some(50),
            },
            Created {
                disk_type: "pd-ssd",
                size_gb: Some(200),
            },
        ],
    );
    for (template, cache) in [
        (
            "llama-a2-hyperdisk",
            Created {
                disk_type: "hyperdisk-balanced",
                size_gb: Some(200),
            },
        ),
        ("llama-a2-localssd", LocalSsd),
    ] {
        fake.add_template(
            template,
            "a2-highgpu-1g",
            &[("nvidia-tesla-a100", 1)],
            false,
            POOL_LABELS,
        );
        let boot = Created {
            disk_type: "pd-balanced",
            size_gb: Some(50),
        };
        fake.set_template_disks(template, &[boot, cache]);
        fake.add_mig(
            "zones/us-central1-b",
            template,
            template,
            &["us-central1-b"],
            0,
            Some(("MANUAL", 1)),
        );
    }
    let cost = |groups: &[gpupool_provider::NodeGroup], g: &str| {
        groups
            .iter()
            .find(|x| x.id.as_str() == g)
            .and_then(|x| x.warm_pool.as_ref())
            .map(|w| w.standing_cost_per_hour)
    };
    let groups = p.node_groups().await?;
    // terraform/modules/gcp-gpu-mig's standby_standing_cost_per_hour for the same disks at its
    // default pd_price_per_gb_month: (50 × 0.10 + 200 × 0.17) / 730.
    let terraform = (50.0 * 0.10 + 200.0 * 0.17) / 730.0;
    let od = cost(&groups, "regions/us-central1/llama-od");
    assert_eq!(od, Some(Price::Known(Money::from_dollars(terraform))));
    assert_eq!(od.and_then(|c| c.known()).map(Money::micros), Some(53_425));
    assert_eq!(
        cost(&groups, "zones/us-central1-b/llama-a2-hyperdisk"),
        Some(Price::Unknown),
        "Hyperdisk also bills provisioned performance: unknown, not the boot disk alone"
    );
    assert_eq!(
        cost(&groups, "zones/us-central1-b/llama-a2-localssd"),
        Some(Price::Unknown)
    );

    // The same MIG keeping suspended VMs also bills their saved memory, at no documented rate.
    fake.suspend_standby("llama-od", 2);
    let groups = p.node_groups().await?;
    assert_eq!(
        cost(&groups, "regions/us-central1/llama-od"),
        Some(Price::Unknown)
    );
    Ok(())
}

/// The VM-only drain mark is a VM label written with `instances.get` + `instances.setLabels`
/// (the whole set, with the fingerprint read): set, read back by `instances`, removed again,
/// every other label kept — and a write that races another writer fails (HTTP 412) instead of
/// dropping that writer's label, and succeeds on the next try.
#[tokio::test]
async fn the_drain_mark_is_a_vm_label_set_read_back_and_removed_without_losing_others()
-> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("zones/us-central1-a/llama-spot");
    let vm = p
        .instances(&g)
        .await?
        .into_iter()
        .find(|i| i.state == LifecycleState::Ready)
        .expect("the MIG's running VM");
    assert_eq!(vm.drain_deadline, None);
    let before = fake.vm_labels(vm.id.as_str()).unwrap();
    assert!(
        before.contains_key("gpupool-io-model-cache"),
        "the warm label the VM set on itself: {before:?}"
    );

    let deadline = gpupool_provider::Timestamp::from_secs(1_800_000_000);
    p.mark_draining(&g, &vm.id, deadline).await?;
    let marked = fake.vm_labels(vm.id.as_str()).unwrap();
    assert_eq!(
        marked.get("gpupool-io-drain-deadline").map(String::as_str),
        Some("1800000000")
    );
    assert_eq!(marked.len(), before.len() + 1, "every other label kept");
    let read = p.instances(&g).await?;
    let read = read.iter().find(|i| i.id == vm.id).unwrap();
    assert_eq!(
        read.drain_deadline,
        Some(deadline),
        "a restarted controller finds the drain"
    );
    let writes = |f: &FakeCompute| {
        f.calls()
            .iter()
            .filter(|c| c.ends_with(&format!("/instances/{}/setLabels", vm.id)))
            .count()
    };
    assert_eq!(writes(&fake), 1);
    // Marking again with the same deadline writes nothing.
    p.mark_draining(&g, &vm.id, deadline).await?;
    assert_eq!(writes(&fake), 1);

    // Another writer labels the VM between gpupool's read and its write: the stale fingerprint
    // is refused, nothing is lost, and the retry (the controller's next tick) goes through.
    fake.race_next_set_labels(vm.id.as_str(), &[("team", "inference")]);
    let err = p.clear_draining(&g, &vm.id).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Transient { .. }),
        "retried next tick: {err}"
    );
    let raced = fake.vm_labels(vm.id.as_str()).unwrap();
    assert_eq!(raced.get("team").map(String::as_str), Some("inference"));
    assert!(raced.contains_key("gpupool-io-drain-deadline"), "{raced:?}");
    p.clear_draining(&g, &vm.id).await?;
    let cleared = fake.vm_labels(vm.id.as_str()).unwrap();
    assert!(!cleared.contains_key("gpupool-io-drain-deadline"));
    assert_eq!(cleared.get("team").map(String::as_str), Some("inference"));
    assert_eq!(cleared.len(), before.len() + 1, "{cleared:?}");
    assert_eq!(
        p.instances(&g)
            .await?
            .iter()
            .find(|i| i.id == vm.id)
            .unwrap()
            .drain_deadline,
        None
    );

    // A VM that is gone: marking it is NotFound, clearing it is done.
    let gone = InstanceId::new("llama-spot-gone");
    let err = p.mark_draining(&g, &gone, deadline).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
    p.clear_draining(&g, &gone).await?;
    Ok(())
}

/// A rate quota refusal is `Throttled` (the controller then skips the group's remaining calls
/// this tick) in each form Compute writes it: 403 with the legacy reason `rateLimitExceeded`,
/// 403 with an `ErrorInfo` reason `RATE_LIMIT_EXCEEDED` in `details` (which Google's client
/// reads *instead of* the legacy array), and 429 `RESOURCE_EXHAUSTED`. Not `Transient`: a
/// retried call would only deepen the throttling.
#[tokio::test]
async fn every_form_of_a_rate_quota_refusal_is_throttled() -> anyhow::Result<()> {
    let (fake, p) = world().await?;
    p.node_groups().await?;
    let g = id("zones/us-central1-a/llama-spot");
    for limit in [
        fake::RateLimit::Legacy,
        fake::RateLimit::ErrorInfo,
        fake::RateLimit::TooManyRequests,
    ] {
        fake.rate_limit_next(limit);
        let err = p.instances(&g).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::Throttled { .. }),
            "{limit:?}: {err}"
        );
        // The next call is answered.
        p.instances(&g).await?;
    }
    Ok(())
}
