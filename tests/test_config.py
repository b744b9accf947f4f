"""Configuration: strict keys, typed values, file:line: key in every error, Y/N booleans."""

import pytest

from modsingest.config import ConfigError, StepSpec, load, loads, parse_bool


@pytest.fixture
def dirs(tmp_path):
    for name in ("raw1", "raw2", "new", "proc", "state"):
        (tmp_path / name).mkdir()
    return tmp_path


def base(d):
    return (
        "paths:\n"
        f"  raw: [{d}/raw1, {d}/raw2]\n"
        f"  newdata: {d}/new\n"
        f"  processed: {d}/proc\n"
        f"  state: {d}/state\n"
    )


def test_minimal_config_has_sensible_defaults(dirs):
    s = loads(base(dirs), dirs / "c.yaml")
    assert s.paths.raw == (dirs / "raw1", dirs / "raw2")
    assert s.workers == 1 and s.watch.method == "inotify" and s.watch.conpars_grace == 10.0
    assert s.enabled_steps == ("geometry", "timestamps", "temperatures", "archive", "merged")
    assert s.udp.enabled is False and s.udp.port == 10301 and s.udp.allow_quit is False


@pytest.mark.parametrize(
    "word, value",
    [
        ("N", False),
        ("n", False),
        ("no", False),
        ("Y", True),
        ("yes", True),
        ("true", True),
        ("False", False),
        ("off", False),
    ],
)
def test_step_switches_accept_y_and_n(dirs, word, value):
    s = loads(base(dirs) + f"steps:\n  - geometry\n  - timestamps: {word}\n  - merged\n", "c.yaml")
    assert s.steps == (StepSpec("geometry"), StepSpec("timestamps", value), StepSpec("merged"))
    assert ("timestamps" in s.enabled_steps) is value


def test_steps_as_mapping_keep_their_order(dirs):
    s = loads(base(dirs) + "steps:\n  merged: Y\n  archive: N\n  geometry: yes\n", "c.yaml")
    assert [x.name for x in s.steps] == ["merged", "archive", "geometry"]
    assert s.enabled_steps == ("merged", "geometry")


def test_the_incumbents_N_means_off():
    assert parse_bool("N") is False
    with pytest.raises(ValueError):
        parse_bool("maybe")


@pytest.mark.parametrize(
    "extra, line, key",
    [
        ("wokers: 2\n", 6, "wokers"),
        ("watch:\n  metod: poll\n", 7, "watch.metod"),
        ("watch:\n  method: fanotify\n", 7, "watch.method"),
        ("watch:\n  poll_interval: -1\n", 7, "watch.poll_interval"),
        ("workers: two\n", 6, "workers"),
        ("udp:\n  allow_quit: perhaps\n", 7, "udp.allow_quit"),
        ("udp:\n  port: 70000\n", 7, "udp.port"),
        ("steps:\n  - geometry: maybe\n", 7, "steps.geometry"),
        ("steps:\n  - geometry\n  - geometry\n", 8, "steps.geometry"),
    ],
)
def test_errors_name_file_line_and_key(dirs, extra, line, key):
    path = dirs / "bad.yaml"
    path.write_text(base(dirs) + extra)
    with pytest.raises(ConfigError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: {key}"), message
    assert "\n" not in message


def test_missing_directory_is_an_error_naming_it(dirs):
    text = base(dirs).replace(f"{dirs}/proc", f"{dirs}/nowhere")
    with pytest.raises(ConfigError, match=r"c.yaml:4: paths.processed: directory .*nowhere does not exist"):
        loads(text, dirs / "c.yaml")


def test_missing_required_path(dirs):
    text = "\n".join(line for line in base(dirs).splitlines() if "state" not in line)
    with pytest.raises(ConfigError, match="paths.state: missing"):
        loads(text, "c.yaml")


def test_relative_paths_resolve_against_the_config_file(dirs):
    text = "paths:\n  raw: [raw1]\n  newdata: new\n  processed: proc\n  state: state\n"
    path = dirs / "rel.yaml"
    path.write_text(text)
    assert load(path).paths.newdata == dirs / "new"


def test_invalid_yaml_is_one_line(dirs):
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: not valid YAML"):
        loads("paths: [unclosed\n", "c.yaml")
