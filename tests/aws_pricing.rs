//! `gpupool_aws::price_list` (live on-demand prices from the AWS Price List Query API) against an
//! in-process fake of `GetProducts` on 127.0.0.1: the real SDK client, the real wire protocol.
//! Run with `cargo test --features aws --test aws_pricing`.
//!
//! The fake speaks what the API reference documents for `GetProducts` (AWS Price List Service
//! API Reference, "GetProducts"; protocol awsJson1_1): `POST /` with `X-Amz-Target:
//! AWSPriceListService.GetProducts` and a JSON body `{"ServiceCode", "Filters": [{"Type":
//! "TERM_MATCH", "Field", "Value"}], "FormatVersion", "NextToken", "MaxResults"}`; the reply
//! `{"FormatVersion": "aws_v1", "PriceList": ["<product JSON as a string>", …], "NextToken"}`,
//! each entry one product in the price-list format (`product.attributes`, `terms.OnDemand.
//! <sku>.<offerTermCode>.priceDimensions.<rateCode>.pricePerUnit.USD`). No emulator (moto,
//! LocalStack community) serves the Price List API, hence the fake.
//!
//! Failure paths the real service takes and gpupool must survive: a reply that is not in that
//! shape, and an endpoint that never answers (no route from an isolated VPC). Each must leave the
//! shipped table — or, where it has no figure, an explicit unknown — in use, with a warning.
#![cfg(feature = "aws")]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gpupool_aws::price_list::{LiveOnDemand, PriceListClient, PriceListError};
use gpupool_aws::pricing::{OnDemandSource, ondemand};
use gpupool_aws::sdk::aws_config;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Answer,
    /// Every product entry is not JSON.
    Malformed,
    /// Accept the request and never answer.
    Hang,
}

#[derive(Default)]
struct Fake {
    mode: Option<Mode>,
    /// (region, type) → USD per hour.
    prices: BTreeMap<(String, String), String>,
    /// (region, volumeApiName, productFamily) → (unit, USD per unit): EBS products.
    ebs: BTreeMap<(String, String, String), (String, String)>,
    /// Filters of every request, as field → value.
    requests: Vec<BTreeMap<String, String>>,
}

type Shared = Arc<Mutex<Fake>>;

/// One product of the price list, in the documented format (abridged).
fn product(ty: &str, region: &str, usd: &str) -> String {
    price_list_item(
        json!({
            "productFamily": "Compute Instance",
            "attributes": {
                "instanceType": ty, "regionCode": region, "operatingSystem": "Linux",
                "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
                "marketoption": "OnDemand"
            },
            "sku": "SKU1"
        }),
        json!({
            "unit": "Hrs", "pricePerUnit": { "USD": usd }, "appliesTo": [],
            "description": format!("${usd} per On Demand Linux {ty} Instance Hour")
        }),
    )
}

/// One EBS product (a recorded `GetProducts` reply in grafana/cloudcost-exporter's
/// `pkg/aws/ec2` tests, abridged): `productFamily`, `regionCode`, `volumeApiName`, one on-demand
/// dimension in `unit`.
fn ebs_product(family: &str, api: &str, region: &str, unit: &str, usd: &str) -> String {
    price_list_item(
        json!({
            "productFamily": family,
            "attributes": {
                "regionCode": region, "volumeApiName": api, "servicecode": "AmazonEC2",
                "locationType": "AWS Region"
            },
            "sku": "SKU2"
        }),
        json!({
            "unit": unit, "beginRange": "0", "endRange": "Inf",
            "pricePerUnit": { "USD": usd }, "appliesTo": []
        }),
    )
}

/// A `PriceList` entry as `GetProducts` returns it (a JSON document in a string): `product`
/// with its `sku`, and one on-demand term with one price dimension.
fn price_list_item(product: serde_json::Value, dimension: serde_json::Value) -> String {
    let sku = product["sku"].as_str().unwrap_or_default().to_string();
    let term = format!("{sku}.JRTCKXETXF");
    json!({
        "product": product,
        "serviceCode": "AmazonEC2",
        "terms": { "OnDemand": { term.clone(): {
            "offerTermCode": "JRTCKXETXF", "sku": sku,
            "priceDimensions": { format!("{term}.6YS6EN2CT7"): dimension }
        } } },
        "version": "20261101000000",
        "publicationDate": "2026-11-01T00:00:00Z"
    })
    .to_string()
}

async fn get_products(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target != "AWSPriceListService.GetProducts" {
        return (
            StatusCode::BAD_REQUEST,
            format!("unexpected target {target}"),
        )
            .into_response();
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let filters: BTreeMap<String, String> = req["Filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["Type"] == "TERM_MATCH")
        .filter_map(|f| {
            Some((
                f["Field"].as_str()?.to_owned(),
                f["Value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let (mode, entry) = {
        let mut st = s.lock().unwrap();
        st.requests.push(filters.clone());
        let key = (
            filters.get("regionCode").cloned().unwrap_or_default(),
            filters.get("instanceType").cloned().unwrap_or_default(),
        );
        let entry = match filters.get("volumeApiName") {
            Some(api) => {
                let family = filters.get("productFamily").cloned().unwrap_or_default();
                st.ebs
                    .get(&(key.0.clone(), api.clone(), family.clone()))
                    .map(|(unit, usd)| ebs_product(&family, api, &key.0, unit, usd))
            }
            None => st.prices.get(&key).map(|usd| product(&key.1, &key.0, usd)),
        };
        (st.mode.unwrap_or(Mode::Answer), entry)
    };
    let list: Vec<String> = match mode {
        Mode::Hang => std::future::pending().await,
        Mode::Malformed => vec!["{\"product\": {\"attributes\": ".to_owned()],
        Mode::Answer => entry.into_iter().collect(),
    };
    let reply = json!({ "FormatVersion": "aws_v1", "PriceList": list });
    (
        [("content-type", "application/x-amz-json-1.1")],
        reply.to_string(),
    )
        .into_response()
}

async fn start() -> (Shared, String, tokio::task::JoinHandle<()>) {
    let state: Shared = Arc::default();
    let app = Router::new()
        .route("/", axum::routing::post(get_products))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (state, url, server)
}

/// A client for `region` on the fake: one attempt, a short operation timeout.
async fn client(url: &str, region: &str) -> PriceListClient {
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(url)
        .credentials_provider(gpupool_aws::sdk::pricing::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(500))
                .build(),
        )
        .load()
        .await;
    PriceListClient::new(&cfg, region).expect("the API serves the aws partition")
}

#[tokio::test]
async fn live_prices_per_region_with_the_documented_filters() {
    let (fake, url, server) = start().await;
    fake.lock().unwrap().prices.insert(
        ("eu-west-1".into(), "g5.xlarge".into()),
        "1.1230000000".into(),
    );
    let api = client(&url, "eu-west-1").await;
    let now = gpupool_provider::clock::monotonic();
    let mut live = LiveOnDemand::default();
    let due = live.due_types(["g5.xlarge", "p5.48xlarge", "g5.xlarge"], now);
    assert_eq!(due, ["g5.xlarge", "p5.48xlarge"]);
    let failures = live.apply(api.fetch(due).await, now);
    assert!(failures.is_empty(), "{failures:?}");

    // The region's live figure, not the us-east-1 table's 1.006.
    assert_eq!(
        ondemand("eu-west-1", "g5.xlarge", None, live.price("g5.xlarge")),
        (Some(1.123), OnDemandSource::PriceListApi)
    );
    // Not sold there (empty PriceList) and not in the table: unknown, not zero.
    assert_eq!(
        ondemand("eu-west-1", "p5.48xlarge", None, live.price("p5.48xlarge")),
        (None, OnDemandSource::Unknown)
    );
    assert!(!live.due("g5.xlarge", now), "fetched once, refreshed daily");

    let reqs = fake.lock().unwrap().requests.clone();
    assert_eq!(reqs.len(), 2);
    for (field, value) in [
        ("regionCode", "eu-west-1"),
        ("instanceType", "g5.xlarge"),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
        ("marketoption", "OnDemand"),
        ("productFamily", "Compute Instance"),
    ] {
        assert_eq!(
            reqs[0].get(field).map(String::as_str),
            Some(value),
            "{field}"
        );
    }
    server.abort();
}

#[tokio::test]
async fn a_malformed_reply_leaves_the_table_or_unknown_with_a_warning() {
    let (fake, url, server) = start().await;
    fake.lock().unwrap().mode = Some(Mode::Malformed);
    let now = gpupool_provider::clock::monotonic();
    for (region, want) in [
        // us-east-1 has a shipped figure: it stays in use.
        ("us-east-1", (Some(1.006), OnDemandSource::Table)),
        // eu-west-1 has none: the price is unknown (never us-east-1's, never 0).
        ("eu-west-1", (None, OnDemandSource::Unknown)),
    ] {
        let api = client(&url, region).await;
        let mut live = LiveOnDemand::default();
        let due = live.due_types(["g5.xlarge"], now);
        let failures = live.apply(api.fetch(due).await, now);
        assert_eq!(failures.len(), 1, "{region}: one warning");
        assert!(
            matches!(&failures[0], PriceListError::Malformed { instance_type, .. } if instance_type == "g5.xlarge"),
            "{region}: {:?}",
            failures[0]
        );
        assert!(failures[0].to_string().contains("g5.xlarge"));
        assert_eq!(
            ondemand(region, "g5.xlarge", None, live.price("g5.xlarge")),
            want,
            "{region}"
        );
        assert!(!live.due("g5.xlarge", now), "not retried every tick");
    }
    server.abort();
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out_to_the_table() {
    let (fake, url, server) = start().await;
    fake.lock().unwrap().mode = Some(Mode::Hang);
    let api = client(&url, "us-east-1").await;
    let now = gpupool_provider::clock::monotonic();
    let mut live = LiveOnDemand::default();
    let due = live.due_types(["g5.xlarge", "g6.xlarge"], now);
    let failures = live.apply(api.fetch(due).await, now);
    let kinds: Vec<&str> = failures.iter().map(PriceListError::kind).collect();
    // The first call times out; the second type is not asked (it would time out too).
    assert_eq!(kinds, ["call", "skipped"]);
    assert_eq!(fake.lock().unwrap().requests.len(), 1);
    assert_eq!(
        ondemand("us-east-1", "g5.xlarge", None, live.price("g5.xlarge")),
        (Some(1.006), OnDemandSource::Table)
    );
    assert_eq!(
        ondemand("us-east-1", "g6.xlarge", None, live.price("g6.xlarge")),
        (Some(0.8048), OnDemandSource::Table)
    );
    server.abort();
}

/// Live EBS rates through the real SDK client: the documented filters per billed part, the
/// GiB/s-month throughput price turned into MiB/s, and a region's own figures — not the us-east-1
/// table's — in a warm instance's standing cost. A volume type the region does not sell and the
/// table does not cover there stays unknown.
#[tokio::test]
async fn live_ebs_rates_price_a_stopped_instance_in_its_region() {
    use gpupool_aws::ebs::{RatePart, Volume, VolumeType, cost_per_hour, rate_key, table_rate};
    use gpupool_provider::Price;
    let (fake, url, server) = start().await;
    {
        let mut f = fake.lock().unwrap();
        for (family, unit, usd) in [
            ("Storage", "GB-Mo", "0.0880000000"),
            ("System Operation", "IOPS-Mo", "0.0055000000"),
            ("Provisioned Throughput", "GiBps-mo", "45.0560000000"),
        ] {
            f.ebs.insert(
                ("eu-west-1".into(), "gp3".into(), family.into()),
                (unit.into(), usd.into()),
            );
        }
    }
    let api = client(&url, "eu-west-1").await;
    let now = gpupool_provider::clock::monotonic();
    let mut live = LiveOnDemand::default();
    let mut keys: Vec<String> = VolumeType::Gp3
        .parts()
        .iter()
        .map(|p| rate_key(&VolumeType::Gp3, *p))
        .collect();
    keys.push(rate_key(&VolumeType::St1, RatePart::Storage));
    let due = live.due_types(keys.iter().map(String::as_str), now);
    let failures = live.apply(api.fetch(due).await, now);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(live.price("ebs/gp3/storage"), Some(0.088));
    assert_eq!(live.price("ebs/gp3/iops"), Some(0.0055));
    let mibps = live.price("ebs/gp3/throughput").unwrap();
    assert!((mibps - 0.044).abs() < 1e-12, "per MiB/s-month: {mibps}");
    assert_eq!(live.price("ebs/st1/storage"), None, "not sold there");

    let rate = |t: &VolumeType, p: RatePart| {
        live.price(&rate_key(t, p))
            .or_else(|| table_rate("eu-west-1", t, p))
    };
    let gp3 = Volume {
        device: "/dev/sdf".into(),
        volume_type: VolumeType::Gp3,
        size_gib: 100,
        iops: Some(4_000),
        throughput_mibps: Some(250),
    };
    assert_eq!(
        cost_per_hour(std::slice::from_ref(&gp3), "eu-west-1", rate),
        Ok(Price::from_dollars(
            (100.0 * 0.088 + 1_000.0 * 0.0055 + 125.0 * 0.044) / 730.0
        ))
    );
    let st1 = Volume {
        volume_type: VolumeType::St1,
        size_gib: 500,
        iops: None,
        throughput_mibps: None,
        ..gp3.clone()
    };
    assert_eq!(
        cost_per_hour(&[gp3, st1], "eu-west-1", rate).map_err(|e| e.kind()),
        Err("no_price"),
        "one unpriced volume makes the whole figure unknown"
    );

    let reqs = fake.lock().unwrap().requests.clone();
    let mut families: Vec<&str> = reqs
        .iter()
        .filter(|r| r.get("volumeApiName").map(String::as_str) == Some("gp3"))
        .map(|r| {
            assert_eq!(r.get("regionCode").map(String::as_str), Some("eu-west-1"));
            r["productFamily"].as_str()
        })
        .collect();
    families.sort_unstable();
    assert_eq!(
        families,
        ["Provisioned Throughput", "Storage", "System Operation"],
        "one listing per billed part"
    );
    server.abort();
}
