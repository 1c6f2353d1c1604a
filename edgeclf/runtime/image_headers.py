"""Image headers read the way the decoders read them, so a size checked here is the size that gets allocated.

A small file can declare a huge image (a decompression bomb) or make the decoder loop (a progressive JPEG
with thousands of scans). The checks here run before any decoder sees the bytes: the declared size, read
by the decoder's own rules (for JPEG: libjpeg's marker parser), the scan count and animation.
"""
from __future__ import annotations

import re
import struct
from typing import NamedTuple

from edgeclf.errors import ImageError

MAX_JPEG_SCANS = 100          # encoders write 1 (baseline) to ~20 (progressive); each scan is a pass over the image
MAX_SEGMENTS = 4096           # JPEG marker segments / PNG chunks before the pixels: bounds the parsing work
MAX_PNG_CHUNKS = 65536        # all chunks of a PNG (a 40-megapixel file has a few thousand image-data chunks)
# libjpeg's next_marker: skip bytes until 0xFF, skip fill 0xFFs; FF 00 (stuffing) is junk, and RSTn / TEM carry
# nothing, so neither ends the search
_JPEG_MARKER = re.compile(rb"\xff+([^\x00\x01\xd0-\xd7\xff])")
_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA})        # processes libjpeg-turbo decodes
_JPEG_UNSUPPORTED = frozenset({0xC5, 0xC6, 0xC7, 0xC8, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_SEGMENTS = frozenset({0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)})  # tables, DNL, DRI, COM, APPn
_SOS, _EOI, _SOI = 0xDA, 0xD9, 0xD8
_WEBP_ANIMATED = 0x02


class UnsupportedImage(ImageError):
    """The bytes are not one of the accepted image formats."""


class ImageTooLarge(ImageError):
    """The image declares more pixels (or JPEG scans) than allowed."""


class ImageHeader(NamedTuple):
    """Format and dimensions as declared by an image file's header."""

    format: str
    width: int
    height: int


def sniff_format(data: bytes) -> str | None:
    """The accepted format whose signature starts ``data``, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM"):
        return "bmp"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) of the frame libjpeg will decode, walking every marker as libjpeg does; counts the scans."""
    pos, size, scans, segments = 2, None, 0, 0
    while (match := _JPEG_MARKER.search(data, pos)) is not None:
        marker, pos = match.group(1)[0], match.end()
        if marker == _EOI:
            break
        if marker == _SOI:
            raise ImageError("corrupt JPEG: a second start-of-image marker")
        if marker in _JPEG_UNSUPPORTED:
            raise UnsupportedImage(f"unsupported JPEG coding process (marker 0x{marker:02X})")
        if marker not in _JPEG_FRAMES and marker != _SOS and marker not in _JPEG_SEGMENTS:
            raise ImageError(f"corrupt JPEG: unknown marker 0x{marker:02X}")
        segments += 1
        if segments > MAX_SEGMENTS:
            raise ImageTooLarge(f"JPEG has over {MAX_SEGMENTS} marker segments")
        if pos + 2 > len(data):
            break
        length = struct.unpack(">H", data[pos:pos + 2])[0]
        if length < 2:
            raise ImageError("corrupt JPEG: bad segment length")
        if marker in _JPEG_FRAMES:
            if size is not None:
                raise ImageError("corrupt JPEG: two frame headers")
            if length < 8 or pos + 7 > len(data):
                raise ImageError("corrupt JPEG: frame header truncated")
            height, width = struct.unpack(">HH", data[pos + 3:pos + 7])
            size = (width, height)
        elif marker == _SOS:
            if size is None:
                raise ImageError("corrupt JPEG: scan before the frame header")
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageTooLarge(f"JPEG has over {MAX_JPEG_SCANS} scans (a progressive file made to burn CPU)")
        pos += length
    if size is None:
        raise ImageError("corrupt JPEG: no frame header")
    return size


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from IHDR, after a walk of every chunk: refuses animated PNGs (an acTL chunk before the
    image data) and any chunk whose length runs past the file (OpenCV's reader allocates the declared length:
    a 2 KB file declaring a 3.6 GB IDAT cost 3.5 GB)."""
    if len(data) < 33 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise ImageError("corrupt PNG: no IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    if width >= 2**31 or height >= 2**31:
        raise ImageError(f"corrupt PNG: declares {width}x{height} pixels")
    pos, chunks, before_pixels = 33, 0, True
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I", data[pos:pos + 4])[0], data[pos + 4:pos + 8]
        if length > len(data) - pos - 12:
            raise ImageError(f"corrupt or truncated PNG: a {kind.decode('latin-1')!r} chunk declares {length} bytes, "
                             f"the file has {max(0, len(data) - pos - 12)} left")
        if kind == b"IEND":
            break
        chunks += 1
        if before_pixels and kind == b"acTL":
            raise UnsupportedImage("animated PNG (APNG) is not accepted")
        before_pixels = before_pixels and kind != b"IDAT"
        if chunks > (MAX_SEGMENTS if before_pixels else MAX_PNG_CHUNKS):
            raise ImageTooLarge(f"PNG has over {MAX_SEGMENTS if before_pixels else MAX_PNG_CHUNKS} chunks"
                                + (" before its image data" if before_pixels else ""))
        pos += 12 + length
    return width, height


def _webp_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a lossy, lossless or extended (canvas) WebP; refuses animated ones."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        if data[20] & _WEBP_ANIMATED:
            raise UnsupportedImage("animated WebP is not accepted")
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ImageError("corrupt WebP: no VP8/VP8L/VP8X header")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise ImageError("corrupt BMP: header truncated")
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)  # negative height = top-down rows


_READERS = {"jpeg": _jpeg_size, "png": _png_size, "webp": _webp_size, "bmp": _bmp_size}


def read_header(data: bytes) -> ImageHeader:
    """Format and declared size; ``UnsupportedImage`` for other formats, ``ImageError`` for a broken header."""
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImage("not a JPEG, PNG, WebP or BMP image")
    width, height = _READERS[fmt](data)
    if width <= 0 or height <= 0:
        raise ImageError(f"corrupt {fmt.upper()}: declares {width}x{height} pixels")
    return ImageHeader(fmt, width, height)


def check_header(data: bytes, max_pixels: int) -> ImageHeader:
    """``read_header``, and ``ImageTooLarge`` when the image declares more than ``max_pixels``."""
    header = read_header(data)
    if header.width * header.height > max_pixels:
        raise ImageTooLarge(f"{header.format.upper()} declares {header.width}x{header.height} pixels, "
                            f"over the limit of {max_pixels / 1e6:g} megapixels")
    return header
