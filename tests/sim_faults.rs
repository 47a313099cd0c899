//! The controller under cloud faults, in the simulator: half of all launch attempts find no
//! capacity — accepted, then reported failed later, as AWS does (the scenario's default
//! `stockout_mode: late`) — and 30% of mutating calls are throttled. It must keep serving:
//! take the failed request back, back off, fall back, retry — not wait, stall or hammer the
//! API. Everything is matched on typed records (failed launches, launch records, error kinds),
//! never on log text.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

use gpupool::sim::world::StockoutCause;
use gpupool::sim::{Policy, RunOptions, Scenario, run_scenario};

/// s2-spot as shipped (`cloud: aws`) with `cloud` as given and `extra` keys appended.
fn run_on(cloud: &str, extra: &str) -> gpupool::sim::run::PolicyRun {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/s2-spot.yaml"
    ))
    .expect("s2-spot is shipped");
    assert!(text.contains("\ncloud: aws\n"), "s2-spot says its cloud");
    let text = text.replace("\ncloud: aws\n", &format!("\ncloud: {cloud}\n"));
    let sc = Scenario::parse(&format!("{text}\n{extra}\n"), "s2-spot + faults")
        .expect("scenario with faults parses");
    let mut r = run_scenario(
        sc,
        &RunOptions {
            seed: 42,
            policies: vec![Policy::Gpupool],
        },
        &|_, _| {},
    )
    .expect("the scenario runs");
    r.runs.remove(0)
}

fn run(extra: &str) -> gpupool::sim::run::PolicyRun {
    run_on("aws", extra)
}

/// The controller's tick in s2-spot (`tick_interval_s: 10`).
const TICK_MS: i64 = 10_000;

#[test]
fn late_stockouts_and_throttling_are_survived_aws_like() {
    late_stockouts_and_throttling_are_survived("aws");
}

#[test]
fn late_stockouts_and_throttling_are_survived_gcp_like() {
    late_stockouts_and_throttling_are_survived("gcp");
}

fn late_stockouts_and_throttling_are_survived(cloud: &str) {
    let clean = run_on(cloud, "");
    let faulty = run_on(cloud, "faults: { stockout_prob: 0.5, throttle_prob: 0.3 }");

    let faults = faulty
        .failed_launches
        .iter()
        .filter(|f| f.cause == StockoutCause::Fault)
        .count();
    let throttled = faulty
        .calls
        .iter()
        .filter(|c| c.error == Some("throttled"))
        .count();
    assert!(
        faults > 0 && throttled > 0,
        "faults were injected: {faults} failed launches, {throttled} throttled"
    );
    // The stockout is late: every failing `increase` was accepted.
    assert!(
        faulty
            .calls
            .iter()
            .all(|c| c.error != Some("insufficient_capacity")),
        "no launch fails at once in the default mode"
    );
    // Every reported failure is taken back (or the cloud's retry fulfilled it) within a few
    // ticks — a throttled release is retried on the next tick — so nothing waits on capacity
    // that is not coming.
    // (A failure reported in the run's last ticks has no time left to settle in: skipped.)
    let end_ms = faulty
        .samples
        .last()
        .map_or(i64::MAX, |s| (s.t_s * 1000.0) as i64);
    for f in faulty.failed_launches.iter() {
        let Some(reported) = f.reported_ms else {
            continue;
        };
        if reported > end_ms - 6 * TICK_MS {
            continue;
        }
        let settled = f.released_ms.or(f.recovered_ms);
        assert!(
            settled.is_some_and(|t| t - reported <= 6 * TICK_MS),
            "failure of {} reported at {reported} ms settled at {settled:?}",
            f.group
        );
    }
    // The summary counts them, and the pool fell back after the reports.
    let s = &faulty.summary;
    let reported = faulty
        .failed_launches
        .iter()
        .filter(|f| f.reported_ms.or(f.released_ms).is_some())
        .count() as u64;
    assert_eq!(s.failed_launches, reported);
    assert!(
        s.failure_to_fallback_s_p50.is_some(),
        "no failed launch was followed by a fallback launch: {s:?}"
    );
    // No hammering: failed calls stay a small multiple of the successful ones.
    let ok = faulty.calls.iter().filter(|c| c.ok).count();
    let failed = faulty.calls.iter().filter(|c| !c.ok).count();
    assert!(
        failed <= 3 * ok.max(1),
        "{failed} failures vs {ok} successes"
    );
    // Service degrades, but the controller keeps serving: within 20 points of the fault-free
    // run. Late stockouts cost more than the old immediate errors did (5 points): every failed
    // launch surfaces only 10-60 s after it was asked for, and with half of all launches
    // failing — on-demand ones too — the fallback itself often fails and backs off (measured
    // at seed 42: 16 points AWS-like, 11 GCP-like). A controller that waits on unfulfilled
    // launches loses more than 20 points on s2-spot even without injected faults.
    let (a, b) = (clean.summary.slo_attainment, s.slo_attainment);
    eprintln!(
        "SLO fault-free {a:.4}, with faults {b:.4}; {faults} failed launches, {throttled} \
         throttled, {ok} calls ok; fallback p50 {:?} s max {:?} s",
        s.failure_to_fallback_s_p50, s.failure_to_fallback_s_max
    );
    assert!(b >= a - 0.20, "SLO {b:.4} with faults vs {a:.4} without");
}

#[test]
fn the_immediate_fault_mode_still_fails_the_call() {
    let r = run("faults: { stockout_prob: 0.5, stockout_mode: immediate }");
    let refused = r
        .calls
        .iter()
        .filter(|c| c.call == "increase" && c.error == Some("insufficient_capacity"))
        .count();
    assert!(refused > 0, "immediate stockouts fail `increase` itself");
    assert!(
        r.failed_launches.is_empty(),
        "nothing is accepted and failed later in the immediate mode"
    );
}

#[test]
fn silent_stockouts_are_taken_back_after_the_launch_timeout() {
    // Accepted launches that neither progress nor fail (AWS-like: desired raised, no instance,
    // no failed activity): the controller must give up on them after the pool's
    // `scale_up.launch_timeout_s` (300 s by default) instead of counting them forever.
    let r = run("faults: { stockout_prob: 0.5, stockout_mode: silent }");
    assert!(
        !r.failed_launches.is_empty(),
        "silent stockouts were injected"
    );
    assert!(
        r.failed_launches.iter().all(|f| f.reported_ms.is_none()),
        "a silent stockout is never reported"
    );
    let released = r
        .failed_launches
        .iter()
        .filter(|f| f.released_ms.is_some())
        .count();
    assert!(released > 0, "the controller took some back");
    let end_ms = r.samples.last().map_or(0, |s| (s.t_s * 1000.0) as i64);
    let bound_ms = 300_000 + 3 * TICK_MS;
    // Those accepted too close to the end of the replay had no time to time out.
    for f in r
        .failed_launches
        .iter()
        .filter(|f| f.accepted_ms + bound_ms <= end_ms)
    {
        let settled = f.released_ms.or(f.recovered_ms);
        assert!(
            settled.is_some_and(|t| t - f.accepted_ms <= bound_ms),
            "silent failure of {} accepted at {} ms settled at {settled:?}",
            f.group,
            f.accepted_ms
        );
    }
}

/// The warm instances a call started (`increase`'s detail, `+N warm=W cold=C …`).
fn warm_started(c: &gpupool::sim::world::CallRecord) -> u32 {
    c.detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix("warm="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// s2-spot's outage reclaims 8 of 9 spot nodes at once on a 120-s notice, under the 150-s cold
/// start. With the spot standby (the shipped pool: an `slo`, so its warm pool is sized) the
/// replacements start warm on the notice; with the warm pool turned off they start cold and
/// serve only after the reclaim. Measured at seed 42 (with the learnt spot drain lead in both):
/// 99.8 % against 88.6 %, nothing cut in either.
#[test]
fn a_correlated_reclaim_is_replaced_from_the_warm_standby() {
    let standby = run("");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/s2-spot.yaml"
    ))
    .expect("s2-spot is shipped");
    let off = text.replace(
        "      model_cache: conv-7b@v1\n",
        "      model_cache: conv-7b@v1\n      warm_pool: { enabled: false }\n",
    );
    assert_ne!(
        off, text,
        "the pool's model_cache line moved: update this test"
    );
    let sc = Scenario::parse(&off, "s2-spot without a warm pool").expect("parses");
    let cold = run_scenario(
        sc,
        &RunOptions {
            seed: 42,
            policies: vec![Policy::Gpupool],
        },
        &|_, _| {},
    )
    .expect("runs")
    .runs
    .remove(0);

    // The correlated event: the notice time shared by the most reclaims.
    let mut at: std::collections::BTreeMap<i64, u32> = Default::default();
    for i in &standby.interruptions {
        *at.entry(i.notice_ms).or_default() += 1;
    }
    let (notice_ms, reclaimed) = at
        .into_iter()
        .max_by_key(|&(t, n)| (n, -t))
        .expect("the availability trace reclaims spot capacity");
    assert!(reclaimed >= 4, "{reclaimed} reclaimed at once");
    let warm_after_notice: u32 = standby
        .calls
        .iter()
        .filter(|c| c.call == "increase" && c.ok)
        .filter(|c| (notice_ms..=notice_ms + 2 * TICK_MS).contains(&c.at_ms))
        .map(warm_started)
        .sum();
    assert!(
        warm_after_notice >= 4,
        "replacements started warm within two ticks of the notice: {warm_after_notice}"
    );
    assert!(
        cold.calls.iter().all(|c| warm_started(c) == 0),
        "without a warm pool nothing starts warm"
    );
    let (with, without) = (standby.summary.slo_attainment, cold.summary.slo_attainment);
    eprintln!("s2-spot seed 42: SLO {with:.4} with the spot standby, {without:.4} without");
    assert!(
        with >= without + 0.05,
        "standby {with:.4} vs cold replacements {without:.4}"
    );
    let s = &standby.summary;
    assert_eq!(
        (s.requests_hurt_by_preemption, s.requests_cut_short),
        (0, 0),
        "nothing cut by the reclaim or by a scale-in"
    );
}
