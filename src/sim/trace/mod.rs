//! Users' own traces: a scenario's `trace:` names a `file:` and its `format:` instead of a
//! built-in `source:`. One module per format, each parsing a reader into [`RawRequest`]s:
//!
//! - [`azure`]: the Azure LLM inference trace CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`).
//! - [`mooncake`]: Mooncake's JSONL (`timestamp` in ms, `input_length`, `output_length`).
//! - [`burstgpt`]: the BurstGPT CSV (`Timestamp`, `Request tokens`, `Response tokens`, …).
//! - [`per_minute`]: request counts per time window, spread evenly within each window, with
//!   token sizes drawn from a built-in trace.
//!
//! A bad file is an error naming the file, the line and the column (and, for a header, the
//! header expected) — never a panic. Rows need not be in time order: they are sorted (stably)
//! before the replay, as the built-in traces are.
//!
//! Time 0 of a trace is its own zero where its timestamps are offsets (Mooncake: ms since the
//! first request; BurstGPT: seconds since 0:00 of the first day; per-minute: the first window's
//! start), and its first request where they are absolute dates (Azure). `start_s`/`duration_s`
//! count from there.

pub mod azure;
pub mod burstgpt;
pub mod mooncake;
pub mod per_minute;

use super::SimError;
use super::data::TraceRequest;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Read;
use std::path::PathBuf;

/// Most requests one replay may hold (the slice of a request trace, or what a per-minute trace
/// generates in its slice). Each is ~40 bytes in the world and simulated one by one per
/// policy; beyond this a run is far past what `simulate` can do in minutes.
pub const MAX_REQUESTS: usize = 4_000_000;
/// Most rows read from a trace whose time origin is its first request (Azure), all of which
/// are held until the origin is known (32 bytes each, so at most ~320 MB).
pub const MAX_ROWS: usize = 10_000_000;
/// Largest token count accepted for one request (10 M: above any model's context window).
pub const MAX_TOKENS: u64 = 10_000_000;
/// Latest timestamp accepted, in seconds from the trace's zero (~317 years): keeps
/// millisecond arithmetic far from overflow.
pub const MAX_TIMESTAMP_S: f64 = 1e10;

/// The file formats a scenario's `trace.format` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceFormat {
    Azure,
    Mooncake,
    Burstgpt,
    PerMinute,
}

/// `filter: { column: model, equals: m-large }`: only rows whose `column` holds exactly
/// `equals` are read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowFilter {
    pub column: String,
    pub equals: String,
}

/// A validated file trace: where its bytes are and how to read them.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceFile {
    pub location: Location,
    pub format: FileFormat,
    /// Only rows matching this are read (CSV formats).
    pub filter: Option<RowFilter>,
}

/// Where a trace file's bytes are.
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    /// A file on disk (a user's scenario).
    Disk(PathBuf),
    /// A file shipped inside the binary (a shipped scenario's trace), by its repository path.
    Shipped { path: String, text: &'static str },
}

impl Location {
    /// How errors name the file.
    pub fn display(&self) -> String {
        match self {
            Location::Disk(p) => p.display().to_string(),
            Location::Shipped { path, .. } => path.clone(),
        }
    }
}

/// A format with its options, checked.
#[derive(Clone, Debug, PartialEq)]
pub enum FileFormat {
    Azure,
    Mooncake,
    Burstgpt,
    PerMinute(per_minute::Spec),
}

/// The part of the trace the replay uses, in seconds from the trace's zero; rows outside it
/// are not held (where the zero is known before the rows are read).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub start_s: f64,
    pub end_s: Option<f64>,
}

impl Window {
    pub const ALL: Window = Window {
        start_s: 0.0,
        end_s: None,
    };
    pub fn contains(&self, t_s: f64) -> bool {
        t_s >= self.start_s && self.end_s.is_none_or(|e| t_s < e)
    }
    /// Whether `[t0, t1)` overlaps the window.
    pub fn overlaps(&self, t0: f64, t1: f64) -> bool {
        t1 > self.start_s && self.end_s.is_none_or(|e| t0 < e)
    }
}

/// A loaded trace: its requests (sorted, in ms from the trace's zero) and where it ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub requests: Vec<TraceRequest>,
    /// End of the trace in ms from its zero: past its last request, or its last window's end.
    pub span_ms: i64,
}

impl Trace {
    /// A built-in trace (already sorted, relative to its first request).
    pub fn from_requests(requests: Vec<TraceRequest>) -> Trace {
        let span_ms = requests.last().map_or(0, |r| r.at_ms + 1);
        Trace { requests, span_ms }
    }
}

/// One request as a format reads it, before sorting and the slice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawRequest {
    /// Seconds: from the trace's zero, or since the Unix epoch for absolute formats.
    pub at_s: f64,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// An execution time to replay (per-minute traces drawing from the diffusion trace).
    pub exec_s: Option<f64>,
}

/// Reads the file and returns the requests in `window`; a per-minute trace's token sizes are
/// drawn with `seed`.
pub fn load(file: &TraceFile, window: Window, seed: u64) -> Result<Trace, SimError> {
    let name = file.location.display();
    let reader: Box<dyn Read> = match &file.location {
        Location::Disk(p) => Box::new(std::io::BufReader::new(std::fs::File::open(p).map_err(
            |source| TraceError::Open {
                file: name.clone(),
                source,
            },
        )?)),
        Location::Shipped { text, .. } => Box::new(text.as_bytes()),
    };
    let filter = file.filter.as_ref();
    Ok(match &file.format {
        FileFormat::Azure => {
            // Absolute dates: the zero (the first request) is known only after every row.
            let mut c = Collector::new(&name, Window::ALL, MAX_ROWS);
            azure::parse(reader, &name, filter, &mut c)?;
            c.finish_rebased(window)?
        }
        FileFormat::Mooncake => {
            let mut c = Collector::new(&name, window, MAX_REQUESTS);
            mooncake::parse(reader, &name, &mut c)?;
            c.finish()?
        }
        FileFormat::Burstgpt => {
            let mut c = Collector::new(&name, window, MAX_REQUESTS);
            burstgpt::parse(reader, &name, filter, &mut c)?;
            c.finish()?
        }
        FileFormat::PerMinute(spec) => {
            let pool = spec.tokens_like.load()?;
            per_minute::load(reader, &name, spec, filter, window, seed, &pool)?
        }
    })
}

/// Gathers a format's rows: keeps those in the window, bounds their number, tracks the end.
pub struct Collector<'a> {
    file: &'a str,
    window: Window,
    max: usize,
    rows: Vec<RawRequest>,
    last_s: f64,
}

impl<'a> Collector<'a> {
    pub fn new(file: &'a str, window: Window, max: usize) -> Self {
        Collector {
            file,
            window,
            max,
            rows: Vec::new(),
            last_s: f64::NEG_INFINITY,
        }
    }

    /// Adds a request read at `line`.
    pub fn push(&mut self, r: RawRequest, line: u64) -> Result<(), TraceError> {
        self.last_s = self.last_s.max(r.at_s);
        if !self.window.contains(r.at_s) {
            return Ok(());
        }
        if self.rows.len() >= self.max {
            return Err(TraceError::at(
                self.file,
                line,
                None,
                Problem::TooManyRequests { max: self.max },
            ));
        }
        self.rows.push(r);
        Ok(())
    }

    /// Requests in ms from the trace's own zero.
    pub fn finish(self) -> Result<Trace, TraceError> {
        if self.last_s == f64::NEG_INFINITY {
            return Err(TraceError::Empty {
                file: self.file.to_owned(),
            });
        }
        let span_ms = to_ms(self.last_s) + 1;
        Ok(Trace {
            requests: sorted(self.rows, 0.0),
            span_ms,
        })
    }

    /// Requests in ms from the first request, then cut to `window`.
    pub fn finish_rebased(self, window: Window) -> Result<Trace, TraceError> {
        let Some(t0) = self.rows.iter().map(|r| r.at_s).reduce(f64::min) else {
            return Err(TraceError::Empty {
                file: self.file.to_owned(),
            });
        };
        let span_ms = to_ms(self.last_s - t0) + 1;
        let kept: Vec<RawRequest> = self
            .rows
            .into_iter()
            .filter(|r| window.contains(r.at_s - t0))
            .collect();
        if kept.len() > MAX_REQUESTS {
            return Err(TraceError::SliceTooLarge {
                file: self.file.to_owned(),
                requests: kept.len(),
                max: MAX_REQUESTS,
            });
        }
        Ok(Trace {
            requests: sorted(kept, t0),
            span_ms,
        })
    }
}

fn to_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

/// Sorted by time (stable: rows at the same time keep their file order), relative to `t0`.
fn sorted(rows: Vec<RawRequest>, t0: f64) -> Vec<TraceRequest> {
    let mut out: Vec<TraceRequest> = rows
        .into_iter()
        .map(|r| TraceRequest {
            at_ms: to_ms(r.at_s - t0),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            exec_s: r.exec_s,
        })
        .collect();
    out.sort_by_key(|r| r.at_ms);
    out
}

/// Which column of a line an error is about: its 1-based number and, where known, its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub number: usize,
    pub name: Option<String>,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}", self.number)?;
        if let Some(n) = &self.name {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

/// What is wrong at a place in a trace file.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// The header does not name the format's columns.
    Header {
        expected: String,
        found: String,
    },
    /// A column the scenario names is not in the header.
    UnknownColumn {
        key: &'static str,
        name: String,
        header: String,
    },
    /// A row with fewer fields than the header.
    MissingField {
        expected_header: String,
    },
    NotANumber {
        value: String,
    },
    NotAWholeNumber {
        value: String,
    },
    Negative {
        value: String,
    },
    NotFinite {
        value: String,
    },
    TooLarge {
        value: String,
        max: String,
    },
    NotADateTime {
        value: String,
    },
    /// A JSONL line that is not JSON (serde_json's own words).
    Json {
        message: String,
    },
    NotAnObject,
    MissingKey {
        key: &'static str,
    },
    TooManyRequests {
        max: usize,
    },
    NotUtf8,
    /// Anything else the CSV reader refuses, in its words.
    Malformed {
        message: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Header { expected, found } => {
                write!(f, "expected the header `{expected}`, found `{found}`")
            }
            Problem::UnknownColumn { key, name, header } => write!(
                f,
                "trace.{key} names the column `{name}`, which the header `{header}` does not have"
            ),
            Problem::MissingField { expected_header } => {
                write!(f, "missing field (the header is `{expected_header}`)")
            }
            Problem::NotANumber { value } => write!(f, "`{value}` is not a number"),
            Problem::NotAWholeNumber { value } => {
                write!(f, "`{value}` is not a whole number (0 or more)")
            }
            Problem::Negative { value } => write!(f, "`{value}` is negative"),
            Problem::NotFinite { value } => write!(f, "`{value}` is not a finite number"),
            Problem::TooLarge { value, max } => write!(f, "`{value}` is above the limit {max}"),
            Problem::NotADateTime { value } => write!(
                f,
                "`{value}` is not a date and time like 2023-11-16 18:15:46.6805900"
            ),
            Problem::Json { message } => write!(f, "not JSON: {message}"),
            Problem::NotAnObject => write!(f, "expected a JSON object on each line"),
            Problem::MissingKey { key } => write!(f, "missing key `{key}`"),
            Problem::TooManyRequests { max } => write!(
                f,
                "more than {max} requests in the replayed slice: shorten trace.duration_s \
                 (or lower trace.scale / trace.max_per_minute)"
            ),
            Problem::NotUtf8 => write!(f, "not UTF-8 text"),
            Problem::Malformed { message } => write!(f, "{message}"),
        }
    }
}

/// Errors reading a trace file.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("reading trace file {file}")]
    Open {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A value, a header or a line that is wrong, where it is (boxed: errors are rare).
    #[error("{0}")]
    Bad(Box<BadLine>),
    #[error("{file}: no requests")]
    Empty { file: String },
    #[error(
        "{file}: {requests} requests in the replayed slice, more than {max}: shorten trace.duration_s"
    )]
    SliceTooLarge {
        file: String,
        requests: usize,
        max: usize,
    },
}

impl TraceError {
    pub fn at(file: &str, line: u64, column: Option<Column>, problem: Problem) -> TraceError {
        TraceError::Bad(Box::new(BadLine {
            file: file.to_owned(),
            line,
            column,
            problem,
        }))
    }
}

/// Where in a trace file something is wrong, and what.
#[derive(Clone, Debug, PartialEq)]
pub struct BadLine {
    pub file: String,
    /// 1-based, as an editor shows it.
    pub line: u64,
    pub column: Option<Column>,
    pub problem: Problem,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.file, self.line)?;
        if let Some(c) = &self.column {
            write!(f, ", {c}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// CSV helpers shared by the CSV formats.
pub(crate) mod csvio {
    use super::{Collector, Column, Problem, RawRequest, RowFilter, TraceError};

    /// A reader over `r` with a header row; fields trimmed, quotes as RFC 4180.
    pub fn reader<R: std::io::Read>(r: R) -> csv::Reader<R> {
        csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            // Per-row field counts are checked against the header by the formats, which name
            // the column that is missing; extra columns are allowed.
            .flexible(true)
            .from_reader(r)
    }

    /// The header, or an error on line 1.
    pub fn header<R: std::io::Read>(
        rdr: &mut csv::Reader<R>,
        file: &str,
        expected: &str,
    ) -> Result<csv::StringRecord, TraceError> {
        match rdr.headers() {
            Ok(h) => Ok(h.clone()),
            Err(e) => Err(from_csv(e, file, expected)),
        }
    }

    /// The 0-based index of `name` in the header (exact, then case-insensitive).
    pub fn find(h: &csv::StringRecord, name: &str) -> Option<usize> {
        h.iter()
            .position(|c| c == name)
            .or_else(|| h.iter().position(|c| c.eq_ignore_ascii_case(name)))
    }

    /// Indices of `names` in the header, or a header error naming the first missing one.
    pub fn require(
        h: &csv::StringRecord,
        names: &[&str],
        file: &str,
        expected: &str,
    ) -> Result<Vec<usize>, TraceError> {
        names
            .iter()
            .enumerate()
            .map(|(k, n)| {
                find(h, n).ok_or_else(|| {
                    TraceError::at(
                        file,
                        1,
                        Some(Column {
                            number: k + 1,
                            name: h.get(k).map(str::to_owned),
                        }),
                        Problem::Header {
                            expected: expected.to_owned(),
                            found: h.iter().collect::<Vec<_>>().join(","),
                        },
                    )
                })
            })
            .collect()
    }

    /// A record's line number (1-based, as an editor shows it).
    pub fn line(rec: &csv::StringRecord) -> u64 {
        rec.position().map_or(0, |p| p.line())
    }

    /// Field `idx` of `rec`, or a missing-field error naming the column.
    pub fn field<'r>(
        rec: &'r csv::StringRecord,
        h: &csv::StringRecord,
        idx: usize,
        file: &str,
    ) -> Result<&'r str, TraceError> {
        rec.get(idx).ok_or_else(|| {
            TraceError::at(
                file,
                line(rec),
                Some(col(h, idx)),
                Problem::MissingField {
                    expected_header: h.iter().collect::<Vec<_>>().join(","),
                },
            )
        })
    }

    /// Reads a CSV of one request per row: `names` are the timestamp, input-token and
    /// output-token columns (found by name, in any order; other columns are ignored),
    /// `expected` the header shown when one is missing, `at_s` the timestamp parser.
    pub fn read_requests<R: std::io::Read>(
        r: R,
        file: &str,
        expected: &str,
        names: [&str; 3],
        filter: Option<&RowFilter>,
        at_s: fn(&str) -> Result<f64, Problem>,
        out: &mut Collector<'_>,
    ) -> Result<(), TraceError> {
        let mut rdr = reader(r);
        let h = header(&mut rdr, file, expected)?;
        let idx = require(&h, &names, file, expected)?;
        let keep = Filter::new(&h, filter, file)?;
        let mut rec = csv::StringRecord::new();
        while rdr
            .read_record(&mut rec)
            .map_err(|e| from_csv(e, file, expected))?
        {
            if !keep.matches(&rec) {
                continue;
            }
            let line = line(&rec);
            let get = |k: usize, parse: &dyn Fn(&str) -> Result<f64, Problem>| {
                let v = field(&rec, &h, idx[k], file)?;
                parse(v).map_err(|p| TraceError::at(file, line, Some(col(&h, idx[k])), p))
            };
            let tokens = |s: &str| super::num::tokens(s).map(f64::from);
            out.push(
                RawRequest {
                    at_s: get(0, &at_s)?,
                    input_tokens: get(1, &tokens)? as u32,
                    output_tokens: get(2, &tokens)? as u32,
                    exec_s: None,
                },
                line,
            )?;
        }
        Ok(())
    }

    /// A row filter resolved against the header.
    pub struct Filter<'f> {
        on: Option<(usize, &'f str)>,
    }

    impl<'f> Filter<'f> {
        pub fn new(
            h: &csv::StringRecord,
            filter: Option<&'f RowFilter>,
            file: &str,
        ) -> Result<Filter<'f>, TraceError> {
            let Some(f) = filter else {
                return Ok(Filter { on: None });
            };
            let idx =
                find(h, &f.column).ok_or_else(|| unknown(h, "filter.column", &f.column, file))?;
            Ok(Filter {
                on: Some((idx, f.equals.as_str())),
            })
        }
        pub fn matches(&self, rec: &csv::StringRecord) -> bool {
            self.on.is_none_or(|(i, v)| rec.get(i) == Some(v))
        }
    }

    /// A column named by the scenario that the header lacks.
    pub fn unknown(h: &csv::StringRecord, key: &'static str, name: &str, file: &str) -> TraceError {
        TraceError::at(
            file,
            1,
            None,
            Problem::UnknownColumn {
                key,
                name: name.to_owned(),
                header: h.iter().collect::<Vec<_>>().join(","),
            },
        )
    }

    pub fn col(h: &csv::StringRecord, idx: usize) -> Column {
        Column {
            number: idx + 1,
            name: h.get(idx).map(str::to_owned),
        }
    }

    /// A csv crate error (bad UTF-8, I/O) with its line.
    pub fn from_csv(e: csv::Error, file: &str, expected: &str) -> TraceError {
        let line = e.position().map_or(1, |p| p.line());
        match e.into_kind() {
            csv::ErrorKind::Io(source) => TraceError::Open {
                file: file.to_owned(),
                source,
            },
            csv::ErrorKind::Utf8 { err, .. } => TraceError::at(
                file,
                line,
                Some(Column {
                    number: err.field() + 1,
                    name: None,
                }),
                Problem::NotUtf8,
            ),
            other => TraceError::at(
                file,
                line,
                None,
                Problem::Malformed {
                    message: format!("{other:?} (expected CSV with the header `{expected}`)"),
                },
            ),
        }
    }
}

/// Number checks shared by the formats: each returns the problem a bad value is.
pub(crate) mod num {
    use super::{MAX_TIMESTAMP_S, MAX_TOKENS, Problem};

    /// A token count: a whole number in 0..=MAX_TOKENS.
    pub fn tokens(s: &str) -> Result<u32, Problem> {
        let v: u64 = s.parse().map_err(|_| {
            if s.starts_with('-') && s[1..].parse::<u64>().is_ok() {
                Problem::Negative {
                    value: s.to_owned(),
                }
            } else {
                Problem::NotAWholeNumber {
                    value: s.to_owned(),
                }
            }
        })?;
        if v > MAX_TOKENS {
            return Err(Problem::TooLarge {
                value: s.to_owned(),
                max: MAX_TOKENS.to_string(),
            });
        }
        Ok(v as u32)
    }

    /// A finite, non-negative number up to `max`.
    pub fn non_negative(s: &str, max: f64) -> Result<f64, Problem> {
        let v: f64 = s.parse().map_err(|_| Problem::NotANumber {
            value: s.to_owned(),
        })?;
        checked(v, s, max)
    }

    pub fn checked(v: f64, s: &str, max: f64) -> Result<f64, Problem> {
        if !v.is_finite() {
            Err(Problem::NotFinite {
                value: s.to_owned(),
            })
        } else if v < 0.0 {
            Err(Problem::Negative {
                value: s.to_owned(),
            })
        } else if v > max {
            Err(Problem::TooLarge {
                value: s.to_owned(),
                max: max.to_string(),
            })
        } else {
            Ok(v)
        }
    }

    /// A timestamp in seconds from the trace's zero.
    pub fn seconds(s: &str) -> Result<f64, Problem> {
        non_negative(s, MAX_TIMESTAMP_S)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(at_s: f64) -> RawRequest {
        RawRequest {
            at_s,
            input_tokens: 1,
            output_tokens: 2,
            exec_s: None,
        }
    }

    #[test]
    fn collector_keeps_the_window_sorts_and_tracks_the_end() {
        let w = Window {
            start_s: 1.0,
            end_s: Some(3.0),
        };
        let mut c = Collector::new("f", w, 10);
        for (k, t) in [2.5, 0.5, 1.0, 3.0, 9.0, 1.5].into_iter().enumerate() {
            c.push(raw(t), k as u64 + 2).unwrap();
        }
        let t = c.finish().unwrap();
        let at: Vec<i64> = t.requests.iter().map(|r| r.at_ms).collect();
        assert_eq!(at, vec![1000, 1500, 2500]);
        assert_eq!(t.span_ms, 9001);
    }

    #[test]
    fn rebased_traces_count_from_the_earliest_row_even_when_unsorted() {
        let mut c = Collector::new("f", Window::ALL, 10);
        for (k, t) in [105.0, 100.0, 101.5].into_iter().enumerate() {
            c.push(raw(t), k as u64 + 2).unwrap();
        }
        let t = c
            .finish_rebased(Window {
                start_s: 1.0,
                end_s: None,
            })
            .unwrap();
        let at: Vec<i64> = t.requests.iter().map(|r| r.at_ms).collect();
        assert_eq!(at, vec![1500, 5000]);
        assert_eq!(t.span_ms, 5001);
    }

    #[test]
    fn too_many_requests_name_the_line() {
        let mut c = Collector::new("f.jsonl", Window::ALL, 2);
        c.push(raw(0.0), 1).unwrap();
        c.push(raw(1.0), 2).unwrap();
        let e = c.push(raw(2.0), 3).unwrap_err().to_string();
        assert!(e.starts_with("f.jsonl line 3: more than 2 requests"), "{e}");
    }

    #[test]
    fn an_empty_file_is_an_error() {
        let c = Collector::new("f", Window::ALL, 2);
        assert!(matches!(c.finish(), Err(TraceError::Empty { .. })));
    }

    #[test]
    fn number_checks() {
        assert_eq!(num::tokens("12"), Ok(12));
        assert!(matches!(num::tokens("-3"), Err(Problem::Negative { .. })));
        assert!(matches!(
            num::tokens("1.5"),
            Err(Problem::NotAWholeNumber { .. })
        ));
        assert!(matches!(
            num::tokens("99999999999"),
            Err(Problem::TooLarge { .. })
        ));
        assert!(matches!(
            num::seconds("NaN"),
            Err(Problem::NotFinite { .. })
        ));
        assert!(matches!(
            num::seconds("inf"),
            Err(Problem::NotFinite { .. })
        ));
        assert!(matches!(num::seconds("-1"), Err(Problem::Negative { .. })));
        assert!(matches!(
            num::seconds("1e12"),
            Err(Problem::TooLarge { .. })
        ));
        assert_eq!(num::seconds("2.5"), Ok(2.5));
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = TraceError::at(
            "t.csv",
            7,
            Some(Column {
                number: 2,
                name: Some("ContextTokens".into()),
            }),
            Problem::NotAWholeNumber { value: "x".into() },
        );
        assert_eq!(
            e.to_string(),
            "t.csv line 7, column 2 (ContextTokens): `x` is not a whole number (0 or more)"
        );
    }
}
