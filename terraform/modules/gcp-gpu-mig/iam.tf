# Service accounts of the pool's VMs and of the gpupool controller.

locals {
  create_node_sa = var.node_service_account_email == null

  # Service account ids: 6-30 characters of [a-z0-9-].
  node_sa_id = "${trimsuffix(substr("gp-${var.pool_name}", 0, 24), "-")}-${local.spot ? "spot" : "std"}"
  # Custom role ids: [a-zA-Z0-9_.] only.
  node_role_id = replace("${local.name}_node", "-", "_")

  model_bucket = split("/", trimprefix(var.model_source_uri, "gs://"))[0]
}

# ---------------------------------------------------------------------------------------------
# VM service account: read the model, label its own pool's VMs, write logs and metrics
# ---------------------------------------------------------------------------------------------

resource "google_service_account" "node" {
  count = local.create_node_sa ? 1 : 0

  project      = var.project_id
  account_id   = local.node_sa_id
  display_name = "gpupool ${var.pool_name} ${lower(var.provisioning_model)} VMs"
}

# What the startup script's `gcloud compute instances add-labels` calls, nothing more.
resource "google_project_iam_custom_role" "node" {
  count = local.create_node_sa ? 1 : 0

  project     = var.project_id
  role_id     = local.node_role_id
  title       = "gpupool ${var.pool_name} VM self-labelling"
  description = "Lets a gpupool VM set its ${local.model_cache_label_key} label."
  permissions = ["compute.instances.get", "compute.instances.setLabels"]
}

resource "google_project_iam_member" "node_self_label" {
  count = local.create_node_sa ? 1 : 0

  project = var.project_id
  role    = google_project_iam_custom_role.node[0].name
  member  = "serviceAccount:${google_service_account.node[0].email}"

  # Only on VMs of this MIG (their names start with its base instance name).
  condition {
    title       = "gpupool-${var.pool_name}-vms-only"
    description = "Instances of the ${local.name} managed instance group"
    expression  = "resource.type == \"compute.googleapis.com/Instance\" && resource.name.extract(\"/instances/{name}\").startsWith(\"${local.name}-\")"
  }
}

resource "google_project_iam_member" "node_observability" {
  for_each = local.create_node_sa ? toset(["roles/logging.logWriter", "roles/monitoring.metricWriter"]) : toset([])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.node[0].email}"
}

# Read access to the bucket holding the model (bucket-level: a prefix-level grant would need
# IAM conditions on a uniform-access bucket).
resource "google_storage_bucket_iam_member" "node_model_read" {
  count = local.create_node_sa ? 1 : 0

  bucket = local.model_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.node[0].email}"
}

# ---------------------------------------------------------------------------------------------
# Controller service account and custom role
# ---------------------------------------------------------------------------------------------

resource "google_service_account" "controller" {
  count = var.create_controller_service_account ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}controller" # "gpupool-controller"; the prefix is at most 15 characters
  display_name = "gpupool controller"
  description  = "Scales GPU managed instance groups labelled gpupool-io-enabled=true"
}

# gpupool's contract (src/contract.rs GCP_PERMISSIONS): exactly the permissions the controller
# uses — find MIGs and their templates, resize running and standby VMs, delete chosen VMs,
# read VMs (labels, status) and machine types, and follow operations (preemptions appear as
# zone operations compute.instances.preempted). tests/terraform_contract.py checks this list
# against `gpupool print-contract`.
resource "google_project_iam_custom_role" "controller" {
  count = var.create_controller_service_account ? 1 : 0

  project     = var.project_id
  role_id     = var.controller_role_id
  title       = "gpupool controller"
  description = "Least privilege for the gpupool GPU autoscaler"
  permissions = [
    "compute.instanceGroupManagers.get",
    "compute.instanceGroupManagers.list",
    "compute.instanceGroupManagers.update",
    "compute.instanceTemplates.get",
    "compute.instances.delete",
    "compute.instances.get",
    "compute.instances.list",
    # VM-only drain mark: the label gpupool-io-drain-deadline, set when a drain starts and
    # removed when it is given up (instances.setLabels; GCP IAM cannot limit it to one key).
    "compute.instances.setLabels",
    "compute.machineTypes.get",
    "compute.regionOperations.get",
    "compute.zoneOperations.get",
    "compute.zoneOperations.list",
  ]
}

resource "google_project_iam_member" "controller" {
  count = var.create_controller_service_account ? 1 : 0

  project = var.project_id
  role    = google_project_iam_custom_role.controller[0].name
  member  = "serviceAccount:${google_service_account.controller[0].email}"
}

# GKE Workload Identity: the controller's Kubernetes service account acts as the GCP one.
resource "google_service_account_iam_member" "controller_workload_identity" {
  count = var.create_controller_service_account && var.controller_workload_identity != null ? 1 : 0

  service_account_id = google_service_account.controller[0].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.controller_workload_identity.namespace}/${var.controller_workload_identity.service_account}]"
}
