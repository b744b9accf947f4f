"""Configuration: strict keys, typed values, file:line: key in every error, Y/N booleans."""

import os

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


ALL_STEPS = ("geometry", "timestamps", "temperatures", "archive", "merged")


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
    text = "steps:\n  - geometry\n  - timestamps: " + word + "\n  - temperatures\n  - archive\n  - merged\n"
    s = loads(base(dirs) + text, "c.yaml")
    assert s.steps == (
        StepSpec("geometry"),
        StepSpec("timestamps", value),
        StepSpec("temperatures"),
        StepSpec("archive"),
        StepSpec("merged"),
    )
    assert ("timestamps" in s.enabled_steps) is value
    assert s.default_steps_off == (() if value else ("timestamps",))


def test_a_list_is_the_complete_order(dirs):
    s = loads(base(dirs) + "steps: [merged, archive, geometry, timestamps, temperatures]\n", "c.yaml")
    assert s.enabled_steps == ("merged", "archive", "geometry", "timestamps", "temperatures")
    assert s.default_steps_off == ()


def test_a_mapping_lists_only_changes_from_the_default_order(dirs):
    """The trap of issue 10: ``{merged: no}`` once switched off every step it left out."""
    s = loads(base(dirs) + "steps:\n  merged: no\n", "c.yaml")
    assert s.steps == tuple(StepSpec(n, n != "merged") for n in ALL_STEPS)
    assert s.enabled_steps == ("geometry", "timestamps", "temperatures", "archive")
    assert s.default_steps_off == ("merged",)
    s = loads(base(dirs) + "steps:\n  archive: N\n  geometry: yes\n", "c.yaml")
    assert [x.name for x in s.steps] == list(ALL_STEPS)
    assert s.enabled_steps == ("geometry", "timestamps", "temperatures", "merged")


def test_a_list_that_leaves_out_a_default_step_is_an_error(dirs):
    with pytest.raises(ConfigError) as err:
        loads(base(dirs) + "steps:\n  - geometry\n  - merged\n", dirs / "c.yaml")
    assert str(err.value) == (
        f"{dirs / 'c.yaml'}:6: steps: the list leaves out timestamps, temperatures, archive: a list is "
        "the complete order, so name every step and switch one off with 'name: no' "
        "(or write a mapping of changes only, e.g. 'steps: {timestamps: no}')"
    )


@pytest.mark.parametrize(
    "text, line",
    [
        ("steps:\n  - timestamp\n", 7),
        ("steps:\n  - geometry\n  - timestamp: no\n", 8),
        ("steps:\n  merged: no\n  timestamp: no\n", 8),
    ],
)
def test_an_unknown_step_name_is_refused_with_its_line(dirs, text, line):
    with pytest.raises(ConfigError) as err:
        loads(base(dirs) + text, dirs / "c.yaml")
    assert str(err.value).startswith(f"{dirs / 'c.yaml'}:{line}: steps.timestamp: no such step (known: ")


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


@pytest.mark.parametrize(
    "extra, key, problem",
    [
        ("watch:\n  settle: .nan\n", "watch.settle", "not a number (NaN); give seconds as a plain number"),
        (
            "watch:\n  poll_interval: .inf\n",
            "watch.poll_interval",
            "inf is infinite; give a finite number of seconds",
        ),
        (
            "watch:\n  rescan_interval: -.inf\n",
            "watch.rescan_interval",
            "-inf is infinite; give a finite number of seconds",
        ),
        ("watch:\n  conpars_grace: true\n", "watch.conpars_grace", "a boolean (true) is not a number"),
        ("watch:\n  conpars_grace: -1\n", "watch.conpars_grace", "-1 must not be negative"),
        ("watch:\n  settle: '0.1'\n", "watch.settle", "'0.1' is not a number"),
        ("watch:\n  settle: abc\n", "watch.settle", "'abc' is not a number"),
        ("watch:\n  settle: 0\n", "watch.settle", "0 must be greater than 0"),
        (
            "watch:\n  settle: 1e9\n",
            "watch.settle",
            "1000000000.0 is more than the largest sensible value, 600 s",
        ),
        ("watch:\n  lookback_days: 2.5\n", "watch.lookback_days", "2.5 is not a whole number"),
        ("watch:\n  method:\n", "watch.method", "an empty value is not one of inotify, poll"),
        ("workers: 100000\n", "workers", "100000 is more than 32 (each worker is a process of about 200 MB)"),
        ("workers: 0\n", "workers", "0 must be at least 1"),
        ("workers: true\n", "workers", "a boolean (true) is not a whole number"),
        ("udp:\n  port: 1.5\n", "udp.port", "1.5 is not a whole number"),
    ],
)
def test_numbers_are_finite_numbers_in_range_in_words(dirs, extra, key, problem):
    """NaN, infinities, booleans and strings are refused, with no raw Python message."""
    with pytest.raises(ConfigError) as err:
        loads(base(dirs) + extra, dirs / "c.yaml")
    assert (
        str(err.value) == f"{dirs / 'c.yaml'}:7: {key}: {problem}"
        if "\n  " in extra
        else (f"{dirs / 'c.yaml'}:6: {key}: {problem}")
    )


def test_zero_conpars_grace_is_allowed(dirs):
    assert loads(base(dirs) + "watch:\n  conpars_grace: 0\n", "c.yaml").watch.conpars_grace == 0.0


def layout_text(d, raw, newdata, processed, state):
    return f"paths:\n  raw: [{raw}]\n  newdata: {newdata}\n  processed: {processed}\n  state: {state}\n"


@pytest.mark.parametrize(
    "where, line, key, problem",
    [
        (
            dict(newdata="raw1"),
            3,
            "paths.newdata",
            "{d}/raw1 is the same directory as raw directory {d}/raw1: the service would read its own "
            "outputs as raw files (keep raw, newdata and processed apart)",
        ),
        (
            dict(processed="raw1/sub"),
            4,
            "paths.processed",
            "{d}/raw1/sub is inside raw directory {d}/raw1: the service would read its own "
            "outputs as raw files (keep raw, newdata and processed apart)",
        ),
        (
            dict(newdata="."),
            3,
            "paths.newdata",
            "{d} is contains raw directory {d}/raw1: the service would read its own "
            "outputs as raw files (keep raw, newdata and processed apart)",
        ),
        (
            dict(processed="new"),
            4,
            "paths.processed",
            "{d}/new is the same directory as paths.newdata: they are two separate copies",
        ),
        (
            dict(state="new"),
            5,
            "paths.state",
            "{d}/new is the same directory as paths.newdata: the ledger needs a directory of its own",
        ),
        (
            dict(newdata="link"),
            3,
            "paths.newdata",
            "{d}/link is the same directory as raw directory {d}/raw1: the service would read its own outputs as raw files (keep raw, newdata and processed apart)",
        ),
    ],
)
def test_directories_that_would_loop_are_refused(dirs, where, line, key, problem):
    (dirs / "raw1" / "sub").mkdir()
    (dirs / "link").symlink_to(dirs / "raw1")
    chosen = dict(raw="raw1", newdata="new", processed="proc", state="state") | where
    path = dirs / "loop.yaml"
    path.write_text(layout_text(dirs, **chosen))
    for require_dirs in (True, False):
        with pytest.raises(ConfigError) as err:
            load(path, require_dirs=require_dirs)
        assert str(err.value) == f"{path}:{line}: {key}: " + problem.format(d=dirs)


def test_two_raw_entries_for_one_directory_are_refused(dirs):
    text = base(dirs).replace(f"{dirs}/raw2", f"{dirs}/raw1/")
    with pytest.raises(
        ConfigError, match=r"c.yaml:2: paths.raw\[1\]: .*raw1 is the same directory as paths.raw\[0\]"
    ):
        loads(text, dirs / "c.yaml")


def test_without_required_directories_missing_ones_are_problems_not_errors(dirs):
    """status and check-config must work during an outage (issue 10)."""
    from modsingest.config import check_directories

    text = base(dirs).replace(f"{dirs}/new", f"{dirs}/gone-new").replace(f"{dirs}/raw2", f"{dirs}/gone-raw")
    path = dirs / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="does not exist"):
        load(path)
    settings = load(path, require_dirs=False)
    assert check_directories(settings) == [
        f"{path}:2: paths.raw[1]: directory {dirs}/gone-raw does not exist",
        f"{path}:3: paths.newdata: directory {dirs}/gone-new does not exist",
    ]


def test_a_file_where_a_directory_should_be_and_an_unwritable_one(dirs, monkeypatch):
    from modsingest import config
    from modsingest.config import check_directories

    (dirs / "proc").rmdir()
    (dirs / "proc").write_text("not a directory")
    path = dirs / "c.yaml"
    path.write_text(base(dirs))
    settings = load(path, require_dirs=False)
    real_access = os.access
    # tests run as root, for whom os.access says yes to everything: ask as an unprivileged user would
    monkeypatch.setattr(
        config.os, "access", lambda p, mode: False if str(p).endswith("/new") else real_access(p, mode)
    )
    problems = check_directories(settings)
    assert problems[0].startswith(
        f"{path}:3: paths.newdata: directory {dirs}/new is not writable by this user ("
    )
    assert problems[1:] == [f"{path}:4: paths.processed: {dirs}/proc is not a directory"]


def test_check_all_allows_a_state_directory_systemd_has_not_made_yet(dirs):
    from modsingest.config import check_all

    (dirs / "state").rmdir()
    path = dirs / "c.yaml"
    path.write_text(base(dirs))
    settings, problems = check_all(path)
    assert settings is not None and problems == []
    (dirs / "new").rmdir()
    _, problems = check_all(path)
    assert problems == [f"{path}:3: paths.newdata: directory {dirs}/new does not exist"]


def test_check_all_finds_a_udp_port_in_use(dirs):
    import socket

    from modsingest.config import check_all

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    path = dirs / "c.yaml"
    path.write_text(base(dirs) + f"udp:\n  enabled: yes\n  host: 127.0.0.1\n  port: {port}\n")
    try:
        _, problems = check_all(path)
    finally:
        sock.close()
    assert problems == [
        f"{path}:9: udp.port: UDP 127.0.0.1:{port} cannot be bound: already in use "
        "(the service itself, if it is running, or another program)"
    ]
    assert check_all(path)[1] == []


def test_check_all_reports_a_text_error_as_its_one_problem(dirs):
    from modsingest.config import check_all

    path = dirs / "c.yaml"
    path.write_text(base(dirs) + "steps: [timestamp]\n")
    settings, problems = check_all(path)
    assert settings is None and len(problems) == 1
    assert problems[0].startswith(f"{path}:6: steps.timestamp: no such step")
