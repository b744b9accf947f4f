"""archive: the primary-header conventions of the LBTO archive and on-site tools.

The archive ingests only headers in its own conventions (decimal TELALT/TELAZ,
a logical NONSIDER, upper-case IMAGETYP, no blank strings, the OBJ*/GUI* set,
a UNIQNAME), and the on-site tools read some keywords without checking that
they exist.  Each numbered rule of processing.md "archive" is one function
below, applied in the numbered order; ``RULES`` lists them.

Which keywords each rule touches, their comments, blank values, defaults and
case come from the keyword dictionary (``modsingest/keywords.yaml``, or the one
the configuration names), handed over in ``ctx.keywords``: the rules here are
the transformations, the dictionary says what they apply to.  ``modsingest
check`` holds files to the same dictionary.

Every rule maps its own output to itself, so a processed file processed again
keeps the same header: 'Up' stays 'Up', a float TELALT stays that float, the
'None' placeholders are not upper-cased to 'NONE', UNIQNAME comes from the
processed DATE-OBS and is therefore the same.

A value a rule cannot use is a warning and is left as it is: the file is
delivered either way.
"""

from __future__ import annotations

from collections.abc import Callable

from astropy.io import fits

from modsingest import keywords, names
from modsingest.fits.frame import Frame
from modsingest.keywords import KeywordDictionary
from modsingest.processing.headerval import (
    degrees,
    is_blank,
    logical,
    resolve_channel,
    start_of_exposure,
)
from modsingest.processing.steps import StepContext, fitting_comment

#: Cards with free text rather than a value: never "blank string values".
_COMMENTARY = {"COMMENT", "HISTORY", ""}

Rule = Callable[[fits.Header, Frame, KeywordDictionary], list[str]]


def run(frame: Frame, ctx: StepContext) -> list[str]:
    kd = ctx.keywords if ctx.keywords is not None else keywords.shipped()
    warnings: list[str] = []
    for rule in RULES:
        warnings.extend(rule(frame.primary, frame, kd))
    return warnings


def _after(header: fits.Header, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` present in ``header`` (where a new card goes)."""
    return next((n for n in names if n in header), None)


def _put(header: fits.Header, keyword: str, value, comment: str, after: str | None = None) -> None:
    """Set a card; a new one goes after ``after`` when that card exists.

    An existing card is updated where it is (never moved), so a rerun keeps
    the card order of the first run.
    """
    comment = fitting_comment(keyword, value, comment)
    if keyword not in header and after is not None and after in header:
        header.set(keyword, value, comment, after=after)
    else:
        header[keyword] = (value, comment)


def rule_1_decimal_telescope_angles(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """TELALT/TELAZ (the dictionary's ``type: degrees``) as decimal degrees; the
    comment is rewritten too, since a pre-2026 card's comment may still say DMS."""
    warnings = []
    for entry in kd.where(type="degrees"):
        keyword = entry.name
        if keyword not in header:
            continue
        value = header[keyword]
        try:
            header[keyword] = (degrees(value), entry.comment)
        except ValueError as exc:
            warnings.append(f"{keyword} = {value!r} unusable ({exc}): left as is")
    return warnings


def rule_2_zenith_distance(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """ZD = 90 - TELALT, or ZD's blank (-99.99) when TELALT is missing, unusable or not an altitude."""
    warnings = []
    entry = kd["ZD"]
    altitude = header.get("TELALT")
    zd = unusable = entry.blank
    if altitude is None:
        warnings.append(f"TELALT missing: ZD = {unusable}")
    elif isinstance(altitude, float) and -90.0 <= altitude <= 90.0:
        zd = 90.0 - altitude
    else:
        # rule 1 ran first: a TELALT that is not a float here could not be read.
        warnings.append(f"TELALT = {altitude!r} is not an altitude in degrees: ZD = {unusable}")
    _put(header, "ZD", zd, entry.comment, after=_after(header, entry.after))
    return warnings


def rule_3_weather_link(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """LBTWLINK '1'/'0' (a TCS boolean) as 'Up'/'Down'; a processed 'Up'/'Down' is kept.

    Absent when the telescope block is absent; then nothing is invented.
    """
    if "LBTWLINK" not in header:
        return []
    value = header["LBTWLINK"]
    state = _link_state(value)
    header["LBTWLINK"] = (state, kd["LBTWLINK"].comment)
    if state == "Unknown" and not (isinstance(value, str) and value.strip() == "Unknown"):
        return [f"LBTWLINK = {value!r} is not 1/0 or Up/Down: set to 'Unknown'"]
    return []


def _link_state(value: object) -> str:
    """'Up', 'Down' or 'Unknown' for a raw or already processed LBTWLINK."""
    if isinstance(value, bool):
        return "Up" if value else "Down"
    if isinstance(value, (int, float)):
        states: dict[float, str] = {1: "Up", 0: "Down"}
        return states.get(value, "Unknown")
    if isinstance(value, str):
        word = value.strip()
        by_word = {"1": "Up", "0": "Down", "up": "Up", "down": "Down"}
        return by_word.get(word.lower(), "Unknown")
    return "Unknown"


def rule_4_objname(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """OBJNAME = OBJECT, the archive's name for the target; the blank value ('None') without one."""
    entry = kd["OBJNAME"]
    value = header.get("OBJECT")
    if value is None or is_blank(value):
        value = entry.blank
    _put(header, "OBJNAME", value, entry.comment, after=_after(header, entry.after))
    return []


def rule_5_target_and_guide_constants(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """The OBJ*/GUI* keywords the archive requires (and rule 6's NSTYPE/NSEPHFIL):
    every ``presence: default`` entry, in the dictionary's order; a value already there wins.

    Adding rule 6's two here rather than after the blank-string pass gives the
    same header: their default is not blank, and a blank one already there is
    fixed by that pass either way.
    """
    for entry in kd.where(presence="default"):
        if entry.name not in header:
            header[entry.name] = (entry.default, entry.comment)
    return []


def rule_6_no_blank_strings(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """Blank string values become the blank value 'None' (the archive warns on blanks).

    Cards are changed by index so that a keyword that occurs twice is fixed in
    both places and every card keeps its comment and position.
    """
    if "primary" not in kd.no_blank_strings:
        return []
    for index, card in enumerate(header.cards):
        if card.keyword not in _COMMENTARY and is_blank(card.value):
            header[index] = kd.blank
    return []


def rule_7_nonsider_logical(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """NONSIDER (every ``type: logical`` entry) as a FITS logical; the TCS writes an integer 1/0."""
    warnings = []
    for entry in kd.where(type="logical"):
        if entry.name not in header:
            continue
        value = header[entry.name]
        try:
            header[entry.name] = (logical(value), entry.comment)
        except ValueError as exc:
            warnings.append(f"{entry.name} = {value!r} unusable ({exc}): left as is")
    return warnings


def rule_8_no_nextend(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """NEXTEND (every ``presence: removed`` entry) goes: azcam writes 4 although 5 or 6 extensions follow."""
    for entry in kd.where(presence="removed"):
        header.remove(entry.name, ignore_missing=True, remove_all=True)
    return []


def rule_9_imagetyp_upper(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """IMAGETYP (every ``upper: true`` entry) in upper case, as the archive and PypeIt compare it.

    The blank value 'None' is left as it is, so that a rerun does not turn it
    into 'NONE'.
    """
    warnings = []
    for entry in kd.where():
        if not entry.upper:
            continue
        value = header.get(entry.name)
        if value is None or value == entry.blank:
            continue
        if not isinstance(value, str):
            warnings.append(f"{entry.name} = {value!r} is not a string: left as is")
            continue
        header[entry.name] = value.strip().upper()
    return warnings


def rule_10_uniqname(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """UNIQNAME = <instrument>.<CCYYMMDD>.<hhmmss>.fits from DATE-OBS.

    Built from the header rather than from the clock, so processing the file
    again gives the same name.  The seconds are truncated, after the '.1000'
    carry.  Without a usable instrument or time nothing is written (an existing
    UNIQNAME from an earlier run is left alone).
    """
    channel, channel_problem = resolve_channel(header.get("INSTRUME"), frame.name)
    start, time_problem = start_of_exposure(header)
    if channel is None or start is None:
        reasons = "; ".join(p for p in (channel_problem, time_problem) if p)
        return [f"UNIQNAME not written: {reasons}"]
    stamp = f"{start.year:04d}{start.month:02d}{start.day:02d}.{start:%H%M%S}"
    _put(header, "UNIQNAME", f"{channel.lower()}.{stamp}.fits", kd["UNIQNAME"].comment)
    return [channel_problem] if channel_problem else []


def rule_11_required_keywords(header: fits.Header, frame: Frame, kd: KeywordDictionary) -> list[str]:
    """The keywords modsDisp and modsAlign read without checking (``presence: required``)
    exist, as their blank value 'None' if not: a missing one stops modsDisp's display loop."""
    warnings = []
    for entry in kd.where(presence="required"):
        keyword = entry.name
        if keyword not in header:
            value = entry.blank
            if keyword == "INSTRUME":
                # modsDisp needs one of the four channels; the raw name still says it
                value = names.channel_of_name(frame.name) or entry.blank
            header[keyword] = (value, entry.comment)
            warnings.append(f"{keyword} missing: added as {value!r}")
    return warnings


RULES: tuple[Rule, ...] = (
    rule_1_decimal_telescope_angles,
    rule_2_zenith_distance,
    rule_3_weather_link,
    rule_4_objname,
    rule_5_target_and_guide_constants,
    rule_6_no_blank_strings,
    rule_7_nonsider_logical,
    rule_8_no_nextend,
    rule_9_imagetyp_upper,
    rule_10_uniqname,
    rule_11_required_keywords,
)
