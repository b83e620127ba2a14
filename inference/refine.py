"""LaMa's high-resolution refinement: the network's features re-optimised per scale.

Kulshreshtha, Pugh, Jiddi, "Feature Refinement to Improve High Resolution Image Inpainting"
(arXiv:2206.13644), as LaMa ships it: advimman/lama ``saicinpainting/evaluation/refinement.py``
(``refine_predict``) with ``configs/prediction/default.yaml`` (n_iters 15, lr 0.002, min_side
512, max_scales 3, px_budget 1.8 MP).

A photo larger than ``px_budget`` pixels is first resized to fit it. Then an image/mask pyramid
of up to ``max_scales`` levels (each half the size of the one above, Gaussian 5x5 sigma 1 blur
then bilinear; as many levels as keep the short side near ``min_side``) is inpainted from the
coarsest level up. The coarsest level is a plain forward pass. At every finer level the
generator's 1/8-resolution features (the output of its downsampling front, ``netG.encode``) are
optimised with Adam for ``n_iters - 1`` steps so that the prediction (``netG.decode``) keeps the
known pixels (L1) and, shrunk by one pyramid step, matches the coarser level's result inside the
hole (L1 on the hole eroded by a 15x15 ellipse, so its border is left to the fine level); the
prediction of the last iteration, composited with the known pixels, is that level's result.

Differences from the official code:

- It runs on the CPU (the official one builds ``cuda:<id>`` devices and crashes without a GPU,
  lama issue #152) and in one process; its memory is that of one forward and backward pass of
  the generator's rear at the finest level, bounded by ``px_budget`` (measured in the README).
- Where erosion leaves no hole pixel at a level (thin strokes), the official mean over an empty
  set is NaN and poisons the features; here that term is left out (the known-pixel term stays).
- The result has the size the refinement worked at (the photo's, or smaller when the photo
  exceeds ``px_budget``); ``inference.Inpainter`` scales it to the photo and pastes the hole.
"""
import math

import cv2
import numpy as np
import paddle
import paddle.nn.functional as F

from models.ops import gaussian_blur, resize_bilinear

REFINE_DEFAULTS = dict(n_iters=15, lr=0.002, min_side=512, max_scales=3, px_budget=1_800_000)
EPS = 1e-8


def pyrdown(x, size=None):
    """One pyramid step: Gaussian blur (5x5, sigma 1, reflect border), bilinear to ``size``
    (default half, rounded down)."""
    size = size or [x.shape[2] // 2, x.shape[3] // 2]
    return resize_bilinear(gaussian_blur(x, 5, 1.0, 'reflect'), size)


def pyrdown_mask(mask, blur=True, round_up=True):
    """A mask one pyramid step down, binarised: any trace of hole (``round_up``) or only pixels
    that are entirely hole count as hole.

    Computed in float64: in float32 the bilinear weights of a pixel can sum to 1 - 2^-24, which
    would drop pixels that are entirely hole from ``>= 1 - 1e-8`` (torch's happen to sum to 1).
    """
    dtype, size = mask.dtype, [mask.shape[2] // 2, mask.shape[3] // 2]
    mask = mask.astype('float64')
    mask = gaussian_blur(mask, 5, 1.0, 'reflect') if blur else mask
    return (resize_bilinear(mask, size) >= (EPS if round_up else 1.0 - EPS)).astype(dtype)


def erode(mask, size=15):
    """Binary erosion by an ellipse (cv2.MORPH_ELLIPSE); outside the image counts as hole."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)).astype(np.float64)
    weight = paddle.to_tensor(kernel[None, None]).astype(mask.dtype)
    known = F.conv2d(1.0 - mask, weight, padding=size // 2)  # known pixels under the ellipse
    return (known <= 0.5).astype(mask.dtype)


def pyramid(image, mask, min_side, max_scales, px_budget):
    """[(image, mask), ...] from the coarsest level to the finest (the photo, or its resize to
    ``px_budget`` pixels)."""
    h, w = image.shape[2:]
    if h * w > px_budget:
        ratio = math.sqrt(px_budget / float(h * w))
        size = [int(h * ratio), int(w * ratio)]
        image = resize_bilinear(image, size)
        mask = (resize_bilinear(mask.astype('float64'), size) > EPS).astype(image.dtype)
        h, w = size
    scales = min(1 + int(round(max(0.0, math.log2(min(h, w) / min_side)))), max_scales)
    levels = [(image, mask)]
    for _ in range(scales - 1):
        levels.append((pyrdown(levels[-1][0]), pyrdown_mask(levels[-1][1])))
    return levels[::-1]


def pad_to(x, multiple):
    """Reflect-pads [N, C, H, W] at the bottom and right to multiples of ``multiple``."""
    h, w = x.shape[2:]
    return F.pad(x, [0, -w % multiple, 0, -h % multiple], mode='reflect')


def masked_mean(values, where):
    """Mean of ``values`` over the pixels where ``where`` is 1; None where there are none."""
    count = float(where.sum())
    return None if count == 0 else (values * where).sum() / count


def refine_level(netG, image, mask, reference, n_iters, lr):
    """One level: ``image`` [1, 3, h, w] in [0, 1] and ``mask`` padded to the size multiple,
    ``reference`` the coarser level's result (None: the coarsest, a plain forward). Returns
    the composite at this level, [1, 3, H, W] (cropped to the unpadded size)."""
    h, w = image.shape[2:]
    padded, holes = pad_to(image, 8), (pad_to(mask, 8) >= EPS).astype(mask.dtype)
    with paddle.no_grad():
        features = [f.detach() for f in netG.encode(
            paddle.concat([padded * (1.0 - holes), holes], axis=1)) if f is not None]
    for f in features:
        f.stop_gradient = False
    optimizer = paddle.optimizer.Adam(lr, parameters=features)
    known = (holes < EPS).astype(holes.dtype).expand_as(padded)
    target_holes = None
    if reference is not None:  # the hole one level down, eroded: the coarser result's trust
        target_holes = erode(pyrdown_mask(holes[:, :, :h, :w], blur=False, round_up=False))
        target_holes = target_holes.expand_as(reference)
    if reference is None:  # the coarsest level: a plain forward
        with paddle.no_grad():
            pred = netG.decode(*(features + [None])[:2])
    for step in range(n_iters if reference is not None else 0):
        pred = netG.decode(*(features + [None])[:2], checkpoint=True)
        loss = masked_mean((pred - padded).abs(), known)
        coarse = masked_mean((pyrdown(pred[:, :, :h, :w]) - reference).abs(), target_holes)
        loss = coarse if loss is None else loss if coarse is None else loss + coarse
        if step < n_iters - 1 and loss is not None:
            optimizer.clear_grad()
            loss.backward()
            optimizer.step()
    with paddle.no_grad():
        out = holes * pred + (1.0 - holes) * padded
    return out[:, :, :h, :w].detach()


def refine(model, image, mask, n_iters=15, lr=0.002, min_side=512, max_scales=3,
           px_budget=1_800_000):
    """LaMa's multi-scale feature refinement of a whole photo (see the module docstring).

    Args:
        model: a LaMa model (its ``netG`` has ``encode`` and ``decode``), in eval mode.
        image: float [1, 3, H, W] numpy in [0, 1]; mask [1, 1, H, W], 1 = hole.
    Returns:
        float [1, 3, h, w] numpy in [0, 1]: the inpainted photo at the refinement's size (the
        photo's, or the ``px_budget`` resize).
    """
    netG = getattr(model, 'netG', None)
    if not (hasattr(netG, 'encode') and hasattr(netG, 'decode')):
        raise ValueError(f"strategy: 'refine' needs a LaMa checkpoint (its generator's features "
                         f"are optimised), not {getattr(model, 'NAME', type(model).__name__)}")
    if n_iters < 1 or lr <= 0 or min_side < 1 or max_scales < 1 or px_budget < 64:
        raise ValueError('refine: expected n_iters >= 1, lr > 0, min_side >= 1, max_scales >= 1 '
                         f'and px_budget >= 64, got {n_iters}, {lr}, {min_side}, {max_scales}, '
                         f'{px_budget}')
    params = [p for p in netG.parameters() if not p.stop_gradient]
    for p in params:  # only the features are optimised
        p.stop_gradient = True
    try:
        dtype = netG.out.weight.dtype
        result = None
        levels = pyramid(paddle.to_tensor(image).astype(dtype), paddle.to_tensor(mask).astype(
            dtype), min_side, max_scales, px_budget)
        for level_image, level_mask in levels:
            result = refine_level(netG, level_image, level_mask, result, n_iters, lr)
    finally:
        for p in params:
            p.stop_gradient = False
    return result.numpy()
