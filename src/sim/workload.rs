//! From a trace slice and a replica model to requests with service times, and to the per-bucket
//! demand every policy is judged against.

use super::SimError;
use super::scenario::{ScenarioFile, TraceInput};
use super::timing::default_throughput;
use super::trace::{self, Trace};
use super::world::Req;

/// Requests of the scenario's slice, re-based to start at 0, with service times.
///
/// Service time = input tokens / prefill rate + output tokens / decode rate (LLM traces), or the
/// trace's own execution time × `exec_time_scale` (diffusion trace). The prefill part is what
/// the TTFT adds to the queue wait. A trace file is read here (its errors name file, line and
/// column); a per-minute file's token sizes are drawn with the scenario's `seed`, so the
/// traffic is the same whatever `--seed` a run uses.
pub fn build_requests(sc: &ScenarioFile, gpu_model: &str) -> Result<(Vec<Req>, i64), SimError> {
    let trace = match sc.trace.input(&sc.name)? {
        TraceInput::Builtin(src) => Trace::from_requests(src.load()?),
        TraceInput::File(f) => trace::load(&f, sc.trace.window(), sc.seed)?,
    };
    let start_ms = (sc.trace.start_s * 1000.0) as i64;
    let end_ms = match sc.trace.duration_s {
        Some(d) => start_ms + (d * 1000.0) as i64,
        None => trace.span_ms,
    };
    if start_ms >= trace.span_ms {
        return Err(SimError::Scenario {
            scenario: sc.name.clone(),
            message: format!(
                "trace.start_s {} is past the trace's end ({} s)",
                sc.trace.start_s,
                trace.span_ms / 1000
            ),
        });
    }
    let (dp, dd) = default_throughput(gpu_model);
    let prefill = sc.replica.prefill_tokens_per_s.unwrap_or(dp).max(1.0);
    let decode = sc.replica.decode_tokens_per_s.unwrap_or(dd).max(0.01);
    let reqs = trace
        .requests
        .iter()
        .filter(|r| r.at_ms >= start_ms && r.at_ms < end_ms)
        .map(|r| {
            let at = r.at_ms - start_ms;
            match r.exec_s {
                Some(e) => {
                    let ms = (e * sc.replica.exec_time_scale * 1000.0) as i64;
                    Req::new(at, ms, ms)
                }
                None => {
                    let p = f64::from(r.input_tokens) / prefill * 1000.0;
                    let d = f64::from(r.output_tokens) / decode * 1000.0;
                    Req::new(at, (p + d) as i64, p as i64)
                }
            }
        })
        .collect();
    Ok((reqs, end_ms - start_ms))
}

/// The trace's requests in the `back_s` before the slice (clamped at the trace's start), their
/// arrivals before 0 (the replay's start), with the same service-time model: what a controller
/// started at the slice's start would find in its Prometheus — the simulator's source for the
/// SLO learner's backfill (`SimDemand::demand_history`). Empty when the slice starts at the
/// trace's start (there is no past), or when `back_s` is 0.
pub fn history_requests(
    sc: &ScenarioFile,
    gpu_model: &str,
    back_s: f64,
) -> Result<Vec<Req>, SimError> {
    let start_s = sc.trace.start_s;
    let from_s = (start_s - back_s).max(0.0);
    if start_s <= 0.0 || from_s >= start_s {
        return Ok(Vec::new());
    }
    let mut past = sc.clone();
    past.trace.start_s = from_s;
    past.trace.duration_s = Some(start_s - from_s);
    let (reqs, _) = build_requests(&past, gpu_model)?;
    let shift_ms = ((start_s - from_s) * 1000.0) as i64;
    Ok(reqs
        .into_iter()
        .map(|r| Req::new(r.arrival_ms - shift_ms, r.service_ms, r.prefill_ms))
        .collect())
}

/// Replicas needed per bucket: the fewest replicas that, held through the bucket, serve every
/// request arriving in it within the SLO's queue wait. Each bucket is judged by replaying its
/// requests (and those that arrived up to the longest service time before it, so work carried
/// over occupies slots) on a
/// FIFO queue feeding `k × concurrency` slots, the way the world dispatches; k is found by
/// bisection. Buckets are judged independently, so the demand is what a clairvoyant policy
/// needs in each bucket, and the oracle built on it is a lower bound for any policy that meets
/// the SLO for every request.
pub fn demand_per_bucket(
    reqs: &[Req],
    end_ms: i64,
    bucket_ms: i64,
    concurrency: u32,
    slo_ms: i64,
) -> Vec<u32> {
    let buckets = ((end_ms + bucket_ms - 1) / bucket_ms).max(1) as usize;
    // Work still running at a bucket's start occupies slots: look back as far as the longest
    // request (at least one bucket).
    let warmup_ms = reqs
        .iter()
        .map(|r| r.service_ms)
        .max()
        .unwrap_or(0)
        .max(bucket_ms);
    let mut out = Vec::with_capacity(buckets);
    let mut lo_idx = 0;
    for b in 0..buckets {
        let t0 = b as i64 * bucket_ms;
        let t1 = t0 + bucket_ms;
        while lo_idx < reqs.len() && reqs[lo_idx].arrival_ms < t0 - warmup_ms {
            lo_idx += 1;
        }
        let hi_idx = reqs[lo_idx..].partition_point(|r| r.arrival_ms < t1) + lo_idx;
        let window = &reqs[lo_idx..hi_idx];
        if !window.iter().any(|r| r.arrival_ms >= t0) {
            // Nothing arrives: still hold what runs through the bucket's start.
            let running = window
                .iter()
                .filter(|r| r.arrival_ms + r.service_ms > t0)
                .count() as u32;
            out.push(running.div_ceil(concurrency.max(1)));
            continue;
        }
        let meets = |k: u32| -> bool {
            let slots = (k * concurrency) as usize;
            if slots == 0 {
                return false;
            }
            let mut free: std::collections::BinaryHeap<std::cmp::Reverse<i64>> =
                std::iter::repeat_n(std::cmp::Reverse(i64::MIN), slots).collect();
            for r in window {
                let std::cmp::Reverse(at) = free.pop().unwrap_or(std::cmp::Reverse(i64::MIN));
                let start = at.max(r.arrival_ms);
                if r.arrival_ms >= t0 && start - r.arrival_ms > slo_ms {
                    return false;
                }
                free.push(std::cmp::Reverse(start + r.service_ms));
            }
            true
        };
        let (mut lo, mut hi) = (
            1u32,
            (window.len() as u32).div_ceil(concurrency.max(1)).max(1),
        );
        while lo < hi {
            let mid = (lo + hi) / 2;
            if meets(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        out.push(lo);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_counts_overlap_per_bucket() {
        // Two overlapping 30 s requests in bucket 0, one request spanning buckets 1..3.
        let reqs = vec![
            Req::new(0, 30_000, 0),
            Req::new(10_000, 30_000, 0),
            Req::new(70_000, 120_000, 0),
        ];
        // Zero wait allowed: both overlapping requests need a slot each.
        let d = demand_per_bucket(&reqs, 240_000, 60_000, 1, 0);
        assert_eq!(d, vec![2, 1, 1, 1]);
        let d2 = demand_per_bucket(&reqs, 240_000, 60_000, 2, 0);
        assert_eq!(d2, vec![1, 1, 1, 1]);
        // A 20 s wait allowed: the second request can wait for the first's slot... but only
        // 10 s are not enough (it would wait 20 s).
        assert_eq!(demand_per_bucket(&reqs, 240_000, 60_000, 1, 20_000)[0], 1);
        assert_eq!(demand_per_bucket(&reqs, 240_000, 60_000, 1, 10_000)[0], 2);
    }
}
