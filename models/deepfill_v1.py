"""DeepFill v1: Generative Image Inpainting with Contextual Attention (Yu et al., CVPR 2018).

arXiv:1801.07892. Official code: https://github.com/JiahuiYu/generative_inpainting, branch
``v1.0.0`` (TensorFlow 1.x + neuralgym); layer names below are the official variable names.
TF NHWC -> Paddle NCHW.

Where the paper, the official code and the ports disagree we follow the official code:

- Spatial discount gamma 0.9 measured to the edge of the 128x128 local patch (the paper says
  0.99 and distance to the nearest known pixel; the author recommends 0.9 for 256x256).
- TF 'SAME' padding (asymmetric at stride 2) and TF align-corners nearest resizes inside
  contextual attention; the PyTorch port (daa233) pads symmetrically and uses torch nearest.
- Local critic conv4 has 512 filters (daa233 has 256) and the gradient penalty is weighted by the
  hole mask (daa233's is unmasked).

Deliberate deviations, none of which changes the function computed with official weights:

- Critic features are flattened in NCHW order; converting official dense kernels (NHWC flatten)
  needs a row permutation, done by the weight converter.
- Masks and local boxes may differ per sample; with one box shared by the batch (the default, as
  the official code) the result is the official one. Contextual attention uses each item's own
  mask instead of item 0's.
- ``forward`` returns the attention ``offsets``; ``ops.flow_to_image`` colours them for logs (the
  official graph colours them with a py_func inside the model).
- ``pretrain_coarse`` skips stage 2 (the official graph computes it, but no loss reaches it) and
  trains no critic (the official script adds no critic trainer in that mode).
- Two Adam optimisers with the official settings instead of one shared TF1 Adam object, which
  also shares its bias-correction counters between G and D.
- Published weights convert with weights/convert/deepfill.py (tools/convert_weights.py). daa233's
  PyTorch port differs in ops, so the config has switches, all defaulting to the official behaviour:
  ``padding`` ('symmetric' in the port), ``ca_resize`` ('torch'), ``ca_patch_norm`` ('eps_sum')
  and ``d_local_conv4_mult`` (the port's local critic ends in 4*cnum filters, not 8*cnum).
"""
from functools import partial

import numpy as np
import paddle
import paddle.nn as nn

from models.attention import ATTENTION_DEFAULTS, ContextualAttention
from models.base import InpaintModel
from models.losses import (ae_l1, discounted_l1, gradient_penalty, spatial_discount_mask,
                           wgan_d, wgan_g)
from models.ops import DisConv, GenConv, GenDeconv, tf_init

DEFAULTS = dict(
    image_size=256,          # IMG_SHAPES: training crops are image_size x image_size
    cnum=32,                 # generator base width (build_inpaint_net: cnum = 32)
    d_cnum=64,               # critic base width (build_wgan_*_discriminator: cnum = 64)
    bbox_size=128,           # HEIGHT, WIDTH: hole box and local-critic patch
    max_delta=32,            # MAX_DELTA_HEIGHT/WIDTH: the box shrinks by up to max_delta/2 a side
    margin=0,                # VERTICAL/HORIZONTAL_MARGIN
    mask_type='bbox',        # Sec. 4: rectangular holes
    coarse_l1_alpha=1.2,     # COARSE_L1_ALPHA: weight of the stage-1 terms inside l1 and ae
    l1_alpha=1.2,            # L1_LOSS_ALPHA: spatially discounted L1 on the local patch
    ae_alpha=1.2,            # AE_LOSS_ALPHA: known-region reconstruction L1
    gan_alpha=0.001,         # GAN_LOSS_ALPHA
    global_wgan_alpha=1.0,   # GLOBAL_WGAN_LOSS_ALPHA (generator side only)
    gp_lambda=10.0,          # WGAN_GP_LAMBDA
    discount_gamma=0.9,      # SPATIAL_DISCOUNTING_GAMMA (paper: 0.99)
    pretrain_coarse=False,   # PRETRAIN_COARSE_NETWORK
    padding='tf_same',       # PADDING: SAME (TF, asymmetric at stride 2); 'symmetric': daa233
    **ATTENTION_DEFAULTS,    # contextual attention (models/attention.py; its switches for ports)
    d_local_conv4_mult=8,    # discriminator_local conv4: cnum*8 filters (daa233: 4)
    lr=1e-4,                 # train.py: Adam learning rate
    beta1=0.5,               # train.py: AdamOptimizer(beta1=0.5, beta2=0.9)
    beta2=0.9,
    d_steps=5,               # train.py: SecondaryTrainer(max_iters=5), critic steps per G step
    batch_size=16,           # BATCH_SIZE
    max_iters=1_000_000,     # MAX_ITERS
)

TINY = dict(image_size=64, cnum=8, d_cnum=8, bbox_size=32, max_delta=8, batch_size=2,
            d_steps=1, max_iters=2)


def crop_patch(x, bbox, size):
    """Crops the [size, size] local patch at each sample's (top, left): [N,C,H,W] -> [N,C,s,s].

    ``bbox`` is int [N, 4] (top, left, h, w), numpy or paddle; one shared box is a single slice.
    """
    bbox = np.asarray(bbox.numpy() if hasattr(bbox, 'numpy') else bbox).reshape(-1, 4)
    if (bbox == bbox[0]).all():
        top, left = int(bbox[0, 0]), int(bbox[0, 1])
        return x[:, :, top:top + size, left:left + size]
    return paddle.concat([x[i:i + 1, :, top:top + size, left:left + size]
                          for i, (top, left) in enumerate(bbox[:, :2].tolist())])


OUTPUTS = {'clip': lambda x: paddle.clip(x, -1.0, 1.0), 'tanh': paddle.tanh}


class _Stack(nn.Layer):
    """Runs named sub-layers in table order, keeping the official flat layer names."""

    def run(self, names, x):
        for name in names:
            x = getattr(self, name)(x)
        return x


class CoarseNet(_Stack):
    """Stage 1 (Fig. 2 top): 5-channel input -> coarse RGB in [-1, 1].

    ``cnum`` is the base number of output channels; ``conv`` the layer type (GenConv for v1,
    GatedConv2D for v2, which shares this table); ``output`` 'clip' (v1) or 'tanh' (v2).
    """

    def __init__(self, cnum=32, in_channels=5, conv=GenConv, output='clip'):
        super().__init__()
        self.output = OUTPUTS[output]
        c = cnum
        self.conv1 = conv(in_channels, c, 5)
        self.conv2_downsample = conv(c, 2 * c, 3, 2)
        self.conv3 = conv(2 * c, 2 * c)
        self.conv4_downsample = conv(2 * c, 4 * c, 3, 2)
        self.conv5 = conv(4 * c, 4 * c)
        self.conv6 = conv(4 * c, 4 * c)
        self.conv7_atrous = conv(4 * c, 4 * c, dilation=2)
        self.conv8_atrous = conv(4 * c, 4 * c, dilation=4)
        self.conv9_atrous = conv(4 * c, 4 * c, dilation=8)
        self.conv10_atrous = conv(4 * c, 4 * c, dilation=16)
        self.conv11 = conv(4 * c, 4 * c)
        self.conv12 = conv(4 * c, 4 * c)
        self.conv13_upsample = GenDeconv(4 * c, 2 * c, conv)
        self.conv14 = conv(2 * c, 2 * c)
        self.conv15_upsample = GenDeconv(2 * c, c, conv)
        self.conv16 = conv(c, c // 2)
        self.conv17 = conv(c // 2, 3, activation=None)

    def forward(self, x):
        """[N, C_in, H, W] -> [N, 3, H, W] in [-1, 1]."""
        return self.output(self.run([name for name, _ in self.named_children()], x))


class RefineNet(_Stack):
    """Stage 2 (Fig. 2 bottom): a dilated-conv branch and a contextual-attention branch, merged."""

    CONV_BRANCH = ['xconv1', 'xconv2_downsample', 'xconv3', 'xconv4_downsample', 'xconv5',
                   'xconv6', 'xconv7_atrous', 'xconv8_atrous', 'xconv9_atrous', 'xconv10_atrous']
    ATTENTION_IN = ['pmconv1', 'pmconv2_downsample', 'pmconv3', 'pmconv4_downsample', 'pmconv5',
                    'pmconv6']
    ATTENTION_OUT = ['pmconv9', 'pmconv10']  # the official code has no pmconv7/8
    MERGE = ['allconv11', 'allconv12', 'allconv13_upsample', 'allconv14', 'allconv15_upsample',
             'allconv16', 'allconv17']

    def __init__(self, cnum=32, in_channels=5, attention=None, conv=GenConv, output='clip'):
        super().__init__()
        self.output = OUTPUTS[output]
        c = cnum
        self.xconv1 = conv(in_channels, c, 5)
        self.xconv2_downsample = conv(c, c, 3, 2)
        self.xconv3 = conv(c, 2 * c)
        self.xconv4_downsample = conv(2 * c, 2 * c, 3, 2)
        self.xconv5 = conv(2 * c, 4 * c)
        self.xconv6 = conv(4 * c, 4 * c)
        for i, rate in zip(range(7, 11), (2, 4, 8, 16)):
            setattr(self, f'xconv{i}_atrous', conv(4 * c, 4 * c, dilation=rate))
        self.pmconv1 = conv(in_channels, c, 5)
        self.pmconv2_downsample = conv(c, c, 3, 2)
        self.pmconv3 = conv(c, 2 * c)
        self.pmconv4_downsample = conv(2 * c, 4 * c, 3, 2)
        self.pmconv5 = conv(4 * c, 4 * c)
        self.pmconv6 = conv(4 * c, 4 * c, activation='relu')
        self.contextual_attention = attention or ContextualAttention()
        self.pmconv9 = conv(4 * c, 4 * c)
        self.pmconv10 = conv(4 * c, 4 * c)
        self.allconv11 = conv(8 * c, 4 * c)
        self.allconv12 = conv(4 * c, 4 * c)
        self.allconv13_upsample = GenDeconv(4 * c, 2 * c, conv)
        self.allconv14 = conv(2 * c, 2 * c)
        self.allconv15_upsample = GenDeconv(2 * c, c, conv)
        self.allconv16 = conv(c, c // 2)
        self.allconv17 = conv(c // 2, 3, activation=None)

    def forward(self, x, mask_s):
        """x: [N, C_in, H, W]; mask_s: hole mask at H or H/4 (contextual attention resizes it).
        Returns ([N, 3, H, W], offsets)."""
        hallucinated = self.run(self.CONV_BRANCH, x)  # [N, 4c, H/4, W/4]
        pm = self.run(self.ATTENTION_IN, x)
        pm, offsets = self.contextual_attention(pm, pm, mask_s)
        pm = self.run(self.ATTENTION_OUT, pm)
        x = self.run(self.MERGE, paddle.concat([hallucinated, pm], axis=1))
        return self.output(x), offsets


class Generator(nn.Layer):
    """Coarse-to-fine generator: stage 2 refines the coarse result pasted into the known image."""

    def __init__(self, cnum=32, attention=None, padding='tf_same'):
        super().__init__()
        conv = partial(GenConv, padding=padding)
        self.coarse = CoarseNet(cnum, conv=conv)
        self.refine = RefineNet(cnum, attention=attention, conv=conv)

    def forward(self, image, mask, refine=True):
        """image [N,3,H,W] in [-1,1]; mask [N,1,H,W], 1 = hole. Returns (x1, x2, offsets)."""
        masked = image * (1.0 - mask)
        ones = paddle.ones_like(mask)
        x1 = self.coarse(paddle.concat([masked, ones, mask], axis=1))
        if not refine:
            return x1, None, None
        x = x1 * mask + masked * (1.0 - mask)
        x2, offsets = self.refine(paddle.concat([x, ones, mask], axis=1), mask)
        return x1, x2, offsets


class _Critic(nn.Layer):
    """Four ``dis_conv`` layers (5x5, stride 2, LeakyReLU 0.2), flatten, dense -> 1 score."""

    def __init__(self, widths, input_size, in_channels=3, padding='tf_same'):
        super().__init__()
        self.input_size = input_size
        self.conv1 = DisConv(in_channels, widths[0], padding=padding)
        self.conv2 = DisConv(widths[0], widths[1], padding=padding)
        self.conv3 = DisConv(widths[1], widths[2], padding=padding)
        self.conv4 = DisConv(widths[2], widths[3], padding=padding)
        weight_attr, bias_attr = tf_init()
        self.fc = nn.Linear(widths[3] * (input_size // 16) ** 2, 1, weight_attr, bias_attr)

    def forward(self, x):
        """[N, 3, s, s] -> [N, 1]. Only conv, leaky_relu, reshape and linear: all have the
        double backward that the gradient penalty needs (``flatten`` has none in Paddle)."""
        if tuple(x.shape[2:]) != (self.input_size, self.input_size):
            raise ValueError(f'{type(self).__name__} was built for {self.input_size}x'
                             f'{self.input_size} inputs, got {x.shape[2]}x{x.shape[3]}')
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        return self.fc(x.reshape([x.shape[0], -1]))


class LocalCritic(_Critic):
    """WGAN critic of the local patch around the hole (``discriminator_local``)."""

    def __init__(self, patch_size=128, cnum=64, conv4_mult=8, padding='tf_same'):
        super().__init__([cnum, 2 * cnum, 4 * cnum, conv4_mult * cnum], patch_size,
                         padding=padding)


class GlobalCritic(_Critic):
    """WGAN critic of the whole image (``discriminator_global``)."""

    def __init__(self, image_size=256, cnum=64, padding='tf_same'):
        super().__init__([cnum, 2 * cnum, 4 * cnum, 4 * cnum], image_size, padding=padding)


class Critics(nn.Layer):
    """The two WGAN-GP critics; forward scores (local patch, whole image)."""

    def __init__(self, image_size, patch_size, cnum, local_conv4_mult=8, padding='tf_same'):
        super().__init__()
        self.local_critic = LocalCritic(patch_size, cnum, local_conv4_mult, padding)
        self.global_critic = GlobalCritic(image_size, cnum, padding)

    def forward(self, patch, image):
        return self.local_critic(patch), self.global_critic(image)


class DeepFillV1(InpaintModel):
    """DeepFill v1 generator plus its local and global WGAN-GP critics."""

    NAME = 'deepfill_v1'
    DEFAULTS = DEFAULTS
    TINY = TINY
    SIZE_MULTIPLE = 8  # two stride-2 convs, then contextual attention at rate 2
    IMAGE_OUTPUTS = ('coarse', 'pred', 'composite')
    MIXING_DRAWS = 2  # the local and the global critic's gradient penalties

    def __init__(self, **cfg):
        super().__init__(**cfg)
        cfg = self.cfg
        if cfg['image_size'] % 16 or cfg['bbox_size'] % 16 or cfg['bbox_size'] > cfg['image_size']:
            raise ValueError('deepfill_v1: image_size and bbox_size must be multiples of 16 with '
                             f"bbox_size <= image_size, got {cfg['image_size']}, "
                             f"{cfg['bbox_size']}")
        self.netG = Generator(cfg['cnum'], ContextualAttention.from_config(cfg), cfg['padding'])
        self.netD = Critics(cfg['image_size'], cfg['bbox_size'], cfg['d_cnum'],
                            cfg['d_local_conv4_mult'], cfg['padding'])
        discount = spatial_discount_mask(cfg['bbox_size'], cfg['bbox_size'], cfg['discount_gamma'])
        self.register_buffer('discount', paddle.to_tensor(discount[None, None]), persistable=False)

    @property
    def trains_critic(self):
        """False while pretraining the coarse network (the official script trains no critic)."""
        return not self.cfg['pretrain_coarse']

    def forward(self, image, mask):
        """image [N,3,H,W] in [-1,1], mask [N,1,H,W] (1 = hole), H and W multiples of 8.

        Returns dict: coarse, pred (refined, or coarse when pretraining), composite, offsets.
        """
        mask = self.check_inputs(image, mask)
        x1, x2, offsets = self.netG(image, mask, refine=self.trains_critic)
        pred = x1 if x2 is None else x2
        out = dict(coarse=x1, pred=pred, composite=self.composite(pred, image, mask))
        if offsets is not None:
            out['offsets'] = offsets
        return out

    def g_loss(self, batch, out, phase=None):
        """Generator loss (official ``build_graph_with_losses``). batch: image, mask, bbox."""
        cfg, image, mask = self.cfg, batch['image'], batch['mask']
        local = lambda x: crop_patch(x, batch['bbox'], cfg['bbox_size'])  # noqa: E731
        gt_local = local(image)
        l1 = cfg['coarse_l1_alpha'] * discounted_l1(gt_local, local(out['coarse']), self.discount)
        ae = cfg['coarse_l1_alpha'] * ae_l1(image, out['coarse'], mask)
        logs = {}
        loss = 0.0
        if self.trains_critic:
            l1 = l1 + discounted_l1(gt_local, local(out['pred']), self.discount)
            ae = ae + ae_l1(image, out['pred'], mask)
            d_local, d_global = self.netD(local(out['composite']), out['composite'])
            adv = cfg['global_wgan_alpha'] * wgan_g(d_global) + wgan_g(d_local)
            loss = cfg['gan_alpha'] * adv
            logs['g_adv'] = adv
        loss = loss + cfg['l1_alpha'] * l1 + cfg['ae_alpha'] * ae
        logs.update(g_l1=l1, g_ae=ae, g=loss)
        return loss, {k: v.detach() for k, v in logs.items()}

    def d_loss(self, batch, out, phase=None):
        """Critic loss: WGAN on local and global critics plus the masked gradient penalties.

        The fakes are the detached composites, so this loss sends no gradient to netG. Returns
        None while pretraining the coarse network.
        """
        if not self.trains_critic:
            return None
        cfg, real, mask = self.cfg, batch['image'], batch['mask']
        fake = out['composite'].detach()
        local = lambda x: crop_patch(x, batch['bbox'], cfg['bbox_size'])  # noqa: E731
        real_l, fake_l = local(real), local(fake)
        n = real.shape[0]
        s_local, s_global = self.netD(paddle.concat([real_l, fake_l]), paddle.concat([real, fake]))
        wgan = wgan_d(s_local[:n], s_local[n:]) + wgan_d(s_global[:n], s_global[n:])
        gp = (gradient_penalty(self.netD.local_critic, real_l, fake_l,
                               self.mixing_weights(batch, 0), local(mask))
              + gradient_penalty(self.netD.global_critic, real, fake,
                                 self.mixing_weights(batch, 1), mask))
        loss = wgan + cfg['gp_lambda'] * gp
        return loss, {'d_wgan': wgan.detach(), 'd_gp': gp.detach(), 'd': loss.detach()}
