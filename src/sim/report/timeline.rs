//! The charts over time: demand against every policy's serving capacity in one chart, one
//! small chart per policy with its bands and spot notices, and cumulative cost. All share one
//! time axis (the replay's length, in the unit that fits) and the capacity charts share one
//! replica scale, so charts can be compared by eye.

use super::aggregate::{
    Bucket, aggregate, band_outline, bucket_width_s, is_aggregated, step_points,
};
use super::axis::{Axis, TimeUnit};
use super::chart::{self, Chart, DEMAND, DrawResult, LegendEntry, Mark, NOTICE, lift_px};
use crate::sim::world::Sample;
use plotters::prelude::*;

/// One simulated policy's samples.
pub struct Track<'a> {
    pub name: &'a str,
    pub colour: RGBColor,
    pub samples: &'a [Sample],
    /// Spot interruption notices the policy received, seconds since the start.
    pub notices_s: Vec<f64>,
}

/// The oracle's plan: instances paid per oracle bucket (it has no samples).
pub struct OraclePlan {
    pub colour: RGBColor,
    pub paid: Vec<(f64, f64)>,
    pub cost_usd: f64,
}

pub struct Timeline<'a> {
    pub span_s: f64,
    /// Seconds between two samples of a track.
    pub sample_s: f64,
    /// Replicas needed per demand bucket, `(start s, replicas)`.
    pub demand: Vec<(f64, f64)>,
    pub tracks: Vec<Track<'a>>,
    pub oracle: Option<OraclePlan>,
    /// GPUs per instance, for the replica axis' description.
    pub gpus_per_instance: u32,
}

/// Height of the overlay and cost charts, px; of each small multiple.
const H: u32 = 340;
const H_SMALL: u32 = 240;

impl Timeline<'_> {
    fn width_s(&self) -> f64 {
        bucket_width_s(self.span_s, self.sample_s)
    }

    fn time_axis(&self) -> (Axis, TimeUnit) {
        Axis::time(self.span_s)
    }

    fn buckets(&self, f: impl Fn(&Sample) -> f64, samples: &[Sample]) -> Vec<Bucket> {
        let pts: Vec<(f64, f64)> = samples.iter().map(|s| (s.t_s, f(s))).collect();
        aggregate(&pts, self.width_s())
    }

    fn demand_buckets(&self) -> Vec<Bucket> {
        aggregate(&self.demand, self.width_s())
    }

    /// The replica scale every capacity chart shares: up to the highest demand, serving or
    /// paid count of any policy (and the oracle's plan).
    fn replica_axis(&self) -> Axis {
        self.replica_axis_described(format!(
            "replicas = instances ({} GPU{} each)",
            self.gpus_per_instance,
            if self.gpus_per_instance == 1 { "" } else { "s" }
        ))
    }

    fn replica_axis_described(&self, desc: String) -> Axis {
        let top = self
            .tracks
            .iter()
            .flat_map(|t| {
                t.samples
                    .iter()
                    .map(|s| f64::from(s.serving.max(s.running)))
            })
            .chain(self.demand.iter().map(|d| d.1))
            .chain(self.oracle.iter().flat_map(|o| o.paid.iter().map(|p| p.1)))
            .fold(1.0, f64::max);
        Axis::linear(0.0, top, true, desc)
    }

    /// What one point of a line is, for the text beside the charts.
    pub fn bucket_note(&self) -> String {
        let w = self.width_s();
        let aggregated = self
            .tracks
            .first()
            .is_some_and(|t| is_aggregated(&self.buckets(|s| f64::from(s.serving), t.samples)));
        if aggregated {
            format!(
                "Lines are the mean over {} buckets, shaded bands the min–max within each \
                 bucket, so a short spike or dip still shows at this length.",
                duration_words(w)
            )
        } else {
            format!(
                "Every sample is drawn ({} apart).",
                duration_words(self.sample_s)
            )
        }
    }

    /// Demand and every policy's serving replicas in one chart, spot notices as triangles.
    pub fn overlay(&self) -> std::io::Result<String> {
        let (x, unit) = self.time_axis();
        let y = self.replica_axis();
        let mut legend = vec![LegendEntry::new(
            "demand (replicas needed)",
            Mark::Band(DEMAND),
        )];
        for t in &self.tracks {
            legend.push(LegendEntry::new(
                format!("{} serving", t.name),
                Mark::Line(t.colour),
            ));
        }
        if let Some(o) = &self.oracle {
            legend.push(LegendEntry::new(
                "oracle: instances paid",
                Mark::Line(o.colour),
            ));
        }
        for t in self.tracks.iter().filter(|t| !t.notices_s.is_empty()) {
            legend.push(LegendEntry::new(
                format!("spot notice: {} ({})", t.name, t.notices_s.len()),
                Mark::Triangle(t.colour),
            ));
        }
        chart::canvas(H.max(legend_height(legend.len())), &legend, |area| {
            let mut c = chart::linear(area, &x, &y)?;
            let u = unit.seconds();
            draw_demand(&mut c, &self.demand_buckets(), u, self.span_s)?;
            let n = self.tracks.len() + usize::from(self.oracle.is_some());
            // The oracle's plan first, under the policies.
            if let Some(o) = &self.oracle {
                let b = aggregate(&o.paid, self.width_s());
                let style = Style {
                    lift_px: lift_px(n - 1, n),
                    ..Style::line(2)
                };
                draw_buckets(&mut c, &b, u, self.span_s, o.colour, style)?;
            }
            for (k, t) in self.tracks.iter().enumerate() {
                let b = self.buckets(|s| f64::from(s.serving), t.samples);
                let style = Style {
                    lift_px: lift_px(k, n),
                    ..Style::line(2)
                };
                draw_buckets(&mut c, &b, u, self.span_s, t.colour, style)?;
            }

            let with_notices = self.tracks.iter().filter(|t| !t.notices_s.is_empty());
            for (row, t) in with_notices.enumerate() {
                let dy = 9 * row as i32;
                c.draw_series(t.notices_s.iter().map(|n| {
                    EmptyElement::at((n / u, y.hi))
                        + Polygon::new(vec![(-5, dy), (5, dy), (0, dy + 9)], t.colour.filled())
                }))?;
            }
            Ok(())
        })
    }

    /// One policy alone: demand, its serving replicas (band), the instances it paid for, and
    /// its spot notices as vertical lines.
    pub fn small_multiple(&self, k: usize) -> std::io::Result<String> {
        let t = &self.tracks[k];
        let (x, unit) = self.time_axis();
        let y = self.replica_axis_described("replicas".into());
        let paid = chart::darken(t.colour, 0.55);
        let mut legend = vec![
            LegendEntry::new("demand (replicas needed)", Mark::Band(DEMAND)),
            LegendEntry::new(format!("{} serving", t.name), Mark::Band(t.colour)),
            LegendEntry::new("instances paid (incl. starting)", Mark::Line(paid)),
        ];
        if !t.notices_s.is_empty() {
            legend.push(LegendEntry::new(
                format!("spot notice ({})", t.notices_s.len()),
                Mark::VLine(NOTICE),
            ));
        }
        chart::canvas(H_SMALL, &legend, |area| {
            let mut c = chart::linear(area, &x, &y)?;
            let u = unit.seconds();
            draw_demand(&mut c, &self.demand_buckets(), u, self.span_s)?;
            let serving = self.buckets(|s| f64::from(s.serving), t.samples);
            let style = Style {
                band: true,
                ..Style::line(2)
            };
            draw_buckets(&mut c, &serving, u, self.span_s, t.colour, style)?;
            // Paid-for instances over the band: the gap above serving is starting capacity.
            let running = self.buckets(|s| f64::from(s.running), t.samples);
            draw_buckets(&mut c, &running, u, self.span_s, paid, Style::line(1))?;
            for n in &t.notices_s {
                c.draw_series(LineSeries::new(
                    [(n / u, y.lo), (n / u, y.hi)],
                    NOTICE.mix(0.6).stroke_width(1),
                ))?;
            }
            Ok(())
        })
    }

    /// Cumulative cost of each policy over time; the oracle's total as a cross at the end (its
    /// plan has no cost timeline: warm-pool disk cost is not split per bucket).
    pub fn cumulative_cost(&self) -> std::io::Result<String> {
        let (x, unit) = self.time_axis();
        let top = self
            .tracks
            .iter()
            .filter_map(|t| t.samples.last().map(|s| s.cost_on_demand + s.cost_spot))
            .chain(self.oracle.iter().map(|o| o.cost_usd))
            .fold(0.01, f64::max);
        let y = Axis::linear(0.0, top, false, "cumulative cost (US$)".into()).with_unit("$", "");
        let mut legend: Vec<LegendEntry> = self
            .tracks
            .iter()
            .map(|t| LegendEntry::new(t.name, Mark::Line(t.colour)))
            .collect();
        if let Some(o) = &self.oracle {
            legend.push(LegendEntry::new(
                format!("oracle total ${:.2}", o.cost_usd),
                Mark::Cross(o.colour),
            ));
        }
        chart::canvas(H.max(legend_height(legend.len())), &legend, |area| {
            let mut c = chart::linear(area, &x, &y)?;
            let u = unit.seconds();
            for t in &self.tracks {
                // Cumulative: the bucket's last (= max) value is where the curve is.
                let b: Vec<Bucket> = self
                    .buckets(|s| s.cost_on_demand + s.cost_spot, t.samples)
                    .into_iter()
                    .map(|b| Bucket { mean: b.max, ..b })
                    .collect();
                let pts: Vec<(f64, f64)> = b.iter().map(|b| (b.t_s / u, b.mean)).collect();
                c.draw_series(LineSeries::new(pts, t.colour.stroke_width(2)))?;
            }
            if let Some(o) = &self.oracle {
                c.draw_series(std::iter::once(Cross::new(
                    (self.span_s / u, o.cost_usd),
                    6,
                    o.colour.stroke_width(3),
                )))?;
            }
            Ok(())
        })
    }
}

/// Demand as a shaded area up to each bucket's max, with its mean as a line.
fn draw_demand(c: &mut Chart<'_, '_>, b: &[Bucket], unit_s: f64, end_s: f64) -> DrawResult<()> {
    let max: Vec<(f64, f64)> = b.iter().map(|x| (x.t_s, x.max)).collect();
    let mut outline: Vec<(f64, f64)> = step_points(&max, end_s)
        .into_iter()
        .map(|(t, v)| (t / unit_s, v))
        .collect();
    if let (Some(first), Some(last)) = (outline.first().copied(), outline.last().copied()) {
        outline.push((last.0, 0.0));
        outline.push((first.0, 0.0));
    }
    c.draw_series(std::iter::once(Polygon::new(
        outline,
        DEMAND.mix(0.22).filled(),
    )))?;
    draw_buckets(c, b, unit_s, end_s, DEMAND, Style::line(1))
}

/// How a series is drawn: line width, whether its min–max band is shaded, and how many
/// pixels it is shifted up so that lines equal to another stay visible.
#[derive(Clone, Copy)]
struct Style {
    width: u32,
    band: bool,
    lift_px: f64,
}

impl Style {
    fn line(width: u32) -> Style {
        Style {
            width,
            band: false,
            lift_px: 0.0,
        }
    }
}

/// Enough height for `n` legend entries.
fn legend_height(n: usize) -> u32 {
    30 + 18 * n as u32
}

/// Draw buckets as a step line of their means (x in seconds, plotted in `unit_s`), with the
/// min–max band beneath when `band` and the buckets hold more than one sample.
fn draw_buckets(
    c: &mut Chart<'_, '_>,
    b: &[Bucket],
    unit_s: f64,
    end_s: f64,
    colour: RGBColor,
    style: Style,
) -> DrawResult<()> {
    let dy = style.lift_px * chart::units_per_px_y(c);
    let scale = |pts: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        pts.into_iter().map(|(t, v)| (t / unit_s, v + dy)).collect()
    };
    if style.band && is_aggregated(b) {
        c.draw_series(std::iter::once(Polygon::new(
            scale(band_outline(b, end_s)),
            colour.mix(0.2).filled(),
        )))?;
    }
    let mean: Vec<(f64, f64)> = b.iter().map(|x| (x.t_s, x.mean)).collect();
    c.draw_series(LineSeries::new(
        scale(step_points(&mean, end_s)),
        colour.stroke_width(style.width),
    ))?;
    Ok(())
}

/// "15 min", "10 s", "1 h".
pub fn duration_words(s: f64) -> String {
    if s >= 3600.0 && s % 3600.0 == 0.0 {
        format!("{} h", s / 3600.0)
    } else if s >= 60.0 && s % 60.0 == 0.0 {
        format!("{} min", s / 60.0)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::super::chart::texts;
    use super::*;

    /// `hours` of 5-s samples serving `f(t_s)` replicas, paying for one more.
    fn samples(hours: f64, f: impl Fn(f64) -> u32) -> Vec<Sample> {
        let n = (hours * 720.0) as usize;
        (0..=n)
            .map(|i| {
                let t_s = i as f64 * 5.0;
                Sample {
                    t_s,
                    serving: f(t_s),
                    running: f(t_s) + 1,
                    cost_on_demand: t_s / 3600.0,
                    ..Sample::default()
                }
            })
            .collect()
    }

    fn timeline<'a>(hours: f64, a: &'a [Sample], b: &'a [Sample]) -> Timeline<'a> {
        Timeline {
            span_s: hours * 3600.0,
            sample_s: 5.0,
            demand: (0..(hours * 60.0) as usize)
                .map(|m| (m as f64 * 60.0, 3.0))
                .collect(),
            tracks: vec![
                Track {
                    name: "alpha",
                    colour: RGBColor(1, 2, 3),
                    samples: a,
                    notices_s: vec![600.0, 1200.0],
                },
                Track {
                    name: "beta",
                    colour: RGBColor(4, 5, 6),
                    samples: b,
                    notices_s: Vec::new(),
                },
            ],
            oracle: Some(OraclePlan {
                colour: RGBColor(7, 8, 9),
                paid: vec![(0.0, 3.0)],
                cost_usd: 2.5,
            }),
            gpus_per_instance: 4,
        }
    }

    #[test]
    fn the_overlay_shows_every_policy_on_labelled_axes_and_names_spot_notices() {
        let a = samples(1.0, |_| 4);
        let b = samples(1.0, |t| if t < 1800.0 { 2 } else { 6 });
        let tl = timeline(1.0, &a, &b);
        let svg = tl.overlay().unwrap();
        for colour in ["#010203", "#040506", "#070809"] {
            assert!(
                svg.contains(&format!(
                    "<polyline fill=\"none\" opacity=\"1\" stroke=\"{colour}\""
                )),
                "no line in {colour}"
            );
        }
        let t = texts(&svg);
        for label in [
            "time since the replay started (min)",
            "replicas = instances (4 GPUs each)",
            "0 min",
            "30 min",
            "60 min",
            "alpha serving",
            "beta serving",
            "oracle: instances paid",
            "spot notice: alpha (2)",
        ] {
            assert!(t.iter().any(|x| x == label), "{label} missing in {t:?}");
        }
        // Replica ticks up to the highest count paid for (7): 0, 2, 4, 6, 8.
        assert!(t.iter().any(|x| x == "8"));
        // One triangle per notice.
        assert_eq!(
            svg.matches("<polygon").count() - 1,
            2 + 1,
            "demand area + 2 notices + legend"
        );
    }

    #[test]
    fn three_days_stay_small_and_read_in_hours() {
        let a = samples(72.0, |t| 4 + ((t / 3600.0).sin() * 3.0) as u32);
        // 5-s spikes 455 s into every 2 h: inside a bucket, never its first or last sample.
        let b = samples(72.0, |t| if (t as i64) % 7200 == 455 { 20 } else { 3 });
        let tl = timeline(72.0, &a, &b);
        assert!(tl.bucket_note().contains("15 min buckets"));
        let overlay = tl.overlay().unwrap();
        let small = tl.small_multiple(1).unwrap();
        let cost = tl.cumulative_cost().unwrap();
        for svg in [&overlay, &small, &cost] {
            assert!(svg.len() < 80_000, "{} bytes", svg.len());
            let t = texts(svg);
            assert!(t.iter().any(|x| x == "time since the replay started (h)"));
            assert!(t.iter().any(|x| x == "72 h"), "{t:?}");
        }
        assert!(texts(&cost).iter().any(|x| x == "cumulative cost (US$)"));
        // beta's 5-s spikes to 20 every 2 h set the shared scale (0 … 20) even though each
        // is 1/180 of its bucket, and its band reaches them: the band's highest point is the
        // "20" tick's height.
        let tick_y = small
            .split("<text")
            .find(|t| t.contains(">\n20\n</text>") || t.contains(">20\n</text>"))
            .and_then(|t| attr(t, "y"))
            .expect("a 20 tick");
        let band = small
            .split("<polygon")
            .find(|p| p.contains("fill=\"#040506\""))
            .expect("beta's band");
        let top = attr(band, "points")
            .unwrap()
            .split_whitespace()
            .filter_map(|xy| xy.split(',').nth(1)?.parse::<i32>().ok())
            .min()
            .unwrap();
        assert!(
            (top - tick_y.parse::<i32>().unwrap()).abs() <= 1,
            "{top} vs {tick_y}"
        );
    }

    /// The value of attribute `name` in the start of an SVG tag.
    fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let len = tag[start..].find('"')?;
        Some(&tag[start..start + len])
    }
}
