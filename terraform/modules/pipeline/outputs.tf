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
  value       = "aws lambda invoke --function-name ${aws_lambda_function.this.function_name} --cli-binary-format raw-in-base64-out --payload '{\"mode\": \"snapshot\"}' /dev/stdout"
}
