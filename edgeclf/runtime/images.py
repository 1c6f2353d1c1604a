"""Images in: files and untrusted bytes decoded to BGR uint8, the way every part of edgeclf reads them.

Bytes from an untrusted client are held to known formats, with the pixel count checked before decoding.

A small PNG can declare 30000 x 30000 pixels and make a decoder allocate gigabytes (a decompression
bomb). OpenCV has no header-only reader and reads its own pixel limit (``OPENCV_IO_MAX_IMAGE_PIXELS``)
once per process, so the dimensions are read here from the file header of the four formats accepted
(JPEG, PNG, WebP, BMP) and checked against the caller's limit before ``cv2.imdecode`` sees the bytes.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from edgeclf.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp"}
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); C4/C8/CC are not frames
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class UnsupportedImage(ImageError):
    """The bytes are not one of the accepted image formats."""


class ImageTooLarge(ImageError):
    """The image declares more pixels than allowed."""


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
    """(width, height) from the first start-of-frame segment, walking the marker segments."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageError("corrupt JPEG: expected a marker")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers carry no length
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        if i + 2 > n:
            break
        length = struct.unpack(">H", data[i:i + 2])[0]
        if marker in _SOF_MARKERS:
            if i + 7 > n:
                break
            height, width = struct.unpack(">HH", data[i + 3:i + 7])
            return width, height
        if length < 2:
            raise ImageError("corrupt JPEG: bad segment length")
        i += length
    raise ImageError("corrupt JPEG: no frame header")


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("corrupt PNG: no IHDR chunk")
    return struct.unpack(">II", data[16:24])


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
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


def decode_untrusted(data: bytes, max_pixels: int) -> tuple[np.ndarray, ImageHeader]:
    """Decode ``data`` to BGR uint8 (EXIF orientation applied) if its header declares at most ``max_pixels``."""
    header = read_header(data)
    if header.width * header.height > max_pixels:
        raise ImageTooLarge(f"{header.format.upper()} declares {header.width}x{header.height} pixels, "
                            f"over the limit of {max_pixels / 1e6:g} megapixels")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"not a decodable {header.format.upper()} (corrupt or truncated)")
    if image.shape[0] * image.shape[1] > max_pixels:  # a header that lied; decoders size from it, so unlikely
        raise ImageTooLarge(f"decoded {image.shape[1]}x{image.shape[0]} pixels, over the limit")
    return image, header


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as BGR uint8 (OpenCV's convention); ``ImageError`` names the file when it can't.

    Grey, 16-bit and alpha images come back as 8-bit BGR; the EXIF orientation is applied.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: image not found")
    raw = np.fromfile(str(p), dtype=np.uint8)
    if raw.size == 0:
        raise ImageError(f"{p}: image file is empty")
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR)  # 8-bit BGR, EXIF orientation applied (as a phone shows it)
    if img is None:
        raise ImageError(f"{p}: not a decodable image (corrupt, truncated or unsupported format)")
    return img
