//! The real `gpupool::controller::Controller` and planner driving `gpupool_aws::AwsProvider`
//! against a real moto server: a demand raises desired capacity on the right group, a spot
//! interruption put through EventBridge reaches the SQS queue and causes a drain and a
//! replacement, a malformed queue message is survived (and left for the DLQ), and a lower
//! demand terminates a chosen instance. Behind the fault proxy (tests/support/aws_fault_proxy.rs)
//! a spot stockout reported late, as AWS does, is taken back and falls back to on-demand within
//! one tick, and a repeated one escalates the backoff. Run with `cargo test --features aws`.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines
#![cfg(feature = "aws")]

#[path = "support/aws_fault_proxy.rs"]
mod aws_fault_proxy;
#[path = "support/moto.rs"]
mod moto;

use async_trait::async_trait;
use gpupool::config::Config;
use gpupool::controller::{
    Cluster, ClusterError, ClusterView, Controller, DemandSource, DrainProgress, Metrics,
    TickReport,
};
use gpupool::model::{Instance, InstanceId, PoolDemand, PoolName, Timestamp};
use gpupool::testkit::doubles::{FixedDemand, ServeEveryReady};
use gpupool_aws::AwsProvider;
use gpupool_provider::NodeGroupProvider;
use moto::{GroupFixture, Moto};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

fn config(moto: &Moto, queue_url: &str) -> Config {
    let yaml = format!(
        r#"
provider: aws
mode: vm-only
tick_interval_s: 10
aws:
  region: us-east-1
  endpoint_url: {endpoint}
  interruption_queue_url: {queue_url}
pools:
  - name: llama
    requirements: {{ gpu_models: [A10G] }}
    replica: {{ gpus: 1, replicas_per_instance: 1 }}
    capacity: {{ spot_share: 1.0, fallback: [spot, on-demand] }}
    limits: {{ min_nodes: 0, max_nodes: 4 }}
    disruption:
      unneeded_time_s: 0
      scale_down_delay_after_add_s: 0
      budget: {{ max_disrupted_at_once: 4, max_per_window: 100, window_s: 3600 }}
    scale_up: {{ cold_start_s: 60 }}
    signals:
      - name: queue
        sqs: {{ queue_url: {queue_url}, target_per_replica: 1 }}
"#,
        endpoint = moto.endpoint
    );
    Config::load(&yaml).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// Wall-clock time plus a virtual offset that grows by a tick interval per tick (and by
/// [`Clock::jump`]): the provider and the fault proxy stamp with the wall clock, the controller
/// runs on `now`, and the offset only ever moves `now` ahead of both.
struct Clock {
    ticks: i64,
    jumped_ms: i64,
}

impl Clock {
    fn next(&mut self) -> Timestamp {
        self.ticks += 1;
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        Timestamp::from_millis(wall + self.ticks * 10_000 + self.jumped_ms)
    }

    fn jump(&mut self, secs: i64) {
        self.jumped_ms += secs * 1000;
    }
}

async fn tick(c: &mut Controller, clock: &mut Clock) -> TickReport {
    c.tick(clock.next())
        .await
        .unwrap_or_else(|e| panic!("tick failed: {}", gpupool::controller::error_chain(&e)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_scales_drains_replaces_and_terminates_on_moto() {
    let moto = Moto::start();
    let c = moto.clients().await;
    // Two groups for the pool: on-demand and spot; the pool prefers spot (spot_share 1).
    c.group(GroupFixture {
        name: "llama-od",
        zones: &["us-east-1a"],
        ..Default::default()
    })
    .await;
    c.group(GroupFixture {
        name: "llama-spot",
        zones: &["us-east-1a"],
        overrides: &["g5.xlarge"],
        on_demand_pct: 0,
        ..Default::default()
    })
    .await;
    let (queue_url, queue_arn) = c.queue("gpupool-interruptions").await;
    moto.boto3(&format!(
        r#"
ev = boto3.client('events', **kw)
ev.put_rule(Name='spot', EventPattern=json.dumps({{'source': ['aws.ec2'], 'detail-type': ['EC2 Spot Instance Interruption Warning']}}))
ev.put_targets(Rule='spot', Targets=[{{'Id': 'q', 'Arn': '{queue_arn}'}}])
"#
    ));

    let cfg = config(&moto, &queue_url);
    let mut settings = moto.settings(&["llama"]);
    settings.interruption_queue_url = Some(queue_url.clone());
    let provider = Arc::new(AwsProvider::new(settings).await.unwrap());
    let metrics_client = provider.metrics().clone();
    let serving = ServeEveryReady::new("llama");
    let drained = serving.drained();
    let replicas = Arc::new(Mutex::new(2u32));
    let mut ctl = Controller::new(
        Arc::new(cfg),
        provider.clone(),
        Box::new(serving),
        Box::new(FixedDemand::new("llama", replicas.clone())),
        Arc::new(Metrics::default()),
    );
    let mut clock = Clock {
        ticks: 0,
        jumped_ms: 0,
    };

    // 1. Demand 2 → desired capacity 2 on the spot group, the on-demand group untouched.
    let r = tick(&mut ctl, &mut clock).await;
    assert!(
        r.results.iter().all(|a| a.error.is_none()),
        "{:?}",
        r.results
    );
    let (spot_desired, spot_ids) = c.desired("llama-spot").await;
    assert_eq!(spot_desired, 2, "plan: {:?}", r.plan());
    assert_eq!(spot_ids.len(), 2);
    assert_eq!(c.desired("llama-od").await.0, 0);
    // Capacity is there now: a second tick launches nothing more.
    tick(&mut ctl, &mut clock).await;
    assert_eq!(c.desired("llama-spot").await.0, 2);

    // 2. A spot interruption for one of them, through EventBridge → SQS.
    let victim = spot_ids[0].clone();
    moto.boto3(&format!(
        r#"
ev = boto3.client('events', **kw)
r = ev.put_events(Entries=[{{'Source': 'aws.ec2', 'DetailType': 'EC2 Spot Instance Interruption Warning',
  'Detail': json.dumps({{'instance-id': '{victim}', 'instance-action': 'terminate'}})}}])
assert r['FailedEntryCount'] == 0, r
"#
    ));
    let r = tick(&mut ctl, &mut clock).await;
    assert_eq!(
        r.events_handled, 1,
        "the interruption was read from the queue"
    );
    // Drained, then — launched minutes ago, so a reclaim by EC2 within its first hour is not
    // billed, while a termination would be — detached with a decrement and left to the reclaim,
    // marked with the notice's deadline for the sweep.
    assert_eq!(
        r.released_to_reclaim,
        vec![InstanceId::from(victim.as_str())],
        "drained then left to the reclaim"
    );
    assert!(r.terminated_after_drain.is_empty());
    assert!(drained.lock().unwrap().iter().any(|i| i.as_str() == victim));
    let inst = c.instance(&victim).await;
    assert_eq!(
        inst.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("running"),
        "not terminated by gpupool: EC2 reclaims it"
    );
    assert!(
        inst.tags()
            .iter()
            .any(|t| t.key() == Some(gpupool_provider::DRAIN_DEADLINE_TAG)),
        "{:?}",
        inst.tags()
    );
    // Replacement: the warning keeps the spot offering (g5.xlarge, us-east-1a, spot) aside for
    // 3 minutes, as Karpenter's interruption controller does, so it goes to the next offering
    // in the fallback order — the on-demand group — at once; the spot group keeps the other.
    let mut replaced = false;
    for _ in 0..3 {
        let (d, ids) = c.desired("llama-spot").await;
        let (od, od_ids) = c.desired("llama-od").await;
        if d == 1 && ids.len() == 1 && !ids.contains(&victim) && od == 1 && od_ids.len() == 1 {
            replaced = true;
            break;
        }
        tick(&mut ctl, &mut clock).await;
    }
    let (d, ids) = c.desired("llama-spot").await;
    let (od, od_ids) = c.desired("llama-od").await;
    assert!(
        replaced,
        "replacement launched on demand: spot desired {d}, instances {ids:?}; on-demand desired {od}, instances {od_ids:?}"
    );
    let depth = metrics_client.queue_depth(&queue_url).await.unwrap();
    assert_eq!(depth.total(true), 0, "handled event acknowledged (deleted)");

    // 3. A malformed message: the loop survives it and leaves it in the queue.
    c.sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body("{\"source\":\"nonsense\"}")
        .send()
        .await
        .unwrap();
    let r = tick(&mut ctl, &mut clock).await;
    assert_eq!(r.events_handled, 0);
    assert!(r.held.is_none());
    assert_eq!(
        metrics_client
            .queue_depth(&queue_url)
            .await
            .unwrap()
            .total(true),
        1,
        "not deleted"
    );
    println!(
        "FAULT-ROW | SQS: malformed message | no panic, not acknowledged (left for the DLQ), tick not held | no event, tick completed, still in the queue"
    );

    // 4. Demand falls to 1: the controller chooses an instance (the on-demand one, dearer),
    // drains and terminates it.
    *replicas.lock().unwrap() = 1;
    let before = c.desired("llama-od").await.1;
    let mut terminated = Vec::new();
    for _ in 0..6 {
        let r = tick(&mut ctl, &mut clock).await;
        terminated.extend(r.terminated_after_drain.clone());
        for a in &r.results {
            if let gpupool::model::Action::ScaleDown { instances, .. } = &a.action {
                terminated.extend(instances.iter().cloned());
            }
        }
        if c.desired("llama-od").await.0 == 0 {
            break;
        }
    }
    let (d, after) = c.desired("llama-od").await;
    assert_eq!(d, 0, "scaled down to the demand");
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(before.len(), 1);
    assert!(
        terminated.iter().any(|t| t.as_str() == before[0]),
        "the chosen instance {} was terminated by the controller",
        before[0]
    );
    assert_eq!(c.desired("llama-spot").await.0, 1);
}

/// The status message of a spot stockout as Auto Scaling writes it (AWS re:Post knowledge
/// center, "eks-troubleshoot-spot-instances").
const SPOT_UNFULFILLABLE: &str = "Could not launch Spot Instances. UnfulfillableCapacity - Unable to fulfill capacity due to your request configuration. Please adjust your request and try again. Launching EC2 instance failed.";

/// How late the fake reports each failed spot launch after `SetDesiredCapacity` succeeded.
const FAILURE_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

fn released(r: &TickReport, group: &str) -> Vec<u32> {
    r.results
        .iter()
        .filter_map(|a| match &a.action {
            gpupool::model::Action::ReleaseUnfulfilled {
                group: g, count, ..
            } if g.as_str() == group => {
                assert!(a.error.is_none(), "release failed: {:?}", a.error);
                Some(*count)
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_spot_stockout_falls_back_to_on_demand_and_backs_off() {
    let moto = Moto::start();
    let proxy = aws_fault_proxy::FaultProxy::start(&moto.endpoint).await;
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: "llama-od",
        zones: &["us-east-1a"],
        ..Default::default()
    })
    .await;
    c.group(GroupFixture {
        name: "llama-spot",
        zones: &["us-east-1a"],
        overrides: &["g5.xlarge"],
        on_demand_pct: 0,
        ..Default::default()
    })
    .await;
    // Every spot launch is accepted, launches nothing, and fails FAILURE_DELAY later.
    proxy.stockout(
        "llama-spot",
        0,
        FAILURE_DELAY,
        SPOT_UNFULFILLABLE,
        "us-east-1a",
    );
    let (queue_url, _) = c.queue("gpupool-signals").await;
    let cfg = config(&moto, &queue_url);
    let provider = Arc::new(
        AwsProvider::new(moto.settings_at(&proxy.endpoint, &["llama"]))
            .await
            .unwrap(),
    );
    let replicas = Arc::new(Mutex::new(2u32));
    let mut ctl = Controller::new(
        Arc::new(cfg),
        provider.clone(),
        Box::new(ServeEveryReady::new("llama")),
        Box::new(FixedDemand::new("llama", replicas.clone())),
        Arc::new(Metrics::default()),
    );
    let mut clock = Clock {
        ticks: 0,
        jumped_ms: 0,
    };
    let spot_key = provider
        .node_groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.id.as_str() == "llama-spot")
        .unwrap()
        .offerings[0]
        .key();

    // 1. Demand 2: the pool prefers spot; AWS accepts the request.
    let r = tick(&mut ctl, &mut clock).await;
    assert!(
        r.results.iter().all(|a| a.error.is_none()),
        "{:?}",
        r.results
    );
    assert_eq!(proxy.desired("llama-spot"), Some(2), "plan: {:?}", r.plans);
    assert_eq!(proxy.requested_launches("llama-spot"), 1);
    assert_eq!(c.desired("llama-od").await.0, 0);

    // 2. AWS reports the launch failed, late.
    moto::eventually("the failed spot activity", || async {
        (proxy.failed_launches("llama-spot") >= 1).then_some(())
    })
    .await;
    // Within one tick: desired taken back to what is backed (nothing), on-demand grows.
    let seen = std::time::Instant::now();
    let r = tick(&mut ctl, &mut clock).await;
    // A figure for the README, not an assertion: wall time of the tick that saw the failure.
    println!(
        "failed activity visible → release + on-demand launch done: {} ms (one tick)",
        seen.elapsed().as_millis()
    );
    assert_eq!(released(&r, "llama-spot"), vec![2], "plan: {:?}", r.plans);
    assert_eq!(proxy.desired("llama-spot"), Some(0));
    let (od, od_ids) = c.desired("llama-od").await;
    assert_eq!(
        (od, od_ids.len()),
        (2, 2),
        "fell back to on-demand in the same tick"
    );
    let b = ctl
        .history()
        .backoff
        .get(&spot_key)
        .expect("spot backs off");
    assert_eq!(b.failures, 1);
    assert_eq!(
        b.until,
        r.now.plus_secs(60.0),
        "60 s from when gpupool learnt of it"
    );
    let first_until = b.until;
    // Nothing more is launched or released while the backoff runs.
    let r = tick(&mut ctl, &mut clock).await;
    assert!(released(&r, "llama-spot").is_empty());
    assert_eq!(proxy.requested_launches("llama-spot"), 1);

    // 3. After the backoff, more demand tries spot again; it fails again, late.
    *replicas.lock().unwrap() = 3;
    clock.jump(61);
    let r = tick(&mut ctl, &mut clock).await;
    assert!(r.now > first_until);
    assert_eq!(
        proxy.requested_launches("llama-spot"),
        2,
        "plan: {:?}",
        r.plans
    );
    assert_eq!(proxy.desired("llama-spot"), Some(1));
    moto::eventually("the second failed spot activity", || async {
        (proxy.failed_launches("llama-spot") >= 2).then_some(())
    })
    .await;
    let r = tick(&mut ctl, &mut clock).await;
    assert_eq!(released(&r, "llama-spot"), vec![1], "plan: {:?}", r.plans);
    assert_eq!(proxy.desired("llama-spot"), Some(0));
    assert_eq!(c.desired("llama-od").await.0, 3, "fell back again");
    let b = ctl.history().backoff.get(&spot_key).unwrap();
    assert_eq!(b.failures, 2);
    assert_eq!(b.until, r.now.plus_secs(120.0), "the backoff doubled");
    // The failure is taken back once: later ticks see nothing outstanding.
    let r = tick(&mut ctl, &mut clock).await;
    assert!(released(&r, "llama-spot").is_empty());
    assert_eq!(ctl.history().backoff.get(&spot_key).unwrap().failures, 2);
}

/// A cluster with one pending pod asking a MIG slice and no nodes yet.
struct PendingMigPod;

#[async_trait]
impl Cluster for PendingMigPod {
    async fn observe(
        &mut self,
        _instances: &[Instance],
        now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        Ok(ClusterView {
            nodes: Vec::new(),
            pending_pods: vec![gpupool::model::PendingPod {
                namespace: "ml".into(),
                name: "small-model".into(),
                pool: Some(PoolName::from("mig")),
                gpu: gpupool::model::GpuRequest::Mig {
                    profile: "1g.5gb".into(),
                    count: 1,
                },
                cpu_milli: 1000,
                memory_mib: 4096,
                node_selector: BTreeMap::new(),
                affinity: Vec::new(),
                tolerations: Vec::new(),
                pending_since: now,
            }],
        })
    }

    async fn drain(
        &mut self,
        _instance: &Instance,
        _deadline: Timestamp,
        _now: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        Ok(DrainProgress::Drained)
    }
}

/// No demand signal: the pending pod is the demand.
struct NoSignals;

#[async_trait]
impl DemandSource for NoSignals {
    async fn read(&mut self, _config: &Config, _now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        BTreeMap::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_mig_pod_scales_up_a_p4d_group_discovered_from_aws() {
    let moto = Moto::start();
    let c = moto.clients().await;
    // A p4d group: EC2 reports 8 × A100 with 40960 MiB each and no MIG profiles; the provider
    // attaches the catalog's A100-40GB row (1g.5gb × 7 per GPU).
    c.group(GroupFixture {
        name: "mig-p4d",
        pool: Some("mig"),
        instance_type: "p4d.24xlarge",
        zones: &["us-east-1a"],
        ..Default::default()
    })
    .await;
    let yaml = format!(
        r#"
provider: aws
mode: kubernetes
aws:
  region: us-east-1
  endpoint_url: {endpoint}
pools:
  - name: mig
    requirements: {{ gpu_models: [A100] }}
    limits: {{ max_nodes: 4 }}
"#,
        endpoint = moto.endpoint
    );
    let cfg = Config::load(&yaml).unwrap_or_else(|e| panic!("test config: {e}"));
    let provider = Arc::new(AwsProvider::new(moto.settings(&["mig"])).await.unwrap());
    let mut ctl = Controller::new(
        Arc::new(cfg),
        provider,
        Box::new(PendingMigPod),
        Box::new(NoSignals),
        Arc::new(Metrics::default()),
    );
    let mut clock = Clock {
        ticks: 0,
        jumped_ms: 0,
    };
    let r = tick(&mut ctl, &mut clock).await;
    let ups: Vec<(&str, u32, &str)> = r
        .results
        .iter()
        .filter_map(|a| match &a.action {
            gpupool::model::Action::ScaleUp {
                group,
                count,
                offering,
                ..
            } => {
                assert!(a.error.is_none(), "{:?}", a.error);
                Some((group.as_str(), *count, offering.instance_type.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        ups,
        vec![("mig-p4d", 1, "p4d.24xlarge")],
        "plan: {:?}",
        r.plans
    );
    assert_eq!(c.desired("mig-p4d").await.0, 1);
}

/// `/healthz` of a real server over `health`, sampled until `stop` flips: the statuses seen.
async fn sample_healthz(
    health: Arc<gpupool::server::Health>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (
    tokio::task::JoinHandle<Vec<u16>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let registry = Arc::new(prometheus_client::registry::Registry::default());
    tokio::spawn(gpupool::server::serve_on(
        listener,
        registry,
        health,
        async {
            let _ = rx.await;
        },
    ));
    let sampler = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut seen = Vec::new();
        // A sampling cadence, not a wait for state: every sample is kept.
        let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
        while !*stop.borrow() {
            every.tick().await;
            let status = http
                .get(format!("http://{addr}/healthz"))
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            seen.push(status);
        }
        seen
    });
    (sampler, tx)
}

/// Issue #14: with 30 % of Auto Scaling / EC2 calls throttled and 20 % failing with a 5xx (the
/// fault proxy, seeded), a demand of 3 is on the group within 3 ticks, and `/healthz` — loop
/// liveness — answers 200 throughout. Before, adaptive retries queued every call behind a
/// 0.5 request/s client-side limiter and one failed describe held the whole tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_do_not_stall_scale_up() {
    let moto = Moto::start();
    let proxy = aws_fault_proxy::FaultProxy::start(&moto.endpoint).await;
    let c = moto.clients().await;
    for (name, od_pct) in [("llama-od", 100), ("llama-spot", 0)] {
        c.group(GroupFixture {
            name,
            zones: &["us-east-1a"],
            overrides: if od_pct == 0 { &["g5.xlarge"] } else { &[] },
            on_demand_pct: od_pct,
            ..Default::default()
        })
        .await;
    }
    let (queue_url, _) = c.queue("gpupool-signals").await;
    let cfg = config(&moto, &queue_url);
    let mut settings = moto.settings_at(&proxy.endpoint, &["llama"]);
    // The production default (the moto helper raises it for slow CI machines).
    settings.api_timeout = std::time::Duration::from_secs(20);
    let provider = Arc::new(AwsProvider::new(settings).await.unwrap());
    let mut ctl = Controller::new(
        Arc::new(cfg),
        provider,
        Box::new(ServeEveryReady::new("llama")),
        Box::new(FixedDemand::new("llama", Arc::new(Mutex::new(3)))),
        Arc::new(Metrics::default()),
    );
    let mut clock = Clock {
        ticks: 0,
        jumped_ms: 0,
    };
    let health = Arc::new(gpupool::server::Health::new(
        10,
        gpupool::server::wall_clock(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (sampler, server_stop) = sample_healthz(health.clone(), stop_rx).await;
    // Seeded, so a run repeats; GPUPOOL_FAULT_SEED tries another sequence.
    let seed = std::env::var("GPUPOOL_FAULT_SEED").map_or(0x5eed_1234, |v| v.parse().unwrap());
    proxy.chaos(30, 20, seed);

    let mut scaled_at = None;
    let mut held = 0;
    for n in 1..=3 {
        let started = std::time::Instant::now();
        let r = ctl.tick(clock.next()).await;
        health.record_tick(gpupool::server::wall_clock(), r.is_ok());
        // A figure for the README, not an assertion.
        println!("tick {n}: {} ms", started.elapsed().as_millis());
        if let Err(e) = &r {
            held += 1;
            println!("tick {n} held: {}", gpupool::controller::error_chain(e));
        }
        let total = c.desired("llama-spot").await.0 + c.desired("llama-od").await.0;
        if total >= 3 {
            scaled_at = Some(n);
            break;
        }
    }
    let _ = stop_tx.send(true);
    let samples = sampler.await.unwrap();
    let _ = server_stop.send(());
    let (throttled, failed) = proxy.refused();
    println!(
        "30 % throttling + 20 % 5xx: scaled 0→3 at tick {scaled_at:?}, {held} held, {throttled} calls throttled, {failed} failed, {} /healthz samples",
        samples.len()
    );
    assert!(throttled > 0 && failed > 0, "the faults were injected");
    assert!(
        scaled_at.is_some(),
        "not scaled to 3 within 3 ticks: spot {:?}, on-demand {:?}",
        c.desired("llama-spot").await,
        c.desired("llama-od").await
    );
    assert_eq!(
        c.desired("llama-spot").await.0 + c.desired("llama-od").await.0,
        3,
        "no double scale-up"
    );
    assert!(!samples.is_empty());
    assert!(
        samples.iter().all(|s| *s == 200),
        "/healthz not 200 throughout: {samples:?}"
    );
    println!(
        "FAULT-ROW | AWS: 30 % throttling + 20 % HTTP 500 | 0→3 within 3 ticks, /healthz 200 throughout | desired 3 at tick {}, {held} held, {throttled} throttled + {failed} failed calls, {} /healthz samples all 200",
        scaled_at.unwrap(),
        samples.len()
    );
}
