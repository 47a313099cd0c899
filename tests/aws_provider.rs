//! `gpupool_aws::AwsProvider` against a real moto server (tests/support/moto.rs): discovery,
//! actuation, warm pools, lifecycle hooks, the interruption queue fed by EventBridge, and
//! CloudWatch / SQS metrics. Run with `cargo test --features aws`.

#![cfg(feature = "aws")]

#[path = "support/moto.rs"]
mod moto;

use gpupool::model::{CapacityType, LifecycleState, ProviderEventKind};
use gpupool_aws::{AwsMetrics, AwsProvider, Datum, MetricUnit};
use gpupool_provider::{InstanceId, NodeGroupId, NodeGroupProvider, ProviderError, Timestamp};
use moto::{GroupFixture, Moto, eventually};
use std::collections::BTreeMap;

fn gid(s: &str) -> NodeGroupId {
    NodeGroupId::from(s)
}

#[test]
fn crate_constants_match_the_contract() {
    use gpupool::contract;
    assert_eq!(gpupool_aws::TAG_POOL, contract::TAG_POOL);
    assert_eq!(gpupool_aws::TAG_ENABLED, contract::TAG_ENABLED);
    assert_eq!(gpupool_aws::TAG_MODEL_CACHE, contract::TAG_MODEL_CACHE);
    assert_eq!(
        gpupool_aws::CLOUDWATCH_NAMESPACE,
        contract::CLOUDWATCH_NAMESPACE
    );
    assert_eq!(
        gpupool_aws::events::EVENTBRIDGE_RULES,
        contract::EVENTBRIDGE_RULES
    );
    let mut contract_actions: Vec<&str> = contract::AWS_IAM_READ_ACTIONS
        .iter()
        .chain(contract::AWS_IAM_GROUP_WRITE_ACTIONS)
        .chain(contract::AWS_IAM_OTHER_WRITE_ACTIONS)
        .copied()
        .collect();
    contract_actions.sort_unstable();
    assert_eq!(
        gpupool_aws::IAM_ACTIONS,
        contract_actions.as_slice(),
        "the provider calls exactly the contract's IAM actions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_tagged_gpu_groups_with_their_offerings() {
    let moto = Moto::start();
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "llama-od",
        ..Default::default()
    })
    .await;
    c.asg
        .put_warm_pool()
        .auto_scaling_group_name("llama-od")
        .min_size(2)
        .max_group_prepared_capacity(2)
        .pool_state(gpupool_aws::sdk::autoscaling::types::WarmPoolState::Stopped)
        .send()
        .await
        .unwrap();
    c.group(GroupFixture {
        name: "llama-spot",
        overrides: &["g5.xlarge", "g5.2xlarge"],
        on_demand_pct: 0,
        ..Default::default()
    })
    .await;
    c.group(GroupFixture {
        name: "llama-h100-spot-lt",
        instance_type: "p5.48xlarge",
        spot_template: true,
        zones: &["us-east-1a"],
        ..Default::default()
    })
    .await;
    // Not gpupool's: another pool, disabled, untagged, and a CPU-only group.
    c.group(GroupFixture {
        name: "other-pool",
        pool: Some("other"),
        ..Default::default()
    })
    .await;
    c.group(GroupFixture {
        name: "disabled",
        enabled: false,
        ..Default::default()
    })
    .await;
    c.group(GroupFixture {
        name: "untagged",
        pool: None,
        ..Default::default()
    })
    .await;
    c.group(GroupFixture {
        name: "llama-cpu",
        instance_type: "m5.large",
        ..Default::default()
    })
    .await;

    let p = AwsProvider::new(moto.settings(&["llama"])).await.unwrap();
    let groups = p.node_groups().await.unwrap();
    let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["llama-cpu", "llama-h100-spot-lt", "llama-od", "llama-spot"]
    );

    let od = groups.iter().find(|g| g.id.as_str() == "llama-od").unwrap();
    assert_eq!(od.pool.as_str(), "llama");
    assert_eq!((od.min_size, od.max_size, od.desired), (0, 4, 0));
    assert_eq!(od.offerings.len(), 2, "1 type × 2 zones");
    for o in &od.offerings {
        assert_eq!(o.capacity_type, CapacityType::OnDemand);
        assert_eq!(
            o.instance_type.gpu.model, "A10G",
            "GPU facts from DescribeInstanceTypes"
        );
        assert_eq!(o.instance_type.gpu.count, 1);
        assert_eq!(o.instance_type.gpu.memory_mib_per_gpu, 22888);
        assert_eq!(o.price_per_hour.dollars(), 1.006, "shipped us-east-1 price");
        assert_eq!(o.interruption_risk_per_hour, 0.0);
    }
    let wp = od.warm_pool.as_ref().expect("warm pool discovered");
    assert_eq!(wp.target_size, 2);
    assert_eq!(od.labels["node.kubernetes.io/instance-type"], "g5.xlarge");
    assert_eq!(od.labels["gpupool.io/capacity-type"], "on-demand");
    assert!(!od.activity_in_progress);

    let spot = groups
        .iter()
        .find(|g| g.id.as_str() == "llama-spot")
        .unwrap();
    assert_eq!(spot.offerings.len(), 4, "2 overrides × 2 zones");
    assert!(spot.warm_pool.is_none());
    // Spot prices are what DescribeSpotPriceHistory reports for the type × zone.
    let hist = c
        .ec2
        .describe_spot_price_history()
        .instance_types(gpupool_aws::sdk::ec2::types::InstanceType::from(
            "g5.2xlarge",
        ))
        .send()
        .await
        .unwrap();
    let reported: f64 = hist.spot_price_history()[0]
        .spot_price()
        .unwrap()
        .parse()
        .unwrap();
    for o in &spot.offerings {
        assert_eq!(o.capacity_type, CapacityType::Spot);
        assert!(
            o.interruption_risk_per_hour > 0.0,
            "advisor bucket → hourly risk"
        );
        assert!(
            (o.price_per_hour.dollars() - reported).abs() < 1e-6,
            "live spot price"
        );
    }
    let h100 = groups
        .iter()
        .find(|g| g.id.as_str() == "llama-h100-spot-lt")
        .unwrap();
    assert_eq!(h100.offerings.len(), 1);
    assert_eq!(
        h100.offerings[0].capacity_type,
        CapacityType::Spot,
        "spot launch template"
    );
    assert_eq!(h100.offerings[0].instance_type.gpu.model, "H100");
    assert_eq!(h100.offerings[0].instance_type.gpu.count, 8);
    let cpu = groups
        .iter()
        .find(|g| g.id.as_str() == "llama-cpu")
        .unwrap();
    assert!(
        cpu.offerings.is_empty(),
        "a type without GPUs is not offered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increase_instances_and_terminate() {
    let moto = Moto::start();
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "llama-od",
        max: 3,
        ..Default::default()
    })
    .await;
    let p = AwsProvider::new(moto.settings(&["llama"])).await.unwrap();
    let g = gid("llama-od");

    p.increase(&g, 2).await.unwrap();
    let (desired, ids) = c.desired("llama-od").await;
    assert_eq!(desired, 2);
    assert_eq!(ids.len(), 2, "moto launches at once");
    let err = p.increase(&g, 2).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::InvalidConfig(_)),
        "above max is refused: {err}"
    );
    assert_eq!(c.desired("llama-od").await.0, 2, "nothing changed");

    // The instance tag the node writes when its cache is warm.
    c.ec2
        .create_tags()
        .resources(&ids[0])
        .tags(
            gpupool_aws::sdk::ec2::types::Tag::builder()
                .key("gpupool.io/model-cache")
                .value("llama@v1")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let inst = p.instances(&g).await.unwrap();
    assert_eq!(inst.len(), 2);
    for i in &inst {
        assert_eq!(i.state, LifecycleState::Ready, "InService");
        assert_eq!(i.instance_type.as_str(), "g5.xlarge");
        assert_eq!(i.capacity_type, CapacityType::OnDemand);
        assert_eq!(
            i.provider_id.as_deref(),
            Some(format!("aws:///{}/{}", i.zone, i.id).as_str())
        );
        assert!(i.private_ip.is_some(), "private IP from DescribeInstances");
        assert!(i.launched_at.millis() > 0);
        assert!(!i.awaiting_lifecycle_hook);
    }
    let tagged = inst.iter().find(|i| i.id.as_str() == ids[0]).unwrap();
    assert_eq!(tagged.model_cache.as_deref(), Some("llama@v1"));

    // Terminate one chosen instance: desired goes down with it.
    let victim = InstanceId::from(ids[1].as_str());
    p.terminate(&g, std::slice::from_ref(&victim))
        .await
        .unwrap();
    let (desired, left) = c.desired("llama-od").await;
    assert_eq!(desired, 1);
    assert_eq!(left, vec![ids[0].clone()]);
    // Already gone: success, nothing else touched.
    p.terminate(&g, std::slice::from_ref(&victim))
        .await
        .unwrap();
    assert_eq!(c.desired("llama-od").await, (1, vec![ids[0].clone()]));

    // Scale-in protection is respected.
    c.asg
        .set_instance_protection()
        .auto_scaling_group_name("llama-od")
        .instance_ids(&ids[0])
        .protected_from_scale_in(true)
        .send()
        .await
        .unwrap();
    let keep = InstanceId::from(ids[0].as_str());
    assert!(p.instances(&g).await.unwrap()[0].protected_from_scale_in);
    let err = p.terminate(&g, &[keep]).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidConfig(_)), "{err}");
    assert_eq!(c.desired("llama-od").await.0, 1);

    // Groups gpupool does not manage are refused outright.
    c.group(GroupFixture {
        name: "foreign",
        pool: Some("other"),
        ..Default::default()
    })
    .await;
    let err = p.increase(&gid("foreign"), 1).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidConfig(_)), "{err}");
    let err = p.instances(&gid("missing")).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pools_only_on_single_type_on_demand_groups() {
    let moto = Moto::start();
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "od",
        ..Default::default()
    })
    .await;
    c.group(GroupFixture {
        name: "mixed",
        overrides: &["g5.xlarge"],
        on_demand_pct: 100,
        ..Default::default()
    })
    .await;
    c.group(GroupFixture {
        name: "spot-lt",
        spot_template: true,
        ..Default::default()
    })
    .await;
    let p = AwsProvider::new(moto.settings(&["llama"])).await.unwrap();

    p.set_warm_pool_size(&gid("od"), 3).await.unwrap();
    let wp = c
        .asg
        .describe_warm_pool()
        .auto_scaling_group_name("od")
        .send()
        .await
        .unwrap();
    let cfg = wp.warm_pool_configuration().expect("warm pool created");
    assert_eq!(cfg.min_size(), Some(3));
    assert_eq!(
        cfg.max_group_prepared_capacity(),
        Some(3),
        "absolute size: min = max prepared"
    );
    assert_eq!(cfg.pool_state().map(|s| s.as_str()), Some("Stopped"));
    let g = p
        .node_groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.id.as_str() == "od")
        .unwrap();
    assert_eq!(g.warm_pool.map(|w| w.target_size), Some(3));

    for refused in ["mixed", "spot-lt"] {
        let err = p.set_warm_pool_size(&gid(refused), 1).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::InvalidConfig(_)),
            "{refused}: {err}"
        );
        let wp = c
            .asg
            .describe_warm_pool()
            .auto_scaling_group_name(refused)
            .send()
            .await
            .unwrap();
        assert!(
            wp.warm_pool_configuration().is_none(),
            "{refused}: no call was made"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_warmup_uses_the_launch_hook() {
    let moto = Moto::start();
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "hooked",
        desired: 1,
        ..Default::default()
    })
    .await;
    c.group(GroupFixture {
        name: "plain",
        desired: 1,
        ..Default::default()
    })
    .await;
    c.asg
        .put_lifecycle_hook()
        .auto_scaling_group_name("hooked")
        .lifecycle_hook_name("model-cache")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_LAUNCHING")
        .heartbeat_timeout(900)
        .send()
        .await
        .unwrap();
    let p = AwsProvider::new(moto.settings(&["llama"])).await.unwrap();

    // No launch hook: nothing holds the instance, nothing to do.
    let plain = c.desired("plain").await.1;
    p.complete_warmup(&gid("plain"), &InstanceId::from(plain[0].as_str()))
        .await
        .unwrap();

    // With the hook: DescribeLifecycleHooks finds it and CompleteLifecycleAction is sent. moto
    // (5.x) answers CompleteLifecycleAction with a server error (not implemented), which must
    // surface as a Transient error naming the call, not as success and not as a panic.
    let hooked = c.desired("hooked").await.1;
    match p
        .complete_warmup(&gid("hooked"), &InstanceId::from(hooked[0].as_str()))
        .await
    {
        Ok(()) => {} // a moto that implements it
        Err(ProviderError::Transient { call, .. }) => assert_eq!(call, "CompleteLifecycleAction"),
        Err(e) => panic!("unexpected error kind {}: {e}", e.kind()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interruption_queue_via_eventbridge() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let (queue_url, queue_arn) = c.queue("gpupool-interruptions").await;
    // The EventBridge rules of contract.rs, targeting the queue (boto3: EventBridge is not in
    // gpupool's SDK set).
    moto.boto3(&format!(
        r#"
ev = boto3.client('events', **kw)
for i, (src, dt) in enumerate({rules}):
    ev.put_rule(Name=f'gpupool-{{i}}', EventPattern=json.dumps({{'source': [src], 'detail-type': [dt]}}))
    ev.put_targets(Rule=f'gpupool-{{i}}', Targets=[{{'Id': 'q', 'Arn': '{queue_arn}'}}])
"#,
        rules = python_rules()
    ));
    let mut s = moto.settings(&["llama"]);
    s.interruption_queue_url = Some(queue_url.clone());
    let p = AwsProvider::new(s).await.unwrap();
    let metrics = p.metrics().clone();

    // A spot interruption warning, sent through EventBridge with source aws.ec2 (moto accepts
    // the reserved source), an AWS Health event for another service (to be ignored and
    // deleted), and a malformed message straight to SQS.
    moto.boto3(
        r#"
ev = boto3.client('events', **kw)
r = ev.put_events(Entries=[
  {'Source': 'aws.ec2', 'DetailType': 'EC2 Spot Instance Interruption Warning',
   'Detail': json.dumps({'instance-id': 'i-0123456789abcdef0', 'instance-action': 'terminate'})},
  {'Source': 'aws.health', 'DetailType': 'AWS Health Event',
   'Detail': json.dumps({'service': 'RDS', 'eventTypeCategory': 'scheduledChange', 'affectedEntities': []})},
])
assert r['FailedEntryCount'] == 0, r
"#,
    );
    c.sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body("{not an event")
        .send()
        .await
        .unwrap();

    let events = eventually("the interruption event", || async {
        let evs = p.poll_events().await.unwrap();
        (!evs.is_empty()).then_some(evs)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    let ProviderEventKind::SpotInterruption { instance, deadline } = &ev.kind else {
        panic!("expected a spot interruption, got {:?}", ev.kind)
    };
    assert_eq!(instance.as_str(), "i-0123456789abcdef0");
    let now = Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    let lead = deadline.secs_since(now);
    assert!(
        (60.0..=125.0).contains(&lead),
        "deadline is event time + 120 s, got {lead} s ahead"
    );
    let ack = ev
        .ack
        .clone()
        .expect("queue events carry their receipt handle");
    p.ack_event(&ack).await.unwrap();
    p.ack_event(&ack)
        .await
        .unwrap_or_else(|e| panic!("acking twice is harmless: {e}"));

    // Only the malformed message is left (received, not deleted: the redrive policy's job).
    let depth = metrics.queue_depth(&queue_url).await.unwrap();
    assert_eq!(depth.visible + depth.in_flight, 1, "{depth:?}");
    // The same via the queue *name* (GetQueueUrl).
    let by_name = metrics.queue_depth("gpupool-interruptions").await.unwrap();
    assert_eq!(by_name.visible + by_name.in_flight, 1);
    // Polling again survives it and returns nothing.
    assert!(p.poll_events().await.unwrap().is_empty());
}

fn python_rules() -> String {
    let items: Vec<String> = gpupool::contract::EVENTBRIDGE_RULES
        .iter()
        .map(|(s, d)| format!("('{s}', '{d}')"))
        .collect();
    format!("[{}]", items.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_metrics_publish_and_read_back() {
    let moto = Moto::start();
    let metrics = AwsMetrics::new(&moto.settings(&["llama"])).await.unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let datum = |metric: &str, value: f64, at_s: i64| Datum {
        metric: metric.into(),
        pool: Some("llama".into()),
        group: Some("llama-od".into()),
        value,
        unit: MetricUnit::Count,
        at: Timestamp::from_secs(at_s),
    };
    // More datums than one request may carry, plus a NaN that must be skipped.
    let mut data: Vec<Datum> = (0..1200)
        .map(|i| datum(&format!("bulk_{}", i % 7), i as f64, now_s - 120))
        .collect();
    data.push(datum("desired_nodes", f64::NAN, now_s - 60));
    data.push(datum("desired_nodes", 7.0, now_s - 60));
    metrics.publish(&data).await.unwrap();

    let dims: BTreeMap<String, String> = [
        ("Pool".to_owned(), "llama".to_owned()),
        ("Group".to_owned(), "llama-od".to_owned()),
    ]
    .into();
    let (v, at) = metrics
        .latest("gpupool", "desired_nodes", &dims, "Maximum", 60)
        .await
        .unwrap()
        .expect("datapoint read back with GetMetricData");
    assert_eq!(v, 7.0);
    assert!(
        (at.millis() / 1000 - (now_s - 60)).abs() <= 60,
        "timestamp of the period"
    );
    let none = metrics
        .latest("gpupool", "never_published", &dims, "Average", 60)
        .await
        .unwrap();
    assert_eq!(none, None);
    // The batched bulk metric arrived too (both batches).
    let (bulk, _) = metrics
        .latest("gpupool", "bulk_0", &dims, "SampleCount", 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bulk, (0..1200).filter(|i| i % 7 == 0).count() as f64);
}

#[test]
fn example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aws.yaml");
    let cfg = gpupool::config::Config::load_file(&path)
        .unwrap_or_else(|e| panic!("examples/aws.yaml: {e}"));
    assert_eq!(cfg.provider, gpupool::config::ProviderKind::Aws);
    let aws = cfg.aws.expect("aws section");
    assert_eq!(aws.endpoint_url, None, "the endpoint stays commented out");
}
