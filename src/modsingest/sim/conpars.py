"""The CONPARS table: the Archon STATUS snapshot azcam appends in its second write pass."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from modsingest.sim.spec import ExposureSpec


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
