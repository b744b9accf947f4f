"""Simulated MODS Archon raw files, written the way azcam writes them.

Every test, fixture, the demo and the benchmark read files made here, so the
point is fidelity to what really lands in ``/data/modsNx``, defects included
(raw-format.md):

* headers built in azcam's order and with azcam's comments, starting from the
  real primary header of ``mods2r.20251210.0009.fits`` (each block's keywords
  sorted, as azcam's ``Header.get_header`` sorts them);
* the raw DETSEC/CCDSEC/LTV of the amplifiers computed azcam's (wrong) way for
  ROIs, while the *pixels* are placed at their true CCD position, computed here
  independently of ``geometry.py`` so that this module can serve as an oracle
  for it;
* the two-pass write under the final name: PRIMARY+IM1..IM4 first, then the
  file is re-opened with astropy in ``update`` mode and CONPARS appended.
  That second pass is astropy's resize path: it writes the whole file to an
  ``mkstemp`` name (``tmpXXXXXXXX``) in the same directory, deletes the
  original and renames the temporary file onto the final name.  A watcher thus
  sees a stray ``tmp*`` file, a short moment where the final name is missing
  and a new inode.  Doing the same call reproduces all of it.

The pixel model is cheap (a rank-3 matrix product for the illumination, one
block of Gaussian noise reused between amplifiers) and deterministic for a
seed, so a full 52 MB frame builds in a fraction of a second.
"""

from __future__ import annotations

import io
import math
import os
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from modsingest import names

IMAGE_TYPES = ("object", "bias", "flat", "dark", "comp", "std", "zero")
ROI_MODES = ("full", "4k", "3k", "1k")
TELALT_STYLES = ("sexagesimal", "decimal")
TIMEZONES = ("0.0", "7.0")
OVERSCAN = 32
NOCOMM = "NOCOMM"
#: ``nocomm=True``: one string keyword carrying NOCOMM, one numeric left out
#: (TELALT: the one dataMan-style processing derives ZD from).
DEFAULT_NOCOMM = ("HATCH", "TELALT")

#: Image types for which the shutter opens (the scene is illuminated).
LIGHT_TYPES = ("object", "std", "flat", "comp")


# --------------------------------------------------------------------------
# Geometry epochs and ROIs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Epoch:
    """The CCD format azcam was configured with.

    On 2026-01-01 the readout gained two prescan columns per amplifier (50
    instead of 48), which moved DETSIZE, REF-PIX1 and NAXIS1 and renamed the
    extensions from Q1..Q4 to IM1..IM4.
    """

    year: int
    extnames: tuple[str, str, str, str]
    width: int  # unbinned CCD columns read, both amplifiers (DETSIZE x)
    height: int = 3088
    prescan: int = 50  # serial prescan columns per amplifier (not light-sensitive)

    @property
    def ref_x(self) -> int:
        return self.width // 2

    @property
    def ref_y(self) -> int:
        return self.height // 2

    @property
    def detsize(self) -> str:
        return f"[1:{self.width},1:{self.height}]"


EPOCHS = {
    2026: Epoch(2026, ("IM1", "IM2", "IM3", "IM4"), 8292, prescan=50),
    2025: Epoch(2025, ("Q1", "Q2", "Q3", "Q4"), 8288, prescan=48),
}

#: Half-width and half-height (unbinned) of each ROI preset; None = whole CCD.
_ROI_HALF = {"full": (None, None), "4k": (2048, None), "3k": (1544, None), "1k": (512, 512)}


@dataclass(frozen=True)
class Roi:
    """The ROI read, unbinned CCD pixels, symmetric about the reference pixel."""

    epoch: Epoch
    x1: int
    x2: int
    y1: int
    y2: int
    xbin: int
    ybin: int

    @classmethod
    def preset(cls, epoch: Epoch, mode: str, xbin: int, ybin: int) -> Roi:
        half_w, half_h = _ROI_HALF[mode]
        half_w = epoch.ref_x if half_w is None else half_w
        half_h = epoch.ref_y if half_h is None else half_h
        if half_w % xbin or half_h % ybin:
            raise ValueError(f"ROI {mode} is not a whole number of {xbin}x{ybin} bins")
        return cls(
            epoch,
            epoch.ref_x - half_w + 1,
            epoch.ref_x + half_w,
            epoch.ref_y - half_h + 1,
            epoch.ref_y + half_h,
            xbin,
            ybin,
        )

    @property
    def data_cols(self) -> int:
        """Binned data columns per amplifier: W / (2 xb)."""
        return (self.x2 - self.x1 + 1) // (2 * self.xbin)

    @property
    def rows(self) -> int:
        """Binned rows per amplifier: H / (2 yb)."""
        return (self.y2 - self.y1 + 1) // (2 * self.ybin)

    @property
    def naxis1(self) -> int:
        return self.data_cols + OVERSCAN

    @property
    def naxis2(self) -> int:
        return self.rows

    def true_axes(self, amp: int) -> tuple[np.ndarray, np.ndarray]:
        """CCD coordinates of the centres of amplifier ``amp``'s data pixels.

        Returns (x of each array column, y of each array row).  IM2/IM4 are
        read in -x starting at the ROI's right edge; every amplifier's rows run
        in +y, the upper ones starting just above the reference row.  This is
        the physical truth the (wrong) raw DETSEC fails to describe.
        """
        cols = np.arange(self.data_cols, dtype=np.float64)
        rows = np.arange(self.rows, dtype=np.float64)
        cx = (self.xbin - 1) / 2
        cy = (self.ybin - 1) / 2
        if amp in (1, 3):
            x = self.x1 + cols * self.xbin + cx
        else:
            x = self.x2 - cols * self.xbin - cx
        y0 = self.y1 if amp in (1, 2) else self.epoch.ref_y + 1
        y = y0 + rows * self.ybin + cy
        return x, y


# --------------------------------------------------------------------------
# The exposure spec
# --------------------------------------------------------------------------


def _as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _parse_binning(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, str):
        parts = value.replace("x", " ").replace(",", " ").split()
    else:
        parts = list(value)
    try:
        xb, yb = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"binning {value!r} is not two integers like '1 1'") from None
    if xb not in (1, 2) or yb not in (1, 2):
        raise ValueError(f"binning {value!r}: each axis must be 1 or 2")
    return xb, yb


@dataclass(frozen=True)
class ExposureSpec:
    """Everything that decides one simulated raw file.

    ``date`` (the file-name tag) and ``utc_start`` are independent, as on the
    real system where the tag is fixed when the azcam server starts: when only
    one is given the other follows from it (tag -> 04:00 UTC that night;
    start -> its observing date); with neither, the start is now.  ``seed``
    None derives the pixel seed from the file name, so a spec always gives
    the same bytes.

    Quirk switches: ``telescope`` (telescope+instrument blocks present),
    ``telalt_style``, ``fraction_1000`` (UTC-OBS printed as ``hh:mm:ss.1000``),
    ``blank_nstype``, ``conpars`` (False: the second pass never happens),
    ``nocomm`` (telescope/instrument keywords whose value is ``NOCOMM``:
    string-typed ones carry it verbatim, numeric ones are left out; True
    means ``DEFAULT_NOCOMM``), ``root``
    (azcam's file-name root, e.g. ``'m1bTest.'``) and ``timezone``.
    """

    channel: str = "mods1b"
    date: str | None = None
    seq: int = 1
    roi: str = "full"
    binning: tuple[int, int] = (1, 1)
    epoch: int = 2026
    utc_start: datetime | None = None
    exptime: float = 300.0
    imagetype: str = "object"
    object: str = "NGC 4151"
    telescope: bool = True
    telalt_style: str = "decimal"
    fraction_1000: bool = False
    blank_nstype: bool = False
    conpars: bool = True
    nocomm: tuple[str, ...] | bool = ()
    root: str | None = None
    timezone: str = "0.0"
    seed: int | None = None

    def __post_init__(self) -> None:
        # Normalise the convenient forms, then fix the moment "now" once so
        # that the spec, once made, always gives the same file.
        object.__setattr__(self, "binning", _parse_binning(self.binning))
        keys = DEFAULT_NOCOMM if self.nocomm is True else (self.nocomm or ())
        object.__setattr__(self, "nocomm", tuple(str(k).upper() for k in keys))
        if self.utc_start is not None:
            object.__setattr__(self, "utc_start", _as_utc(self.utc_start))
        elif self.date is not None:
            _check_date_tag(self.date)
            tag = datetime.strptime(self.date, "%Y%m%d").replace(tzinfo=UTC)
            object.__setattr__(self, "utc_start", tag + timedelta(hours=4))
        else:
            now = datetime.now(UTC)
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            object.__setattr__(self, "utc_start", now)
        if self.date is None:
            object.__setattr__(self, "date", names.observing_night(self.utc_start))
        self._validate()

    def _validate(self) -> None:
        _check_choice("channel", self.channel, names.ROOTS)
        _check_choice("roi", self.roi, ROI_MODES)
        _check_choice("epoch", self.epoch, tuple(EPOCHS))
        _check_choice("imagetype", self.imagetype, IMAGE_TYPES)
        _check_choice("telalt_style", self.telalt_style, TELALT_STYLES)
        _check_choice("timezone", self.timezone, TIMEZONES)
        _check_date_tag(self.date)
        if not 1 <= self.seq <= 9999:
            raise ValueError(f"sequence number {self.seq} is not 1..9999")
        if self.exptime < 0:
            raise ValueError(f"exposure time {self.exptime} is negative")
        if self.root is not None and (not self.root or "/" in self.root):
            raise ValueError(f"file-name root {self.root!r} must be a non-empty base name")
        if self.nocomm and not self.telescope:
            raise ValueError("nocomm needs the telescope/instrument blocks (telescope=True)")
        unknown = [k for k in self.nocomm if k not in _TCS_AND_INST_KEYS]
        if unknown:
            raise ValueError(f"nocomm keywords {unknown} are not telescope/instrument keywords")

    # Derived names and numbers -------------------------------------------------
    @property
    def filename(self) -> str:
        """azcam's name: root + 4-digit sequence number + '.fits'."""
        root = self.root if self.root is not None else f"{self.channel}.{self.date}."
        return f"{root}{self.seq:04d}.fits"

    @property
    def instrument(self) -> str:
        return self.channel.upper()

    @property
    def geometry(self) -> Epoch:
        return EPOCHS[self.epoch]

    @property
    def region(self) -> Roi:
        return Roi.preset(self.geometry, self.roi, *self.binning)

    @property
    def effective_seed(self) -> int:
        """Seed of the pixel and telemetry generators: spec seed and file name."""
        base = 0 if self.seed is None else int(self.seed)
        return base * 1_000_003 + zlib.crc32(self.filename.encode())

    @property
    def is_blue(self) -> bool:
        return self.channel.endswith("b")

    @property
    def mods_unit(self) -> int:
        return int(self.channel[4])


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(map(str, choices))}")


def _check_date_tag(tag: str) -> None:
    try:
        datetime.strptime(tag, "%Y%m%d")
    except (TypeError, ValueError):
        raise ValueError(f"date tag {tag!r} is not CCYYMMDD") from None
    if len(tag) != 8:
        raise ValueError(f"date tag {tag!r} is not CCYYMMDD")


def readout_seconds(roi: Roi) -> float:
    """Rough readout time: 22 s for a full unbinned frame, less for ROIs/binning."""
    e = roi.epoch
    fraction = (roi.x2 - roi.x1 + 1) * (roi.y2 - roi.y1 + 1) / (e.width * e.height)
    return 2.0 + 20.0 * fraction / (roi.xbin * roi.ybin)


SHUTTER_DELAY = 0.5  # seconds; NOINTMS of light frames


# --------------------------------------------------------------------------
# Primary header
# --------------------------------------------------------------------------

_RULE = "=================================================================="

Card = tuple[str, object, str]


def _utc_strings(spec: ExposureSpec) -> tuple[str, str]:
    """DATE-OBS (date only) and the UTC-OBS/TIME-OBS/UT time string.

    With ``fraction_1000`` the whole seconds and the fraction come from two
    clock reads straddling a second boundary: azcam prints '.1000', meaning
    the next second.
    """
    start = spec.utc_start
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
    written = spec.utc_start + timedelta(seconds=spec.exptime + SHUTTER_DELAY + readout_seconds(spec.region))
    local = spec.utc_start - timedelta(hours=float(spec.timezone))
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


# Telescope block (modsTCS_left/right.txt): keyword, type, comment, range of
# the simulated value for plain numbers ('' when computed in _telescope_values).
_TCS_TABLE = """
TELRA|str|SX Telescope Achieved RA [hms]|
TELDEC|str|SX Telescope Achieved DEC [dms]|
POSANGLE|float|SX Instrument Celestial PA [deg]|0,360
TELALT|float|Telescope Altitude at start of obs [deg]|
TELAZ|float|Telescope Azimuth at start of obs [deg]|
HA|str|Telescope Hour Angle at start of obs [hms]|
AIRMASS|float|Airmass (secZD) at start of obs|
PARANGLE|float|Parallactic Angle at start of obs [deg]|-180,180
OBS_LST|str|Local Sidereal Time at start of obs|
ROTMODE|str|SX Rotator Mode|
DGROTPOS|float|SX Direct Gregorian Rotator Angle [deg]|-180,180
OBJRA|str|Target RA|
OBJDEC|str|Target DEC|
OBJPMRA|float|Target RA proper motion [mas/yr]|0,0
OBJPMDEC|float|Target DEC proper motion [mas/yr]|0,0
GUIRA|str|Guide Star RA|
GUIDEC|str|Guide Star DEC|
AGWXGP|float|AGW Guide Probe X focal plane position [mm]|-60,60
AGWYGP|float|AGW Guide Probe Y focal plane position [mm]|-60,60
GPREQ_X|float|GCS Requested guide probe PCS X [mm]|-60,60
GPREQ_Y|float|GCS Requested guide probe PCS Y [mm]|-60,60
GPACT_X|float|GCS Actual guide probe PCS X [mm]|-60,60
GPACT_Y|float|GCS Actual guide probe PCX Y [mm]|-60,60
GSPRED_X|float|PCS Predicted guide star X position [mm]|-60,60
GSPRED_Y|float|PCS Predicted guide star Y position [mm]|-60,60
GSMEAS_X|float|GCS Measured guide star X position [mm]|-60,60
GSMEAS_Y|float|GCS Measured guide star Y position [mm]|-60,60
GSDELTAX|float|GCS cumulative X guide update position [mm]|-0.5,0.5
GSDELTAY|float|GCS cumulative Y guide update position [mm]|-0.5,0.5
M1POSX|float|SX Primary X Position [mm]|-1,1
M1POSY|float|SX Primary Y Position [mm]|-1,1
M1POSZ|float|SX Primary Z Position [mm]|-1,1
M1ROTX|float|SX Primary RX Rotation [arcsec]|-30,30
M1ROTY|float|SX Primary RY Rotation [arcsec]|-30,30
M1ROTZ|float|SX Primary RZ Rotation [arcsec]|-30,30
M1CTEMP|float|SX Primary Temperature [deg C]|2,12
M1CTEMP2|float|SX Primary Temperature 2 [deg C]|2,12
M1GTEMP|float|SX Primary Glass Temperature [deg C]|2,12
M1ATEMP|float|SX Primary Ambient Air Temp [deg C]|2,12
M2POSX|float|SX Secondary X Position [mm]|-1,1
M2POSY|float|SX Secondary Y Position [mm]|-1,1
M2POSZ|float|SX Secondary Z Position [mm]|-1,1
M2ROTX|float|SX Secondary RX Rotation [arcsec]|-30,30
M2ROTY|float|SX Secondary RY Rotation [arcsec]|-30,30
M2ROTZ|float|SX Secondary RZ Rotation [arcsec]|-30,30
M2CTEMP|float|SX Secondary Temperature [deg C]|2,12
TTEMP201|float|Middle C-Ring Steel Temp [deg C]|2,12
TTEMP202|float|Middle C-Ring Air Temp [deg C]|2,12
TTEMP203|float|Upper C-Ring Steel Temp [deg C]|2,12
TTEMP204|float|Upper C-Ring Air Temp [deg C]|2,12
TTEMP205|float|Lower C-Ring Steel Temp [deg C]|2,12
TTEMP206|float|Lower C-Ring Air Temp [deg C]|2,12
TTEMP207|float|Right Lower Wind Brace Steel Temp [deg C]|2,12
TTEMP208|float|Right Lower Wind Brace Air Temp [deg C]|2,12
TTEMP209|float|Right Mirror-Cell Brace Steel Temp [deg C]|2,12
TTEMP210|float|Right Mirror-Cell Brace Air Temp [deg C]|2,12
TTEMP301|float|Right C-Ring Extension Steel Temp [deg C]|2,12
TTEMP302|float|Right C-Ring Extension Air Temp [deg C]|2,12
TTEMP303|float|Left C-Ring Extension Steel Temp [deg C]|2,12
TTEMP304|float|Left C-Ring Extension Air Temp [deg C]|2,12
TTEMP305|float|Upper Wind Brace Steel Temp [deg C]|2,12
TTEMP306|float|Upper Wind Brace Air Temp [deg C]|2,12
TTEMP307|float|Right Middle Wind Brace Steel Temp [deg C]|2,12
TTEMP308|float|Right Middle Wind Brace Air Temp [deg C]|2,12
TTEMP309|float|Left Middle Wind Brace Steel Temp [deg C]|2,12
TTEMP310|float|Left Middle Wind Brace Air Temp [deg C]|2,12
LBTWLINK|str|LBT Weather Station Link State|
LBTPRES|float|LBT Ambient Pressure [hPa]|705,725
LBTTEMP|float|LBT Ambient Temperature [deg C]|0,12
LBTHUM|float|LBT Relative Humidity [percent]|10,60
LBTDWPT|float|LBT Dew Point [deg C]|-20,-5
NONSIDER|int|Target is non-sidereal|
NSRARATE|float|Differential RA tracking rate [arcsec/h]|0,0
NSDERATE|float|Differential Dec tracking rate [arcsec/h]|0,0
NSTYPE|str|Non-sidereal target type|
NSEPHFIL|str|Non-sidereal ephemeris file name|
"""

# Instrument block (instHdr_MODSnC.txt); {c} is the channel colour.
_INST_TABLE = """
HATCH|str|Instrument Dark Hatch|
CALIB|str|Calibration Tower Position|
AGWXS|float|AGW Stage X position [mm]|-60,60
AGWYS|float|AGW Stage Y position [mm]|-60,60
AGWFS|float|AGW Stage Focus position [mm]|0,10
AGWFNAME|str|AGW Guide Camera Filter Name|
SLITMASK|int|Slit Mask Cassette Position|
MASKNAME|str|Slit Mask Name|
MASKPOS|str|Slit Mask Position|
DICHROIC|int|Dichroic Turret Position|
DICHNAME|str|Dichroic Beam Selector Name|
COLTTFA|float|{c} Collimator TTFA [microns]|15000,17000
COLTTFB|float|{c} Collimator TTFB [microns]|15000,17000
COLTTFC|float|{c} Collimator TTFC [microns]|15000,17000
COLFOCUS|float|{c} Collimator Focus [microns]|15000,17000
GRATING|int|{c} Grating Turret Position|
GRATNAME|str|{c} Grating Turret Disperser Name|
GRATTILT|int|{c} Grating Tilt [microns]|
CAMFOCUS|float|{c} Camera Focus [microns]|3000,4000
FILTER|int|{c} Camera Filter Wheel Position|
FILTNAME|str|{c} Camera Filter Name|
IRLASER|str|IMCS IR Laser Power [mW]|
IRBEAM|str|IMCS IR Laser Beam state|
IRPOUT|float|IMCS IR Laser Power [mW]|0.9,1.1
IRTEMP|float|IMCS IR Laser Temperature [deg C]|24,26
CALLAMPS|str|Calibration Lamps|
VFLAT|float|Variable Flat Lamp Intensity|0,0
IUBTAIR|float|IUB Inside Air Temperature [deg C]|5,15
GRPRES|float|Glycol Return Pressure [psi-g]|20,30
GRTEMP|float|Glycol Return Temperature [deg C]|0,5
GSPRES|float|Glycol Supply Pressure [psi-g]|40,50
GSTEMP|float|Glycol Supply Temperature [deg C]|-2,3
IEBTEMPB|float|Blue IEB Air Temperature [deg C]|5,15
IEBTEMPR|float|Red IEB Air Temperature [deg C]|5,15
TCOLLBOT|float|Collimator Truss Bottom Temp [deg C]|2,12
TCOLLTOP|float|Collimator Truss Top Temp [deg C]|2,12
TAIRBOT|float|Enclosure Air Temp Bottom [deg C]|2,12
TAIRTOP|float|Enclosure Air Temp Top [deg C]|2,12
IEBPWR_B|str|Blue IEB Power|
IEBPWR_R|str|Red IEB Power|
LLBPWR|str|Lamp/Laser Box Power|
WFSPWR|str|AGw WFS camera power|
AGCPWR|str|AGw guide camera Power|
HEBPOWER|str|{c} HEB Power|
HEBTEMP|float|{c} HEB air temperature [deg C]|5,15
IGPOWER|str|{c} Dewar Ion Gauge Power|
ARPOWER|str|{c} Archon Controller Power|
DEWPRES|float|{c} CCD Dewar Pressure [torr]|1e-7,5e-7
DEWTEMP|float|{c} CCD Dewar Temperature [deg C]|-112,-108
"""


@dataclass(frozen=True)
class _Kw:
    name: str
    type: str
    comment: str
    lo: float | None
    hi: float | None


def _parse_table(text: str) -> tuple[_Kw, ...]:
    rows = []
    for line in text.strip().splitlines():
        name, typ, comment, rng = line.split("|")
        lo = hi = None
        if rng:
            lo, hi = (float(v) for v in rng.split(","))
        rows.append(_Kw(name, typ, comment, lo, hi))
    return tuple(rows)


_TCS_KWS = _parse_table(_TCS_TABLE)
_INST_KWS = _parse_table(_INST_TABLE)
_TCS_AND_INST_KEYS = frozenset(k.name for k in _TCS_KWS + _INST_KWS)


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
    for kw in _TCS_KWS:
        if kw.name not in values:
            values[kw.name] = float(rng.uniform(kw.lo, kw.hi))
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
    for kw in _INST_KWS:
        if kw.name not in values:
            values[kw.name] = float(rng.uniform(kw.lo, kw.hi))
    return values


def _block_cards(
    table: tuple[_Kw, ...], values: dict[str, object], spec: ExposureSpec, kind: str
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
        if kw.name in spec.nocomm:
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
        inst = _block_cards(_INST_KWS, _instrument_values(spec, rng), spec, "inst")
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
        tcs = _block_cards(_TCS_KWS, _telescope_values(spec, rng), spec, "tcs")
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
    flip_x = s["ATM1_1"]
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


# --------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------

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


def _stored(values: np.ndarray) -> np.ndarray:
    """uint16 values to the int16 FITS stores with BZERO 32768 (flip the top bit)."""
    values ^= np.uint16(0x8000)
    return values.view(np.int16)


# --------------------------------------------------------------------------
# CONPARS
# --------------------------------------------------------------------------


def _board_keys(slot: int, kind: str) -> list[str]:
    """STATUS keys one Archon module reports (temperature first)."""
    m = f"MOD{slot}/"
    keys = [m + "TEMP"]
    if kind == "LVXBias":
        keys += [f"{m}LVLC_V{i}" for i in range(1, 25)] + [f"{m}LVLC_I{i}" for i in range(1, 25)]
        keys += [f"{m}LVHC_V{i}" for i in range(1, 7)] + [f"{m}LVHC_I{i}" for i in range(1, 7)]
    elif kind == "HVXBias":
        keys += [f"{m}HVLC_V{i}" for i in range(1, 25)]
        keys += [f"{m}HVHC_V{i}" for i in range(1, 7)] + [f"{m}HVHC_I{i}" for i in range(1, 7)]
    elif kind == "HeaterX":
        keys += [m + "TEMPA", m + "TEMPB", m + "TEMPC"]
        for h in "AB":
            keys += [
                f"{m}HEATER{h}OUTPUT",
                f"{m}HEATER{h}P",
                f"{m}HEATER{h}I",
                f"{m}HEATER{h}D",
                f"{m}HEATER{h}TARGET",
            ]
        keys.append(m + "DINPUTS")
    elif kind == "XVBias":
        for pol in ("XVP", "XVN"):
            keys += [f"{m}{pol}_V{i}" for i in range(1, 5)]
            keys += [f"{m}{pol}_I{i}" for i in range(1, 5)]
    return keys


#: The controller's modules by slot (HeaterX in slot 10, as the MODS wiring says).
_BOARDS = (
    (1, "Driver"),
    (2, "Driver"),
    (3, "Driver"),
    (4, "Driver"),
    (5, "ADC"),
    (6, "ADC"),
    (8, "HVXBias"),
    (9, "LVXBias"),
    (10, "HeaterX"),
    (11, "HVXBias"),
    (12, "XVBias"),
)


def _conpars_keys() -> list[str]:
    """The Archon STATUS keys, in the order the controller reports them (205)."""
    keys = ["VALID", "COUNT", "LOG", "POWER", "POWERGOOD", "OVERHEAT", "BACKPLANE_TEMP"]
    for rail in (
        "P2V5",
        "P5V",
        "P6V",
        "N6V",
        "P17V",
        "N17V",
        "P35V",
        "N35V",
        "P100V",
        "N100V",
        "USER",
        "HEATER",
    ):
        keys += [f"{rail}_V", f"{rail}_I"]
    keys.append("FANTACH")
    for slot, kind in _BOARDS:
        keys += _board_keys(slot, kind)
    return keys


CONPARS_KEYS = tuple(_conpars_keys())


def conpars_rows(spec: ExposureSpec) -> list[tuple[str, str]]:
    """The STATUS snapshot taken after readout, values as <=20-char strings.

    The CCD and mount-base sensors follow the instrument's wiring: MODS1 has
    the CCD on MOD10/TEMPB and the base on TEMPA, MODS2 the reverse.
    """
    rng = np.random.default_rng([spec.effective_seed, 3])
    ccd = -110.0 + rng.normal(0, 0.03)
    base = -130.0 + rng.normal(0, 0.3)
    ccd_key, base_key = "MOD10/TEMPB", "MOD10/TEMPA"
    if spec.mods_unit == 2:
        ccd_key, base_key = base_key, ccd_key
    fixed = {
        "VALID": "1",
        "COUNT": str(100000 + 37 * spec.seq),
        "LOG": "0",
        "POWER": "4",
        "POWERGOOD": "1",
        "OVERHEAT": "0",
        "BACKPLANE_TEMP": f"{30.0 + rng.normal(0, 0.4):.3f}",
        ccd_key: f"{ccd:.3f}",
        base_key: f"{base:.3f}",
        "MOD10/TEMPC": f"{-45.0 + rng.normal(0, 0.5):.3f}",
        "MOD10/HEATERAOUTPUT": f"{rng.uniform(1.5, 3.0):.3f}",
        "MOD10/HEATERBOUTPUT": "0.000",
        "MOD10/HEATERAP": "1000",
        "MOD10/HEATERAI": "100",
        "MOD10/HEATERAD": "0",
        "MOD10/HEATERATARGET": "-110.000",
        "MOD10/HEATERBP": "0",
        "MOD10/HEATERBI": "0",
        "MOD10/HEATERBD": "0",
        "MOD10/HEATERBTARGET": "0.000",
        "MOD10/DINPUTS": "00000000",
        "FANTACH": str(int(rng.integers(2900, 3100))),
    }
    rows = []
    for key in CONPARS_KEYS:
        if key in fixed:
            value = fixed[key]
        elif key.endswith("/TEMP"):
            value = f"{rng.uniform(28, 36):.3f}"
        elif key in _RAIL_VOLTS:
            value = f"{_RAIL_VOLTS[key] * (1 + rng.normal(0, 0.003)):.3f}"
        elif "_I" in key.rsplit("/", 1)[-1]:
            value = f"{rng.uniform(0.0, 0.3):.3f}"
        elif "/HV" in key:
            value = f"{rng.uniform(20.0, 30.0):.3f}"
        else:
            value = f"{rng.uniform(-12.0, 12.0):.3f}"
        rows.append((key[:20], value[:20]))
    return rows


#: Nominal backplane supply voltages (STATUS '<rail>_V').
_RAIL_VOLTS = {
    "P2V5_V": 2.5,
    "P5V_V": 5.0,
    "P6V_V": 6.0,
    "N6V_V": -6.0,
    "P17V_V": 17.0,
    "N17V_V": -17.0,
    "P35V_V": 35.0,
    "N35V_V": -35.0,
    "P100V_V": 100.0,
    "N100V_V": -100.0,
    "USER_V": 0.0,
    "HEATER_V": 12.0,
}


def conpars_hdu(spec: ExposureSpec) -> fits.BinTableHDU:
    rows = conpars_rows(spec)
    return fits.BinTableHDU.from_columns(
        [
            fits.Column(name="Keyword", format="20A", array=[k for k, _ in rows]),
            fits.Column(name="Value", format="20A", array=[v for _, v in rows]),
        ],
        name="CONPARS",
    )


# --------------------------------------------------------------------------
# Building and writing
# --------------------------------------------------------------------------


def _image_hdus(spec: ExposureSpec) -> list:
    """PRIMARY + the four amplifiers: what pass 1 writes."""
    primary = fits.PrimaryHDU(header=primary_header(spec))
    pixels = amplifier_pixels(spec)
    return [primary] + [_amp_hdu(spec, amp, _stored(px)) for amp, px in zip((1, 2, 3, 4), pixels)]


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
    file and a rename; see the module docstring).  ``two_pass=False`` writes
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


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
