//! Prices and interruption risk from the tables shipped in `data/` (see `data/README.md` for
//! their sources).
//!
//! - On-demand, per region, first that has a figure: the user's `price_overrides`, the live
//!   Price List API price ([`crate::price_list`]), the shipped table for the group's region
//!   (us-east-1 for every GPU type; us-gov-east-1 / us-gov-west-1 for the types in
//!   `data/ondemand_prices_regional.csv`). Otherwise the price is an explicit unknown
//!   ([`gpupool_provider::Price::Unknown`]): another region's figure is never borrowed (they
//!   differ by up to ~30 %, and unknown is not zero). [`ondemand`] decides.
//! - Spot: the live `DescribeSpotPriceHistory` price when there is one (see `discovery`), else
//!   `on-demand × (1 − advisor savings)`.
//! - Interruption risk: the Spot Instance Advisor bucket, a *monthly* interruption frequency,
//!   turned into an *hourly* probability (see [`hourly_risk`]).

use std::collections::HashMap;
use std::sync::OnceLock;

const ONDEMAND_CSV: &str = include_str!("../data/ondemand_prices_us_east_1.csv");
const REGIONAL_CSV: &str = include_str!("../data/ondemand_prices_regional.csv");
/// Region of `ONDEMAND_CSV`.
const US_EAST_1: &str = "us-east-1";
const ADVISOR_CSV: &str = include_str!("../data/spot_advisor_2025-06-28.csv");

/// Region whose advisor entry is used when the configured region has none for a type.
const FALLBACK_REGION: &str = "us-east-1";

/// Hours in an average month (365.25 × 24 / 12), the advisor's window.
const HOURS_PER_MONTH: f64 = 730.5;

/// Representative monthly interruption frequency of each advisor bucket: the bucket midpoint
/// (`<5%` → 2.5 %, `5-10%` → 7.5 %, …). The last bucket (`>20%`) has no upper edge; 25 % is its
/// lower edge plus half a bucket width, consistent with the others.
const BUCKET_MONTHLY_FREQUENCY: [f64; 5] = [0.025, 0.075, 0.125, 0.175, 0.25];

/// Bucket assumed for a type the advisor does not list: the worst one, because no data is no
/// evidence of safety.
pub const UNKNOWN_BUCKET: u8 = 4;

/// What the Spot Instance Advisor says about one type in one region.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdvisorEntry {
    /// Advertised average saving versus on-demand, in percent. Can be negative: the feed has
    /// rows where spot costs more than on-demand (p5.48xlarge in ca-central-1: −62 %).
    pub savings_pct: i16,
    /// 0 (`<5%`) ..= 4 (`>20%`) interrupted per month.
    pub bucket: u8,
}

struct Tables {
    /// (region, type) → dollars per hour.
    ondemand: HashMap<(&'static str, &'static str), f64>,
    advisor: HashMap<(&'static str, &'static str), AdvisorEntry>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| Tables {
        ondemand: parse_ondemand(ONDEMAND_CSV)
            .into_iter()
            .map(|(t, p)| ((US_EAST_1, t), p))
            .chain(parse_regional(REGIONAL_CSV))
            .collect(),
        advisor: parse_advisor(ADVISOR_CSV),
    })
}

/// Rows that do not parse are skipped: the tables are compiled in and checked by unit tests,
/// so a bad row is a packaging mistake the tests catch, not a runtime condition.
fn parse_ondemand(csv: &'static str) -> HashMap<&'static str, f64> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let (ty, price) = l.split_once(',')?;
            let p: f64 = price.trim().parse().ok()?;
            (p.is_finite() && p > 0.0).then_some((ty.trim(), p))
        })
        .collect()
}

fn parse_regional(csv: &'static str) -> HashMap<(&'static str, &'static str), f64> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            let (region, ty) = (f.next()?.trim(), f.next()?.trim());
            let p: f64 = f.next()?.trim().parse().ok()?;
            (p.is_finite() && p > 0.0).then_some(((region, ty), p))
        })
        .collect()
}

fn parse_advisor(csv: &'static str) -> HashMap<(&'static str, &'static str), AdvisorEntry> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            let region = f.next()?.trim();
            let ty = f.next()?.trim();
            let savings_pct: i16 = f.next()?.trim().parse().ok()?;
            let bucket: u8 = f.next()?.trim().parse().ok()?;
            ((-100..=100).contains(&savings_pct) && bucket <= 4).then_some((
                (region, ty),
                AdvisorEntry {
                    savings_pct,
                    bucket,
                },
            ))
        })
        .collect()
}

/// On-demand dollars per hour of `instance_type` in `region` from the shipped tables, if they
/// have that region's figure (no other region's figure is borrowed).
pub fn ondemand_price(region: &str, instance_type: &str) -> Option<f64> {
    tables().ondemand.get(&(region, instance_type)).copied()
}

/// Regions the shipped on-demand tables cover (for check-config and the README).
pub fn table_regions() -> std::collections::BTreeSet<&'static str> {
    tables().ondemand.keys().map(|(r, _)| *r).collect()
}

/// Where an on-demand price came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDemandSource {
    Override,
    PriceListApi,
    Table,
    /// No source has a figure for the type in the region.
    Unknown,
}

/// The on-demand price of a type in a region, first source that has one: the user's override,
/// the live Price List API price, the shipped table for that region. `None` (with
/// `OnDemandSource::Unknown`) otherwise.
pub fn ondemand(
    region: &str,
    instance_type: &str,
    overridden: Option<f64>,
    live: Option<f64>,
) -> (Option<f64>, OnDemandSource) {
    if let Some(p) = overridden {
        (Some(p), OnDemandSource::Override)
    } else if let Some(p) = live {
        (Some(p), OnDemandSource::PriceListApi)
    } else if let Some(p) = ondemand_price(region, instance_type) {
        (Some(p), OnDemandSource::Table)
    } else {
        (None, OnDemandSource::Unknown)
    }
}

/// The advisor entry for `instance_type` in `region`, falling back to us-east-1.
pub fn advisor(region: &str, instance_type: &str) -> Option<AdvisorEntry> {
    let t = &tables().advisor;
    t.get(&(region, instance_type))
        .or_else(|| t.get(&(FALLBACK_REGION, instance_type)))
        .copied()
}

/// Hourly interruption probability of an advisor bucket.
///
/// The advisor reports the share of instances interrupted over a month, `f`. Assuming a
/// constant hazard, the probability `p` that one instance is interrupted in a given hour
/// satisfies `1 − (1 − p)^730.5 = f`, so `p = 1 − (1 − f)^(1/730.5)`. For the buckets:
/// `<5%` → 3.5e-5/h, `5-10%` → 1.07e-4/h, `10-15%` → 1.83e-4/h, `15-20%` → 2.63e-4/h,
/// `>20%` → 3.94e-4/h.
pub fn hourly_risk(bucket: u8) -> f64 {
    let f = BUCKET_MONTHLY_FREQUENCY[usize::from(bucket.min(UNKNOWN_BUCKET))];
    1.0 - (1.0 - f).powf(1.0 / HOURS_PER_MONTH)
}

/// Spot price estimate when the API has no price history for a type × zone.
pub fn estimated_spot_price(ondemand: f64, entry: Option<AdvisorEntry>) -> f64 {
    let savings = entry.map_or(0.0, |e| f64::from(e.savings_pct) / 100.0);
    ondemand * (1.0 - savings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_tables_parse_completely() {
        let od_rows = ONDEMAND_CSV
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .count();
        let regional_rows = REGIONAL_CSV
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(
            tables().ondemand.len(),
            od_rows + regional_rows,
            "every on-demand row parses, no (region, type) twice"
        );
        let adv_rows = ADVISOR_CSV
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(
            tables().advisor.len(),
            adv_rows,
            "every advisor row parses, no duplicates"
        );
        assert!(od_rows > 80 && adv_rows > 800);
    }

    #[test]
    fn known_prices() {
        assert_eq!(ondemand_price("us-east-1", "p5.48xlarge"), Some(55.04));
        assert_eq!(ondemand_price("us-east-1", "g5.xlarge"), Some(1.006));
        assert_eq!(
            ondemand_price("us-east-1", "m5.large"),
            None,
            "not a GPU type"
        );
        assert_eq!(ondemand_price("us-gov-west-1", "g4dn.xlarge"), Some(0.663));
        // No figure for the region: unknown, never the us-east-1 one.
        assert_eq!(ondemand_price("eu-west-1", "g5.xlarge"), None);
        assert_eq!(
            table_regions().into_iter().collect::<Vec<_>>(),
            ["us-east-1", "us-gov-east-1", "us-gov-west-1"]
        );
    }

    #[test]
    fn ondemand_source_order() {
        // (override, live, region, want price, want source)
        let cases = [
            (
                Some(2.0),
                Some(1.5),
                "us-east-1",
                Some(2.0),
                OnDemandSource::Override,
            ),
            (
                None,
                Some(1.5),
                "us-east-1",
                Some(1.5),
                OnDemandSource::PriceListApi,
            ),
            (None, None, "us-east-1", Some(1.006), OnDemandSource::Table),
            (None, None, "eu-west-1", None, OnDemandSource::Unknown),
            (
                None,
                Some(1.2),
                "eu-west-1",
                Some(1.2),
                OnDemandSource::PriceListApi,
            ),
        ];
        for (over, live, region, price, source) in cases {
            assert_eq!(
                ondemand(region, "g5.xlarge", over, live),
                (price, source),
                "{over:?} {live:?} {region}"
            );
        }
    }

    #[test]
    fn regional_rows_are_gpu_types_of_the_catalogue() {
        // Every regional row names a type the us-east-1 table has (a typo would be an orphan).
        for l in REGIONAL_CSV.lines().skip(1) {
            let ty = l.split(',').nth(1).unwrap();
            assert!(ondemand_price("us-east-1", ty).is_some(), "{ty}");
        }
    }

    #[test]
    fn advisor_falls_back_to_us_east_1() {
        let e = advisor("us-east-1", "g4dn.xlarge").expect("g4dn.xlarge is in the feed");
        assert!(e.bucket <= 4 && e.savings_pct <= 100);
        let dearer = advisor("ca-central-1", "p5.48xlarge").expect("row with negative savings");
        assert!(dearer.savings_pct < 0);
        assert!(estimated_spot_price(10.0, Some(dearer)) > 10.0);
        // A region missing from the feed uses the us-east-1 row.
        assert_eq!(advisor("xx-nowhere-1", "g4dn.xlarge"), Some(e));
        assert_eq!(advisor("us-east-1", "m5.large"), None);
    }

    #[test]
    fn risk_rises_with_bucket_and_matches_monthly_frequency() {
        let risks: Vec<f64> = (0..=4).map(hourly_risk).collect();
        assert!(risks.windows(2).all(|w| w[0] < w[1]), "{risks:?}");
        // Round trip: the hourly risk compounded over a month gives the bucket frequency back.
        for (b, f) in BUCKET_MONTHLY_FREQUENCY.iter().enumerate() {
            let monthly = 1.0 - (1.0 - hourly_risk(b as u8)).powf(HOURS_PER_MONTH);
            assert!((monthly - f).abs() < 1e-9, "bucket {b}: {monthly} vs {f}");
        }
        assert!((hourly_risk(0) - 3.466e-5).abs() < 1e-7);
        assert_eq!(
            hourly_risk(9),
            hourly_risk(4),
            "out-of-range buckets clamp to the worst"
        );
    }

    #[test]
    fn spot_estimate_uses_savings() {
        let e = AdvisorEntry {
            savings_pct: 70,
            bucket: 1,
        };
        assert!((estimated_spot_price(10.0, Some(e)) - 3.0).abs() < 1e-9);
        assert_eq!(estimated_spot_price(10.0, None), 10.0);
    }
}
