"""Images in: files and untrusted bytes decoded to BGR uint8, the way every part of edgeclf reads them.

Bytes are held to known formats, and their header (read by the decoder's own rules, ``image_headers``) is
checked before decoding: pixel count, JPEG scan count, animation. Files get the same checks with a generous
limit; the server decodes uploads in bounded worker processes (``decode_pool``) on top of this.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgeclf.errors import ImageError
from edgeclf.runtime.image_headers import (ImageHeader, ImageTooLarge, UnsupportedImage, check_header, read_header,
                                           sniff_format)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp"}
FILE_MAX_PIXELS = 150_000_000   # a file on disk: above any camera sensor these devices see (450 MB decoded)

__all__ = ["IMAGE_SUFFIXES", "EXTENSIONS", "FILE_MAX_PIXELS", "ImageHeader", "ImageTooLarge", "UnsupportedImage",
           "read_header", "check_header", "decode_untrusted", "load_image"]


def decode_untrusted(data: bytes, max_pixels: int) -> tuple[np.ndarray, ImageHeader]:
    """Decode ``data`` to BGR uint8 (EXIF orientation applied) if its header passes ``check_header``."""
    header = check_header(data, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"not a decodable {header.format.upper()} (corrupt or truncated)")
    if image.shape[0] * image.shape[1] > max_pixels:  # the header parsers follow the decoders, so this is a bug net
        raise ImageTooLarge(f"decoded {image.shape[1]}x{image.shape[0]} pixels, over the limit")
    return image, header


def load_image(path: str | os.PathLike, max_pixels: int = FILE_MAX_PIXELS) -> np.ndarray:
    """Read an image file as BGR uint8 (OpenCV's convention); ``ImageError`` names the file when it can't.

    Grey, 16-bit and alpha images come back as 8-bit BGR; the EXIF orientation is applied. JPEG, PNG, WebP
    and BMP files are held to ``check_header`` first (TIFF and PNM to OpenCV's own limit).
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: image not found")
    raw = np.fromfile(str(p), dtype=np.uint8)
    if raw.size == 0:
        raise ImageError(f"{p}: image file is empty")
    data = raw.tobytes()
    if sniff_format(data) is not None:
        try:
            check_header(data, max_pixels)
        except ImageError as exc:
            raise type(exc)(f"{p}: {exc}") from None
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR)  # 8-bit BGR, EXIF orientation applied (as a phone shows it)
    if img is None:
        raise ImageError(f"{p}: not a decodable image (corrupt, truncated or unsupported format)")
    return img


def decodes(path: str | os.PathLike) -> bool:
    """Whether the image file at ``path`` reads (``load_image`` succeeds), for skipping unreadable files in a folder."""
    try:
        load_image(path)
        return True
    except ImageError:
        return False
