//! Tests of the shell alone: an in-memory provider and cluster, and injected planners, so each
//! safety rule of `tick` is checked without the real planner's judgement in the way.

use super::report::{decision_pool, instance_groups};
use super::*;
use crate::model::{
    CapacityType, GpuInfo, InstanceType, InstanceTypeName, LifecycleState, Money, Offering,
    ProviderEvent, ProviderEventKind, Zone,
};
use crate::testkit::doubles::{MemCluster, MemProvider, MemWorld, NoDemand};
use std::sync::Mutex;

fn offering(t: &str, ct: CapacityType) -> Offering {
    Offering {
        instance_type: InstanceType {
            name: InstanceTypeName::from(t),
            vcpu: 8,
            memory_mib: 32_768,
            gpu: GpuInfo {
                model: "A10G".into(),
                count: 1,
                memory_mib_per_gpu: 24_576,
                mig_profiles: vec![],
            },
        },
        capacity_type: ct,
        zone: Zone::from("us-east-1a"),
        price_per_hour: crate::model::Price::from_dollars(1.0),
        interruption_risk_per_hour: 0.0,
        available: true,
    }
}

fn group(id: &str, ct: CapacityType) -> NodeGroup {
    NodeGroup {
        id: NodeGroupId::from(id),
        pool: "p".into(),
        offerings: vec![offering(&format!("{id}.xlarge"), ct)],
        min_size: 0,
        max_size: 10,
        desired: 1,
        labels: Default::default(),
        taints: vec![],
        warm_pool: None,
        activity_in_progress: false,
        unfulfilled: Vec::new(),
    }
}

fn instance(id: &str, group: &str) -> Instance {
    Instance {
        id: InstanceId::from(id),
        group: NodeGroupId::from(group),
        instance_type: InstanceTypeName::from(format!("{group}.xlarge").as_str()),
        capacity_type: CapacityType::Spot,
        zone: Zone::from("us-east-1a"),
        state: LifecycleState::Ready,
        launched_at: Timestamp(0),
        model_cache: None,
        provider_id: None,
        protected_from_scale_in: false,
        awaiting_lifecycle_hook: false,
        private_ip: None,
        drain_deadline: None,
    }
}

fn config() -> Arc<Config> {
    Arc::new(Config::load("pools:\n  - name: p\n    requirements: {}\n").unwrap())
}

fn controller(p: &MemProvider, planner: PlanFn, drain_ticks: u32) -> Controller {
    Controller::new(
        config(),
        Arc::new(p.clone()),
        Box::new(MemCluster {
            drain_ticks,
            drain_calls: BTreeMap::new(),
        }),
        Box::new(NoDemand),
        Arc::new(Metrics::default()),
    )
    .with_planner(planner)
}

/// A controller over `p` with `cfg`, `demand`, a cluster whose drains take a tick, and the empty
/// planner.
fn with_demand(cfg: Arc<Config>, p: &MemProvider, demand: Box<dyn DemandSource>) -> Controller {
    Controller::new(
        cfg,
        Arc::new(p.clone()),
        Box::new(MemCluster {
            drain_ticks: 1,
            drain_calls: BTreeMap::new(),
        }),
        demand,
        Arc::new(Metrics::default()),
    )
    .with_planner(empty_plan)
}

fn empty_plan(_: &Snapshot, _: &Config, _: &History, _: Timestamp) -> Plan {
    Plan::default()
}

/// Scales up the first group whose offering is not in backoff.
fn scale_up_first_usable(s: &Snapshot, _: &Config, h: &History, now: Timestamp) -> Plan {
    let g = s
        .groups
        .iter()
        .find(|g| h.in_backoff(&g.offerings[0].key(), now).is_none());
    scale_up_plan(g, 1)
}

/// A plan scaling `group` (if any) up by `count` on its first offering.
fn scale_up_plan(group: Option<&NodeGroup>, count: u32) -> Plan {
    let actions = group
        .map(|g| Action::ScaleUp {
            pool: g.pool.clone(),
            group: g.id.clone(),
            offering: g.offerings[0].key(),
            count,
            reason: Reason::MinNodes { min: 1 },
        })
        .into_iter()
        .collect();
    Plan {
        actions,
        ..Plan::default()
    }
}

fn world(p: &MemProvider) -> std::sync::MutexGuard<'_, MemWorld> {
    p.w()
}

/// Spot group `a` with instance `i-1` and an interruption notice for it (reclaim at
/// `deadline_s`) waiting in the provider's queue.
fn noticed(deadline_s: i64) -> MemProvider {
    let p = MemProvider::default();
    {
        let mut w = world(&p);
        w.groups.push(group("a", CapacityType::Spot));
        w.instances.push(instance("i-1", "a"));
        w.events.push(ProviderEvent {
            ack: None,
            id: "m1".into(),
            kind: ProviderEventKind::SpotInterruption {
                instance: "i-1".into(),
                deadline: Timestamp::from_secs(deadline_s),
            },
        });
    }
    p
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn failed_observation_holds_the_tick() {
    let p = MemProvider::default();
    {
        let mut w = world(&p);
        w.groups.push(group("a", CapacityType::Spot));
        w.fail_observe = true;
    }
    let mut c = controller(&p, scale_up_first_usable, 1);
    let err = block(c.tick(Timestamp::from_secs(10))).unwrap_err();
    assert!(
        error_chain(&err).contains("connection refused"),
        "{}",
        error_chain(&err)
    );
    assert!(
        world(&p).calls.is_empty(),
        "nothing may change when the view is missing"
    );
}

#[test]
fn interruption_drains_then_terminates_once_and_acks_after_handling() {
    let p = noticed(130);
    {
        // Delivered twice (SQS at-least-once): must be handled once.
        let mut w = world(&p);
        let ev = w.events.pop().unwrap();
        for ack in ["r1", "r2"] {
            w.events.push(ProviderEvent {
                ack: Some(ack.into()),
                ..ev.clone()
            });
        }
    }
    let mut c = controller(&p, empty_plan, 2);
    let r = block(c.tick(Timestamp::from_secs(10))).unwrap();
    assert_eq!(r.events_handled, 1);
    assert_eq!(world(&p).acked, vec!["r1".to_string(), "r2".to_string()]);
    assert_eq!(c.draining().count(), 1);
    assert!(c.history().risk_boost.values().all(|v| *v > 0.0));
    assert!(
        world(&p).calls.is_empty(),
        "first drain step: not drained yet"
    );

    let r = block(c.tick(Timestamp::from_secs(20))).unwrap();
    assert_eq!(r.terminated_after_drain, vec![InstanceId::from("i-1")]);
    assert_eq!(world(&p).calls, vec!["terminate a i-1".to_string()]);
    block(c.tick(Timestamp::from_secs(30))).unwrap();
    assert_eq!(
        world(&p).calls.len(),
        1,
        "a terminated instance is never terminated twice"
    );
}

#[test]
fn a_drained_spot_instance_in_its_first_hour_is_left_to_the_reclaim_and_swept_if_it_stays() {
    let hour = Some(std::time::Duration::from_secs(3600));
    // Launched at 0, reclaim due at 130 s: within the first hour, left to the cloud.
    let p = noticed(130);
    world(&p).refund_window = hour;
    let mut c = controller(&p, empty_plan, 2);
    let r = block(c.tick(Timestamp::from_secs(10))).unwrap();
    assert_eq!(
        world(&p).calls,
        vec!["sweep 10".to_string()],
        "a new process sweeps once for what its predecessor released"
    );
    assert!(r.swept.is_empty());
    let r = block(c.tick(Timestamp::from_secs(20))).unwrap();
    assert_eq!(r.released_to_reclaim, vec![InstanceId::from("i-1")]);
    assert!(r.terminated_after_drain.is_empty());
    assert_eq!(
        world(&p).calls[1..],
        [
            "mark i-1 130000".to_string(),
            "release-to-reclaim a i-1".to_string()
        ],
        "marked with the notice's deadline first, so a sweep finds it"
    );
    // Not overdue yet: no sweep. Past the deadline plus the grace: swept, once.
    block(c.tick(Timestamp::from_secs(130 + 300))).unwrap();
    assert_eq!(world(&p).calls.len(), 3);
    let r = block(c.tick(Timestamp::from_secs(130 + 301))).unwrap();
    assert_eq!(r.swept, vec![InstanceId::from("i-1")]);
    block(c.tick(Timestamp::from_secs(1000))).unwrap();
    assert_eq!(world(&p).calls.len(), 4, "{:?}", world(&p).calls);
}

#[test]
fn a_failing_sweep_is_retried_after_the_grace_not_every_tick() {
    let p = MemProvider::default();
    {
        let mut w = world(&p);
        w.refund_window = Some(std::time::Duration::from_secs(3600));
        w.fail_sweep = true;
    }
    let mut c = controller(&p, empty_plan, 2);
    for s in [10, 20, 300, 309] {
        block(c.tick(Timestamp::from_secs(s))).unwrap();
    }
    assert_eq!(world(&p).calls, vec!["sweep 10".to_string()]);
    world(&p).fail_sweep = false;
    block(c.tick(Timestamp::from_secs(310))).unwrap();
    block(c.tick(Timestamp::from_secs(320))).unwrap();
    assert_eq!(
        world(&p).calls,
        vec!["sweep 10".to_string(), "sweep 310".to_string()],
        "retried once the grace passed, then done"
    );
}

#[test]
fn a_spot_instance_past_its_first_hour_or_refused_a_release_is_terminated() {
    let hour = Some(std::time::Duration::from_secs(3600));
    for (name, launched_s, refuse, window) in [
        ("past its first hour at the reclaim", -3600, false, hour),
        ("release refused (min size)", 0, true, hour),
        ("a cloud without the refund", 0, false, None),
    ] {
        let p = noticed(130);
        {
            let mut w = world(&p);
            w.refund_window = window;
            w.refuse_release = refuse;
            w.instances[0].launched_at = Timestamp::from_secs(launched_s);
        }
        let mut c = controller(&p, empty_plan, 2);
        block(c.tick(Timestamp::from_secs(10))).unwrap();
        let r = block(c.tick(Timestamp::from_secs(20))).unwrap();
        assert_eq!(
            r.terminated_after_drain,
            vec![InstanceId::from("i-1")],
            "{name}"
        );
        assert!(r.released_to_reclaim.is_empty(), "{name}");
        assert_eq!(
            world(&p).calls.last().map(String::as_str),
            Some("terminate a i-1"),
            "{name}: {:?}",
            world(&p).calls
        );
    }
}

#[test]
fn drain_deadline_terminates_even_with_work_left() {
    let p = noticed(30);
    let mut c = controller(&p, empty_plan, u32::MAX);
    block(c.tick(Timestamp::from_secs(10))).unwrap();
    block(c.tick(Timestamp::from_secs(20))).unwrap();
    assert!(world(&p).calls.is_empty());
    let r = block(c.tick(Timestamp::from_secs(30))).unwrap();
    assert_eq!(r.terminated_after_drain.len(), 1);
}

#[test]
fn capacity_error_backs_off_and_falls_back_in_the_same_tick() {
    let p = MemProvider::default();
    {
        let mut w = world(&p);
        w.groups.push(group("a", CapacityType::Spot));
        w.groups.push(group("b", CapacityType::OnDemand));
        w.no_capacity_in.push("a".into());
    }
    let mut c = controller(&p, scale_up_first_usable, 1);
    let r = block(c.tick(Timestamp::from_secs(10))).unwrap();
    assert_eq!(r.plans.len(), 2, "re-planned after the capacity error");
    assert_eq!(
        world(&p).calls,
        vec!["increase a 1".to_string(), "increase b 1".to_string()]
    );
    let key = world(&p).groups[0].offerings[0].key();
    assert!(
        c.history()
            .in_backoff(&key, Timestamp::from_secs(10))
            .is_some()
    );
    assert_eq!(
        r.results[0].error.as_ref().unwrap().kind,
        "insufficient_capacity"
    );
}

#[test]
fn launch_failure_event_backs_off_the_offering() {
    let p = MemProvider::default();
    let key = group("a", CapacityType::Spot).offerings[0].key();
    {
        let mut w = world(&p);
        w.groups.push(group("a", CapacityType::Spot));
        w.events.push(ProviderEvent {
            ack: None,
            id: "act-1".into(),
            kind: ProviderEventKind::LaunchFailed {
                group: "a".into(),
                offering: key.clone(),
                error: gpupool_provider::LaunchFailure::InsufficientCapacity,
                message: "InsufficientInstanceCapacity".into(),
            },
        });
    }
    let mut c = controller(&p, empty_plan, 1);
    block(c.tick(Timestamp::from_secs(10))).unwrap();
    assert!(
        c.history()
            .in_backoff(&key, Timestamp::from_secs(60))
            .is_some()
    );
}

/// A cluster whose nodes never become serving-ready.
struct NeverReady;

#[async_trait]
impl Cluster for NeverReady {
    async fn observe(
        &mut self,
        instances: &[Instance],
        _now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        let mut c = MemCluster {
            drain_ticks: 1,
            drain_calls: BTreeMap::new(),
        };
        let mut v = c.observe(instances, _now).await?;
        for n in &mut v.nodes {
            n.serving_ready = false;
        }
        Ok(v)
    }
    async fn drain(
        &mut self,
        _: &Instance,
        _: Timestamp,
        _: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        Ok(DrainProgress::Drained)
    }
}

static SEEN_STATES: Mutex<Vec<(LifecycleState, Option<String>)>> = Mutex::new(Vec::new());

fn record_states(s: &Snapshot, _: &Config, _: &History, _: Timestamp) -> Plan {
    let unhealthy = s.nodes.first().and_then(|n| n.unhealthy.clone());
    SEEN_STATES
        .lock()
        .unwrap()
        .push((s.instances[0].state, unhealthy));
    Plan::default()
}

#[test]
fn running_instance_is_in_flight_until_serving_then_unhealthy_after_max_provision_time() {
    let p = MemProvider::default();
    {
        let mut w = world(&p);
        w.groups.push(group("a", CapacityType::Spot));
        w.instances.push(instance("i-1", "a"));
    }
    let mut c = Controller::new(
        config(),
        Arc::new(p.clone()),
        Box::new(NeverReady),
        Box::new(NoDemand),
        Arc::new(Metrics::default()),
    )
    .with_planner(record_states);
    block(c.tick(Timestamp::from_secs(0))).unwrap();
    block(c.tick(Timestamp::from_secs(600))).unwrap();
    // Default max_provision_time_s is 900: past it the node is reported unhealthy.
    block(c.tick(Timestamp::from_secs(1000))).unwrap();
    let seen = SEEN_STATES.lock().unwrap().clone();
    assert_eq!(seen[0], (LifecycleState::Launching, None));
    assert_eq!(seen[1], (LifecycleState::Launching, None));
    assert_eq!(seen[2].0, LifecycleState::Ready);
    assert!(
        seen[2]
            .1
            .as_deref()
            .unwrap()
            .contains("not serving-ready 1000 s"),
        "{seen:?}"
    );
}

/// One replica of demand from a `queue` signal, with a fixed forecast and a fixed measured
/// attainment (`None`: none / unknown).
struct FixedDemand {
    forecast: Option<u32>,
    attainment: Option<f64>,
}

#[async_trait]
impl DemandSource for FixedDemand {
    async fn read(&mut self, _c: &Config, now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        let d = PoolDemand {
            replicas_now: Some(1),
            replicas_forecast: self.forecast,
            readings: vec![crate::model::SignalReading {
                name: "queue".into(),
                value: Some(1.0),
                replicas: Some(1),
                stale: false,
                observed_at: Some(now),
            }],
            slo_attainment: self.attainment.map(|fraction| crate::model::Attainment {
                fraction,
                window_s: 600.0,
            }),
            request_duration: None,
        };
        [(PoolName::from("p"), d)].into()
    }
}

/// A controller over one group `a` of `kind` with `demand`, and the registry its metrics are
/// exported on.
fn metered_controller(
    cfg: Config,
    kind: CapacityType,
    demand: FixedDemand,
) -> (Controller, prometheus_client::registry::Registry) {
    let p = MemProvider::default();
    world(&p).groups.push(group("a", kind));
    let metrics = Arc::new(Metrics::default());
    let mut reg = prometheus_client::registry::Registry::default();
    metrics.register(&mut reg);
    let c = Controller::new(
        Arc::new(cfg),
        Arc::new(p),
        Box::new(MemCluster {
            drain_ticks: 1,
            drain_calls: BTreeMap::new(),
        }),
        Box::new(demand),
        metrics,
    );
    (c, reg)
}

#[test]
fn the_forecast_is_exported_per_pool_only_while_forecasting_is_on() {
    for enabled in [true, false] {
        let cfg = Config::load(&format!(
            "pools:\n  - name: p\n    requirements: {{}}\n    forecast: {{ enabled: {enabled} }}\n    signals:\n      - cron: {{ start: '0 0 9 * * *', end: '0 0 17 * * *', desired: 1 }}\n"
        ))
        .unwrap();
        let demand = FixedDemand {
            forecast: Some(4),
            attainment: None,
        };
        let (mut c, reg) = metered_controller(cfg, CapacityType::Spot, demand);
        block(c.tick(Timestamp::from_secs(10))).unwrap();
        let text = super::metrics::encode(&reg);
        let line = text
            .lines()
            .find(|l| l.starts_with("gpupool_pool_forecast_replicas{"));
        if enabled {
            assert_eq!(
                line,
                Some("gpupool_pool_forecast_replicas{pool=\"p\"} 4"),
                "{text}"
            );
        } else {
            assert_eq!(line, None, "{text}");
        }
    }
}

/// The long window feedback relaxes against is exported beside the short one, and neither
/// while the attainment is unknown (unknown is not 0 and not 1).
#[test]
fn the_long_window_attainment_is_exported_and_absent_while_unknown() {
    for attainment in [Some(0.98), None] {
        let cfg = Config::load(
            "pools:\n  - name: p\n    requirements: {}\n    slo: { queue_wait_s: 1.0, attainment: 0.99 }\n    signals:\n      - cron: { start: '0 0 9 * * *', end: '0 0 17 * * *', desired: 1 }\n",
        )
        .unwrap();
        let demand = FixedDemand {
            forecast: None,
            attainment,
        };
        let (mut c, reg) = metered_controller(cfg, CapacityType::OnDemand, demand);
        for t in 1..=3 {
            block(c.tick(Timestamp::from_secs(10 * t))).unwrap();
        }
        let text = super::metrics::encode(&reg);
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}{{pool=\"p\"}} ")))
                .map(|v| v.parse::<f64>().unwrap())
        };
        assert_eq!(value("gpupool_pool_slo_attainment"), attainment, "{text}");
        assert_eq!(
            value("gpupool_pool_slo_attainment_long"),
            attainment,
            "{text}"
        );
        // The target is the pool's, known whatever was measured: an alert compares the two.
        assert_eq!(value("gpupool_pool_slo_target"), Some(0.99), "{text}");
    }
}

/// One spot instance `i-1` in group `a` with an interruption notice for t=130 s waiting, a
/// pool with `interruption_drain_s: 30`, and a controller with `planner`.
fn noticed_with_drain_lead(planner: PlanFn) -> (MemProvider, Controller) {
    let cfg = Config::load(
        "pools:\n  - name: p\n    requirements: {}\n    disruption: { interruption_drain_s: 30 }\n",
    )
    .unwrap();
    let p = noticed(130);
    let c = Controller::new(
        Arc::new(cfg),
        Arc::new(p.clone()),
        Box::new(MemCluster {
            drain_ticks: 1,
            drain_calls: BTreeMap::new(),
        }),
        Box::new(NoDemand),
        Arc::new(Metrics::default()),
    )
    .with_planner(planner);
    (p, c)
}

#[test]
fn spot_notice_with_a_drain_lead_keeps_serving_until_the_drain_window() {
    let (p, mut c) = noticed_with_drain_lead(empty_plan);
    // Notice at t=10 for a reclaim at t=130: replaced at once (the planner sees it leaving),
    // but it serves until t=100, when the 30 s drain window opens.
    for t in (10..100).step_by(10) {
        block(c.tick(Timestamp::from_secs(t))).unwrap();
        assert_eq!(c.draining().count(), 1, "t={t}: the notice is tracked");
        assert!(world(&p).calls.is_empty(), "t={t}: still serving");
    }
    let r = block(c.tick(Timestamp::from_secs(100))).unwrap();
    assert_eq!(r.terminated_after_drain, vec![InstanceId::from("i-1")]);
    assert_eq!(world(&p).calls, vec!["terminate a i-1".to_string()]);
}

/// Replaces every instance the snapshot shows as Draining, once (what the real planner does
/// for capacity that is leaving).
fn replace_draining(s: &Snapshot, _: &Config, _: &History, _: Timestamp) -> Plan {
    let leaving = s
        .instances
        .iter()
        .filter(|i| i.state == LifecycleState::Draining)
        .count() as u32;
    let g = &s.groups[0];
    scale_up_plan(Some(g).filter(|g| leaving > 0 && g.desired < 2), leaving)
}

#[test]
fn interrupted_instances_are_replaced_before_their_drain_starts() {
    let (p, mut c) = noticed_with_drain_lead(replace_draining);
    block(c.tick(Timestamp::from_secs(10))).unwrap();
    assert_eq!(
        world(&p).calls,
        vec!["increase a 1".to_string()],
        "replacement launched with the notice; the instance itself is not touched"
    );
}

/// A spot launch AWS accepted and reported failed later (desired raised, nothing behind it):
/// the real planner takes it back, falls back to on-demand in the same tick, counts the same
/// failure once however often it is reported, and escalates on the next one.
#[test]
fn a_late_stockout_is_taken_back_and_falls_back_in_one_tick() {
    let p = MemProvider::default();
    let spot = group("a", CapacityType::Spot);
    let key = spot.offerings[0].key();
    {
        let mut w = world(&p);
        let mut a = spot.clone();
        a.desired = 0;
        a.offerings[0].price_per_hour = crate::model::Price::from_dollars(0.4);
        let mut b = group("b", CapacityType::OnDemand);
        b.desired = 0;
        w.groups.push(a);
        w.groups.push(b);
    }
    let cfg = "pools:\n  - name: p\n    requirements: {}\n    limits: { min_nodes: 2 }\n    \
               capacity: { spot_share: 1.0 }\n";
    let mut c = Controller::new(
        Arc::new(Config::load(cfg).unwrap()),
        Arc::new(p.clone()),
        Box::new(MemCluster {
            drain_ticks: 1,
            drain_calls: BTreeMap::new(),
        }),
        Box::new(NoDemand),
        Arc::new(Metrics::default()),
    );
    let t = Timestamp::from_secs;
    block(c.tick(t(10))).unwrap();
    assert_eq!(world(&p).calls, vec!["increase a 2".to_string()]);
    // The cloud accepted it; 20 s later the scaling activity failed.
    let late = |at: i64| gpupool_provider::UnfulfilledLaunch {
        offering: key.clone(),
        failure: gpupool_provider::LaunchFailure::InsufficientCapacity,
        count: 2,
        message: "Could not launch Spot Instances. InsufficientInstanceCapacity - There is no \
                  Spot capacity available that matches your request."
            .into(),
        at: t(at),
        instances: vec![],
    };
    world(&p).groups[0].unfulfilled.push(late(25));
    world(&p).calls.clear();
    let r = block(c.tick(t(30))).unwrap();
    assert_eq!(
        world(&p).calls,
        vec!["release a 2".to_string(), "increase b 2".to_string()],
        "{:?}",
        r.plan()
    );
    assert_eq!(
        world(&p).groups[0].desired,
        0,
        "taken back to what is backed"
    );
    let b = &c.history().backoff[&key];
    assert_eq!((b.failures, b.until), (1, t(90)));

    // Reported again (the take-back did not reach the cloud): same failure, no escalation.
    world(&p).groups[0].desired = 2;
    world(&p).groups[0].unfulfilled.push(late(25));
    block(c.tick(t(40))).unwrap();
    assert_eq!(c.history().backoff[&key].failures, 1);

    // After the backoff spot is tried again and fails again: 120 s from when it was seen.
    world(&p).groups[0].desired = 1;
    world(&p).groups[0].unfulfilled.push(late(95));
    block(c.tick(t(100))).unwrap();
    let b = &c.history().backoff[&key];
    assert_eq!((b.failures, b.until), (2, t(220)));
    assert_eq!(world(&p).groups[0].desired, 0);
}

/// Drains `i-1` once (deadline 60 s after the first tick) for `reason`.
fn drain_once(reason: Reason) -> impl Fn(&Snapshot, &Config, &History, Timestamp) -> Plan {
    move |s: &Snapshot, _: &Config, _: &History, now: Timestamp| {
        let fresh = s
            .instances
            .iter()
            .any(|i| i.id.as_str() == "i-1" && i.state == LifecycleState::Ready);
        let actions = if fresh && now == Timestamp::from_secs(10) {
            vec![Action::Drain {
                pool: "p".into(),
                group: "a".into(),
                instance: "i-1".into(),
                node: None,
                deadline: Some(Timestamp::from_secs(70)),
                reason: reason.clone(),
            }]
        } else {
            vec![]
        };
        Plan {
            actions,
            ..Plan::default()
        }
    }
}

/// A drain whose evictions never succeed (a PodDisruptionBudget allowing 0 disruptions): at its
/// deadline a voluntary one is given up — node kept, nothing terminated — and an involuntary
/// one (spot reclaim) terminates as before.
#[test]
fn a_voluntary_drain_blocked_past_its_deadline_is_abandoned_not_forced() {
    fn unneeded(s: &Snapshot, c: &Config, h: &History, now: Timestamp) -> Plan {
        drain_once(Reason::Unneeded {
            unneeded_for_s: 600,
        })(s, c, h, now)
    }
    fn reclaimed(s: &Snapshot, c: &Config, h: &History, now: Timestamp) -> Plan {
        drain_once(Reason::SpotInterruption {
            deadline: Timestamp::from_secs(70),
            start: crate::model::SpotDrainStart::AtNoticeUnknown,
        })(s, c, h, now)
    }
    for (planner, voluntary) in [(unneeded as PlanFn, true), (reclaimed as PlanFn, false)] {
        let p = MemProvider::default();
        {
            let mut w = world(&p);
            w.groups.push(group("a", CapacityType::Spot));
            w.instances.push(instance("i-1", "a"));
        }
        let mut c = controller(&p, planner, u32::MAX);
        for s in [10, 30, 69] {
            block(c.tick(Timestamp::from_secs(s))).unwrap();
        }
        assert!(world(&p).calls.is_empty(), "{:?}", world(&p).calls);
        block(c.tick(Timestamp::from_secs(71))).unwrap();
        let calls = world(&p).calls.clone();
        if voluntary {
            assert!(calls.is_empty(), "voluntary drain forced: {calls:?}");
            assert_eq!(c.draining().count(), 0, "drain given up");
            assert!(
                c.history()
                    .drain_abandoned
                    .contains_key(&InstanceId::from("i-1"))
            );
        } else {
            assert_eq!(calls, vec!["terminate a i-1".to_string()]);
        }
    }
}

/// A node drained by the plan and then terminated is one `down` action, not two.
#[test]
fn a_drained_node_is_counted_once() {
    fn unneeded(s: &Snapshot, c: &Config, h: &History, now: Timestamp) -> Plan {
        drain_once(Reason::Unneeded {
            unneeded_for_s: 600,
        })(s, c, h, now)
    }
    let p = MemProvider::default();
    {
        let mut w = world(&p);
        w.groups.push(group("a", CapacityType::Spot));
        w.instances.push(instance("i-1", "a"));
    }
    let metrics = Arc::new(Metrics::default());
    let mut c = Controller::new(
        config(),
        Arc::new(p.clone()),
        Box::new(MemCluster {
            drain_ticks: 1,
            drain_calls: BTreeMap::new(),
        }),
        Box::new(NoDemand),
        metrics.clone(),
    )
    .with_planner(unneeded);
    block(c.tick(Timestamp::from_secs(10))).unwrap();
    block(c.tick(Timestamp::from_secs(20))).unwrap();
    assert_eq!(world(&p).calls, vec!["terminate a i-1".to_string()]);
    let down: u64 = ["unneeded", "drain_timed_out"]
        .iter()
        .map(|r| {
            metrics
                .scale_actions
                .get_or_create(&metrics::ActionLabels {
                    pool: "p".into(),
                    direction: "down".into(),
                    reason: (*r).into(),
                })
                .get()
        })
        .sum();
    assert_eq!(down, 1);
}

/// One group's instance listing throttled: the tick goes on with its last good listing for up to
/// `LAST_GOOD_MAX_AGE_S` (no double launch, scale-down held for its pool), then holds.
#[test]
fn a_group_that_cannot_be_listed_uses_its_last_good_view_for_a_while() {
    let p = MemProvider::default();
    {
        let mut w = world(&p);
        w.groups.push(group("a", CapacityType::Spot));
        w.instances.push(instance("i-1", "a"));
    }
    let mut c = controller(&p, crate::planner::plan, 1);
    let t = Timestamp::from_secs;
    world(&p).fail_instances_of.push("a".into());
    assert!(block(c.tick(t(5))).is_err(), "nothing listed yet: hold");
    world(&p).fail_instances_of.clear();
    block(c.tick(t(10))).unwrap();
    world(&p).fail_instances_of.push("a".into());
    let r = block(c.tick(t(60))).unwrap();
    assert!(r.held.is_none());
    let plan = r.plan().unwrap();
    assert!(
        plan.decisions
            .iter()
            .any(|d| d.reason.code() == "data_stale" && d.reason.to_string().contains("group a")),
        "{:?}",
        plan.decisions
    );
    // Too old now: hold.
    assert!(block(c.tick(t(131))).is_err());
}

/// A rebalance recommendation for a serving spot instance (`rebalance: prelaunch`, the default):
/// the real planner launches its replacement in that tick and does not drain it yet; `ignore`
/// launches nothing.
#[test]
fn a_rebalance_recommendation_launches_the_replacement_first() {
    for (policy, want_launch) in [("prelaunch", true), ("ignore", false)] {
        let p = MemProvider::default();
        {
            let mut w = world(&p);
            let mut a = group("a", CapacityType::Spot);
            a.desired = 1;
            w.groups.push(a);
            w.instances.push(instance("i-1", "a"));
            w.events.push(ProviderEvent {
                ack: Some("rh-1".into()),
                id: "ev-1".into(),
                kind: ProviderEventKind::RebalanceRecommendation {
                    instance: "i-1".into(),
                },
            });
        }
        let cfg = format!(
            "pools:\n  - name: p\n    requirements: {{}}\n    limits: {{ min_nodes: 1 }}\n    \
             capacity: {{ spot_share: 1.0 }}\n    disruption: {{ rebalance: {policy} }}\n"
        );
        let mut c = Controller::new(
            Arc::new(Config::load(&cfg).unwrap()),
            Arc::new(p.clone()),
            Box::new(MemCluster {
                drain_ticks: 1,
                drain_calls: BTreeMap::new(),
            }),
            Box::new(NoDemand),
            Arc::new(Metrics::default()),
        );
        block(c.tick(Timestamp::from_secs(10))).unwrap();
        let calls = world(&p).calls.clone();
        assert_eq!(
            calls.contains(&"increase a 1".to_string()),
            want_launch,
            "{policy}: {calls:?}"
        );
        assert!(
            !calls.iter().any(|c| c.starts_with("terminate")),
            "{policy}: the at-risk node keeps serving until its replacement does: {calls:?}"
        );
        assert_eq!(c.draining().count(), 0, "{policy}");
        assert_eq!(
            world(&p).acked,
            vec!["rh-1".to_string()],
            "{policy}: acknowledged"
        );
    }
}

/// Leadership lost in the middle of a tick: the actions after that point are not executed, and
/// events are left unacknowledged for the next leader.
#[test]
fn a_fenced_controller_stops_acting_mid_tick() {
    fn two_ups(s: &Snapshot, _: &Config, _: &History, _: Timestamp) -> Plan {
        let mut p = scale_up_plan(s.groups.first(), 1);
        p.actions.extend(scale_up_plan(s.groups.get(1), 1).actions);
        p
    }
    let p = MemProvider::default();
    {
        let mut w = world(&p);
        w.groups.push(group("a", CapacityType::OnDemand));
        w.groups.push(group("b", CapacityType::OnDemand));
        w.events.push(ProviderEvent {
            ack: Some("rh-1".into()),
            id: "ev-1".into(),
            kind: ProviderEventKind::RebalanceRecommendation {
                instance: "i-none".into(),
            },
        });
    }
    // Leading for the first check (the first action), then not: the second action is not
    // taken, and the event — acknowledged only at the end of a tick — is left for the next
    // leader.
    let checks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c2 = checks.clone();
    let fence: Fence = Arc::new(move || c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 1);
    let mut c = controller(&p, two_ups, 1).with_fence(fence);
    block(c.tick(Timestamp::from_secs(10))).unwrap();
    assert_eq!(world(&p).calls, vec!["increase a 1".to_string()]);
    assert!(world(&p).acked.is_empty(), "left for the next leader");

    // Not leading from the start: no ack, no action.
    let p = MemProvider::default();
    {
        let mut w = world(&p);
        w.groups.push(group("a", CapacityType::OnDemand));
        w.events.push(ProviderEvent {
            ack: Some("rh-2".into()),
            id: "ev-2".into(),
            kind: ProviderEventKind::RebalanceRecommendation {
                instance: "i-none".into(),
            },
        });
    }
    let mut c = controller(&p, two_ups, 1).with_fence(Arc::new(|| false));
    block(c.tick(Timestamp::from_secs(10))).unwrap();
    assert!(world(&p).calls.is_empty());
    assert!(world(&p).acked.is_empty(), "left for the next leader");
}

/// A state store in memory that can be made to fail, shared by "successive processes".
#[derive(Clone, Default)]
struct MemStore {
    saved: Arc<Mutex<Option<crate::state::SavedState>>>,
    failing: Arc<Mutex<bool>>,
    saves: Arc<Mutex<u32>>,
}

#[async_trait]
impl crate::state::StateStore for MemStore {
    async fn load(&self) -> Result<Option<crate::state::SavedState>, crate::state::StateError> {
        Ok(self.saved.lock().unwrap().clone())
    }
    async fn save(&self, s: &crate::state::SavedState) -> Result<(), crate::state::StateError> {
        if *self.failing.lock().unwrap() {
            return Err(crate::state::StateError::Write {
                what: "memory".into(),
                source: "disk full".into(),
            });
        }
        *self.saves.lock().unwrap() += 1;
        *self.saved.lock().unwrap() = Some(s.clone());
        Ok(())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

/// A notice (delivered twice, SQS at-least-once) is acknowledged only once its drain is saved;
/// a process that dies after the acknowledgement (dropped: nothing is flushed on drop, as with
/// kill -9) is replaced by one that resumes the drain with the same deadline and terminates.
#[test]
fn a_notice_is_acknowledged_after_its_drain_is_saved_and_a_restart_resumes_it() {
    let p = noticed(200);
    {
        let mut w = world(&p);
        let ev = w.events.pop().unwrap();
        for ack in ["r1", "r2"] {
            w.events.push(ProviderEvent {
                ack: Some(ack.into()),
                ..ev.clone()
            });
        }
    }
    let store = MemStore::default();
    *store.failing.lock().unwrap() = true;
    let mut c = controller(&p, empty_plan, u32::MAX).with_state_store(Arc::new(store.clone()));
    let r = block(c.tick(Timestamp::from_secs(10))).unwrap();
    assert_eq!(r.events_handled, 1, "handled once");
    assert!(world(&p).acked.is_empty(), "not saved: not acknowledged");

    *store.failing.lock().unwrap() = false;
    let r = block(c.tick(Timestamp::from_secs(20))).unwrap();
    assert_eq!(r.events_handled, 0, "the redelivery is a duplicate");
    assert_eq!(world(&p).acked, vec!["r1".to_string(), "r2".to_string()]);
    let saved = store.saved.lock().unwrap().clone().unwrap();
    assert_eq!(saved.drains.len(), 1);
    assert_eq!(saved.drains[0].deadline, Timestamp::from_secs(200));
    drop(c); // kill -9: the notice is gone from the queue, the drain only on "disk"

    let mut c = controller(&p, empty_plan, 1).with_state_store(Arc::new(store.clone()));
    let r = block(c.tick(Timestamp::from_secs(30))).unwrap();
    assert_eq!(r.events_handled, 0, "nothing redelivered");
    assert_eq!(
        r.terminated_after_drain,
        vec![InstanceId::from("i-1")],
        "the restored drain went on"
    );
    assert_eq!(world(&p).calls, vec!["terminate a i-1".to_string()]);
}

/// The replacement's launch failed: the notice stays unacknowledged (redelivered), and the
/// redelivery does not start a second drain.
#[test]
fn a_notice_whose_replacement_failed_is_left_for_redelivery() {
    let p = noticed(200);
    {
        let mut w = world(&p);
        w.events[0].ack = Some("r1".into());
        w.no_capacity_in.push("a".into());
    }
    let store = MemStore::default();
    let mut c =
        controller(&p, scale_up_first_usable, u32::MAX).with_state_store(Arc::new(store.clone()));
    block(c.tick(Timestamp::from_secs(10))).unwrap();
    assert!(
        world(&p).acked.is_empty(),
        "launch failed: not acknowledged"
    );
    world(&p).no_capacity_in.clear();
    // The offering backs off; the next tick's launch goes elsewhere… here the only group is
    // backed off, so the plan is empty and the notice is acknowledged.
    let r = block(c.tick(Timestamp::from_secs(20))).unwrap();
    assert_eq!(r.events_handled, 0);
    assert_eq!(world(&p).acked, vec!["r1".to_string()]);
    assert_eq!(c.draining().count(), 1);
}

/// A state of an unknown format version holds every tick (never overwritten); a corrupt one is
/// a fresh start.
#[test]
fn an_unknown_state_version_holds_and_a_corrupt_state_starts_fresh() {
    struct Bad(bool);
    #[async_trait]
    impl crate::state::StateStore for Bad {
        async fn load(&self) -> Result<Option<crate::state::SavedState>, crate::state::StateError> {
            let bytes: &[u8] = if self.0 {
                br#"{"version": 7, "saved_at": 0}"#
            } else {
                b"\x00 not json"
            };
            crate::state::decode(bytes, "test").map(Some)
        }
        async fn save(&self, _: &crate::state::SavedState) -> Result<(), crate::state::StateError> {
            panic!("must not save over a state it could not read");
        }
        fn describe(&self) -> String {
            "bad".into()
        }
    }
    let p = MemProvider::default();
    world(&p).groups.push(group("a", CapacityType::Spot));
    let mut c = controller(&p, scale_up_first_usable, 1).with_state_store(Arc::new(Bad(true)));
    for s in [10, 20] {
        let e = block(c.tick(Timestamp::from_secs(s))).unwrap_err();
        assert!(error_chain(&e).contains("version 7"), "{}", error_chain(&e));
    }
    assert!(world(&p).calls.is_empty());

    // Corrupt: restored as a fresh start (saving over it is then allowed; this fake's save
    // panics, so only the restore is exercised).
    let mut c = controller(&p, scale_up_first_usable, 1).with_state_store(Arc::new(Bad(false)));
    assert!(block(c.restore_state(Timestamp::from_secs(10))).is_ok());
    assert!(c.history().backoff.is_empty());
}

mod run;
mod shadow;

#[test]
fn a_decision_is_labelled_with_the_pool_of_its_group_or_instance() {
    use crate::model::Subject;
    let snap = Snapshot {
        instances: vec![instance("i-1", "g1")],
        ..Snapshot::default()
    };
    let pools = BTreeMap::from([(NodeGroupId::from("g1"), PoolName::from("llm"))]);
    let groups = instance_groups(&snap);
    let of = |s: Subject| decision_pool(&s, &groups, &pools);
    assert_eq!(of(Subject::Pool(PoolName::from("p"))), "p");
    assert_eq!(of(Subject::Group(NodeGroupId::from("g1"))), "llm");
    assert_eq!(of(Subject::Instance(InstanceId::from("i-1"))), "llm");
    // Unknown group or instance, and a pod (it may match several pools): no pool.
    assert_eq!(of(Subject::Group(NodeGroupId::from("g9"))), "");
    assert_eq!(of(Subject::Instance(InstanceId::from("i-9"))), "");
    assert_eq!(of(Subject::Pod("ns/p".into())), "");
}

/// A demand source with a forecast history to save, recording what it is given back.
struct Remembering {
    steps: crate::state::ForecastSteps,
    restored: Arc<Mutex<BTreeMap<PoolName, crate::state::ForecastSteps>>>,
}

#[async_trait]
impl DemandSource for Remembering {
    async fn read(&mut self, _c: &Config, _now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        BTreeMap::new()
    }
    fn forecast_history(&self) -> BTreeMap<PoolName, crate::state::ForecastSteps> {
        [(PoolName::from("p"), self.steps.clone())].into()
    }
    fn restore_forecast_history(
        &mut self,
        _config: &Config,
        saved: BTreeMap<PoolName, crate::state::ForecastSteps>,
    ) {
        *self.restored.lock().unwrap() = saved;
    }
}

/// The demand source's forecast history is saved with the state and handed back to the next
/// process's demand source.
#[test]
fn forecast_history_is_saved_and_handed_back_after_a_restart() {
    let p = MemProvider::default();
    world(&p).groups.push(group("a", CapacityType::Spot));
    let store = MemStore::default();
    let steps: crate::state::ForecastSteps =
        (60, (0..5).map(|i| (100 + i, 3 + i as u32)).collect());
    let source = |restored| {
        Box::new(Remembering {
            steps: steps.clone(),
            restored,
        })
    };
    let cfg = controller(&p, empty_plan, 1).config.clone();
    let mk = |restored| {
        with_demand(cfg.clone(), &p, source(restored)).with_state_store(Arc::new(store.clone()))
    };
    let mut c = mk(Arc::default());
    block(c.tick(Timestamp::from_secs(10_000))).unwrap();
    let saved = store.saved.lock().unwrap().clone().expect("saved");
    assert_eq!(saved.forecasts[&PoolName::from("p")].steps(), steps);
    drop(c);
    let restored = Arc::new(Mutex::new(BTreeMap::new()));
    let mut c = mk(restored.clone());
    block(c.restore_state(Timestamp::from_secs(10_030))).unwrap();
    assert_eq!(
        *restored.lock().unwrap(),
        BTreeMap::from([(PoolName::from("p"), steps.clone())])
    );
}

/// A demand source with a past: the replicas `points` wanted, counting how often it is asked.
struct Past {
    points: Vec<(Timestamp, u32)>,
    asked: Arc<Mutex<u32>>,
}

#[async_trait]
impl DemandSource for Past {
    async fn read(&mut self, _c: &Config, _now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        BTreeMap::new()
    }
    async fn demand_history(
        &mut self,
        _config: &Config,
        _pool: &crate::config::PoolConfig,
        window: crate::planner::headroom::BackfillWindow,
    ) -> Vec<(Timestamp, u32)> {
        *self.asked.lock().unwrap() += 1;
        self.points
            .iter()
            .copied()
            .filter(|(t, _)| *t >= window.from && *t < window.to)
            .collect()
    }
}

/// An SLO pool's learner without history is backfilled from the source's past once per
/// process; one restored from saved state is never overwritten; a pool without `slo` is not
/// asked.
#[test]
fn the_learner_is_backfilled_once_and_never_over_restored_state() {
    let p = MemProvider::default();
    world(&p).groups.push(group("a", CapacityType::OnDemand));
    let cfg = Arc::new(
        Config::load(
            "pools:\n  - name: p\n    requirements: {}\n    slo: { queue_wait_s: 1, attainment: 0.99 }\n  - name: q\n    requirements: {}\n",
        )
        .unwrap(),
    );
    let now = Timestamp::from_secs(100_000);
    // Two hours of steps between 2 and 6 replicas, every 10 s.
    let points: Vec<(Timestamp, u32)> = (0..720)
        .map(|i| {
            (
                Timestamp::from_secs(100_000 - 7_200 + i * 10),
                2 + 4 * ((i as u32 / 30) % 2),
            )
        })
        .collect();
    let mk = |asked: Arc<Mutex<u32>>| {
        let past = Past {
            points: points.clone(),
            asked,
        };
        with_demand(cfg.clone(), &p, Box::new(past))
    };
    let asked = Arc::new(Mutex::new(0));
    let mut c = mk(asked.clone());
    block(c.tick(now)).unwrap();
    block(c.tick(Timestamp::from_secs(100_010))).unwrap();
    assert_eq!(*asked.lock().unwrap(), 1, "once per SLO pool per process");
    let learnt = c.history().slo[&PoolName::from("p")].clone();
    assert!(learnt.observations > 600, "{}", learnt.observations);
    assert!(!c.history().slo.contains_key(&PoolName::from("q")));

    // A learner that already has history (restored state) is left alone.
    let asked = Arc::new(Mutex::new(0));
    let mut restored = mk(asked.clone());
    restored
        .history
        .slo
        .insert(PoolName::from("p"), learnt.clone());
    block(restored.tick(Timestamp::from_secs(100_020))).unwrap();
    assert_eq!(*asked.lock().unwrap(), 0);
}

/// Demand that only reports a longest recent request (or none) for pool `p`.
struct Durations(Option<f64>);

#[async_trait]
impl DemandSource for Durations {
    async fn read(&mut self, _c: &Config, _now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        let d = PoolDemand {
            request_duration: self
                .0
                .and_then(|s| crate::model::RequestDuration::measured(s, 3600)),
            ..PoolDemand::default()
        };
        [(PoolName::from("p"), d)].into()
    }
}

/// A pool without `interruption_drain_s`, ticking every 10 s, whose demand reports
/// `longest_s`; one spot instance `i-1` in group `a` whose drain takes two steps; the notice
/// (reclaim at t=130 s) arrives at the second tick, after a first tick has read the demand.
fn learnt_lead(longest_s: Option<f64>) -> (MemProvider, Controller) {
    let cfg =
        Config::load("tick_interval_s: 10\npools:\n  - name: p\n    requirements: {}\n").unwrap();
    let p = noticed(130);
    let notice = world(&p).events.pop().unwrap();
    let mut c = Controller::new(
        Arc::new(cfg),
        Arc::new(p.clone()),
        Box::new(MemCluster {
            drain_ticks: 2,
            drain_calls: BTreeMap::new(),
        }),
        Box::new(Durations(longest_s)),
        Arc::new(Metrics::default()),
    )
    .with_planner(empty_plan);
    block(c.tick(Timestamp::from_secs(0))).unwrap();
    world(&p).events.push(notice);
    (p, c)
}

#[test]
fn a_known_request_duration_serves_until_its_lead_before_the_reclaim() {
    let (p, mut c) = learnt_lead(Some(40.6));
    // Notice at t=10 for t=130: lead ⌈40.6⌉ + one 10-s tick = 51 s, so the drain starts at 79.
    block(c.tick(Timestamp::from_secs(10))).unwrap();
    let d = &c.drains[&InstanceId::from("i-1")];
    assert_eq!(d.start_at, Timestamp::from_secs(79));
    assert_eq!(
        d.reason.to_string(),
        "spot interruption notice, reclaimed at t=130.000s; serving until 51 s \
         before the reclaim: the longest request in the last hour took 40.6 s, plus one 10-s tick"
    );
    for t in (20..80).step_by(10) {
        block(c.tick(Timestamp::from_secs(t))).unwrap();
        assert_eq!(c.draining().count(), 1, "t={t}: the notice is tracked");
        assert_eq!(
            c.drains[&InstanceId::from("i-1")].start_at,
            Timestamp::from_secs(79),
            "t={t}: later reads do not move a drain's start"
        );
        assert!(world(&p).calls.is_empty(), "t={t}: still serving");
    }
    // The drain starts at t=80 (two steps): terminated at t=90, well before the reclaim.
    block(c.tick(Timestamp::from_secs(80))).unwrap();
    assert!(world(&p).calls.is_empty(), "t=80: draining");
    let r = block(c.tick(Timestamp::from_secs(90))).unwrap();
    assert_eq!(r.terminated_after_drain, vec![InstanceId::from("i-1")]);
    assert_eq!(world(&p).calls, vec!["terminate a i-1".to_string()]);
}

#[test]
fn an_unknown_request_duration_drains_at_the_notice() {
    for longest_s in [None, Some(f64::NAN), Some(-1.0), Some(7680.0)] {
        let (p, mut c) = learnt_lead(longest_s);
        block(c.tick(Timestamp::from_secs(10))).unwrap();
        let d = &c.drains[&InstanceId::from("i-1")];
        assert_eq!(d.start_at, Timestamp::from_secs(10), "{longest_s:?}");
        assert!(
            d.reason
                .to_string()
                .ends_with("draining at the notice: request durations unknown"),
            "{longest_s:?}: {}",
            d.reason
        );
        // Drain steps at t=10 and t=20: terminated at t=20, not served until late.
        block(c.tick(Timestamp::from_secs(20))).unwrap();
        assert_eq!(
            world(&p).calls,
            vec!["terminate a i-1".to_string()],
            "{longest_s:?}: drained from the notice on"
        );
    }
}

#[test]
fn a_duration_too_long_for_the_notice_drains_at_the_notice() {
    // ⌈115.2⌉ + 10 = 126 s does not fit the 120 s left.
    let (_p, mut c) = learnt_lead(Some(115.2));
    block(c.tick(Timestamp::from_secs(10))).unwrap();
    let d = &c.drains[&InstanceId::from("i-1")];
    assert_eq!(d.start_at, Timestamp::from_secs(10));
    assert!(
        d.reason.to_string().contains("does not fit the 120 s left"),
        "{}",
        d.reason
    );
}
