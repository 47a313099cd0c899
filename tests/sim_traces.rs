//! Users' own traces end to end: a scenario file names a trace file of each format
//! (`tests/data/traces/`, relative to the scenario), every policy runs a short simulation on
//! it, and a malformed file of each format is refused with its file, line and column.

use gpupool::sim::run::prepare;
use gpupool::sim::scenario::TraceInput;
use gpupool::sim::trace::{Location, TraceFormat};
use gpupool::sim::workload::build_requests;
use gpupool::sim::{Policy, RunOptions, Scenario, SimError, run_scenario};

const DIR: &str = "tests/data/traces";

fn scenario(name: &str) -> Scenario {
    let path = format!("{DIR}/{name}.yaml");
    Scenario::load(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn each_format_replays_through_every_policy() {
    // (scenario, requests in the replayed slice)
    let cases = [
        ("azure", 30),
        ("mooncake", 30),
        // ChatGPT rows from 30 s on, 3 of them failed (0 response tokens) and kept.
        ("burstgpt", 22),
        // m-a's windows 0, 4, 40 (capped at 30 a minute), 12, 2.
        ("per-minute", 48),
    ];
    for (name, want) in cases {
        let sc = scenario(name);
        let run = run_scenario(
            sc,
            &RunOptions {
                seed: 1,
                policies: Policy::ALL.to_vec(),
            },
            &|_, _| {},
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(run.prepared.reqs.len(), want, "{name}");
        for r in &run.runs {
            let s = &r.summary;
            assert_eq!(s.requests, want as u64, "{name} {}", s.policy);
            assert!(
                (0.0..=1.0).contains(&s.slo_attainment),
                "{name} {}",
                s.policy
            );
            assert!(s.cost_usd > 0.0, "{name} {}: {}", s.policy, s.cost_usd);
        }
        // Requests are in time order from the slice's start.
        let at: Vec<i64> = run.prepared.reqs.iter().map(|r| r.arrival_ms).collect();
        assert!(at.windows(2).all(|w| w[0] <= w[1]), "{name}");
    }
}

#[test]
fn request_formats_agree_on_the_same_requests() {
    // azure.csv, mooncake.jsonl hold the same 30 requests (azure two rows swapped): same
    // arrivals (to the ms) and service times.
    let reqs = |name: &str| build_requests(&scenario(name).file, "A10G").unwrap();
    let (a, end_a) = reqs("azure");
    let (m, end_m) = reqs("mooncake");
    let key = |r: &gpupool::sim::world::Req| (r.arrival_ms, r.service_ms);
    // Azure's zero is its first request (14.48 s into the mooncake file's zero).
    let shift = m[0].arrival_ms;
    assert!((end_a + shift - end_m).abs() <= 1, "{end_a} {end_m}");
    let a: Vec<_> = a
        .iter()
        .map(|r| (r.arrival_ms + shift, r.service_ms))
        .collect();
    let m: Vec<_> = m.iter().map(key).collect();
    assert_eq!(a.len(), m.len());
    for (x, y) in a.iter().zip(&m) {
        assert!((x.0 - y.0).abs() <= 1, "{x:?} {y:?}");
        assert_eq!(x.1, y.1);
    }
}

#[test]
fn malformed_files_are_refused_naming_file_line_and_column() {
    let cases = [
        (
            "azure",
            "azure-bad.csv",
            "line 4, column 2 (ContextTokens): `12a` is not a whole number (0 or more)",
        ),
        (
            "mooncake",
            "mooncake-bad.jsonl",
            "line 3, column 44 (output_length): `-5` is negative",
        ),
        (
            "burstgpt",
            "burstgpt-bad.csv",
            "line 5, column 1 (Timestamp): `NaN` is not a finite number",
        ),
        (
            "per-minute",
            "per-minute-bad.csv",
            "line 4, column 3 (requests): `-2` is negative",
        ),
    ];
    for (name, bad, want) in cases {
        let mut sc = scenario(name);
        sc.file.trace.file = Some(bad.into());
        let err = match prepare(sc, 1) {
            Err(e) => e,
            Ok(_) => panic!("{bad} accepted"),
        };
        assert!(matches!(err, SimError::Trace(_)), "{bad}: {err:?}");
        assert_eq!(err.to_string(), format!("{DIR}/{bad} {want}"));
    }
}

#[test]
fn a_wrong_header_names_the_expected_one_and_a_missing_file_its_path() {
    let mut sc = scenario("azure");
    sc.file.trace.file = Some("burstgpt.csv".into());
    let e = prepare(sc, 1).err().expect("refused").to_string();
    assert_eq!(
        e,
        format!(
            "{DIR}/burstgpt.csv line 1, column 2 (Model): expected the header \
             `TIMESTAMP,ContextTokens,GeneratedTokens`, found \
             `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`"
        )
    );
    let mut sc = scenario("mooncake");
    sc.file.trace.file = Some("nope.jsonl".into());
    let e = prepare(sc, 1).err().expect("refused");
    assert_eq!(
        e.to_string(),
        format!("reading trace file {DIR}/nope.jsonl")
    );
    assert!(
        std::error::Error::source(&e).is_some(),
        "the io error is kept"
    );
}

#[test]
fn scenario_keys_are_checked_before_anything_runs() {
    let text = std::fs::read_to_string(format!("{DIR}/per-minute.yaml")).unwrap();
    let field = |edit: &str, with: &str| -> String {
        let t = text.replacen(edit, with, 1);
        match Scenario::parse_in(&t, "edited", Some(DIR.into())) {
            Err(SimError::InvalidValue { field, .. }) => field,
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("accepted: {with}"),
        }
    };
    assert_eq!(
        field("  count_column: requests\n", ""),
        "trace.count_column"
    );
    assert_eq!(
        field("  tokens_like: azure-code\n", ""),
        "trace.tokens_like"
    );
    assert_eq!(field("window_s: 60", "window_s: 0"), "trace.window_s");
    assert_eq!(field("scale: 1.0", "scale: -1"), "trace.scale");
    assert_eq!(field("scale: 1.0", "scale: .nan"), "trace.scale");
    assert_eq!(
        field("max_per_minute: 30", "max_per_minute: 0"),
        "trace.max_per_minute"
    );
    assert_eq!(field("  format: per-minute\n", ""), "trace.format");
    assert_eq!(
        field("format: per-minute", "format: azure"),
        "trace.count_column"
    );
    assert_eq!(
        field("  file: per-minute.csv\n", "  source: azure-code\n"),
        "trace.format"
    );
    assert_eq!(
        field(
            "  file: per-minute.csv\n",
            "  file: x.csv\n  source: azure-code\n"
        ),
        "trace.file"
    );
    assert_eq!(field("  file: per-minute.csv\n", ""), "trace.source");
    let moon = std::fs::read_to_string(format!("{DIR}/mooncake.yaml")).unwrap();
    let t = moon.replacen(
        "format: mooncake\n",
        "format: mooncake\n  filter: { column: a, equals: b }\n",
        1,
    );
    match Scenario::parse_in(&t, "edited", Some(DIR.into())) {
        Err(SimError::InvalidValue { field, .. }) => assert_eq!(field, "trace.filter"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn the_shipped_public_trace_reads_the_same_by_name_and_by_path() {
    let by_name = Scenario::load("s3-servegen").unwrap();
    let by_path = Scenario::load("scenarios/s3-servegen.yaml").unwrap();
    let loc = |sc: &Scenario| match sc.file.trace.input(&sc.file.name).unwrap() {
        TraceInput::File(f) => f.location,
        TraceInput::Builtin(b) => panic!("a built-in: {b:?}"),
    };
    assert!(matches!(loc(&by_name), Location::Shipped { .. }));
    assert!(matches!(loc(&by_path), Location::Disk(_)));
    assert_eq!(by_name.file.trace.format, Some(TraceFormat::PerMinute));
    let (a, end_a) = build_requests(&by_name.file, "A10G").unwrap();
    let (b, end_b) = build_requests(&by_path.file, "A10G").unwrap();
    assert_eq!(end_a, end_b);
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty());
    assert_eq!(
        a.first().map(|r| r.arrival_ms),
        b.first().map(|r| r.arrival_ms)
    );
    assert_eq!(
        a.last().map(|r| r.service_ms),
        b.last().map(|r| r.service_ms)
    );
}

/// The held-out validation scenarios (`benches/validation.py`) still load and build their
/// requests: they are not run by the suite (days of traffic each), but must not rot.
#[test]
fn the_validation_scenarios_load_and_build_their_requests() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/validation");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("benches/validation") {
        let path = e.expect("entry").path();
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let sc = Scenario::load(path.to_str().expect("utf-8 path"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            sc.config.pools.iter().all(|p| p.slo.is_some()),
            "{}: every validation pool states its slo",
            path.display()
        );
        let gpu = sc.config.pools[0].requirements.gpu_models[0].to_string();
        let (reqs, _) =
            build_requests(&sc.file, &gpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!reqs.is_empty(), "{}", path.display());
        n += 1;
    }
    assert!(n >= 5, "{n} validation scenarios");
}
