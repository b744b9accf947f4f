"""The exposure spec: everything that decides one simulated raw file, and its choices.

An :class:`ExposureSpec` fixes the channel, date tag and start time, the ROI
and binning on one of azcam's CCD formats (:class:`Epoch`), the image type and
the quirk switches.  The other modules of this package turn a spec into header
cards, pixels, a CONPARS table and finally file bytes; the same spec always
gives the same bytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from modsingest import names
from modsingest.sim.keywords import TCS_AND_INSTRUMENT_NAMES

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


def as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def parse_binning(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    parts: list[str] | list[int]
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
        object.__setattr__(self, "binning", parse_binning(self.binning))
        keys = DEFAULT_NOCOMM if self.nocomm is True else (self.nocomm or ())
        object.__setattr__(self, "nocomm", tuple(str(k).upper() for k in keys))
        if self.utc_start is not None:
            start = as_utc(self.utc_start)
        elif self.date is not None:
            _check_date_tag(self.date)
            start = datetime.strptime(self.date, "%Y%m%d").replace(tzinfo=UTC) + timedelta(hours=4)
        else:
            now = datetime.now(UTC)
            start = now.replace(microsecond=now.microsecond // 1000 * 1000)
        object.__setattr__(self, "utc_start", start)
        if self.date is None:
            object.__setattr__(self, "date", names.observing_night(start))
        self._validate()

    def _validate(self) -> None:
        _check_choice("channel", self.channel, names.ROOTS)
        _check_choice("roi", self.roi, ROI_MODES)
        _check_choice("epoch", self.epoch, tuple(EPOCHS))
        _check_choice("imagetype", self.imagetype, IMAGE_TYPES)
        _check_choice("telalt_style", self.telalt_style, TELALT_STYLES)
        _check_choice("timezone", self.timezone, TIMEZONES)
        _check_date_tag(self.tag)
        if not 1 <= self.seq <= 9999:
            raise ValueError(f"sequence number {self.seq} is not 1..9999")
        if self.exptime < 0:
            raise ValueError(f"exposure time {self.exptime} is negative")
        if self.root is not None and (not self.root or "/" in self.root):
            raise ValueError(f"file-name root {self.root!r} must be a non-empty base name")
        if self.nocomm and not self.telescope:
            raise ValueError("nocomm needs the telescope/instrument blocks (telescope=True)")
        unknown = [k for k in self.nocomm_keys if k not in TCS_AND_INSTRUMENT_NAMES]
        if unknown:
            raise ValueError(f"nocomm keywords {unknown} are not telescope/instrument keywords")

    # The normalised fields, typed as they are after __post_init__ ---------------
    @property
    def start(self) -> datetime:
        """``utc_start`` once fixed (never None after construction)."""
        assert self.utc_start is not None
        return self.utc_start

    @property
    def tag(self) -> str:
        """``date`` once fixed: the file name's CCYYMMDD tag (never None after construction)."""
        assert self.date is not None
        return self.date

    @property
    def nocomm_keys(self) -> tuple[str, ...]:
        """``nocomm`` once normalised: upper-case keyword names (True became DEFAULT_NOCOMM)."""
        return self.nocomm if isinstance(self.nocomm, tuple) else ()

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
