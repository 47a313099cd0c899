//! Axis scales and ticks: the time unit that fits a run's length, "nice" tick steps, decade
//! ticks for log axes, and the tick labels with their units. Pure functions, tested below.

/// The unit a time axis is drawn in, chosen from the run's length so a 10-minute run reads in
/// minutes and a 3-day run in hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    Minutes,
    Hours,
    Days,
}

impl TimeUnit {
    /// Minutes up to 3 h, hours up to 4 days, days beyond.
    pub fn for_span(span_s: f64) -> TimeUnit {
        if span_s <= 3.0 * 3600.0 {
            TimeUnit::Minutes
        } else if span_s <= 4.0 * 86_400.0 {
            TimeUnit::Hours
        } else {
            TimeUnit::Days
        }
    }

    pub fn seconds(self) -> f64 {
        match self {
            TimeUnit::Minutes => 60.0,
            TimeUnit::Hours => 3600.0,
            TimeUnit::Days => 86_400.0,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            TimeUnit::Minutes => "min",
            TimeUnit::Hours => "h",
            TimeUnit::Days => "d",
        }
    }

    /// Tick steps that read naturally in this unit (a clock's divisions), smallest first.
    fn steps(self) -> &'static [f64] {
        match self {
            TimeUnit::Minutes => &[1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0],
            TimeUnit::Hours => &[1.0, 2.0, 3.0, 6.0, 12.0, 24.0],
            TimeUnit::Days => &[1.0, 2.0, 7.0, 14.0, 28.0],
        }
    }
}

/// One axis: its range in plotted units, where the ticks go, what it is and in which unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<f64>,
    /// What the axis measures, with its unit in parentheses, e.g. `"time (h)"`.
    pub desc: String,
    /// Written after each tick's number, e.g. `" h"`, `" s"`, `"%"`, or empty with a prefix.
    pub suffix: &'static str,
    /// Written before each tick's number, e.g. `"$"`.
    pub prefix: &'static str,
    /// Decimals of each tick label, from the tick step.
    pub decimals: usize,
    pub scale: Scale,
}

/// How plotted values map back to what a tick label says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    /// The value itself.
    Linear,
    /// `log10` of the value: ticks label `10^v` (see [`Axis::log10`]).
    Log10,
    /// "Nines" of a share: `v = -log10(1 - share)`, so 1 is 90 %, 2 is 99 %, 3 is 99.9 %;
    /// `top` stands for 100 % (no miss), one step above the smallest miss measured.
    Nines { top: f64 },
}

impl Axis {
    pub fn label(&self, v: f64) -> String {
        // -0.0 prints as "-0".
        let v = if v.abs() < 1e-12 { 0.0 } else { v };
        match self.scale {
            Scale::Linear if v == 0.0 => format!("{}0{}", self.prefix, self.suffix),
            Scale::Linear => format!("{}{:.*}{}", self.prefix, self.decimals, v, self.suffix),
            Scale::Log10 => {
                let x = 10f64.powf(v);
                let decimals = if x >= 1.0 {
                    0
                } else {
                    (-x.log10() - 1e-9).ceil() as usize
                };
                format!("{}{:.*}{}", self.prefix, decimals, x, self.suffix)
            }
            Scale::Nines { top } if (v - top).abs() < 1e-9 => "100 %".to_owned(),
            Scale::Nines { .. } => {
                let share = 100.0 * (1.0 - 10f64.powf(-v));
                let decimals = (v.round() as i64 - 2).max(0) as usize;
                format!("{share:.decimals$} %")
            }
        }
    }

    /// Where a share goes on a [`Scale::Nines`] axis whose top is `top`.
    pub fn nines(share: f64, top: f64) -> f64 {
        let miss = 1.0 - share;
        if miss <= 0.0 {
            top
        } else {
            (-miss.log10()).clamp(0.0, top)
        }
    }

    /// A "nines" axis for shares: from the fewest nines of `shares` (rounded down) to one
    /// step above the most nines measured below 100 %, which is labelled 100 %. `at_least`
    /// (e.g. the SLO target) stays below the top.
    pub fn nines_axis(shares: &[f64], at_least: f64, desc: String) -> Axis {
        let pos = |s: f64| -(1.0 - s).log10();
        let finite = shares
            .iter()
            .copied()
            .chain([at_least])
            .filter(|s| *s < 1.0)
            .map(pos);
        let most = finite.clone().fold(1.0, f64::max);
        // (1 − 0.99 is 0.010000000000000009: round before taking the floor.)
        let top = (most + 1e-9).floor() + 1.0;
        let bottom = (finite.fold(top - 1.0, f64::min).max(0.0) + 1e-9).floor();
        let ticks = (bottom as i64..=top as i64).map(|k| k as f64).collect();
        Axis {
            lo: bottom,
            hi: top,
            ticks,
            desc,
            suffix: "",
            prefix: "",
            decimals: 0,
            scale: Scale::Nines { top },
        }
    }

    /// A log axis over positive `[lo, hi]`, plotted as `log10`: ticks at 1, 2, 5 × 10^k when
    /// the range spans less than 3 decades, else at whole decades.
    pub fn log10(lo: f64, hi: f64, desc: String) -> Axis {
        let (dlo, dhi, decade_ticks) = decades(lo, hi);
        let (lo, hi, ticks) = if dhi / dlo <= 1000.0 {
            let l = lo.log10().floor();
            let h = hi.log10().ceil();
            let mut t = Vec::new();
            for k in l as i32..=h as i32 {
                for m in [1.0, 2.0, 5.0] {
                    let v = m * 10f64.powi(k);
                    if v >= lo * 0.999 && v <= hi * 1.001 {
                        t.push(v);
                    }
                }
            }
            // The data's own bounds, widened to the nearest 1-2-5 value around them.
            let below = [1.0, 2.0, 5.0]
                .iter()
                .map(|m| m * 10f64.powf(l))
                .filter(|v| *v <= lo)
                .fold(10f64.powf(l), f64::max);
            let above = [1.0, 2.0, 5.0, 10.0]
                .iter()
                .map(|m| m * 10f64.powf(h - 1.0))
                .find(|v| *v >= hi)
                .unwrap_or(10f64.powf(h));
            if !t.contains(&below) {
                t.insert(0, below);
            }
            if !t.contains(&above) {
                t.push(above);
            }
            (below, above, t)
        } else {
            (dlo, dhi, decade_ticks)
        };
        Axis {
            lo: lo.log10(),
            hi: hi.log10(),
            ticks: ticks.iter().map(|v| v.log10()).collect(),
            desc,
            suffix: "",
            prefix: "",
            decimals: 0,
            scale: Scale::Log10,
        }
    }

    /// A time axis over `[0, span_s]` in the unit that fits; values are plotted in that unit.
    pub fn time(span_s: f64) -> (Axis, TimeUnit) {
        let unit = TimeUnit::for_span(span_s);
        let hi = (span_s / unit.seconds()).max(1e-9);
        let step = unit
            .steps()
            .iter()
            .copied()
            .find(|s| hi / s <= MAX_TICKS)
            .unwrap_or_else(|| nice_step(hi, MAX_TICKS));
        // Below one unit (a run of seconds): fall back to decimal steps.
        let step = if hi < step {
            nice_step(hi, MAX_TICKS)
        } else {
            step
        };
        let axis = Axis {
            lo: 0.0,
            hi,
            ticks: ticks(0.0, hi, step),
            desc: format!("time since the replay started ({})", unit.symbol()),
            suffix: match unit {
                TimeUnit::Minutes => " min",
                TimeUnit::Hours => " h",
                TimeUnit::Days => " d",
            },
            prefix: "",
            decimals: decimals(step),
            scale: Scale::Linear,
        };
        (axis, unit)
    }

    /// A linear axis from `lo` to at least `hi` with 1-2-5 ticks; `integer` keeps steps ≥ 1
    /// (counts of replicas). The top is rounded up to the next tick so the data fits.
    pub fn linear(lo: f64, hi: f64, integer: bool, desc: String) -> Axis {
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let mut step = nice_step(hi - lo, 6.0);
        if integer {
            step = step.max(1.0);
        }
        let lo = (lo / step).floor() * step;
        let top = (hi / step).ceil() * step;
        Axis {
            lo,
            hi: top,
            ticks: ticks(lo, top, step),
            desc,
            suffix: "",
            prefix: "",
            decimals: decimals(step),
            scale: Scale::Linear,
        }
    }

    pub fn with_unit(mut self, prefix: &'static str, suffix: &'static str) -> Axis {
        self.prefix = prefix;
        self.suffix = suffix;
        self
    }
}

const MAX_TICKS: f64 = 9.0;

/// The smallest step of the form {1, 2, 5} × 10^k giving at most `max_ticks` intervals.
pub fn nice_step(span: f64, max_ticks: f64) -> f64 {
    if span.is_nan() || span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / max_ticks;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw - 1e-12)
        .unwrap_or(10.0 * mag)
}

/// Multiples of `step` from `lo` to `hi` inclusive (to rounding).
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Decimals that show a step exactly: 0 for steps ≥ 1, 1 for 0.5, 2 for 0.05 …
fn decimals(step: f64) -> usize {
    if step >= 1.0 {
        0
    } else {
        (-step.log10() - 1e-9).ceil().max(0.0) as usize
    }
}

/// Decade ticks 10^k covering `[lo, hi]` (both > 0) for a log axis, and the decade bounds
/// the axis is widened to.
pub fn decades(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let k0 = lo.max(1e-12).log10().floor() as i32;
    let k1 = hi.max(lo * 10.0).log10().ceil() as i32;
    let ticks: Vec<f64> = (k0..=k1).map(|k| 10f64.powi(k)).collect();
    (10f64.powi(k0), 10f64.powi(k1), ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_unit_fits_the_run() {
        for (span_s, unit) in [
            (600.0, TimeUnit::Minutes),
            (3600.0, TimeUnit::Minutes),
            (3.0 * 3600.0, TimeUnit::Minutes),
            (4.0 * 3600.0, TimeUnit::Hours),
            (3.0 * 86_400.0, TimeUnit::Hours),
            (7.0 * 86_400.0, TimeUnit::Days),
        ] {
            assert_eq!(TimeUnit::for_span(span_s), unit, "{span_s} s");
        }
    }

    #[test]
    fn time_ticks_follow_the_clock() {
        for (span_s, first_ticks, label) in [
            (600.0, vec![0.0, 2.0, 4.0], "10 min"),
            (3600.0, vec![0.0, 10.0, 20.0], "60 min"),
            (3.0 * 86_400.0, vec![0.0, 12.0, 24.0], "72 h"),
            (14.0 * 86_400.0, vec![0.0, 2.0, 4.0], "14 d"),
        ] {
            let (axis, _) = Axis::time(span_s);
            assert_eq!(axis.ticks[..3], first_ticks[..], "{span_s} s");
            assert_eq!(axis.label(*axis.ticks.last().unwrap()), label);
            assert!(axis.ticks.len() <= 10);
        }
        // Shorter than a minute: decimal minutes.
        let (axis, _) = Axis::time(30.0);
        assert_eq!(axis.label(axis.ticks[1]), "0.1 min");
    }

    #[test]
    fn linear_axes_round_up_to_a_tick_and_count_in_whole_replicas() {
        let a = Axis::linear(0.0, 13.0, true, "replicas".into());
        assert_eq!(a.ticks, vec![0.0, 5.0, 10.0, 15.0]);
        assert_eq!(a.hi, 15.0);
        let a = Axis::linear(0.0, 2.0, true, "replicas".into());
        assert_eq!(a.ticks, vec![0.0, 1.0, 2.0]);
        let a = Axis::linear(0.0, 1.37, false, "cost".into()).with_unit("$", "");
        assert_eq!(a.label(a.ticks[1]), "$0.5");
        assert_eq!(a.hi, 1.5);
        let a = Axis::linear(0.9, 1.0, false, "share".into());
        assert_eq!(a.label(a.ticks[1]), "0.92");
    }

    #[test]
    fn nice_steps_are_one_two_five() {
        for (span, step) in [
            (10.0, 2.0),
            (1.0, 0.2),
            (100.0, 20.0),
            (7.0, 2.0),
            (0.03, 0.005),
        ] {
            assert!((nice_step(span, 6.0) - step).abs() < 1e-12, "{span}");
        }
        assert_eq!(nice_step(0.0, 6.0), 1.0);
    }

    fn labels(a: &Axis) -> Vec<String> {
        a.ticks.iter().map(|v| a.label(*v)).collect()
    }

    #[test]
    fn log_axes_tick_decades_or_one_two_five() {
        let (lo, hi, _) = decades(0.004, 37.0);
        assert_eq!((lo, hi), (0.001, 100.0));
        let a = Axis::log10(0.004, 37.0, "wait".into()).with_unit("", " s");
        assert_eq!(
            labels(&a),
            ["0.001 s", "0.01 s", "0.1 s", "1 s", "10 s", "100 s"]
        );
        assert!((a.lo + 3.0).abs() < 1e-9 && (a.hi - 2.0).abs() < 1e-9);
        // Cost from $110 to $1,086: 1-2-5 ticks.
        let a = Axis::log10(110.0, 1086.0, "cost".into()).with_unit("$", "");
        assert_eq!(labels(&a), ["$100", "$200", "$500", "$1000", "$2000"]);
        assert!(a.lo <= 110f64.log10() && a.hi >= 1086f64.log10());
    }

    #[test]
    fn nines_axes_count_nines_and_keep_100_percent_on_top() {
        // Only 100 % and a 76 % besides the 99 % target (whose miss is 0.010000000000000009).
        let a = Axis::nines_axis(&[0.7623, 1.0], 0.99, "SLO".into());
        assert_eq!(labels(&a), ["0 %", "90 %", "99 %", "100 %"]);
        // Attainments 31 %, 91.8 %, 99.2 % and 100 %; target 99 %.
        let a = Axis::nines_axis(&[0.31, 0.918, 0.992, 1.0], 0.99, "SLO".into());
        assert_eq!(labels(&a), ["0 %", "90 %", "99 %", "100 %"]);
        assert_eq!(Axis::nines(1.0, a.hi), 3.0);
        assert!((Axis::nines(0.99, a.hi) - 2.0).abs() < 1e-9);
        // 1 miss in 2,112 requests: 99.95 % sits between 99.9 % and the 100 % top.
        let a = Axis::nines_axis(&[1.0 - 1.0 / 2112.0, 1.0], 0.99, "share".into());
        assert_eq!(labels(&a), ["99 %", "99.9 %", "100 %"]);
        let p = Axis::nines(1.0 - 1.0 / 2112.0, a.hi);
        assert!(p > 3.0 && p < 4.0);
    }
}
