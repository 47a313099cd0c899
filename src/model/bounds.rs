//! Range checks for snapshots and histories read from files (`gpupool plan`): the planner
//! trusts its input's numbers, so a file is checked once where it enters, and a value out of
//! range is a clear error naming the field — never a panic, an overflow or a multi-gigabyte
//! allocation later on.
//!
//! Bounds: every time within [`Timestamp::MIN_EXTERNAL`]..=[`Timestamp::MAX_EXTERNAL`] (1970 to
//! year 9999); group sizes, warm pools, unfulfilled launches and replica counts at most
//! [`MAX_COUNT`]; risks finite in 0..=1; prices finite and non-negative.

use super::{History, Instance, Node, NodeGroup, PendingPod, PoolDemand, Snapshot, Timestamp};

/// The largest size, count or replica number accepted from a file. No cloud's node group is
/// near it (a GCE regional MIG holds at most 2,000 VMs; AWS documents no per-group instance
/// cap, but accounts' EC2 quotas are far below it), while planner work that follows a count
/// stays bounded.
pub const MAX_COUNT: u32 = 100_000;

/// The first value out of range, by its path in the document.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BoundsError {
    pub path: String,
    pub message: String,
}

type Result<T = (), E = BoundsError> = std::result::Result<T, E>;

fn fail(path: impl Into<String>, message: impl Into<String>) -> BoundsError {
    BoundsError {
        path: path.into(),
        message: message.into(),
    }
}

fn time(path: impl Into<String>, t: Timestamp) -> Result {
    if t.is_external_range() {
        Ok(())
    } else {
        Err(fail(
            path,
            format!(
                "time {} s is outside 0..={} (1970..=9999)",
                t.secs_f64(),
                Timestamp::MAX_EXTERNAL.millis() / 1000
            ),
        ))
    }
}

fn count(path: impl Into<String>, n: u32) -> Result {
    if n <= MAX_COUNT {
        Ok(())
    } else {
        Err(fail(path, format!("{n} is above {MAX_COUNT}")))
    }
}

fn unit(path: impl Into<String>, v: f64) -> Result {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(fail(path, format!("{v} is not a probability in 0..=1")))
    }
}

/// Check every number of a snapshot read from outside.
pub fn check_snapshot(s: &Snapshot) -> Result {
    time("taken_at", s.taken_at)?;
    for (i, g) in s.groups.iter().enumerate() {
        check_group(&format!("groups[{i}]"), g)?;
    }
    for (i, inst) in s.instances.iter().enumerate() {
        check_instance(&format!("instances[{i}]"), inst)?;
    }
    for (i, n) in s.nodes.iter().enumerate() {
        check_node(&format!("nodes[{i}]"), n)?;
    }
    for (i, p) in s.pending_pods.iter().enumerate() {
        check_pod(&format!("pending_pods[{i}]"), p)?;
    }
    for (pool, d) in &s.demand {
        check_demand(&format!("demand.{pool}"), d)?;
    }
    Ok(())
}

fn check_group(at: &str, g: &NodeGroup) -> Result {
    count(format!("{at}.min_size"), g.min_size)?;
    count(format!("{at}.max_size"), g.max_size)?;
    count(format!("{at}.desired"), g.desired)?;
    if g.min_size > g.max_size {
        return Err(fail(
            format!("{at}.min_size"),
            format!("{} is above max_size {}", g.min_size, g.max_size),
        ));
    }
    if let Some(w) = &g.warm_pool {
        count(format!("{at}.warm_pool.target_size"), w.target_size)?;
        count(format!("{at}.warm_pool.ready"), w.ready)?;
        count(format!("{at}.warm_pool.warming"), w.warming)?;
    }
    for (i, u) in g.unfulfilled.iter().enumerate() {
        count(format!("{at}.unfulfilled[{i}].count"), u.count)?;
        time(format!("{at}.unfulfilled[{i}].at"), u.at)?;
    }
    for (i, o) in g.offerings.iter().enumerate() {
        let p = format!("{at}.offerings[{i}]");
        unit(
            format!("{p}.interruption_risk_per_hour"),
            o.interruption_risk_per_hour,
        )?;
        if o.price_per_hour.known().is_some_and(|m| m.micros() < 0) {
            return Err(fail(format!("{p}.price_per_hour"), "is negative"));
        }
        count(
            format!("{p}.instance_type.gpu.count"),
            o.instance_type.gpu.count,
        )?;
        count(format!("{p}.instance_type.vcpu"), o.instance_type.vcpu)?;
        for (j, m) in o.instance_type.gpu.mig_profiles.iter().enumerate() {
            count(
                format!("{p}.instance_type.gpu.mig_profiles[{j}].per_gpu"),
                m.per_gpu,
            )?;
        }
    }
    Ok(())
}

fn check_instance(at: &str, i: &Instance) -> Result {
    time(format!("{at}.launched_at"), i.launched_at)
}

fn check_node(at: &str, n: &Node) -> Result {
    if let Some(t) = n.idle_since {
        time(format!("{at}.idle_since"), t)?;
    }
    if let Some(t) = n.drain_deadline {
        time(format!("{at}.drain_deadline"), t)?;
    }
    Ok(())
}

fn check_pod(at: &str, p: &PendingPod) -> Result {
    time(format!("{at}.pending_since"), p.pending_since)
}

fn check_demand(at: &str, d: &PoolDemand) -> Result {
    if let Some(n) = d.replicas_now {
        count(format!("{at}.replicas_now"), n)?;
    }
    if let Some(n) = d.replicas_forecast {
        count(format!("{at}.replicas_forecast"), n)?;
    }
    for (i, r) in d.readings.iter().enumerate() {
        if let Some(n) = r.replicas {
            count(format!("{at}.readings[{i}].replicas"), n)?;
        }
        if let Some(t) = r.observed_at {
            time(format!("{at}.readings[{i}].observed_at"), t)?;
        }
    }
    Ok(())
}

/// Check every number of a history read from outside.
pub fn check_history(h: &History) -> Result {
    for (id, t) in &h.unneeded_since {
        time(format!("unneeded_since.{id}"), *t)?;
    }
    for (i, d) in h.disruptions.iter().enumerate() {
        time(format!("disruptions[{i}].at"), d.at)?;
    }
    for (k, b) in &h.backoff {
        time(format!("backoff.{k}.until"), b.until)?;
    }
    for (k, v) in &h.risk_boost {
        if !(v.is_finite() && *v >= 0.0) {
            return Err(fail(
                format!("risk_boost.{k}"),
                format!("{v} is not a finite non-negative risk"),
            ));
        }
    }
    for (k, t) in &h.interrupted_until {
        time(format!("interrupted_until.{k}"), *t)?;
    }
    for (p, t) in &h.last_scale_up {
        time(format!("last_scale_up.{p}"), *t)?;
    }
    for (g, t) in &h.warm_needed_at {
        time(format!("warm_needed_at.{g}"), *t)?;
    }
    for (p, (_, t)) in &h.fits_serving {
        time(format!("fits_serving.{p}"), *t)?;
    }
    for (p, r) in &h.scheduler_rejects {
        time(format!("scheduler_rejects.{p}.at"), r.at)?;
        time(format!("scheduler_rejects.{p}.until"), r.until)?;
    }
    for (p, l) in &h.slo {
        slo_learner(&format!("slo.{p}"), l)?;
    }
    Ok(())
}

/// A pool's SLO learner from a file: bounded sizes, finite non-negative weights, fractions.
fn slo_learner(at: &str, l: &super::SloLearner) -> Result {
    use super::slo::{MAX_GROWTH_BUCKET, MAX_LEVELS};
    // A cold horizon of an hour at one-second ticks, with room to spare.
    const MAX_RECENT: usize = 10_000;
    if l.recent.len() > MAX_RECENT {
        return Err(fail(
            format!("{at}.recent"),
            format!("{} observations, at most {MAX_RECENT}", l.recent.len()),
        ));
    }
    if l.by_level.len() > MAX_LEVELS as usize || l.feedback.len() > MAX_LEVELS as usize {
        return Err(fail(
            format!("{at}.by_level"),
            format!("more than {MAX_LEVELS} demand levels"),
        ));
    }
    let stats = std::iter::once(&l.all).chain(l.by_level.values());
    for s in stats {
        for h in [&s.warm_growth, &s.cold_growth, &s.demand] {
            for (v, w) in &h.weights {
                if *v > MAX_GROWTH_BUCKET || !(w.is_finite() && *w >= 0.0) {
                    return Err(fail(
                        format!("{at}.histogram"),
                        format!(
                            "bucket {v} weight {w}: buckets ≤ {MAX_GROWTH_BUCKET}, weights finite ≥ 0"
                        ),
                    ));
                }
            }
        }
    }
    if let Some(a) = l.attainment
        && !(a.fraction.is_finite() && (0.0..=1.0).contains(&a.fraction) && a.window_s.is_finite())
    {
        return Err(fail(
            format!("{at}.attainment"),
            format!(
                "{} over {} s is not a fraction over a window",
                a.fraction, a.window_s
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(json: &str) -> Snapshot {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn times_and_counts_out_of_range_are_named() {
        assert!(check_snapshot(&snap(r#"{"taken_at": 1700000000000}"#)).is_ok());
        let e = check_snapshot(&snap(r#"{"taken_at": -5}"#)).unwrap_err();
        assert_eq!(e.path, "taken_at");
        let group = |desired: u64| {
            format!(
                r#"{{"taken_at": 0, "groups": [{{"id": "g", "pool": "p", "offerings": [],
                "min_size": 0, "max_size": 10, "desired": {desired}}}]}}"#
            )
        };
        assert!(check_snapshot(&snap(&group(3))).is_ok());
        let e = check_snapshot(&snap(&group(10_000_000))).unwrap_err();
        assert_eq!(e.path, "groups[0].desired");
        let e = check_snapshot(&snap(
            r#"{"taken_at": 0, "demand": {"p": {"replicas_now": 4000000000}}}"#,
        ))
        .unwrap_err();
        assert_eq!(e.path, "demand.p.replicas_now");
    }

    #[test]
    fn history_times_are_checked() {
        let h: History =
            serde_json::from_str(r#"{"last_scale_up": {"p": 9223372036854775807}}"#).unwrap();
        assert_eq!(check_history(&h).unwrap_err().path, "last_scale_up.p");
        assert!(check_history(&History::default()).is_ok());
    }

    #[test]
    fn slo_learner_from_a_file_is_checked() {
        // A learner serialised by gpupool round-trips and passes.
        let mut h = History::default();
        let l = h.slo.entry("p".into()).or_default();
        l.all
            .cold_growth
            .add(3, 1.0, Timestamp::from_secs(10), 3600.0);
        let text = serde_json::to_string(&h).unwrap();
        let back: History = serde_json::from_str(&text).unwrap();
        assert_eq!(back, h);
        assert!(check_history(&back).is_ok());
        // A negative weight or an attainment above 1 does not.
        let bad = text.replace(":1.0", ":-1.0");
        let bad: History = serde_json::from_str(&bad).unwrap();
        assert_eq!(check_history(&bad).unwrap_err().path, "slo.p.histogram");
        let mut h = History::default();
        h.slo.entry("p".into()).or_default().attainment = Some(super::super::Attainment {
            fraction: 1.5,
            window_s: 60.0,
        });
        assert_eq!(check_history(&h).unwrap_err().path, "slo.p.attainment");
    }
}
