variable "project_id" {
  description = "GCP project (gcp.project in the gpupool config)."
  type        = string
}

variable "region" {
  description = "Region of the MIGs (gcp.region in the gpupool config)."
  type        = string
  default     = "us-central1"
}

variable "zones" {
  description = "Zones offering the A100 80 GB machine type."
  type        = list(string)
  default     = ["us-central1-a", "us-central1-c"]
}

variable "subnetwork" {
  description = "Subnetwork (with Private Google Access or Cloud NAT) for the VMs."
  type        = string
}

variable "source_image" {
  description = "Boot image with the NVIDIA driver and Docker, e.g. a Deep Learning VM image."
  type        = string
  default     = "projects/deeplearning-platform-release/global/images/family/common-cu124-debian-11-py310"
}

variable "model_bucket" {
  description = "Cloud Storage bucket holding the model files."
  type        = string
}
