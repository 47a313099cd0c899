//! The HTML report: one self-contained `index.html` (inline SVG and CSS, no script, nothing
//! fetched) with the summary table and its definitions, then charts drawn with plotters' SVG
//! backend, every one with axes, ticks and units:
//!
//! - demand against every policy's serving replicas, overlaid, spot notices marked
//!   ([`timeline`]); the same per policy as small multiples with min–max bands;
//! - cost against SLO attainment: each policy's run, each baseline's sweep and tuned
//!   setting, the oracle, the SLO target ([`scatter`]);
//! - the queue-wait CDF on a log time axis ([`cdf`]);
//! - the SLO's error budget over time: each policy's late requests by arrival against the
//!   misses the target allows ([`budget`]), which says *when* a policy lost the SLO;
//! - cumulative cost over time, and the spot / on-demand split.
//!
//! All time charts share one time axis in the unit that fits the replay (minutes, hours,
//! days) and the capacity charts one replica scale. Long replays are aggregated into buckets
//! of a named width keeping min, max and mean ([`aggregate`]), so a 3-day report stays a few
//! hundred kB and a 5-s spike still shows.

mod aggregate;
mod axis;
mod budget;
mod cdf;
mod chart;
mod scatter;
mod table;
mod timeline;

use super::SimError;
use super::metrics::reaction_times_of;
use super::run::{Policy, PolicyRun, ScenarioRun};
use axis::TimeUnit;
use chart::{colour, hex};
use std::fmt::Write as _;
use std::path::Path;
use timeline::{OraclePlan, Timeline, Track};

/// Write `dir/index.html`.
pub fn write(run: &ScenarioRun, dir: &Path) -> Result<(), SimError> {
    let err = |e: std::io::Error| SimError::Report {
        path: dir.display().to_string(),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let html = render(run).map_err(err)?;
    std::fs::write(dir.join("index.html"), html).map_err(err)?;
    write_samples(run, dir).map_err(err)
}

/// Every policy's per-tick samples as `samples-<policy>.csv` beside the report, for charts of
/// one's own (the same figures the timeline draws: waiting, serving, running, warm, cost…),
/// and, per interval since the previous sample, the requests whose service `started` and how
/// many of those were `late`: waited longer than the largest queue-time bucket bound at or
/// below the SLO's `queue_wait_s` (exactly the SLO at 0.3, 0.5, 1, 2, 5, 10, 30 or 60 s) —
/// where in the replay the SLO was lost.
fn write_samples(run: &ScenarioRun, dir: &Path) -> Result<(), std::io::Error> {
    let slo_s = run.prepared.scenario.file.slo.queue_wait_s;
    let bucket = crate::sim::world::slo_bucket(slo_s);
    for r in run.runs.iter().filter(|r| !r.samples.is_empty()) {
        let path = dir.join(format!("samples-{}.csv", r.summary.policy));
        let mut w = csv::Writer::from_path(&path)?;
        w.write_record([
            "t_s",
            "waiting",
            "in_flight",
            "serving",
            "running",
            "spot_running",
            "warm",
            "cost_on_demand",
            "cost_spot",
            "queue_wait_p95_s",
            "started",
            "late",
        ])?;
        let mut before: Option<&crate::sim::world::Sample> = None;
        for s in &r.samples {
            let started = s
                .started_total
                .saturating_sub(before.map_or(0, |b| b.started_total));
            // No bucket bound at or below the SLO (under 0.3 s): every start counts as late.
            let on_time = bucket.map_or(0, |k| {
                s.started_wait_le[k].saturating_sub(before.map_or(0, |b| b.started_wait_le[k]))
            });
            before = Some(s);
            w.write_record([
                s.t_s.to_string(),
                s.waiting.to_string(),
                s.in_flight.to_string(),
                s.serving.to_string(),
                s.running.to_string(),
                s.spot_running.to_string(),
                s.warm.to_string(),
                format!("{:.4}", s.cost_on_demand),
                format!("{:.4}", s.cost_spot),
                format!("{:.3}", s.queue_wait_p95_s),
                started.to_string(),
                started.saturating_sub(on_time).to_string(),
            ])?;
        }
        w.flush()?;
    }
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:980px;color:#222}\
table{border-collapse:collapse;font-size:13px}\
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f4f4f4}\
td.l{text-align:left}figure{margin:1.5em 0}figcaption{font-weight:bold;margin-bottom:2px}\
p.how{font-size:13px;color:#444;margin:2px 0 6px}svg{display:block;max-width:100%;height:auto}\
div.table{overflow-x:auto}td.miss{color:#c00;font-weight:bold}p.glance{font-size:15px}\
dl.defs{font-size:13px;display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}\
dl.defs dt{font-weight:bold}dl.defs dd{margin:0}";

/// A chart with its caption and a line on how to read it.
fn figure(out: &mut String, caption: &str, how: &str, svg: &str) {
    let _ = writeln!(
        out,
        "<figure><figcaption>{}</figcaption><p class=how>{}</p>{svg}</figure>",
        esc(caption),
        esc(how)
    );
}

/// The whole page.
pub fn render(run: &ScenarioRun) -> std::io::Result<String> {
    let p = &run.prepared;
    let sc = &p.scenario.file;
    let span_s = p.end_ms as f64 / 1000.0;
    let unit = TimeUnit::for_span(span_s);
    let target = sc.slo.attainment;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=utf-8><title>gpupool simulate: {name}</title>\
         <style>{STYLE}</style></head><body><h1>Scenario {name}</h1><p>{desc}</p>\
         <p>Seed {seed}. SLO: queue wait ≤ {slo} s for {target} of requests. {n} requests \
         over {dur:.1} {unit}; demand peaks at {peak} replicas.</p>",
        name = esc(&sc.name),
        desc = esc(&sc.description),
        seed = p.seed,
        slo = sc.slo.queue_wait_s,
        target = cdf::percent(target),
        n = p.reqs.len(),
        dur = span_s / unit.seconds(),
        unit = unit.symbol(),
        peak = p.demand.iter().max().copied().unwrap_or(0),
    );
    if let Err(e) = &p.oracle {
        let _ = write!(
            out,
            "<p>The oracle failed ({}): it has no row and cost ÷ oracle is n/a.</p>",
            esc(&e.to_string())
        );
    }
    out.push_str("<h2>Summary</h2>");
    let rows: Vec<table::Row> = run
        .runs
        .iter()
        .map(|r| {
            let (api_s, ready_s) = reaction_times_of(&r.samples, &r.calls, &p.demand, p.bucket_ms);
            table::Row {
                run: r,
                api_s,
                ready_s,
            }
        })
        .collect();
    table::render(&mut out, &rows, target);
    glance(&mut out, run, target);

    let tl = timeline_of(run);
    out.push_str("<h2>Demand and capacity</h2>");
    figure(
        &mut out,
        "Demand vs serving replicas, all policies",
        &format!(
            "Grey: replicas the demand needed (per {} s demand bucket); lines: replicas \
             serving; the oracle's line is the instances its plan pays for. Lines are drawn \
             2 px apart so that equal ones stay visible. Triangles at the top: spot \
             interruption notices. {}",
            sc.oracle.bucket_s,
            tl.bucket_note()
        ),
        &tl.overlay()?,
    );

    out.push_str("<h2>Cost and SLO</h2>");
    figure(
        &mut out,
        "Cost vs SLO attainment",
        "Left is cheaper, up is better; the cheapest point above the red line wins. Rings: \
         each setting a baseline's --tune-baselines sweep tried, joined along its efficient \
         settings (none cheaper does better); the tuned one circled in black with its \
         setting. The attainment axis counts nines (90 %, 99 %, 99.9 %); the top is 100 %.",
        &scatter::chart(&cost_points(&run.runs), target)?,
    );
    let curves: Vec<cdf::WaitCurve> = run
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| cdf::WaitCurve {
            name: &r.summary.policy,
            colour: colour(i),
            waits_s: &r.waits_s,
        })
        .collect();
    figure(
        &mut out,
        "Queue wait: share of requests served within x",
        "Both axes are logarithmic in spirit: time on a log scale, the share in nines. A \
         policy meets the SLO when its curve passes above the crossing of the grey lines. \
         Waits under the left edge are counted there.",
        &cdf::chart(&curves, sc.slo.queue_wait_s, target)?,
    );
    budget_figure(&mut out, run, span_s)?;
    figure(
        &mut out,
        "Cumulative cost",
        "US$ spent so far by each policy; the cross is the oracle's total (its plan has no \
         cost timeline).",
        &tl.cumulative_cost()?,
    );
    split_bars(&mut out, &run.runs);

    out.push_str("<h2>Each policy alone</h2>");
    for (k, t) in tl.tracks.iter().enumerate() {
        figure(
            &mut out,
            t.name,
            "Same time axis and replica scale as above. Band: serving replicas' min–max per \
             bucket; dark line: instances paid for, including those still starting; red \
             lines: spot interruption notices.",
            &tl.small_multiple(k)?,
        );
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

/// The error-budget chart: each simulated policy's late requests by arrival against the misses
/// the target allows ([`budget`]).
fn budget_figure(out: &mut String, run: &ScenarioRun, span_s: f64) -> std::io::Result<()> {
    let sc = &run.prepared.scenario.file;
    let target = sc.slo.attainment;
    // The oracle serves every request on time by construction: it has no misses to draw.
    let misses: Vec<budget::MissCurve> = run
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.summary.policy != Policy::Oracle.name())
        .map(|(i, r)| budget::MissCurve {
            name: &r.summary.policy,
            colour: colour(i),
            arrivals_s: &r.miss_arrivals_s,
        })
        .collect();
    let budget_requests = run
        .runs
        .first()
        .map_or(0, |r| r.summary.error_budget.budget);
    figure(
        out,
        "Error budget: when each policy lost the SLO",
        &format!(
            "Requests that waited longer than {} s, counted by when they arrived; the grey \
             line is the {budget_requests} the {} target allows over the whole replay. A line \
             crossing it is the moment that policy missed the SLO: a step means one burst \
             spent the budget, a slope that misses accrued throughout. The scale stops at \
             twice the budget when a policy overspends it more (its line runs along the \
             top); the legend gives every total.",
            sc.slo.queue_wait_s,
            cdf::percent(target),
        ),
        &budget::chart(&misses, span_s, budget_requests)?,
    );
    Ok(())
}

/// One sentence: which run met the target cheapest, against the oracle.
fn glance(out: &mut String, run: &ScenarioRun, target: f64) {
    let oracle = run.prepared.oracle.as_ref().map_or(0.0, |o| o.cost_usd);
    let _ = match table::cheapest_meeting(&run.runs, target) {
        Some((policy, setting, cost, slo)) => writeln!(
            out,
            "<p class=glance>Cheapest to meet {}: <b>{}{}</b> at ${cost:.2} ({:.4}){}.</p>",
            cdf::percent(target),
            esc(policy),
            setting.map_or(String::new(), |s| format!(" tuned to {}", esc(s))),
            slo,
            if oracle > 0.0 {
                format!(", {:.2} × the oracle's ${oracle:.2}", cost / oracle)
            } else {
                String::new()
            },
        ),
        None => writeln!(
            out,
            "<p class=glance>No policy met {}.</p>",
            cdf::percent(target)
        ),
    };
}

/// The time charts' data: every simulated policy, the demand, the oracle's plan.
fn timeline_of(run: &ScenarioRun) -> Timeline<'_> {
    let p = &run.prepared;
    let bucket_s = p.bucket_ms as f64 / 1000.0;
    let tracks = run
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.samples.is_empty())
        .map(|(i, r)| Track {
            name: &r.summary.policy,
            colour: colour(i),
            samples: &r.samples,
            notices_s: r
                .interruptions
                .iter()
                .map(|x| x.notice_ms as f64 / 1000.0)
                .collect(),
        })
        .collect();
    // The oracle's plan, when it was asked for and solved.
    let oracle = run
        .runs
        .iter()
        .position(|r| r.summary.policy == Policy::Oracle.name())
        .zip(p.oracle.as_ref().ok())
        .map(|(i, o)| OraclePlan {
            colour: colour(i),
            paid: o
                .paid
                .iter()
                .enumerate()
                .map(|(b, (od, spot))| (b as f64 * bucket_s, f64::from(od + spot)))
                .collect(),
            cost_usd: o.cost_usd,
        });
    Timeline {
        span_s: p.end_ms as f64 / 1000.0,
        sample_s: p.params.sample_interval_s,
        demand: p
            .demand
            .iter()
            .enumerate()
            .map(|(b, d)| (b as f64 * bucket_s, f64::from(*d)))
            .collect(),
        tracks,
        oracle,
        gpus_per_instance: p.groups.first().map_or(1, |g| g.instance_type.gpu.count),
    }
}

fn cost_points(runs: &[PolicyRun]) -> Vec<scatter::CostPoints<'_>> {
    runs.iter()
        .enumerate()
        .map(|(i, r)| scatter::CostPoints {
            name: &r.summary.policy,
            colour: colour(i),
            run: (r.summary.cost_usd, r.summary.slo_attainment),
            sweep: &r.sweep,
            tuned: r.tuned.as_ref(),
            is_oracle: r.summary.policy == Policy::Oracle.name(),
        })
        .collect()
}

/// Each policy's cost as a bar split into on-demand and spot, with its total.
fn split_bars(out: &mut String, runs: &[PolicyRun]) {
    const BAR_X: f64 = 150.0;
    const BAR_W: f64 = 600.0;
    let od = hex(colour(0));
    let spot = hex(colour(1));
    let max_cost = runs.iter().map(|r| r.summary.cost_usd).fold(1e-9, f64::max);
    let _ = write!(
        out,
        "<figure><figcaption>Cost split</figcaption><p class=how>US$ per policy: on-demand \
         (including warm-pool disks) and spot.</p><svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">",
        w = chart::W,
        h = runs.len() * 24 + 30,
    );
    for (k, r) in runs.iter().enumerate() {
        let y = k * 24 + 4;
        let w_od = r.summary.on_demand_cost_usd / max_cost * BAR_W;
        let w_spot = r.summary.spot_cost_usd / max_cost * BAR_W;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{ty}\">{name}</text>\
             <rect x=\"{BAR_X}\" y=\"{y}\" width=\"{w_od:.1}\" height=\"18\" fill=\"{od}\"/>\
             <rect x=\"{sx:.1}\" y=\"{y}\" width=\"{w_spot:.1}\" height=\"18\" fill=\"{spot}\"/>\
             <text x=\"{tx:.1}\" y=\"{ty}\">${c:.2}</text>",
            ty = y + 14,
            name = esc(&r.summary.policy),
            sx = BAR_X + w_od,
            tx = BAR_X + 6.0 + w_od + w_spot,
            c = r.summary.cost_usd
        );
    }
    let ly = runs.len() * 24 + 20;
    let _ = writeln!(
        out,
        "<rect x=\"{BAR_X}\" y=\"{r}\" width=\"12\" height=\"12\" fill=\"{od}\"/>\
         <text x=\"{t1}\" y=\"{ly}\">on-demand (incl. warm-pool disks)</text>\
         <rect x=\"{x2}\" y=\"{r}\" width=\"12\" height=\"12\" fill=\"{spot}\"/>\
         <text x=\"{t2}\" y=\"{ly}\">spot</text></svg></figure>",
        r = ly - 10,
        t1 = BAR_X + 16.0,
        x2 = BAR_X + 260.0,
        t2 = BAR_X + 276.0,
    );
}

#[cfg(test)]
mod tests {
    use super::chart::texts;
    use super::*;
    use crate::sim::run::SweepPoint;
    use crate::sim::{RunOptions, Scenario, run_scenario};

    fn quick() -> ScenarioRun {
        let sc = Scenario::load("quick").unwrap();
        run_scenario(
            sc,
            &RunOptions {
                seed: 42,
                policies: Policy::ALL.to_vec(),
            },
            &|_, _| {},
        )
        .unwrap()
    }

    fn sp(setting: &str, slo: f64, cost: f64) -> SweepPoint {
        SweepPoint {
            setting: setting.into(),
            slo_attainment: slo,
            cost_usd: cost,
        }
    }

    /// The inline SVGs of a page, in order.
    fn svgs(html: &str) -> Vec<&str> {
        html.split("<svg")
            .skip(1)
            .map(|s| &s[..s.find("</svg>").unwrap()])
            .collect()
    }

    #[test]
    fn the_report_writes_every_simulated_policys_samples_as_csv() {
        let run = quick();
        let dir = std::env::temp_dir().join(format!("gpupool-report-csv-{}", std::process::id()));
        write(&run, &dir).unwrap();
        let mut total_late = 0;
        for r in run.runs.iter().filter(|r| !r.samples.is_empty()) {
            let path = dir.join(format!("samples-{}.csv", r.summary.policy));
            let text = std::fs::read_to_string(&path).unwrap();
            let mut lines = text.lines();
            let header = lines.next().unwrap();
            assert!(header.starts_with("t_s,waiting,in_flight,serving"));
            assert!(header.ends_with(",started,late"), "{header}");
            let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
            assert_eq!(rows.len(), r.samples.len(), "{}", path.display());
            // Per interval, so they add up to the run: quick's SLO (1 s) is a bucket bound, so
            // the late starts are the requests the summary counts as missing it, but for those
            // that start after the last sample (the replay's tail drains after it).
            let sum =
                |col: usize| -> u64 { rows.iter().map(|c| c[col].parse::<u64>().unwrap()).sum() };
            let (started, late) = (sum(10), sum(11));
            let s = &r.summary;
            let missed = (s.requests as f64 * (1.0 - s.slo_attainment)).round() as u64;
            let unsampled = s.requests - started;
            assert!(
                late <= missed && missed <= late + unsampled,
                "{}: started {started} late {late}, summary {} requests, {missed} missed",
                s.policy,
                s.requests
            );
            total_late += late;
        }
        // Some policy is late on quick (the reactive baselines miss the burst): the column
        // is not all zeros.
        assert!(total_late > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_report_of_the_oracle_alone_still_renders() {
        let sc = Scenario::load("quick").unwrap();
        let run = run_scenario(
            sc,
            &RunOptions {
                seed: 1,
                policies: vec![Policy::Oracle],
            },
            &|_, _| {},
        )
        .unwrap();
        let html = render(&run).unwrap();
        let charts = svgs(&html);
        // Overlay, cost vs SLO, CDF, error budget (its line alone), cumulative cost, split;
        // no small multiples.
        assert_eq!(charts.len(), 6);
        assert!(
            texts(charts[0])
                .iter()
                .any(|x| x == "oracle: instances paid")
        );
    }

    #[test]
    fn the_report_explains_its_table_and_charts_every_policy_with_units() {
        let mut run = quick();
        // A synthetic sweep whose tuned setting is cheaper than every run (whatever the
        // scenario's numbers become).
        let m = run
            .runs
            .iter()
            .map(|r| r.summary.cost_usd)
            .fold(f64::INFINITY, f64::min);
        let target = run.prepared.scenario.file.slo.attainment;
        let sweep = vec![
            sp("fleet=2", 0.5, 0.5 * m),
            sp("fleet=3", 0.6, 0.7 * m),
            sp("fleet=4", 1.0, 0.9 * m),
        ];
        let k = run
            .runs
            .iter()
            .position(|r| r.summary.policy == "static-peak")
            .unwrap();
        run.runs[k].tuned = Some(sweep[2].clone());
        run.runs[k].sweep = sweep;
        let html = render(&run).unwrap();

        // Self-contained: nothing fetched, nothing run.
        for external in ["<script", "<link", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(external), "{external}");
        }
        // Every column of the table is defined, and the tuned setting is shown.
        let defs = &html[html.find("<dl").unwrap()..];
        for c in table::COLUMNS {
            assert!(html.contains(&format!("<th>{}</th>", esc(c.header))));
            assert!(defs.contains(&format!("<dt>{}</dt>", esc(c.header))));
        }
        assert!(html.contains(&format!("fleet=4 (1.0000, ${:.2})", 0.9 * m)));
        let glance = format!(
            "Cheapest to meet {}: <b>static-peak tuned to fleet=4</b> at ${:.2}",
            cdf::percent(target),
            0.9 * m
        );
        assert!(html.contains(&glance), "{glance}");
        // The oracle reacts to nothing: api s, ready s and fallback are unknown, not 0.
        let oracle_row = html
            .split("<tr>")
            .find(|r| r.starts_with("<td class=l>oracle</td>"))
            .unwrap();
        assert_eq!(oracle_row.matches("<td>–</td>").count(), 3, "{oracle_row}");

        let charts = svgs(&html);
        let overlay = charts[0];
        for (i, r) in run.runs.iter().enumerate() {
            // Every policy has a line in the overlay, the oracle its plan.
            let stroke = format!("stroke=\"{}\"", hex(colour(i)).to_uppercase());
            assert!(
                overlay.contains(&stroke),
                "{} not in the overlay",
                r.summary.policy
            );
        }
        let (time, unit) = axis::Axis::time(run.prepared.end_ms as f64 / 1000.0);
        let t = texts(overlay);
        for label in [
            format!("time since the replay started ({})", unit.symbol()),
            time.label(time.ticks[0]),
            time.label(*time.ticks.last().unwrap()),
            "0".to_owned(),
        ] {
            assert!(t.contains(&label), "{label} missing in {t:?}");
        }
        // Cost vs SLO: the three sweep rings, the tuned setting named, the target line.
        let scatter = charts[1];
        let rings = scatter
            .split("<circle")
            .filter(|c| c.contains(&format!("r=\"{}\"", scatter::SWEEP_R)))
            .count();
        assert_eq!(rings, 3);
        let t = texts(scatter);
        for label in [
            "fleet=4".to_owned(),
            "static-peak sweep (3)".to_owned(),
            format!("SLO target {}", cdf::percent(target)),
        ] {
            assert!(t.contains(&label), "{label} missing in {t:?}");
        }
        assert!(t.iter().any(|x| x.starts_with("cost of the replay (US$)")));
        assert!(t.iter().any(|x| x.starts_with('$')));
        // Queue-wait CDF on a log axis; cumulative cost in dollars.
        let t = texts(charts[2]);
        assert!(t.iter().any(|x| x == "0.1 s") && t.iter().any(|x| x == "1 s"));
        // Error budget: each simulated policy's misses as the summary counts them, the
        // budget the target allows, no line for the oracle.
        let t = texts(charts[3]);
        let n = run.prepared.reqs.len() as f64;
        let budget = ((1.0 - target) * n + 1e-9).floor() as u64;
        assert!(
            t.contains(&format!("error budget: {budget} requests")),
            "{t:?}"
        );
        for r in &run.runs {
            let s = &r.summary;
            let late = format!("{}: {} late", s.policy, s.error_budget.misses);
            let shown = t.iter().any(|x| x.starts_with(&late));
            assert_eq!(shown, s.policy != "oracle", "{late} in {t:?}");
            let missed = (s.requests as f64 * (1.0 - s.slo_attainment)).round() as u64;
            assert_eq!(s.error_budget.misses, missed, "{}", s.policy);
            assert_eq!(r.miss_arrivals_s.len() as u64, s.error_budget.misses);
        }
        // quick's reactive baselines spend the budget in its burst: some line crosses it.
        assert!(
            run.runs
                .iter()
                .any(|r| r.summary.error_budget.spent_at_s.is_some())
        );
        let t = texts(charts[4]);
        assert!(t.iter().any(|x| x == "cumulative cost (US$)") && t.iter().any(|x| x == "$0"));
    }
}
