"""Test-time post-processing of inpainted images (numpy + OpenCV; no paddle), for any model.

``glcic``: GLCIC's optional blending (the paper's post-processing; official ``inpaint.lua
--postproc``, otenim's ``poisson_blend``): OpenCV's fast-marching fill (Telea 2004, radius 1) of
the hole gives the destination, then Poisson image editing (``cv2.seamlessClone``, NORMAL_CLONE)
pastes the network's hole content onto it, so colours match the surroundings at the hole's edge.
"""

import cv2
import numpy as np

POSTPROCESSES = ("none", "glcic")


def glcic_blend(image, mask):
    """GLCIC post-processing of a composite.

    Args:
        image: uint8 [H, W, 3], the inpainted composite (known pixels from the input).
        mask: [H, W], nonzero = hole.

    Returns:
        uint8 [H, W, 3]: hole pixels blended, known pixels exactly those of ``image``.

    Deviation: the references centre the clone at (min + max) // 2 of the hole's bounding box,
    which shifts the pasted content by one pixel when the box has an even width or height;
    here the centre is the one OpenCV maps back onto the same box (x + w // 2, y + h // 2).
    """
    image = np.ascontiguousarray(image, np.uint8)
    hole = (np.asarray(mask) > 0).astype(np.uint8) * 255
    # seamlessClone ignores the mask's outermost pixel ring, then clones the mask's bounding box
    inner = np.zeros_like(hole)
    inner[1:-1, 1:-1] = hole[1:-1, 1:-1]
    filled = cv2.inpaint(image, hole, 1, cv2.INPAINT_TELEA)
    if inner.any():
        x, y, w, h = cv2.boundingRect(inner)
        filled = cv2.seamlessClone(image, filled, inner, (x + w // 2, y + h // 2),
                                   cv2.NORMAL_CLONE)
    return np.where(hole[..., None] > 0, filled, image)


def postprocess(name, image, mask):
    """Applies post-processing ``name`` ('none' or 'glcic') to a uint8 HxWx3 image."""
    if name == "none":
        return image
    if name == "glcic":
        return glcic_blend(image, mask)
    raise ValueError(f"postprocess: unknown method {name!r} (valid: {', '.join(POSTPROCESSES)})")
