//! The real data the simulator replays, embedded in the binary so `gpupool simulate --scenario
//! quick` works from any directory. Provenance and the transformations applied are in
//! `data/README.md`; this module only parses (the trace file formats are in
//! [`super::trace`]).

use super::SimError;
use super::trace::{self, FileFormat, Location, TraceFile, Window};
use std::collections::BTreeMap;

const AZURE_CODE: &str = include_str!("../../data/traces/azure_llm_2023_code.csv");
const AZURE_CONV: &str = include_str!("../../data/traces/azure_llm_2023_conv.csv");
const DIFFUSION: &str =
    include_str!("../../data/traces/alibaba_gentd26_diffusion_2024-12-01_07.csv");
const SERVEGEN: &str = include_str!("../../data/traces/alibaba_servegen_llm_requests_by_10min.csv");

/// Trace files shipped inside the binary for the shipped scenarios' `trace.file`, by their
/// path in the repository: a shipped scenario (`scenarios/NAME.yaml`) naming
/// `../data/traces/FILE` reads it from here, whatever the working directory.
const SHIPPED_FILES: &[(&str, &str)] = &[
    ("data/traces/azure_llm_2023_code.csv", AZURE_CODE),
    ("data/traces/azure_llm_2023_conv.csv", AZURE_CONV),
    (
        "data/traces/alibaba_servegen_llm_requests_by_10min.csv",
        SERVEGEN,
    ),
];

/// The text of a shipped trace file, by its repository path (`data/traces/…`).
pub fn shipped_file(path: &str) -> Option<&'static str> {
    SHIPPED_FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, t)| *t)
}

/// The repository paths of the shipped trace files.
pub fn shipped_files() -> impl Iterator<Item = &'static str> {
    SHIPPED_FILES.iter().map(|(p, _)| *p)
}
const GKE_TIMINGS: &str = include_str!("../../data/cold_start/gke_startup_reference_timings.csv");
const BASE_MODEL_LOAD: &str =
    include_str!("../../data/cold_start/alibaba_gentd26_base_model_load_ms.csv");
const AWS_TYPES: &str = include_str!("../../data/aws/aws_gpu_instance_types.csv");
const AWS_ADVISOR: &str = include_str!("../../data/aws/aws_spot_advisor_us_east_1_2025.csv");
const SPOT_AVAIL_V100: &str =
    include_str!("../../data/spot/skypilot_aws_availability_2023-08-27_v100_16node_us-west-2.csv");

/// One request of a workload trace, relative to the trace's first request.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRequest {
    /// Milliseconds since the first request of the trace.
    pub at_ms: i64,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// The trace's own execution time, where it records one (diffusion trace).
    pub exec_s: Option<f64>,
}

/// The workload traces shipped in `data/traces`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceSource {
    /// Azure LLM inference 2023, code service (bursty), 1 h.
    AzureCode,
    /// Azure LLM inference 2023, conversation service, 1 h.
    AzureConv,
    /// Alibaba GenTD26 diffusion serving, 2024-12-01..07 (diurnal), with execution times.
    AlibabaDiffusion,
}

impl TraceSource {
    pub fn load(self) -> Result<Vec<TraceRequest>, SimError> {
        match self {
            TraceSource::AzureCode => parse_azure(AZURE_CODE, "azure_llm_2023_code.csv"),
            TraceSource::AzureConv => parse_azure(AZURE_CONV, "azure_llm_2023_conv.csv"),
            TraceSource::AlibabaDiffusion => parse_diffusion(DIFFUSION),
        }
    }
}

fn bad(file: &str, line: usize, what: impl Into<String>) -> SimError {
    SimError::Data {
        file: file.to_owned(),
        line,
        message: what.into(),
    }
}

/// Seconds since the Unix epoch of a `YYYY-MM-DD HH:MM:SS[.fffffff]` UTC time (a `T` between
/// date and time is accepted too); `None` for anything else, out-of-range fields included.
pub fn parse_datetime_s(s: &str) -> Option<f64> {
    let (date, time) = s.trim().split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    let in_range = d.next().is_none()
        && t.next().is_none()
        && (1..=9999).contains(&y)
        && (1..=12).contains(&m)
        && (1..=31).contains(&day)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        // 60.x: a leap second.
        && (0.0..61.0).contains(&sec);
    in_range.then(|| (days_from_civil(y, m, day) * 86_400 + h * 3600 + mi * 60) as f64 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Azure built-ins through the same reader as users' Azure files (rows sorted, relative to
/// the first request).
fn parse_azure(text: &'static str, file: &str) -> Result<Vec<TraceRequest>, SimError> {
    let f = TraceFile {
        location: Location::Shipped {
            path: file.to_owned(),
            text,
        },
        format: FileFormat::Azure,
        filter: None,
    };
    Ok(trace::load(&f, Window::ALL, 0)?.requests)
}

fn parse_diffusion(text: &str) -> Result<Vec<TraceRequest>, SimError> {
    let file = "alibaba_gentd26_diffusion_2024-12-01_07.csv";
    let mut out = Vec::new();
    let mut t0 = None;
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 3 {
            return Err(bad(file, i + 1, "expected 3 columns"));
        }
        // Requests without an execution time (PENDING/PROCESSING at trace end) never ran: they
        // are not load the pool served.
        let Ok(exec) = f[2].trim().parse::<f64>() else {
            continue;
        };
        let at = parse_datetime_s(f[0]).ok_or_else(|| bad(file, i + 1, "bad gmt_create"))?;
        let t0 = *t0.get_or_insert(at);
        out.push(TraceRequest {
            at_ms: ((at - t0) * 1000.0).round() as i64,
            input_tokens: 0,
            output_tokens: 0,
            // FAILED requests still occupied a worker for their recorded time.
            exec_s: Some(exec.max(0.5)),
        });
    }
    out.sort_by_key(|r| r.at_ms);
    Ok(out)
}

/// Model-load seconds measured by Google for Gemma-7B (~25 GB) over 15 storage set-ups
/// (`gke_startup_reference_timings.csv`, phase `model_load`).
pub fn gke_model_load_s() -> Vec<f64> {
    GKE_TIMINGS
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("model_load,"))
        .filter_map(|l| l.split(',').nth(4)?.parse().ok())
        .collect()
}

/// Alibaba GenTD26 base-model load latencies in seconds (7,531 production samples).
pub fn alibaba_base_model_load_s() -> Vec<f64> {
    BASE_MODEL_LOAD
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .map(|ms| ms / 1000.0)
        .collect()
}

/// One AWS GPU instance type with its us-east-1 on-demand price.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsType {
    pub name: String,
    pub gpu_model: String,
    pub gpu_count: u32,
    pub gpu_memory_mib: u64,
    pub vcpu: u32,
    pub memory_mib: u64,
    pub ondemand_per_hour: f64,
}

pub fn aws_types() -> BTreeMap<String, AwsType> {
    AWS_TYPES
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some(AwsType {
                name: f.first()?.to_string(),
                gpu_model: f.get(1)?.to_uppercase(),
                gpu_count: f.get(2)?.parse().ok()?,
                gpu_memory_mib: f.get(3)?.parse().ok()?,
                vcpu: f.get(4)?.parse().ok()?,
                memory_mib: f.get(5)?.parse().ok()?,
                ondemand_per_hour: f.get(6)?.parse().ok()?,
            })
        })
        .map(|t| (t.name.clone(), t))
        .collect()
}

/// Spot Instance Advisor entry (us-east-1, 2025-06-28 snapshot).
#[derive(Clone, Debug, PartialEq)]
pub struct AdvisorEntry {
    pub savings_pct: f64,
    /// 0 = "<5%", 1 = "5-10%", 2 = "10-15%", 3 = "15-20%", 4 = ">20%".
    pub bucket: u8,
}

pub fn spot_advisor() -> BTreeMap<String, AdvisorEntry> {
    AWS_ADVISOR
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((
                f.first()?.to_string(),
                AdvisorEntry {
                    savings_pct: f.get(1)?.parse().ok()?,
                    bucket: f.get(2)?.parse().ok()?,
                },
            ))
        })
        .collect()
}

/// Monthly interruption frequency the advisor bucket stands for. AWS publishes ranges; we take
/// the middle of each range, and 25% for the open-ended ">20%" bucket (an assumption: AWS gives
/// no upper bound).
pub fn advisor_monthly_frequency(bucket: u8) -> f64 {
    match bucket {
        0 => 0.025,
        1 => 0.075,
        2 => 0.125,
        3 => 0.175,
        _ => 0.25,
    }
}

/// Hourly hazard rate λ from a monthly interruption frequency f: P(interrupted within a month)
/// = 1 − exp(−λ·730 h), so λ = −ln(1 − f) / 730.
pub fn hourly_hazard_from_monthly(f: f64) -> f64 {
    -(1.0 - f.clamp(0.0, 0.999)).ln() / 730.0
}

/// A per-zone spot availability series: how many instances could be obtained at each tick.
#[derive(Clone, Debug, PartialEq)]
pub struct AvailabilityTrace {
    pub tick_s: f64,
    /// zone -> count per tick.
    pub zones: BTreeMap<String, Vec<u32>>,
}

/// The spot availability traces shipped in `data/spot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AvailabilitySource {
    /// SkyPilot: how many of 16 p3.2xlarge spot instances could be obtained, us-west-2a/2c,
    /// 300 s ticks from 2023-08-27.
    SkypilotV100x16UsWest2,
}

impl AvailabilitySource {
    pub fn load(self) -> Result<AvailabilityTrace, SimError> {
        let file = "skypilot_aws_availability_2023-08-27_v100_16node_us-west-2.csv";
        let mut lines = SPOT_AVAIL_V100.lines();
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| bad(file, 1, "empty"))?
            .split(',')
            .map(str::to_owned)
            .collect();
        let mut zones: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (i, l) in lines.enumerate() {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() != header.len() {
                return Err(bad(file, i + 2, "column count"));
            }
            for (z, v) in header.iter().zip(&f).skip(1) {
                let n = v.parse().map_err(|_| bad(file, i + 2, "bad count"))?;
                zones.entry(z.clone()).or_default().push(n);
            }
        }
        Ok(AvailabilityTrace {
            tick_s: 300.0,
            zones,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_parse_with_documented_sizes() {
        let code = TraceSource::AzureCode.load().unwrap();
        assert_eq!(code.len(), 8819);
        let conv = TraceSource::AzureConv.load().unwrap();
        assert_eq!(conv.len(), 19366);
        // ~57 min of code trace
        let span = code.last().unwrap().at_ms as f64 / 60_000.0;
        assert!((55.0..60.0).contains(&span), "{span}");
        let diff = TraceSource::AlibabaDiffusion.load().unwrap();
        assert!(diff.len() > 12_000, "{}", diff.len());
        assert!(diff.iter().all(|r| r.exec_s.is_some()));
        assert!(diff.last().unwrap().at_ms > 6 * 86_400_000);
    }

    #[test]
    fn shipped_files_are_found_by_repository_path() {
        assert!(shipped_file("data/traces/alibaba_servegen_llm_requests_by_10min.csv").is_some());
        assert_eq!(shipped_file("data/traces/nope.csv"), None);
        for p in shipped_files() {
            assert!(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(p)
                    .exists(),
                "{p}"
            );
        }
    }

    /// Per-minute request counts of the `minutes` minutes from `start_ms`.
    fn per_minute(at_ms: &[i64], start_ms: i64, minutes: usize) -> Vec<usize> {
        let idx = |t: i64| at_ms.partition_point(|&a| a < t);
        (0..minutes as i64)
            .map(|k| idx(start_ms + (k + 1) * 60_000) - idx(start_ms + k * 60_000))
            .collect()
    }

    /// The criterion `scenarios/quick.yaml` states for its slice, recomputed from the trace.
    #[test]
    fn quick_replays_the_burstiest_window_that_opens_quiet_for_5_minutes() {
        let at: Vec<i64> = TraceSource::AzureCode
            .load()
            .unwrap()
            .iter()
            .map(|r| r.at_ms)
            .collect();
        let last = *at.last().unwrap();
        let mut best: Option<(f64, i64)> = None;
        let mut start = 0;
        while start + 600_000 <= last {
            let m = per_minute(&at, start, 10);
            let peak = *m.iter().max().unwrap();
            let mean = m.iter().sum::<usize>() as f64 / 10.0;
            let quiet = m[..5].iter().all(|&x| x * 5 < peak);
            if mean > 0.0 && quiet && best.is_none_or(|(r, _)| peak as f64 / mean > r) {
                best = Some((peak as f64 / mean, start));
            }
            start += 10_000;
        }
        let (ratio, start) = best.unwrap();
        let quick = super::super::scenario::Scenario::load("quick").unwrap();
        assert_eq!(quick.file.trace.start_s, start as f64 / 1000.0);
        assert_eq!(quick.file.trace.duration_s, Some(600.0));
        assert!(ratio > 5.0, "{ratio}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(parse_datetime_s("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(
            parse_datetime_s("2024-12-01 00:00:01"),
            Some(1_733_011_201.0)
        );
        assert!(
            (parse_datetime_s("2023-11-16 18:17:03.9799600").unwrap() % 1.0 - 0.97996).abs() < 1e-6
        );
        assert_eq!(
            parse_datetime_s("2024-12-01T00:00:01"),
            Some(1_733_011_201.0)
        );
        for bad in [
            "2023-13-01 00:00:00",
            "2023-01-32 00:00:00",
            "2023-01-01 24:00:00",
            "2023-01-01 00:60:00",
            "2023-01-01 00:00:61",
            "2023-01-01 00:00:NaN",
            "2023-01-01-02 00:00:00",
            "2023-01-01 00:00:00:00",
            "2023-01-01",
        ] {
            assert_eq!(parse_datetime_s(bad), None, "{bad}");
        }
    }

    #[test]
    fn catalog_and_advisor() {
        let t = aws_types();
        assert_eq!(t["p3.2xlarge"].ondemand_per_hour, 3.06);
        assert_eq!(t["g5.2xlarge"].gpu_model, "A10G");
        let a = spot_advisor();
        assert_eq!(a["g5.2xlarge"].bucket, 3);
        // 17.5% a month is ~0.026% an hour.
        let h = hourly_hazard_from_monthly(advisor_monthly_frequency(3));
        assert!((h - 0.000_264).abs() < 0.000_01, "{h}");
    }

    #[test]
    fn availability_trace_has_two_zones() {
        let a = AvailabilitySource::SkypilotV100x16UsWest2.load().unwrap();
        assert_eq!(a.zones.len(), 2);
        assert_eq!(a.zones["us-west-2a"].len(), 4736);
        assert!(a.zones.values().flatten().all(|&n| n <= 16));
    }
}
