"""Step ``geometry``: DETSEC, CCDSEC, LTM/LTV and MODSQUAD of each amplifier;
CCDROI, CCDXBIN, CCDYBIN in the primary.

azcam's sections are right for the full frame only (it anchors IM2/IM4 at the
CCD's right edge and IM3/IM4 at its top whatever the ROI) and the incumbent
ignored binning; every value here comes from the one model in
``modsingest.geometry``.
"""

from __future__ import annotations

from modsingest.processing.geometry import MERGED_QUADRANT, readout_from_headers

_FLIP = {1: "flipped top-bottom", 2: "flipped both ways", 3: "flipped top-bottom", 4: "flipped both ways"}


def run(frame, ctx) -> list[str]:
    readout, warnings = readout_from_headers(frame.primary, [a.header for a in frame.amps])
    for amp in frame.amps:
        section = readout.amp_section(amp.number)
        h = amp.header
        h["DETSEC"] = (str(section), "Detector section (corrected)")
        h["CCDSEC"] = (str(section), "CCD section (corrected)")
        for key, value in section.wcs_cards().items():
            h[key] = (value, "CCD to image transformation (corrected)")
        quadrant = MERGED_QUADRANT[amp.number]
        h["MODSQUAD"] = (f"Q{quadrant}", f"MERGED quadrant ({_FLIP[amp.number]})")
    p = frame.primary
    p["CCDROI"] = (readout.roi, "CCD readout ROI [x1:x2,y1:y2] unbinned")
    p["CCDXBIN"] = (readout.xbin, "CCD X-axis binning factor")
    p["CCDYBIN"] = (readout.ybin, "CCD Y-axis binning factor")
    return warnings
