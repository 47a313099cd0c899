terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # aws_eks_access_entry needs >= 5.33; the modules need >= 5.31.
      version = ">= 5.33, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
}
