"""Header cards: the primary header and the amplifier extension headers, as azcam builds them.

The primary header is built in azcam's block order and with azcam's comments,
starting from the real primary header of ``mods2r.20251210.0009.fits`` (each
block's keywords sorted, as azcam's ``Header.get_header`` sorts them).  The
amplifier headers carry the raw DETSEC/CCDSEC/LTV computed azcam's (wrong) way
for ROIs (raw-format.md, "Known defects"), independently of ``geometry.py`` so
that the simulator can serve as an oracle for it.
"""

from __future__ import annotations

import math
import warnings
from datetime import timedelta

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from modsingest.sim.keywords import INSTRUMENT_KEYWORDS, TCS_KEYWORDS, TemplateKeyword
from modsingest.sim.spec import (
    LIGHT_TYPES,
    NOCOMM,
    OVERSCAN,
    SHUTTER_DELAY,
    ExposureSpec,
    Roi,
    readout_seconds,
)

_RULE = "=================================================================="

Card = tuple[str, object, str]


def _utc_strings(spec: ExposureSpec) -> tuple[str, str]:
    """DATE-OBS (date only) and the UTC-OBS/TIME-OBS/UT time string.

    With ``fraction_1000`` the whole seconds and the fraction come from two
    clock reads straddling a second boundary: azcam prints '.1000', meaning
    the next second.
    """
    start = spec.start
    if spec.fraction_1000:
        return start.strftime("%Y-%m-%d"), start.strftime("%H:%M:%S") + ".1000"
    millis = start.microsecond // 1000
    return start.strftime("%Y-%m-%d"), f"{start:%H:%M:%S}.{millis:03d}"


def _shutter_ms(spec: ExposureSpec) -> tuple[int, int]:
    """INTMS and NOINTMS.

    Light frames: open time and the 500 ms shutter delay (as the real file
    shows); darks: all closed; bias/zero: nothing (azcam's zero rule).
    """
    ms = int(spec.exptime * 1000)
    if spec.imagetype in LIGHT_TYPES:
        return ms, int(SHUTTER_DELAY * 1000)
    if spec.imagetype == "dark":
        return 0, ms
    return 0, 0


def _people(spec: ExposureSpec) -> dict[str, str]:
    """The run-time names modsCCD uploads: engineering values without a telescope."""
    if not spec.telescope:
        return {
            "OBSERVER": "Observer Name(s)",
            "PARTNER": "ENGINEERING",
            "PI_NAME": "ENGINEERING",
            "PROPID": "ENGINEERING",
            "SUPPORT": "Support Name(s)",
            "TELOPS": "TelOps Name(s)",
        }
    return {
        "OBSERVER": "Sim Observer",
        "PARTNER": "OSU",
        "PI_NAME": "Sim PI",
        "PROPID": "OSU_SIM-2026A-001",
        "SUPPORT": "Sim Support",
        "TELOPS": "Sim TelOps",
    }


def _exposure_block(spec: ExposureSpec) -> list[Card]:
    """The exposure-template block (header_MODSnC.txt + exposure tool)."""
    date_obs, utc = _utc_strings(spec)
    red = not spec.is_blue
    exptime = float(int(spec.exptime * 1000) / 1000)
    written = spec.start + timedelta(seconds=spec.exptime + SHUTTER_DELAY + readout_seconds(spec.region))
    local = spec.start - timedelta(hours=float(spec.timezone))
    people = _people(spec)
    colour = "Red" if red else "Blue"
    cards: list[Card] = [
        ("CCDCTRLR", "Archon", "STA Archon CCD controller"),
        ("CHANNEL", "RED" if red else "BLUE", "MODS Channel [blue|red]"),
        ("DARKTIME", exptime, "Dark time (seconds)"),
        ("DATE", written.strftime("%Y-%m-%d"), "UTC date and time file writtten"),
        ("DATE-OBS", date_obs, "UTC shutter opened"),
        ("DETECTOR", f"e2v CCD231-68 {colour} CCD {spec.mods_unit}", "Detector name"),
        ("DISPAXIS", 1, "Spectral Dispersion Axis"),
        ("ELEVATIO", 3221.0, "Site Elevation [meters]"),
        ("EQUINOX", 2000.0, "Equinox of coordinates"),
        ("EXPTIME", exptime, "Exposure time (seconds)"),
        ("FOCSCALE", 1.67, "Focal Plane Scale [arcsec per mm]"),
        ("GRORDER", 1, "Grating order used"),
        ("IMAGETYP", spec.imagetype, "Image type"),
        ("INSTRUME", spec.instrument, "Instrument Name"),
        ("LATITUDE", 32.70131, "Site Latitude [deg N]"),
        ("LOCTIME", local.strftime("%H:%M:%S"), "Local time at start of exposure"),
        ("LONGITUD", 109.88906, "Site Longitude [deg W]"),
        ("OBJECT", spec.object, ""),
        ("OBSERVAT", "MGIO-LBT", "Observatory Site"),
        ("OBSERVER", people["OBSERVER"], "Observer(s)"),
        ("ORIGIN", "MGIO-LBT", "Location where the data was generated"),
        ("PARTNER", people["PARTNER"], "LBT Project Partner(s)"),
        ("PIXSCALE", 0.123 if red else 0.120, "Unbinned pixel scale [arcsec per pixel]"),
        ("PIXSIZE", 15.0, "Unbinned pixel size [microns]"),
        ("PI_NAME", people["PI_NAME"], "Project PI Name(s)"),
        ("PROPID", people["PROPID"], "Observing Proposal ID"),
        ("RADECSYS", "FK5", "Coordinate System"),
        ("SUPPORT", people["SUPPORT"], "LBT Support Scientist(s) on duty"),
        ("TELESCOP", "LBT-SX" if spec.mods_unit == 1 else "LBT-DX", "Telescope and Focal Station"),
        ("TELOPS", people["TELOPS"], "LBT Telescope Operator(s) on duty"),
        ("TIME-OBS", utc, "UTC at start of exposure"),
        ("TIMESYS", "UTC", "Time system"),
        ("TIMEZONE", spec.timezone, "Local time zone"),
        ("UT", utc, "UTC at start of exposure"),
        ("UTC-OBS", utc, "UTC at start of exposure"),
    ]
    return cards


def _focalplane_block(spec: ExposureSpec) -> list[Card]:
    e = spec.geometry
    return [
        ("AZCAM-HEAD", "OK", "AzCam Header flag"),
        ("N-AMPS-X", 2, "Number of amplifiers in X"),
        ("N-AMPS-Y", 2, "Number of amplifiers in Y"),
        ("N-DET-X", 1, "Number of detectors in X"),
        ("N-DET-Y", 1, "Number of detectors in Y"),
        ("NUM-AMPX", 2, "Number of amplifiers in X"),
        ("NUM-AMPY", 2, "Number of amplifiers in Y"),
        ("NUM-DETX", 1, "Number of detectors in X"),
        ("NUM-DETY", 1, "Number of detectors in Y"),
        ("REF-PIX1", e.ref_x, "Reference pixel 1"),
        ("REF-PIX2", e.ref_y, "Reference pixel 2"),
    ]


def _sexagesimal(value: float, decimals: int, signed: bool) -> str:
    """'dd:mm:ss.s' (or hours); signed adds '+'/'-' as TELDEC does."""
    sign = "-" if value < 0 else "+"
    scale = 10**decimals
    total = round(abs(value) * 3600 * scale)
    whole, frac = divmod(total, scale)
    deg, rem = divmod(whole, 3600)
    minutes, seconds = divmod(rem, 60)
    text = f"{deg:02d}:{minutes:02d}:{seconds:02d}"
    if decimals:
        text += f".{frac:0{decimals}d}"
    return (sign if signed else ("-" if value < 0 else "")) + text


def _telescope_values(spec: ExposureSpec, rng: np.random.Generator) -> dict[str, object]:
    """Plausible TCS values for one exposure (deterministic for the spec)."""
    ra_h = rng.uniform(0, 24)
    dec = rng.uniform(-10, 65)
    alt = rng.uniform(35, 85)
    az = rng.uniform(0, 360)
    ha_h = rng.uniform(-3, 3)
    values: dict[str, object] = {
        "TELRA": _sexagesimal(ra_h, 1, False),
        "TELDEC": _sexagesimal(dec, 0, True),
        "HA": _sexagesimal(ha_h, 1, False),
        "AIRMASS": 1.0 / math.sin(math.radians(alt)),
        "OBS_LST": _sexagesimal((ra_h + ha_h) % 24, 1, False),
        "ROTMODE": "POSITION",
        "OBJRA": _sexagesimal(ra_h, 3, False),
        "OBJDEC": _sexagesimal(dec, 2, True),
        "GUIRA": _sexagesimal((ra_h + rng.uniform(-0.01, 0.01)) % 24, 3, False),
        "GUIDEC": _sexagesimal(dec + rng.uniform(-0.1, 0.1), 2, True),
        "LBTWLINK": "1",
        "NONSIDER": 0,
        "NSTYPE": "" if spec.blank_nstype else "None",
        "NSEPHFIL": "" if spec.blank_nstype else "None",
    }
    if spec.telalt_style == "decimal":
        values["TELALT"], values["TELAZ"] = alt, az
    else:
        values["TELALT"] = _sexagesimal(alt, 2, False)
        values["TELAZ"] = _sexagesimal(az, 2, False)
    for kw in TCS_KEYWORDS:
        if kw.name not in values:
            values[kw.name] = kw.draw(rng)
    return values


def _instrument_values(spec: ExposureSpec, rng: np.random.Generator) -> dict[str, object]:
    blue = spec.is_blue
    values: dict[str, object] = {
        "HATCH": "OPEN",
        "CALIB": "IN" if spec.imagetype in ("flat", "comp") else "OUT",
        "AGWFNAME": "Clear",
        "SLITMASK": 4,
        "MASKNAME": "LS5x60x1.0",
        "MASKPOS": "IN",
        "DICHROIC": 1,
        "DICHNAME": "Dual",
        "GRATING": 1,
        "GRATNAME": "G400L" if blue else "G670L",
        "GRATTILT": int(rng.integers(30000, 40000)),
        "FILTER": 1,
        "FILTNAME": "Clear" if blue else "GG495",
        "IRLASER": "ON",
        "IRBEAM": "ENABLED",
        "CALLAMPS": {"flat": "VFLAT", "comp": "Ne Ar Kr Xe"}.get(spec.imagetype, "None"),
        "IEBPWR_B": "ON",
        "IEBPWR_R": "ON",
        "LLBPWR": "ON",
        "WFSPWR": "ON",
        "AGCPWR": "ON",
        "HEBPOWER": "ON",
        "IGPOWER": "OFF",
        "ARPOWER": "ON",
    }
    for kw in INSTRUMENT_KEYWORDS:
        if kw.name not in values:
            values[kw.name] = kw.draw(rng)
    return values


def _block_cards(
    table: tuple[TemplateKeyword, ...], values: dict[str, object], spec: ExposureSpec, kind: str
) -> list[Card]:
    """Cards of a TCS/instrument block, with azcam's NOCOMM behaviour.

    A value the IIF returns as NOCOMM is kept verbatim in a string keyword
    and makes a numeric conversion fail, which azcam answers by leaving the
    keyword out.
    """
    side = "SX" if spec.mods_unit == 1 else "DX"
    colour = "Blue" if spec.is_blue else "Red"
    cards: list[Card] = []
    for kw in table:
        value = values[kw.name]
        comment = kw.comment.replace("{c}", colour)
        if kind == "tcs" and comment.startswith("SX "):
            comment = side + comment[2:]
        if kw.name in spec.nocomm_keys:
            if not isinstance(value, str):
                continue
            value = NOCOMM
        cards.append((kw.name, value, comment))
    return cards


def _blocks(spec: ExposureSpec) -> list[tuple[str, list[Card]]]:
    """The primary header's titled blocks in azcam's header order.

    azcam registers headers with fixed insert positions (system 0, exposure 1,
    controller 2, instrument 3, tempcon 4, telescope 5, focal plane last),
    which in the MODS server's creation order gives the sequence below; the
    real file confirms it for the blocks it has.
    """
    rng = np.random.default_rng([spec.effective_seed, 1])
    intms, nointms = _shutter_ms(spec)
    blocks: list[tuple[str, list[Card]]] = [
        ("MODS", [("DEWAR", spec.instrument, "CCD Dewar")]),
        (
            "Controller",
            [
                ("INTMS", intms, "Open shutter exposure time (ms)"),
                ("NOINTMS", nointms, "Closed shutter exposure time (ms)"),
            ],
        ),
        ("Exposure", _exposure_block(spec)),
    ]
    if spec.telescope:
        inst = _block_cards(INSTRUMENT_KEYWORDS, _instrument_values(spec, rng), spec, "inst")
        blocks.append(("Instrument", inst))
    blocks.append(
        (
            "Temperature",
            [
                ("BASETEMP", -999.9, "CCD mount base temperature [deg C]"),
                ("CCDTEMP", -999.9, "CCD detector temperature [deg C]"),
            ],
        )
    )
    if spec.telescope:
        tcs = _block_cards(TCS_KEYWORDS, _telescope_values(spec, rng), spec, "tcs")
        blocks.append(("Telescope", tcs))
    blocks.append(("AzCam Focal plane", _focalplane_block(spec)))
    return blocks


def primary_header(spec: ExposureSpec) -> fits.Header:
    """The PRIMARY header as azcam's _write_PHU builds it."""
    e = spec.geometry
    xb, yb = spec.binning
    hdu = fits.PrimaryHDU()
    h = hdu.header
    h.set("NEXTEND", 4, "Number of extensions")
    h.set("DETSIZE", e.detsize, "Detector size")
    h.set("CCDSUM", f"{xb} {yb}", "CCD pixel summing")
    h.set("CCDBIN1", xb, "Binning factor along axis 1")
    h.set("CCDBIN2", yb, "Binning factor along axis 2")
    h.set("FILENAME", spec.filename, "base filename at acquisition")
    h.set("NCCDS", 1, "Number of CCDs")
    h.set("NAMPS", 4, "Number of amplifiers")
    with warnings.catch_warnings():
        # AZCAM-HEAD is longer than 8 characters: astropy makes it a HIERARCH
        # card (with a warning), exactly as in the real file.
        warnings.simplefilter("ignore", VerifyWarning)
        for title, cards in _blocks(spec):
            if not cards:
                continue
            for line in (_RULE, title, _RULE):
                h.append(("COMMENT", line), end=True)
            for card in sorted(cards, key=lambda c: c[0]):
                h.append(card, end=True)
    return h


# --------------------------------------------------------------------------
# Amplifier extension headers (azcam's section arithmetic, defects included)
# --------------------------------------------------------------------------


def _f32(value: float) -> float:
    """azcam keeps LTM/LTV/scales in float32 arrays; round-trip like it."""
    return float(np.float32(value))


def _amp_position(amp: int) -> tuple[int, int, bool]:
    """(extension x position, y position, read in -x) of amplifier 1..4."""
    return (2 if amp in (2, 4) else 1), (2 if amp in (3, 4) else 1), amp in (2, 4)


def azcam_sections(roi: Roi, amp: int) -> dict[str, object]:
    """The raw DETSEC/CCDSEC/CCDSEC1/AMPSEC/LTV/ATV/CRPIX azcam writes.

    azcam computes each amplifier's section from the ROI's *first* column and
    row but the *full* amplifier size, so IM2/IM4 stay anchored at the CCD's
    right edge and IM3/IM4 at its top edge whatever the ROI: right for the
    full frame, wrong for every ROI (raw-format.md, "Known defects").
    """
    e = roi.epoch
    ns, npar = e.width // 2, e.height // 2
    nx, ny, flip = _amp_position(amp)
    xb, yb = roi.xbin, roi.ybin
    fc, fr = roi.x1, roi.y1
    x_lo, x_hi = (nx - 1) * ns + fc, nx * ns
    y_lo, y_hi = (ny - 1) * npar + fr, ny * npar
    xv1, xv2 = (x_hi, x_lo) if flip else (x_lo, x_hi)
    flip_x = -1 if flip else 1

    # CCDSEC1 ("binned CCDSEC"), with azcam's skip arithmetic and %d truncation.
    skip_x1, skip_y1 = fc - 1, fr - 1
    skip_y2 = max(0, npar - roi.y2)
    if flip:
        cx1 = (nx * ns - skip_x1) / xb
        cx2 = ((nx - 1) * ns - skip_x1) / xb
    else:
        cx1 = skip_x1 / xb + 1
        cx2 = (ns - skip_x1) / xb
    cy1 = skip_y1 / yb + 1
    cy2 = (npar - skip_y2) / yb
    ccdsec1 = "[{}:{},{}:{}]".format(*(int(max(1, v)) for v in (cx1, cx2, cy1, cy2)))

    ampsec = f"[{ns}:1,1:{npar}]" if flip else f"[1:{ns},1:{npar}]"
    amp_pix1 = e.width if flip else 1
    amp_pix2 = e.height if ny == 2 else 1
    return {
        "AMPSEC": ampsec,
        "DETSEC": f"[{xv1}:{xv2},{y_lo}:{y_hi}]",
        "CCDSEC": f"[{xv1}:{xv2},{y_lo}:{y_hi}]",
        "CCDSEC1": ccdsec1,
        "LTM1_1": _f32(flip_x / xb),
        "LTM2_2": _f32(1 / yb),
        "LTV1": _f32((-flip_x * xv1 + 1) / xb),
        "LTV2": _f32((-y_lo + 1) / yb),
        "ATM1_1": flip_x,
        "ATM2_2": 1,
        "ATV1": ns * nx + 1 if flip else -(ns * (nx - 1)),
        "ATV2": -(npar * (ny - 1)),
        "CRPIX1": ((e.ref_x - amp_pix1) * flip_x - (fc - 1)) / xb,
        "CRPIX2": ((e.ref_y - amp_pix2) - (fr - 1)) / yb,
        "AMP-PIX1": amp_pix1,
        "AMP-PIX2": amp_pix2,
        "EXT-POSX": nx,
        "EXT-POSY": ny,
        "AMP-CFG": 1 if flip else 0,
    }


def amp_header_cards(spec: ExposureSpec, amp: int) -> list[Card]:
    """IMx cards after BZERO/BSCALE, in azcam's order (73 cards in all)."""
    roi = spec.region
    e = roi.epoch
    s = azcam_sections(roi, amp)
    nd, ny = roi.data_cols, roi.rows
    xb, yb = roi.xbin, roi.ybin
    flip_x = -1 if _amp_position(amp)[2] else 1  # = ATM1_1
    scale = np.float32(1.0 / 3600.0)
    com = "COMMENT"
    return [
        ("INHERIT", True, "extension inherits PHDU keyword/values?"),
        ("BUNIT", "ADU", "Physical unit of array values"),
        (com, _RULE, ""),
        (com, "Image", ""),
        (com, _RULE, ""),
        ("IMAGEID", amp, "Image ID"),
        ("CCDNAME", "ccd1", "CCD name"),
        ("DETSIZE", e.detsize, "Detector size"),
        ("CCDSIZE", e.detsize, "CCD size"),
        ("BIASSEC", f"[{nd + 1}:{nd + OVERSCAN},1:{ny}]", "Bias section"),
        ("DATASEC", f"[1:{nd},1:{ny}]", "Data section"),
        ("TRIMSEC", f"[1:{nd},1:{ny}]", "Trim section"),
        ("AMPSEC", s["AMPSEC"], "Amplifier section"),
        ("DETSEC", s["DETSEC"], "Detector section"),
        ("CCDSEC", s["CCDSEC"], "CCD section"),
        ("CCDSEC1", s["CCDSEC1"], "CCD section with binning"),
        ("OVRSCAN1", OVERSCAN, "Overscan on axis 1"),
        ("OVRSCAN2", 0, "Overscan on axis 2"),
        ("PRESCAN1", 0, "Underscan on axis 1"),
        ("PRESCAN2", 0, "Underscan on axis 2"),
        ("CCDSUM", f"{xb} {yb}", "CCD pixel summing"),
        ("LTM1_1", s["LTM1_1"], "CCD to image transformation"),
        ("LTM2_2", s["LTM2_2"], "CCD to image transformation"),
        ("LTV1", s["LTV1"], "CCD to image transformation"),
        ("LTV2", s["LTV2"], "CCD to image transformation"),
        ("ATM1_1", s["ATM1_1"], "CCD to amplifier transformation"),
        ("ATM2_2", s["ATM2_2"], "CCD to amplifier transformation"),
        ("ATV1", s["ATV1"], "CCD to amplifier transformation"),
        ("ATV2", s["ATV2"], "CCD to amplifier transformation"),
        ("DTM1_1", 1, "CCD to detector transformation"),
        ("DTM2_2", 1, "CCD to detector transformation"),
        ("DTV1", 0, "CCD to detector transformation"),
        ("DTV2", 0, "CCD to detector transformation"),
        (com, _RULE, ""),
        (com, "WCS", ""),
        (com, _RULE, ""),
        ("EQUINOX", 2000, "Equinox of WCS"),
        ("WCSDIM", 2, "WCS Dimensionality"),
        ("CTYPE1", "RA---TAN", "Coordinate type"),
        ("CTYPE2", "DEC--TAN", "Coordinate type"),
        ("CRVAL1", 0.0, "Coordinate reference value"),
        ("CRVAL2", 0.0, "Coordinate reference value"),
        ("CRPIX1", s["CRPIX1"], "Coordinate reference pixel"),
        ("CRPIX2", s["CRPIX2"], "Coordinate reference pixel"),
        # Placeholder WCS: 1"/pixel, no rotation; -sin(0) gives azcam's -0.0.
        ("CD1_1", float(scale * xb * flip_x), "Coordinate matrix"),
        ("CD1_2", float(scale * yb * -0.0), "Coordinate matrix"),
        ("CD2_1", float(scale * xb * 0.0 * flip_x), "Coordinate matrix"),
        ("CD2_2", float(scale * yb), "Coordinate matrix"),
        (com, _RULE, ""),
        (com, "AzCam Focal plane", ""),
        (com, _RULE, ""),
        ("AMP-CFG", s["AMP-CFG"], "Amplifier configuration"),
        ("DET-NUM", 1, "Detector number"),
        ("EXT-NUM", amp, "extension number"),
        ("JPG-EXT", amp, "Image section"),
        ("DET-POSX", 1, "Detector position in X"),
        ("DET-POSY", 1, "Detector position in Y"),
        ("EXT-POSX", s["EXT-POSX"], "Amplifier position in X"),
        ("EXT-POSY", s["EXT-POSY"], "Amplifier position in Y"),
        ("AMP-PIX1", s["AMP-PIX1"], "Amplifier pixel position in X"),
        ("AMP-PIX2", s["AMP-PIX2"], "Amplifier pixel position in Y"),
        ("GAIN", 2.0, "Amplifier gain"),
        ("RDNOISE", 2.0, "Amplifier read noise"),
    ]
