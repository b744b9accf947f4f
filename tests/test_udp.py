"""The azcam-mods UDP trigger (docs clients.md): parsing, resolution, and the socket thread."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from modsingest.config import UdpSettings
from modsingest.service.udp import (
    MAX_DATAGRAM,
    Proc,
    Quit,
    RateLimitedLog,
    Rejection,
    UdpListener,
    parse_datagram,
    resolve,
    resolve_allow_hosts,
)

SENDER = ("192.168.1.20", 40000)
NAME = "mods1b.20260102.0002.fits"


# -- parsing ------------------------------------------------------------------


def test_full_path_on_the_archon_host_keeps_only_the_base_name():
    assert parse_datagram(f"proc /home/data/{NAME}".encode(), SENDER) == Proc(NAME, SENDER)


def test_bare_base_name_with_trailing_cr_from_the_older_client():
    assert parse_datagram(f"proc {NAME}\r".encode(), SENDER) == Proc(NAME, SENDER)


@pytest.mark.parametrize("text", [f"PROC {NAME}", f"Proc {NAME}\r\n", f"  pRoC\t{NAME}  \n"])
def test_command_word_is_case_insensitive_and_blanks_are_stripped(text):
    assert parse_datagram(text.encode(), SENDER) == Proc(NAME, SENDER)


def test_user_chosen_root_is_accepted():
    assert parse_datagram(b"proc m1bTest.0001.fits", SENDER) == Proc("m1bTest.0001.fits", SENDER)


@pytest.mark.parametrize(
    "argument",
    [
        f"../{NAME}",
        f"/home/data/../../etc/{NAME}",
        "..",
        f"/data/mods1b/{NAME}/",
        f".{NAME}",
        f"/data/mods1b/.{NAME}.tmp",
        "mods1b\x00.fits",
        "/etc/passwd",
        "mods1b\\..\\x.fits",
        "a.fits b.fits",
        "mods1b.\x1b[31m.fits",
        f"{'a' * 300}.fits",
        ".fits",
    ],
)
def test_traversal_and_odd_names_are_refused(argument):
    result = parse_datagram(f"proc {argument}".encode(), SENDER)
    assert isinstance(result, Rejection), result
    assert result.kind == "unsafe-name"


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"", "empty"),
        (b" \r\n\t", "empty"),
        (b"proc", "malformed"),
        (b"proc   \r", "malformed"),
        (b"hello world", "unknown-command"),
        (b"\xff\xfe\x00garbage", "not-utf8"),
        (b"proc caf\xe9.fits", "not-utf8"),
        (b"quit now", "malformed"),
    ],
)
def test_garbage_is_refused_with_its_kind(data, kind):
    result = parse_datagram(data, SENDER)
    assert isinstance(result, Rejection)
    assert result.kind == kind


def test_oversized_datagram_is_refused_and_the_limit_itself_is_fine():
    padded = f"proc {NAME}".encode().ljust(MAX_DATAGRAM, b" ")
    assert parse_datagram(padded, SENDER) == Proc(NAME, SENDER)
    result = parse_datagram(padded + b" ", SENDER)
    assert isinstance(result, Rejection) and result.kind == "oversized"


def test_quit_denied_by_default():
    result = parse_datagram(b"quit", SENDER)
    assert isinstance(result, Rejection) and result.kind == "quit-denied"


def test_quit_denied_when_flag_off_even_from_a_listed_host():
    result = parse_datagram(b"quit", SENDER, allow_quit=False, allow_hosts=[SENDER[0]])
    assert isinstance(result, Rejection) and result.kind == "quit-denied"


def test_quit_denied_from_an_unlisted_host():
    result = parse_datagram(b"QUIT\r\n", SENDER, allow_quit=True, allow_hosts=["192.168.1.21"])
    assert isinstance(result, Rejection) and result.kind == "quit-denied"


@pytest.mark.parametrize("allowed", [["192.168.1.20"], ["10.0.0.1", "192.168.1.0/24"]])
def test_quit_allowed_with_flag_and_listed_host_or_network(allowed):
    result = parse_datagram(b"Quit\r", SENDER, allow_quit=True, allow_hosts=allowed)
    assert result == Quit(SENDER)


def test_unresolved_host_name_in_allow_hosts_matches_nothing():
    result = parse_datagram(b"quit", SENDER, allow_quit=True, allow_hosts=["archon1"])
    assert isinstance(result, Rejection) and result.kind == "quit-denied"


def test_allow_hosts_names_are_resolved_once_and_failures_dropped():
    table = {"archon1": ["192.168.1.20"]}

    def lookup(host):
        if host not in table:
            raise OSError("no such host")
        return table[host]

    resolved = resolve_allow_hosts(["archon1", "nohost", "10.0.0.0/8"], lookup)
    assert resolved == ("192.168.1.20", "10.0.0.0/8")


# -- resolution ---------------------------------------------------------------


@pytest.fixture
def raw_dirs(tmp_path):
    dirs = [tmp_path / "mods1r", tmp_path / "mods1b"]  # red first in the configuration
    for d in dirs:
        d.mkdir()
    return dirs


def test_resolve_prefers_the_channel_directory(raw_dirs):
    red, blue = raw_dirs
    (red / NAME).write_bytes(b"x")  # a stray copy in the wrong channel's directory
    (blue / NAME).write_bytes(b"x")
    assert resolve(NAME, raw_dirs) == blue / NAME


def test_resolve_falls_back_to_the_directory_holding_the_file(raw_dirs):
    red, _ = raw_dirs
    (red / NAME).write_bytes(b"x")
    assert resolve(NAME, raw_dirs) == red / NAME
    (red / "m1bTest.0001.fits").write_bytes(b"x")
    assert resolve("m1bTest.0001.fits", raw_dirs) == red / "m1bTest.0001.fits"


def test_resolve_finds_nothing_for_a_missing_file(raw_dirs):
    assert resolve(NAME, raw_dirs) is None


def test_resolve_refuses_symlinks_folders_and_unsafe_names(raw_dirs, tmp_path):
    _, blue = raw_dirs
    secret = tmp_path / "secret.fits"
    secret.write_bytes(b"x")
    (blue / NAME).symlink_to(secret)
    assert resolve(NAME, raw_dirs) is None
    (blue / "dir.fits").mkdir()
    assert resolve("dir.fits", raw_dirs) is None
    assert resolve("../secret.fits", raw_dirs) is None
    assert resolve(str(secret), raw_dirs) is None


# -- log rate limiting --------------------------------------------------------


def test_rate_limited_log_caps_lines_per_window_and_reports_the_suppressed(caplog):
    now = [0.0]
    limiter = RateLimitedLog(logging.getLogger("test.udp"), limit=3, window=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.udp"):
        written = [limiter.log(logging.WARNING, "empty", "line %d", i) for i in range(100)]
        assert written.count(True) == 3
        assert limiter.log(logging.WARNING, "oversized", "other kind")  # own budget
        now[0] = 61.0
        assert limiter.log(logging.WARNING, "empty", "after the window")
    text = caplog.text
    assert "line 2" in text and "line 3" not in text
    assert "97 more 'empty' message(s) were suppressed" in text
    assert len(caplog.records) < 10


# -- the socket thread --------------------------------------------------------


class Recorder:
    def __init__(self, fail_first: bool = False):
        self.paths: list[Path] = []
        self.quits = 0
        self.fail_first = fail_first
        self.event = threading.Event()

    def on_proc(self, path: Path) -> None:
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("callback bug")
        self.paths.append(path)
        self.event.set()

    def on_quit(self) -> None:
        self.quits += 1
        self.event.set()


def wait_for(event: threading.Event, timeout: float = 2.0) -> bool:
    ok = event.wait(timeout)
    event.clear()
    return ok


@pytest.fixture
def sender_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.3)
    yield sock
    sock.close()


def test_listener_end_to_end_on_loopback(raw_dirs, sender_socket, monkeypatch):
    # A long receive timeout: stop() must wake the socket, not wait for the timeout.
    monkeypatch.setattr("modsingest.service.udp._POLL_SECONDS", 5.0)
    _, blue = raw_dirs
    (blue / NAME).write_bytes(b"x")
    settings = UdpSettings(
        enabled=True, host="127.0.0.1", port=0, allow_quit=True, allow_hosts=("127.0.0.1",)
    )
    rec = Recorder(fail_first=True)
    listener = UdpListener(settings, raw_dirs, rec.on_proc, rec.on_quit)
    listener.start()
    try:
        assert listener.is_alive()
        addr = listener.address
        # The first callback raises: the listener must carry on.
        sender_socket.sendto(f"proc /home/data/{NAME}".encode(), addr)
        sender_socket.sendto(b"\xff garbage", addr)
        sender_socket.sendto(b"x" * 2000, addr)
        sender_socket.sendto(b"proc ../../etc/passwd", addr)
        sender_socket.sendto(b"proc mods1b.20260102.0099.fits", addr)  # not there yet
        sender_socket.sendto(f"PROC {NAME}\r".encode(), addr)
        assert wait_for(rec.event)
        assert rec.paths == [blue / NAME]
        sender_socket.sendto(b"quit\r\n", addr)
        assert wait_for(rec.event)
        assert rec.quits == 1
        assert listener.is_alive()
        # Never a reply, whatever was sent.
        with pytest.raises(TimeoutError):
            sender_socket.recvfrom(4096)
    finally:
        started = time.monotonic()
        listener.stop()
        elapsed = time.monotonic() - started
    assert not listener.is_alive()
    assert elapsed < 1.0  # woken at once, not after the 5 s receive timeout


def test_listener_refuses_quit_from_a_host_not_listed(raw_dirs, sender_socket):
    settings = UdpSettings(
        enabled=True, host="127.0.0.1", port=0, allow_quit=True, allow_hosts=("192.168.1.20",)
    )
    rec = Recorder()
    listener = UdpListener(settings, raw_dirs, rec.on_proc, rec.on_quit)
    listener.start()
    try:
        sender_socket.sendto(b"quit", listener.address)
        assert not wait_for(rec.event, 0.3)
        assert rec.quits == 0
    finally:
        listener.stop()


def test_stop_from_the_quit_callback_does_not_deadlock(raw_dirs, sender_socket):
    settings = UdpSettings(
        enabled=True, host="127.0.0.1", port=0, allow_quit=True, allow_hosts=("127.0.0.1",)
    )
    done = threading.Event()
    holder: dict[str, UdpListener] = {}

    def on_quit():
        holder["l"].stop()
        done.set()

    listener = holder["l"] = UdpListener(settings, raw_dirs, lambda p: None, on_quit)
    listener.start()
    sender_socket.sendto(b"quit", listener.address)
    assert done.wait(2.0)
    deadline = time.monotonic() + 2.0
    while listener.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not listener.is_alive()


def test_disabled_listener_binds_nothing(raw_dirs):
    listener = UdpListener(UdpSettings(enabled=False, port=0), raw_dirs, lambda p: None, lambda: None)
    listener.start()
    assert not listener.is_alive() and listener.address is None
    listener.stop()


def test_busy_port_raises_at_start(raw_dirs):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        settings = UdpSettings(enabled=True, host="127.0.0.1", port=port)
        listener = UdpListener(settings, raw_dirs, lambda p: None, lambda: None)
        with pytest.raises(OSError):
            listener.start()
        assert not listener.is_alive()


def test_a_flood_of_garbage_costs_a_few_log_lines(raw_dirs, caplog):
    listener = UdpListener(UdpSettings(enabled=True), raw_dirs, lambda p: None, lambda: None)
    with caplog.at_level(logging.INFO, logger="modsingest.udp"):
        for i in range(500):
            listener.handle(b"\xff" * (i % 7 + 1), ("203.0.113.5", 1000 + i))
            listener.handle(b"proc ../../etc/shadow", ("203.0.113.6", 1000 + i))
            listener.handle(b"proc mods1b.20260102.0001.fits", ("203.0.113.7", 1000 + i))
    assert 3 <= len(caplog.records) <= 3 * 11  # 10 lines + 1 notice per kind


def test_a_flood_of_proc_for_a_delivered_file_costs_a_few_log_lines(raw_dirs, caplog):
    """Issue 9 item 9: 16,000 duplicates of a delivered file must not become 16,000 lines."""
    _, blue = raw_dirs
    (blue / NAME).write_bytes(b"x")
    asked: list[Path] = []

    def on_proc(path: Path) -> str | None:
        asked.append(path)
        return "already delivered and unchanged since"

    listener = UdpListener(UdpSettings(enabled=True), raw_dirs, on_proc, lambda: None)
    now = [1000.0]
    listener._limited.clock = lambda: now[0]
    with caplog.at_level(logging.INFO, logger="modsingest.udp"):
        for i in range(16000):
            listener.handle(f"proc /home/data/{NAME}".encode(), ("203.0.113.7", 1000 + i % 50000))
        during = [r.getMessage() for r in caplog.records]
        now[0] += 60.0
        listener._limited.flush()  # the listener does this every half second
        after = [r.getMessage() for r in caplog.records]
    assert len(asked) == 16000  # every request is still looked at: only the lines are limited
    assert len(during) == 11  # 10 lines, then one notice that further ones are suppressed
    assert (
        during[0] == f"udp: proc {NAME} from 203.0.113.7:1000 ignored: already delivered and unchanged since"
    )
    assert during[10] == "udp: further 'ignored' messages suppressed for up to 60 s"
    assert after[11:] == ["udp: 15990 more 'ignored' message(s) were suppressed in the last 60 s"]
    listener._limited.flush()
    assert len(caplog.records) == 12  # said once


def test_a_taken_proc_is_logged_under_its_own_limit(raw_dirs, caplog):
    _, blue = raw_dirs
    (blue / NAME).write_bytes(b"x")
    listener = UdpListener(UdpSettings(enabled=True), raw_dirs, lambda p: None, lambda: None)
    with caplog.at_level(logging.INFO, logger="modsingest.udp"):
        listener.handle(f"proc {NAME}".encode(), SENDER)
    assert [r.getMessage() for r in caplog.records] == [f"udp: proc {blue / NAME} from 192.168.1.20:40000"]


def test_garbage_is_previewed_escaped(raw_dirs, caplog):
    listener = UdpListener(UdpSettings(enabled=True), raw_dirs, lambda p: None, lambda: None)
    with caplog.at_level(logging.INFO, logger="modsingest.udp"):
        listener.handle(b"frob a\nINFO modsingest.dispatch: delivered x.fits\x1b[2J", SENDER)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == "udp: ignored datagram from 192.168.1.20:40000: unknown command 'frob'"
    with caplog.at_level(logging.INFO, logger="modsingest.udp"):
        listener.handle(b"proc a/b\x1b[2J\n.fits/", SENDER)
    assert caplog.records[-1].getMessage() == (
        "udp: ignored datagram from 192.168.1.20:40000: names a folder, not a file: 'a/b\\x1b[2J\\n.fits/'"
    )
