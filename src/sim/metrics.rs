//! Per-policy summary figures, the rows of the table and of `--json`.

use super::world::World;
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
    pub cost_vs_oracle: f64,
    pub scale_actions: u64,
    pub requests_hurt_by_preemption: u64,
    /// Median seconds from a demand rise above serving capacity to the first scale-up call.
    pub reaction_to_api_s_p50: f64,
    /// Median seconds from that rise until serving capacity met it.
    pub reaction_to_ready_s_p50: f64,
    /// Launches the cloud accepted and then reported it could not fulfil (or, never reported,
    /// that the controller took back as timed out).
    pub failed_launches: u64,
    /// Of those, how many saw no successful launch on another group of the pool afterwards.
    pub failed_launches_without_fallback: u64,
    /// Seconds from a failed launch being reported to the first successful launch on another
    /// group of the same pool (the fallback): median and max over the failures that had one;
    /// `None` when none had.
    pub failure_to_fallback_s_p50: Option<f64>,
    pub failure_to_fallback_s_max: Option<f64>,
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
    slo_s: f64,
    demand: &[u32],
    bucket_ms: i64,
) -> PolicySummary {
    let mut waits: Vec<f64> = w.reqs.iter().map(|r| r.waited_ms as f64 / 1000.0).collect();
    waits.sort_by(f64::total_cmp);
    let n = waits.len();
    let met = waits.iter().filter(|x| **x <= slo_s + 1e-9).count();
    let gpu_hours = w.gpu_ms / 3_600_000.0;
    let busy = w.busy_gpu_ms / 3_600_000.0;
    let (api, ready) = reaction_times(w, demand, bucket_ms);
    let fb = fallback_times(w);
    PolicySummary {
        policy: policy.to_owned(),
        requests: n as u64,
        slo_attainment: if n == 0 { 1.0 } else { met as f64 / n as f64 },
        queue_wait_p50_s: quantile(&waits, 0.5),
        queue_wait_p99_s: quantile(&waits, 0.99),
        queue_wait_p999_s: quantile(&waits, 0.999),
        gpu_hours,
        idle_gpu_hours: (gpu_hours - busy).max(0.0),
        cost_usd: w.cost_on_demand + w.cost_spot,
        spot_cost_usd: w.cost_spot,
        on_demand_cost_usd: w.cost_on_demand,
        cost_vs_oracle: 0.0,
        scale_actions: w.calls.iter().filter(|c| c.ok).count() as u64,
        requests_hurt_by_preemption: u64::from(w.requests_hurt),
        reaction_to_api_s_p50: quantile(&api, 0.5),
        reaction_to_ready_s_p50: quantile(&ready, 0.5),
        failed_launches: fb.failed,
        failed_launches_without_fallback: fb.without_fallback,
        failure_to_fallback_s_p50: (!fb.secs.is_empty()).then(|| quantile(&fb.secs, 0.5)),
        failure_to_fallback_s_max: fb.secs.last().copied(),
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
/// seconds from that moment to the first launch that put capacity on its way in another group
/// of the same pool. A launch that was itself not fulfilled does not count (it is not in
/// `World::launches`).
pub fn fallback_times(w: &World) -> FallbackTimes {
    let mut out = FallbackTimes::default();
    for f in &w.failed_launches {
        let Some(reported) = f.reported_ms.or(f.released_ms) else {
            continue;
        };
        out.failed += 1;
        let pool = w.groups.iter().find(|g| g.id == f.group).map(|g| &g.pool);
        let fallback = w.launches.iter().find(|l| {
            l.at_ms >= reported
                && l.group != f.group
                && w.groups.iter().find(|g| g.id == l.group).map(|g| &g.pool) == pool
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
    let ups: Vec<i64> = w
        .calls
        .iter()
        .filter(|c| c.ok && c.call == "increase")
        .map(|c| c.at_ms)
        .collect();
    let mut api = Vec::new();
    let mut ready = Vec::new();
    let mut open: Option<(i64, u32)> = None;
    for s in &w.samples {
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
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 500.0);
        assert_eq!(quantile(&v, 0.99), 990.0);
        assert_eq!(quantile(&v, 0.999), 999.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
