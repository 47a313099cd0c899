//! Golden summaries of the shipped `quick` scenario for fixed seeds (Nomad's `.json.golden`
//! style). Regenerate with `GPUPOOL_BLESS=1 cargo test --test sim_golden` after an intended
//! change, and review the diff.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

use gpupool::sim::{Policy, RunOptions, Scenario, run_scenario};
use serde_json::Value;
use std::path::PathBuf;

fn summaries(seed: u64) -> Value {
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
    serde_json::to_value(r.runs.iter().map(|p| &p.summary).collect::<Vec<_>>())
        .expect("summaries serialise")
}

fn close(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            if (x - y).abs() <= 1e-6 + 1e-6 * y.abs() {
                Ok(())
            } else {
                Err(format!("{path}: got {x}, golden {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .try_for_each(|(i, (p, q))| close(p, q, &format!("{path}[{i}]"))),
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => {
            x.iter().try_for_each(|(k, v)| {
                y.get(k)
                    .ok_or_else(|| format!("{path}.{k}: missing in golden"))
                    .and_then(|w| close(v, w, &format!("{path}.{k}")))
            })
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}: got {a}, golden {b}")),
    }
}

#[test]
fn quick_summaries_match_golden_files() {
    for seed in [1u64, 42] {
        let got = summaries(seed);
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(format!("quick_seed{seed}.json"));
        if std::env::var_os("GPUPOOL_BLESS").is_some() {
            let text = serde_json::to_string_pretty(&got).expect("pretty json") + "\n";
            std::fs::write(&file, text).expect("writing golden file");
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with GPUPOOL_BLESS=1 to create it",
                file.display()
            )
        });
        let want: Value = serde_json::from_str(&text).expect("golden file is JSON");
        if let Err(e) = close(&got, &want, "summaries") {
            panic!(
                "{} differs: {e}\n(re-bless with GPUPOOL_BLESS=1 if intended)",
                file.display()
            );
        }
    }
}
