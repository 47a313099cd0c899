//! [`AwsProvider`]: the `NodeGroupProvider` implementation over the Auto Scaling, EC2 and SQS
//! APIs. Decisions that can be pure live in `discovery`, `instances`, `activities` and
//! `events`; this module does the calls, the caching and the error mapping.

use crate::activities::{self, Activity, Status};
use crate::cloudwatch::{AwsMetrics, lock, now_secs};
use crate::discovery::{self, GroupSpec, TemplateFacts, TemplateRef};
use crate::error::{ApiResult, Class, classify, map_sdk};
use crate::events::{self, Parsed};
use crate::instances::{self, map_state};
use crate::{AwsError, AwsSettings, TAG_ENABLED, TAG_MODEL_CACHE, TAG_POOL};
use async_trait::async_trait;
use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_autoscaling::types::InstanceReusePolicy;
use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter as AsgFilter, WarmPoolState};
use aws_sdk_ec2::types::{Filter as Ec2Filter, InstanceLifecycleType, MarketType};
use gpupool_provider::{
    CapacityType, DRAIN_DEADLINE_TAG, GpuInfo, Instance, InstanceId, InstanceType,
    InstanceTypeName, NodeGroup, NodeGroupId, NodeGroupProvider, ProviderError, ProviderEvent,
    Result, Timestamp, WarmPool, Zone, decode_drain_deadline, encode_drain_deadline,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Page size of the Auto Scaling describe calls (the API's maximum is 100).
const ASG_PAGE: i32 = 100;
/// Bound on pages followed in one listing: 100 pages × 100 groups is far beyond any account's
/// group quota; a server that keeps returning a token cannot loop the controller forever.
const MAX_PAGES: usize = 100;
/// Instance ids per `DescribeInstances` filter (the API accepts up to 200 filter values).
const EC2_IDS_PER_CALL: usize = 200;
/// Instance types per `DescribeInstanceTypes` call (the API maximum is 100).
const TYPES_PER_CALL: usize = 100;
/// Spot prices move at most a few times an hour; one lookup per type serves many ticks.
const SPOT_PRICE_TTL: Duration = Duration::from_secs(300);
/// Scaling activities read per group and tick: DescribeScalingActivities lists the newest
/// first, and only the newest launch decides whether a request is outstanding
/// ([`activities::outstanding_failure`]); 20 leave room for the terminations and warm-pool
/// fills listed around it.
const ACTIVITIES_PER_GROUP: i32 = 20;
/// Remembered warm-pool instance ids.
const SEEN_MAX: usize = 4096;
/// The launch lifecycle transition (Auto Scaling API reference, `PutLifecycleHook`).
const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
/// Instance ids per EC2 `TerminateInstances` call (the API accepts up to 1000; a warm pool is
/// far smaller).
const EC2_TERMINATE_PER_CALL: usize = 100;
/// `DescribeAutoScalingInstances` takes at most 50 instance IDs (API reference,
/// `InstanceIds`: "Array Members: Maximum number of 50 items").
const ASG_INSTANCE_IDS_PER_CALL: usize = 50;
/// SQS receive: the API maximum per call, and the batches read per poll (100 messages bound the
/// work of one tick; an interruption storm is drained over a few ticks).
const SQS_BATCH: i32 = 10;
const SQS_MAX_BATCHES: usize = 10;
/// Long-poll the first receive for one second: short polling samples a subset of SQS servers
/// and can miss the only message in the queue, and an interruption has a 2-minute deadline.
const SQS_FIRST_WAIT_S: i32 = 1;

/// A bounded insertion-ordered set: the oldest entry goes when full.
#[derive(Debug, Default)]
struct BoundedSet {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl BoundedSet {
    /// Insert; false when already present.
    fn insert(&mut self, s: &str) -> bool {
        if self.set.contains(s) {
            return false;
        }
        self.set.insert(s.to_owned());
        self.order.push_back(s.to_owned());
        if self.order.len() > SEEN_MAX
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
    fn contains(&self, s: &str) -> bool {
        self.set.contains(s)
    }
}

#[derive(Debug, Default)]
struct State {
    /// GPU facts per instance type; `None` = the type has no GPU (cached too).
    gpu_types: HashMap<String, Option<InstanceType>>,
    /// What numbered (immutable) launch-template versions resolve to.
    templates: HashMap<TemplateRef, TemplateFacts>,
    /// Latest spot price per (type, zone), with when it was fetched per type.
    spot_prices: HashMap<(String, String), f64>,
    spot_fetched: HashMap<String, Instant>,
    /// When this provider last raised each group's desired capacity (epoch ms, taken before
    /// the call): a failed launch activity that started earlier belongs to an older request.
    last_increase_ms: HashMap<String, i64>,
    /// Instances seen in a warm pool: when they show up `Pending` they are *starting*.
    warm_seen: BoundedSet,
    /// Types already warned about (no price / no GPU), to log once.
    warned: HashSet<String>,
    /// Live on-demand prices from the Price List API for the configured region.
    live_ondemand: crate::price_list::LiveOnDemand,
    /// Live EBS rates from the Price List API, keyed by [`crate::ebs::rate_key`].
    live_ebs: crate::price_list::LiveOnDemand,
    /// Block device mappings per AMI id (`DescribeImages`), or why they could not be read,
    /// with when. An AMI's block device mapping is fixed at registration (`ModifyImageAttribute`
    /// changes its description, IMDS support and launch permissions, not its block device
    /// mapping — EC2 API Reference), so a read is kept for the process; a failed one is retried
    /// after [`crate::price_list::RETRY_AFTER_FAILURE`], not every tick.
    images: HashMap<String, (ImageRead, Instant)>,
}

/// An AMI's block device mappings, or the error kind of the `DescribeImages` that failed.
type ImageRead = std::result::Result<Vec<crate::ebs::Mapping>, &'static str>;

/// gpupool's AWS provider. See the crate docs for the rules it follows.
pub struct AwsProvider {
    asg: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
    sqs: aws_sdk_sqs::Client,
    metrics: AwsMetrics,
    /// `None`: the API is switched off, or not used in this region's partition.
    price_list: Option<crate::price_list::PriceListClient>,
    settings: AwsSettings,
    state: Mutex<State>,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A group's warm pool configuration and members (`DescribeWarmPool`, all pages).
type WarmPoolListing = (
    Option<aws_sdk_autoscaling::types::WarmPoolConfiguration>,
    Vec<aws_sdk_autoscaling::types::Instance>,
);

/// Everything discovery learned about one group, kept for the actuation checks.
struct Resolved {
    spec: GroupSpec,
    template: Option<TemplateFacts>,
}

/// A group's sizes checked where they enter ([`crate::bounds::check_sizes`]): out of range is
/// an error naming the group and the field, so the group reads as unreadable, not as zero.
fn checked(g: &AutoScalingGroup) -> Result<()> {
    let name = g.auto_scaling_group_name().unwrap_or_default();
    crate::bounds::check_sizes(name, g.min_size(), g.max_size(), g.desired_capacity())
        .map(|_| ())
        .map_err(|e| ProviderError::Transient {
            call: "DescribeAutoScalingGroups",
            target: name.to_owned(),
            source: Box::new(e),
        })
}

/// Every page of a `NextToken` listing, at most [`MAX_PAGES`]: `send` sends one request with
/// the token it is given, `next` reads a response's token (missing or empty on the last page).
/// Errors are mapped as `call` on `target`.
/// The value of the EC2 tag `key` (`Some("")` for a key without a value), `None` without it.
fn tag_value<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .map(|t| t.value().unwrap_or_default())
}

async fn all_pages<O, E, R, F>(
    call: &'static str,
    target: &str,
    mut send: impl FnMut(Option<String>) -> F,
    next: impl Fn(&O) -> Option<&str>,
) -> Result<Vec<O>>
where
    F: Future<Output = std::result::Result<O, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let mut out = Vec::new();
    let mut token = None;
    for _ in 0..MAX_PAGES {
        let page = send(token).await.api(call, target)?;
        token = next(&page).filter(|t| !t.is_empty()).map(str::to_owned);
        out.push(page);
        if token.is_none() {
            break;
        }
    }
    Ok(out)
}

impl AwsProvider {
    /// Build the provider: the default credential chain (or `settings.credentials`), the
    /// endpoint override, standard retries and the per-call timeouts ([`crate::call_timeouts`]). Makes no API call.
    pub async fn new(settings: AwsSettings) -> std::result::Result<Self, AwsError> {
        let cfg = crate::sdk_config(&settings).await?;
        Ok(AwsProvider {
            asg: aws_sdk_autoscaling::Client::new(&cfg),
            ec2: aws_sdk_ec2::Client::new(&cfg),
            sqs: aws_sdk_sqs::Client::new(&cfg),
            metrics: AwsMetrics::from_sdk_config(&cfg),
            price_list: settings
                .price_list_api
                .then(|| crate::price_list::PriceListClient::new(&cfg, &settings.region))
                .flatten(),
            settings,
            state: Mutex::new(State::default()),
        })
    }

    /// CloudWatch / SQS metric clients sharing this provider's configuration.
    pub fn metrics(&self) -> &AwsMetrics {
        &self.metrics
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    // ---- Auto Scaling reads -------------------------------------------------------------

    /// Groups tagged for the configured pools and enabled, all pages.
    async fn describe_managed_groups(&self) -> Result<Vec<AutoScalingGroup>> {
        if self.settings.pools.is_empty() {
            return Ok(Vec::new());
        }
        let pools: Vec<String> = self.settings.pools.iter().map(|p| p.to_string()).collect();
        let pages = all_pages(
            "DescribeAutoScalingGroups",
            "tagged groups",
            |token| {
                self.asg
                    .describe_auto_scaling_groups()
                    .filters(
                        AsgFilter::builder()
                            .name(format!("tag:{TAG_POOL}"))
                            .set_values(Some(pools.clone()))
                            .build(),
                    )
                    .filters(
                        AsgFilter::builder()
                            .name(format!("tag:{TAG_ENABLED}"))
                            .values("true")
                            .build(),
                    )
                    .max_records(ASG_PAGE)
                    .set_next_token(token)
                    .send()
            },
            |out| out.next_token(),
        )
        .await?;
        let groups: Vec<AutoScalingGroup> = pages
            .iter()
            .flat_map(|out| out.auto_scaling_groups())
            .cloned()
            .collect();
        for g in &groups {
            checked(g)?;
        }
        Ok(groups)
    }

    /// One group by name, refusing groups gpupool must not touch.
    async fn managed_group(&self, group: &NodeGroupId) -> Result<AutoScalingGroup> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group.as_str())
            .send()
            .await
            .api("DescribeAutoScalingGroups", group.as_str())?;
        let g = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(group.as_str()))
            .cloned()
            .ok_or_else(|| ProviderError::NotFound {
                what: format!("auto scaling group {group}"),
            })?;
        checked(&g)?;
        let spec = GroupSpec::from_sdk(&g);
        let ours = spec.enabled
            && spec
                .pool
                .as_ref()
                .is_some_and(|p| self.settings.pools.contains(p));
        if !ours {
            return Err(ProviderError::InvalidConfig(format!(
                "group {group} is not managed by gpupool: it needs tags {TAG_POOL}=<a configured pool> and {TAG_ENABLED}=true"
            )));
        }
        Ok(g)
    }

    /// The group's spec, with its launch template read only when what it says matters.
    async fn resolve(&self, g: &AutoScalingGroup) -> Result<Resolved> {
        let spec = GroupSpec::from_sdk(g);
        let template = match &spec.template {
            Some(t) if spec.template_matters() => Some(self.template_facts(t, &spec.name).await?),
            _ => None,
        };
        Ok(Resolved { spec, template })
    }

    async fn warm_pool_instances(&self, group: &str) -> Result<WarmPoolListing> {
        let pages = all_pages(
            "DescribeWarmPool",
            group,
            |token| {
                self.asg
                    .describe_warm_pool()
                    .auto_scaling_group_name(group)
                    .max_records(ASG_PAGE)
                    .set_next_token(token)
                    .send()
            },
            |out| out.next_token(),
        )
        .await?;
        let config = pages
            .iter()
            .find_map(|out| out.warm_pool_configuration())
            .cloned();
        let instances = pages
            .iter()
            .flat_map(|out| out.instances())
            .cloned()
            .collect();
        Ok((config, instances))
    }

    async fn activities(&self, group: &str) -> Result<Vec<Activity>> {
        let out = self
            .asg
            .describe_scaling_activities()
            .auto_scaling_group_name(group)
            .max_records(ACTIVITIES_PER_GROUP)
            .send()
            .await
            .api("DescribeScalingActivities", group)?;
        Ok(out
            .activities()
            .iter()
            .map(|a| Activity {
                id: a.activity_id().unwrap_or_default().to_owned(),
                status: a
                    .status_code()
                    .map_or(Status::Waiting, |c| Status::from_code(c.as_str())),
                message: a.status_message().unwrap_or_default().to_owned(),
                description: a.description().unwrap_or_default().to_owned(),
                details: a.details().map(str::to_owned),
                start_ms: crate::bounds::sane_millis(
                    a.start_time().and_then(|t| t.to_millis().ok()),
                ),
            })
            .collect())
    }

    // ---- EC2 reads ----------------------------------------------------------------------

    async fn template_facts(&self, t: &TemplateRef, group: &str) -> Result<TemplateFacts> {
        if let Some(f) = lock(&self.state).templates.get(t) {
            return Ok(f.clone());
        }
        let target = format!("launch template {} of {group}", t.display());
        let out = self
            .ec2
            .describe_launch_template_versions()
            .set_launch_template_id(t.id.clone())
            .set_launch_template_name(if t.id.is_some() { None } else { t.name.clone() })
            .versions(&t.version)
            .send()
            .await
            .api("DescribeLaunchTemplateVersions", &target)?;
        let data = out
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
            .ok_or_else(|| ProviderError::NotFound {
                what: target.clone(),
            })?;
        let facts = TemplateFacts {
            instance_type: data
                .instance_type()
                .map(|it| InstanceTypeName::from(it.as_str())),
            spot: data
                .instance_market_options()
                .and_then(|m| m.market_type())
                .is_some_and(|m| *m == MarketType::Spot),
            image_id: data.image_id().map(str::to_owned),
            block_devices: data
                .block_device_mappings()
                .iter()
                .map(crate::ebs::Mapping::from_template)
                .collect(),
        };
        if t.is_immutable() {
            lock(&self.state).templates.insert(t.clone(), facts.clone());
        }
        Ok(facts)
    }

    /// GPU facts of `types`, from the process cache or `DescribeInstanceTypes`.
    async fn gpu_types(
        &self,
        types: &[InstanceTypeName],
    ) -> Result<HashMap<String, Option<InstanceType>>> {
        let missing: Vec<String> = {
            let st = lock(&self.state);
            types
                .iter()
                .map(|t| t.to_string())
                .filter(|t| !st.gpu_types.contains_key(t))
                .collect()
        };
        for chunk in missing.chunks(TYPES_PER_CALL) {
            let pages = all_pages(
                "DescribeInstanceTypes",
                &chunk.join(","),
                |token| {
                    self.ec2
                        .describe_instance_types()
                        .set_instance_types(Some(ec2_types(chunk)))
                        .set_next_token(token)
                        .send()
                },
                |out| out.next_token(),
            )
            .await?;
            let mut found: HashMap<&str, Option<InstanceType>> = pages
                .iter()
                .flat_map(|out| out.instance_types())
                .filter_map(|info| {
                    let name = info.instance_type()?.as_str();
                    Some((name, gpu_instance_type(name, info)))
                })
                .collect();
            let mut st = lock(&self.state);
            for t in chunk {
                // A type EC2 does not know (typo, other region) is cached as "no GPU" too.
                st.gpu_types
                    .insert(t.clone(), found.remove(t.as_str()).flatten());
            }
        }
        let st = lock(&self.state);
        Ok(types
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    st.gpu_types.get(t.as_str()).cloned().flatten(),
                )
            })
            .collect())
    }

    /// The group's offerings (types × zones), each priced for the configured region: spot from
    /// the live price, on-demand from [`crate::pricing::ondemand`]; a type no source prices is
    /// offered with an unknown price, and a warning names it once.
    fn priced_offerings(
        &self,
        types: &[InstanceType],
        zones: &[Zone],
        capacity: CapacityType,
    ) -> Vec<gpupool_provider::Offering> {
        let region = self.settings.region.as_str();
        let offerings = {
            let st = lock(&self.state);
            discovery::offerings(types, zones, capacity, |t, z| {
                let live = st
                    .spot_prices
                    .get(&(t.name.to_string(), z.to_string()))
                    .copied();
                let over = self.settings.price_overrides.get(&t.name).copied();
                let live_od = st.live_ondemand.price(t.name.as_str());
                let (od, _) = crate::pricing::ondemand(region, t.name.as_str(), over, live_od);
                discovery::price(region, t.name.as_str(), capacity, od, live)
            })
        };
        for o in offerings.iter().filter(|o| o.price_per_hour.is_unknown()) {
            self.warn_once(
                &format!("price:{}", o.instance_type.name),
                &format!(
                    "no {} price for {} in {region} (Price List API, shipped table and \
                     price_overrides have none): offered with an unknown price, ranked last \
                     and never launched under a cost cap (set aws.price_overrides)",
                    o.capacity_type, o.instance_type.name
                ),
            );
        }
        offerings
    }

    /// Live on-demand prices of `types` from the Price List API: fetched at the first
    /// discovery after start, then daily ([`crate::price_list::REFRESH`]). Never fails
    /// discovery: a failed or malformed fetch is a warning, and the shipped table (else an
    /// unknown price) is used until a retry succeeds.
    async fn refresh_ondemand(&self, types: &[InstanceType]) {
        let keys: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        self.refresh_live(&keys, |st| &mut st.live_ondemand).await;
    }

    /// Live EBS rates for `volumes`' types (every billed part of each), on the same schedule
    /// as on-demand prices; the us-east-1 table ([`crate::ebs::table_rate`]), else an unknown
    /// standing cost, meanwhile.
    async fn refresh_ebs(&self, volumes: &[crate::ebs::Volume]) {
        let keys: Vec<String> = volumes
            .iter()
            .flat_map(|v| {
                v.volume_type
                    .parts()
                    .iter()
                    .map(|p| crate::ebs::rate_key(&v.volume_type, *p))
            })
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.refresh_live(&keys, |st| &mut st.live_ebs).await;
    }

    /// Fetch the `keys` of one live price cache that are due; failures are warnings, never a
    /// failed discovery.
    async fn refresh_live(
        &self,
        keys: &[&str],
        cache: fn(&mut State) -> &mut crate::price_list::LiveOnDemand,
    ) {
        let Some(api) = &self.price_list else {
            return;
        };
        let now = gpupool_provider::clock::monotonic();
        let due = cache(&mut lock(&self.state)).due_types(keys.iter().copied(), now);
        if due.is_empty() {
            return;
        }
        let results = api.fetch(due).await;
        let failures = cache(&mut lock(&self.state)).apply(results, now);
        for e in failures
            .iter()
            .filter(|e| !matches!(e, crate::price_list::PriceListError::Skipped { .. }))
        {
            let source = std::error::Error::source(e)
                .map(|s| aws_sdk_pricing::error::DisplayErrorContext(s).to_string());
            tracing::warn!(
                region = api.region(),
                kind = e.kind(),
                source = source.as_deref().unwrap_or(""),
                "{e}; using the shipped price table, else an unknown price, until a retry \
                 succeeds"
            );
        }
    }

    /// What one stopped warm instance of the group costs per hour ([`crate::ebs`]), or
    /// [`Price::Unknown`](gpupool_provider::Price::Unknown) with a warning naming why, once per
    /// group and reason (the pool's `warm_pool.standing_cost_per_hour` may state it instead).
    /// Never fails discovery.
    async fn standing_cost(
        &self,
        spec: &GroupSpec,
        template: Option<&TemplateFacts>,
    ) -> gpupool_provider::Price {
        match self.standing_cost_of(template).await {
            Ok(p) => p,
            Err(why) => {
                self.warn_once(
                    &format!("standing:{}:{}", spec.name, why.kind()),
                    &format!(
                        "warm-pool standing cost unknown: {why}; the warm pool keeps its \
                         default shrink hold unless the pool sets \
                         warm_pool.standing_cost_per_hour"
                    ),
                );
                gpupool_provider::Price::Unknown
            }
        }
    }

    async fn standing_cost_of(
        &self,
        template: Option<&TemplateFacts>,
    ) -> std::result::Result<gpupool_provider::Price, crate::ebs::Unpriced> {
        use crate::ebs::{self, Unpriced};
        let t = template.ok_or(Unpriced::NoTemplate)?;
        let image = t.image_id.as_deref().ok_or(Unpriced::NoImage)?;
        // A launch template may name its AMI as `resolve:ssm:<parameter>` (EC2 User Guide,
        // "Use a Systems Manager parameter instead of an AMI ID"); resolving it would need
        // `ResolveAlias` and SSM read access gpupool does not ask for.
        if image.starts_with("resolve:ssm:") {
            return Err(Unpriced::SsmImage(image.to_owned()));
        }
        let ami = self
            .image_mappings(image)
            .await
            .map_err(|why| Unpriced::ImageUnreadable {
                image: image.to_owned(),
                why,
            })?;
        let volumes = ebs::volumes(&t.block_devices, &ami)?;
        self.refresh_ebs(&volumes).await;
        let region = self.settings.region.as_str();
        let st = lock(&self.state);
        ebs::cost_per_hour(&volumes, region, |vt, part| {
            st.live_ebs
                .price(&ebs::rate_key(vt, part))
                .or_else(|| ebs::table_rate(region, vt, part))
        })
    }

    /// The AMI's block device mappings (`DescribeImages`, cached per AMI id: see
    /// [`State::images`]). The AMI's root volume is billed like any other unless the launch
    /// template suppresses or overrides it, so it must be read, not assumed.
    async fn image_mappings(&self, image: &str) -> ImageRead {
        let now = gpupool_provider::clock::monotonic();
        if let Some((read, at)) = lock(&self.state).images.get(image)
            && (read.is_ok()
                || now.saturating_duration_since(*at) < crate::price_list::RETRY_AFTER_FAILURE)
        {
            return read.clone();
        }
        let read: ImageRead = match self
            .ec2
            .describe_images()
            .image_ids(image)
            .send()
            .await
            .api("DescribeImages", image)
        {
            Ok(out) => out
                .images()
                .iter()
                .find(|i| i.image_id() == Some(image))
                .map(|i| {
                    i.block_device_mappings()
                        .iter()
                        .map(crate::ebs::Mapping::from_image)
                        .collect()
                })
                // An id EC2 does not list (deregistered, not shared with this account).
                .ok_or("not listed"),
            // `InvalidAMIID.NotFound`, access denied (an IAM policy without
            // ec2:DescribeImages), throttling, timeouts: unknown, retried after an hour.
            Err(e) => Err(e.kind()),
        };
        lock(&self.state)
            .images
            .insert(image.to_owned(), (read.clone(), now));
        read
    }

    /// Latest spot price per (type, zone) for `types`, refreshed every `SPOT_PRICE_TTL`.
    async fn spot_prices(&self, types: &[InstanceTypeName]) -> Result<()> {
        let now = gpupool_provider::clock::monotonic();
        let stale: Vec<String> = {
            let st = lock(&self.state);
            types
                .iter()
                .map(|t| t.to_string())
                .filter(|t| {
                    st.spot_fetched
                        .get(t)
                        .is_none_or(|at| now.duration_since(*at) > SPOT_PRICE_TTL)
                })
                .collect()
        };
        if stale.is_empty() {
            return Ok(());
        }
        let now_dt = aws_sdk_ec2::primitives::DateTime::from_secs(now_secs());
        let mut latest: HashMap<(String, String), (i64, f64)> = HashMap::new();
        let pages = all_pages(
            "DescribeSpotPriceHistory",
            &stale.join(","),
            |token| {
                self.ec2
                    .describe_spot_price_history()
                    // Both names: the EC2 API reference (DescribeSpotPriceHistory,
                    // `ProductDescriptions`) lists "Linux/UNIX" and "Linux/UNIX (Amazon VPC)" as
                    // separate values and does not say which one a region reports a type under,
                    // so ask for both; the newest price of either wins below.
                    .product_descriptions("Linux/UNIX")
                    .product_descriptions("Linux/UNIX (Amazon VPC)")
                    .set_instance_types(Some(ec2_types(&stale)))
                    // Start = end = now: AWS returns the price in effect now for each type × zone.
                    .start_time(now_dt)
                    .end_time(now_dt)
                    .set_next_token(token)
                    .send()
            },
            |out| out.next_token(),
        )
        .await?;
        for p in pages.iter().flat_map(|out| out.spot_price_history()) {
            let (Some(t), Some(z), Some(price)) =
                (p.instance_type(), p.availability_zone(), p.spot_price())
            else {
                continue;
            };
            let Ok(price) = price.parse::<f64>() else {
                continue;
            };
            if !(price.is_finite() && price > 0.0) {
                continue;
            }
            let at = p.timestamp().and_then(|d| d.to_millis().ok()).unwrap_or(0);
            let e = latest
                .entry((t.as_str().to_owned(), z.to_owned()))
                .or_insert((at, price));
            // Newest wins; at the same time the higher (the safe side for cost limits).
            if at > e.0 || (at == e.0 && price > e.1) {
                *e = (at, price);
            }
        }
        let mut st = lock(&self.state);
        st.spot_prices.retain(|(t, _), _| !stale.contains(t));
        for (k, (_, p)) in latest {
            st.spot_prices.insert(k, p);
        }
        for t in stale {
            st.spot_fetched.insert(t, now);
        }
        Ok(())
    }

    /// EC2 `DescribeInstances` with `filters`, all pages, the instances of every reservation.
    async fn describe_instances(
        &self,
        filters: Vec<Ec2Filter>,
        target: &str,
    ) -> Result<Vec<aws_sdk_ec2::types::Instance>> {
        let pages = all_pages(
            "DescribeInstances",
            target,
            |token| {
                self.ec2
                    .describe_instances()
                    .set_filters(Some(filters.clone()))
                    .set_next_token(token)
                    .send()
            },
            |out| out.next_token(),
        )
        .await?;
        Ok(pages
            .iter()
            .flat_map(|out| out.reservations())
            .flat_map(|r| r.instances())
            .cloned()
            .collect())
    }

    /// EC2 facts of instances: launch time, private IP, model-cache tag, spot or not.
    async fn ec2_instances(
        &self,
        ids: &[String],
        target: &str,
    ) -> Result<HashMap<String, Ec2Facts>> {
        let mut facts = HashMap::new();
        for chunk in ids.chunks(EC2_IDS_PER_CALL) {
            // A filter, not InstanceIds: an id that vanished meanwhile is simply absent instead
            // of failing the whole call with InvalidInstanceID.NotFound.
            let by_id = Ec2Filter::builder()
                .name("instance-id")
                .set_values(Some(chunk.to_vec()))
                .build();
            for i in &self.describe_instances(vec![by_id], target).await? {
                let Some(id) = i.instance_id() else { continue };
                facts.insert(
                    id.to_owned(),
                    Ec2Facts {
                        launched_ms: crate::bounds::sane_millis(
                            i.launch_time().and_then(|t| t.to_millis().ok()),
                        ),
                        private_ip: i.private_ip_address().map(str::to_owned),
                        model_cache: tag_value(i.tags(), TAG_MODEL_CACHE)
                            .filter(|v| !v.is_empty())
                            .map(str::to_owned),
                        spot: i.instance_lifecycle() == Some(&InstanceLifecycleType::Spot),
                        drain_deadline: self.drain_mark(id, i.tags()),
                    },
                );
            }
        }
        Ok(facts)
    }

    /// The drain deadline tagged on an instance ([`DRAIN_DEADLINE_TAG`]). The Auto Scaling
    /// group's own listing (`DescribeAutoScalingGroups` → `Instances`) carries no instance
    /// tags (its `Instance` type has id, zone, lifecycle state, health, template and
    /// protection only: Auto Scaling API reference, "Instance" data type); EC2
    /// `DescribeInstances` returns each instance's `tagSet` (EC2 API reference, "Instance" data
    /// type, `Tags`), and it is already called for launch times, addresses and the model-cache
    /// tag, so the mark costs no extra call. A value that is not sane epoch seconds is warned
    /// about once and not a drain.
    fn drain_mark(&self, id: &str, tags: &[aws_sdk_ec2::types::Tag]) -> Option<Timestamp> {
        let v = tag_value(tags, DRAIN_DEADLINE_TAG)?;
        let t = decode_drain_deadline(v);
        if t.is_none() {
            self.warn_once(
                &format!("drain-tag:{id}:{v}"),
                "drain-deadline tag is not epoch seconds in range; ignored",
            );
        }
        t
    }

    /// A group's warm pool as the planner sees it: the target size and how many members are
    /// ready or still warming (`DescribeWarmPool`, all pages), and what one stopped member
    /// costs per hour ([`AwsProvider::standing_cost`]); `None` without a warm pool.
    async fn warm_pool_summary(
        &self,
        spec: &GroupSpec,
        template: Option<&TemplateFacts>,
    ) -> Result<Option<WarmPool>> {
        Ok(if spec.has_warm_pool {
            let (config, members) = self.warm_pool_instances(&spec.name).await?;
            let standing_cost_per_hour = self.standing_cost(spec, template).await;
            let mut wp = WarmPool {
                target_size: config.and_then(|c| c.min_size()).map_or(0, |m| {
                    m.clamp(0, crate::bounds::MAX_GROUP_SIZE as i32) as u32
                }),
                ready: 0,
                warming: 0,
                standing_cost_per_hour,
            };
            let mut st = lock(&self.state);
            for i in &members {
                if let Some(id) = i.instance_id() {
                    st.warm_seen.insert(id);
                }
                match i.lifecycle_state().map(|s| map_state(s, false).state) {
                    Some(gpupool_provider::LifecycleState::Warm) => wp.ready += 1,
                    Some(gpupool_provider::LifecycleState::Warming) => wp.warming += 1,
                    _ => {}
                }
            }
            Some(wp)
        } else {
            None
        })
    }

    // ---- discovery ----------------------------------------------------------------------

    async fn node_group(&self, g: &AutoScalingGroup) -> Result<Option<NodeGroup>> {
        let Resolved { spec, template } = self.resolve(g).await?;
        let Some(pool) = spec
            .pool
            .clone()
            .filter(|p| self.settings.pools.contains(p))
        else {
            return Ok(None);
        };
        if spec.uses_launch_configuration && spec.template.is_none() {
            self.warn_once(
                &spec.name,
                "launch configurations are not supported; use a launch template",
            );
            return Ok(None);
        }
        if spec.is_split() {
            self.warn_once(
                &format!("split:{}", spec.name),
                "group splits capacity above its base between spot and on-demand; priced as on-demand (give each group one capacity type)",
            );
        }
        let capacity = spec.capacity_type(template.as_ref());
        let type_names = spec.instance_types(template.as_ref());
        let gpu = self.gpu_types(&type_names).await?;
        let types: Vec<InstanceType> = type_names
            .iter()
            .filter_map(|t| {
                let info = gpu.get(t.as_str()).cloned().flatten();
                if info.is_none() {
                    self.warn_once(
                        t.as_str(),
                        "instance type has no GPU (or is unknown to EC2); not offered",
                    );
                }
                info
            })
            .collect();
        if capacity == CapacityType::Spot {
            self.spot_prices(&type_names).await?;
        }
        self.refresh_ondemand(&types).await;
        let offerings = self.priced_offerings(&types, &spec.zones, capacity);

        let warm_pool = self.warm_pool_summary(&spec, template.as_ref()).await?;

        let acts = self.activities(&spec.name).await?;
        let listed = listed_instances(g);
        let unfulfilled = {
            let last = lock(&self.state).last_increase_ms.get(&spec.name).copied();
            activities::outstanding_failure(
                &acts,
                last,
                spec.desired,
                listed,
                &type_names,
                &spec.zones,
                capacity,
                now_millis(),
            )
        };
        if let Some(u) = &unfulfilled {
            tracing::warn!(group = %spec.name, offering = %u.offering, failure = %u.failure, count = u.count, message = %u.message, "launch accepted but not fulfilled");
        }

        let (taints, bad) = spec.taints();
        for k in bad {
            self.warn_once(
                &format!("taint:{}:{k}", spec.name),
                "node-template taint tag has no valid effect; ignored",
            );
        }
        Ok(Some(NodeGroup {
            id: NodeGroupId::from(spec.name.as_str()),
            pool,
            labels: spec.labels(capacity, &types),
            taints,
            offerings,
            min_size: spec.min,
            max_size: spec.max,
            desired: spec.desired,
            warm_pool,
            activity_in_progress: activities::busy(g.status()),
            unfulfilled: unfulfilled.into_iter().collect(),
        }))
    }

    /// `SetDesiredCapacity` without the group's cooldown: gpupool has its own flap guards, and an
    /// ASG cooldown would silently drop the call.
    async fn set_desired(&self, group: &NodeGroupId, desired: u32) -> Result<()> {
        let desired = i32::try_from(desired).map_err(|_| {
            ProviderError::InvalidConfig(format!("desired capacity {desired} is too large"))
        })?;
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(group.as_str())
            .desired_capacity(desired)
            .honor_cooldown(false)
            .send()
            .await
            .api("SetDesiredCapacity", group.as_str())?;
        Ok(())
    }

    /// Remove warm-pool members the documented way. `TerminateInstanceInAutoScalingGroup`
    /// "cannot be called on instances in a warm pool" (its API reference); the Auto Scaling user
    /// guide ("Warm pools", updating instances in a warm pool) says to terminate them instead:
    /// "you can terminate existing instances in the warm pool. Amazon EC2 Auto Scaling
    /// immediately starts launching new instances to replace the instances that you
    /// terminated" — so this is EC2 `TerminateInstances`, and the warm pool refills itself with
    /// instances of the current launch template (and model cache). Desired capacity is not
    /// touched: warm-pool members are not part of it.
    async fn terminate_warm(&self, group: &NodeGroupId, ids: &[String]) -> Result<()> {
        self.ec2_terminate(ids, group.as_str(), "terminating warm-pool instances")
            .await
    }

    /// EC2 `TerminateInstances` of `ids`, in batches; an instance already gone
    /// (`InvalidInstanceID.NotFound`) is the state wanted. Each batch is logged with `what`.
    async fn ec2_terminate(&self, ids: &[String], target: &str, what: &str) -> Result<()> {
        for chunk in ids.chunks(EC2_TERMINATE_PER_CALL) {
            let res = self
                .ec2
                .terminate_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
                .api("TerminateInstances", target);
            match res {
                Ok(_) => tracing::info!(target, instances = ?chunk, "{what}"),
                Err(ProviderError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn warn_once(&self, key: &str, msg: &str) {
        if lock(&self.state).warned.insert(key.to_owned()) {
            tracing::warn!(subject = key, "{msg}");
        }
    }

    // ---- events -------------------------------------------------------------------------

    async fn poll_queue(&self, queue: &str, out: &mut Vec<ProviderEvent>) -> Result<()> {
        for batch in 0..SQS_MAX_BATCHES {
            let resp = self
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(SQS_BATCH)
                .wait_time_seconds(if batch == 0 { SQS_FIRST_WAIT_S } else { 0 })
                .send()
                .await
                .api("ReceiveMessage", queue)?;
            let msgs = resp.messages();
            for m in msgs {
                let (Some(id), Some(rh)) = (m.message_id(), m.receipt_handle()) else {
                    continue;
                };
                // Event times are checked against this host's clock (the provider is shell
                // code; the core never reads one): a passed or far-future deadline is
                // Malformed, left for the redrive policy.
                match events::parse_body_at(
                    m.body().unwrap_or_default(),
                    Timestamp::from_secs(now_secs()),
                ) {
                    Parsed::Events(kinds) => out.extend(events::to_provider_events(id, rh, kinds)),
                    Parsed::Ignored(why) => {
                        tracing::debug!(
                            message = id,
                            why,
                            "event not relevant to gpupool; deleting"
                        );
                        if let Err(e) = self.delete_message(queue, rh).await {
                            tracing::warn!(message = id, error = %e, "cannot delete an ignored event");
                        }
                    }
                    Parsed::Malformed(why) => {
                        // Left in the queue on purpose: after maxReceiveCount deliveries the
                        // redrive policy moves it to the dead-letter queue for a person.
                        tracing::warn!(
                            message = id,
                            why,
                            "malformed or unknown event in the interruption queue; not deleting"
                        );
                    }
                }
            }
            if msgs.len() < SQS_BATCH as usize {
                break;
            }
        }
        Ok(())
    }

    async fn delete_message(&self, queue: &str, receipt: &str) -> Result<()> {
        match self
            .sqs
            .delete_message()
            .queue_url(queue)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already deleted or expired: the trait says unknown tokens are not an error.
            Err(e) if classify(e.code(), e.message()) == Class::StaleReceipt => Ok(()),
            Err(e) => Err(map_sdk("DeleteMessage", queue, e)),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Ec2Facts {
    launched_ms: Option<i64>,
    private_ip: Option<String>,
    model_cache: Option<String>,
    spot: bool,
    drain_deadline: Option<Timestamp>,
}

/// Type names as the EC2 request fields want them.
fn ec2_types(names: &[String]) -> Vec<aws_sdk_ec2::types::InstanceType> {
    names
        .iter()
        .map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str()))
        .collect()
}

/// Wall-clock milliseconds (the shell may read the clock; nothing here is a planner input).
fn now_millis() -> i64 {
    gpupool_provider::clock::wall_clock().millis()
}

/// Instances that stand for the group's desired capacity now: pending or in service, not
/// leaving, not on standby (see [`instances::counts_toward_desired`]). `DescribeAutoScalingGroups`
/// does not list warm-pool members among the group's instances.
fn listed_instances(g: &AutoScalingGroup) -> u32 {
    let n = g
        .instances()
        .iter()
        .filter(|i| {
            i.lifecycle_state()
                .is_some_and(instances::counts_toward_desired)
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Desired capacity after taking back `count` unfulfilled launches: never below the instances
/// the group lists (they are real) nor below its min size (AWS would refuse it).
fn release_target(desired: u32, count: u32, listed: u32, min: u32) -> u32 {
    desired
        .saturating_sub(count)
        .max(listed)
        .max(min)
        .min(desired)
}

/// Why an instance's model cache does not allow completing its launch hook: the
/// `gpupool.io/model-cache` tag must equal the pool's current `<model>@<version>` when the pool
/// names one, and be present otherwise. `None` when it may go into service.
fn cache_not_ready(have: Option<&str>, want: Option<&str>) -> Option<String> {
    match (have, want) {
        (Some(h), Some(w)) if h == w => None,
        (Some(h), Some(w)) => Some(format!("model cache is {h}, the pool wants {w}")),
        (None, Some(w)) => Some(format!("model cache not warm yet (the pool wants {w})")),
        (Some(_), None) => None,
        (None, None) => Some("model cache not warm yet".to_owned()),
    }
}

/// GPU facts of one EC2 type, `None` when it has no GPU.
fn gpu_instance_type(
    name: &str,
    info: &aws_sdk_ec2::types::InstanceTypeInfo,
) -> Option<InstanceType> {
    let gpus = info.gpu_info()?.gpus();
    let first = gpus.first()?;
    let count: i32 = gpus.iter().filter_map(|g| g.count()).sum();
    let model = discovery::normalise_gpu_model(first.name().unwrap_or_default());
    let memory_mib_per_gpu = first
        .memory_info()
        .and_then(|m| m.size_in_mib())
        .map_or(0, |m| m.max(0) as u64);
    // EC2 reports no MIG profiles; the built-in catalog (NVIDIA's MIG user guide) gives the
    // ones this GPU can be partitioned into.
    let mig_profiles = gpupool_provider::mig::profiles_for(&model, memory_mib_per_gpu);
    Some(InstanceType {
        name: InstanceTypeName::from(name),
        vcpu: info
            .v_cpu_info()
            .and_then(|v| v.default_v_cpus())
            .map_or(0, |v| v.max(0) as u32),
        memory_mib: info
            .memory_info()
            .and_then(|m| m.size_in_mib())
            .map_or(0, |m| m.max(0) as u64),
        gpu: GpuInfo {
            model,
            count: count.max(0) as u32,
            memory_mib_per_gpu,
            mig_profiles,
        },
    })
}

#[async_trait]
impl NodeGroupProvider for AwsProvider {
    fn name(&self) -> &'static str {
        "aws"
    }

    async fn node_groups(&self) -> Result<Vec<NodeGroup>> {
        let mut out = Vec::new();
        for g in self.describe_managed_groups().await? {
            if let Some(ng) = self.node_group(&g).await? {
                out.push(ng);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn instances(&self, group: &NodeGroupId) -> Result<Vec<Instance>> {
        let g = self.managed_group(group).await?;
        let Resolved { spec, template } = self.resolve(&g).await?;
        let all_spot = spec.all_spot(template.as_ref());
        let warm = if spec.has_warm_pool {
            self.warm_pool_instances(&spec.name).await?.1
        } else {
            Vec::new()
        };
        let all: Vec<&aws_sdk_autoscaling::types::Instance> =
            g.instances().iter().chain(warm.iter()).collect();
        let ids: Vec<String> = all
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        let ec2 = self.ec2_instances(&ids, group.as_str()).await?;
        let now_ms = now_secs() * 1000;
        let mut st = lock(&self.state);
        for i in &warm {
            if let Some(id) = i.instance_id() {
                st.warm_seen.insert(id);
            }
        }
        let mut out = Vec::with_capacity(all.len());
        for i in all {
            let (Some(id), Some(state)) = (i.instance_id(), i.lifecycle_state()) else {
                continue;
            };
            let mapped = map_state(state, st.warm_seen.contains(id));
            let facts = ec2.get(id).cloned().unwrap_or_default();
            let zone = i.availability_zone().unwrap_or_default();
            out.push(Instance {
                id: InstanceId::from(id),
                group: group.clone(),
                instance_type: InstanceTypeName::from(i.instance_type().unwrap_or_default()),
                capacity_type: if facts.spot || all_spot {
                    CapacityType::Spot
                } else {
                    CapacityType::OnDemand
                },
                zone: Zone::from(zone),
                state: mapped.state,
                // An instance EC2 has not listed yet was launched moments ago.
                launched_at: Timestamp::from_millis(facts.launched_ms.unwrap_or(now_ms)),
                model_cache: facts.model_cache,
                provider_id: (!zone.is_empty()).then(|| instances::provider_id(zone, id)),
                protected_from_scale_in: i.protected_from_scale_in().unwrap_or(false),
                awaiting_lifecycle_hook: mapped.awaiting_hook,
                private_ip: facts.private_ip,
                drain_deadline: facts.drain_deadline,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn increase(&self, group: &NodeGroupId, delta: u32) -> Result<()> {
        if delta == 0 {
            return Ok(());
        }
        let g = self.managed_group(group).await?;
        let spec = GroupSpec::from_sdk(&g);
        let target = spec.desired.saturating_add(delta);
        if target > spec.max {
            return Err(ProviderError::InvalidConfig(format!(
                "group {group}: desired {} + {delta} exceeds max size {}",
                spec.desired, spec.max
            )));
        }
        // Taken before the call, to the millisecond (activity start times have milliseconds):
        // the launch activity this request causes starts after it. AWS's clock is compared
        // with this host's; were it behind by more than the time AWS takes to start the launch,
        // a failure would be ignored until AWS retries the launch (a newer activity), never
        // misattributed.
        let requested_ms = now_millis();
        self.set_desired(group, target).await?;
        lock(&self.state)
            .last_increase_ms
            .insert(spec.name.clone(), requested_ms);
        tracing::info!(%group, from = spec.desired, to = target, "desired capacity raised");
        Ok(())
    }

    async fn terminate(&self, group: &NodeGroupId, instances: &[InstanceId]) -> Result<()> {
        if instances.is_empty() {
            return Ok(());
        }
        let g = self.managed_group(group).await?;
        let spec = GroupSpec::from_sdk(&g);
        let warm = if spec.has_warm_pool {
            self.warm_pool_instances(&spec.name).await?.1
        } else {
            Vec::new()
        };
        let find = |id: &InstanceId| {
            g.instances()
                .iter()
                .find(|i| i.instance_id() == Some(id.as_str()))
        };
        // Refuse the whole call before terminating anything, so a refusal never leaves half of
        // a scale-down done.
        let protected: Vec<&str> = instances
            .iter()
            .filter(|id| find(id).is_some_and(|i| i.protected_from_scale_in() == Some(true)))
            .map(InstanceId::as_str)
            .collect();
        if !protected.is_empty() {
            return Err(ProviderError::InvalidConfig(format!(
                "group {group}: instances {} are protected from scale-in",
                protected.join(", ")
            )));
        }
        let mut desired = spec.desired;
        let mut warm_victims: Vec<String> = Vec::new();
        for id in instances {
            let Some(i) = find(id) else {
                match warm.iter().find(|i| i.instance_id() == Some(id.as_str())) {
                    Some(w) if w.lifecycle_state().is_some_and(instances::is_leaving) => {}
                    Some(_) => warm_victims.push(id.to_string()),
                    None => tracing::info!(%group, instance = %id, "already gone from the group"),
                }
                continue;
            };
            if i.lifecycle_state().is_some_and(instances::is_leaving) {
                continue;
            }
            // Never below the group's min size: there AWS refuses the decrement ("Currently,
            // desiredSize equals minSize (1). Terminating instance without replacement will
            // violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag
            // to false or lower group's min size.", a ValidationError). The instance is then
            // terminated without decrement and AWS launches a replacement (API reference,
            // TerminateInstanceInAutoScalingGroup: "If you do not specify the option to
            // decrement the desired capacity, Amazon EC2 Auto Scaling launches instances to
            // replace the ones that are terminated") — a fresh instance in place of a drifted or
            // unhealthy one; gpupool's planner does not scale a group below its min size
            // voluntarily.
            let decrement = desired > spec.min;
            // This terminates, warm pool or not: "When an instance is terminated, the instance
            // status changes to terminated. You can't connect to or start an instance after
            // you've terminated it" (API reference, TerminateInstanceInAutoScalingGroup). A warm
            // pool's `ReuseOnScaleIn` applies to the instances the group scales in itself
            // (`InstanceReusePolicy`: "returned to the warm pool on scale in"); tools that want
            // it unprotect the instance and let the group choose it (jenkinsci/ec2-fleet-plugin
            // #519), which hands the choice of victim back to AWS. gpupool keeps the choice.
            let res = self
                .asg
                .terminate_instance_in_auto_scaling_group()
                .instance_id(id.as_str())
                .should_decrement_desired_capacity(decrement)
                .send()
                .await
                .api("TerminateInstanceInAutoScalingGroup", id.as_str());
            match res {
                Ok(_) => {
                    if decrement {
                        desired -= 1;
                    }
                    tracing::info!(%group, instance = %id, decrement, "terminating");
                }
                Err(ProviderError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.terminate_warm(group, &warm_victims).await
    }

    async fn release_unfulfilled(
        &self,
        group: &NodeGroupId,
        count: u32,
        _instances: &[InstanceId],
    ) -> Result<u32> {
        if count == 0 {
            return Ok(0);
        }
        // Re-read the group: an instance that appeared since the caller's snapshot is backed
        // capacity and must stay. Cluster Autoscaler does the same for its placeholders: it sets
        // the group's size to the instances the group lists
        // (`cluster-autoscaler/cloudprovider/aws/auto_scaling_groups.go`, `DeleteInstances`).
        let g = self.managed_group(group).await?;
        let spec = GroupSpec::from_sdk(&g);
        let target = release_target(spec.desired, count, listed_instances(&g), spec.min);
        if target >= spec.desired {
            return Ok(0);
        }
        self.set_desired(group, target).await?;
        let released = spec.desired - target;
        tracing::info!(%group, from = spec.desired, to = target, "unfulfilled launch taken back");
        Ok(released)
    }

    async fn set_warm_pool_size(&self, group: &NodeGroupId, size: u32) -> Result<()> {
        let g = self.managed_group(group).await?;
        let Resolved { spec, template } = self.resolve(&g).await?;
        if let Some(why) = spec.warm_pool_refusal(template.as_ref()) {
            return Err(ProviderError::InvalidConfig(format!(
                "group {group}: {why}"
            )));
        }
        let size = i32::try_from(size).map_err(|_| {
            ProviderError::InvalidConfig(format!("warm pool size {size} is too large"))
        })?;
        // PutWarmPool creates *or updates* the whole configuration; the API reference gives
        // `InstanceReusePolicy` a default ("The default is to terminate instances in the Auto
        // Scaling group when the group scales in") and does not say an update keeps an omitted
        // one, so the group's current policy (Terraform's `instance_reuse_policy`) is sent back.
        let reuse: Option<InstanceReusePolicy> = if spec.has_warm_pool {
            self.warm_pool_instances(&spec.name)
                .await?
                .0
                .and_then(|c| c.instance_reuse_policy().cloned())
        } else {
            None
        };
        self.asg
            .put_warm_pool()
            .auto_scaling_group_name(group.as_str())
            .min_size(size)
            // MinSize = MaxGroupPreparedCapacity is the only setting that gives the warm pool an
            // absolute size; without it AWS keeps (max size − desired) instances warm.
            .max_group_prepared_capacity(size)
            .pool_state(WarmPoolState::Stopped)
            .set_instance_reuse_policy(reuse)
            .send()
            .await
            .api("PutWarmPool", group.as_str())?;
        tracing::info!(%group, size, "warm pool size set");
        Ok(())
    }

    async fn complete_warmup(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        let g = self.managed_group(group).await?;
        let spec = GroupSpec::from_sdk(&g);
        // Both paths into service pass the launch hook in `Pending:Wait`: a cold launch and an
        // instance leaving the warm pool ("When your Auto Scaling group scales out, Amazon EC2
        // Auto Scaling puts one or more warm pool instances into a wait state (`Pending:Wait`)
        // before the instances transition into the `InService` state"; a launch into the warm
        // pool waits in `Warmed:Pending:Wait` — Auto Scaling user guide, "Using lifecycle hooks
        // with a warm pool"). Each is completed only once the cache tag is the current version.
        let state = match g
            .instances()
            .iter()
            .find(|i| i.instance_id() == Some(instance.as_str()))
        {
            Some(i) => i.lifecycle_state().cloned(),
            None if spec.has_warm_pool => self
                .warm_pool_instances(&spec.name)
                .await?
                .1
                .iter()
                .find(|i| i.instance_id() == Some(instance.as_str()))
                .and_then(|i| i.lifecycle_state().cloned()),
            None => None,
        };
        let Some(state) = state else {
            return Err(ProviderError::NotFound {
                what: format!("instance {instance} in group {group}"),
            });
        };
        if !instances::awaits_launch_hook(&state) {
            tracing::debug!(%group, %instance, state = state.as_str(), "no launch hook holds the instance");
            return Ok(());
        }
        let hook = self.settings.lifecycle_hook_name.as_str();
        let hooks = self
            .asg
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group.as_str())
            .lifecycle_hook_names(hook)
            .send()
            .await
            .api("DescribeLifecycleHooks", group.as_str())?;
        let ours = hooks.lifecycle_hooks().iter().any(|h| {
            h.lifecycle_hook_name() == Some(hook) && h.lifecycle_transition() == Some(LAUNCHING)
        });
        if !ours {
            // Another launch hook holds it (someone else's); completing it is not gpupool's call.
            tracing::debug!(%group, %instance, hook, "the group has no gpupool launch hook");
            return Ok(());
        }
        let facts = self
            .ec2_instances(&[instance.to_string()], group.as_str())
            .await?;
        let have = facts
            .get(instance.as_str())
            .and_then(|f| f.model_cache.clone());
        let want = spec
            .pool
            .as_ref()
            .and_then(|p| self.settings.model_caches.get(p));
        if let Some(why) = cache_not_ready(have.as_deref(), want.map(String::as_str)) {
            return Err(ProviderError::InvalidConfig(format!(
                "instance {instance} of {group}: {why}; the launch hook {hook} keeps holding it"
            )));
        }
        let res = self
            .asg
            .complete_lifecycle_action()
            .auto_scaling_group_name(group.as_str())
            .lifecycle_hook_name(hook)
            .instance_id(instance.as_str())
            .lifecycle_action_result("CONTINUE")
            .send()
            .await
            .api("CompleteLifecycleAction", instance.as_str());
        match res {
            Ok(_) => {
                tracing::info!(%group, %instance, hook, cache = have.as_deref().unwrap_or(""), "lifecycle action completed: model cache verified");
                Ok(())
            }
            // "No active Lifecycle Action found": the node completed it itself (the Terraform
            // module's user data does) — the state we wanted.
            Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn poll_events(&self) -> Result<Vec<ProviderEvent>> {
        // Failed launches are not events: they are reported on the group while outstanding
        // (`NodeGroup::unfulfilled`), so the controller has one path for them.
        let mut out = Vec::new();
        if let Some(queue) = &self.settings.interruption_queue_url
            && let Err(e) = self.poll_queue(queue, &mut out).await
        {
            // Events already received must not be lost with a later batch's error.
            if out.is_empty() {
                return Err(e);
            }
            tracing::warn!(error = %e, "cannot read all of the interruption queue; returning what was read");
        }
        Ok(out)
    }

    async fn ack_event(&self, ack: &str) -> Result<()> {
        match &self.settings.interruption_queue_url {
            Some(queue) => self.delete_message(queue, ack).await,
            None => Ok(()),
        }
    }

    /// EC2 `CreateTags` of [`DRAIN_DEADLINE_TAG`] on the instance. EC2 API reference,
    /// `CreateTags`: "Adds or overwrites only the specified tags … When you specify an existing
    /// tag key, the value is overwritten with the new value", so marking again (a deadline
    /// brought forward) is one call and idempotent. The IAM policy allows this call for this
    /// tag key only (`aws:TagKeys`) and only on instances of opted-in groups
    /// (`terraform/modules/aws-controller-iam`). A vanished instance maps to `NotFound`
    /// (`InvalidInstanceID.NotFound`).
    async fn mark_draining(
        &self,
        group: &NodeGroupId,
        instance: &InstanceId,
        deadline: Timestamp,
    ) -> Result<()> {
        let tag = aws_sdk_ec2::types::Tag::builder()
            .key(DRAIN_DEADLINE_TAG)
            .value(encode_drain_deadline(deadline))
            .build();
        self.ec2
            .create_tags()
            .resources(instance.as_str())
            .tags(tag)
            .send()
            .await
            .api("CreateTags", group.as_str())?;
        tracing::info!(%group, %instance, %deadline, "drain marked on the instance");
        Ok(())
    }

    /// AWS bills nothing for a Spot Instance EC2 interrupts in its first hour.
    fn reclaim_refund_window(&self) -> Option<Duration> {
        Some(gpupool_provider::AWS_SPOT_RECLAIM_FREE)
    }

    /// Auto Scaling `DetachInstances` with `ShouldDecrementDesiredCapacity: true`. API
    /// reference: "Removes one or more instances from the specified Auto Scaling group. After
    /// the instances are detached, you can manage them independent of the Auto Scaling group.
    /// If you do not specify the option to decrement the desired capacity, Amazon EC2 Auto
    /// Scaling launches instances to replace the ones that are detached" — decremented, so no
    /// replacement for capacity the planner already replaced; attached target groups
    /// deregister it. The user guide ("Detach or attach instances") requires the instance to
    /// be `InService` and the group to stay at or above its min size; both are checked here
    /// first and refused as `InvalidConfig` (the controller then terminates instead). The
    /// instance keeps its tags, the drain mark included, which is how [`Self::sweep_released`]
    /// finds it later.
    async fn release_to_reclaim(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        let g = self.managed_group(group).await?;
        let spec = GroupSpec::from_sdk(&g);
        let Some(i) = g
            .instances()
            .iter()
            .find(|i| i.instance_id() == Some(instance.as_str()))
        else {
            return Err(ProviderError::NotFound {
                what: format!("instance {instance} in group {group}"),
            });
        };
        let state = i.lifecycle_state().map(|s| s.as_str().to_owned());
        if state.as_deref() != Some("InService") {
            return Err(ProviderError::InvalidConfig(format!(
                "{instance} is {}, not InService: DetachInstances refuses it",
                state.as_deref().unwrap_or("in an unknown state")
            )));
        }
        if spec.desired <= spec.min {
            return Err(ProviderError::InvalidConfig(format!(
                "group {group} is at its min size {}: detaching with a decrement would go below it",
                spec.min
            )));
        }
        self.asg
            .detach_instances()
            .auto_scaling_group_name(group.as_str())
            .instance_ids(instance.as_str())
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .api("DetachInstances", group.as_str())?;
        tracing::info!(%group, %instance, "detached with a decrement: left to the spot reclaim");
        Ok(())
    }

    /// Find what [`Self::release_to_reclaim`] left and the reclaim did not take: EC2
    /// `DescribeInstances` of opted-in (`gpupool.io/enabled=true`, the same condition the IAM
    /// policy puts on `TerminateInstances`) instances that are not terminated and carry a
    /// drain mark older than `grace`; of those, Auto Scaling `DescribeAutoScalingInstances`
    /// drops every one still in a group (a VM-only drain kept past its deadline while still
    /// registered is one, and is not ours to end here). The rest are terminated with EC2
    /// `TerminateInstances`. Pure selection in [`crate::instances::overdue_released`].
    async fn sweep_released(&self, now: Timestamp, grace: Duration) -> Result<Vec<InstanceId>> {
        let target = "released spot instances";
        let filter = |name: String, values: &[&str]| {
            Ec2Filter::builder()
                .name(name)
                .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
                .build()
        };
        let filters = vec![
            filter(format!("tag:{TAG_ENABLED}"), &["true"]),
            filter("tag-key".into(), &[DRAIN_DEADLINE_TAG]),
            filter(
                "instance-state-name".into(),
                &["pending", "running", "stopping", "stopped"],
            ),
        ];
        let marked: Vec<(String, Option<String>)> = self
            .describe_instances(filters, target)
            .await?
            .iter()
            .filter_map(|i| {
                let mark = tag_value(i.tags(), DRAIN_DEADLINE_TAG).map(str::to_owned);
                Some((i.instance_id()?.to_owned(), mark))
            })
            .collect();
        let overdue = instances::overdue_released(&marked, now, grace);
        if overdue.is_empty() {
            return Ok(Vec::new());
        }
        let mut in_groups: HashSet<String> = HashSet::new();
        for chunk in overdue.chunks(ASG_INSTANCE_IDS_PER_CALL) {
            let pages = all_pages(
                "DescribeAutoScalingInstances",
                target,
                |token| {
                    self.asg
                        .describe_auto_scaling_instances()
                        .set_instance_ids(Some(chunk.to_vec()))
                        .set_next_token(token)
                        .send()
                },
                |out| out.next_token(),
            )
            .await?;
            for d in pages.iter().flat_map(|out| out.auto_scaling_instances()) {
                if let Some(id) = d.instance_id() {
                    in_groups.insert(id.to_owned());
                }
            }
        }
        let strays: Vec<String> = overdue
            .into_iter()
            .filter(|id| !in_groups.contains(id))
            .collect();
        self.ec2_terminate(
            &strays,
            target,
            "terminated instances left to a spot reclaim that did not come",
        )
        .await?;
        Ok(strays.into_iter().map(InstanceId::new).collect())
    }

    /// EC2 `DeleteTags` of [`DRAIN_DEADLINE_TAG`], named by key without a value. EC2 API
    /// reference, `DeleteTags`: "If you specify a tag key without a tag value, we delete any
    /// tag with this key regardless of its value" — and "If you omit this parameter, we delete
    /// all user-defined tags", which is why the key is always named (and why the IAM policy
    /// requires `aws:TagKeys` to be present). Deleting a tag that is not there succeeds; a
    /// vanished instance (`InvalidInstanceID.NotFound`) has no mark left either.
    async fn clear_draining(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        let tag = aws_sdk_ec2::types::Tag::builder()
            .key(DRAIN_DEADLINE_TAG)
            .build();
        match self
            .ec2
            .delete_tags()
            .resources(instance.as_str())
            .tags(tag)
            .send()
            .await
            .api("DeleteTags", group.as_str())
        {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_set_forgets_the_oldest() {
        let mut s = BoundedSet::default();
        assert!(s.insert("a"));
        assert!(!s.insert("a"));
        for i in 0..SEEN_MAX {
            s.insert(&i.to_string());
        }
        assert!(!s.contains("a"), "oldest evicted");
        assert!(s.contains(&(SEEN_MAX - 1).to_string()));
        assert_eq!(s.order.len(), SEEN_MAX);
        assert_eq!(s.set.len(), SEEN_MAX);
    }

    #[test]
    fn gpu_facts_from_describe_instance_types() {
        use aws_sdk_ec2::types::{
            GpuDeviceInfo, GpuDeviceMemoryInfo, GpuInfo as Ec2Gpu, InstanceTypeInfo, MemoryInfo,
            VCpuInfo,
        };
        let info = InstanceTypeInfo::builder()
            .v_cpu_info(VCpuInfo::builder().default_v_cpus(192).build())
            .memory_info(MemoryInfo::builder().size_in_mib(2_097_152).build())
            .gpu_info(
                Ec2Gpu::builder()
                    .gpus(
                        GpuDeviceInfo::builder()
                            .name("H100")
                            .manufacturer("NVIDIA")
                            .count(8)
                            .memory_info(GpuDeviceMemoryInfo::builder().size_in_mib(81920).build())
                            .build(),
                    )
                    .build(),
            )
            .build();
        let t = gpu_instance_type("p5.48xlarge", &info).unwrap();
        assert_eq!(
            (t.gpu.model.as_str(), t.gpu.count, t.gpu.memory_mib_per_gpu),
            ("H100", 8, 81920)
        );
        assert_eq!((t.vcpu, t.memory_mib), (192, 2_097_152));
        let cpu_only = InstanceTypeInfo::builder().build();
        assert!(gpu_instance_type("m5.large", &cpu_only).is_none());
        // H100 80 GB: the 7-slice catalog row.
        assert_eq!(
            t.gpu
                .mig_profiles
                .first()
                .map(|p| (p.name.as_str(), p.per_gpu)),
            Some(("1g.10gb", 7))
        );
        // A10G has no MIG.
        let a10g = InstanceTypeInfo::builder()
            .gpu_info(
                Ec2Gpu::builder()
                    .gpus(
                        GpuDeviceInfo::builder()
                            .name("A10G")
                            .count(1)
                            .memory_info(GpuDeviceMemoryInfo::builder().size_in_mib(22888).build())
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert!(
            gpu_instance_type("g5.xlarge", &a10g)
                .unwrap()
                .gpu
                .mig_profiles
                .is_empty()
        );
    }

    #[test]
    fn release_never_goes_below_listed_or_min() {
        // desired, count, listed, min → target
        assert_eq!(release_target(3, 2, 1, 0), 1);
        assert_eq!(release_target(3, 5, 1, 0), 1, "listed instances stay");
        assert_eq!(release_target(3, 3, 0, 2), 2, "min size stays");
        assert_eq!(
            release_target(2, 2, 2, 0),
            2,
            "nothing unfulfilled: nothing taken back"
        );
        assert_eq!(release_target(1, 1, 3, 0), 1, "never raises desired");
    }

    #[test]
    fn the_hook_waits_for_the_current_cache() {
        assert!(cache_not_ready(Some("llama@v2"), Some("llama@v2")).is_none());
        assert!(cache_not_ready(Some("llama@v1"), Some("llama@v2")).is_some());
        assert!(cache_not_ready(None, Some("llama@v2")).is_some());
        assert!(cache_not_ready(Some("llama@v1"), None).is_none());
        assert!(cache_not_ready(None, None).is_some());
    }
}
