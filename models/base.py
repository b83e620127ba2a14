"""The interface every inpainting model implements, so no script ever branches on a model's name.

A model is an ``InpaintModel`` subclass with:

- ``NAME``, ``DEFAULTS`` (paper hyper-parameters, every accepted config key), ``TINY`` (a small
  config for tests) and ``SIZE_MULTIPLE`` (input height and width must be multiples of it;
  ``EXPORT_SIZE_MULTIPLE`` where an exported graph needs a larger one); ``FULL_RESOLUTION``:
  the model inpaints photos far larger than its training crops in one pass (the Inpainter's
  ``auto`` strategy then keeps the photo whole);
- ``netG`` (the generator: everything kept for inference) and ``netD`` (critic/discriminator
  layers, or None for models trained without one);
- ``forward(image, mask, **extra) -> dict`` with at least ``pred`` (raw generator output) and
  ``composite`` (known pixels from the input, hole pixels from ``pred``), all [N,3,H,W] in
  [-1, 1]; ``IMAGE_OUTPUTS`` lists the image-valued keys (e.g. DeepFill's ``coarse``);
- ``extra_inputs(image, mask, rngs, given) -> {name: array}``: the one hook for inputs beyond
  image and mask (DeepFill v2's sketch; latent codes later), which ``run(batch)`` passes on from
  ``batch['extra']``. ``USER_INPUTS`` names the maps a user may draw for it (test.py makes a flag
  of each, the Inpainter takes them as keywords);
- ``g_loss(batch, out, phase=None)`` and ``d_loss(batch, out, phase=None)`` returning
  ``(loss, {name: detached value})`` (``d_loss`` returns None when no critic is trained); batch
  holds ``image``, ``mask``, ``bbox`` (the box around the hole), ``extra`` and, for critics with
  a gradient penalty, ``alpha`` (``MIXING_DRAWS`` uniform draws per sample, drawn with the batch);
- ``schedule(it) -> (d_steps, g_step, phase)``: what 0-based iteration ``it`` trains, and the
  phase its losses take (GLCIC's three phases; None elsewhere);
- ``make_optimizers() -> {'optG': ..., 'optD': ...}`` (Adam from the ``lr``/``beta1``/``beta2``
  keys, the critic's from ``d_lr``/``d_beta1``/``d_beta2`` when the model has them; gradients
  clipped to the global norm ``grad_clip`` per optimizer when the model has that key);
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
    EXPORT_SIZE_MULTIPLE = None  # the multiple an exported graph with dynamic sizes needs, if larger
    FULL_RESOLUTION = False  # generalises to photos far larger than its training crops (LaMa)
    IMAGE_OUTPUTS = ('pred', 'composite')
    USER_INPUTS = {}   # {name: help}: maps a user may draw for extra_inputs (DeepFill v2: sketch)
    MIXING_DRAWS = 0   # U[0, 1) draws per sample in batch['alpha'] (gradient-penalty mixing)

    def __init__(self, **cfg):
        super().__init__()
        self.cfg = merge_config(self.NAME, self.DEFAULTS, cfg)
        self.netD = None

    @property
    def trains_critic(self):
        """Whether the training loop runs critic steps (False for models without one)."""
        return self.netD is not None

    @paddle.jit.not_to_static  # plain Python checks of static sizes, also while exporting
    def check_inputs(self, image, mask):
        check_inputs(image, mask, self.SIZE_MULTIPLE)
        return mask.expand([image.shape[0]] + list(mask.shape[1:]))  # 2.6 traces shapes as tuples

    def composite(self, pred, image, mask):
        return pred * mask + image * (1.0 - mask)

    def run(self, batch):
        """``forward`` on a batch dict: image, mask and the ``extra`` inputs (if any)."""
        return self(batch['image'], batch['mask'], **batch.get('extra', {}))

    def extra_inputs(self, image, mask, rngs=None, given=None):
        """Inputs of ``forward`` beyond image and mask, as float32 numpy arrays by keyword.

        Args:
            image: float32 [N, 3, H, W] in [-1, 1]. With ``given`` None it is the ground truth
                (training, evaluation), and inputs may be derived from it; otherwise it is a
                photo to inpaint, whose hole content must not be used.
            mask: float32 [N, 1, H, W], 1 = hole.
            rngs: one ``numpy.random.Generator`` per sample for inputs drawn at random, so a
                sample's draw depends on its own seed only (and not on the batch or the rank).
            given: None, or the maps a user supplied (``USER_INPUTS`` names; float32
                [N, 1, H, W] in [0, 1]), possibly none.
        Returns:
            {} here. Arrays shaped like the mask are maps in {0, 1}: the Inpainter crops and
            resizes them as it does the mask.
        """
        if given:
            raise ValueError(f'{next(iter(given))}: {self.NAME} takes no such input')
        return {}

    def mixing_weights(self, batch, k):
        """Column ``k`` of ``batch['alpha']`` as [N, 1, 1, 1]: the real/fake mixing weights of
        the k-th gradient penalty, drawn with the batch (so the loss itself draws nothing)."""
        alpha = batch.get('alpha')
        if alpha is None or alpha.shape[1] <= k:
            raise ValueError(f"batch['alpha']: the {self.NAME} critic loss needs "
                             f'{self.MIXING_DRAWS} U[0, 1) draws per sample, [N, '
                             f'{self.MIXING_DRAWS}] (training.batches draws them)')
        return alpha[:, k].reshape([-1, 1, 1, 1])

    def d_loss(self, batch, out, phase=None):
        return None

    def export_blocker(self):
        """Why this Paddle cannot export the model with dynamic sizes (a one-line reason), or
        None. inference.export refuses with it; the export tests skip with it."""
        return None

    def schedule(self, it):
        """(critic steps, whether to step the generator, phase) at 0-based iteration ``it``."""
        return (self.cfg.get('d_steps', 1) if self.trains_critic else 0), True, None

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
        clip = self.cfg.get('grad_clip')
        return {name: paddle.optimizer.Adam(
                    lr, b1, b2, parameters=layer.parameters(),
                    grad_clip=paddle.nn.ClipGradByGlobalNorm(clip) if clip else None)
                for name, (layer, lr, b1, b2) in self.optimizer_settings().items()}
