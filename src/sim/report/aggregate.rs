//! Time buckets for long runs: a 3-day run samples every 5 s (51,840 samples per policy), far
//! more than a chart has pixels. Samples are grouped into buckets of a "clock" width chosen
//! from the run's length, each keeping its min, max and mean, so a chart can draw the mean as
//! a line and min–max as a band: a 5-s spike stays visible at 3 days instead of being
//! averaged away.

/// A series' samples within one bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Time of the bucket's first sample, seconds.
    pub t_s: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub samples: usize,
}

/// Bucket widths a reader can name, seconds.
const WIDTHS_S: [f64; 14] = [
    1.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 21_600.0,
];

/// At most this many buckets per series: about one per two pixels of a chart's plot area.
pub const MAX_BUCKETS: f64 = 360.0;

/// The bucket width for a run of `span_s` seconds whose samples are `sample_s` apart: the
/// narrowest named width giving at most [`MAX_BUCKETS`] buckets, and never narrower than the
/// samples (then every bucket holds one sample and nothing is aggregated).
pub fn bucket_width_s(span_s: f64, sample_s: f64) -> f64 {
    let want = (span_s / MAX_BUCKETS).max(sample_s);
    WIDTHS_S
        .iter()
        .copied()
        .find(|w| *w >= want - 1e-9)
        .unwrap_or(want)
}

/// Group `(t_s, value)` points (in time order) into buckets of `width_s` seconds starting at
/// 0. Buckets without samples are left out.
pub fn aggregate(points: &[(f64, f64)], width_s: f64) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    let mut current: Option<(i64, Bucket, f64)> = None;
    for &(t, v) in points {
        let k = (t / width_s.max(1e-9)).floor() as i64;
        match &mut current {
            Some((ck, b, sum)) if *ck == k => {
                b.min = b.min.min(v);
                b.max = b.max.max(v);
                b.samples += 1;
                *sum += v;
            }
            _ => {
                if let Some((_, b, sum)) = current.take() {
                    out.push(finish(b, sum));
                }
                let b = Bucket {
                    t_s: t,
                    min: v,
                    max: v,
                    mean: v,
                    samples: 1,
                };
                current = Some((k, b, v));
            }
        }
    }
    if let Some((_, b, sum)) = current {
        out.push(finish(b, sum));
    }
    out
}

fn finish(mut b: Bucket, sum: f64) -> Bucket {
    b.mean = sum / b.samples as f64;
    b
}

/// Whether any bucket holds more than one sample (the chart then says what a bucket is).
pub fn is_aggregated(buckets: &[Bucket]) -> bool {
    buckets.iter().any(|b| b.samples > 1)
}

/// Points of a step line through `(t, value)` held until the next point and, for the last,
/// until `end`: runs of equal values collapse to their two corners.
pub fn step_points(points: &[(f64, f64)], end: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(points.len() * 2);
    for (i, &(t, v)) in points.iter().enumerate() {
        let next = points.get(i + 1).map_or(end.max(t), |p| p.0);
        match out.last_mut() {
            // Same value as the step before: stretch it.
            Some(last) if last.1 == v => last.0 = next,
            _ => {
                out.push((t, v));
                out.push((next, v));
            }
        }
    }
    out
}

/// The closed outline of a min–max band as steps: the max edge forward, the min edge back.
pub fn band_outline(buckets: &[Bucket], end: f64) -> Vec<(f64, f64)> {
    let upper: Vec<(f64, f64)> = buckets.iter().map(|b| (b.t_s, b.max)).collect();
    let lower: Vec<(f64, f64)> = buckets.iter().map(|b| (b.t_s, b.min)).collect();
    let mut out = step_points(&upper, end);
    let mut low = step_points(&lower, end);
    low.reverse();
    out.extend(low);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_widths_are_named_and_bounded() {
        for (span_s, width) in [
            // quick: 10 minutes of 5-s samples, not aggregated.
            (600.0, 5.0),
            // an hour: 10-s buckets (2 samples each).
            (3600.0, 10.0),
            // three days: 15-minute buckets.
            (259_200.0, 900.0),
        ] {
            assert_eq!(bucket_width_s(span_s, 5.0), width, "{span_s}");
            assert!(span_s / width <= MAX_BUCKETS);
        }
    }

    #[test]
    fn a_five_second_spike_survives_three_days_of_aggregation() {
        // Three days of 5-s samples at 2 replicas with one 5-s spike to 40.
        let mut pts: Vec<(f64, f64)> = (0..51_840).map(|i| (f64::from(i) * 5.0, 2.0)).collect();
        pts[20_000].1 = 40.0;
        let width = bucket_width_s(259_200.0, 5.0);
        let b = aggregate(&pts, width);
        assert_eq!(b.len(), 288);
        assert!(is_aggregated(&b));
        let max = b.iter().map(|x| x.max).fold(0.0, f64::max);
        assert_eq!(max, 40.0, "the spike's max is kept");
        let spiked = b.iter().find(|x| x.max == 40.0).unwrap();
        assert_eq!(spiked.min, 2.0);
        // Its mean is diluted over the bucket's 180 samples: only the max shows it.
        assert!((spiked.mean - (2.0 + 38.0 / 180.0)).abs() < 1e-9);
        assert_eq!(spiked.t_s, (100_000.0 / 900.0f64).floor() * 900.0);
    }

    #[test]
    fn sparse_samples_are_left_alone() {
        let pts = [(0.0, 1.0), (5.0, 3.0), (10.0, 2.0)];
        let b = aggregate(&pts, 5.0);
        assert_eq!(b.len(), 3);
        assert!(!is_aggregated(&b));
        assert_eq!(b[1].mean, 3.0);
    }

    #[test]
    fn steps_hold_each_value_until_the_next_and_merge_runs() {
        let pts = [(0.0, 1.0), (5.0, 1.0), (10.0, 3.0), (15.0, 1.0)];
        assert_eq!(
            step_points(&pts, 20.0),
            vec![
                (0.0, 1.0),
                (10.0, 1.0),
                (10.0, 3.0),
                (15.0, 3.0),
                (15.0, 1.0),
                (20.0, 1.0)
            ]
        );
        let b = aggregate(&[(0.0, 1.0), (1.0, 4.0), (10.0, 2.0)], 5.0);
        let outline = band_outline(&b, 15.0);
        assert_eq!(outline.first(), Some(&(0.0, 4.0)));
        assert_eq!(outline.last(), Some(&(0.0, 1.0)));
    }
}
