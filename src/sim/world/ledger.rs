//! The ledger: costs and GPU time accrued per instance, and the samples a scrape would see.

use super::*;

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
    /// The longest service time (ms) of the requests completed in the last
    /// [`LONGEST_WINDOW_MS`] (`None` before any completed): the simulator's stand-in for a
    /// `disruption.request_duration_query` over the serving stack's latency histogram.
    #[serde(skip)]
    pub longest_done_ms: Option<i64>,
}

/// The window [`Sample::longest_done_ms`] looks back over: an hour.
pub const LONGEST_WINDOW_MS: i64 = 3_600_000;

/// The longest of the values pushed in a sliding window, each pushed with its time (in
/// non-decreasing order): a monotonic deque — a value is dropped once a later one is at
/// least as long, since it can never be the longest again — so a push and a query cost
/// amortised O(1), whatever the traffic.
#[derive(Clone, Debug, Default)]
pub struct LongestRecent(VecDeque<(i64, i64)>);

impl LongestRecent {
    /// Record `value` completed at `t_ms`.
    pub fn push(&mut self, t_ms: i64, value: i64) {
        while self.0.back().is_some_and(|&(_, v)| v <= value) {
            self.0.pop_back();
        }
        self.0.push_back((t_ms, value));
    }

    /// The longest value pushed within `(now_ms − window_ms, now_ms]`; older ones are
    /// forgotten. `None` when none is that recent.
    pub fn longest(&mut self, now_ms: i64, window_ms: i64) -> Option<i64> {
        while self
            .0
            .front()
            .is_some_and(|&(t, _)| t <= now_ms - window_ms)
        {
            self.0.pop_front();
        }
        self.0.front().map(|&(_, v)| v)
    }
}

/// Bucket bounds (`le`, seconds) of the simulated queue-time histogram.
pub const QUEUE_WAIT_BUCKETS_S: [f64; 8] = [0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// The bucket an SLO of `queue_wait_s` is read at: the largest bound at or below it (a
/// conservative reading when the SLO falls between bounds, exact on a bound); `None` under the
/// smallest bound.
pub fn slo_bucket(queue_wait_s: f64) -> Option<usize> {
    QUEUE_WAIT_BUCKETS_S
        .iter()
        .rposition(|le| *le <= queue_wait_s + 1e-9)
}

impl World {
    pub(super) fn take_sample(&mut self) {
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
            longest_done_ms: self.longest_done.longest(now, LONGEST_WINDOW_MS),
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

    pub(super) fn rate_per_ms(&self, i: &Inst) -> (f64, f64) {
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

    pub(super) fn settle(&mut self, n: u64) {
        let now = self.now_ms;
        let Some(i) = self.insts.get(&n) else { return };
        let dt = (now - i.cost_since.millis()) as f64;
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
            i.cost_since = Timestamp::from_millis(now);
            if !warm {
                i.billed += cost;
            }
        }
    }

    pub(super) fn settle_all(&mut self) {
        let ids: Vec<u64> = self.insts.keys().copied().collect();
        for n in ids {
            self.settle(n);
        }
    }

    pub(super) fn set_state(&mut self, n: u64, s: LifecycleState) {
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
        let busy: Vec<(u64, Timestamp)> = self
            .insts
            .iter()
            .filter_map(|(n, i)| i.busy_since.map(|b| (*n, b)))
            .collect();
        for (n, since) in busy {
            self.busy_gpu_ms += (now - since.millis()) as f64 * self.gpus_of(n);
            if let Some(i) = self.insts.get_mut(&n) {
                i.busy_since = Some(Timestamp::from_millis(now));
            }
        }
        for &q in &self.queue {
            let r = &mut self.reqs[q];
            r.waited_ms += now - r.queued_since;
            r.queued_since = now;
        }
    }
}

#[cfg(test)]
mod longest_tests {
    use super::LongestRecent;

    #[test]
    fn the_longest_completed_within_the_window_and_older_ones_forgotten() {
        let hour = 3_600_000;
        let mut l = LongestRecent::default();
        assert_eq!(l.longest(0, hour), None, "nothing completed yet: unknown");
        l.push(1_000, 40_600);
        l.push(2_000, 5_000);
        assert_eq!(l.longest(2_000, hour), Some(40_600));
        l.push(3_000, 30_000);
        // The 40.6-s request leaves the window an hour after it completed.
        assert_eq!(l.longest(1_000 + hour - 1, hour), Some(40_600));
        assert_eq!(l.longest(1_000 + hour, hour), Some(30_000));
        // A later, longer request wins at once; shorter ones before it can never win again.
        l.push(1_000 + hour + 10, 35_000);
        assert_eq!(l.longest(1_000 + hour + 10, hour), Some(35_000));
        assert_eq!(l.0.len(), 1, "dominated values are dropped");
        // Equal values: the later one is kept (it stays in the window longer).
        l.push(1_000 + hour + 20, 35_000);
        assert_eq!(l.0.back(), Some(&(1_000 + hour + 20, 35_000)));
        assert_eq!(l.0.len(), 1);
        // Everything older than the window: unknown again, not zero.
        assert_eq!(l.longest(10 * hour, hour), None);
    }
}
