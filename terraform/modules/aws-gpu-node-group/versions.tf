# Provider requirements for the aws-gpu-node-group module.
#
# hashicorp/aws >= 5.31: `warm_pool.instance_reuse_policy`, `price-capacity-optimized` spot
# allocation, `capacity_rebalance` and `sqs_managed_sse_enabled` have all been stable since 5.x;
# 5.31 is the first release with every argument this module sets. 6.x is accepted too.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.31, < 7.0"
    }
  }
}
