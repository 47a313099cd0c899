# Provider requirements for the aws-controller-iam module.
#
# hashicorp/aws >= 5.31: aws_eks_pod_identity_association first appeared in 5.31.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.31, < 7.0"
    }
  }
}
