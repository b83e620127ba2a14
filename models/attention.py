"""Contextual attention (Yu et al., "Generative Image Inpainting with Contextual Attention",
CVPR 2018, Sec. 3.2; official TensorFlow code: https://github.com/JiahuiYu/generative_inpainting,
``inpaint_ops.py``), shared by DeepFill v1 and v2, and the attention-flow image of its offsets.

Everything is batched (no loop over items: unfold, batched matmul, fold) and written from ops that
trace with sizes known only at run time, so exported graphs keep it. ``ATTENTION_DEFAULTS`` are
its config keys, with the official values; ``ContextualAttention.from_config`` builds it from a
model config that holds them.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.ops import NEAREST_RESIZES, same_padding, shift

ATTENTION_DEFAULTS = dict(
    ca_rate=2,               # contextual_attention(rate=2): match at half resolution
    ca_ksize=3,              # 3x3 matching patches
    ca_fuse_k=3,             # fuse kernel
    ca_softmax_scale=10.0,   # softmax_scale
    ca_fuse=True,            # fuse=True
    ca_resize='tf',          # resize(align_corners=True); 'torch': the PyTorch ports' nearest
    ca_patch_norm='clamp',   # patches / max(||w||, 1e-4); 'eps_sum': daa233's sqrt(sum(w^2+1e-4))
    ca_mask_from='features', # mask resized to the features, then by rate (official); 'image':
                             # nipponjo's one resize straight from the image's mask
    ca_chunk=1024,           # ours: foreground positions matched at once at large sizes
)


def extract_patches(x, kernel_size, stride=1):
    """All ``kernel_size`` patches of x with TF 'SAME' padding: [N,C,H,W] -> [N, C*k*k, L].

    Columns run over patch positions in row-major order (L = ceil(H/stride) * ceil(W/stride)).
    """
    top, bottom, left, right = same_padding(kernel_size, stride)
    return F.unfold(x, kernel_size, stride, [top, left, bottom, right])


def matching_scores(f, b, kernel_size, eps=1e-4, norm='clamp'):
    """Cosine-like scores of every foreground position against every background patch.

    Equivalent to the official ``conv2d(f, w / max(||w||, eps), 'SAME')`` with one kernel per
    background patch: only the background patches are normalised (f is not), and ``eps`` is the
    official escape-NaN floor for all-zero patches. ``norm='eps_sum'`` divides by
    ``sqrt(sum(w^2 + eps))`` instead (eps added per element: daa233's PyTorch port).

    Args:
        f, b: [N, C, h, w] foreground and background features.
    Returns:
        [N, Lb, Lf] scores (Lb = Lf = h*w).
    """
    fp = extract_patches(f, kernel_size)  # [N, C*k*k, Lf]
    return paddle.bmm(background_kernels(b, kernel_size, eps, norm), fp)


def background_kernels(b, kernel_size, eps=1e-4, norm='clamp'):
    """The normalised background patches of ``matching_scores``: [N,C,h,w] -> [N, Lb, C*k*k]."""
    w = extract_patches(b, kernel_size)  # [N, C*k*k, Lb]
    if norm == 'eps_sum':
        w = w / paddle.sqrt((w * w).sum(axis=1, keepdim=True) + eps * w.shape[1])
    else:
        w = w / paddle.clip(paddle.linalg.norm(w, axis=1, keepdim=True), min=eps)
    return w.transpose([0, 2, 1])


def _diagonal_sum(scores, k):
    """'SAME' conv of each [Lb, Lf] score image with a k x k identity kernel (a diagonal sum)."""
    p = k // 2
    return paddle.add_n([shift(shift(scores, d - p, 1), d - p, 2) for d in range(k)])


def fuse_scores(scores, b_hw, f_hw, k=3):
    """The official "fuse" step: favour matches whose neighbours match coherently.

    The [Lb, Lf] score image is convolved with a k x k identity kernel, which adds the scores of
    neighbouring (foreground, background) pairs along the row-major order; then both orders are
    switched to column-major and the same is done again, so vertical neighbours count too.
    """
    n, lb, lf = scores.shape
    (bh, bw), (fh, fw) = b_hw, f_hw
    scores = _diagonal_sum(scores, k)
    scores = scores.reshape([n, bh, bw, fh, fw]).transpose([0, 2, 1, 4, 3]).reshape([n, lb, lf])
    scores = _diagonal_sum(scores, k)
    return scores.reshape([n, bw, bh, fw, fh]).transpose([0, 2, 1, 4, 3]).reshape([n, lb, lf])


def known_patch_mask(mask, kernel_size):
    """1 for background patches whose window holds no hole pixel: [N,1,h,w] -> [N, Lb, 1]."""
    m = extract_patches(mask, kernel_size)  # [N, k*k, Lb]
    return (m.mean(axis=1, keepdim=True) == 0).astype(mask.dtype).transpose([0, 2, 1])


def masked_softmax(scores, known, scale):
    """Softmax over background patches; hole patches are zeroed before and after (official).

    Hole patches get score 0 (not -inf) inside the softmax and their weight is set to 0 after it,
    without renormalising: that is what the official code does, so we keep it.
    """
    scores = scores * known
    return F.softmax(scores * scale, axis=1) * known


def paste_patches(attention, raw_patches, out_hw, rate):
    """Transposed convolution with the full-resolution patches as kernels, divided by 4.

    Args:
        attention: [N, Lb, Lf] weights over background patches for every foreground position.
        raw_patches: [N, C*(2r)*(2r), Lb] full-resolution background patches (r = rate).
    Returns:
        [N, C, H, W]; every pixel is covered by 2x2 overlapping patches, hence the 1/4.
    """
    cols = paddle.bmm(raw_patches, attention)  # [N, C*(2r)^2, Lf]
    return overlap_add(cols, out_hw, rate) / 4.0


def overlap_add(cols, out_hw, rate):
    """``F.fold`` of 2r x 2r patches at stride r with TF 'SAME' padding, from reshapes and slices.

    Equal to ``F.fold(cols, out_hw, 2r, r, same_padding(2r, r))``, whose output size must be
    Python ints; this also runs with sizes known only at run time (exported models). Each patch
    is four r x r blocks (a, b); block (a, b) of all patches tiles an H x W image that lands
    shifted by (a*r - top, b*r - top), top = r // 2, and the four shifted images add up. No
    tensor has more than 6 dimensions (the oneDNN predictor of Paddle 2.6 takes no more).

    Args:
        cols: [N, C*(2r)^2, (H/r)*(W/r)] patches, columns in row-major patch order.
        out_hw: (H, W), multiples of r.
    Returns:
        [N, C, H, W].
    """
    h, w = out_hw
    c = cols.shape[1] // (4 * rate * rate)
    z = cols.reshape([-1, 2, rate, 2, rate, (h // rate) * (w // rate)])  # (n*c, a, u, b, v, ij)
    z = z.transpose([0, 1, 3, 2, 4, 5]).reshape([-1, rate, rate, h // rate, w // rate])
    z = z.transpose([0, 3, 1, 4, 2]).reshape([-1, c, 4, h, w])  # (n, c, 2a + b, iu, jv)
    top = rate // 2
    out = 0
    for a in range(2):
        for b in range(2):
            block = z[:, :, 2 * a + b]
            out = out + shift(shift(block, top - a * rate, 2), top - b * rate, 3)
    return out


def attention_offsets(attention, f_hw, b_hw):
    """Where each foreground position copies from, relative to itself: [N, 2, fh, fw] (dy, dx)."""
    return index_offsets(paddle.argmax(attention, axis=1), f_hw, b_hw)


def index_offsets(index, f_hw, b_hw):
    """``attention_offsets`` from the best background patch of each foreground position [N, Lf]."""
    (fh, fw), (_, bw) = f_hw, b_hw
    idx = index.reshape([-1, 1, fh, fw])  # [N, 1, fh, fw]
    rows = paddle.arange(fh, dtype='int64').reshape([1, 1, fh, 1])
    cols = paddle.arange(fw, dtype='int64').reshape([1, 1, 1, fw])
    return paddle.concat([idx // bw - rows, idx % bw - cols], axis=1)


def fuse_window(index, hw, k, column_major=False):
    """Row-major indices of the k fuse neighbours of each position in ``index`` (numpy).

    Neighbour j is ``j - k//2`` steps away along the row-major order of the h x w grid, or along
    the column-major order (``fuse_scores``' second pass); -1 where it falls off the grid.
    Returns int64 [len(index), k].
    """
    h, w = hw
    steps = np.arange(k) - k // 2
    if column_major:  # rank in column-major order, stepped, mapped back to row-major
        rank = (index % w * h + index // w)[:, None] + steps
        inside = (rank >= 0) & (rank < h * w)
        rank = np.clip(rank, 0, h * w - 1)
        return np.where(inside, rank % h * w + rank // h, -1)
    out = index[:, None] + steps
    return np.where((out >= 0) & (out < h * w), out, -1)


def window_sum(x, rows, cols):
    """``sum_j x[:, rows[:, j], cols[:, j]]`` over an outer grid of rows and columns; -1 reads 0.

    Args:
        x: [N, R, C]; rows: int [R', k] and cols: int [C', k] numpy indices into x.
    Returns:
        [N, R', C'].
    """
    rows = np.where(rows < 0, x.shape[1], rows)  # -1 -> an appended zero row (index_select's
    cols = np.where(cols < 0, x.shape[2], cols)  # backward mishandles negative indices)
    x = paddle.concat([x, paddle.zeros_like(x[:, :1])], axis=1)
    x = paddle.concat([x, paddle.zeros_like(x[:, :, :1])], axis=2)
    out = 0
    for j in range(rows.shape[1]):
        picked = paddle.index_select(x, paddle.to_tensor(cols[:, j]), axis=2)
        out = out + paddle.index_select(picked, paddle.to_tensor(rows[:, j]), axis=1)
    return out


def fused_scores_at(kernels, f_patches, columns, hw, k):
    """``fuse_scores(kernels @ f_patches, hw, hw, k)[:, :, columns]`` without the full matrix.

    Fusing sums scores of neighbouring (background, foreground) pairs, first along the row-major
    order, then along the column-major one; so the columns needed are the chunk's column-major
    neighbours and their row-major neighbours (about len(columns) + 3 * w).

    Args:
        kernels: [N, Lb, C*k*k] (``background_kernels``); f_patches: [N, C*k*k, Lf].
        columns: int numpy foreground positions (row-major) of the chunk.
    Returns:
        [N, Lb, len(columns)].
    """
    lb = kernels.shape[1]
    need1 = fuse_window(columns, hw, k, column_major=True)  # first-pass scores needed
    pos1 = np.unique(need1[need1 >= 0])
    need0 = fuse_window(pos1, hw, k)  # raw scores needed
    pos0 = np.unique(need0[need0 >= 0])
    local = lambda need, pos: np.where(need >= 0, np.searchsorted(pos, need), -1)  # noqa: E731
    raw = paddle.bmm(kernels, paddle.index_select(f_patches, paddle.to_tensor(pos0), axis=2))
    first = window_sum(raw, fuse_window(np.arange(lb), hw, k), local(need0, pos0))
    return window_sum(first, fuse_window(np.arange(lb), hw, k, True), local(need1, pos1))


class ContextualAttention(nn.Layer):
    """Contextual attention (Yu et al., CVPR 2018, Sec. 3.2), batched without a loop over items.

    Matching runs on f and b downsampled by ``rate`` (TF nearest, align_corners) with ksize x ksize
    patches; the matched background is pasted back from 2*rate x 2*rate patches of the
    full-resolution b. Per-sample masks are supported: each item uses its own mask, which equals
    the official code (it reads item 0 of a mask shared by the batch) when the mask is shared.

    Memory: the score matrix is N x Lb x Lf floats with Lb = Lf = HW/rate^2 for an HxW feature
    map: 4 MB per item for a 256x256 image (64x64 features), 9.7 GB for a 2048x1536 photo, and
    the fuse and softmax steps hold several such buffers. With ``chunk`` = c > 0 and Lf > c,
    dygraph matches c foreground positions at a time (``fused_scores_at``): the score buffers
    are then N x Lb x (c + 2W/rate + 8) floats at most, about five alive at once, so the extra
    memory is bounded by ~5 * 4 * N * Lb * (c + 2W/rate) bytes (1.4 GB at 2048x1536 with
    c = 1024), plus the O(N*C*HW) unfolded patches; results equal the unchunked path up to
    float32 rounding. Exported graphs (sizes known only at run time) always run unchunked.

    Switches for weights converted from the PyTorch ports (defaults: official): ``resize`` 'tf'
    (align-corners nearest) or 'torch' (index 2i); ``patch_norm`` 'clamp' (max(||w||, 1e-4)) or
    'eps_sum' (see ``matching_scores``); ``mask_from`` 'features' (the mask goes to the feature
    size first, then down by ``rate``: two resizes, official) or 'image' (one resize straight
    from the mask given: nipponjo's networks_tf.py).
    """

    def __init__(self, ksize=3, stride=1, rate=2, fuse_k=3, softmax_scale=10.0, fuse=True,
                 resize='tf', patch_norm='clamp', mask_from='features', chunk=0):
        super().__init__()
        if stride != 1:
            raise ValueError('ContextualAttention: only stride 1 is implemented (the official '
                             'default and the only value the papers use)')
        for key, value, allowed in (('ca_resize', resize, tuple(NEAREST_RESIZES)),
                                    ('ca_patch_norm', patch_norm, ('clamp', 'eps_sum')),
                                    ('ca_mask_from', mask_from, ('features', 'image'))):
            if value not in allowed:
                raise ValueError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
        self.ksize, self.rate, self.fuse_k = ksize, rate, fuse_k
        self.softmax_scale, self.fuse = softmax_scale, fuse
        self.resize, self.patch_norm, self.mask_from = resize, patch_norm, mask_from
        if chunk < 0:
            raise ValueError(f'ca_chunk: expected 0 (off) or a positive count, got {chunk}')
        self.chunk = chunk

    @classmethod
    def from_config(cls, cfg):
        """Built from the ``ATTENTION_DEFAULTS`` keys of a model config."""
        return cls(cfg['ca_ksize'], 1, cfg['ca_rate'], cfg['ca_fuse_k'], cfg['ca_softmax_scale'],
                   cfg['ca_fuse'], cfg['ca_resize'], cfg['ca_patch_norm'], cfg['ca_mask_from'],
                   cfg['ca_chunk'])

    def forward(self, f, b, mask=None):
        """Args:
            f, b: [N, C, H, W] foreground/background features (DeepFill passes f = b).
            mask: [N, 1, H', W'] hole mask (1 = hole) at the feature resolution or an integer
                multiple of it (e.g. the image's), or None.
        Returns:
            y: [N, C, H, W] reconstruction; offsets: [N, 2, H/rate, W/rate] int64 (dy, dx).
        """
        n, _, h, w = f.shape
        small = (h // self.rate, w // self.rate)
        resize = NEAREST_RESIZES[self.resize]
        raw = extract_patches(b, 2 * self.rate, self.rate)  # [N, C*(2r)^2, Lb]
        f_s, b_s = resize(f, small), resize(b, small)
        if mask is None:
            mask = paddle.zeros_like(f[:, :1])  # also for sizes known only at run time
        elif self.mask_from == 'features':
            mask = resize(mask, (h, w))
        known = known_patch_mask(resize(mask, small), self.ksize)
        if isinstance(small[0], int) and self.chunk and small[0] * small[1] > self.chunk:
            return self._chunked(f_s, b_s, known, raw, (h, w), small)
        scores = matching_scores(f_s, b_s, self.ksize, norm=self.patch_norm)
        if self.fuse:
            scores = fuse_scores(scores, small, small, self.fuse_k)
        attention = masked_softmax(scores, known, self.softmax_scale)
        y = paste_patches(attention, raw, (h, w), self.rate)
        return y, attention_offsets(attention, small, small)

    def _chunked(self, f_s, b_s, known, raw, hw, small):
        """The rest of ``forward``, ``chunk`` foreground positions at a time."""
        kernels = background_kernels(b_s, self.ksize, norm=self.patch_norm)  # [N, Lb, C*k*k]
        f_patches = extract_patches(f_s, self.ksize)  # [N, C*k*k, Lf]
        count = small[0] * small[1]
        cols, index = [], []
        for start in range(0, count, self.chunk):
            columns = np.arange(start, min(start + self.chunk, count))
            if self.fuse:
                scores = fused_scores_at(kernels, f_patches, columns, small, self.fuse_k)
            else:
                scores = paddle.bmm(kernels, f_patches[:, :, start:start + len(columns)])
            attention = masked_softmax(scores, known, self.softmax_scale)  # [N, Lb, chunk]
            cols.append(paddle.bmm(raw, attention))
            index.append(paddle.argmax(attention, axis=1))
        y = overlap_add(paddle.concat(cols, axis=2), hw, self.rate) / 4.0  # as paste_patches
        return y, index_offsets(paddle.concat(index, axis=1), small, small)


# ---------------------------------------------------------------- flow visualisation (numpy)
def _color_wheel():
    """The Middlebury optical-flow colour wheel: 55 RGB colours in [0, 255]."""
    segments = [(15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)),
                (4, (0, 255, 0), (0, 255, 255)), (11, (0, 255, 255), (0, 0, 255)),
                (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0))]
    rows = []
    for count, start, end in segments:
        t = np.floor(255 * np.arange(count) / count) / 255  # the wheel's quantised ramp
        rows.append(np.asarray(start)[None] + t[:, None] * (np.subtract(end, start))[None])
    return np.concatenate(rows).astype(np.float64)


def flow_to_image(offsets, size=None):
    """Colours attention offsets as the official flow image, in [-1, 1].

    Hue gives the direction and saturation the distance; like the official code, item i is
    normalised by the largest radius among items 0..i.

    Args:
        offsets: [N, 2, h, w] (dy, dx), numpy or paddle.
        size: optional (H, W) to upsample to with nearest neighbour (an integer multiple of h, w).
    Returns:
        float32 [N, 3, H, W] in [-1, 1].
    """
    offsets = np.asarray(offsets.numpy() if hasattr(offsets, 'numpy') else offsets, np.float64)
    wheel = _color_wheel()
    out, max_rad = [], -1.0
    for dy, dx in offsets:
        max_rad = max(max_rad, float(np.sqrt(dy ** 2 + dx ** 2).max()))
        u, v = dy / (max_rad + np.finfo(float).eps), dx / (max_rad + np.finfo(float).eps)
        rad = np.sqrt(u ** 2 + v ** 2)
        pos = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (len(wheel) - 1)
        k0 = np.floor(pos).astype(int)
        k1 = (k0 + 1) % len(wheel)
        frac = (pos - k0)[..., None]
        col = ((1 - frac) * wheel[k0] + frac * wheel[k1]) / 255
        inside = (rad <= 1)[..., None]
        col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
        out.append(np.floor(255 * col).astype(np.uint8).transpose(2, 0, 1))
    img = np.stack(out).astype(np.float32) / 127.5 - 1
    if size is not None:
        img = img.repeat(size[0] // img.shape[2], axis=2).repeat(size[1] // img.shape[3], axis=3)
    return img
