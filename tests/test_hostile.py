"""Hostile input: mutated simulated raw files never hang, crash or half-deliver.

Real files from the simulator (1k ROI, 2x2 binned: 0.66 MB, fast) are cut,
have blocks removed, sizes negated or blown up, BITPIX changed, non-ASCII bytes
written into headers, END cards dropped and other cards overwritten with
printable junk, in any combination hypothesis finds.  For every mutant:

- the structural scan ends, within a generous wall limit (``signal.alarm``, a
  guard against a hang, not a timing claim), with a verdict and a one-line
  reason that names the file;
- the reader ends too, with a frame when the scan says complete and a
  ``ReadError`` carrying the scan's reason otherwise;
- ``Pipeline.process`` (what ``modsingest process`` and the workers run) ends
  with a delivery whose output is a complete file, or one line naming the file
  and the problem;
- the raw file is never modified.

``make test`` runs a few dozen examples; ``make faults`` runs many more
(``MODSINGEST_FAULT_EXAMPLES``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from modsingest import sim
from modsingest.config import load
from modsingest.fits import frame as frame_mod
from modsingest.fits import scan as fitscheck
from modsingest.processing.pipeline import Pipeline

EXAMPLES = int(os.environ.get("MODSINGEST_FAULT_EXAMPLES", "40"))
#: far above anything a 0.66 MB file needs (milliseconds); only a hang reaches it
WALL_LIMIT = 20

HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.cache
def base_file(conpars: bool) -> bytes:
    spec = sim.ExposureSpec(roi="1k", binning=(2, 2), date="20260102", seq=1, conpars=conpars, seed=7)
    return sim.render(spec)


class Hang(Exception):
    pass


@contextmanager
def bounded(what: str):
    """Fail (not hang) if the body runs past WALL_LIMIT seconds."""

    def alarm(signum, frame):
        raise Hang(f"{what} still running after {WALL_LIMIT} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(WALL_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------- mutations
def _card_offsets(data: bytes, prefix: bytes) -> list[int]:
    """Offsets of the cards starting with ``prefix`` (at 80-byte card boundaries)."""
    found, at = [], data.find(prefix)
    while at >= 0:
        if at % 80 == 0:
            found.append(at)
        at = data.find(prefix, at + 1)
    return found


def set_card(data: bytes, key: str, which: int, value: str) -> bytes:
    """The ``which``-th ``key`` card (modulo their number) given the value text ``value``."""
    offsets = _card_offsets(data, f"{key:<8}= ".encode())
    if not offsets:
        return data
    at = offsets[which % len(offsets)]
    card = f"{key:<8}= {value:>20}".ljust(80)[:80].encode("latin-1")
    return data[:at] + card + data[at + 80 :]


def drop_end(data: bytes, which: int) -> bytes:
    offsets = _card_offsets(data, b"END" + b" " * 77)
    if not offsets:
        return data
    at = offsets[which % len(offsets)]
    return data[:at] + b"COMMENT END was here".ljust(80) + data[at + 80 :]


def header_byte(data: bytes, which: int, pos: int, byte: int) -> bytes:
    """A byte put into the ``which``-th header (a position among its first 2880 bytes)."""
    starts = _card_offsets(data, b"SIMPLE  = ") + _card_offsets(data, b"XTENSION= ")
    if not starts:
        return data
    at = sorted(starts)[which % len(starts)] + pos % 2880
    if at >= len(data):
        return data
    return data[:at] + bytes([byte]) + data[at + 1 :]


_KEPT = (
    b"SIMPLE",
    b"XTENSION",
    b"BITPIX",
    b"NAXIS",
    b"PCOUNT",
    b"GCOUNT",
    b"EXTNAME",
    b"END",
    b"TFIELDS",
    b"TFORM",
    b"TTYPE",
)


def junk_card(data: bytes, which: int, card: int, text: str) -> bytes:
    """A non-structural card of the ``which``-th header overwritten with printable junk.

    A header problem must never stop delivery: such a file is still delivered.
    """
    starts = sorted(_card_offsets(data, b"SIMPLE  = ") + _card_offsets(data, b"XTENSION= "))
    if not starts:
        return data
    at = starts[which % len(starts)] + 80 * (card % 36)
    if at + 80 > len(data) or data[at : at + 8].startswith(_KEPT) or data[at : at + 8] == b" " * 8:
        return data
    return data[:at] + text.encode("ascii").ljust(80)[:80] + data[at + 80 :]


def cut_blocks(data: bytes, first: int, count: int) -> bytes:
    nblocks = max(1, len(data) // 2880)
    first %= nblocks
    return data[: first * 2880] + data[(first + count) * 2880 :]


def truncate(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def apply(data: bytes, mutation: tuple) -> bytes:
    kind, *args = mutation
    return {
        "card": lambda: set_card(data, *args),
        "drop_end": lambda: drop_end(data, *args),
        "header_byte": lambda: header_byte(data, *args),
        "cut_blocks": lambda: cut_blocks(data, *args),
        "junk_card": lambda: junk_card(data, *args),
        "truncate": lambda: truncate(data, *args),
    }[kind]()


SIZES = st.one_of(
    st.integers(-(10**6), 10**6),
    st.sampled_from(["-1", "-2880", "0", "1", "999", "1000", "2147483647", "99999999999999999999", "-0"]),
    st.integers(-(10**19), 10**19),
).map(str)
ODD_VALUES = st.sampled_from(["'abc'", "T", "1.5", "", "'-1'", "1E3"])
MUTATION = st.one_of(
    st.tuples(
        st.just("card"),
        st.sampled_from(["NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT"]),
        st.integers(0, 6),
        st.one_of(SIZES, ODD_VALUES),
    ),
    st.tuples(
        st.just("card"),
        st.just("BITPIX"),
        st.integers(0, 6),
        st.one_of(st.sampled_from(["8", "16", "32", "64", "-32", "-64", "0", "12", "-16", "128"]), SIZES),
    ),
    st.tuples(st.just("drop_end"), st.integers(0, 6)),
    st.tuples(
        st.just("header_byte"),
        st.integers(0, 6),
        st.integers(0, 2879),
        st.one_of(st.integers(0x80, 0xFF), st.integers(0, 0x1F), st.just(0x7F)),
    ),
    st.tuples(st.just("cut_blocks"), st.integers(0, 300), st.integers(1, 5)),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(
        st.just("junk_card"),
        st.integers(0, 6),
        st.integers(1, 35),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=80),
    ),
)
MUTANTS = st.tuples(st.booleans(), st.lists(MUTATION, min_size=1, max_size=3))


def mutant(conpars: bool, mutations: list[tuple]) -> bytes:
    data = base_file(conpars)
    for m in mutations:
        data = apply(data, m)
    return data


# --------------------------------------------------------------------------- properties
@HYPOTHESIS
@given(MUTANTS)
def test_scan_and_reader_end_with_a_verdict_or_a_frame(case):
    conpars, mutations = case
    data = mutant(conpars, mutations)
    with bounded(f"scan of {mutations}"):
        layout = fitscheck.scan_bytes(data, "m.fits")
    assert layout.verdict in set(fitscheck.Verdict)
    event(f"scan: {layout.verdict.value}")
    if layout.complete:
        assert layout.reason == ""
    else:
        assert layout.reason.startswith("m.fits: ") and "\n" not in layout.reason
        assert len(layout.reason) < 500
    with bounded(f"reader on {mutations}"):
        try:
            frame = frame_mod.from_bytes(data, "m.fits")
        except frame_mod.ReadError as exc:
            # a complete file is always read: odd cards are the steps' warnings, never a refusal
            assert not layout.complete, str(exc)
            assert str(exc) == layout.reason
        else:
            assert layout.complete
            assert len(frame.amps) == 4 and all(a.stored.shape == a.shape for a in frame.amps)


@pytest.fixture(scope="module")
def pipe_layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    dirs = {k: root / k for k in ("raw", "newdata", "processed", "state")}
    for d in dirs.values():
        d.mkdir()
    cfg = root / "modsingest.yaml"
    cfg.write_text(
        "paths:\n"
        f"  raw: [{dirs['raw']}]\n"
        f"  newdata: {dirs['newdata']}\n"
        f"  processed: {dirs['processed']}\n"
        f"  state: {dirs['state']}\n"
    )
    dirs["pipeline"] = Pipeline(load(cfg), warm=False)
    dirs["config"] = cfg
    dirs["count"] = [0]
    return dirs


# astropy warns about junk cards as it meets them; the file is still delivered
@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
@settings(HYPOTHESIS, max_examples=max(10, EXAMPLES // 2))
@given(MUTANTS)
def test_pipeline_delivers_or_names_the_file_and_the_problem(pipe_layout, case):
    conpars, mutations = case
    data = mutant(conpars, mutations)
    pipe_layout["count"][0] += 1
    raw = pipe_layout["raw"] / f"mods1b.20260102.{pipe_layout['count'][0]:04d}.fits"
    raw.write_bytes(data)
    before = hashlib.sha256(data).hexdigest()
    with bounded(f"scan of the file of {mutations}"):  # by pread, as the gate does
        assert fitscheck.scan(raw).problems == fitscheck.scan_bytes(data, raw).problems
    with bounded(f"Pipeline.process of {mutations}"):
        result = pipe_layout["pipeline"].process(raw)
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == before  # never modified
    event(f"process: {'delivered' if result.ok else result.stage}")
    if result.ok:
        out = fitscheck.scan(pipe_layout["newdata"] / result.name)
        assert out.complete, out.reason
    else:
        assert result.error.startswith(f"{raw}: ") and "\n" not in result.error
        assert result.side in ("raw", "internal"), result
        assert result.side == "raw", result.error  # a mutant is the file's problem, never a bug
    assert not [p for p in pipe_layout["newdata"].iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- the command
NAMED_MUTANTS = {
    "negative-naxis1": [("card", "NAXIS1", 2, "-1")],
    "negative-pcount": [("card", "PCOUNT", 1, "-2880")],
    "negative-gcount": [("card", "GCOUNT", 3, "-1")],
    "huge-naxis2": [("card", "NAXIS2", 1, "99999999999999999999")],
    "bitpix-12": [("card", "BITPIX", 2, "12")],
    "naxis-1000": [("card", "NAXIS", 1, "1000")],
    "non-ascii-header": [("header_byte", 3, 400, 0xE9)],
    "no-end": [("drop_end", 2)],
    "truncated": [("truncate", 0.5)],
    "blocks-cut": [("cut_blocks", 100, 2)],
    "not-simple": [("card", "SIMPLE", 0, "F")],
}


def test_modsingest_process_refuses_each_mutant_in_one_line(pipe_layout):
    raws = []
    for seq, mutations in enumerate(NAMED_MUTANTS.values(), start=9001):
        path = pipe_layout["raw"] / f"mods1b.20260102.{seq}.fits"
        path.write_bytes(mutant(True, mutations))
        raws.append(path)
    good = pipe_layout["raw"] / "mods1b.20260102.9100.fits"
    good.write_bytes(base_file(True))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "modsingest"), "process", "--config", str(pipe_layout["config"])]
        + [str(p) for p in raws + [good]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.splitlines()
    for path in raws:
        mine = [line for line in err if str(path) in line]
        assert len(mine) == 1 and mine[0].startswith(f"modsingest: {path}: "), (path, mine)
    assert err[-1] == f"modsingest: {len(raws)} of {len(raws) + 1} file(s) not delivered"
    assert (pipe_layout["newdata"] / good.name).exists()
    assert not any((pipe_layout["newdata"] / p.name).exists() for p in raws)


# --------------------------------------------------------------------------- the service
def test_service_fed_a_hostile_mix_delivers_every_good_file(tmp_path):
    """Mutants among good files: every good file is delivered, in bounded time, whatever
    the mutants do to the gate and the workers, and each mutant ends reported with its
    reason (``incomplete`` or ``failed`` in the ledger, the scan's problem in the reason).

    The gate reports an impossible file at once (logged IMPOSSIBLE) and one that may
    still grow after ``incomplete_timeout`` (2 s here, logged INCOMPLETE)."""
    from modsingest.service.ledger import FAILED, INCOMPLETE
    from servicekit import Agent, wait_for

    agent = Agent(tmp_path / "svc", "inotify", incomplete=2.0, workers=2)
    agent.start()
    try:
        raw = agent.raw["mods1b"]
        mutants = {}
        verdicts = {}
        goods = []
        labels = list(NAMED_MUTANTS)
        for i in range(6):
            if i < 4:
                goods.append(
                    sim.write(sim.ExposureSpec(channel="mods1b", seq=i + 1, roi="1k", binning=(2, 2)), raw)
                )
            for label in labels[i * 2 : i * 2 + 2]:
                path = raw / f"mods1b.20260102.{9001 + labels.index(label)}.fits"
                data = mutant(True, NAMED_MUTANTS[label])
                path.write_bytes(data)
                layout = fitscheck.scan_bytes(data, path)
                mutants[path] = layout.problems[0]
                verdicts[path] = layout.verdict
        assert len(mutants) == len(NAMED_MUTANTS)
        odd_name = raw / "mods1b.20260102.9050é.fits"  # good content, a name .new cannot hold
        odd_name.write_bytes(base_file(True))
        mutants[odd_name] = "name is not printable ASCII ('é')"
        agent.wait_delivered(len(goods), timeout=90)
        delivered = {r.path for r in agent.delivered_rows()}
        assert delivered == {str(p) for p in goods}

        def reported():
            rows = {str(p): agent.current(p) for p in mutants}
            return all(r is not None and r.state in (INCOMPLETE, FAILED) for r in rows.values()) and rows

        rows = wait_for(reported, 60, f"every mutant reported (log:\n{agent.log_text()[-3000:]})", every=0.2)
        for path, problem in mutants.items():
            assert problem in rows[str(path)].reason, (path, rows[str(path)].reason)
        # the gate tells the two kinds apart (an impossible file is reported without
        # waiting for incomplete_timeout: test_gate holds the timing)
        log = agent.log_text()
        for path, verdict in verdicts.items():
            word = "IMPOSSIBLE" if verdict is fitscheck.Verdict.IMPOSSIBLE else "INCOMPLETE"
            assert f"{word} {path}: {mutants[path]}" in log, (path, verdict)
        assert rows[str(odd_name)].state == FAILED
        assert not agent.hidden_files()
        assert sorted(p.name for p in agent.newdata_files()) == sorted(p.name for p in goods)
    finally:
        agent.stop()
