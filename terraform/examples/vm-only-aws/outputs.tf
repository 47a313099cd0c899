output "interruption_queue_url" {
  description = "aws.interruption_queue_url in the gpupool config."
  value       = module.mistral_7b.interruption_queue_url
}

output "controller_instance_profile" {
  description = "Launch the instance that runs gpupool (systemd) with this instance profile."
  value       = module.gpupool_controller_iam.instance_profile_name
}

output "asg_names" {
  description = "Groups of pool mistral-7b."
  value       = module.mistral_7b.asg_names
}

output "model_cache" {
  description = "pools[].model_cache in the gpupool config."
  value       = module.mistral_7b.model_cache
}
