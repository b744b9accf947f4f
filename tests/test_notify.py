"""systemd notification over a real AF_UNIX datagram socket, as PID 1 would receive it."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from modsingest.service.notify import Notifier, socket_address


@pytest.fixture
def systemd_socket(tmp_path):
    """A stand-in for systemd's notification socket in a temp dir."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1.0)
    yield str(path), sock
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def nothing_arrives(sock: socket.socket) -> bool:
    sock.settimeout(0.1)
    try:
        sock.recv(4096)
    except TimeoutError:
        return True
    return False


def test_messages_arrive(systemd_socket):
    path, sock = systemd_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready()
    assert received(sock) == "READY=1"
    assert n.status("3 delivered, 0 failed")
    assert received(sock) == "STATUS=3 delivered, 0 failed"
    assert n.watchdog()
    assert received(sock) == "WATCHDOG=1"
    assert n.stopping()
    assert received(sock) == "STOPPING=1"


def test_ready_with_status_is_one_message(systemd_socket):
    path, sock = systemd_socket
    Notifier({"NOTIFY_SOCKET": path}).ready("watching 2 raw directories")
    assert received(sock) == "READY=1\nSTATUS=watching 2 raw directories"


def test_status_cannot_smuggle_another_field(systemd_socket):
    path, sock = systemd_socket
    Notifier({"NOTIFY_SOCKET": path}).status("bad\nREADY=1")
    assert received(sock) == "STATUS=bad READY=1"


def test_abstract_namespace_socket():
    name = f"modsingest-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(1.0)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == "READY=1"


def test_no_op_without_systemd():
    n = Notifier({})
    assert not n.enabled
    assert not n.ready() and not n.status("x") and not n.watchdog() and not n.stopping()
    assert n.watchdog_interval() is None


def test_unusable_socket_never_raises(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing")})
    with caplog.at_level(logging.DEBUG, logger="modsingest.notify"):
        assert n.ready() is False
        assert n.watchdog() is False
    # Warn once, then only at debug level (a broken socket would repeat every ping).
    levels = [r.levelno for r in caplog.records if "notification failed" in r.message]
    assert levels == [logging.WARNING, logging.DEBUG]
    assert Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).ready() is False


def test_forked_worker_does_not_notify(systemd_socket, monkeypatch):
    path, sock = systemd_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000"})
    real_pid = os.getpid()
    monkeypatch.setattr("modsingest.service.notify.os.getpid", lambda: real_pid + 1)
    assert not n.watchdog()
    assert n.watchdog_interval() is None
    assert nothing_arrives(sock)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "{pid}"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "{other}"}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "junk"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(systemd_socket, env, expected):
    path, _ = systemd_socket
    pid = os.getpid()
    env = {k: v.format(pid=pid, other=pid + 1) for k, v in env.items()}
    assert Notifier({"NOTIFY_SOCKET": path, **env}).watchdog_interval() == expected


def test_socket_address_forms():
    assert socket_address("/run/systemd/notify") == b"/run/systemd/notify"
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("") is None
    assert socket_address("relative/path") is None
