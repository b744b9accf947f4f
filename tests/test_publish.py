"""Atomic publishing, permissions, replace-or-unique naming and the <CHAN>.new pointer."""

import os
import stat

from astropy.io import fits

from modsingest import fsutil
from modsingest.processing import publish


def header(date="2026-01-02T03:04:05.678", instrume="MODS1B", uniq="mods1b.20260102.030405.fits"):
    h = fits.Header()
    h["INSTRUME"] = instrume
    h["DATE-OBS"] = date
    h["UNIQNAME"] = uniq
    return h


def as_chunks(h):
    return [fits.PrimaryHDU(header=h).header.tostring(padding=True).encode()]


def deliver(layout, name, h):
    return publish.deliver(name, h, as_chunks(h), layout["newdata"], layout["processed"], layout["state"])


def test_delivers_to_both_places_with_modes_and_pointer(layout):
    d = deliver(layout, "mods1b.20260102.0002.fits", header())
    assert d.name == "mods1b.20260102.0002.fits" and not d.warnings
    night = layout["processed"] / "20260102"
    for path in (night / d.name, layout["newdata"] / d.name):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(night.stat().st_mode) == 0o755
    assert (layout["newdata"] / "MODS1B.new").read_text() == "mods1b.20260102.0002.fits\n"
    leftovers = [p for p in layout["newdata"].iterdir() if fsutil.TEMP_MARK in p.name]
    assert leftovers == []


def test_only_the_processed_copy_leaves_the_page_cache_after_its_fsync(layout, monkeypatch):
    """The archive copy is not read soon; the newdata copy is opened by observers at once."""
    events = []
    real_fsync, real_advise = os.fsync, os.posix_fadvise
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", fd)), real_fsync(fd))[1])

    def advise(fd, offset, length, advice):
        events.append(("advise", fd, os.readlink(f"/proc/self/fd/{fd}"), offset, length, advice))
        return real_advise(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", advise)
    d = deliver(layout, "mods1b.20260102.0002.fits", header())
    advised = [e for e in events if e[0] == "advise"]
    assert len(advised) == 1
    _, fd, target, offset, length, advice = advised[0]
    assert "/processed/20260102/" in target and fsutil.TEMP_MARK in target
    assert (offset, length, advice) == (0, 0, os.POSIX_FADV_DONTNEED)
    assert events.index(("fsync", fd)) < events.index(advised[0])  # durable first
    assert (layout["processed"] / "20260102" / d.name).read_bytes() == (
        layout["newdata"] / d.name
    ).read_bytes()


def test_same_exposure_again_replaces(layout):
    deliver(layout, "mods1b.20260102.0002.fits", header())
    d = deliver(layout, "mods1b.20260102.0002.fits", header())
    assert d.name == "mods1b.20260102.0002.fits" and not d.warnings
    assert sorted(p.name for p in layout["newdata"].iterdir()) == ["MODS1B.new", "mods1b.20260102.0002.fits"]


def test_different_exposure_under_an_existing_name_goes_to_uniqname(layout):
    deliver(layout, "mods1b.20260102.0002.fits", header())
    other = header(date="2026-01-02T05:06:07.000", uniq="mods1b.20260102.050607.fits")
    d = deliver(layout, "mods1b.20260102.0002.fits", other)
    assert d.name == "mods1b.20260102.050607.fits"
    assert len(d.warnings) == 1 and "different exposure" in d.warnings[0]
    assert (layout["newdata"] / "MODS1B.new").read_text() == "mods1b.20260102.050607.fits\n"
    # the first delivery is untouched
    first = fits.getheader(layout["newdata"] / "mods1b.20260102.0002.fits")
    assert first["DATE-OBS"] == "2026-01-02T03:04:05.678"


def test_pointer_not_moved_back_by_an_older_exposure(layout):
    deliver(layout, "mods1b.20260102.0009.fits", header(date="2026-01-02T09:00:00.000"))
    d = deliver(layout, "mods1b.20260101.0001.fits", header(date="2026-01-01T01:00:00.000"))
    assert not d.pointer_updated
    assert (layout["newdata"] / "MODS1B.new").read_text() == "mods1b.20260102.0009.fits\n"


def test_unknown_channel_is_a_warning_and_no_pointer(layout):
    d = deliver(layout, "m1bTest.0001.fits", header(instrume="TEST"))
    assert d.channel is None and any("no channel" in w for w in d.warnings)
    assert not list(layout["newdata"].glob("*.new"))
    # a name without a date tag goes under the observing date of DATE-OBS (UTC + 5 h)
    assert (layout["processed"] / "20260102" / "m1bTest.0001.fits").exists()


def test_channel_from_the_name_when_instrume_is_missing(layout):
    h = header()
    del h["INSTRUME"]
    d = deliver(layout, "mods2r.20260102.0003.fits", h)
    assert d.channel == "MODS2R"
