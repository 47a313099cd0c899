//! Synthetic fleets at scale for the planner benchmarks (`benches/planner.rs`, benchmark S3).
//!
//! - [`binpack_world`]: 400 offerings (12 AWS GPU shapes × on-demand/spot × 17 zones, truncated
//!   to 400) and `pods` pending pods of mixed shapes (1/2/4/8 GPUs, MIG slices, time-sliced,
//!   GPU-model selectors, some pods not tolerating the GPU taint);
//! - [`storm_world`]: 25 spot nodes lost, 2,000 pods to re-place while 175 nodes serve, the lost
//!   offerings in backoff with raised risk;
//! - [`consolidation_world`]: 1,000 busy serving nodes, each checked for a cheaper replacement;
//! - [`fleet_world`]: `nodes` existing nodes of every shape (some idle, most partly busy) and
//!   `pods` pending pods: the whole planner at fleet scale (5,000 nodes, 50,000 pods).
//!
//! Deterministic (no RNG: shapes, zones and loads cycle by index) and generated in memory.

use super::planner::{
    CATALOG, T0, config, gpu_pod, gpu_taint, group, instance, mig_pod, node, offering,
    on_demand_price, pool_cfg, running_pod, shared_pod, snapshot,
};
use crate::config::{Config, PoolConfig};
use crate::model::{
    CapacityType, History, Instance, LifecycleState, Node, NodeGroup, OfferingKey, PendingPod,
    Snapshot,
};

/// A planner input: what `planner::plan(&w.snapshot, &w.config, &w.history, w.snapshot.taken_at)`
/// is timed on.
pub struct World {
    pub snapshot: Snapshot,
    pub config: Config,
    pub history: History,
}

/// Zones each (instance type, capacity type) group offers, before the 400 cut.
pub const ZONES: usize = 17;
/// Offerings over all groups.
pub const OFFERINGS: usize = 400;
/// The pool every synthetic group and pod belongs to.
pub const POOL: &str = "bench";

/// Zone `z` of the synthetic region set: `us-east-1a … us-east-1f, us-east-2a …`.
pub fn zone(z: usize) -> String {
    format!("us-east-{}{}", 1 + z / 6, char::from(b'a' + (z % 6) as u8))
}

/// Id of the group holding `itype` offerings of capacity type `ct`.
pub fn group_id(itype: &str, ct: CapacityType) -> String {
    format!("{itype}-{ct}")
}

/// One group per (instance type, capacity type), its offerings spread over zones, 400 in all.
/// Spot is 30–70% of on-demand by zone, with a zone-dependent interruption risk.
pub fn groups_400(pool: &str) -> Vec<NodeGroup> {
    let mut groups = Vec::new();
    let mut n = 0;
    'outer: for ct in [CapacityType::OnDemand, CapacityType::Spot] {
        for (ti, e) in CATALOG.iter().enumerate() {
            let name = e.0;
            let mut g = group(&group_id(name, ct), pool)
                .taint(gpu_taint())
                .max(100_000);
            for z in 0..ZONES {
                if n == OFFERINGS {
                    groups.push(g.build());
                    break 'outer;
                }
                let od = on_demand_price(name);
                let (price, risk) = match ct {
                    CapacityType::OnDemand => (od, 0.0),
                    CapacityType::Spot => {
                        let f = 0.3 + 0.1 * ((z + ti) % 5) as f64;
                        (od * f, 0.02 + 0.02 * (z % 4) as f64)
                    }
                };
                g = g.offering(offering(name, ct, &zone(z), price).risk(risk));
                n += 1;
            }
            groups.push(g.build());
        }
    }
    groups
}

/// A pool that limits nothing at benchmark scale: 70% spot, 2 on-demand base nodes.
pub fn big_pool(name: &str) -> PoolConfig {
    let mut p = pool_cfg(name);
    p.capacity.spot_share = crate::config::Share::new(0.7).expect("a share");
    p.capacity.on_demand_base = 2;
    p.limits.max_nodes = 1_000_000;
    p.scale_up.max_nodes_per_tick = 1_000_000;
    p
}

/// Pod `i` of a deterministic mix: 35% 1 GPU, 15% 2, 10% 4, 10% 8 (H100/A100 selectors), 12%
/// MIG slices, 10% time-sliced, 5% CPU-heavy 1 GPU, 3% not tolerating the GPU taint.
pub fn mixed_pod(i: usize) -> PendingPod {
    let name = format!("p{i}");
    let b = match i % 100 {
        0..35 => gpu_pod(1),
        35..50 => gpu_pod(2).model(if i.is_multiple_of(2) { "A10G" } else { "L4" }),
        50..60 => gpu_pod(4),
        60..70 => gpu_pod(8).model(if i.is_multiple_of(3) { "H100" } else { "A100" }),
        70..76 => mig_pod("1g.10gb", 1),
        76..82 => mig_pod("2g.20gb", 1),
        82..92 => shared_pod(1),
        92..97 => gpu_pod(1).cpu(16_000).mem(65_536),
        _ => {
            return gpu_pod(1).name(&name).build();
        }
    };
    b.name(&name).tolerate("nvidia.com/gpu").build()
}

fn snapshot_400() -> Snapshot {
    let mut s = snapshot();
    for g in groups_400(POOL) {
        s = s.group(g);
    }
    s.build()
}

/// 400 offerings, no node, `pods` pending pods of the mix.
pub fn binpack_world(pods: usize) -> World {
    let mut snapshot = snapshot_400();
    snapshot.pending_pods = (0..pods).map(mixed_pod).collect();
    World {
        snapshot,
        config: config(vec![big_pool(POOL)]),
        history: History::default(),
    }
}

/// 200 spot p4de nodes served the pool; 25 were reclaimed. Their 2,000 pods are pending again.
pub fn storm_world() -> World {
    let mut snap = snapshot_400();
    snap.pending_pods = (0..2_000)
        .map(|i| {
            let b = if i % 2 == 0 {
                mig_pod("1g.10gb", 1)
            } else {
                shared_pod(1)
            };
            b.name(&format!("evicted-{i}"))
                .tolerate("nvidia.com/gpu")
                .build()
        })
        .collect();
    let gid = group_id("p4de.24xlarge", CapacityType::Spot);
    let mut history = History::default();
    for k in 0..200 {
        let inst = instance(
            &format!("i-{k:04}"),
            &gid,
            "p4de.24xlarge",
            CapacityType::Spot,
        )
        .zone(&zone(k % 6))
        .build();
        if k < 25 {
            // The lost offerings: learned risk up, and one zone's launches failing.
            history.record_interruption(&key_of(&inst));
            if k == 0 {
                history.record_launch_failure(&key_of(&inst), "InsufficientInstanceCapacity", T0);
            }
            continue;
        }
        let mut n = node(inst.id.as_str(), POOL, CapacityType::Spot);
        for p in 0..8 {
            n = n.pod(running_pod(&format!("{}-w{p}", inst.id), 1));
        }
        add_instance(&mut snap, inst, n.build());
    }
    World {
        snapshot: snap,
        config: config(vec![big_pool(POOL)]),
        history,
    }
}

fn key_of(i: &Instance) -> OfferingKey {
    OfferingKey {
        instance_type: i.instance_type.clone(),
        capacity_type: i.capacity_type,
        zone: i.zone.clone(),
    }
}

/// An instance and its node; the group's desired size counts it.
pub fn add_instance(snap: &mut Snapshot, inst: Instance, node: Node) {
    if let Some(g) = snap.groups.iter_mut().find(|g| g.id == inst.group) {
        g.desired += 1;
    }
    snap.instances.push(inst);
    snap.nodes.push(node);
}

/// 1,000 serving on-demand nodes of several shapes, each running one or two 1-GPU pods: every
/// one is checked for a cheaper replacement that holds its pods.
pub fn consolidation_world() -> World {
    let mut snap = snapshot_400();
    let shapes = ["g5.12xlarge", "g5.48xlarge", "g6.12xlarge", "p4d.24xlarge"];
    for k in 0..1_000 {
        let itype = shapes[k % shapes.len()];
        let gid = group_id(itype, CapacityType::OnDemand);
        let inst = instance(&format!("i-{k:04}"), &gid, itype, CapacityType::OnDemand)
            .zone(&zone(k % 6))
            .state(LifecycleState::Ready)
            .build();
        let mut n = node(inst.id.as_str(), POOL, CapacityType::OnDemand);
        for p in 0..(1 + k % 2) {
            n = n.pod(running_pod(&format!("{}-w{p}", inst.id), 1));
        }
        add_instance(&mut snap, inst, n.build());
    }
    let mut pool = big_pool(POOL);
    pool.disruption.budget.max_disrupted_at_once = 10;
    pool.disruption.budget.max_per_window = Some(20);
    World {
        snapshot: snap,
        config: config(vec![pool]),
        history: History::default(),
    }
}

/// Zones every group of [`groups_400`] offers (the last spot group is cut at the 400th
/// offering after 9 zones), so every node of [`fleet_world`] sits in an offered zone.
const FLEET_ZONES: usize = 9;

/// `nodes` Ready nodes of every catalog shape (7 in 10 spot), one in five idle and the others
/// running 1-GPU pods on up to all their GPUs, plus `pods` pending pods of [`mixed_pod`]'s mix:
/// every planner stage (bin-packing into free room and new nodes, scale-down, consolidation)
/// has work at fleet scale.
pub fn fleet_world(nodes: usize, pods: usize) -> World {
    let mut snap = snapshot_400();
    snap.pending_pods = (0..pods).map(mixed_pod).collect();
    for k in 0..nodes {
        let e = &CATALOG[k % CATALOG.len()];
        let (itype, gpus) = (e.0, e.2 as usize);
        let ct = if k % 10 < 7 {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        };
        let inst = instance(&format!("i-{k:05}"), &group_id(itype, ct), itype, ct)
            .zone(&zone(k % FLEET_ZONES))
            .build();
        let mut n = node(inst.id.as_str(), POOL, ct);
        let busy = if k % 5 == 0 { 0 } else { 1 + k % gpus };
        for p in 0..busy {
            n = n.pod(running_pod(&format!("{}-w{p}", inst.id), 1));
        }
        add_instance(&mut snap, inst, n.build());
    }
    World {
        snapshot: snap,
        config: config(vec![big_pool(POOL)]),
        history: History::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_offering_set_has_four_hundred_offerings_over_twenty_four_groups() {
        let groups = groups_400(POOL);
        let offerings: usize = groups.iter().map(|g| g.offerings.len()).sum();
        assert_eq!(offerings, OFFERINGS);
        assert_eq!(groups.len(), 2 * CATALOG.len());
        assert!(groups.iter().all(|g| g.offerings.len() >= FLEET_ZONES));
    }

    #[test]
    fn a_fleet_has_the_asked_sizes_and_every_node_sits_in_an_offered_zone_of_its_group() {
        let w = fleet_world(240, 1_000);
        assert_eq!(w.snapshot.pending_pods.len(), 1_000);
        assert_eq!(w.snapshot.nodes.len(), 240);
        assert_eq!(w.snapshot.instances.len(), 240);
        let offered: BTreeSet<_> = w
            .snapshot
            .groups
            .iter()
            .flat_map(|g| g.offerings.iter().map(move |o| (g.id.clone(), o.key())))
            .collect();
        for i in &w.snapshot.instances {
            assert!(
                offered.contains(&(i.group.clone(), key_of(i))),
                "{} not offered by {}",
                i.id,
                i.group
            );
        }
        let desired: u32 = w.snapshot.groups.iter().map(|g| g.desired).sum();
        assert_eq!(desired, 240, "every instance counted once by its group");
        let idle = w
            .snapshot
            .nodes
            .iter()
            .filter(|n| n.pods.is_empty())
            .count();
        assert_eq!(idle, 48, "one node in five idle");
    }

    #[test]
    fn the_same_sizes_build_the_same_fleet() {
        assert_eq!(fleet_world(50, 300).snapshot, fleet_world(50, 300).snapshot);
    }
}
