//! Invariants: what must hold after every simulated tick, checked in debug and release
//! (TigerBeetle's simulator checks its state machine the same way). A broken invariant is a
//! simulator bug; the run stops with the invariant, the simulated time and the command that
//! reproduces it, since a run is a pure function of scenario, policy and seed.
//!
//! The check is cheap: every tick one pass over the instances and the group sizes, with the
//! requests done from the world's own counter (no pass over the replay); the walk over the
//! queue that names a request held twice, and the comparison of instance ids, run when the
//! counts do not add up and once per [`REQUEST_SCAN_EVERY_MS`] of simulated time.

use super::*;
use std::collections::BTreeSet;
use std::fmt;

/// One invariant that does not hold, with the figures that show it.
#[derive(Clone, Debug, PartialEq)]
pub enum Violation {
    /// An instance listed twice (under two keys, or with an id another instance has), or a
    /// VM stuck CREATING that stands for no launch request or for more than one (desired
    /// would count it twice, or not at all).
    InstanceCountedTwice { instance: String, how: &'static str },
    /// A replica holding more requests than its concurrency: negative free capacity.
    CapacityNegative {
        instance: String,
        in_flight: u32,
        concurrency: u32,
    },
    /// A running cost total went down between two checks.
    CostDecreased {
        what: &'static str,
        before_usd: f64,
        after_usd: f64,
    },
    /// Arrived ≠ queued + running + done + dropped, or one request in two places.
    RequestsUnaccounted {
        arrived: u64,
        queued: u64,
        running: u64,
        done: u64,
        dropped: u64,
        detail: String,
    },
    /// A group's desired capacity above its `max_size`.
    DesiredOutOfBounds {
        group: String,
        desired: u32,
        max_size: u32,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::InstanceCountedTwice { instance, how } => {
                write!(f, "no instance counted twice: {instance} {how}")
            }
            Violation::CapacityNegative {
                instance,
                in_flight,
                concurrency,
            } => write!(
                f,
                "capacity never negative: {instance} holds {in_flight} requests with \
                 concurrency {concurrency}"
            ),
            Violation::CostDecreased {
                what,
                before_usd,
                after_usd,
            } => write!(
                f,
                "cost monotone non-decreasing: {what} fell from ${before_usd:.6} to \
                 ${after_usd:.6}"
            ),
            Violation::RequestsUnaccounted {
                arrived,
                queued,
                running,
                done,
                dropped,
                detail,
            } => write!(
                f,
                "every request accounted for: arrived {arrived} vs queued {queued} + running \
                 {running} + done {done} + dropped {dropped}{detail}"
            ),
            Violation::DesiredOutOfBounds {
                group,
                desired,
                max_size,
            } => write!(
                f,
                "desired within group bounds: {group} desired {desired} > max_size {max_size}"
            ),
        }
    }
}

/// The requests of a replay by where they are.
#[derive(Clone, Copy, Debug)]
struct RequestCounts {
    arrived: u64,
    queued: u64,
    running: u64,
    done: u64,
}

/// A violation with where and how to reproduce it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error(
    "simulator invariant broken at t = {at_s:.3} s: {violation}; reproduce with `gpupool \
     simulate --scenario {scenario} --policy {policy} --seed {seed}`"
)]
pub struct InvariantBroken {
    pub violation: Violation,
    /// Simulated seconds since the start of the replay.
    pub at_s: f64,
    pub scenario: String,
    pub policy: String,
    pub seed: u64,
}

/// How often (simulated ms) the checker walks the queue even when the counts add up (to find
/// a request lost and another held twice that cancel out in the counts) and compares
/// instance ids.
pub const REQUEST_SCAN_EVERY_MS: i64 = 60_000;

/// What the checker remembers between ticks: the cost totals last seen.
#[derive(Clone, Debug, Default)]
pub struct InvariantChecker {
    last: [f64; 3],
    /// Per request, the scan that last saw it held (queued or running): no allocation per
    /// scan, and a request seen twice in one scan is found at once.
    seen: Vec<u64>,
    scans: u64,
    next_scan_ms: i64,
}

impl InvariantChecker {
    /// Check `w` now; the first violation found, if any.
    pub fn check(&mut self, w: &World) -> Result<(), Violation> {
        let scan = w.now_ms >= self.next_scan_ms;
        if scan {
            self.next_scan_ms = w.now_ms + REQUEST_SCAN_EVERY_MS;
        }
        w.check_instances(scan)?;
        self.check_requests(w, scan)?;
        w.check_desired()?;
        self.check_costs(w)
    }

    /// The counts every tick (O(instances)); the walk over the queue and the requests in
    /// flight when they do not add up (to name the request) and once per
    /// [`REQUEST_SCAN_EVERY_MS`]: a long queue walked every tick would cost more than the
    /// rest of the tick.
    fn check_requests(&mut self, w: &World, scan: bool) -> Result<(), Violation> {
        let counts = w.request_counts();
        let balanced = counts.arrived == counts.queued + counts.running + counts.done;
        if balanced && !scan {
            return Ok(());
        }
        self.scans += 1;
        if self.seen.len() < w.reqs.len() {
            self.seen.resize(w.reqs.len(), 0);
        }
        let held_twice = w.held_twice(&mut self.seen, self.scans);
        let unaccounted = |detail: String| Violation::RequestsUnaccounted {
            arrived: counts.arrived,
            queued: counts.queued,
            running: counts.running,
            done: counts.done,
            dropped: 0,
            detail,
        };
        if let Some((r, how)) = held_twice {
            return Err(unaccounted(format!(" (request {r} {how})")));
        }
        if !balanced {
            return Err(unaccounted(String::new()));
        }
        Ok(())
    }

    fn check_costs(&mut self, w: &World) -> Result<(), Violation> {
        // Spot is checked gross of refunds: a reclaim within the first hour takes usage off
        // the bill (`spot::reclaim`), but what was billed before never shrinks.
        let now = [
            w.cost_on_demand,
            w.cost_spot + w.spot_refunded,
            w.cost_warm_disk,
        ];
        const WHAT: [&str; 3] = [
            "on-demand cost",
            "spot cost before refunds",
            "warm-pool disk cost",
        ];
        for k in 0..3 {
            if now[k].is_nan() || now[k] < self.last[k] {
                return Err(Violation::CostDecreased {
                    what: WHAT[k],
                    before_usd: self.last[k],
                    after_usd: now[k],
                });
            }
        }
        self.last = now;
        Ok(())
    }
}

impl World {
    /// Instances: one entry each, free capacity never negative, stuck VMs one per request.
    /// Ids are compared (a sort) only on a `scan`: keys are checked every tick, and the world
    /// derives an instance's id from its key.
    fn check_instances(&self, scan: bool) -> Result<(), Violation> {
        let twice = |i: &Inst, how| {
            Err(Violation::InstanceCountedTwice {
                instance: i.id.to_string(),
                how,
            })
        };
        let mut ids: Vec<&InstanceId> = Vec::with_capacity(if scan { self.insts.len() } else { 0 });
        for (n, i) in &self.insts {
            if *n != i.num {
                return twice(i, "is listed under another instance's key");
            }
            if scan {
                ids.push(&i.id);
            }
            if i.in_flight.len() > self.params.concurrency as usize {
                return Err(Violation::CapacityNegative {
                    instance: i.id.to_string(),
                    in_flight: i.in_flight.len() as u32,
                    concurrency: self.params.concurrency,
                });
            }
        }
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|p| p[0] == p[1]) {
            return Err(Violation::InstanceCountedTwice {
                instance: pair[0].to_string(),
                how: "shares its id with another instance",
            });
        }
        let mut standing = BTreeSet::new();
        for n in self.unfilled.iter().filter_map(|u| u.inst) {
            match self.insts.get(&n) {
                Some(i) if !standing.insert(n) => {
                    return twice(i, "stands for two launch requests");
                }
                Some(i) if !i.stuck => return twice(i, "runs and stands for a launch request"),
                _ => {}
            }
        }
        match self
            .insts
            .values()
            .find(|i| i.stuck && !standing.contains(&i.num))
        {
            Some(i) => twice(i, "is stuck CREATING for no launch request"),
            None => Ok(()),
        }
    }

    /// Arrived, queued, running and done. The world drops no request (a reclaimed replica's
    /// requests go back to the queue), so dropped is always 0.
    fn request_counts(&self) -> RequestCounts {
        RequestCounts {
            arrived: self.next_arrival as u64,
            queued: self.queue.len() as u64,
            running: self.insts.values().map(|i| i.in_flight.len() as u64).sum(),
            done: self.completed_total,
        }
    }

    /// The first request held in two places (queued twice, queued and running, on two
    /// replicas) or held before it arrived. `seen[r] == scan` marks request `r` as held in
    /// this scan.
    fn held_twice(&self, seen: &mut [u64], scan: u64) -> Option<(usize, &'static str)> {
        let mut bad = None;
        let mut hold = |r: usize, how| {
            if r >= self.next_arrival {
                bad.get_or_insert((r, "is held before it arrived"));
            } else if seen[r] == scan {
                bad.get_or_insert((r, how));
            } else {
                seen[r] = scan;
            }
        };
        for &r in &self.queue {
            hold(r, "is queued twice");
        }
        for i in self.insts.values() {
            for &r in &i.in_flight {
                hold(r, "is both queued and running, or on two replicas");
            }
        }
        bad
    }

    /// Desired capacity (instances in service plus requests held) within `max_size`. The lower
    /// bound is not checked: the world starts a group at the replay's initial fleet, which may
    /// sit below `min_size`, and no simulated call raises it (the baselines and the controller
    /// own their minimums).
    fn check_desired(&self) -> Result<(), Violation> {
        for (g, spec) in self.groups.iter().enumerate() {
            let desired = self.desired(g);
            if desired > spec.max_size {
                return Err(Violation::DesiredOutOfBounds {
                    group: spec.id.to_string(),
                    desired,
                    max_size: spec.max_size,
                });
            }
        }
        Ok(())
    }
}
