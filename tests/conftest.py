"""Shared test helpers.

``tiny_raw`` builds a minimal raw MODS file in memory (only what the unit tests
of the core need: geometry cards, amplifier pixels, an optional CONPARS); the
faithful azcam-like files come from ``modsingest.sim`` and are used by the
end-to-end and fixture tests.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from typing import NoReturn

import numpy as np
import pytest
from astropy.io import fits


def tiny_raw(
    nd: int = 64,
    ny: int = 48,
    binning: tuple[int, int] = (1, 1),
    epoch: int = 2026,
    seed: int = 0,
    conpars: bool = True,
    bias: tuple[float, ...] = (971, 973, 975, 977),
    primary_cards: dict | None = None,
) -> bytes:
    rng = np.random.default_rng(seed)
    names = ("IM1", "IM2", "IM3", "IM4") if epoch == 2026 else ("Q1", "Q2", "Q3", "Q4")
    primary = fits.PrimaryHDU()
    h = primary.header
    h["NEXTEND"] = 4
    h["DETSIZE"] = "[1:8292,1:3088]" if epoch == 2026 else "[1:8288,1:3088]"
    h["CCDSUM"] = f"{binning[0]} {binning[1]}"
    h["INSTRUME"] = "MODS1B"
    h["DATE-OBS"] = "2026-01-02"
    h["UTC-OBS"] = "03:04:05.678"
    h["REF-PIX1"] = 4146 if epoch == 2026 else 4144
    h["REF-PIX2"] = 1544
    for key, value in (primary_cards or {}).items():
        if value is None:
            h.remove(key, ignore_missing=True)
        else:
            h[key] = value
    hdus = [primary]
    for i, name in enumerate(names):
        level = bias[i]
        data = rng.normal(level, 1.5, (ny, nd + 32))
        data[:, :nd] += rng.integers(0, 3000, (ny, nd))
        img = fits.ImageHDU(np.clip(np.rint(data), 0, 65535).astype(np.uint16), name=name)
        img.header["CCDSUM"] = f"{binning[0]} {binning[1]}"
        img.header["OVRSCAN1"] = 32
        hdus.append(img)
    if conpars:
        hdus.append(
            fits.BinTableHDU.from_columns(
                [
                    fits.Column(
                        name="Keyword", format="20A", array=["MOD10/TEMPA", "MOD10/TEMPB", "BACKPLANE_TEMP"]
                    ),
                    fits.Column(name="Value", format="20A", array=["-130.5", "-110.25", "31.0"]),
                ],
                name="CONPARS",
            )
        )
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


@pytest.fixture
def layout(tmp_path):
    """A local raw/newdata/processed/state layout and a config file for it."""
    dirs = {k: tmp_path / k for k in ("raw", "newdata", "processed", "state")}
    for d in dirs.values():
        d.mkdir()
    cfg = tmp_path / "modsingest.yaml"
    cfg.write_text(
        "paths:\n"
        f"  raw: [{dirs['raw']}]\n"
        f"  newdata: {dirs['newdata']}\n"
        f"  processed: {dirs['processed']}\n"
        f"  state: {dirs['state']}\n"
    )
    dirs["config"] = cfg
    return dirs


def in_ci() -> bool:
    """True on the CI machine (``CI=true``, as .ci/run is run)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def needed(what: str, how: str) -> NoReturn:
    """Something a test needs is missing: under CI the test FAILS, elsewhere it is skipped.

    CI must not pass by not checking: a check that silently drops out when a tool
    is missing passes on exactly the machine that was never set up for it.
    Skipped tests are listed by ``pytest -ra`` (``make test``), so a developer
    sees what did not run.
    """
    if in_ci():
        pytest.fail(f"{what} is missing, and CI needs it: {how}", pytrace=False)
    pytest.skip(f"{what} is missing ({how})")


def require_tool(name: str, package: str) -> str:
    """The path of command-line tool ``name`` (Debian package ``package``, installed by .ci/run)."""
    path = shutil.which(name)
    if path is None:
        needed(f"the command {name}", f"apt-get install {package} (.ci/run does)")
    return path


def assert_fitsverify_ok(path, *options: str) -> None:
    """cfitsio's fitsverify finds no error and no warning in ``path`` (``-q -e`` by default)."""
    exe = require_tool("fitsverify", "fitsverify")
    run = subprocess.run([exe, *(options or ("-q", "-e")), str(path)], capture_output=True, text=True)
    assert run.returncode == 0 and "verification OK" in run.stdout, run.stdout + run.stderr
