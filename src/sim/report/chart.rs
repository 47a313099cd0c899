//! What every chart shares: the palette, the SVG canvas with a legend column on the right,
//! and the axes (ticks, tick labels with units, axis descriptions).
//!
//! Text is SVG `<text>` that the browser renders with its own sans-serif font: plotters is
//! built without a font backend (its "naive" font only estimates label sizes for the layout),
//! so no font file is embedded and none need be installed where the report is written.

use super::axis::Axis;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub type DrawResult<T> = Result<T, DrawingAreaErrorKind<std::io::Error>>;
pub type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;

/// A linear f64 coordinate with the ticks an [`Axis`] chose. (plotters' own f64 coordinate
/// has no default label format, which its mesh requires even when a formatter is given.)
pub struct Lin {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Lin {
    fn of(a: &Axis) -> Lin {
        Lin {
            lo: a.lo,
            hi: a.hi,
            ticks: a.ticks.clone(),
        }
    }
}

impl Ranged for Lin {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        // As plotters maps its own f64 coordinate.
        let span = limit.1 - limit.0;
        let f = (v - self.lo) / (self.hi - self.lo);
        if span == 0 || !f.is_finite() {
            return limit.1;
        }
        limit.0 + (f64::from(span) * f + 1e-3).floor() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}
pub type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Lin, Lin>>;

/// Chart width, px (the page is 980 px wide).
pub const W: u32 = 960;
/// Width of the legend column at the right of each chart, px.
const LEGEND_W: u32 = 240;

/// Colour of the i-th policy (the same in every chart and legend).
pub fn colour(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

pub const DEMAND: RGBColor = RGBColor(90, 90, 90);
pub const GRID: RGBColor = RGBColor(228, 228, 228);
pub const NOTICE: RGBColor = RGBColor(200, 0, 0);

/// `c` darkened: `f` = 0 keeps it, 1 is black.
pub fn darken(c: RGBColor, f: f64) -> RGBColor {
    let m = |v: u8| (f64::from(v) * (1.0 - f)).round() as u8;
    RGBColor(m(c.0), m(c.1), m(c.2))
}

pub fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// A font of `px` CSS pixels (plotters' SVG backend writes `size / 1.24` as the font size).
pub fn font(px: f64) -> TextStyle<'static> {
    ("sans-serif", px * 1.24).into_font().color(&BLACK)
}

/// How an entry is drawn in the legend.
#[derive(Clone, Copy, Debug)]
pub enum Mark {
    Line(RGBColor),
    /// A shaded band (min–max) with its mean line.
    Band(RGBColor),
    /// A vertical tick (an event on the time axis).
    VLine(RGBColor),
    /// A downward triangle (an event at the top of a chart).
    Triangle(RGBColor),
    Dot(RGBColor),
    Ring(RGBColor),
    Cross(RGBColor),
}

pub struct LegendEntry {
    pub label: String,
    pub mark: Mark,
}

impl LegendEntry {
    pub fn new(label: impl Into<String>, mark: Mark) -> Self {
        LegendEntry {
            label: label.into(),
            mark,
        }
    }
}

/// Pixels the k-th of n overlaid lines is lifted: 2 px apart, centred on the true value, so
/// that policies drawing the same line stay visible side by side.
pub fn lift_px(k: usize, n: usize) -> f64 {
    2.0 * (k as f64 - (n.saturating_sub(1)) as f64 / 2.0)
}

/// Data units of one pixel on the y axis of `c` (to shift lines by pixels).
pub fn units_per_px_y(c: &Chart<'_, '_>) -> f64 {
    let (lo, hi) = {
        let r = c.y_range();
        (r.start, r.end)
    };
    let px = f64::from(c.plotting_area().dim_in_pixel().1.max(1));
    (hi - lo) / px
}

/// An SVG of `W × h` px: `plot` draws into the left part, the legend fills the right column.
pub fn canvas(
    h: u32,
    legend: &[LegendEntry],
    plot: impl FnOnce(&Area<'_>) -> DrawResult<()>,
) -> std::io::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(std::io::Error::other)?;
        let (left, right) = root.split_horizontally(W - LEGEND_W);
        plot(&left).map_err(std::io::Error::other)?;
        draw_legend(&right, legend).map_err(std::io::Error::other)?;
        root.present().map_err(std::io::Error::other)?;
    }
    Ok(svg)
}

fn draw_legend(area: &Area<'_>, entries: &[LegendEntry]) -> DrawResult<()> {
    let style = font(12.0).pos(Pos::new(HPos::Left, VPos::Center));
    for (k, e) in entries.iter().enumerate() {
        let y = 18 + 18 * k as i32;
        match e.mark {
            Mark::Line(c) => {
                area.draw(&PathElement::new([(4, y), (26, y)], c.stroke_width(2)))?;
            }
            Mark::Band(c) => {
                area.draw(&Rectangle::new(
                    [(4, y - 6), (26, y + 6)],
                    c.mix(0.2).filled(),
                ))?;
                area.draw(&PathElement::new([(4, y), (26, y)], c.stroke_width(2)))?;
            }
            Mark::VLine(c) => {
                area.draw(&PathElement::new(
                    [(15, y - 7), (15, y + 7)],
                    c.stroke_width(2),
                ))?;
            }
            Mark::Triangle(c) => {
                area.draw(&Polygon::new(
                    vec![(9, y - 5), (21, y - 5), (15, y + 5)],
                    c.filled(),
                ))?;
            }
            Mark::Dot(c) => area.draw(&Circle::new((15, y), 5, c.filled()))?,
            Mark::Ring(c) => area.draw(&Circle::new((15, y), 6, c.stroke_width(2)))?,
            Mark::Cross(c) => area.draw(&Cross::new((15, y), 6, c.stroke_width(3)))?,
        }
        area.draw(&Text::new(e.label.clone(), (32, y), style.clone()))?;
    }
    Ok(())
}

/// A chart with linear axes on `area`: ticks where the axes say, labels with units, light
/// grid lines at the ticks.
pub fn linear<'a, 'b>(area: &'a Area<'b>, x: &Axis, y: &Axis) -> DrawResult<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .margin_top(18)
        .margin_right(16)
        .margin_left(6)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(Lin::of(x), Lin::of(y))?;
    chart
        .configure_mesh()
        .x_desc(x.desc.as_str())
        .y_desc(y.desc.as_str())
        .x_label_formatter(&|v| x.label(*v))
        .y_label_formatter(&|v| y.label(*v))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK)
        .label_style(font(12.0))
        .axis_desc_style(font(13.0))
        .draw()?;
    Ok(chart)
}

/// The text of every `<text>` element of an SVG, trimmed (for tests).
#[cfg(test)]
pub fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            let text = &body[..body.find("</text>")?];
            Some(
                text.trim()
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            )
        })
        .collect()
}
