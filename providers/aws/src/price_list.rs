//! Live on-demand prices from the AWS Price List Query API (`GetProducts`), with the shipped
//! regional table ([`crate::pricing`]) as the fallback.
//!
//! - **Call**: `GetProducts`, service code `AmazonEC2`, one call (all pages) per instance type,
//!   with `TERM_MATCH` filters on `regionCode`, `instanceType`, `operatingSystem=Linux`,
//!   `tenancy=Shared`, `preInstalledSw=NA`, `capacitystatus=Used`, `marketoption=OnDemand` and
//!   `productFamily=Compute Instance`: the Linux, shared-tenancy, no-pre-installed-software price
//!   of a running instance (API reference, `GetProducts` and `Filter`; the same filters as
//!   Karpenter's `fetchOnDemandPricing` in `pkg/providers/pricing/pricing.go`, which queries all
//!   types of the region at once; gpupool asks only for its groups' types).
//! - **Reply**: `PriceList` is a list of JSON *strings*, each one product in the price-list
//!   format: `{"product":{"attributes":{"instanceType":…,"regionCode":…}},"terms":{"OnDemand":
//!   {"<sku>.<offerTermCode>":{"priceDimensions":{"<sku>.<offerTermCode>.<rateCode>":{"unit":
//!   "Hrs","pricePerUnit":{"USD":"1.0060000000"}}}}}}}` (AWS Billing User Guide, "Reading the
//!   service price list files" / offer file format; Karpenter's `onDemandPage` reads the same
//!   fields). A reply that is not that shape is an error ([`PriceListError::Malformed`]), never
//!   a price of 0.
//! - **Endpoint**: the Price List Query API is served only from a few regions — us-east-1 and
//!   ap-south-1 (aws-sdk-pricing crate docs, "Service Endpoint"), and eu-central-1 (AWS Billing
//!   User Guide, "Price List Query API endpoints"; Karpenter's `NewAPI` picks ap-south-1 for
//!   `ap-*`, eu-central-1 for `eu-*`, us-east-1 otherwise). It answers for every region of the
//!   `aws` partition whichever endpoint is asked. The China partition's price list is in CNY and
//!   the GovCloud one is not reachable from the `aws` partition: gpupool does not call the API
//!   there ([`endpoint_region`] returns `None`) and uses the table.
//! - **Freshness**: fetched at the first discovery after start, refreshed once a day
//!   ([`REFRESH`]); a failed fetch is retried after [`RETRY_AFTER_FAILURE`] and meanwhile the
//!   last good live price, else the table, else an explicit unknown is used, with a warning.
//! - **EBS rates** (what a stopped warm-pool instance costs, [`crate::ebs`]): `GetProducts`,
//!   service code `AmazonEC2`, `TERM_MATCH` on `regionCode`, `volumeApiName` (the volume type's
//!   API name) and `productFamily`: `Storage` (unit `GB-Mo`), `System Operation` (provisioned
//!   IOPS, unit `IOPS-Mo`; the family also lists magnetic volumes' I/O requests in another
//!   unit, skipped) and `Provisioned Throughput` (gp3, unit `GiBps-mo`: a price per GiB/s-month,
//!   ÷ 1024 per MiB/s). The same product families, attribute and units infracost prices EBS
//!   volumes with (`internal/resources/aws/ebs_volume.go`); storage products carry `regionCode`
//!   and `volumeApiName` (a recorded `GetProducts` reply in grafana/cloudcost-exporter's
//!   `pkg/aws/ec2` tests: `"productFamily":"Storage"`, `"regionCode":"af-south-1"`,
//!   `"volumeApiName":"gp3"`, unit `GB-Mo`). io2's tiered IOPS products all match; the highest
//!   rate — the first tier, the only one gpupool prices — is taken. Same refresh schedule and
//!   fallback (the us-east-1 table in [`crate::ebs::table_rate`]) as on-demand prices.
//! - **IAM**: `pricing:GetProducts` (no resource-level permissions: `Resource: "*"`).

use crate::ebs::{RatePart, VolumeType};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Live prices are refreshed once a day: AWS changes on-demand list prices rarely (the shared
/// data set's us-east-1 history has 95 changes over 34 months for ~90 GPU types).
pub const REFRESH: Duration = Duration::from_secs(24 * 3600);
/// After a failed fetch (timeout, throttling, malformed reply) try again after an hour, not
/// every tick: the table covers the gap.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(3600);
/// Service code of EC2 in the price list.
pub const SERVICE_CODE: &str = "AmazonEC2";
/// Products per `GetProducts` page (the API maximum is 100, API reference `MaxResults`).
const PAGE_SIZE: i32 = 100;
/// Bound on pages followed for one type: the filters select one product; a server that keeps
/// returning a token cannot loop the controller.
const MAX_PAGES: usize = 10;

/// Region whose Price List Query endpoint to call for `region`, or `None` where gpupool does
/// not use the API (China: prices in CNY; GovCloud: another partition).
pub fn endpoint_region(region: &str) -> Option<&'static str> {
    if region.starts_with("cn-") || region.starts_with("us-gov-") {
        None
    } else if region.starts_with("ap-") {
        Some("ap-south-1")
    } else if region.starts_with("eu-") {
        Some("eu-central-1")
    } else {
        Some("us-east-1")
    }
}

/// The `GetProducts` filters for one type in one region, as (field, value) `TERM_MATCH` pairs.
pub fn filters(region: &str, instance_type: &str) -> Vec<(&'static str, String)> {
    vec![
        ("regionCode", region.to_owned()),
        ("instanceType", instance_type.to_owned()),
        ("operatingSystem", "Linux".to_owned()),
        ("tenancy", "Shared".to_owned()),
        ("preInstalledSw", "NA".to_owned()),
        ("capacitystatus", "Used".to_owned()),
        ("marketoption", "OnDemand".to_owned()),
        ("productFamily", "Compute Instance".to_owned()),
    ]
}

/// Why no live price could be had for a type. `instance_type` names what was priced: an
/// instance type, or an EBS rate key (`ebs/<volume type>/<part>`, [`crate::ebs::rate_key`]).
#[derive(Debug, thiserror::Error)]
pub enum PriceListError {
    /// The call failed: timeout, throttling, access denied, endpoint unreachable.
    #[error("GetProducts for {instance_type} failed")]
    Call {
        instance_type: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The reply is not in the price-list format (not JSON, no on-demand hourly USD price,
    /// a price that is not a positive number, a product of another type or region).
    #[error("GetProducts for {instance_type}: malformed price list entry: {detail}")]
    Malformed {
        instance_type: String,
        detail: String,
    },
    /// Not asked: a call for another type failed in the same round.
    #[error("GetProducts for {instance_type} not asked after an earlier call failed")]
    Skipped { instance_type: String },
}

impl PriceListError {
    /// Metric/log label.
    pub fn kind(&self) -> &'static str {
        match self {
            PriceListError::Call { .. } => "call",
            PriceListError::Malformed { .. } => "malformed",
            PriceListError::Skipped { .. } => "skipped",
        }
    }
}

fn malformed(instance_type: &str, detail: impl Into<String>) -> PriceListError {
    PriceListError::Malformed {
        instance_type: instance_type.to_owned(),
        detail: detail.into(),
    }
}

/// The on-demand hourly USD price in one price-list entry (one product as a JSON string).
/// `Ok(None)`: a well-formed entry for another product family the filters let through (no
/// `OnDemand` terms). Several hourly dimensions with different prices: the highest (never
/// under-estimate a cost).
pub fn parse_entry(
    entry: &str,
    region: &str,
    instance_type: &str,
) -> Result<Option<f64>, PriceListError> {
    let product = Product {
        subject: instance_type,
        attribute: ("instanceType", "", instance_type),
        region,
    };
    match product.highest_on_demand(entry, |u| u == "Hrs")? {
        None => Ok(None),
        Some(None) => Err(malformed(instance_type, "no hourly on-demand price")),
        Some(best) => Ok(best),
    }
}

/// What one `GetProducts` entry must be: the product `attribute` names (key, how an error
/// names it, value) in `region`; `subject` names it in errors.
struct Product<'a> {
    subject: &'a str,
    attribute: (&'static str, &'static str, &'a str),
    region: &'a str,
}

impl Product<'_> {
    /// The highest positive on-demand USD rate among the price dimensions whose unit `unit`
    /// accepts: `None` when the entry has no `OnDemand` terms, `Some(None)` when none of its
    /// dimensions is in that unit. Errors: not JSON, another product or region, a rate that is
    /// not a positive number.
    fn highest_on_demand(
        &self,
        entry: &str,
        unit: impl Fn(&str) -> bool,
    ) -> Result<Option<Option<f64>>, PriceListError> {
        let bad = |d: String| malformed(self.subject, d);
        let v: serde_json::Value =
            serde_json::from_str(entry).map_err(|e| bad(format!("not JSON: {e}")))?;
        let attrs = v
            .pointer("/product/attributes")
            .ok_or_else(|| bad("no product.attributes".into()))?;
        let attr = |k: &str| attrs.get(k).and_then(|x| x.as_str());
        let (key, label, want) = self.attribute;
        if attr(key) != Some(want) {
            return Err(bad(format!("product is for {label}{:?}", attr(key))));
        }
        if let Some(rc) = attr("regionCode")
            && rc != self.region
        {
            return Err(bad(format!("product is for region {rc}")));
        }
        let Some(terms) = v.pointer("/terms/OnDemand") else {
            return Ok(None);
        };
        let terms = terms
            .as_object()
            .ok_or_else(|| bad("terms.OnDemand is not an object".into()))?;
        let mut best: Option<f64> = None;
        for term in terms.values() {
            let dims = term
                .get("priceDimensions")
                .and_then(|d| d.as_object())
                .ok_or_else(|| bad("a term has no priceDimensions".into()))?;
            for d in dims.values() {
                if !d.get("unit").and_then(|u| u.as_str()).is_some_and(&unit) {
                    continue;
                }
                let usd = d
                    .pointer("/pricePerUnit/USD")
                    .and_then(|p| p.as_str())
                    .ok_or_else(|| bad("no pricePerUnit.USD string".into()))?;
                let p: f64 = usd
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("price {usd:?} is not a number")))?;
                if !(p.is_finite() && p > 0.0) {
                    return Err(bad(format!("price {usd:?} is not positive")));
                }
                best = highest(best, p);
            }
        }
        Ok(Some(best))
    }
}

/// The larger of a running maximum and `p`.
fn highest(best: Option<f64>, p: f64) -> Option<f64> {
    Some(best.map_or(p, |b| b.max(p)))
}

/// Product family, price-dimension unit and units per gpupool unit of one EBS rate (see the
/// module docs): throughput is priced per GiB/s-month, gpupool bills MiB/s.
pub fn ebs_query(part: RatePart) -> (&'static str, &'static str, f64) {
    match part {
        RatePart::Storage => ("Storage", "GB-Mo", 1.0),
        RatePart::Iops => ("System Operation", "IOPS-Mo", 1.0),
        RatePart::Throughput => ("Provisioned Throughput", "GiBps-mo", 1024.0),
    }
}

/// The `GetProducts` filters for one EBS rate in one region.
pub fn ebs_filters(
    region: &str,
    volume_type: &VolumeType,
    part: RatePart,
) -> Vec<(&'static str, String)> {
    vec![
        ("regionCode", region.to_owned()),
        ("volumeApiName", volume_type.api_name().to_owned()),
        ("productFamily", ebs_query(part).0.to_owned()),
    ]
}

/// The highest on-demand USD rate in one EBS price-list entry whose dimension unit is `part`'s
/// (compared case-insensitively: the price list spells `GiBps-mo` and `GB-Mo`). `Ok(None)`: a
/// well-formed product of the family in another unit (magnetic I/O requests) or without
/// on-demand terms. Errors like [`parse_entry`]'s: not JSON, a product of another volume type
/// or region, a rate that is not a positive number.
pub fn parse_ebs_entry(
    entry: &str,
    region: &str,
    volume_type: &VolumeType,
    part: RatePart,
) -> Result<Option<f64>, PriceListError> {
    let subject = crate::ebs::rate_key(volume_type, part);
    let product = Product {
        subject: &subject,
        attribute: ("volumeApiName", "volume type ", volume_type.api_name()),
        region,
    };
    let unit = ebs_query(part).1;
    Ok(product
        .highest_on_demand(entry, |u| u.eq_ignore_ascii_case(unit))?
        .flatten())
}

/// The highest price `parse` reads in any of `entries` (several products can match one set of
/// filters: never under-estimate a cost); the first malformed entry is the error.
fn highest_of(
    entries: &[String],
    parse: impl Fn(&str) -> Result<Option<f64>, PriceListError>,
) -> Result<Option<f64>, PriceListError> {
    let mut best = None;
    for e in entries {
        if let Some(p) = parse(e)? {
            best = highest(best, p);
        }
    }
    Ok(best)
}

/// A Price List Query API client for one workload region.
#[derive(Clone, Debug)]
pub struct PriceListClient {
    client: aws_sdk_pricing::Client,
    region: String,
}

impl PriceListClient {
    /// A client on the endpoint serving `region` (see [`endpoint_region`]), sharing the
    /// credentials, retries, timeouts and endpoint override of `cfg`. `None` where gpupool does
    /// not use the API.
    pub fn new(cfg: &aws_config::SdkConfig, region: &str) -> Option<Self> {
        let api_region = endpoint_region(region)?;
        let conf = aws_sdk_pricing::config::Builder::from(cfg)
            .region(aws_config::Region::new(api_region))
            .build();
        Some(PriceListClient {
            client: aws_sdk_pricing::Client::from_conf(conf),
            region: region.to_owned(),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Fetch every key of `due` (one `GetProducts` listing each, one after the other: a
    /// deployment has a handful of GPU types and volume types, and this runs once a day). A key
    /// is an instance type, or an EBS rate ([`crate::ebs::rate_key`], `ebs/<type>/<part>`,
    /// which no instance type name looks like).
    pub async fn fetch(
        &self,
        due: Vec<String>,
    ) -> Vec<(String, Result<Option<f64>, PriceListError>)> {
        let mut out = Vec::with_capacity(due.len());
        let mut failed = false;
        for t in due {
            // After a failed call (timeout, access denied, no route) the others would most
            // likely fail the same way, one timeout each: they are skipped this round and
            // retried with it.
            let r = if failed {
                Err(PriceListError::Skipped {
                    instance_type: t.clone(),
                })
            } else if let Some((volume_type, part)) = crate::ebs::parse_rate_key(&t) {
                self.ebs_rate(&volume_type, part).await
            } else {
                self.on_demand(&t).await
            };
            failed |= matches!(r, Err(PriceListError::Call { .. }));
            out.push((t, r));
        }
        out
    }

    /// The live on-demand price of `instance_type` in this client's region. `Ok(None)`: the
    /// price list has no such product there (the type is not sold in the region).
    pub async fn on_demand(&self, instance_type: &str) -> Result<Option<f64>, PriceListError> {
        let entries = self
            .products(filters(&self.region, instance_type), instance_type)
            .await?;
        highest_of(&entries, |e| parse_entry(e, &self.region, instance_type))
    }

    /// One live EBS rate of `volume_type` in this client's region, in the unit
    /// [`crate::ebs::cost_per_hour`] uses (USD per GB-, IOPS- or MiB/s-month; see
    /// [`ebs_query`]). `Ok(None)`: the price list has no such product there.
    pub async fn ebs_rate(
        &self,
        volume_type: &VolumeType,
        part: RatePart,
    ) -> Result<Option<f64>, PriceListError> {
        let key = crate::ebs::rate_key(volume_type, part);
        let (_, _, per_unit) = ebs_query(part);
        let entries = self
            .products(ebs_filters(&self.region, volume_type, part), &key)
            .await?;
        let best = highest_of(&entries, |e| {
            parse_ebs_entry(e, &self.region, volume_type, part)
        })?;
        Ok(best.map(|p| p / per_unit))
    }

    /// Every `PriceList` entry (all pages, at most [`MAX_PAGES`]) of a `GetProducts` listing
    /// with `TERM_MATCH` `filters`; errors name `subject`.
    async fn products(
        &self,
        filters: Vec<(&'static str, String)>,
        subject: &str,
    ) -> Result<Vec<String>, PriceListError> {
        use aws_sdk_pricing::types::{Filter, FilterType};
        let call_err = |e: Box<dyn std::error::Error + Send + Sync>| PriceListError::Call {
            instance_type: subject.to_owned(),
            source: e,
        };
        let mut terms = Vec::new();
        for (field, value) in filters {
            terms.push(
                Filter::builder()
                    .r#type(FilterType::TermMatch)
                    .field(field)
                    .value(value)
                    .build()
                    .map_err(|e| call_err(Box::new(e)))?,
            );
        }
        let mut entries = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .get_products()
                .service_code(SERVICE_CODE)
                .format_version("aws_v1")
                .set_filters(Some(terms.clone()))
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| call_err(Box::new(e)))?;
            entries.extend(out.price_list().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(entries),
            }
        }
        Err(malformed(
            subject,
            format!("more than {MAX_PAGES} pages for one product"),
        ))
    }
}

/// What the last fetch of one type gave.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fetched {
    /// The live price (`None`: the price list has no product for the type in the region).
    Price(Option<f64>),
    Failed,
}

/// Live on-demand prices per type, with when each was fetched. Time is passed in (monotonic
/// instants from `gpupool_provider::clock`).
#[derive(Clone, Debug, Default)]
pub struct LiveOnDemand {
    entries: HashMap<String, (Fetched, Instant)>,
    /// The last good price of a type whose latest fetch failed: still the best figure known.
    last_good: HashMap<String, f64>,
}

impl LiveOnDemand {
    /// The types of `types` to fetch now (see [`LiveOnDemand::due`]).
    pub fn due_types<'t>(
        &self,
        types: impl IntoIterator<Item = &'t str>,
        now: Instant,
    ) -> Vec<String> {
        let mut v: Vec<String> = types
            .into_iter()
            .filter(|t| self.due(t, now))
            .map(str::to_owned)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Record fetch results; returns the failures, each a warning for the caller to log (the
    /// table, else an unknown price, is used for those types meanwhile).
    pub fn apply(
        &mut self,
        results: Vec<(String, Result<Option<f64>, PriceListError>)>,
        now: Instant,
    ) -> Vec<PriceListError> {
        let mut failures = Vec::new();
        for (t, r) in results {
            match r {
                Ok(p) => self.record(&t, Ok(p), now),
                Err(e) => {
                    self.record(&t, Err(()), now);
                    failures.push(e);
                }
            }
        }
        failures
    }

    /// Whether `instance_type` should be fetched now: never fetched, its price a day old, or
    /// its last fetch failed an hour ago.
    pub fn due(&self, instance_type: &str, now: Instant) -> bool {
        match self.entries.get(instance_type) {
            None => true,
            Some((Fetched::Price(_), at)) => now.saturating_duration_since(*at) >= REFRESH,
            Some((Fetched::Failed, at)) => {
                now.saturating_duration_since(*at) >= RETRY_AFTER_FAILURE
            }
        }
    }

    pub fn record(&mut self, instance_type: &str, got: Result<Option<f64>, ()>, now: Instant) {
        let f = match got {
            Ok(p) => {
                match p {
                    Some(p) => self.last_good.insert(instance_type.to_owned(), p),
                    None => self.last_good.remove(instance_type),
                };
                Fetched::Price(p)
            }
            Err(()) => Fetched::Failed,
        };
        self.entries.insert(instance_type.to_owned(), (f, now));
    }

    /// The live price to use: the latest fetched one, or the last good one after a failure.
    pub fn price(&self, instance_type: &str) -> Option<f64> {
        self.last_good.get(instance_type).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of one `PriceList` entry as the API reference and the price-list file format
    /// describe it (abridged to the fields gpupool reads, plus a few it ignores).
    fn entry(ty: &str, region: &str, usd: &str) -> String {
        serde_json::json!({
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {
                    "instanceType": ty, "regionCode": region, "operatingSystem": "Linux",
                    "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"
                },
                "sku": "ABCDEF"
            },
            "serviceCode": "AmazonEC2",
            "terms": { "OnDemand": { "ABCDEF.JRTCKXETXF": {
                "offerTermCode": "JRTCKXETXF", "sku": "ABCDEF",
                "priceDimensions": { "ABCDEF.JRTCKXETXF.6YS6EN2CT7": {
                    "unit": "Hrs", "pricePerUnit": { "USD": usd },
                    "description": "$1.006 per On Demand Linux g5.xlarge Instance Hour"
                } }
            } } },
            "version": "20260101000000",
            "publicationDate": "2026-01-01T00:00:00Z"
        })
        .to_string()
    }

    #[test]
    fn parses_the_hourly_usd_price() {
        let e = entry("g5.xlarge", "eu-west-1", "1.1230000000");
        assert_eq!(
            parse_entry(&e, "eu-west-1", "g5.xlarge").unwrap(),
            Some(1.123)
        );
    }

    #[test]
    fn malformed_entries_are_errors_never_zero() {
        // (entry, why it is malformed)
        let cases = [
            ("{not json".to_owned(), "not JSON"),
            (
                entry("g5.xlarge", "eu-west-1", "0.0000000000"),
                "not positive",
            ),
            (entry("g5.xlarge", "eu-west-1", "abc"), "not a number"),
            (entry("g5.2xlarge", "eu-west-1", "1.0"), "product is for"),
            (entry("g5.xlarge", "us-east-1", "1.0"), "region us-east-1"),
            (r#"{"terms":{}}"#.to_owned(), "no product.attributes"),
        ];
        for (e, why) in cases {
            let err = parse_entry(&e, "eu-west-1", "g5.xlarge").unwrap_err();
            assert_eq!(err.kind(), "malformed");
            assert!(err.to_string().contains(why), "{err} should say {why}");
        }
        // No OnDemand terms at all: not a price, not an error (e.g. a reserved-only product).
        let e = r#"{"product":{"attributes":{"instanceType":"g5.xlarge"}},"terms":{}}"#;
        assert_eq!(parse_entry(e, "eu-west-1", "g5.xlarge").unwrap(), None);
    }

    /// One EBS product as a recorded `GetProducts` reply has it (grafana/cloudcost-exporter,
    /// `pkg/aws/ec2` tests; abridged).
    fn ebs_entry(family: &str, api: &str, region: &str, unit: &str, usd: &str) -> String {
        serde_json::json!({
            "product": {
                "productFamily": family,
                "attributes": {
                    "volumeType": "General Purpose", "usagetype": "EBS:VolumeUsage.gp3",
                    "locationType": "AWS Region", "regionCode": region,
                    "servicecode": "AmazonEC2", "volumeApiName": api
                },
                "sku": "XWCTMRRUJM7TGYST"
            },
            "serviceCode": "AmazonEC2",
            "terms": { "OnDemand": { "XWCTMRRUJM7TGYST.JRTCKXETXF": {
                "priceDimensions": { "XWCTMRRUJM7TGYST.JRTCKXETXF.6YS6EN2CT7": {
                    "unit": unit, "endRange": "Inf", "beginRange": "0",
                    "pricePerUnit": { "USD": usd }
                } },
                "offerTermCode": "JRTCKXETXF"
            } } }
        })
        .to_string()
    }

    #[test]
    fn parses_ebs_rates_in_their_units() {
        let gp3 = VolumeType::Gp3;
        let e = ebs_entry("Storage", "gp3", "af-south-1", "GB-Mo", "0.1047000000");
        assert_eq!(
            parse_ebs_entry(&e, "af-south-1", &gp3, RatePart::Storage).unwrap(),
            Some(0.1047)
        );
        // Throughput in GiBps-mo (unit compared case-insensitively).
        let e = ebs_entry(
            "Provisioned Throughput",
            "gp3",
            "us-east-1",
            "GiBps-mo",
            "40.96",
        );
        assert_eq!(
            parse_ebs_entry(&e, "us-east-1", &gp3, RatePart::Throughput).unwrap(),
            Some(40.96)
        );
        assert_eq!(
            ebs_query(RatePart::Throughput).2,
            1024.0,
            "÷ 1024 per MiB/s"
        );
        // Magnetic I/O requests share the family with provisioned IOPS: another unit, skipped.
        let e = ebs_entry("System Operation", "standard", "us-east-1", "IOs", "0.05");
        assert_eq!(
            parse_ebs_entry(&e, "us-east-1", &VolumeType::Standard, RatePart::Iops).unwrap(),
            None
        );
        for (entry, why) in [
            ("nope".to_owned(), "not JSON"),
            (
                ebs_entry("Storage", "gp2", "us-east-1", "GB-Mo", "0.1"),
                "volume type",
            ),
            (
                ebs_entry("Storage", "gp3", "eu-west-1", "GB-Mo", "0.1"),
                "region eu-west-1",
            ),
            (
                ebs_entry("Storage", "gp3", "us-east-1", "GB-Mo", "0"),
                "not positive",
            ),
            (
                ebs_entry("Storage", "gp3", "us-east-1", "GB-Mo", "-1"),
                "not positive",
            ),
            (
                ebs_entry("Storage", "gp3", "us-east-1", "GB-Mo", "x"),
                "not a number",
            ),
        ] {
            let err = parse_ebs_entry(&entry, "us-east-1", &gp3, RatePart::Storage).unwrap_err();
            assert_eq!(err.kind(), "malformed");
            assert!(err.to_string().contains(why), "{err} should say {why}");
            assert!(err.to_string().contains("ebs/gp3/storage"), "{err}");
        }
        assert_eq!(
            ebs_filters("eu-west-1", &VolumeType::Io2, RatePart::Iops),
            vec![
                ("regionCode", "eu-west-1".to_owned()),
                ("volumeApiName", "io2".to_owned()),
                ("productFamily", "System Operation".to_owned()),
            ]
        );
    }

    #[test]
    fn endpoint_regions() {
        for (region, want) in [
            ("us-east-1", Some("us-east-1")),
            ("us-west-2", Some("us-east-1")),
            ("ca-central-1", Some("us-east-1")),
            ("sa-east-1", Some("us-east-1")),
            ("eu-west-1", Some("eu-central-1")),
            ("ap-northeast-1", Some("ap-south-1")),
            ("cn-north-1", None),
            ("us-gov-west-1", None),
        ] {
            assert_eq!(endpoint_region(region), want, "{region}");
        }
    }

    #[test]
    fn refresh_schedule() {
        let t0 = gpupool_provider::clock::monotonic();
        let mut live = LiveOnDemand::default();
        assert!(live.due("g5.xlarge", t0), "never fetched");
        live.record("g5.xlarge", Ok(Some(1.2)), t0);
        assert!(!live.due("g5.xlarge", t0 + Duration::from_secs(3600)));
        assert!(live.due("g5.xlarge", t0 + REFRESH));
        // A failure keeps the last good price and retries after an hour.
        live.record("g5.xlarge", Err(()), t0 + REFRESH);
        assert_eq!(live.price("g5.xlarge"), Some(1.2));
        assert!(!live.due("g5.xlarge", t0 + REFRESH + Duration::from_secs(60)));
        assert!(live.due("g5.xlarge", t0 + REFRESH + RETRY_AFTER_FAILURE));
        // The price list saying "no such product" drops the old figure.
        live.record("g5.xlarge", Ok(None), t0 + REFRESH + RETRY_AFTER_FAILURE);
        assert_eq!(live.price("g5.xlarge"), None);
    }
}
