"""The process boundary: the service's main process never imports astropy, numpy or erfa.

Why it matters: the main process stays small (tens of MB, not hundreds) and starts
fast, and a crash in the numerical stack can only take down a worker, which the
service replaces.  The rule used to live in comments and function-local imports;
here it is checked in a fresh interpreter, module by module, so the module that
breaks it is named.  docs/architecture.md ("Who may import what") states it.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import modsingest.commands
import modsingest.service

FORBIDDEN = ("astropy", "numpy", "erfa")

#: commands that process files in their own process, and so may import the numerical
#: stack: keep this list explicit and short (a new command is checked unless listed here)
PROCESSING_COMMANDS = ("process", "simulate", "export", "check")

#: service modules that do not run in the main process: ``forkwarm`` is imported only by
#: multiprocessing's fork server (``workers.PRELOAD``), to load the pipeline once for
#: the workers it forks
NOT_IN_MAIN_PROCESS = ("forkwarm",)

#: the package modules the main process uses beside service/ and commands/
CORE = (
    "modsingest.names",
    "modsingest.fsutil",
    "modsingest.result",
    "modsingest.nightlog",
    "modsingest.config",
    "modsingest.cli",
    "modsingest.logsetup",
    "modsingest.version",
    "modsingest.fits.scan",
)

#: run in a fresh interpreter: import each module in turn and report the first one
#: after which a forbidden package is loaded.  argv: JSON list of modules, JSON list
#: of forbidden packages, then optionally a folder searched first for
#: modsingest.service's modules.
_CHECK = """
import json, sys
modules, forbidden = json.loads(sys.argv[1]), json.loads(sys.argv[2])
if len(sys.argv) > 3:
    import modsingest.service
    modsingest.service.__path__.insert(0, sys.argv[3])
for name in modules:
    __import__(name)
    loaded = sorted(p for p in forbidden if p in sys.modules)
    if loaded:
        print(json.dumps({"culprit": name, "loaded": loaded}))
        break
else:
    print(json.dumps({"culprit": None, "loaded": [], "checked": len(modules)}))
"""


def _submodules(package) -> list[str]:
    return sorted(f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__))


def main_process_modules() -> list[str]:
    """Every service and command module (but the processing commands), and the core modules."""
    commands = [m for m in _submodules(modsingest.commands) if m.rsplit(".", 1)[1] not in PROCESSING_COMMANDS]
    service = [m for m in _submodules(modsingest.service) if m.rsplit(".", 1)[1] not in NOT_IN_MAIN_PROCESS]
    return ["modsingest.service", *service, "modsingest.commands", *commands, *CORE]


def check(modules: list[str], service_overlay: Path | None = None) -> dict:
    argv = [sys.executable, "-c", _CHECK, json.dumps(modules), json.dumps(FORBIDDEN)]
    if service_overlay is not None:
        argv.append(str(service_overlay))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_main_process_imports_no_numerical_stack():
    modules = main_process_modules()
    # the discovery really finds the modules (a typo in a package name would check nothing)
    assert {"modsingest.service.agent", "modsingest.service.gate", "modsingest.service.workers"} <= set(
        modules
    )
    assert {"modsingest.commands.watch", "modsingest.commands.replay", "modsingest.commands.status"} <= set(
        modules
    )
    assert not any(m.endswith((".process", ".simulate", ".export", ".check")) for m in modules)
    report = check(modules)
    assert report == {"culprit": None, "loaded": [], "checked": len(modules)}


def test_the_check_names_a_service_module_that_imports_numpy(tmp_path):
    """The check can fail: a copy of a service module with ``import numpy`` added is caught and named."""
    original = Path(modsingest.service.__path__[0]) / "udp.py"
    (tmp_path / "udp.py").write_text(original.read_text() + "\nimport numpy  # the mistake under test\n")
    report = check(main_process_modules(), service_overlay=tmp_path)
    assert report == {"culprit": "modsingest.service.udp", "loaded": ["numpy"]}


def test_the_exclusions_name_real_modules():
    """A renamed module must not slip out of the check unnoticed."""
    commands = {m.rsplit(".", 1)[1] for m in _submodules(modsingest.commands)}
    assert set(PROCESSING_COMMANDS) <= commands
    service = {m.rsplit(".", 1)[1] for m in _submodules(modsingest.service)}
    assert set(NOT_IN_MAIN_PROCESS) <= service
    from modsingest.service.workers import PRELOAD

    assert "modsingest.service.forkwarm" in PRELOAD
