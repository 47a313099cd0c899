//! A real `moto` server (PyPI `moto[server]`) on 127.0.0.1 for the AWS tests, plus SDK clients
//! and fixture builders pointed at it.
//!
//! Each test starts its own server on a free port and the [`Moto`] guard kills it on drop, so
//! tests share no state and no server outlives its test. Credentials are set on the SDK
//! configuration (and on the boto3 child's environment), never on the test process.

#![allow(dead_code)]

use gpupool_aws::sdk::{autoscaling, aws_config, cloudwatch, ec2, sqs};
use gpupool_aws::{AwsSettings, StaticCredentials};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";
/// moto's canned AMI (any id works for ASG launches, this one also exists in its catalogue).
pub const AMI: &str = "ami-12c6146b";
const START_DEADLINE: Duration = Duration::from_secs(60);

pub struct Moto {
    child: Child,
    log: std::path::PathBuf,
    pub port: u16,
    pub endpoint: String,
}

impl Moto {
    /// Start `python3 -m moto.server` on a free loopback port and wait (with a deadline) until
    /// it answers HTTP.
    pub fn start() -> Moto {
        let port = gpupool::testkit::free_port();
        let log = std::env::temp_dir().join(format!("gpupool-moto-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("create moto log file");
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start moto: install it with `pip install 'moto[server]'` (tests/run.sh does)");
        let moto = Moto {
            child,
            log: log.clone(),
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if http_ok(port) {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer on port {port} within {START_DEADLINE:?}; its log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Provider settings pointing at this server, for `pools`.
    pub fn settings(&self, pools: &[&str]) -> AwsSettings {
        let mut s = AwsSettings::new(REGION, pools.iter().map(|p| (*p).into()).collect());
        s.endpoint_url = Some(self.endpoint.clone());
        s.credentials = Some(StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
        });
        s.api_timeout = Duration::from_secs(30);
        s
    }

    pub async fn clients(&self) -> Clients {
        clients_at(&self.endpoint).await
    }

    /// Provider settings pointing at `endpoint` (a fault proxy in front of this server).
    pub fn settings_at(&self, endpoint: &str, pools: &[&str]) -> AwsSettings {
        let mut s = self.settings(pools);
        s.endpoint_url = Some(endpoint.to_owned());
        s
    }

    /// Run a boto3 snippet against this server (for EventBridge, which gpupool's SDK set does
    /// not include). `print` output is returned.
    pub fn boto3(&self, script: &str) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import boto3, json\nkw = dict(region_name='{REGION}', endpoint_url='{}')\n{script}",
                self.endpoint
            ))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", REGION)
            .output()
            .expect("run python3 with boto3");
        assert!(
            out.status.success(),
            "boto3 snippet failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// SDK clients for `endpoint` (moto itself, or a fault proxy in front of it).
pub async fn clients_at(endpoint: &str) -> Clients {
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(autoscaling::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await;
    Clients {
        asg: autoscaling::Client::new(&cfg),
        ec2: ec2::Client::new(&cfg),
        sqs: sqs::Client::new(&cfg),
        cw: cloudwatch::Client::new(&cfg),
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One HTTP request to moto's own API; true on any HTTP answer.
fn http_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && buf.starts_with(b"HTTP/"))
}

pub struct Clients {
    pub asg: autoscaling::Client,
    pub ec2: ec2::Client,
    pub sqs: sqs::Client,
    pub cw: cloudwatch::Client,
}

/// How a test group is built.
pub struct GroupFixture<'a> {
    pub name: &'a str,
    pub pool: Option<&'a str>,
    pub enabled: bool,
    pub zones: &'a [&'a str],
    pub min: i32,
    pub max: i32,
    pub desired: i32,
    /// Launch template instance type.
    pub instance_type: &'a str,
    /// Mixed-instances overrides (empty: plain launch template group).
    pub overrides: &'a [&'a str],
    /// `OnDemandPercentageAboveBaseCapacity` when mixed.
    pub on_demand_pct: i32,
    /// Launch template requests spot.
    pub spot_template: bool,
}

impl Default for GroupFixture<'_> {
    fn default() -> Self {
        GroupFixture {
            name: "g",
            pool: Some("llama"),
            enabled: true,
            zones: &["us-east-1a", "us-east-1b"],
            min: 0,
            max: 4,
            desired: 0,
            instance_type: "g5.xlarge",
            overrides: &[],
            on_demand_pct: 100,
            spot_template: false,
        }
    }
}

impl Clients {
    pub async fn launch_template(&self, name: &str, instance_type: &str, spot: bool) {
        use ec2::types::{
            InstanceType, LaunchTemplateInstanceMarketOptionsRequest, MarketType,
            RequestLaunchTemplateData,
        };
        let mut data = RequestLaunchTemplateData::builder()
            .image_id(AMI)
            .instance_type(InstanceType::from(instance_type));
        if spot {
            data = data.instance_market_options(
                LaunchTemplateInstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .build(),
            );
        }
        self.ec2
            .create_launch_template()
            .launch_template_name(name)
            .launch_template_data(data.build())
            .send()
            .await
            .expect("create launch template");
    }

    pub async fn group(&self, f: GroupFixture<'_>) {
        use autoscaling::types::{
            InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides,
            LaunchTemplateSpecification, MixedInstancesPolicy, Tag,
        };
        let lt_name = format!("lt-{}", f.name);
        self.launch_template(&lt_name, f.instance_type, f.spot_template)
            .await;
        let spec = LaunchTemplateSpecification::builder()
            .launch_template_name(&lt_name)
            .version("$Latest")
            .build();
        let mut req = self
            .asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(f.name)
            .min_size(f.min)
            .max_size(f.max)
            .desired_capacity(f.desired)
            .set_availability_zones(Some(f.zones.iter().map(|z| z.to_string()).collect()));
        if f.overrides.is_empty() {
            req = req.launch_template(spec);
        } else {
            let mut lt = LaunchTemplate::builder().launch_template_specification(spec);
            for o in f.overrides {
                lt = lt.overrides(LaunchTemplateOverrides::builder().instance_type(*o).build());
            }
            req = req.mixed_instances_policy(
                MixedInstancesPolicy::builder()
                    .launch_template(lt.build())
                    .instances_distribution(
                        InstancesDistribution::builder()
                            .on_demand_base_capacity(0)
                            .on_demand_percentage_above_base_capacity(f.on_demand_pct)
                            .spot_allocation_strategy("price-capacity-optimized")
                            .build(),
                    )
                    .build(),
            );
        }
        let tag = |k: &str, v: &str| {
            Tag::builder()
                .resource_id(f.name)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(true)
                .build()
        };
        if let Some(p) = f.pool {
            req = req.tags(tag("gpupool.io/pool", p));
        }
        req = req.tags(tag(
            "gpupool.io/enabled",
            if f.enabled { "true" } else { "false" },
        ));
        req.send().await.expect("create auto scaling group");
    }

    /// One instance as EC2 `DescribeInstances` reports it (state, tags, …).
    pub async fn instance(&self, id: &str) -> ec2::types::Instance {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("describe instance");
        out.reservations()[0].instances()[0].clone()
    }

    pub async fn desired(&self, group: &str) -> (i32, Vec<String>) {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .expect("describe group");
        let g = &out.auto_scaling_groups()[0];
        (
            g.desired_capacity().unwrap_or(-1),
            g.instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect(),
        )
    }

    pub async fn queue(&self, name: &str) -> (String, String) {
        let url = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue");
        let url = url.queue_url().expect("queue url").to_owned();
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue arn");
        let arn = attrs
            .attributes()
            .and_then(|a| a.get(&sqs::types::QueueAttributeName::QueueArn))
            .expect("arn attribute")
            .clone();
        (url, arn)
    }
}

/// Poll `check` until it returns `Some`, with a deadline (never a fixed sleep).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
