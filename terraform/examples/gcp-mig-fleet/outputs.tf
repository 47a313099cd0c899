output "mig_names" {
  description = "The pool's MIGs (gpupool finds them by the gpupool-io-pool label of their template)."
  value       = [module.llama_70b_standard.mig_name, module.llama_70b_spot.mig_name]
}

output "controller_service_account_email" {
  description = "Attach this service account to the VM that runs gpupool."
  value       = module.llama_70b_standard.controller_service_account_email
}
