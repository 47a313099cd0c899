variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "ami_id" {
  description = "GPU AMI with the NVIDIA driver and Docker (e.g. an AWS Deep Learning Base GPU AMI)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, one per availability zone (us-east-1a, us-east-1b in the README config)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the inference VMs (allow the load balancer and gpupool's health checks on port 8000)."
  type        = list(string)
}

variable "model_bucket" {
  description = "S3 bucket holding the model files."
  type        = string
}
