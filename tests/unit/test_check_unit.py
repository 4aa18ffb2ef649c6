"""The preflight's items: how a step's result or error becomes an item, and that no secret shows."""

from __future__ import annotations

from cdc.check import CheckFailed, CheckReport, Checks
from cdc.errors import AuthError
from cdc.logs import register_secret


def steps() -> CheckReport:
    report = CheckReport("p")
    checks = Checks(report)
    checks.run("a.ok", lambda: "fine", "never shown")

    def refused() -> str:
        raise CheckFailed("slot x uses test_decoding", "rename source_slot")

    def auth() -> str:
        raise AuthError("PostgreSQL refused the login: password s3cr3t-value-123 is wrong")

    def library() -> str:
        raise KeyError("boom")

    checks.run("b.refused", refused, "general fix")
    checks.run("c.auth", auth, "check the password in Vault")
    checks.run("d.library", library, "look at d")
    checks.skip("e.skipped", "needs b")
    return report


def test_each_step_becomes_one_item_with_its_fix() -> None:
    register_secret("s3cr3t-value-123")
    report = steps()
    assert [(i.name, i.status) for i in report.items] == [
        ("a.ok", "ok"),
        ("b.refused", "failed"),
        ("c.auth", "failed"),
        ("d.library", "failed"),
        ("e.skipped", "skipped"),
    ]
    items = {i.name: i for i in report.items}
    assert (items["a.ok"].detail, items["a.ok"].fix) == ("fine", None)
    assert (items["b.refused"].detail, items["b.refused"].fix) == (
        "slot x uses test_decoding",
        "rename source_slot",
    )
    assert items["c.auth"].detail == "AuthError: PostgreSQL refused the login: password *** is wrong"
    assert items["c.auth"].fix == "check the password in Vault"
    assert items["d.library"].detail == "KeyError: 'boom'"
    assert not report.ok and [i.name for i in report.failed] == ["b.refused", "c.auth", "d.library"]


def test_report_as_json_and_text() -> None:
    report = steps()
    data = report.as_dict()
    assert data["status"] == "failed" and data["failed"] == ["b.refused", "c.auth", "d.library"]
    assert data["checks"][1] == {
        "name": "b.refused",
        "status": "failed",
        "detail": "slot x uses test_decoding",
        "fix": "rename source_slot",
    }
    lines = report.text().splitlines()
    assert lines[0] == "preflight of pipeline p:"
    assert lines[1] == "  ok    a.ok       fine"
    assert lines[2] == "  FAIL  b.refused  slot x uses test_decoding"
    assert lines[3] == "                   fix: rename source_slot"
    assert lines[-1] == "3 of 5 checks failed: b.refused, c.auth, d.library"
    assert "s3cr3t" not in report.text()
