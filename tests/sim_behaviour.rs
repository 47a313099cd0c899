//! Behaviour of the simulated world: spot reclaims re-queue and count hurt requests; warm
//! starts are faster than cold launches.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

use gpupool::model::{
    CapacityType, GpuInfo, InstanceType, InstanceTypeName, LifecycleState, NodeGroupId, PoolName,
    Zone,
};
use gpupool::sim::data::AvailabilityTrace;
use gpupool::sim::timing::{ColdStart, ColdStartSpec};
use gpupool::sim::world::{Cloud, Faults, GroupSpec, Req, SpotDynamics, World, WorldParams};
use std::collections::BTreeMap;

fn group(id: &str, ct: CapacityType) -> GroupSpec {
    GroupSpec {
        id: NodeGroupId::from(id),
        pool: PoolName::from("p"),
        capacity_type: ct,
        instance_type: InstanceType {
            name: InstanceTypeName::from("g5.2xlarge"),
            vcpu: 8,
            memory_mib: 32768,
            gpu: GpuInfo {
                model: "A10G".into(),
                count: 1,
                memory_mib_per_gpu: 22888,
                mig_profiles: vec![],
            },
        },
        zones: vec![Zone::from("z1")],
        price_per_hour: 1.0,
        min_size: 0,
        max_size: 10,
        warm_pool_capable: ct == CapacityType::OnDemand,
        hazard_per_hour: 0.0,
    }
}

fn params(spot: SpotDynamics) -> WorldParams {
    WorldParams {
        concurrency: 4,
        cold: ColdStart::new(ColdStartSpec::default()),
        spot_notice_s: 120.0,
        spot,
        faults: Faults::default(),
        sample_interval_s: 5.0,
        model_cache: None,
        seed: 3,
        cloud: Cloud::Aws,
    }
}

#[test]
fn a_spot_reclaim_requeues_in_flight_requests_and_counts_them_hurt() {
    // Spot capacity 1 for the first minute, then 0: the spot instance gets its notice at 60 s
    // and is reclaimed at 180 s, in the middle of two 300 s requests.
    let trace = AvailabilityTrace {
        tick_s: 60.0,
        zones: BTreeMap::from([("z1".to_string(), vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])]),
    };
    let groups = vec![
        group("od", CapacityType::OnDemand),
        group("spot", CapacityType::Spot),
    ];
    let reqs = vec![Req::new(0, 300_000, 1_000), Req::new(1_000, 300_000, 1_000)];
    let mut w = World::new(
        params(SpotDynamics::Trace {
            trace,
            start_tick: 0,
        }),
        groups,
        reqs,
        3_600_000,
    );
    w.prewarm_ready(1, 1);
    w.advance_to(60_000);
    let events = w.poll_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(w.in_flight_total(), 2);
    w.advance_to(179_000);
    assert_eq!(w.requests_hurt, 0, "nothing is hurt before the deadline");
    // On-demand fallback, launched after the reclaim so the requests must wait for it.
    w.advance_to(181_000);
    assert_eq!(w.requests_hurt, 2);
    assert_eq!(w.waiting(), 2, "both requests are back in the queue");
    w.increase(&NodeGroupId::from("od"), 1)
        .expect("on-demand launch");
    w.finish();
    assert!(w.reqs.iter().all(|r| r.hurt && r.done_ms.is_some()));
    // Reclaimed by the cloud 3 minutes after launch: AWS bills none of it.
    assert!(w.spot_refunded > 0.0 && w.cost_spot.abs() < 1e-9 && w.cost_on_demand > 0.0);
    // The group tried to replace its reclaimed member; with no spot left it is held unfulfilled.
    assert_eq!(w.reclaim_replacements, 1);
}

#[test]
fn warm_starts_are_faster_than_cold_launches() {
    let groups = vec![
        group("od", CapacityType::OnDemand),
        group("od2", CapacityType::OnDemand),
    ];
    let mut w = World::new(params(SpotDynamics::Hazard), groups, vec![], 7_200_000);
    let od = NodeGroupId::from("od");
    w.set_warm_pool_size(&od, 2)
        .expect("od groups take a warm pool");
    w.advance_to(1_200_000);
    let warm = w
        .insts
        .values()
        .filter(|i| i.state == LifecycleState::Warm)
        .count();
    assert_eq!(warm, 2, "the warm pool filled and stopped");
    let t0 = w.now_ms;
    w.increase(&od, 1).expect("start from the warm pool");
    w.increase(&NodeGroupId::from("od2"), 1)
        .expect("cold launch");
    let mut warm_ready = None;
    let mut cold_ready = None;
    let mut t = t0;
    while (warm_ready.is_none() || cold_ready.is_none()) && t < t0 + 3_600_000 {
        t += 1_000;
        w.advance_to(t);
        for i in w
            .insts
            .values()
            .filter(|i| i.state == LifecycleState::Ready)
        {
            let slot = if i.group == 0 {
                &mut warm_ready
            } else {
                &mut cold_ready
            };
            slot.get_or_insert(t - t0);
        }
    }
    let (warm_s, cold_s) = (
        warm_ready.expect("warm ready") / 1000,
        cold_ready.expect("cold ready") / 1000,
    );
    assert!((30..=61).contains(&warm_s), "warm start took {warm_s} s");
    assert!(
        cold_s > warm_s && cold_s >= 70,
        "cold {cold_s} s vs warm {warm_s} s"
    );
    // The warm pool refills after the start (AWS keeps its minimum size).
    let pool = w
        .insts
        .values()
        .filter(|i| i.group == 0 && i.state.is_warm_pool())
        .count();
    assert_eq!(pool, 2);
}
