"""The version, and the git commit the running code comes from.

Why the commit: an admin upgrading a running service needs to know what is
installed, and between releases the version number does not change.  The
commit is read from the checkout's ``.git`` directory without running git:
the service user may not run git on a checkout root owns (git refuses
"dubious ownership"), and the production install is an editable install of
the checkout in ``/opt/modsingest``.  Installed any other way (``pip install .``
from a copy, a wheel), there is no checkout and the commit is reported as
unknown.
"""

from __future__ import annotations

from pathlib import Path

from modsingest import __version__

#: the checkout's root when this package runs from ``<root>/src/modsingest``
_ROOT = Path(__file__).resolve().parents[2]


def git_commit(root: Path = _ROOT) -> str | None:
    """The full commit hash of the checkout at ``root``, or None when there is none."""
    try:
        git = root / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text().strip()
            if not text.startswith("gitdir:"):
                return None
            git = (root / text.split(":", 1)[1].strip()).resolve()
        if not (git / "HEAD").is_file():
            return None
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head if _is_hash(head) else None
        ref = head.split(":", 1)[1].strip()
        common = git
        if (git / "commondir").is_file():  # worktrees keep refs in the main repository
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                value = (base / ref).read_text().strip()
                return value if _is_hash(value) else None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref and _is_hash(parts[0]):
                    return parts[0]
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _is_hash(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def version_text(root: Path = _ROOT) -> str:
    """What ``modsingest --version`` prints (and the service logs at start)."""
    commit = git_commit(root)
    if commit is None:
        return f"modsingest {__version__} (git commit unknown: not installed from a git checkout)"
    return f"modsingest {__version__} (git commit {commit[:12]})"
