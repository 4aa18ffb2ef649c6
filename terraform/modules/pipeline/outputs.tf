output "function_name" {
  description = "Name of the pipeline's Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the pipeline's Lambda function."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "Execution role; bind the Vault AWS-auth role (vault_aws_role) to this ARN."
  value       = aws_iam_role.lambda.arn
}

output "security_group_id" {
  description = "Security group of the Lambda ENIs."
  value       = aws_security_group.lambda.id
}

output "schedule_rule_arn" {
  description = "ARN of the EventBridge schedule rule."
  value       = aws_cloudwatch_event_rule.schedule.arn
}

output "log_group_name" {
  description = "Log group of the Lambda (JSON lines and EMF metrics)."
  value       = aws_cloudwatch_log_group.lambda.name
}

output "snapshot_invoke_command" {
  description = "Manual re-snapshot of every table (add \"tables\": [\"schema.table\"] to the payload for some)."
  value       = "${local.invoke} --payload '{\"mode\": \"snapshot\"}' /dev/stdout"
}

output "check_invoke_command" {
  description = "Smoke test after a deploy: reaches Vault, PostgreSQL, the stage and Snowflake and changes nothing."
  value       = "${local.invoke} --payload '{\"mode\": \"check\"}' /dev/stdout"
}

output "operator_policy_arn" {
  description = "IAM policy allowing the manual invocations and reading the logs; null when create_operator_policy = false."
  value       = var.create_operator_policy ? aws_iam_policy.operator[0].arn : null
}
