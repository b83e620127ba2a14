"""AOT-GAN: Aggregated Contextual Transformations for High-Resolution Image Inpainting.

Zeng, Fu, Chao, Guo (IEEE TVCG 2022), arXiv:2104.01431. Official code (PyTorch):
https://github.com/researchmm/AOT-GAN-for-Inpainting, commit 2cd1afd (``src/model/aotgan.py``,
``src/loss/loss.py``, ``src/trainer/trainer.py``); PaddleGAN's port (commit 094a2eb) has the
same generator; both sets of weights convert with weights/convert/aotgan.py.

Generator (15,200,835 parameters): the hole is filled with +1 (white) and the mask appended
(4 channels); reflect-padded 7x7 conv, two 4x4 stride-2 convs (64-128-256 channels, ReLU), eight
AOT blocks at 1/4 resolution, then two [bilinear x2 (aligned corners), 3x3 conv, ReLU] stages
and a 3x3 conv to RGB with tanh. An AOT block splits 256 channels into four reflect-padded 3x3
branches dilated 1, 2, 4, 8 (64 channels each, ReLU), fuses their concatenation with a 3x3 conv
and mixes it into the input through a spatial gate (Eq. 2): ``x * (1 - g) + fused * g``.

SM-PatchGAN critic (2,763,777 parameters): four spectral-normalised 4x4 convs without bias
(stride 2, 2, 2, 1; LeakyReLU 0.2) and a plain 4x4 conv to one channel: a [N, 1, H/8-2, W/8-2]
map, bilinearly resized to the image size. As in the official code the critic predicts where the
image was synthesised: its target is 0 on real images and the Gaussian-blurred hole mask (71x71,
sigma 10, zero padding) on composites, with least-squares (MSE) losses.

Generator loss (option.py): ``l1 |pred - image| + 0.1 perceptual + 250 style + 0.01 adversarial``
on the raw prediction; perceptual L1 on VGG19 relu1_1..relu5_1, style L1 on Gram matrices of
relu2_2, relu3_4, relu4_4, relu5_2 (models.losses), VGG fed ImageNet-normalised (x + 1) / 2 as
the official code does.

Choices and deviations:

- Generator adversarial term. The official code trains the critic with 0 = real, 1 = hole, but
  asks the generator for ``mean (D(composite) - 1)^2`` over the whole map, i.e. to look *more*
  synthesised (its ``* mask / mean(mask)`` weighting is applied after MSELoss has already
  averaged, so it does nothing; issue #2). We use the paper's generator term (Eq. 7) in the
  critic's labels: ``mean(D(composite)^2 * m) / mean(m)``, the hole asked to look real.
  ``official_g_adv: true`` restores the official term (tested against the reference).
- Critic and generator are stepped separately, the critic first on detached composites, then
  the generator with the critic frozen (train.py), each on its own batch. The official trainer
  and PaddleGAN back-propagate the generator's adversarial loss into the critic's gradients as
  well and step both from one batch; here the generator loss leaves no gradient on the critic
  (tests/test_aotgan.py checks this).
- Spectral norm: one power iteration per training forward of the critic (Paddle's
  ``spectral_norm`` has torch's semantics, checked against it): two per iteration here (critic
  step with real and fake in one batch, generator step), three in the official trainer.
- Upsampling by ``ops.resize_bilinear_align_corners`` (gathers, no ``F.interpolate``) so the
  generator exports to oneDNN inference and ONNX; same function as torch's to float rounding.
- Data: the official code trains on the NVIDIA irregular mask files (random flip and rotation
  0-45 degrees) with RandomResizedCrop(512), flips and ColorJitter(0.05). Our default masks are
  generated irregular strokes and blobs (``mask_type: irregular``, hole ratio 0.01-0.6); use
  ``--mask_type file --mask_dir`` for the NVIDIA set. train.py's random crops and flips, no
  colour jitter. PaddleGAN deviates from the official recipe with perceptual weight 1 and a
  hidden x4 generator learning rate; we keep the official 0.1 and 1e-4.
- Inputs must be multiples of 4 and at least 36 pixels (reflect padding of the rate-8 branch
  needs feature maps larger than 8 at 1/4 resolution).
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, Normal

from models.base import InpaintModel
from models.losses import perceptual_l1, style_l1
from models.ops import gaussian_blur, gaussian_kernel1d, resize_bilinear_align_corners
from models.features import FeatureNet

DEFAULTS = dict(
    image_size=512,          # option.py --image_size (RandomResizedCrop 512)
    cnum=64,                 # encoder widths 64, 128, 256 (AOT blocks at 4 * cnum)
    block_num=8,             # --block_num
    rates=[1, 2, 4, 8],      # --rates 1+2+4+8: dilations of the AOT branches
    d_cnum=64,               # critic widths 64, 128, 256, 512
    mask_type='irregular',   # --mask_type pconv (NVIDIA irregular mask files); see docstring
    l1_alpha=1.0,            # --rec_loss 1*L1
    perceptual_alpha=0.1,    # --rec_loss 0.1*Perceptual
    style_alpha=250.0,       # --rec_loss 250*Style
    gan_alpha=0.01,          # --adv_weight
    blur_ksize=71,           # smgan(ksize=71): Gaussian blur of the critic's fake target
    blur_sigma=10.0,         # gaussian_blur(..., (10, 10))
    official_g_adv=False,    # True: the official generator term mean (D - 1)^2 (docstring)
    vgg_weights='checkpoints/vgg19-dcbb9e9d.pth',  # torchvision ImageNet VGG19 (models/features.py)
    lr=1e-4,                 # --lrg and --lrd
    beta1=0.5,               # --beta1
    beta2=0.999,             # --beta2
    batch_size=8,            # --batch_size
    max_iters=1_000_000,     # --iterations
)

TINY = dict(image_size=64, cnum=8, d_cnum=8, block_num=2, batch_size=2, max_iters=2)

PERCEPTUAL_LAYERS = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1')
STYLE_LAYERS = ('relu2_2', 'relu3_4', 'relu4_4', 'relu5_2')


def _init():
    """The official init_weights: N(0, 0.02) conv weights, zero biases."""
    return ParamAttr(initializer=Normal(0.0, 0.02)), ParamAttr(initializer=Constant(0.0))


def conv(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
         padding_mode='zeros', bias=True):
    weight_attr, bias_attr = _init()
    return nn.Conv2D(in_channels, out_channels, kernel_size, stride, padding, dilation,
                     padding_mode=padding_mode, weight_attr=weight_attr,
                     bias_attr=bias_attr if bias else False)


def gate_norm(x):
    """The gate's normalisation (official ``my_layer_norm``): ``5 (2 (x - mu) / sigma - 1)``.

    Per sample and channel over H, W, with the unbiased standard deviation (+1e-9).
    """
    centered = x - x.mean(axis=[2, 3], keepdim=True)
    count = paddle.numel(x[0, 0]).astype(x.dtype)  # H*W, also when traced with dynamic sizes
    std = paddle.sqrt(centered.square().sum(axis=[2, 3], keepdim=True) / (count - 1.0)) + 1e-9
    return 5.0 * (2.0 * centered / std - 1.0)


class AOTBlock(nn.Layer):
    """Aggregated contextual transformations (Sec. 3.2): split, transform, aggregate, gate."""

    def __init__(self, dim=256, rates=(1, 2, 4, 8)):
        super().__init__()
        self.rates = list(rates)
        for i, rate in enumerate(self.rates):  # reflect-padded dilated 3x3 branches
            setattr(self, f'block{i:02d}', conv(dim, dim // len(self.rates), 3, padding=rate,
                                                dilation=rate, padding_mode='reflect'))
        self.fuse = conv(dim, dim, 3, padding=1, padding_mode='reflect')
        self.gate = conv(dim, dim, 3, padding=1, padding_mode='reflect')

    def forward(self, x):
        branches = [F.relu(getattr(self, f'block{i:02d}')(x)) for i in range(len(self.rates))]
        fused = self.fuse(paddle.concat(branches, axis=1))
        g = F.sigmoid(gate_norm(self.gate(x)))  # Eq. 2: spatially varying gate
        return x * (1.0 - g) + fused * g


def upsample2x(x):
    return resize_bilinear_align_corners(x, [x.shape[2] * 2, x.shape[3] * 2])


class InpaintGenerator(nn.Layer):
    """Encoder, AOT blocks at 1/4 resolution, decoder: [N,3,H,W] + mask -> [N,3,H,W] in [-1,1]."""

    def __init__(self, cnum=64, block_num=8, rates=(1, 2, 4, 8)):
        super().__init__()
        c = cnum
        self.enc1 = conv(4, c, 7, padding=3, padding_mode='reflect')
        self.enc2 = conv(c, 2 * c, 4, stride=2, padding=1)
        self.enc3 = conv(2 * c, 4 * c, 4, stride=2, padding=1)
        self.middle = nn.Sequential(*[AOTBlock(4 * c, rates) for _ in range(block_num)])
        self.dec1 = conv(4 * c, 2 * c, 3, padding=1)
        self.dec2 = conv(2 * c, c, 3, padding=1)
        self.dec3 = conv(c, 3, 3, padding=1)

    def forward(self, image, mask):
        """image [N,3,H,W] in [-1,1]; mask [N,1,H,W], 1 = hole (filled with +1, white)."""
        x = paddle.concat([image * (1.0 - mask) + mask, mask], axis=1)
        x = F.relu(self.enc1(x))
        x = F.relu(self.enc2(x))
        x = F.relu(self.enc3(x))  # [N, 4c, H/4, W/4]
        x = self.middle(x)
        x = F.relu(self.dec1(upsample2x(x)))
        x = F.relu(self.dec2(upsample2x(x)))
        return paddle.tanh(self.dec3(x))


class SMPatchGAN(nn.Layer):
    """Soft-mask PatchGAN critic: [N,3,H,W] -> [N,1,H/8-2,W/8-2] per-patch "synthesised" scores."""

    def __init__(self, cnum=64):
        super().__init__()
        widths = [3, cnum, 2 * cnum, 4 * cnum, 8 * cnum]
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            layer = conv(cin, cout, 4, stride=2 if i < 4 else 1, padding=1, bias=False)
            setattr(self, f'conv{i}', nn.utils.spectral_norm(layer, n_power_iterations=1, dim=0))
        self.conv5 = conv(8 * cnum, 1, 4, padding=1)

    def forward(self, x):
        for i in range(1, 5):
            x = F.leaky_relu(getattr(self, f'conv{i}')(x), 0.2)
        return self.conv5(x)


class AOTGAN(InpaintModel):
    """AOT-GAN generator plus the SM-PatchGAN critic and VGG19 perceptual/style losses."""

    NAME = 'aotgan'
    DEFAULTS = DEFAULTS
    TINY = TINY
    SIZE_MULTIPLE = 4  # two stride-2 convs, two x2 upsamplings
    VGG_ARCH = 'vgg19'

    def __init__(self, **cfg):
        super().__init__(**cfg)
        cfg = self.cfg
        rates = cfg['rates']
        bad = [r for r in rates if not isinstance(r, int) or r < 1]
        if not rates or bad or (4 * cfg['cnum']) % len(rates):
            raise ValueError(f"aotgan: rates must be positive integers splitting 4 * cnum "
                             f"= {4 * cfg['cnum']} channels evenly, got {rates}")
        gaussian_kernel1d(cfg['blur_ksize'], cfg['blur_sigma'])  # fails early on bad values
        self.netG = InpaintGenerator(cfg['cnum'], cfg['block_num'], rates)
        self.netD = SMPatchGAN(cfg['d_cnum'])
        self.vgg = FeatureNet(cfg['vgg_weights'], self.VGG_ARCH,
                              PERCEPTUAL_LAYERS + STYLE_LAYERS, normalize='imagenet')
        self.min_size = 4 * (max(rates) + 1)

    @paddle.jit.not_to_static  # static sizes only; -1 marks a dynamic size while exporting
    def check_inputs(self, image, mask):
        mask = super().check_inputs(image, mask)
        sizes = [s for s in image.shape[2:] if s > 0]
        if sizes and min(sizes) < self.min_size:
            raise ValueError(f'image: AOT-GAN needs height and width of at least '
                             f'{self.min_size}, got {image.shape[2]}x{image.shape[3]}')
        return mask

    def forward(self, image, mask):
        """image [N,3,H,W] in [-1,1], mask [N,1,H,W] (1 = hole); H, W multiples of 4, >= 36.

        Returns dict: pred (raw generator output), composite.
        """
        mask = self.check_inputs(image, mask)
        pred = self.netG(image, mask)
        return dict(pred=pred, composite=self.composite(pred, image, mask))

    def critic_map(self, x):
        """Critic scores resized to the image (official): [N,3,H,W] -> [N,1,H,W]."""
        return resize_bilinear_align_corners(self.netD(x), x.shape[2:])

    def adversarial_g(self, composite, mask):
        """The generator's SM-PatchGAN term (see the module docstring for the two forms)."""
        scores = self.critic_map(composite)
        if self.cfg['official_g_adv']:
            return ((scores - 1.0) ** 2).mean()
        mask = mask.expand_as(scores)  # Eq. 7 in the critic's labels: the hole should score 0
        return (scores ** 2 * mask).mean() / paddle.clip(mask.mean(), min=1e-8)

    def g_loss(self, batch, out, phase=None):
        """``l1 + perceptual + style + adversarial``, each weighted by its config key.

        Terms weighted 0 are not computed (logged as 0): without the VGG and adversarial
        terms training needs neither the VGG file nor critic passes.
        """
        image, pred, cfg = batch['image'], out['pred'], self.cfg
        zero = paddle.zeros([])
        l1 = paddle.abs(pred - image).mean()
        perceptual, style, adv = zero, zero, zero
        if cfg['perceptual_alpha'] or cfg['style_alpha']:
            feats_pred = self.vgg(pred)
            with paddle.no_grad():
                feats_real = self.vgg(image)
            n = len(PERCEPTUAL_LAYERS)
            perceptual = perceptual_l1(feats_pred[:n], feats_real[:n])
            style = style_l1(feats_pred[n:], feats_real[n:])
        if cfg['gan_alpha']:
            adv = self.adversarial_g(out['composite'], batch['mask'])
        loss = (cfg['l1_alpha'] * l1 + cfg['perceptual_alpha'] * perceptual
                + cfg['style_alpha'] * style + cfg['gan_alpha'] * adv)
        return loss, {'g_l1': l1.detach(), 'g_perceptual': perceptual.detach(),
                      'g_style': style.detach(), 'g_adv': adv.detach(), 'g': loss.detach()}

    def d_loss(self, batch, out, phase=None):
        """SM-PatchGAN: ``mean (D(real))^2 + mean (D(fake) - blur(mask))^2``, fakes detached."""
        real, fake = batch['image'], out['composite'].detach()
        n = real.shape[0]
        scores = self.critic_map(paddle.concat([real, fake]))
        mask = batch['mask'].expand([n, 1] + list(real.shape[2:]))
        target = gaussian_blur(mask, self.cfg['blur_ksize'], self.cfg['blur_sigma'])
        d_real = (scores[:n] ** 2).mean()
        d_fake = ((scores[n:] - target) ** 2).mean()
        loss = d_real + d_fake
        return loss, {'d_real': d_real.detach(), 'd_fake': d_fake.detach(), 'd': loss.detach()}

