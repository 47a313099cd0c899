//! The real `Controller` and the real planner driving the fake Kubernetes API server through
//! `KubeCluster`, with a small in-memory cloud: a pending MIG pod scales up exactly once and not
//! again while its node is coming up; a node that never becomes serving-ready is replaced after
//! `max_provision_time_s`; two controllers elect one leader; a spot notice with a drain lead
//! cordons the node at once and evicts only in the drain window; a drain marked by an earlier
//! leader is carried on by a new one.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines
#![cfg(feature = "kube")]

#[path = "support/fake_kube.rs"]
mod fake_kube;

use async_trait::async_trait;
use fake_kube::*;
use gpupool::config::Config;
use gpupool::controller::{Cluster, ClusterError, ClusterView, Controller, DrainProgress, Metrics};
use gpupool::kube::{KubeCluster, LeaderElector};
use gpupool::model::{
    Action, CapacityType, GpuInfo, Instance, InstanceId, InstanceType, LifecycleState, MigProfile,
    NodeGroup, NodeGroupId, Offering, Plan, PoolName, ProviderEvent, Timestamp,
};
use gpupool::testkit::doubles::{MemProvider, NoDemand};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const CONFIG: &str = r#"
provider: sim
mode: kubernetes
pools:
  - name: mig
    requirements: { gpu_models: [A100] }
    limits: { max_nodes: 4 }
    disruption: { max_provision_time_s: 900 }
"#;

fn p4d() -> InstanceType {
    InstanceType {
        name: "p4d.24xlarge".into(),
        vcpu: 96,
        memory_mib: 1_152_000,
        gpu: GpuInfo {
            model: "A100".into(),
            count: 8,
            memory_mib_per_gpu: 40_960,
            mig_profiles: vec![
                MigProfile {
                    name: "1g.5gb".into(),
                    per_gpu: 7,
                },
                MigProfile {
                    name: "3g.20gb".into(),
                    per_gpu: 2,
                },
            ],
        },
    }
}

/// One on-demand ASG in the test kit's in-memory cloud; `increase` creates instances in
/// `Launching` (booting, device plugin and model not up yet), which the test promotes as the
/// node becomes serving-ready, and `terminate` removes them at once.
/// A fake API server holding one pending pod `ml/small-model` that asks for a 1g.5gb MIG
/// slice in the `mig` pool.
async fn fake_with_mig_pod() -> FakeKube {
    let fake = FakeKube::start().await;
    fake.apply(pending_pod(
        "ml",
        "small-model",
        json!({"nvidia.com/mig-1g.5gb": "1"}),
        json!({"gpupool.io/pool": "mig"}),
    ));
    fake
}

fn mem_cloud() -> MemProvider {
    let c = MemProvider::default();
    {
        let mut w = c.w();
        w.groups.push(NodeGroup {
            id: NodeGroupId::new("mig-od"),
            pool: PoolName::new("mig"),
            offerings: vec![Offering {
                instance_type: p4d(),
                capacity_type: CapacityType::OnDemand,
                zone: "us-east-1a".into(),
                price_per_hour: gpupool_provider::Price::from_dollars(32.77),
                interruption_risk_per_hour: 0.0,
                available: true,
            }],
            min_size: 0,
            max_size: 4,
            desired: 0,
            labels: BTreeMap::new(),
            taints: vec![],
            warm_pool: None,
            activity_in_progress: false,
            unfulfilled: Vec::new(),
        });
        w.launch_template = Some(p4d_instance(
            &InstanceId::new("i-0000"),
            CapacityType::OnDemand,
            LifecycleState::Launching,
        ));
        w.terminate_removes = true;
    }
    c
}

fn pid(id: &InstanceId) -> String {
    format!("aws:///us-east-1a/{id}")
}

/// A p4d.24xlarge instance of group `mig-od` with its provider ID.
fn p4d_instance(id: &InstanceId, ct: CapacityType, state: LifecycleState) -> Instance {
    Instance {
        provider_id: Some(pid(id)),
        id: id.clone(),
        group: NodeGroupId::new("mig-od"),
        instance_type: "p4d.24xlarge".into(),
        capacity_type: ct,
        zone: "us-east-1a".into(),
        state,
        launched_at: Timestamp::from_secs(0),
        model_cache: None,
        protected_from_scale_in: false,
        awaiting_lifecycle_hook: false,
        private_ip: None,
        drain_deadline: None,
    }
}

/// Instances already Ready at `now` (the group's desired size follows).
fn with_ready(cloud: &MemProvider, now: Timestamp, instances: Vec<Instance>) {
    let mut c = cloud.w();
    c.now = now;
    if let Some(g) = c.groups.first_mut() {
        g.desired += instances.len() as u32;
    }
    c.instances.extend(instances);
}

fn config() -> Arc<Config> {
    Arc::new(Config::load(CONFIG).unwrap_or_else(|e| panic!("{e}")))
}

/// `KubeCluster` with the last view it returned kept for the test, so the test can tell when
/// the controller has *seen* a change it made on the API server.
struct Seen {
    inner: KubeCluster,
    last: Arc<Mutex<Option<ClusterView>>>,
}

#[async_trait]
impl Cluster for Seen {
    async fn observe(
        &mut self,
        i: &[Instance],
        now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        let v = self.inner.observe(i, now).await?;
        *self.last.lock().unwrap() = Some(v.clone());
        Ok(v)
    }
    async fn drain(
        &mut self,
        i: &Instance,
        d: Timestamp,
        now: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        self.inner.drain(i, d, now).await
    }
    async fn cordon(&mut self, i: &Instance, deadline: Timestamp) -> Result<(), ClusterError> {
        self.inner.cordon(i, deadline).await
    }
    async fn uncordon(&mut self, i: &Instance) -> Result<bool, ClusterError> {
        self.inner.uncordon(i).await
    }
    async fn publish(&mut self, plan: &Plan, now: Timestamp) {
        self.inner.publish(plan, now).await
    }
    fn relisting(&self) -> Vec<gpupool::model::WatchedResource> {
        self.inner.relisting()
    }
    fn scheduler_messages(&self) -> BTreeMap<String, String> {
        self.inner.scheduler_messages()
    }
}

type LastView = Arc<Mutex<Option<ClusterView>>>;

async fn controller(fake: &FakeKube, cloud: &MemProvider) -> (Controller, LastView) {
    controller_with(fake, cloud, config()).await
}

async fn controller_with(
    fake: &FakeKube,
    cloud: &MemProvider,
    cfg: Arc<Config>,
) -> (Controller, LastView) {
    let cluster = KubeCluster::start(fake.client(), cfg.clone(), Some("gpupool-0".into()));
    eventually(10, "initial lists", || {
        let ok = cluster.synced();
        async move { ok.then_some(()) }
    })
    .await;
    let last = LastView::default();
    let ctl = Controller::new(
        cfg,
        Arc::new(cloud.clone()),
        Box::new(Seen {
            inner: cluster,
            last: last.clone(),
        }),
        Box::new(NoDemand),
        Arc::new(Metrics::default()),
    );
    (ctl, last)
}

/// Tick at `t` until the controller's cluster view satisfies `f` (repeating a tick at the same
/// instant changes nothing the assertions look at: same plan, actions deduplicated by state).
async fn tick_until(
    ctl: &mut Controller,
    last: &LastView,
    t: Timestamp,
    what: &str,
    f: impl Fn(&ClusterView) -> bool,
) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        ctl.tick(t).await.unwrap();
        if last.lock().unwrap().as_ref().is_some_and(&f) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "controller never saw {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn node_is(v: &ClusterView, name: &str, step: &str, ready: bool) -> bool {
    v.nodes.iter().any(|n| {
        n.name == name
            && n.serving_ready == ready
            && n.labels.get("test-step").map(String::as_str) == Some(step)
    })
}

fn mig_node(name: &str, id: &InstanceId, slices: u32, step: &str) -> serde_json::Value {
    let mut n = gpu_node(name, &pid(id), "mig", 0, json!({"test-step": step}));
    let s = slices.to_string();
    n["status"]["capacity"]["nvidia.com/mig-1g.5gb"] = json!(s);
    n["status"]["allocatable"]["nvidia.com/mig-1g.5gb"] = json!(s);
    n
}

fn increases(cloud: &MemProvider) -> usize {
    cloud
        .calls()
        .iter()
        .filter(|c| c.starts_with("increase"))
        .count()
}

fn pod_events(fake: &FakeKube, pod: &str, reason: &str) -> usize {
    fake.list(Kind::Event)
        .iter()
        .filter(|e| e["regarding"]["name"] == pod && e["reason"] == reason)
        .count()
}

#[tokio::test]
async fn pending_mig_pod_scales_up_once_and_waits_for_the_node_to_serve() {
    let fake = fake_with_mig_pod().await;
    let cloud = mem_cloud();
    let (mut ctl, last) = controller(&fake, &cloud).await;

    let t0 = Timestamp::from_secs(100_000);
    cloud.set_now(t0);
    let r = ctl.tick(t0).await.unwrap();
    let plan = r.plan().unwrap();
    let ups: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::ScaleUp { .. }))
        .collect();
    assert_eq!(ups.len(), 1, "{plan:#?}");
    match ups[0] {
        Action::ScaleUp {
            group,
            count,
            offering,
            ..
        } => {
            assert_eq!(group.as_str(), "mig-od");
            assert_eq!(*count, 1);
            assert_eq!(offering.instance_type.as_str(), "p4d.24xlarge");
        }
        _ => unreachable!(),
    }
    assert_eq!(cloud.calls(), vec!["increase mig-od 1"]);
    assert_eq!(pod_events(&fake, "small-model", "TriggeredScaleUp"), 1);

    // The instance boots (no node yet), the node registers without MIG slices allocatable,
    // then with slices but kubelet not Ready: in flight all along, never a second scale-up.
    let id = cloud.instances()[0].id.clone();
    let mut t = t0.plus_secs(10.0);
    cloud.set_now(t);
    ctl.tick(t).await.unwrap();
    assert_eq!(increases(&cloud), 1, "{:?}", cloud.calls());
    t = t.plus_secs(10.0);
    fake.apply(mig_node("ip-10-0-1-1", &id, 0, "registered"));
    tick_until(&mut ctl, &last, t, "the registered node", |v| {
        node_is(v, "ip-10-0-1-1", "registered", false)
    })
    .await;
    assert_eq!(increases(&cloud), 1, "{:?}", cloud.calls());
    t = t.plus_secs(10.0);
    let mut n = mig_node("ip-10-0-1-1", &id, 56, "not-ready");
    n["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    fake.apply(n);
    tick_until(&mut ctl, &last, t, "the NotReady node", |v| {
        node_is(v, "ip-10-0-1-1", "not-ready", false)
    })
    .await;
    assert_eq!(increases(&cloud), 1, "{:?}", cloud.calls());
    // Serving-ready before the cloud reports the instance running: still counted once.
    t = t.plus_secs(10.0);
    fake.apply(mig_node("ip-10-0-1-1", &id, 56, "serving"));
    tick_until(&mut ctl, &last, t, "the serving node", |v| {
        node_is(v, "ip-10-0-1-1", "serving", true)
    })
    .await;
    assert_eq!(increases(&cloud), 1, "{:?}", cloud.calls());
    // Nothing was terminated or drained meanwhile, and the pod's event was written once.
    assert!(!cloud.calls().iter().any(|c| c.starts_with("terminate")));
    assert_eq!(pod_events(&fake, "small-model", "TriggeredScaleUp"), 1);
}

#[tokio::test]
async fn a_node_that_never_serves_is_replaced_after_max_provision_time() {
    let fake = fake_with_mig_pod().await;
    let cloud = mem_cloud();
    let (mut ctl, last) = controller(&fake, &cloud).await;
    let t0 = Timestamp::from_secs(200_000);
    cloud.set_now(t0);
    ctl.tick(t0).await.unwrap();
    let stuck = cloud.instances()[0].id.clone();
    // The node registers but its GPUs never become allocatable (driver never loads).
    fake.apply(mig_node("ip-10-0-2-2", &stuck, 0, "stuck"));
    tick_until(&mut ctl, &last, t0, "the stuck node", |v| {
        node_is(v, "ip-10-0-2-2", "stuck", false)
    })
    .await;
    let mut t = t0;
    for _ in 0..5 {
        t = t.plus_secs(60.0);
        cloud.set_now(t);
        ctl.tick(t).await.unwrap();
    }
    assert_eq!(
        increases(&cloud),
        1,
        "waiting, not re-launching: {:?}",
        cloud.calls()
    );
    // Past max_provision_time_s (900 s): terminated and replaced in the same plan.
    t = t0.plus_secs(960.0);
    cloud.set_now(t);
    let r = ctl.tick(t).await.unwrap();
    let calls = cloud.calls();
    assert!(
        calls.contains(&format!("terminate mig-od {stuck}")),
        "{calls:?}\n{:#?}",
        r.plan()
    );
    assert_eq!(
        increases(&cloud),
        2,
        "a replacement was launched: {calls:?}"
    );
    // The stuck node got a ScaleDown event.
    eventually(5, "ScaleDown event on the stuck node", || {
        let n = fake
            .list(Kind::Event)
            .iter()
            .filter(|e| e["regarding"]["name"] == "ip-10-0-2-2" && e["reason"] == "ScaleDown")
            .count();
        async move { (n == 1).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn two_controllers_one_leader_only_the_leader_acts() {
    let fake = fake_with_mig_pod().await;
    let cloud = mem_cloud();
    let mut ctls = [
        controller(&fake, &cloud).await.0,
        controller(&fake, &cloud).await.0,
    ];
    let k = gpupool::config::KubernetesConfig::default();
    let mut electors = [
        LeaderElector::from_config(fake.client(), &k, "gpupool-0"),
        LeaderElector::from_config(fake.client(), &k, "gpupool-1"),
    ];
    // The run loop: tick only while leader. Both replicas, 5 rounds, 10 s apart.
    let t0 = Timestamp::from_secs(300_000);
    let mut leaders_per_round = Vec::new();
    for round in 0..5 {
        let t = t0.plus_secs(10.0 * f64::from(round));
        cloud.set_now(t);
        let mut leading = 0;
        for (ctl, el) in ctls.iter_mut().zip(electors.iter_mut()) {
            if el.try_acquire_or_renew(t).await.unwrap() {
                leading += 1;
                ctl.tick(t).await.unwrap();
            }
        }
        leaders_per_round.push(leading);
    }
    assert_eq!(leaders_per_round, vec![1; 5]);
    assert_eq!(
        increases(&cloud),
        1,
        "one leader, one scale-up: {:?}",
        cloud.calls()
    );
}

#[tokio::test]
async fn a_spot_notice_cordons_at_once_and_evicts_only_in_the_drain_window() {
    let fake = FakeKube::start().await;
    let cloud = mem_cloud();
    let t0 = Timestamp::from_secs(300_000);
    let id = InstanceId::new("i-spot");
    with_ready(
        &cloud,
        t0,
        vec![p4d_instance(&id, CapacityType::Spot, LifecycleState::Ready)],
    );
    fake.apply(gpu_node(
        "ip-10-0-3-3",
        &pid(&id),
        "mig",
        8,
        json!({"test-step": "serving"}),
    ));
    fake.apply(running_pod(
        "ml",
        "server-0",
        "ip-10-0-3-3",
        "server",
        30,
        json!({}),
    ));
    let cfg = Arc::new(
        Config::load(&CONFIG.replace(
            "disruption: { max_provision_time_s: 900 }",
            "disruption: { max_provision_time_s: 900, interruption_drain_s: 30 }",
        ))
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let (mut ctl, last) = controller_with(&fake, &cloud, cfg).await;
    tick_until(&mut ctl, &last, t0, "the serving node", |v| {
        node_is(v, "ip-10-0-3-3", "serving", true)
    })
    .await;

    // Notice at t0 for a reclaim at t0+120 s; the drain window opens at t0+90 s.
    cloud.w().events.push(ProviderEvent {
        ack: None,
        id: "ev-1".into(),
        kind: gpupool_provider::ProviderEventKind::SpotInterruption {
            instance: id.clone(),
            deadline: t0.plus_secs(120.0),
        },
    });
    let evictions = || fake.count_requests(|r| r.contains("/eviction"));
    let mut t = t0;
    for _ in 0..9 {
        ctl.tick(t).await.unwrap();
        t = t.plus_secs(10.0);
    }
    let node = fake.get(Kind::Node, "", "ip-10-0-3-3").expect("node");
    assert_eq!(
        node["spec"]["unschedulable"],
        json!(true),
        "cordoned with the notice"
    );
    assert_eq!(
        node["metadata"]["annotations"]["gpupool.io/drain-deadline"],
        json!((t0.millis() / 1000 + 120).to_string()),
        "the drain and its deadline are marked for a future leader"
    );
    assert_eq!(evictions(), 0, "pods keep serving until the drain window");
    let pod = fake.get(Kind::Pod, "ml", "server-0").expect("pod");
    assert!(pod["metadata"]["deletionTimestamp"].is_null());
    assert!(
        increases(&cloud) >= 1,
        "the replacement was launched with the notice: {:?}",
        cloud.calls()
    );
    assert!(!cloud.calls().iter().any(|c| c.starts_with("terminate")));

    // t0+90 s: the drain window opens; the pod is evicted.
    ctl.tick(t0.plus_secs(90.0)).await.unwrap();
    eventually(5, "eviction in the drain window", || {
        let n = evictions();
        async move { (n >= 1).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_new_leader_carries_on_a_drain_marked_by_the_previous_one() {
    let fake = FakeKube::start().await;
    let cloud = mem_cloud();
    let t0 = Timestamp::from_secs(400_000);
    let ids = [InstanceId::new("i-marked"), InstanceId::new("i-uncordoned")];
    with_ready(
        &cloud,
        t0,
        ids.iter()
            .map(|id| p4d_instance(id, CapacityType::OnDemand, LifecycleState::Ready))
            .collect(),
    );
    let deadline = (t0.millis() / 1000 + 300).to_string();
    // The previous leader cordoned and marked this node, then died.
    let mut marked = gpu_node("ip-10-0-4-4", &pid(&ids[0]), "mig", 8, json!({}));
    marked["spec"]["unschedulable"] = json!(true);
    marked["metadata"]["annotations"]["gpupool.io/drain-deadline"] = json!(deadline);
    fake.apply(marked);
    fake.apply(running_pod(
        "ml",
        "server-1",
        "ip-10-0-4-4",
        "server",
        30,
        json!({}),
    ));
    // This one carries a stale mark, but an operator uncordoned it: not ours any more.
    let mut taken_back = gpu_node("ip-10-0-5-5", &pid(&ids[1]), "mig", 8, json!({}));
    taken_back["metadata"]["annotations"]["gpupool.io/drain-deadline"] = json!(deadline);
    fake.apply(taken_back);
    fake.apply(running_pod(
        "ml",
        "server-2",
        "ip-10-0-5-5",
        "server",
        30,
        json!({}),
    ));

    let (mut ctl, last) = controller(&fake, &cloud).await;
    tick_until(&mut ctl, &last, t0, "both nodes", |v| v.nodes.len() == 2).await;
    let draining: Vec<(InstanceId, Timestamp)> =
        ctl.draining().map(|(id, d)| (id.clone(), d)).collect();
    assert_eq!(
        draining,
        vec![(
            ids[0].clone(),
            Timestamp::from_secs(t0.millis() / 1000 + 300)
        )],
        "the marked, cordoned node is drained with its recorded deadline; the uncordoned one is not"
    );
    eventually(5, "server-1 evicted", || {
        let n = fake.count_requests(|r| r.contains("/pods/server-1/eviction"));
        async move { (n >= 1).then_some(()) }
    })
    .await;
    assert_eq!(
        fake.count_requests(|r| r.contains("/pods/server-2/eviction")),
        0
    );
}

/// A voluntary scale-down the PodDisruptionBudget blocks: every eviction is refused (0
/// disruptions allowed); at `drain_timeout_s` the drain is given up — node uncordoned, its
/// drain mark removed, nothing terminated — and the node is not drained again right away.
#[tokio::test]
async fn a_scale_down_the_pdb_blocks_is_abandoned_at_the_deadline_not_forced() {
    let fake = FakeKube::start().await;
    let cloud = mem_cloud();
    let t0 = Timestamp::from_secs(400_000);
    let (a, b) = (InstanceId::new("i-a"), InstanceId::new("i-b"));
    with_ready(
        &cloud,
        t0,
        vec![
            p4d_instance(&a, CapacityType::OnDemand, LifecycleState::Ready),
            p4d_instance(&b, CapacityType::OnDemand, LifecycleState::Ready),
        ],
    );
    fake.apply(gpu_node(
        "node-a",
        &pid(&a),
        "mig",
        8,
        json!({"test-step": "serving"}),
    ));
    fake.apply(gpu_node(
        "node-b",
        &pid(&b),
        "mig",
        8,
        json!({"test-step": "serving"}),
    ));
    // node-a: one pod guarded by a PDB that allows no disruption; node-b: a do-not-disrupt
    // pod (so node-b stays) and room for node-a's pod (so node-a is unneeded).
    fake.apply(running_pod(
        "ml",
        "server-0",
        "node-a",
        "server",
        30,
        json!({}),
    ));
    fake.apply(pdb("ml", "server", "server", 0));
    fake.apply(running_pod(
        "ml",
        "pinned-0",
        "node-b",
        "pinned",
        30,
        json!({"karpenter.sh/do-not-disrupt": "true"}),
    ));
    let cfg = Arc::new(
        Config::load(&CONFIG.replace(
            "disruption: { max_provision_time_s: 900 }",
            "disruption: { max_provision_time_s: 900, unneeded_time_s: 0, \
             scale_down_delay_after_add_s: 0, drain_timeout_s: 60 }",
        ))
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let (mut ctl, last) = controller_with(&fake, &cloud, cfg).await;
    tick_until(&mut ctl, &last, t0, "both serving nodes", |v| {
        node_is(v, "node-a", "serving", true) && node_is(v, "node-b", "serving", true)
    })
    .await;
    let evictions = || fake.count_requests(|r| r.contains("/eviction"));
    eventually(5, "node-a cordoned and evictions tried", || {
        let cordoned = fake
            .get(Kind::Node, "", "node-a")
            .is_some_and(|n| n["spec"]["unschedulable"] == json!(true));
        let tried = evictions() >= 1;
        async move { (cordoned && tried).then_some(()) }
    })
    .await;
    for s in [20.0, 40.0, 59.0] {
        ctl.tick(t0.plus_secs(s)).await.unwrap();
    }
    assert!(
        fake.get(Kind::Pod, "ml", "server-0").is_some(),
        "the PDB held"
    );
    // Deadline passed: given up, not forced.
    ctl.tick(t0.plus_secs(61.0)).await.unwrap();
    assert!(
        !cloud.calls().iter().any(|c| c.starts_with("terminate")),
        "a voluntary drain was forced through the PDB: {:?}",
        cloud.calls()
    );
    let node = fake.get(Kind::Node, "", "node-a").expect("node-a");
    assert_eq!(node["spec"]["unschedulable"], json!(false), "uncordoned");
    assert!(
        node["metadata"]["annotations"]["gpupool.io/drain-deadline"].is_null(),
        "drain mark removed: {node}"
    );
    // Not drained again at once (cool-off of max(unneeded_time_s, drain_timeout_s)).
    let tried = evictions();
    for s in [70.0, 90.0] {
        ctl.tick(t0.plus_secs(s)).await.unwrap();
    }
    assert_eq!(evictions(), tried, "drained again right after giving up");
    let node = fake.get(Kind::Node, "", "node-a").expect("node-a");
    assert_eq!(node["spec"]["unschedulable"], json!(false));
}

/// Leadership fencing with the production renewal task: the lease is renewed in the background
/// (a tick may last longer than the 3 s lease here without losing it), and when the leader's
/// renewals stop — a hung or partitioned replica, simulated by aborting its renewal task without
/// releasing — its fence turns false (renew deadline, 2 s) before the standby may take over
/// (lease duration, 3 s of the standby's own clock). Sampled every 20 ms for the whole run: never
/// two replicas allowed to act at once, and the standby does take over.
#[tokio::test]
async fn a_lost_lease_fences_the_old_leader_before_anyone_else_leads() {
    use gpupool::kube::lease::spawn_renewal;
    let fake = FakeKube::start().await;
    let ns = "gpupool";
    let period = std::time::Duration::from_millis(500);
    let mut a = spawn_renewal(
        LeaderElector::new(fake.client(), ns, "gpupool-leader", "gpupool-0", 3),
        period,
    );
    let a_fence = a.fence();
    eventually(10, "replica 0 leads", || {
        let ok = a_fence();
        async move { ok.then_some(()) }
    })
    .await;
    let mut b = spawn_renewal(
        LeaderElector::new(fake.client(), ns, "gpupool-leader", "gpupool-1", 3),
        period,
    );
    let b_fence = b.fence();
    // A "tick" longer than the lease: both sampled throughout; the renewal task keeps A leading.
    let sample = |what: &str, a: &gpupool::controller::Fence, b: &gpupool::controller::Fence| {
        let (x, y) = (a(), b());
        assert!(!(x && y), "two leaders at once ({what})");
        (x, y)
    };
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while tokio::time::Instant::now() < until {
        let (x, _) = sample("during a long tick", &a_fence, &b_fence);
        assert!(
            x,
            "the background renewal keeps the leader through a tick longer than the lease"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Replica 0 stops renewing without releasing; replica 1 must take over, never overlapping.
    a.abort();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, y) = sample("after the leader stopped renewing", &a_fence, &b_fence);
        if y {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby never took over"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!a_fence(), "the old leader stays fenced");
    b.release().await;
}

/// `gpupool run --dump-snapshot`'s files replay to the very plan the controller made
/// (`gpupool plan --snapshot --history`), the status ConfigMap is written on change only, and
/// `gpupool status` prints the per-pool reasons a running controller serves on `/status`.
#[tokio::test]
async fn a_dumped_tick_replays_to_the_same_plan_and_the_status_is_served_and_written() {
    use gpupool::controller::dump::Dumper;
    use gpupool::model::status::{Status, StatusInput, build};
    let fake = fake_with_mig_pod().await;
    let cloud = mem_cloud();
    let (ctl, _last) = controller(&fake, &cloud).await;
    let mut ctl = ctl.with_capture();
    let t0 = Timestamp::from_secs(100_000);
    cloud.set_now(t0);
    let report = ctl.tick(t0).await.unwrap();
    let made = report.plan().unwrap().clone();
    assert!(!made.actions.is_empty(), "{made:#?}");

    let dir = std::env::temp_dir().join(format!("gpupool-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let planned = ctl.last_planned().unwrap();
    let files = Dumper::new(&dir, 3).unwrap().write(planned).unwrap();
    let cfg_path = dir.join("config.yaml");
    std::fs::write(&cfg_path, CONFIG).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpupool"))
        .arg("plan")
        .arg("--snapshot")
        .arg(&files.snapshot)
        .arg("--history")
        .arg(&files.history)
        .arg("--config")
        .arg(&cfg_path)
        .arg("--json")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Plan = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replayed.actions, made.actions);
    assert_eq!(replayed.decisions, made.decisions);
    let dumped: Plan = serde_json::from_slice(&std::fs::read(&files.plan).unwrap()).unwrap();
    assert_eq!(dumped, made);

    // The status ConfigMap: created, then left alone while nothing changes.
    let cfg = config();
    let status = build(&StatusInput {
        config: &cfg,
        leader: true,
        last_tick: Some(t0),
        held: None,
        planned: Some((&planned.snapshot, &planned.history, &planned.plan)),
        shadow: ctl.shadow(),
    });
    let mut map = gpupool::kube::status_map::StatusMap::new(fake.client(), "gpupool");
    assert!(map.publish(&status, t0).await.unwrap());
    let cm = fake
        .get(Kind::ConfigMap, "gpupool", "gpupool-status")
        .expect("status ConfigMap created");
    let written: Status =
        serde_json::from_str(cm["data"]["status.json"].as_str().unwrap()).unwrap();
    assert_eq!(written, status);
    assert!(cm["data"]["status"].as_str().unwrap().contains("mig"));
    let writes = |f: &FakeKube| f.count_requests(|r| r.contains("/configmaps"));
    let before = writes(&fake);
    assert!(!map.publish(&status, t0.plus_secs(60.0)).await.unwrap());
    assert_eq!(writes(&fake), before, "unchanged status written again");
    let mut later = status.clone();
    later.leader = false;
    assert!(map.publish(&later, t0.plus_secs(60.0)).await.unwrap());
    let cm = fake
        .get(Kind::ConfigMap, "gpupool", "gpupool-status")
        .unwrap();
    assert!(
        cm["data"]["status.json"]
            .as_str()
            .unwrap()
            .contains("\"leader\": false")
    );

    // `gpupool status` against the controller's HTTP server.
    let health = Arc::new(gpupool::server::Health::new(10, t0));
    health
        .status
        .publish(serde_json::to_string(&status).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gpupool::server::serve_on(
        listener,
        Arc::new(prometheus_client::registry::Registry::default()),
        health,
        async {
            let _ = stopped.await;
        },
    ));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpupool"))
        .args(["status", "--url", &format!("http://{addr}")])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("gpupool leader, mode active"), "{text}");
    assert!(text.contains("pool mig:"), "{text}");
    assert!(
        text.contains("pending pod(s) need 1 more node(s)"),
        "{text}"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// After a watch error the cache is not trusted until it has listed again: while the relist
/// cannot complete (lists answer 500 after a 410 on the watches), two empty, unneeded nodes
/// are kept with `cache_not_current`; once the list succeeds, scale-down resumes.
#[tokio::test]
async fn no_scale_down_while_a_watch_is_relisting() {
    let fake = FakeKube::start().await;
    let cloud = mem_cloud();
    let t0 = Timestamp::from_secs(500_000);
    let (a, b) = (InstanceId::new("i-a"), InstanceId::new("i-b"));
    with_ready(
        &cloud,
        t0,
        vec![
            p4d_instance(&a, CapacityType::OnDemand, LifecycleState::Ready),
            p4d_instance(&b, CapacityType::OnDemand, LifecycleState::Ready),
        ],
    );
    for (name, id) in [("node-a", &a), ("node-b", &b)] {
        fake.apply(gpu_node(name, &pid(id), "mig", 8, json!({})));
    }
    let cfg = Arc::new(
        Config::load(&CONFIG.replace(
            "disruption: { max_provision_time_s: 900 }",
            "disruption: { max_provision_time_s: 900, unneeded_time_s: 0, \
             scale_down_delay_after_add_s: 0 }",
        ))
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let cluster = KubeCluster::start(fake.client(), cfg.clone(), Some("gpupool-0".into()));
    eventually(10, "initial lists", || {
        let ok = cluster.synced();
        async move { ok.then_some(()) }
    })
    .await;
    // The watches fail (410 after compaction) and the relist cannot complete.
    let mut fake = fake;
    fake.fail_lists(true);
    fake.expire_watches();
    eventually(10, "both watches relisting", || {
        let r = cluster.relisting();
        async move { (r.len() == 2).then_some(()) }
    })
    .await;
    let mut ctl = Controller::new(
        cfg,
        Arc::new(cloud.clone()),
        Box::new(cluster),
        Box::new(NoDemand),
        Arc::new(Metrics::default()),
    );
    for s in [0.0, 10.0, 20.0] {
        let r = ctl.tick(t0.plus_secs(s)).await.unwrap();
        let plan = r.plan().unwrap();
        assert!(plan.actions.is_empty(), "acted on a stale cache: {plan:#?}");
        assert!(
            plan.decisions
                .iter()
                .any(|d| d.reason.code() == "cache_not_current"),
            "{:#?}",
            plan.decisions
        );
    }
    assert!(cloud.calls().is_empty(), "{:?}", cloud.calls());
    assert!(
        fake.get(Kind::Node, "", "node-a").unwrap()["spec"]["unschedulable"].is_null(),
        "cordoned on a stale cache"
    );

    // The API server can list again: the cache is current and the empty nodes may go.
    fake.fail_lists(false);
    let mut t = t0.plus_secs(30.0);
    // The relist retries with a backoff that grew while lists failed (0.8 s doubling to 30 s):
    // after ~25 s of failures the next try is ~25 s away, and the try after a failed one 30 s
    // more. Measured alone on the build machine: 78 s, so a 90-s deadline failed under load.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(240);
    loop {
        let r = ctl.tick(t).await.unwrap();
        let plan = r.plan().unwrap();
        if plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Drain { .. } | Action::ScaleDown { .. }))
        {
            assert!(
                !plan
                    .decisions
                    .iter()
                    .any(|d| d.reason.code() == "cache_not_current")
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scale-down never resumed after the relist: {plan:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        t = t.plus_secs(1.0);
    }
}

/// A new pending GPU pod wakes the run loop within the batch window instead of the next tick.
#[tokio::test]
async fn a_new_pending_gpu_pod_wakes_the_loop() {
    let fake = FakeKube::start().await;
    let cluster = KubeCluster::start(fake.client(), config(), Some("gpupool-0".into()));
    eventually(10, "initial lists", || {
        let ok = cluster.synced();
        async move { ok.then_some(()) }
    })
    .await;
    let wake = cluster.wakeups();
    let waiter = tokio::spawn({
        let wake = wake.clone();
        async move { wake.wait().await }
    });
    fake.apply(pending_pod(
        "ml",
        "fresh",
        json!({"nvidia.com/mig-1g.5gb": "1"}),
        json!({"gpupool.io/pool": "mig"}),
    ));
    tokio::time::timeout(std::time::Duration::from_secs(15), waiter)
        .await
        .expect("the new pending pod never woke the loop")
        .unwrap();
    // The same pod seen again is not new.
    let uid = fake.get(Kind::Pod, "ml", "fresh").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !wake.trigger(&uid),
        "the watch did not trigger for this pod"
    );
}

/// The churn loop of a pod gpupool thinks fits but the scheduler refuses (here: it also asks
/// ephemeral storage no node has): a minute after a fitting node serves, the pod is taken as
/// refused for an unmodelled constraint — `NotTriggerScaleUp` with the scheduler's message,
/// the idle node is no longer kept for it, and no node is launched for it during the backoff.
#[tokio::test]
async fn a_pod_the_scheduler_refuses_for_an_unmodelled_reason_stops_the_launch_loop() {
    let fake = FakeKube::start().await;
    let cloud = mem_cloud();
    let t0 = Timestamp::from_secs(600_000);
    let a = InstanceId::new("i-a");
    with_ready(
        &cloud,
        t0,
        vec![p4d_instance(
            &a,
            CapacityType::OnDemand,
            LifecycleState::Ready,
        )],
    );
    fake.apply(gpu_node("node-a", &pid(&a), "mig", 8, json!({})));
    let mut pod = pending_pod(
        "ml",
        "big-scratch",
        json!({"nvidia.com/gpu": "1"}),
        json!({"gpupool.io/pool": "mig"}),
    );
    pod["status"]["conditions"][0]["message"] = json!(
        "0/1 nodes are available: 1 Insufficient ephemeral-storage. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    fake.apply(pod);
    let cfg = Arc::new(
        Config::load(&CONFIG.replace(
            "disruption: { max_provision_time_s: 900 }",
            "disruption: { max_provision_time_s: 900, unneeded_time_s: 0, \
             scale_down_delay_after_add_s: 0 }",
        ))
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let (mut ctl, last) = controller_with(&fake, &cloud, cfg).await;
    tick_until(&mut ctl, &last, t0, "the node and the pod", |v| {
        v.nodes
            .iter()
            .any(|n| n.name == "node-a" && n.serving_ready)
            && v.pending_pods.len() == 1
    })
    .await;
    let r = ctl.tick(t0.plus_secs(10.0)).await.unwrap();
    let code_of_pod = |p: &Plan| {
        p.decisions
            .iter()
            .find(|d| d.subject.to_string() == "pod ml/big-scratch")
            .map(|d| d.reason.code())
    };
    assert_eq!(code_of_pod(r.plan().unwrap()), Some("fits_serving_node"));
    assert!(cloud.calls().is_empty(), "{:?}", cloud.calls());

    // A minute later the pod is still pending: refused for something gpupool does not model.
    let r = ctl.tick(t0.plus_secs(71.0)).await.unwrap();
    assert_eq!(code_of_pod(r.plan().unwrap()), Some("scheduler_rejects"));
    let note = eventually(10, "the NotTriggerScaleUp event", || {
        let e = fake.list(Kind::Event).into_iter().find(|e| {
            e["regarding"]["name"] == "big-scratch" && e["reason"] == "NotTriggerScaleUp"
        });
        async move { e.map(|e| e["note"].as_str().unwrap_or_default().to_owned()) }
    })
    .await;
    assert!(note.contains("Insufficient ephemeral-storage"), "{note}");

    // The idle node is no longer kept for it and goes; nothing is launched for the pod.
    let mut t = t0.plus_secs(80.0);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cloud.calls().iter().any(|c| c.starts_with("terminate")) {
        ctl.tick(t).await.unwrap();
        fake.finish_terminating();
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node kept for a refused pod never went: {:?}",
            cloud.calls()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        t = t.plus_secs(5.0);
    }
    fake.delete(Kind::Node, "", "node-a");
    for s in [300.0, 400.0, 600.0] {
        let r = ctl.tick(t0.plus_secs(s)).await.unwrap();
        assert_eq!(code_of_pod(r.plan().unwrap()), Some("scheduler_rejects"));
    }
    assert_eq!(increases(&cloud), 0, "{:?}", cloud.calls());
    // After the backoff (10 min from the rejection) one launch may try again.
    let r = ctl.tick(t0.plus_secs(71.0 + 601.0)).await.unwrap();
    assert_eq!(code_of_pod(r.plan().unwrap()), Some("placed_on_new_node"));
}

/// The durable state in the `gpupool-state` ConfigMap: the leader's state is created, then
/// replaced (PUT with the resourceVersion read) as it changes, and a second controller — a
/// restart or a failover — restores it (history and forecast) with its age respected.
#[tokio::test]
async fn state_written_by_one_controller_is_restored_by_the_next() {
    use gpupool::state::configmap::ConfigMapStore;
    let fake = fake_with_mig_pod().await;
    let cloud = mem_cloud();
    let (ctl, _last) = controller(&fake, &cloud).await;
    let store = || Arc::new(ConfigMapStore::new(fake.client(), "gpupool"));
    let mut first = ctl.with_state_store(store());
    let t0 = Timestamp::from_secs(100_000);
    cloud.set_now(t0);
    first.restore_state(t0).await.unwrap();
    let report = first.tick(t0).await.unwrap();
    assert!(
        report.results.iter().any(|r| r.error.is_none()),
        "{report:#?}"
    );
    let scaled_up = first.history().last_scale_up.clone();
    assert!(
        scaled_up.contains_key(&PoolName::from("mig")),
        "the scale-up is in the history: {:?}",
        first.history()
    );
    let cm = fake
        .get(Kind::ConfigMap, "gpupool", "gpupool-state")
        .expect("state ConfigMap created");
    let saved = gpupool::state::decode(
        cm["data"]["state.json"].as_str().unwrap().as_bytes(),
        "test",
    )
    .unwrap();
    assert_eq!(saved.history.last_scale_up, scaled_up);
    // A later tick (past the resave interval) replaces it in place.
    let puts = |f: &FakeKube| {
        f.count_requests(|r| r.starts_with("PUT") && r.contains("/configmaps/gpupool-state"))
    };
    let t1 = t0.plus_secs(90.0);
    cloud.set_now(t1);
    first.tick(t1).await.unwrap();
    assert!(puts(&fake) >= 1, "{:?}", fake.requests());
    let history = first.history().clone();
    drop(first);

    // The next leader restores it, 30 s later.
    let (ctl, _last) = controller(&fake, &cloud).await;
    let mut second = ctl.with_state_store(store());
    let t2 = t1.plus_secs(30.0);
    second.restore_state(t2).await.unwrap();
    assert_eq!(second.history().last_scale_up, history.last_scale_up);
    assert_eq!(second.history().slo, history.slo);
    // A ConfigMap that cannot be read holds instead of starting fresh.
    let unreachable =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
    let (ctl, _last) = controller(&fake, &cloud).await;
    let mut third = ctl.with_state_store(Arc::new(ConfigMapStore::new(unreachable, "gpupool")));
    let e = third.restore_state(t2).await.unwrap_err();
    assert!(e.retry_later(), "{e}");
    assert!(third.tick(t2).await.is_err(), "the tick holds");
}
