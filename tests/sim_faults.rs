//! The controller under cloud faults, in the simulator: half of all launches fail with
//! InsufficientCapacity and 30% of mutating calls are throttled (`faults:` in a scenario). It
//! must keep serving — back off, fall back, retry — not stall or hammer the API.

use gpupool::sim::{Policy, RunOptions, Scenario, run_scenario};

fn run(faults: &str) -> gpupool::sim::run::PolicyRun {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/s2-spot.yaml"
    ))
    .expect("s2-spot is shipped");
    let sc = Scenario::parse(&format!("{text}\n{faults}\n"), "s2-spot + faults")
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

#[test]
fn stockouts_and_throttling_are_survived() {
    let clean = run("");
    let faulty = run("faults: { stockout_prob: 0.5, throttle_prob: 0.3 }");

    let failed = |what: &str| {
        faulty
            .calls
            .iter()
            .filter(|c| !c.ok && c.detail.contains(what))
            .count()
    };
    let (stockouts, throttled) = (failed("stockout"), failed("throttled"));
    assert!(
        stockouts > 0 && throttled > 0,
        "faults were injected: {stockouts} stockouts, {throttled} throttled"
    );
    // Every failed launch is followed by a successful one within two minutes — often in the
    // same tick, by the re-plan that falls back (backoff and fallback, not a stall).
    for (k, c) in faulty.calls.iter().enumerate() {
        if c.call != "increase" || c.ok {
            continue;
        }
        assert!(
            faulty.calls[k + 1..]
                .iter()
                .any(|d| d.call == "increase" && d.ok && d.at_ms - c.at_ms <= 120_000),
            "no successful launch within 120 s of the failure at {} ms",
            c.at_ms
        );
    }
    // No hammering: failed calls stay a small multiple of the successful ones.
    let ok = faulty.calls.iter().filter(|c| c.ok).count();
    assert!(
        stockouts + throttled <= 3 * ok.max(1),
        "{stockouts}+{throttled} failures vs {ok} successes"
    );
    // Service degrades gracefully: within 5 points of the fault-free run.
    let (a, b) = (clean.summary.slo_attainment, faulty.summary.slo_attainment);
    eprintln!(
        "SLO fault-free {a:.4}, with faults {b:.4}; {stockouts} stockouts, {throttled} throttled, {ok} calls ok"
    );
    assert!(b >= a - 0.05, "SLO {b:.4} with faults vs {a:.4} without");
}
