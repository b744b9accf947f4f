"""``make install`` and ``make install-prod`` (issue 10): a .venv made by another Python is rebuilt.

The pip steps are replaced by ``true`` (``PIP=true``): the test is about the
environment's Python, not about downloading packages, and runs without an index.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
ID = "import sys; print(sys.version.split()[0], sys.base_prefix)"


def python_id(python: Path | str) -> str:
    return subprocess.run([str(python), "-c", ID], capture_output=True, text=True, check=True).stdout.strip()


def make(*args: str) -> subprocess.CompletedProcess:
    exe = require_tool("make", "make")
    return subprocess.run(
        [exe, "-C", str(ROOT), *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def base_python() -> str:
    """The Python this test suite runs on, outside its virtual environment."""
    base = getattr(sys, "_base_executable", None) or shutil.which("python3")
    assert base, "no base Python found"
    return base


@pytest.mark.parametrize("target, stamp", [("install", ".installed"), ("install-prod", ".installed-prod")])
def test_a_venv_made_by_another_python_is_rebuilt(tmp_path, base_python, target, stamp):
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "python"
    fake.write_text("#!/bin/sh\necho 3.9.2 /usr/lib/an-old-python\n")
    fake.chmod(0o755)
    (venv / stamp).touch()  # up to date by its timestamp: only the Python tells
    left_over = venv / "lib-of-the-old-python"
    left_over.mkdir()
    out = make(target, f"VENV={venv}", f"PYTHON={base_python}", "PIP=true")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{venv} was made by another Python, or is broken: rebuilding it" in out.stdout
    assert not left_over.exists()  # rebuilt from scratch, not patched
    assert python_id(venv / "bin" / "python") == python_id(base_python)
    assert (venv / stamp).exists()
    again = make(target, f"VENV={venv}", f"PYTHON={base_python}", "PIP=true")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout


def test_a_broken_venv_is_rebuilt_and_an_old_python_refused(tmp_path, base_python):
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(tmp_path / "gone" / "python3")  # its Python was removed
    (venv / ".installed").touch()
    dry = make("-n", "install", f"VENV={venv}", f"PYTHON={base_python}", "PIP=true")
    assert f"rm -rf {venv}" in dry.stdout
    old = tmp_path / "python3.9"
    old.write_text('#!/bin/sh\nexec "' + base_python + '" -c "import sys; sys.exit(1)"\n')
    old.chmod(0o755)
    out = make("install", f"VENV={tmp_path / 'other'}", f"PYTHON={old}", "PIP=true")
    assert out.returncode != 0
    assert f"modsingest needs Python 3.11 or newer: {old} is not" in out.stdout


def test_production_install_has_no_test_extras():
    """install-prod installs '.' (runtime dependencies); install adds '[test]'."""
    dry = make("-n", "install-prod", "VENV=/nonexistent/.venv", "PIP=echo-pip")
    assert "echo-pip install --quiet -e .\n" in dry.stdout
    assert "[test]" not in dry.stdout
    assert "python -m compileall -q src" in dry.stdout
    dry = make("-n", "install", "VENV=/nonexistent/.venv", "PIP=echo-pip")
    assert "echo-pip install --quiet -e '.[test]'" in dry.stdout
