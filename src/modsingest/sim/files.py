"""Rendering and writing a simulated file: the two-pass write under the final name.

azcam writes PRIMARY+IM1..IM4 first, then re-opens the file with astropy in
``update`` mode and appends CONPARS.  That second pass is astropy's resize path:
it writes the whole file to an ``mkstemp`` name (``tmpXXXXXXXX``) in the same
directory, deletes the original and renames the temporary file onto the final
name.  A watcher thus sees a stray ``tmp*`` file, a short moment where the final
name is missing, and a new inode.  Doing the same call reproduces all of it.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.io import fits

from modsingest.sim.conpars import conpars_hdu
from modsingest.sim.headers import amp_header_cards, primary_header
from modsingest.sim.pixels import amplifier_pixels, stored_int16
from modsingest.sim.spec import ExposureSpec


def _amp_hdu(spec: ExposureSpec, amp: int, stored: np.ndarray) -> fits.ImageHDU:
    """IMx HDU around the stored (value - 32768) int16 pixels.

    BZERO/BSCALE are set after the data so astropy writes the int16 block as
    is, and they land after EXTNAME as azcam re-inserts them.
    """
    hdu = fits.ImageHDU(data=stored, name=spec.geometry.extnames[amp - 1])
    h = hdu.header
    h.set("NAXIS", 2, "number of data axes")
    h.set("BZERO", 32768.0, after="EXTNAME")
    h.set("BSCALE", 1.0, after="BZERO")
    for key, value, comment in amp_header_cards(spec, amp):
        # end=True: commentary cards go where azcam puts them (after=curpos),
        # not grouped with the previous COMMENT cards.
        h.append((key, value, comment) if comment else (key, value), end=True)
    return hdu


def _image_hdus(spec: ExposureSpec) -> list:
    """PRIMARY + the four amplifiers: what pass 1 writes."""
    primary = fits.PrimaryHDU(header=primary_header(spec))
    pixels = amplifier_pixels(spec)
    return [primary] + [_amp_hdu(spec, amp, stored_int16(px)) for amp, px in zip((1, 2, 3, 4), pixels)]


def render(spec: ExposureSpec) -> bytes:
    """The complete file (with CONPARS if ``spec.conpars``) as bytes."""
    hdus = _image_hdus(spec)
    if spec.conpars:
        hdus.append(conpars_hdu(spec))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def hdulist(spec: ExposureSpec) -> fits.HDUList:
    """The file as astropy reads it back (uint16 pixels, as from disk)."""
    return fits.HDUList.fromstring(render(spec))


def write(
    spec: ExposureSpec,
    directory: str | os.PathLike,
    two_pass: bool = True,
    pause: float = 0.0,
    *,
    after_first_pass: Callable[[Path], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``spec``'s file into ``directory`` as azcam does; return its path.

    Two passes (default): PRIMARY+IM1..IM4 are written under the final name
    and closed; ``after_first_pass(path)`` runs (tests look at the file
    there), ``pause`` seconds pass, then the file is re-opened in astropy
    ``update`` mode and CONPARS appended (astropy rewrites it via a temporary
    file and a rename; see this module's docstring).  ``two_pass=False`` writes
    the whole file at once.  Without ``spec.conpars`` only the first pass
    happens.  An existing file is an error unless ``overwrite``, as in azcam.
    """
    path = Path(directory) / spec.filename
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists and overwrite is not set")
        path.unlink()
    hdus = _image_hdus(spec)
    if not two_pass and spec.conpars:
        hdus.append(conpars_hdu(spec))
    fits.HDUList(hdus).writeto(path)
    del hdus
    if two_pass and spec.conpars:
        if after_first_pass is not None:
            after_first_pass(path)
        if pause > 0:
            time.sleep(pause)
        with fits.open(path, mode="update") as hdul:
            hdul.append(conpars_hdu(spec))
    return path
