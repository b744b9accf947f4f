"""The compressed archive copy: ``<compressed>/<CCYYMMDD>/<name>.fz``, as fpack would make it.

Other observatories' archive procedures end with a losslessly tile-compressed
copy of each file.  cfitsio is the reference implementation of FITS tile
compression (fpack and funpack are its tools), so the copy is written with
fitsio, cfitsio's Python binding, not re-implemented:

- the primary header stays an uncompressed header-only HDU (fpack's layout);
- IM1..IM4 (unsigned 16-bit counts) are Rice-compressed, row by row as fpack
  tiles them; integers are lossless under Rice;
- CONPARS, a small binary table, is copied as it is;
- MERGED is **left out**: it is derived (the amplifiers minus their overscan
  medians, rebuilt bit for bit by ``modsingest process`` on the restored file),
  and compressing float32 without quantising (GZIP_2, the only lossless choice)
  measured at 2-3 times the time of the whole rest and doubled the copy's size
  (docs/performance.md).  The primary says so in ``MSIFZ``.

It runs in the worker after ``<CHAN>.new``, off the observers' path, reading
the delivered newdata copy (just written, so in the page cache).  Written to a
hidden temporary name, fsynced, renamed, like every output.
"""

from __future__ import annotations

from pathlib import Path

from modsingest import fsutil

#: header cards cfitsio writes itself for each HDU it makes
_STRUCTURAL = {
    "SIMPLE",
    "XTENSION",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "EXTEND",
    "PCOUNT",
    "GCOUNT",
    "BZERO",
    "BSCALE",
    "CHECKSUM",
    "DATASUM",
    "TFIELDS",
}
MERGED_NOTE = "MERGED left out"


def _cards(hdr, drop_table_cards: bool = False) -> list[str]:
    """The card images of ``hdr`` to copy: all but those cfitsio makes itself."""
    out = []
    for record in hdr.records():
        name = str(record.get("name") or "")
        if name in _STRUCTURAL:
            continue
        if drop_table_cards and name.startswith(("TTYPE", "TFORM", "TUNIT", "TDISP", "TNULL", "TDIM")):
            continue
        out.append(record["card_string"])
    return out


def _copy_cards(out, cards: list[str]) -> None:
    """Append ``cards`` to the last HDU of ``out`` as they are, byte for byte.

    fitsio's own ``write_key`` re-formats numbers to 15 significant digits (an
    MJD-OBS would move by microseconds); cfitsio's ``fits_write_record``, which
    fitsio exposes on its file object, writes a card image unchanged.
    """
    hdu = out[-1]
    for card in cards:
        hdu._FITS.write_record(hdu._ext + 1, card)


def write_compressed(source: Path, directory: Path, name: str) -> Path:
    """Write ``directory/<name>.fz`` from the delivered file ``source``; return its path."""
    import fitsio

    fsutil.ensure_dir(directory)
    final = directory / f"{name}.fz"
    tmp = fsutil.temp_path(directory, final.name)
    try:
        with fitsio.FITS(str(source)) as src, fitsio.FITS(str(tmp), "rw", clobber=True) as out:
            for index, hdu in enumerate(src):
                hdr = hdu.read_header()
                extname = str(hdr.get("EXTNAME", "")).strip()
                if index == 0:
                    # header-only, as delivered; cfitsio adds BITPIX 16 and its two
                    # "FITS format is defined in ..." COMMENT lines (no way to remove them)
                    out.create_image_hdu(dims=None, dtype="u1")
                    _copy_cards(out, _cards(hdr))
                    out[-1].write_key("MSIFZ", MERGED_NOTE, comment="derived: modsingest process rebuilds it")
                elif extname == "MERGED":
                    continue
                elif hdu.get_exttype() == "BINARY_TBL":
                    out.write(hdu.read(), extname=extname)
                    _copy_cards(
                        out, [c for c in _cards(hdr, drop_table_cards=True) if not c.startswith("EXTNAME")]
                    )
                else:
                    out.write(hdu.read(), extname=extname, compress="RICE")
                    _copy_cards(out, [c for c in _cards(hdr) if not c.startswith("EXTNAME")])
                out[-1].write_checksum()
        fsutil.fsync_file(tmp)
        fsutil.commit(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final
