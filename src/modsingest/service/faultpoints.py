"""Fault injection for the fault harness (``make faults``) and the tests: kill at a named phase.

Why: a race (a worker dying between ``pool.wait()`` and ``submit()``, the main
process dying while a worker is committing) happens once in a hundred random
kills; a harness that waits for luck proves little.  With ``MODSINGEST_FAULT``
set, the process at the named phase kills the chosen victim itself, so each
trial hits the phase it names.  Unset (always, in production), nothing here
runs: ``arm()`` returns at once and no function is wrapped.

    MODSINGEST_FAULT=<phase>:<victim>:<token file>      or      MODSINGEST_FAULT=@<control file>

``phase`` is one of ``PHASES`` or ``OTHER_PHASES``; ``victim`` is ``worker`` (the
worker kills itself; at the main-side phase ``submit``, the main process kills the
worker about to receive a job), ``main`` (the worker kills the service's main
process, then waits, so a worker that outlived its service would be seen
publishing) or ``hold`` (the worker waits while the harness changes the raw file).  The fault fires once per
token: the process that creates the token file (``O_EXCL``) fires, any other
finds it there and does nothing, so a replaced worker does not die again.  The
harness removes the token to arm the next trial.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import signal
import time
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
#: ``worker``: it kills itself; ``main``: it kills the service's main process; ``hold``: it
#: waits (at most ``HOLD_LIMIT`` s) until ``<token>.go`` exists, while the harness acts,
#: then removes it
VICTIMS = ("worker", "main", "hold")
HOLD_LIMIT = 60.0


class Fault:
    """One fault: where it fires (phase), whom it hits (victim), and its once-only token.

    Given as ``@<control file>``, the phase and victim are read from that file
    (``phase:victim``) each time a phase is reached, and the token is
    ``<control file>.fired``: the harness runs one service through every phase
    without restarting it to change the fault.
    """

    def __init__(self, phase: str | None, victim: str | None, token: str, control: str | None = None):
        self.phase, self.victim, self.token, self.control = phase, victim, token, control

    @classmethod
    def parse(cls, spec: str | None) -> Fault | None:
        if not spec:
            return None
        if spec.startswith("@"):
            return cls(None, None, spec[1:] + ".fired", spec[1:])
        phase, victim, token = spec.split(":", 2)
        _check(phase, victim)
        return cls(phase, victim, token)

    def current(self) -> tuple[str | None, str | None]:
        if self.control is None:
            return self.phase, self.victim
        try:
            with open(self.control) as fh:
                phase, victim = fh.read().strip().split(":", 1)
        except (OSError, ValueError):
            return None, None
        _check(phase, victim)
        return phase, victim

    def claim(self) -> bool:
        """True for the one process that creates the token (the fault fires there)."""
        try:
            os.close(os.open(self.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except OSError:
            return False
        return True

    def fire(self, phase: str, main_pid: int | None, worker_pid: int | None = None) -> None:
        """At ``phase``: hit the victim if this fault is for ``phase`` and not fired yet."""
        at, victim = self.current()
        if at != phase or not self.claim():
            return
        if victim == "worker":
            os.kill(worker_pid or os.getpid(), signal.SIGKILL)
            if worker_pid is not None:  # main side: wait until it is really gone
                _wait_gone(worker_pid)
        elif victim == "main":
            if main_pid:
                os.kill(main_pid, signal.SIGKILL)
                time.sleep(MAIN_KILL_WAIT)  # a worker that outlives its service goes on after this
        elif victim == "hold":  # the harness does something (to the raw file), then says go
            go = self.token + ".go"
            deadline = time.monotonic() + HOLD_LIMIT
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.01)
            with contextlib.suppress(OSError):
                os.unlink(go)  # tells the harness the worker goes on


def _check(phase: str, victim: str) -> None:
    if phase not in PHASES and phase not in OTHER_PHASES:
        raise ValueError(f"{ENV}: unknown phase {phase!r}")
    if victim not in VICTIMS:
        raise ValueError(f"{ENV}: unknown victim {victim!r}")


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
    """In a worker: wrap the functions of the phases ``spec`` can name."""
    fault = Fault.parse(spec)
    if fault is None:
        return None
    phases = [fault.phase] if fault.control is None else list(PHASES)
    by_function: dict[tuple[str, str], list[str]] = {}
    for phase in phases:
        if phase in PHASES:
            module_name, attr, _ = PHASES[phase]
            by_function.setdefault((module_name, attr), []).append(phase)
    newdata = os.path.realpath(newdata)

    def counts(phase: str, args: tuple) -> bool:
        which = PHASES[phase][2]
        if which == "any":
            return True
        final = str(args[1])
        in_newdata = os.path.realpath(os.path.dirname(final)) == newdata
        if not final.endswith(".fits"):
            return False  # the .new pointer's commit
        return in_newdata if which == "newdata" else not in_newdata

    for (module_name, attr), names in by_function.items():
        module = importlib.import_module(module_name)
        original = getattr(module, attr)

        def wrapped(*args: Any, _original: Any = original, _names: list[str] = names, **kwargs: Any) -> Any:
            for phase in _names:
                if counts(phase, args):
                    fault.fire(phase, main_pid)
            return _original(*args, **kwargs)

        functools.update_wrapper(wrapped, original)
        setattr(module, attr, wrapped)
    return fault
