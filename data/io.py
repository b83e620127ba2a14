"""Image and mask file I/O (numpy + PIL only; never imports paddle).

Conventions: files decode to uint8 HxWx3 RGB; network tensors are float32 CHW RGB in [-1, 1];
masks are float32 with 1 = hole, 0 = known.
"""

import os
import secrets
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

# What PIL raises for missing, truncated, corrupt or non-image files. Decoders are not
# consistent (a bad JPEG gives OSError, a bad PNG chunk SyntaxError or struct.error, ...).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error,
                  Image.DecompressionBombError)


class ImageReadError(ValueError):
    """A file that cannot be read as an image.

    Args:
        path: the file.
        reason: one line saying why.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = " ".join(str(reason).split()) or "unknown error"
        super().__init__(f"cannot read image {self.path}: {self.reason}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return type(self), (self.path, self.reason)


_WARNED = set()  # paths already reported by warn_skip in this process


def warn_skip(exc, what="image"):
    """Warns that the file of an ImageReadError is skipped, once per path per process."""
    if exc.path not in _WARNED:
        _WARNED.add(exc.path)
        warnings.warn(f"skipping unreadable {what} {exc.path}: {exc.reason}", stacklevel=3)


def _reason(exc):
    """One-line description of a decoder exception."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _split_alpha(img):
    """Converts a decoded PIL image to (colour, alpha) uint8 arrays.

    Returns:
        colour: HxW (grey) or HxWx3 (RGB) uint8.
        alpha: HxW uint8, or None when the image has no alpha channel.
    """
    mode = img.mode
    if mode == "PA" or (mode == "P" and "transparency" in img.info):
        img, mode = img.convert("RGBA"), "RGBA"
    elif mode in ("RGBa", "La"):  # premultiplied alpha: undo it first
        img = img.convert(mode.upper())
        mode = img.mode
    if mode in ("RGBA", "LA"):
        arr = np.asarray(img)
        colour = arr[..., 0] if mode == "LA" else arr[..., :3]
        return colour, arr[..., -1]
    if mode == "I" or mode.startswith("I;16"):
        # PIL's convert() clips 16-bit values to 255 instead of rescaling them.
        arr = np.asarray(img).astype(np.float64)
        return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), None
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img).astype(np.float64))
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), None
    if mode in ("1", "L"):
        return np.asarray(img.convert("L")), None
    return np.asarray(img.convert("RGB")), None


def _decode(path):
    """Fully decodes `path`; returns _split_alpha's (colour, alpha) or raises ImageReadError."""
    try:
        with Image.open(path) as img:
            img.load()  # decode now so truncated files fail here, not in a worker later
            img = ImageOps.exif_transpose(img)
            return _split_alpha(img)
    except _DECODE_ERRORS as exc:
        raise ImageReadError(path, _reason(exc)) from exc


def read_image(path):
    """Reads any PIL-readable image as RGB.

    Applies the EXIF orientation, drops alpha (no compositing), replicates grey, scales 16-bit
    data by 1/257 and float data from [0, 1] (or [0, 255] when its max exceeds 1).

    Args:
        path: image file.

    Returns:
        uint8 array [H, W, 3], RGB.

    Raises:
        ImageReadError: missing, truncated, corrupt or non-image file.
    """
    colour, _ = _decode(path)
    if colour.ndim == 2:
        colour = np.repeat(colour[:, :, None], 3, axis=2)
    return np.ascontiguousarray(colour, dtype=np.uint8)


def _luminance(path):
    """Grey values in [0, 255] (float32 [H, W]); alpha composited over black (see read_grey)."""
    colour, alpha = _decode(path)
    value = colour.astype(np.float32)
    if value.ndim == 3:
        value = value @ np.array([0.299, 0.587, 0.114], np.float32)
    if alpha is not None and alpha.min() < 255:
        value = value * (alpha.astype(np.float32) / 255.0)
    return value


def read_grey(path):
    """Reads an image as grey values in [0, 1] (masks, user sketches).

    A not fully opaque alpha channel is composited over black first, so strokes painted on a
    transparent layer work. Colour images use their luminance (ITU-R 601, as PIL's 'L').

    Returns:
        float32 array [H, W] in [0, 1].

    Raises:
        ImageReadError: missing, truncated, corrupt or non-image file.
    """
    return _luminance(path) / 255.0


def read_mask(path, threshold=127):
    """Reads a mask image: white (> threshold, default 127, of 255) = hole (see ``read_grey``).

    Returns:
        float32 array [H, W] in {0, 1}, 1 = hole.

    Raises:
        ImageReadError: missing, truncated, corrupt or non-image file.
    """
    return (_luminance(path) > threshold).astype(np.float32)


def resize_mask(mask, size_hw):
    """Nearest-neighbour resize of a {0, 1} mask, so it stays binary.

    Args:
        mask: [H, W] array.
        size_hw: (height, width) of the output.

    Returns:
        float32 array [size_hw[0], size_hw[1]].
    """
    height, width = size_hw
    mask = np.asarray(mask, np.float32)
    if mask.shape == (height, width):
        return mask.copy()
    return cv2.resize(mask, (int(width), int(height)), interpolation=cv2.INTER_NEAREST)


def save_image(path, image):
    """Writes an image atomically (temp file in the same folder, then os.replace).

    Args:
        path: output file; the format follows its extension. Parent folders are created.
        image: uint8 [H, W, 3] RGB or [H, W] grey.

    Raises:
        ValueError: unknown extension, or image not uint8 [H, W] / [H, W, 3].
    """
    path = Path(path)
    image = np.asarray(image)
    shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    if image.dtype != np.uint8 or not shape_ok:
        raise ValueError(f"save_image expects uint8 [H,W,3] or [H,W], got {image.dtype} "
                         f"{list(image.shape)} for {path}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"save_image: unknown image extension '{path.suffix}' in {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened with "xb" (not mkstemp, whose 0600 mode would stick to the result).
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as fh:
            Image.fromarray(np.ascontiguousarray(image)).save(fh, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def to_tensor_range(img_uint8):
    """uint8 [H, W, C] in [0, 255] -> float32 [C, H, W] in [-1, 1]."""
    img = np.asarray(img_uint8, np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def to_uint8(chw):
    """float [C, H, W] in [-1, 1] -> uint8 [H, W, C] (rounded, out-of-range values clipped)."""
    img = (np.asarray(chw, np.float32).transpose(1, 2, 0) + 1.0) * 127.5
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
