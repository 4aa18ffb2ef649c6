output "checkpoint_table" {
  description = "CDC_CHECKPOINT_TABLE."
  value       = module.state.checkpoint_table_name
}

output "stage_bucket" {
  description = "S3 stage bucket; the Snowflake storage integration needs read access to it and its KMS key."
  value       = module.state.stage_bucket
}

output "snowflake_stage_role_arn" {
  description = "STORAGE_AWS_ROLE_ARN for CREATE STORAGE INTEGRATION (deploy/snowflake_admin.sql)."
  value       = module.state.snowflake_stage_role_arn
}

output "snowflake_stage_url" {
  description = "URL of the Snowflake external stage (CDC_STAGE_URL of every pipeline, with a trailing slash)."
  value       = module.state.snowflake_stage_url
}

output "kms_key_arn" {
  description = "KMS key of the stage and checkpoint table."
  value       = module.state.kms_key_arn
}

output "snowflake_endpoint_id" {
  description = "Snowflake PrivateLink VPC endpoint."
  value       = module.endpoints.snowflake_endpoint_id
}

output "package" {
  description = "The S3 object the functions run (null unless package_source is upload or s3)."
  value = local.package == null ? null : {
    bucket         = local.package.s3_bucket
    key            = local.package.s3_key
    object_version = local.package.s3_object_version
  }
}

output "pipelines" {
  description = "Per pipeline: function, execution role (bind the Vault AWS-auth role to it), DLQ, alert topic, dashboard, the manual re-snapshot and smoke-test commands and the operator policy allowing them."
  value = {
    for p, m in module.pipeline : p => {
      function_name           = m.function_name
      role_arn                = m.role_arn
      dlq_url                 = module.alerting[p].dlq_url
      alert_topic_arn         = module.alerting[p].topic_arn
      dashboard               = module.alerting[p].dashboard_name
      snapshot_invoke_command = m.snapshot_invoke_command
      check_invoke_command    = m.check_invoke_command
      operator_policy_arn     = m.operator_policy_arn
    }
  }
}
