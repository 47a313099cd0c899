# Inputs of one gpupool node group on GCP: a regional managed instance group (MIG) of GPU VMs,
# SPOT or STANDARD, with a standby pool of stopped, cache-warm VMs, and (optionally) the
# controller's service account and custom role.

# ---------------------------------------------------------------------------------------------
# Identity and placement
# ---------------------------------------------------------------------------------------------

variable "project_id" {
  description = "GCP project of the MIG (gcp.project in the gpupool config)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project id."
  }
}

variable "region" {
  description = "Region of the regional MIG (gcp.region in the gpupool config)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like us-central1."
  }
}

variable "zones" {
  description = "Zones of the region the MIG may use. GPU capacity differs by zone: list every zone that offers the machine type."
  type        = list(string)

  validation {
    condition     = length(var.zones) > 0 && alltrue([for z in var.zones : can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", z))])
    error_message = "zones must be a non-empty list like [\"us-central1-a\", \"us-central1-b\"]."
  }
}

variable "distribution_target_shape" {
  description = "How the regional MIG spreads VMs over the zones: BALANCED (spread where capacity exists), ANY (anywhere with capacity, batch-like), ANY_SINGLE_ZONE (one zone, e.g. with a compact placement policy) or EVEN."
  type        = string
  default     = "BALANCED"

  validation {
    condition     = contains(["BALANCED", "ANY", "ANY_SINGLE_ZONE", "EVEN"], var.distribution_target_shape)
    error_message = "distribution_target_shape must be BALANCED, ANY, ANY_SINGLE_ZONE or EVEN."
  }
}

variable "pool_name" {
  description = "gpupool pool name, e.g. \"llama-70b\" (pools[].name in the gpupool config). Labelled gpupool-io-pool on the template."
  type        = string

  validation {
    # A GCP label value and part of resource names.
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$", var.pool_name))
    error_message = "pool_name must be 1-40 lowercase letters, digits or '-'."
  }
}

variable "name_prefix" {
  description = "Prefix of resource names."
  type        = string
  default     = "gpupool-"

  validation {
    condition     = can(regex("^([a-z][-a-z0-9]{0,14})?$", var.name_prefix))
    error_message = "name_prefix must be empty or start with a lowercase letter, at most 15 characters of [-a-z0-9]."
  }
}

variable "labels" {
  description = "Extra labels for the template (and so the VMs). Keys starting with gpupool-io- are set by the module."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.labels) : !startswith(k, "gpupool-io-")])
    error_message = "Label keys starting with gpupool-io- are gpupool's contract and set by the module."
  }
}

# ---------------------------------------------------------------------------------------------
# VM shape
# ---------------------------------------------------------------------------------------------

variable "provisioning_model" {
  description = "\"SPOT\" (cheap, preempted with 30 s notice) or \"STANDARD\". One MIG has one model: make one MIG of each and let gpupool split capacity between them."
  type        = string
  default     = "STANDARD"

  validation {
    condition     = contains(["SPOT", "STANDARD"], var.provisioning_model)
    error_message = "provisioning_model must be SPOT or STANDARD."
  }
}

variable "machine_type" {
  description = "Machine type, e.g. a2-highgpu-8g, a3-highgpu-8g, g2-standard-96, or n1-standard-* with attached GPUs."
  type        = string
}

variable "gpu_type" {
  description = "Accelerator type for guest_accelerator, e.g. nvidia-tesla-a100, nvidia-h100-80gb, nvidia-l4. Must match the machine type for A2/A3/G2."
  type        = string
}

variable "gpu_count" {
  description = "GPUs per VM (one VM = one replica in gpupool's model)."
  type        = number

  validation {
    condition     = contains([1, 2, 4, 8, 16], var.gpu_count)
    error_message = "gpu_count must be 1, 2, 4, 8 or 16."
  }
}

variable "source_image" {
  description = "Boot image with the NVIDIA driver, e.g. a Deep Learning VM image or your own (projects/<p>/global/images/<name>)."
  type        = string
}

variable "boot_disk" {
  description = "Boot disk size and type."
  type = object({
    size_gb = optional(number, 200)
    type    = optional(string, "pd-balanced")
  })
  default = {}

  validation {
    condition     = var.boot_disk.size_gb >= 50 && contains(["pd-balanced", "pd-ssd", "hyperdisk-balanced"], var.boot_disk.type)
    error_message = "boot_disk: at least 50 GB, type pd-balanced, pd-ssd or hyperdisk-balanced."
  }
}

variable "model_cache_disk" {
  description = "The persistent disk the model is downloaded to. It is kept while the VM is stopped in the standby pool, which is what makes a standby VM warm."
  type = object({
    size_gb = optional(number, 500)
    type    = optional(string, "pd-ssd")
  })
  default = {}

  validation {
    condition     = var.model_cache_disk.size_gb >= 10 && contains(["pd-balanced", "pd-ssd", "hyperdisk-balanced", "hyperdisk-throughput"], var.model_cache_disk.type)
    error_message = "model_cache_disk: at least 10 GB, type pd-balanced, pd-ssd, hyperdisk-balanced or hyperdisk-throughput."
  }
}

variable "disk_kms_key_self_link" {
  description = "Customer managed KMS key for both disks (the Compute Engine service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it). null: Google-managed encryption."
  type        = string
  default     = null
}

variable "enable_secure_boot" {
  description = "Shielded VM secure boot. Needs a signed NVIDIA kernel module (Deep Learning VM and COS images have one); turn off for images with unsigned drivers."
  type        = bool
  default     = true
}

variable "subnetwork" {
  description = "Self link or id of the subnetwork the VMs use. They get no external IP: give the subnet Private Google Access or Cloud NAT."
  type        = string
}

variable "network_tags" {
  description = "Network tags (firewall rules) of the VMs."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------------------------
# Model cache and workload
# ---------------------------------------------------------------------------------------------

variable "model_name" {
  description = "Model served by the pool. The VM labels itself gpupool-io-model-cache=<model>@<version> encoded as a label value (lowercase; characters other than [a-z0-9_-], '@' included, become '_')."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$", var.model_name))
    error_message = "model_name: at most 31 letters, digits, '.', '_' or '-' (the label value holds model and version in 63 characters)."
  }
}

variable "model_version" {
  description = "Model version; changing it makes gpupool replace VMs whose cache is older."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$", var.model_version))
    error_message = "model_version: at most 31 letters, digits, '.', '_' or '-'."
  }
}

variable "model_source_uri" {
  description = "Cloud Storage prefix holding the model files, e.g. gs://my-models/llama-70b/2024-07-23/."
  type        = string

  validation {
    condition     = can(regex("^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/[^'\"\\s]*)?$", var.model_source_uri))
    error_message = "model_source_uri must be a gs://bucket/prefix URI without quotes or spaces."
  }
}

variable "model_cache_mount_path" {
  description = "Where the model cache disk is mounted on the VM."
  type        = string
  default     = "/opt/gpupool/model-cache"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._/-]+$", var.model_cache_mount_path))
    error_message = "model_cache_mount_path must be an absolute path of letters, digits, '.', '_', '-' and '/'."
  }
}

variable "serve_command" {
  description = "Shell commands run on every boot once the cache is warm: start the inference server (VM-only mode) or join the cluster. GCP has no launch lifecycle hook: a standby VM runs them before the MIG stops it too, so make them idempotent."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------------------------------------
# Group sizes
# ---------------------------------------------------------------------------------------------

variable "initial_size" {
  description = "Running VMs at creation. gpupool owns target_size afterwards (Terraform ignores it)."
  type        = number
  default     = 0

  validation {
    condition     = var.initial_size >= 0 && floor(var.initial_size) == var.initial_size
    error_message = "initial_size must be a whole number >= 0."
  }
}

variable "standby" {
  description = <<-EOT
    Standby pool of stopped VMs with a warm cache (GCP's counterpart of an AWS warm pool).
    initial_stopped_size is only the size at creation: gpupool sets target_stopped_size from its
    forecast and Terraform ignores it afterwards. initial_delay_sec is how long a new standby VM
    runs (downloading the model) before the MIG stops it. Best on STANDARD groups: starting a
    stopped SPOT VM competes for spot capacity again and may fail.
  EOT
  type = object({
    initial_stopped_size = optional(number, 0)
    initial_delay_sec    = optional(number, 900)
  })
  default = {}

  validation {
    condition     = var.standby.initial_stopped_size >= 0 && var.standby.initial_delay_sec >= 0 && var.standby.initial_delay_sec <= 3600
    error_message = "standby: initial_stopped_size >= 0 and initial_delay_sec between 0 and 3600."
  }
}

# ---------------------------------------------------------------------------------------------
# Service accounts
# ---------------------------------------------------------------------------------------------

variable "node_service_account_email" {
  description = "Existing service account for the VMs. null: the module creates one that can read the model bucket and set labels on this pool's VMs only."
  type        = string
  default     = null
}

variable "create_controller_service_account" {
  description = "Create gpupool's controller service account and custom role here. Create them once per project: with several MIGs set false in all but one."
  type        = bool
  default     = true
}

variable "controller_role_id" {
  description = "ID of the controller's custom role. A deleted custom role id stays reserved for up to 44 days: pick a new id after deleting one."
  type        = string
  default     = "gpupoolController"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.]{3,64}$", var.controller_role_id))
    error_message = "controller_role_id must be 3-64 of [a-zA-Z0-9_.]."
  }
}

variable "controller_workload_identity" {
  description = "GKE Workload Identity for the controller: the Kubernetes namespace and service account allowed to act as the controller's service account. null: none (e.g. VM-only mode, attach the service account to the controller's VM)."
  type = object({
    namespace       = string
    service_account = string
  })
  default = null
}

variable "pd_price_per_gb_month" {
  description = "Persistent Disk capacity prices in the MIG's region, USD per GB-month, by disk type. The defaults are US regions' (https://cloud.google.com/compute/disks-image-pricing: a 200 GB SSD PD is $34.00 a month). Hyperdisk types also bill provisioned IOPS and throughput and are not priced here. Used only for the standby_standing_cost_per_hour output."
  type        = map(number)
  default = {
    "pd-balanced" = 0.10
    "pd-ssd"      = 0.17
  }

  validation {
    condition     = alltrue([for p in values(var.pd_price_per_gb_month) : p >= 0])
    error_message = "pd_price_per_gb_month: prices are non-negative USD figures."
  }
}
