"""Structure of terraform/ (python-hcl2) that the deployment relies on: least-privilege IAM,
TLS-only buckets, private networking, the S3 package source, retention, alarms, the PrivateLink
endpoint, and the Snowflake objects of deploy/snowflake_admin.sql."""

from __future__ import annotations

import json
import re

import pytest
from terraform_tree import EXAMPLE, MODULES, ROOT, blocks, declared, dir_blocks, statements, unq

WILDCARD_RESOURCE_ACTIONS = {  # no resource scoping possible (ENIs do not exist yet)
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


# ---------------------------------------------------------------- IAM and buckets


def test_no_wildcard_iam_actions_and_wildcard_resources_only_for_enis():
    checked = 0
    for stmt in statements():
        checked += 1
        actions = [unq(a) for a in stmt.get("actions", [])]
        effect = unq(stmt.get("effect", "Allow"))
        assert "not_actions" not in stmt and "not_resources" not in stmt
        if effect == "Allow":
            assert all("*" not in a for a in actions), actions
            if any(unq(r) == "*" for r in stmt.get("resources", [])):
                assert set(actions) <= WILDCARD_RESOURCE_ACTIONS, actions
    assert checked >= 11


def _deny_insecure_transport(statements: list[dict]) -> list[dict]:
    return [
        s
        for s in statements
        if unq(s.get("effect")) == "Deny"
        and any(
            unq(c["variable"]) == "aws:SecureTransport"
            and [unq(v) for v in c["values"]] == ["false"]
            and unq(c["test"]) == "Bool"
            for c in s.get("condition", [])
        )
    ]


@pytest.mark.parametrize(
    ("bucket", "document"), [("stage", "stage_bucket"), ("artifacts", "artifacts_bucket")]
)
def test_buckets_deny_insecure_transport_block_public_access_and_use_kms(bucket: str, document: str):
    docs = dict(blocks("data", "aws_iam_policy_document", "state"))
    deny = _deny_insecure_transport(docs[document]["statement"])
    assert deny, f"no Deny on aws:SecureTransport = false in {document}"
    assert [unq(r) for r in deny[0]["resources"]] == [
        f"${{aws_s3_bucket.{bucket}{'[0]' if bucket == 'artifacts' else ''}.arn}}",
        f"${{aws_s3_bucket.{bucket}{'[0]' if bucket == 'artifacts' else ''}.arn}}/*",
    ]
    policy = dict(blocks("resource", "aws_s3_bucket_policy", "state"))[bucket]
    assert f"data.aws_iam_policy_document.{document}" in policy["policy"]
    block = dict(blocks("resource", "aws_s3_bucket_public_access_block", "state"))[bucket]
    assert all(
        block[k] is True
        for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    versioning = dict(blocks("resource", "aws_s3_bucket_versioning", "state"))[bucket]
    assert unq(versioning["versioning_configuration"][0]["status"]) == "Enabled"
    sse = dict(blocks("resource", "aws_s3_bucket_server_side_encryption_configuration", "state"))[bucket]
    default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert (
        unq(default["sse_algorithm"]) == "aws:kms" and default["kms_master_key_id"] == "${local.kms_key_arn}"
    )


def test_stage_lifecycle_expires_windows_after_the_retention():
    rules = dict(blocks("resource", "aws_s3_bucket_lifecycle_configuration", "state"))["stage"]["rule"]
    (rule,) = rules
    assert unq(rule["status"]) == "Enabled"
    assert rule["expiration"][0]["days"] == "${var.stage_retention_days}"
    assert rule["noncurrent_version_expiration"][0]["noncurrent_days"] == "${var.noncurrent_retention_days}"
    assert rule["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 1
    root = dict(dir_blocks(ROOT, "module"))["state"]
    assert root["stage_retention_days"] == "${var.stage_retention_days}"
    # old package versions go, the current one stays
    (artifacts,) = dict(blocks("resource", "aws_s3_bucket_lifecycle_configuration", "state"))["artifacts"][
        "rule"
    ]
    assert "expiration" not in artifacts and "noncurrent_version_expiration" in artifacts


def test_lambda_role_is_scoped_to_its_own_resources():
    docs = dict(blocks("data", "aws_iam_policy_document", "pipeline"))
    by_sid = {unq(s["sid"]): s for s in docs["lambda"]["statement"]}
    assert [unq(r) for r in by_sid["StageObjects"]["resources"]] == [
        "${var.stage_bucket_arn}/${local.stage_keys}/*"
    ]
    assert [unq(a) for a in by_sid["StageObjects"]["actions"]] == ["s3:GetObject", "s3:PutObject"]
    assert by_sid["CheckpointAndLease"]["resources"] == ["${var.checkpoint_table_arn}"]
    leading = by_sid["CheckpointAndLease"]["condition"][0]
    assert [unq(v) for v in leading["values"]] == ["checkpoint#${var.pipeline}", "lease#${var.pipeline}"]
    assert by_sid["DeadLetters"]["resources"] == ["${var.dlq_arn}"]
    assert [unq(a) for a in by_sid["DeadLetters"]["actions"]] == ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    operator = docs["operator"]["statement"]
    assert [
        (unq(s["sid"]), [unq(a) for a in s["actions"]], [unq(r) for r in s["resources"]]) for s in operator
    ] == [
        ("InvokePipeline", ["lambda:InvokeFunction"], ["${aws_lambda_function.this.arn}"]),
        (
            "ReadPipelineLogs",
            ["logs:FilterLogEvents", "logs:GetLogEvents"],
            ["${aws_cloudwatch_log_group.lambda.arn}:*"],
        ),
    ]


# ---------------------------------------------------------------- Lambda, package, schedule


def test_lambda_private_networking_and_concurrency():
    ((name, fn),) = list(blocks("resource", "aws_lambda_function", "pipeline"))
    assert fn["reserved_concurrent_executions"] == 1
    vpc = fn["vpc_config"][0]
    assert vpc["subnet_ids"] == "${var.lambda_subnet_ids}"
    assert vpc["security_group_ids"] == ["${aws_security_group.lambda.id}"]
    assert "public" not in json.dumps(fn).lower().replace("publish", "")
    assert fn["dead_letter_config"][0]["target_arn"] == "${var.dlq_arn}"
    assert fn["environment"][0]["variables"] == "${local.environment_set}"
    assert fn["timeout"] == "${var.timeout_s}" and fn["memory_size"] == "${var.memory_mb}"
    for _, subnet in blocks("resource", "aws_subnet", "network"):
        assert subnet["map_public_ip_on_launch"] is False


def test_lambda_security_group_egress_only_database_and_https():
    assert all(
        "aws_security_group.lambda" not in str(r["security_group_id"])
        for _, r in blocks("resource", "aws_vpc_security_group_ingress_rule", "pipeline")
    )
    egress = dict(blocks("resource", "aws_vpc_security_group_egress_rule", "pipeline"))
    assert set(egress) == {"to_database", "to_endpoints", "to_gateway_endpoints", "to_vault"}
    assert egress["to_database"]["referenced_security_group_id"] == "${var.db_security_group_id}"
    assert egress["to_database"]["from_port"] == egress["to_database"]["to_port"] == "${var.source_port}"
    for name in ("to_endpoints", "to_gateway_endpoints", "to_vault"):
        assert egress[name]["from_port"] == egress[name]["to_port"] == 443
    assert egress["to_vault"]["cidr_ipv4"] == "${each.value}"
    assert "0.0.0.0/0" not in json.dumps(egress)
    sg = dict(blocks("resource", "aws_security_group", "pipeline"))["lambda"]
    assert "ingress" not in sg and "egress" not in sg
    variables = dict(dir_blocks(MODULES / "pipeline", "variable"))
    assert variables["source_port"]["default"] == 5432


def test_lambda_code_comes_from_s3_and_the_root_uploads_it():
    ((_, fn),) = list(blocks("resource", "aws_lambda_function", "pipeline"))
    assert fn["s3_bucket"] == "${var.package_s3_bucket}"
    assert fn["s3_key"] == "${var.package_s3_key}"
    assert fn["s3_object_version"] == "${var.package_s3_object_version}"
    assert fn["source_code_hash"] == "${local.source_code_hash}"
    conditions = [p["condition"] for p in fn["lifecycle"][0]["precondition"]]
    assert "${length(local.package_sources) == 1}" in conditions

    ((_, upload),) = list(blocks("resource", "aws_s3_object", "package"))
    assert (
        upload["source"] == "${var.package_path}" and upload["source_hash"] == "${filemd5(var.package_path)}"
    )
    assert unq(upload["server_side_encryption"]) == "aws:kms"
    outputs = dict(dir_blocks(MODULES / "package", "output"))
    assert outputs["s3_object_version"]["value"] == "${local.object_version}"

    root = dict(dir_blocks(ROOT, "module"))
    assert root["package"]["package_path"] == '${var.package_source == "upload" ? var.package_path : null}'
    pipeline = root["pipeline"]
    assert pipeline["package_s3_bucket"] == "${local.package == null ? null : local.package.s3_bucket}"
    assert (
        pipeline["package_s3_object_version"]
        == "${local.package == null ? null : local.package.s3_object_version}"
    )
    root_vars = dict(dir_blocks(ROOT, "variable"))
    assert unq(root_vars["package_source"]["default"]) == "upload"

    (example,) = [b for _, b in dir_blocks(EXAMPLE, "module")]
    assert unq(example["package_source"]) in ("upload", "s3")
    assert unq(example["architecture"]) == "x86_64"


def test_invoke_commands_for_snapshot_and_smoke_test():
    outputs = dict(dir_blocks(MODULES / "pipeline", "output"))
    locals_ = dict(dir_blocks(MODULES / "pipeline", "locals"))
    invoke = locals_["invoke"]
    assert (
        "--function-name ${local.function_name}" in invoke
        and "--cli-read-timeout ${var.timeout_s + 60}" in invoke
    )
    assert outputs["snapshot_invoke_command"]["value"] == (
        '"${local.invoke} --payload \'{\\"mode\\": \\"snapshot\\"}\' /dev/stdout"'
    )
    assert outputs["check_invoke_command"]["value"] == (
        '"${local.invoke} --payload \'{\\"mode\\": \\"check\\"}\' /dev/stdout"'
    )
    root_output = dict(dir_blocks(ROOT, "output"))["pipelines"]["value"]
    for key in ("snapshot_invoke_command", "check_invoke_command", "operator_policy_arn"):
        assert f"m.{key}" in root_output


def test_schedule_invokes_the_function_without_retries():
    ((_, rule),) = list(blocks("resource", "aws_cloudwatch_event_rule", "pipeline"))
    assert rule["schedule_expression"] == "${var.schedule_expression}"
    ((_, target),) = list(blocks("resource", "aws_cloudwatch_event_target", "pipeline"))
    assert target["arn"] == "${aws_lambda_function.this.arn}" and target["input"] == "${jsonencode({})}"
    assert target["retry_policy"][0]["maximum_retry_attempts"] == 0
    assert target["dead_letter_config"][0]["arn"] == "${var.dlq_arn}"
    ((_, permission),) = list(blocks("resource", "aws_lambda_permission", "pipeline"))
    assert permission["source_arn"] == "${aws_cloudwatch_event_rule.schedule.arn}"
    assert unq(permission["principal"]) == "events.amazonaws.com"


# ---------------------------------------------------------------- state, endpoints, alerting


def test_alarms_exist():
    alarms = dict(blocks("resource", "aws_cloudwatch_metric_alarm", "alerting"))
    metrics = {unq(a["metric_name"]) for a in alarms.values()}
    assert {
        "Errors",
        "ApproximateNumberOfMessagesVisible",
        "WindowFailures",
        "SlotLagBytes",
        "SlotAtRisk",
        "Duration",
    } <= metrics
    assert (alarms["slot_at_risk"]["threshold"], unq(alarms["slot_at_risk"]["statistic"])) == (0, "Maximum")
    for alarm in alarms.values():
        assert alarm["alarm_actions"] == "${local.actions}"
    locals_ = dict(dir_blocks(MODULES / "alerting", "locals"))
    assert locals_["actions"] == ["${aws_sns_topic.alerts.arn}"]
    assert alarms["duration_near_timeout"]["threshold"] == "${local.duration_threshold_ms}"
    assert dict(blocks("resource", "aws_cloudwatch_dashboard", "alerting"))
    queue = dict(blocks("resource", "aws_sqs_queue", "alerting"))["dlq"]
    assert queue["kms_master_key_id"] == "${var.kms_key_arn}"
    assert queue["sqs_managed_sse_enabled"] == "${var.kms_key_arn == null ? true : null}"


def test_checkpoint_table_ttl_pitr_encryption():
    table = dict(blocks("resource", "aws_dynamodb_table", "state"))["checkpoints"]
    assert unq(table["hash_key"]) == "pk" and unq(table["billing_mode"]) == "PAY_PER_REQUEST"
    assert unq(table["ttl"][0]["attribute_name"]) == "ttl" and table["ttl"][0]["enabled"] is True
    assert table["point_in_time_recovery"][0]["enabled"] is True
    assert table["server_side_encryption"][0]["enabled"] is True
    assert table["server_side_encryption"][0]["kms_key_arn"] == "${local.kms_key_arn}"


def test_snowflake_privatelink_endpoint_with_private_dns():
    endpoints = dict(blocks("resource", "aws_vpc_endpoint", "endpoints"))
    snowflake = endpoints["snowflake"]
    assert unq(snowflake["vpc_endpoint_type"]) == "Interface"
    assert snowflake["service_name"] == "${var.snowflake_privatelink_service_name}"
    assert snowflake["subnet_ids"] == "${var.endpoint_subnet_ids}"
    zone = dict(blocks("resource", "aws_route53_zone", "endpoints"))["snowflake"]
    assert zone["vpc"][0]["vpc_id"] == "${var.vpc_id}"  # private: attached to the VPC
    record = dict(blocks("resource", "aws_route53_record", "endpoints"))["snowflake"]
    assert record["for_each"] == "${toset(var.snowflake_privatelink_hostnames)}"
    assert record["records"] == ["${aws_vpc_endpoint.snowflake.dns_entry[0].dns_name}"]


def test_lambda_environment_covers_required_settings():
    from cdc.settings import FIELDS

    text = (MODULES / "pipeline" / "main.tf").read_text()
    required = [f.env for f in FIELDS if f.required]
    assert [env for env in required if env not in text] == []
    names = set(re.findall(r"^\s+(CDC_[A-Z0-9_]+)\s+=", text, re.M))
    assert names - {f.env for f in FIELDS} == set()  # every variable set is a real setting
    for secret in ("CDC_VAULT_TOKEN", "CDC_VAULT_SECRET_ID", "CDC_AWS_SECRET_ACCESS_KEY"):
        assert secret not in names


def test_snowflake_reads_the_stage_through_a_role_bound_to_its_integration():
    docs = dict(blocks("data", "aws_iam_policy_document", "state"))
    (trust,) = docs["snowflake_assume"]["statement"]
    assert [unq(a) for a in trust["actions"]] == ["sts:AssumeRole"]
    assert trust["principals"][0]["identifiers"] == ["${var.snowflake_storage_iam_user_arn}"]
    (external_id,) = trust["condition"]
    assert (unq(external_id["test"]), unq(external_id["variable"])) == ("StringEquals", "sts:ExternalId")
    assert external_id["values"] == ["${var.snowflake_storage_external_id}"]
    read = {unq(s["sid"]): s for s in docs["snowflake_read"]["statement"]}
    assert [unq(a) for a in read["ReadStagedParts"]["actions"]] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert [unq(r) for r in read["ReadStagedParts"]["resources"]] == [
        "${aws_s3_bucket.stage.arn}/${local.snowflake_prefix}/*"
    ]
    assert [unq(a) for a in read["DecryptStagedParts"]["actions"]] == ["kms:Decrypt"]
    every_action = {unq(a) for s in read.values() for a in s["actions"]}
    assert not every_action & {"s3:PutObject", "s3:DeleteObject", "kms:GenerateDataKey"}  # read only
    role = dict(blocks("resource", "aws_iam_role", "state"))["snowflake_stage"]
    assert role["count"] == "${local.create_snowflake ? 1 : 0}"
    outputs = dict(dir_blocks(ROOT, "output"))
    assert outputs["snowflake_stage_role_arn"]["value"] == "${module.state.snowflake_stage_role_arn}"


def test_admin_sql_creates_the_objects_the_example_pipeline_uses():
    sql = (ROOT.parent / "deploy" / "snowflake_admin.sql").read_text()
    statements = " ".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    (example,) = [b for _, b in dir_blocks(EXAMPLE, "module")]
    (pipeline,) = example["pipelines"].values()
    database, schema, stage = unq(pipeline["snowflake_stage"]).split(".")
    assert database == unq(pipeline["snowflake_database"])
    expected = [
        f"CREATE DATABASE IF NOT EXISTS {database} ",
        f"CREATE SCHEMA IF NOT EXISTS {database}.{schema} ",
        f"CREATE STAGE IF NOT EXISTS {database}.{schema}.{stage} ",
        f"CREATE WAREHOUSE IF NOT EXISTS {unq(pipeline['snowflake_warehouse'])} ",
        f"CREATE ROLE IF NOT EXISTS {unq(pipeline['snowflake_role'])} ",
        f"GRANT USAGE ON STAGE {database}.{schema}.{stage} TO ROLE {unq(pipeline['snowflake_role'])};",
        "STORAGE_AWS_ROLE_ARN = '<STAGE_ROLE_ARN>'",
        "STORAGE_AWS_EXTERNAL_ID = '<EXTERNAL_ID>'",
        "URL = '<STAGE_URL>'",
        "RSA_PUBLIC_KEY = '<RSA_PUBLIC_KEY>'",
        "TYPE = AWSVPCEID VALUE_LIST = ('<VPC_ENDPOINT_ID>')",
    ]
    assert [e for e in expected if e not in statements] == []
    assert "PASSWORD" not in statements.upper()  # key-pair only service users
    outputs = declared(EXAMPLE, "output")
    for placeholder, output in [
        ("<STAGE_URL>", "snowflake_stage_url"),
        ("<STAGE_ROLE_ARN>", "snowflake_stage_role_arn"),
        ("<VPC_ENDPOINT_ID>", "snowflake_endpoint_id"),
    ]:
        assert f"terraform output {output}" in sql and output in outputs, placeholder
