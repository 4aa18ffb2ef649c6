# Storage the pipeline needs: checkpoints and leases (DynamoDB), the Parquet stage (S3) and the
# dead-letter queue (SQS). The network, Lambda, schedule and alarms are described separately.

resource "aws_dynamodb_table" "checkpoints" {
  name         = "${var.name}-checkpoints"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  # Released and expired lease items carry a `ttl` attribute one day past their expiry.
  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }

  tags = var.tags
}

resource "aws_s3_bucket" "stage" {
  bucket_prefix = "${var.name}-stage-"
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "stage" {
  bucket                  = aws_s3_bucket.stage.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "stage" {
  bucket = aws_s3_bucket.stage.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "stage" {
  bucket = aws_s3_bucket.stage.id
  rule {
    id     = "expire-staged-windows"
    status = "Enabled"
    filter {}
    expiration {
      days = var.stage_retention_days
    }
  }
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}
