"""The admin's command line (issue 10): check-config, --version, --help, quiet and clear output."""

import os
import subprocess
from pathlib import Path

import pytest
from astropy.io import fits

from conftest import tiny_raw
from modsingest.cli import main
from modsingest.commands import CONFIG_INVALID
from modsingest.version import git_commit, version_text

ROOT = Path(__file__).resolve().parents[1]


def raw_file(layout, name="mods1b.20260102.0001.fits", **kw):
    path = layout["raw"] / name
    path.write_bytes(tiny_raw(**kw))
    return path


# --------------------------------------------------------------------------- check-config
def test_check_config_accepts_a_good_configuration(layout, capsys):
    assert main(["check-config", str(layout["config"])]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out == (
        f"{layout['config']}: ok: 1 raw directory, inotify, 1 worker(s), "
        "steps geometry,timestamps,temperatures,archive,merged\n"
    )


def test_check_config_names_the_steps_switched_off(layout, capsys):
    with layout["config"].open("a") as f:
        f.write("steps:\n  merged: no\n")
    assert main(["check-config", "--config", str(layout["config"])]) == 0
    assert capsys.readouterr().out.endswith(
        "steps geometry,timestamps,temperatures,archive (default step(s) off: merged)\n"
    )


def test_check_config_does_not_need_the_state_directory_yet(layout, capsys):
    layout["state"].rmdir()
    assert main(["check-config", str(layout["config"])]) == 0
    assert not layout["state"].exists()  # it creates nothing


def test_check_config_lists_every_problem_it_can_see(layout, capsys):
    cfg = layout["config"]
    layout["newdata"].rmdir()
    layout["processed"].rmdir()
    assert main(["check-config", str(cfg)]) == 2
    out = capsys.readouterr()
    assert out.err.splitlines() == [
        f"modsingest: {cfg}:3: paths.newdata: directory {layout['newdata']} does not exist",
        f"modsingest: {cfg}:4: paths.processed: directory {layout['processed']} does not exist",
    ]
    assert out.out == f"{cfg}: 2 problem(s); modsingest watch would not start\n"


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("steps: [timestamp]\n", "{cfg}:6: steps.timestamp: no such step (known: "),
        (
            "watch:\n  settle: .nan\n",
            "{cfg}:7: watch.settle: not a number (NaN); give seconds as a plain number",
        ),
        (
            "workers: 100000\n",
            "{cfg}:6: workers: 100000 is more than 32 (each worker is a process of about 200 MB)",
        ),
    ],
)
def test_check_config_refuses_what_watch_would_refuse(layout, capsys, extra, expected):
    cfg = layout["config"]
    with cfg.open("a") as f:
        f.write(extra)
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("modsingest: " + expected.format(cfg=cfg)), err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    # watch refuses it too, with the exit status systemd does not restart
    assert main(["watch", "--config", str(cfg)]) == CONFIG_INVALID
    assert capsys.readouterr().err.startswith("modsingest: " + expected.format(cfg=cfg))


def test_check_config_refuses_raw_equal_to_newdata(layout, capsys):
    cfg = layout["config"]
    cfg.write_text(cfg.read_text().replace(f"newdata: {layout['newdata']}", f"newdata: {layout['raw']}"))
    assert main(["check-config", str(cfg)]) == 2
    assert capsys.readouterr().err.startswith(
        f"modsingest: {cfg}:3: paths.newdata: {layout['raw']} is the same directory as raw directory"
    )


def test_watch_with_a_missing_directory_exits_2_so_systemd_tries_again(layout, capsys):
    layout["newdata"].rmdir()
    assert main(["watch", "--config", str(layout["config"])]) == 2
    assert "paths.newdata: directory" in capsys.readouterr().err


def test_an_unreadable_configuration_is_one_line(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"modsingest: {tmp_path / 'nope.yaml'}: cannot read configuration: No such file or directory\n"
    )


# --------------------------------------------------------------------------- version, help
def test_version_prints_the_git_commit_of_the_checkout(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert out == f"modsingest 0.1.0 (git commit {head.stdout.strip()[:12]})"
    else:
        assert out == "modsingest 0.1.0 (git commit unknown: not installed from a git checkout)"


def test_version_without_a_checkout_says_so(tmp_path):
    assert git_commit(tmp_path) is None
    assert (
        version_text(tmp_path) == "modsingest 0.1.0 (git commit unknown: not installed from a git checkout)"
    )


def test_version_reads_packed_refs_and_worktree_links(tmp_path):
    main_git = tmp_path / "repo" / ".git"
    (main_git / "worktrees" / "wt").mkdir(parents=True)
    (main_git / "HEAD").write_text("ref: refs/heads/main\n")
    commit = "0123456789abcdef0123456789abcdef01234567"
    (main_git / "packed-refs").write_text(f"# pack-refs\n{commit} refs/heads/main\n")
    assert git_commit(tmp_path / "repo") == commit
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {main_git / 'worktrees' / 'wt'}\n")
    (main_git / "worktrees" / "wt" / "HEAD").write_text("ref: refs/heads/side\n")
    (main_git / "worktrees" / "wt" / "commondir").write_text("../..\n")
    (main_git / "refs" / "heads").mkdir(parents=True)
    (main_git / "refs" / "heads" / "side").write_text("f" * 40 + "\n")
    assert git_commit(wt) == "f" * 40


def test_help_speaks_to_users(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "delivers raw MODS exposures" in out
    assert "check-config" in out
    assert "argument parsing" not in out and "dispatch only" not in out


# --------------------------------------------------------------------------- process output
def test_process_prints_each_warning_once(layout, capsys):
    raw = raw_file(layout, conpars=False)
    assert main(["process", "--config", str(layout["config"]), str(raw)]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert text.count("no CONPARS table") == 1, text
    assert text.count("CONPARS: missing in the raw file") == 1, text


def test_quiet_process_prints_nothing_when_all_is_delivered(layout, capsys):
    raw = raw_file(layout, conpars=False)
    with layout["config"].open("a") as f:
        f.write("steps:\n  merged: no\n")
    assert main(["process", "-q", "--config", str(layout["config"]), str(raw)]) == 0
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "")


def test_quiet_process_still_prints_failures(layout, capsys):
    bad = layout["raw"] / "mods1b.20260102.0002.fits"
    bad.write_bytes(b"")
    assert main(["process", "-q", "--config", str(layout["config"]), str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        f"modsingest: {bad}: file is empty",
        "modsingest: 1 of 1 file(s) not delivered",
    ]


def test_a_run_with_a_default_step_off_says_so_in_the_log_and_the_header(layout, capsys):
    raw = raw_file(layout)
    with layout["config"].open("a") as f:
        f.write("steps:\n  merged: no\n  archive: no\n")
    assert main(["process", "--config", str(layout["config"]), str(raw)]) == 0
    out = capsys.readouterr().out
    assert (
        f"WARNING modsingest.process: default step(s) switched off in {layout['config']}: archive, merged "
        "(steps run: geometry,timestamps,temperatures)"
    ) in out
    header = fits.getheader(layout["newdata"] / raw.name)
    assert header["MSISTEPS"] == "geometry,timestamps,temperatures"
    assert header["MSIOFF"] == "archive,merged"
    assert header.comments["MSIOFF"] == "default steps switched off by the configuration"


def test_a_run_with_the_default_steps_writes_no_msioff(layout, capsys):
    raw = raw_file(layout)
    assert main(["process", "--config", str(layout["config"]), str(raw)]) == 0
    assert (
        "INFO modsingest.process: steps: geometry,timestamps,temperatures,archive,merged"
        in capsys.readouterr().out
    )
    assert "MSIOFF" not in fits.getheader(layout["newdata"] / raw.name)


def test_reprocessing_with_defaults_removes_an_earlier_msioff(layout, tmp_path, capsys):
    raw = raw_file(layout)
    with layout["config"].open("a") as f:
        f.write("steps:\n  archive: no\n")
    assert main(["process", "--config", str(layout["config"]), str(raw)]) == 0
    out = layout["newdata"] / raw.name
    again = layout["raw"] / "mods1b.20260102.0009.fits"
    os.replace(out, again)
    cfg = layout["config"]
    cfg.write_text(cfg.read_text().replace("steps:\n  archive: no\n", ""))
    assert main(["process", "--config", str(cfg), str(again)]) == 0
    assert "MSIOFF" not in fits.getheader(layout["newdata"] / again.name)


def test_check_config_beside_a_running_service_does_not_count_its_own_port(layout, capsys):
    import socket

    from modsingest.service.ledger import lock_service

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # the running service's UDP listener
    port = sock.getsockname()[1]
    cfg = layout["config"]
    with cfg.open("a") as f:
        f.write(f"udp:\n  enabled: yes\n  host: 127.0.0.1\n  port: {port}\n")
    try:
        assert main(["check-config", str(cfg)]) == 2  # no service: the port is someone else's
        assert "udp.port: UDP 127.0.0.1:" in capsys.readouterr().err
        fd = lock_service(layout["state"])
        try:
            assert main(["check-config", str(cfg)]) == 0
        finally:
            os.close(fd)
    finally:
        sock.close()
    assert capsys.readouterr().out.endswith(
        "; a service is running on this state directory, so its ports were not checked\n"
    )
