"""PConv: Image Inpainting for Irregular Holes Using Partial Convolutions (Liu et al., ECCV 2018).

arXiv:1804.07723. Official layer: https://github.com/NVIDIA/partialconv (``models/
partialconv2d.py``, commit 610d373); NVIDIA released no inpainting network or training code, so
the U-Net, losses and schedule follow the paper (Secs. 3.2, 3.3) and the most-used port,
https://github.com/naoto0804/pytorch-inpainting-with-partial-conv (commit 8d64e7e), whose
``PConvUNet`` weights convert with weights/convert/pconv.py. PyTorch NCHW -> Paddle NCHW.

The network works on "valid" maps (1 = known pixel, the paper's M). The project's masks mark
holes (1 = hole): ``PConv.forward`` converts once, ``valid = 1 - mask``, and nothing else does.

Choices and deviations:

- The partial convolution is NVIDIA's official layer (multi-channel mask, ratio sum(1)/sum(M)
  with the 1e-8 added before clamping, holes exactly 0). naoto's port divides by sum(M) only (its
  issue #54); its weights are rescaled by 1/sum(1) on conversion, which gives the same function.
  The official layer counts valid inputs with a (C_out, C_in, k, k) ones kernel; we sum the mask
  over channels and box-filter with a (1, 1, k, k) one: the same count at 1/C_out of the cost.
  The updated mask comes back with one channel (the official C_out channels are identical).
- Total variation is taken over P, the one-pixel dilation of the hole, as the paper defines it
  (``losses.dilated_hole_tv``); naoto's port takes the mean TV over the whole composite.
- Pixel losses are computed in our [-1, 1] space. naoto computes them in ImageNet-normalised
  space (values about 2.2x larger), so there its L1/TV terms weigh more against the VGG terms;
  the paper does not state its pixel range. VGG16 pool1-3 features of ImageNet-normalised
  images, as naoto.
- The output layer is linear, as in the paper and naoto. ``pred`` (and the composite made from
  it) is clipped to [-1, 1]; the losses use the unclipped output ``out['raw']``, so a pixel that
  overshoots still gets a gradient back into range.
- Initialisation as naoto: Kaiming-normal (fan_in) conv weights; only the output conv (dec_1)
  has a bias, initialised to 0.
- ``io_norm: 'imagenet'`` feeds the network ImageNet-normalised images and reads normalised
  outputs, as naoto's weights expect (the converter sets it). The input's mean shift cannot be
  folded into enc_1's weights: a partial conv masks it, so it is no constant. Our own training
  uses [-1, 1] (``io_norm: 'none'``).
- Fine-tuning (lr 5e-5, encoder BatchNorm frozen) is the ``finetune`` key. naoto's ``train()``
  override returns None; ours returns self.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.nn.initializer import Constant, KaimingNormal

from models.base import InpaintModel
from models.losses import dilated_hole_tv, perceptual_l1, style_l1
from models.ops import upsample_nearest2x
from models.features import IMAGENET_MEAN, IMAGENET_STD, FeatureNet

DEFAULTS = dict(
    image_size=256,          # naoto --image_size 256 (the paper trains 512 with layer_size 8)
    layer_size=7,            # U-Net depth: naoto PConvUNet(layer_size=7); paper table: 8 (512 px)
    cnum=64,                 # enc_1 width; deeper layers double it up to 8*cnum (paper: 64..512)
    io_norm='none',          # 'imagenet': ImageNet-normalised net input/output (naoto weights)
    mask_type='irregular',   # irregular holes, hole-to-image ratios 0.01-0.6 (paper's mask set)
    valid_alpha=1.0,         # L_total = 1 L_valid
    hole_alpha=6.0,          #   + 6 L_hole
    perceptual_alpha=0.05,   #   + 0.05 L_perceptual (output and composite)
    style_alpha=120.0,       #   + 120 (L_style_out + L_style_comp)
    tv_alpha=0.1,            #   + 0.1 L_tv
    vgg_weights='checkpoints/vgg16-397923af.pth',  # torchvision ImageNet VGG16 (naoto's)
    lr=2e-4,                 # paper: initial training lr 2e-4
    beta1=0.9,               # Adam, PyTorch defaults (naoto)
    beta2=0.999,
    finetune=False,          # paper: second stage, encoder BatchNorm frozen
    finetune_lr=5e-5,        # paper: fine-tuning lr 5e-5
    batch_size=16,           # naoto --batch_size 16 (paper: 6)
    max_iters=1_000_000,     # naoto --max_iter (its release: 500k + 500k fine-tuning)
)

TINY = dict(image_size=64, layer_size=4, cnum=8, batch_size=2, max_iters=2)

IO_NORMS = ('none', 'imagenet')


class PartialConv2D(nn.Layer):
    """Partial convolution with mask update, as NVIDIA's ``PartialConv2d(multi_channel=True,
    return_mask=True)``.

    Per output position, with X the input window, M its valid map (1 = known) and sum(1) =
    C_in*k*k the window size:
        x' = W^T (X * M) * sum(1) / sum(M) + b  if sum(M) > 0, else 0
        m' = clip(sum(M), 0, 1)                  (1 where any input was valid)
    Zero padding of the mask makes border windows count fewer valid inputs, so with an all-ones
    mask the output is a plain conv in the interior and 1.5x / 2.25x (3x3) on edges / corners.
    The ones kernel is a non-persistable buffer: not a parameter, not in the checkpoint.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, bias=False):
        super().__init__()
        self.in_channels, self.stride, self.padding = in_channels, stride, kernel_size // 2
        self.window = float(in_channels * kernel_size ** 2)  # sum(1): official slide_winsize
        self.weight = self.create_parameter(
            [out_channels, in_channels, kernel_size, kernel_size],
            default_initializer=KaimingNormal())
        self.bias = self.create_parameter([out_channels], is_bias=True,
                                          default_initializer=Constant(0.0)) if bias else None
        self.register_buffer('ones', paddle.ones([1, 1, kernel_size, kernel_size]),
                             persistable=False)

    def forward(self, x, mask):
        """x: [N, C_in, H, W]; mask: [N, C_in, H, W] or [N, 1, H, W] (shared by every channel),
        1 = valid. Returns (out [N, C_out, H', W'], updated mask [N, 1, H', W'])."""
        if mask.shape[1] not in (1, self.in_channels):
            raise ValueError(f'PartialConv2D: mask has {mask.shape[1]} channels, expected 1 or '
                             f'{self.in_channels}')
        with paddle.no_grad():
            valid = mask.sum(axis=1, keepdim=True) if mask.shape[1] > 1 \
                else mask * self.in_channels  # valid inputs per pixel, over channels
            count = F.conv2d(valid, self.ones, stride=self.stride, padding=self.padding)
            # window / count before clamping, as the official layer; as a tensor / tensor: the
            # oneDNN predictor of Paddle 2.6 and 3.0 miscomputes a Python scalar / tensor
            ratio = paddle.full_like(count, self.window) / (count + 1e-8)
            new_mask = paddle.clip(count, 0.0, 1.0)
            ratio = ratio * new_mask
        out = F.conv2d(x * mask, self.weight, stride=self.stride, padding=self.padding) * ratio
        if self.bias is not None:
            out = (out + self.bias.reshape([1, -1, 1, 1])) * new_mask
        return out, new_mask


class PConvBlock(nn.Layer):
    """Partial conv, then BatchNorm and an activation when given (naoto's ``PCBActiv``)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, bn=True, act=None,
                 bias=False):
        super().__init__()
        self.conv = PartialConv2D(in_channels, out_channels, kernel_size, stride, bias)
        self.bn = nn.BatchNorm2D(out_channels) if bn else None
        self.act = act

    def forward(self, x, mask):
        x, mask = self.conv(x, mask)
        if self.bn is not None:
            x = self.bn(x)
        return (x if self.act is None else self.act(x)), mask


def unet_widths(layer_size, cnum):
    """Channels of the image and of enc_1..enc_L: [3, c, 2c, 4c, 8c, 8c, ...]."""
    return [3] + [min(cnum * 2 ** i, 8 * cnum) for i in range(layer_size)]


class PConvUNet(nn.Layer):
    """The paper's U-Net (Sec. 3.2), every conv a partial conv.

    Encoder enc_i: stride-2 partial conv (7x7 for enc_1, 5x5 for enc_2-3, 3x3 deeper), BatchNorm
    (not enc_1), ReLU. Decoder dec_i (i = L..1): nearest x2 upsampling of the features and of the
    mask, concatenation with enc_{i-1}'s features and mask (dec_1: the masked image and its valid
    map), 3x3 partial conv, BatchNorm and LeakyReLU(0.2) except dec_1 (linear, with bias).
    """

    KERNELS = {1: 7, 2: 5, 3: 5}  # enc_4 and deeper: 3

    def __init__(self, layer_size=7, cnum=64):
        super().__init__()
        self.layer_size = layer_size
        self.widths = w = unet_widths(layer_size, cnum)
        for i in range(1, layer_size + 1):
            setattr(self, f'enc_{i}', PConvBlock(w[i - 1], w[i], self.KERNELS.get(i, 3), 2,
                                                 bn=i > 1, act=nn.ReLU()))
        for i in range(layer_size, 0, -1):
            setattr(self, f'dec_{i}', PConvBlock(w[i] + w[i - 1], w[i - 1], 3, 1, bn=i > 1,
                                                 act=nn.LeakyReLU(0.2) if i > 1 else None,
                                                 bias=i == 1))

    def forward(self, x, valid):
        """x: [N, 3, H, W] masked image; valid: [N, 1, H, W], 1 = known; H, W multiples of
        2^layer_size. Returns (output [N, 3, H, W], final mask [N, 1, H, W])."""
        feats, masks = [x], [valid]
        for i in range(1, self.layer_size + 1):
            h, m = getattr(self, f'enc_{i}')(feats[-1], masks[-1])
            feats.append(h)
            masks.append(m)
        h, m = feats.pop(), masks.pop()  # [N, 8c, H/2^L, W/2^L]
        for i in range(self.layer_size, 0, -1):
            skip, skip_mask = feats.pop(), masks.pop()
            h, m = upsample_nearest2x(h), upsample_nearest2x(m)
            n, _, height, width = h.shape
            mask = paddle.concat([m.expand([n, h.shape[1], height, width]),
                                  skip_mask.expand([n, skip.shape[1], height, width])], axis=1)
            h, m = getattr(self, f'dec_{i}')(paddle.concat([h, skip], axis=1), mask)
        return h, m


class PConv(InpaintModel):
    """PConv U-Net trained with the paper's reconstruction, perceptual, style and TV losses."""

    NAME = 'pconv'
    DEFAULTS = DEFAULTS
    TINY = TINY
    VGG_ARCH = 'vgg16'
    IMAGE_OUTPUTS = ('pred', 'composite')

    def __init__(self, **cfg):
        super().__init__(**cfg)
        cfg = self.cfg
        layers = cfg['layer_size']
        if not isinstance(layers, int) or layers < 1 or cfg['cnum'] < 1:
            raise ValueError(f"pconv: layer_size and cnum must be positive integers, got "
                             f"{layers!r}, {cfg['cnum']!r}")
        if cfg['io_norm'] not in IO_NORMS:
            raise ValueError(f"pconv: io_norm must be one of {IO_NORMS}, got {cfg['io_norm']!r}")
        self.SIZE_MULTIPLE = 2 ** layers  # each encoder level halves the image
        if cfg['image_size'] % self.SIZE_MULTIPLE:
            raise ValueError(f"pconv: image_size must be a multiple of 2^layer_size = "
                             f"{self.SIZE_MULTIPLE}, got {cfg['image_size']}")
        self.netG = PConvUNet(layers, cfg['cnum'])
        self.vgg = FeatureNet(cfg['vgg_weights'], self.VGG_ARCH, ('pool1', 'pool2', 'pool3'),
                              'imagenet')
        mean, std = np.array(IMAGENET_MEAN, 'float32'), np.array(IMAGENET_STD, 'float32')
        # x_n = ((x + 1) / 2 - mean) / std = x * scale + shift, for io_norm 'imagenet'
        for name, value in (('io_scale', 0.5 / std), ('io_shift', (0.5 - mean) / std)):
            self.register_buffer(name, paddle.to_tensor(value.reshape(1, 3, 1, 1)),
                                 persistable=False)
        self.train()

    @paddle.jit.not_to_static  # plain Python checks of static sizes (as the base class)
    def check_inputs(self, image, mask):
        """The base checks; a size error also names the depth that sets the multiple."""
        try:
            return super().check_inputs(image, mask)
        except ValueError as e:
            if 'multiples' not in str(e):
                raise
            raise ValueError(f"{e}; pconv halves it layer_size = {self.cfg['layer_size']} "
                             'times') from None

    def forward(self, image, mask):
        """image [N,3,H,W] in [-1,1], mask [N,1,H,W] (1 = hole), H and W multiples of
        2^layer_size. Returns dict: pred (clipped to [-1, 1]), composite, raw (unclipped)."""
        mask = self.check_inputs(image, mask)
        valid = 1.0 - mask
        imagenet = self.cfg['io_norm'] == 'imagenet'
        x = image * self.io_scale + self.io_shift if imagenet else image
        out, _ = self.netG(x * valid, valid)  # hole content never enters the network
        raw = (out - self.io_shift) / self.io_scale if imagenet else out
        pred = paddle.clip(raw, -1.0, 1.0)
        return dict(pred=pred, composite=self.composite(pred, image, mask), raw=raw)

    def g_loss(self, batch, out, phase=None):
        """L_total of the paper on the unclipped output (batch: image, mask with 1 = hole).

        Pixel terms are means over N*C*H*W of the masked differences (naoto, and the authors:
        "size-averaged"); perceptual and style terms compare VGG16 pool1-3 features of the output
        and of the composite with those of the ground truth.
        """
        cfg, image, mask = self.cfg, batch['image'], batch['mask']
        raw = out['raw']
        comp = self.composite(raw, image, mask)
        valid_l1 = paddle.abs((raw - image) * (1.0 - mask)).mean()
        hole_l1 = paddle.abs((raw - image) * mask).mean()
        perc = style = paddle.zeros([])
        if cfg['perceptual_alpha'] or cfg['style_alpha']:  # no VGG needed when both are off
            with paddle.no_grad():
                feats_gt = self.vgg(image)
            n = image.shape[0]
            feats = self.vgg(paddle.concat([raw, comp]))
            feats_out, feats_comp = [f[:n] for f in feats], [f[n:] for f in feats]
            perc = perceptual_l1(feats_out, feats_gt) + perceptual_l1(feats_comp, feats_gt)
            style = style_l1(feats_out, feats_gt) + style_l1(feats_comp, feats_gt)
        tv = dilated_hole_tv(comp, mask)
        loss = (cfg['valid_alpha'] * valid_l1 + cfg['hole_alpha'] * hole_l1
                + cfg['perceptual_alpha'] * perc + cfg['style_alpha'] * style
                + cfg['tv_alpha'] * tv)
        logs = dict(g_valid=valid_l1, g_hole=hole_l1, g_perc=perc, g_style=style, g_tv=tv,
                    g=loss)
        return loss, {k: v.detach() for k, v in logs.items()}

    def optimizer_settings(self):
        """Adam at ``lr`` (stage 1) or ``finetune_lr`` (stage 2), PyTorch's default betas."""
        cfg = self.cfg
        lr = cfg['finetune_lr'] if cfg['finetune'] else cfg['lr']
        return {'optG': (self.netG, lr, cfg['beta1'], cfg['beta2'])}

    def train(self, *mode):
        """Training mode; with ``finetune`` the encoder's BatchNorm layers stay in eval mode
        (running statistics used and frozen; their scale and shift still train). ``mode`` is
        passed on: Paddle 3.1+ takes ``train(mode)``, 2.6 and 3.0 take no argument."""
        super().train(*mode)
        if self.training and self.cfg['finetune']:
            for name, layer in self.netG.named_sublayers():
                if name.startswith('enc_') and isinstance(layer, nn.BatchNorm2D):
                    layer.training = False  # not layer.eval(): that flips Paddle's global mode
        return self
