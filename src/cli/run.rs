//! `gpupool run --config FILE`: the controller in production.
//!
//! Wires the configured provider (AWS or GCP), the cluster side (Kubernetes or VM-only), the
//! demand signals and the HTTP endpoints, then ticks on the wall clock until SIGTERM/Ctrl-C.
//! In Kubernetes mode only the holder of the leader Lease acts; the others serve `/readyz`
//! as `not-leader`. A new pending GPU pod wakes the loop before its tick (batched, see
//! `controller::batcher`). After every tick the status is served on `/status`, written to the
//! `gpupool-status` ConfigMap by the leader (Kubernetes mode) and, with `--dump-snapshot`, the
//! plan's inputs are written for `gpupool plan`. `--dry-run` (or `dry_run: true`) is shadow
//! mode: plan and report, never act.

use anyhow::{Context, bail};
use gpupool::config::{Config, Mode, ProviderKind};
use gpupool::controller::batcher::Batcher;
#[cfg(feature = "aws")]
use gpupool::controller::cloudwatch::CloudWatchPublisher;
use gpupool::controller::run::{self, Leadership, RunLoop};
use gpupool::controller::{Cluster, Controller, Metrics};
use gpupool::model::Timestamp;
use gpupool::server::{Health, wall_clock};
use gpupool::signals::{ServingReplicas, SignalDemand};
use gpupool_provider::NodeGroupProvider;
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The config file (see examples/).
    #[arg(long)]
    config: PathBuf,
    /// Stop after this many ticks (smoke tests, one-shot runs from cron).
    #[arg(long)]
    ticks: Option<u64>,
    /// Override `metrics.listen` (e.g. 127.0.0.1:0 for tests).
    #[arg(long)]
    listen: Option<String>,
    /// Shadow mode: observe and plan, change nothing (as `dry_run: true` in the config).
    #[arg(long)]
    dry_run: bool,
    /// Write every plan's snapshot, history and plan into DIR, for
    /// `gpupool plan --snapshot DIR/snapshot-T.json --history DIR/history-T.json`.
    #[arg(long, value_name = "DIR")]
    dump_snapshot: Option<PathBuf>,
    /// Ticks kept in the --dump-snapshot directory (older ones are removed).
    #[arg(long, default_value_t = 100)]
    dump_keep: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = match Config::load_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: cannot start:", args.config.display());
            for i in e.issues() {
                eprintln!("  {i}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    config.dry_run |= args.dry_run;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(Arc::new(config), args))
}

async fn serve(config: Arc<Config>, args: Args) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let registry = Arc::new(registry);
    let health = Arc::new(Health::new(config.tick_interval.as_secs(), wall_clock()));
    let (server, stop_tx) = spawn_server(&config, &args, registry, health.clone()).await?;

    let (mut run, mut outlets) = start(&config, &args, &health, &metrics).await?;
    let summary = run.run(&mut outlets).await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    // A one-shot run that never completed a tick is a failure the caller should see.
    Ok(if args.ticks.is_some() && summary.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Binds `metrics.listen` (or `--listen`) and serves /metrics, /healthz and /readyz until the
/// returned sender says stop.
async fn spawn_server(
    config: &Config,
    args: &Args,
    registry: Arc<Registry>,
    health: Arc<Health>,
) -> anyhow::Result<(
    tokio::task::JoinHandle<Result<(), gpupool::server::ServerError>>,
    tokio::sync::watch::Sender<bool>,
)> {
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| config.metrics.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding metrics.listen {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let mut rx = stop_rx;
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            gpupool::server::serve_on(listener, registry, health, shutdown).await
        })
    };
    Ok((server, stop_tx))
}

/// Where each turn goes besides the log: `/status`, the status ConfigMap and snapshot dumps
/// (`cli::status::Publisher`), and CloudWatch.
struct Outlets {
    status_out: crate::cli::status::Publisher,
    publisher: Option<CloudWatchPublisher>,
}

#[async_trait::async_trait(?Send)]
impl run::Outlets for Outlets {
    async fn after_turn(&mut self, controller: &Controller, turn: run::Turn<'_>, now: Timestamp) {
        let (leader, held) = match &turn {
            run::Turn::Standby => (false, None),
            run::Turn::Ran(report) => {
                if let (Some(p), Some(plan)) = (&self.publisher, report.plan()) {
                    // The snapshot the plan was made from (kept with the plan; after a re-plan
                    // the last one, matching `plan`), for the per-group series.
                    let snapshot = controller.last_planned().map(|p| &p.snapshot);
                    p.publish(plan, snapshot, now).await;
                }
                (true, None)
            }
            run::Turn::Held(e) => (true, Some(gpupool::controller::error_chain(e))),
        };
        self.status_out
            .after_tick(controller, leader, now, held)
            .await;
    }
}

/// The demand signals (with the serving-replica count they share with the cluster side) and
/// the CloudWatch publisher, if the config asks for one.
async fn demand(
    config: &Config,
) -> anyhow::Result<(
    SignalDemand,
    Arc<ServingReplicas>,
    Option<CloudWatchPublisher>,
)> {
    let serving = Arc::new(ServingReplicas::default());
    #[allow(unused_mut)]
    let mut demand = SignalDemand::new()
        .context("building the signal HTTP client")?
        .with_serving(serving.clone());
    // One CloudWatch + SQS client set serves both the demand signals and the publisher.
    #[cfg(feature = "aws")]
    let aws_metrics = aws_metrics(config).await?;
    #[cfg(feature = "aws")]
    if let Some(m) = &aws_metrics {
        demand = demand.with_reader(Arc::new(gpupool::signals::aws::AwsMetricReader::from(
            m.clone(),
        )));
    }
    #[cfg(feature = "aws")]
    let publisher = aws_metrics
        .filter(|_| config.aws.as_ref().is_some_and(|a| a.publish_cloudwatch))
        .map(CloudWatchPublisher::new);
    #[cfg(not(feature = "aws"))]
    let publisher = cloudwatch_publisher(config)?;
    Ok((demand, serving, publisher))
}

/// Builds the provider, the cluster side, the controller with its durable state, and the run
/// loop around it (fenced by the Lease and the shutdown signal).
async fn start(
    config: &Arc<Config>,
    args: &Args,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(RunLoop, Outlets)> {
    let provider = provider(config).await?;
    let (demand, serving, publisher) = demand(config).await?;

    let dumper = match &args.dump_snapshot {
        Some(dir) => Some(
            gpupool::controller::dump::Dumper::new(dir, args.dump_keep)
                .with_context(|| format!("--dump-snapshot {}", dir.display()))?,
        ),
        None => None,
    };
    let mut status_out = crate::cli::status::Publisher::new(config.clone(), health.clone(), dumper);
    let mut leader = Leadership::None;
    let mut wake: Option<Arc<Batcher>> = None;
    // Kubernetes mode: the state ConfigMap, next to the Lease.
    let mut kube_state: Option<Arc<dyn gpupool::state::StateStore>> = None;
    let cluster: Box<dyn Cluster> = match config.mode {
        Mode::VmOnly => {
            let vm = gpupool::vmonly::VmCluster::new(config.clone(), provider.clone())
                .context("building the VM-only cluster")?
                .with_serving(serving.clone());
            Box::new(vm)
        }
        Mode::Kubernetes => {
            let out = (&mut leader, &mut status_out, &mut wake, &mut kube_state);
            kube_cluster(config, out).await?
        }
    };

    let mut controller = Controller::new(
        config.clone(),
        provider,
        cluster,
        Box::new(demand),
        metrics.clone(),
    )
    .with_capture();
    if let Some(store) = kube_state.or_else(|| state_store(config)) {
        controller = controller.with_state_store(store);
    }
    let mut run = RunLoop::new(
        controller,
        leader,
        run::stop_on_signals(),
        health.clone(),
        metrics.clone(),
        config.tick_interval,
    )
    .with_max_ticks(args.ticks);
    if let Some(w) = wake {
        run = run.with_wakeups(w);
    }
    // A state of an unknown version refuses to start (`gpupool::state`).
    run.restore().await?;
    // What `gpupool check-config` warns about, said once at start too: settings that load but
    // will not do what was meant.
    for w in config.warnings(gpupool_provider::clock::wall_clock()) {
        tracing::warn!(field = %w.path, "config: {}", w.message);
    }
    tracing::info!(
        provider = ?config.provider, mode = ?config.mode, pools = config.pools.len(),
        tick_s = config.tick_interval.as_secs(), dry_run = config.dry_run, "gpupool started"
    );
    Ok((
        run,
        Outlets {
            status_out,
            publisher,
        },
    ))
}

/// Without the AWS SDK there is nothing to publish with; a config asking for it is refused.
#[cfg(not(feature = "aws"))]
struct CloudWatchPublisher;

#[cfg(not(feature = "aws"))]
impl CloudWatchPublisher {
    async fn publish(
        &self,
        _: &gpupool::model::Plan,
        _: Option<&gpupool::model::Snapshot>,
        _: Timestamp,
    ) {
    }
}

#[cfg(not(feature = "aws"))]
fn cloudwatch_publisher(config: &Config) -> anyhow::Result<Option<CloudWatchPublisher>> {
    if config.aws.as_ref().is_some_and(|a| a.publish_cloudwatch) {
        bail!("aws.publish_cloudwatch needs a gpupool built with AWS support (--features aws)");
    }
    Ok(None)
}

/// Where the durable state lives (`gpupool::state`). VM-only: the state file; without one,
/// nothing is persisted (said once at start).
fn state_store(config: &Config) -> Option<Arc<dyn gpupool::state::StateStore>> {
    match config.mode {
        Mode::VmOnly => {
            let dir = std::env::var("STATE_DIRECTORY").ok();
            let path =
                gpupool::state::file::resolve_path(config.state.path.as_deref(), dir.as_deref());
            match path {
                Some(p) => Some(Arc::new(gpupool::state::file::FileStore::new(p))),
                None => {
                    tracing::warn!(
                        "no state.path and no $STATE_DIRECTORY: drains, backoffs and timers are not persisted across restarts"
                    );
                    None
                }
            }
        }
        // The ConfigMap store is built with the Kubernetes client (`kube_cluster`).
        Mode::Kubernetes => None,
    }
}

/// What building the Kubernetes side sets beside the cluster: the leadership, the status
/// ConfigMap's publisher, the wake-up batcher and the state ConfigMap store.
type KubeOut<'a> = (
    &'a mut Leadership,
    &'a mut crate::cli::status::Publisher,
    &'a mut Option<Arc<Batcher>>,
    &'a mut Option<Arc<dyn gpupool::state::StateStore>>,
);

#[cfg(feature = "kube")]
async fn kube_cluster(config: &Arc<Config>, out: KubeOut<'_>) -> anyhow::Result<Box<dyn Cluster>> {
    let (leader, status_out, wake, state) = out;
    // In-cluster config or KUBECONFIG; kube's default retry of 429 is switched off so a
    // PDB-blocked eviction never stalls the control loop.
    let kube_config = kube::Config::infer()
        .await
        .context("finding the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let client = gpupool::kube::client(kube_config).context("building the Kubernetes client")?;
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("gpupool-{}", std::process::id()));
    // The status ConfigMap lives next to the Lease, in the controller's own namespace.
    let pod_namespace = std::env::var(gpupool::kube::lease::POD_NAMESPACE_ENV).ok();
    let namespace = gpupool::kube::lease::lease_namespace(
        &config.kubernetes.lease_namespace,
        pod_namespace.as_deref(),
    );
    status_out.with_status_map(gpupool::kube::status_map::StatusMap::new(
        client.clone(),
        namespace,
    ));
    *state = Some(Arc::new(gpupool::state::configmap::ConfigMapStore::new(
        client.clone(),
        namespace,
    )));
    let elector = gpupool::kube::lease::LeaderElector::from_config(
        client.clone(),
        &config.kubernetes,
        &identity,
    );
    *leader = Leadership::Lease(gpupool::kube::lease::spawn_renewal(
        elector,
        std::time::Duration::from_secs(
            u64::from(gpupool::kube::lease::DEFAULT_LEASE_DURATION_S) / 3,
        ),
    ));
    let cluster = gpupool::kube::KubeCluster::start(client, config.clone(), Some(identity));
    *wake = Some(cluster.wakeups());
    Ok(Box::new(cluster))
}

#[cfg(not(feature = "kube"))]
async fn kube_cluster(_: &Arc<Config>, _: KubeOut<'_>) -> anyhow::Result<Box<dyn Cluster>> {
    bail!(
        "mode: kubernetes needs a gpupool built with Kubernetes support \
         (cargo build --release --features kube); for fleets without Kubernetes set mode: vm-only"
    )
}

async fn provider(config: &Config) -> anyhow::Result<Arc<dyn NodeGroupProvider>> {
    match config.provider {
        ProviderKind::Sim => bail!(
            "provider: sim is the simulator's; run `gpupool simulate --scenario quick` \
             (or set provider: aws / gcp)"
        ),
        ProviderKind::Aws => aws_provider(config).await,
        ProviderKind::Gcp => gcp_provider(config).await,
    }
}

#[cfg(feature = "aws")]
fn aws_settings(
    config: &Config,
    pools: Vec<gpupool::model::PoolName>,
) -> anyhow::Result<gpupool_aws::AwsSettings> {
    // Validation guarantees the section exists for provider: aws; signals may use it too.
    let a = config
        .aws
        .as_ref()
        .context("config has no `aws:` section")?;
    let mut s = gpupool_aws::AwsSettings::new(a.region.clone(), pools);
    s.endpoint_url = a.endpoint_url.clone();
    s.interruption_queue_url = a.interruption_queue_url.clone();
    s.api_timeout = a.api_timeout;
    s.price_list_api = a.price_list_api;
    s.price_overrides = a
        .price_overrides
        .iter()
        .map(|(t, p)| (t.as_str().into(), *p))
        .collect();
    // The launch hook is completed only once an instance's cache tag is the pool's version.
    s.model_caches = config
        .pools
        .iter()
        .filter_map(|p| Some((p.name.clone(), p.model_cache.clone()?)))
        .collect();
    Ok(s)
}

#[cfg(feature = "aws")]
async fn aws_provider(config: &Config) -> anyhow::Result<Arc<dyn NodeGroupProvider>> {
    let pools = config.pools.iter().map(|p| p.name.clone()).collect();
    let settings = aws_settings(config, pools)?;
    let p = gpupool_aws::AwsProvider::new(settings)
        .await
        .context("starting the AWS provider")?;
    Ok(Arc::new(p))
}

#[cfg(not(feature = "aws"))]
async fn aws_provider(_: &Config) -> anyhow::Result<Arc<dyn NodeGroupProvider>> {
    bail!(
        "provider: aws needs a gpupool built with AWS support (cargo build --release --features aws)"
    )
}

/// CloudWatch and SQS clients, when the config has an `aws:` section (signals may use AWS even
/// with provider: gcp).
#[cfg(feature = "aws")]
async fn aws_metrics(config: &Config) -> anyhow::Result<Option<gpupool_aws::AwsMetrics>> {
    if config.aws.is_none() {
        return Ok(None);
    }
    let settings = aws_settings(config, Vec::new())?;
    let m = gpupool_aws::AwsMetrics::new(&settings)
        .await
        .context("starting the CloudWatch/SQS clients")?;
    Ok(Some(m))
}

#[cfg(feature = "gcp")]
async fn gcp_provider(config: &Config) -> anyhow::Result<Arc<dyn NodeGroupProvider>> {
    let g = config
        .gcp
        .as_ref()
        .context("config has no `gcp:` section")?;
    let mut s = gpupool_gcp::GcpSettings::new(g.project.clone(), g.region.clone());
    s.zones = g.zones.clone();
    s.endpoint_url = g.endpoint_url.clone();
    s.api_timeout = g.api_timeout;
    s.operation_deadline = g.operation_deadline;
    // Each MIG's cap and the drift check follow the pool's own config.
    s.pools = config
        .pools
        .iter()
        .map(|p| {
            gpupool_gcp::GcpPoolSettings::new(p.name.clone())
                .with_max_group_size(p.limits.max_nodes)
                .with_model_cache(p.model_cache.clone())
                .with_launch_timeout(p.scale_up.launch_timeout)
        })
        .collect();
    let p = gpupool_gcp::GcpProvider::new(s)
        .await
        .context("starting the GCP provider")?;
    Ok(Arc::new(p))
}

#[cfg(not(feature = "gcp"))]
async fn gcp_provider(_: &Config) -> anyhow::Result<Arc<dyn NodeGroupProvider>> {
    bail!(
        "provider: gcp needs a gpupool built with GCP support (cargo build --release --features gcp)"
    )
}
