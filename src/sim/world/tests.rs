//! The simulated cloud's stockout paths, per cloud and fault mode.
use super::*;
use crate::model::{GpuInfo, InstanceTypeName};
use crate::sim::timing::ColdStartSpec;

fn group(id: &str, ct: CapacityType, zones: &[&str], min_size: u32) -> GroupSpec {
    GroupSpec {
        id: NodeGroupId::from(id),
        pool: PoolName::from("p"),
        capacity_type: ct,
        instance_type: InstanceType {
            name: InstanceTypeName::from("p3.2xlarge"),
            vcpu: 8,
            memory_mib: 61_440,
            gpu: GpuInfo {
                model: "V100".into(),
                count: 1,
                memory_mib_per_gpu: 16_384,
                mig_profiles: vec![],
            },
        },
        zones: zones.iter().map(|z| Zone::from(*z)).collect(),
        price_per_hour: 1.0,
        min_size,
        max_size: 10,
        warm_pool_capable: false,
        hazard_per_hour: 0.0,
    }
}

/// A spot group whose zone `z1` has `avail[k]` spot instances in minute k (then the last
/// value), an on-demand group beside it.
fn world(cloud: Cloud, avail: Vec<u32>, faults: Faults, spot_min: u32) -> World {
    world_until(cloud, avail, faults, spot_min, 3_600_000)
}

fn world_until(cloud: Cloud, avail: Vec<u32>, faults: Faults, spot_min: u32, end_ms: i64) -> World {
    let trace = AvailabilityTrace {
        tick_s: 60.0,
        zones: BTreeMap::from([("z1".to_string(), avail)]),
    };
    let params = WorldParams {
        concurrency: 4,
        cold: ColdStart::new(ColdStartSpec::default()),
        spot_notice_s: 120.0,
        spot: SpotDynamics::Trace {
            trace,
            start_tick: 0,
        },
        faults,
        sample_interval_s: 5.0,
        model_cache: None,
        seed: 11,
        cloud,
    };
    World::new(
        params,
        vec![
            group("od", CapacityType::OnDemand, &["z1"], 0),
            group("spot", CapacityType::Spot, &["z1"], spot_min),
        ],
        Vec::new(),
        end_ms,
    )
}

fn spot() -> NodeGroupId {
    NodeGroupId::from("spot")
}

fn view(w: &World) -> NodeGroup {
    w.node_groups().remove(1)
}

#[test]
fn aws_stockout_is_accepted_then_reported_with_desired_left_raised() {
    let mut w = world(Cloud::Aws, vec![0], Faults::default(), 0);
    w.increase(&spot(), 2)
        .expect("the cloud accepts the launch");
    assert!(
        w.instances(&spot()).unwrap().is_empty(),
        "no instance appears"
    );
    let g = view(&w);
    assert_eq!(g.desired, 2, "desired stays raised");
    assert!(g.unfulfilled.is_empty(), "not reported yet");
    assert!(
        g.offerings.iter().all(|o| o.available),
        "the cloud cannot know in advance"
    );
    // Reported within LAUNCH_FAILURE_REPORT_S.
    w.advance_to((LAUNCH_FAILURE_REPORT_S.1 * 1000.0) as i64);
    let g = view(&w);
    assert_eq!(g.unfulfilled.len(), 1, "{:?}", g.unfulfilled);
    let u = &g.unfulfilled[0];
    assert_eq!(u.count, 2);
    assert!(u.instances.is_empty());
    assert_eq!(u.failure, LaunchFailure::InsufficientCapacity);
    assert_eq!(u.offering.capacity_type, CapacityType::Spot);
    assert_eq!(u.offering.zone, Zone::from("z1"));
    assert!(u.at.millis() >= (LAUNCH_FAILURE_REPORT_S.0 * 1000.0) as i64);
    assert_eq!(w.failed_launches.len(), 2);
    assert!(
        w.failed_launches
            .iter()
            .all(|f| f.reported_ms.is_some() && f.cause == StockoutCause::NoCapacity)
    );
    assert!(w.launches.is_empty(), "nothing was put on its way");
    // Taken back: desired falls to what is backed; asking again takes nothing.
    assert_eq!(w.release_unfulfilled(&spot(), 2, &[]).unwrap(), 2);
    let g = view(&w);
    assert_eq!((g.desired, g.unfulfilled.len()), (0, 0));
    assert_eq!(w.release_unfulfilled(&spot(), 2, &[]).unwrap(), 0);
}

#[test]
fn gcp_stockout_is_a_vm_stuck_creating_that_costs_nothing_until_deleted() {
    let mut w = world(Cloud::Gcp, vec![0], Faults::default(), 0);
    w.increase(&spot(), 2).expect("the MIG accepts the resize");
    let listed = w.instances(&spot()).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|i| i.state == LifecycleState::Launching));
    w.advance_to(120_000);
    let g = view(&w);
    assert_eq!(g.desired, 2);
    assert_eq!(g.unfulfilled.len(), 1);
    let mut named = g.unfulfilled[0].instances.clone();
    named.sort();
    let mut ids: Vec<InstanceId> = listed.iter().map(|i| i.id.clone()).collect();
    ids.sort();
    assert_eq!(named, ids, "the stuck VMs are named");
    assert_eq!(g.unfulfilled[0].count, 2);
    w.settle_all();
    assert_eq!(
        w.cost_spot, 0.0,
        "a VM that was never created is not billed"
    );
    assert_eq!(w.release_unfulfilled(&spot(), 2, &named).unwrap(), 2);
    assert!(w.instances(&spot()).unwrap().is_empty());
    assert!(view(&w).unfulfilled.is_empty());
    assert_eq!(w.release_unfulfilled(&spot(), 2, &named).unwrap(), 0);
}

#[test]
fn the_clouds_own_retry_launches_once_capacity_returns() {
    for cloud in [Cloud::Aws, Cloud::Gcp] {
        // No spot capacity for 2 minutes, then room for 3.
        let mut w = world(cloud, vec![0, 0, 3], Faults::default(), 0);
        w.increase(&spot(), 1).unwrap();
        w.advance_to(600_000);
        let insts = w.instances(&spot()).unwrap();
        assert_eq!(insts.len(), 1, "{cloud:?}");
        assert!(w.insts.values().all(|i| !i.stuck), "{cloud:?}");
        assert!(view(&w).unfulfilled.is_empty(), "{cloud:?}");
        assert_eq!(view(&w).desired, 1, "{cloud:?}");
    }
}

#[test]
fn taking_back_stops_at_min_size() {
    let mut w = world(Cloud::Aws, vec![0], Faults::default(), 1);
    w.increase(&spot(), 3).unwrap();
    w.advance_to(120_000);
    assert_eq!(w.release_unfulfilled(&spot(), 3, &[]).unwrap(), 2);
    assert_eq!(view(&w).desired, 1);
}

#[test]
fn stockout_faults_fail_launches_late_or_at_once_as_configured() {
    let late = Faults {
        stockout_prob: 1.0,
        ..Faults::default()
    };
    let mut w = world(Cloud::Aws, vec![5], late, 0);
    let od = NodeGroupId::from("od");
    w.increase(&od, 1).expect("accepted");
    assert_eq!(w.failed_launches.len(), 1);
    assert_eq!(w.failed_launches[0].cause, StockoutCause::Fault);
    assert_eq!(w.calls.last().map(|c| c.error), Some(None));

    let immediate = Faults {
        stockout_prob: 1.0,
        stockout_mode: StockoutMode::Immediate,
        ..Faults::default()
    };
    let mut w = world(Cloud::Aws, vec![5], immediate, 0);
    let err = w.increase(&od, 1).unwrap_err();
    assert!(
        matches!(err, ProviderError::InsufficientCapacity { .. }),
        "{err}"
    );
    assert_eq!(
        w.calls.last().map(|c| c.error),
        Some(Some("insufficient_capacity"))
    );
    assert!(w.failed_launches.is_empty());
}

#[test]
fn a_silent_stockout_is_never_reported_but_can_be_taken_back() {
    let silent = Faults {
        stockout_mode: StockoutMode::Silent,
        ..Faults::default()
    };
    let mut w = world(Cloud::Aws, vec![0], silent, 0);
    w.increase(&spot(), 2).unwrap();
    w.advance_to(1_200_000);
    let g = view(&w);
    assert_eq!(g.desired, 2);
    assert!(g.unfulfilled.is_empty(), "never reported");
    assert!(w.failed_launches.iter().all(|f| f.reported_ms.is_none()));
    assert_eq!(w.release_unfulfilled(&spot(), 2, &[]).unwrap(), 2);
    assert!(w.failed_launches.iter().all(|f| f.released_ms.is_some()));
}

#[test]
fn desired_with_unfulfilled_requests_still_respects_max_size() {
    let mut w = world(Cloud::Aws, vec![0], Faults::default(), 0);
    w.increase(&spot(), 10).unwrap();
    let err = w.increase(&spot(), 1).unwrap_err();
    assert!(matches!(err, ProviderError::InvalidConfig(_)), "{err}");
}

#[test]
fn a_seed_gives_the_same_failures() {
    let run = || {
        let faults = Faults {
            stockout_prob: 0.5,
            ..Faults::default()
        };
        let mut w = world(Cloud::Gcp, vec![2, 0, 1, 3], faults, 0);
        for t in 0..8 {
            w.advance_to(t * 60_000);
            let _ = w.increase(&spot(), 1);
            let _ = w.increase(&NodeGroupId::from("od"), 1);
        }
        w.advance_to(900_000);
        (
            w.failed_launches.clone(),
            w.launches.clone(),
            w.calls.clone(),
        )
    };
    let (a, b) = (run(), run());
    assert!(!a.0.is_empty());
    assert_eq!(a, b);
}

/// A world with one on-demand replica serving three requests (concurrency 4), checked clean
/// at t = 1 s.
fn serving_world() -> (World, InvariantChecker) {
    let mut w = world(Cloud::Aws, vec![1], Faults::default(), 0);
    w.reqs = vec![Req::new(0, 60_000, 0); 3];
    w.prewarm_ready(0, 1);
    w.advance_to(1_000);
    let mut checker = InvariantChecker::default();
    assert_eq!(checker.check(&w), Ok(()), "a clean world passes");
    (w, checker)
}

/// What a broken invariant prints: the invariant, the simulated time, the reproducing command.
fn broken(w: &World, checker: &mut InvariantChecker) -> String {
    let violation = checker.check(w).expect_err("the invariant is broken");
    InvariantBroken {
        violation,
        at_s: w.now_ms as f64 / 1000.0,
        scenario: "quick".into(),
        policy: "hpa-ca".into(),
        seed: w.params.seed,
    }
    .to_string()
}

fn assert_names(msg: &str, invariant: &str) {
    assert!(msg.contains(invariant), "{msg}");
    assert!(msg.contains("at t = 1.000 s"), "{msg}");
    assert!(
        msg.contains("gpupool simulate --scenario quick --policy hpa-ca --seed 11"),
        "{msg}"
    );
}

#[test]
fn an_instance_listed_twice_breaks_the_invariant() {
    let (mut w, mut checker) = serving_world();
    let mut copy = w.insts.values().next().cloned().unwrap();
    copy.in_flight.clear();
    w.insts.insert(99, copy.clone());
    assert_names(&broken(&w, &mut checker), "no instance counted twice");
    copy.num = 99;
    w.insts.insert(99, copy);
    // Ids are compared on the periodic scan.
    assert_eq!(checker.check(&w), Ok(()));
    w.now_ms += REQUEST_SCAN_EVERY_MS;
    let msg = broken(&w, &mut checker);
    assert!(msg.contains("shares its id"), "{msg}");
}

#[test]
fn a_stuck_vm_without_its_launch_request_breaks_the_invariant() {
    let mut w = world(Cloud::Gcp, vec![0], Faults::default(), 0);
    w.increase(&spot(), 1).unwrap();
    let mut checker = InvariantChecker::default();
    assert_eq!(checker.check(&w), Ok(()));
    w.unfilled.clear();
    let msg = broken(&w, &mut checker);
    assert!(
        msg.contains("stuck CREATING for no launch request"),
        "{msg}"
    );
}

#[test]
fn a_replica_over_its_concurrency_breaks_the_invariant() {
    let (mut w, mut checker) = serving_world();
    let i = w.insts.values_mut().next().unwrap();
    i.in_flight.extend([7, 8]);
    assert_names(&broken(&w, &mut checker), "capacity never negative");
}

#[test]
fn a_cost_that_falls_breaks_the_invariant() {
    let (mut w, mut checker) = serving_world();
    w.advance_to(600_000);
    assert_eq!(checker.check(&w), Ok(()));
    w.now_ms = 1_000;
    w.cost_on_demand -= 0.01;
    assert_names(&broken(&w, &mut checker), "cost monotone non-decreasing");
    w.cost_on_demand = f64::NAN;
    assert!(checker.check(&w).is_err(), "NaN is no cost");
}

#[test]
fn a_lost_or_doubled_request_breaks_the_invariant() {
    let (mut w, mut checker) = serving_world();
    let i = w.insts.values_mut().next().unwrap();
    let r = i.in_flight.pop().unwrap();
    let msg = broken(&w, &mut checker);
    assert_names(&msg, "every request accounted for");
    assert!(
        msg.contains("arrived 3 vs queued 0 + running 2 + done 0 + dropped 0"),
        "{msg}"
    );
    w.queue.push_back(r);
    assert_eq!(checker.check(&w), Ok(()), "queued again: accounted for");
    w.queue.push_back(r);
    let msg = broken(&w, &mut checker);
    assert!(msg.contains("queued twice"), "{msg}");
}

#[test]
fn desired_above_max_size_breaks_the_invariant() {
    let (mut w, mut checker) = serving_world();
    w.groups[0].max_size = 0;
    let msg = broken(&w, &mut checker);
    assert_names(&msg, "desired within group bounds");
    assert!(msg.contains("od desired 1 > max_size 0"), "{msg}");
}

#[test]
fn a_lost_request_hidden_by_a_doubled_one_is_found_by_the_periodic_scan() {
    let (mut w, mut checker) = serving_world();
    let i = w.insts.values_mut().next().unwrap();
    let lost = i.in_flight.pop().unwrap();
    let doubled = i.in_flight[0];
    w.queue.push_back(doubled);
    assert_ne!(lost, doubled);
    assert_eq!(checker.check(&w), Ok(()), "the counts add up");
    w.now_ms = 1_000 + REQUEST_SCAN_EVERY_MS;
    let msg = checker.check(&w).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("request {doubled} is both queued and running")),
        "{msg}"
    );
}

#[test]
fn samples_carry_the_longest_request_completed_in_the_last_hour() {
    let mut w = world(Cloud::Aws, vec![1], Faults::default(), 0);
    w.end_ms = 2 * 3_600_000;
    w.reqs = vec![
        Req::new(0, 30_000, 0),
        Req::new(1_000, 40_000, 0),
        Req::new(3_700_000, 5_000, 0),
    ];
    w.prewarm_ready(0, 1);
    let longest_at = |w: &mut World, t_ms: i64| {
        w.advance_to(t_ms);
        w.sample_at(t_ms).and_then(|s| s.longest_done_ms)
    };
    assert_eq!(longest_at(&mut w, 20_000), None, "nothing completed yet");
    assert_eq!(longest_at(&mut w, 35_000), Some(30_000));
    // The 40-s request completes at 41 s and is the longest for an hour from then.
    assert_eq!(longest_at(&mut w, 45_000), Some(40_000));
    assert_eq!(longest_at(&mut w, 3_640_000), Some(40_000));
    // An hour after both completed, they are forgotten: unknown again.
    assert_eq!(longest_at(&mut w, 3_650_000), None);
    assert_eq!(longest_at(&mut w, 3_710_000), Some(5_000));
    assert_eq!(
        w.sample_at(3_710_000)
            .and_then(crate::sim::gpupool::request_duration),
        Some(crate::model::RequestDuration {
            longest_s: 5.0,
            window_s: 3600
        }),
        "SimDemand reports it in seconds over the hour"
    );
}

/// Spot availability: 2 in zone z1 for `minutes`, then 1 (a reclaim of one of two).
fn two_then_one(minutes: usize) -> Vec<u32> {
    let mut v = vec![2; minutes];
    v.push(1);
    v
}

/// Two spot instances launched at 0 in a group of min size `spot_min`; one of them gets its
/// notice at minute 10 (reclaim at 12). Returns the world just after the notice and that
/// instance's id.
fn noticed_at_ten(spot_min: u32) -> (World, InstanceId) {
    let mut w = world(Cloud::Aws, two_then_one(10), Faults::default(), spot_min);
    w.increase(&spot(), 2).unwrap();
    w.advance_to(10 * 60_000 + 1_000);
    let noticed = first_id(&w, true);
    (w, noticed)
}

/// The first instance with (`true`) or without an interruption notice.
fn first_id(w: &World, noticed: bool) -> InstanceId {
    w.insts
        .values()
        .find(|i| i.notice_deadline.is_some() == noticed)
        .unwrap()
        .id
        .clone()
}

#[test]
fn a_reclaim_in_the_first_hour_is_free_on_aws_only_and_the_group_replaces_it() {
    for cloud in [Cloud::Aws, Cloud::Gcp] {
        let mut w = world(cloud, two_then_one(20), Faults::default(), 0);
        w.increase(&spot(), 2).unwrap();
        // The notice comes at minute 20, the reclaim two minutes later.
        w.advance_to(30 * 60_000);
        w.settle_all();
        assert_eq!(w.interruptions.len(), 1, "{cloud:?}");
        let reclaimed_usage = 22.0 / 60.0;
        match cloud {
            Cloud::Aws => {
                assert!(
                    (w.spot_refunded - reclaimed_usage).abs() < 1e-6,
                    "{}",
                    w.spot_refunded
                );
                // The survivor's 30 minutes are billed, the reclaimed 22 are not.
                assert!((w.cost_spot - 0.5).abs() < 1e-6, "{}", w.cost_spot);
            }
            Cloud::Gcp => {
                assert_eq!(w.spot_refunded, 0.0);
                assert!(
                    (w.cost_spot - 0.5 - reclaimed_usage).abs() < 1e-6,
                    "{}",
                    w.cost_spot
                );
            }
        }
        // Desired capacity is unchanged: the group tries to replace the reclaimed member,
        // and with no spot room left the replacement is held unfulfilled.
        assert_eq!(w.reclaim_replacements, 1, "{cloud:?}");
        assert_eq!(view(&w).desired, 2, "{cloud:?}");
        assert_eq!(view(&w).unfulfilled.len(), 1, "{cloud:?}");
    }
}

#[test]
fn a_reclaim_after_the_first_hour_is_billed() {
    let mut w = world_until(
        Cloud::Aws,
        two_then_one(70),
        Faults::default(),
        0,
        7_200_000,
    );
    w.increase(&spot(), 2).unwrap();
    w.advance_to(80 * 60_000);
    assert_eq!(w.interruptions.len(), 1);
    assert_eq!(w.spot_refunded, 0.0);
}

#[test]
fn an_instance_released_to_the_reclaim_leaves_its_group_and_is_not_replaced() {
    let (mut w, noticed) = noticed_at_ten(0);
    let other = first_id(&w, false);
    // Refused: no notice, an on-demand group, an instance of another group.
    for (g, id) in [(spot(), &other), (NodeGroupId::from("od"), &noticed)] {
        match w.release_to_reclaim(&g, id) {
            Err(ProviderError::InvalidConfig(_) | ProviderError::NotFound { .. }) => {}
            r => panic!("{g} {id}: {r:?}"),
        }
    }
    w.release_to_reclaim(&spot(), &noticed).unwrap();
    assert_eq!(view(&w).desired, 1, "desired lowered with the release");
    let listed = w.instances(&spot()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, other, "no longer listed with its group");
    w.advance_to(15 * 60_000);
    assert!(w.inst_by_id(&noticed).is_none(), "reclaimed");
    assert_eq!(
        w.reclaim_replacements, 0,
        "it had left the group: no replacement"
    );
    assert_eq!(view(&w).desired, 1);
    assert!(
        (w.spot_refunded - 12.0 / 60.0).abs() < 1e-6,
        "{}",
        w.spot_refunded
    );
}

#[test]
fn a_release_that_would_cross_min_size_is_refused() {
    let (mut w, noticed) = noticed_at_ten(2);
    assert!(matches!(
        w.release_to_reclaim(&spot(), &noticed),
        Err(ProviderError::InvalidConfig(_))
    ));
    assert_eq!(view(&w).desired, 2);
}

#[test]
fn the_sweep_terminates_a_released_instance_only_once_overdue() {
    let (mut w, id) = noticed_at_ten(0);
    let deadline = w.inst_by_id(&id).and_then(|i| i.notice_deadline).unwrap();
    w.release_to_reclaim(&spot(), &id).unwrap();
    let grace = std::time::Duration::from_secs(300);
    assert!(
        w.sweep_released(deadline.plus_secs(299.0), grace)
            .is_empty()
    );
    assert_eq!(
        w.sweep_released(deadline.plus_secs(301.0), grace),
        vec![id.clone()]
    );
    assert!(w.inst_by_id(&id).is_none());
    assert_eq!(
        w.spot_refunded, 0.0,
        "terminated by the sweep, not reclaimed: billed"
    );
}
