"""LaMa: Resolution-robust Large Mask Inpainting with Fourier Convolutions.

Suvorov, Logacheva, Mashikhin, Remizova, Ashukha, Silvestrov, Kong, Goka, Park, Lempitsky
(WACV 2022), arXiv:2109.07161. Official code (PyTorch): https://github.com/advimman/lama, commit
786f593 (``saicinpainting/training/modules/ffc.py``, ``.../pix2pixhd.py``,
``.../losses/adversarial.py``, ``.../losses/feature_matching.py``, ``.../losses/perceptual.py``,
``.../trainers/default.py``, ``configs/training/lama-fourier.yaml``, ``big-lama.yaml``); the
published weights convert with weights/convert/lama.py.

Generator ``FFCResNetGenerator`` (official layout, ngf 64): the input ``cat(x * (1 - m), m)`` with
``x`` in [0, 1]; a reflect-padded 7x7 conv to 64 channels, three 3x3 stride-2 convs (128, 256,
512 channels; reflect padding, the last one splitting its output into 128 local and 384 global
channels), ``n_blocks`` residual blocks of two fast Fourier convolutions each at 1/8 resolution
(``n_blocks`` 9: LaMa-Fourier, 27,048,835 parameters; 18: Big-LaMa, 50,975,875), the local and
global channels concatenated, three 3x3 stride-2 transposed convs (256, 128, 64), a reflect-padded
7x7 conv to RGB and a sigmoid. BatchNorm and ReLU after every conv; FFC convs have no bias.

A fast Fourier convolution (Chi, Jiang, Mu, NeurIPS 2020) splits its channels into a local part
(ordinary 3x3 convs) and a global part (75 %): ``y_l = l2l(x_l) + g2l(x_g)``,
``y_g = l2g(x_l) + g2g(x_g)`` with ``g2g`` the spectral transform: 1x1 conv to half the width,
BN, ReLU, then ``conv2(h + FourierUnit(h))``. The Fourier unit takes the real 2-D FFT over H and
W (orthonormal), stacks real and imaginary parts as channels, interleaved per channel
(re_0, im_0, re_1, ...: the official order, so published 1x1 weights load as they are), applies
a 1x1 conv, BN and ReLU in the frequency domain and transforms back. Every output pixel thus sees
the whole image from the first block on, which is why LaMa fills large holes and generalises to
photos far larger than its 256 px training crops.

Critic ``NLayerDiscriminator`` (pix2pixHD PatchGAN, 4 layers, 6,962,369 parameters): 4x4 convs
with padding 2 (stride 2, 2, 2, 2, then 1, 1; 64-128-256-512-512-1 channels), BatchNorm and
LeakyReLU 0.2 after all but the first and the last; it sees RGB in [0, 1] and returns its logit
map (19x19 for 256 px) and the five activations before it (for feature matching).

Losses (big-lama.yaml = lama-fourier.yaml), all on [0, 1] images as the official code computes
them, so the values equal the official ones:

- generator: ``10 masked_l1 + 10 adversarial + 100 feature matching + 30 HRF-PL``; masked L1 on
  the raw prediction with weight 10 on known pixels and 0 in the hole; the non-saturating
  adversarial term ``mean softplus(-D(pred))`` over the whole map; feature matching = the mean
  over the five critic activations of MSE(D(pred), D(image)); HRF-PL = the sum over the four
  stages of the frozen ADE20k ResNet50-dilated encoder (models.features, ImageNet-normalised) of
  their MSE (the paper says mean; the code sums, as here);
- critic: ``softplus(-D(real))`` plus, on the prediction, ``softplus(D)`` in the hole and
  ``softplus(-D)`` on the known pixels (``mask_as_fake_target``: only the synthesised region is
  labelled fake; the mask is resized to the logit map by nearest neighbour), plus R1
  ``0.001 mean_n ||grad_x D(x)||^2`` on the real images, every step. The critic sees the raw
  prediction, not the composite (``image_to_discriminator: predicted_image``). Real and fake go
  through the critic in separate calls: BatchNorm's batch statistics are per call, as there.
- R1 differentiates the critic twice. Its ops (conv2d, batch_norm in training mode, leaky_relu,
  softplus) all have a double backward in Paddle; ``flatten`` does not, so the gradient is
  reduced by ``reshape``.

Choices and deviations:

- Our interface: image in [-1, 1], mask 1 = hole; the model converts at its boundary and
  ``pred`` = 2 sigmoid - 1. LaMa's mask convention (1 = hole) is ours.
- Step order: the official Lightning module steps the generator first and then the critic on
  the same batch; here the critic steps first (train.py's loop for every model), each on its own
  batch. Adam G 1e-3, D 1e-4 (torch betas), gradient norm clipped to 1 for both
  (``gradient_clip_val: 1``).
- Inference: any size that is a multiple of 8 (the official predict pads to 8). An exported graph
  with dynamic sizes cannot pass the FFT size to ``irfftn`` (Paddle's static graph rejects a
  size computed from the input), so there the 1/8-resolution width must be even: exported
  graphs take multiples of 16 (``EXPORT_SIZE_MULTIPLE``; the Inpainter pads for you). The
  generator splits into ``encode`` / ``decode`` for LaMa's high-resolution refinement
  (inference/refine.py, ``--strategy refine``).
- AMP: no float16 FFT kernel exists on CPU (and half-precision FFT is restricted on GPUs), so
  the Fourier unit always computes in float32.
- Masks: ``mask_type: lama`` is the official training mix of wide strokes and boxes; the
  evaluation sets are ``lama_thin`` / ``lama_medium`` / ``lama_thick`` (data.masks), all in
  pixels of 256 crops as the official configs; ``mask_scale`` draws them on a canvas of
  image_size / mask_scale (the quick start's 64 px crops: 0.25). Training
  photos: random crops and flips; the official albumentations "distortions" (perspective,
  affine, optical distortion, CLAHE, colour jitter) are not applied.
- The HRF-PL file (``resnet_pl_weights``) is only read when ``resnet_pl_alpha`` > 0; the quick
  start sets it to 0 because nothing can be downloaded on a fresh machine.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.base import InpaintModel
from models.features import FeatureNet

DEFAULTS = dict(
    image_size=256,          # data: out_size 256 crops
    ngf=64,                  # generator: ngf
    n_downsampling=3,        # generator: n_downsampling
    n_blocks=9,              # generator: n_blocks (ffc_resnet_075.yaml 9; big-lama.yaml 18)
    max_features=1024,       # FFCResNetGenerator max_features
    ratio=0.75,              # resnet_conv_kwargs ratio_gin = ratio_gout (global channels)
    d_ndf=64,                # discriminator: ndf
    d_layers=4,              # discriminator: n_layers
    mask_type='lama',        # data: mask_gen_kwargs (MixedMaskGenerator: strokes + boxes)
    l1_known=10.0,           # losses.l1.weight_known
    l1_missing=0.0,          # losses.l1.weight_missing
    adv_alpha=10.0,          # losses.adversarial.weight
    r1_gamma=0.001,          # losses.adversarial.gp_coef
    fm_alpha=100.0,          # losses.feature_matching.weight
    resnet_pl_alpha=30.0,    # losses.resnet_pl.weight
    resnet_pl_weights='checkpoints/ade20k/ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth',
    lr=1e-3,                 # optimizers.generator.lr
    beta1=0.9,               # Adam defaults (torch)
    beta2=0.999,
    d_lr=1e-4,               # optimizers.discriminator.lr
    grad_clip=1.0,           # trainer.kwargs.gradient_clip_val (global norm, per optimizer)
    batch_size=10,           # data.batch_size per GPU
    max_iters=1_000_000,     # 40 epochs x 25,000 batches
)

TINY = dict(image_size=64, ngf=8, n_blocks=1, d_ndf=8, batch_size=2, max_iters=2)

PL_STAGES = ('layer1', 'layer2', 'layer3', 'layer4')


def to_unit(x):
    """[-1, 1] -> [0, 1], the official code's image range."""
    return (x + 1.0) * 0.5


def batch_norm(channels):
    return nn.BatchNorm2D(channels)  # momentum 0.9, eps 1e-5: torch's defaults in Paddle terms


@paddle.jit.not_to_static
def fft_size(x):
    """(H, W) of ``x`` when they are known Python ints, else None (dynamic sizes of an exported
    graph, where ``irfftn`` then infers W = 2 (W_f - 1): exact for even W)."""
    h, w = x.shape[-2:]
    return [h, w] if h > 0 and w > 0 else None


class FourierUnit(nn.Layer):
    """Real FFT over H, W -> 1x1 conv + BN + ReLU on interleaved (re, im) channels -> inverse."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2D(2 * channels, 2 * channels, 1, bias_attr=False)
        self.bn = batch_norm(2 * channels)

    def forward(self, x):
        dtype, size = x.dtype, fft_size(x)
        work = paddle.float32 if dtype in (paddle.float16, paddle.bfloat16) else dtype
        spec = paddle.fft.rfftn(x.astype(work), axes=(-2, -1), norm='ortho')  # [N,C,H,W//2+1]
        y = paddle.stack([paddle.real(spec), paddle.imag(spec)], axis=2).flatten(1, 2)
        y = F.relu(self.bn(self.conv(y))).astype(work)  # interleaved re, im: [N, 2C, H, W//2+1]
        spec = paddle.complex(y[:, 0::2], y[:, 1::2])
        out = paddle.fft.irfftn(spec, s=size, axes=(-2, -1), norm='ortho')
        return out.astype(dtype)


class SpectralTransform(nn.Layer):
    """The global-to-global branch: 1x1 conv to half width, BN, ReLU, h + FU(h), 1x1 conv."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2D(cin, cout // 2, 1, bias_attr=False)
        self.bn1 = batch_norm(cout // 2)
        self.fu = FourierUnit(cout // 2)
        self.conv2 = nn.Conv2D(cout // 2, cout, 1, bias_attr=False)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return self.conv2(x + self.fu(x))


class FFC(nn.Layer):
    """Fast Fourier convolution + BN + activation per branch (official ``FFC_BN_ACT``).

    ``ratio_in``/``ratio_out`` are the global fractions of the input/output channels; a branch
    whose input or output has no channels does not exist (None), nor does its BN.
    """

    def __init__(self, cin, cout, kernel, ratio_in, ratio_out, stride=1, padding=0,
                 activation=F.relu):
        super().__init__()
        gin, gout = int(cin * ratio_in), int(cout * ratio_out)
        lin, lout = cin - gin, cout - gout
        if gin and stride != 1:
            raise ValueError('lama: a strided FFC with global inputs is not part of LaMa')

        def conv(a, b):
            return nn.Conv2D(a, b, kernel, stride, padding, padding_mode='reflect',
                             bias_attr=False) if a and b else None

        self.convl2l, self.convl2g, self.convg2l = conv(lin, lout), conv(lin, gout), conv(gin, lout)
        self.convg2g = SpectralTransform(gin, gout) if gin and gout else None
        self.bn_l = batch_norm(lout) if lout else None
        self.bn_g = batch_norm(gout) if gout else None
        self.activation = activation

    @staticmethod
    def _sum(*parts):
        parts = [p for p in parts if p is not None]
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def forward(self, x_l, x_g=None):
        def apply(layer, x):
            return None if layer is None or x is None else layer(x)

        y_l = y_g = None
        if self.bn_l is not None:
            y_l = self.activation(self.bn_l(self._sum(apply(self.convl2l, x_l),
                                                      apply(self.convg2l, x_g))))
        if self.bn_g is not None:
            y_g = self.activation(self.bn_g(self._sum(apply(self.convl2g, x_l),
                                                      apply(self.convg2g, x_g))))
        return y_l, y_g


class FFCResBlock(nn.Layer):
    """x + FFC(FFC(x)) on both branches (no activation after the sum)."""

    def __init__(self, dim, ratio):
        super().__init__()
        self.conv1 = FFC(dim, dim, 3, ratio, ratio, padding=1)
        self.conv2 = FFC(dim, dim, 3, ratio, ratio, padding=1)

    def forward(self, x_l, x_g):
        y_l, y_g = self.conv2(*self.conv1(x_l, x_g))
        return x_l + y_l, (None if x_g is None else x_g + y_g)


class UpBlock(nn.Layer):
    """3x3 stride-2 transposed conv (output padding 1: exactly x2), BN, ReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2DTranspose(cin, cout, 3, stride=2, padding=1, output_padding=1)
        self.bn = batch_norm(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


TILE_BYTES = 128 * 2 ** 20  # im2col buffer per tile of a full-resolution conv at inference


@paddle.jit.not_to_static
def tile_rows(x, per_row_bytes, training):
    """Input rows per tile that keep a conv's im2col buffer under TILE_BYTES (even), or None:
    no tiling (training: BatchNorm needs the whole batch; dynamic sizes; small inputs)."""
    h = x.shape[2]
    if training or h <= 0 or x.shape[3] <= 0:
        return None
    rows = max(2, int(TILE_BYTES // max(per_row_bytes, 1)) // 2 * 2)
    return rows if rows < h else None


def in_row_tiles(fn, x, rows, halo, scale=1.0):
    """``fn(x)`` computed on horizontal slabs of ``rows`` input rows (plus ``halo`` rows of real
    context above and below) and stitched: exact for row-local ``fn`` (convs, BN in eval mode,
    activations) whose receptive radius in input rows is at most ``halo``; ``scale`` = output
    rows per input row (0.5 for a stride-2 conv, 2 for LaMa's transposed convs). Paddle's CPU
    convs materialise im2col buffers of C_in k^2 H_out W_out values (39 GB for the last 7x7 conv
    at 2048x1536); tiles bound them. ``rows`` None: ``fn(x)``."""
    h = x.shape[2]
    if rows is None:
        return fn(x)
    out, parts = None, []
    for start in range(0, h, rows):
        end = min(h, start + rows)
        top, bottom = max(0, start - halo), min(h, end + halo)
        y = fn(x[:, :, top:bottom])
        offset, count = int((start - top) * scale), int((end - start) * scale)
        y = y[:, :, offset:offset + count]
        if not y.stop_gradient:  # differentiated (the refinement): concat, whose backward
            parts.append(y)      # is a split (in-place writes would save a copy per tile)
            continue
        if out is None:  # no gradient: filled in place, no list of parts beside their concat
            out = paddle.empty([y.shape[0], y.shape[1], int(h * scale), y.shape[3]], y.dtype)
        out[:, :, int(start * scale):int(start * scale) + count] = y
    return paddle.concat(parts, axis=2) if parts else out


class FFCResNetGenerator(nn.Layer):
    """[N, 4, H, W] (masked image in [0, 1], mask) -> [N, 3, H, W] in [0, 1]; H, W multiples of 8."""

    def __init__(self, ngf=64, n_downsampling=3, n_blocks=9, max_features=1024, ratio=0.75):
        super().__init__()
        width = [min(max_features, ngf * 2 ** i) for i in range(n_downsampling + 1)]
        self.head = FFC(4, ngf, 7, 0, 0)
        self.down = nn.LayerList([
            FFC(width[i], width[i + 1], 3, 0, ratio if i == n_downsampling - 1 else 0,
                stride=2, padding=1) for i in range(n_downsampling)])
        self.blocks = nn.LayerList([FFCResBlock(width[-1], ratio) for _ in range(n_blocks)])
        self.up = nn.LayerList([
            UpBlock(min(max_features, ngf * 2 ** i), min(max_features, ngf * 2 ** i // 2))
            for i in range(n_downsampling, 0, -1)])
        self.out = nn.Conv2D(ngf, 3, 7)

    def _head(self, x):
        return self.head(F.pad(x, [3, 3, 3, 3], mode='reflect'))[0]

    def _out(self, x):
        return F.sigmoid(self.out(F.pad(x, [3, 3, 3, 3], mode='reflect')))

    def encode(self, x):
        """The front: head and downsampling -> (local, global) features at 1/8 (the features
        LaMa's high-resolution refinement optimises). At inference the full-resolution convs
        run in row tiles (``in_row_tiles``; same result, bounded memory)."""
        train = self.training
        x_l = in_row_tiles(self._head, x, tile_rows(x, 4 * 49 * 4 * x.shape[3], train), 3)
        x_g = None
        for layer in self.down:
            if layer.bn_g is None and x_g is None:  # local-only stride-2 convs: tiled
                rows = tile_rows(x_l, 4 * x_l.shape[1] * 9 * x_l.shape[3] // 2, train)
                x_l = in_row_tiles(lambda t, conv=layer: conv(t)[0], x_l, rows, 2, 0.5)
            else:
                x_l, x_g = layer(x_l, x_g)
        return x_l, x_g

    def decode(self, x_l, x_g, checkpoint=False):
        """The rear: FFC blocks, upsampling, output conv and sigmoid -> [N, 3, H, W] in [0, 1].

        ``checkpoint``: when differentiated (the refinement), keep only each block's input and
        recompute its inside in the backward pass (``paddle.distributed.fleet.utils.recompute``,
        exact): the 18 blocks of Big-LaMa otherwise hold about 10 GB of intermediates at 1.8 MP.
        """
        run = lambda fn, *args: fn(*args)  # noqa: E731
        if checkpoint:
            from paddle.distributed.fleet.utils import recompute as run
        for block in self.blocks:
            x_l, x_g = run(block, x_l, x_g) if x_g is not None else block(x_l, x_g)
        x = x_l if x_g is None else paddle.concat([x_l, x_g], axis=1)
        return run(self._upsample, x)

    def _upsample(self, x):
        train = self.training
        for layer in self.up:
            per_row = 4 * 9 * layer.conv.weight.shape[1] * x.shape[3]  # col: C_out k^2 W_in
            x = in_row_tiles(layer, x, tile_rows(x, per_row, train), 1, 2.0)
        return in_row_tiles(self._out, x, tile_rows(x, 4 * x.shape[1] * 49 * x.shape[3], train),
                            3)

    def forward(self, x):
        return self.decode(*self.encode(x))


class NLayerDiscriminator(nn.Layer):
    """pix2pixHD PatchGAN: [N, 3, H, W] in [0, 1] -> (logits [N, 1, h, w], five activations)."""

    def __init__(self, ndf=64, n_layers=4):
        super().__init__()
        self.n_layers = n_layers
        widths = [3] + [min(ndf * 2 ** i, 512) for i in range(n_layers + 1)]
        for i in range(n_layers + 1):
            stride = 2 if i < n_layers else 1
            setattr(self, f'conv{i}', nn.Conv2D(widths[i], widths[i + 1], 4, stride, 2))
            if i > 0:
                setattr(self, f'bn{i}', batch_norm(widths[i + 1]))
        setattr(self, f'conv{n_layers + 1}', nn.Conv2D(widths[-1], 1, 4, 1, 2))

    def forward(self, x):
        features = []
        for i in range(self.n_layers + 1):
            x = getattr(self, f'conv{i}')(x)
            if i > 0:
                x = getattr(self, f'bn{i}')(x)
            x = F.leaky_relu(x, 0.2)
            features.append(x)
        return getattr(self, f'conv{self.n_layers + 1}')(x), features


class LaMa(InpaintModel):
    """LaMa's FFC ResNet generator, the PatchGAN critic and the official losses."""

    NAME = 'lama'
    DEFAULTS = DEFAULTS
    TINY = TINY
    SIZE_MULTIPLE = 8           # three stride-2 levels
    EXPORT_SIZE_MULTIPLE = 16   # even FFT widths at 1/8 for dynamic-size graphs (docstring)
    FULL_RESOLUTION = True      # trained on 256 crops, run on whole photos (the paper's point)

    def __init__(self, **cfg):
        super().__init__(**cfg)
        cfg = self.cfg
        if not 0 <= cfg['ratio'] < 1:
            raise ValueError(f"lama: ratio (global channel fraction) must be in [0, 1), got "
                             f"{cfg['ratio']}")
        self.SIZE_MULTIPLE = 2 ** cfg['n_downsampling']
        self.EXPORT_SIZE_MULTIPLE = 2 * self.SIZE_MULTIPLE
        self.netG = FFCResNetGenerator(cfg['ngf'], cfg['n_downsampling'], cfg['n_blocks'],
                                       cfg['max_features'], cfg['ratio'])
        self.netD = NLayerDiscriminator(cfg['d_ndf'], cfg['d_layers'])
        self.resnet_pl = FeatureNet(cfg['resnet_pl_weights'], 'resnet50dilated', PL_STAGES,
                                    'imagenet', key='resnet_pl_weights', uses=('resnet_pl_alpha',))

    def export_blocker(self):
        """Paddle 3.0 traces rfftn with dynamic sizes into an FFT of n = -1 ("Invalid fft
        n-point (-1)"); 2.6 and 3.3 export it (checked)."""
        if paddle.__version__.startswith('3.0.'):
            return (f'Paddle {paddle.__version__} cannot trace the FFT with dynamic sizes '
                    '("Invalid fft n-point (-1)"); export with Paddle 2.6 or 3.3, or run the '
                    'checkpoint (eager)')
        return None

    def forward(self, image, mask):
        """image [N,3,H,W] in [-1,1], mask [N,1,H,W] (1 = hole); H, W multiples of 8.

        Returns dict: pred (raw generator output, [-1, 1]), composite.
        """
        mask = self.check_inputs(image, mask)
        x = paddle.concat([to_unit(image) * (1.0 - mask), mask], axis=1)
        pred = self.netG(x) * 2.0 - 1.0
        return dict(pred=pred, composite=self.composite(pred, image, mask))

    def g_loss(self, batch, out, phase=None):
        """``l1_known/missing`` masked L1 + adversarial + feature matching + HRF-PL (docstring).

        Logged: each term before its outer weight (``g_l1`` with the known/missing weights
        inside, as the official ``masked_l1_loss``), and ``g`` the weighted sum. Terms weighted
        0 are not computed.
        """
        cfg, mask = self.cfg, batch['mask']
        real, fake = to_unit(batch['image']), to_unit(out['pred'])
        weights = mask * cfg['l1_missing'] + (1.0 - mask) * cfg['l1_known']
        l1 = (weights * paddle.abs(fake - real)).mean()
        zero = paddle.zeros([])
        adv, fm, pl = zero, zero, zero
        if cfg['adv_alpha'] or cfg['fm_alpha']:
            logits, fake_features = self.netD(fake)
            adv = F.softplus(-logits).mean()
            if cfg['fm_alpha']:
                with paddle.no_grad():
                    _, real_features = self.netD(real)
                fm = paddle.stack([((f - r) ** 2).mean() for f, r in
                                   zip(fake_features, real_features)]).mean()
        if cfg['resnet_pl_alpha']:
            with paddle.no_grad():
                target = self.resnet_pl(batch['image'])
            pl = paddle.stack([((p - t) ** 2).mean() for p, t in
                               zip(self.resnet_pl(out['pred']), target)]).sum()
        loss = l1 + cfg['adv_alpha'] * adv + cfg['fm_alpha'] * fm + cfg['resnet_pl_alpha'] * pl
        return loss, {'g_l1': l1.detach(), 'g_adv': adv.detach(), 'g_fm': fm.detach(),
                      'g_pl': pl.detach(), 'g': loss.detach()}

    def d_loss(self, batch, out, phase=None):
        """Non-saturating loss, the hole of the prediction labelled fake, plus R1 on reals."""
        real = to_unit(batch['image']).detach()
        real.stop_gradient = not self.cfg['r1_gamma']
        fake = to_unit(out['pred']).detach()
        real_logits, _ = self.netD(real)
        fake_logits, _ = self.netD(fake)
        mask = batch['mask'].expand([real.shape[0], 1] + list(real.shape[2:]))
        mask = F.interpolate(mask, size=fake_logits.shape[2:], mode='nearest')
        d_real = F.softplus(-real_logits).mean()
        d_fake = (F.softplus(fake_logits) * mask + F.softplus(-fake_logits) * (1.0 - mask)).mean()
        r1 = paddle.zeros([])
        if self.cfg['r1_gamma']:
            (grad,) = paddle.grad(real_logits.sum(), real, create_graph=True)
            r1 = grad.square().reshape([grad.shape[0], -1]).sum(axis=1).mean()
        loss = d_real + d_fake + self.cfg['r1_gamma'] * r1
        return loss, {'d_real': d_real.detach(), 'd_fake': d_fake.detach(),
                      'd_r1': r1.detach(), 'd': loss.detach()}
