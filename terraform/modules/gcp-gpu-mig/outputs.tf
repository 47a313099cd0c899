# What the gpupool config needs from this node group.

output "mig_name" {
  description = "Name of the regional managed instance group."
  value       = google_compute_region_instance_group_manager.this.name
}

output "mig_self_link" {
  description = "Self link of the managed instance group."
  value       = google_compute_region_instance_group_manager.this.self_link
}

output "instance_group" {
  description = "URL of the instance group the manager controls."
  value       = google_compute_region_instance_group_manager.this.instance_group
}

output "instance_template_self_link" {
  description = "Self link of the current instance template."
  value       = google_compute_instance_template.this.self_link_unique
}

output "labels" {
  description = "The gpupool labels on the template (and so on every VM): gpupool finds the group by them."
  value       = local.gpupool_labels
}

output "model_cache_label" {
  description = "Label the VMs set once their cache is warm: key and the encoded <model>@<version> value."
  value       = { (local.model_cache_label_key) = local.model_cache_label_value }
}

output "provisioning_model" {
  description = "SPOT or STANDARD."
  value       = var.provisioning_model
}

output "node_service_account_email" {
  description = "Service account of the VMs."
  value       = local.node_service_account_email
}

output "controller_service_account_email" {
  description = "Service account of the gpupool controller (null when create_controller_service_account = false). With GKE Workload Identity annotate the controller's Kubernetes service account with iam.gke.io/gcp-service-account=<this>."
  value       = one(google_service_account.controller[*].email)
}

output "controller_role_name" {
  description = "Full name of the controller's custom role (projects/<p>/roles/<id>)."
  value       = one(google_project_iam_custom_role.controller[*].name)
}

output "standby_standing_cost_per_hour" {
  description = "What one stopped standby VM costs per hour, USD: its boot and model-cache disks (a stopped VM bills its disks, not its machine type). pools[].warm_pool.standing_cost_per_hour in the gpupool config: the standby pool then shrinks at the ski-rental break-even instead of after unneeded_time_s. null when a disk type has no price in pd_price_per_gb_month (Hyperdisk). 730 hours a month."
  value = (
    contains(keys(var.pd_price_per_gb_month), var.boot_disk.type) &&
    contains(keys(var.pd_price_per_gb_month), var.model_cache_disk.type)
    ) ? (
    var.boot_disk.size_gb * lookup(var.pd_price_per_gb_month, var.boot_disk.type, 0) +
    var.model_cache_disk.size_gb * lookup(var.pd_price_per_gb_month, var.model_cache_disk.type, 0)
  ) / 730 : null
}
