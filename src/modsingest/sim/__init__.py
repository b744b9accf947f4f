"""Simulated MODS Archon raw files, written the way azcam writes them.

Every test, fixture, the demo and the benchmark read files made here, so the
point is fidelity to what really lands in ``/data/modsNx``, defects included
(raw-format.md).  The package is split by concern:

* ``spec``     the exposure spec (:class:`ExposureSpec`), CCD formats, ROIs and
  the choices a spec accepts;
* ``keywords`` the telescope and instrument keyword tables of azcam's templates;
* ``headers``  the primary header and the amplifier headers, azcam's (wrong)
  ROI section arithmetic included;
* ``pixels``   amplifier pixels, the scene placed at its true CCD position;
* ``conpars``  the CONPARS table of azcam's second write pass;
* ``files``    rendering to bytes and the two-pass write under the final name.

Import from ``modsingest.sim``: the names below are the public surface that
the commands, tests and tools use; the modules may change inside.
"""

from __future__ import annotations

from modsingest.sim.conpars import CONPARS_KEYS, conpars_hdu, conpars_rows
from modsingest.sim.files import hdulist, render, write
from modsingest.sim.headers import amp_header_cards, azcam_sections, primary_header
from modsingest.sim.pixels import amplifier_pixels
from modsingest.sim.spec import (
    DEFAULT_NOCOMM,
    EPOCHS,
    IMAGE_TYPES,
    LIGHT_TYPES,
    NOCOMM,
    OVERSCAN,
    ROI_MODES,
    SHUTTER_DELAY,
    TELALT_STYLES,
    TIMEZONES,
    Epoch,
    ExposureSpec,
    Roi,
    as_utc,
    parse_binning,
    readout_seconds,
)

__all__ = [
    "CONPARS_KEYS",
    "DEFAULT_NOCOMM",
    "EPOCHS",
    "IMAGE_TYPES",
    "LIGHT_TYPES",
    "NOCOMM",
    "OVERSCAN",
    "ROI_MODES",
    "SHUTTER_DELAY",
    "TELALT_STYLES",
    "TIMEZONES",
    "Epoch",
    "ExposureSpec",
    "Roi",
    "amp_header_cards",
    "amplifier_pixels",
    "as_utc",
    "azcam_sections",
    "conpars_hdu",
    "conpars_rows",
    "hdulist",
    "parse_binning",
    "primary_header",
    "readout_seconds",
    "render",
    "write",
]
