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

use super::data::AvailabilityTrace;
use super::timing::ColdStart;
use crate::model::{
    CapacityType, Instance, InstanceId, InstanceType, LaunchFailure, LifecycleState, Money,
    NodeGroup, NodeGroupId, Offering, OfferingKey, PoolName, ProviderEvent, ProviderEventKind,
    Timestamp, WarmPool, Zone,
};
use gpupool_provider::{ProviderError, UnfulfilledLaunch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

/// A group of the simulated cloud, as the scenario defines it.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub id: NodeGroupId,
    pub pool: PoolName,
    pub capacity_type: CapacityType,
    pub instance_type: InstanceType,
    pub zones: Vec<Zone>,
    pub price_per_hour: f64,
    pub min_size: u32,
    pub max_size: u32,
    /// AWS allows a warm pool only on single-type on-demand groups.
    pub warm_pool_capable: bool,
    /// Spot hazard rate per hour (advisor bucket), also published as the offering's risk.
    pub hazard_per_hour: f64,
}

/// Seeded faults of the provider (FoundationDB's "buggify"): per launch attempt and per
/// mutating call.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Probability a launch attempt finds no capacity although the availability model has
    /// some (late, as the scenario's `cloud` reports it; see [`StockoutMode`]).
    #[serde(default)]
    pub stockout_prob: f64,
    /// How a stockout (fault or no-capacity window) is reported.
    #[serde(default)]
    pub stockout_mode: StockoutMode,
    /// Probability a mutating call is throttled.
    #[serde(default)]
    pub throttle_prob: f64,
}

/// How the simulated cloud reports that it has no capacity for a launch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StockoutMode {
    /// As AWS and GCP do: the launch request is accepted, and the failure is reported later
    /// on the group ([`NodeGroup::unfulfilled`]) the way the scenario's [`Cloud`] reports it.
    #[default]
    Late,
    /// An explicit fault mode, not what either cloud does for a group: `increase` itself fails
    /// with `InsufficientCapacity` (the simulator's behaviour before late stockouts, kept to
    /// compare against). Offerings are then also listed unavailable while a spot
    /// availability trace has no room, which no real provider knows in advance.
    Immediate,
    /// Accepted, then neither progress nor an error: the failure is never reported (AWS: an
    /// activity that stays in progress; GCP: a VM in CREATING without `lastAttempt.errors`),
    /// only the cloud's retries go on. What `scale_up.launch_timeout_s` exists for.
    Silent,
}

/// Which cloud's way of reporting a late stockout the simulated groups follow (scenario key
/// `cloud`). Both accept the launch first; see [`gpupool_provider::UnfulfilledLaunch`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    /// An Auto Scaling group: desired capacity stays raised, no instance appears, and a failed
    /// scaling activity is reported (an `UnfulfilledLaunch` without instances) until the
    /// request is taken back by lowering desired capacity.
    #[default]
    Aws,
    /// A managed instance group: the VM is listed at once (Launching, `currentAction:
    /// CREATING`) and stays stuck there with `lastAttempt.errors` (an `UnfulfilledLaunch`
    /// naming it) until it is deleted.
    Gcp,
}

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

/// A launch request the cloud holds without fulfilling it (see [`Cloud`]).
#[derive(Clone, Debug)]
struct Unfilled {
    id: u64,
    group: usize,
    zone: Zone,
    /// Index of its [`FailedLaunch`] record.
    record: usize,
    reported_ms: Option<i64>,
    /// GCP: the VM stuck CREATING that stands for the request.
    inst: Option<u64>,
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

/// How spot instances are reclaimed.
#[derive(Clone, Debug)]
pub enum SpotDynamics {
    /// Exponential time to interruption with the group's hazard rate.
    Hazard,
    /// A real availability trace: zone counts per tick, from `start_tick`.
    Trace {
        trace: AvailabilityTrace,
        start_tick: usize,
    },
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
    pub launched_at: i64,
    pub serve: Serve,
    pub in_flight: Vec<usize>,
    pub notice_deadline: Option<i64>,
    /// GCP: a VM the MIG cannot create (stuck CREATING): listed, not running, not billed.
    pub stuck: bool,
    epoch: u32,
    cost_since: i64,
    busy_since: Option<i64>,
}

impl Inst {
    /// Paid for as running and holding capacity (a stuck VM does neither).
    pub fn is_running(&self) -> bool {
        !self.stuck && is_running(self.state)
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

/// What a scrape at one instant saw, plus the figures the report charts.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub waiting: u32,
    pub in_flight: u32,
    /// Replicas taking requests.
    pub serving: u32,
    /// Instances being paid for as running (launching, warming, starting, ready).
    pub running: u32,
    pub spot_running: u32,
    pub warm: u32,
    pub cost_on_demand: f64,
    pub cost_spot: f64,
    /// p95 queue wait of requests that started in the last 60 s (the latency a dashboard shows).
    pub queue_wait_p95_s: f64,
    /// Counters, as a serving stack exports them (e.g. a gateway's request counter and vLLM's
    /// `vllm:request_inference_time_seconds` sum/count): requests arrived so far, requests
    /// completed so far and the service time those completed requests took, in ms. Rates come
    /// from differences between two samples, as Prometheus `rate()` does.
    pub arrived_total: u64,
    pub completed_total: u64,
    pub completed_service_ms_total: u64,
    /// Requests whose service started so far, and of those the ones that had waited at most
    /// each of [`QUEUE_WAIT_BUCKETS_S`] (cumulative, as the `_count` and `_bucket{le}` series
    /// of a queue-time histogram such as vLLM's `vllm:request_queue_time_seconds`).
    pub started_total: u64,
    pub started_wait_le: [u64; QUEUE_WAIT_BUCKETS_S.len()],
}

/// Bucket bounds (`le`, seconds) of the simulated queue-time histogram.
pub const QUEUE_WAIT_BUCKETS_S: [f64; 8] = [0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// One call that changed the cloud, for the determinism hash, scale-action counts and reaction
/// times.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    pub at_ms: i64,
    pub call: &'static str,
    pub group: String,
    pub detail: String,
    pub ok: bool,
    /// The error's kind (`ProviderError::kind`) when the call failed.
    pub error: Option<&'static str>,
}

/// A spot interruption the world carried out, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Interruption {
    pub notice_ms: i64,
    pub instance: String,
}

pub struct World {
    pub now_ms: i64,
    pub end_ms: i64,
    pub params: WorldParams,
    rng: ChaCha8Rng,
    seq: u64,
    heap: BinaryHeap<Reverse<(i64, u64, Ev)>>,
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
    next_sample_ms: i64,
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
            next_sample_ms: 0,
            recent_waits: VecDeque::new(),
            completed_total: 0,
            completed_service_ms_total: 0,
            started_total: 0,
            started_wait_le: [0; QUEUE_WAIT_BUCKETS_S.len()],
            calls: Vec::new(),
            interruptions: Vec::new(),
            cost_on_demand: 0.0,
            cost_spot: 0.0,
            cost_warm_disk: 0.0,
            gpu_ms: 0.0,
            busy_gpu_ms: 0.0,
            requests_hurt: 0,
            requests_cut_short: 0,
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
        self.heap.push(Reverse((at_ms, self.seq, ev)));
    }

    // ------------------------------------------------------------------ the clock

    /// Process everything up to and including `t_ms`, then set the clock to `t_ms`.
    pub fn advance_to(&mut self, t_ms: i64) {
        loop {
            let ev_t = self.heap.peek().map(|Reverse((t, _, _))| *t);
            let arr_t = self.reqs.get(self.next_arrival).map(|r| r.arrival_ms);
            let next = [ev_t, arr_t, Some(self.next_sample_ms)]
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
                self.next_sample_ms += (self.params.sample_interval_s * 1000.0) as i64;
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

    fn on_ready(&mut self, num: u64, epoch: u32) {
        let Some(i) = self.insts.get(&num) else {
            return;
        };
        if i.epoch != epoch {
            return;
        }
        match i.state {
            LifecycleState::Warming => {
                // Cache warm: the instance stops and waits in the warm pool.
                self.set_state(num, LifecycleState::Warm);
            }
            LifecycleState::Launching | LifecycleState::Starting => {
                self.set_state(num, LifecycleState::Ready);
                if let Some(i) = self.insts.get_mut(&num) {
                    i.serve = Serve::On;
                }
                self.dispatch();
            }
            _ => {}
        }
    }

    fn on_done(&mut self, req: usize, attempt: u32) {
        let now = self.now_ms;
        let Some(r) = self.reqs.get_mut(req) else {
            return;
        };
        if r.attempt != attempt || r.done_ms.is_some() {
            return;
        }
        r.done_ms = Some(now);
        self.completed_total += 1;
        self.completed_service_ms_total += r.service_ms.max(0) as u64;
        let holder = self
            .insts
            .iter()
            .find(|(_, i)| i.in_flight.contains(&req))
            .map(|(n, _)| *n);
        if let Some(n) = holder {
            self.remove_in_flight(n, req);
            if let Some(i) = self.insts.get_mut(&n)
                && i.serve == Serve::Draining
                && i.in_flight.is_empty()
            {
                i.serve = Serve::Off;
            }
        }
        self.dispatch();
    }

    fn remove_in_flight(&mut self, n: u64, req: usize) {
        let now = self.now_ms;
        let gpus = self.gpus_of(n);
        let mut busy_add = 0.0;
        if let Some(i) = self.insts.get_mut(&n) {
            i.in_flight.retain(|r| *r != req);
            if i.in_flight.is_empty()
                && let Some(since) = i.busy_since.take()
            {
                busy_add = (now - since) as f64 * gpus;
            }
        }
        self.busy_gpu_ms += busy_add;
    }

    fn gpus_of(&self, n: u64) -> f64 {
        self.insts
            .get(&n)
            .map(|i| f64::from(self.groups[i.group].instance_type.gpu.count))
            .unwrap_or(0.0)
    }

    /// FIFO queue to the least-loaded serving replica with a free slot.
    fn dispatch(&mut self) {
        let cap = self.params.concurrency as usize;
        while let Some(&req) = self.queue.front() {
            let best = self
                .insts
                .iter()
                .filter(|(_, i)| i.serve == Serve::On && i.in_flight.len() < cap)
                .min_by_key(|(n, i)| (i.in_flight.len(), **n))
                .map(|(n, _)| *n);
            let Some(n) = best else { break };
            self.queue.pop_front();
            let now = self.now_ms;
            let r = &mut self.reqs[req];
            r.waited_ms += now - r.queued_since;
            r.start_ms = Some(now);
            r.attempt += 1;
            let (attempt, service, waited) = (r.attempt, r.service_ms, r.waited_ms);
            self.recent_waits.push_back((now, waited));
            self.started_total += 1;
            for (b, le) in self.started_wait_le.iter_mut().zip(QUEUE_WAIT_BUCKETS_S) {
                if waited as f64 <= le * 1000.0 {
                    *b += 1;
                }
            }
            if let Some(i) = self.insts.get_mut(&n) {
                if i.in_flight.is_empty() {
                    i.busy_since = Some(now);
                }
                i.in_flight.push(req);
            }
            self.push(now + service, Ev::ReqDone { req, attempt });
        }
    }

    fn take_sample(&mut self) {
        let now = self.now_ms;
        self.settle_all();
        while self
            .recent_waits
            .front()
            .is_some_and(|(t, _)| now - t > 60_000)
        {
            self.recent_waits.pop_front();
        }
        let mut waits: Vec<i64> = self.recent_waits.iter().map(|(_, w)| *w).collect();
        waits.sort_unstable();
        let p95 = if waits.is_empty() {
            0.0
        } else {
            waits[((waits.len() - 1) as f64 * 0.95).round() as usize] as f64 / 1000.0
        };
        let mut s = Sample {
            t_s: now as f64 / 1000.0,
            waiting: self.queue.len() as u32,
            cost_on_demand: self.cost_on_demand,
            cost_spot: self.cost_spot,
            queue_wait_p95_s: p95,
            arrived_total: self.next_arrival as u64,
            completed_total: self.completed_total,
            completed_service_ms_total: self.completed_service_ms_total,
            started_total: self.started_total,
            started_wait_le: self.started_wait_le,
            ..Sample::default()
        };
        for i in self.insts.values() {
            s.in_flight += i.in_flight.len() as u32;
            if i.serve == Serve::On {
                s.serving += 1;
            }
            if i.is_running() {
                s.running += 1;
                if self.groups[i.group].capacity_type == CapacityType::Spot {
                    s.spot_running += 1;
                }
            }
            if i.state == LifecycleState::Warm {
                s.warm += 1;
            }
        }
        self.samples.push(s);
    }

    /// The newest sample taken at or before `t_ms` (what a scrape `delay` ago returned).
    pub fn sample_at(&self, t_ms: i64) -> Option<&Sample> {
        let t = t_ms as f64 / 1000.0;
        let idx = self.samples.partition_point(|s| s.t_s <= t + 1e-9);
        idx.checked_sub(1).and_then(|i| self.samples.get(i))
    }

    // ------------------------------------------------------------------ costs

    fn rate_per_ms(&self, i: &Inst) -> (f64, f64) {
        let g = &self.groups[i.group];
        let gpus = f64::from(g.instance_type.gpu.count);
        if i.is_running() {
            (g.price_per_hour / MS_PER_HOUR, gpus)
        } else if i.state == LifecycleState::Warm {
            (self.params.cold.warm_disk_per_hour() / MS_PER_HOUR, 0.0)
        } else {
            (0.0, 0.0)
        }
    }

    fn settle(&mut self, n: u64) {
        let now = self.now_ms;
        let Some(i) = self.insts.get(&n) else { return };
        let dt = (now - i.cost_since) as f64;
        let (rate, gpus) = self.rate_per_ms(i);
        let warm = i.state == LifecycleState::Warm;
        let spot = self.groups[i.group].capacity_type == CapacityType::Spot;
        let cost = rate * dt;
        if warm {
            self.cost_warm_disk += cost;
            // A stopped instance's disk is on-demand spending.
            self.cost_on_demand += cost;
        } else if spot {
            self.cost_spot += cost;
        } else {
            self.cost_on_demand += cost;
        }
        self.gpu_ms += gpus * dt;
        if let Some(i) = self.insts.get_mut(&n) {
            i.cost_since = now;
        }
    }

    fn settle_all(&mut self) {
        let ids: Vec<u64> = self.insts.keys().copied().collect();
        for n in ids {
            self.settle(n);
        }
    }

    fn set_state(&mut self, n: u64, s: LifecycleState) {
        self.settle(n);
        if let Some(i) = self.insts.get_mut(&n) {
            i.state = s;
            i.epoch += 1;
        }
    }

    /// Close the books at the end of the run: costs and busy time up to `end_ms`; requests still
    /// waiting count their wait so far.
    pub fn finish(&mut self) {
        self.advance_to(self.end_ms);
        self.settle_all();
        let now = self.now_ms;
        let busy: Vec<(u64, i64)> = self
            .insts
            .iter()
            .filter_map(|(n, i)| i.busy_since.map(|b| (*n, b)))
            .collect();
        for (n, since) in busy {
            self.busy_gpu_ms += (now - since) as f64 * self.gpus_of(n);
            if let Some(i) = self.insts.get_mut(&n) {
                i.busy_since = Some(now);
            }
        }
        for &q in &self.queue {
            let r = &mut self.reqs[q];
            r.waited_ms += now - r.queued_since;
            r.queued_since = now;
        }
    }

    // ------------------------------------------------------------------ spot

    fn spot_available(&self, zone: &Zone) -> u32 {
        match &self.params.spot {
            SpotDynamics::Hazard => u32::MAX,
            SpotDynamics::Trace { trace, start_tick } => {
                let tick = *start_tick + (self.now_ms as f64 / 1000.0 / trace.tick_s) as usize;
                trace
                    .zones
                    .get(zone.as_str())
                    .and_then(|v| v.get(tick.min(v.len().saturating_sub(1))).copied())
                    .unwrap_or(0)
            }
        }
    }

    /// Spot instances holding capacity in `zone` that are not already under notice.
    fn spot_held(&self, zone: &Zone) -> Vec<u64> {
        self.insts
            .iter()
            .filter(|(_, i)| {
                &i.zone == zone
                    && self.groups[i.group].capacity_type == CapacityType::Spot
                    && i.is_running()
                    && i.notice_deadline.is_none()
            })
            .map(|(n, _)| *n)
            .collect()
    }

    fn spot_tick(&mut self) {
        let SpotDynamics::Trace { trace, .. } = &self.params.spot else {
            return;
        };
        let tick_ms = (trace.tick_s * 1000.0) as i64;
        let zones: Vec<Zone> = trace.zones.keys().map(|z| Zone::from(z.as_str())).collect();
        for z in zones {
            let avail = self.spot_available(&z) as usize;
            let mut held = self.spot_held(&z);
            while held.len() > avail {
                // Which instance the cloud reclaims is not in the trace: pick one at random.
                let k = self.rng.random_range(0..held.len());
                let n = held.swap_remove(k);
                self.notice(n);
            }
        }
        let next = self.now_ms + tick_ms;
        if next <= self.end_ms {
            self.push(next, Ev::SpotTick);
        }
    }

    fn notice(&mut self, n: u64) {
        let now = self.now_ms;
        let notice_ms = (self.params.spot_notice_s * 1000.0) as i64;
        let Some(i) = self.insts.get_mut(&n) else {
            return;
        };
        if i.notice_deadline.is_some() || !i.is_running() {
            return;
        }
        let deadline = now + notice_ms;
        i.notice_deadline = Some(deadline);
        let id = i.id.clone();
        self.interruptions.push(Interruption {
            notice_ms: now,
            instance: id.to_string(),
        });
        let eid = self.next_event_id;
        self.next_event_id += 1;
        self.events_out.push(ProviderEvent {
            ack: None,
            id: format!("sim-ev-{eid}"),
            kind: ProviderEventKind::SpotInterruption {
                instance: id,
                deadline: Timestamp::from_millis(deadline),
            },
        });
        self.push(deadline, Ev::Reclaim { inst: n });
    }

    fn reclaim(&mut self, n: u64) {
        if self.insts.contains_key(&n) {
            self.remove_instance(n, true);
        }
    }

    /// Remove an instance; its in-flight requests go back to the front of the queue.
    fn remove_instance(&mut self, n: u64, preempted: bool) {
        self.settle(n);
        let now = self.now_ms;
        let gpus = self.gpus_of(n);
        let Some(i) = self.insts.remove(&n) else {
            return;
        };
        // A stuck VM deleted: the request it stood for is gone with it.
        self.take_back(|u| u.inst == Some(n));
        if let Some(since) = i.busy_since {
            self.busy_gpu_ms += (now - since) as f64 * gpus;
        }
        for &req in i.in_flight.iter().rev() {
            let r = &mut self.reqs[req];
            r.start_ms = None;
            r.queued_since = now;
            // Any running attempt is void: its completion event is ignored.
            r.attempt += 1;
            if preempted {
                if !r.hurt {
                    self.requests_hurt += 1;
                }
                r.hurt = true;
            } else {
                self.requests_cut_short += 1;
            }
            self.queue.push_front(req);
        }
        self.dispatch();
    }

    // ------------------------------------------------------------------ the cloud API

    fn throttled(&mut self) -> Option<ProviderError> {
        let p = self.params.faults.throttle_prob;
        (p > 0.0 && self.rng.random::<f64>() < p).then_some(ProviderError::Throttled {
            retry_after_ms: 2000,
        })
    }

    pub fn group_index(&self, id: &NodeGroupId) -> Result<usize, ProviderError> {
        self.groups
            .iter()
            .position(|g| &g.id == id)
            .ok_or_else(|| ProviderError::NotFound {
                what: format!("group {id}"),
            })
    }

    /// Record a call; `error` is the kind of the error it returned, `None` when it succeeded.
    fn record(
        &mut self,
        call: &'static str,
        group: &NodeGroupId,
        detail: String,
        error: Option<&'static str>,
    ) {
        self.calls.push(CallRecord {
            at_ms: self.now_ms,
            call,
            group: group.to_string(),
            detail,
            ok: error.is_none(),
            error,
        });
    }

    /// Instances counted in desired capacity (not warm pool).
    fn in_service(&self, g: usize) -> Vec<u64> {
        self.insts
            .iter()
            .filter(|(_, i)| i.group == g && !i.state.is_warm_pool())
            .map(|(n, _)| *n)
            .collect()
    }

    fn new_instance(&mut self, g: usize, zone: Zone, state: LifecycleState) -> u64 {
        let n = self.next_inst;
        self.next_inst += 1;
        let inst = Inst {
            id: InstanceId::new(format!("i-{n:06}")),
            num: n,
            group: g,
            zone,
            state,
            launched_at: self.now_ms,
            serve: Serve::Off,
            in_flight: Vec::new(),
            notice_deadline: None,
            stuck: false,
            epoch: 0,
            cost_since: self.now_ms,
            busy_since: None,
        };
        self.insts.insert(n, inst);
        n
    }

    fn launch_cold(&mut self, g: usize, zone: Zone, state: LifecycleState) -> u64 {
        let n = self.new_instance(g, zone, state);
        self.start_cold(n);
        n
    }

    /// Schedule a cold launch's Ready (and, spot with a hazard rate, its interruption notice)
    /// from now.
    fn start_cold(&mut self, n: u64) {
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

    fn uniform_ms(&mut self, (lo, hi): (f64, f64)) -> i64 {
        ((lo + (hi - lo) * self.rng.random::<f64>()) * 1000.0) as i64
    }

    /// The cloud accepted a launch it cannot carry out: hold it as the scenario's cloud does
    /// and report the failure after [`LAUNCH_FAILURE_REPORT_S`].
    fn fail_launch(&mut self, g: usize, zone: Zone, cause: StockoutCause) {
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
            reported_ms: None,
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

    fn on_launch_report(&mut self, id: u64) {
        let now = self.now_ms;
        let Some(u) = self.unfilled.iter_mut().find(|u| u.id == id) else {
            // Taken back before the cloud reported it.
            return;
        };
        u.reported_ms = Some(now);
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
    fn on_launch_retry(&mut self, id: u64) {
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
                        if let Some(i) = self.insts.get_mut(&n) {
                            i.stuck = false;
                            i.launched_at = self.now_ms;
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
    fn take_back(&mut self, which: impl Fn(&Unfilled) -> bool) {
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
    fn stockout_zone(&self, g: usize) -> Zone {
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

    /// Whether a spot zone has room for one more instance of group `g` (on-demand: always).
    fn zone_has_room(&self, g: usize, zone: &Zone) -> bool {
        self.groups[g].capacity_type == CapacityType::OnDemand
            || self.spot_available(zone) as usize > self.spot_held(zone).len()
    }

    /// Launch requests of group `g` the cloud holds without an instance (AWS: the part of
    /// desired capacity no listed instance backs).
    fn pending_without_instance(&self, g: usize) -> u32 {
        self.unfilled
            .iter()
            .filter(|u| u.group == g && u.inst.is_none())
            .count() as u32
    }

    /// Launch requests held without an instance, over all groups (capacity a baseline that
    /// counts `desired − listed` as upcoming believes is on its way).
    pub fn pending_launches(&self) -> u32 {
        self.unfilled.iter().filter(|u| u.inst.is_none()).count() as u32
    }

    /// Desired capacity as the cloud reports it: instances in service (stuck VMs included)
    /// plus requests held without an instance.
    pub fn desired(&self, g: usize) -> u32 {
        self.in_service(g).len() as u32 + self.pending_without_instance(g)
    }

    /// Zone with the most room left for a new instance of group `g` (spot: availability minus
    /// held), or None when every zone is full.
    fn pick_zone(&self, g: usize) -> Option<Zone> {
        let spec = &self.groups[g];
        let mut best: Option<(i64, Zone)> = None;
        for z in &spec.zones {
            let room = if spec.capacity_type == CapacityType::Spot {
                i64::from(self.spot_available(z)) - self.spot_held(z).len() as i64
            } else {
                // On-demand: balance zones by count.
                -(self
                    .insts
                    .values()
                    .filter(|i| i.group == g && &i.zone == z)
                    .count() as i64)
            };
            if (spec.capacity_type == CapacityType::OnDemand || room > 0)
                && best.as_ref().is_none_or(|(r, _)| room > *r)
            {
                best = Some((room, z.clone()));
            }
        }
        best.map(|(_, z)| z)
    }

    fn offering_key(&self, g: usize, zone: &Zone) -> OfferingKey {
        let spec = &self.groups[g];
        OfferingKey {
            instance_type: spec.instance_type.name.clone(),
            capacity_type: spec.capacity_type,
            zone: zone.clone(),
        }
    }

    /// Raise desired capacity by `delta`: warm instances first, then cold launches. With
    /// `faults.stockout_mode: late` (the default) the call is accepted whenever it is within
    /// `max_size`; each cold launch then either proceeds or fails later, as the scenario's
    /// cloud reports it (see [`Cloud`]). `immediate` keeps the old explicit fault mode.
    pub fn increase(&mut self, id: &NodeGroupId, delta: u32) -> Result<(), ProviderError> {
        match self.params.faults.stockout_mode {
            StockoutMode::Late | StockoutMode::Silent => self.increase_late(id, delta),
            StockoutMode::Immediate => self.increase_instant(id, delta),
        }
    }

    /// Warm instances first (AWS warm pools and GCP standby pools both start those before
    /// launching), `delta` at most; returns how many were started.
    fn start_warm(&mut self, g: usize, delta: u32) -> Vec<u64> {
        let warm: Vec<u64> = self
            .insts
            .iter()
            .filter(|(_, i)| i.group == g && i.state == LifecycleState::Warm)
            .map(|(n, _)| *n)
            .take(delta as usize)
            .collect();
        for &n in &warm {
            self.set_state(n, LifecycleState::Starting);
            let secs = self.params.cold.sample_warm_s(&mut self.rng);
            let epoch = self.insts.get(&n).map_or(0, |i| i.epoch);
            self.push(
                self.now_ms + (secs * 1000.0) as i64,
                Ev::Ready { inst: n, epoch },
            );
        }
        warm
    }

    /// Record the instances an accepted call started or launched, one record per zone.
    fn record_launches(&mut self, id: &NodeGroupId, nums: &[u64]) {
        let mut by_zone: BTreeMap<Zone, u32> = BTreeMap::new();
        for n in nums {
            if let Some(i) = self.insts.get(n) {
                *by_zone.entry(i.zone.clone()).or_default() += 1;
            }
        }
        for (zone, instances) in by_zone {
            self.launches.push(LaunchRecord {
                at_ms: self.now_ms,
                group: id.clone(),
                zone,
                instances,
            });
        }
    }

    fn check_max(&mut self, g: usize, id: &NodeGroupId, delta: u32) -> Result<(), ProviderError> {
        let desired = self.desired(g);
        let max = self.groups[g].max_size;
        if u64::from(desired) + u64::from(delta) > u64::from(max) {
            self.record(
                "increase",
                id,
                format!("+{delta} above max"),
                Some("invalid_config"),
            );
            return Err(ProviderError::InvalidConfig(format!(
                "desired {} would exceed max_size {max} of {id}",
                u64::from(desired) + u64::from(delta)
            )));
        }
        Ok(())
    }

    /// What every `increase` checks first, in this order (the throttle draw comes from the
    /// seeded RNG, so the order is part of determinism): the group exists, the call is not
    /// throttled, the new size stays within max. Returns the group's index.
    fn admit_increase(&mut self, id: &NodeGroupId, delta: u32) -> Result<usize, ProviderError> {
        let g = self.group_index(id)?;
        if let Some(e) = self.throttled() {
            self.record(
                "increase",
                id,
                format!("+{delta} throttled"),
                Some("throttled"),
            );
            return Err(e);
        }
        self.check_max(g, id, delta)?;
        Ok(g)
    }

    fn increase_late(&mut self, id: &NodeGroupId, delta: u32) -> Result<(), ProviderError> {
        let g = self.admit_increase(id, delta)?;
        let mut put = self.start_warm(g, delta);
        let started = put.len() as u32;
        let p = self.params.faults.stockout_prob;
        let (mut launched, mut failed) = (0, 0);
        for _ in started..delta {
            let zone = self.pick_zone(g);
            let faulted = p > 0.0 && self.rng.random::<f64>() < p;
            match (zone, faulted) {
                (Some(z), false) => {
                    put.push(self.launch_cold(g, z, LifecycleState::Launching));
                    launched += 1;
                }
                (Some(z), true) => {
                    self.fail_launch(g, z, StockoutCause::Fault);
                    failed += 1;
                }
                (None, _) => {
                    let z = self.stockout_zone(g);
                    self.fail_launch(g, z, StockoutCause::NoCapacity);
                    failed += 1;
                }
            }
        }
        self.record_launches(id, &put);
        self.record(
            "increase",
            id,
            format!("+{delta} warm={started} cold={launched} unfulfilled={failed}"),
            None,
        );
        self.reconcile_warm(g);
        Ok(())
    }

    /// The old explicit fault mode, and what an instant launch API does (EC2 `CreateFleet`
    /// with `Type: instant`, which Karpenter uses, returns the capacity errors in its
    /// response): a stockout fails the call itself.
    pub fn increase_instant(&mut self, id: &NodeGroupId, delta: u32) -> Result<(), ProviderError> {
        let g = self.admit_increase(id, delta)?;
        let stockout = self.params.faults.stockout_prob;
        if stockout > 0.0 && self.rng.random::<f64>() < stockout {
            let zone = self.groups[g].zones.first().cloned().unwrap_or_default();
            self.record(
                "increase",
                id,
                format!("+{delta} stockout"),
                Some("insufficient_capacity"),
            );
            return Err(ProviderError::InsufficientCapacity {
                offering: self.offering_key(g, &zone),
            });
        }
        let mut put = self.start_warm(g, delta);
        let started = put.len() as u32;
        let mut launched = 0;
        let mut failed_zone = None;
        for _ in started..delta {
            match self.pick_zone(g) {
                Some(z) => {
                    put.push(self.launch_cold(g, z, LifecycleState::Launching));
                    launched += 1;
                }
                None => {
                    failed_zone = self.groups[g].zones.first().cloned();
                    break;
                }
            }
        }
        self.record_launches(id, &put);
        if let Some(z) = failed_zone {
            let key = self.offering_key(g, &z);
            if started + launched == 0 {
                self.record(
                    "increase",
                    id,
                    format!("+{delta} no capacity"),
                    Some("insufficient_capacity"),
                );
                return Err(ProviderError::InsufficientCapacity { offering: key });
            }
            let eid = self.next_event_id;
            self.next_event_id += 1;
            self.events_out.push(ProviderEvent {
                ack: None,
                id: format!("sim-ev-{eid}"),
                kind: ProviderEventKind::LaunchFailed {
                    group: id.clone(),
                    offering: key,
                    error: LaunchFailure::InsufficientCapacity,
                    message: format!(
                        "launched {} of {delta}: no spot capacity left",
                        started + launched
                    ),
                },
            });
        }
        self.record(
            "increase",
            id,
            format!("+{delta} warm={started} cold={launched}"),
            None,
        );
        self.reconcile_warm(g);
        Ok(())
    }

    /// Take back launch requests the cloud holds without fulfilling them (the provider
    /// contract's `release_unfulfilled`): AWS-like, lower desired by up to `count`, reported
    /// failures first, never below `min_size`; GCP-like, delete the named VMs that are still
    /// stuck (one that started meanwhile is a real launch now and is kept). Returns how many
    /// were taken back; asking again takes back nothing.
    pub fn release_unfulfilled(
        &mut self,
        id: &NodeGroupId,
        count: u32,
        instances: &[InstanceId],
    ) -> Result<u32, ProviderError> {
        let g = self.group_index(id)?;
        if let Some(e) = self.throttled() {
            self.record(
                "release_unfulfilled",
                id,
                format!("{count} throttled"),
                Some("throttled"),
            );
            return Err(e);
        }
        let mut taken = 0u32;
        // AWS: desired − count, but not below min size (SetDesiredCapacity refuses that).
        let room = self.desired(g).saturating_sub(self.groups[g].min_size);
        let mut aws: Vec<(bool, u64)> = self
            .unfilled
            .iter()
            .filter(|u| u.group == g && u.inst.is_none())
            .map(|u| (u.reported_ms.is_none(), u.id))
            .collect();
        aws.sort();
        for (_, uid) in aws.into_iter().take(count.min(room) as usize) {
            self.take_back(|u| u.id == uid);
            taken += 1;
        }
        // GCP: deleteInstances on the stuck VMs named.
        let stuck: Vec<u64> = self
            .insts
            .iter()
            .filter(|(_, i)| i.group == g && i.stuck && instances.contains(&i.id))
            .map(|(n, _)| *n)
            .collect();
        for n in stuck {
            self.remove_instance(n, false);
            taken += 1;
        }
        self.record(
            "release_unfulfilled",
            id,
            format!("{taken} of {count}"),
            None,
        );
        Ok(taken)
    }

    /// Terminate exactly these instances (already gone is fine).
    pub fn terminate(&mut self, id: &NodeGroupId, ids: &[InstanceId]) -> Result<(), ProviderError> {
        let g = self.group_index(id)?;
        if let Some(e) = self.throttled() {
            self.record(
                "terminate",
                id,
                format!("{} throttled", ids.len()),
                Some("throttled"),
            );
            return Err(e);
        }
        let nums: Vec<u64> = self
            .insts
            .iter()
            .filter(|(_, i)| i.group == g && ids.contains(&i.id))
            .map(|(n, _)| *n)
            .collect();
        for n in &nums {
            self.remove_instance(*n, false);
        }
        let names: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        self.record("terminate", id, names.join(","), None);
        self.reconcile_warm(g);
        Ok(())
    }

    pub fn set_warm_pool_size(&mut self, id: &NodeGroupId, size: u32) -> Result<(), ProviderError> {
        let g = self.group_index(id)?;
        if !self.groups[g].warm_pool_capable {
            return Err(ProviderError::InvalidConfig(format!(
                "{id} cannot have a warm pool (spot or mixed-instances group)"
            )));
        }
        if let Some(e) = self.throttled() {
            return Err(e);
        }
        if self.warm_target[g] != size {
            self.record("set_warm_pool", id, format!("{size}"), None);
        }
        self.warm_target[g] = size;
        self.reconcile_warm(g);
        Ok(())
    }

    /// Keep the warm pool at its target: launch warming instances, or drop the extra ones
    /// (warming ones first: they are not ready anyway).
    fn reconcile_warm(&mut self, g: usize) {
        let target = self.warm_target[g] as usize;
        let mut pool: Vec<(bool, u64)> = self
            .insts
            .iter()
            .filter(|(_, i)| i.group == g && i.state.is_warm_pool())
            .map(|(n, i)| (i.state == LifecycleState::Warm, *n))
            .collect();
        if pool.len() < target {
            for _ in pool.len()..target {
                let zone = self.pick_zone(g).unwrap_or_default();
                self.launch_cold(g, zone, LifecycleState::Warming);
            }
        } else if pool.len() > target {
            // Warming (false) sorts first, newest last: drop warming ones first.
            pool.sort();
            let extra = pool.len() - target;
            for (_, n) in pool.into_iter().take(extra) {
                self.remove_instance(n, false);
            }
        }
    }

    /// Take and clear the events raised since the last call.
    pub fn poll_events(&mut self) -> Vec<ProviderEvent> {
        std::mem::take(&mut self.events_out)
    }

    // ------------------------------------------------------------------ views

    pub fn node_groups(&self) -> Vec<NodeGroup> {
        (0..self.groups.len()).map(|g| self.node_group(g)).collect()
    }

    fn node_group(&self, g: usize) -> NodeGroup {
        let spec = &self.groups[g];
        let offerings = spec
            .zones
            .iter()
            .map(|z| Offering {
                instance_type: spec.instance_type.clone(),
                capacity_type: spec.capacity_type,
                zone: z.clone(),
                price_per_hour: Money::from_dollars(spec.price_per_hour),
                interruption_risk_per_hour: if spec.capacity_type == CapacityType::Spot {
                    spec.hazard_per_hour
                } else {
                    0.0
                },
                // The real providers list every offering available (they cannot know spot
                // capacity before a launch fails); only the old immediate mode peeks at the
                // availability trace.
                available: match self.params.faults.stockout_mode {
                    StockoutMode::Late | StockoutMode::Silent => true,
                    StockoutMode::Immediate => self.zone_has_room(g, z),
                },
            })
            .collect();
        let warm_pool = spec.warm_pool_capable.then(|| WarmPool {
            target_size: self.warm_target[g],
            ready: self.count(g, LifecycleState::Warm),
            warming: self.count(g, LifecycleState::Warming),
        });
        let mut labels = BTreeMap::new();
        labels.insert(crate::model::labels::POOL.to_owned(), spec.pool.to_string());
        labels.insert(
            crate::model::labels::CAPACITY_TYPE.to_owned(),
            spec.capacity_type.to_string(),
        );
        labels.insert(
            crate::model::labels::INSTANCE_TYPE.to_owned(),
            spec.instance_type.name.to_string(),
        );
        labels.insert(
            crate::model::labels::GPU_MODEL.to_owned(),
            spec.instance_type.gpu.model.clone(),
        );
        NodeGroup {
            id: spec.id.clone(),
            pool: spec.pool.clone(),
            offerings,
            min_size: spec.min_size,
            max_size: spec.max_size,
            desired: self.desired(g),
            labels,
            taints: Vec::new(),
            warm_pool,
            activity_in_progress: false,
            unfulfilled: self.unfulfilled_view(g),
        }
    }

    /// The reported, still outstanding unfulfilled launches of group `g`, one entry per zone,
    /// as the provider crates build them from the cloud's reports.
    fn unfulfilled_view(&self, g: usize) -> Vec<UnfulfilledLaunch> {
        let spec = &self.groups[g];
        let mut by_zone: BTreeMap<Zone, UnfulfilledLaunch> = BTreeMap::new();
        for u in self.unfilled.iter().filter(|u| u.group == g) {
            let Some(at) = u.reported_ms else { continue };
            let e = by_zone
                .entry(u.zone.clone())
                .or_insert_with(|| UnfulfilledLaunch {
                    offering: self.offering_key(g, &u.zone),
                    failure: LaunchFailure::InsufficientCapacity,
                    count: 0,
                    message: cloud_message(self.params.cloud, spec, &u.zone),
                    at: Timestamp::from_millis(at),
                    instances: Vec::new(),
                });
            e.count += 1;
            e.at = e.at.min(Timestamp::from_millis(at));
            if let Some(i) = u.inst.and_then(|n| self.insts.get(&n)) {
                e.instances.push(i.id.clone());
            }
        }
        by_zone.into_values().collect()
    }

    fn count(&self, g: usize, s: LifecycleState) -> u32 {
        self.insts
            .values()
            .filter(|i| i.group == g && i.state == s)
            .count() as u32
    }

    pub fn instances(&self, id: &NodeGroupId) -> Result<Vec<Instance>, ProviderError> {
        let g = self.group_index(id)?;
        Ok(self
            .insts
            .values()
            .filter(|i| i.group == g)
            .map(|i| self.provider_instance(i))
            .collect())
    }

    pub fn provider_instance(&self, i: &Inst) -> Instance {
        let spec = &self.groups[i.group];
        Instance {
            id: i.id.clone(),
            group: spec.id.clone(),
            instance_type: spec.instance_type.name.clone(),
            capacity_type: spec.capacity_type,
            zone: i.zone.clone(),
            state: i.state,
            launched_at: Timestamp::from_millis(i.launched_at),
            model_cache: match i.state {
                LifecycleState::Launching | LifecycleState::Warming => None,
                _ => self.params.model_cache.clone(),
            },
            provider_id: Some(format!("sim:///{}/{}", i.zone, i.id)),
            protected_from_scale_in: false,
            awaiting_lifecycle_hook: false,
            private_ip: None,
        }
    }

    pub fn inst_by_id(&self, id: &InstanceId) -> Option<&Inst> {
        self.insts.values().find(|i| &i.id == id)
    }

    /// Instances already serving when the replay starts (the service was running before the
    /// slice): Ready, taking requests, no cold start.
    pub fn prewarm_ready(&mut self, g: usize, n: u32) {
        for _ in 0..n {
            let zone = self.pick_zone(g).unwrap_or_default();
            let num = self.new_instance(g, zone, LifecycleState::Ready);
            if let Some(i) = self.insts.get_mut(&num) {
                i.serve = Serve::On;
            }
        }
    }

    /// Stop routing new requests to this instance; it keeps serving what it holds.
    /// Returns the requests still in flight.
    pub fn stop_routing(&mut self, id: &InstanceId) -> Option<u32> {
        let n = self.insts.values().find(|i| &i.id == id)?.num;
        let i = self.insts.get_mut(&n)?;
        i.serve = if i.in_flight.is_empty() {
            Serve::Off
        } else {
            Serve::Draining
        };
        Some(i.in_flight.len() as u32)
    }

    /// Put a Ready instance whose replica was stopped back into service after a replica start
    /// on the node (model load from local disk: the warm-start time).
    pub fn start_serving(&mut self, id: &InstanceId) {
        let Some(n) = self.insts.values().find(|i| &i.id == id).map(|i| i.num) else {
            return;
        };
        let secs = self.params.cold.sample_warm_s(&mut self.rng);
        let now = self.now_ms;
        let Some(i) = self.insts.get_mut(&n) else {
            return;
        };
        if i.state != LifecycleState::Ready {
            return;
        }
        match i.serve {
            Serve::Off => {
                i.serve = Serve::Starting;
                let epoch = i.epoch;
                self.push(now + (secs * 1000.0) as i64, Ev::ServeOn { inst: n, epoch });
            }
            // A draining replica can simply take requests again.
            Serve::Draining => {
                i.serve = Serve::On;
                self.dispatch();
            }
            Serve::Starting | Serve::On => {}
        }
    }

    pub fn waiting(&self) -> u32 {
        self.queue.len() as u32
    }

    pub fn in_flight_total(&self) -> u32 {
        self.insts.values().map(|i| i.in_flight.len() as u32).sum()
    }
}

/// The cloud's words for a stockout, as the provider crates receive them.
/// AWS: the scaling activity's StatusMessage — for spot "Could not launch Spot Instances.
/// InsufficientInstanceCapacity - There is no Spot capacity available that matches your
/// request. Launching EC2 instance failed." (quoted in kubernetes/autoscaler#3241), on-demand
/// "We currently do not have sufficient <type> capacity in the Availability Zone you requested
/// (<zone>). …" (quoted in kubernetes/autoscaler#1402). GCP: the `lastAttempt.errors` code
/// ZONE_RESOURCE_POOL_EXHAUSTED with its message.
fn cloud_message(cloud: Cloud, spec: &GroupSpec, zone: &Zone) -> String {
    match (cloud, spec.capacity_type) {
        (Cloud::Aws, CapacityType::Spot) => "Could not launch Spot Instances. \
            InsufficientInstanceCapacity - There is no Spot capacity available that matches \
            your request. Launching EC2 instance failed."
            .to_owned(),
        (Cloud::Aws, CapacityType::OnDemand) => format!(
            "We currently do not have sufficient {} capacity in the Availability Zone you \
             requested ({zone}). Our system will be working on provisioning additional \
             capacity. Launching EC2 instance failed.",
            spec.instance_type.name
        ),
        (Cloud::Gcp, _) => format!(
            "ZONE_RESOURCE_POOL_EXHAUSTED: The zone '{zone}' does not have enough resources \
             available to fulfill the request. Try a different zone, or try again later."
        ),
    }
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

#[cfg(test)]
mod tests {
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
            3_600_000,
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
}
