"""The systemd unit and the example production configurations shipped in the tree."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool
from modsingest import config

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "units" / "modsingest.service"
CONFIGS = {"mods1": ROOT / "etc" / "mods1.yaml", "mods2": ROOT / "etc" / "mods2.yaml"}


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}}; systemd allows a key more than once."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a unit line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit():
    return read_unit(UNIT)


def one(unit, section, key):
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= missing"
    return values[-1]


@pytest.mark.parametrize(
    "key, expected",
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "on-failure"),
        ("User", "modsingest"),
        ("Group", "modsingest"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "read-only"),
        ("StateDirectory", "modsingest"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("UMask", "0022"),
        ("TimeoutStopSec", "30"),
        ("KillMode", "mixed"),
        (
            "ExecStart",
            "/opt/modsingest/.venv/bin/modsingest watch --config /etc/modsingest/modsingest.yaml",
        ),
    ],
)
def test_service_directive(unit, key, expected):
    assert one(unit, "Service", key) == expected


def test_a_configuration_that_cannot_work_is_not_restarted_forever(unit):
    from modsingest.commands import CONFIG_ERROR, CONFIG_INVALID

    assert one(unit, "Service", "RestartPreventExitStatus") == str(CONFIG_INVALID)
    assert CONFIG_ERROR != CONFIG_INVALID  # a missing directory (2) is still retried


def test_watchdog_and_restart_delay_are_set(unit):
    assert int(one(unit, "Service", "WatchdogSec")) >= 10
    assert int(one(unit, "Service", "RestartSec")) > 0


def test_only_outputs_are_writable(unit):
    writable = " ".join(unit["Service"]["ReadWritePaths"]).split()
    # newdata and processed (/home/data, under the read-only /home); state comes from
    # StateDirectory=.  The raw directories must never be writable.
    assert sorted(writable) == ["/home/data", "/lbt/data/new"]
    assert not any(p.startswith("/data") for p in writable)


def test_no_capabilities_and_not_root(unit):
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    assert one(unit, "Service", "User") != "root"


def test_network_families_allow_udp_and_notification(unit):
    families = one(unit, "Service", "RestrictAddressFamilies").split()
    assert {"AF_UNIX", "AF_INET"} <= set(families)


def test_install_section_keeps_the_dataman_name(unit):
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert one(unit, "Install", "Alias") == "dataMan.service"


def test_systemd_analyze_finds_nothing_but_the_missing_binary(tmp_path):
    analyze = require_tool("systemd-analyze", "systemd")
    # Verified under a copy whose ExecStart is an existing program: the real binary
    # exists only on an installed machine.
    copy = tmp_path / "modsingest.service"
    copy.write_text(re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", UNIT.read_text()))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Unknown" not in result.stderr, result.stderr


# -- example configurations -----------------------------------------------------


def localised(text: str, tmp_path: Path) -> str:
    """The configuration with each absolute directory replaced by an existing temp dir
    (the loader refuses missing directories)."""

    def swap(match: re.Match) -> str:
        target = tmp_path / match.group(1).strip("/").replace("/", "_")
        target.mkdir(exist_ok=True)
        return f"{match.group(0)[0]}{target}"

    return re.sub(r"[\s-](/(?:data|lbt|home|var)/[\w/.-]+)", swap, text)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_example_config_loads_with_production_values(name, tmp_path):
    text = CONFIGS[name].read_text()
    settings = config.loads(localised(text, tmp_path), CONFIGS[name])
    raw_names = [p.name for p in settings.paths.raw]
    assert raw_names == [f"data_{name}b", f"data_{name}r"]
    assert settings.paths.newdata.name == "lbt_data_new"
    assert settings.paths.processed.name == "home_data"
    assert settings.paths.state.name == "var_lib_modsingest"
    assert settings.watch.method == "poll"
    assert settings.udp.enabled is True
    assert (settings.udp.host, settings.udp.port) == ("0.0.0.0", 10301)
    assert settings.udp.allow_quit is False
    assert settings.enabled_steps == config.DEFAULT_STEPS
    assert settings.metrics.host == "127.0.0.1"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_example_config_comments_every_key(name):
    lines = CONFIGS[name].read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key_line = re.match(r"^\s*(?:- )?[\w]+:", line)
        if not key_line:
            continue
        commented = "#" in line or lines[i - 1].strip().startswith("#")
        assert commented, f"{CONFIGS[name].name}:{i + 1}: key without a comment: {line!r}"
