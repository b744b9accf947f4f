"""The keyword dictionary: the shipped file, its validation, the config override, `modsingest check`."""

import json
import shutil
from pathlib import Path

import pytest
from astropy.io import fits

from conftest import tiny_raw
from modsingest import keywords
from modsingest.cli import main
from modsingest.config import ConfigError, load

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_dictionary_encodes_the_archive_rules():
    kd = keywords.shipped()
    assert kd.blank == "None" and kd.no_blank_strings == ("primary",)
    # rule 5 and 6: constants in processing.md's order, values and types as the incumbent wrote them
    defaults = [(k.name, k.default, type(k.default)) for k in kd.where(presence="default")]
    assert defaults == [
        ("OBJRADEC", "FK5", str),
        ("OBJEQUIN", "J2000", str),
        ("OBJEPOCH", 2000.0, float),
        ("GUINAME", "None", str),
        ("GUIRADEC", "FK5", str),
        ("GUIEQUIN", "J2000", str),
        ("GUIPMRA", 0.0, float),
        ("GUIPMDEC", 0.0, float),
        ("GUIEPOCH", 2000.0, float),
        ("NSTYPE", "None", str),
        ("NSEPHFIL", "None", str),
    ]
    # rule 11: what modsDisp/modsAlign read without checking (clients.md), in HDU 0 and HDU 6
    required = kd.where(presence="required")
    assert [k.name for k in required] == [
        "IMAGETYP",
        "OBJECT",
        "INSTRUME",
        "CHANNEL",
        "FILTNAME",
        "MASKNAME",
        "MASKPOS",
    ]
    assert all(k.hdus == ("primary", "merged") for k in required)
    assert [k.name for k in kd.where(type="degrees")] == ["TELALT", "TELAZ"]
    assert [k.name for k in kd.where(type="logical")] == ["NONSIDER"]
    assert [k.name for k in kd.where(presence="removed")] == ["NEXTEND"]
    assert [k.name for k in kd.where() if k.upper] == ["IMAGETYP"]
    assert kd["ZD"].blank == -99.99 and kd["ZD"].after == ("TELAZ", "TELALT")
    assert kd["INSTRUME"].allowed == ("MODS1B", "MODS1R", "MODS2B", "MODS2R")
    assert kd["CCDXBIN"].allowed == (1, 2)


def entry_problems(name, value):
    return keywords.shipped()[name].problems(value)


def test_values_are_held_to_type_allowed_pattern_and_case():
    assert entry_problems("TELALT", 45.2) == [] and entry_problems("TELALT", 45) == []
    assert entry_problems("TELALT", "+45:12:30") == ["'+45:12:30' is not decimal degrees"]
    assert entry_problems("NONSIDER", 0) == ["0 is not a logical (T/F)"]
    assert entry_problems("NONSIDER", False) == []
    assert entry_problems("CCDXBIN", 3) == ["3 is not one of 1, 2"]
    assert entry_problems("CCDXBIN", True) == ["True is not an integer"]
    assert entry_problems("IMAGETYP", "object") == ["'object' is not upper case"]
    assert entry_problems("IMAGETYP", "None") == []  # the blank value always conforms
    assert entry_problems("ZD", -99.99) == []
    assert entry_problems("UNIQNAME", "mods1b.20260102.030405.fits") == []
    assert entry_problems("UNIQNAME", "mods1b.20260102.0001.fits") == [
        r"'mods1b.20260102.0001.fits' does not match mods[12][br]\.\d{8}\.\d{6}\.fits"
    ]


def shipped_text():
    return keywords.SHIPPED.read_text()


def line_of(text, needle, after=0):
    """1-based line of the first line containing ``needle`` at or after line ``after``."""
    lines = text.splitlines()
    return next(i for i, line in enumerate(lines, start=1) if i >= after and needle in line)


def test_a_missing_entry_the_rules_need_names_file_line_and_key(tmp_path):
    text = shipped_text()
    start, end = line_of(text, "  ZD:"), line_of(text, "  # rule 3")
    lines = text.splitlines()
    broken = "\n".join(lines[: start - 1] + lines[end - 1 :]) + "\n"
    path = tmp_path / "kw.yaml"
    path.write_text(broken)
    with pytest.raises(keywords.DictionaryError) as err:
        keywords.load(path)
    assert str(err.value) == (
        f"{path}:{line_of(broken, 'keywords:')}: keywords.ZD: missing (rule 2 of the archive step writes it)"
    )


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ("    type: logical", "    type: boolean", "keywords.NONSIDER.type", "'boolean' is not one of"),
        ("    presence: removed", "    presence: gone", "keywords.NEXTEND.presence", "'gone' is not one of"),
        ("default: 2000.0}", "default: 'J2000'}", "keywords.OBJEPOCH.default", "'J2000' is not a number"),
        (
            "    upper: true",
            "    upper: yes please",
            "keywords.IMAGETYP.upper",
            "'yes please' is not true or false",
        ),
        (
            "    allowed: [1, 2]",
            "    allowed: [1, two]",
            "keywords.CCDXBIN.allowed[1]",
            "'two' is not an integer",
        ),
        (
            "    hdus: [primary, merged]",
            "    hdus: [primary, HDU6]",
            "keywords.IMAGETYP.hdus[1]",
            "'HDU6' is not one of",
        ),
        ("    upper: true", "    uppercase: true", "keywords.IMAGETYP.uppercase", "unknown field"),
        (
            '    comment: "Target Name"',
            '    comment: ""',
            "keywords.OBJNAME.comment",
            "missing or not a string",
        ),
        ("    type: degrees", "    type: float", "keywords.TELALT.type", "must be degrees (rule 2"),
    ],
)
def test_a_wrong_entry_names_file_line_and_key(tmp_path, old, new, key, problem):
    text = shipped_text()
    assert old in text
    changed = text.replace(old, new, 1)
    path = tmp_path / "kw.yaml"
    path.write_text(changed)
    with pytest.raises(keywords.DictionaryError) as err:
        keywords.load(path)
    message = str(err.value)
    line = line_of(changed, new.strip())
    if key.endswith(".type") and "must be" in problem:
        line = line_of(changed, "  TELALT:")
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert problem in message


def test_the_configuration_overrides_the_dictionary_and_problems_are_config_errors(layout, tmp_path):
    custom = tmp_path / "site-keywords.yaml"
    custom.write_text(shipped_text().replace('comment: "Target Name"', 'comment: "Target name (site)"'))
    config = layout["config"]
    base = config.read_text()
    config.write_text(base + f"archive:\n  dictionary: {custom.name}\n")  # relative to the config file
    settings = load(config)
    assert settings.keywords.source == custom and settings.keywords["OBJNAME"].comment == "Target name (site)"
    custom.write_text(shipped_text().replace("    type: logical", "    type: bool"))
    with pytest.raises(ConfigError) as err:
        load(config)
    assert str(err.value).startswith(
        f"{custom}:{line_of(custom.read_text(), 'type: bool')}: keywords.NONSIDER.type: "
    )
    config.write_text(base + "archive:\n  dictionary: nowhere.yaml\n")
    with pytest.raises(ConfigError) as err:
        load(config)
    assert (
        str(err.value) == f"{config}:7: archive.dictionary: file {tmp_path / 'nowhere.yaml'} does not exist"
    )


def test_the_archive_step_applies_an_overriding_dictionary(layout, tmp_path):
    text = shipped_text().replace('comment: "Target Name"', 'comment: "Target name (site)"')
    text = text.replace(
        "  # rule 6: the non-sidereal",
        '  SITENOTE: {type: string, comment: "Site convention", presence: default, default: "LBT"}\n'
        "  # rule 6: the non-sidereal",
    )
    (tmp_path / "kw.yaml").write_text(text)
    config = layout["config"]
    config.write_text(config.read_text() + f"archive: {{dictionary: {tmp_path / 'kw.yaml'}}}\n")
    raw = layout["raw"] / "mods1b.20260102.0001.fits"
    raw.write_bytes(tiny_raw(primary_cards={"OBJECT": "M31"}))
    assert main(["process", "--config", str(config), str(raw)]) == 0
    header = fits.getheader(layout["newdata"] / raw.name)
    assert header.comments["OBJNAME"] == "Target name (site)" and header["OBJNAME"] == "M31"
    keys = list(header.keys())
    assert header["SITENOTE"] == "LBT" and keys.index("GUIEPOCH") + 1 == keys.index("SITENOTE")


# --------------------------------------------------------------------------- modsingest check
@pytest.fixture
def processed(layout):
    names = []
    for i, name in enumerate(("mods1b.20260102.0001.fits", "mods1r.20260102.0002.fits")):
        raw = layout["raw"] / name
        raw.write_bytes(tiny_raw(seed=i, primary_cards={"INSTRUME": name[:6].upper()}))
        names.append(raw)
    assert main(["process", "--config", str(layout["config"]), *map(str, names)]) == 0
    return [layout["newdata"] / n.name for n in names], names


def test_check_passes_processed_files_and_fails_raw_ones(processed, capsys):
    outputs, raws = processed
    assert main(["check", *map(str, outputs)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{p}: conforms" for p in outputs]
    assert main(["check", str(outputs[0]), str(raws[0])]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"{outputs[0]}: conforms"
    assert lines[1] == f"{raws[0]}: 24 problem(s)"  # 11 defaults, 6 required, 3 computed, 2 expected, 2 more
    assert "  [primary] NEXTEND: must not be present" in lines
    assert (
        "  [primary] DATE-OBS: '2026-01-02' does not match \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d+"
        in lines
    )
    assert "  [primary] IMAGETYP: missing (required)" in lines
    assert err.strip().startswith("modsingest: 1 of 2 file(s) do not conform to ")


def test_check_reads_merged_and_reports_blank_strings(processed, tmp_path, capsys):
    outputs, _ = processed
    bad = tmp_path / "bad.fits"
    shutil.copy(outputs[0], bad)
    with fits.open(bad, mode="update") as hdul:
        del hdul[6].header["MASKPOS"]
        hdul[0].header["OBSERVER"] = "  "
        hdul[0].header["CCDXBIN"] = 4
    assert main(["check", str(bad)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{bad}: 3 problem(s)",
        "  [primary] CCDXBIN: 4 is not one of 1, 2",
        "  [primary] OBSERVER: blank string value (use 'None')",
        "  [MERGED] MASKPOS: missing (required)",
    ]


def test_check_json_and_unreadable_files(processed, tmp_path, capsys):
    outputs, _ = processed
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not fits at all\n" * 10)
    missing = tmp_path / "missing.fits"
    assert main(["check", "--json", str(junk), str(missing), str(outputs[1])]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["dictionary"] == str(keywords.SHIPPED) and doc["nonconforming"] == 2
    files = doc["files"]
    assert [f["file"] for f in files] == [str(junk), str(missing), str(outputs[1])]
    assert [f["ok"] for f in files] == [False, False, True]
    assert files[1]["problems"] == [{"hdu": None, "keyword": None, "problem": "no such file"}]
    assert files[0]["problems"][0]["hdu"] is None and "FITS" in files[0]["problems"][0]["problem"]
    assert files[2]["problems"] == []


def test_check_with_a_broken_dictionary_is_a_config_error(processed, tmp_path, capsys):
    outputs, _ = processed
    broken = tmp_path / "kw.yaml"
    broken.write_text(shipped_text().replace("presence: removed", "presence: nope"))
    assert main(["check", "--dictionary", str(broken), str(outputs[0])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"modsingest: {broken}:{line_of(broken.read_text(), 'presence: nope')}: keywords.NEXTEND.presence: "
    )
