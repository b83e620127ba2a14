"""Python API: inpaint photos of any size with a checkpoint or an exported model.

    from inference import Inpainter
    inpaint = Inpainter.from_checkpoint('checkpoints/deepfill_v1_quickstart/latest.safetensors')
    result = inpaint(image, mask)   # numpy uint8 HxWx3 RGB or a PIL image; mask HxW, white/1 = hole
    result = inpaint(image, mask, sketch=sketch)   # a model's extra maps (USER_INPUTS) by name
    inpaint = Inpainter.from_exported('exported/deepfill_v1')          # paddle.inference (oneDNN)
    inpaint = Inpainter.from_exported('exported/deepfill_v1', backend='onnx')    # onnxruntime

Photos of any size come back at their size, with every known pixel as given. How the model sees
them is the ``strategy`` (IOPaint's HD strategies, with our defaults):

- ``original``: the whole photo at full resolution, reflect-padded to the model's size multiple.
- ``resize``: the whole photo shrunk so its longer side is ``max_size`` (when larger), inpainted,
  and the result scaled back up; only hole pixels are pasted into the photo.
- ``crop``: one window per connected group of hole pixels: the mask is dilated by ``margin``
  pixels and each connected component of the dilated mask gives a window (its bounding box),
  enlarged to at least ``max_size`` square where the photo allows, shrunk to ``max_size`` when
  larger, inpainted with the whole mask inside it, scaled back, and only the hole pixels of that
  component are pasted. Holes closer than about 2 * margin share a window.
- ``refine`` (LaMa checkpoints): the whole photo through LaMa's multi-scale feature refinement
  (``inference.refine``; ``refine_options`` overrides its settings), slow but sharper on large
  photos.
- ``auto`` (default): ``original`` for models that generalise to full resolution
  (``FULL_RESOLUTION``: LaMa); otherwise ``crop`` when the photo's longer side exceeds twice the
  training size, else ``original``.

``max_size`` defaults to the model's training size (``image_size`` in its config), where the model
is at home and memory is small: DeepFill's contextual attention grows with (HW)^2.
"""
import cv2
import numpy as np
import paddle

from inference.exported import ExportedModel
from inference.loading import load_model
from inference.refine import REFINE_DEFAULTS, refine

STRATEGIES = ('auto', 'original', 'crop', 'resize', 'refine')


def _as_image(image):
    if hasattr(image, 'convert'):  # PIL
        image = image.convert('RGB')
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise ValueError(f'image: expected uint8 HxWx3 RGB, got {image.dtype} {image.shape}')
    return np.ascontiguousarray(image[..., :3])


def _as_map(array, what, image_shape):
    """float32 HxW in [0, 1] from a numpy array (uint8: / 255) or a PIL image (its luminance)."""
    if hasattr(array, 'convert'):
        array = array.convert('L')
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., 0]
    array = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 \
        else array.astype(np.float32)
    if array.shape != image_shape[:2]:
        raise ValueError(f'{what}: size {array.shape[1]}x{array.shape[0]} does not match the '
                         f'image {image_shape[1]}x{image_shape[0]} (width x height)')
    return array


def _as_mask(mask, image_shape):
    mask = (_as_map(mask, 'mask', image_shape) > 0.5).astype(np.float32)
    if not mask.any():
        raise ValueError('mask: it marks no hole (expected white = hole, black = keep)')
    return mask


def pad_to_multiple(array, multiple, mode):
    """Pads HxW[xC] at the bottom/right up to a multiple; returns (padded, (H, W))."""
    h, w = array.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    widths = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    if mode == 'reflect' and (ph >= h or pw >= w):
        mode = 'edge'  # reflect needs the pad to be smaller than the image
    return np.pad(array, widths, mode=mode), (h, w)


def _resize(array, hw, binary=False):
    """Area-average when shrinking, bicubic when enlarging; a binary map stays {0, 1} and keeps
    every pixel it touches (a hole never shrinks away)."""
    h, w = hw
    if array.shape[:2] == (h, w):
        return array
    shrink = h < array.shape[0]
    out = cv2.resize(array, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return (out > 0).astype(np.float32) if binary else out


def hole_windows(mask, margin, min_size):
    """Windows (top, left, bottom, right) around the hole groups of ``mask`` and their labels.

    The mask is dilated by ``margin`` pixels; every connected component (8-connected) of the
    dilation is one group, its window the component's bounding box grown to at least
    ``min_size`` x ``min_size`` about its centre (clipped to the image). Windows may overlap; a
    hole pixel belongs to exactly one group.

    Returns:
        (list of windows, int32 label map HxW: i + 1 on the dilated pixels of group i, else 0).
    """
    h, w = mask.shape
    hole = (mask > 0).astype(np.uint8)
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    grown = cv2.dilate(hole, kernel) if margin else hole
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    windows = []
    for x, y, bw, bh, _ in stats[1:count]:
        top, left = _grow(y, bh, min_size, h), _grow(x, bw, min_size, w)
        windows.append((top[0], left[0], top[1], left[1]))
    return windows, labels


def _grow(start, length, min_size, limit):
    """[start, start + length) grown to min(min_size, limit) about its centre, inside [0, limit)."""
    size = max(length, min(min_size, limit))
    start = min(max(start + length // 2 - size // 2, 0), limit - size)
    return int(start), int(start + size)


class EagerModel:
    """An InpaintModel run in dynamic-graph mode: ``pred`` for numpy inputs."""

    def __init__(self, model):
        self.model = model
        self.model.eval()
        self.SIZE_MULTIPLE, self.FULL_RESOLUTION = model.SIZE_MULTIPLE, model.FULL_RESOLUTION
        self.cfg = model.cfg

    def extra_inputs(self, image, mask, seed=0, given=None):
        """The model's extra inputs for a whole photo (uint8 HxWx3, mask HxW, user maps HxW in
        [0, 1] by name), at the photo's size; a latent draw comes from ``seed``."""
        x = image.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1.0
        return self.model.extra_inputs(x, mask[None, None], [np.random.default_rng(seed)],
                                       {k: v[None, None] for k, v in (given or {}).items()})

    def __call__(self, image, mask, extra=None):
        """image [N,3,H,W] in [-1, 1], mask [N,1,H,W], extra inputs: float32 numpy -> pred
        [N,3,H,W] numpy."""
        extra = {k: paddle.to_tensor(v) for k, v in (extra or {}).items()}
        with paddle.no_grad():
            out = self.model(paddle.to_tensor(image), paddle.to_tensor(mask), **extra)
        return out['pred'].numpy()


def _is_map(value, hw):
    """Whether an extra input is a map of the photo (shaped [N, C, H, W] like its mask)."""
    return np.ndim(value) == 4 and tuple(np.shape(value)[2:]) == tuple(hw)


class Inpainter:
    """Runs a model on single photos of any size; known pixels come back exactly as given.

    Args:
        model: an InpaintModel (run eagerly), an ExportedModel, or any object with
            ``SIZE_MULTIPLE``, ``cfg``, ``extra_inputs(image, mask, seed, given)`` and
            ``__call__(image, mask, extra) -> pred`` on numpy [1,C,H,W] arrays in [-1, 1].
        strategy: one of STRATEGIES (see the module docstring).
        max_size: longest side the model sees under 'crop' and 'resize' (default: the model's
            training ``image_size``).
        margin: context in pixels around each hole group under 'crop'.
        refine_options: settings of the 'refine' strategy (``inference.refine.REFINE_DEFAULTS``).
    """

    def __init__(self, model, strategy='auto', max_size=None, margin=128, refine_options=None):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.model = EagerModel(model) if isinstance(model, paddle.nn.Layer) else model
        self.strategy = strategy
        self.train_size = int(self.model.cfg.get('image_size', 256))
        self.max_size = int(max_size or self.train_size)
        self.margin = int(margin)
        unknown = sorted(set(refine_options or {}) - set(REFINE_DEFAULTS))
        if unknown:
            raise ValueError(f'refine_options: unknown {unknown}; expected some of '
                             f"{', '.join(REFINE_DEFAULTS)}")
        self.refine_options = {**REFINE_DEFAULTS, **(refine_options or {})}
        if strategy == 'refine' and not isinstance(self.model, EagerModel):
            raise ValueError("strategy: 'refine' optimises the network's features and needs a "
                             'checkpoint, not an exported graph')
        if self.max_size < self.model.SIZE_MULTIPLE or self.margin < 0:
            raise ValueError(f'max_size/margin: expected max_size >= {self.model.SIZE_MULTIPLE} '
                             f'and margin >= 0, got {self.max_size}, {self.margin}')

    @classmethod
    def from_checkpoint(cls, path, model_name=None, **options):
        """From a training checkpoint or converted weights (.safetensors)."""
        return cls(load_model(path, model_name)[0], **options)

    @classmethod
    def from_exported(cls, folder, backend='paddle', device='auto', threads=None, **options):
        """From a folder written by inference.export / tools/export.py (see ExportedModel)."""
        return cls(ExportedModel(folder, backend, device, threads), **options)

    def choose_strategy(self, hw):
        if self.strategy != 'auto':
            return self.strategy
        if getattr(self.model, 'FULL_RESOLUTION', False):  # also duck-typed models without it
            return 'original'
        return 'crop' if max(hw) > 2 * self.train_size else 'original'

    def run(self, image, mask, seed=0, **given):
        """Returns (result uint8 HxWx3, info dict: strategy and the windows inpainted).

        ``given``: maps the model takes from a user (its ``USER_INPUTS``, e.g. DeepFill v2's
        ``sketch``), HxW like the mask; ``seed`` draws what a model takes at random.
        """
        image = _as_image(image)
        mask = _as_mask(mask, image.shape)
        given = {name: _as_map(value, name, image.shape) for name, value in given.items()
                 if value is not None}
        extra = self.model.extra_inputs(image, mask, seed, given)
        strategy = self.choose_strategy(image.shape[:2])
        h, w = mask.shape
        if strategy == 'crop':
            windows, labels = hole_windows(mask, self.margin, self.max_size)
        else:
            windows, labels = [(0, 0, h, w)], (mask > 0).astype(np.int32)
        limit = None if strategy == 'original' else self.max_size
        result = image.copy()
        for i, (top, left, bottom, right) in enumerate(windows, start=1):
            part = (slice(top, bottom), slice(left, right))
            window = {k: v[..., part[0], part[1]] if _is_map(v, (h, w)) else v
                      for k, v in extra.items()}
            pred = self._refine(image, mask) if strategy == 'refine' else \
                self._inpaint(image[part], mask[part], window, limit)
            paste = (labels[part] == i) & (mask[part] > 0)
            result[part][paste] = pred[paste]
        return result, dict(strategy=strategy, windows=windows)

    def __call__(self, image, mask, seed=0, **given):
        """The inpainted photo: numpy uint8 HxWx3, or a PIL image when ``image`` is one."""
        result = self.run(image, mask, seed, **given)[0]
        if hasattr(image, 'convert'):
            from PIL import Image
            return Image.fromarray(result)
        return result

    def _refine(self, image, mask):
        """The refined whole photo as uint8 HxWx3 (scaled back when it was refined smaller)."""
        x = image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        out = refine(self.model.model, x, (mask > 0).astype(np.float32)[None, None],
                     **self.refine_options)[0].transpose(1, 2, 0)
        return _resize(np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8), mask.shape)

    def _inpaint(self, image, mask, extra, limit):
        """Model prediction for a whole (sub-)image as uint8 HxWx3, shrunk to ``limit`` first;
        its extra maps are resized and padded as the mask is."""
        h, w = mask.shape
        scale = 1.0 if limit is None else min(1.0, limit / max(h, w))
        hw = (max(1, round(h * scale)), max(1, round(w * scale)))
        small, small_mask = _resize(image, hw), _resize(mask, hw, binary=True)
        multiple = self.model.SIZE_MULTIPLE
        x, _ = pad_to_multiple(small, multiple, 'reflect')
        m, _ = pad_to_multiple(small_mask, multiple, 'constant')
        x = x.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1.0
        extra = {k: _fit_map(v, hw, multiple) if _is_map(v, (h, w)) else v
                 for k, v in extra.items()}
        pred = self.model(x, m[None, None], extra)[0].transpose(1, 2, 0)[:hw[0], :hw[1]]
        pred = np.clip(np.round((pred + 1.0) * 127.5), 0, 255).astype(np.uint8)
        return _resize(pred, (h, w))


def _fit_map(value, hw, multiple):
    """An extra [1, C, H, W] map resized to ``hw`` (kept binary when it is) and zero-padded to
    the size multiple, as the mask."""
    binary = bool(np.isin(value, (0.0, 1.0)).all())
    channels = [pad_to_multiple(_resize(np.ascontiguousarray(c, np.float32), hw, binary),
                                multiple, 'constant')[0] for c in value[0]]
    return np.stack(channels)[None].astype(np.float32)
