"""Layers shared by more than one paper: TF-style convolutions, gated convolution, resizes.

Contextual attention, the largest shared layer, has its own module (models/attention.py).

The official DeepFill code is TensorFlow (NHWC); everything here is Paddle NCHW. Two TF
behaviours matter for weight and output parity and are reproduced on purpose:

- ``'SAME'`` padding is asymmetric at stride 2 (a 3x3/s2 conv on an even input pads 0 before and 1
  after, a 5x5/s2 pads 1 and 2): a symmetric ``padding=1`` would shift the sampling grid by a pixel.
- ``resize_nearest_neighbor(align_corners=True)`` picks source index ``round(i*(in-1)/(out-1))``,
  which for a 2x downsample is not ``2i`` (64 -> 32 picks 0, 2, ..., 30, 33, 35, ..., 63).
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, XavierUniform

_ACTIVATIONS = {'elu': F.elu, 'relu': F.relu, None: lambda x: x}


def same_padding(kernel_size, stride=1, dilation=1):
    """TF 'SAME' padding as [top, bottom, left, right] for inputs divisible by ``stride``.

    TF pads ``k_eff - stride`` in total (k_eff = dilation*(k-1)+1) and puts the odd pixel after.
    """
    total = max(dilation * (kernel_size - 1) + 1 - stride, 0)
    before = total // 2
    return [before, total - before, before, total - before]


PADDINGS = ('tf_same', 'symmetric')


def conv_padding(kernel_size, stride=1, dilation=1, mode='tf_same'):
    """Zero padding [top, bottom, left, right] of a conv: TF 'SAME' (official) or 'symmetric'.

    'symmetric' pads ``dilation*(k-1)/2`` on every side, as the PyTorch ports do; it equals 'SAME'
    at stride 1 and shifts the sampling grid by one pixel at stride 2.
    """
    if mode == 'symmetric':
        return [dilation * (kernel_size - 1) // 2] * 4
    if mode != 'tf_same':
        raise ValueError(f"padding: expected one of {', '.join(PADDINGS)}, got {mode!r}")
    return same_padding(kernel_size, stride, dilation)


def tf_init():
    """TF's default initialisation of conv/dense layers: glorot-uniform kernel, zero bias."""
    return ParamAttr(initializer=XavierUniform()), ParamAttr(initializer=Constant(0.0))


def conv2d_same(in_channels, out_channels, kernel_size, stride=1, dilation=1, padding='tf_same'):
    """``nn.Conv2D`` with TF 'SAME' padding (or ``padding='symmetric'``) and TF initialisation."""
    weight_attr, bias_attr = tf_init()
    return nn.Conv2D(in_channels, out_channels, kernel_size, stride,
                     padding=conv_padding(kernel_size, stride, dilation, padding),
                     dilation=dilation, weight_attr=weight_attr, bias_attr=bias_attr)


class GenConv(nn.Layer):
    """Generator conv of the official code (``gen_conv``): conv, then ELU (or ReLU / nothing)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, dilation=1,
                 activation='elu', padding='tf_same'):
        super().__init__()
        self.conv = conv2d_same(in_channels, out_channels, kernel_size, stride, dilation, padding)
        self.act = _ACTIVATIONS[activation]

    def forward(self, x):
        return self.act(self.conv(x))


def upsample_nearest2x(x):
    """Nearest-neighbour x2 upsampling, [N,C,H,W] -> [N,C,2H,2W].

    Equal to TF ``resize_nearest_neighbor(align_corners=True)`` at exactly x2 (both pick
    floor(o/2)). Written with expand/reshape rather than ``F.interpolate``, which has no double
    backward in Paddle and makes the oneDNN predictor of Paddle 3.3 fail (its ``scale`` attribute).
    """
    n, c, h, w = x.shape
    return x.reshape([n, c, h, 1, w, 1]).expand([n, c, h, 2, w, 2]).reshape([n, c, 2 * h, 2 * w])


def _linear_resize_axis(x, size, axis):
    """Linear resampling of one axis of x with aligned corners (torch's rule, float32)."""
    n = x.shape[axis]  # an int in dygraph, a shape Value under paddle.jit.to_static
    if isinstance(n, int) and isinstance(size, int):
        scale = (n - 1) / (size - 1) if size > 1 else 0.0
    else:
        scale = (n - 1).astype('float32') / (size - 1).astype('float32')
    src = paddle.arange(size, dtype='float32') * scale  # source coordinate of each output
    i0 = paddle.floor(src)
    frac = (src - i0).reshape([-1 if d == axis else 1 for d in range(4)])
    i0 = i0.astype('int64')
    i1 = i0 + (i0 < n - 1).astype('int64')
    x0 = paddle.index_select(x, i0, axis=axis)
    return x0 + (paddle.index_select(x, i1, axis=axis) - x0) * frac


def resize_bilinear_align_corners(x, size):
    """Bilinear resize with ``align_corners=True``, [N,C,H,W] -> [N,C,size[0],size[1]].

    Output pixel i samples the input at ``i * (H-1) / (size-1)``, so corners map to corners
    (AOT-GAN's decoder upsamples x2 this way). Built from gathers and a blend instead of
    ``F.interpolate``, whose ``scale`` attribute breaks the oneDNN predictor and paddle2onnx;
    it also traces with dynamic H, W under to_static. Matches
    ``F.interpolate(mode='bilinear', align_corners=True)`` to float32 rounding.
    """
    return _linear_resize_axis(_linear_resize_axis(x, size[1], 3), size[0], 2)


class GatedConv2D(nn.Layer):
    """Gated convolution (DeepFill v2, Sec. 3.1), as the official ``gen_conv`` builds it.

    One conv with ``2 * out_channels`` filters: the first half is the feature and goes through
    the activation, the second half is the gate: ``out = act(feature) * sigmoid(gate)``. With
    ``activation=None`` (the output layers) it is a plain conv with ``out_channels`` filters.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, dilation=1,
                 activation='elu', padding='tf_same'):
        super().__init__()
        filters = out_channels if activation is None else 2 * out_channels
        self.conv = conv2d_same(in_channels, filters, kernel_size, stride, dilation, padding)
        self.activation = activation

    def forward(self, x):
        x = self.conv(x)
        if self.activation is None:
            return x
        feature, gate = paddle.split(x, 2, axis=1)
        return _ACTIVATIONS[self.activation](feature) * F.sigmoid(gate)


class GenDeconv(nn.Layer):
    """Generator upsampling of the official code (``gen_deconv``): NN x2, then a 3x3 ``conv``
    (GenConv in v1, GatedConv2D in v2)."""

    def __init__(self, in_channels, out_channels, conv=GenConv):
        super().__init__()
        self.conv = conv(in_channels, out_channels, 3)

    def forward(self, x):
        return self.conv(upsample_nearest2x(x))


class DisConv(nn.Layer):
    """Critic conv of the official code (``dis_conv``): 5x5, stride 2, 'SAME', LeakyReLU(0.2).

    ``spectral=True`` (DeepFill v2) normalises the kernel by its largest singular value with one
    power iteration per training forward and a persistent ``u`` (neuralgym's
    ``conv2d_spectral_norm``). ``paddle.nn.utils.spectral_norm`` is used because
    ``nn.SpectralNorm`` does not carry u over between calls (one power iteration per call leaves
    sigma at 1.19 after 20 calls). The state dict then holds ``weight_orig`` (trainable) and the
    buffers ``weight_u``, ``weight_v``.
    """

    def __init__(self, in_channels, out_channels, spectral=False, padding='tf_same'):
        super().__init__()
        self.conv = conv2d_same(in_channels, out_channels, 5, 2, padding=padding)
        self.padding = padding
        if spectral:
            self.conv = nn.utils.spectral_norm(self.conv, n_power_iterations=1, dim=0)

    def forward(self, x):
        h, w = x.shape[2:]
        if self.padding == 'tf_same' and (h % 2 or w % 2):
            # TF 'SAME' pads an odd side by 2 + 2, one more before than the static [1, 2]
            # (SN-PatchGAN's six stride-2 layers meet odd sizes unless H, W are multiples of 64)
            x = F.pad(x, [w % 2, 0, h % 2, 0])
        return F.leaky_relu(self.conv(x), 0.2)


def tf_nearest_indices(in_size, out_size):
    """Source indices of TF1 ``resize_nearest_neighbor(align_corners=True)``.

    TF computes ``roundf(float32(i) * float32((in-1)/(out-1)))`` (round half away from zero) and
    clamps to ``in-1``; the float32 product is reproduced exactly before rounding.
    """
    scale = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0)
    src = np.arange(out_size, dtype=np.float32) * np.float32(scale)
    return np.minimum(np.floor(src.astype(np.float64) + 0.5), in_size - 1).astype('int64')


def _as_float32(size):
    """A size as a 0-D float32 tensor: a Python int, or a shape Value under to_static."""
    if isinstance(size, int):
        return paddle.full([], size, 'float32')
    return size.reshape([]).astype('float32')


def tf_nearest_index_tensor(in_size, out_size):
    """``tf_nearest_indices`` as tensor ops, for sizes only known when an exported graph runs.

    The same float32 scale and product, then round half away from zero written as
    ``floor(s) + (s - floor(s) >= 0.5)``: both steps are exact in float32, whereas
    ``floor(s + 0.5)`` can round up at a power of two and ``paddle.round`` rounds half to even.
    No clamp is needed: the largest source is (in-1) up to float32 rounding. (A float64 version
    returned wrong indices under the oneDNN predictor.)
    """
    n_in, n_out = _as_float32(in_size), _as_float32(out_size)
    scale = (n_in - 1) / paddle.maximum(n_out - 1, paddle.full([], 1, 'float32'))
    src = paddle.arange(n_out.astype('int64'), dtype='float32') * scale
    base = paddle.floor(src)
    return base.astype('int64') + (src - base >= 0.5).astype('int64')


def resize_nearest_tf(x, size):
    """TF1 nearest resize with align_corners=True of [N,C,H,W] to ``size`` = (h, w).

    Sizes may be shape Values under ``paddle.jit.to_static`` (dynamic H, W in exported models).
    """
    _, _, h, w = x.shape
    static = all(isinstance(s, int) for s in (h, w, *size))
    if static and (h, w) == tuple(size):
        return x
    if static:
        rows = paddle.to_tensor(tf_nearest_indices(h, size[0]))
        cols = paddle.to_tensor(tf_nearest_indices(w, size[1]))
    else:
        rows, cols = tf_nearest_index_tensor(h, size[0]), tf_nearest_index_tensor(w, size[1])
    return paddle.index_select(paddle.index_select(x, rows, axis=2), cols, axis=3)


def resize_nearest_torch(x, size):
    """PyTorch's nearest resize (source index ``floor(i * in / out)``; 2i when halving), as the
    PyTorch ports use it inside contextual attention. [N,C,H,W] -> [N,C,size[0],size[1]]."""
    _, _, h, w = x.shape
    if all(isinstance(s, int) for s in (h, w, *size)) and (h, w) == tuple(size):
        return x
    # integer tensor arithmetic: also right for sizes known only at run time (exported models)
    rows = paddle.arange(size[0], dtype='int64') * h // size[0]
    cols = paddle.arange(size[1], dtype='int64') * w // size[1]
    return paddle.index_select(paddle.index_select(x, rows, axis=2), cols, axis=3)


NEAREST_RESIZES = {'tf': resize_nearest_tf, 'torch': resize_nearest_torch}


def half_pixel_weights(n_in, n_out):
    """[n_out, n_in] float64 matrix of linear interpolation with half-pixel centres
    (``align_corners=False``, no antialiasing): output i samples the input at
    ``max((i + 0.5) n_in / n_out - 0.5, 0)``, clamped at the last pixel (torch's rule)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = src - low
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), low), 1.0 - frac)
    np.add.at(weights, (np.arange(n_out), high), frac)
    return weights


def resize_bilinear(x, size):
    """Bilinear resize of [N, C, H, W] to ``size`` with half-pixel centres, as two matrix
    products (dygraph, static sizes).

    Equals ``F.interpolate(mode='bilinear', align_corners=False)`` up to rounding, but with the
    sampling positions in float64: Paddle's kernel computes the scale in float32 (an error of
    1e-5 in float64 runs), torch's in the input's precision.
    """
    rows = paddle.to_tensor(half_pixel_weights(x.shape[2], size[0])).astype(x.dtype)
    cols = paddle.to_tensor(half_pixel_weights(x.shape[3], size[1]).T).astype(x.dtype)
    return paddle.matmul(paddle.matmul(rows, x), cols)


def gaussian_kernel1d(ksize, sigma):
    """Normalised 1-D Gaussian taps ``exp(-(i - k//2)^2 / (2 sigma^2))`` (the official AOT-GAN
    and kornia ``gaussian`` kernels for odd sizes)."""
    if not isinstance(ksize, int) or ksize % 2 == 0 or ksize <= 0 or not sigma > 0:
        raise ValueError(f'blur_ksize, blur_sigma: expected an odd positive size and a positive '
                         f'sigma, got {ksize!r}, {sigma!r}')
    taps = np.exp(-(np.arange(ksize) - ksize // 2) ** 2 / (2.0 * sigma ** 2))
    return taps / taps.sum()  # float64: cast to the input's dtype where used


def gaussian_blur(x, ksize=71, sigma=10.0, mode='zeros'):
    """Separable Gaussian blur of every channel of [N, C, H, W].

    ``mode``: 'zeros' pads with zeros (AOT-GAN's ``gaussian_blur``), 'reflect' mirrors the border
    (kornia's ``gaussian_blur2d`` default, LaMa's refinement). The 2-D kernel is the outer
    product of two 1-D kernels, applied here separably.
    """
    taps = paddle.to_tensor(gaussian_kernel1d(ksize, sigma)).astype(x.dtype)
    channels, pad = x.shape[1], (ksize - 1) // 2
    if mode == 'reflect':
        x = F.pad(x, [pad, pad, pad, pad], mode='reflect')
        padding = ([0, 0], [0, 0])
    else:
        padding = ([pad, 0], [0, pad])
    x = F.conv2d(x, taps.reshape([1, 1, ksize, 1]).tile([channels, 1, 1, 1]),
                 padding=padding[0], groups=channels)
    return F.conv2d(x, taps.reshape([1, 1, 1, ksize]).tile([channels, 1, 1, 1]),
                    padding=padding[1], groups=channels)


def shift(x, offset, axis):
    """``y[i] = x[i + offset]`` along ``axis``, zero where ``i + offset`` falls outside.

    Zero padding by slicing and concatenation, with constant slice bounds, so it holds for sizes
    known only at run time. Exported graphs avoid Paddle's pad ops: paddle2onnx 2.1 gives pad3d
    an uninitialised fill value, and the oneDNN pad kernel of Paddle 3.3 crashed on ``pad``.
    ``|offset|`` must not exceed the axis length.
    """
    if offset == 0:
        return x
    n = abs(offset)
    zeros = paddle.zeros_like(paddle.slice(x, [axis], [0], [n]))
    if offset > 0:
        return paddle.concat([paddle.slice(x, [axis], [n], [2 ** 31 - 1]), zeros], axis=axis)
    return paddle.concat([zeros, paddle.slice(x, [axis], [0], [-n])], axis=axis)
