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
    // The controller and the autoscaling baselines did act, so the hash covers real calls.
    for (policy, _, actions, _) in &a {
        if policy == "gpupool" || policy == "hpa-ca" {
            assert!(*actions > 0, "{policy} made no calls");
        }
    }
}
