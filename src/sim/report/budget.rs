//! The SLO's error budget over time: for every policy, how many of the requests that arrived
//! so far waited past the SLO, against the misses the target allows over the whole replay.
//! Where a policy's line crosses the budget is when it lost the SLO; a line that climbs in one
//! step lost it in one burst (on the bursty code trace, every policy that misses does so in
//! minute 3, before anything could have been learnt), one that climbs steadily lost it
//! throughout.

use super::axis::Axis;
use super::chart::{self, LegendEntry, Mark};
use plotters::prelude::*;

const H: u32 = 320;
/// The grey of the other charts' guides (the CDF's SLO and target lines).
const BUDGET: RGBColor = RGBColor(110, 110, 110);

/// One policy's misses: arrival times (s into the replay, sorted) of its requests that waited
/// past the SLO.
pub struct MissCurve<'a> {
    pub name: &'a str,
    pub colour: RGBColor,
    pub arrivals_s: &'a [f64],
}

/// The y scale: up to twice the budget when some policy overspends it by more (its line then
/// runs along the top, its total in the legend), else up to the largest count shown.
fn top(curves: &[MissCurve], budget: u64) -> f64 {
    let most = curves.iter().map(|c| c.arrivals_s.len()).max().unwrap_or(0) as f64;
    let b = budget as f64;
    if most > 2.0 * b {
        (2.0 * b).max(4.0)
    } else {
        most.max(b).max(4.0) * 1.1
    }
}

/// The chart over `[0, span_s]` with the target's `budget` (requests) as a grey line.
pub fn chart(curves: &[MissCurve], span_s: f64, budget: u64) -> std::io::Result<String> {
    let (x, unit) = Axis::time(span_s);
    let cap = top(curves, budget);
    let y = Axis::linear(0.0, cap, true, "late requests, by arrival".into());
    let mut legend: Vec<LegendEntry> = curves
        .iter()
        .map(|c| {
            LegendEntry::new(
                format!("{}: {} late", c.name, c.arrivals_s.len()),
                Mark::Line(c.colour),
            )
        })
        .collect();
    legend.push(LegendEntry::new(
        format!("error budget: {budget} requests"),
        Mark::Line(BUDGET),
    ));
    chart::canvas(H.max(30 + 18 * legend.len() as u32), &legend, |area| {
        let mut c = chart::linear(area, &x, &y)?;
        let u = unit.seconds();
        c.draw_series(LineSeries::new(
            [(x.lo, budget as f64), (x.hi, budget as f64)],
            BUDGET.stroke_width(1),
        ))?;
        let per_px = chart::units_per_px_y(&c);
        for (k, curve) in curves.iter().enumerate() {
            let dy = chart::lift_px(k, curves.len()) * per_px;
            let at = |n: usize| (n as f64).min(y.hi) + dy;
            let pts = steps(curve.arrivals_s, span_s / u, u, y.hi)
                .into_iter()
                .map(|(x, n)| (x, at(n)))
                .collect::<Vec<_>>();
            c.draw_series(LineSeries::new(pts, curve.colour.stroke_width(2)))?;
        }
        Ok(())
    })
}

/// The step curve of a count of misses over time, in the time axis' unit (`unit_s` seconds):
/// up one at each arrival, flat to `end`. Arrivals closer than a 1/1,500 of the axis (under a
/// pixel) share one vertical step, and nothing is drawn above `top` (the line runs along it):
/// a policy with thousands of misses over days stays a few hundred points, not a point per
/// request.
fn steps(arrivals_s: &[f64], end: f64, unit_s: f64, top: f64) -> Vec<(f64, usize)> {
    let close = end / 1500.0;
    let mut pts = vec![(0.0, 0)];
    for (i, t) in arrivals_s.iter().enumerate() {
        if i as f64 >= top {
            break;
        }
        let x = t / unit_s;
        match pts.last_mut() {
            Some(last) if x - last.0 < close && last.1 == i => last.1 = i + 1,
            _ => {
                pts.push((x, i));
                pts.push((x, i + 1));
            }
        }
    }
    let n = pts.last().map_or(0, |p| p.1);
    pts.push((end, n));
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_budget_and_each_policys_misses_and_scales_to_the_budget() {
        let burst: Vec<f64> = (0..300).map(|i| 180.0 + f64::from(i) * 0.2).collect();
        let few = [400.0, 900.0];
        let curves = [
            MissCurve {
                name: "gpupool",
                colour: chart::colour(0),
                arrivals_s: &burst,
            },
            MissCurve {
                name: "static-peak",
                colour: chart::colour(1),
                arrivals_s: &few,
            },
        ];
        let svg = chart(&curves, 3600.0, 88).expect("draws");
        let texts = chart::texts(&svg);
        let has = |s: &str| texts.iter().any(|t| t == s);
        assert!(has("gpupool: 300 late"), "{texts:?}");
        assert!(has("static-peak: 2 late"), "{texts:?}");
        assert!(has("error budget: 88 requests"), "{texts:?}");
        assert!(has("late requests, by arrival"), "{texts:?}");
        assert!(has("time since the replay started (min)"), "{texts:?}");
        // 300 misses against a budget of 88: the scale stops at twice the budget.
        assert_eq!(top(&curves, 88), 176.0);
        // Within twice the budget, everything shown fits.
        assert!((top(&curves[1..], 88) - 96.8).abs() < 1e-9);
        // No budget (a 100 % target) and no miss still give a readable scale.
        assert_eq!(top(&[], 0), 4.4);
    }

    #[test]
    fn steps_merge_what_one_pixel_cannot_tell_apart_and_stop_at_the_top() {
        // Minutes on a 60-minute axis: 0.04 min apart and less share a step.
        let s = steps(&[60.0, 61.0, 62.0, 600.0], 60.0, 60.0, 100.0);
        assert_eq!(
            s,
            vec![
                (0.0, 0),
                (1.0, 0),
                (1.0, 3),
                (10.0, 3),
                (10.0, 4),
                (60.0, 4)
            ]
        );
        // Above the top the line runs flat: three misses drawn of a thousand.
        let many: Vec<f64> = (0..1000).map(|i| f64::from(i) * 3.0).collect();
        let s = steps(&many, 60.0, 60.0, 3.0);
        assert_eq!(s.last(), Some(&(60.0, 3)));
        assert!(s.len() <= 8, "{s:?}");
        assert_eq!(steps(&[], 60.0, 60.0, 3.0), vec![(0.0, 0), (60.0, 0)]);
    }
}
