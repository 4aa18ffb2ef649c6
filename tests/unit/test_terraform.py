"""Structure checks of terraform/ (python-hcl2): the properties `terraform validate` cannot see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

try:
    import hcl2
except ImportError:  # fail, never skip: the checks must run
    hcl2 = None

ROOT = Path(__file__).resolve().parents[2] / "terraform"
MODULES = ROOT / "modules"
WILDCARD_RESOURCE_ACTIONS = {  # no resource scoping possible (ENIs do not exist yet)
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
}


def _load(path: Path) -> dict:
    if hcl2 is None:
        pytest.fail("python-hcl2 is not installed: pip install python-hcl2 (dev extra)")
    with path.open() as fh:
        return hcl2.load(fh)


def _files() -> list[Path]:
    files = sorted(ROOT.rglob("*.tf"))
    assert files, f"no .tf files under {ROOT}"
    return files


def _blocks(kind: str, type_: str | None = None, module: str | None = None):
    """(name, body) of every `resource`/`data` block of a type, across the tree or one module."""
    base = MODULES / module if module else ROOT
    for path in sorted(base.rglob("*.tf")):
        for block in _load(path).get(kind, []):
            for t, named in block.items():
                if type_ is None or t.strip('"') == type_:
                    for name, body in named.items():
                        yield name.strip('"'), body


def _unq(v):
    return v.strip('"') if isinstance(v, str) else v


def _statements():
    for _, doc in _blocks("data", "aws_iam_policy_document"):
        yield from doc.get("statement", [])


def test_every_file_parses():
    for path in _files():
        _load(path)


def test_every_variable_has_a_description():
    missing = []
    for path in _files():
        for var in _load(path).get("variable", []):
            for name, body in var.items():
                if not _unq(body.get("description", "")).strip():
                    missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert not missing, missing


def test_no_wildcard_iam_actions_and_wildcard_resources_only_for_enis():
    checked = 0
    for stmt in _statements():
        checked += 1
        actions = [_unq(a) for a in stmt.get("actions", [])]
        effect = _unq(stmt.get("effect", "Allow"))
        assert "not_actions" not in stmt
        if effect == "Allow":
            assert all("*" not in a for a in actions), actions
            if any(_unq(r) == "*" for r in stmt.get("resources", [])):
                assert set(actions) <= WILDCARD_RESOURCE_ACTIONS, actions
    assert checked >= 8


def test_stage_bucket_policy_denies_insecure_transport():
    docs = dict(_blocks("data", "aws_iam_policy_document", "state"))
    stmts = docs["stage_bucket"]["statement"]
    deny = [
        s for s in stmts
        if _unq(s.get("effect")) == "Deny"
        and any(_unq(c["variable"]) == "aws:SecureTransport" and [_unq(v) for v in c["values"]] == ["false"]
                and _unq(c["test"]) == "Bool" for c in s.get("condition", []))
    ]
    assert deny, "no Deny on aws:SecureTransport = false"
    assert any("/*" in _unq(r) for r in deny[0]["resources"])
    policy = dict(_blocks("resource", "aws_s3_bucket_policy", "state"))
    assert "stage_bucket" in str(policy["stage"]["policy"])
    assert dict(_blocks("resource", "aws_s3_bucket_public_access_block", "state"))
    assert dict(_blocks("resource", "aws_s3_bucket_versioning", "state"))


def test_lambda_private_networking_and_concurrency():
    (name, fn), = list(_blocks("resource", "aws_lambda_function", "pipeline"))
    assert fn["reserved_concurrent_executions"] == 1
    vpc = fn["vpc_config"][0]
    assert "lambda_subnet_ids" in str(vpc["subnet_ids"])
    assert "aws_security_group.lambda" in str(vpc["security_group_ids"])
    assert "public" not in json.dumps(fn).lower().replace("publish", "")
    assert fn["dead_letter_config"][0]["target_arn"] == "${var.dlq_arn}"
    for _, subnet in _blocks("resource", "aws_subnet", "network"):
        assert subnet["map_public_ip_on_launch"] is False


def test_lambda_security_group_egress_only_database_and_https():
    assert not list(_blocks("resource", "aws_vpc_security_group_ingress_rule", "pipeline")) or all(
        "aws_security_group.lambda" not in str(r["security_group_id"])
        for _, r in _blocks("resource", "aws_vpc_security_group_ingress_rule", "pipeline")
    )
    egress = dict(_blocks("resource", "aws_vpc_security_group_egress_rule", "pipeline"))
    assert set(egress) == {"to_database", "to_endpoints", "to_gateway_endpoints", "to_vault"}
    assert egress["to_database"]["referenced_security_group_id"] == "${var.db_security_group_id}"
    for name in ("to_endpoints", "to_gateway_endpoints", "to_vault"):
        assert egress[name]["from_port"] == egress[name]["to_port"] == 443
    assert "0.0.0.0/0" not in json.dumps(egress)
    sg = dict(_blocks("resource", "aws_security_group", "pipeline"))["lambda"]
    assert "ingress" not in sg and "egress" not in sg


def test_alarms_exist():
    alarms = dict(_blocks("resource", "aws_cloudwatch_metric_alarm", "alerting"))
    metrics = {_unq(a["metric_name"]) for a in alarms.values()}
    assert {"Errors", "ApproximateNumberOfMessagesVisible", "WindowFailures", "SlotLagBytes", "Duration"} <= metrics
    for alarm in alarms.values():
        assert alarm["alarm_actions"] == "${local.actions}"
    assert "aws_sns_topic.alerts.arn" in (MODULES / "alerting" / "main.tf").read_text()
    assert dict(_blocks("resource", "aws_cloudwatch_dashboard", "alerting"))
    queue = dict(_blocks("resource", "aws_sqs_queue", "alerting"))["dlq"]
    assert "kms_master_key_id" in queue and "sqs_managed_sse_enabled" in queue


def test_checkpoint_table_ttl_pitr_encryption():
    table = dict(_blocks("resource", "aws_dynamodb_table", "state"))["checkpoints"]
    assert _unq(table["hash_key"]) == "pk" and _unq(table["billing_mode"]) == "PAY_PER_REQUEST"
    assert _unq(table["ttl"][0]["attribute_name"]) == "ttl" and table["ttl"][0]["enabled"] is True
    assert table["point_in_time_recovery"][0]["enabled"] is True
    assert table["server_side_encryption"][0]["enabled"] is True


def test_lambda_environment_covers_required_settings():
    from cdc.settings import FIELDS

    text = (MODULES / "pipeline" / "main.tf").read_text()
    required = [f.env for f in FIELDS if f.required]
    assert [env for env in required if env not in text] == []
    for secret in ("CDC_VAULT_TOKEN", "CDC_VAULT_SECRET_ID", "CDC_AWS_SECRET_ACCESS_KEY"):
        assert f"{secret} " not in text and f"{secret}=" not in text
