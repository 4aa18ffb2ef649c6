"""tools/package.sh: the Lambda zip holds the handler, cdc and its runtime dependencies (pruned)
with their bytecode, reports its size truthfully, and its handler imports and runs from a clean
directory with nothing but the standard library besides it.

The build installs the runtime dependencies for Lambda's platform with pip (from PyPI or the
local wheel cache), once per session for the host architecture, so that the tree can be imported.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import marshal
import os
import platform
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "package.sh"
KEPT_SERVICES = {"s3", "dynamodb", "sqs", "sns", "cloudwatch", "sts"}
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
HOST_ARCH = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")


@dataclass(frozen=True)
class Build:
    out: Path
    zip: Path
    report: str


def _run(env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "PY": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    if not HOST_ARCH:
        pytest.fail(f"no Lambda architecture matches this machine ({platform.machine()})")
    out = tmp_path_factory.mktemp("package")
    proc = _run({"ARCH": HOST_ARCH, "OUT_DIR": str(out), "ZIP_LEVEL": "1", "PYTHON_VERSION": PYTHON})
    assert proc.returncode == 0, f"tools/package.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return Build(out=out, zip=out / "lambda.zip", report=proc.stdout)


def test_unknown_arch_is_refused_before_building(tmp_path: Path) -> None:
    proc = _run({"ARCH": "sparc", "OUT_DIR": str(tmp_path)}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ARCH must be x86_64 or arm64 (got 'sparc')"
    assert list(tmp_path.iterdir()) == []


def test_report_states_the_real_size_and_the_limits(build: Build) -> None:
    size = build.zip.stat().st_size
    match = re.search(
        rf"^{re.escape(str(build.zip))} \({HOST_ARCH}\): zipped [0-9.]+ MB \((\d+) bytes\), "
        r"unzipped [0-9.]+ MB \((\d+) bytes\)$",
        build.report,
        re.M,
    )
    assert match, build.report
    assert int(match.group(1)) == size
    unzipped = int(match.group(2))
    assert unzipped <= 250 * 1024 * 1024 and "unzipped: fits the 250 MB limit" in build.report
    limit_line = (
        "zipped: fits the 50 MB direct-upload limit"
        if size <= 50 * 1024 * 1024
        else "zipped: exceeds the 50 MB direct-upload limit: deploy it through S3"
    )
    assert limit_line in build.report
    assert re.search(r"^pruning removed [0-9.]+ MB unzipped \(from [0-9.]+ MB\)$", build.report, re.M)
    assert re.search(
        rf"^bytecode for Python {PYTHON}: \d+ modules \([0-9.]+ MB unzipped\)$", build.report, re.M
    )
    digest = base64.b64encode(hashlib.sha256(build.zip.read_bytes()).digest()).decode()
    assert (build.out / "lambda.zip.base64sha256").read_text().strip() == digest


def test_zip_holds_the_code_and_no_build_or_test_leftovers(build: Build) -> None:
    with zipfile.ZipFile(build.zip) as zf:
        infos = zf.infolist()
    names = {i.filename for i in infos}
    tops = {n.split("/", 1)[0] for n in names}
    assert "handler.py" in names and "cdc/engine.py" in names and "cdc/snowflake/sink.py" in names
    assert {
        "pyarrow",
        "psycopg2",
        "snowflake",
        "hvac",
        "boto3",
        "botocore",
        "tenacity",
        "cryptography",
    } <= tops
    leftovers = sorted(
        n
        for n in names
        if n.startswith(("cdc/devstack/", "cdc/demo.py", "pyarrow/tests/", "pyarrow/include/", "bin/"))
        or n.endswith(".dist-info/RECORD")
        or (n.startswith("pyarrow/") and n.endswith((".pyx", ".pxd", ".pxi", ".h")))
        or "flight" in n.rsplit("/", 1)[-1]
    )
    assert leftovers == []
    services = {n.split("/")[2] for n in names if n.startswith("botocore/data/") and n.count("/") >= 3}
    assert services == KEPT_SERVICES
    # one name per pyarrow shared library: the SONAME the loader asks for
    assert not [n for n in names if re.fullmatch(r"pyarrow/libarrow_python\w*\.so(\.\d+\.\d+\.\d+)?", n)]
    assert "pyarrow/libarrow_python.so.2000" in names or any(
        re.fullmatch(r"pyarrow/libarrow_python\.so\.\d+", n) for n in names
    )
    unreadable = [i.filename for i in infos if not (i.external_attr >> 16) & 0o004]
    assert unreadable == []
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}  # reproducible


def test_every_module_has_unchecked_bytecode_for_the_runtime(build: Build) -> None:
    """Lambda's /var/task is read-only: without the .pyc files a cold start compiles each module it
    imports. Hash-based and unchecked (PEP 552 flags 0b01), so the unpacked files' times never
    invalidate them."""
    tag = sys.implementation.cache_tag  # the test builds with this Python, of the runtime's version
    with zipfile.ZipFile(build.zip) as zf:
        names = set(zf.namelist())
        sources = sorted(n for n in names if n.endswith(".py"))
        expected = {
            f"{n.rsplit('/', 1)[0] + '/' if '/' in n else ''}__pycache__/{n.rsplit('/', 1)[-1][:-3]}.{tag}.pyc"
            for n in sources
        }
        compiled = {n for n in names if n.endswith(".pyc")}
        assert "handler.py" in sources and len(sources) > 500
        assert compiled == expected
        headers = {zf.read(n)[:8] for n in sorted(compiled)[:: max(1, len(compiled) // 50)]}
        engine = marshal.loads(zf.read(f"cdc/__pycache__/engine.{tag}.pyc")[16:])
    assert {h[:4] for h in headers} == {importlib.util.MAGIC_NUMBER}
    assert {int.from_bytes(h[4:8], "little") for h in headers} == {0b01}
    # named where Lambda unpacks the zip, not after the build's directory (which would change the bytes)
    assert engine.co_filename == "/var/task/cdc/engine.py"


def test_a_cold_start_runs_the_bytecode_without_reading_the_sources(build: Build, tmp_path: Path) -> None:
    root = _unpacked(build, tmp_path)
    # were a source compiled, this one would stop the import
    (root / "cdc" / "engine.py").write_text('raise SystemExit("compiled from source")\n')
    proc = _python(
        tmp_path, "-B", "-c", f"import sys; sys.path.insert(0, {str(root)!r}); import handler, cdc.engine"
    )
    assert proc.returncode == 0, proc.stderr


def _unpacked(build: Build, tmp_path: Path) -> Path:
    root = tmp_path / "task"  # a clean directory, like /var/task
    with zipfile.ZipFile(build.zip) as zf:
        zf.extractall(root)
    return root


def _python(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This Python without site-packages (-S: the venv is invisible) and without CDC_* variables."""
    return subprocess.run(
        [sys.executable, "-S", *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )


def _services_cdc_calls() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "cdc").rglob("*.py"):
        if "devstack" in path.parts:
            continue
        text = path.read_text()
        found |= set(re.findall(r"aws_client\(\s*\w+,\s*\"(\w+)\"", text))
        found |= set(re.findall(r"\.client\(\s*\"(\w+)\"", text))
    return found


CHECK = r"""
import io, json, pkgutil, importlib, sys
root = sys.argv[1]
sys.path.insert(0, root)
import handler, cdc
modules = sorted(m.name for m in pkgutil.walk_packages(cdc.__path__, "cdc.") if not m.name.endswith("__main__"))
for name in modules:
    importlib.import_module(name)
outside = sorted(
    name for name, mod in list(sys.modules.items())
    if name.split(".")[0] in ("cdc", "pyarrow", "boto3", "botocore", "snowflake", "psycopg2", "hvac", "cryptography")
    and getattr(mod, "__file__", None) and not mod.__file__.startswith(root)
)
import pyarrow as pa, pyarrow.parquet as pq
buf = io.BytesIO()
pq.write_table(pa.table({"id": [1, 2], "v": ["x", None]}), buf)
rows = pq.read_table(io.BytesIO(buf.getvalue())).to_pylist()
import boto3
for service in json.loads(sys.argv[2]):
    boto3.client(service, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cdc.settings import Secret
from cdc.snowflake.sink import load_private_key
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                        serialization.BestAvailableEncryption(b"pp")).decode()
der_ok = load_private_key(Secret(pem), Secret("pp")) == key.private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
import psycopg2, snowflake.connector, hvac, tenacity
result = handler.handler({}, None)
print(json.dumps({"modules": len(modules), "outside": outside, "rows": rows, "der_ok": der_ok, "result": result}))
"""


def test_handler_imports_and_runs_from_the_unpacked_zip(build: Build, tmp_path: Path) -> None:
    root = _unpacked(build, tmp_path)
    services = _services_cdc_calls()
    assert services and services <= KEPT_SERVICES, services
    # no CDC_* variables: the handler must say what is missing
    proc = _python(tmp_path, "-c", CHECK, str(root), json.dumps(sorted(services)))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["outside"] == []
    assert report["modules"] >= 40
    assert report["rows"] == [{"id": 1, "v": "x"}, {"id": 2, "v": None}]
    assert report["der_ok"] is True
    result = report["result"]
    assert result["status"] == "failed" and result["error"]["class"] == "ConfigError"
    message = result["error"]["message"]
    assert message.startswith("invalid configuration (")
    for missing in ("pipeline (CDC_PIPELINE) is required", "vault_addr (CDC_VAULT_ADDR) is required"):
        assert missing in message
