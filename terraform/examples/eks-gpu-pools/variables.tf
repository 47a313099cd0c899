variable "region" {
  description = "AWS region of the EKS cluster."
  type        = string
  default     = "us-east-1"
}

variable "cluster_name" {
  description = "Existing EKS cluster the GPU nodes join."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes version of the cluster: selects the EKS optimized accelerated (NVIDIA) AL2023 AMI."
  type        = string
  default     = "1.31"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.31."
  }
}

variable "subnet_ids" {
  description = "Private subnets of the cluster's VPC, one per availability zone (us-east-1a, us-east-1b in the README config)."
  type        = list(string)
}

variable "model_bucket" {
  description = "S3 bucket holding the model files."
  type        = string
}
