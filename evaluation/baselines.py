"""Classical inpainting to compare the models against (numpy + OpenCV)."""
import cv2
import numpy as np


def telea(image_u8, mask):
    """OpenCV's Telea (2004) inpainting of the hole, radius 3: a classical baseline.

    Args:
        image_u8: uint8 [H, W, 3]; mask: [H, W], nonzero = hole.
    """
    return cv2.inpaint(image_u8, (mask > 0).astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)


BASELINES = {'none': None, 'telea': telea}
