//! Queue-wait CDF: for each policy, the share of requests that waited at most x, x on a log
//! axis (10 ms … the longest wait) and the share on a "nines" axis (90 %, 99 %, 99.9 %), so
//! the tail the SLO is about is as wide as the body. The SLO's wait and target cross where a
//! policy just meets it: a curve passing above the crossing meets the SLO.

use super::axis::Axis;
use super::chart::{self, LegendEntry, Mark};
use plotters::prelude::*;

pub struct WaitCurve<'a> {
    pub name: &'a str,
    pub colour: RGBColor,
    /// Every request's queue wait, seconds, sorted ascending.
    pub waits_s: &'a [f64],
}

const H: u32 = 340;
/// Points per curve along the log x axis.
const STEPS: usize = 240;
const GUIDE: RGBColor = RGBColor(110, 110, 110);

/// Share of `sorted` at most `x`.
fn share_at_most(sorted: &[f64], x: f64) -> f64 {
    if sorted.is_empty() {
        return 1.0;
    }
    sorted.partition_point(|w| *w <= x) as f64 / sorted.len() as f64
}

/// The x range: from 10 ms (or a tenth of the SLO wait, if shorter) to the longest wait (at
/// least ten times the SLO wait), seconds.
fn x_range(curves: &[&WaitCurve], slo_wait_s: f64) -> (f64, f64) {
    let lo = (slo_wait_s / 10.0).clamp(1e-3, 0.01);
    let longest = curves
        .iter()
        .filter_map(|c| c.waits_s.last().copied())
        .fold(0.0, f64::max);
    (lo, longest.max(slo_wait_s * 10.0))
}

pub fn chart(curves: &[WaitCurve], slo_wait_s: f64, target: f64) -> std::io::Result<String> {
    // The oracle has no requests of its own to wait.
    let owned: Vec<&WaitCurve> = curves.iter().filter(|c| !c.waits_s.is_empty()).collect();
    let (lo, hi) = x_range(&owned, slo_wait_s);
    let x = Axis::log10(lo, hi, "queue wait, log scale (s)".into()).with_unit("", " s");
    let xs: Vec<f64> = (0..=STEPS)
        .map(|k| x.lo + (x.hi - x.lo) * k as f64 / STEPS as f64)
        .collect();
    let shares: Vec<Vec<f64>> = owned
        .iter()
        .map(|c| {
            xs.iter()
                .map(|v| share_at_most(c.waits_s, 10f64.powf(*v)))
                .collect()
        })
        .collect();
    let all: Vec<f64> = shares.iter().flatten().copied().collect();
    let y = Axis::nines_axis(&all, target, "share of requests with queue wait ≤ x".into());
    let top = y.hi;
    let mut legend: Vec<LegendEntry> = owned
        .iter()
        .map(|c| LegendEntry::new(c.name, Mark::Line(c.colour)))
        .collect();
    legend.push(LegendEntry::new(
        format!("SLO: queue wait ≤ {slo_wait_s} s"),
        Mark::VLine(GUIDE),
    ));
    legend.push(LegendEntry::new(
        format!("target: {} of requests", percent(target)),
        Mark::Line(GUIDE),
    ));
    chart::canvas(H.max(30 + 18 * legend.len() as u32), &legend, |area| {
        let mut c = chart::linear(area, &x, &y)?;
        let slo_x = slo_wait_s.log10();
        let target_y = Axis::nines(target, top);
        c.draw_series(LineSeries::new(
            [(slo_x, y.lo), (slo_x, y.hi)],
            GUIDE.stroke_width(1),
        ))?;
        c.draw_series(LineSeries::new(
            [(x.lo, target_y), (x.hi, target_y)],
            GUIDE.stroke_width(1),
        ))?;
        let per_px = chart::units_per_px_y(&c);
        for (k, (curve, s)) in owned.iter().zip(&shares).enumerate() {
            let dy = chart::lift_px(k, owned.len()) * per_px;
            let pts: Vec<(f64, f64)> = xs
                .iter()
                .zip(s)
                .map(|(v, share)| (*v, Axis::nines(*share, top) + dy))
                .collect();
            c.draw_series(LineSeries::new(pts, curve.colour.stroke_width(2)))?;
        }
        Ok(())
    })
}

/// 0.99 → "99 %", 0.999 → "99.9 %".
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    let mut s = format!("{p:.3}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    format!("{s} %")
}

#[cfg(test)]
mod tests {
    use super::super::chart::texts;
    use super::*;

    #[test]
    fn shares_and_percentages() {
        let w = [0.0, 0.0, 0.5, 2.0];
        assert_eq!(share_at_most(&w, 0.01), 0.5);
        assert_eq!(share_at_most(&w, 1.0), 0.75);
        assert_eq!(share_at_most(&w, 2.0), 1.0);
        assert_eq!(percent(0.99), "99 %");
        assert_eq!(percent(0.999), "99.9 %");
        assert_eq!(percent(0.9), "90 %");
    }

    #[test]
    fn the_cdf_has_a_log_time_axis_with_units() {
        let a: Vec<f64> = (0..1000).map(|i| f64::from(i) / 100.0).collect();
        let b: Vec<f64> = (0..1000).map(|i| f64::from(i) / 10.0).collect();
        let svg = chart(
            &[
                WaitCurve {
                    name: "fast",
                    colour: RGBColor(1, 2, 3),
                    waits_s: &a,
                },
                WaitCurve {
                    name: "slow",
                    colour: RGBColor(4, 5, 6),
                    waits_s: &b,
                },
            ],
            1.0,
            0.99,
        )
        .unwrap();
        let t = texts(&svg);
        // Decade ticks from 10 ms to 100 s, each with its unit.
        for tick in ["0.01 s", "0.1 s", "1 s", "10 s", "100 s"] {
            assert!(t.iter().any(|x| x == tick), "tick {tick} missing in {t:?}");
        }
        assert!(t.iter().any(|x| x == "queue wait, log scale (s)"));
        // Nines on the share axis.
        for tick in ["90 %", "99 %", "100 %"] {
            assert!(t.iter().any(|x| x == tick), "tick {tick} missing in {t:?}");
        }
        assert!(svg.contains("stroke=\"#010203\"") && svg.contains("stroke=\"#040506\""));
        assert!(t.iter().any(|x| x == "SLO: queue wait ≤ 1 s"));
    }
}
