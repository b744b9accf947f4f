"""The one geometry model of a MODS Archon readout.

Everything positional in the output comes from here: the DETSEC/CCDSEC of each
amplifier, their LTM/LTV, the primary's CCDROI, and where each amplifier lands
in the MERGED image together with MERGED's own LTM/LTV/CCDSEC.  azcam's raw
sections are wrong for every ROI and the incumbent ignored binning; deriving all
of them from one small set of numbers (reference pixel, binning, array size,
overscan) is what keeps them consistent with each other.

Coordinates are unbinned CCD pixels, 1-based, inclusive, as in FITS sections.
Amplifiers (raw-format.md): IM1 lower-left, IM2 lower-right read in -x, IM3
upper-left, IM4 upper-right read in -x; rows always run in +y.
"""

from __future__ import annotations

from dataclasses import dataclass


class GeometryError(ValueError):
    """The header numbers do not describe a readout this model can place."""


@dataclass(frozen=True)
class Axis:
    """A section along one axis: first and last CCD pixel in readout order.

    ``start`` is the CCD pixel read first (image pixel 1), ``stop`` the last;
    ``start > stop`` means the axis is read in the -direction.
    """

    start: int
    stop: int
    binning: int

    @property
    def step(self) -> int:
        return 1 if self.stop >= self.start else -1

    @property
    def ltm(self) -> float:
        """IRAF LTM: image = LTM * physical + LTV."""
        return self.step / self.binning

    @property
    def ltv(self) -> float:
        """IRAF LTV placing image pixel 1 on the centre of the first pixel block.

        The block of ``binning`` CCD pixels read first starts at ``start``; its
        centre is ``start + step*(binning-1)/2``.  Requiring image pixel 1 there
        (and hence, with LTM = step/binning, the last image pixel on the last
        block's centre) gives the value below.
        """
        centre = self.start + self.step * (self.binning - 1) / 2
        return 1 - self.ltm * centre

    def section(self) -> str:
        return f"{self.start}:{self.stop}"


@dataclass(frozen=True)
class Section:
    """A 2-D section: x and y axes in readout order."""

    x: Axis
    y: Axis

    def __str__(self) -> str:
        return f"[{self.x.section()},{self.y.section()}]"

    def wcs_cards(self) -> dict[str, float]:
        return {"LTM1_1": self.x.ltm, "LTM2_2": self.y.ltm, "LTV1": self.x.ltv, "LTV2": self.y.ltv}


#: Which MERGED quadrant each amplifier becomes (processing.md, "merged").
MERGED_QUADRANT = {1: 3, 2: 4, 3: 1, 4: 2}

#: Light-sensitive columns in each half of the e2v CCD231-68 (unbinned).  Each
#: half's serial prescan lies between them and the CCD's outer edge, so the
#: prescan per side is REF-PIX1 - 4096 (50 in 2026 files, 48 in December 2025).
ACTIVE_HALF = 4096


@dataclass(frozen=True)
class Readout:
    """One exposure's readout geometry, from the header numbers.

    ``ref_x``/``ref_y`` are REF-PIX1/2 (unbinned), ``xbin``/``ybin`` come from
    CCDSUM, ``data_cols``/``rows`` are the per-amplifier binned data columns
    (NAXIS1 - OVRSCAN1) and rows (NAXIS2).
    """

    ref_x: int
    ref_y: int
    xbin: int
    ybin: int
    data_cols: int
    rows: int
    overscan: int = 32

    def __post_init__(self) -> None:
        if self.xbin < 1 or self.ybin < 1:
            raise GeometryError(f"binning {self.xbin}x{self.ybin} is not positive")
        if self.data_cols < 1 or self.rows < 1:
            raise GeometryError(
                f"amplifier array of {self.data_cols} data columns x {self.rows} rows is empty"
            )
        if self.ref_x < 1 or self.ref_y < 1:
            raise GeometryError(f"reference pixel ({self.ref_x}, {self.ref_y}) is off the CCD")

    # The ROI, symmetric about the reference pixel, in unbinned CCD pixels.
    @property
    def x1(self) -> int:
        return self.ref_x - self.data_cols * self.xbin + 1

    @property
    def x2(self) -> int:
        return self.ref_x + self.data_cols * self.xbin

    @property
    def y1(self) -> int:
        return self.ref_y - self.rows * self.ybin + 1

    @property
    def y2(self) -> int:
        return self.ref_y + self.rows * self.ybin

    @property
    def roi(self) -> str:
        """CCDROI: the unbinned ROI, '[x1:x2,y1:y2]'."""
        return f"[{self.x1}:{self.x2},{self.y1}:{self.y2}]"

    def amp_section(self, amp: int) -> Section:
        """DETSEC (= CCDSEC) of amplifier 1..4, in readout order."""
        if amp not in (1, 2, 3, 4):
            raise GeometryError(f"amplifier {amp} is not 1..4")
        if amp in (1, 3):
            x = Axis(self.x1, self.ref_x, self.xbin)
        else:
            x = Axis(self.x2, self.ref_x + 1, self.xbin)
        if amp in (1, 2):
            y = Axis(self.y1, self.ref_y, self.ybin)
        else:
            y = Axis(self.ref_y + 1, self.y2, self.ybin)
        return Section(x, y)

    # MERGED: the DETSEC mosaic turned upside down.
    @property
    def merged_shape(self) -> tuple[int, int]:
        """numpy shape (rows, cols) of MERGED."""
        return 2 * self.rows, 2 * self.data_cols

    def merged_section(self) -> Section:
        """MERGED pixel (1,1) is the CCD block at (x1, y2); rows run in -y."""
        return Section(Axis(self.x1, self.x2, self.xbin), Axis(self.y2, self.y1, self.ybin))

    @property
    def prescan(self) -> int:
        """Serial prescan columns (unbinned) between each outer edge and the active area."""
        return self.ref_x - ACTIVE_HALF

    def active_x(self) -> tuple[int, int]:
        """First and last light-sensitive CCD column (unbinned), whatever the ROI."""
        return self.ref_x - ACTIVE_HALF + 1, self.ref_x + ACTIVE_HALF

    def merged_columns(self, lo: int, hi: int) -> slice:
        """MERGED columns holding CCD columns ``lo``..``hi`` (unbinned, inclusive).

        MERGED columns run in +x from the ROI's ``x1`` in blocks of ``xbin``;
        the range must lie inside the ROI and start and end on block edges.
        """
        if lo < self.x1 or hi > self.x2 or lo > hi:
            raise GeometryError(f"CCD columns {lo}..{hi} are not inside the ROI {self.roi}")
        if (lo - self.x1) % self.xbin or (hi - self.x1 + 1) % self.xbin:
            raise GeometryError(
                f"CCD columns {lo}..{hi} do not fall on {self.xbin}-column bins of {self.roi}"
            )
        return slice((lo - self.x1) // self.xbin, (hi - self.x1 + 1) // self.xbin)

    def merged_slot(self, amp: int) -> tuple[slice, slice, bool]:
        """Where amplifier ``amp`` goes in MERGED (numpy row 0 = FITS row 1).

        Returns (row slice, column slice, flip left-right).  Every amplifier is
        flipped top-bottom; IM2 and IM4, read in -x, are flipped left-right too.
        """
        quadrant = MERGED_QUADRANT[amp]
        ny, nd = self.rows, self.data_cols
        rows = slice(0, ny) if quadrant in (1, 2) else slice(ny, 2 * ny)
        cols = slice(0, nd) if quadrant in (1, 3) else slice(nd, 2 * nd)
        return rows, cols, amp in (2, 4)


def parse_ccdsum(value: str) -> tuple[int, int]:
    """CCDSUM 'xb yb' (trailing blanks allowed) to two integers."""
    parts = str(value).split()
    if len(parts) != 2:
        raise GeometryError(f"CCDSUM {value!r} is not two binning factors")
    try:
        xb, yb = int(parts[0]), int(parts[1])
    except ValueError:
        raise GeometryError(f"CCDSUM {value!r} is not two integers") from None
    if xb < 1 or yb < 1:
        raise GeometryError(f"CCDSUM {value!r} has a binning below 1")
    return xb, yb


def parse_section(text: str) -> tuple[int, int, int, int]:
    """'[a:b,c:d]' to (a, b, c, d)."""
    body = str(text).strip().strip("[]")
    try:
        xs, ys = body.split(",")
        a, b = (int(v) for v in xs.split(":"))
        c, d = (int(v) for v in ys.split(":"))
    except ValueError:
        raise GeometryError(f"section {text!r} is not [a:b,c:d]") from None
    return a, b, c, d


# --------------------------------------------------------------------------- from headers
#: REF-PIX1 by amplifier naming when a header has neither REF-PIX1 nor DETSIZE.
_REF_X_BY_EPOCH = {"IM": 4146, "Q": 4144}
_REF_Y = 1544


def _int_card(header, key: str) -> int | None:
    value = header.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def readout_from_headers(primary, amp_headers: list) -> tuple[Readout, list[str]]:
    """The readout of a file from its primary and amplifier headers.

    A missing REF-PIX or CCDSUM killed the incumbent's worker; here each falls
    back (REF-PIX from half of DETSIZE, then from the epoch the extension names
    tell; CCDSUM from the primary, then CCDBIN1/2) with a warning, and only a
    readout that cannot be placed at all raises ``GeometryError``.
    """
    warnings: list[str] = []
    if len(amp_headers) != 4:
        raise GeometryError(f"{len(amp_headers)} amplifier extensions, expected 4")
    first = amp_headers[0]
    shapes = {(_int_card(h, "NAXIS1"), _int_card(h, "NAXIS2")) for h in amp_headers}
    if len(shapes) != 1:
        raise GeometryError(f"amplifiers differ in size: {sorted(shapes)}")
    naxis1, naxis2 = shapes.pop()
    if naxis1 is None or naxis2 is None:
        raise GeometryError("amplifier NAXIS1/NAXIS2 unreadable")

    ref_x, ref_y = _int_card(primary, "REF-PIX1"), _int_card(primary, "REF-PIX2")
    if ref_x is None or ref_y is None:
        detsize = primary.get("DETSIZE", first.get("DETSIZE"))
        guess = None
        if detsize is not None:
            try:
                _, dx, _, dy = parse_section(detsize)
                guess = (dx // 2, dy // 2)
                source = f"half of DETSIZE {detsize}"
            except GeometryError:
                guess = None
        if guess is None:
            epoch = "Q" if str(first.get("EXTNAME", "")).upper().startswith("Q") else "IM"
            guess = (_REF_X_BY_EPOCH[epoch], _REF_Y)
            source = f"the {'2025' if epoch == 'Q' else '2026'} geometry"
        warnings.append(
            f"REF-PIX1/REF-PIX2 missing or unreadable ({primary.get('REF-PIX1')!r}, "
            f"{primary.get('REF-PIX2')!r}); used {guess[0]},{guess[1]} from {source}"
        )
        ref_x = ref_x if ref_x is not None else guess[0]
        ref_y = ref_y if ref_y is not None else guess[1]

    ccdsum = first.get("CCDSUM", primary.get("CCDSUM"))
    try:
        xbin, ybin = parse_ccdsum(ccdsum)
    except GeometryError as exc:
        b1, b2 = _int_card(primary, "CCDBIN1"), _int_card(primary, "CCDBIN2")
        if not (b1 and b2):
            raise GeometryError(f"{exc}, and no CCDBIN1/CCDBIN2") from None
        xbin, ybin = b1, b2
        warnings.append(f"{exc}; used CCDBIN1/CCDBIN2 = {b1} {b2}")
    for h in amp_headers[1:]:
        other = h.get("CCDSUM")
        if other is not None and str(other).split() != [str(xbin), str(ybin)]:
            warnings.append(f"{h.get('EXTNAME')} CCDSUM {other!r} differs from {xbin} {ybin}")

    overscan = _int_card(first, "OVRSCAN1")
    if overscan is None:
        overscan = 32
        warnings.append("OVRSCAN1 missing; used 32")
    readout = Readout(
        ref_x=ref_x,
        ref_y=ref_y,
        xbin=xbin,
        ybin=ybin,
        data_cols=naxis1 - overscan,
        rows=naxis2,
        overscan=overscan,
    )
    if readout.x1 < 1 or readout.y1 < 1:
        warnings.append(f"ROI {readout.roi} extends beyond the CCD: REF-PIX and array size disagree")
    return readout, warnings
