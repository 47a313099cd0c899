//! The HTML report: `index.html` with inline SVG charts drawn by `plotters`' SVG backend.
//!
//! plotters is built without a font backend (no system fonts needed), so charts carry no text:
//! plotters draws only lines and areas, and the axis ranges, titles and legends are plain
//! HTML around each chart.

use super::SimError;
use super::run::ScenarioRun;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

const W: u32 = 760;
const H: u32 = 220;

/// Colour of the i-th policy (the same in every chart and legend).
fn colour(i: usize) -> RGBColor {
    const C: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    C[i % C.len()]
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

type Series = (String, RGBColor, Vec<(f64, f64)>);

/// Line chart of several series; `marks` are x positions drawn as thin vertical lines.
fn line_chart(series: &[Series], marks: &[f64], step: bool) -> Result<(String, f64, f64), String> {
    let xmax = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|x| x.0))
        .fold(1e-9, f64::max);
    let ymax = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|x| x.1))
        .fold(1e-9, f64::max)
        * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(4)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        for f in [0.25, 0.5, 0.75, 1.0] {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, ymax * f / 1.05), (xmax, ymax * f / 1.05)],
                    RGBColor(230, 230, 230),
                ))
                .map_err(|e| e.to_string())?;
        }
        for &m in marks {
            chart
                .draw_series(LineSeries::new([(m, 0.0), (m, ymax)], RED.mix(0.5)))
                .map_err(|e| e.to_string())?;
        }
        for (_, c, pts) in series {
            let pts: Vec<(f64, f64)> = if step {
                let mut out = Vec::with_capacity(pts.len() * 2);
                for w in pts.windows(2) {
                    out.push(w[0]);
                    out.push((w[1].0, w[0].1));
                }
                if let Some(l) = pts.last() {
                    out.push(*l);
                }
                out
            } else {
                pts.clone()
            };
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok((svg, xmax, ymax / 1.05))
}

fn figure(
    out: &mut String,
    title: &str,
    x_label: &str,
    y_label: &str,
    chart: (String, f64, f64),
    legend: &[(String, RGBColor)],
) {
    let (svg, xmax, ymax) = chart;
    let _ = write!(
        out,
        "<figure><figcaption>{title}</figcaption><div class=chart><div class=y>{y_label}<br>max {ymax:.2}</div>{svg}</div>\
         <div class=x>0 … {xmax:.1} {x_label}</div><div class=legend>"
    );
    for (n, c) in legend {
        let _ = write!(out, "<span style=\"color:{}\">■ {n}</span> ", hex(*c));
    }
    out.push_str("</div></figure>\n");
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Write `dir/index.html`.
pub fn write(run: &ScenarioRun, dir: &Path) -> Result<(), SimError> {
    let io = |e: std::io::Error| SimError::Report {
        path: dir.display().to_string(),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let html = render(run).map_err(|m| SimError::Report {
        path: dir.display().to_string(),
        source: std::io::Error::other(m),
    })?;
    std::fs::write(dir.join("index.html"), html).map_err(io)
}

pub fn render(run: &ScenarioRun) -> Result<String, String> {
    let p = &run.prepared;
    let sc = &p.scenario.file;
    let hours = |t_s: f64| t_s / 3600.0;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=utf-8><title>gpupool simulate: {name}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:900px}} table{{border-collapse:collapse;font-size:13px}}\
         td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}} th{{background:#f4f4f4}}\
         figure{{margin:1.5em 0}} figcaption{{font-weight:bold;margin-bottom:4px}} .chart{{display:flex;align-items:center}}\
         .y{{writing-mode:vertical-rl;transform:rotate(180deg);font-size:12px;margin-right:4px}} .x,.legend{{font-size:12px}}\
         </style></head><body><h1>Scenario {name}</h1><p>{desc}</p><p>seed {seed}, SLO: queue wait ≤ {slo} s, \
         {n} requests over {dur:.2} h, demand peak {peak} replicas.</p>",
        name = esc(&sc.name),
        desc = esc(&sc.description),
        seed = p.seed,
        slo = sc.slo.queue_wait_s,
        n = p.reqs.len(),
        dur = hours(p.end_ms as f64 / 1000.0),
        peak = p.demand.iter().max().copied().unwrap_or(0),
    );
    out.push_str("<h2>Summary</h2><table><tr><th>policy</th><th>SLO att.</th><th>wait p50 s</th><th>p99 s</th><th>p99.9 s</th><th>cost $</th><th>spot $</th><th>on-demand $</th><th>÷ oracle</th><th>GPU-h</th><th>idle GPU-h</th><th>actions</th><th>hurt</th><th>failed launches</th><th>→ fallback p50 / max s</th></tr>");
    for r in &run.runs {
        let s = &r.summary;
        let _ = write!(
            out,
            "<tr><td style=text-align:left>{}</td><td>{:.4}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.policy),
            s.slo_attainment,
            s.queue_wait_p50_s,
            s.queue_wait_p99_s,
            s.queue_wait_p999_s,
            s.cost_usd,
            s.spot_cost_usd,
            s.on_demand_cost_usd,
            s.cost_vs_oracle
                .map_or_else(|| "n/a".to_owned(), |x| format!("{x:.3}")),
            s.gpu_hours,
            s.idle_gpu_hours,
            s.scale_actions,
            s.requests_hurt_by_preemption,
            s.failed_launches,
            match (s.failure_to_fallback_s_p50, s.failure_to_fallback_s_max) {
                (Some(p50), Some(max)) => format!("{p50:.0} / {max:.0}"),
                // No failure, or none followed by a fallback: unknown, not zero.
                _ => "–".to_owned(),
            }
        );
    }
    out.push_str("</table>");

    let bucket_h = p.bucket_ms as f64 / 3_600_000.0;
    let demand: Vec<(f64, f64)> = p
        .demand
        .iter()
        .enumerate()
        .map(|(b, d)| (b as f64 * bucket_h, f64::from(*d)))
        .collect();
    let simulated: Vec<(usize, &super::run::PolicyRun)> = run
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.samples.is_empty())
        .collect();

    out.push_str("<h2>Demand vs serving-ready capacity</h2><p>Black: demand (replicas per bucket); colour: replicas serving; red lines: spot interruption notices.</p>");
    for (i, r) in &simulated {
        let serving: Vec<(f64, f64)> = r
            .samples
            .iter()
            .map(|s| (hours(s.t_s), f64::from(s.serving)))
            .collect();
        let marks: Vec<f64> = r
            .interruptions
            .iter()
            .map(|x| hours(x.notice_ms as f64 / 1000.0))
            .collect();
        let series = vec![
            ("demand".to_owned(), BLACK, demand.clone()),
            (r.summary.policy.clone(), colour(*i), serving),
        ];
        let chart = line_chart(&series, &marks, true)?;
        figure(
            &mut out,
            &format!(
                "{} ({} interruption(s))",
                esc(&r.summary.policy),
                r.interruptions.len()
            ),
            "hours",
            "replicas",
            chart,
            &[
                ("demand".into(), BLACK),
                (r.summary.policy.clone(), colour(*i)),
            ],
        );
    }

    out.push_str("<h2>Queue wait distribution</h2>");
    let cap = 30.0;
    let mut series = Vec::new();
    for (i, r) in &simulated {
        let n = r.waits_s.len().max(1) as f64;
        let mut pts = Vec::new();
        let steps = 120;
        for k in 0..=steps {
            let x = cap * f64::from(k) / f64::from(steps);
            let below = r.waits_s.partition_point(|w| *w <= x) as f64;
            pts.push((x, below / n));
        }
        series.push((r.summary.policy.clone(), colour(*i), pts));
    }
    let legend: Vec<(String, RGBColor)> = series.iter().map(|(n, c, _)| (n.clone(), *c)).collect();
    let chart = line_chart(&series, &[], false)?;
    figure(
        &mut out,
        "Fraction of requests with queue wait ≤ x (CDF)",
        "seconds of queue wait (capped at 30)",
        "fraction",
        chart,
        &legend,
    );

    out.push_str("<h2>Cumulative cost</h2>");
    let series: Vec<Series> = simulated
        .iter()
        .map(|(i, r)| {
            (
                r.summary.policy.clone(),
                colour(*i),
                r.samples
                    .iter()
                    .map(|s| (hours(s.t_s), s.cost_on_demand + s.cost_spot))
                    .collect(),
            )
        })
        .collect();
    let chart = line_chart(&series, &[], false)?;
    figure(
        &mut out,
        "Cumulative cost",
        "hours",
        "dollars",
        chart,
        &legend,
    );

    out.push_str("<h2>Spot / on-demand split</h2><svg width=760 height=");
    let rows = run.runs.len();
    let _ = write!(out, "{}>", rows * 26 + 10);
    let max_cost = run
        .runs
        .iter()
        .map(|r| r.summary.cost_usd)
        .fold(1e-9, f64::max);
    for (k, r) in run.runs.iter().enumerate() {
        let y = k * 26 + 5;
        let od = r.summary.on_demand_cost_usd / max_cost * 560.0;
        let sp = r.summary.spot_cost_usd / max_cost * 560.0;
        let _ = write!(
            out,
            "<text x=0 y={ty} font-size=12>{name}</text><rect x=110 y={y} width={od:.1} height=18 fill=#1f77b4></rect>\
             <rect x={sx:.1} y={y} width={sp:.1} height=18 fill=#ff7f0e></rect>\
             <text x={tx:.1} y={ty} font-size=12>${c:.2}</text>",
            ty = y + 14,
            name = esc(&r.summary.policy),
            sx = 110.0 + od,
            tx = 116.0 + od + sp,
            c = r.summary.cost_usd
        );
    }
    out.push_str("</svg><p><span style=color:#1f77b4>■ on-demand (incl. warm-pool disks)</span> <span style=color:#ff7f0e>■ spot</span></p></body></html>\n");
    Ok(out)
}
