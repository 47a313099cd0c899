//! Shadow mode (`dry_run: true`) against the in-memory provider while another actor manages
//! the group: the real planner runs, nothing mutating is called, and what the other actor did
//! is reported with the cost difference.

use super::*;

fn shadow_config() -> Arc<Config> {
    Arc::new(
        Config::load(
            "dry_run: true\npools:\n  - name: p\n    requirements: {}\n    limits: { min_nodes: 3 }\n",
        )
        .unwrap(),
    )
}

#[test]
fn shadow_mode_plans_reports_and_never_calls_a_mutating_api() {
    let p = MemProvider::default();
    {
        let mut w = world(&p);
        w.groups.push(group("a", CapacityType::Spot));
        w.instances.push(instance("i-1", "a"));
        // A notice with an acknowledgement handle: deleting it is a mutating call too.
        w.events.push(ProviderEvent {
            ack: Some("r1".into()),
            id: "m1".into(),
            kind: ProviderEventKind::RebalanceRecommendation {
                instance: "i-1".into(),
            },
        });
    }
    let metrics = Arc::new(Metrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut c = Controller::new(
        shadow_config(),
        Arc::new(p.clone()),
        Box::new(MemCluster {
            drain_ticks: 1,
            drain_calls: BTreeMap::new(),
        }),
        Box::new(NoDemand),
        metrics.clone(),
    )
    .with_capture();

    let r = block(c.tick(Timestamp::from_secs(0))).unwrap();
    let plan = r.plan().unwrap();
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleUp { .. })),
        "the planner still plans: {:?}",
        plan.actions
    );
    assert!(r.results.is_empty(), "nothing executed: {:?}", r.results);
    let ledger = c.shadow().expect("dry_run keeps a ledger");
    let pool = &ledger.pools[&PoolName::from("p")];
    assert_eq!(pool.actual_cost_per_hour, Money::from_dollars(1.0));
    assert!(pool.would_cost_per_hour >= Money::from_dollars(3.0));

    // Someone else (Cluster Autoscaler) raises desired and a node appears.
    {
        let mut w = world(&p);
        w.groups[0].desired = 2;
        w.instances.push(instance("i-2", "a"));
    }
    block(c.tick(Timestamp::from_secs(3600))).unwrap();
    let pool = &c.shadow().unwrap().pools[&PoolName::from("p")];
    assert_eq!(pool.changes.len(), 1, "{:?}", pool.changes);
    let change = &pool.changes[0];
    assert_eq!((change.desired_before, change.desired_after), (1, 2));
    assert_eq!(change.added, vec![InstanceId::from("i-2")]);
    assert_eq!(pool.observed_added, 1);
    assert_eq!(pool.actual_cost_per_hour, Money::from_dollars(2.0));
    assert_eq!(
        pool.cost_difference_per_hour,
        pool.would_cost_per_hour - pool.actual_cost_per_hour
    );
    assert!(pool.cost_difference_total > Money::ZERO, "{pool:?}");

    let w = world(&p);
    assert!(
        w.calls.is_empty(),
        "mutating calls in shadow mode: {:?}",
        w.calls
    );
    assert!(
        w.acked.is_empty(),
        "events acknowledged in shadow mode: {:?}",
        w.acked
    );
    drop(w);
    let text = metrics::encode(&registry);
    assert!(
        text.contains("gpupool_shadow_actions_total{pool=\"p\",action=\"scale_up\"} 2"),
        "{text}"
    );
    // The status says shadow and carries the ledger.
    let planned = c.last_planned().unwrap();
    let cfg = shadow_config();
    let status = crate::model::status::build(&crate::model::status::StatusInput {
        config: &cfg,
        leader: true,
        last_tick: Some(Timestamp::from_secs(3600)),
        held: None,
        planned: Some((&planned.snapshot, &planned.history, &planned.plan)),
        shadow: c.shadow(),
    });
    assert_eq!(status.mode, crate::model::status::RunMode::Shadow);
    assert_eq!(status.pools[0].shadow.as_ref().unwrap().observed_added, 1);
}
