//! Per-policy summary figures, the rows of the table and of `--json`.

use super::world::{CallRecord, Sample, World};
use crate::model::{NodeGroupId, Zone};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicySummary {
    pub policy: String,
    pub requests: u64,
    /// Fraction of requests whose queue wait met the SLO.
    pub slo_attainment: f64,
    pub queue_wait_p50_s: f64,
    pub queue_wait_p99_s: f64,
    pub queue_wait_p999_s: f64,
    pub gpu_hours: f64,
    pub idle_gpu_hours: f64,
    pub cost_usd: f64,
    pub spot_cost_usd: f64,
    pub on_demand_cost_usd: f64,
    /// Cost ÷ the oracle's cost; `None` when the oracle failed (or costs nothing).
    pub cost_vs_oracle: Option<f64>,
    pub scale_actions: u64,
    pub requests_hurt_by_preemption: u64,
    /// Spot usage the cloud did not bill (already off `spot_cost_usd`): AWS charges nothing for
    /// a spot instance it reclaims within its first hour.
    #[serde(default)]
    pub spot_refunded_usd: f64,
    /// Reclaimed group members the cloud replaced by itself (desired capacity unchanged); a
    /// replacement it could not launch is held as a failed launch.
    #[serde(default)]
    pub reclaim_replacements: u64,
    /// Requests whose instance was terminated under them by the policy itself (not a spot
    /// reclaim): cut short by a scale-in that did not wait for them.
    pub requests_cut_short: u64,
    /// Median seconds from a demand rise above serving capacity to the first scale-up call.
    pub reaction_to_api_s_p50: f64,
    /// Median seconds from that rise until serving capacity met it.
    pub reaction_to_ready_s_p50: f64,
    /// Launches the cloud accepted and then reported it could not fulfil (or, never reported,
    /// that the controller took back as timed out).
    pub failed_launches: u64,
    /// Of those, how many saw no successful launch on another offering of the pool before the
    /// pool tried the failed offering again (no fallback).
    pub failed_launches_without_fallback: u64,
    /// Seconds from a failed launch being reported to the first successful launch on another
    /// offering of the same pool (the fallback, see [`fallback_times`]): median and max over
    /// the failures that had one; `None` when none had.
    pub failure_to_fallback_s_p50: Option<f64>,
    pub failure_to_fallback_s_max: Option<f64>,
    /// Where the run spent the SLO's error budget (see [`error_budget`]).
    pub error_budget: ErrorBudget,
}

/// Where a run spent the SLO's error budget: the requests that waited past the SLO, by when
/// they arrived. A replay can miss its target in one stretch (a burst before anything was
/// learnt) or spread over all of it; the attainment alone does not say which.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorBudget {
    /// Requests the target lets wait past the SLO: ⌊(1 − attainment) × requests⌋ (88 of 8,819
    /// at 99 %).
    pub budget: u64,
    /// Requests that waited past the SLO.
    pub misses: u64,
    /// Seconds into the replay at which the request that overspent the budget arrived (the
    /// miss after the budget's last, by arrival); `None` while the misses fit in it.
    pub spent_at_s: Option<f64>,
    /// Start (seconds into the replay) of the minute whose arrivals missed most, and how many
    /// did; `None` and 0 with no miss.
    pub worst_minute_s: Option<f64>,
    pub worst_minute_misses: u64,
}

/// The [`ErrorBudget`] of `requests` requests at an SLO `target` (0.99), given the arrival
/// times (s into the replay, sorted) of those that waited past the SLO.
pub fn error_budget(miss_arrivals_s: &[f64], requests: u64, target: f64) -> ErrorBudget {
    // The budget is a whole number of requests: attainment ≥ target ⇔ misses ≤ it. The 1e-9
    // keeps 0.01 × 1,000 at 10 where binary floating point gives 9.999….
    let budget = ((1.0 - target).clamp(0.0, 1.0) * requests as f64 + 1e-9).floor() as u64;
    let misses = miss_arrivals_s.len() as u64;
    let mut worst: Option<(f64, u64)> = None;
    let mut i = 0;
    while i < miss_arrivals_s.len() {
        let minute = (miss_arrivals_s[i] / 60.0).floor();
        let n = miss_arrivals_s[i..].partition_point(|t| (t / 60.0).floor() <= minute);
        // The earliest minute wins a tie: the first stretch that cost the most.
        if worst.is_none_or(|(_, m)| n as u64 > m) {
            worst = Some((minute * 60.0, n as u64));
        }
        i += n;
    }
    ErrorBudget {
        budget,
        misses,
        spent_at_s: miss_arrivals_s.get(budget as usize).copied(),
        worst_minute_s: worst.map(|(t, _)| t),
        worst_minute_misses: worst.map_or(0, |(_, n)| n),
    }
}

/// A finished world's queue waits, read once for the summary, the CDF and the error-budget
/// chart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Waits {
    /// Every request's queue wait (s), sorted.
    pub sorted_s: Vec<f64>,
    /// Arrival times (s into the replay, sorted) of the requests that waited past the SLO.
    pub miss_arrivals_s: Vec<f64>,
}

impl Waits {
    pub fn of(w: &World, slo_s: f64) -> Waits {
        let mut sorted_s: Vec<f64> = w.reqs.iter().map(|r| r.waited_ms as f64 / 1000.0).collect();
        sorted_s.sort_by(f64::total_cmp);
        let mut miss_arrivals_s: Vec<f64> = w
            .reqs
            .iter()
            .filter(|r| r.waited_ms as f64 / 1000.0 > slo_s + 1e-9)
            .map(|r| r.arrival_ms as f64 / 1000.0)
            .collect();
        miss_arrivals_s.sort_by(f64::total_cmp);
        Waits {
            sorted_s,
            miss_arrivals_s,
        }
    }
}

/// Nearest-rank quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Summarise a finished world (after `World::finish`).
pub fn summarise(
    policy: &str,
    w: &World,
    waits: &Waits,
    target: f64,
    demand: &[u32],
    bucket_ms: i64,
) -> PolicySummary {
    let n = waits.sorted_s.len();
    let met = n - waits.miss_arrivals_s.len();
    let gpu_hours = w.gpu_ms / 3_600_000.0;
    let busy = w.busy_gpu_ms / 3_600_000.0;
    let (api, ready) = reaction_times(w, demand, bucket_ms);
    let fb = fallback_times(w);
    PolicySummary {
        policy: policy.to_owned(),
        requests: n as u64,
        slo_attainment: if n == 0 { 1.0 } else { met as f64 / n as f64 },
        queue_wait_p50_s: quantile(&waits.sorted_s, 0.5),
        queue_wait_p99_s: quantile(&waits.sorted_s, 0.99),
        queue_wait_p999_s: quantile(&waits.sorted_s, 0.999),
        gpu_hours,
        idle_gpu_hours: (gpu_hours - busy).max(0.0),
        cost_usd: w.cost_on_demand + w.cost_spot,
        spot_cost_usd: w.cost_spot,
        on_demand_cost_usd: w.cost_on_demand,
        cost_vs_oracle: None,
        scale_actions: w.calls.iter().filter(|c| c.ok).count() as u64,
        requests_hurt_by_preemption: u64::from(w.requests_hurt),
        spot_refunded_usd: w.spot_refunded,
        reclaim_replacements: u64::from(w.reclaim_replacements),
        requests_cut_short: u64::from(w.requests_cut_short),
        reaction_to_api_s_p50: quantile(&api, 0.5),
        reaction_to_ready_s_p50: quantile(&ready, 0.5),
        failed_launches: fb.failed,
        failed_launches_without_fallback: fb.without_fallback,
        failure_to_fallback_s_p50: (!fb.secs.is_empty()).then(|| quantile(&fb.secs, 0.5)),
        failure_to_fallback_s_max: fb.secs.last().copied(),
        error_budget: error_budget(&waits.miss_arrivals_s, n as u64, target),
    }
}

/// Failed launches and the time from each one's report to its fallback.
#[derive(Debug, Default, PartialEq)]
pub struct FallbackTimes {
    pub failed: u64,
    pub without_fallback: u64,
    /// Sorted seconds from report to fallback.
    pub secs: Vec<f64>,
}

/// For every launch failure the controller could know of — reported by the cloud, or (never
/// reported, `stockout_mode: silent`) taken back by the controller after its launch timeout —
/// seconds from that moment to the first launch of the same pool that put capacity on its way
/// on another offering (another group, or the same group in another zone), made before the
/// pool tried the failed offering again. A failure followed by nothing, or answered by trying
/// the same offering again after its backoff, had no fallback and is counted apart. A launch
/// that was itself not fulfilled does not count (it is not in `World::launches`), nor does the
/// cloud's own retry of the failed request.
pub fn fallback_times(w: &World) -> FallbackTimes {
    let mut out = FallbackTimes::default();
    let pool_of = |g: &NodeGroupId| w.groups.iter().find(|x| &x.id == g).map(|x| &x.pool);
    for f in &w.failed_launches {
        let Some(reported) = f.reported_ms.or(f.released_ms) else {
            continue;
        };
        out.failed += 1;
        let pool = pool_of(&f.group);
        let same = |g: &NodeGroupId, z: &Zone| g == &f.group && z == &f.zone;
        // The pool's next attempt on the failed offering, fulfilled or not.
        let retried = w
            .launches
            .iter()
            .filter(|l| l.at_ms > reported && same(&l.group, &l.zone))
            .map(|l| l.at_ms)
            .chain(
                w.failed_launches
                    .iter()
                    .filter(|g| g.accepted_ms > reported && same(&g.group, &g.zone))
                    .map(|g| g.accepted_ms),
            )
            .min()
            .unwrap_or(i64::MAX);
        let fallback = w.launches.iter().find(|l| {
            l.at_ms >= reported
                && l.at_ms < retried
                && !same(&l.group, &l.zone)
                && pool_of(&l.group) == pool
        });
        match fallback {
            Some(l) => out.secs.push((l.at_ms - reported) as f64 / 1000.0),
            None => out.without_fallback += 1,
        }
    }
    sort(&mut out.secs);
    out
}

/// Episodes where the bucket's demand rose above the replicas serving: seconds to the first
/// scale-up call (a call made up to one bucket before the rise counts as 0: it anticipated it)
/// and seconds until serving replicas reached the demand.
fn reaction_times(w: &World, demand: &[u32], bucket_ms: i64) -> (Vec<f64>, Vec<f64>) {
    reaction_times_of(&w.samples, &w.calls, demand, bucket_ms)
}

/// [`reaction_times`] from a run's samples and calls (what a `PolicyRun` keeps), sorted: the
/// report tells "no such episode" apart from a reaction of 0 s.
pub fn reaction_times_of(
    samples: &[Sample],
    calls: &[CallRecord],
    demand: &[u32],
    bucket_ms: i64,
) -> (Vec<f64>, Vec<f64>) {
    let ups: Vec<i64> = calls
        .iter()
        .filter(|c| c.ok && c.call == "increase")
        .map(|c| c.at_ms)
        .collect();
    let mut api = Vec::new();
    let mut ready = Vec::new();
    let mut open: Option<(i64, u32)> = None;
    for s in samples {
        let t = (s.t_s * 1000.0) as i64;
        let b = (t / bucket_ms.max(1)) as usize;
        let d = demand.get(b).copied().unwrap_or(0);
        match open {
            None if d > s.serving => {
                open = Some((t, d));
                let first = ups.iter().find(|&&u| u >= t - bucket_ms);
                if let Some(u) = first {
                    api.push(((u - t) as f64 / 1000.0).max(0.0));
                }
            }
            Some((t0, target)) if s.serving >= target => {
                ready.push((t - t0) as f64 / 1000.0);
                open = None;
            }
            _ => {}
        }
    }
    sort(&mut api);
    sort(&mut ready);
    (api, ready)
}

fn sort(v: &mut [f64]) {
    v.sort_by(f64::total_cmp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_budget_says_when_it_was_spent_and_the_worst_minute() {
        // 1,000 requests at 99 %: 10 may miss.
        let none = error_budget(&[], 1000, 0.99);
        assert_eq!((none.budget, none.misses, none.spent_at_s), (10, 0, None));
        assert_eq!((none.worst_minute_s, none.worst_minute_misses), (None, 0));
        // Ten misses fit; the worst minute is still named.
        let mut ten: Vec<f64> = (0..8).map(|i| 200.0 + f64::from(i)).collect();
        ten.extend([250.0, 260.0]);
        let fit = error_budget(&ten, 1000, 0.99);
        assert_eq!((fit.misses, fit.spent_at_s), (10, None));
        assert_eq!(
            (fit.worst_minute_s, fit.worst_minute_misses),
            (Some(180.0), 8)
        );
        // The eleventh miss (by arrival) overspends: it arrived at 700 s. The worst minute is
        // 180–240 s (8 misses) over 240–300 s (2) and 660–720 s (1).
        let mut eleven = ten.clone();
        eleven.push(700.0);
        let over = error_budget(&eleven, 1000, 0.99);
        assert_eq!((over.misses, over.spent_at_s), (11, Some(700.0)));
        assert_eq!(
            (over.worst_minute_s, over.worst_minute_misses),
            (Some(180.0), 8)
        );
        // Ties go to the earliest minute; a target of 100 % has no budget at all.
        let tie = error_budget(&[10.0, 70.0], 10, 1.0);
        assert_eq!((tie.budget, tie.spent_at_s), (0, Some(10.0)));
        assert_eq!(
            (tie.worst_minute_s, tie.worst_minute_misses),
            (Some(0.0), 1)
        );
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 500.0);
        assert_eq!(quantile(&v, 0.99), 990.0);
        assert_eq!(quantile(&v, 0.999), 999.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn fallback_is_the_first_launch_elsewhere_before_the_offering_is_tried_again() {
        use crate::model::{CapacityType, GpuInfo, InstanceType, InstanceTypeName, PoolName};
        use crate::sim::timing::{ColdStart, ColdStartSpec};
        use crate::sim::world::{
            Cloud, FailedLaunch, Faults, GroupSpec, LaunchRecord, SpotDynamics, StockoutCause,
            WorldParams,
        };
        let group = |id: &str, ct| GroupSpec {
            id: NodeGroupId::from(id),
            pool: PoolName::from("p"),
            capacity_type: ct,
            instance_type: InstanceType {
                name: InstanceTypeName::from("t"),
                vcpu: 1,
                memory_mib: 1,
                gpu: GpuInfo {
                    model: "T4".into(),
                    count: 1,
                    memory_mib_per_gpu: 1,
                    mig_profiles: vec![],
                },
            },
            zones: vec![Zone::from("a"), Zone::from("b")],
            price_per_hour: 1.0,
            min_size: 0,
            max_size: 10,
            warm_pool_capable: false,
            hazard_per_hour: 0.0,
        };
        let params = WorldParams {
            concurrency: 1,
            cold: ColdStart::new(ColdStartSpec::default()),
            spot_notice_s: 120.0,
            spot: SpotDynamics::Hazard,
            faults: Faults::default(),
            sample_interval_s: 5.0,
            model_cache: None,
            seed: 1,
            cloud: Cloud::Aws,
        };
        let mut w = World::new(
            params,
            vec![
                group("spot", CapacityType::Spot),
                group("od", CapacityType::OnDemand),
            ],
            Vec::new(),
            1_000_000,
        );
        let failed = |zone: &str, accepted_ms, reported_ms| FailedLaunch {
            group: NodeGroupId::from("spot"),
            zone: Zone::from(zone),
            cause: StockoutCause::NoCapacity,
            accepted_ms,
            reported_ms,
            released_ms: None,
            recovered_ms: None,
        };
        let launch = |g: &str, zone: &str, at_ms| LaunchRecord {
            at_ms,
            group: NodeGroupId::from(g),
            zone: Zone::from(zone),
            instances: 1,
        };
        w.failed_launches = vec![
            // Fell back to on-demand 10 s after the report.
            failed("a", 0, Some(30_000)),
            // Tried spot/a again (at 100 s) before anything else: no fallback.
            failed("a", 50_000, Some(90_000)),
            // Never reported: not counted.
            failed("b", 60_000, None),
        ];
        w.launches = vec![
            launch("spot", "a", 20_000),
            launch("od", "a", 40_000),
            launch("spot", "a", 100_000),
            launch("od", "b", 200_000),
        ];
        let fb = fallback_times(&w);
        assert_eq!(
            fb,
            FallbackTimes {
                failed: 2,
                without_fallback: 1,
                secs: vec![10.0],
            }
        );
    }
}
