# What the deployment of the gpupool controller needs from its IAM.

output "policy_arn" {
  description = "ARN of the controller policy (attach it to a role of your own if none of the variants fits)."
  value       = aws_iam_policy.controller.arn
}

output "policy_json" {
  description = "The controller policy document."
  value       = data.aws_iam_policy_document.controller.json
}

output "kubernetes_role_arn" {
  description = "Role of the controller in Kubernetes (IRSA / Pod Identity); null when neither is enabled."
  value       = one(aws_iam_role.kubernetes[*].arn)
}

output "service_account_annotations" {
  description = "Annotations for the controller's ServiceAccount with IRSA ({} otherwise: Pod Identity needs none)."
  value       = var.enable_irsa ? { "eks.amazonaws.com/role-arn" = one(aws_iam_role.kubernetes[*].arn) } : {}
}

output "instance_profile_name" {
  description = "Instance profile for the EC2 instance running gpupool in VM-only mode; null unless enable_instance_profile."
  value       = one(aws_iam_instance_profile.instance[*].name)
}

output "instance_role_arn" {
  description = "Role behind instance_profile_name; null unless enable_instance_profile."
  value       = one(aws_iam_role.instance[*].arn)
}
