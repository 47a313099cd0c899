//! `gpupool_aws::AwsProvider` against a real moto server (tests/support/moto.rs): discovery,
//! actuation, warm pools, lifecycle hooks, the interruption queue fed by EventBridge, and
//! CloudWatch / SQS metrics. Run with `cargo test --features aws`.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines
#![cfg(feature = "aws")]

#[path = "support/aws_fault_proxy.rs"]
mod aws_fault_proxy;
#[path = "support/moto.rs"]
mod moto;

use aws_fault_proxy::FaultProxy;
use gpupool::model::{CapacityType, LifecycleState, ProviderEventKind};
use gpupool_aws::{AwsMetrics, AwsProvider, Datum, MetricUnit};
use gpupool_provider::{
    InstanceId, LaunchFailure, NodeGroup, NodeGroupId, NodeGroupProvider, Price, ProviderError,
    Timestamp,
};
use moto::{GroupFixture, Moto, eventually};
use std::time::Duration;

/// The status message of a spot stockout as Auto Scaling writes it (AWS re:Post knowledge
/// center, "eks-troubleshoot-spot-instances").
const SPOT_UNFULFILLABLE: &str = "Could not launch Spot Instances. UnfulfillableCapacity - Unable to fulfill capacity due to your request configuration. Please adjust your request and try again. Launching EC2 instance failed.";

async fn group_of(p: &AwsProvider, id: &str) -> NodeGroup {
    p.node_groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.id.as_str() == id)
        .unwrap_or_else(|| panic!("group {id} discovered"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
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
    // The launch hook the provider completes is the one the Terraform module creates.
    let main_tf = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("terraform/modules/aws-gpu-node-group/main.tf"),
    )
    .unwrap();
    assert!(
        main_tf.contains(&format!(
            "lifecycle_hook_name = \"{}\"",
            gpupool_aws::DEFAULT_LIFECYCLE_HOOK_NAME
        )),
        "terraform names the hook {}",
        gpupool_aws::DEFAULT_LIFECYCLE_HOOK_NAME
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
        // moto serves no Price List API: the call fails, and the shipped us-east-1 figure is
        // used (tests/aws_pricing.rs covers the live price).
        assert_eq!(
            o.price_per_hour,
            gpupool_provider::Price::from_dollars(1.006),
            "shipped us-east-1 price"
        );
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
            (o.price_per_hour.known().unwrap().dollars() - reported).abs() < 1e-6,
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

/// EBS mappings as `(device, volume type, size GiB)`.
type Volumes<'a> = &'a [(&'a str, &'a str, i32)];

/// A new `$Latest` version of `template` with moto's AMI and `volumes`.
async fn template_version(c: &moto::Clients, template: &str, volumes: Volumes<'_>) {
    use gpupool_aws::sdk::ec2::types::{
        InstanceType, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
        RequestLaunchTemplateData, VolumeType,
    };
    let mut data = RequestLaunchTemplateData::builder()
        .image_id(moto::AMI)
        .instance_type(InstanceType::from("g5.xlarge"));
    for (device, ty, size) in volumes {
        data = data.block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(*device)
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_type(VolumeType::from(*ty))
                        .volume_size(*size)
                        .build(),
                )
                .build(),
        );
    }
    c.ec2
        .create_launch_template_version()
        .launch_template_name(template)
        .launch_template_data(data.build())
        .send()
        .await
        .expect("create launch template version");
}

/// The warm pool's standing cost is what the launch template's volumes cost stopped, over the
/// AMI's (moto's AMI maps a 15 GB `standard` root at /dev/sda1, `DescribeImages`). moto serves
/// no Price List API: the call fails and the us-east-1 table prices the volumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_standing_cost_from_the_launch_template_volumes() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let groups: [(&str, Volumes); 3] = [
        // The root overridden: 100 GB + 200 GB gp3.
        (
            "two-gp3",
            &[("/dev/sda1", "gp3", 100), ("/dev/sdf", "gp3", 200)],
        ),
        // The AMI's root is kept and billed too.
        ("ami-root", &[("/dev/sdf", "gp3", 200)]),
        // A volume type no source prices: the whole figure is unknown, not 100 GB of gp3.
        (
            "unpriced",
            &[("/dev/sda1", "gp3", 100), ("/dev/sdf", "io9", 200)],
        ),
    ];
    for (name, volumes) in groups {
        c.group(GroupFixture {
            name,
            ..Default::default()
        })
        .await;
        template_version(&c, &format!("lt-{name}"), volumes).await;
        c.asg
            .put_warm_pool()
            .auto_scaling_group_name(name)
            .min_size(1)
            .max_group_prepared_capacity(1)
            .pool_state(gpupool_aws::sdk::autoscaling::types::WarmPoolState::Stopped)
            .send()
            .await
            .unwrap();
    }
    let p = AwsProvider::new(moto.settings(&["llama"])).await.unwrap();
    let standing = |g: NodeGroup| {
        g.warm_pool
            .expect("warm pool discovered")
            .standing_cost_per_hour
    };
    let per_hour = |monthly: f64| Price::from_dollars(monthly / 730.0);
    // us-east-1 list prices: gp3 $0.08, standard $0.05 per GB-month.
    assert_eq!(
        standing(group_of(&p, "two-gp3").await),
        per_hour(300.0 * 0.08)
    );
    assert_eq!(
        standing(group_of(&p, "ami-root").await),
        per_hour(200.0 * 0.08 + 15.0 * 0.05)
    );
    assert_eq!(standing(group_of(&p, "unpriced").await), Price::Unknown);

    // A new template version is read at the next discovery ($Latest is resolved every time).
    template_version(
        &c,
        "lt-two-gp3",
        &[("/dev/sda1", "gp3", 100), ("/dev/sdf", "gp3", 400)],
    )
    .await;
    assert_eq!(
        standing(group_of(&p, "two-gp3").await),
        per_hour(500.0 * 0.08)
    );
    // A template without a type for a device the AMI does not map: unknown, not gp2 or zero.
    c.ec2
        .create_launch_template_version()
        .launch_template_name("lt-ami-root")
        .launch_template_data(
            gpupool_aws::sdk::ec2::types::RequestLaunchTemplateData::builder()
                .image_id(moto::AMI)
                .instance_type(gpupool_aws::sdk::ec2::types::InstanceType::from(
                    "g5.xlarge",
                ))
                .block_device_mappings(
                    gpupool_aws::sdk::ec2::types::LaunchTemplateBlockDeviceMappingRequest::builder(
                    )
                    .device_name("/dev/sdf")
                    .ebs(
                        gpupool_aws::sdk::ec2::types::LaunchTemplateEbsBlockDeviceRequest::builder(
                        )
                        .volume_size(200)
                        .build(),
                    )
                    .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(standing(group_of(&p, "ami-root").await), Price::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_warmup_by_name_once_the_cache_is_current() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "hooked",
        desired: 1,
        ..Default::default()
    })
    .await;
    // A foreign launch hook, listed before gpupool's: never completed by gpupool.
    for hook in [
        "aaa-someone-elses-hook",
        gpupool_aws::DEFAULT_LIFECYCLE_HOOK_NAME,
    ] {
        c.asg
            .put_lifecycle_hook()
            .auto_scaling_group_name("hooked")
            .lifecycle_hook_name(hook)
            .lifecycle_transition("autoscaling:EC2_INSTANCE_LAUNCHING")
            .heartbeat_timeout(900)
            .send()
            .await
            .unwrap();
    }
    let id = c.desired("hooked").await.1[0].clone();
    proxy.hold(&id, gpupool_aws::DEFAULT_LIFECYCLE_HOOK_NAME);
    let mut s = moto.settings_at(&proxy.endpoint, &["llama"]);
    s.model_caches.insert("llama".into(), "llama@v2".into());
    let p = AwsProvider::new(s).await.unwrap();
    let g = gid("hooked");
    let inst = InstanceId::from(id.as_str());

    let listed = p.instances(&g).await.unwrap();
    assert!(listed[0].awaiting_lifecycle_hook, "Pending:Wait");
    assert_eq!(listed[0].state, LifecycleState::Launching);

    let tag = |v: &'static str| {
        let ec2 = c.ec2.clone();
        let id = id.clone();
        async move {
            ec2.create_tags()
                .resources(id)
                .tags(
                    gpupool_aws::sdk::ec2::types::Tag::builder()
                        .key("gpupool.io/model-cache")
                        .value(v)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    };
    // No cache yet, then the previous version: the hook keeps holding the instance.
    let err = p.complete_warmup(&g, &inst).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidConfig(_)), "{err}");
    tag("llama@v1").await;
    let err = p.complete_warmup(&g, &inst).await.unwrap_err();
    assert!(err.to_string().contains("llama@v2"), "{err}");
    assert!(proxy.calls_of("CompleteLifecycleAction").is_empty());
    assert!(proxy.is_held(&id));

    // The current version: gpupool's hook, by name, and only it.
    tag("llama@v2").await;
    p.complete_warmup(&g, &inst).await.unwrap();
    let done = proxy.calls_of("CompleteLifecycleAction");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(
        done[0].param("LifecycleHookName"),
        Some(gpupool_aws::DEFAULT_LIFECYCLE_HOOK_NAME)
    );
    assert_eq!(done[0].param("LifecycleActionResult"), Some("CONTINUE"));
    assert!(!proxy.is_held(&id));
    assert_eq!(
        p.instances(&g).await.unwrap()[0].state,
        LifecycleState::Ready
    );
    // Nothing holds it any more: asking again sends nothing.
    p.complete_warmup(&g, &inst).await.unwrap();
    assert_eq!(proxy.calls_of("CompleteLifecycleAction").len(), 1);

    // Held by someone else's hook only: not gpupool's to complete.
    c.group(GroupFixture {
        name: "foreign-hook",
        desired: 1,
        ..Default::default()
    })
    .await;
    c.asg
        .put_lifecycle_hook()
        .auto_scaling_group_name("foreign-hook")
        .lifecycle_hook_name("aaa-someone-elses-hook")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_LAUNCHING")
        .heartbeat_timeout(900)
        .send()
        .await
        .unwrap();
    let other = c.desired("foreign-hook").await.1[0].clone();
    proxy.hold(&other, "aaa-someone-elses-hook");
    p.complete_warmup(&gid("foreign-hook"), &InstanceId::from(other.as_str()))
        .await
        .unwrap();
    assert_eq!(proxy.calls_of("CompleteLifecycleAction").len(), 1);
    assert!(proxy.is_held(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_spot_stockout_is_reported_on_the_group_and_taken_back() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "llama-spot",
        zones: &["us-east-1a"],
        overrides: &["g5.xlarge", "g5.2xlarge"],
        on_demand_pct: 0,
        ..Default::default()
    })
    .await;
    // The failure shows up long after the request unless the test lets the delay run out.
    proxy.stockout(
        "llama-spot",
        0,
        Duration::from_secs(3600),
        SPOT_UNFULFILLABLE,
        "us-east-1a",
    );
    let p = AwsProvider::new(moto.settings_at(&proxy.endpoint, &["llama"]))
        .await
        .unwrap();
    let g = gid("llama-spot");

    let before = now_ms();
    p.increase(&g, 2).await.unwrap();
    let ng = group_of(&p, "llama-spot").await;
    assert_eq!(ng.desired, 2, "AWS accepted the request");
    assert!(
        p.instances(&g).await.unwrap().is_empty(),
        "nothing launched"
    );
    assert!(ng.unfulfilled.is_empty(), "no failure reported yet");

    proxy.elapse("llama-spot");
    let ng = eventually("the late failure on the group", || async {
        let ng = group_of(&p, "llama-spot").await;
        (!ng.unfulfilled.is_empty()).then_some(ng)
    })
    .await;
    assert_eq!(ng.unfulfilled.len(), 1, "{:?}", ng.unfulfilled);
    let u = &ng.unfulfilled[0];
    assert_eq!(u.count, 2, "desired 2 − 0 listed");
    assert_eq!(u.failure, LaunchFailure::InsufficientCapacity);
    assert_eq!(u.offering.instance_type.as_str(), "g5.xlarge");
    assert_eq!(u.offering.capacity_type, CapacityType::Spot);
    assert_eq!(u.offering.zone.as_str(), "us-east-1a");
    assert_eq!(u.message, SPOT_UNFULFILLABLE);
    assert!(
        u.at.millis() >= before - 1000 && u.at.millis() <= now_ms() + 1000,
        "the activity's start time"
    );
    assert!(u.instances.is_empty());
    // One path only: no LaunchFailed event besides the group field.
    assert!(p.poll_events().await.unwrap().is_empty());

    // Taken back: desired down to what is backed (nothing), once.
    assert_eq!(p.release_unfulfilled(&g, u.count, &[]).await.unwrap(), 2);
    assert_eq!(proxy.desired("llama-spot"), Some(0));
    let lowered = proxy.calls_of("SetDesiredCapacity");
    let last = lowered.last().unwrap();
    assert_eq!(last.param("DesiredCapacity"), Some("0"));
    assert_eq!(last.param("HonorCooldown"), Some("false"));
    assert!(group_of(&p, "llama-spot").await.unfulfilled.is_empty());
    assert_eq!(
        p.release_unfulfilled(&g, u.count, &[]).await.unwrap(),
        0,
        "idempotent"
    );
    assert_eq!(proxy.calls_of("SetDesiredCapacity").len(), lowered.len());

    // A new request is not poisoned by the old failure; its own failure is reported.
    p.increase(&g, 1).await.unwrap();
    let ng = group_of(&p, "llama-spot").await;
    assert_eq!(ng.desired, 1);
    assert!(ng.unfulfilled.is_empty(), "{:?}", ng.unfulfilled);
    proxy.elapse("llama-spot");
    let u = eventually("the second failure", || async {
        group_of(&p, "llama-spot")
            .await
            .unfulfilled
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(u.count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_keeps_listed_instances_and_min_size() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = moto.clients().await;
    // One instance already in service (moto launches it), min size 1.
    c.group(GroupFixture {
        name: "llama-spot",
        zones: &["us-east-1a"],
        overrides: &["g5.xlarge"],
        on_demand_pct: 0,
        min: 1,
        desired: 1,
        ..Default::default()
    })
    .await;
    proxy.stockout(
        "llama-spot",
        1,
        Duration::from_secs(3600),
        SPOT_UNFULFILLABLE,
        "us-east-1a",
    );
    let p = AwsProvider::new(moto.settings_at(&proxy.endpoint, &["llama"]))
        .await
        .unwrap();
    let g = gid("llama-spot");
    p.increase(&g, 2).await.unwrap();
    proxy.elapse("llama-spot");
    let u = eventually("the failure", || async {
        group_of(&p, "llama-spot")
            .await
            .unfulfilled
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(u.count, 2, "desired 3 − 1 listed");
    // Asked for more than is unfulfilled: the listed instance stays.
    assert_eq!(p.release_unfulfilled(&g, 5, &[]).await.unwrap(), 2);
    assert_eq!(proxy.desired("llama-spot"), Some(1));
    assert_eq!(
        c.desired("llama-spot").await.1.len(),
        1,
        "nothing terminated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_p4d_offers_a100_40gb_mig_profiles() {
    let moto = Moto::start();
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "llama-p4d",
        instance_type: "p4d.24xlarge",
        zones: &["us-east-1a"],
        ..Default::default()
    })
    .await;
    let p = AwsProvider::new(moto.settings(&["llama"])).await.unwrap();
    let g = group_of(&p, "llama-p4d").await;
    let gpu = &g.offerings[0].instance_type.gpu;
    assert_eq!((gpu.model.as_str(), gpu.count), ("A100", 8));
    assert_eq!(
        gpu.memory_mib_per_gpu, 40960,
        "DescribeInstanceTypes via moto"
    );
    let profiles: Vec<(&str, u32)> = gpu
        .mig_profiles
        .iter()
        .map(|m| (m.name.as_str(), m.per_gpu))
        .collect();
    assert!(profiles.contains(&("1g.5gb", 7)), "{profiles:?}");
    assert!(profiles.contains(&("7g.40gb", 1)), "{profiles:?}");
    assert!(
        !profiles.iter().any(|(n, _)| n.contains("10gb+me")),
        "not the 80 GB catalog row: {profiles:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_members_min_size_and_reuse_policy() {
    use gpupool_aws::sdk::autoscaling::types::{InstanceReusePolicy, WarmPoolState};
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "llama-od",
        zones: &["us-east-1a"],
        min: 1,
        desired: 1,
        ..Default::default()
    })
    .await;
    c.asg
        .put_warm_pool()
        .auto_scaling_group_name("llama-od")
        .min_size(1)
        .max_group_prepared_capacity(1)
        .pool_state(WarmPoolState::Stopped)
        .instance_reuse_policy(
            InstanceReusePolicy::builder()
                .reuse_on_scale_in(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // A stopped instance with last version's cache, listed in the warm pool.
    let run = c
        .ec2
        .run_instances()
        .image_id(moto::AMI)
        .instance_type(gpupool_aws::sdk::ec2::types::InstanceType::G5Xlarge)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let warm_id = run.instances()[0].instance_id().unwrap().to_owned();
    proxy.add_warm("llama-od", &warm_id, "g5.xlarge", "us-east-1a");
    let p = AwsProvider::new(moto.settings_at(&proxy.endpoint, &["llama"]))
        .await
        .unwrap();
    let g = gid("llama-od");
    let listed = p.instances(&g).await.unwrap();
    let warm = listed.iter().find(|i| i.id.as_str() == warm_id).unwrap();
    assert_eq!(warm.state, LifecycleState::Warm);

    // The drifted warm member goes through EC2 TerminateInstances, never the Auto Scaling call
    // that refuses warm-pool instances.
    p.terminate(&g, &[InstanceId::from(warm_id.as_str())])
        .await
        .unwrap();
    let ec2_calls = proxy.calls_of("TerminateInstances");
    assert_eq!(ec2_calls.len(), 1);
    assert_eq!(ec2_calls[0].param("InstanceId.1"), Some(warm_id.as_str()));
    assert!(
        proxy
            .calls_of("TerminateInstanceInAutoScalingGroup")
            .is_empty()
    );
    let st = ec2_state(&c, &warm_id).await;
    assert!(
        matches!(st.as_str(), "shutting-down" | "terminated"),
        "{st:?}"
    );
    assert!(
        !p.instances(&g)
            .await
            .unwrap()
            .iter()
            .any(|i| i.id.as_str() == warm_id)
    );

    // At the min size: terminated without decrement (AWS would refuse the decrement), desired
    // unchanged and a replacement on its way.
    let in_service = c.desired("llama-od").await.1[0].clone();
    p.terminate(&g, &[InstanceId::from(in_service.as_str())])
        .await
        .unwrap();
    let t = proxy.calls_of("TerminateInstanceInAutoScalingGroup");
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].param("ShouldDecrementDesiredCapacity"), Some("false"));
    assert_eq!(c.desired("llama-od").await.0, 1, "min size kept");

    // PutWarmPool keeps the group's instance reuse policy.
    p.set_warm_pool_size(&g, 3).await.unwrap();
    let put = proxy.calls_of("PutWarmPool");
    assert_eq!(
        put.last()
            .unwrap()
            .param("InstanceReusePolicy.ReuseOnScaleIn"),
        Some("true")
    );
    let wp = c
        .asg
        .describe_warm_pool()
        .auto_scaling_group_name("llama-od")
        .send()
        .await
        .unwrap();
    let cfg = wp.warm_pool_configuration().unwrap();
    assert_eq!(cfg.min_size(), Some(3));
    assert_eq!(
        cfg.instance_reuse_policy()
            .and_then(|r| r.reuse_on_scale_in()),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_above_min_size_decrements() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "llama-od",
        zones: &["us-east-1a"],
        min: 1,
        desired: 2,
        ..Default::default()
    })
    .await;
    let p = AwsProvider::new(moto.settings_at(&proxy.endpoint, &["llama"]))
        .await
        .unwrap();
    let ids = c.desired("llama-od").await.1;
    // Two victims, min 1: the first decrements (2 → 1), the second may not.
    let victims: Vec<InstanceId> = ids.iter().map(|i| InstanceId::from(i.as_str())).collect();
    p.terminate(&gid("llama-od"), &victims).await.unwrap();
    let t = proxy.calls_of("TerminateInstanceInAutoScalingGroup");
    let decrements: Vec<Option<&str>> = t
        .iter()
        .map(|c| c.param("ShouldDecrementDesiredCapacity"))
        .collect();
    assert_eq!(decrements, vec![Some("true"), Some("false")]);
    assert_eq!(c.desired("llama-od").await.0, 1);
}

/// EC2 state of an instance as moto reports it (`running`, `terminated`, …).
async fn ec2_state(c: &moto::Clients, id: &str) -> String {
    c.instance(id)
        .await
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_instance_left_to_the_reclaim_is_detached_and_swept_only_when_overdue() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "llama-spot",
        zones: &["us-east-1a"],
        min: 1,
        desired: 3,
        spot_template: true,
        ..Default::default()
    })
    .await;
    let p = AwsProvider::new(moto.settings_at(&proxy.endpoint, &["llama"]))
        .await
        .unwrap();
    assert_eq!(
        p.reclaim_refund_window(),
        Some(Duration::from_secs(3600)),
        "AWS: an hour"
    );
    let g = gid("llama-spot");
    let ids = c.desired("llama-spot").await.1;
    let (gone, kept) = (InstanceId::from(ids[0].as_str()), ids[1].clone());
    let now = Timestamp::from_millis(now_ms());
    let deadline = now.plus_secs(120.0);
    p.mark_draining(&g, &gone, deadline).await.unwrap();
    p.release_to_reclaim(&g, &gone).await.unwrap();
    let detach = proxy.calls_of("DetachInstances");
    assert_eq!(detach.len(), 1);
    assert_eq!(
        detach[0].param("ShouldDecrementDesiredCapacity"),
        Some("true")
    );
    let (desired, members) = c.desired("llama-spot").await;
    assert_eq!(
        desired, 2,
        "desired lowered with the detach: no replacement"
    );
    assert!(!members.contains(&ids[0]), "no longer a member");
    assert_eq!(
        ec2_state(&c, &ids[0]).await,
        "running",
        "left running for the reclaim"
    );

    // A member with an overdue mark (a VM-only drain kept while still registered) is not ours
    // to end; nor is the released one before its deadline plus the grace.
    p.mark_draining(&g, &InstanceId::from(kept.as_str()), now.plus_secs(-3600.0))
        .await
        .unwrap();
    let grace = Duration::from_secs(300);
    assert!(
        p.sweep_released(deadline.plus_secs(299.0), grace)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(proxy.calls_of("TerminateInstances").is_empty());
    let swept = p
        .sweep_released(deadline.plus_secs(301.0), grace)
        .await
        .unwrap();
    assert_eq!(swept, vec![gone.clone()]);
    assert_eq!(ec2_state(&c, &ids[0]).await, "terminated");
    assert_eq!(
        ec2_state(&c, &kept).await,
        "running",
        "a member is never swept"
    );
    assert_eq!(
        c.desired("llama-spot").await.0,
        2,
        "the group is not touched"
    );

    // Refused when detaching would cross the group's min size (1): the caller terminates.
    let last = InstanceId::from(ids[1].as_str());
    p.release_to_reclaim(&g, &InstanceId::from(ids[2].as_str()))
        .await
        .unwrap();
    let err = p.release_to_reclaim(&g, &last).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidConfig(_)), "{err}");
    assert_eq!(
        proxy.calls_of("DetachInstances").len(),
        2,
        "refused before calling"
    );
    let err = p.release_to_reclaim(&g, &gone).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
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
        ("AutoScalingGroupName".to_owned(), "llama-od".to_owned()),
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
