"""Hole masks: DeepFill v1 boxes, DeepFill v2 free-form strokes, irregular masks, LaMa's random
masks, mask files.

numpy, PIL.ImageDraw and cv2 (LaMa's strokes, drawn as the official code draws them) only; never
imports paddle. Every random draw comes from an explicit np.random.RandomState. Masks are float32,
1 = hole, 0 = known: [1, H, W] per sample and [N, 1, H, W] per batch. Boxes are (top, left,
height, width).
"""

import functools
import math
import os
import warnings

import cv2
import numpy as np
from PIL import Image, ImageDraw

from .dataset import IMAGE_EXTENSIONS, list_images, read_flist
from .io import ImageReadError, read_mask, resize_mask, warn_skip

HOLE_RANGE = (0.01, 0.6)  # PConv paper: test buckets (0.01, 0.1], ..., (0.5, 0.6]


def _pair(size):
    """int or (h, w) -> (h, w) ints."""
    if np.isscalar(size):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def _check_fits(image_size, bbox_size, margin):
    """Raises ValueError unless a bbox_size box plus margins on both sides fits the image."""
    (height, width), (box_h, box_w) = _pair(image_size), _pair(bbox_size)
    margin_v, margin_h = _pair(margin)
    if (min(box_h, box_w) < 1 or min(margin_v, margin_h) < 0
            or box_h + 2 * margin_v > height or box_w + 2 * margin_h > width):
        raise ValueError(f"masks: bbox {box_h}x{box_w} with margins ({margin_v}, {margin_h}) "
                         f"does not fit in a {height}x{width} image")


def random_bbox(rng, image_size, bbox_size=(128, 128), margin=(0, 0)):
    """A random box, as the official v1 `random_bbox`: two rng draws, top then left.

    top ~ U{m_v, ..., H - m_v - bbox_h - 1} (TF's random_uniform maxval is exclusive), left
    likewise. Sizes are ints or (h, w); margin is (vertical, horizontal).

    Returns:
        (top, left, bbox_h, bbox_w) ints.

    Raises:
        ValueError: the box plus margins does not fit in the image.
    """
    _check_fits(image_size, bbox_size, margin)
    (height, width), (box_h, box_w) = _pair(image_size), _pair(bbox_size)
    margin_v, margin_h = _pair(margin)
    max_top, max_left = height - margin_v - box_h, width - margin_h - box_w
    # A box that fits exactly has one position (the official code fails on the empty range);
    # still one draw each, so the random stream does not depend on the sizes.
    top = rng.randint(margin_v, max(max_top, margin_v + 1))
    left = rng.randint(margin_h, max(max_left, margin_h + 1))
    return int(top), int(left), box_h, box_w


def bbox_to_mask(bbox, image_size, max_delta=(32, 32), rng=None):
    """The hole inside a box, as the official v1 `bbox2mask`.

    The box shrinks by dh ~ U{0..max_delta_h // 2} on top and bottom and dw ~ U{0..
    max_delta_w // 2} on left and right, so a 128 box with delta 32 gives 96..128 holes.

    Args:
        bbox: (top, left, h, w).
        image_size: int or (H, W).
        max_delta: int or (max_delta_h, max_delta_w); (0, 0) at inference.
        rng: two draws (dh, then dw); may be None only when max_delta < 2 (no shrink).

    Returns:
        float32 [1, H, W] in {0, 1}.
    """
    height, width = _pair(image_size)
    delta_h, delta_w = _pair(max_delta)
    top, left, box_h, box_w = (int(v) for v in bbox)
    if rng is None:
        if max(delta_h, delta_w) >= 2:
            raise ValueError("masks: bbox_to_mask needs an rng when max_delta >= 2")
        dh = dw = 0
    else:
        dh = rng.randint(delta_h // 2 + 1)
        dw = rng.randint(delta_w // 2 + 1)
    mask = np.zeros((1, height, width), np.float32)
    mask[:, top + dh:top + box_h - dh, left + dw:left + box_w - dw] = 1.0
    return mask


def brush_stroke_mask(rng, image_size):
    """Free-form strokes, the official DeepFill v2 `brush_stroke_mask`.

    1-3 strokes of 4-11 segments each; segment angles alternate around 2*pi/5 (+- up to
    2*pi/15), lengths ~ N(r, r // 2) clipped to [0, 2r] with r = sqrt(H^2 + W^2) / 8, brush
    width int(U(12, 40)) drawn as a PIL line plus a filled circle at every vertex. The rng calls
    are the official ones in the official order: RandomState(2018) gives 10,347 hole pixels
    at 256x256.

    Deviation: the official code reads `h, w = mask.size` (PIL's (width, height)), swapping
    the axes; here x runs along the width and y along the height. Square images are unaffected.

    Returns:
        float32 [1, H, W] in {0, 1}, for image_size int or (H, W).
    """
    height, width = _pair(image_size)
    mean_angle, angle_range = 2 * math.pi / 5, 2 * math.pi / 15
    average_radius = math.sqrt(height * height + width * width) / 8
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(rng.randint(1, 4)):
        num_vertex = rng.randint(4, 12)
        angle_min = mean_angle - rng.uniform(0, angle_range)
        angle_max = mean_angle + rng.uniform(0, angle_range)
        # Even segments turn one way and odd ones the other, which gives the zig-zag.
        angles = [2 * math.pi - rng.uniform(angle_min, angle_max) if i % 2 == 0
                  else rng.uniform(angle_min, angle_max) for i in range(num_vertex)]
        vertex = [(int(rng.randint(0, width)), int(rng.randint(0, height)))]
        for angle in angles:
            r = np.clip(rng.normal(loc=average_radius, scale=average_radius // 2),
                        0, 2 * average_radius)
            x = np.clip(vertex[-1][0] + r * math.cos(angle), 0, width)
            y = np.clip(vertex[-1][1] + r * math.sin(angle), 0, height)
            vertex.append((int(x), int(y)))
        brush = int(rng.uniform(12, 40))
        draw.line(vertex, fill=1, width=brush)
        for x, y in vertex:  # round joints and caps
            draw.ellipse((x - brush // 2, y - brush // 2, x + brush // 2, y + brush // 2), fill=1)
    # The official code "flips" with p = 0.5 twice but discards the flipped image, so the flips
    # are no-ops; the two draws stay so that the random stream matches the official one.
    rng.normal()
    rng.normal()
    return np.asarray(mask, np.float32)[None].copy()


def free_form_mask(rng, image_size, bbox_size=(128, 128), max_delta=(32, 32), margin=(0, 0)):
    """DeepFill v2 training mask: free-form strokes OR a v1 box hole.

    The official code runs both generators as TF ops in no fixed order. Here the strokes come
    first, then the box (random_bbox, bbox_to_mask), all from `rng`: this is the order that
    reproduces the reference statistics of 2,000 masks at 256x256 from RandomState(0) to three
    decimals (hole mean 0.308, p5 0.207, p95 0.432; strokes mean 0.149; box mean 0.191).

    Returns:
        float32 [1, H, W] in {0, 1}.
    """
    strokes = brush_stroke_mask(rng, image_size)
    bbox = random_bbox(rng, image_size, bbox_size, margin)
    return np.maximum(strokes, bbox_to_mask(bbox, image_size, max_delta, rng))


def irregular_mask(rng, image_size, hole_range=HOLE_RANGE):
    """An irregular hole in the spirit of PConv's mask set: strokes and blobs up to a target area.

    The PConv paper's masks (occlusion masks from videos, dilated, rotated and cropped) were not
    released with code; this generator targets the same statistic, the hole-to-image ratio: it
    draws a target ratio uniformly in ``hole_range``, then adds random shapes until the hole
    covers at least that fraction. Shapes (sizes relative to s = min(H, W)): thick random-walk
    strokes (2-7 segments of 0.05-0.3 s, width 0.02-0.09 s, round joints) with probability 0.7,
    else rotated ellipses (semi-axes 0.03-0.18 s). The last shape can overshoot the target by
    about one shape's area; `tests/test_masks.py` checks the ratios cover the buckets.

    Returns:
        float32 [1, H, W] in {0, 1}.
    """
    height, width = _pair(image_size)
    low, high = float(hole_range[0]), float(hole_range[1])
    if not 0 < low <= high < 1:
        raise ValueError(f"masks: hole_range must satisfy 0 < low <= high < 1, got {hole_range}")
    target, side = rng.uniform(low, high), min(height, width)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    covered = 0.0
    for _ in range(500):  # never reached in practice: each shape covers >= ~0.1% of the image
        if rng.uniform() < 0.7:
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            brush = max(1, int(side * rng.uniform(0.02, 0.09)))
            points, angle = [(x, y)], rng.uniform(0, 2 * math.pi)
            for _ in range(rng.randint(2, 8)):
                angle += rng.uniform(-math.pi / 2, math.pi / 2)
                step = side * rng.uniform(0.05, 0.3)
                x = float(np.clip(x + step * math.cos(angle), 0, width - 1))
                y = float(np.clip(y + step * math.sin(angle), 0, height - 1))
                points.append((x, y))
            draw.line(points, fill=1, width=brush)
            r = brush / 2
            for px, py in points:
                draw.ellipse((px - r, py - r, px + r, py + r), fill=1)
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            a, b = side * rng.uniform(0.03, 0.18), side * rng.uniform(0.03, 0.18)
            theta = rng.uniform(0, math.pi)
            t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
            xs = cx + a * np.cos(t) * math.cos(theta) - b * np.sin(t) * math.sin(theta)
            ys = cy + a * np.cos(t) * math.sin(theta) + b * np.sin(t) * math.cos(theta)
            draw.polygon(list(zip(xs.tolist(), ys.tolist())), fill=1)
        covered = float(np.asarray(canvas, np.float32).mean())
        if covered >= target:
            break
    return np.asarray(canvas, np.float32)[None].copy()


# LaMa's random masks (Suvorov et al., "Resolution-robust Large Mask Inpainting with Fourier
# Convolutions", WACV 2022; github.com/advimman/lama), written with the keys of the official
# yaml files so each entry diffs against its config. Sizes are pixels, not rescaled with the image.
# Probabilities are weights: box_proba 0.3 next to irregular_proba 1 gives boxes 0.3 / 1.3 = 23 %.
# Hole ratio at the config's size (official code, seed 0, 1000 masks): mean 0.355 for "train";
# 0.24-0.29 for the evaluation sets, which never exceed 0.5.
LAMA_CONFIGS = {
    # configs/training/data/abl-04-256-mh-dist.yaml: the masks big-lama and lama-fourier train on
    "train": {"irregular_proba": 1, "box_proba": 1,
              "irregular_kwargs": dict(max_angle=4, max_len=200, max_width=100, min_times=1,
                                       max_times=5),
              "box_kwargs": dict(margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1,
                                 max_times=4)},
    # configs/data_gen/random_<name>.yaml: the evaluation sets made by bin/gen_mask_dataset.py
    "thin_256": {"irregular_proba": 1, "box_proba": 0,
                 "irregular_kwargs": dict(max_angle=4, max_len=40, max_width=10, min_times=4,
                                          max_times=50)},
    "thin_512": {"irregular_proba": 1, "box_proba": 0,
                 "irregular_kwargs": dict(max_angle=4, max_len=100, max_width=20, min_times=4,
                                          max_times=70)},
    "medium_256": {"irregular_proba": 1, "box_proba": 0.3,
                   "irregular_kwargs": dict(max_angle=4, max_len=100, max_width=50, min_times=4,
                                            max_times=5),
                   "box_kwargs": dict(margin=0, bbox_min_size=10, bbox_max_size=50, min_times=1,
                                      max_times=5)},
    "medium_512": {"irregular_proba": 1, "box_proba": 0.3,
                   "irregular_kwargs": dict(max_angle=4, max_len=200, max_width=100, min_times=4,
                                            max_times=10),
                   "box_kwargs": dict(margin=0, bbox_min_size=30, bbox_max_size=150, min_times=1,
                                      max_times=5)},
    "thick_256": {"irregular_proba": 1, "box_proba": 0.3,
                  "irregular_kwargs": dict(max_angle=4, max_len=200, max_width=100, min_times=1,
                                           max_times=5),
                  "box_kwargs": dict(margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1,
                                     max_times=3)},
    "thick_512": {"irregular_proba": 1, "box_proba": 0.3,
                  "irregular_kwargs": dict(max_angle=4, max_len=450, max_width=250, min_times=1,
                                           max_times=5),
                  "box_kwargs": dict(margin=10, bbox_min_size=30, bbox_max_size=300, min_times=1,
                                     max_times=4)},
}
LAMA_512_FROM = 384  # min(H, W) from which the evaluation masks use the *_512 configs
_LAMA_TWO_PI = 2 * 3.1415926  # the official constant, not 2 * math.pi: same pixels


def lama_strokes(rng, image_size, max_angle=4, max_len=60, max_width=20, min_times=0,
                 max_times=10):
    """LaMa's "irregular" mask: random polylines of thick straight segments.

    As `make_random_irregular_mask` (draw_method line) of the official
    saicinpainting/training/data/masks.py, called by its RandomIrregularMaskGenerator (no ramp),
    with the official rng calls in the official order. Strokes: U{min_times..max_times + 1}, the
    official off-by-one (the generator passes max_times + 1 as the inclusive maximum), kept. Each
    starts at a uniform pixel and has 1-5 segments of angle 0.01 + U{0..max_angle - 1} rad
    (2*pi - angle on even strokes), length 10 + U{0..max_len - 1} and width 5 + U{0..max_width -
    1}, stepping x by length * sin(angle) and y by length * cos(angle), truncated and clipped to
    [0, W] x [0, H]; each segment is one cv2.line (round caps).

    Returns:
        float32 [1, H, W] in {0, 1}, for image_size int or (H, W).
    """
    height, width = _pair(image_size)
    mask = np.zeros((height, width), np.float32)
    for stroke in range(rng.randint(min_times, max_times + 2)):
        x, y = int(rng.randint(width)), int(rng.randint(height))
        for _ in range(1 + rng.randint(5)):
            angle = 0.01 + rng.randint(max_angle)
            if stroke % 2 == 0:
                angle = _LAMA_TWO_PI - angle
            length = 10 + rng.randint(max_len)
            brush = 5 + rng.randint(max_width)
            end_x = int(np.clip(int(x + length * np.sin(angle)), 0, width))
            end_y = int(np.clip(int(y + length * np.cos(angle)), 0, height))
            cv2.line(mask, (x, y), (end_x, end_y), 1.0, int(brush))
            x, y = end_x, end_y
    return mask[None]


def lama_boxes(rng, image_size, margin=10, bbox_min_size=30, bbox_max_size=100, min_times=0,
               max_times=3):
    """LaMa's box mask: U{min_times..max_times} axis-aligned rectangles, possibly overlapping.

    As `make_random_rectangle_mask` of the official saicinpainting/training/data/masks.py, called
    by its RandomRectangleMaskGenerator (no ramp), rng calls in the official order: per box width,
    height ~ U{bbox_min_size..min(bbox_max_size, H - 2 margin - 1, W - 2 margin - 1)}, then left,
    top uniform with `margin` pixels kept free on every side.

    Deviation: where the image is too small for bbox_min_size (the official code fails), the
    smallest side drops to the largest that fits.

    Returns:
        float32 [1, H, W] in {0, 1}.

    Raises:
        ValueError: not even a 1-pixel box fits inside the margins.
    """
    height, width = _pair(image_size)
    high = min(bbox_max_size + 1, height - 2 * margin, width - 2 * margin)  # exclusive
    if high < 2:
        raise ValueError(f"masks: no box fits in a {height}x{width} image with margin {margin}")
    low = min(bbox_min_size, high - 1)
    mask = np.zeros((1, height, width), np.float32)
    for _ in range(rng.randint(min_times, max_times + 1)):
        box_w, box_h = rng.randint(low, high), rng.randint(low, high)
        left = rng.randint(margin, width - margin - box_w + 1)
        top = rng.randint(margin, height - margin - box_h + 1)
        mask[:, top:top + box_h, left:left + box_w] = 1.0
    return mask


def lama_mixed_mask(rng, image_size, config):
    """One draw of the official `MixedMaskGenerator`: strokes or boxes, never both.

    Strokes (`lama_strokes`, config["irregular_kwargs"]) with probability irregular_proba /
    (irregular_proba + box_proba), else boxes (`lama_boxes`, config["box_kwargs"]); one
    rng.choice picks the kind, as the official float32-normalized np.random.choice does, even when
    only one kind is enabled.

    Returns:
        float32 [1, H, W] in {0, 1}.
    """
    kinds = [(proba, make, config.get(key, {})) for proba, make, key in (
        (config.get("irregular_proba", 0), lama_strokes, "irregular_kwargs"),
        (config.get("box_proba", 0), lama_boxes, "box_kwargs")) if proba > 0]
    probas = np.array([proba for proba, _, _ in kinds], np.float32)
    _, make, kwargs = kinds[rng.choice(len(kinds), p=probas / probas.sum())]
    return make(rng, image_size, **kwargs)


def lama_eval_config(thickness, image_size):
    """The LaMa evaluation config of `thickness` ("thin", "medium" or "thick") for an image size.

    The official sets exist at 256 and 512 (the short side the images are resized to): the
    *_512 config when min(H, W) >= LAMA_512_FROM (384, halfway), else *_256.
    """
    return LAMA_CONFIGS[f"{thickness}_{512 if min(_pair(image_size)) >= LAMA_512_FROM else 256}"]


def lama_eval_mask(rng, image_size, config, variants=5, max_area=0.5, max_rounds=20):
    """One mask of LaMa's evaluation sets, as official bin/gen_mask_dataset.py makes them.

    `variants` (variants_n: 5) candidates from `lama_mixed_mask`; those covering more than
    max_area (max_tamper_area: 0.5) are dropped and one survivor is kept, uniformly (the official
    np.random.choice without replacement, same rng calls), so the mask is distributed as one
    candidate conditioned on area <= max_area. An image whose candidates are all dropped gets no
    mask in the official sets; here a new round of candidates is drawn, as the official run would
    for its next image.

    Deviations: masks are drawn on the requested canvas. The official pipeline resizes images to
    short side 256/512, draws on the whole resized image and then takes a square crop around the
    hole: the same as here for square images, while masks of non-square sources come cropped from
    a larger canvas. After max_rounds rounds with no survivor (only on images far smaller than
    256) the smallest candidate is returned, even if it covers more than max_area.

    Returns:
        float32 [1, H, W] in {0, 1}.
    """
    smallest = np.ones((1, *_pair(image_size)), np.float32)
    for _ in range(max_rounds):
        candidates = [lama_mixed_mask(rng, image_size, config) for _ in range(variants)]
        kept = [mask for mask in candidates if mask.mean() <= max_area]
        if kept:
            return kept[int(rng.choice(len(kept), size=1, replace=False)[0])]
        smallest = min(candidates + [smallest], key=np.mean)
    return smallest


def box_around_mask(mask, bbox_size):
    """A bbox_size box centred on the bounding box of the hole, shifted inside the image.

    DeepFill v1's local critic needs a fixed-size patch around the hole; a free-form hole may
    still extend beyond it. An empty mask gives the centred box.

    Args:
        mask: [1, H, W] or [H, W], 1 = hole.
        bbox_size: int or (bbox_h, bbox_w), at most the image size.

    Returns:
        (top, left, bbox_h, bbox_w) ints.
    """
    mask = np.asarray(mask).reshape(np.shape(mask)[-2:])
    height, width = mask.shape
    box_h, box_w = _pair(bbox_size)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        top, left = (height - box_h) // 2, (width - box_w) // 2
    else:  # centre of the hole's bounding box minus half the box, floored
        top = (int(rows[0]) + int(rows[-1]) + 1 - box_h) // 2
        left = (int(cols[0]) + int(cols[-1]) + 1 - box_w) // 2
    top = min(max(top, 0), height - box_h)
    left = min(max(left, 0), width - box_w)
    return int(top), int(left), box_h, box_w


class MaskFolder:
    """Mask files (e.g. the NVIDIA irregular masks), read lazily and resized to image_size.

    White (> 127) = hole, alpha composited over black (see `read_mask`); ``invert`` reads black
    holes on white instead. Nearest resize keeps them binary. Unreadable files are skipped with a
    warning, replaced by the next one.

    Args:
        folder_or_flist: a folder (searched recursively) or a .flist/.txt file.
        image_size: int or (H, W) of the output masks.
        invert: True for files whose holes are black.
    """

    def __init__(self, folder_or_flist, image_size, invert=False):
        self.source = str(folder_or_flist)
        self.size = _pair(image_size)
        self.invert = bool(invert)
        if os.path.isdir(self.source):
            self.paths = list_images(self.source)
        elif os.path.isfile(self.source) and self.source.lower().endswith((".flist", ".txt")):
            self.paths = read_flist(self.source)
        else:
            raise ValueError(f"masks: {self.source} is not a folder or a .flist/.txt file")
        if not self.paths:
            raise ValueError(f"masks: {self.source} has no {'/'.join(IMAGE_EXTENSIONS)} masks")
        for path in self.paths:  # stop at the first good file: one read for a healthy folder
            try:
                first = self._read(path)
                break
            except ImageReadError as exc:
                warn_skip(exc, "mask")
        else:
            raise ValueError(f"masks: no readable mask in {self.source} "
                             f"({len(self.paths)} files tried)")
        if first.mean() > 0.6:
            warnings.warn(f"masks: {first.mean():.0%} of {path} is marked as hole (white = hole); "
                          "if your masks have black holes, set mask_invert (--mask_invert)",
                          stacklevel=2)

    def _read(self, path):
        mask = read_mask(path)
        return 1.0 - mask if self.invert else mask

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        """Mask i (or the next readable one): float32 [1, H, W] in {0, 1}."""
        for step in range(len(self.paths)):
            try:
                mask = self._read(self.paths[(int(i) + step) % len(self.paths)])
            except ImageReadError as exc:
                warn_skip(exc, "mask")
                continue
            return (resize_mask(mask, self.size) > 0.5).astype(np.float32)[None]
        raise RuntimeError(f"masks: no readable mask left in {self.source}")

    def sample(self, rng):
        """A uniformly random mask (one rng draw): float32 [1, H, W]."""
        return self[rng.randint(len(self.paths))]


class MaskGenerator:
    """Batches of masks plus the box the v1 local critic crops.

    Args:
        mask_type: 'bbox' (v1), 'free_form' (v2: box OR strokes), 'irregular' (PConv-style
            strokes and blobs, see `irregular_mask`), 'file' (mask_dir), 'lama' (LaMa's
            training masks: strokes OR boxes, `lama_mixed_mask`) or 'lama_thin', 'lama_medium',
            'lama_thick' (LaMa's evaluation sets, `lama_eval_mask`: the 512 configs from
            min(H, W) >= 384).
        image_size: int or (H, W).
        bbox_size, max_delta, margin: box parameters (inpaint.yml HEIGHT/WIDTH,
            MAX_DELTA_*, *_MARGIN).
        mask_dir: folder or .flist of mask files, for 'file'.
        per_sample: one mask per sample; False shares one mask with the whole batch, as the
            official code does.
        hole_range: (low, high) hole-to-image ratio of 'irregular' masks.
        mask_scale: LaMa masks are drawn in pixels of a canvas of image_size / mask_scale and
            resized to image_size (1: the official pixel sizes; 0.25 for 64 px crops keeps the
            holes the share of the image they are at 256).
        invert: 'file' masks have black holes on white.

    Calling it with (rng, batch_size) gives (mask float32 [N, 1, H, W], bbox int64 [N, 4]).
    The box is (top, left, h, w): for 'bbox' the unshrunk box; otherwise `box_around_mask`.
    """

    def __init__(self, mask_type, image_size, bbox_size=(128, 128), max_delta=(32, 32),
                 margin=(0, 0), mask_dir=None, per_sample=False, hole_range=HOLE_RANGE,
                 invert=False, mask_scale=1.0):
        if mask_type not in MASK_GENERATORS:
            raise ValueError(f"masks: unknown mask_type {mask_type!r} "
                             f"(valid: {', '.join(MASK_GENERATORS)})")
        self.mask_type, self.per_sample = mask_type, per_sample
        self.size, self.bbox_size = _pair(image_size), _pair(bbox_size)
        self.max_delta, self.margin = _pair(max_delta), _pair(margin)
        self.hole_range = tuple(hole_range)
        if not 0 < float(mask_scale) <= 1:
            raise ValueError(f"masks: mask_scale must be in (0, 1], got {mask_scale!r}")
        self.mask_scale = float(mask_scale)
        if mask_type == "irregular":
            irregular_mask(np.random.RandomState(0), (8, 8), self.hole_range)  # checks the range
        _check_fits(self.size, self.bbox_size,
                    self.margin if mask_type in ("bbox", "free_form") else (0, 0))
        shrink = 2 * (np.array(self.max_delta) // 2)
        if mask_type != "file" and (shrink >= np.array(self.bbox_size)).any():
            raise ValueError(f"masks: max_delta {self.max_delta} can shrink the {self.bbox_size} "
                             "box to nothing")
        if mask_type == "file" and mask_dir is None:
            raise ValueError("masks: mask_type 'file' needs mask_dir")
        self.folder = MaskFolder(mask_dir, self.size, invert) if mask_type == "file" else None

    def _one(self, rng):
        mask, bbox = MASK_GENERATORS[self.mask_type](self, rng)
        return mask, bbox if bbox is not None else box_around_mask(mask, self.bbox_size)

    def __call__(self, rng, batch_size):
        draws = [self._one(rng) for _ in range(batch_size if self.per_sample else 1)]
        if not self.per_sample:
            draws = draws * batch_size
        masks = np.stack([mask for mask, _ in draws]).astype(np.float32)
        return masks, np.asarray([bbox for _, bbox in draws], np.int64).reshape(-1, 4)


def _bbox_hole(gen, rng):
    bbox = random_bbox(rng, gen.size, gen.bbox_size, gen.margin)
    return bbox_to_mask(bbox, gen.size, gen.max_delta, rng), bbox


def _free_form_hole(gen, rng):
    return free_form_mask(rng, gen.size, gen.bbox_size, gen.max_delta, gen.margin), None


def _irregular_hole(gen, rng):
    return irregular_mask(rng, gen.size, gen.hole_range), None


def _file_hole(gen, rng):
    return gen.folder.sample(rng), None


def _on_canvas(gen, draw):
    """``draw(canvas size)`` at ``gen.size / gen.mask_scale``, resized back to ``gen.size`` (area
    average, then > 0.5 is hole); at mask_scale 1 the drawing itself."""
    if gen.mask_scale == 1:
        return draw(gen.size)
    canvas = tuple(max(1, int(round(s / gen.mask_scale))) for s in gen.size)
    mask = cv2.resize(draw(canvas)[0], gen.size[::-1], interpolation=cv2.INTER_AREA)
    return (mask > 0.5).astype(np.float32)[None]


def _lama_hole(gen, rng):
    return _on_canvas(gen, lambda size: lama_mixed_mask(rng, size, LAMA_CONFIGS["train"])), None


def _lama_eval_hole(thickness, gen, rng):
    return _on_canvas(gen, lambda size: lama_eval_mask(
        rng, size, lama_eval_config(thickness, size))), None


# mask_type -> generator(MaskGenerator, rng) -> (mask [1, H, W], its box or None: the box
# around the hole is then computed)
MASK_GENERATORS = {"bbox": _bbox_hole, "free_form": _free_form_hole,
                   "irregular": _irregular_hole, "file": _file_hole, "lama": _lama_hole,
                   "lama_thin": functools.partial(_lama_eval_hole, "thin"),
                   "lama_medium": functools.partial(_lama_eval_hole, "medium"),
                   "lama_thick": functools.partial(_lama_eval_hole, "thick")}
MASK_TYPES = tuple(MASK_GENERATORS)


def mask_for_index(mask_gen, seed, index):
    """The evaluation mask of item `index`: fixed per image, independent of the batch size.

    Returns:
        (mask float32 [1, H, W], bbox int64 [4]) drawn with batch 1 from
        RandomState([seed, index]).
    """
    mask, bbox = mask_gen(np.random.RandomState([int(seed), int(index)]), 1)
    return mask[0], bbox[0]


def masks_from_config(cfg, mask_type=None, mask_dir=None, per_sample=None):
    """The MaskGenerator a run's flat config describes (train.py and test.py share it).

    Box keys (bbox_size, max_delta, margin) fall back to DeepFill's 128/32/0 (at most half the
    image) for models whose config has none; the keyword arguments override the config.
    """
    box = cfg.get("bbox_size", min(128, cfg["image_size"] // 2))
    return MaskGenerator(mask_type or cfg["mask_type"], cfg["image_size"], box,
                         cfg.get("max_delta", min(32, box // 4)), cfg.get("margin", 0),
                         mask_dir or cfg.get("mask_dir"),
                         cfg.get("per_sample_mask", False) if per_sample is None else per_sample,
                         cfg.get("hole_range", HOLE_RANGE), cfg.get("mask_invert", False),
                         cfg.get("mask_scale", 1.0))
