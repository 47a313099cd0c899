# One gpupool node group on GCP: an instance template of GPU VMs and a regional managed
# instance group (MIG) with a standby pool of stopped, cache-warm VMs.
#
# Who changes what: Terraform owns the shape (template, zones, policies); gpupool owns
# target_size (running VMs), target_stopped_size (standby VMs) and which VMs are deleted
# (deleteInstances). `ignore_changes` keeps `terraform apply` from undoing its decisions.
#
# Discovery: MIGs carry no labels, so gpupool finds a pool's MIGs through the labels of their
# instance template (gpupool-io-pool, gpupool-io-enabled); the VMs inherit the same labels.

locals {
  name = "${var.name_prefix}${var.pool_name}-${lower(var.provisioning_model)}"

  # gpupool's contract (src/contract.rs): GCP label keys cannot hold '.' or '/', so
  # gpupool.io/pool becomes gpupool-io-pool. tests/terraform_contract.py checks these keys
  # against `gpupool print-contract`.
  gpupool_labels = {
    "gpupool-io-pool"    = var.pool_name
    "gpupool-io-enabled" = "true"
  }

  # Set by the VM itself once its model cache is warm.
  model_cache_label_key = "gpupool-io-model-cache"
  model_cache_value     = "${var.model_name}@${var.model_version}"
  # A label value allows only [a-z0-9_-]: lowercase, everything else (the '@' and '.') -> '_'.
  model_cache_label_value = replace(lower(local.model_cache_value), "/[^a-z0-9_-]/", "_")

  cache_device_name = "gpupool-model-cache"

  spot = var.provisioning_model == "SPOT"

  node_service_account_email = var.node_service_account_email != null ? var.node_service_account_email : one(google_service_account.node[*].email)

  startup_script = templatefile("${path.module}/templates/startup-script.sh.tftpl", {
    pool_name               = var.pool_name
    model_name              = var.model_name
    model_version           = var.model_version
    model_cache_label_key   = local.model_cache_label_key
    model_cache_label_value = local.model_cache_label_value
    model_cache_value       = local.model_cache_value
    model_source_uri        = var.model_source_uri
    cache_mount_path        = var.model_cache_mount_path
    cache_device_name       = local.cache_device_name
    serve_command           = var.serve_command
  })
}

resource "google_compute_instance_template" "this" {
  project     = var.project_id
  region      = var.region
  name_prefix = "${local.name}-"
  description = "gpupool pool ${var.pool_name}: ${var.provisioning_model} ${var.machine_type}, model cache ${local.model_cache_value}"

  machine_type   = var.machine_type
  can_ip_forward = false
  tags           = var.network_tags

  labels = merge(var.labels, local.gpupool_labels)

  guest_accelerator {
    type  = var.gpu_type
    count = var.gpu_count
  }

  # GPUs cannot live-migrate, so host maintenance must TERMINATE the VM for both models.
  # SPOT: preemptible, never restarted automatically, deleted when preempted (the MIG then
  # recreates it; gpupool sees the preemption in the zone operations and re-plans).
  # STANDARD: restarted automatically after a host event.
  scheduling {
    provisioning_model          = var.provisioning_model
    preemptible                 = local.spot
    automatic_restart           = !local.spot
    on_host_maintenance         = "TERMINATE"
    instance_termination_action = local.spot ? "DELETE" : null
  }

  shielded_instance_config {
    enable_secure_boot          = var.enable_secure_boot
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  # Boot disk: OS, drivers, container images.
  disk {
    boot         = true
    source_image = var.source_image
    disk_size_gb = var.boot_disk.size_gb
    disk_type    = var.boot_disk.type
    auto_delete  = true
    labels       = merge(var.labels, { "gpupool-io-pool" = var.pool_name })

    dynamic "disk_encryption_key" {
      for_each = var.disk_kms_key_self_link == null ? [] : [var.disk_kms_key_self_link]
      content {
        kms_key_self_link = disk_encryption_key.value
      }
    }
  }

  # Model cache disk: blank, formatted and filled by the startup script. A persistent disk
  # survives stop/start, so a VM started from the standby pool skips the download.
  disk {
    boot         = false
    device_name  = local.cache_device_name
    disk_size_gb = var.model_cache_disk.size_gb
    disk_type    = var.model_cache_disk.type
    auto_delete  = true
    labels       = merge(var.labels, { "gpupool-io-pool" = var.pool_name })

    dynamic "disk_encryption_key" {
      for_each = var.disk_kms_key_self_link == null ? [] : [var.disk_kms_key_self_link]
      content {
        kms_key_self_link = disk_encryption_key.value
      }
    }
  }

  # No access_config: no external IP.
  network_interface {
    subnetwork = var.subnetwork
  }

  service_account {
    email  = local.node_service_account_email
    scopes = ["cloud-platform"] # access is bounded by the service account's IAM, not scopes
  }

  metadata = {
    startup-script         = local.startup_script
    block-project-ssh-keys = "true"
    enable-oslogin         = "TRUE"
    serial-port-enable     = "false"
  }

  lifecycle {
    # Templates are immutable: build the new one before the MIG switches to it.
    create_before_destroy = true
  }
}

resource "google_compute_region_instance_group_manager" "this" {
  project            = var.project_id
  region             = var.region
  name               = local.name
  description        = "gpupool pool ${var.pool_name} (${var.provisioning_model})"
  base_instance_name = local.name

  distribution_policy_zones = var.zones
  # GPU capacity is scarce: BALANCED (default) places VMs in zones that have capacity while
  # spreading as evenly as it can; EVEN would leave VMs unprovisioned in a stocked-out zone.
  # Shapes other than EVEN require instance_redistribution_type = NONE (set below).
  distribution_policy_target_shape = var.distribution_target_shape

  version {
    name              = "primary"
    instance_template = google_compute_instance_template.this.self_link_unique
  }

  # Initial values only: gpupool resizes running and stopped VMs (ignore_changes below).
  target_size         = var.initial_size
  target_stopped_size = var.standby.initial_stopped_size

  # MANUAL: the MIG never starts standby VMs on its own; gpupool decides when a stopped,
  # cache-warm VM starts (it lowers target_stopped_size and raises target_size).
  # initial_delay_sec: a new standby VM runs this long (downloading the model) before the MIG
  # stops it.
  standby_policy {
    mode              = "MANUAL"
    initial_delay_sec = var.standby.initial_delay_sec
  }

  # A new template never replaces serving VMs by itself: gpupool replaces stale ones (cache
  # drift) at its own pace, within its disruption budget.
  update_policy {
    type                         = "OPPORTUNISTIC"
    minimal_action               = "REPLACE"
    instance_redistribution_type = "NONE"
    max_surge_fixed              = 0
    max_unavailable_fixed        = length(var.zones)
  }

  # Terraform must not wait for GPU VMs that may take many minutes (or never come: stockouts).
  wait_for_instances = false

  lifecycle {
    # gpupool owns these (resize, standby pool size); Terraform setting them back would fight it.
    ignore_changes = [target_size, target_stopped_size]
  }
}
