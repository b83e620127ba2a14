"""Loss terms as small pure functions. Images are [N, C, H, W] in [-1, 1]; masks 1 = hole."""
import numpy as np
import paddle


def spatial_discount_mask(height, width, gamma):
    """Spatial discounting weights of DeepFill v1 (Sec. 3.1), as the official code computes them.

    ``SD[i, j] = max(gamma**min(i, H-i), gamma**min(j, W-j))`` over the local patch: weight 1 on
    the patch border and gamma**(H/2) in its centre. The paper defines the distance to the nearest
    known pixel and gamma 0.99; the official code measures it to the patch edge with gamma 0.9.

    Returns:
        float32 numpy [height, width].
    """
    i = np.minimum(np.arange(height), height - np.arange(height))[:, None]
    j = np.minimum(np.arange(width), width - np.arange(width))[None, :]
    return np.maximum(gamma ** i, gamma ** j).astype(np.float32)


def discounted_l1(target, pred, weight):
    """``mean(|target - pred| * weight)``; weight broadcasts against [N, C, H, W]."""
    return (paddle.abs(target - pred) * weight).mean()


def ae_l1(target, pred, mask):
    """Known-region L1 normalised by the known fraction: ``mean(|t-p|*(1-m)) / mean(1-m)``."""
    known = 1.0 - mask
    return (paddle.abs(target - pred) * known).mean() / known.mean()


def wgan_d(real_score, fake_score):
    """Critic loss of WGAN: ``mean D(fake) - mean D(real)``."""
    return fake_score.mean() - real_score.mean()


def wgan_g(fake_score):
    """Generator loss of WGAN: ``-mean D(fake)``."""
    return -fake_score.mean()


def gradient_penalty(critic, real, fake, alpha, mask=None):
    """WGAN-GP penalty ``mean((||grad D(x_hat) * sqrt(mask)|| - 1)^2)``, normed per sample.

    ``x_hat = real + alpha * (fake - real)`` with the caller's mixing weights (drawn with the
    batch, one per sample). Follows neuralgym's ``gradients_penalty``: the squared input gradient
    is weighted by the hole mask (so only the hole region is constrained) and summed over C, H, W
    of each sample.

    Args:
        critic: callable [N, C, H, W] -> [N, 1]; needs ops with a double backward.
        real, fake: [N, C, H, W]; fake should be detached from the generator.
        alpha: [N, 1, 1, 1] interpolation weights in [0, 1].
        mask: [N or 1, 1, H, W] weights, or None for the plain penalty.
    """
    x_hat = (real + alpha * (fake - real)).detach()
    x_hat.stop_gradient = False
    (grad,) = paddle.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    sq = grad.square() if mask is None else grad.square() * mask
    slopes = paddle.sqrt(sq.sum(axis=[1, 2, 3]) + 1e-12)  # the 1e-12 keeps d/dx sqrt finite at 0
    return ((slopes - 1.0) ** 2).mean()


def perceptual_l1(feats_x, feats_y):
    """Sum over feature layers of ``mean|fx - fy|`` (PConv Eq. 3, LBAM, AOT-GAN)."""
    return sum(paddle.abs(fx - fy).mean() for fx, fy in zip(feats_x, feats_y))


def gram(f):
    """Gram matrix ``f f^T / (C H W)`` of features [N, C, H, W] -> [N, C, C].

    The 1/(C H W) normalisation is PConv's K_p (the paper's "1/(C_n H_n K_n)" is a typo).
    """
    n, c, h, w = f.shape
    flat = f.reshape([n, c, h * w])
    return paddle.bmm(flat, flat.transpose([0, 2, 1])) / (c * h * w)


def style_l1(feats_x, feats_y):
    """Sum over feature layers of ``mean|gram(fx) - gram(fy)|`` (PConv Eqs. 4-5)."""
    return sum(paddle.abs(gram(fx) - gram(fy)).mean() for fx, fy in zip(feats_x, feats_y))


def dilated_hole_tv(image, mask):
    """PConv's total variation (Eq. 6) over P, the 1-pixel dilation of the hole.

    Sums ``|I[i, j+1] - I[i, j]|`` over horizontal neighbour pairs with both pixels in P, plus the
    vertical pairs, divided by the element count of ``image`` (the paper's N_{I_comp}).
    """
    region = paddle.nn.functional.max_pool2d(mask, 3, 1, 1)  # 3x3 dilation of the hole
    dx = paddle.abs(image[:, :, :, 1:] - image[:, :, :, :-1]) * region[:, :, :, 1:] \
        * region[:, :, :, :-1]
    dy = paddle.abs(image[:, :, 1:, :] - image[:, :, :-1, :]) * region[:, :, 1:, :] \
        * region[:, :, :-1, :]
    return (dx.sum() + dy.sum()) / image.numel().astype(image.dtype)
