"""The keyword tables of the telescope and instrument header blocks.

Transcribed from azcam-mods' templates (``modsTCS_left/right.txt`` and
``instHdr_MODSnC.txt``): each line is keyword, value type, comment, and the
range the simulator draws a plain number from (empty when the value is
computed or fixed in ``headers.py``).  Kept apart from ``headers.py`` because
the exposure spec checks its ``nocomm`` names against these tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Telescope block (modsTCS_left/right.txt): keyword, type, comment, range of
# the simulated value for plain numbers ('' when computed in headers.py).
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
class TemplateKeyword:
    """One line of a header template: what azcam writes and how the simulator fills it.

    ``low``/``high`` bound the uniform draw of a plain number; both None when
    the value is computed or fixed rather than drawn.
    """

    name: str
    type: str
    comment: str
    low: float | None
    high: float | None

    def draw(self, rng: np.random.Generator) -> float:
        """A plain number from the keyword's range (one uniform draw of ``rng``)."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.name}: no range in the table; its value must be given")
        return float(rng.uniform(self.low, self.high))


def _parse_table(text: str) -> tuple[TemplateKeyword, ...]:
    rows = []
    for line in text.strip().splitlines():
        name, typ, comment, rng = line.split("|")
        low = high = None
        if rng:
            low, high = (float(v) for v in rng.split(","))
        rows.append(TemplateKeyword(name, typ, comment, low, high))
    return tuple(rows)


TCS_KEYWORDS = _parse_table(_TCS_TABLE)
INSTRUMENT_KEYWORDS = _parse_table(_INST_TABLE)
TCS_AND_INSTRUMENT_NAMES = frozenset(k.name for k in TCS_KEYWORDS + INSTRUMENT_KEYWORDS)
