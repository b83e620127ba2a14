"""LBAM: Image Inpainting with Learnable Bidirectional Attention Maps (Xie et al., ICCV 2019).

arXiv:1909.00968. Official code: https://github.com/Vious/LBAM_Pytorch (PyTorch, commit
b929244, the release whose ``LBAMModel(4, 3)`` state dict holds the published weights). Layer
names follow the official ones (``ec1``..``ec7``, ``reverseConv1``..6 -> ``reverse_conv1``..6,
``dc1``..``dc7``); the published weights convert with weights/convert/lbam.py.

A U-Net of 4x4 stride-2 convolutions whose encoder features are re-weighted by learnable
*forward* attention maps (a learnable conv of the valid map through an asymmetric Gaussian)
and whose decoder features are re-weighted by *reverse* attention maps (the same on the hole
map), the masks being updated layer by layer with ``ReLU(x)^0.8``. The model turns the shared
hole mask (1 = hole) into the valid map ``M = 1 - mask`` here, at its own boundary.

Choices and deviations (the official code is followed where it and the paper differ):

- Images are in our [-1, 1] convention. The official generator takes ``[x01 * M, M]`` with
  ``x01 = (x + 1) / 2`` and returns ``(tanh(y) + 1) / 2``; ours takes ``[x * M, M]`` and returns
  ``tanh(y)``, the same image in [-1, 1]. The two are the same function: the weight converter
  folds the input scaling into ec1 (``W[:, :3] / 2``, and their half-sum added to the M
  channel), nothing else changes.
- The released model: no batch norm in the generator and the ``(tanh + 1) / 2`` head (the paper
  has BN and ``|tanh|``); alpha = 0.8 fixed in the mask update (the Paddle fluid release learns
  it in [0.6, 0.8]); the Gaussian's parameters clamped to a in [1.01, 6], mu in [0.1, 3],
  sigma in [0.5, 2] (fluid: sigma in [1, 2]). As the official code, the stored values are
  projected into those ranges before every training forward, and gradients pass unclipped.
- ``cnum`` (default 64, official) scales every width of the table, capped at ``8 * cnum``;
  the seven stride-2 levels are fixed, so inputs must be multiples of 128.
- Critic: the official two-column discriminator (known region, hole region; BN, LeakyReLU 0.2,
  a final Sigmoid) scoring images in [0, 1] as the official one does, so its column inputs are
  zero (black) outside their region and the gradient penalty is taken in the same units.
  ``d_layers`` (official 6) sets the stride-2 convs per column; the fusion conv needs at least
  4x4 features, i.e. ``image_size >= 4 * 2**d_layers`` (256 for 6; the 128-pixel quick start
  uses 5).
- Critic loss: the official code computes ``D_real = -mean D(real)`` and then *subtracts* it,
  training ``mean D(fake) + mean D(real) + GP``, a sign slip. We train the WGAN-GP critic
  ``mean D(fake) - mean D(real) + 10 * GP`` (per-sample gradient norm over C, H, W, uniform
  per-sample mixing of real and output, as the official penalty).
- Generator adversarial term: the official adds ``+0.1 * mean D(fake)``, which together with
  its critic loss pushes D(fake) down on both sides. We use ``0.1 * (-mean D(fake))``, the
  generator loss that goes with the critic above (the fake tries to score like the real).
- We keep the Sigmoid on the critic although WGAN-GP assumes an unbounded critic: it is the
  official architecture (so official critic weights convert), it bounds the 0.1-weighted
  adversarial term, and a unit gradient norm stays reachable (sigmoid slope <= 1/4 only
  scales the logits' gradient). With a confident critic its gradients saturate; BN also makes
  the per-sample penalty depend on the batch (both as in the official training).
- The critic sees the raw output ``pred`` (not the composite), as the official code. Pixel L1
  terms are measured on [0, 1] images (half our [-1, 1] distance) and VGG16 pool1-3 features on
  [0, 1] images without ImageNet normalisation, as the official code, so its loss weights keep
  their balance. Real, fake and interpolates go through the critic in separate calls (BN
  statistics per call), as the official code.
- Two Adam optimisers with the official settings; our loop updates the critic first, then the
  generator against the updated critic (the official step reuses pre-update critic scores).
- Initialisation as the official code: N(0, 0.02) for the generator's convs and mask convs
  (``weights_init('gaussian')``), PyTorch's default U(+-1/sqrt(fan_in)) for dc7 and the critic.
  With it every mask feature starts below mu, so the right half of g_A (``sigma_r``) receives
  no gradient until the mask convs grow (13 of the 79 generator tensors at the first step).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, Normal, Uniform

from models.base import InpaintModel
from models.losses import gradient_penalty, perceptual_l1, style_l1, wgan_d, wgan_g
from models.features import FeatureNet

DEFAULTS = dict(
    image_size=256,          # train.py --cropSize 256 (official: resize to 350, random crop)
    cnum=64,                 # LBAMModel: 64 channels after ec1, widths x2 per level up to 512
    d_cnum=64,               # DiscriminatorDoubleColumn: 64 channels after the first conv
    d_layers=6,              # DiscriminatorDoubleColumn: six 4x4/s2 convs per column
    mask_type='irregular',   # paper: PConv's irregular masks
    hole_alpha=6.0,          # InpaintingLoss.py: 6 * L1 on the hole
    valid_alpha=1.0,         # InpaintingLoss.py: 1 * L1 on the known region
    perceptual_alpha=0.01,   # InpaintingLoss.py: 0.01 per pool1-3 term, for output and composite
    style_alpha=120.0,       # InpaintingLoss.py: 120 per Gram term, for output and composite
    gan_alpha=0.1,           # InpaintingLoss.py: 0.1 * adversarial term
    gp_lambda=10.0,          # train.py: Lamda=10.0 (gradient penalty)
    vgg_weights='checkpoints/vgg16-397923af.pth',  # LBAMModel.py: ./vgg16-397923af.pth
    lr=1e-4,                 # train.py: G Adam lr 1e-4, betas (0.5, 0.9)
    beta1=0.5,
    beta2=0.9,
    d_lr=1e-5,               # train.py: D Adam lr 1e-5, betas (0.0, 0.9)
    d_beta1=0.0,
    d_beta2=0.9,
    d_steps=1,               # InpaintingLoss.py: one critic step per generator step
    batch_size=16,           # train.py --batchSize 16 (README: >= 48 recommended)
    max_iters=465_625,       # train.py: 500 epochs; Paris StreetView (14,900 images) at batch 16
)

TINY = dict(image_size=128, cnum=8, d_cnum=8, d_layers=5, batch_size=2, max_iters=2)

# Asymmetric Gaussian g_A: initial (a, mu, sigma_l, sigma_r) and clamp ranges.
FORWARD_INIT = (1.1, 2.0, 1.0, 1.0)  # ForwardAttentionLayer: GaussActivation(1.1, 2.0, 1.0, 1.0)
REVERSE_INIT = (1.1, 1.0, 0.5, 0.5)  # ReverseMaskConv: GaussActivation(1.1, 1.0, 0.5, 0.5)
RANGES = dict(a=(1.01, 6.0), mu=(0.1, 3.0), sigma_l=(0.5, 2.0), sigma_r=(0.5, 2.0))


def widths(cnum, levels):
    """Channels per stride-2 level: cnum, 2 cnum, 4 cnum, then 8 cnum (64..512 for cnum=64)."""
    return [cnum * min(2 ** i, 8) for i in range(levels)]


def gauss_init():
    """weights_init('gaussian') of the official code: N(0, 0.02) (its layers have no bias)."""
    return ParamAttr(initializer=Normal(0.0, 0.02))


def torch_init(fan_in):
    """PyTorch's default conv initialisation, U(-b, b) with b = 1/sqrt(fan_in) for weight and
    bias, which the official code keeps for dc7 and the critic."""
    bound = fan_in ** -0.5
    return tuple(ParamAttr(initializer=Uniform(-bound, bound)) for _ in range(2))


def conv4x4(in_channels, out_channels, transpose=False, init=None):
    """4x4 stride-2 padding-1 conv (halves H, W) or transposed conv (doubles them).

    ``init``: (weight_attr, bias_attr), bias_attr False for none; default N(0, 0.02), no bias.
    """
    weight_attr, bias_attr = init or (gauss_init(), False)
    layer = nn.Conv2DTranspose if transpose else nn.Conv2D
    return layer(in_channels, out_channels, 4, 2, 1, weight_attr=weight_attr,
                 bias_attr=bias_attr)


def leaky_relu(x, slope=0.2):
    """LeakyReLU as ``max(x, slope * x)``: paddle2onnx 2.1 exports leaky_relu's slope wrongly."""
    return paddle.maximum(x, slope * x)


def mask_update(x, alpha=0.8):
    """The mask update ``ReLU(x) ** alpha`` (official ``MaskUpdate(0.8)``), with a zero gradient
    where x <= 0.

    Paddle's ``relu(x).pow(alpha)`` back-propagates 0 * inf = NaN at x <= 0 (pow's slope at 0);
    the base is set to 1 there before the power and the result multiplied by 0.
    """
    positive = x > 0
    base = paddle.where(positive, x, paddle.ones_like(x))
    return base.pow(alpha) * positive.astype(x.dtype)


def clamp(x, low, high):
    """``clip(x, low, high)`` with torch.clamp's gradient: passed where low <= x <= high, the
    bounds included (Paddle 3.0 and older pass none at a bound, where the projection in
    training puts the value)."""
    inside = (x >= low) & (x <= high)
    return paddle.where(inside, x, x.clip(low, high).detach())


class AsymmetricGaussian(nn.Layer):
    """The asymmetric Gaussian g_A: ``a exp(-sigma_l (x - mu)^2)`` for x < mu, else
    ``1 + (a - 1) exp(-sigma_r (x - mu)^2)``; four learnable scalars (shape [1]; the official
    ones are 0-d, which safetensors does not round-trip).

    The official ``sigma1``/``sigma2`` multiply the square (no 1/(2 sigma^2)). Values are clamped
    to ``RANGES`` in every forward; in training the stored values are projected first (as the
    official ``.data`` clamp), so the optimiser never moves them outside and gradients reach them
    unclipped.
    """

    def __init__(self, a, mu, sigma_l, sigma_r):
        super().__init__()
        for name, value in zip(RANGES, (a, mu, sigma_l, sigma_r)):
            param = self.create_parameter([1], default_initializer=Constant(value))
            setattr(self, name, param)

    def values(self):
        params = [(getattr(self, name), low, high) for name, (low, high) in RANGES.items()]
        if self.training:
            with paddle.no_grad():
                for p, low, high in params:
                    p.set_value(p.clip(low, high))
        return [clamp(p, low, high) for p, low, high in params]

    def forward(self, x):
        a, mu, sigma_l, sigma_r = self.values()
        sq = (x - mu).square()
        left = a * paddle.exp(-sigma_l * sq)
        right = 1.0 + (a - 1.0) * paddle.exp(-sigma_r * sq)
        return paddle.where(x < mu, left, right)


class ForwardAttention(nn.Layer):
    """Encoder layer (forward attention): features conv(F) * g_A(maskconv(M)), LeakyReLU 0.2.

    Returns (features, updated mask, raw conv(F) for the skip, forward attention map).
    """

    def __init__(self, in_channels, out_channels, mask_channels=None):
        super().__init__()
        self.conv = conv4x4(in_channels, out_channels)
        self.mask_conv = conv4x4(mask_channels or in_channels, out_channels)
        self.attention = AsymmetricGaussian(*FORWARD_INIT)

    def forward(self, x, mask):
        features = self.conv(x)
        mask_features = self.mask_conv(mask)
        attention = self.attention(mask_features)
        out = leaky_relu(features * attention)
        return out, mask_update(mask_features), features, attention


class ReverseMaskConv(nn.Layer):
    """Reverse attention map of one level: g_A(maskconv(M_rev)) and the updated reverse mask."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.mask_conv = conv4x4(in_channels, out_channels)
        self.attention = AsymmetricGaussian(*REVERSE_INIT)

    def forward(self, mask):
        mask_features = self.mask_conv(mask)
        return self.attention(mask_features), mask_update(mask_features)


class ReverseAttention(nn.Layer):
    """Decoder layer: ``LeakyReLU([skip, convT(F)] * [forward map, reverse map])``."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = conv4x4(in_channels, out_channels, transpose=True)

    def forward(self, skip, x, maps):
        # encoder half first, matching the [forward, reverse] order of the maps
        return leaky_relu(paddle.concat([skip, self.conv(x)], axis=1) * maps)


class Generator(nn.Layer):
    """The 14-layer LBAM generator (section 2.3 of the spec) with width ``cnum``."""

    def __init__(self, cnum=64):
        super().__init__()
        w = widths(cnum, 7)  # [N, w[i], H / 2^(i+1), W / 2^(i+1)] after ec(i+1)
        self.ec1 = ForwardAttention(4, w[0], mask_channels=3)
        for i in range(2, 8):
            setattr(self, f'ec{i}', ForwardAttention(w[i - 2], w[i - 1]))
        for i, (cin, cout) in enumerate(zip([3] + w[:5], w[:6]), start=1):
            setattr(self, f'reverse_conv{i}', ReverseMaskConv(cin, cout))
        self.dc1 = ReverseAttention(w[6], w[5])
        for i in range(2, 7):  # dc_i: concat of dc_{i-1}'s two halves -> width of ec_{7-i}
            setattr(self, f'dc{i}', ReverseAttention(2 * w[7 - i], w[6 - i]))
        # torch computes a transposed conv's fan-in from dim 1 of (in, out, k, k): 3 * 16
        self.dc7 = conv4x4(2 * w[0], 3, transpose=True, init=(torch_init(3 * 16)[0], False))

    def forward(self, image, valid):
        """image [N,3,H,W] in [-1,1]; valid [N,1,H,W], 1 = known. Returns [N,3,H,W] in (-1,1)."""
        valid3 = valid.expand([-1, 3, -1, -1])
        x, mask = paddle.concat([image * valid, valid], axis=1), valid3
        skips, forward_maps = [], []
        for i in range(1, 8):
            x, mask, skip, attention = getattr(self, f'ec{i}')(x, mask)
            skips.append(skip)
            forward_maps.append(attention)
        reverse_maps, mask = [], 1.0 - valid3
        for i in range(1, 7):
            attention, mask = getattr(self, f'reverse_conv{i}')(mask)
            reverse_maps.append(attention)
        for i in range(1, 7):  # dc1 pairs with level 6, ..., dc6 with level 1
            level = 6 - i
            maps = paddle.concat([forward_maps[level], reverse_maps[level]], axis=1)
            x = getattr(self, f'dc{i}')(skips[level], x, maps)
        return paddle.tanh(self.dc7(x))  # official (tanh + 1) / 2 in [0, 1] = tanh in [-1, 1]


class Column(nn.Layer):
    """One critic column: 4x4/s2 convs (bias), BN after all but the first, LeakyReLU 0.2."""

    def __init__(self, channels):
        super().__init__()
        for i, (cin, cout) in enumerate(zip([3] + channels[:-1], channels), start=1):
            setattr(self, f'conv{i}', conv4x4(cin, cout, init=torch_init(cin * 16)))
            if i > 1:
                setattr(self, f'bn{i}', nn.BatchNorm2D(cout, momentum=0.9, epsilon=1e-5))
        self.depth = len(channels)

    def forward(self, x):
        for i in range(1, self.depth + 1):
            x = getattr(self, f'conv{i}')(x)
            if i > 1:
                x = getattr(self, f'bn{i}')(x)
            x = F.leaky_relu(x, 0.2)
        return x


class DoubleColumnCritic(nn.Layer):
    """``DiscriminatorDoubleColumn``: a column on the known region, one on the hole, fused by a
    4x4 valid conv and a Sigmoid. Only conv, BN, LeakyReLU, concat, sigmoid and reshape: all
    have the double backward the gradient penalty needs."""

    def __init__(self, cnum=64, layers=6):
        super().__init__()
        channels = widths(cnum, layers)
        self.global_column = Column(channels)
        self.local_column = Column(channels)
        weight_attr, bias_attr = torch_init(2 * channels[-1] * 16)
        self.fusion = nn.Conv2D(2 * channels[-1], 1, 4, weight_attr=weight_attr,
                                bias_attr=bias_attr)
        self.min_size = 4 * 2 ** layers

    def forward(self, image, valid):
        """image [N,3,H,W] in [0, 1]; valid [N,1,H,W]. Returns scores [N, (H/2^L-3)(W/2^L-3)]
        in (0, 1): [N, 1] at H = W = 4 * 2^L (256 for the official 6 layers)."""
        if min(image.shape[2:]) < self.min_size:
            raise ValueError(f'lbam critic: inputs must be at least {self.min_size}x'
                             f'{self.min_size} for d_layers={self.global_column.depth}, '
                             f'got {image.shape[2]}x{image.shape[3]}')
        known = self.global_column(image * valid)
        hole = self.local_column(image * (1.0 - valid))
        score = F.sigmoid(self.fusion(paddle.concat([known, hole], axis=1)))
        return score.reshape([image.shape[0], -1])


def to_unit(x):
    """[-1, 1] -> [0, 1], the official code's image range."""
    return (x + 1.0) * 0.5


class LBAM(InpaintModel):
    """LBAM generator, its two-column WGAN-GP critic, and the official loss."""

    NAME = 'lbam'
    DEFAULTS = DEFAULTS
    TINY = TINY
    SIZE_MULTIPLE = 128  # seven 4x4/s2 levels
    IMAGE_OUTPUTS = ('pred', 'composite')
    VGG_ARCH = 'vgg16'
    MIXING_DRAWS = 1  # the gradient penalty's

    def __init__(self, **cfg):
        super().__init__(**cfg)
        cfg = self.cfg
        for key in ('cnum', 'd_cnum', 'd_layers'):
            if not isinstance(cfg[key], int) or cfg[key] < 1:
                raise ValueError(f'lbam: {key} must be a positive integer, got {cfg[key]!r}')
        min_size = 4 * 2 ** cfg['d_layers']
        if cfg['image_size'] % self.SIZE_MULTIPLE or cfg['image_size'] < min_size:
            raise ValueError(f"lbam: image_size must be a multiple of {self.SIZE_MULTIPLE} and "
                             f"at least {min_size} for d_layers={cfg['d_layers']}, "
                             f"got {cfg['image_size']}")
        self.netG = Generator(cfg['cnum'])
        self.netD = DoubleColumnCritic(cfg['d_cnum'], cfg['d_layers'])
        self.vgg = FeatureNet(cfg['vgg_weights'], self.VGG_ARCH, ('pool1', 'pool2', 'pool3'),
                              normalize='unit')

    def forward(self, image, mask):
        """image [N,3,H,W] in [-1,1], mask [N,1,H,W] (1 = hole), H and W multiples of 128.

        Returns dict: pred (generator output), composite.
        """
        mask = self.check_inputs(image, mask)
        pred = self.netG(image, 1.0 - mask)
        return dict(pred=pred, composite=self.composite(pred, image, mask))

    def g_loss(self, batch, out, phase=None):
        """Official generator loss: 6 hole L1 + valid L1 + 0.01 perceptual + 120 style (each on
        the output and on the composite) + 0.1 * (-mean D(fake)). L1 on [0, 1] images."""
        cfg, image, mask = self.cfg, batch['image'], batch['mask']
        pred, composite = out['pred'], out['composite']
        diff = paddle.abs(pred - image) * 0.5  # |pred01 - image01|
        hole = (diff * mask).mean()
        valid = (diff * (1.0 - mask)).mean()
        loss = cfg['hole_alpha'] * hole + cfg['valid_alpha'] * valid
        logs = dict(g_hole=hole, g_valid=valid)
        n = image.shape[0]
        if cfg['perceptual_alpha'] or cfg['style_alpha']:
            feats = self.vgg(paddle.concat([pred, composite]))  # one pass for both
            f_pred, f_comp = ([f[k * n:(k + 1) * n] for f in feats] for k in range(2))
            with paddle.no_grad():
                f_gt = self.vgg(image)
            perceptual = perceptual_l1(f_pred, f_gt) + perceptual_l1(f_comp, f_gt)
            style = style_l1(f_pred, f_gt) + style_l1(f_comp, f_gt)
            loss = loss + cfg['perceptual_alpha'] * perceptual + cfg['style_alpha'] * style
            logs.update(g_perceptual=perceptual, g_style=style)
        if cfg['gan_alpha']:
            valid_map = (1.0 - mask).expand([n, 1] + list(mask.shape[2:]))
            adv = wgan_g(self.netD(to_unit(pred), valid_map))
            loss = loss + cfg['gan_alpha'] * adv
            logs['g_adv'] = adv
        logs['g'] = loss
        return loss, {k: v.detach() for k, v in logs.items()}

    def d_loss(self, batch, out, phase=None):
        """WGAN-GP critic loss ``mean D(fake) - mean D(real) + gp_lambda * GP`` on the raw
        output (detached, so no gradient reaches netG), all in [0, 1] units."""
        real, fake, mask = to_unit(batch['image']), to_unit(out['pred'].detach()), batch['mask']
        valid = (1.0 - mask).expand([real.shape[0], 1] + list(mask.shape[2:]))
        d_real, d_fake = self.netD(real, valid), self.netD(fake, valid)
        wgan = wgan_d(d_real, d_fake)
        gp = gradient_penalty(lambda x: self.netD(x, valid), real, fake,
                              self.mixing_weights(batch, 0))
        loss = wgan + self.cfg['gp_lambda'] * gp
        return loss, {'d_real': d_real.mean().detach(), 'd_fake': d_fake.mean().detach(),
                      'd_gp': gp.detach(), 'd': loss.detach()}
