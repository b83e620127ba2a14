"""Edge maps for DeepFill v2's optional user-guidance (sketch) channel.

The official code trained the guided model on edge maps from a learned detector (HED) whose
weights we cannot ship; we use the classical Canny detector on a Gaussian-blurred grey image
instead, with the thresholds in the model config (``DeepFillV2.extra_inputs`` calls it). At test
time the user draws the sketch: white lines on black, of the photo's size.
"""
import cv2
import numpy as np


def canny_edges(images, sigma=2.0, low=30, high=80):
    """Binary Canny edge maps of a batch.

    Args:
        images: float [N, 3, H, W] in [-1, 1] (numpy).
        sigma: Gaussian blur before Canny, in pixels (0: none); larger keeps only strong edges.
        low, high: Canny hysteresis thresholds on the 8-bit gradient magnitude.
    Returns:
        float32 [N, 1, H, W] in {0, 1}, 1 = edge.
    """
    images = np.asarray(images, np.float32)
    grey = (images.transpose(0, 2, 3, 1) + 1) * 127.5 @ np.array([0.299, 0.587, 0.114], np.float32)
    out = []
    for g in np.clip(np.rint(grey), 0, 255).astype(np.uint8):
        if sigma > 0:
            g = cv2.GaussianBlur(g, (0, 0), sigma)
        out.append(cv2.Canny(g, low, high, L2gradient=True) > 0)
    return np.stack(out)[:, None].astype(np.float32)
