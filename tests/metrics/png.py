"""Enough of PNG to read a browser screenshot's pixels (8-bit RGB/RGBA, not interlaced), so
the status page test can look at what was drawn without an imaging library."""

from __future__ import annotations

import struct
import zlib


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8, depth
            assert color in (2, 6), color
            assert interlace == 0
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        off = y * (stride + 1)
        f, line = raw[off], bytearray(raw[off + 1 : off + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        prev = line
        rgb = line if channels == 3 else bytes(v for i, v in enumerate(line) if i % 4 != 3)
        rows.append(bytes(rgb))
    return width, height, rows


def count_colour(rows: list[bytes], rgb: tuple[int, int, int], tol: int = 12) -> int:
    n = 0
    r0, g0, b0 = rgb
    for row in rows:
        for i in range(0, len(row), 3):
            if (
                abs(row[i] - r0) <= tol
                and abs(row[i + 1] - g0) <= tol
                and abs(row[i + 2] - b0) <= tol
            ):
                n += 1
    return n


def rows_with_colour(rows: list[bytes], rgb: tuple[int, int, int], tol: int = 12) -> list[int]:
    """Indexes of the rows where the colour appears (where something was drawn with it)."""
    return [y for y, row in enumerate(rows) if count_colour([row], rgb, tol)]
