"""Integration tests run against the embedded local stack (PostgreSQL 15 + wal2json, moto,
fakesnow, OpenBao), started once per session in a temporary directory and stopped at the end.

Every test under tests/integration is marked ``integration``. When PostgreSQL or wal2json are
missing the ``stack`` fixture fails, loudly, with what to install; it never skips.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdc import devstack
from cdc.settings import Settings, load

_HERE = Path(__file__).resolve().parent

# boto3 clients built by the pipeline find moto's dummy credentials here (never in ~/.aws).
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class Stack:
    dir: Path
    env: dict[str, Any]
    settings: Settings


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def aws_credentials() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        yield


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, aws_credentials: None) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("devstack")
    try:
        env = devstack.up(directory)
    except devstack.DevstackError as exc:
        pytest.fail(f"the embedded local stack did not start:\n{exc}", pytrace=False)
    # The file alone decides (CDC_* variables of the caller's shell must not redirect the tests).
    settings = load(directory / "cdc.toml", env={})
    yield Stack(dir=directory, env=env, settings=settings)
    devstack.down(directory, purge=True)  # raises (and so errors the session) if anything survives


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI and the Lambda handler configure the root logger: put it back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)
