# Example: GPU node groups for an EKS cluster driven by gpupool in Kubernetes mode.
#
#   pool llama-70b
#     gpupool-llama-70b-on-demand   p4d.24xlarge, warm pool of stopped cache-warm nodes
#     gpupool-llama-70b-spot        p4d / p4de / p5, price-capacity-optimized spot
#     gpupool-llama-70b-interruptions  SQS queue fed by EventBridge (spot warnings, ...)
#   controller IAM role for the gpupool Deployment, via IRSA
#
# The cluster itself (VPC, control plane, OIDC provider) already exists.

data "aws_partition" "current" {}

data "aws_eks_cluster" "this" {
  name = var.cluster_name
}

# The cluster's IAM OIDC provider (IRSA).
data "aws_iam_openid_connect_provider" "this" {
  url = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
}

# EKS optimized accelerated AMI: NVIDIA driver and container toolkit, nodeadm bootstrap.
data "aws_ssm_parameter" "gpu_ami" {
  name = "/aws/service/eks/optimized-ami/${var.kubernetes_version}/amazon-linux-2023/x86_64/nvidia/recommended/image_id"
}

locals {
  eks_node_policies = [
    "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEKS_CNI_Policy",
  ]
}

module "llama_70b" {
  source = "../../modules/aws-gpu-node-group"

  pool_name          = "llama-70b"
  ami_id             = data.aws_ssm_parameter.gpu_ami.value
  subnet_ids         = var.subnet_ids
  security_group_ids = [data.aws_eks_cluster.this.vpc_config[0].cluster_security_group_id]

  # 8 GPUs per node everywhere: one node = one replica (replica.gpus = 8 in the config).
  on_demand_instance_type = "p4d.24xlarge"                                   # 8x A100 40 GiB
  spot_instance_types     = ["p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge"] # A100 40/80 GiB, H100
  on_demand_max_size      = 6
  spot_max_size           = 20

  # One stopped, cache-warm node to start with (warm_pool.min in the gpupool config); gpupool
  # grows the warm pool up to its warm_pool.max (4) from its forecast.
  warm_pool = {
    min_size = 1
  }

  model_name       = "llama-70b"
  model_version    = "v3.1"
  model_source_uri = "s3://${var.model_bucket}/llama-70b/v3.1/"
  model_cache_volume = {
    size_gib = 400
  }

  cluster_name         = var.cluster_name
  eks_bootstrap        = "al2023"
  cluster_endpoint     = data.aws_eks_cluster.this.endpoint
  cluster_ca_data      = data.aws_eks_cluster.this.certificate_authority[0].data
  cluster_service_cidr = data.aws_eks_cluster.this.kubernetes_network_config[0].service_ipv4_cidr
  node_policy_arns     = local.eks_node_policies
  node_labels = {
    "nvidia.com/gpu.present" = "true"
  }
  node_taints = [
    { key = "nvidia.com/gpu", value = "true", effect = "NoSchedule" },
  ]

  tags = {
    team = "inference"
  }
}

# Let the node role join the cluster (EKS access entries; use aws-auth on older clusters).
resource "aws_eks_access_entry" "gpu_nodes" {
  cluster_name  = var.cluster_name
  principal_arn = module.llama_70b.node_role_arn
  type          = "EC2_LINUX"
}

module "gpupool_controller_iam" {
  source = "../../modules/aws-controller-iam"

  name              = "gpupool-controller"
  queue_arns        = [module.llama_70b.interruption_queue_arn]
  enable_irsa       = true
  oidc_provider_arn = data.aws_iam_openid_connect_provider.this.arn
  namespace         = "gpupool"
  service_account   = "gpupool"
}
