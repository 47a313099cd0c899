//! Cost against SLO attainment: every policy's run, every setting a baseline's sweep tried
//! (`--tune-baselines`) joined along its efficient frontier, the tuned setting ringed, and the
//! oracle, with the scenario's SLO target as a line. Cheaper is left, better is up; what matters is the cheapest point above
//! the line. Attainment is on a "nines" axis (90 %, 99 %, 99.9 %) so 98.6 % and 99.2 % are
//! apart; cost goes to a log axis when the runs span more than 5×.

use super::axis::{Axis, Scale};
use super::cdf::percent;
use super::chart::{self, LegendEntry, Mark, font};
use crate::sim::run::SweepPoint;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One policy's points.
pub struct CostPoints<'a> {
    pub name: &'a str,
    pub colour: RGBColor,
    /// The policy's own run: `(cost $, attainment)`.
    pub run: (f64, f64),
    pub sweep: &'a [SweepPoint],
    pub tuned: Option<&'a SweepPoint>,
    pub is_oracle: bool,
}

const H: u32 = 380;
const TARGET: RGBColor = RGBColor(200, 0, 0);
/// Radius of a sweep point's ring, px.
pub const SWEEP_R: u32 = 4;
const TUNED_R: u32 = 9;

pub fn chart(points: &[CostPoints], target: f64) -> std::io::Result<String> {
    let costs: Vec<f64> = points
        .iter()
        .flat_map(|p| std::iter::once(p.run.0).chain(p.sweep.iter().map(|s| s.cost_usd)))
        .collect();
    let shares: Vec<f64> = points
        .iter()
        .flat_map(|p| std::iter::once(p.run.1).chain(p.sweep.iter().map(|s| s.slo_attainment)))
        .collect();
    let lo = costs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = costs.iter().copied().fold(0.0, f64::max);
    let desc = "cost of the replay (US$)";
    let x = if lo > 0.0 && hi / lo > 5.0 {
        Axis::log10(lo, hi, format!("{desc}, log scale")).with_unit("$", "")
    } else {
        Axis::linear(0.0, hi.max(0.01), false, desc.into()).with_unit("$", "")
    };
    let y = Axis::nines_axis(&shares, target, "SLO attainment (share of requests)".into());
    let px = |cost: f64| match x.scale {
        Scale::Log10 => cost.max(1e-9).log10(),
        _ => cost,
    };
    let top = y.hi;
    let py = |share: f64| Axis::nines(share, top);

    let legend = legend(points, target);

    chart::canvas(H.max(30 + 18 * legend.len() as u32), &legend, |area| {
        let mut c = chart::linear(area, &x, &y)?;
        let ty = py(target);
        c.draw_series(LineSeries::new(
            [(x.lo, ty), (x.hi, ty)],
            TARGET.stroke_width(1),
        ))?;
        for p in points {
            if p.sweep.is_empty() {
                continue;
            }
            let sweep: Vec<(f64, f64)> = p
                .sweep
                .iter()
                .map(|s| (px(s.cost_usd), py(s.slo_attainment)))
                .collect();
            let front: Vec<(f64, f64)> = frontier(p.sweep)
                .iter()
                .map(|s| (px(s.cost_usd), py(s.slo_attainment)))
                .collect();
            c.draw_series(LineSeries::new(front, p.colour.mix(0.4)))?;
            c.draw_series(
                sweep
                    .iter()
                    .map(|&pt| Circle::new(pt, SWEEP_R, p.colour.stroke_width(1))),
            )?;
            if let Some(t) = p.tuned {
                let at = (px(t.cost_usd), py(t.slo_attainment));
                c.draw_series(std::iter::once(Circle::new(
                    at,
                    TUNED_R,
                    BLACK.stroke_width(2),
                )))?;
            }
        }
        for p in points {
            let at = (px(p.run.0), py(p.run.1));
            if p.is_oracle {
                c.draw_series(std::iter::once(Cross::new(at, 7, p.colour.stroke_width(3))))?;
            } else {
                c.draw_series(std::iter::once(Circle::new(at, 5, p.colour.filled())))?;
            }
        }
        // Names of the runs first, then the tuned settings, each where it overprints nothing.
        let (xr, yr) = c.plotting_area().get_pixel_range();
        let mut labels = Labels::new((xr.start, yr.start - 16, xr.end, yr.end));
        let names = points.iter().map(|p| (p.run.0, p.run.1, p.name.to_owned()));
        let tuned = points
            .iter()
            .filter_map(|p| p.tuned)
            .map(|t| (t.cost_usd, t.slo_attainment, t.setting.clone()));
        let style = font(11.0).pos(Pos::new(HPos::Left, VPos::Top));
        for (cost, share, text) in names.chain(tuned) {
            let at = (px(cost), py(share));
            if let Some(offset) = labels.place(c.backend_coord(&at), &text) {
                c.draw_series(std::iter::once(
                    EmptyElement::at(at) + Text::new(text, offset, style.clone()),
                ))?;
            }
        }
        Ok(())
    })
}

/// A box in px: left, top, right, bottom.
type PxBox = (i32, i32, i32, i32);

/// Label boxes placed so far on a chart, px, so that labels do not overprint each other.
struct Labels {
    /// Left, top, right, bottom that labels must stay within.
    bounds: PxBox,
    /// Each label's point, text and box.
    placed: Vec<((i32, i32), String, PxBox)>,
}

impl Labels {
    fn new(bounds: PxBox) -> Labels {
        Labels {
            bounds,
            placed: Vec::new(),
        }
    }

    /// Where the top-left of `text` goes relative to its point `at`: the first spot right or
    /// left of the point, above or below it, that stays within bounds and overlaps no label
    /// placed before. `None` when every spot is taken, or the same text already labels a
    /// point within 12 px (several baselines tuned to the same setting).
    fn place(&mut self, at: (i32, i32), text: &str) -> Option<(i32, i32)> {
        // 11-px sans-serif: about 6.2 px per character, 13 px per line.
        let w = (text.chars().count() as f64 * 6.2).ceil() as i32;
        let h = 13;
        let near = |p: (i32, i32)| (p.0 - at.0).abs() <= 12 && (p.1 - at.1).abs() <= 12;
        if self.placed.iter().any(|(p, t, _)| t == text && near(*p)) {
            return None;
        }
        let (l, t, r, b) = self.bounds;
        let spots = [
            (8, -15),
            (8, 3),
            (-8 - w, -15),
            (-8 - w, 3),
            (8, -29),
            (8, 17),
            (-8 - w, -29),
            (-8 - w, 17),
        ];
        let overlaps = |a: PxBox, b: &PxBox| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
        let offset = spots.into_iter().find(|(dx, dy)| {
            let bx = (at.0 + dx, at.1 + dy, at.0 + dx + w, at.1 + dy + h);
            bx.0 >= l
                && bx.1 >= t
                && bx.2 <= r
                && bx.3 <= b
                && !self.placed.iter().any(|(_, _, o)| overlaps(bx, o))
        })?;
        let bx = (
            at.0 + offset.0,
            at.1 + offset.1,
            at.0 + offset.0 + w,
            at.1 + offset.1 + h,
        );
        self.placed.push((at, text.to_owned(), bx));
        Some(offset)
    }
}

/// The sweep's efficient settings, cheapest first: those no cheaper (or equally cheap)
/// setting matches in attainment. A line through them is the best attainment each budget
/// buys; a two-knob sweep (min replicas × target) would zigzag if joined in cost order.
fn frontier(sweep: &[SweepPoint]) -> Vec<&SweepPoint> {
    let mut by_cost: Vec<&SweepPoint> = sweep.iter().collect();
    by_cost.sort_by(|a, b| {
        a.cost_usd
            .total_cmp(&b.cost_usd)
            .then(b.slo_attainment.total_cmp(&a.slo_attainment))
    });
    let mut best = f64::NEG_INFINITY;
    by_cost
        .into_iter()
        .filter(|s| {
            let better = s.slo_attainment > best;
            best = best.max(s.slo_attainment);
            better
        })
        .collect()
}

/// Each policy's run and sweep, the tuned ring, the target line.
fn legend(points: &[CostPoints], target: f64) -> Vec<LegendEntry> {
    let mut legend = Vec::new();
    for p in points {
        let mark = if p.is_oracle {
            Mark::Cross(p.colour)
        } else {
            Mark::Dot(p.colour)
        };
        legend.push(LegendEntry::new(p.name, mark));
        if !p.sweep.is_empty() {
            legend.push(LegendEntry::new(
                format!("{} sweep ({})", p.name, p.sweep.len()),
                Mark::Ring(p.colour),
            ));
        }
    }
    if points.iter().any(|p| p.tuned.is_some()) {
        legend.push(LegendEntry::new(
            "tuned: cheapest meeting target",
            Mark::Ring(BLACK),
        ));
    }
    legend.push(LegendEntry::new(
        format!("SLO target {}", percent(target)),
        Mark::Line(TARGET),
    ));

    legend
}

#[cfg(test)]
mod tests {
    use super::super::chart::texts;
    use super::*;

    fn sp(setting: &str, slo: f64, cost: f64) -> SweepPoint {
        SweepPoint {
            setting: setting.into(),
            slo_attainment: slo,
            cost_usd: cost,
        }
    }

    #[test]
    fn labels_take_the_first_free_spot_and_name_a_setting_once() {
        let mut l = Labels::new((0, 0, 500, 300));
        // Right of and above the point.
        assert_eq!(l.place((100, 100), "gpupool"), Some((8, -15)));
        // A neighbour 3 px away: above is taken, below is free.
        assert_eq!(l.place((103, 100), "gpupool-noforecast"), Some((8, 3)));
        // Near the right edge: to the left.
        let w = (6.0f64 * 6.2).ceil() as i32;
        assert_eq!(l.place((490, 200), "oracle"), Some((-8 - w, -15)));
        // The same setting tuned for two baselines at the same point: named once.
        assert!(l.place((300, 50), "fleet=3").is_some());
        assert_eq!(l.place((302, 50), "fleet=3"), None);
        // Every spot around a crowded point taken: no label rather than an overprint.
        let mut l = Labels::new((0, 0, 500, 300));
        for k in 0..8 {
            assert!(l.place((250, 150), &format!("label {k}")).is_some(), "{k}");
        }
        assert_eq!(l.place((250, 150), "one too many"), None);
    }

    #[test]
    fn the_frontier_keeps_settings_nothing_cheaper_beats() {
        let sweep = [
            sp("a", 0.90, 10.0),
            sp("b", 0.85, 12.0),
            sp("c", 0.99, 15.0),
            sp("d", 0.99, 16.0),
            sp("e", 0.95, 15.0),
            sp("f", 0.999, 30.0),
        ];
        let names: Vec<&str> = frontier(&sweep)
            .iter()
            .map(|s| s.setting.as_str())
            .collect();
        assert_eq!(names, ["a", "c", "f"]);
        assert!(frontier(&[]).is_empty());
    }

    #[test]
    fn every_sweep_point_is_drawn_and_the_tuned_one_is_named() {
        let sweep = [
            sp("fleet=2", 0.80, 20.0),
            sp("fleet=4", 0.97, 40.0),
            sp("fleet=6", 0.995, 60.0),
            sp("fleet=8", 1.0, 80.0),
        ];
        let hpa_sweep = [
            sp("min=1,target=6", 0.5, 15.0),
            sp("min=3,target=6", 0.992, 45.0),
        ];
        let points = [
            CostPoints {
                name: "gpupool",
                colour: RGBColor(10, 20, 30),
                run: (50.0, 0.993),
                sweep: &[],
                tuned: None,
                is_oracle: false,
            },
            CostPoints {
                name: "static-peak",
                colour: RGBColor(40, 50, 60),
                run: (80.0, 1.0),
                sweep: &sweep,
                tuned: Some(&sweep[2]),
                is_oracle: false,
            },
            CostPoints {
                name: "hpa-ca",
                colour: RGBColor(70, 80, 90),
                run: (15.0, 0.5),
                sweep: &hpa_sweep,
                tuned: Some(&hpa_sweep[1]),
                is_oracle: false,
            },
            CostPoints {
                name: "oracle",
                colour: RGBColor(100, 110, 120),
                run: (30.0, 1.0),
                sweep: &[],
                tuned: None,
                is_oracle: true,
            },
        ];
        let svg = chart(&points, 0.99).unwrap();
        let rings = |colour: &str| {
            svg.split("<circle")
                .filter(|c| c.contains(&format!("r=\"{SWEEP_R}\"")) && c.contains(colour))
                .count()
        };
        assert_eq!(rings("#28323C"), 4, "static-peak's four sweep points");
        assert_eq!(rings("#46505A"), 2, "hpa-ca's two sweep points");
        let t = texts(&svg);
        for label in [
            "fleet=6",
            "min=3,target=6",
            "gpupool",
            "oracle",
            "SLO target 99 %",
        ] {
            assert!(t.iter().any(|x| x == label), "{label} missing in {t:?}");
        }
        // Costs span 5.3×: a log axis with dollar ticks; attainment in nines.
        for tick in ["$20", "$50", "90 %", "99 %", "100 %"] {
            assert!(t.iter().any(|x| x == tick), "tick {tick} missing in {t:?}");
        }
        assert!(t.iter().any(|x| x == "cost of the replay (US$), log scale"));
    }
}
