//! Fuzzing that stays: every parser of untrusted input, fed mutations of a small committed
//! corpus of real-looking inputs (`tests/data/fuzz/<target>/`), must never panic — in a debug
//! build, where integer overflow panics too.
//!
//! | target | entry point | corpus |
//! | --- | --- | --- |
//! | config | `Config::load`, then one plan on an empty snapshot | `config/*.yaml` |
//! | snapshot | `serde_json` → `bounds::check_snapshot` → the planner (what `gpupool plan` does) | `snapshot/*.json` |
//! | SQS event bodies | `gpupool_aws::events::parse_body` / `parse_body_at` (feature `aws`) | `sqs/*.json` |
//! | Prometheus responses | `signals::prometheus::parse_response` | `prometheus/*.json` |
//!
//! Mutations (proptest picks them, and shrinks a failure to a small one): byte flips, inserts,
//! deletions, duplications, truncation, splicing with another seed, and — because numbers are
//! where range bugs live — replacing a number in the text with an extreme one (`1e300`,
//! `-1e300`, `1e999`, `u32::MAX + 1`, `i64::MAX`, `NaN`, …). Case counts are bounded so the
//! file runs in seconds in debug (`FUZZ_CASES` raises them for a longer local run); failures are
//! kept in `proptest-regressions/fuzz_parsers.txt` and replayed first.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

use gpupool::config::Config;
use gpupool::model::{History, Snapshot, Timestamp, bounds};
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Numbers that have broken parsers before, or sit on a type's edge.
const EXTREMES: &[&str] = &[
    "1e300",
    "-1e300",
    "1e999",
    "-1e999",
    "NaN",
    "-1",
    "0",
    "-0.0",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "253402300800",
    "0.000001",
    "1.7976931348623157e308",
    "\"\"",
    "null",
    "[]",
    "{}",
];

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("corpus file"))
        .collect();
    assert!(!seeds.is_empty(), "empty corpus {}", dir.display());
    seeds
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: usize,
        bits: u8,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    Splice {
        at: usize,
        other: usize,
        from: usize,
    },
    /// Replace the n-th number in the text with an extreme value.
    Number {
        nth: usize,
        extreme: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        1 => (at, 1u8..=255).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        1 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => (at, 1usize..32).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (at, 1usize..64).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => (at, any::<usize>(), any::<usize>())
            .prop_map(|(at, other, from)| Mutation::Splice { at, other, from }),
        // Numbers are the most common target: three times as likely.
        3 => (any::<usize>(), 0..EXTREMES.len())
            .prop_map(|(nth, extreme)| Mutation::Number { nth, extreme }),
    ]
}

/// Byte ranges of the numbers in `s` (an optional `-`, digits, `.`, `e`, `+`/`-`).
fn numbers(s: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let start = i;
        if s[i] == b'-' && i + 1 < s.len() && s[i + 1].is_ascii_digit() {
            i += 1;
        }
        if i < s.len()
            && s[i].is_ascii_digit()
            && (start == 0 || !s[start - 1].is_ascii_alphanumeric())
        {
            while i < s.len()
                && (s[i].is_ascii_digit()
                    || s[i] == b'.'
                    || s[i] == b'e'
                    || s[i] == b'E'
                    || ((s[i] == b'+' || s[i] == b'-') && matches!(s[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            out.push((start, i));
        } else {
            i = start + 1;
        }
    }
    out
}

fn apply(seed: &[u8], seeds: &[Vec<u8>], muts: &[Mutation]) -> Vec<u8> {
    let mut s = seed.to_vec();
    for m in muts {
        let n = s.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % (n + 1) };
        match *m {
            Mutation::Flip { at, bits } if n > 0 => s[at % n] ^= bits,
            Mutation::Flip { .. } => {}
            Mutation::Insert { at, byte } => s.insert(pos(at), byte),
            Mutation::Delete { at, len } => {
                let a = pos(at);
                let b = (a + len).min(n);
                s.drain(a..b);
            }
            Mutation::Duplicate { at, len } => {
                let a = pos(at);
                let b = (a + len).min(n);
                let chunk = s[a..b].to_vec();
                s.splice(b..b, chunk);
            }
            Mutation::Truncate { at } => s.truncate(pos(at)),
            Mutation::Splice { at, other, from } => {
                let o = &seeds[other % seeds.len()];
                let f = if o.is_empty() { 0 } else { from % o.len() };
                s.truncate(pos(at));
                s.extend_from_slice(&o[f..]);
            }
            Mutation::Number { nth, extreme } => {
                let nums = numbers(&s);
                if let Some(&(a, b)) = nums.get(nth % nums.len().max(1)) {
                    s.splice(a..b, EXTREMES[extreme].bytes());
                }
            }
        }
    }
    s
}

/// A seed and up to 6 mutations of it.
fn input(seeds: &'static [Vec<u8>]) -> impl Strategy<Value = Vec<u8>> {
    (0..seeds.len(), prop::collection::vec(mutation(), 0..6))
        .prop_map(move |(i, muts)| apply(&seeds[i], seeds, &muts))
}

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Shrinking a parser panic is fast; keep the default budget.
        ..ProptestConfig::default()
    }
}

macro_rules! seeds {
    ($name:ident, $dir:literal) => {
        fn $name() -> &'static [Vec<u8>] {
            static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
            S.get_or_init(|| corpus($dir))
        }
    };
}
seeds!(config_seeds, "config");
seeds!(snapshot_seeds, "snapshot");
seeds!(prometheus_seeds, "prometheus");
#[cfg(feature = "aws")]
seeds!(sqs_seeds, "sqs");

/// The config the example snapshots are planned with (as `gpupool plan` would be given).
fn plan_config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/snapshots/config.yaml");
        Config::load_file(&p).expect("example config is valid")
    })
}

#[test]
fn corpus_seeds_are_accepted_unmutated() {
    // The corpus must be real-looking: every seed parses (so mutations start from valid input).
    for s in config_seeds() {
        let text = String::from_utf8_lossy(s);
        assert!(Config::load(&text).is_ok(), "config seed rejected:\n{text}");
    }
    for s in snapshot_seeds() {
        let snap: Snapshot = serde_json::from_slice(s).expect("snapshot seed parses");
        bounds::check_snapshot(&snap).expect("snapshot seed in range");
    }
    for s in prometheus_seeds() {
        let _ = gpupool::signals::prometheus::parse_response(s);
    }
    #[cfg(feature = "aws")]
    for s in sqs_seeds() {
        let body = String::from_utf8_lossy(s);
        assert!(
            matches!(
                gpupool_aws::events::parse_body(&body),
                gpupool_aws::events::Parsed::Events(_)
            ),
            "sqs seed: {body}"
        );
    }
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn config_parser_never_panics(bytes in input(config_seeds())) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(cfg) = Config::load(&text) {
            // A config that validates must also plan without a panic.
            let snap = Snapshot { taken_at: Timestamp::from_secs(1_700_000_000), ..Snapshot::default() };
            let _ = gpupool::planner::plan(&snap, &cfg, &History::default(), snap.taken_at);
        }
    }

    #[test]
    fn snapshot_load_and_plan_never_panic(bytes in input(snapshot_seeds())) {
        if let Ok(snap) = serde_json::from_slice::<Snapshot>(&bytes)
            && bounds::check_snapshot(&snap).is_ok()
        {
            let _ = gpupool::planner::plan(&snap, plan_config(), &History::default(), snap.taken_at);
        }
    }

    #[test]
    fn prometheus_response_parser_never_panics(bytes in input(prometheus_seeds())) {
        if let Ok(Some(s)) = gpupool::signals::prometheus::parse_response(&bytes) {
            // Whatever parses is in the checked range: arithmetic on it cannot overflow.
            prop_assert!(s.at.is_external_range(), "{:?}", s.at);
        }
    }
}

#[cfg(feature = "aws")]
proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn sqs_event_parser_never_panics(bytes in input(sqs_seeds()), now_s in 0i64..4_000_000_000) {
        use gpupool::model::ProviderEventKind;
        use gpupool_aws::events::{Parsed, parse_body, parse_body_at};
        let body = String::from_utf8_lossy(&bytes);
        let now = Timestamp::from_secs(now_s);
        if let Parsed::Events(kinds) = parse_body_at(&body, now) {
            for k in &kinds {
                match k {
                    // Whatever is acted on has a time inside the window around `now`.
                    ProviderEventKind::SpotInterruption { deadline: t, .. }
                    | ProviderEventKind::ScheduledChange { at: t, .. } => {
                        prop_assert!(t.is_external_range());
                        prop_assert!(t.secs_since(now) >= -gpupool_aws::events::MAX_CLOCK_SKEW_S);
                    }
                    _ => {}
                }
            }
        }
        let _ = parse_body(&body);
    }
}
