"""Python API: inpaint photos of any size with a trained checkpoint.

    from models.inpainter import Inpainter
    inpaint = Inpainter.from_checkpoint('checkpoints/deepfill_v1_quickstart/latest.safetensors')
    result = inpaint(image, mask)   # uint8 HxWx3 RGB (numpy or PIL), mask HxW; white/1 = hole
"""
import numpy as np
import paddle

from models import build
from models.checkpoint import CheckpointError, load_model_state, read_checkpoint


def load_model(path, allow_pickle=False, model_name=None):
    """Rebuilds the model recorded in a checkpoint and loads its weights; returns (model, state).

    A pickled ``.pdparams`` carries no config: then ``model_name`` is required and the model's
    paper DEFAULTS are used.
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
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise ValueError(f'image: expected uint8 HxWx3 RGB, got {image.dtype} {image.shape}')
    return image[..., :3]


def _as_mask(mask, image_shape):
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    mask = mask > 127 if mask.dtype == np.uint8 else mask > 0.5
    if mask.shape != image_shape[:2]:
        raise ValueError(f'mask: size {mask.shape[1]}x{mask.shape[0]} does not match the image '
                         f'{image_shape[1]}x{image_shape[0]} (width x height)')
    if not mask.any():
        raise ValueError('mask: it marks no hole (expected white = hole, black = keep)')
    return mask.astype(np.float32)


def pad_to_multiple(array, multiple, mode):
    """Pads HxW[xC] at the bottom/right up to a multiple; returns (padded, (H, W))."""
    h, w = array.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    widths = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    if mode == 'reflect' and (ph >= h or pw >= w):
        mode = 'edge'  # reflect needs the pad to be smaller than the image
    return np.pad(array, widths, mode=mode), (h, w)


class Inpainter:
    """Runs a model on single photos of any size: pad to the model's multiple, inpaint, crop back.

    Known pixels are returned exactly as given; only hole pixels come from the model.
    """

    def __init__(self, model):
        self.model = model
        self.model.eval()

    @classmethod
    def from_checkpoint(cls, path, allow_pickle=False, model_name=None):
        return cls(load_model(path, allow_pickle, model_name)[0])

    def run(self, image, mask, sketch=None):
        """Returns (result uint8 HxWx3, model outputs as numpy at the padded size).

        ``sketch`` (HxW, nonzero = stroke) guides models trained with sketches (DeepFill v2
        ``guided``); only its strokes inside the hole are used.
        """
        image = _as_image(image)
        mask = _as_mask(mask, image.shape)
        multiple = self.model.SIZE_MULTIPLE
        padded, (h, w) = pad_to_multiple(image, multiple, 'reflect')
        padded_mask, _ = pad_to_multiple(mask, multiple, 'constant')
        x = paddle.to_tensor(padded.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1.0)
        m = paddle.to_tensor(padded_mask[None, None])
        extra = {}
        if sketch is not None:
            sketch = np.asarray(sketch)
            if sketch.shape[:2] != image.shape[:2]:
                raise ValueError(f'sketch: size {sketch.shape[1]}x{sketch.shape[0]} does not '
                                 f'match the image {image.shape[1]}x{image.shape[0]}')
            padded_sketch, _ = pad_to_multiple((sketch > 0).astype(np.float32), multiple,
                                               'constant')
            extra['sketch'] = paddle.to_tensor(padded_sketch[None, None])
        with paddle.no_grad():
            out = self.model(x, m, **extra)
        pred = out['pred'].numpy()[0].transpose(1, 2, 0)[:h, :w]
        pred = np.clip(np.round((pred + 1.0) * 127.5), 0, 255).astype(np.uint8)
        result = np.where(mask[..., None] > 0, pred, image)
        return result, {k: v.numpy() for k, v in out.items()}

    def __call__(self, image, mask, sketch=None):
        return self.run(image, mask, sketch)[0]
