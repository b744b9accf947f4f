"""temperatures: CCDTEMP, BASETEMP and ARCHTEMP from the CONPARS snapshot.

azcam writes CCDTEMP/BASETEMP as -999.9 (no reading) in live files; the real
readings are in the Archon STATUS snapshot that azcam appends as the CONPARS
table.  The HeaterX sensors are wired differently on the two instruments, so
which CONPARS row is the CCD and which the mount base depends on INSTRUME.

The snapshot is taken after readout, not at the start of the exposure, and
the comments say so: a reader comparing with the dewar logs must know.

A value that cannot be read becomes -999.9, the sentinel azcam already uses
for "no reading", with a warning naming the CONPARS row and what it held.
The step reads only CONPARS, which no step changes, so a rerun writes the
same values.
"""

from __future__ import annotations

from astropy.io import fits

from modsingest.fits.frame import Frame
from modsingest.processing.headerval import decimal, resolve_channel
from modsingest.processing.steps import StepContext

NO_READING = -999.9

CCD, BASE, BACKPLANE = "CCDTEMP", "BASETEMP", "ARCHTEMP"

#: At most 47 characters: a float card has no room for more.
COMMENTS = {
    CCD: "CCD temperature after readout [deg C]",
    BASE: "CCD mount base temp after readout [deg C]",
    BACKPLANE: "Archon backplane temp after readout [deg C]",
}

#: CONPARS rows of the CCD and mount base sensors, per instrument
#: (raw-format.md, CONPARS): the MODS2 HeaterX channels are swapped.
WIRING = {
    "MODS1": {CCD: "MOD10/TEMPB", BASE: "MOD10/TEMPA"},
    "MODS2": {CCD: "MOD10/TEMPA", BASE: "MOD10/TEMPB"},
}

#: The controller backplane sensor is the same row on every instrument.
BACKPLANE_ROW = "BACKPLANE_TEMP"


def run(frame: Frame, ctx: StepContext) -> list[str]:
    warnings: list[str] = []
    readings = _readings(frame, warnings)
    for keyword in (CCD, BASE, BACKPLANE):
        _write(frame.primary, keyword, readings[keyword])
    return warnings


def _readings(frame: Frame, warnings: list[str]) -> dict[str, float]:
    """The three temperatures, -999.9 for each one that cannot be had."""
    readings = dict.fromkeys((CCD, BASE, BACKPLANE), NO_READING)
    rows = frame.conpars.rows if frame.conpars is not None else None
    if not rows:
        what = "no CONPARS table" if frame.conpars is None else "CONPARS has no rows"
        warnings.append(f"{what}: {CCD}, {BASE}, {BACKPLANE} = {NO_READING}")
        return readings
    readings[BACKPLANE] = _reading(rows, BACKPLANE_ROW, BACKPLANE, warnings)
    wiring = _wiring(frame, warnings)
    if wiring is not None:
        for keyword, row in wiring.items():
            readings[keyword] = _reading(rows, row, keyword, warnings)
    return readings


def _wiring(frame: Frame, warnings: list[str]) -> dict[str, str] | None:
    """The CCD/base rows for this file's instrument, or None if it is unknown.

    An unknown instrument gets no CCD/base reading rather than a guess: reading
    the wrong sensor would put the mount temperature in CCDTEMP unnoticed.
    """
    channel, problem = resolve_channel(frame.primary.get("INSTRUME"), frame.name)
    if problem:
        if channel is None:
            problem += f": {CCD}, {BASE} = {NO_READING}"
        warnings.append(problem)
    if channel is None:
        return None
    return WIRING[channel[:5]]


def _reading(rows: dict[str, str], row: str, keyword: str, warnings: list[str]) -> float:
    """One CONPARS row as a float, or -999.9 with a warning naming row and value."""
    if row not in rows:
        warnings.append(f"CONPARS has no {row}: {keyword} = {NO_READING}")
        return NO_READING
    text = rows[row]
    try:
        return decimal(text)
    except ValueError as exc:
        warnings.append(f"CONPARS {row} = {text!r} unreadable ({exc}): {keyword} = {NO_READING}")
        return NO_READING


def _write(header: fits.Header, keyword: str, value: float) -> None:
    """Set ``keyword``: in place if azcam wrote it, else after azcam's temperature cards."""
    if keyword in header:
        header[keyword] = (value, COMMENTS[keyword])
        return
    siblings = [k for k in (CCD, BASE) if k in header]
    if siblings:
        header.set(keyword, value, COMMENTS[keyword], after=max(siblings, key=header.index))
    else:
        header[keyword] = (value, COMMENTS[keyword])
