"""Tests for data/metrics.py against hand-computed values."""

import math

import numpy as np
import pytest

from evaluation.metrics import (METRIC_NAMES, compute_all, hole_l1, l1_error, l2_error, psnr,
                                ssim, tv)


def _const(value, shape=(8, 8, 3)):
    return np.full(shape, value, np.uint8)


def test_psnr_known_mse_and_identical():
    # Every pixel off by 10 -> MSE 100 on the 0..255 scale.
    expected = 10 * math.log10(255**2 / 100)
    assert psnr(_const(0), _const(10)) == pytest.approx(expected, abs=1e-9)
    assert psnr(_const(0), _const(10)) == pytest.approx(28.1308036, abs=1e-6)
    assert psnr(_const(0) / 255.0, _const(10) / 255.0) == pytest.approx(expected, abs=1e-9)
    assert psnr(_const(7), _const(7)) == float("inf")


def test_hole_l1_two_by_two():
    gt = np.repeat(np.array([[0, 255], [255, 0]], np.uint8)[:, :, None], 3, axis=2)
    pred = np.zeros_like(gt)
    mask = np.array([[1, 1], [0, 0]], np.float32)  # hole = top row: errors 0 and 1
    assert hole_l1(gt, pred, mask) == pytest.approx(50.0)
    assert hole_l1(gt, pred, mask[None]) == pytest.approx(50.0)  # [1, H, W] masks work too
    assert hole_l1(gt, pred, 1 - mask) == pytest.approx(50.0)
    assert hole_l1(gt, pred, np.array([[0, 1], [0, 0]])) == pytest.approx(100.0)
    # One channel off by 51 (0.2) in a one-pixel hole: mean over 3 channels = 0.2 / 3.
    pred2 = gt.copy()
    pred2[0, 0, 1] = 51
    assert hole_l1(gt, pred2, np.array([[1, 0], [0, 0]])) == pytest.approx(100 * 0.2 / 3)
    assert math.isnan(hole_l1(gt, pred, np.zeros((2, 2))))


def test_ssim_identical_and_degraded():
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)
    assert ssim(image, image) == pytest.approx(1.0)
    noisy = np.clip(image + rng.normal(0, 40, image.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim(image, noisy) < 0.9
    assert ssim(image, noisy) == pytest.approx(ssim(image / 255.0, noisy / 255.0), abs=1e-9)


def test_l1_l2_tv_hand_values():
    assert l1_error(_const(0), _const(51)) == pytest.approx(20.0)  # 51 / 255 = 0.2
    assert l2_error(_const(0), _const(51)) == pytest.approx(4.0)  # 0.2^2 = 0.04
    # Horizontal ramp, step 10: every horizontal pair differs by 10/255, vertical pairs by 0.
    ramp = np.repeat(np.tile(np.arange(0, 110, 10, dtype=np.uint8), (5, 1))[:, :, None], 3, 2)
    assert tv(ramp) == pytest.approx(100 * 10 / 255)
    assert tv(ramp.transpose(1, 0, 2)) == pytest.approx(100 * 10 / 255)
    assert tv(_const(3)) == 0.0


def test_compute_all_order_and_values():
    gt = np.random.RandomState(1).randint(0, 256, (16, 16, 3)).astype(np.uint8)
    pred = gt.copy()
    pred[4:8, 4:8] = 0
    mask = np.zeros((16, 16), np.float32)
    mask[4:8, 4:8] = 1
    values = compute_all(gt, pred, mask)
    assert tuple(values) == METRIC_NAMES == ("hole_l1", "psnr", "ssim", "l1", "l2", "tv")
    assert values["hole_l1"] == pytest.approx(100 * gt[4:8, 4:8].mean() / 255)
    assert values["l1"] == pytest.approx(values["hole_l1"] * 16 / 256)  # hole = 1/16 of image
    assert values["psnr"] == pytest.approx(psnr(gt, pred)) and values["ssim"] < 1
    assert all(isinstance(v, float) for v in values.values())
