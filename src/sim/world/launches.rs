//! Launches: cold starts, and stockouts the cloud accepts, reports late and retries.

use super::*;

/// Why a simulated launch found no capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StockoutCause {
    /// `faults.stockout_prob` drew it.
    Fault,
    /// The spot availability trace had no room left in any zone of the group.
    NoCapacity,
}

/// One launch attempt the cloud accepted and could not fulfil, for the run's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FailedLaunch {
    pub group: NodeGroupId,
    pub zone: Zone,
    pub cause: StockoutCause,
    /// When the launch was requested (the accepted `increase`).
    pub accepted_ms: i64,
    /// When the cloud reported the failure on the group; `None` while it was not (yet).
    pub reported_ms: Option<i64>,
    /// When the request was taken back (`release_unfulfilled`, or its stuck VM deleted).
    pub released_ms: Option<i64>,
    /// When the cloud's own retry launched it after all.
    pub recovered_ms: Option<i64>,
}

/// One accepted `increase` that put capacity on its way (a warm start, or a cold launch that
/// the cloud carries out), for the fallback times.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LaunchRecord {
    pub at_ms: i64,
    pub group: NodeGroupId,
    /// The zone the instances were started or launched in (one record per zone and call).
    pub zone: Zone,
    /// Instances started or launched by the call in that zone (≥ 1).
    pub instances: u32,
}

/// Seconds from an accepted launch to its failure showing on the group.
///
/// AWS: neither the Auto Scaling nor the EC2 documentation states how long after
/// `SetDesiredCapacity` a failed launch shows as a `Failed` scaling activity. The ASG starts
/// the launch activity within seconds of the desired change (the activity's Cause reads "At T1
/// a user request … changing the desired capacity … At T2 an instance was started in response
/// to a difference between desired and actual capacity"), and EC2 refuses an
/// InsufficientInstanceCapacity launch synchronously, so the failure is written within the
/// same activity: users report that "AWS tells us very quickly that a spot instance is
/// unavailable" (kubernetes/autoscaler#3241). GCP: the Compute docs say only that the MIG
/// keeps the instance in CREATING and reports `lastAttempt.errors` (and, for bulk creation,
/// `ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS` in `lastProgressCheck`) — also no time. Both
/// silent, so: uniform over [10 s, 60 s] — not zero (an activity/operation must run and be
/// read back by a describe call), and within the minute the reports above describe; uniform
/// because no source gives a shape.
pub const LAUNCH_FAILURE_REPORT_S: (f64, f64) = (10.0, 60.0);

/// Seconds between the cloud's own retries of an unfulfilled launch.
///
/// AWS keeps desired raised and "will retry until an instance becomes available" (AWS re:Post,
/// EKS insufficient capacity errors); Cluster Autoscaler users saw the instance launched
/// "after about two minutes" (kubernetes/autoscaler#5829). A GCP MIG keeps the VM in CREATING
/// and retries (its `lastAttempt` is the latest retry). Neither documents the interval:
/// uniform over [60 s, 180 s] around the two minutes observed.
pub const LAUNCH_RETRY_S: (f64, f64) = (60.0, 180.0);

impl World {
    pub(super) fn launch_cold(&mut self, g: usize, zone: Zone, state: LifecycleState) -> u64 {
        let n = self.new_instance(g, zone, state);
        self.start_cold(n);
        n
    }

    /// Schedule a cold launch's Ready (and, spot with a hazard rate, its interruption notice)
    /// from now.
    pub(super) fn start_cold(&mut self, n: u64) {
        let Some((g, epoch)) = self.insts.get(&n).map(|i| (i.group, i.epoch)) else {
            return;
        };
        let secs = self.params.cold.sample_cold_s(&mut self.rng);
        let at = self.now_ms + (secs * 1000.0) as i64;
        self.push(at, Ev::Ready { inst: n, epoch });
        let spec = &self.groups[g];
        if spec.capacity_type == CapacityType::Spot
            && matches!(self.params.spot, SpotDynamics::Hazard)
            && spec.hazard_per_hour > 0.0
        {
            // Exponential time to interruption: -ln(U)/λ hours.
            let u: f64 = self.rng.random::<f64>().max(1e-12);
            let hours = -u.ln() / spec.hazard_per_hour;
            let t = self.now_ms as f64 + hours * MS_PER_HOUR;
            if t < self.end_ms as f64 {
                self.push(t as i64, Ev::Notice { inst: n });
            }
        }
    }

    pub(super) fn uniform_ms(&mut self, (lo, hi): (f64, f64)) -> i64 {
        ((lo + (hi - lo) * self.rng.random::<f64>()) * 1000.0) as i64
    }

    /// The cloud accepted a launch it cannot carry out: hold it as the scenario's cloud does
    /// and report the failure after [`LAUNCH_FAILURE_REPORT_S`].
    pub(super) fn fail_launch(&mut self, g: usize, zone: Zone, cause: StockoutCause) {
        let record = self.failed_launches.len();
        self.failed_launches.push(FailedLaunch {
            group: self.groups[g].id.clone(),
            zone: zone.clone(),
            cause,
            accepted_ms: self.now_ms,
            reported_ms: None,
            released_ms: None,
            recovered_ms: None,
        });
        let inst = match self.params.cloud {
            Cloud::Aws => None,
            Cloud::Gcp => {
                let n = self.new_instance(g, zone.clone(), LifecycleState::Launching);
                if let Some(i) = self.insts.get_mut(&n) {
                    i.stuck = true;
                }
                Some(n)
            }
        };
        let id = self.next_unfilled;
        self.next_unfilled += 1;
        self.unfilled.push(Unfilled {
            id,
            group: g,
            zone,
            record,
            reported: None,
            inst,
        });
        if self.params.faults.stockout_mode == StockoutMode::Silent {
            let at = self.now_ms + self.uniform_ms(LAUNCH_RETRY_S);
            self.push(at, Ev::LaunchRetry { id });
        } else {
            let at = self.now_ms + self.uniform_ms(LAUNCH_FAILURE_REPORT_S);
            self.push(at, Ev::LaunchReport { id });
        }
    }

    pub(super) fn on_launch_report(&mut self, id: u64) {
        let now = self.now_ms;
        let Some(u) = self.unfilled.iter_mut().find(|u| u.id == id) else {
            // Taken back before the cloud reported it.
            return;
        };
        u.reported = Some(Timestamp::from_millis(now));
        let record = u.record;
        if let Some(r) = self.failed_launches.get_mut(record) {
            r.reported_ms = Some(now);
        }
        let at = now + self.uniform_ms(LAUNCH_RETRY_S);
        self.push(at, Ev::LaunchRetry { id });
    }

    /// The cloud's own retry: it succeeds once the cause is gone (a fault is drawn again; a
    /// no-capacity window needs room in a zone — AWS may pick any zone of the group, a GCP VM
    /// keeps its zone).
    pub(super) fn on_launch_retry(&mut self, id: u64) {
        let Some(k) = self.unfilled.iter().position(|u| u.id == id) else {
            return;
        };
        let (g, zone, inst) = {
            let u = &self.unfilled[k];
            (u.group, u.zone.clone(), u.inst)
        };
        let p = self.params.faults.stockout_prob;
        let faulted = p > 0.0 && self.rng.random::<f64>() < p;
        let zone_now = match inst {
            None => self.pick_zone(g),
            Some(_) => self.zone_has_room(g, &zone).then_some(zone),
        };
        match (zone_now, faulted) {
            (Some(z), false) => {
                let u = self.unfilled.remove(k);
                if let Some(r) = self.failed_launches.get_mut(u.record) {
                    r.recovered_ms = Some(self.now_ms);
                }
                match inst {
                    None => {
                        self.launch_cold(g, z, LifecycleState::Launching);
                    }
                    Some(n) => {
                        self.settle(n);
                        let now = self.now();
                        if let Some(i) = self.insts.get_mut(&n) {
                            i.stuck = false;
                            i.launched_at = now;
                        }
                        self.start_cold(n);
                    }
                }
            }
            _ => {
                // Still failing: the cloud tries again later.
                let at = self.now_ms + self.uniform_ms(LAUNCH_RETRY_S);
                self.push(at, Ev::LaunchRetry { id });
            }
        }
    }

    /// Forget the unfulfilled requests `which` selects, recording when they were taken back.
    pub(super) fn take_back(&mut self, which: impl Fn(&Unfilled) -> bool) {
        let now = self.now_ms;
        let failed = &mut self.failed_launches;
        self.unfilled.retain(|u| {
            if !which(u) {
                return true;
            }
            if let Some(r) = failed.get_mut(u.record) {
                r.released_ms = Some(now);
            }
            false
        });
    }

    /// The zone a launch of group `g` fails in when no zone has room. A multi-zone ASG or
    /// regional MIG does not stick to one zone: AWS "attempts to launch in other Availability
    /// Zones until it succeeds" and balances across them (Auto Scaling user guide, "Rebalancing
    /// activities"); a regional MIG spreads VMs over its zones. So successive failures name the
    /// group's zones in turn, and a planner that backs off one zone's offering still meets the
    /// stockout in the next.
    pub(super) fn stockout_zone(&self, g: usize) -> Zone {
        let zones = &self.groups[g].zones;
        let gid = &self.groups[g].id;
        let k = self
            .failed_launches
            .iter()
            .filter(|f| &f.group == gid)
            .count();
        zones
            .get(k % zones.len().max(1))
            .cloned()
            .unwrap_or_default()
    }
}
