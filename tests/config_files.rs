//! Every config the repository ships still loads, and the typed config means what the YAML
//! says: the raw YAML (read as a plain YAML value, independently of `config::raw`) is compared
//! with the validated `Config` field by field for what validation types — signal kinds and
//! names, cron windows, the tick, durations, shares and money. The README's pool example is
//! loaded too, so the config reference stays valid.

use gpupool::config::{Config, SignalSource};
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped configs: examples, the kustomize base and overlay, the warning example.
fn shipped() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    for f in [
        "examples/snapshots/config.yaml",
        "deploy/kubernetes/base/config.yaml",
        "deploy/kubernetes/overlays/eks-irsa/config.yaml",
        "tests/data/warn-config.yaml",
    ] {
        out.push(root().join(f));
    }
    out.sort();
    out
}

/// The first ```yaml block of the README that starts with `pools:` (the pool reference).
fn readme_pool_example() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.starts_with("pools:"))
        .expect("a README yaml block starting with pools:")
        .to_owned()
}

fn secs(v: Option<&Value>, default: u64) -> Duration {
    Duration::from_secs(v.map_or(default, |v| v.as_u64().expect("whole seconds")))
}

const SOURCES: [&str; 5] = ["prometheus", "cloudwatch", "sqs", "cron", "latency"];

/// The typed config against the YAML it came from.
fn same_meaning(at: &Path, yaml: &Value, cfg: &Config) {
    let at = at.display();
    assert_eq!(
        cfg.tick_interval,
        secs(yaml.get("tick_interval_s"), 10),
        "{at}: tick"
    );
    if let Some(a) = yaml.get("aws") {
        let typed = cfg.aws.as_ref().expect("aws");
        assert_eq!(typed.api_timeout, secs(a.get("api_timeout_s"), 20), "{at}");
    }
    let discount = yaml
        .get("pricing")
        .and_then(|p| p.get("discount"))
        .map_or(0.0, |d| d.as_f64().expect("number"));
    assert_eq!(cfg.pricing.discount.get(), discount, "{at}: discount");
    let pools = yaml["pools"].as_sequence().expect("pools");
    assert_eq!(pools.len(), cfg.pools.len(), "{at}");
    for (p, typed) in pools.iter().zip(&cfg.pools) {
        assert_eq!(p["name"].as_str(), Some(typed.name.as_str()), "{at}");
        let cap = p.get("capacity");
        let share = cap
            .and_then(|c| c.get("spot_share"))
            .map_or(0.0, |s| s.as_f64().expect("number"));
        assert_eq!(typed.capacity.spot_share.get(), share, "{at}: spot_share");
        let dollars = |v: Option<&Value>| v.map(|v| v.as_f64().expect("number"));
        assert_eq!(
            typed.capacity.max_spot_price_per_hour.map(|m| m.dollars()),
            dollars(cap.and_then(|c| c.get("max_spot_price_per_hour"))),
            "{at}"
        );
        assert_eq!(
            typed.limits.max_cost_per_hour.map(|m| m.dollars()),
            dollars(p.get("limits").and_then(|l| l.get("max_cost_per_hour"))),
            "{at}"
        );
        let signals = p.get("signals").and_then(Value::as_sequence);
        let signals = signals.map_or(&[][..], Vec::as_slice);
        assert_eq!(signals.len(), typed.signals.len(), "{at}: {}", typed.name);
        for (j, (s, t)) in signals.iter().zip(&typed.signals).enumerate() {
            let kinds: Vec<&str> = SOURCES
                .into_iter()
                .filter(|k| s.get(*k).is_some())
                .collect();
            assert_eq!(kinds, [t.source.kind()], "{at}: signal {j}");
            let name = s
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("{}-{j}", kinds[0]), str::to_owned);
            assert_eq!(t.name, name, "{at}: signal {j}");
            let body = &s[kinds[0]];
            match &t.source {
                SignalSource::Cron(c) => {
                    assert_eq!(Some(c.window.start_text()), body["start"].as_str());
                    assert_eq!(Some(c.window.end_text()), body["end"].as_str());
                    let tz = body
                        .get("timezone")
                        .and_then(Value::as_str)
                        .unwrap_or("UTC");
                    assert_eq!(c.window.tz().name(), tz.trim(), "{at}: signal {j}");
                    assert_eq!(Some(u64::from(c.desired)), body["desired"].as_u64());
                }
                SignalSource::Prometheus(q) => {
                    assert_eq!(q.stale_after, secs(body.get("stale_after_s"), 60));
                    assert_eq!(q.timeout, secs(body.get("timeout_s"), 5));
                }
                SignalSource::Latency(q) => {
                    assert_eq!(q.stale_after, secs(body.get("stale_after_s"), 60));
                    assert_eq!(q.timeout, secs(body.get("timeout_s"), 5));
                }
                SignalSource::CloudWatch(q) => {
                    assert_eq!(q.stale_after, secs(body.get("stale_after_s"), 300));
                }
                SignalSource::Sqs(_) => {}
            }
        }
    }
}

/// The YAML document of a config file (the text itself, or a ConfigMap's `config.yaml`).
fn document(text: &str) -> Value {
    let v: Value = serde_yaml_ng::from_str(text).expect("yaml");
    if v.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
        let inner = v["data"]["config.yaml"]
            .as_str()
            .expect("config.yaml entry");
        return serde_yaml_ng::from_str(inner).expect("yaml");
    }
    v
}

#[test]
fn every_shipped_config_loads_and_means_what_its_yaml_says() {
    let files = shipped();
    assert!(files.len() >= 7, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable");
        let cfg = Config::load(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        same_meaning(&f, &document(&text), &cfg);
    }
}

#[test]
fn the_readme_pool_reference_loads_and_means_what_it_says() {
    let text = readme_pool_example();
    let cfg = Config::load(&text).unwrap_or_else(|e| panic!("README pool example: {e}"));
    same_meaning(Path::new("README.md"), &document(&text), &cfg);
    let p = &cfg.pools[0];
    assert_eq!(p.capacity.spot_share.get(), 0.7);
    assert_eq!(p.limits.max_cost_per_hour.map(|m| m.dollars()), Some(600.0));
}

#[test]
fn a_live_config_with_a_simulator_key_is_told_it_belongs_to_a_scenario() {
    let text = "mode: vm-only\npools:\n  - name: a\n    requirements: {}\n    signals:\n      - sim_queue: { target_per_replica: 8 }\n";
    let issues = Config::load(text).unwrap_err().issues();
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert!(
        issues[0].starts_with("pools[0].signals[0].sim_queue: belongs to a simulator scenario"),
        "{issues:#?}"
    );
}
