"""Settings: TOML file, environment, overrides, validation that lists every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdc import settings as cdc_settings
from cdc.errors import ConfigError
from cdc.settings import FIELDS, Secret, Settings, describe, from_env, load

REQUIRED_ENV = {
    "CDC_PIPELINE": "orders",
    "CDC_SOURCE_HOST": "db.internal",
    "CDC_SOURCE_DATABASE": "app",
    "CDC_SOURCE_SSLMODE": "require",
    "CDC_VAULT_ADDR": "https://vault:8200",
    "CDC_VAULT_TOKEN": "hvs.env-token-value",
    "CDC_VAULT_SOURCE_PATH": "cdc/source",
    "CDC_VAULT_SNOWFLAKE_PATH": "cdc/snowflake",
    "CDC_SNOWFLAKE_ACCOUNT": "acme-xy12345",
    "CDC_SNOWFLAKE_DATABASE": "RAW",
    "CDC_SNOWFLAKE_STAGE": "RAW.CDC.STAGE",
    "CDC_STAGE_URL": "s3://cdc-stage/prod",
    "CDC_CHECKPOINT_TABLE": "cdc-checkpoints",
}

FLAT_TOML = """
pipeline = "orders"
source_host = "db.internal"
source_port = 6432
source_database = "app"
source_sslmode = "verify-full"
source_sslrootcert = "/etc/ssl/rds-global.pem"
source_tables = ["public.orders", "sales.items"]
vault_addr = "https://vault:8200"
vault_token = "hvs.file-token-value"
vault_source_path = "cdc/source"
vault_snowflake_path = "cdc/snowflake"
snowflake_account = "acme-xy12345"
snowflake_database = "RAW"
snowflake_stage = "RAW.CDC.STAGE"
stage_url = "file:///var/cdc/stage"
checkpoint_table = "cdc-checkpoints"
window_max_changes = 500
"""

SECTION_TOML = """
pipeline = "orders"
checkpoint_table = "cdc-checkpoints"
stage_url = "file:///var/cdc/stage"

[source]
host = "db.internal"
port = 6432
database = "app"
sslmode = "verify-full"
sslrootcert = "/etc/ssl/rds-global.pem"
tables = ["public.orders", "sales.items"]

[vault]
addr = "https://vault:8200"
token = "hvs.file-token-value"
source_path = "cdc/source"
snowflake_path = "cdc/snowflake"

[snowflake]
account = "acme-xy12345"
database = "RAW"
stage = "RAW.CDC.STAGE"

[window]
max_changes = 500
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cdc.toml"
    path.write_text(text)
    return path


def _problems(**kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    return info.value.problems


def test_toml_flat_keys_are_read_with_their_types(tmp_path: Path) -> None:
    s = load(_write(tmp_path, FLAT_TOML), env={})
    assert s.pipeline == "orders"
    assert s.source_port == 6432
    assert s.source_tables == ("public.orders", "sales.items")
    assert s.source_sslmode == "verify-full" and s.source_sslrootcert == "/etc/ssl/rds-global.pem"
    assert s.vault_token == Secret("hvs.file-token-value")
    assert s.window_max_changes == 500
    assert s.stage_url == "file:///var/cdc/stage"


def test_toml_section_tables_mean_the_same_as_flat_keys(tmp_path: Path) -> None:
    flat = load(_write(tmp_path, FLAT_TOML), env={})
    sections = load(_write(tmp_path, SECTION_TOML), env={})
    assert sections == flat


def test_defaults_fill_what_is_not_set() -> None:
    s = load(None, env=REQUIRED_ENV)
    for f in FIELDS:
        if f.name not in {n.removeprefix("CDC_").lower() for n in REQUIRED_ENV} and f.name != "source_slot":
            assert getattr(s, f.name) == f.default, f.name
    assert s.source_port == 5432 and s.lease_ttl_s == 900 and s.vault_kv_mount == "secret"


def test_environment_beats_the_file(tmp_path: Path) -> None:
    env = {"CDC_SOURCE_PORT": "7777", "CDC_SOURCE_TABLES": "public.a, public.b", "CDC_VAULT_TOKEN": "hvs.env"}
    s = load(_write(tmp_path, SECTION_TOML), env=env)
    assert s.source_port == 7777
    assert s.source_tables == ("public.a", "public.b")
    assert s.vault_token == Secret("hvs.env")
    assert s.source_host == "db.internal"  # not in the environment: the file's value


def test_empty_environment_variable_does_not_override_the_file(tmp_path: Path) -> None:
    s = load(_write(tmp_path, FLAT_TOML), env={"CDC_SOURCE_PORT": ""})
    assert s.source_port == 6432


def test_explicit_override_beats_environment_and_file(tmp_path: Path) -> None:
    s = load(
        _write(tmp_path, FLAT_TOML),
        env={"CDC_SOURCE_PORT": "7777", "CDC_LOG_LEVEL": "WARNING"},
        overrides={"source_port": 8888, "log_level": None},  # None: no override
    )
    assert s.source_port == 8888
    assert s.log_level == "WARNING"


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [f.env for f in FIELDS]:
        monkeypatch.delenv(name, raising=False)
    for name, value in REQUIRED_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CDC_LEASE_TTL_S", "120")
    s = from_env()
    assert s.pipeline == "orders" and s.lease_ttl_s == 120
    assert from_env(REQUIRED_ENV).lease_ttl_s == 900  # an explicit mapping replaces os.environ


def test_every_problem_is_listed_at_once() -> None:
    env = {
        "CDC_PIPELINE": "orders",
        "CDC_SOURCE_HOST": "db",
        # CDC_SOURCE_DATABASE missing
        "CDC_SOURCE_SSLMODE": "verify-full",  # without CDC_SOURCE_SSLROOTCERT
        "CDC_SOURCE_PORT": "fifty",
        "CDC_LOG_LEVEL": "LOUD",
        "CDC_VAULT_ADDR": "https://vault:8200",
        "CDC_VAULT_AUTH_METHOD": "approle",
        "CDC_VAULT_ROLE_ID": "role-1",  # no CDC_VAULT_SECRET_ID
        "CDC_VAULT_SOURCE_PATH": "cdc/source",
        "CDC_VAULT_SNOWFLAKE_PATH": "cdc/snowflake",
        "CDC_SNOWFLAKE_ACCOUNT": "acme",
        "CDC_SNOWFLAKE_DATABASE": "RAW",
        "CDC_SNOWFLAKE_STAGE": "RAW.CDC.STAGE",
        "CDC_STAGE_URL": "gs://bucket/x",
        "CDC_CHECKPOINT_TABLE": "cdc-checkpoints",
    }
    with pytest.raises(ConfigError) as info:
        load(None, env=env)
    problems = info.value.problems
    expected = [
        "source_database (CDC_SOURCE_DATABASE) is required",
        "source_port (CDC_SOURCE_PORT): expected a whole number, got 'fifty'",
        "log_level (CDC_LOG_LEVEL): must be one of DEBUG, INFO, WARNING, ERROR; got 'LOUD'",
        "stage_url (CDC_STAGE_URL): 'gs://bucket/x' must start with s3:// or file://",
        "vault_secret_id (CDC_VAULT_SECRET_ID) is required when vault_auth_method is approle",
        "source_sslrootcert (CDC_SOURCE_SSLROOTCERT) is required with sslmode verify-full",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert len(problems) == len(expected), problems
    assert f"({len(expected)} problem(s))" in str(info.value)
    for text in expected:
        assert text in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"pipeline": "Orders!"}, "pipeline (CDC_PIPELINE): 'Orders!' must match"),
        ({"source_slot": "Bad-Slot"}, "source_slot (CDC_SOURCE_SLOT): 'Bad-Slot' must be 1-63 of [a-z0-9_]"),
        ({"source_tables": "orders"}, "source_tables: 'orders' must be written schema.table"),
        ({"stage_url": "s3:///prefix"}, "names no bucket"),
        ({"stage_url": "file:relative/dir"}, "must be an absolute path"),
        ({"source_port": -1}, "source_port (CDC_SOURCE_PORT): must not be negative"),
        ({"receive_process_min_bytes": -2}, "(CDC_RECEIVE_PROCESS_MIN_BYTES): must not be negative, got -2"),
        ({"source_port": True}, "expected a whole number"),
        ({"lease_ttl_s": 0}, "lease_ttl_s (CDC_LEASE_TTL_S) must be greater than 0"),
        ({"vault_token": ""}, "vault_token (CDC_VAULT_TOKEN) is required when vault_auth_method is token"),
        ({"vault_auth_method": "aws"}, "vault_aws_role (CDC_VAULT_AWS_ROLE) is required"),
        ({"vault_auth_method": "kerberos"}, "vault_auth_method (CDC_VAULT_AUTH_METHOD): must be one of"),
    ],
)
def test_each_invalid_value_is_named_with_its_variable(overrides: dict[str, Any], problem: str) -> None:
    problems = _problems(config_file=None, env=REQUIRED_ENV, overrides=overrides)
    assert any(problem in p for p in problems), problems


def test_receiving_in_a_child_process_can_be_always_never_or_from_a_backlog() -> None:
    assert load(None, env=REQUIRED_ENV).receive_process_min_bytes == 64 * 1024 * 1024
    for text, value in (("-1", -1), ("0", 0), ("1048576", 1 << 20)):
        env = {**REQUIRED_ENV, "CDC_RECEIVE_PROCESS_MIN_BYTES": text}
        assert load(None, env=env).receive_process_min_bytes == value


def test_unknown_toml_key_is_reported_flat_or_in_a_section(tmp_path: Path) -> None:
    path = _write(tmp_path, FLAT_TOML + 'source_hots = "typo"\n[vault]\ntokne = "x"\n')
    problems = _problems(config_file=path, env={})
    assert f"{path}: unknown setting 'source_hots'" in problems
    assert f"{path}: unknown setting 'vault_tokne'" in problems


def test_missing_or_invalid_config_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert _problems(config_file=missing, env=REQUIRED_ENV) == [f"config file {missing} does not exist"]
    broken = _write(tmp_path, "pipeline = \n")
    [problem] = _problems(config_file=broken, env=REQUIRED_ENV)
    assert problem.startswith(f"config file {broken} is not valid TOML")


def test_secret_never_shows_its_value() -> None:
    secret = Secret("hunter2-very-secret")
    assert repr(secret) == "Secret('***')" and str(secret) == "Secret('***')"
    assert "hunter2" not in f"{secret} {secret!r} {[secret]} { ({'k': secret}) }"
    assert secret.reveal() == "hunter2-very-secret"
    assert secret == Secret("hunter2-very-secret") and secret != Secret("other")
    assert secret != "hunter2-very-secret"  # never equal to the bare text
    assert not Secret("") and secret


def test_settings_repr_hides_the_secrets() -> None:
    s = load(None, env={**REQUIRED_ENV, "CDC_VAULT_SECRET_ID": "sid-very-secret"})
    assert isinstance(s.vault_token, Secret) and isinstance(s.vault_secret_id, Secret)
    text = repr(s)
    assert "hvs.env-token-value" not in text and "sid-very-secret" not in text


def test_config_error_never_echoes_a_secret() -> None:
    env = {**REQUIRED_ENV, "CDC_SOURCE_PORT": "x", "CDC_VAULT_TOKEN": "hvs.leak-check"}
    with pytest.raises(ConfigError) as info:
        load(None, env=env)
    assert "hvs.leak-check" not in str(info.value)


@pytest.mark.parametrize(
    ("pipeline", "slot"),
    [("orders", "cdc_orders"), ("orders-eu_1", "cdc_orders_eu_1"), ("a" * 48, "cdc_" + "a" * 48)],
)
def test_default_slot_name_comes_from_the_pipeline(pipeline: str, slot: str) -> None:
    s = load(None, env={**REQUIRED_ENV, "CDC_PIPELINE": pipeline})
    assert s.source_slot == slot


def test_explicit_slot_is_kept() -> None:
    s = load(None, env={**REQUIRED_ENV, "CDC_SOURCE_SLOT": "legacy_slot"})
    assert s.source_slot == "legacy_slot"


def test_replace_validates_again_and_keeps_secrets() -> None:
    s = load(None, env=REQUIRED_ENV)
    t = s.replace(log_level="DEBUG")
    assert t.log_level == "DEBUG" and t.vault_token == s.vault_token and t.source_tables == s.source_tables
    with pytest.raises(ConfigError, match="source_port"):
        s.replace(source_port=-5)


def test_replace_of_pipeline_moves_a_default_slot_but_not_an_explicit_one() -> None:
    s = load(None, env=REQUIRED_ENV)
    assert s.replace(pipeline="billing").source_slot == "cdc_billing"
    explicit = load(None, env={**REQUIRED_ENV, "CDC_SOURCE_SLOT": "legacy_slot"})
    assert explicit.replace(pipeline="billing").source_slot == "legacy_slot"


def test_describe_lists_every_setting_with_its_variable() -> None:
    rows = describe()
    assert [r["name"] for r in rows] == [f.name for f in FIELDS]
    assert {r["name"]: r["env"] for r in rows}["vault_aws_server_id"] == "CDC_VAULT_AWS_SERVER_ID"
    assert all(r["env"] == "CDC_" + r["name"].upper() for r in rows)
    assert isinstance(load(None, env=REQUIRED_ENV), Settings)


# Defects found in cdc/settings.py, reported to the lead. strict: when one is fixed, the test
# XPASSes, fails the run, and should become an ordinary test.


def test_file_problems_and_value_problems_are_listed_together(tmp_path: Path) -> None:
    path = _write(tmp_path, 'pipline = "typo"\n')
    problems = _problems(config_file=path, env={**REQUIRED_ENV, "CDC_SOURCE_PORT": "x"})
    assert any("unknown setting 'pipline'" in p for p in problems)
    assert any("source_port" in p for p in problems)


def test_pipeline_with_trailing_newline_is_rejected() -> None:
    _problems(config_file=None, env={**REQUIRED_ENV, "CDC_PIPELINE": "orders\n"})


def test_file_stage_url_with_a_host_part_is_rejected() -> None:
    _problems(config_file=None, env={**REQUIRED_ENV, "CDC_STAGE_URL": "file://data/stage"})


def test_fractional_number_for_a_whole_number_setting_is_rejected() -> None:
    _problems(config_file=None, env=REQUIRED_ENV, overrides={"source_port": 5432.9})


def test_module_exposes_one_definition_per_setting() -> None:
    assert len({f.env for f in cdc_settings.FIELDS}) == len(cdc_settings.FIELDS)
