"""Serialising a frame into the bytes of the output file, fast and exactly.

Why not astropy's writer: it decodes and re-encodes every amplifier (about 3x
the time of copying the bytes, on the path observers wait on), and the output
must carry the raw pixel data byte for byte anyway.  So the output is a list of
chunks: freshly serialised headers, and the raw data blocks as memoryviews of
the input, never decoded.  MERGED is already a big-endian float32 array and is
written from its own buffer.

Every HDU gets FITS ``DATASUM``/``CHECKSUM`` (the 32-bit ones'-complement
checksum of the FITS standard, Appendix J).  Neither astropy nor fitsio can
checksum a block they did not decode themselves, so the arithmetic is here:
a vectorised sum of the big-endian 32-bit words and the 16-character ASCII
encoding.  The tests hold it to astropy's and fitsverify's verification.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from .fitscheck import BLOCK, padded
from .frame import Frame, Merged

#: Cards of the primary that do not belong in MERGED's copy of it.
_NOT_COPIED = {
    "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT",
    "EXTNAME", "CHECKSUM", "DATASUM", "BZERO", "BSCALE", "BLANK", "NEXTEND",
}


# --------------------------------------------------------------------------- checksums
def ones_sum(data, initial: int = 0) -> int:
    """32-bit ones'-complement sum of big-endian words (length a multiple of 4)."""
    words = np.frombuffer(data, dtype=">u4")
    # Summing in 64 bits cannot overflow: at most 2**32 words of < 2**32 each
    # would be needed, far beyond any FITS block here.  Fold the carries back.
    total = int(words.sum(dtype=np.uint64)) + initial
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


_EXCLUDED = frozenset(b":;<=>?@[\\]^_`")


def encode_checksum(value: int) -> str:
    """The 16-character ASCII encoding of a checksum (FITS standard, J.2).

    Each byte is spread over four characters starting at '0', adjusted in
    pairs so none is punctuation, interleaved, then rotated right by one.
    """
    chars = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quotient, remainder = divmod(byte, 4)
        quad = [quotient + 0x30] * 4
        quad[0] += remainder
        changed = True
        while changed:
            changed = False
            for k in (0, 2):
                if quad[k] in _EXCLUDED or quad[k + 1] in _EXCLUDED:
                    quad[k] += 1
                    quad[k + 1] -= 1
                    changed = True
        for j in range(4):
            chars[4 * j + i] = quad[j]
    return bytes(chars[-1:] + chars[:-1]).decode("ascii")


_CHECKSUM_PLACEHOLDER = "0" * 16


def header_bytes(header: fits.Header, datasum: int) -> bytes:
    """``header`` serialised with DATASUM and a CHECKSUM that makes the HDU sum to -0."""
    header = header.copy(strip=False)
    header.remove("CHECKSUM", ignore_missing=True, remove_all=True)
    header.remove("DATASUM", ignore_missing=True, remove_all=True)
    header["CHECKSUM"] = (_CHECKSUM_PLACEHOLDER, "HDU checksum")
    header["DATASUM"] = (str(datasum), "data unit checksum")
    raw = bytearray(header.tostring(sep="", endcard=True, padding=True).encode("ascii"))
    total = ones_sum(raw, datasum)
    encoded = encode_checksum(~total & 0xFFFFFFFF).encode("ascii")
    at = raw.find(b"CHECKSUM= '" + _CHECKSUM_PLACEHOLDER.encode("ascii") + b"'")
    raw[at + 11 : at + 27] = encoded
    return bytes(raw)


# --------------------------------------------------------------------------- HDUs
@dataclass
class Output:
    """The serialised file: chunks in order, and its total size."""

    chunks: list
    size: int

    def tobytes(self) -> bytes:
        return b"".join(bytes(c) for c in self.chunks)


def _hdu(header: fits.Header, block) -> list:
    """Header + verbatim (already padded) data block."""
    datasum = ones_sum(block) if len(block) else 0
    return [header_bytes(header, datasum), block] if len(block) else [header_bytes(header, 0)]


def placeholder_conpars() -> fits.Header:
    """An empty CONPARS with the raw table's two columns, saying it was missing."""
    h = fits.Header()
    h["XTENSION"] = ("BINTABLE", "binary table extension")
    h["BITPIX"] = 8
    h["NAXIS"] = 2
    h["NAXIS1"] = 40
    h["NAXIS2"] = 0
    h["PCOUNT"] = 0
    h["GCOUNT"] = 1
    h["TFIELDS"] = 2
    h["TTYPE1"] = "Keyword"
    h["TFORM1"] = "20A"
    h["TTYPE2"] = "Value"
    h["TFORM2"] = "20A"
    h["EXTNAME"] = "CONPARS"
    h["CONPMISS"] = (True, "raw file had no CONPARS; table left empty")
    return h


def merged_header(primary: fits.Header, merged: Merged) -> fits.Header:
    """MERGED's header: image structure, the final primary's cards, MERGED's own cards."""
    rows, cols = merged.data.shape
    h = fits.Header()
    h["XTENSION"] = ("IMAGE", "image extension")
    h["BITPIX"] = (-32, "float32")
    h["NAXIS"] = 2
    h["NAXIS1"] = cols
    h["NAXIS2"] = rows
    h["PCOUNT"] = 0
    h["GCOUNT"] = 1
    h["EXTNAME"] = ("MERGED", "bias-subtracted merged image")
    own = set(merged.header.keys())
    for card in primary.cards:
        if card.keyword in _NOT_COPIED or card.keyword in own:
            continue
        h.append(card, end=True)
    for card in merged.header.cards:
        h.append(card, end=True)
    return h


def _merged_block(data: np.ndarray) -> memoryview:
    if data.dtype != np.dtype(">f4") or not data.flags.c_contiguous:
        data = np.ascontiguousarray(data, dtype=">f4")
    raw = memoryview(data).cast("B")
    return raw


def serialize(frame: Frame) -> Output:
    """All HDUs of the output, in the layout of processing.md."""
    chunks: list = []
    chunks += _hdu(frame.primary, b"")
    for amp in frame.amps:
        chunks += _hdu(amp.header, amp.block)
    if frame.conpars is not None:
        chunks += _hdu(frame.conpars.header, frame.conpars.block)
    else:
        chunks += _hdu(placeholder_conpars(), b"")
    if frame.merged is not None:
        header = merged_header(frame.primary, frame.merged)
        block = _merged_block(frame.merged.data)
        pad = padded(len(block)) - len(block)
        # float32 data is whole 4-byte words and zero padding adds nothing to the sum
        chunks.append(header_bytes(header, ones_sum(block)))
        chunks.append(block)
        if pad:
            chunks.append(bytes(pad))
    for extra in frame.extras:
        chunks += _hdu(extra.header, extra.block)
    size = sum(len(c) for c in chunks)
    assert size % BLOCK == 0, "serialised size is not whole FITS blocks"
    return Output(chunks=chunks, size=size)
