//! The simulated world: instances on a virtual clock, the request queue, spot capacity, costs.
//!
//! A discrete-event simulation: an event heap ordered by `(time, seq)` holds instance
//! transitions, request completions and spot notices; request arrivals come from the sorted
//! trace; samples (what a Prometheus scrape would see) are taken every `sample_interval`.
//! Everything random draws from one seeded `ChaCha8Rng`, so a run is a pure function of the
//! scenario, the policy and the seed.
//!
//! Serving model (one pool per scenario): one instance serves one replica; a replica runs up to
//! `concurrency` requests at once, each for its fixed service time; one FIFO queue feeds all
//! serving replicas, least-loaded first. An instance serves from the moment it is Ready until
//! it is told to stop routing (drain); a draining instance finishes its in-flight requests.
//! A reclaimed instance's in-flight requests go back to the front of the queue and count as
//! hurt by preemption.
//!
//! Split by concern: [`cloud`] (the provider API and group arithmetic), [`launches`] (cold
//! starts, late stockouts and the cloud's retries), [`views`] (what the cloud lists),
//! [`serving`] (queue, replicas, requests), [`spot`] (notices, reclaims), [`ledger`] (costs,
//! GPU time, samples) and [`invariants`] (what must hold after every simulated tick).

mod cloud;
mod invariants;
mod launches;
mod ledger;
mod serving;
mod spot;
#[cfg(test)]
mod tests;
mod views;

pub use cloud::{CallRecord, Cloud, Faults, GroupSpec, StockoutMode};
pub use invariants::{InvariantBroken, InvariantChecker, REQUEST_SCAN_EVERY_MS, Violation};
pub use launches::{
    FailedLaunch, LAUNCH_FAILURE_REPORT_S, LAUNCH_RETRY_S, LaunchRecord, StockoutCause,
};
pub use ledger::{LONGEST_WINDOW_MS, QUEUE_WAIT_BUCKETS_S, Sample, slo_bucket};
pub use spot::{Interruption, SpotDynamics, refund_window};

use super::data::AvailabilityTrace;
use super::timing::ColdStart;
use crate::model::{
    CapacityType, Instance, InstanceId, InstanceType, LaunchFailure, LifecycleState, NodeGroup,
    NodeGroupId, Offering, OfferingKey, PoolName, Price, ProviderEvent, ProviderEventKind,
    Timestamp, WarmPool, Zone,
};
use gpupool_provider::{ProviderError, UnfulfilledLaunch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

/// A launch request the cloud holds without fulfilling it (see [`Cloud`]).
#[derive(Clone, Debug)]
struct Unfilled {
    id: u64,
    group: usize,
    zone: Zone,
    /// Index of its [`FailedLaunch`] record.
    record: usize,
    /// When the cloud reported the failure on the group.
    reported: Option<Timestamp>,
    /// GCP: the VM stuck CREATING that stands for the request.
    inst: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct WorldParams {
    pub concurrency: u32,
    pub cold: ColdStart,
    pub spot_notice_s: f64,
    pub spot: SpotDynamics,
    pub faults: Faults,
    pub sample_interval_s: f64,
    pub model_cache: Option<String>,
    pub seed: u64,
    /// Which cloud's late-stockout reporting the groups follow.
    pub cloud: Cloud,
}

/// One request of the replay.
#[derive(Clone, Debug)]
pub struct Req {
    pub arrival_ms: i64,
    pub service_ms: i64,
    pub prefill_ms: i64,
    pub start_ms: Option<i64>,
    pub done_ms: Option<i64>,
    /// Total time spent in the queue (over all attempts).
    pub waited_ms: i64,
    queued_since: i64,
    pub hurt: bool,
    attempt: u32,
}

impl Req {
    pub fn new(arrival_ms: i64, service_ms: i64, prefill_ms: i64) -> Req {
        Req {
            arrival_ms,
            service_ms: service_ms.max(1),
            prefill_ms,
            start_ms: None,
            done_ms: None,
            waited_ms: 0,
            queued_since: arrival_ms,
            hurt: false,
            attempt: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serve {
    Off,
    Starting,
    On,
    Draining,
}

#[derive(Clone, Debug)]
pub struct Inst {
    pub id: InstanceId,
    pub num: u64,
    pub group: usize,
    pub zone: Zone,
    pub state: LifecycleState,
    pub launched_at: Timestamp,
    pub serve: Serve,
    pub in_flight: Vec<usize>,
    pub notice_deadline: Option<Timestamp>,
    /// GCP: a VM the MIG cannot create (stuck CREATING): listed, not running, not billed.
    pub stuck: bool,
    /// Released from its group to the cloud's spot reclaim (`World::release_to_reclaim`): no
    /// longer a member (not listed, not in desired capacity), still running and billed until
    /// the reclaim.
    pub released: bool,
    /// Instance usage billed since launch (running time × price), for the refund of a spot
    /// instance the cloud reclaims within its first hour (`spot::refund_window`).
    pub billed: f64,
    epoch: u32,
    /// Costs and GPU time are settled up to here.
    cost_since: Timestamp,
    /// Holding requests since (busy GPU time).
    busy_since: Option<Timestamp>,
}

impl Inst {
    /// Paid for as running and holding capacity (a stuck VM does neither).
    pub fn is_running(&self) -> bool {
        !self.stuck && is_running(self.state)
    }

    /// A member of group `g`: listed with it and counted in its sizes (an instance released to
    /// the reclaim has left it).
    pub fn member_of(&self, g: usize) -> bool {
        self.group == g && !self.released
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Ready {
        inst: u64,
        epoch: u32,
    },
    ServeOn {
        inst: u64,
        epoch: u32,
    },
    ReqDone {
        req: usize,
        attempt: u32,
    },
    Notice {
        inst: u64,
    },
    Reclaim {
        inst: u64,
    },
    SpotTick,
    /// An unfulfilled launch's failure shows on the group.
    LaunchReport {
        id: u64,
    },
    /// The cloud tries an unfulfilled launch again.
    LaunchRetry {
        id: u64,
    },
}

pub struct World {
    pub now_ms: i64,
    pub end_ms: i64,
    pub params: WorldParams,
    rng: ChaCha8Rng,
    seq: u64,
    heap: BinaryHeap<Reverse<(Timestamp, u64, Ev)>>,
    pub groups: Vec<GroupSpec>,
    warm_target: Vec<u32>,
    pub insts: BTreeMap<u64, Inst>,
    next_inst: u64,
    pub reqs: Vec<Req>,
    next_arrival: usize,
    queue: VecDeque<usize>,
    events_out: Vec<ProviderEvent>,
    next_event_id: u64,
    pub samples: Vec<Sample>,
    next_sample: Timestamp,
    recent_waits: VecDeque<(i64, i64)>,
    pub calls: Vec<CallRecord>,
    pub interruptions: Vec<Interruption>,
    pub cost_on_demand: f64,
    pub cost_spot: f64,
    pub cost_warm_disk: f64,
    pub gpu_ms: f64,
    pub busy_gpu_ms: f64,
    pub requests_hurt: u32,
    pub requests_cut_short: u32,
    /// Spot usage the cloud did not charge: instances it reclaimed within their first hour
    /// (already taken off `cost_spot`).
    pub spot_refunded: f64,
    /// Instances the cloud launched by itself to replace a reclaimed member (desired capacity
    /// unchanged), and those it could not launch (held as unfulfilled requests).
    pub reclaim_replacements: u32,
    /// Launches accepted and not fulfilled, in the order they were requested.
    pub failed_launches: Vec<FailedLaunch>,
    /// Accepted `increase` calls that put capacity on its way.
    pub launches: Vec<LaunchRecord>,
    unfilled: Vec<Unfilled>,
    next_unfilled: u64,
    /// Completed requests and their total service time (for the samples' counters).
    completed_total: u64,
    completed_service_ms_total: u64,
    /// Started requests, and by queue-wait bucket (for the samples' histogram).
    started_total: u64,
    started_wait_le: [u64; QUEUE_WAIT_BUCKETS_S.len()],
    /// Service times of recently completed requests, for the samples' longest-request figure.
    longest_done: ledger::LongestRecent,
}

const MS_PER_HOUR: f64 = 3_600_000.0;

impl World {
    pub fn new(params: WorldParams, groups: Vec<GroupSpec>, reqs: Vec<Req>, end_ms: i64) -> World {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        let n = groups.len();
        let mut w = World {
            now_ms: 0,
            end_ms,
            rng,
            seq: 0,
            heap: BinaryHeap::new(),
            groups,
            warm_target: vec![0; n],
            insts: BTreeMap::new(),
            next_inst: 1,
            reqs,
            next_arrival: 0,
            queue: VecDeque::new(),
            events_out: Vec::new(),
            next_event_id: 1,
            samples: Vec::new(),
            next_sample: Timestamp::from_millis(0),
            recent_waits: VecDeque::new(),
            completed_total: 0,
            completed_service_ms_total: 0,
            started_total: 0,
            started_wait_le: [0; QUEUE_WAIT_BUCKETS_S.len()],
            longest_done: ledger::LongestRecent::default(),
            calls: Vec::new(),
            interruptions: Vec::new(),
            cost_on_demand: 0.0,
            cost_spot: 0.0,
            cost_warm_disk: 0.0,
            gpu_ms: 0.0,
            busy_gpu_ms: 0.0,
            requests_hurt: 0,
            requests_cut_short: 0,
            spot_refunded: 0.0,
            reclaim_replacements: 0,
            failed_launches: Vec::new(),
            launches: Vec::new(),
            unfilled: Vec::new(),
            next_unfilled: 1,
            params,
        };
        if matches!(w.params.spot, SpotDynamics::Trace { .. }) {
            w.push(0, Ev::SpotTick);
        }
        w
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now_ms)
    }

    fn push(&mut self, at_ms: i64, ev: Ev) {
        self.seq += 1;
        self.heap
            .push(Reverse((Timestamp::from_millis(at_ms), self.seq, ev)));
    }

    // ------------------------------------------------------------------ the clock

    /// Process everything up to and including `t_ms`, then set the clock to `t_ms`.
    pub fn advance_to(&mut self, t_ms: i64) {
        loop {
            let ev_t = self.heap.peek().map(|Reverse((t, _, _))| t.millis());
            let arr_t = self.reqs.get(self.next_arrival).map(|r| r.arrival_ms);
            let next = [ev_t, arr_t, Some(self.next_sample.millis())]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { break };
            if next > t_ms {
                break;
            }
            self.now_ms = self.now_ms.max(next);
            if ev_t == Some(next) {
                if let Some(Reverse((_, _, ev))) = self.heap.pop() {
                    self.handle(ev);
                }
            } else if arr_t == Some(next) {
                let i = self.next_arrival;
                self.next_arrival += 1;
                self.queue.push_back(i);
                self.dispatch();
            } else {
                self.take_sample();
                let every_ms = (self.params.sample_interval_s * 1000.0) as i64;
                self.next_sample = Timestamp::from_millis(self.next_sample.millis() + every_ms);
            }
        }
        self.now_ms = self.now_ms.max(t_ms);
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Ready { inst, epoch } => self.on_ready(inst, epoch),
            Ev::ServeOn { inst, epoch } => {
                if let Some(i) = self.insts.get_mut(&inst)
                    && i.epoch == epoch
                    && i.serve == Serve::Starting
                {
                    i.serve = Serve::On;
                    self.dispatch();
                }
            }
            Ev::ReqDone { req, attempt } => self.on_done(req, attempt),
            Ev::Notice { inst } => self.notice(inst),
            Ev::Reclaim { inst } => self.reclaim(inst),
            Ev::SpotTick => self.spot_tick(),
            Ev::LaunchReport { id } => self.on_launch_report(id),
            Ev::LaunchRetry { id } => self.on_launch_retry(id),
        }
    }

    // ------------------------------------------------------------------ costs

    // ------------------------------------------------------------------ spot

    // ------------------------------------------------------------------ the cloud API

    // ------------------------------------------------------------------ views
}

/// When the last Prometheus scrape at or before `now_ms` happened, scraping every `scrape_ms`.
pub fn last_scrape_ms(now_ms: i64, scrape_ms: i64) -> i64 {
    (now_ms / scrape_ms) * scrape_ms
}

pub fn is_running(s: LifecycleState) -> bool {
    matches!(
        s,
        LifecycleState::Launching
            | LifecycleState::Warming
            | LifecycleState::Starting
            | LifecycleState::Ready
            | LifecycleState::Draining
    )
}
