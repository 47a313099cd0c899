//! The real `gpupool::controller::Controller` and planner driving `gpupool_aws::AwsProvider`
//! against a real moto server: a demand raises desired capacity on the right group, a spot
//! interruption put through EventBridge reaches the SQS queue and causes a drain and a
//! replacement, a malformed queue message is survived (and left for the DLQ), and a lower
//! demand terminates a chosen instance. Run with `cargo test --features aws`.

#![cfg(feature = "aws")]

#[path = "support/moto.rs"]
mod moto;

use async_trait::async_trait;
use gpupool::config::Config;
use gpupool::controller::{
    Cluster, ClusterError, ClusterView, Controller, DemandSource, DrainProgress, Metrics,
    TickReport,
};
use gpupool::model::{
    Instance, InstanceId, LifecycleState, Node, PoolDemand, PoolName, SignalReading, Timestamp,
};
use gpupool_aws::AwsProvider;
use moto::{GroupFixture, Moto};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// VM-only serving side: every Ready instance serves and is idle; drains finish at once.
struct ServeEveryReady {
    drained: Arc<Mutex<Vec<InstanceId>>>,
}

#[async_trait]
impl Cluster for ServeEveryReady {
    async fn observe(
        &mut self,
        instances: &[Instance],
        _now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        let nodes = instances
            .iter()
            .filter(|i| matches!(i.state, LifecycleState::Ready | LifecycleState::Draining))
            .map(|i| Node {
                name: i.id.to_string(),
                instance: i.id.clone(),
                pool: PoolName::from("llama"),
                capacity_type: i.capacity_type,
                labels: BTreeMap::new(),
                taints: Vec::new(),
                serving_ready: true,
                cordoned: false,
                scale_down_disabled: false,
                pods: Vec::new(),
                in_flight_requests: gpupool::model::InFlight::Known(0),
                idle_since: Some(i.launched_at),
                unhealthy: None,
                drain_deadline: None,
            })
            .collect();
        Ok(ClusterView {
            nodes,
            pending_pods: Vec::new(),
        })
    }

    async fn drain(
        &mut self,
        instance: &Instance,
        _deadline: Timestamp,
        _now: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        self.drained.lock().unwrap().push(instance.id.clone());
        Ok(DrainProgress::Drained)
    }
}

/// A fixed, fresh demand the test can change.
struct FixedDemand {
    replicas: Arc<Mutex<u32>>,
}

#[async_trait]
impl DemandSource for FixedDemand {
    async fn read(&mut self, _config: &Config, now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        let n = *self.replicas.lock().unwrap();
        let reading = SignalReading {
            name: "queue".into(),
            value: Some(f64::from(n)),
            replicas: Some(n),
            stale: false,
            observed_at: Some(now),
        };
        [(
            PoolName::from("llama"),
            PoolDemand {
                replicas_now: Some(n),
                replicas_forecast: Some(n),
                readings: vec![reading],
            },
        )]
        .into()
    }
}

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

/// Wall-clock time plus a virtual offset that grows by a tick interval per tick.
struct Clock {
    ticks: i64,
}

impl Clock {
    fn next(&mut self) -> Timestamp {
        self.ticks += 1;
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        Timestamp::from_millis(wall + self.ticks * 10_000)
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
    let drained = Arc::new(Mutex::new(Vec::new()));
    let replicas = Arc::new(Mutex::new(2u32));
    let mut ctl = Controller::new(
        Arc::new(cfg),
        provider.clone(),
        Box::new(ServeEveryReady {
            drained: drained.clone(),
        }),
        Box::new(FixedDemand {
            replicas: replicas.clone(),
        }),
        Arc::new(Metrics::default()),
    );
    let mut clock = Clock { ticks: 0 };

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
    assert_eq!(
        r.terminated_after_drain,
        vec![InstanceId::from(victim.as_str())],
        "drained then terminated"
    );
    assert!(drained.lock().unwrap().iter().any(|i| i.as_str() == victim));
    // Replacement: within a couple of ticks the group is back to 2 instances, the victim gone.
    let mut replaced = false;
    for _ in 0..3 {
        let (d, ids) = c.desired("llama-spot").await;
        if d == 2 && ids.len() == 2 && !ids.contains(&victim) {
            replaced = true;
            break;
        }
        tick(&mut ctl, &mut clock).await;
    }
    let (d, ids) = c.desired("llama-spot").await;
    assert!(
        replaced,
        "replacement launched: desired {d}, instances {ids:?}"
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

    // 4. Demand falls to 1: the controller chooses an instance, drains and terminates it.
    *replicas.lock().unwrap() = 1;
    let before = c.desired("llama-spot").await.1;
    let mut terminated = Vec::new();
    for _ in 0..6 {
        let r = tick(&mut ctl, &mut clock).await;
        terminated.extend(r.terminated_after_drain.clone());
        for a in &r.results {
            if let gpupool::model::Action::ScaleDown { instances, .. } = &a.action {
                terminated.extend(instances.iter().cloned());
            }
        }
        if c.desired("llama-spot").await.0 == 1 {
            break;
        }
    }
    let (d, after) = c.desired("llama-spot").await;
    assert_eq!(d, 1, "scaled down to the demand");
    assert_eq!(after.len(), 1);
    let gone: Vec<&String> = before.iter().filter(|i| !after.contains(i)).collect();
    assert_eq!(gone.len(), 1);
    assert!(
        terminated.iter().any(|t| t.as_str() == gone[0]),
        "the chosen instance {} was terminated by the controller",
        gone[0]
    );
    assert_eq!(c.desired("llama-od").await.0, 0);
}
