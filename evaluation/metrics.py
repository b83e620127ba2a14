"""Inpainting metrics on single images (numpy + scikit-image; never imports paddle).

Images are [H, W, 3] (or [H, W]) and either uint8 in [0, 255] or float in [0, 1]; both give
the same numbers. Masks are [H, W], [1, H, W] or [H, W, 1] with 1 = hole. Percent-valued metrics
are computed on [0, 1] images and multiplied by 100.
"""

import numpy as np

METRIC_NAMES = ("hole_l1", "psnr", "ssim", "l1", "l2", "tv")


def _unit(image):
    """uint8 in [0, 255] or float in [0, 1] -> float64 in [0, 1]."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


def hole_l1(gt, pred, mask):
    """Mean absolute error over hole pixels and channels, on [0, 1] images, x100.

    Equals MMagic's MAE with mask_key and scaling=100.

    Returns:
        float; nan when the mask has no hole.
    """
    gt, pred = _unit(gt), _unit(pred)
    mask = np.asarray(mask, np.float64).reshape(gt.shape[:2])
    channels = gt.shape[2] if gt.ndim == 3 else 1
    weight = mask.sum() * channels
    if weight == 0:
        return float("nan")
    diff = np.abs(gt - pred)
    diff = diff.sum(axis=2) if gt.ndim == 3 else diff
    return float(100.0 * (diff * mask).sum() / weight)


def psnr(gt, pred):
    """PSNR in dB over the whole image, peak 255 (1 for [0, 1] floats); inf when identical."""
    mse = np.mean((_unit(gt) - _unit(pred)) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(1.0 / mse))


def ssim(gt, pred):
    """SSIM over the whole image, Gaussian window sigma 1.5 (Wang et al. 2004; MMagic settings).

    Colour images average the per-channel SSIM.
    """
    from skimage.metrics import structural_similarity  # slow import (~0.3 s), only needed here

    gt, pred = 255.0 * _unit(gt), 255.0 * _unit(pred)
    return float(structural_similarity(
        gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255, channel_axis=-1 if gt.ndim == 3 else None))


def l1_error(gt, pred):
    """The v1 paper's l1: mean |gt - pred| over the whole image on [0, 1], in percent.

    The paper does not define its l1/l2/TV precisely (official repo issue #146 calls them
    relative errors, for reference only); this is our definition.
    """
    return float(100.0 * np.mean(np.abs(_unit(gt) - _unit(pred))))


def l2_error(gt, pred):
    """The v1 paper's l2: mean (gt - pred)^2 over the whole image on [0, 1], in percent.

    Our definition; the paper's is not precise (official repo issue #146).
    """
    return float(100.0 * np.mean((_unit(gt) - _unit(pred)) ** 2))


def tv(pred):
    """The v1 paper's TV, our definition (the paper's is not precise; issue #146).

    mean |x[i+1, j] - x[i, j]| + mean |x[i, j+1] - x[i, j]| on [0, 1], in percent, each mean
    over the pixel pairs that exist (and channels).
    """
    x = _unit(pred)
    vertical = np.mean(np.abs(np.diff(x, axis=0)))
    horizontal = np.mean(np.abs(np.diff(x, axis=1)))
    return float(100.0 * (vertical + horizontal))


def compute_all(gt_u8, pred_u8, mask):
    """All metrics for one image pair, keyed by METRIC_NAMES in that order."""
    values = (hole_l1(gt_u8, pred_u8, mask), psnr(gt_u8, pred_u8), ssim(gt_u8, pred_u8),
              l1_error(gt_u8, pred_u8), l2_error(gt_u8, pred_u8), tv(pred_u8))
    return dict(zip(METRIC_NAMES, values))
