"""GLCIC: Globally and Locally Consistent Image Completion (Iizuka, Simo-Serra, Ishikawa,
SIGGRAPH 2017, ACM TOG 36(4):107, doi:10.1145/3072959.3073659; no arXiv version).

Official code: https://github.com/satoshiiizuka/siggraph2017_inpainting (commit 15c5519; Torch7
inference only: ``inpaint.lua`` and .t7 models). Training follows the paper and the most-used
port, https://github.com/otenim/GLCIC-PyTorch (commit 3f9de13), whose layer names we keep
(``conv1``..``conv17``, ``deconv13``, ``bn1``..``bn16``); its weights convert with
weights/convert/glcic.py.

Both networks work in [0, 1] units inside, as both references do (so their weights convert
exactly): the image is mapped from our [-1, 1] to [0, 1], the holes are filled with the training
set's mean colour (a buffer computed by ``prepare_data`` and saved in every checkpoint), and the
sigmoid output is mapped back to [-1, 1]; the discriminators score [0, 1] images.

Where the paper, the official code and otenim disagree:

- Conv -> BN -> ReLU, the official graph's order (otenim: conv -> ReLU -> BN). ``bn_order:
  relu_bn`` switches both networks to otenim's order; its converted weights set it.
- Network input as the official ``inpaint.lua``: the [0, 1] image minus the mean colour, holes 0
  (``input_encoding: centered``). otenim feeds the [0, 1] image with holes set to the mean
  (``filled``, set by its converter); the two differ only through the zero padding at borders.
- The discriminators see the completed image (composite), as in the paper's figure; otenim
  feeds them the raw output, whose unsupervised known region gives fakes away (its issue #20).
  Real and fake local patches come from the same box, the one around the hole.
- Losses as otenim: the MSE is a mean over all pixels (holes only, [0, 1] units); the D loss is
  the mean of the real and fake BCE terms, times alpha in the joint phase (the paper's joint
  objective) and unweighted in the D-only phase. The G loss is MSE + alpha * BCE (otenim halves
  both; with Adadelta the factor hardly matters). D returns logits (stable BCE); sigmoid for
  probabilities.
- Phases as fractions of ``max_iters`` (paper: T_C = 90k, T_D = 10k of T = 500k), so short runs
  keep the proportions. A D-only step and a joint step draw fresh batches (train.py's schedule);
  otenim's joint step reuses one batch for D and G.
- Holes: DeepFill's 'bbox' masks: a box of ``bbox_size`` (the local discriminator's window) shrunk
  by up to ``max_delta / 2`` a side, so 96..128 px holes (even sizes) centred in the 128 window
  (paper: each side in [96, 128], the local patch centred on the hole). No random rescaling of the
  training images (paper: smallest edge in [256, 384] before the 256 crop).
- Batch norm at the paper's batch of 96 cannot be reproduced on small machines: the default
  config keeps 96, the quick start uses less.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, KaimingNormal

from models.base import InpaintModel
from models.deepfill_v1 import crop_patch

DEFAULTS = dict(
    image_size=256,          # Sec. 4: 256x256 crops of Places2
    cnum=64,                 # Table 1: width of conv1 (128 and 256 further down)
    d_cnum=64,               # Table 2: width of each discriminator's first conv (up to 8x)
    d_fc=1024,               # Table 2: each discriminator ends in a 1024-wide FC layer
    local_convs=5,           # Table 2(a): five 5x5/2 convs on the 128x128 patch
    global_convs=6,          # Table 2(b): six on the 256x256 image (otenim arc 'celeba': 5)
    bbox_size=128,           # local discriminator window, the box the hole lies in (Sec. 3.2)
    max_delta=32,            # the hole is the window shrunk by 0..16 px a side: sides 96..128
    margin=0,                # keep the window this far from the image border
    mask_type='bbox',        # Sec. 4: one rectangular hole per image
    gan_alpha=4e-4,          # Sec. 3.3: alpha, weight of the adversarial terms
    phase1_frac=0.18,        # Algorithm 1: T_C = 90,000 of T = 500,000 iterations (MSE only)
    phase2_frac=0.02,        # T_D = 10,000 iterations (discriminators only); the rest is joint
    lr=1.0,                  # Adadelta (Sec. 4) with torch's defaults, as otenim: lr 1.0,
    d_lr=1.0,                #   rho 0.9, eps 1e-6 (Paddle's own defaults: 1e-3, 0.95, 1e-6)
    rho=0.9,
    epsilon=1e-6,
    bn_order='bn_relu',      # official graph: conv -> BN -> ReLU; 'relu_bn' = otenim
    input_encoding='centered',  # official inpaint.lua: image - mean, holes 0; 'filled' = otenim
    batch_size=96,           # Sec. 4 (otenim default 16)
    max_iters=500_000,       # Algorithm 1: T
)

TINY = dict(image_size=64, cnum=8, d_cnum=8, d_fc=32, local_convs=3, global_convs=4,
            bbox_size=32, max_delta=8, batch_size=2, max_iters=2)

BN_ORDERS = ('bn_relu', 'relu_bn')
INPUT_ENCODINGS = ('centered', 'filled')
MEAN_SAMPLES = 500  # images prepare_data averages (evenly spaced over the training set)


def he_init():
    """He-normal weights (std sqrt(2 / fan_in)), zero bias: keeps the signal's scale through the
    16 ReLU layers, so an untrained network in eval mode (BN statistics still 0 and 1) is not a
    constant. The paper does not say; otenim keeps torch's default U(+-1/sqrt(fan_in)), under
    which the eval output of a fresh network is its last bias to ~1e-6."""
    return ParamAttr(initializer=KaimingNormal()), ParamAttr(initializer=Constant(0.0))


def conv(in_channels, out_channels, kernel_size, stride=1, dilation=1):
    """Conv padded by dilation * (k - 1) / 2, as both references (2 for the 5x5/2 convs)."""
    w, b = he_init()
    return nn.Conv2D(in_channels, out_channels, kernel_size, stride,
                     padding=dilation * (kernel_size - 1) // 2, dilation=dilation,
                     weight_attr=w, bias_attr=b)


def deconv(in_channels, out_channels):
    """4x4 transposed conv, stride 2, padding 1: exactly doubles H and W (Table 1 'deconv')."""
    w, b = he_init()
    return nn.Conv2DTranspose(in_channels, out_channels, 4, 2, padding=1, weight_attr=w,
                              bias_attr=b)


def linear(in_features, out_features):
    w, b = he_init()
    return nn.Linear(in_features, out_features, w, b)


class _ConvBNStack(nn.Layer):
    """Runs numbered (conv_i, bn_i) pairs with ReLU, in the chosen order."""

    def __init__(self, bn_order):
        super().__init__()
        if bn_order not in BN_ORDERS:
            raise ValueError(f"glcic: bn_order must be one of {BN_ORDERS}, got {bn_order!r}")
        self.bn_order = bn_order

    def block(self, conv_layer, bn, x):
        if self.bn_order == 'bn_relu':
            return F.relu(bn(conv_layer(x)))
        return bn(F.relu(conv_layer(x)))


class CompletionNet(_ConvBNStack):
    """The completion network (Table 1): 17 layers, dilations 2/4/8/16 at H/4, sigmoid output.

    Holds ``mean``: the training set's mean colour, RGB in [-1, 1], a persistable buffer.
    """

    DILATED = {7: 2, 8: 4, 9: 8, 10: 16}
    BLOCKS = [f'conv{i}' for i in range(1, 13)] + ['deconv13', 'conv14', 'deconv15', 'conv16']

    def __init__(self, cnum=64, bn_order='bn_relu', input_encoding='centered'):
        super().__init__(bn_order)
        if input_encoding not in INPUT_ENCODINGS:
            raise ValueError(f'glcic: input_encoding must be one of {INPUT_ENCODINGS}, '
                             f'got {input_encoding!r}')
        self.input_encoding = input_encoding
        c = cnum
        self.conv1 = conv(4, c, 5)
        self.conv2 = conv(c, 2 * c, 3, 2)                       # H/2
        self.conv3 = conv(2 * c, 2 * c, 3)
        self.conv4 = conv(2 * c, 4 * c, 3, 2)                   # H/4
        for i in range(5, 13):                                  # 7-10 dilated
            setattr(self, f'conv{i}', conv(4 * c, 4 * c, 3, dilation=self.DILATED.get(i, 1)))
        self.deconv13 = deconv(4 * c, 2 * c)                    # H/2
        self.conv14 = conv(2 * c, 2 * c, 3)
        self.deconv15 = deconv(2 * c, c)                        # H
        self.conv16 = conv(c, c // 2, 3)
        self.conv17 = conv(c // 2, 3, 3)
        widths = [c, 2 * c, 2 * c] + [4 * c] * 9 + [2 * c, 2 * c, c, c // 2]
        for i, width in enumerate(widths, 1):
            setattr(self, f'bn{i}', nn.BatchNorm2D(width))  # momentum 0.9 = torch's 0.1
        self.register_buffer('mean', paddle.zeros([3]), persistable=True)

    def encode(self, image, mask):
        """[N,3,H,W] in [-1, 1] + mask -> the 4-channel network input, in [0, 1] units."""
        x, mean = (image + 1.0) / 2.0, (self.mean.reshape([1, 3, 1, 1]) + 1.0) / 2.0
        if self.input_encoding == 'centered':
            x = (x - mean) * (1.0 - mask)          # inpaint.lua: mean removed, holes 0
        else:
            x = x * (1.0 - mask) + mean * mask     # otenim: holes filled with the mean
        return paddle.concat([x, mask], axis=1)

    def forward(self, image, mask, logits=False):
        """image [N,3,H,W] in [-1, 1], mask [N,1,H,W] (1 = hole), H, W multiples of 4.

        Returns the completion [N,3,H,W] in [-1, 1] (or the pre-sigmoid conv17 output).
        """
        x = self.encode(image, mask)
        for i, name in enumerate(self.BLOCKS, 1):
            x = self.block(getattr(self, name), getattr(self, f'bn{i}'), x)  # [N,4c,H/4,W/4] mid
        x = self.conv17(x)
        return x if logits else 2.0 * F.sigmoid(x) - 1.0


class DiscriminatorColumn(_ConvBNStack):
    """One context discriminator (Table 2): 5x5/2 convs (widths c, 2c, 4c, 8c, 8c, ...), BN and
    ReLU, then a ``fc``-wide linear layer + ReLU. Input [N,3,s,s] -> features [N, fc]."""

    def __init__(self, input_size, num_convs, cnum=64, fc=1024, bn_order='bn_relu'):
        super().__init__(bn_order)
        self.input_size, self.num_convs = input_size, num_convs
        widths = [cnum * min(2 ** i, 8) for i in range(num_convs)]
        side = input_size
        for i, (cin, cout) in enumerate(zip([3] + widths, widths), 1):
            setattr(self, f'conv{i}', conv(cin, cout, 5, 2))
            setattr(self, f'bn{i}', nn.BatchNorm2D(cout))
            side = (side + 1) // 2  # 5x5, stride 2, padding 2: ceil(s / 2)
        self.fc_name = f'linear{num_convs + 1}'  # otenim's name: linear6 / linear7
        setattr(self, self.fc_name, linear(widths[-1] * side * side, fc))

    def forward(self, x):
        if tuple(x.shape[2:]) != (self.input_size, self.input_size):
            raise ValueError(f'glcic: this discriminator was built for {self.input_size}x'
                             f'{self.input_size} inputs, got {x.shape[2]}x{x.shape[3]}')
        for i in range(1, self.num_convs + 1):
            x = self.block(getattr(self, f'conv{i}'), getattr(self, f'bn{i}'), x)
        return F.relu(getattr(self, self.fc_name)(x.reshape([x.shape[0], -1])))  # NCHW flatten


class ContextDiscriminator(nn.Layer):
    """Local (patch around the hole) and global (whole image) discriminators, their features
    concatenated, then one linear unit: forward(patch, image) -> logits [N, 1]."""

    def __init__(self, image_size=256, patch_size=128, local_convs=5, global_convs=6, cnum=64,
                 fc=1024, bn_order='bn_relu'):
        super().__init__()
        self.local_d = DiscriminatorColumn(patch_size, local_convs, cnum, fc, bn_order)
        self.global_d = DiscriminatorColumn(image_size, global_convs, cnum, fc, bn_order)
        self.linear = linear(2 * fc, 1)

    def forward(self, patch, image):
        features = paddle.concat([self.local_d(patch), self.global_d(image)], axis=1)
        return self.linear(features)  # logits; sigmoid gives the paper's probability


def masked_mse(image, pred, mask):
    """Eq. 2 as otenim: mean over all elements of ``(mask * (pred - image))^2``, in [0, 1]
    units (our images are [-1, 1], hence the / 2), so alpha keeps the paper's balance."""
    return ((pred - image) * mask / 2.0).square().mean()


def bce_logits(logits, target):
    """Binary cross-entropy of sigmoid(logits) against a constant label 0 or 1."""
    return F.binary_cross_entropy_with_logits(logits, paddle.full_like(logits, float(target)))


class GLCIC(InpaintModel):
    """Completion network plus local/global context discriminators, trained in three phases."""

    NAME = 'glcic'
    DEFAULTS = DEFAULTS
    TINY = TINY
    SIZE_MULTIPLE = 4  # two stride-2 convs, two x2 deconvs
    PHASE_SCHEDULE = {1: (0, True), 2: (1, False), 3: (1, True)}  # (D steps, G step)


    def __init__(self, **cfg):
        super().__init__(**cfg)
        cfg = self.cfg
        if cfg['bbox_size'] > cfg['image_size'] or cfg['image_size'] % self.SIZE_MULTIPLE:
            raise ValueError(f"glcic: image_size must be a multiple of 4 and >= bbox_size, got "
                             f"{cfg['image_size']}, {cfg['bbox_size']}")
        if not (0 <= cfg['phase1_frac'] and 0 <= cfg['phase2_frac']
                and cfg['phase1_frac'] + cfg['phase2_frac'] <= 1):
            raise ValueError('glcic: phase1_frac and phase2_frac must be >= 0 with a sum <= 1, '
                             f"got {cfg['phase1_frac']}, {cfg['phase2_frac']}")
        self.netG = CompletionNet(cfg['cnum'], cfg['bn_order'], cfg['input_encoding'])
        self.netD = ContextDiscriminator(cfg['image_size'], cfg['bbox_size'], cfg['local_convs'],
                                         cfg['global_convs'], cfg['d_cnum'], cfg['d_fc'],
                                         cfg['bn_order'])

    def phase_at(self, it):
        """Training phase of 0-based iteration ``it``: 1 (completion network, MSE only),
        2 (discriminators only) or 3 (joint), boundaries at the fractions of ``max_iters``."""
        c = self.cfg
        t_c = round(c['phase1_frac'] * c['max_iters'])
        t_d = round(c['phase2_frac'] * c['max_iters'])
        return 1 if it < t_c else 2 if it < t_c + t_d else 3

    def schedule(self, it):
        """(D steps, G step, phase) of iteration ``it``; the training loop passes the phase to
        the losses, so nothing is remembered between iterations (a resume needs no state)."""
        phase = self.phase_at(it)
        return (*self.PHASE_SCHEDULE[phase], phase)

    def prepare_data(self, dataset):
        """Sets the mean colour from up to MEAN_SAMPLES evenly spaced training items (dicts with
        'image' float32 [3,H,W] in [-1, 1]); the paper fills holes with it."""
        n = len(dataset)
        if n == 0:
            raise ValueError('glcic: the training set is empty; cannot compute its mean colour')
        index = np.unique(np.linspace(0, n - 1, min(n, MEAN_SAMPLES)).round().astype(int))
        means = [np.asarray(dataset[int(i)]['image'], np.float64).mean(axis=(1, 2)) for i in index]
        self.netG.mean.set_value(paddle.to_tensor(np.mean(means, axis=0).astype('float32')))

    def make_optimizers(self):
        """Adadelta for both networks (Sec. 4), torch's settings (lr 1.0, rho 0.9, eps 1e-6)."""
        c = self.cfg
        return {name: paddle.optimizer.Adadelta(lr, c['epsilon'], c['rho'],
                                                parameters=layer.parameters())
                for name, layer, lr in (('optG', self.netG, c['lr']),
                                        ('optD', self.netD, c['d_lr']))}

    def forward(self, image, mask):
        """image [N,3,H,W] in [-1,1], mask [N,1,H,W] (1 = hole), H and W multiples of 4.

        Returns dict: pred (completion network output), composite.
        """
        mask = self.check_inputs(image, mask)
        pred = self.netG(image, mask)
        return dict(pred=pred, composite=self.composite(pred, image, mask))

    def score(self, batch, image):
        """Discriminator logits [N,1] of images in [-1, 1] and their local patches at
        batch['bbox']; the discriminators see [0, 1] images, as in both references."""
        image = (image + 1.0) / 2.0
        return self.netD(crop_patch(image, batch['bbox'], self.cfg['bbox_size']), image)

    def g_loss(self, batch, out, phase=None):
        """MSE on the hole (phases 1 and 3) plus alpha * BCE(D(composite), real) (phase 3, and
        when no phase is given: the joint objective)."""
        phase = phase or 3
        mse = masked_mse(batch['image'], out['pred'], batch['mask'])
        logs = dict(g_mse=mse)
        loss = mse
        if phase == 3:
            adv = bce_logits(self.score(batch, out['composite']), 1.0)
            loss = loss + self.cfg['gan_alpha'] * adv
            logs['g_adv'] = adv
        logs.update(g=loss, phase=paddle.to_tensor(float(phase)))
        return loss, {k: v.detach() for k, v in logs.items()}

    def d_loss(self, batch, out, phase=None):
        """Mean BCE of D on real images and on the detached composites; times alpha in the
        joint phase (also when no phase is given). Real and fake go through D separately
        (separate batch statistics)."""
        phase = phase or 3
        real_logits = self.score(batch, batch['image'])
        fake_logits = self.score(batch, out['composite'].detach())
        bce = (bce_logits(real_logits, 1.0) + bce_logits(fake_logits, 0.0)) / 2.0
        loss = self.cfg['gan_alpha'] * bce if phase == 3 else bce
        logs = dict(d_bce=bce, d_real=F.sigmoid(real_logits).mean(),
                    d_fake=F.sigmoid(fake_logits).mean(), d=loss,
                    phase=paddle.to_tensor(float(phase)))
        return loss, {k: v.detach() for k, v in logs.items()}
