output "checkpoint_table" {
  description = "CDC_CHECKPOINT_TABLE."
  value       = module.state.checkpoint_table_name
}

output "stage_bucket" {
  description = "S3 stage bucket; the Snowflake storage integration needs read access to it and its KMS key."
  value       = module.state.stage_bucket
}

output "kms_key_arn" {
  description = "KMS key of the stage and checkpoint table."
  value       = module.state.kms_key_arn
}

output "snowflake_endpoint_id" {
  description = "Snowflake PrivateLink VPC endpoint."
  value       = module.endpoints.snowflake_endpoint_id
}

output "pipelines" {
  description = "Per pipeline: function, execution role (bind the Vault AWS-auth role to it), DLQ, alert topic, dashboard, manual snapshot command."
  value = {
    for p, m in module.pipeline : p => {
      function_name           = m.function_name
      role_arn                = m.role_arn
      dlq_url                 = module.alerting[p].dlq_url
      alert_topic_arn         = module.alerting[p].topic_arn
      dashboard               = module.alerting[p].dashboard_name
      snapshot_invoke_command = m.snapshot_invoke_command
    }
  }
}
