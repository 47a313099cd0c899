# Provider requirements for the gcp-gpu-mig module.
#
# hashicorp/google >= 6.16: `standby_policy`, `target_stopped_size` and `target_suspended_size`
# of google_compute_region_instance_group_manager left beta in 6.16.0 (google-beta before).
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.16, < 8.0"
    }
  }
}
