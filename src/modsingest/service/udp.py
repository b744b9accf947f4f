"""The azcam-mods compatibility listener: ``proc <file>`` datagrams on UDP port 10301.

Why it exists: azcam-mods (and an older client) announce each finished raw file with
one UDP datagram, and the incumbent was driven by nothing else.  Here a datagram is
only a *hint* that shortens the delay before a file is looked at: the watcher and the
periodic rescan find every file anyway, so a lost, refused or garbled datagram costs
latency, never data.  That is why this module can afford to be strict: anything that
is not plainly ``proc <one FITS file name>`` is logged and dropped.

The contract (docs clients.md): UDP/IPv4, UTF-8 text, at most 1024 bytes, **no reply
ever** (so nothing here calls ``send``).  The command word is case-insensitive and
trailing CR/LF/blanks are stripped (the older client ends the bare base name with
``\\r``).  azcam-mods sends the full path *on the Archon host*, which means nothing on
this machine, so only the base name is used and it is looked up only inside the
configured raw directories.  The incumbent let any host on the network send ``quit``;
here ``quit`` needs ``udp.allow_quit`` *and* a sender listed in ``udp.allow_hosts``.

Duplicate requests (an aborted exposure re-sends the previous name) are passed on
like any other: the ledger recognises an unchanged file by its fingerprint, and the
callback returns why it ignored the request.  That line goes through the same rate
limiter as every other line here: a flood of ``proc <a delivered file>`` (16,000 a
second on loopback) must not write 16,000 log lines a second, or journald's own rate
limit would drop the delivered and FAILED lines that matter.

The pure part (``parse_datagram``, ``resolve``) is separate from the socket thread
(``UdpListener``) so every rule can be tested without a network.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import posixpath
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modsingest.config import UdpSettings
from modsingest.logsetup import safe
from modsingest.names import is_candidate

log = logging.getLogger("modsingest.udp")

#: the contract's limit; larger datagrams are refused, not truncated
MAX_DATAGRAM = 1024
#: receive buffer: larger than any UDP payload, so an oversized datagram is seen whole
#: and refused instead of being silently cut to a plausible-looking prefix
_RECV_BUFFER = 65536
#: longest file name the file systems accept
_NAME_MAX = 255
#: how long the thread waits for a datagram before looking at the stop flag again; a
#: backstop only, since ``stop()`` wakes the thread at once
_POLL_SECONDS = 0.5

Sender = tuple[str, int]


@dataclass(frozen=True)
class Proc:
    """A request to look at the raw file with this base name (not yet resolved)."""

    name: str
    sender: Sender | None = None


@dataclass(frozen=True)
class Quit:
    """An authorised request to stop the service."""

    sender: Sender | None = None


Request = Proc | Quit


@dataclass(frozen=True)
class Rejection:
    """Why a datagram was ignored.

    ``kind`` is a short fixed word (``empty``, ``oversized``, ``not-utf8``,
    ``malformed``, ``unknown-command``, ``unsafe-name``, ``quit-denied``); it keys the
    log rate limiter, so a flood of one kind of garbage costs a few lines per minute.
    """

    kind: str
    reason: str
    sender: Sender | None = None


# ---------------------------------------------------------------------------
# The pure part
# ---------------------------------------------------------------------------


def parse_datagram(
    data: bytes,
    sender: Sender | None = None,
    *,
    allow_quit: bool = False,
    allow_hosts: Iterable[str] = (),
) -> Request | Rejection:
    """Turn one datagram into a ``Proc``/``Quit`` request or a ``Rejection``.

    ``allow_hosts`` holds IPv4 addresses or networks (``192.168.1.0/24``); host names
    must be turned into addresses beforehand (``resolve_allow_hosts``) because a pure
    function must not wait on DNS.  With the defaults, ``quit`` is always refused.
    """
    if len(data) == 0:
        return Rejection("empty", "empty datagram", sender)
    if len(data) > MAX_DATAGRAM:
        return Rejection("oversized", f"{len(data)} bytes (limit {MAX_DATAGRAM})", sender)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection("not-utf8", "not UTF-8 text", sender)
    if "\x00" in text:
        return Rejection("unsafe-name", "contains a NUL byte", sender)
    words = text.strip().split(None, 1)
    if not words:
        return Rejection("empty", "only blanks", sender)
    command = words[0].lower()
    argument = words[1].strip() if len(words) > 1 else ""
    if command == "proc":
        return _parse_proc(argument, sender)
    if command == "quit":
        return _parse_quit(argument, sender, allow_quit, allow_hosts)
    return Rejection("unknown-command", f"unknown command {_preview(words[0])}", sender)


def _parse_proc(argument: str, sender: Sender | None) -> Proc | Rejection:
    """Keep only the base name of ``argument``, after refusing anything suspicious.

    An absolute path is expected (it names the file on the Archon host) and its folder
    part is discarded; ``..`` anywhere is refused outright, because no legitimate
    client sends it and it is the usual sign of someone probing.
    """
    if not argument:
        return Rejection("malformed", "proc without a file name", sender)
    problem = _path_problem(argument)
    if problem:
        return Rejection("unsafe-name", f"{problem}: {_preview(argument)}", sender)
    name = posixpath.basename(argument)
    problem = base_name_problem(name)
    if problem:
        return Rejection("unsafe-name", f"{problem}: {_preview(argument)}", sender)
    return Proc(name, sender)


def _path_problem(argument: str) -> str | None:
    """What is wrong with the path as a whole (before taking its base name), if anything."""
    if any(part == ".." for part in argument.split("/")):
        return "path traversal ('..')"
    if argument.endswith("/"):
        return "names a folder, not a file"
    return None


def base_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a raw file name in a raw directory, or None if it can.

    Only plain, visible ``*.fits`` names of one path component are accepted.  Hidden
    names are refused because the service's own temporary files are hidden; blanks
    and control characters because no client sends them and they corrupt log lines.
    A legitimate odd name that is refused here is still found by the rescan.
    """
    if not name:
        return "no file name"
    if "/" in name or "\\" in name:
        return "not a base name"
    if name in (".", "..") or name.startswith("."):
        return "hidden name"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "blank or control character in the name"
    if len(name.encode("utf-8")) > _NAME_MAX:
        return "name too long"
    if not is_candidate(name):
        return "not a FITS file name"
    return None


def _parse_quit(
    argument: str, sender: Sender | None, allow_quit: bool, allow_hosts: Iterable[str]
) -> Quit | Rejection:
    """``quit`` only with the flag set and from a listed address (docs processing.md)."""
    if argument:
        return Rejection("malformed", f"quit takes no argument: {_preview(argument)}", sender)
    if not allow_quit:
        return Rejection("quit-denied", "quit is disabled (udp.allow_quit is false)", sender)
    address = sender[0] if sender else None
    if not host_allowed(address, allow_hosts):
        return Rejection("quit-denied", "sender is not in udp.allow_hosts", sender)
    return Quit(sender)


def host_allowed(address: str | None, allow_hosts: Iterable[str]) -> bool:
    """Is ``address`` one of ``allow_hosts`` (exact addresses or CIDR networks)?"""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in allow_hosts:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name that was not resolved: matches nothing
    return False


def resolve_allow_hosts(
    entries: Iterable[str],
    lookup: Callable[[str], Iterable[str]] | None = None,
) -> tuple[str, ...]:
    """Replace host names in ``udp.allow_hosts`` by their IPv4 addresses, once, at start.

    Addresses and networks are kept as written.  A name that does not resolve is
    logged and dropped, so a DNS failure can only make ``quit`` stricter.
    """
    lookup = lookup or _ipv4_addresses
    out: list[str] = []
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
            out.append(entry)
            continue
        except ValueError:
            pass
        try:
            addresses = list(lookup(entry))
        except OSError as exc:
            log.warning("udp: allow_hosts entry %r does not resolve (%s); ignored", entry, exc)
            continue
        out.extend(addresses)
    return tuple(out)


def _ipv4_addresses(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)
    return sorted({str(info[4][0]) for info in infos})


def resolve(name: str, raw_dirs: Sequence[Path]) -> Path | None:
    """The raw file called ``name`` inside one of ``raw_dirs``, or None.

    The directory named after the file's channel prefix (``.../mods1b`` for
    ``mods1b.*``) is tried first, then the others in configured order.  Only a regular
    file directly inside a raw directory counts: a symbolic link is refused, since it
    could point anywhere on this machine and the service would publish what it reads.
    """
    if base_name_problem(name):
        return None
    for directory in _search_order(name, raw_dirs):
        candidate = Path(directory) / name
        try:
            mode = os.lstat(candidate).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode):
            return candidate
    return None


def _search_order(name: str, raw_dirs: Sequence[Path]) -> list[Path]:
    prefix = name.split(".", 1)[0].lower()
    dirs = [Path(d) for d in raw_dirs]
    preferred = [d for d in dirs if d.name.lower() == prefix]
    return preferred + [d for d in dirs if d not in preferred]


def _preview(text: str | bytes, limit: int = 80) -> str:
    """A short, escaped rendering for log lines (no raw control characters reach the journal)."""
    return f"'{safe(text, limit)}'"


# ---------------------------------------------------------------------------
# Log rate limiting
# ---------------------------------------------------------------------------


@dataclass
class _Window:
    start: float
    count: int = 0
    suppressed: int = 0
    level: int = logging.INFO


@dataclass
class RateLimitedLog:
    """At most ``limit`` lines per ``window`` seconds for each key; counts the rest.

    Why: the port is reachable from the network, and one line per datagram would let
    a flood fill the journal and push out the lines that matter.  The keys are the
    fixed rejection kinds (not sender addresses, which a flood can vary at will), so
    the memory used is bounded too.
    """

    logger: logging.Logger
    limit: int = 10
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, _Window] = field(default_factory=dict, init=False, repr=False)

    def log(self, level: int, key: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Log ``msg`` unless ``key`` is over its limit; True when a line was written."""
        now = self.clock()
        current = self._windows.get(key)
        if current is None or now - current.start >= self.window:
            if current is not None:
                self._summary(key, current)
            current = self._windows[key] = _Window(start=now, level=level)
        if current.count < self.limit:
            current.count += 1
            self.logger.log(level, msg, *args, exc_info=exc_info)
            if current.count == self.limit:
                self.logger.log(
                    level, "udp: further '%s' messages suppressed for up to %.0f s", key, self.window
                )
            return True
        current.suppressed += 1
        return False

    def flush(self) -> None:
        """Write the count of what was suppressed in every window that has ended.

        Called by the listener every half second, so a flood that stops is still
        summed up in the log, not only when the next datagram of its kind comes.
        """
        now = self.clock()
        for key, current in list(self._windows.items()):
            if now - current.start >= self.window:
                self._summary(key, current)
                del self._windows[key]

    def _summary(self, key: str, current: _Window) -> None:
        if current.suppressed:
            self.logger.log(
                current.level,
                "udp: %d more '%s' message(s) were suppressed in the last %.0f s",
                current.suppressed,
                key,
                self.window,
            )


# ---------------------------------------------------------------------------
# The socket thread
# ---------------------------------------------------------------------------


class UdpListener:
    """Receives datagrams in a daemon thread and calls ``on_proc(path)`` / ``on_quit()``.

    The callbacks run in the listener's thread, so they should only hand work over
    (e.g. put the path on the detection queue); any exception they raise is logged and
    the listener carries on.  ``on_proc`` returns None when it took the request, or why
    it ignored it (already delivered and unchanged); that reason is logged here, rate
    limited.  ``start()`` raises ``OSError`` when the port cannot be
    bound, so the caller decides whether to run without the listener (the rescan still
    finds every file).
    """

    def __init__(
        self,
        udp_settings: UdpSettings,
        raw_dirs: Sequence[Path],
        on_proc: Callable[[Path], str | None],
        on_quit: Callable[[], None],
        *,
        rate_limit: int = 10,
        rate_window: float = 60.0,
    ):
        self.settings = udp_settings
        self.raw_dirs = tuple(Path(d) for d in raw_dirs)
        self._on_proc = on_proc
        self._on_quit = on_quit
        self._limited = RateLimitedLog(log, limit=rate_limit, window=rate_window)
        # Host names match nothing until start() has looked them up.
        self._allow_hosts: tuple[str, ...] = tuple(udp_settings.allow_hosts)
        self._sock: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.address: Sender | None = None

    # -- life cycle ---------------------------------------------------------

    def start(self) -> None:
        """Bind the port and start the thread; does nothing when ``udp.enabled`` is false."""
        if not self.settings.enabled:
            log.info("udp: listener disabled (udp.enabled is false)")
            return
        if self._thread is not None:
            raise RuntimeError("UdpListener.start() called twice")
        if self.settings.allow_quit:
            self._allow_hosts = resolve_allow_hosts(self.settings.allow_hosts)
        self._sock = self._bind()
        self.address = self._sock.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="modsingest-udp", daemon=True)
        self._thread.start()
        log.info(
            "udp: listening on %s:%d (quit %s)",
            self.address[0],
            self.address[1],
            f"allowed from {', '.join(self._allow_hosts) or 'nobody'}"
            if self.settings.allow_quit
            else "disabled",
        )

    def _bind(self) -> socket.socket:
        # No SO_REUSEADDR: for UDP it would let a second instance bind the same port
        # and silently take the datagrams.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.settings.host, self.settings.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def stop(self, timeout: float = 2.0) -> None:
        """Stop promptly: wake the thread through its wake-up socket, then wait for it.

        (Neither closing nor shutting down a UDP socket reliably wakes a thread blocked
        on it, hence the separate wake-up socket pair.)  Safe to call from a callback,
        e.g. ``on_quit`` stopping the service: the thread then ends after the callback
        returns instead of joining itself.
        """
        self._stopping.set()
        thread, wake = self._thread, self._wake_w
        if wake is not None:
            try:
                wake.send(b"x")
            except OSError:
                pass  # already closed by the thread, or its buffer is full: it is waking anyway
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("udp: listener thread did not stop within %.1f s", timeout)
                return
        if wake is not None:
            self._wake_w = None
            wake.close()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the thread ---------------------------------------------------------

    def _run(self) -> None:
        sock, wake = self._sock, self._wake_r
        assert sock is not None and wake is not None
        selector = selectors.DefaultSelector()  # epoll: no FD_SETSIZE limit, unlike select()
        try:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while not self._stopping.is_set():
                ready = {key.fileobj for key, _ in selector.select(_POLL_SECONDS)}
                if wake in ready or self._stopping.is_set():
                    break
                if sock in ready:
                    self._receive_one(sock)
                self._limited.flush()
        finally:
            selector.close()
            self._close_sockets()

    def _receive_one(self, sock: socket.socket) -> None:
        try:
            data, sender = sock.recvfrom(_RECV_BUFFER)
        except BlockingIOError:
            return
        except OSError as exc:
            self._limited.log(logging.ERROR, "recv-error", "udp: receive failed: %s", exc)
            self._stopping.wait(1.0)  # never spin on a persistent error
            return
        try:
            self.handle(data, sender)
        except BaseException:  # the listener must outlive any bug downstream
            self._limited.log(logging.ERROR, "handler-error", "udp: error handling a datagram", exc_info=True)

    def _close_sockets(self) -> None:
        # The wake-up writer is closed by stop(), the only other thread using it.
        for sock in (self._sock, self._wake_r):
            if sock is not None:
                sock.close()

    def handle(self, data: bytes, sender: Sender | None) -> None:
        """Act on one datagram (public so the service's tests can drive it directly)."""
        result = parse_datagram(
            data, sender, allow_quit=self.settings.allow_quit, allow_hosts=self._allow_hosts
        )
        who = _who(sender)
        if isinstance(result, Rejection):
            self._limited.log(
                logging.WARNING,
                result.kind,
                "udp: ignored datagram from %s: %s",
                who,
                result.reason,
            )
        elif isinstance(result, Quit):
            log.warning("udp: quit requested by %s", who)
            self._call("on_quit", self._on_quit)
        else:
            self._proc(result, who)

    def _proc(self, request: Proc, who: str) -> None:
        path = resolve(request.name, self.raw_dirs)
        if path is None:
            self._limited.log(
                logging.INFO,
                "not-found",
                "udp: proc %s from %s: not in any raw directory (yet); the rescan will find it",
                request.name,
                who,
            )
            return
        ignored = self._call("on_proc", self._on_proc, path)
        if ignored:
            self._limited.log(
                logging.INFO, "ignored", "udp: proc %s from %s ignored: %s", path.name, who, ignored
            )
        else:
            self._limited.log(logging.INFO, "proc", "udp: proc %s from %s", path, who)

    def _call(self, what: str, callback: Callable[..., object], *args: object) -> object:
        try:
            return callback(*args)
        except BaseException:  # a failing callback must not end the listener
            self._limited.log(logging.ERROR, f"{what}-error", "udp: %s callback failed", what, exc_info=True)
            return None


def _who(sender: Sender | None) -> str:
    if not sender:
        return "an unknown sender"
    return f"{sender[0]}:{sender[1]}"
