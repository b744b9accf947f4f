"""Fault injection for the fault harness (``make faults``) and the tests: kill at a named phase.

Why: a race (a worker dying between ``pool.wait()`` and ``submit()``, the main
process dying while a worker is committing) happens once in a hundred random
kills; a harness that waits for luck proves little.  With ``MODSINGEST_FAULT``
set, the process at the named phase kills the chosen victim itself, so each
trial hits the phase it names.  Unset (always, in production), nothing here
runs: ``arm()`` returns at once and no function is wrapped.

    MODSINGEST_FAULT=<phase>:<victim>:<token file>

``phase`` is one of ``PHASES``; ``victim`` is ``worker`` (the worker kills
itself), ``main`` (the worker kills the service's main process, then waits, so a
worker that outlives its service would be seen publishing) or, for the main-side
phase ``submit``, the worker about to receive a job.  The fault fires once per
token: the process that creates the token file (``O_EXCL``) fires, any other
finds it there and does nothing, so a replaced worker does not die again.  The
harness removes the token to arm the next trial.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

ENV = "MODSINGEST_FAULT"

#: worker-side phases: (module, function) wrapped so the fault fires on entry (publish
#: calls ``fsutil.commit``/``fsutil.atomic_write`` through the module, so the wrapper is seen), and
#: which calls count (``commit(tmp, final)``: ``commit1`` before the processed copy's
#: rename, nothing visible yet; ``commit2`` before newdata's, the processed copy
#: already in place)
PHASES: dict[str, tuple[str, str, str]] = {
    "read": ("modsingest.fits.frame", "read", "any"),
    "steps": ("modsingest.processing.pipeline", "run_steps", "any"),
    "write": ("modsingest.processing.publish", "write_temps", "any"),
    "commit1": ("modsingest.fsutil", "commit", "processed"),
    "commit2": ("modsingest.fsutil", "commit", "newdata"),
    "pointer": ("modsingest.fsutil", "atomic_write", "any"),
}
#: phases without a function to wrap: ``done`` (the worker's result is ready, not sent),
#: ``submit`` (main process: a job is about to be sent to a worker)
OTHER_PHASES = ("done", "submit")
#: how long a worker that killed its service waits before going on (it must be dead by then)
MAIN_KILL_WAIT = 10.0


class Fault:
    def __init__(self, phase: str, victim: str, token: str):
        self.phase, self.victim, self.token = phase, victim, token

    @classmethod
    def parse(cls, spec: str | None) -> Fault | None:
        if not spec:
            return None
        phase, victim, token = spec.split(":", 2)
        if phase not in PHASES and phase not in OTHER_PHASES:
            raise ValueError(f"{ENV}: unknown phase {phase!r}")
        if victim not in ("worker", "main"):
            raise ValueError(f"{ENV}: unknown victim {victim!r}")
        return cls(phase, victim, token)

    def claim(self) -> bool:
        """True for the one process that creates the token (the fault fires there)."""
        try:
            os.close(os.open(self.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except OSError:
            return False
        return True

    def fire(self, main_pid: int | None, worker_pid: int | None = None) -> None:
        if not self.claim():
            return
        if self.victim == "worker":
            os.kill(worker_pid or os.getpid(), signal.SIGKILL)
            if worker_pid is not None:  # main side: wait until it is really gone
                _wait_gone(worker_pid)
            return
        if main_pid:
            os.kill(main_pid, signal.SIGKILL)
            time.sleep(MAIN_KILL_WAIT)  # a worker that outlives its service goes on after this


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    """Until every thread of ``pid`` has exited (its files, and so its pipe, are closed).

    The leader thread alone can be a zombie while another thread still holds the
    process's files, so each thread is looked at.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_state(pid, tid) in ("Z", "X", None) for tid in _threads(pid)):
            return
        time.sleep(0.005)


def _threads(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def _state(pid: int, tid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def from_env() -> str | None:
    """The fault spec the service was started with (read in the main process)."""
    return os.environ.get(ENV) or None


def arm_worker(spec: str | None, main_pid: int | None, newdata: os.PathLike | str) -> Fault | None:
    """In a worker: wrap the phase's function when ``spec`` names one."""
    fault = Fault.parse(spec)
    if fault is None or fault.phase not in PHASES:
        return fault
    module_name, attr, which = PHASES[fault.phase]
    module = importlib.import_module(module_name)
    original = getattr(module, attr)
    newdata = os.path.realpath(newdata)

    def counts(args: tuple) -> bool:
        if which == "any":
            return True
        final = str(args[1])
        in_newdata = os.path.realpath(os.path.dirname(final)) == newdata
        if not final.endswith(".fits"):
            return False  # the .new pointer's commit
        return in_newdata if which == "newdata" else not in_newdata

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if counts(args):
            fault.fire(main_pid)
        return original(*args, **kwargs)

    setattr(module, attr, wrapped)
    return fault


def at(fault: Fault | None, phase: str) -> Callable[..., None] | None:
    """``fault.fire`` when ``fault`` is for ``phase`` (the unwrapped phases), else None."""
    if fault is not None and fault.phase == phase:
        return fault.fire
    return None
