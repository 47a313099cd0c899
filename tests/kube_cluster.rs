//! `gpupool::kube` against the in-process fake API server (tests/support/fake_kube.rs), through
//! the real `kube::Client` and kube-runtime watchers: sync gating, conversions end to end,
//! watch reconnects (dropped connection, 410 Gone, API server restart), serving-readiness and
//! GPU health, drain through the Eviction API with PDBs, rate-limited Events, leader election.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines
#![cfg(feature = "kube")]

#[path = "support/fake_kube.rs"]
mod fake_kube;

use fake_kube::*;
use gpupool::config::Config;
use gpupool::controller::{Cluster, ClusterError, DrainProgress};
use gpupool::kube::{KubeCluster, LeaderElector};
use gpupool::model::{
    Action, CapacityType, Decision, GpuRequest, Instance, InstanceId, LifecycleState, NodeGroupId,
    Outcome, Plan, PoolName, Reason, Subject, Timestamp,
};
use serde_json::json;
use std::sync::Arc;

const CONFIG: &str = r#"
provider: sim
mode: kubernetes
kubernetes:
  gpu_unhealthy_conditions: [GpuXidError]
pools:
  - name: llm
    requirements: { gpu_models: [H100], gpus_per_node: 8 }
    model_cache: llama-70b@v3
  - name: mig
    requirements: { gpu_models: [A100] }
"#;

fn config() -> Arc<Config> {
    Arc::new(Config::load(CONFIG).unwrap_or_else(|e| panic!("{e}")))
}

fn instance(id: &str, zone: &str) -> Instance {
    Instance {
        id: InstanceId::new(id),
        group: NodeGroupId::new("llm-od"),
        instance_type: "p5.48xlarge".into(),
        capacity_type: CapacityType::OnDemand,
        zone: zone.into(),
        state: LifecycleState::Ready,
        launched_at: Timestamp::from_secs(0),
        model_cache: None,
        provider_id: None,
        protected_from_scale_in: false,
        awaiting_lifecycle_hook: false,
        private_ip: None,
        drain_deadline: None,
    }
}

fn ready_llm_node(name: &str, id: &str) -> serde_json::Value {
    gpu_node(
        name,
        &format!("aws:///us-east-1a/{id}"),
        "llm",
        8,
        json!({"gpupool.io/model-cache": "llama-70b_v3"}),
    )
}

const T: Timestamp = Timestamp::from_secs(1_000);

async fn synced(fake: &FakeKube) -> KubeCluster {
    let mut c = KubeCluster::start(fake.client(), config(), Some("gpupool-test".into()));
    eventually(10, "initial lists", || {
        let ok = c.synced();
        async move { ok.then_some(()) }
    })
    .await;
    // The first observe after sync must succeed.
    c.view(&[], T).unwrap();
    c
}

async fn observe_until<F>(
    c: &mut KubeCluster,
    instances: &[Instance],
    what: &str,
    mut f: F,
) -> gpupool::controller::ClusterView
where
    F: FnMut(&gpupool::controller::ClusterView) -> bool,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match c.observe(instances, T).await {
            Ok(v) if f(&v) => return v,
            Ok(v) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {v:?}"
            ),
            // Still (re)listing after the server came back.
            Err(ClusterError::NotSynced(e)) => {
                assert!(tokio::time::Instant::now() < deadline, "never synced: {e}")
            }
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn observe_holds_until_synced_then_converts_pods_and_nodes() {
    let mut fake = FakeKube::start().await;
    fake.apply(ready_llm_node("n1", "i-1"));
    fake.apply(gpu_node(
        "n-other",
        "aws:///us-east-1a/i-9",
        "not-configured",
        8,
        json!({}),
    ));
    fake.apply(pending_pod(
        "ml",
        "mig-pod",
        json!({"nvidia.com/mig-1g.10gb": "2"}),
        json!({"gpupool.io/pool": "mig"}),
    ));
    fake.apply(pending_pod("ml", "cpu-pod", json!({"cpu": "1"}), json!({})));
    fake.apply(running_pod("ml", "server-1", "n1", "server", 30, json!({})));
    fake.apply(daemon_pod("gpu", "dcgm-n1", "n1"));
    // API server down: the cluster view is not synced, so the controller holds.
    fake.stop().await;
    let mut c = KubeCluster::start(fake.client(), config(), None);
    let err = c.observe(&[], T).await.unwrap_err();
    assert!(matches!(err, ClusterError::NotSynced(_)), "{err}");
    fake.resume().await;
    let inst = [instance("i-1", "us-east-1a")];
    let v = observe_until(&mut c, &inst, "sync", |v| !v.nodes.is_empty()).await;

    assert_eq!(
        v.pending_pods.len(),
        1,
        "only the GPU pod is demand: {:?}",
        v.pending_pods
    );
    let p = &v.pending_pods[0];
    assert_eq!(p.key(), "ml/mig-pod");
    assert_eq!(p.pool, Some(PoolName::new("mig")));
    assert_eq!(
        p.gpu,
        GpuRequest::Mig {
            profile: "1g.10gb".into(),
            count: 2
        }
    );
    assert_eq!(p.pending_since, T);

    assert_eq!(v.nodes.len(), 1, "nodes of unconfigured pools are not ours");
    let n = &v.nodes[0];
    assert_eq!(n.name, "n1");
    assert_eq!(n.instance, InstanceId::new("i-1"));
    assert_eq!(n.pool, PoolName::new("llm"));
    assert!(n.serving_ready);
    assert_eq!(n.pods.len(), 2);
    assert_eq!(n.workload_pods().count(), 1);
    assert_eq!(n.idle_since, None);

    // pending_since is the first sighting, not the latest.
    let later = c.observe(&inst, T.plus_secs(60.0)).await.unwrap();
    assert_eq!(later.pending_pods[0].pending_since, T);
    // The watch asked the server for only what gpupool needs.
    let reqs = fake.requests();
    assert!(
        reqs.iter().any(|r| r.starts_with("GET /api/v1/nodes?")
            && r.contains("labelSelector=gpupool.io%2Fpool")),
        "{reqs:?}"
    );
    assert!(reqs.iter().any(|r| r.starts_with("GET /api/v1/pods?") && r.contains("fieldSelector=status.phase")), "{reqs:?}");
}

#[tokio::test]
async fn watches_survive_drops_410_gone_and_api_server_restarts() {
    let mut fake = FakeKube::start().await;
    fake.apply(ready_llm_node("n1", "i-1"));
    let mut c = synced(&fake).await;
    let has = |name: &'static str| {
        move |v: &gpupool::controller::ClusterView| v.pending_pods.iter().any(|p| p.name == name)
    };
    let gpu = || json!({"nvidia.com/gpu": "1"});

    fake.apply(pending_pod("ml", "a", gpu(), json!({})));
    observe_until(&mut c, &[], "pod a", has("a")).await;

    // Network drop: the watch ends; the watcher resumes from its last resourceVersion.
    let watches_before =
        fake.count_requests(|r| r.starts_with("GET /api/v1/pods?") && r.contains("watch=true"));
    fake.drop_watches();
    fake.apply(pending_pod("ml", "b", gpu(), json!({})));
    observe_until(&mut c, &[], "pod b after a dropped watch", has("b")).await;
    let watches_after =
        fake.count_requests(|r| r.starts_with("GET /api/v1/pods?") && r.contains("watch=true"));
    assert!(
        watches_after > watches_before,
        "the watch was re-established"
    );

    // 410 Gone: the server compacted; the watcher must relist.
    let lists_before = c.pods_watch().lists();
    fake.expire_watches();
    fake.delete(Kind::Pod, "ml", "a");
    fake.apply(pending_pod("ml", "c", gpu(), json!({})));
    let v = observe_until(&mut c, &[], "pod c after 410", |v| {
        v.pending_pods.iter().any(|p| p.name == "c")
            && !v.pending_pods.iter().any(|p| p.name == "a")
    })
    .await;
    assert_eq!(v.pending_pods.len(), 2);
    eventually(10, "a relist after 410", || {
        let n = c.pods_watch().lists();
        async move { (n > lists_before).then_some(()) }
    })
    .await;
    assert!(
        c.pods_watch().errors() >= 1,
        "the 410 surfaced as a watch error"
    );

    // API server restart: connections refused for a while, state kept (etcd).
    fake.stop().await;
    fake.apply(pending_pod("ml", "d", gpu(), json!({})));
    // The cache keeps serving the last known view while the server is away.
    assert!(c.observe(&[], T).await.is_ok());
    fake.resume().await;
    observe_until(&mut c, &[], "pod d after a restart", has("d")).await;
}

#[tokio::test]
async fn serving_ready_waits_for_gpus_and_model_cache_and_flags_broken_gpus() {
    let fake = FakeKube::start().await;
    // Registered, device plugin not up, no model cache yet.
    let mut booting = gpu_node("n1", "aws:///us-east-1a/i-1", "llm", 0, json!({}));
    fake.apply(booting.clone());
    let mut c = synced(&fake).await;
    let inst = [instance("i-1", "us-east-1a")];
    let v = observe_until(&mut c, &inst, "node", |v| v.nodes.len() == 1).await;
    assert!(!v.nodes[0].serving_ready, "no GPU allocatable yet");
    assert!(c.unhealthy_nodes().is_empty(), "booting is not broken");

    booting["status"]["allocatable"]["nvidia.com/gpu"] = json!("8");
    booting["status"]["capacity"]["nvidia.com/gpu"] = json!("8");
    // A label changed in the same update tells the test the update was observed.
    booting["metadata"]["labels"]["test-step"] = json!("gpus");
    fake.apply(booting.clone());
    let v = observe_until(&mut c, &inst, "GPUs allocatable", |v| step_is(v, "gpus")).await;
    assert!(!v.nodes[0].serving_ready, "model cache not warm yet");

    booting["metadata"]["labels"]["gpupool.io/model-cache"] = json!("llama-70b_v3");
    fake.apply(booting.clone());
    observe_until(&mut c, &inst, "serving-ready", |v| v.nodes[0].serving_ready).await;

    // A GPU falls off: allocatable below capacity.
    booting["status"]["allocatable"]["nvidia.com/gpu"] = json!("7");
    fake.apply(booting.clone());
    observe_until(&mut c, &inst, "GPU loss", |v| !v.nodes[0].serving_ready).await;
    assert_eq!(
        c.unhealthy_nodes().get("n1").map(String::as_str),
        Some("nvidia.com/gpu: 7 of 8 allocatable")
    );
    // Recovered, then an unhealthy condition from node-problem-detector.
    booting["status"]["allocatable"]["nvidia.com/gpu"] = json!("8");
    booting["status"]["conditions"] = json!([
        {"type": "Ready", "status": "True"},
        {"type": "GpuXidError", "status": "True", "reason": "Xid79", "message": "GPU has fallen off the bus"}
    ]);
    booting["metadata"]["labels"]["test-step"] = json!("xid");
    fake.apply(booting);
    let v = observe_until(&mut c, &inst, "condition", |v| step_is(v, "xid")).await;
    assert!(!v.nodes[0].serving_ready);
    assert!(
        c_unhealthy_is(&c, "node condition GpuXidError=True (Xid79)"),
        "{:?}",
        c.unhealthy_nodes()
    );
}

fn step_is(v: &gpupool::controller::ClusterView, step: &str) -> bool {
    v.nodes.len() == 1 && v.nodes[0].labels.get("test-step").map(String::as_str) == Some(step)
}

fn c_unhealthy_is(c: &KubeCluster, want: &str) -> bool {
    c.unhealthy_nodes().get("n1").map(String::as_str) == Some(want)
}

/// The budget guards healthy pods only, as the API server's eviction handler applies it: a
/// crash-looping (not Ready) pod on a node being drained is evicted when its application is not
/// disrupted, or under `unhealthyPodEvictionPolicy: AlwaysAllow`, and held when the budget's
/// healthy pods are already short; a Pending pod is never held. The drain finishes on the
/// evictions the cluster allows and waits on the ones it refuses — it never goes around them.
#[tokio::test]
async fn unhealthy_and_pending_pods_are_evicted_as_the_api_server_allows() {
    let fake = FakeKube::start().await;
    fake.apply(ready_llm_node("n1", "i-1"));
    let not_ready = |name: &str, app: &str| {
        let mut p = running_pod("ml", name, "n1", app, 0, json!({}));
        p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"},
                                           {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]);
        p
    };
    // crash-1: its application is healthy elsewhere (2 of 1 needed): evicted, budget untouched.
    fake.apply(not_ready("crash-1", "crash"));
    let mut healthy = pdb("ml", "crash", "crash", 0);
    healthy["status"]["currentHealthy"] = json!(2);
    fake.apply(healthy);
    // sick-1: its application is already short (0 of 1 healthy): held by the default policy.
    fake.apply(not_ready("sick-1", "sick"));
    let mut short = pdb("ml", "sick", "sick", 0);
    short["status"]["currentHealthy"] = json!(0);
    fake.apply(short.clone());
    // stuck-1: Pending on the node (never started): the budget does not apply, even one that
    // is short of healthy pods.
    let mut stuck = running_pod("ml", "stuck-1", "n1", "stuck", 0, json!({}));
    stuck["status"] = json!({"phase": "Pending"});
    fake.apply(stuck);
    let mut stuck_pdb = pdb("ml", "stuck", "stuck", 0);
    stuck_pdb["status"]["currentHealthy"] = json!(0);
    fake.apply(stuck_pdb);
    let mut c = synced(&fake).await;
    let inst = instance("i-1", "us-east-1a");
    let deadline = T.plus_secs(900.0);

    // Step 1 evicts what the server allows (the count is the cluster's view before the step).
    let p = c.drain(&inst, deadline, T).await.unwrap();
    assert_eq!(p, DrainProgress::InProgress { remaining: 3 });
    assert!(fake.get(Kind::Pod, "ml", "crash-1").is_none());
    assert!(fake.get(Kind::Pod, "ml", "stuck-1").is_none());
    assert!(fake.get(Kind::Pod, "ml", "sick-1").is_some(), "held");
    assert_eq!(
        fake.get(Kind::Pdb, "ml", "crash").unwrap()["status"]["disruptionsAllowed"],
        json!(0),
        "an unhealthy pod's eviction spends no disruption"
    );

    // Step 2: only the held pod is left; it is asked again, and refused again.
    let p = c.drain(&inst, deadline, T.plus_secs(10.0)).await.unwrap();
    assert_eq!(p, DrainProgress::InProgress { remaining: 1 });
    assert_eq!(
        fake.count_requests(|r| r.contains("/pods/sick-1/eviction")),
        2
    );

    // The owner opts the sick application into AlwaysAllow: the next step evicts it.
    short["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
    fake.apply(short);
    let mut progress = p;
    for k in 2..=6 {
        progress = c
            .drain(&inst, deadline, T.plus_secs(10.0 * k as f64))
            .await
            .unwrap();
        if progress == DrainProgress::Drained {
            break;
        }
    }
    assert_eq!(progress, DrainProgress::Drained);
    assert!(fake.get(Kind::Pod, "ml", "sick-1").is_none());
}

#[tokio::test]
async fn drain_cordons_and_evicts_through_pdbs_never_around_them() {
    let fake = FakeKube::start().await;
    fake.apply(ready_llm_node("n1", "i-1"));
    fake.apply(running_pod("ml", "web-1", "n1", "web", 45, json!({})));
    fake.apply(running_pod("ml", "batch-1", "n1", "batch", 0, json!({})));
    fake.apply(daemon_pod("gpu", "dcgm-n1", "n1"));
    fake.apply(pdb("ml", "web", "web", 0));
    let mut c = synced(&fake).await;
    let inst = instance("i-1", "us-east-1a");
    let deadline = T.plus_secs(900.0);

    // Step 1: cordon; web-1 is refused by its PDB (429), batch-1 (grace 0) goes at once.
    let p = c.drain(&inst, deadline, T).await.unwrap();
    assert_eq!(p, DrainProgress::InProgress { remaining: 2 });
    assert_eq!(
        fake.get(Kind::Node, "", "n1").unwrap()["spec"]["unschedulable"],
        json!(true)
    );
    assert!(fake.get(Kind::Pod, "ml", "web-1").unwrap()["metadata"]["deletionTimestamp"].is_null());
    assert!(fake.get(Kind::Pod, "ml", "batch-1").is_none());

    // Step 2: still blocked; retried, never deleted around the budget.
    let p = c.drain(&inst, deadline, T.plus_secs(10.0)).await.unwrap();
    assert_eq!(p, DrainProgress::InProgress { remaining: 1 });
    assert_eq!(
        fake.count_requests(|r| r.contains("/pods/web-1/eviction")),
        2
    );

    // The replacement became healthy somewhere else: the budget allows one disruption.
    fake.apply(pdb("ml", "web", "web", 1));
    let p = c.drain(&inst, deadline, T.plus_secs(20.0)).await.unwrap();
    assert_eq!(
        p,
        DrainProgress::InProgress { remaining: 1 },
        "terminating within its grace period"
    );
    let web = fake.get(Kind::Pod, "ml", "web-1").unwrap();
    assert_eq!(
        web["metadata"]["deletionGracePeriodSeconds"],
        json!(45),
        "the pod's own grace period"
    );
    // Not evicted twice while terminating.
    c.drain(&inst, deadline, T.plus_secs(25.0)).await.unwrap();
    assert_eq!(
        fake.count_requests(|r| r.contains("/pods/web-1/eviction")),
        3
    );

    // The kubelet finishes; only the DaemonSet pod is left: drained.
    fake.finish_terminating();
    let p = c.drain(&inst, deadline, T.plus_secs(30.0)).await.unwrap();
    assert_eq!(p, DrainProgress::Drained);
    assert!(
        fake.get(Kind::Pod, "gpu", "dcgm-n1").is_some(),
        "DaemonSet pods are not evicted"
    );
    let reqs = fake.requests();
    assert!(
        !reqs.iter().any(|r| r.starts_with("DELETE")),
        "never deletes pods: {reqs:?}"
    );
    assert!(!reqs.iter().any(|r| r.contains("dcgm-n1/eviction")));
    assert!(
        reqs.iter().any(|r| r.starts_with("GET /api/v1/pods?")
            && r.contains("fieldSelector=spec.nodeName%3Dn1")),
        "drain lists the node's pods live: {reqs:?}"
    );
}

#[tokio::test]
async fn do_not_disrupt_pods_are_never_evicted_and_an_unknown_node_is_drained() {
    let fake = FakeKube::start().await;
    fake.apply(ready_llm_node("n1", "i-1"));
    fake.apply(running_pod(
        "ml",
        "train-1",
        "n1",
        "train",
        30,
        json!({"gpupool.io/do-not-disrupt": "true"}),
    ));
    fake.apply(running_pod(
        "ml",
        "legacy-1",
        "n1",
        "legacy",
        30,
        json!({"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}),
    ));
    let mut c = synced(&fake).await;
    let inst = instance("i-1", "us-east-1a");
    for step in 0..3 {
        let p = c
            .drain(&inst, T.plus_secs(120.0), T.plus_secs(step as f64 * 10.0))
            .await
            .unwrap();
        assert_eq!(p, DrainProgress::InProgress { remaining: 2 });
    }
    assert_eq!(fake.count_requests(|r| r.contains("/eviction")), 0);
    // An instance that never registered a node has nothing to drain.
    let ghost = instance("i-404", "us-east-1a");
    assert_eq!(c.drain(&ghost, T, T).await.unwrap(), DrainProgress::Drained);
}

fn pod_decision(key: &str, outcome: Outcome, reason: Reason) -> Decision {
    Decision {
        subject: Subject::Pod(key.into()),
        outcome,
        reason,
    }
}

#[tokio::test]
async fn events_on_pods_and_nodes_are_rate_limited() {
    let fake = FakeKube::start().await;
    fake.apply(ready_llm_node("n1", "i-1"));
    fake.apply(pending_pod(
        "ml",
        "p1",
        json!({"nvidia.com/gpu": "8"}),
        json!({}),
    ));
    fake.apply(pending_pod(
        "ml",
        "p2",
        json!({"nvidia.com/gpu": "8"}),
        json!({}),
    ));
    let mut c = synced(&fake).await;
    observe_until(&mut c, &[], "pods", |v| v.pending_pods.len() == 2).await;
    let plan = Plan {
        actions: vec![Action::Drain {
            pool: PoolName::new("llm"),
            group: NodeGroupId::new("llm-od"),
            instance: InstanceId::new("i-1"),
            node: None,
            deadline: None,
            reason: Reason::NotServingReady {
                waited_s: 960,
                max_s: 900,
            },
        }],
        decisions: vec![
            pod_decision(
                "ml/p1",
                Outcome::Acted,
                Reason::PendingPods { pods: 2, nodes: 1 },
            ),
            pod_decision("ml/p2", Outcome::Blocked, Reason::AtMaxNodes { max: 4 }),
            pod_decision("ml/gone", Outcome::Blocked, Reason::AtMaxNodes { max: 4 }),
        ],
        ..Plan::default()
    };
    // Ten ticks of the same plan within the rate-limit window.
    for i in 0..10 {
        c.publish(&plan, T.plus_secs(f64::from(i) * 10.0)).await;
    }
    let events = fake.list(Kind::Event);
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_owned(),
                e["regarding"]["kind"].as_str().unwrap_or("").to_owned(),
                e["regarding"]["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(events.len(), 3, "one per object and reason: {summary:?}");
    let by_reason = |r: &str| {
        events
            .iter()
            .find(|e| e["reason"] == r)
            .unwrap_or_else(|| panic!("no {r}: {summary:?}"))
    };
    let up = by_reason("TriggeredScaleUp");
    assert_eq!(up["regarding"]["name"], "p1");
    assert_eq!(up["regarding"]["namespace"], "ml");
    assert!(
        up["regarding"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    assert_eq!(
        up["note"],
        "pod triggered scale-up: 2 pending pod(s) need 1 more node(s)"
    );
    assert_eq!(up["reportingController"], "gpupool");
    let not = by_reason("NotTriggerScaleUp");
    assert_eq!(not["regarding"]["name"], "p2");
    assert_eq!(
        not["note"],
        "pod didn't trigger scale-up: pool is at its maximum of 4 node(s)"
    );
    let replaced = by_reason("Replaced");
    assert_eq!(replaced["regarding"]["kind"], "Node");
    assert_eq!(replaced["regarding"]["name"], "n1");
    assert_eq!(replaced["type"], "Warning");
    assert!(
        replaced["note"]
            .as_str()
            .unwrap()
            .contains("not serving-ready after 960 s")
    );
    // After the window, the still-stuck pod gets its event again.
    c.publish(&plan, T.plus_secs(400.0)).await;
    let total = fake.list(Kind::Event).len()
        + fake.count_requests(|r| r.starts_with("PATCH /apis/events.k8s.io"));
    assert_eq!(
        total, 6,
        "a second round after the interval (as new events or series patches)"
    );
}

#[tokio::test]
async fn two_electors_one_leader_and_takeover_after_the_lease_expires() {
    let fake = FakeKube::start().await;
    let k = gpupool::config::KubernetesConfig::default();
    let mut a = LeaderElector::new(
        fake.client(),
        &k.lease_namespace,
        &k.lease_name,
        "gpupool-a",
        15,
    );
    let mut b = LeaderElector::new(
        fake.client(),
        &k.lease_namespace,
        &k.lease_name,
        "gpupool-b",
        15,
    );
    let t0 = Timestamp::from_secs(10_000);
    // Both race at the same instant; exactly one wins.
    let (ra, rb) = tokio::join!(a.try_acquire_or_renew(t0), b.try_acquire_or_renew(t0));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra ^ rb, "exactly one leader: a={ra} b={rb}");
    let (leader, follower) = if ra {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let leader_id = leader.identity().to_owned();
    // Ticks every 5 s: the leader renews, the follower waits.
    for i in 1..=6 {
        let t = t0.plus_secs(5.0 * f64::from(i));
        assert!(leader.try_acquire_or_renew(t).await.unwrap());
        assert!(!follower.try_acquire_or_renew(t).await.unwrap());
        assert!(leader.is_leader(t) && !follower.is_leader(t));
    }
    let lease = fake
        .get(Kind::Lease, &k.lease_namespace, &k.lease_name)
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], leader_id.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
    assert!(lease["spec"]["renewTime"].as_str().is_some());

    // The leader stops renewing (hung, partitioned). The follower sees the same record for less
    // than the lease duration: still waits; after it: takes over.
    let last = t0.plus_secs(30.0);
    assert!(
        !follower
            .try_acquire_or_renew(last.plus_secs(10.0))
            .await
            .unwrap()
    );
    assert!(
        !leader.is_leader(last.plus_secs(11.0)),
        "a leader that cannot renew steps down first"
    );
    assert!(
        follower
            .try_acquire_or_renew(last.plus_secs(26.0))
            .await
            .unwrap()
    );
    let lease = fake
        .get(Kind::Lease, &k.lease_namespace, &k.lease_name)
        .unwrap();
    assert_ne!(lease["spec"]["holderIdentity"], leader_id.as_str());
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    // The old leader comes back: it sees someone else holding a fresh lease.
    assert!(
        !leader
            .try_acquire_or_renew(last.plus_secs(27.0))
            .await
            .unwrap()
    );
    // Release on shutdown hands over at the next tick, without waiting for expiry.
    follower.release(last.plus_secs(28.0)).await.unwrap();
    assert!(
        leader
            .try_acquire_or_renew(last.plus_secs(29.0))
            .await
            .unwrap()
    );
    // Writes were conditional: a stale resourceVersion got 409 somewhere in the race, or the
    // loser saw AlreadyExists on create.
    let reqs = fake.requests();
    assert!(
        reqs.iter()
            .filter(|r| r.starts_with("PUT /apis/coordination.k8s.io"))
            .count()
            >= 8
    );
}
