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
use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter as AsgFilter, WarmPoolState};
use aws_sdk_ec2::types::{Filter as Ec2Filter, InstanceLifecycleType, MarketType};
use gpupool_provider::{
    CapacityType, GpuInfo, Instance, InstanceId, InstanceType, InstanceTypeName, NodeGroup,
    NodeGroupId, NodeGroupProvider, ProviderError, ProviderEvent, ProviderEventKind, Result,
    Timestamp, WarmPool, Zone,
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
/// Scaling activities read per group and tick: recent ones are first, and a failure older
/// than the last 20 activities is history.
const ACTIVITIES_PER_GROUP: i32 = 20;
/// Failed launches older than this are history, not news: the controller would back off an
/// offering for a failure it may already have recovered from.
const LAUNCH_FAILURE_MAX_AGE_S: i64 = 900;
/// Remembered activity ids (each failure is reported once) and warm-pool instance ids.
const SEEN_MAX: usize = 4096;
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
    /// Activity ids already reported (or judged too old).
    seen_activities: BoundedSet,
    /// Launch failures found by `node_groups`, handed out by `poll_events`.
    pending_events: Vec<ProviderEvent>,
    /// Instances seen in a warm pool: when they show up `Pending` they are *starting*.
    warm_seen: BoundedSet,
    /// Types already warned about (no price / no GPU), to log once.
    warned: HashSet<String>,
}

/// gpupool's AWS provider. See the crate docs for the rules it follows.
pub struct AwsProvider {
    asg: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
    sqs: aws_sdk_sqs::Client,
    metrics: AwsMetrics,
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

/// Every page of a `NextToken` listing, at most [`MAX_PAGES`]: `send` sends one request with
/// the token it is given, `next` reads a response's token (missing or empty on the last page).
/// Errors are mapped as `call` on `target`.
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
    /// endpoint override, adaptive retries and the per-call timeout. Makes no API call.
    pub async fn new(settings: AwsSettings) -> std::result::Result<Self, AwsError> {
        let cfg = crate::sdk_config(&settings).await?;
        Ok(AwsProvider {
            asg: aws_sdk_autoscaling::Client::new(&cfg),
            ec2: aws_sdk_ec2::Client::new(&cfg),
            sqs: aws_sdk_sqs::Client::new(&cfg),
            metrics: AwsMetrics::from_sdk_config(&cfg),
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
        Ok(pages
            .iter()
            .flat_map(|out| out.auto_scaling_groups())
            .cloned()
            .collect())
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
                details: a.details().map(str::to_owned),
                start_ms: a.start_time().and_then(|t| t.to_millis().ok()),
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

    /// Latest spot price per (type, zone) for `types`, refreshed every `SPOT_PRICE_TTL`.
    async fn spot_prices(&self, types: &[InstanceTypeName]) -> Result<()> {
        let now = Instant::now();
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
                    .product_descriptions("Linux/UNIX")
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
            if at >= e.0 {
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

    /// EC2 facts of instances: launch time, private IP, model-cache tag, spot or not.
    async fn ec2_instances(
        &self,
        ids: &[String],
        target: &str,
    ) -> Result<HashMap<String, Ec2Facts>> {
        let mut facts = HashMap::new();
        for chunk in ids.chunks(EC2_IDS_PER_CALL) {
            let pages = all_pages(
                "DescribeInstances",
                target,
                |token| {
                    // A filter, not InstanceIds: an id that vanished meanwhile is simply absent
                    // instead of failing the whole call with InvalidInstanceID.NotFound.
                    self.ec2
                        .describe_instances()
                        .filters(
                            Ec2Filter::builder()
                                .name("instance-id")
                                .set_values(Some(chunk.to_vec()))
                                .build(),
                        )
                        .set_next_token(token)
                        .send()
                },
                |out| out.next_token(),
            )
            .await?;
            let listed = pages
                .iter()
                .flat_map(|out| out.reservations())
                .flat_map(|r| r.instances());
            for i in listed {
                let Some(id) = i.instance_id() else { continue };
                facts.insert(
                    id.to_owned(),
                    Ec2Facts {
                        launched_ms: i.launch_time().and_then(|t| t.to_millis().ok()),
                        private_ip: i.private_ip_address().map(str::to_owned),
                        model_cache: i
                            .tags()
                            .iter()
                            .find(|t| t.key() == Some(TAG_MODEL_CACHE))
                            .and_then(|t| t.value())
                            .filter(|v| !v.is_empty())
                            .map(str::to_owned),
                        spot: i.instance_lifecycle() == Some(&InstanceLifecycleType::Spot),
                    },
                );
            }
        }
        Ok(facts)
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
        let region = self.settings.region.as_str();
        let offerings = {
            let st = lock(&self.state);
            discovery::offerings(&types, &spec.zones, capacity, |t, z| {
                let live = st
                    .spot_prices
                    .get(&(t.name.to_string(), z.to_string()))
                    .copied();
                let over = self.settings.price_overrides.get(&t.name).copied();
                discovery::price(region, t.name.as_str(), capacity, over, live)
            })
        };
        for t in &types {
            if !offerings.iter().any(|o| o.instance_type.name == t.name) {
                self.warn_once(
                    &format!("price:{}", t.name),
                    "no on-demand price known for this type; not offered (set a price override)",
                );
            }
        }

        let warm_pool = if spec.has_warm_pool {
            let (config, members) = self.warm_pool_instances(&spec.name).await?;
            let mut wp = WarmPool {
                target_size: config
                    .and_then(|c| c.min_size())
                    .map_or(0, |m| m.max(0) as u32),
                ready: 0,
                warming: 0,
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
        };

        let acts = self.activities(&spec.name).await?;
        self.collect_launch_failures(&spec, &type_names, capacity, &acts);

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
            activity_in_progress: activities::in_progress(&acts),
            unfulfilled: Vec::new(),
        }))
    }

    /// Queue one `LaunchFailed` per new failed activity (recent ones only).
    fn collect_launch_failures(
        &self,
        spec: &GroupSpec,
        types: &[InstanceTypeName],
        capacity: CapacityType,
        acts: &[Activity],
    ) {
        let now_ms = now_secs() * 1000;
        let mut st = lock(&self.state);
        for a in acts
            .iter()
            .filter(|a| a.status == Status::Failed && !a.id.is_empty())
        {
            if !st.seen_activities.insert(&a.id) {
                continue;
            }
            if a.start_ms
                .is_some_and(|t| now_ms - t > LAUNCH_FAILURE_MAX_AGE_S * 1000)
            {
                continue;
            }
            let Some(offering) = activities::failed_offering(a, types, &spec.zones, capacity)
            else {
                continue;
            };
            let error = activities::classify_failure(&a.message);
            tracing::warn!(group = %spec.name, activity = %a.id, %offering, ?error, message = %a.message, "launch failed");
            st.pending_events.push(ProviderEvent {
                ack: None,
                id: format!("activity:{}", a.id),
                kind: ProviderEventKind::LaunchFailed {
                    group: NodeGroupId::from(spec.name.as_str()),
                    offering,
                    error,
                    message: a.message.clone(),
                },
            });
        }
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
                match events::parse_body(m.body().unwrap_or_default()) {
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
}

/// Type names as the EC2 request fields want them.
fn ec2_types(names: &[String]) -> Vec<aws_sdk_ec2::types::InstanceType> {
    names
        .iter()
        .map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str()))
        .collect()
}

/// GPU facts of one EC2 type, `None` when it has no GPU.
fn gpu_instance_type(
    name: &str,
    info: &aws_sdk_ec2::types::InstanceTypeInfo,
) -> Option<InstanceType> {
    let gpus = info.gpu_info()?.gpus();
    let first = gpus.first()?;
    let count: i32 = gpus.iter().filter_map(|g| g.count()).sum();
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
            model: discovery::normalise_gpu_model(first.name().unwrap_or_default()),
            count: count.max(0) as u32,
            memory_mib_per_gpu: first
                .memory_info()
                .and_then(|m| m.size_in_mib())
                .map_or(0, |m| m.max(0) as u64),
            mig_profiles: Vec::new(),
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
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(group.as_str())
            .desired_capacity(target as i32)
            // gpupool has its own flap guards; an ASG cooldown would silently drop the call.
            .honor_cooldown(false)
            .send()
            .await
            .api("SetDesiredCapacity", group.as_str())?;
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
        for id in instances {
            let (decrement, state) = match find(id) {
                Some(i) => (true, i.lifecycle_state()),
                None => match warm.iter().find(|i| i.instance_id() == Some(id.as_str())) {
                    // Warm-pool members are not part of desired capacity: don't decrement.
                    Some(i) => (false, i.lifecycle_state()),
                    None => {
                        tracing::info!(%group, instance = %id, "already gone from the group");
                        continue;
                    }
                },
            };
            if state.is_some_and(instances::is_leaving) {
                continue;
            }
            let res = self
                .asg
                .terminate_instance_in_auto_scaling_group()
                .instance_id(id.as_str())
                .should_decrement_desired_capacity(decrement)
                .send()
                .await
                .api("TerminateInstanceInAutoScalingGroup", id.as_str());
            match res {
                Ok(_) => tracing::info!(%group, instance = %id, decrement, "terminating"),
                Err(ProviderError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn release_unfulfilled(
        &self,
        group: &NodeGroupId,
        _count: u32,
        _instances: &[InstanceId],
    ) -> Result<u32> {
        // INTERIM (being replaced in this change).
        Err(ProviderError::InvalidConfig(format!(
            "release_unfulfilled on {group}: not yet built"
        )))
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
        self.asg
            .put_warm_pool()
            .auto_scaling_group_name(group.as_str())
            .min_size(size)
            // MinSize = MaxGroupPreparedCapacity is the only setting that gives the warm pool an
            // absolute size; without it AWS keeps (max size − desired) instances warm.
            .max_group_prepared_capacity(size)
            .pool_state(WarmPoolState::Stopped)
            .send()
            .await
            .api("PutWarmPool", group.as_str())?;
        tracing::info!(%group, size, "warm pool size set");
        Ok(())
    }

    async fn complete_warmup(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        let hooks = self
            .asg
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group.as_str())
            .send()
            .await
            .api("DescribeLifecycleHooks", group.as_str())?;
        let Some(hook) = hooks
            .lifecycle_hooks()
            .iter()
            .find(|h| h.lifecycle_transition() == Some("autoscaling:EC2_INSTANCE_LAUNCHING"))
            .and_then(|h| h.lifecycle_hook_name())
        else {
            // No launch hook: nothing holds the instance.
            return Ok(());
        };
        self.asg
            .complete_lifecycle_action()
            .auto_scaling_group_name(group.as_str())
            .lifecycle_hook_name(hook)
            .instance_id(instance.as_str())
            .lifecycle_action_result("CONTINUE")
            .send()
            .await
            .api("CompleteLifecycleAction", instance.as_str())?;
        tracing::info!(%group, %instance, hook, "lifecycle action completed: model cache warm");
        Ok(())
    }

    async fn poll_events(&self) -> Result<Vec<ProviderEvent>> {
        let mut out = std::mem::take(&mut lock(&self.state).pending_events);
        if let Some(queue) = &self.settings.interruption_queue_url
            && let Err(e) = self.poll_queue(queue, &mut out).await
        {
            // Launch failures already taken must not be lost with the queue error.
            if out.is_empty() {
                return Err(e);
            }
            tracing::warn!(error = %e, "cannot read the interruption queue; returning launch failures only");
        }
        Ok(out)
    }

    async fn ack_event(&self, ack: &str) -> Result<()> {
        match &self.settings.interruption_queue_url {
            Some(queue) => self.delete_message(queue, ack).await,
            None => Ok(()),
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
    }
}
