"""The interface every inpainting model implements, so train.py and test.py never branch on names.

A model is an ``InpaintModel`` subclass with:

- ``NAME``, ``DEFAULTS`` (paper hyper-parameters, every accepted config key), ``TINY`` (a small
  config for tests) and ``SIZE_MULTIPLE`` (input height and width must be multiples of it);
- ``netG`` (the generator: everything kept for inference) and ``netD`` (critic/discriminator
  layers, or None for models trained without one);
- ``forward(image, mask, **conditions) -> dict`` with at least ``pred`` (raw generator output)
  and ``composite`` (known pixels from the input, hole pixels from ``pred``), all [N,3,H,W] in
  [-1, 1]; ``IMAGE_OUTPUTS`` lists the image-valued keys (e.g. DeepFill's ``coarse``);
- ``g_loss(batch, out)`` and ``d_loss(batch, out)`` returning ``(loss, {name: detached value})``
  (``d_loss`` returns None when no critic is trained); batch holds ``image``, ``mask`` and
  whatever the mask generator adds (``bbox``);
- ``make_optimizers() -> {'optG': ..., 'optD': ...}`` (Adam from the ``lr``/``beta1``/``beta2``
  keys, the critic's from ``d_lr``/``d_beta1``/``d_beta2`` when the model has them);
- ``schedule(it) -> (d_steps, g_step)``: what iteration ``it`` trains (GLCIC's three phases);
- ``prepare_data(dataset)``: called once before a fresh run (GLCIC's mean colour).

Images are float32 NCHW RGB in [-1, 1]; masks are [N,1,H,W] with 1 = hole.
"""
import paddle
import paddle.nn as nn


def merge_config(name, defaults, cfg):
    """The model's DEFAULTS updated with ``cfg``; an unknown key is an error naming the model."""
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f'{name}: unknown config keys {unknown}')
    return {**defaults, **cfg}


def check_inputs(image, mask, multiple):
    """Clear errors for inputs the network cannot take (instead of a shape error deep inside)."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f'image: expected [N, 3, H, W], got {list(image.shape)}')
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != image.shape[2:] \
            or mask.shape[0] not in (1, image.shape[0]):
        raise ValueError(f'mask: expected [N, 1, H, W] matching image {list(image.shape)}, '
                         f'got {list(mask.shape)}')
    h, w = image.shape[2:]
    if (h > 0 and h % multiple) or (w > 0 and w % multiple):  # -1: a dynamic size (export)
        raise ValueError(f'image: height and width must be multiples of {multiple}, got {h}x{w} '
                         '(pad or crop it; test.py and the Inpainter pad for you)')


def count_parameters(layer):
    """Trainable parameters of a layer, as the papers count them (Paddle keeps BatchNorm's
    running statistics as parameters with stop_gradient set: those are excluded)."""
    if layer is None:
        return 0
    return sum(int(p.numel()) for p in layer.parameters() if not p.stop_gradient)


class InpaintModel(nn.Layer):
    """Base class: config handling, input checks, optimizers. Subclasses build netG / netD."""

    NAME = ''
    DEFAULTS = {}
    TINY = {}
    SIZE_MULTIPLE = 8
    IMAGE_OUTPUTS = ('pred', 'composite')
    OVERFIT_LR = 1e-3  # learning rate of the shared one-batch overfit test (optimizer's scale)

    def __init__(self, **cfg):
        super().__init__()
        self.cfg = merge_config(self.NAME, self.DEFAULTS, cfg)
        self.netD = None

    @property
    def trains_critic(self):
        """Whether train.py runs critic steps (False for models without one)."""
        return self.netD is not None

    @paddle.jit.not_to_static  # plain Python checks of static sizes, also while exporting
    def check_inputs(self, image, mask):
        check_inputs(image, mask, self.SIZE_MULTIPLE)
        return mask.expand([image.shape[0]] + mask.shape[1:])

    def composite(self, pred, image, mask):
        return pred * mask + image * (1.0 - mask)

    def d_loss(self, batch, out):
        return None

    def schedule(self, it):
        """(critic steps, whether to step the generator) at 0-based iteration ``it``."""
        return (self.cfg.get('d_steps', 1) if self.trains_critic else 0), True

    def check_training(self):
        """Fails before training starts when a file the losses need is missing (VGG weights):
        loads every ``FeatureNet`` the model holds, unless its loss terms are switched off."""
        from models.vgg import FeatureNet
        if not (self.cfg.get('perceptual_alpha', 1) or self.cfg.get('style_alpha', 1)):
            return
        for value in vars(self).values():
            if isinstance(value, FeatureNet):
                value.load()

    def prepare_data(self, dataset):
        """Hook for statistics of the training data, stored in the model's buffers."""

    def optimizer_settings(self):
        """{'optG': (layer, lr, beta1, beta2), 'optD': ...}: Adam for the generator and critic."""
        c = self.cfg
        groups = {'optG': (self.netG, c['lr'], c['beta1'], c['beta2'])}
        if self.netD is not None:
            groups['optD'] = (self.netD, c.get('d_lr', c['lr']), c.get('d_beta1', c['beta1']),
                              c.get('d_beta2', c['beta2']))
        return groups

    def make_optimizers(self):
        """Optimizers keyed 'optG' / 'optD' (checkpoint names); build under a unique_name guard."""
        return {name: paddle.optimizer.Adam(lr, b1, b2, parameters=layer.parameters())
                for name, (layer, lr, b1, b2) in self.optimizer_settings().items()}
