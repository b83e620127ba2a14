"""DeepFill v2: Free-Form Image Inpainting with Gated Convolution (Yu et al., ICCV 2019).

arXiv:1806.03589. Official code: https://github.com/JiahuiYu/generative_inpainting, branch
``master`` (= tag v2.0.0; TensorFlow 1.x + neuralgym); layer names are the official variable
names. TF NHWC -> Paddle NCHW.

The generator is DeepFill v1's two-stage table (imported from deepfill_v1, not copied) with every
conv replaced by a gated convolution of ``cnum = 48`` filters, i.e. 24/48/96 output channels,
tanh outputs, and a stage 2 that sees only the 3-channel composite (the official code comments
out v1's ones/mask channels there). Contextual attention is v1's (fuse on). The critic is the
SN-PatchGAN: six spectral-normalised 5x5/s2 convs, LeakyReLU 0.2 after each (the last too), one
hinge loss per output element (4096 per 256x256 image). Free-form masks: strokes OR'd with a
box (data/masks.py).

Choices and deviations:

- User guidance (``guided: true``): the official code trained on edge maps from a learned
  detector (HED) whose weights we cannot ship; our training edges come from Canny on a blurred
  grey image (``canny_sigma``, ``canny_low``, ``canny_high``; data/sketch.py), made by
  ``extra_inputs`` from the ground truth. As in the official code, the sketch is multiplied by
  the mask (only strokes inside the hole count) and fed to the generator (6 input channels) and
  to the critic (5). A user's sketch (``USER_INPUTS``) is binarised at ``edge_threshold``
  (official 0.6); without one a guided model runs with an empty sketch.
- Adam (0.5, 0.999), lr 1e-4 for both nets, one critic step per generator step; two optimisers
  instead of the official shared TF1 Adam object (see deepfill_v1).
- ``forward`` returns attention offsets; the official summary upsamples the flow image
  bilinearly, ours uses nearest neighbour (a visualisation only).
- TF's default (glorot-uniform) initialisation, as the official code: through 17 gated layers
  (sigmoid gates halve the signal) an untrained generator outputs values around 1e-7, so early
  training is slow; nipponjo's port uses kaiming-uniform (fan_out) instead. We keep TF's.
- Spectral norm keeps ``u`` per layer as the official code ([out] here, [1, out] in TF) and runs
  one power iteration on every training forward of the critic, generator steps included, as the
  TF graph does.
- Published weights convert with weights/convert/deepfill.py. nipponjo's port of the official
  weights runs contextual attention without the fuse step and resizes its mask in one
  step from the image; ``ca_fuse`` and ``ca_mask_from`` record that (the other ops switches are
  deepfill_v1's; all default to the official behaviour).
"""
from functools import partial

import paddle
import paddle.nn as nn

import numpy as np

from data.sketch import canny_edges
from models.attention import ATTENTION_DEFAULTS, ContextualAttention
from models.base import InpaintModel
from models.deepfill_v1 import CoarseNet, RefineNet
from models.ops import DisConv, GatedConv2D

DEFAULTS = dict(
    image_size=256,          # img_shapes
    cnum=48,                 # build_inpaint_net: cnum = 48 filters (24 gated output channels)
    d_cnum=64,               # build_sn_patch_gan_discriminator: cnum = 64
    bbox_size=128,           # height, width: the box OR'd with the strokes
    max_delta=32,            # max_delta_height/width
    margin=0,                # vertical/horizontal_margin
    mask_type='free_form',   # brush_stroke_mask OR bbox2mask
    l1_alpha=1.0,            # l1_loss_alpha: whole-image L1 on both stages
    gan_alpha=1.0,           # gan_loss_alpha: hinge G loss (1:1 with L1, Sec. 3.3)
    guided=False,            # guided: user sketch (edge) channel
    edge_threshold=0.6,      # edge_threshold: binarises user sketches
    canny_sigma=2.0,         # our Canny training edges (the official used HED): blur, pixels
    canny_low=30,            # Canny hysteresis thresholds, 8-bit gradient magnitude
    canny_high=80,
    padding='tf_same',       # padding: SAME (see deepfill_v1 for the switches)
    **ATTENTION_DEFAULTS,    # contextual attention as v1 (models/attention.py)
    lr=1e-4,                 # train.py: Adam(1e-4, beta1 0.5, beta2 0.999)
    beta1=0.5,
    beta2=0.999,
    d_steps=1,               # one critic step per generator step
    batch_size=16,
    max_iters=1_000_000,     # the official max_iters is 1e8 ("until stopped")
)

TINY = dict(image_size=64, cnum=16, d_cnum=8, bbox_size=32, max_delta=8, batch_size=2,
            max_iters=2)


class Generator(nn.Layer):
    """Gated two-stage generator; stage 2 refines the coarse result pasted into the image."""

    def __init__(self, cnum=48, guided=False, attention=None, padding='tf_same'):
        super().__init__()
        c = cnum // 2  # a gated conv of n filters gives n/2 channels
        conv = partial(GatedConv2D, padding=padding)
        self.coarse = CoarseNet(c, 6 if guided else 5, conv, 'tanh')
        self.refine = RefineNet(c, 3, attention, conv, 'tanh')

    def forward(self, image, mask, sketch=None):
        """image [N,3,H,W] in [-1,1]; mask [N,1,H,W]; sketch [N,1,H,W] or None (unguided)."""
        masked = image * (1.0 - mask)
        x = masked if sketch is None else paddle.concat([masked, sketch * mask], axis=1)
        ones = paddle.ones_like(mask)
        x1 = self.coarse(paddle.concat([x, ones, mask], axis=1))
        x = x1 * mask + masked * (1.0 - mask)  # 3 channels only (official)
        x2, offsets = self.refine(x, mask)
        return x1, x2, offsets


class SNPatchGAN(nn.Layer):
    """SN-PatchGAN critic: [N, C, H, W] -> [N, 256 * H/64 * W/64] scores (4096 at 256x256)."""

    def __init__(self, in_channels=4, cnum=64, padding='tf_same'):
        super().__init__()
        widths = [cnum, 2 * cnum, 4 * cnum, 4 * cnum, 4 * cnum, 4 * cnum]
        for i, (cin, cout) in enumerate(zip([in_channels] + widths[:-1], widths), start=1):
            setattr(self, f'conv{i}', DisConv(cin, cout, spectral=True, padding=padding))

    def forward(self, x):
        for i in range(1, 7):
            x = getattr(self, f'conv{i}')(x)
        return x.reshape([x.shape[0], -1])


def hinge_d(real_score, fake_score):
    """Official critic hinge: ``0.5 mean relu(1 - D(real)) + 0.5 mean relu(1 + D(fake))``."""
    return 0.5 * nn.functional.relu(1.0 - real_score).mean() \
        + 0.5 * nn.functional.relu(1.0 + fake_score).mean()


class DeepFillV2(InpaintModel):
    """DeepFill v2 gated generator plus the SN-PatchGAN critic."""

    NAME = 'deepfill_v2'
    DEFAULTS = DEFAULTS
    TINY = TINY
    SIZE_MULTIPLE = 8  # two stride-2 convs, then contextual attention at rate 2
    IMAGE_OUTPUTS = ('coarse', 'pred', 'composite')
    USER_INPUTS = {'sketch': 'guided models: white strokes on black where edges should go in the '
                   'hole (a file, or a folder of same-named sketches)'}

    def __init__(self, **cfg):
        super().__init__(**cfg)
        cfg = self.cfg
        if cfg['cnum'] % 2:
            raise ValueError(f"deepfill_v2: cnum counts gated filters and must be even, "
                             f"got {cfg['cnum']}")
        self.netG = Generator(cfg['cnum'], cfg['guided'], ContextualAttention.from_config(cfg),
                              cfg['padding'])
        self.netD = SNPatchGAN(5 if cfg['guided'] else 4, cfg['d_cnum'], cfg['padding'])

    def extra_inputs(self, image, mask, rngs=None, given=None):
        """A guided model's ``sketch`` [N, 1, H, W] in {0, 1}: Canny edges of the ground truth in
        training and evaluation (the config's thresholds), else the user's sketch binarised at
        ``edge_threshold`` (an empty one when none is given)."""
        if not self.cfg['guided']:
            if given and 'sketch' in given:
                raise ValueError('sketch: this model was trained without sketches (guided: false)')
            return super().extra_inputs(image, mask, rngs, given)
        if given is None:
            c = self.cfg
            return {'sketch': canny_edges(image, c['canny_sigma'], c['canny_low'], c['canny_high'])}
        unknown = sorted(set(given) - {'sketch'})
        if unknown:
            raise ValueError(f'{unknown[0]}: deepfill_v2 takes no such input (only a sketch)')
        sketch = given.get('sketch')
        if sketch is None:
            return {'sketch': np.zeros_like(mask, np.float32)}
        levels = np.rint(np.asarray(sketch, np.float64) * 255)  # 8-bit grey, as the official
        return {'sketch': (levels > 255 * self.cfg['edge_threshold']).astype(np.float32)}

    def _sketch(self, image, sketch):
        if not self.cfg['guided']:
            if sketch is not None:
                raise ValueError('sketch: this model was trained without sketches (guided: false)')
            return None
        return paddle.zeros_like(image[:, :1]) if sketch is None else sketch

    def forward(self, image, mask, sketch=None):
        """image [N,3,H,W] in [-1,1], mask [N,1,H,W] (1 = hole), H and W multiples of 8; sketch
        [N,1,H,W] in {0,1} for guided models (none given: no guidance).

        Returns dict: coarse, pred, composite, offsets.
        """
        mask = self.check_inputs(image, mask)
        x1, x2, offsets = self.netG(image, mask, self._sketch(image, sketch))
        return dict(coarse=x1, pred=x2, composite=self.composite(x2, image, mask),
                    offsets=offsets)

    def _critic_input(self, image, batch):
        parts = [image, batch['mask'].expand([image.shape[0], 1] + list(image.shape[2:]))]
        sketch = self._sketch(image, batch.get('extra', {}).get('sketch'))
        if sketch is not None:
            parts.append(sketch * parts[1])  # the critic sees the hole's strokes, as G does
        return paddle.concat(parts, axis=1)

    def g_loss(self, batch, out, phase=None):
        """``gan_alpha * -mean D(fake) + l1_alpha * (mean|gt - x1| + mean|gt - x2|)``."""
        image, cfg = batch['image'], self.cfg
        l1 = cfg['l1_alpha'] * (paddle.abs(image - out['coarse']).mean()
                                + paddle.abs(image - out['pred']).mean())
        adv = -self.netD(self._critic_input(out['composite'], batch)).mean()
        loss = cfg['gan_alpha'] * adv + l1
        return loss, {'g_adv': adv.detach(), 'g_l1': l1.detach(), 'g': loss.detach()}

    def d_loss(self, batch, out, phase=None):
        """Hinge loss on real images and detached composites, in one critic pass."""
        real, fake = batch['image'], out['composite'].detach()
        scores = self.netD(paddle.concat([self._critic_input(real, batch),
                                          self._critic_input(fake, batch)]))
        n = real.shape[0]
        loss = hinge_d(scores[:n], scores[n:])
        return loss, {'d_real': scores[:n].mean().detach(), 'd_fake': scores[n:].mean().detach(),
                      'd': loss.detach()}

