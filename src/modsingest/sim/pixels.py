"""Amplifier pixels: bias, read noise and a scene placed at its true CCD position.

The model is cheap (a rank-3 matrix product for the illumination, one block of
Gaussian noise reused between amplifiers) and deterministic for a seed, so a
full 52 MB frame builds in a fraction of a second.  Pixels go where the CCD
really is (``Roi.true_axes``), whatever the raw DETSEC says.
"""

from __future__ import annotations

import numpy as np

from modsingest.sim.spec import Epoch, ExposureSpec

BIAS_SIGMA = 1.5  # ADU per pixel, data and overscan
ROW_SIGMA = 0.3  # ADU, row-to-row bias jitter (row-median sigma ~0.46 with 32 columns)
GAIN = 2.0  # e-/ADU for the photon noise

# Scene features, in unbinned pixels from the reference pixel: no two are
# mirror images of each other, so any flip shows.  Several fall inside the 1k ROI.
_LINES = (
    (-1830, 0.6),
    (-940, 1.0),
    (-333, 0.35),
    (-121, 0.8),
    (210, 0.5),
    (377, 1.0),
    (1105, 0.25),
    (2280, 0.7),
    (3010, 0.45),
)  # (dx, relative strength)
_STARS = (
    (-300, -200, 1.0),
    (250, 380, 0.55),
    (150, -420, 0.3),
    (-450, 300, 0.8),
    (400, 100, 0.2),
    (-1900, -900, 0.6),
    (2600, 1200, 0.9),
    (-3000, 1300, 0.4),
    (1500, -1300, 0.7),
)  # (dx, dy, relative peak)
_TRACE_DY = 137  # the object's spectrum runs along x at ref_y + 137

#: Levels (ADU per unbinned pixel) of illumination, lines, trace, stars by type.
_LEVELS = {
    "object": (80.0, 400.0, 2500.0, 9000.0),
    "std": (60.0, 300.0, 12000.0, 20000.0),
    "flat": (22000.0, 0.0, 0.0, 0.0),
    "comp": (5.0, 18000.0, 0.0, 0.0),
}


def _gauss(t: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (t / sigma) ** 2)


def _scene_factors(e: Epoch, x: np.ndarray, y: np.ndarray, levels) -> tuple[np.ndarray, np.ndarray]:
    """The separable part of the scene as Y (ny, 3) @ X (3, nx).

    Terms: a smooth, lopsided illumination; emission lines along the slit
    (x fixed, spanning 15%-90% of the CCD height); a continuum trace along
    x.  Prescan columns (not light-sensitive) get nothing.
    """
    illum, lines, trace, _ = levels
    w, h = e.width, e.height
    u = (x - w / 2) / (w / 2)
    v = (y - h / 2) / (h / 2)
    active = ((x > e.prescan) & (x <= w - e.prescan)).astype(np.float64)
    line_x = sum(s * _gauss(x - (e.ref_x + dx), 2.2) for dx, s in _LINES)
    slit_y = 1 / (1 + np.exp(-(y - 0.15 * h) / 8)) / (1 + np.exp((y - 0.90 * h) / 8))
    xs = (
        np.stack(
            [
                illum * (1 - 0.22 * u**2 + 0.07 * u),
                lines * line_x,
                trace * (0.35 + 0.65 * (x / w) ** 1.5),
            ]
        )
        * active
    )
    ys = np.stack(
        [
            1 - 0.18 * v**2 + 0.05 * v,
            slit_y,
            _gauss(y - (e.ref_y + _TRACE_DY), 3.5),
        ],
        axis=1,
    )
    return ys.astype(np.float32), xs.astype(np.float32)


def _add_stars(signal: np.ndarray, e: Epoch, x: np.ndarray, y: np.ndarray, peak: float) -> None:
    """Point sources (seeing FWHM ~ 7 px) added in small patches."""
    for dx, dy, rel in _STARS:
        sx, sy = e.ref_x + dx, e.ref_y + dy
        if not (e.prescan < sx <= e.width - e.prescan):
            continue
        cols = np.nonzero(np.abs(x - sx) < 20)[0]
        rows = np.nonzero(np.abs(y - sy) < 20)[0]
        if cols.size == 0 or rows.size == 0:
            continue
        patch = np.outer(_gauss(y[rows] - sy, 3.0), _gauss(x[cols] - sx, 3.0))
        window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        signal[window] += (peak * rel * patch).astype(np.float32)


def _noise_pool(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[int]]:
    """One block of unit Gaussian noise and per-amplifier offsets into it.

    Drawing 26 M normals for a full frame costs more than everything else
    together; shifted windows of one block are indistinguishable from fresh
    noise for anything the pipeline measures.
    """
    offsets = [0, 7919, 15838, 23757, 31676]  # 4 amplifiers; the last sizes the pool
    pool = rng.standard_normal(n + offsets[-1], dtype=np.float32)
    return pool, offsets


def amplifier_pixels(spec: ExposureSpec) -> list[np.ndarray]:
    """The four amplifiers' pixel values (uint16, numpy rows = FITS rows)."""
    roi = spec.region
    e = roi.epoch
    nd, ny, ncols = roi.data_cols, roi.rows, roi.naxis1
    rng = np.random.default_rng([spec.effective_seed, 2])
    pool, offsets = _noise_pool(rng, ny * ncols)
    levels = _LEVELS.get(spec.imagetype)
    if spec.imagetype == "dark":
        levels = (0.002 * spec.exptime, 0.0, 0.0, 0.0)  # dark current, ADU/s
    area = roi.xbin * roi.ybin
    out = []
    for amp in (1, 2, 3, 4):
        bias = rng.uniform(950, 1050)
        rows_bias = bias + ROW_SIGMA * rng.standard_normal(ny)
        rows_bias[0] += 6.0  # first and last rows a little high
        rows_bias[-1] += 3.0
        start = offsets[amp - 1]
        arr = pool[start : start + ny * ncols].reshape(ny, ncols) * np.float32(BIAS_SIGMA)
        arr += rows_bias.astype(np.float32)[:, None]
        arr[:, nd] += 8.0  # first and last overscan columns a little high
        arr[:, -1] += 4.0
        if levels is not None:
            x, y = roi.true_axes(amp)
            ys, xs = _scene_factors(e, x, y, levels)
            signal = ys @ xs
            if levels[3]:
                _add_stars(signal, e, x, y, levels[3])
            if spec.imagetype != "flat":  # flats are exposed to a level, binned or not
                signal *= np.float32(area)
            # Photon noise: another window of the pool, read backwards.
            other = offsets[amp % 4 + 1]
            photon = pool[other : other + ny * ncols][::-1].reshape(ny, ncols)[:, :nd]
            data = arr[:, :nd]
            data += signal
            # Every scene term is >= 0, so the square root needs no clipping.
            signal *= np.float32(1 / GAIN)
            np.sqrt(signal, out=signal)
            signal *= photon
            data += signal
        np.rint(arr, out=arr)
        np.clip(arr, 0, 65535, out=arr)
        out.append(arr.astype(np.uint16))
    return out


def stored_int16(values: np.ndarray) -> np.ndarray:
    """uint16 values to the int16 FITS stores with BZERO 32768 (flip the top bit)."""
    values ^= np.uint16(0x8000)
    return values.view(np.int16)
