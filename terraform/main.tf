# Root module: the shared network, endpoints, state and Lambda package, then per pipeline its
# alerting and Lambda. Read modules/ in this order: network -> endpoints -> state -> package ->
# alerting -> pipeline.

module "network" {
  source = "./modules/network"
  count  = var.create_network ? 1 : 0
  name   = var.name
  azs    = var.azs
  tags   = var.tags
}

locals {
  vpc_id              = var.create_network ? module.network[0].vpc_id : var.vpc_id
  lambda_subnet_ids   = var.create_network ? module.network[0].lambda_subnet_ids : var.lambda_subnet_ids
  endpoint_subnet_ids = var.create_network ? module.network[0].endpoint_subnet_ids : var.endpoint_subnet_ids
  route_table_ids     = var.create_network ? module.network[0].private_route_table_ids : var.private_route_table_ids
}

module "endpoints" {
  source                             = "./modules/endpoints"
  name                               = var.name
  vpc_id                             = local.vpc_id
  endpoint_subnet_ids                = local.endpoint_subnet_ids
  route_table_ids                    = local.route_table_ids
  snowflake_privatelink_service_name = var.snowflake_privatelink_service_name
  snowflake_privatelink_hostnames    = var.snowflake_privatelink_hostnames
  tags                               = var.tags
}

module "state" {
  source                 = "./modules/state"
  name                   = var.name
  stage_retention_days   = var.stage_retention_days
  create_artifact_bucket = var.package_source == "upload" && var.package_s3_bucket == null
  tags                   = var.tags

  snowflake_storage_iam_user_arn = var.snowflake_storage_iam_user_arn
  snowflake_storage_external_id  = var.snowflake_storage_external_id
}

# The Lambda zip in S3, shared by every pipeline: uploaded from package_path ("upload") or an
# object uploaded beforehand ("s3").
module "package" {
  source         = "./modules/package"
  count          = contains(["upload", "s3"], var.package_source) ? 1 : 0
  name           = var.name
  bucket         = var.package_s3_bucket != null ? var.package_s3_bucket : module.state.artifact_bucket
  package_path   = var.package_source == "upload" ? var.package_path : null
  key            = var.package_s3_key
  object_version = var.package_source == "s3" ? var.package_s3_object_version : null
  source_hash    = var.package_source == "s3" ? var.package_source_hash : null
  architecture   = var.architecture
  kms_key_arn    = var.package_s3_bucket == null ? module.state.kms_key_arn : null
  tags           = var.tags
}

locals {
  package = length(module.package) > 0 ? module.package[0] : null
}

module "alerting" {
  source            = "./modules/alerting"
  for_each          = var.pipelines
  pipeline          = each.key
  function_name     = "${var.name}-${each.key}"
  lambda_timeout_s  = each.value.timeout_s
  schedule_rule_arn = module.pipeline[each.key].schedule_rule_arn
  metrics_namespace = var.metrics_namespace
  alert_emails      = var.alert_emails
  tags              = var.tags
}

module "pipeline" {
  source   = "./modules/pipeline"
  for_each = var.pipelines

  name         = var.name
  pipeline     = each.key
  architecture = var.architecture
  timeout_s    = each.value.timeout_s
  memory_mb    = each.value.memory_mb
  lease_ttl_s  = each.value.timeout_s + 60

  package_s3_bucket         = local.package == null ? null : local.package.s3_bucket
  package_s3_key            = local.package == null ? null : local.package.s3_key
  package_s3_object_version = local.package == null ? null : local.package.s3_object_version
  package_source_hash       = local.package == null ? null : local.package.source_code_hash
  package_path              = var.package_source == "file" ? var.package_path : null
  image_uri                 = var.package_source == "image" ? var.image_uri : null

  schedule_expression = each.value.schedule_expression

  vpc_id                     = local.vpc_id
  lambda_subnet_ids          = local.lambda_subnet_ids
  db_security_group_id       = var.db_security_group_id
  endpoint_security_group_id = module.endpoints.security_group_id
  gateway_prefix_list_ids    = [module.endpoints.s3_prefix_list_id, module.endpoints.dynamodb_prefix_list_id]
  vault_cidr_blocks          = var.vault_cidr_blocks

  checkpoint_table_name = module.state.checkpoint_table_name
  checkpoint_table_arn  = module.state.checkpoint_table_arn
  stage_bucket          = module.state.stage_bucket
  stage_bucket_arn      = module.state.stage_bucket_arn
  kms_key_arn           = module.state.kms_key_arn
  dlq_arn               = module.alerting[each.key].dlq_arn
  dlq_url               = module.alerting[each.key].dlq_url
  alarm_topic_arn       = module.alerting[each.key].topic_arn
  metrics_namespace     = var.metrics_namespace

  source_host          = var.source_host
  source_database      = each.value.source_database
  source_tables        = each.value.source_tables
  vault_addr           = var.vault_addr
  vault_aws_role       = each.value.vault_aws_role
  vault_source_path    = each.value.vault_source_path
  vault_snowflake_path = each.value.vault_snowflake_path
  snowflake_account    = var.snowflake_account
  snowflake_host       = var.snowflake_host
  snowflake_database   = each.value.snowflake_database
  snowflake_warehouse  = each.value.snowflake_warehouse
  snowflake_role       = each.value.snowflake_role
  snowflake_stage      = each.value.snowflake_stage
  extra_environment    = each.value.extra_environment

  tags = var.tags
}
