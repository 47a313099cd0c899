# Inputs of the gpupool controller's IAM: where its credentials come from (IRSA, EKS Pod
# Identity, or an EC2 instance profile for VM-only mode) and which queues it reads.

variable "name" {
  description = "Name of the IAM policy and roles."
  type        = string
  default     = "gpupool-controller"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,50}$", var.name))
    error_message = "name must be 1-50 characters valid in an IAM role name."
  }
}

variable "queue_arns" {
  description = "ARNs of the interruption queues gpupool reads (aws-gpu-node-group output interruption_queue_arn)."
  type        = list(string)

  validation {
    condition     = length(var.queue_arns) > 0 && alltrue([for a in var.queue_arns : can(regex("^arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$", a))])
    error_message = "Give at least one SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)."
  }
}

variable "signal_queue_arns" {
  description = "ARNs of SQS queues gpupool reads the depth of as demand signals (pools[].signals[].sqs in the gpupool config). Read-only: GetQueueAttributes and GetQueueUrl, never ReceiveMessage or DeleteMessage."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.signal_queue_arns : can(regex("^arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]+$", a))])
    error_message = "signal_queue_arns must be SQS queue ARNs (arn:aws:sqs:<region>:<account>:<name>)."
  }
}

variable "queue_kms_key_arns" {
  description = "ARNs of customer managed KMS keys that encrypt the interruption queues (aws-gpu-node-group interruption_queue_kms_key_id). gpupool then needs kms:Decrypt to receive their messages. Empty with SSE-SQS, the node-group module's default."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.queue_kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", a))])
    error_message = "queue_kms_key_arns must be KMS key ARNs (arn:aws:kms:<region>:<account>:key/<id>), not aliases: IAM matches the key ARN."
  }
}

variable "enable_irsa" {
  description = "Create the Kubernetes role with an IAM Roles for Service Accounts (IRSA) trust: the OIDC provider of the cluster, for system:serviceaccount:<namespace>:<service_account>."
  type        = bool
  default     = false
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>). Required with enable_irsa."
  type        = string
  default     = null

  validation {
    condition     = var.oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "enable_pod_identity" {
  description = "Create the Kubernetes role with an EKS Pod Identity trust (pods.eks.amazonaws.com, sts:AssumeRole + sts:TagSession). Can be combined with enable_irsa during a migration."
  type        = bool
  default     = false
}

variable "pod_identity_cluster_name" {
  description = "With enable_pod_identity: EKS cluster in which to create the Pod Identity association for the service account. null: create the association elsewhere."
  type        = string
  default     = null
}

variable "namespace" {
  description = "Kubernetes namespace of the gpupool controller."
  type        = string
  default     = "gpupool"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a valid Kubernetes namespace name."
  }
}

variable "service_account" {
  description = "Kubernetes service account of the gpupool controller."
  type        = string
  default     = "gpupool"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", var.service_account))
    error_message = "service_account must be a valid Kubernetes name."
  }
}

variable "enable_instance_profile" {
  description = "Create an EC2 role and instance profile for VM-only mode (gpupool runs under systemd on an EC2 instance)."
  type        = bool
  default     = false
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary for the roles, if your organisation requires one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the policy and roles."
  type        = map(string)
  default     = {}
}
