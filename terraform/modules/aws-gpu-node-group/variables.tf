# Inputs of one gpupool pool on AWS: the instance shape, the on-demand (warm pool) and spot
# Auto Scaling groups, the model cache, the optional EKS join and the interruption queue.

# ---------------------------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------------------------

variable "pool_name" {
  description = "gpupool pool name, e.g. \"llama-70b\". Tagged on every group as gpupool.io/pool; must match `pools[].name` in the gpupool config."
  type        = string

  validation {
    # Also used in ASG, queue and IAM names, and as a Kubernetes label value.
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$", var.pool_name))
    error_message = "pool_name must be 1-40 lowercase letters, digits or '-', starting and ending with a letter or digit."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name. The interruption queue is named \"<name_prefix><pool_name>-interruptions\"."
  type        = string
  default     = "gpupool-"

  validation {
    condition     = can(regex("^[a-zA-Z0-9-]{0,20}$", var.name_prefix))
    error_message = "name_prefix must be at most 20 letters, digits or '-'."
  }
}

variable "tags" {
  description = "Extra tags for every resource. Keys under gpupool.io/ are reserved: the module sets them."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.tags) : !startswith(k, "gpupool.io/")])
    error_message = "Tag keys starting with gpupool.io/ are set by the module (they are gpupool's contract); remove them from var.tags."
  }
}

# ---------------------------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------------------------

variable "ami_id" {
  description = "GPU AMI (NVIDIA driver + container toolkit), e.g. the EKS optimized accelerated AMI for Kubernetes mode, or your own image for VM-only mode."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Private subnets (one per availability zone) the groups launch into. Spread over several zones: GPU spot capacity is scarce and correlated within a zone."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Give at least one subnet id (subnet-...)."
  }
}

variable "security_group_ids" {
  description = "Security groups of the instances (for EKS: the cluster's node security group)."
  type        = list(string)

  validation {
    condition     = length(var.security_group_ids) > 0
    error_message = "Give at least one security group: the launch template attaches no default one."
  }
}

variable "on_demand_instance_type" {
  description = "The single instance type of the on-demand group. AWS refuses a warm pool on a group with several instance types (mixed instances policy), so the on-demand group has exactly one."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.on_demand_instance_type))
    error_message = "on_demand_instance_type must be an EC2 instance type such as p4d.24xlarge."
  }
}

variable "spot_instance_types" {
  description = "Instance types of the spot group(s), most preferred first. Each must hold one replica (same GPU count as the on-demand type): gpupool counts one instance as one unit of capacity. Empty: no spot group."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.spot_instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "Every spot instance type must look like p5.48xlarge."
  }
}

variable "spot_group_per_subnet" {
  description = "true: one spot group per subnet, so gpupool can steer spot capacity zone by zone (each zone an offering of its own). false: one spot group across all subnets."
  type        = bool
  default     = false
}

variable "on_demand_min_size" {
  description = "Minimum size of the on-demand group. gpupool sets desired capacity between min and max; Terraform never changes it after creation."
  type        = number
  default     = 0

  validation {
    condition     = var.on_demand_min_size >= 0 && floor(var.on_demand_min_size) == var.on_demand_min_size
    error_message = "on_demand_min_size must be a whole number >= 0."
  }
}

variable "on_demand_max_size" {
  description = "Maximum size of the on-demand group (instances in service and pending; warm-pool instances are counted by the warm pool, see warm_pool)."
  type        = number
  default     = 4

  validation {
    condition     = var.on_demand_max_size >= 1 && floor(var.on_demand_max_size) == var.on_demand_max_size
    error_message = "on_demand_max_size must be a whole number >= 1."
  }
}

variable "spot_min_size" {
  description = "Minimum size of each spot group."
  type        = number
  default     = 0

  validation {
    condition     = var.spot_min_size >= 0 && floor(var.spot_min_size) == var.spot_min_size
    error_message = "spot_min_size must be a whole number >= 0."
  }
}

variable "spot_max_size" {
  description = "Maximum size of each spot group."
  type        = number
  default     = 16

  validation {
    condition     = var.spot_max_size >= 1 && floor(var.spot_max_size) == var.spot_max_size
    error_message = "spot_max_size must be a whole number >= 1."
  }
}

variable "spot_capacity_rebalance" {
  description = "Turn on the spot groups' Capacity Rebalancing. Off by default, and keep it off with gpupool: on a rebalance recommendation AWS then launches a replacement and terminates the at-risk instance itself, after at most the group's terminating lifecycle hooks (this module creates none), without gpupool's drain, its disruption budget or its do-not-disrupt pods. gpupool receives the same recommendations through the interruption queue and replaces the node under its own budget (disruption.rebalance in the gpupool config)."
  type        = bool
  default     = false
}

variable "warm_pool" {
  description = <<-EOT
    Warm pool of the on-demand group: instances that ran the model download, then stopped
    (pool_state "Stopped"), so starting one takes tens of seconds instead of minutes.
    AWS keeps max(min_size, max_prepared_capacity - desired capacity) instances warm, where
    max_prepared_capacity counts in-service and warm instances together; null means
    on_demand_min_size + min_size, i.e. "keep min_size warm". These are initial values only:
    gpupool resizes the warm pool (PutWarmPool) from its forecast, up to its own warm_pool.max,
    and Terraform ignores both fields afterwards.
    reuse_on_scale_in returns the instances the group scales in itself (a lowered desired
    capacity: a scheduled action, a manual resize) to the pool instead of terminating them.
    gpupool never has the group pick a victim: it removes what it drained with
    TerminateInstanceInAutoScalingGroup, which terminates the instance, so its own scale-downs
    are unchanged by this. Keep it false in Kubernetes mode (a returned instance leaves a
    NotReady Node behind).
  EOT
  type = object({
    enabled               = optional(bool, true)
    min_size              = optional(number, 1)
    max_prepared_capacity = optional(number)
    reuse_on_scale_in     = optional(bool, false)
  })
  default = {}

  validation {
    condition = (
      var.warm_pool.min_size >= 0 &&
      (var.warm_pool.max_prepared_capacity == null ? true : var.warm_pool.max_prepared_capacity >= var.warm_pool.min_size)
    )
    error_message = "warm_pool needs min_size >= 0 and max_prepared_capacity (when set) >= min_size."
  }
}

variable "lifecycle_hook_heartbeat_timeout" {
  description = "Seconds the launching lifecycle hook holds a new instance while it downloads the model. Past it the launch is abandoned (the instance is terminated and replaced): a node without its model must never serve."
  type        = number
  default     = 1800

  validation {
    condition     = var.lifecycle_hook_heartbeat_timeout >= 30 && var.lifecycle_hook_heartbeat_timeout <= 7200
    error_message = "AWS accepts a heartbeat timeout between 30 and 7200 seconds."
  }
}

variable "complete_lifecycle_action_from_instance" {
  description = "true: the instance completes the launching lifecycle hook itself once its cache is warm. Either way gpupool also completes it when it sees the gpupool.io/model-cache tag; whichever comes second gets a harmless 'no active lifecycle action'."
  type        = bool
  default     = true
}

variable "metadata_http_put_response_hop_limit" {
  description = "IMDSv2 hop limit. 1 keeps containers off the instance role; raise to 2 only if pods must reach IMDS (prefer IRSA / Pod Identity)."
  type        = number
  default     = 1

  validation {
    condition     = contains([1, 2], var.metadata_http_put_response_hop_limit)
    error_message = "metadata_http_put_response_hop_limit must be 1 or 2."
  }
}

# ---------------------------------------------------------------------------------------------
# Volumes and the model cache
# ---------------------------------------------------------------------------------------------

variable "root_device_name" {
  description = "Root device name of the AMI (/dev/xvda for Amazon Linux, /dev/sda1 for Ubuntu)."
  type        = string
  default     = "/dev/xvda"

  validation {
    condition     = can(regex("^/dev/(xvd[a-z]|sd[a-z]1?|nvme0n1)$", var.root_device_name))
    error_message = "root_device_name must be a device such as /dev/xvda or /dev/sda1."
  }
}

variable "root_volume_size_gib" {
  description = "Root volume size (container images of inference servers are large)."
  type        = number
  default     = 200

  validation {
    condition     = var.root_volume_size_gib >= 30 && var.root_volume_size_gib <= 16384
    error_message = "root_volume_size_gib must be between 30 and 16384."
  }
}

variable "model_cache_volume" {
  description = "The EBS volume the model is downloaded to. It survives stop/start, which is what makes a warm-pool instance warm."
  type = object({
    device_name      = optional(string, "/dev/sdf")
    size_gib         = optional(number, 500)
    iops             = optional(number, 6000)
    throughput_mibps = optional(number, 500)
  })
  default = {}

  validation {
    condition = (
      can(regex("^/dev/sd[b-z]$", var.model_cache_volume.device_name)) &&
      var.model_cache_volume.size_gib >= 1 && var.model_cache_volume.size_gib <= 16384 &&
      var.model_cache_volume.iops >= 3000 && var.model_cache_volume.iops <= 80000 &&
      var.model_cache_volume.throughput_mibps >= 125 && var.model_cache_volume.throughput_mibps <= 2000
    )
    error_message = "model_cache_volume: device /dev/sdb../dev/sdz, 1-16384 GiB, gp3 iops 3000-80000, throughput 125-2000 MiB/s."
  }
}

variable "ebs_kms_key_arn" {
  description = "Customer managed KMS key for the root and model-cache volumes. null: the account's default EBS key (volumes are encrypted either way)."
  type        = string
  default     = null

  validation {
    condition     = var.ebs_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.ebs_kms_key_arn))
    error_message = "ebs_kms_key_arn must be a KMS key ARN."
  }
}

variable "model_name" {
  description = "Model served by the pool, e.g. \"llama-70b\". With model_version it forms the gpupool.io/model-cache tag value <model>@<version> (gpupool's `pools[].model_cache`)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", var.model_name))
    error_message = "model_name: letters, digits, '.', '_' or '-' (no '@': it separates model and version)."
  }
}

variable "model_version" {
  description = "Model version, e.g. \"2024-07-23\" or \"v3\". Changing it makes gpupool replace instances whose cache is older (drift)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", var.model_version))
    error_message = "model_version: letters, digits, '.', '_' or '-' (no '@')."
  }
}

variable "model_source_uri" {
  description = "S3 prefix holding the model files, e.g. s3://my-models/llama-70b/2024-07-23/. Synced into the cache volume at first boot."
  type        = string

  validation {
    condition     = can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^'\"\\s]*)?$", var.model_source_uri))
    error_message = "model_source_uri must be an s3://bucket/prefix URI without quotes or spaces."
  }
}

variable "model_cache_mount_path" {
  description = "Where the cache volume is mounted on the instance (mount it into the inference pods with a hostPath)."
  type        = string
  default     = "/opt/gpupool/model-cache"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._/-]+$", var.model_cache_mount_path))
    error_message = "model_cache_mount_path must be an absolute path of letters, digits, '.', '_', '-' and '/'."
  }
}

# ---------------------------------------------------------------------------------------------
# Instance IAM
# ---------------------------------------------------------------------------------------------

variable "iam_instance_profile_name" {
  description = "Existing instance profile for the nodes. null: the module creates a least-privilege node role (complete its own lifecycle hook, tag itself with gpupool.io/model-cache, read the model from S3) plus node_policy_arns."
  type        = string
  default     = null
}

variable "node_policy_arns" {
  description = "Managed policies attached to the node role the module creates. For EKS add AmazonEKSWorkerNodePolicy, AmazonEC2ContainerRegistryReadOnly and AmazonEKS_CNI_Policy (or give the CNI its own IRSA role)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.node_policy_arns : can(regex("^arn:aws[a-z-]*:iam::", a))])
    error_message = "node_policy_arns must be IAM policy ARNs."
  }
}

# ---------------------------------------------------------------------------------------------
# Kubernetes (EKS self-managed nodes); leave cluster_name null for VM-only mode
# ---------------------------------------------------------------------------------------------

variable "cluster_name" {
  description = "EKS cluster the nodes join. null: VM-only mode (no kubelet bootstrap)."
  type        = string
  default     = null
}

variable "eks_bootstrap" {
  description = "How the node joins EKS: \"al2023\" (nodeadm, needs cluster_endpoint, cluster_ca_data and cluster_service_cidr) or \"al2\" (/etc/eks/bootstrap.sh)."
  type        = string
  default     = "al2023"

  validation {
    condition     = contains(["al2023", "al2"], var.eks_bootstrap)
    error_message = "eks_bootstrap must be \"al2023\" or \"al2\"."
  }
}

variable "cluster_endpoint" {
  description = "EKS API server endpoint (https://...). Required for al2023, optional for al2 (saves a DescribeCluster call)."
  type        = string
  default     = ""
}

variable "cluster_ca_data" {
  description = "Base64 certificate authority data of the EKS cluster. Required for al2023, optional for al2."
  type        = string
  default     = ""
}

variable "cluster_service_cidr" {
  description = "Kubernetes service CIDR of the cluster (al2023 only)."
  type        = string
  default     = "172.20.0.0/16"

  validation {
    condition     = can(cidrhost(var.cluster_service_cidr, 0))
    error_message = "cluster_service_cidr must be a CIDR block."
  }
}

variable "node_labels" {
  description = "Kubernetes labels the kubelet registers the node with (gpupool.io/pool=<pool> is always added)."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.node_labels :
      can(regex("^([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$", k)) &&
      can(regex("^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$", v))
    ])
    error_message = "node_labels must be valid Kubernetes label keys and values."
  }
}

variable "node_taints" {
  description = "Kubernetes taints the kubelet registers the node with, e.g. [{ key = \"nvidia.com/gpu\", value = \"true\", effect = \"NoSchedule\" }]."
  type = list(object({
    key    = string
    value  = optional(string, "")
    effect = string
  }))
  default = []

  validation {
    condition = alltrue([
      for t in var.node_taints :
      contains(["NoSchedule", "PreferNoSchedule", "NoExecute"], t.effect) &&
      can(regex("^([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$", t.key)) &&
      can(regex("^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$", t.value))
    ])
    error_message = "node_taints: valid key/value and effect NoSchedule, PreferNoSchedule or NoExecute."
  }
}

variable "extra_user_data" {
  description = "Shell commands run on every boot that goes into service, after the cache is warm and before the lifecycle hook is completed (VM-only mode: start the inference server here)."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------------------------------------
# Interruption queue
# ---------------------------------------------------------------------------------------------

variable "create_interruption_queue" {
  description = "Create the SQS queue and EventBridge rules for spot interruption, rebalance, state-change and health events. EventBridge rules match the whole account and region, so with several pools create it in one pool only and give its URL to gpupool (aws.interruption_queue_url)."
  type        = bool
  default     = true
}

variable "interruption_queue_kms_key_id" {
  description = "KMS key for the queues. null: SQS managed encryption (SSE-SQS). A customer managed key must let events.amazonaws.com use kms:GenerateDataKey and kms:Decrypt, and gpupool kms:Decrypt (give its ARN to aws-controller-iam queue_kms_key_arns)."
  type        = string
  default     = null
}

variable "interruption_message_retention_seconds" {
  description = "How long an undelivered event stays in the queue. A spot warning is worthless after its 2 minutes, but state-change and scheduled health events matter longer."
  type        = number
  default     = 3600

  validation {
    condition     = var.interruption_message_retention_seconds >= 60 && var.interruption_message_retention_seconds <= 1209600
    error_message = "SQS retention must be between 60 and 1209600 seconds."
  }
}

variable "interruption_max_receive_count" {
  description = "Deliveries of one message before it moves to the dead-letter queue (gpupool deletes a message once it handled it)."
  type        = number
  default     = 5

  validation {
    condition     = var.interruption_max_receive_count >= 1 && var.interruption_max_receive_count <= 1000
    error_message = "interruption_max_receive_count must be between 1 and 1000."
  }
}

# ---------------------------------------------------------------------------------------------
# Fallback while gpupool is down
# ---------------------------------------------------------------------------------------------

variable "fallback_scaling" {
  description = "Optional scale-out of the on-demand group from an SQS queue's depth while gpupool is down (fallback.tf). Needs `aws.publish_cloudwatch: true` in the gpupool config: gpupool's published DesiredNodes is the heartbeat that keeps the fallback idle while gpupool runs. null: no fallback."
  type = object({
    # The inference request queue (the queue of the pool's `sqs` signal), by name.
    queue_name = string
    # Messages visible above which the fallback adds capacity.
    queue_depth_threshold = number
    # Instances added per evaluation while the alarm stays in ALARM.
    step_instances = optional(number, 1)
    # One-minute periods the condition must hold before the first step.
    evaluation_periods = optional(number, 3)
    # Seconds a new instance needs before it counts (cold start, model load).
    instance_warmup_s = optional(number, 300)
  })
  default = null

  validation {
    condition = var.fallback_scaling == null || (
      var.fallback_scaling.queue_depth_threshold >= 0 &&
      var.fallback_scaling.step_instances >= 1 &&
      var.fallback_scaling.evaluation_periods >= 1 &&
      var.fallback_scaling.instance_warmup_s >= 0
    )
    error_message = "fallback_scaling: queue_depth_threshold >= 0, step_instances >= 1, evaluation_periods >= 1, instance_warmup_s >= 0."
  }
}

variable "ebs_gp3_price" {
  description = "EBS gp3 prices in the group's region, USD: per GiB-month, per provisioned IOPS-month above 3,000, per provisioned MiB/s-month above 125. The defaults are us-east-1's (https://aws.amazon.com/ebs/pricing/). Used only for the warm_pool_standing_cost_per_hour output."
  type = object({
    per_gib_month   = optional(number, 0.08)
    per_iops_month  = optional(number, 0.005)
    per_mibps_month = optional(number, 0.04)
  })
  default = {}

  validation {
    condition = (
      var.ebs_gp3_price.per_gib_month >= 0 && var.ebs_gp3_price.per_iops_month >= 0 &&
      var.ebs_gp3_price.per_mibps_month >= 0
    )
    error_message = "ebs_gp3_price: prices are non-negative USD figures."
  }
}
