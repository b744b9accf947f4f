"""What the numbers were measured on, and readings from /proc (memory, CPU, process tree)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import astropy
import numpy as np

import modsingest
from benchkit.common import REPO


def free_page_reporting() -> bool | None:
    """Whether a virtio balloon hands the guest's free memory back to the host.

    Why it matters: with free page reporting, memory the guest freed a few
    seconds ago is unmapped by the hypervisor, and touching it again costs a
    host fault (measured on the development VM: about 2 s per GiB, charged as
    kernel time of whoever touches it).  Every new page-cache page of an
    output can be such a page, so the cost of writing a file there depends on
    how recently memory was freed: noise that no real telescope computer has.
    None when there is no balloon device to ask.
    """
    found = None
    for dev in Path("/sys/bus/virtio/devices").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            if int((dev / "device").read_text(), 16) != 5:  # 5: memory balloon
                continue
            features = (dev / "features").read_text().strip()
            found = len(features) > 5 and features[5] == "1"  # VIRTIO_BALLOON_F_REPORTING
    return found


def machine_description(workdir: Path) -> dict[str, Any]:
    """What the numbers were measured on: they mean nothing without it."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_total = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    fs_type, fs_dev, best = "?", "?", ""
    with contextlib.suppress(OSError):
        target = str(workdir.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, typ = line.split()[:3]
            if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fs_type, fs_dev = mnt, typ, dev
    commit = "?"
    with contextlib.suppress(Exception):
        commit = (
            subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or "?"
        )
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": mem_total,
        "bench_dir": str(workdir),
        "filesystem": f"{fs_type} ({fs_dev} on {best})",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "astropy": astropy.__version__,
        "modsingest": modsingest.__version__,
        "commit": commit,
        "loadavg_start": os.getloadavg(),
        "free_page_reporting": free_page_reporting(),
    }


def process_tree(root: int) -> list[tuple[int, str]]:
    """``root`` and its descendants (from /proc), each with a role for the report."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out = [(root, "main")]
    roles = {root: "main"}
    todo = [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            cmd = ""
            with contextlib.suppress(OSError):
                cmd = (
                    Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            if "resource_tracker" in cmd:
                role = "resource tracker"
            elif roles.get(pid) == "forkserver":
                role = "worker"
            elif "forkserver" in cmd:
                role = "forkserver"
            else:
                role = "child"
            roles[child] = role
            out.append((child, role))
            todo.append(child)
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM/VmRSS (kB) from /proc/<pid>/status, Pss (kB) from smaps_rollup."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(line.split()[1])
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc/<pid>/stat."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0
