"""DeepFill v1 against the reference: counts, TF padding/resizes, contextual attention, losses."""
import numpy as np
import paddle
import paddle.nn as nn
import pytest

from models.attention import (ContextualAttention, extract_patches, flow_to_image,
                              known_patch_mask, masked_softmax, matching_scores)
from models.deepfill_v1 import DeepFillV1, crop_patch
from models.losses import ae_l1, gradient_penalty, spatial_discount_mask, wgan_d, wgan_g
from models.ops import (conv2d_same, resize_nearest_tf, same_padding, tf_nearest_indices,
                        upsample_nearest2x)


def count(layer):
    return sum(int(np.prod(p.shape)) for p in layer.parameters() if not p.stop_gradient)


def test_parameter_counts_match_the_official_model():
    model = DeepFillV1()
    assert count(model.netG.coarse) == 1_448_227
    assert count(model.netG.refine) == 2_153_315
    assert count(model.netG) == 3_601_542
    assert count(model.netD.local_critic) == 4_339_329
    assert count(model.netD.global_critic) == 2_733_441


def test_tf_same_padding_is_asymmetric_at_stride_two():
    assert same_padding(3, 2) == [0, 1, 0, 1]
    assert same_padding(5, 2) == [1, 2, 1, 2]
    assert same_padding(3, 1, 16) == [16, 16, 16, 16]
    conv = conv2d_same(1, 1, 3, 2)
    w = np.zeros((1, 1, 3, 3), 'float32')
    w[0, 0, 0, 0] = 1  # picks the top-left tap of each window
    conv.weight.set_value(w)
    conv.bias.set_value(np.zeros(1, 'float32'))
    x = np.arange(36, dtype='float32').reshape(1, 1, 6, 6)
    # TF pads nothing before, so window (i, j) starts at input (2i, 2j): no one-pixel shift.
    assert np.array_equal(conv(paddle.to_tensor(x)).numpy()[0, 0], x[0, 0, ::2, ::2])


def test_tf_align_corners_nearest_indices():
    idx = tf_nearest_indices(64, 32)
    assert list(idx[:16]) == list(range(0, 32, 2))
    assert list(idx[16:]) == list(range(33, 64, 2))
    two_step = tf_nearest_indices(256, 64)[tf_nearest_indices(64, 32)]
    assert list(two_step[:18]) == [0, 8, 16, 24, 32, 40, 49, 57, 65, 73, 81, 89, 97, 105, 113, 121,
                                   134, 142]
    assert two_step[-2:].tolist() == [247, 255]
    up = tf_nearest_indices(64, 128)
    assert np.array_equal(up, np.arange(128) // 2)
    x = paddle.arange(64, dtype='float32').reshape([1, 1, 8, 8])
    assert np.array_equal(upsample_nearest2x(x).numpy(),
                          x.numpy().repeat(2, axis=2).repeat(2, axis=3))
    assert np.array_equal(resize_nearest_tf(upsample_nearest2x(x), [8, 8]).numpy()[0, 0, :, 0],
                          x.numpy()[0, 0, [0, 1, 2, 3, 4, 5, 6, 7], 0])


def test_spatial_discount_anchors():
    sd = spatial_discount_mask(128, 128, 0.9)
    assert sd[0, 0] == 1 and sd[0, 64] == 1
    assert sd[127, 127] == pytest.approx(0.9)
    assert sd[64, 64] == pytest.approx(1.179018e-3, rel=1e-5)
    assert sd.mean() == pytest.approx(0.252921, rel=1e-5)
    assert sd.sum() == pytest.approx(4143.8501, rel=1e-6)
    small = spatial_discount_mask(6, 6, 0.5)
    expected = np.array([[max(0.5 ** min(i, 6 - i), 0.5 ** min(j, 6 - j)) for j in range(6)]
                         for i in range(6)])
    assert np.allclose(small, expected)
    assert small[3, 3] == 0.125 and small[1, 2] == 0.5


def closed_form_features():
    c, y, x = np.arange(8)[:, None, None], np.arange(32)[None, :, None], np.arange(32)[None, None]
    f = np.sin(0.9 * (c + 1) * y / 32) + np.cos((c + 2) * x / 32) + 0.1 * c
    return paddle.to_tensor(f.astype('float32')[None])


@pytest.mark.parametrize('fuse,total,center,window', [
    (True, 6136.0986, 1.420034, 0.764195),   # nipponjo networks_tf.py (TF-exact), fuse=True
    (False, 6439.0986, 1.501473, 0.868257),  # the same with fuse=False
])
def test_contextual_attention_closed_form_anchor(fuse, total, center, window):
    f = closed_form_features()
    assert float(f.sum()) == pytest.approx(6133.8447, rel=1e-6)
    mask = np.zeros((1, 1, 128, 128), 'float32')
    mask[..., 32:96, 40:104] = 1
    mask = resize_nearest_tf(paddle.to_tensor(mask), [32, 32])
    y, offsets = ContextualAttention(3, 1, 2, 3, 10.0, fuse)(f, f, mask)
    y = y.numpy()
    assert y.shape == (1, 8, 32, 32) and offsets.shape == [1, 2, 16, 16]
    assert y.sum() == pytest.approx(total, rel=2e-6)
    assert y[0, 0, 16, 16] == pytest.approx(center, rel=1e-5)
    assert y[0, :, 8:24, 10:26].mean() == pytest.approx(window, rel=1e-5)


def test_contextual_attention_reconstructs_its_input_without_a_hole():
    rng = np.random.RandomState(0)
    b = paddle.to_tensor(rng.randn(1, 4, 16, 16).astype('float32'))
    y, offsets = ContextualAttention(fuse=False, softmax_scale=1e4)(b, b)
    assert np.allclose(y.numpy()[..., 2:-2, 2:-2], b.numpy()[..., 2:-2, 2:-2], atol=1e-4)
    assert int(paddle.abs(offsets).sum()) == 0  # every patch copies itself


def test_hole_patches_get_no_attention():
    rng = np.random.RandomState(1)
    f = paddle.to_tensor(rng.randn(1, 4, 8, 8).astype('float32'))
    mask = np.zeros((1, 1, 8, 8), 'float32')
    mask[..., 2:5, 3:6] = 1
    known = known_patch_mask(paddle.to_tensor(mask), 3)  # [1, 64, 1]
    attention = masked_softmax(matching_scores(f, f, 3), known, 10.0).numpy()[0]
    touches_hole = extract_patches(paddle.to_tensor(mask), 3).numpy()[0].max(axis=0) > 0
    assert touches_hole.sum() == 5 * 5  # the 3x3 hole grown by one pixel each way
    assert np.all(attention[touches_hole] == 0)
    assert np.all(attention[~touches_hole].sum(axis=0) > 0.99)  # nearly all weight is on known


def test_batched_attention_equals_one_item_at_a_time():
    rng = np.random.RandomState(2)
    f = paddle.to_tensor(rng.randn(2, 4, 16, 16).astype('float32'))
    mask = np.zeros((2, 1, 16, 16), 'float32')
    mask[0, :, 2:9, 3:10] = 1
    mask[1, :, 6:14, 1:7] = 1
    mask = paddle.to_tensor(mask)
    ca = ContextualAttention()
    y, off = ca(f, f, mask)
    for i in range(2):
        yi, oi = ca(f[i:i + 1], f[i:i + 1], mask[i:i + 1])
        assert np.allclose(y.numpy()[i], yi.numpy()[0], atol=1e-6)
        assert np.array_equal(off.numpy()[i], oi.numpy()[0])


def test_flow_image():
    still = flow_to_image(np.zeros((1, 2, 4, 4)), size=(8, 8))
    assert still.shape == (1, 3, 8, 8) and np.all(still == 1)  # no motion is white
    left = np.zeros((1, 2, 2, 2))
    left[:, 1] = -1  # dx = -1: angle atan2(1, 0)/pi = 0.5 -> wheel position 0.75 * 54 = 40.5,
    # halfway between blue-magenta colours 40 and 41: (78, 0, 255) and (98, 0, 255) -> red 88.
    assert np.allclose(flow_to_image(left)[0, :, 0, 0], [88 / 127.5 - 1, -1, 1])


class LinearCritic(nn.Layer):
    def __init__(self, w):
        super().__init__()
        self.fc = nn.Linear(w.size, 1, bias_attr=False)
        self.fc.weight.set_value(w.reshape(-1, 1).astype('float32'))

    def forward(self, x):
        return self.fc(x.reshape([x.shape[0], -1]))


def test_gradient_penalty_on_a_linear_critic():
    rng = np.random.RandomState(3)
    w = rng.randn(3, 4, 4) * 0.3
    mask = np.zeros((2, 1, 4, 4), 'float32')
    mask[0, :, 1:3, 1:3] = 1
    mask[1, :, :, :2] = 1
    real = paddle.to_tensor(rng.randn(2, 3, 4, 4).astype('float32'))
    fake = paddle.to_tensor(rng.randn(2, 3, 4, 4).astype('float32'))
    alpha = paddle.to_tensor(rng.uniform(size=(2, 1, 1, 1)).astype('float32'))
    gp = gradient_penalty(LinearCritic(w), real, fake, alpha, paddle.to_tensor(mask))
    norms = [np.sqrt((w ** 2 * m).sum()) for m in mask]  # the gradient of <w, x> is w
    assert float(gp) == pytest.approx(np.mean([(n - 1) ** 2 for n in norms]), rel=1e-5)
    plain = gradient_penalty(LinearCritic(w), real, fake, alpha)
    assert float(plain) == pytest.approx((np.sqrt((w ** 2).sum()) - 1) ** 2, rel=1e-5)


def test_gradient_penalty_trains_the_critic():
    critic = LinearCritic(np.full((1, 2, 2), 2.0))  # ||w|| = 4: penalty (4 - 1)^2
    x = paddle.zeros([1, 1, 2, 2])
    gp = gradient_penalty(critic, x, x, paddle.full([1, 1, 1, 1], 0.5))
    gp.backward()
    assert float(gp) == pytest.approx(9.0, rel=1e-5)
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = 2 * 3 * 2 / 4 = 3 per weight
    assert np.allclose(critic.fc.weight.grad.numpy(), 3.0, rtol=1e-4)


def test_wgan_signs_and_ae_loss():
    real, fake = paddle.to_tensor([[1.0], [3.0]]), paddle.to_tensor([[0.5], [-1.5]])
    assert float(wgan_d(real, fake)) == pytest.approx(-0.5 - 2.0)
    assert float(wgan_g(fake)) == pytest.approx(0.5)
    t = paddle.to_tensor(np.array([[[[0.0, 1.0], [2.0, 3.0]]]], 'float32'))
    p = paddle.zeros_like(t)
    m = paddle.to_tensor(np.array([[[[1.0, 0.0], [0.0, 0.0]]]], 'float32'))
    # mean(|t - p| * (1 - m)) = 6/4, divided by mean(1 - m) = 3/4 -> 2
    assert float(ae_l1(t, p, m)) == pytest.approx(2.0)


def tiny(**extra):
    paddle.seed(0)
    return DeepFillV1(**{**DeepFillV1.TINY, **extra})


def test_generator_loss_is_the_official_weighted_sum(batch_factory):
    model = tiny(gan_alpha=0.5, l1_alpha=2.0, ae_alpha=3.0)
    batch = batch_factory(model.cfg)
    loss, logs = model.g_loss(batch, model(batch['image'], batch['mask']))
    expected = 0.5 * logs['g_adv'] + 2.0 * logs['g_l1'] + 3.0 * logs['g_ae']
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    out = model(batch['image'], batch['mask'])
    local = lambda x: crop_patch(x, batch['bbox'], 32)  # noqa: E731
    sd = paddle.to_tensor(spatial_discount_mask(32, 32, 0.9))
    l1 = (1.2 * (paddle.abs(local(batch['image']) - local(out['coarse'])) * sd).mean()
          + (paddle.abs(local(batch['image']) - local(out['pred'])) * sd).mean())
    assert float(logs['g_l1']) == pytest.approx(float(l1), rel=1e-5)


def test_pretraining_the_coarse_network(batch_factory):
    model = tiny(pretrain_coarse=True)
    batch = batch_factory(model.cfg)
    out = model(batch['image'], batch['mask'])
    assert 'offsets' not in out and np.array_equal(out['pred'].numpy(), out['coarse'].numpy())
    assert model.d_loss(batch, out) is None and not model.trains_critic
    loss, logs = model.g_loss(batch, out)
    assert 'g_adv' not in logs
    loss.backward()
    assert all(p.grad is None for p in model.netG.refine.parameters())


def test_local_patch_follows_each_sample_box():
    x = paddle.arange(2 * 8 * 8, dtype='float32').reshape([2, 1, 8, 8])
    shared = crop_patch(x, np.array([[2, 3, 4, 4]] * 2), 4)
    assert np.array_equal(shared.numpy(), x.numpy()[:, :, 2:6, 3:7])
    own = crop_patch(x, np.array([[0, 0, 4, 4], [4, 2, 4, 4]]), 4).numpy()
    assert np.array_equal(own[0], x.numpy()[0, :, 0:4, 0:4])
    assert np.array_equal(own[1], x.numpy()[1, :, 4:8, 2:6])


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match='unknown config keys'):
        DeepFillV1(cnumm=3)
    with pytest.raises(ValueError, match='multiples of 16'):
        DeepFillV1(image_size=72)


def test_critic_loss_takes_its_mixing_weights_from_the_batch(batch_factory):
    """The penalty's real/fake mixing weights come with the batch (training.batches draws them
    for the global batch), so the loss draws nothing itself: same batch, same loss."""
    paddle.seed(0)
    model = DeepFillV1(**DeepFillV1.TINY)
    batch = batch_factory(model.cfg)
    with paddle.no_grad():
        out = model(batch['image'], batch['mask'])
    first, second = (float(model.d_loss(batch, out)[1]['d_gp']) for _ in range(2))
    assert first == second
    other = dict(batch, alpha=1.0 - batch['alpha'])
    assert float(model.d_loss(other, out)[1]['d_gp']) != first
    with pytest.raises(ValueError, match=r"batch\['alpha'\]: the deepfill_v1 critic loss needs 2"):
        model.d_loss({k: v for k, v in batch.items() if k != 'alpha'}, out)
