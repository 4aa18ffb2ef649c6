# One pipeline: its Lambda (in the private subnets, no public IP, reserved concurrency 1), the
# security group and rules it needs, its execution role, log group and EventBridge schedule.
# Instantiate once per pipeline; the network, endpoints, state and alerting are passed in.
#
# The code comes from one of: an S3 object (package_s3_bucket/key/version, see modules/package;
# the usual way, since the zip is near the 50 MB direct-upload limit), a local zip (package_path,
# direct upload, only below 50 MB) or a container image (image_uri).
#
# Invocations (outputs snapshot_invoke_command, check_invoke_command), synchronous; while a
# scheduled run holds the single concurrency slot the call is throttled, retry it:
#   aws lambda invoke --function-name <function_name> --cli-binary-format raw-in-base64-out \
#     --cli-read-timeout <timeout_s + 60> \
#     --payload '{"mode": "snapshot", "tables": ["public.orders"]}' /dev/stdout
# `{"mode": "snapshot"}` re-snapshots every replicated table; `{"mode": "check"}` is the smoke test
# (reaches Vault, PostgreSQL, the stage and Snowflake, changes nothing); `{}` is what the schedule
# sends. The read timeout must outlast the function, or the CLI retries and invokes it again.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  function_name = "${var.name}-${var.pipeline}"
  account_id    = data.aws_caller_identity.current.account_id
  region        = data.aws_region.current.name
  partition     = data.aws_partition.current.partition
  # The stage keys are <stage_prefix>/<pipeline>/... (cdc/stage.py).
  stage_prefix = trim(var.stage_prefix, "/")
  stage_keys   = "${local.stage_prefix}/${var.pipeline}"

  package_sources = compact([
    var.package_s3_bucket != null ? "s3" : "",
    var.package_path != null ? "file" : "",
    var.image_uri != null ? "image" : "",
  ])
  is_image = var.image_uri != null
  source_code_hash = (
    var.package_source_hash != null ? var.package_source_hash
    : var.package_path != null ? filebase64sha256(var.package_path)
    : null
  )
  invoke = join(" ", [
    "aws lambda invoke --function-name ${local.function_name}",
    "--cli-binary-format raw-in-base64-out --cli-read-timeout ${var.timeout_s + 60}",
  ])

  environment = {
    CDC_PIPELINE                 = var.pipeline
    CDC_SOURCE_HOST              = var.source_host
    CDC_SOURCE_PORT              = tostring(var.source_port)
    CDC_SOURCE_DATABASE          = var.source_database
    CDC_SOURCE_SSLMODE           = var.source_sslmode
    CDC_SOURCE_SSLROOTCERT       = var.source_sslrootcert
    CDC_SOURCE_SLOT              = var.source_slot
    CDC_SOURCE_TABLES            = join(",", var.source_tables)
    CDC_SOURCE_KEYS              = var.source_keys
    CDC_SOURCE_CONNECT_TIMEOUT_S = tostring(var.source_connect_timeout_s)
    CDC_DELETE_MODE              = var.delete_mode
    CDC_VAULT_ADDR               = var.vault_addr
    CDC_VAULT_AUTH_METHOD        = "aws"
    CDC_VAULT_AWS_ROLE           = var.vault_aws_role
    CDC_VAULT_AWS_MOUNT          = var.vault_aws_mount
    CDC_VAULT_AWS_SERVER_ID      = var.vault_aws_server_id
    CDC_VAULT_NAMESPACE          = var.vault_namespace
    CDC_VAULT_KV_MOUNT           = var.vault_kv_mount
    CDC_VAULT_SOURCE_PATH        = var.vault_source_path
    CDC_VAULT_SNOWFLAKE_PATH     = var.vault_snowflake_path
    CDC_VAULT_CA_CERT            = var.vault_ca_cert
    CDC_SNOWFLAKE_ACCOUNT        = var.snowflake_account
    CDC_SNOWFLAKE_HOST           = var.snowflake_host
    CDC_SNOWFLAKE_DATABASE       = var.snowflake_database
    CDC_SNOWFLAKE_WAREHOUSE      = var.snowflake_warehouse
    CDC_SNOWFLAKE_ROLE           = var.snowflake_role
    CDC_SNOWFLAKE_STAGE          = var.snowflake_stage
    CDC_SNOWFLAKE_LOAD_SCHEMA    = var.snowflake_load_schema
    CDC_STAGE_URL                = "s3://${var.stage_bucket}/${local.stage_prefix}"
    CDC_AWS_REGION               = local.region
    CDC_CHECKPOINT_TABLE         = var.checkpoint_table_name
    CDC_WINDOW_MAX_CHANGES       = tostring(var.window_max_changes)
    CDC_WINDOW_SAFETY_MARGIN_S   = tostring(var.window_safety_margin_s)
    CDC_WINDOW_APPLY_MARGIN_S    = tostring(var.window_apply_margin_s)
    CDC_WINDOW_MERGE_RESERVE_S   = tostring(var.window_merge_reserve_s)
    CDC_APPLY_PARALLELISM        = tostring(var.apply_parallelism)
    CDC_RETRY_ATTEMPTS           = tostring(var.retry_attempts)
    CDC_PART_MAX_ROWS            = tostring(var.part_max_rows)
    # a child process receives large backlogs while the function parses: worth it from two vCPUs
    CDC_RECEIVE_PROCESS_MIN_BYTES = tostring(coalesce(var.receive_process_min_bytes, var.memory_mb >= 3538 ? 67108864 : -1))
    CDC_LEASE_TTL_S               = tostring(var.lease_ttl_s)
    CDC_DLQ_URL                   = var.dlq_url
    CDC_ALARM_TOPIC_ARN           = var.alarm_topic_arn
    CDC_METRICS_NAMESPACE         = var.metrics_namespace
    CDC_METRICS_MODE              = "emf" # metrics from the log lines: no PutMetricData, no CloudWatch endpoint
    CDC_LOG_LEVEL                 = var.log_level
    CDC_LOG_FORMAT                = "json"
  }
  # Unset optional settings are left out, so the settings' own defaults apply.
  environment_set = merge(
    { for k, v in local.environment : k => v if v != null && v != "" },
    var.extra_environment,
  )
}

# ---------------------------------------------------------------- network

resource "aws_security_group" "lambda" {
  name        = "${local.function_name}-lambda"
  description = "Lambda of pipeline ${var.pipeline}: no ingress; egress 5432 to the database, 443 to the endpoints, S3/DynamoDB gateways and Vault"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${local.function_name}-lambda" })
}

resource "aws_vpc_security_group_egress_rule" "to_database" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "PostgreSQL (Aurora)"
  ip_protocol                  = "tcp"
  from_port                    = var.source_port
  to_port                      = var.source_port
  referenced_security_group_id = var.db_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "to_endpoints" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "HTTPS to the interface endpoints (Snowflake PrivateLink, SQS)"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = var.endpoint_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "to_gateway_endpoints" {
  for_each          = toset(var.gateway_prefix_list_ids)
  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS to the S3 / DynamoDB gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = each.value
}

resource "aws_vpc_security_group_egress_rule" "to_vault" {
  for_each          = toset(var.vault_cidr_blocks)
  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS to Vault (through the NAT gateways)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "database_from_lambda" {
  security_group_id            = var.db_security_group_id
  description                  = "PostgreSQL from the Lambda of pipeline ${var.pipeline}"
  ip_protocol                  = "tcp"
  from_port                    = var.source_port
  to_port                      = var.source_port
  referenced_security_group_id = aws_security_group.lambda.id
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_lambda" {
  security_group_id            = var.endpoint_security_group_id
  description                  = "HTTPS from the Lambda of pipeline ${var.pipeline}"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.lambda.id
}

# ---------------------------------------------------------------- IAM

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name                 = "${local.function_name}-lambda"
  description          = "Execution role of the CDC Lambda of pipeline ${var.pipeline}; also its Vault AWS-auth identity"
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

data "aws_iam_policy_document" "lambda" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }

  # ENI management for the VPC attachment. The interfaces do not exist before Lambda creates them
  # and EC2's Describe calls support no resource scoping, so these are the only "*" resources.
  statement {
    sid = "VpcNetworkInterfaces"
    actions = [
      "ec2:CreateNetworkInterface",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSubnets",
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["*"]
  }

  statement {
    sid = "CheckpointAndLease"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:ConditionCheckItem",
    ]
    resources = [var.checkpoint_table_arn]
    # Only this pipeline's items (cdc/checkpoint.py).
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = ["checkpoint#${var.pipeline}", "lease#${var.pipeline}"]
    }
  }

  statement {
    sid       = "StageObjects"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.stage_bucket_arn}/${local.stage_keys}/*"]
  }

  statement {
    sid       = "StageList"
    actions   = ["s3:ListBucket"]
    resources = [var.stage_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.stage_keys}/*"]
    }
  }

  statement {
    sid       = "StageKey"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]
  }

  # SendMessage: failed windows; GetQueueAttributes: the `{"mode": "check"}` smoke test reads the
  # queue's attributes instead of sending a probe message (which would raise the DLQ alarm).
  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    resources = [var.dlq_arn]
  }

  # the smoke test reads the alarms' topic (its subscriptions); nothing is published
  dynamic "statement" {
    for_each = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
    content {
      sid       = "AlarmTopic"
      actions   = ["sns:GetTopicAttributes"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.dlq_kms_key_arn == null ? [] : [var.dlq_kms_key_arn]
    content {
      sid       = "DeadLetterKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "cdc-window"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

# ---------------------------------------------------------------- function

resource "aws_cloudwatch_log_group" "lambda" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

resource "aws_lambda_function" "this" {
  function_name                  = local.function_name
  description                    = "CDC pipeline ${var.pipeline}: Aurora PostgreSQL -> Snowflake, one window per run"
  role                           = aws_iam_role.lambda.arn
  architectures                  = [var.architecture]
  package_type                   = local.is_image ? "Image" : "Zip"
  runtime                        = local.is_image ? null : var.runtime
  handler                        = local.is_image ? null : "handler.handler"
  s3_bucket                      = var.package_s3_bucket
  s3_key                         = var.package_s3_key
  s3_object_version              = var.package_s3_object_version
  filename                       = var.package_path
  image_uri                      = var.image_uri
  source_code_hash               = local.source_code_hash
  timeout                        = var.timeout_s
  memory_size                    = var.memory_mb
  reserved_concurrent_executions = 1 # one window at a time; the DynamoDB lease guards the rest

  ephemeral_storage {
    size = var.ephemeral_storage_mb # Parquet parts are spooled in /tmp before upload
  }

  dynamic "image_config" {
    for_each = local.is_image ? [1] : []
    content {
      command = ["handler.handler"] # the image is the package's tree on a Lambda Python base image
    }
  }

  vpc_config {
    subnet_ids         = var.lambda_subnet_ids
    security_group_ids = [aws_security_group.lambda.id]
  }

  environment {
    variables = local.environment_set
  }

  dead_letter_config {
    target_arn = var.dlq_arn
  }

  tracing_config {
    mode = "PassThrough"
  }

  logging_config {
    log_format = "Text" # the handler writes JSON lines itself (and EMF metrics)
    log_group  = aws_cloudwatch_log_group.lambda.name
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = length(local.package_sources) == 1
      error_message = "Give exactly one code source: package_s3_bucket with package_s3_key (S3 object), package_path (local zip below 50 MB) or image_uri (container image)."
    }
    precondition {
      condition     = var.package_s3_bucket == null || var.package_s3_key != null
      error_message = "package_s3_key is required with package_s3_bucket."
    }
    precondition {
      condition     = var.lease_ttl_s > var.timeout_s
      error_message = "lease_ttl_s must exceed timeout_s, or a lease could expire while its window still runs."
    }
    precondition {
      condition     = var.window_safety_margin_s + var.window_apply_margin_s < var.timeout_s
      error_message = "window_safety_margin_s + window_apply_margin_s must be smaller than timeout_s: a window reads only while more time than both is left."
    }
  }

  depends_on = [aws_iam_role_policy.lambda]
}

# Asynchronous invocations (the schedule) are not retried by Lambda: the window retries its own
# transient errors, and the next scheduled run starts from the checkpoint anyway.
resource "aws_lambda_function_event_invoke_config" "this" {
  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = var.schedule_max_event_age_s
}

# ---------------------------------------------------------------- schedule

resource "aws_cloudwatch_event_rule" "schedule" {
  name                = "${local.function_name}-schedule"
  description         = "Runs one window of CDC pipeline ${var.pipeline}"
  schedule_expression = var.schedule_expression
  state               = var.schedule_enabled ? "ENABLED" : "DISABLED"
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "lambda" {
  rule  = aws_cloudwatch_event_rule.schedule.name
  arn   = aws_lambda_function.this.arn
  input = jsonencode({}) # incremental window

  retry_policy {
    maximum_retry_attempts       = 0
    maximum_event_age_in_seconds = var.schedule_max_event_age_s
  }

  dead_letter_config {
    arn = var.dlq_arn
  }
}

resource "aws_lambda_permission" "schedule" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule.arn
}

# ---------------------------------------------------------------- operators

# Lets an operator (attach it to their role or group) run the manual invocations of the header:
# the re-snapshot and the smoke test. Nothing else: the schedule needs no such permission.
data "aws_iam_policy_document" "operator" {
  statement {
    sid       = "InvokePipeline"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.this.arn]
  }

  statement {
    sid       = "ReadPipelineLogs"
    actions   = ["logs:FilterLogEvents", "logs:GetLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
}

resource "aws_iam_policy" "operator" {
  count       = var.create_operator_policy ? 1 : 0
  name        = "${local.function_name}-operator"
  description = "Manual invocations (re-snapshot, smoke test) of CDC pipeline ${var.pipeline} and reading its logs"
  policy      = data.aws_iam_policy_document.operator.json
  tags        = var.tags
}
