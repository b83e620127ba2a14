"""Python API: inpaint photos of any size with a checkpoint or an exported model.

    from models.inpainter import Inpainter
    inpaint = Inpainter.from_checkpoint('checkpoints/deepfill_v1_quickstart/latest.safetensors')
    result = inpaint(image, mask)   # numpy uint8 HxWx3 RGB or a PIL image; mask HxW, white/1 = hole
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
- ``auto`` (default): ``crop`` when the photo's longer side exceeds twice the training size,
  else ``original``.

``max_size`` defaults to the model's training size (``image_size`` in its config), where the model
is at home and memory is small: DeepFill's contextual attention grows with (HW)^2.
"""
import json
import os
from pathlib import Path

import cv2
import numpy as np
import paddle

from models import build
from models.checkpoint import CheckpointError, load_model_state, read_checkpoint

STRATEGIES = ('auto', 'original', 'crop', 'resize')
EXPORT_META = 'inpaint.json'  # written next to model.json by tools/export.py


def load_model(path, allow_pickle=False, model_name=None):
    """Rebuilds the model recorded in a checkpoint and loads its weights; returns (model, state).

    Converted weights (tools/convert_weights.py) are such checkpoints too. A pickled
    ``.pdparams`` carries no config: then ``model_name`` is required and the model's paper
    DEFAULTS are used.
    """
    tensors, state = read_checkpoint(path, allow_pickle)
    name = state.get('model') or model_name
    if name is None:
        raise CheckpointError(f'checkpoint: {path} records no model name; pass --model')
    model = build(name, state.get('config', {}))
    load_model_state(model, tensors, path)
    model.eval()
    return model, state


def _as_image(image):
    if hasattr(image, 'convert'):  # PIL
        image = image.convert('RGB')
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise ValueError(f'image: expected uint8 HxWx3 RGB, got {image.dtype} {image.shape}')
    return np.ascontiguousarray(image[..., :3])


def _as_binary(array, what, image_shape):
    """{0, 1} float32 HxW from a numpy array (uint8: > 127; else > 0.5) or a PIL image."""
    if hasattr(array, 'convert'):
        array = array.convert('L')
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., 0]
    array = array > 127 if array.dtype == np.uint8 else array > 0.5
    if array.shape != image_shape[:2]:
        raise ValueError(f'{what}: size {array.shape[1]}x{array.shape[0]} does not match the '
                         f'image {image_shape[1]}x{image_shape[0]} (width x height)')
    return array.astype(np.float32)


def _as_mask(mask, image_shape):
    mask = _as_binary(mask, 'mask', image_shape)
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
        self.SIZE_MULTIPLE = model.SIZE_MULTIPLE
        self.cfg = model.cfg

    def __call__(self, image, mask, sketch=None):
        """image [N,3,H,W] in [-1, 1], mask [N,1,H,W] float32 numpy -> pred [N,3,H,W] numpy."""
        extra = {} if sketch is None else {'sketch': paddle.to_tensor(sketch)}
        with paddle.no_grad():
            out = self.model(paddle.to_tensor(image), paddle.to_tensor(mask), **extra)
        return out['pred'].numpy()


class ExportedModel:
    """A model written by tools/export.py, run by paddle.inference or onnxruntime.

    Args:
        folder: the export folder (model.json, model.pdiparams, inpaint.json[, model.onnx]).
        backend: 'paddle' (paddle.inference: oneDNN on CPU, CUDA when this paddle has a GPU) or
            'onnx' (onnxruntime on CPU; needs ``pip install onnxruntime`` and an exported
            model.onnx).
        device: 'auto', 'cpu' or 'gpu[:N]' (paddle backend).
        threads: CPU threads (default all cores).
        onednn: use oneDNN kernels on CPU (paddle backend).
    """

    def __init__(self, folder, backend='paddle', device='auto', threads=None, onednn=True):
        folder = Path(folder)
        meta_path = folder / EXPORT_META
        if not meta_path.is_file():
            raise FileNotFoundError(f'--model_dir: {folder} holds no {EXPORT_META}; write one '
                                    'with tools/export.py')
        self.meta = json.loads(meta_path.read_text())
        self.SIZE_MULTIPLE = self.meta['size_multiple']
        self.cfg = self.meta['config']
        self.outputs = self.meta['outputs']
        threads = int(threads or os.cpu_count() or 1)
        if backend == 'paddle':
            self._run = self._paddle_runner(folder, device, threads, onednn)
        elif backend == 'onnx':
            self._run = self._onnx_runner(folder, threads)
        else:
            raise ValueError(f"backend: expected 'paddle' or 'onnx', got {backend!r}")

    def _paddle_runner(self, folder, device, threads, onednn):
        from paddle import inference
        config = inference.Config(str(folder / 'model.json'), str(folder / 'model.pdiparams'))
        has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
        if device.startswith('gpu') or (device == 'auto' and has_gpu):
            if not has_gpu:
                raise ValueError(f"device: '{device}' requested but this paddle has no GPU")
            config.enable_use_gpu(256, int(device.partition(':')[2] or 0))
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads)
            if onednn:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(8)  # kernels cached for 8 input shapes at most
                # Paddle 3.3: with oneDNN placement, this pass merges the index computations of
                # different resizes (height and width alike), so index_select reads out of range.
                config.delete_pass('common_subexpression_elimination_pass')
            else:
                config.disable_mkldnn()
        config.disable_glog_info()
        predictor = inference.create_predictor(config)

        def run(image, mask):
            predictor.get_input_handle('image').copy_from_cpu(image)
            predictor.get_input_handle('mask').copy_from_cpu(mask)
            predictor.run()
            return [predictor.get_output_handle(n).copy_to_cpu()
                    for n in predictor.get_output_names()]
        return run

    def _onnx_runner(self, folder, threads):
        try:
            import onnxruntime
        except ImportError:
            raise ValueError('backend onnx: onnxruntime is not installed '
                             '(pip install onnxruntime)') from None
        path = folder / 'model.onnx'
        if not path.is_file():
            raise FileNotFoundError(f'backend onnx: {path} does not exist; export with --onnx')
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=['CPUExecutionProvider'])
        return lambda image, mask: session.run(None, {'image': image, 'mask': mask})

    def outputs_for(self, image, mask):
        """All exported outputs by name; image [N,3,H,W], mask [N,1,H,W] float32 numpy."""
        mask = np.ascontiguousarray(np.broadcast_to(mask, (image.shape[0],) + mask.shape[1:]))
        values = self._run(np.ascontiguousarray(image, np.float32), mask.astype(np.float32))
        return dict(zip(self.outputs, values))

    def __call__(self, image, mask, sketch=None):
        if sketch is not None:
            raise ValueError('sketch: exported models take no sketch (export covers image and '
                             'mask only); use the checkpoint')
        return self.outputs_for(image, mask)['pred']


class Inpainter:
    """Runs a model on single photos of any size; known pixels come back exactly as given.

    Args:
        model: an InpaintModel (run eagerly), an ExportedModel, or any object with
            ``SIZE_MULTIPLE``, ``cfg`` and ``__call__(image, mask, sketch) -> pred`` on numpy
            [1,C,H,W] arrays in [-1, 1].
        strategy: one of STRATEGIES (see the module docstring).
        max_size: longest side the model sees under 'crop' and 'resize' (default: the model's
            training ``image_size``).
        margin: context in pixels around each hole group under 'crop'.
    """

    def __init__(self, model, strategy='auto', max_size=None, margin=128):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.model = EagerModel(model) if isinstance(model, paddle.nn.Layer) else model
        self.strategy = strategy
        self.train_size = int(self.model.cfg.get('image_size', 256))
        self.max_size = int(max_size or self.train_size)
        self.margin = int(margin)
        if self.max_size < self.model.SIZE_MULTIPLE or self.margin < 0:
            raise ValueError(f'max_size/margin: expected max_size >= {self.model.SIZE_MULTIPLE} '
                             f'and margin >= 0, got {self.max_size}, {self.margin}')

    @classmethod
    def from_checkpoint(cls, path, allow_pickle=False, model_name=None, **options):
        """From a training checkpoint or converted weights (.safetensors)."""
        return cls(load_model(path, allow_pickle, model_name)[0], **options)

    @classmethod
    def from_exported(cls, folder, backend='paddle', device='auto', threads=None, **options):
        """From a folder written by tools/export.py (see ExportedModel)."""
        return cls(ExportedModel(folder, backend, device, threads), **options)

    def choose_strategy(self, hw):
        if self.strategy != 'auto':
            return self.strategy
        return 'crop' if max(hw) > 2 * self.train_size else 'original'

    def run(self, image, mask, sketch=None):
        """Returns (result uint8 HxWx3, info dict: strategy and the windows inpainted).

        ``sketch`` (HxW, nonzero = stroke) guides models trained with sketches (DeepFill v2
        ``guided``); only its strokes inside the hole are used.
        """
        image = _as_image(image)
        mask = _as_mask(mask, image.shape)
        if sketch is not None:
            sketch = _as_binary(sketch, 'sketch', image.shape)
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
            pred = self._inpaint(image[part], mask[part],
                                 None if sketch is None else sketch[part], limit)
            paste = (labels[part] == i) & (mask[part] > 0)
            result[part][paste] = pred[paste]
        return result, dict(strategy=strategy, windows=windows)

    def __call__(self, image, mask, sketch=None):
        """The inpainted photo: numpy uint8 HxWx3, or a PIL image when ``image`` is one."""
        result = self.run(image, mask, sketch)[0]
        if hasattr(image, 'convert'):
            from PIL import Image
            return Image.fromarray(result)
        return result

    def _inpaint(self, image, mask, sketch, limit):
        """Model prediction for a whole (sub-)image as uint8 HxWx3, shrunk to ``limit`` first."""
        h, w = mask.shape
        scale = 1.0 if limit is None else min(1.0, limit / max(h, w))
        hw = (max(1, round(h * scale)), max(1, round(w * scale)))
        small, small_mask = _resize(image, hw), _resize(mask, hw, binary=True)
        multiple = self.model.SIZE_MULTIPLE
        x, _ = pad_to_multiple(small, multiple, 'reflect')
        m, _ = pad_to_multiple(small_mask, multiple, 'constant')
        x = x.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1.0
        extra = None
        if sketch is not None:
            extra = pad_to_multiple(_resize(sketch, hw, binary=True), multiple,
                                    'constant')[0][None, None]
        pred = self.model(x, m[None, None], extra)[0].transpose(1, 2, 0)[:hw[0], :hw[1]]
        pred = np.clip(np.round((pred + 1.0) * 127.5), 0, 255).astype(np.uint8)
        return _resize(pred, (h, w))
