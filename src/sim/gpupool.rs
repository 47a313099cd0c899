//! The `gpupool` policy: the production `Controller` driven on the virtual clock, with the
//! simulator's cluster view and demand source.
//!
//! - [`SimCluster`] is VM-only style: one node per Ready instance, with its in-flight requests;
//!   draining stops routing to the instance and completes when its in-flight requests finish.
//! - [`SimDemand`] turns each pool's `sim_queue` signals into `PoolDemand` with production's
//!   reading and KEDA arithmetic ([`crate::signals::keda::replicas`]; the pool wants the
//!   largest of its signals), reading the value of the last Prometheus scrape
//!   (`signals.scrape_interval_s`), so the controller sees what it would see live. A signal
//!   reads the queue (waiting, optionally + in flight) or the offered load (Little's law over a
//!   rate window, see [`offered_load`]). It also reports the waiting, in-flight and p95
//!   queue-wait readings (no replicas: guard-rail information). When the pool's
//!   `forecast.enabled`, `replicas_forecast` comes from [`PoolForecasts`], the same code
//!   production's `SignalDemand` runs. `request_duration` is the longest service time of the
//!   requests completed in the last hour as of the last scrape ([`Sample::longest_done_ms`],
//!   a sliding window kept as requests complete) — the simulator's stand-in for the live
//!   `disruption.request_duration_query` — and unknown before any request has completed.

use super::provider::{SharedWorld, lock};
use super::scenario::{SimQueueMetric, SimQueueSignal, SimSignal};
use super::world::{Sample, Serve, last_scrape_ms, slo_bucket};
use crate::config::Config;
use crate::controller::{Cluster, ClusterError, ClusterView, DemandSource, DrainProgress};
use crate::model::{
    Instance, LifecycleState, Node, PoolDemand, PoolName, SignalReading, Timestamp,
};
use crate::signals::prometheus::Sample as Scrape;
use crate::signals::{Forecaster, PoolForecasts, keda, reading};
use async_trait::async_trait;
use std::collections::BTreeMap;

pub struct SimCluster {
    world: SharedWorld,
    pool: PoolName,
}

impl SimCluster {
    pub fn new(world: SharedWorld, pool: PoolName) -> Self {
        SimCluster { world, pool }
    }
}

#[async_trait]
impl Cluster for SimCluster {
    async fn observe(
        &mut self,
        instances: &[Instance],
        _now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        let w = lock(&self.world);
        let mut nodes = Vec::new();
        for inst in instances {
            let Some(i) = w.inst_by_id(&inst.id) else {
                continue;
            };
            if !i.is_running() || i.state.is_warm_pool() {
                continue;
            }
            let ready = i.state == LifecycleState::Ready;
            let spec = &w.groups[i.group];
            let in_flight = crate::model::InFlight::Known(i.in_flight.len() as u32);
            nodes.push(Node {
                name: format!("sim-{}", i.id),
                capacity_type: spec.capacity_type,
                serving_ready: ready && matches!(i.serve, Serve::On | Serve::Draining),
                cordoned: matches!(i.serve, Serve::Draining) || (ready && i.serve == Serve::Off),
                ..Node::vm(inst, self.pool.clone(), in_flight)
            });
        }
        Ok(ClusterView {
            nodes,
            pending_pods: Vec::new(),
        })
    }

    async fn drain(
        &mut self,
        instance: &Instance,
        _deadline: Timestamp,
        _now: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        let mut w = lock(&self.world);
        match w.stop_routing(&instance.id) {
            // Gone already: nothing left to drain.
            None | Some(0) => Ok(DrainProgress::Drained),
            Some(n) => Ok(DrainProgress::InProgress { remaining: n }),
        }
    }
}

pub struct SimDemand {
    world: SharedWorld,
    scrape_ms: i64,
    /// Each pool's queue signals (the scenario's; the production config has none).
    signals: BTreeMap<PoolName, Vec<SimSignal>>,
    /// Per-pool forecasters, fed and read through the same code as production's
    /// `SignalDemand`, so forecasting behaves here exactly as it does live.
    forecasts: PoolForecasts,
    /// The trace's requests before the replay (arrivals before 0), sorted by arrival: the
    /// past `demand_history` reads.
    history: std::sync::Arc<Vec<super::world::Req>>,
}

impl SimDemand {
    /// `scrape_ms`: the Prometheus scrape interval (see `SignalSim::scrape_ms`); `signals`:
    /// each pool's queue signals (`Scenario::sim_signals`).
    pub fn new(
        world: SharedWorld,
        scrape_ms: i64,
        signals: BTreeMap<PoolName, Vec<SimSignal>>,
    ) -> Self {
        SimDemand {
            world,
            scrape_ms,
            signals,
            forecasts: PoolForecasts::default(),
            history: Default::default(),
        }
    }

    /// The trace's requests before the replay (`workload::history_requests`), for the SLO
    /// learner's backfill.
    pub fn with_history(mut self, history: std::sync::Arc<Vec<super::world::Req>>) -> Self {
        self.history = history;
        self
    }

    /// The pool's forecaster, if the pool has been read with forecasting enabled.
    pub fn forecaster(&self, pool: &PoolName) -> Option<&Forecaster> {
        self.forecasts.get(pool)
    }
}

/// Little's law over the rate window ending at `now`: arrivals per second × mean service time
/// (s) of the requests completed in the window = concurrent requests the traffic needs. `None`
/// when the window holds no two samples or no completion yet (nothing to estimate from).
pub fn offered_load(now: &Sample, before: &Sample) -> Option<f64> {
    let dt_s = now.t_s - before.t_s;
    if dt_s <= 0.0 {
        return None;
    }
    let arrivals = now.arrived_total.saturating_sub(before.arrived_total) as f64;
    let done = now.completed_total.saturating_sub(before.completed_total);
    // No completion in the window (long requests, or nothing served yet): fall back to the
    // mean over everything completed so far, as `..._sum / ..._count` without `rate()` would.
    let mean_service_s = if done > 0 {
        now.completed_service_ms_total
            .saturating_sub(before.completed_service_ms_total) as f64
            / done as f64
            / 1000.0
    } else if now.completed_total > 0 {
        now.completed_service_ms_total as f64 / now.completed_total as f64 / 1000.0
    } else {
        return None;
    };
    Some(arrivals / dt_s * mean_service_s)
}

/// What one simulator queue signal would have read at `t_ms` (before the replay) had the
/// service met its demand — every request served on arrival, none waiting: the queue signal
/// counts the requests in service (none without `include_in_flight`: nothing waits), the
/// offered load is Little's law over the rate window (arrivals × their mean service time ÷ the
/// window). `None` before the past's first request could have been seen: the trace's past
/// is only known from its first request on (`from_ms`).
/// `longest_ms`: the longest service time in `past` (how far back a request may still run).
fn past_value(
    q: &SimQueueSignal,
    past: &[super::world::Req],
    (from_ms, longest_ms): (i64, i64),
    t_ms: i64,
) -> Option<f64> {
    if t_ms < from_ms {
        return None;
    }
    // Requests are sorted by arrival; those arriving after t are not seen yet.
    let upto = past.partition_point(|r| r.arrival_ms <= t_ms);
    let seen = &past[..upto];
    match q.metric {
        SimQueueMetric::Queue if !q.include_in_flight => Some(0.0),
        SimQueueMetric::Queue => Some(
            seen.iter()
                .rev()
                .take_while(|r| r.arrival_ms + longest_ms > t_ms)
                .filter(|r| r.arrival_ms + r.service_ms > t_ms)
                .count() as f64,
        ),
        SimQueueMetric::OfferedLoad => {
            let window_ms = (q.window_s * 1000.0).max(1.0) as i64;
            if t_ms - window_ms < from_ms {
                return None;
            }
            let lo = seen.partition_point(|r| r.arrival_ms <= t_ms - window_ms);
            let service_ms: i64 = seen[lo..].iter().map(|r| r.service_ms).sum();
            Some(service_ms as f64 / window_ms as f64)
        }
    }
}

/// The value one simulator queue signal reads at the scrape `smp` (`before` is the sample one
/// rate window earlier), `None` when it cannot be computed.
fn signal_value(q: &SimQueueSignal, smp: &Sample, before: Option<&Sample>) -> Option<f64> {
    match q.metric {
        SimQueueMetric::Queue => Some(
            f64::from(smp.waiting)
                + if q.include_in_flight {
                    f64::from(smp.in_flight)
                } else {
                    0.0
                },
        ),
        SimQueueMetric::OfferedLoad => before.and_then(|b| offered_load(smp, b)),
    }
}

#[async_trait]
impl DemandSource for SimDemand {
    /// The replicas the pool's queue signals would have asked for over the trace's past, read
    /// as if the service had met its demand (see [`past_value`]), with production's KEDA
    /// arithmetic and the largest signal winning, as in `read`. A live Prometheus holds what
    /// the previous autoscaler's fleet made of the queue; the trace only says what arrived, so
    /// this is the demand a well-served past shows. Nothing when the replay starts at the
    /// trace's start.
    async fn demand_history(
        &mut self,
        _config: &Config,
        pool: &crate::config::PoolConfig,
        window: crate::planner::headroom::BackfillWindow,
    ) -> Vec<(Timestamp, u32)> {
        let (Some(signals), Some(first)) = (self.signals.get(&pool.name), self.history.first())
        else {
            return Vec::new();
        };
        if signals.is_empty() {
            return Vec::new();
        }
        let past = self.history.as_slice();
        let span = (
            first.arrival_ms,
            past.iter().map(|r| r.service_ms).max().unwrap_or(0),
        );
        window
            .times()
            .filter(|t| t.millis() < 0)
            .filter_map(|t| {
                let mut wanted: Option<u32> = None;
                for s in signals {
                    let q = &s.queue;
                    let v = past_value(q, past, span, t.millis())?;
                    let r = keda::replicas(v, q.target_per_replica, q.activation)?;
                    wanted = Some(wanted.map_or(r, |w| w.max(r)));
                }
                wanted.map(|w| (t, w))
            })
            .collect()
    }

    async fn read(&mut self, config: &Config, now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        let w = lock(&self.world);
        // The last scrape at or before now.
        let scrape_at = last_scrape_ms(now.millis(), self.scrape_ms);
        let sample = w.sample_at(scrape_at);
        // Forget pools removed from the config, as production does.
        self.forecasts.forget_removed(config);
        let mut out = BTreeMap::new();
        for pool in &config.pools {
            let signals = self.signals.get(&pool.name).map_or(&[][..], Vec::as_slice);
            let mut readings = Vec::with_capacity(signals.len() + 3);
            for s in signals {
                let q = &s.queue;
                let scraped = sample.and_then(|smp| {
                    let before = w.sample_at(scrape_at - (q.window_s * 1000.0) as i64);
                    signal_value(q, smp, before).map(|value| Scrape {
                        value,
                        at: Timestamp::from_secs_f64(smp.t_s),
                    })
                });
                // Production's reading and KEDA arithmetic; a scrape is never too old here.
                let (target, activation) = (q.target_per_replica, q.activation);
                readings.push(reading(
                    s.name.clone(),
                    Ok(scraped),
                    now,
                    std::time::Duration::MAX,
                    |v| keda::replicas(v, target, activation),
                ));
            }
            if let Some(smp) = sample {
                for (name, v) in [
                    ("sim:waiting", f64::from(smp.waiting)),
                    ("sim:in_flight", f64::from(smp.in_flight)),
                    ("sim:queue_wait_p95_s", smp.queue_wait_p95_s),
                ] {
                    readings.push(SignalReading {
                        name: name.into(),
                        value: Some(v),
                        replicas: None,
                        stale: false,
                        observed_at: Some(Timestamp::from_secs_f64(smp.t_s)),
                    });
                }
            }
            let mut d = self.forecasts.pool_demand(pool, readings, now);
            if let (Some(slo), Some(smp)) = (&pool.slo, sample) {
                let h =
                    crate::planner::headroom::Horizons::of(pool, config.tick_interval.as_secs());
                d.slo_attainment = attainment_window(slo, smp, h.cold_s, |t_ms| w.sample_at(t_ms));
            }
            d.request_duration = sample.and_then(request_duration);
            out.insert(pool.name.clone(), d);
        }
        out
    }
}

/// The longest request a scrape saw completed in the last hour, as production reads it
/// (`RequestDuration::measured`: the same plausibility rule), `None` before any completed.
pub fn request_duration(smp: &Sample) -> Option<crate::model::RequestDuration> {
    let ms = smp.longest_done_ms?;
    crate::model::RequestDuration::measured(
        ms as f64 / 1000.0,
        (super::world::LONGEST_WINDOW_MS / 1000) as u64,
    )
}

/// Longest window the simulator's attainment measurement looks back over.
pub const MAX_ATTAINMENT_WINDOW_S: f64 = 3600.0;

/// The attainment over the shortest window — `step_s` (the pool's cold-start horizon: the
/// time a change of headroom takes to show) doubled until it holds enough requests to tell
/// (see [`measured_attainment`]), at most [`MAX_ATTAINMENT_WINDOW_S`]; `None` when even the
/// longest holds too few. Doubling keeps it to a few look-ups per tick on quiet nights.
pub fn attainment_window<'s>(
    slo: &crate::config::SloPolicy,
    now: &Sample,
    step_s: f64,
    sample_at: impl Fn(i64) -> Option<&'s Sample>,
) -> Option<crate::model::Attainment> {
    let step_s = step_s.max(1.0);
    let mut window_s = step_s;
    while window_s <= MAX_ATTAINMENT_WINDOW_S {
        let before = sample_at(((now.t_s - window_s) * 1000.0).round() as i64)?;
        if let Some(fraction) = measured_attainment(slo, now, before) {
            return Some(crate::model::Attainment { fraction, window_s });
        }
        if before.t_s <= 0.0 {
            return None;
        }
        if window_s >= MAX_ATTAINMENT_WINDOW_S {
            return None;
        }
        window_s = (window_s * 2.0).min(MAX_ATTAINMENT_WINDOW_S);
    }
    None
}

/// The attainment a Prometheus query over the simulated queue-time histogram returns between
/// two scrapes: `increase(bucket{le=L}) / increase(count)`, with `L` the largest bucket bound
/// at or below `slo.queue_wait_s` (a conservative reading when the SLO falls between bounds).
/// Unknown (`None`) when no bound fits or fewer requests started than it takes to see one
/// miss in the target (`1 / (1 − attainment)`, 100 for 0.99): a handful of requests says
/// nothing about a 1 % tail.
pub fn measured_attainment(
    slo: &crate::config::SloPolicy,
    now: &Sample,
    before: &Sample,
) -> Option<f64> {
    let b = slo_bucket(slo.queue_wait_s)?;
    let started = now.started_total.saturating_sub(before.started_total);
    if started == 0 || !crate::planner::headroom::enough_requests(slo, started as f64) {
        return None;
    }
    let met = now.started_wait_le[b].saturating_sub(before.started_wait_le[b]);
    Some(met as f64 / started as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keda_arithmetic() {
        // The simulator's queue signals use production's KEDA arithmetic.
        assert_eq!(keda::replicas(0.0, 4.0, 0.0), Some(0));
        assert_eq!(keda::replicas(1.0, 4.0, 0.0), Some(1));
        assert_eq!(keda::replicas(9.0, 4.0, 0.0), Some(3));
        assert_eq!(keda::replicas(2.0, 4.0, 2.0), Some(0));
    }

    fn sample(t_s: f64, arrived: u64, completed: u64, service_ms: u64) -> Sample {
        Sample {
            t_s,
            arrived_total: arrived,
            completed_total: completed,
            completed_service_ms_total: service_ms,
            ..Sample::default()
        }
    }

    #[test]
    fn offered_load_is_littles_law_over_the_window() {
        // 120 arrivals in 60 s = 2 req/s; 10 completions of 3 s each = 3 s mean: 6 in service.
        let v = offered_load(
            &sample(160.0, 220, 60, 150_000),
            &sample(100.0, 100, 50, 120_000),
        );
        assert_eq!(v, Some(6.0));
        // No completion in the window: the mean over all completions so far (4 s).
        let v = offered_load(
            &sample(160.0, 160, 10, 40_000),
            &sample(100.0, 100, 10, 40_000),
        );
        assert_eq!(v, Some(4.0));
        // Nothing completed yet, or no window: unknown, not zero.
        assert_eq!(
            offered_load(&sample(60.0, 50, 0, 0), &sample(0.0, 0, 0, 0)),
            None
        );
        assert_eq!(
            offered_load(&sample(0.0, 5, 1, 10), &sample(0.0, 5, 1, 10)),
            None
        );
    }

    #[test]
    fn attainment_from_the_queue_wait_histogram() {
        let slo = |wait: f64| crate::config::SloPolicy {
            queue_wait_s: wait,
            attainment: 0.99,
            attainment_query: None,
        };
        let smp = |started: u64, le_1s: u64| {
            let mut s = Sample {
                started_total: started,
                ..Sample::default()
            };
            s.started_wait_le[2] = le_1s; // le = 1.0
            s.started_wait_le[1] = le_1s / 2; // le = 0.5
            s
        };
        let before = smp(1000, 990);
        // 200 started in the window, 196 within 1 s.
        assert_eq!(
            measured_attainment(&slo(1.0), &smp(1200, 1186), &before),
            Some(0.98)
        );
        // 1.5 s falls between bounds: read at le = 1.0 (conservative).
        assert_eq!(
            measured_attainment(&slo(1.5), &smp(1200, 1186), &before),
            Some(0.98)
        );
        // Too few requests to see a 1 % tail, or a bound below every bucket: unknown.
        assert_eq!(
            measured_attainment(&slo(1.0), &smp(1050, 1040), &before),
            None
        );
        assert_eq!(
            measured_attainment(&slo(0.1), &smp(1200, 1186), &before),
            None
        );
    }

    #[test]
    fn the_window_doubles_until_it_holds_enough_requests() {
        let slo = crate::config::SloPolicy {
            queue_wait_s: 1.0,
            attainment: 0.99,
            attainment_query: None,
        };
        // One sample a minute over two hours; `rate` requests start a minute, 1 in 50 late.
        let samples = |rate: u64| -> Vec<Sample> {
            (0..=120u64)
                .map(|m| {
                    let mut s = Sample {
                        t_s: (m * 60) as f64,
                        started_total: m * rate,
                        ..Sample::default()
                    };
                    s.started_wait_le[2] = m * rate - m * rate / 50;
                    s
                })
                .collect()
        };
        let run = |rate: u64| {
            let v = samples(rate);
            attainment_window(&slo, &v[120], 120.0, |t_ms| {
                let i = v.partition_point(|s| s.t_s * 1000.0 <= t_ms as f64);
                i.checked_sub(1).map(|i| &v[i])
            })
        };
        // 100 a minute: the first window (2 min) holds 200.
        let a = run(100).unwrap();
        assert_eq!(a.window_s, 120.0);
        assert!((a.fraction - 0.98).abs() < 1e-9);
        // 10 a minute: 2, 4, 8 … until 16 min hold 160.
        assert_eq!(run(10).unwrap().window_s, 960.0);
        // 1 a minute: not 100 within the hour: unknown.
        assert_eq!(run(1), None);
    }

    #[test]
    fn backlog_moves_the_queue_metric_but_not_the_offered_load() {
        let q = |metric| SimQueueSignal {
            target_per_replica: 6.0,
            activation: 0.0,
            include_in_flight: true,
            metric,
            window_s: 60.0,
        };
        let before = sample(0.0, 0, 0, 0);
        let mut now = sample(60.0, 120, 10, 30_000);
        now.in_flight = 8;
        now.waiting = 100;
        assert_eq!(
            signal_value(&q(SimQueueMetric::Queue), &now, None),
            Some(108.0)
        );
        assert_eq!(
            signal_value(&q(SimQueueMetric::OfferedLoad), &now, Some(&before)),
            Some(6.0)
        );
    }

    #[test]
    fn the_past_reads_as_a_service_that_met_its_demand() {
        use super::super::world::Req;
        let sig = |metric, include_in_flight| SimQueueSignal {
            target_per_replica: 2.0,
            activation: 0.0,
            include_in_flight,
            metric,
            window_s: 60.0,
        };
        // Four requests of 30 s arriving at −100 s, −90 s, −80 s and −20 s.
        let past: Vec<Req> = [-100_000, -90_000, -80_000, -20_000]
            .into_iter()
            .map(|at| Req::new(at, 30_000, 1_000))
            .collect();
        let span = (-100_000, 30_000);
        let at = |q: &SimQueueSignal, t_ms| past_value(q, &past, span, t_ms);
        let queue = sig(SimQueueMetric::Queue, true);
        // At −75 s three run; at −10 s one; before the first request the past is unknown.
        assert_eq!(at(&queue, -75_000), Some(3.0));
        assert_eq!(at(&queue, -10_000), Some(1.0));
        assert_eq!(at(&queue, -101_000), None);
        // Waiting only: nothing waits in a past that met its demand (known, zero).
        assert_eq!(at(&sig(SimQueueMetric::Queue, false), -75_000), Some(0.0));
        // Offered load over the 60 s before −35 s: two arrivals × 30 s ÷ 60 s; before −30 s,
        // one. Known once a whole window of the past is.
        let load = sig(SimQueueMetric::OfferedLoad, true);
        assert_eq!(at(&load, -35_000), Some(1.0));
        assert_eq!(at(&load, -30_000), Some(0.5));
        assert_eq!(at(&load, -50_000), None);

        // Through `demand_history`: one point per step, KEDA arithmetic, the larger signal.
        let config = Config::load("pools:\n  - name: p\n    requirements: {}\n").unwrap();
        let pool = config.pools[0].clone();
        let signals = BTreeMap::from([(
            pool.name.clone(),
            vec![
                SimSignal {
                    name: "queue".into(),
                    queue,
                },
                SimSignal {
                    name: "load".into(),
                    queue: load,
                },
            ],
        )]);
        let params = crate::sim::world::WorldParams {
            concurrency: 2,
            cold: crate::sim::timing::ColdStart::new(Default::default()),
            spot_notice_s: 120.0,
            spot: crate::sim::world::SpotDynamics::Hazard,
            faults: Default::default(),
            sample_interval_s: 5.0,
            model_cache: None,
            seed: 1,
            cloud: Default::default(),
        };
        let world = std::sync::Arc::new(std::sync::Mutex::new(crate::sim::world::World::new(
            params,
            Vec::new(),
            Vec::new(),
            0,
        )));
        let mut demand = SimDemand::new(world, 15_000, signals).with_history(past.clone().into());
        let window = crate::planner::headroom::BackfillWindow {
            from: Timestamp::from_secs(-120),
            to: Timestamp::from_secs(0),
            step: std::time::Duration::from_secs(10),
        };
        let points = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(demand.demand_history(&config, &pool, window));
        // Until −40 s the load's window reaches before the first request (unknown); from then
        // on the larger of queue (0 or 1 running → 0 or 1) and load (0.5–1.0 → 1) is 1.
        let ts = |v: &[(i64, u32)]| {
            v.iter()
                .map(|&(s, r)| (Timestamp::from_secs(s), r))
                .collect::<Vec<_>>()
        };
        assert_eq!(points, ts(&[(-40, 1), (-30, 1), (-20, 1), (-10, 1)]));
    }
}
