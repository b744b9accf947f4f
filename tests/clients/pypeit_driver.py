"""Runs inside the clients venv (``make clients``): PypeIt's own readers on our files.

Called by tests/test_clients_pypeit.py as
``.venv-clients/bin/python pypeit_driver.py JOBS.json``, where JOBS.json lists
``{"file": ..., "spectrograph": ...}``; prints one JSON document with, per
file, what PypeIt's ``get_rawimage`` returned and the frame type its metadata
typing (what ``pypeit_setup`` does) gave.  Nothing here judges: the test does.

Offline: importing PypeIt builds every telescope's parameters, and each calls
astropy's ``EarthLocation.of_site``, which downloads astropy's site list on
first use (astropy 8 ships none).  The test machine, like the telescope's
computers, has no internet.  So before PypeIt is imported:
- astropy's remote data is switched off (``allow_internet = False``: any other
  download fails at once instead of waiting on DNS);
- ``of_site`` answers from a registry made here: the LBT from the coordinates
  the MODS headers carry (32.70131 N, 109.88906 W, 3221 m), every other
  observatory at a placeholder location (0, 0, 0), used only by
  spectrographs this test never loads.
The test also points ``XDG_CONFIG_HOME``/``XDG_CACHE_HOME`` at a temporary
directory, so no user's astropy configuration or cache is read or written.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def go_offline() -> None:
    import astropy.units as u
    from astropy.coordinates import EarthLocation
    from astropy.utils.data import conf

    conf.allow_internet = False
    lbt = EarthLocation.from_geodetic(lon=-109.88906 * u.deg, lat=32.70131 * u.deg, height=3221.0 * u.m)
    placeholder = EarthLocation.from_geodetic(lon=0.0 * u.deg, lat=0.0 * u.deg, height=0.0 * u.m)

    def of_site(cls, site_name, *, refresh_cache=False):
        return lbt if site_name in ("Large Binocular Telescope", "LBT", "lbt") else placeholder

    EarthLocation.of_site = classmethod(of_site)


def check(job: dict) -> dict:
    import numpy as np
    from pypeit.pypeitsetup import PypeItSetup
    from pypeit.spectrographs.util import load_spectrograph

    out: dict = {"file": job["file"], "spectrograph": job["spectrograph"]}
    spec = load_spectrograph(job["spectrograph"])
    _det, img, _hdu, exptime, datasec, oscansec = spec.get_rawimage(job["file"], 1)
    out["shape"] = list(img.shape)
    out["exptime"] = float(exptime)
    out["datasec_pixels"] = {str(a): int(np.sum(datasec == a)) for a in (1, 2, 3, 4)}
    out["oscansec_pixels"] = {str(a): int(np.sum(oscansec == a)) for a in (1, 2, 3, 4)}
    out["finite"] = bool(np.all(np.isfinite(img)))
    # the image PypeIt works on is the transposed file, flipped: hand back corner values
    out["corners"] = [float(img[0, 0]), float(img[-1, -1])]
    setup = PypeItSetup([job["file"]], spectrograph_name=job["spectrograph"])
    setup.build_fitstbl()
    setup.get_frame_types()
    table = setup.fitstbl.table
    out["frametype"] = str(table["frametype"][0])
    out["meta"] = {
        k: str(table[k][0])
        for k in (
            "idname",
            "binning",
            "dispname",
            "decker",
            "dichroic",
            "mjd",
            "ra",
            "dec",
            "airmass",
            "exptime",
            "target",
        )
    }
    return out


def main(path: str) -> int:
    jobs = json.loads(Path(path).read_text())
    go_offline()
    results = []
    for job in jobs:
        try:
            results.append(check(job))
        except Exception as exc:  # reported to the test, which names the file
            results.append(
                {
                    "file": job["file"],
                    "spectrograph": job["spectrograph"],
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                }
            )
    json.dump(results, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
