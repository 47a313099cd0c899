//! Fair comparisons (issue #17, part 4): `--tune-baselines`, `hpa-ca-default`, and an oracle
//! that depends on the scenario alone and never aborts the run.

use gpupool::sim::oracle::OracleError;
use gpupool::sim::run::{Policy, prepare, run_prepared};
use gpupool::sim::tune::{Knob, run_setting, tune};
use gpupool::sim::{RunOptions, Scenario, run_scenario};
use serde_json::Value;

const BASELINES: [&str; 4] = ["static-peak", "hpa-ca", "hpa-ca-default", "karpenter"];

/// A slice of s2-spot (spot + on-demand: the ILP oracle) whose demand rises above what serves
/// at t = 0 in its second minute, within the first cold start (at least boot + image pull =
/// 70 s): no launch at t ≥ 0 can be ready for it. The ILP was infeasible there and aborted
/// every policy; now the oracle launches before the start and every policy runs beside it.
#[test]
fn oracle_reports_when_demand_rises_within_the_first_cold_start() {
    let mut sc = Scenario::load("s2-spot").expect("shipped");
    sc.file.trace.start_s = 60.0;
    sc.file.trace.duration_s = Some(900.0);
    assert_eq!(sc.file.oracle.bucket_s, 60.0);
    let r = run_scenario(
        sc,
        &RunOptions {
            seed: 42,
            policies: Policy::ALL.to_vec(),
        },
        &|_, _| {},
    )
    .expect("the scenario runs");
    let d = &r.prepared.demand;
    assert!(
        d[1] > d[0],
        "the slice must rise in its second minute: {d:?}"
    );
    let oracle = r.prepared.oracle.as_ref().expect("the oracle has a figure");
    assert!(oracle.cost_usd > 0.0);
    assert_eq!(r.runs.len(), Policy::ALL.len(), "every policy ran");
    for run in &r.runs {
        let x = run.summary.cost_vs_oracle.expect("cost ÷ oracle known");
        assert!(x.is_finite() && x > 0.0, "{}: {x}", run.summary.policy);
    }
}

/// Should the oracle fail all the same, the other policies run without it and their cost ÷
/// oracle is unknown, not zero.
#[test]
fn a_failed_oracle_leaves_the_other_policies_running() {
    let mut p = prepare(Scenario::load("quick").expect("shipped"), 42).expect("prepares");
    p.oracle = Err(OracleError::Solver("made to fail by the test".into()));
    let r = run_prepared(p, &Policy::ALL, &|_, _| {}).expect("runs");
    let names: Vec<&str> = r.runs.iter().map(|x| x.summary.policy.as_str()).collect();
    assert_eq!(names.len(), Policy::ALL.len() - 1, "{names:?}");
    assert!(!names.contains(&"oracle"));
    assert!(r.runs.iter().all(|x| x.summary.cost_vs_oracle.is_none()));
    assert!(r.runs.iter().all(|x| x.summary.cost_usd > 0.0));
}

/// The oracle's figure is a function of the scenario, not of the gpupool config it carries:
/// turning gpupool's warm pool on or off and changing its node limit leaves it unchanged, for
/// the layers method (quick) and the ILP (s2-spot).
#[test]
fn oracle_ignores_the_gpupool_config() {
    for name in ["quick", "s2-spot"] {
        let base = prepare(Scenario::load(name).expect("shipped"), 42).expect("prepares");
        let mut sc = Scenario::load(name).expect("shipped");
        let pool = &mut sc.config.pools[0];
        pool.warm_pool.enabled = Some(!pool.warm_pool.on());
        pool.limits.max_nodes = 3;
        let changed = prepare(sc, 42).expect("prepares");
        assert_eq!(
            base.oracle.as_ref().expect("oracle"),
            changed.oracle.as_ref().expect("oracle"),
            "{name}"
        );
    }
}

/// Same seed, same sweep and tuned point on one thread as on two.
#[test]
fn tuning_is_the_same_whatever_the_thread_count() {
    let p = prepare(Scenario::load("quick").expect("shipped"), 7).expect("prepares");
    let one = tune(&p, Policy::HpaCaDefault, 1, &|_| {});
    let two = tune(&p, Policy::HpaCaDefault, 2, &|_| {});
    assert!(!one.sweep.is_empty());
    assert_eq!(one, two);
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is a number in {v}"))
}

/// `simulate --tune-baselines --json` on quick: every baseline carries `tuned` (an object or
/// null) and its `sweep`; a tuned point is the cheapest swept point meeting the target, and
/// rerun alone at its setting it meets the target again with the same figures.
#[test]
fn cli_tuned_baselines_meet_the_target_when_rerun_alone() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpupool"))
        .args(["simulate", "--scenario", "quick", "--seed", "42"])
        .args(["--policy", "all", "--tune-baselines", "--json"])
        .output()
        .expect("gpupool runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let target = num(&v, "slo_attainment_target");
    assert_eq!(target, 0.99);
    assert!(v["oracle_error"].is_null(), "{}", v["oracle_error"]);
    let rows = v["policies"].as_array().expect("policies");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["policy"].as_str()).collect();
    for p in Policy::ALL {
        assert!(names.contains(&p.name()), "{} in {names:?}", p.name());
    }
    let p = prepare(Scenario::load("quick").expect("shipped"), 42).expect("prepares");
    let mut tuned_any = 0;
    for row in rows {
        let name = row["policy"].as_str().expect("name");
        if !BASELINES.contains(&name) {
            assert!(row.get("tuned").is_none(), "{name} is not tuned");
            continue;
        }
        let sweep = row["sweep"].as_array().expect("sweep");
        assert!(!sweep.is_empty(), "{name}");
        let meeting: Vec<&Value> = sweep
            .iter()
            .filter(|s| num(s, "slo_attainment") >= target)
            .collect();
        let tuned = &row["tuned"];
        if tuned.is_null() {
            assert!(meeting.is_empty(), "{name}: null but {meeting:?} meet");
            continue;
        }
        tuned_any += 1;
        assert!(sweep.contains(tuned), "{name}: {tuned} in the sweep");
        let cost = num(tuned, "cost_usd");
        assert!(meeting.iter().all(|s| num(s, "cost_usd") >= cost), "{name}");
        let knob: Knob = tuned["setting"]
            .as_str()
            .expect("setting")
            .parse()
            .expect("a setting parses");
        let policy = Policy::parse_list(name).expect("policy")[0];
        let alone = run_setting(&p, policy, knob);
        assert!(alone.slo_attainment >= target, "{name} {knob}: {alone:?}");
        assert!((alone.slo_attainment - num(tuned, "slo_attainment")).abs() < 1e-12);
        assert!((alone.cost_usd - cost).abs() < 1e-9, "{name} {knob}");
    }
    // Static-peak's default fleet meets the target on quick, so at least it has a tuned point.
    assert!(tuned_any >= 1);
}
