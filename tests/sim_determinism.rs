//! The same scenario, seed and policies give the same cloud calls, bit for bit.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

use gpupool::sim::{Policy, RunOptions, Scenario, run_scenario};

fn run(seed: u64) -> Vec<(String, u64, usize, String)> {
    let sc = Scenario::load("quick").expect("quick is shipped");
    let r = run_scenario(
        sc,
        &RunOptions {
            seed,
            policies: Policy::ALL.to_vec(),
        },
        &|_, _| {},
    )
    .expect("quick runs");
    r.runs
        .iter()
        .map(|p| {
            (
                p.summary.policy.clone(),
                p.action_hash,
                p.actions,
                serde_json::to_string(&p.summary).expect("summary serialises"),
            )
        })
        .collect()
}

#[test]
fn quick_twice_with_the_same_seed_is_identical() {
    let a = run(7);
    let b = run(7);
    assert_eq!(a, b);
    // The controller and a baseline did act, so the hash covers real calls. (Which baselines
    // act depends on the scenario: on quick the conservative HPA never sees a burst outlast
    // its 30-s scale-up window, and with the start fleet covering minute 2 it makes no call;
    // the Kubernetes-default HPA scales up on the burst.)
    let acted = |name: &str| a.iter().any(|(p, _, n, _)| p == name && *n > 0);
    assert!(acted("gpupool"), "gpupool made no calls: {a:?}");
    assert!(
        acted("hpa-ca-default"),
        "hpa-ca-default made no calls: {a:?}"
    );
}
