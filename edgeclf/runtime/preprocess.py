"""Image in, model input out: the one preprocessing path shared by Runtime, calibration, parity and eval.

``resize_geometry`` fits a BGR uint8 image to the input size (crop / letterbox / stretch); ``InputEncoder``
then changes the colour order, normalises and quantises in OpenCV lookup-table passes, writing straight into
the engine's input buffer, so a camera frame becomes an int8 or float tensor without float copies.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from edgeclf.artifact.metadata import Preprocess
from edgeclf.errors import ImageError


def to_bgr(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Return an HxWx3 BGR uint8 view/copy of a grayscale, BGR or BGRA uint8 array."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{source}: expected a numpy array or a path, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"{source}: expected uint8 pixels (0..255), got dtype {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ImageError(f"{source}: expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {image.shape}")


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize to (w, h): whole-factor area averaging first when shrinking 2x or more, then bilinear.

    Bilinear alone aliases past 2x; area averaging at a non-whole factor is ~6x slower than at a whole
    one. Averaging k x k blocks, then a bilinear step of less than 2x, gives both quality and speed.
    """
    ih, iw = img.shape[:2]
    if iw == w and ih == h:
        return img
    k = min(iw // w, ih // h)
    if k >= 2:
        img = cv2.resize(img[: ih - ih % k, : iw - iw % k], (iw // k, ih // k), interpolation=cv2.INTER_AREA)
        if img.shape[1] == w and img.shape[0] == h:
            return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def resize_geometry(img: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Apply the resize policy to an HxWxC uint8 image, giving exactly ``pre.input_size``."""
    th, tw = pre.input_size
    h, w = img.shape[:2]
    if h == 0 or w == 0:
        raise ImageError(f"image has an empty dimension: {img.shape}")
    if pre.resize == "stretch":
        return _resize(img, tw, th)
    if pre.resize == "crop":
        # the centre window that, scaled to cover the target and cropped by crop_ratio, lands on (th, tw)
        s = max(th / h, tw / w) / pre.crop_ratio
        ch, cw = min(h, max(1, round(th / s))), min(w, max(1, round(tw / s)))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return _resize(img[y0:y0 + ch, x0:x0 + cw], tw, th)
    s = min(th / h, tw / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    inner = _resize(img, nw, nh)
    top, left = (th - nh) // 2, (tw - nw) // 2
    return cv2.copyMakeBorder(inner, top, th - nh - top, left, tw - nw - left, cv2.BORDER_CONSTANT,
                              value=(pre.pad_value,) * 3)


def to_model_colour(img_bgr: np.ndarray, color: str) -> np.ndarray:
    """A BGR uint8 image -> the model's colour order (RGB, BGR or GRAY as HxWx1), contiguous."""
    if color == "RGB":
        return cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB)
    if color == "GRAY":
        return cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY)[:, :, None]
    return np.ascontiguousarray(img_bgr)


def prepare(image_bgr: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Geometry then colour: a BGR uint8 image -> uint8 HxWxC at ``pre.input_size`` in the model's colour order."""
    return to_model_colour(resize_geometry(to_bgr(image_bgr), pre), pre.color)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero, as TFLite's QUANTIZE op (std::round) does.

    numpy's round-half-to-even would map neighbouring pixel values onto one code whenever mean/std/scale put
    them on exact halves (e.g. mean=std=127.5 with scale 1/127.5: every pixel is a tie).
    """
    r = np.round(x)
    ties = np.abs(x - np.trunc(x)) == 0.5
    r[ties] = np.trunc(x[ties]) + np.sign(x[ties])
    return r


class InputEncoder:
    """Turns a prepared uint8 image into the model's input tensor: normalise, quantise, layout, batch.

    Every (pixel value, channel) pair maps to one output value, so the whole transform is a 256-entry
    lookup table per channel computed once; ``cv2.LUT`` applies it in a single pass.
    """

    def __init__(self, pre: Preprocess, dtype: np.dtype, scale: float = 0.0, zero_point: int = 0) -> None:
        self.layout = pre.layout
        self.dtype = np.dtype(dtype)
        # one table for all channels when they share mean/std: cv2.LUT is twice as fast with it
        c = pre.channels if len(pre.mean) > 1 or len(pre.std) > 1 else 1
        mean = np.broadcast_to(np.asarray(pre.mean, np.float64), (c,))
        std = np.broadcast_to(np.asarray(pre.std, np.float64), (c,))
        values = (np.arange(256, dtype=np.float64)[:, None] - mean) / std          # (256, C) real inputs
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            q = round_half_away(values / scale) + zero_point if scale else round_half_away(values)
            values = np.clip(q, info.min, info.max)
        table = values.astype(self.dtype)
        self._numpy_table = table                                              # fallback for odd dtypes
        if self.dtype in (np.dtype(np.uint8), np.dtype(np.int8)):
            self._lut = table.view(np.uint8).reshape(256, 1, c).transpose(1, 0, 2).copy()
        elif self.dtype == np.dtype(np.float32):
            self._lut = table.reshape(256, 1, c).transpose(1, 0, 2).copy()
        else:
            self._lut = None
        if c == 1 and self._lut is not None:
            self._lut = self._lut[:, :, 0].copy()
        self.color = pre.color
        # RGB into an NHWC table-encoded input: table on the BGR pixels (channels reversed), then one swap
        # written straight into the input buffer (see encode_bgr_into)
        self._bgr_lut = None
        if pre.color == "RGB" and pre.layout == "NHWC" and self._lut is not None:
            self._bgr_lut = self._lut[:, :, ::-1].copy() if self._lut.ndim == 3 else self._lut
            self._scratch = np.empty((*pre.input_size, 3), self._lut.dtype)

    def __call__(self, prepared: np.ndarray) -> np.ndarray:
        """Encode one prepared HxWxC uint8 image as a batch-of-one tensor."""
        h, w, c = prepared.shape
        out = np.empty((c, h, w) if self.layout == "NCHW" else (h, w, c), self.dtype)
        self.encode_into(prepared, out)
        return out[None]

    def encode_bgr_into(self, img_bgr: np.ndarray, out: np.ndarray) -> None:
        """Like ``encode_into`` for a BGR image already at the input size (``resize_geometry``'s output): the
        colour step folded in. An RGB model gets two passes and no temporary image: the table on the BGR
        pixels into a scratch buffer, then ``cv2.cvtColor`` writing the swapped pixels into ``out``."""
        if self._bgr_lut is None or img_bgr.shape != self._scratch.shape:
            self.encode_into(to_model_colour(img_bgr, self.color), out)
            return
        cv2.LUT(img_bgr, self._bgr_lut, dst=self._scratch)
        target = self._opencv_view(out)
        _keep(cv2.cvtColor(self._scratch, cv2.COLOR_BGR2RGB, dst=target), target)

    def encode_into(self, prepared: np.ndarray, out: np.ndarray) -> None:
        """Encode one prepared HxWxC uint8 image into ``out`` (one item of the input tensor, HWC or CHW):
        an interpreter's own input buffer, so the pixels are written once."""
        if self.layout == "NCHW" or self._lut is None:
            if self._lut is not None:
                hwc = cv2.LUT(prepared, self._lut).reshape(prepared.shape).view(self.dtype)
            else:
                hwc = self._numpy_table[prepared, np.arange(prepared.shape[2]) % self._numpy_table.shape[1]]
            out[...] = hwc.transpose(2, 0, 1) if self.layout == "NCHW" else hwc
            return
        target = self._opencv_view(out)
        if prepared.shape[2] == 1:  # GRAY: OpenCV works on the HxW plane
            prepared, target = prepared[:, :, 0], target[:, :, 0]
        _keep(cv2.LUT(prepared, self._lut, dst=target), target)

    def _opencv_view(self, out: np.ndarray) -> np.ndarray:
        """``out`` as OpenCV can write it: int8 tensors through their uint8 view (the tables hold the bytes)."""
        return out.view(np.uint8) if self.dtype == np.dtype(np.int8) else out


def _keep(written: np.ndarray, target: np.ndarray) -> None:
    """Make sure an OpenCV result asked for in ``target`` lands there: with a layout it does not expect, OpenCV
    allocates instead of writing into ``dst``, and the result would be lost."""
    if written is not target:
        target[...] = written


def normalised(images_bgr: np.ndarray, pre: Preprocess) -> np.ndarray:
    """BGR uint8 images at the input size -> the float32 NHWC batch a Keras model takes ((p - mean) / std)."""
    encode = InputEncoder(dataclasses.replace(pre, layout="NHWC"), np.float32)
    out = np.empty((len(images_bgr), *pre.input_size, pre.channels), np.float32)
    for image, item in zip(images_bgr, out):
        encode.encode_bgr_into(image, item)
    return out
