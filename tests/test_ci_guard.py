"""CI cannot pass by accident: a tool a test needs that is missing fails the test under CI=true."""

import pytest

import conftest


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_a_missing_tool_fails_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    monkeypatch.setattr(conftest.shutil, "which", lambda name: None)
    with pytest.raises(
        pytest.fail.Exception,
        match=r"the command fitsverify is missing, and CI needs it: apt-get install fitsverify \(.ci/run does\)",
    ):
        conftest.require_tool("fitsverify", "fitsverify")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_missing_tool_is_skipped_elsewhere(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    monkeypatch.setattr(conftest.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="the command fitsverify is missing"):
        conftest.require_tool("fitsverify", "fitsverify")


def test_a_present_tool_is_its_path(monkeypatch):
    monkeypatch.setattr(conftest.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert conftest.require_tool("fitsverify", "fitsverify") == "/usr/bin/fitsverify"


def test_fitsverify_check_fails_on_a_bad_file(tmp_path):
    """The shared fitsverify check is a real check: a broken file does not pass it."""
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 50 + b"NAXIS   = 0" + b" " * 2800)
    with pytest.raises(AssertionError):
        conftest.assert_fitsverify_ok(bad)
