# Values for the gpupool config (README.md) and the controller's ServiceAccount.

output "interruption_queue_url" {
  description = "aws.interruption_queue_url in the gpupool config."
  value       = module.llama_70b.interruption_queue_url
}

output "controller_role_arn" {
  description = "Annotate the gpupool ServiceAccount with eks.amazonaws.com/role-arn=<this>."
  value       = module.gpupool_controller_iam.kubernetes_role_arn
}

output "service_account_annotations" {
  description = "Annotations for the gpupool ServiceAccount."
  value       = module.gpupool_controller_iam.service_account_annotations
}

output "asg_names" {
  description = "Groups of pool llama-70b (gpupool finds them by tag; listed for dashboards)."
  value       = module.llama_70b.asg_names
}

output "model_cache" {
  description = "pools[].model_cache in the gpupool config."
  value       = module.llama_70b.model_cache
}
