//! KEDA's scaling arithmetic, as pure functions.
//!
//! KEDA splits autoscaling into two phases (keda.sh, "Scaling Deployments: Activating and
//! Scaling thresholds"):
//! - **activation**: a trigger is *active* when its value is strictly above
//!   `activationThreshold`. Only an active trigger scales a workload from 0 to 1, and when no
//!   trigger is active the workload goes back to 0 (after `cooldownPeriod`; in gpupool the
//!   pool's `disruption.unneeded_time_s` plays that role).
//! - **scaling**: while active, the HPA asks for `ceil(value / target)` replicas
//!   (`AverageValue` target), and never fewer than one.
//!
//! KEDA's documented example: `threshold: 10`, `activationThreshold: 50`, value 40 → the
//! trigger is not active and the workload is scaled to zero even though the HPA alone would
//! want 4 replicas. The table test below mirrors it.

/// Replicas one trigger asks for: 0 when inactive (`value <= activation`), otherwise
/// `max(1, ceil(value / target_per_replica))`.
///
/// Non-finite values and non-positive targets return `None`: the caller reports the reading
/// stale instead of guessing (config validation already rejects targets ≤ 0).
pub fn replicas(value: f64, target_per_replica: f64, activation: f64) -> Option<u32> {
    if !value.is_finite() || !target_per_replica.is_finite() || target_per_replica <= 0.0 {
        return None;
    }
    if value <= activation {
        return Some(0);
    }
    let wanted = (value / target_per_replica).ceil().max(1.0);
    // Saturate rather than wrap: a runaway metric is bounded later by the pool's limits.
    Some(if wanted >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        wanted as u32
    })
}

/// The latency guard-rail: when `value` (e.g. p95 time-to-first-token) exceeds `target`, ask
/// for `ceil(serving × value / target)` replicas — the HPA's proportional rule
/// (`desired = ceil(current × metric / target)`) applied to latency. At or under the target
/// the guard-rail asks for nothing (`None`): low latency is a *result* of the capacity there
/// is, so it must never be read as a reason to remove it.
///
/// `serving` is the pool's serving replicas now; with none known (a pool at zero) the rule
/// starts from one replica.
pub fn latency_replicas(value: f64, target: f64, serving: u32) -> Option<u32> {
    if !value.is_finite() || !target.is_finite() || target <= 0.0 || value <= target {
        return None;
    }
    let base = f64::from(serving.max(1));
    let wanted = (base * value / target).ceil();
    Some(if wanted >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        wanted as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keda_table() {
        // (value, target, activation, expected) — rows follow KEDA's docs and scaler code.
        let rows: &[(f64, f64, f64, Option<u32>)] = &[
            // Docs example: threshold 10, activationThreshold 50, value 40: not active → 0.
            (40.0, 10.0, 50.0, Some(0)),
            // Above activation: HPA arithmetic, ceil(60 / 10).
            (60.0, 10.0, 50.0, Some(6)),
            // Activation is strict (`value > activationThreshold`).
            (50.0, 10.0, 50.0, Some(0)),
            // Default activation 0: any positive value activates; at least one replica.
            (0.5, 10.0, 0.0, Some(1)),
            (0.0, 10.0, 0.0, Some(0)),
            // Exact multiples do not round up.
            (20.0, 10.0, 0.0, Some(2)),
            (20.1, 10.0, 0.0, Some(3)),
            // Negative values (Prometheus can return them) are inactive.
            (-3.0, 10.0, 0.0, Some(0)),
            // Non-finite values are not a number of replicas.
            (f64::NAN, 10.0, 0.0, None),
            (f64::INFINITY, 10.0, 0.0, None),
            (5.0, 0.0, 0.0, None),
            // Saturates instead of wrapping.
            (1e30, 1.0, 0.0, Some(u32::MAX)),
        ];
        for &(v, t, a, want) in rows {
            assert_eq!(
                replicas(v, t, a),
                want,
                "value {v}, target {t}, activation {a}"
            );
        }
    }

    #[test]
    fn latency_table() {
        let rows: &[(f64, f64, u32, Option<u32>)] = &[
            // Under or at target: the guard-rail asks nothing.
            (0.8, 1.0, 4, None),
            (1.0, 1.0, 4, None),
            // 50 % over target with 4 serving → ceil(6.0) = 6.
            (1.5, 1.0, 4, Some(6)),
            // Slightly over → one more replica.
            (1.01, 1.0, 4, Some(5)),
            // Nothing serving yet: start from one replica.
            (3.0, 1.0, 0, Some(3)),
            (f64::NAN, 1.0, 4, None),
        ];
        for &(v, t, s, want) in rows {
            assert_eq!(
                latency_replicas(v, t, s),
                want,
                "value {v}, target {t}, serving {s}"
            );
        }
    }
}
