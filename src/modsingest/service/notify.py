"""Telling systemd how the service is doing (``Type=notify``, ``WatchdogSec=``).

Why no library: the protocol is one datagram of ``KEY=value`` lines sent to the
``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means Linux's abstract
namespace) -- a few lines of code.  The python-systemd binding would need the
libsystemd headers and a compiler to build on the telescope machines, for no gain.

Why it must never raise: a failed notification must not stop file delivery.  The
worst outcome is systemd's watchdog restarting a service that stopped pinging, which
is what the watchdog is for.

Why the process id is checked: the unit has ``NotifyAccess=main``, so systemd ignores
(and logs a complaint about) messages from any other process.  Worker processes
forked from the service inherit this object and ``$NOTIFY_SOCKET``; for them every
method is a silent no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger("modsingest.notify")

#: a notification must never hold up the caller for long (e.g. a stuck PID 1)
_SEND_TIMEOUT = 1.0


class Notifier:
    """sd_notify for this process; every method is a no-op outside systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self._address = socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True in the process that systemd started with a notification socket."""
        return self._address is not None and os.getpid() == self._pid

    def ready(self, status: str | None = None) -> bool:
        """Start-up finished: ``systemctl start`` returns and dependent units start."""
        fields = ["READY=1"]
        if status is not None:
            fields.append(_status_field(status))
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        """One line shown by ``systemctl status`` (e.g. counts, or what is wrong)."""
        return self.notify(_status_field(text))

    def watchdog(self) -> bool:
        """The keep-alive ping; send it every ``watchdog_interval()`` seconds."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """Shutdown has begun (systemd then shows 'deactivating' instead of a hang)."""
        return self.notify("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WatchdogSec=``), or None when off.

        Half, as systemd recommends, so one late ping does not trigger a restart.
        ``WATCHDOG_PID``, when set, must be this process (a forked worker must not ping
        for the service).
        """
        if not self.enabled:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1_000_000

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` as one message; True if it was sent.  Never raises."""
        address = self._address
        if not self.enabled or not fields or address is None:
            return False
        message = "\n".join(fields).encode("utf-8", "replace")
        try:
            with self._lock, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(_SEND_TIMEOUT)
                sock.sendto(message, address)
        except Exception as exc:  # noqa: BLE001 -- see the module docstring
            self._report_failure(exc)
            return False
        return True

    def _report_failure(self, exc: Exception) -> None:
        """Warn once, then only at debug level: a broken socket would repeat every ping."""
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(level, "systemd notification failed: %s", exc)


def socket_address(value: str) -> bytes | None:
    """``$NOTIFY_SOCKET`` as an ``AF_UNIX`` address, or None if absent or unsupported.

    ``/path`` is a file system socket, ``@name`` an abstract one (leading NUL byte).
    Other forms (e.g. the ``vsock:`` addresses of newer systemd versions, used for
    virtual machines) are not for us and turn notification off.
    """
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    return None


def _status_field(text: str) -> str:
    # A newline would start a new KEY=value line and could forge e.g. READY=1.
    return "STATUS=" + " ".join(str(text).split())
