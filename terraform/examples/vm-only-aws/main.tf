# Example: VM-only mode, no Kubernetes. gpupool runs under systemd on a small EC2 instance and
# scales the Auto Scaling groups straight from queue metrics; each GPU instance serves one
# replica of the model with vLLM, started by the user-data once the model cache is warm.
#
#   pool mistral-7b
#     gpupool-mistral-7b-on-demand   g6.xlarge (1x L4), warm pool
#     gpupool-mistral-7b-spot-0/1    one spot group per subnet (zone-by-zone steering)
#     gpupool-mistral-7b-interruptions
#   controller IAM: an instance profile for the instance running gpupool

module "mistral_7b" {
  source = "../../modules/aws-gpu-node-group"

  pool_name          = "mistral-7b"
  ami_id             = var.ami_id
  subnet_ids         = var.subnet_ids
  security_group_ids = var.security_group_ids
  root_device_name   = "/dev/sda1" # Ubuntu-based Deep Learning AMI

  on_demand_instance_type = "g6.xlarge"                              # 1x L4 24 GiB
  spot_instance_types     = ["g6.xlarge", "g5.xlarge", "g6.2xlarge"] # L4 / A10G, one GPU each
  spot_group_per_subnet   = true
  on_demand_max_size      = 8
  spot_max_size           = 16

  warm_pool = {
    min_size = 1 # warm_pool.min in the gpupool config; gpupool grows it up to warm_pool.max
    # No Kubernetes Node to leave behind, so an instance the group scales in itself (a manual
    # or scheduled resize) goes back to the warm pool. gpupool's own scale-downs terminate what
    # they drained (TerminateInstanceInAutoScalingGroup) and are not affected.
    reuse_on_scale_in = true
  }

  model_name       = "mistral-7b"
  model_version    = "v0.3"
  model_source_uri = "s3://${var.model_bucket}/mistral-7b/v0.3/"
  model_cache_volume = {
    size_gib = 100
  }

  # VM-only: no cluster_name, so no kubelet bootstrap. Start the server on each boot that goes
  # into service; gpupool's health_url check (http://{ip}:8000/health) marks it ready.
  extra_user_data = <<-EOT
    docker rm -f vllm 2>/dev/null || true
    docker run -d --name vllm --restart unless-stopped --gpus all -p 8000:8000 \
      -v /opt/gpupool/model-cache/mistral-7b/v0.3:/model:ro \
      vllm/vllm-openai:latest --model /model --served-model-name mistral-7b
  EOT

  tags = {
    team = "inference"
  }
}

module "gpupool_controller_iam" {
  source = "../../modules/aws-controller-iam"

  name                    = "gpupool-controller"
  queue_arns              = [module.mistral_7b.interruption_queue_arn]
  enable_instance_profile = true
}
