# Example: a GCP fleet for one pool, VM-only mode. Two regional MIGs back pool llama-70b:
#
#   gpupool-llama-70b-standard   a2-ultragpu-8g STANDARD, with a standby pool of stopped VMs
#   gpupool-llama-70b-spot       a2-ultragpu-8g SPOT (30 s preemption notice)
#
# gpupool (under systemd, with the controller service account attached to its VM) splits the
# replicas between them. The controller's service account and custom role are created once,
# by the STANDARD group.

locals {
  common = {
    project_id       = var.project_id
    region           = var.region
    zones            = var.zones
    pool_name        = "llama-70b"
    machine_type     = "a2-ultragpu-8g" # 8x A100 80 GB
    gpu_type         = "nvidia-a100-80gb"
    gpu_count        = 8
    source_image     = var.source_image
    subnetwork       = var.subnetwork
    model_name       = "llama-70b"
    model_version    = "v3.1"
    model_source_uri = "gs://${var.model_bucket}/llama-70b/v3.1/"
    serve_command    = <<-EOT
      docker rm -f vllm 2>/dev/null || true
      docker run -d --name vllm --restart unless-stopped --gpus all -p 8000:8000 \
        -v /opt/gpupool/model-cache/llama-70b/v3.1:/model:ro \
        vllm/vllm-openai:latest --model /model --served-model-name llama-70b --tensor-parallel-size 8
    EOT
  }
}

module "llama_70b_standard" {
  source = "../../modules/gcp-gpu-mig"

  project_id       = local.common.project_id
  region           = local.common.region
  zones            = local.common.zones
  pool_name        = local.common.pool_name
  machine_type     = local.common.machine_type
  gpu_type         = local.common.gpu_type
  gpu_count        = local.common.gpu_count
  source_image     = local.common.source_image
  subnetwork       = local.common.subnetwork
  model_name       = local.common.model_name
  model_version    = local.common.model_version
  model_source_uri = local.common.model_source_uri
  serve_command    = local.common.serve_command

  provisioning_model = "STANDARD"
  # Matches warm_pool in the gpupool config: one stopped, cache-warm VM to start with.
  standby = {
    initial_stopped_size = 1
    initial_delay_sec    = 1200 # long enough to download ~140 GB of weights
  }

  create_controller_service_account = true
}

module "llama_70b_spot" {
  source = "../../modules/gcp-gpu-mig"

  project_id       = local.common.project_id
  region           = local.common.region
  zones            = local.common.zones
  pool_name        = local.common.pool_name
  machine_type     = local.common.machine_type
  gpu_type         = local.common.gpu_type
  gpu_count        = local.common.gpu_count
  source_image     = local.common.source_image
  subnetwork       = local.common.subnetwork
  model_name       = local.common.model_name
  model_version    = local.common.model_version
  model_source_uri = local.common.model_source_uri
  serve_command    = local.common.serve_command

  provisioning_model = "SPOT"

  create_controller_service_account = false
}
