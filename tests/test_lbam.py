"""LBAM: parameter counts, attention-map formulas against the spec's golden values, the losses'
signs and scales, and parity with the official PyTorch model through the weight converter."""
import zlib
from pathlib import Path

import numpy as np
import paddle
import pytest

import conftest
from models.base import count_parameters
from models.lbam import (FORWARD_INIT, LBAM, REVERSE_INIT, AsymmetricGaussian,
                         DoubleColumnCritic, mask_update, to_unit, widths)
from weights.convert import SOURCES, convert
from weights.convert.lbam import (_official_critic_keys, _official_generator_keys,
                                  convert_official)

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
X = [-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0]


def tiny(**extra):
    return conftest.tiny('lbam', **extra)


def trainable(layer):
    return sum(int(p.numel()) for p in layer.parameters() if p.trainable)


def test_parameter_counts_match_the_official_model():
    model = LBAM()
    assert count_parameters(model.netG) == 68_304_948
    assert len(model.netG.state_dict()) == 79  # no buffers: the release has no BN in G
    assert count_parameters(model.netD) == trainable(model.netD) == 22_316_417
    buffers = [v for k, v in model.netD.state_dict().items() if k.endswith(('_mean', '_variance'))]
    assert sum(int(v.numel()) for v in buffers) == 7_680  # BN running statistics
    # the converter's tables describe every tensor of both nets
    assert {f'netG.{k}' for k, _ in _official_generator_keys().values()} == {
        f'netG.{k}' for k in model.netG.state_dict()}
    assert {k for k, _ in _official_critic_keys().values()} == set(model.netD.state_dict())


def test_widths_scale_with_cnum_and_cap_at_eight_times():
    assert widths(64, 7) == [64, 128, 256, 512, 512, 512, 512]
    assert widths(8, 6) == [8, 16, 32, 64, 64, 64]


@pytest.mark.parametrize('init, golden', [
    (FORWARD_INIT, [0.0001, 0.0201, 0.1159, 0.4047, 1.1, 1.0368, 1.0]),
    (REVERSE_INIT, [0.1489, 0.6672, 0.9707, 1.1, 1.0607, 1.0135, 1.0]),
])
def test_asymmetric_gaussian_golden_values(init, golden):
    g = AsymmetricGaussian(*init)
    assert np.allclose(g(paddle.to_tensor(X)).numpy(), golden, atol=5e-5)
    a, mu, sl, sr = init  # Eq. 3 by hand at x = 0.5 (left) and 3 (right of mu)
    assert np.isclose(g(paddle.to_tensor([0.5])).item(), a * np.exp(-sl * (0.5 - mu) ** 2))
    assert np.isclose(g(paddle.to_tensor([3.0])).item(),
                      1 + (a - 1) * np.exp(-sr * (3.0 - mu) ** 2))


def test_mask_update_golden_values_and_finite_gradient():
    x = paddle.to_tensor(X, stop_gradient=False)
    y = mask_update(x)
    assert np.allclose(y.numpy(), [0, 0, 0.5743, 1, 1.7411, 2.4082, 3.6239], atol=5e-5)
    y.sum().backward()
    expected = [0.0, 0.0] + [0.8 * v ** -0.2 for v in X[2:]]  # relu^0.8 slope, 0 for x <= 0
    assert np.allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_gaussian_parameters_are_clamped_and_projected_in_training():
    g = AsymmetricGaussian(*FORWARD_INIT)
    g.a.set_value(np.array([9.0], 'float32'))      # above 6
    g.sigma_l.set_value(np.array([0.1], 'float32'))  # below 0.5
    g.eval()
    x = paddle.to_tensor([0.0])
    assert np.isclose(g(x).item(), 6.0 * np.exp(-0.5 * 4.0))
    assert g.a.item() == 9.0  # eval: stored values untouched
    g.train()
    x = paddle.to_tensor([0.0, 4.0])
    g(x).sum().backward()
    assert g.a.item() == 6.0 and g.sigma_l.item() == 0.5  # projected, as the official clamp
    # gradients pass at the clamp boundary and reach every parameter once x >= mu occurs
    assert all(float(p.grad.abs().sum()) > 0 for p in (g.a, g.mu, g.sigma_l, g.sigma_r))


def test_sigma_r_gets_no_gradient_at_the_official_initialisation():
    """N(0, 0.02) mask convs keep every mask feature below mu (2 forward, 1 reverse) at first,
    so the right branches (sigma_r) start inactive: a property of the official model."""
    model = tiny(gan_alpha=0.0, perceptual_alpha=0.0, style_alpha=0.0)
    image = paddle.uniform([2, 3, 128, 128], min=-1, max=1)
    mask = paddle.zeros([2, 1, 128, 128])
    mask[:, :, 32:96, 32:96] = 1.0
    batch = dict(image=image, mask=mask)
    loss, _ = model.g_loss(batch, model(image, mask))
    loss.backward()
    for name, p in model.netG.named_parameters():
        zero = float(p.grad.abs().sum()) == 0
        assert zero == name.endswith('sigma_r'), name


def test_critic_output_shapes_and_size_error():
    critic = DoubleColumnCritic(cnum=4, layers=5)
    valid = paddle.ones([2, 1, 128, 128])
    assert critic(paddle.rand([2, 3, 128, 128]), valid).shape == [2, 1]
    big = critic(paddle.rand([2, 3, 256, 192]), paddle.ones([2, 1, 256, 192]))
    assert big.shape == [2, 5 * 3]  # 8x6 features -> 5x3 fused map, flattened as official
    assert 0 < float(big.min()) and float(big.max()) < 1  # Sigmoid, as official
    with pytest.raises(ValueError, match='at least 128x128'):
        critic(paddle.rand([1, 3, 64, 64]), paddle.ones([1, 1, 64, 64]))


@pytest.mark.parametrize('cfg, match', [
    (dict(image_size=192), 'multiple of 128'),
    (dict(image_size=128, d_layers=6), 'at least 256'),
    (dict(cnum=0), 'cnum'),
    (dict(d_layers=2.5), 'd_layers'),
])
def test_bad_config_values_raise(cfg, match):
    with pytest.raises(ValueError, match=match):
        LBAM(**{**LBAM.TINY, **cfg})


def test_missing_vgg_file_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match='vgg_weights: /nonexistent/vgg16.pth not found; '
                                                '.*download https://download.pytorch.org'):
        tiny(vgg_weights='/nonexistent/vgg16.pth')  # loads the features, as train.py does


def test_generator_loss_terms_scales_and_adversarial_sign():
    model = tiny(perceptual_alpha=0.0, style_alpha=0.0)
    model.eval()  # critic BN on running statistics, so repeated calls agree
    rng = np.random.RandomState(0)
    image = paddle.to_tensor(rng.uniform(-1, 1, (2, 3, 128, 128)).astype('float32'))
    mask = paddle.to_tensor((rng.rand(2, 1, 128, 128) > 0.7).astype('float32'))
    out = model(image, mask)
    loss, logs = model.g_loss(dict(image=image, mask=mask), out)
    diff = np.abs(out['pred'].numpy() - image.numpy()) / 2  # L1 on [0, 1] images
    m = mask.numpy()
    assert np.isclose(float(logs['g_hole']), (diff * m).mean(), rtol=1e-5)
    assert np.isclose(float(logs['g_valid']), (diff * (1 - m)).mean(), rtol=1e-5)
    scores = model.netD(to_unit(out['pred']), 1.0 - mask).numpy()
    assert np.isclose(float(logs['g_adv']), -scores.mean(), rtol=1e-5)  # G raises D(fake)
    expected = 6 * (diff * m).mean() + (diff * (1 - m)).mean() - 0.1 * scores.mean()
    assert np.isclose(float(loss), expected, rtol=1e-5)


def test_vgg_terms_use_output_and_composite_against_the_ground_truth():
    model = tiny(hole_alpha=0.0, valid_alpha=0.0, gan_alpha=0.0)
    rng = np.random.RandomState(1)
    image = paddle.to_tensor(rng.uniform(-1, 1, (2, 3, 128, 128)).astype('float32'))
    mask = paddle.zeros([2, 1, 128, 128])
    mask[:, :, 16:80, 40:104] = 1.0
    out = model(image, mask)
    loss, logs = model.g_loss(dict(image=image, mask=mask), out)
    from models.losses import perceptual_l1, style_l1
    f = [model.vgg(x) for x in (out['pred'], out['composite'], image)]
    perceptual = perceptual_l1(f[0], f[2]) + perceptual_l1(f[1], f[2])
    style = style_l1(f[0], f[2]) + style_l1(f[1], f[2])
    assert np.isclose(float(logs['g_perceptual']), float(perceptual), rtol=1e-5)
    assert np.isclose(float(logs['g_style']), float(style), rtol=1e-5)
    assert np.isclose(float(loss), 0.01 * float(perceptual) + 120 * float(style), rtol=1e-5)


def test_critic_loss_is_wgan_gp_in_unit_range():
    """d = mean D(fake) - mean D(real) + 10 GP (the official sign slip fixed), on [0, 1] images
    with the per-sample penalty; recomputed here from the critic with the same mixing weights."""
    model = tiny()
    model.eval()  # BN on running statistics: every critic call sees the same function
    rng = np.random.RandomState(2)
    image = paddle.to_tensor(rng.uniform(-1, 1, (2, 3, 128, 128)).astype('float32'))
    pred = paddle.to_tensor(rng.uniform(-1, 1, (2, 3, 128, 128)).astype('float32'))
    mask = paddle.to_tensor((rng.rand(1, 1, 128, 128) > 0.5).astype('float32'))
    alpha = paddle.to_tensor(rng.uniform(size=(2, 1)).astype('float32'))  # drawn with the batch
    loss, logs = model.d_loss(dict(image=image, mask=mask, alpha=alpha), dict(pred=pred))
    alpha = alpha.reshape([2, 1, 1, 1])
    valid = (1.0 - mask).expand([2, 1, 128, 128])
    real, fake = to_unit(image), to_unit(pred)
    d_real, d_fake = model.netD(real, valid), model.netD(fake, valid)
    x_hat = real + alpha * (fake - real)
    x_hat.stop_gradient = False
    (grad,) = paddle.grad(model.netD(x_hat, valid).sum(), x_hat)
    norms = np.sqrt((grad.numpy() ** 2).reshape(2, -1).sum(1))
    gp = ((norms - 1) ** 2).mean()
    wgan = float(d_fake.mean()) - float(d_real.mean())
    assert np.isclose(float(logs['d_gp']), gp, rtol=1e-4)
    assert np.isclose(float(loss), wgan + 10 * gp, rtol=1e-4)


# ----------------------------------------------------------------------------- official weights
GAUSS = {'a': (0.8, 6.5), 'mu': (0.0, 3.3), 'sigma1': (0.3, 2.3), 'sigma2': (0.3, 2.3)}


def rule(name, shape):
    """Deterministic official-named weights (tests/fixtures/README.md, LBAM): crc32-seeded."""
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    leaf = name.rsplit('.', 1)[-1]
    if leaf in GAUSS:  # ranges beyond the clamps, so clamping is exercised
        return np.asarray(rng.uniform(*GAUSS[leaf]), np.float32)
    if len(shape) == 4:
        fan_in = shape[0] * 4 if name.startswith('dc') else int(np.prod(shape[1:]))
        gain = 3.0 if 'askConv' in name else 0.25 if name == 'dc7.weight' else 2 ** 0.5
        return (rng.randn(*shape) * gain / np.sqrt(fan_in)).astype(np.float32)
    if leaf == 'running_var':
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if leaf == 'weight':
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (rng.randn(*shape) * 0.1).astype(np.float32)


def official_state(with_critic=True):
    tables = [_official_generator_keys()] + ([_official_critic_keys()] if with_critic else [])
    return {name: rule(name, shape) for table in tables for name, (_, shape) in table.items()}


def converted_model(state):
    """The shared strict converter: every input tensor used, every netG tensor given."""
    model, info = convert('lbam_official', state)
    return model, info


def unit_inputs(data):
    image01 = data['images'].astype(np.float32) / 255
    return image01, data['holes'].astype(np.float32)


@pytest.mark.slow
def test_official_generator_parity():
    data = np.load(FIXTURES / 'parity_lbam_official_g.npz')
    state = {f'module.{k}': v for k, v in official_state(with_critic=False).items()}
    model, info = converted_model(state)  # a DataParallel prefix, no critic
    assert info['initialised'] == ['netD']
    image01, hole = unit_inputs(data)
    model.eval()
    with paddle.no_grad():
        pred = model(paddle.to_tensor(image01 * 2 - 1), paddle.to_tensor(hole))['pred'].numpy()
    ref = data['output'] * 2 - 1  # official (tanh + 1) / 2 -> our [-1, 1]
    err = np.abs(pred - ref).max()
    assert err <= 1e-4 * np.abs(ref).max(), err


@pytest.mark.slow
def test_official_critic_parity():
    data = np.load(FIXTURES / 'parity_lbam_official_d.npz')
    critic = ('globalConv', 'localConv', 'fusionLayer')
    state = {f'discriminator.{k}' if k.startswith(critic) else k: v  # the loss module's prefix
             for k, v in official_state().items()}
    state.update({k.replace('running_var', 'num_batches_tracked'): np.array(5)
                  for k in state if k.endswith('running_var')})
    model, info = converted_model(state)
    assert info['initialised'] == []
    image01, hole = unit_inputs(data)
    x, valid = paddle.to_tensor(image01), paddle.to_tensor(1.0 - hole)
    d = model.netD
    for mode in ('eval', 'train'):  # running statistics, then batch statistics
        d.train() if mode == 'train' else d.eval()
        with paddle.no_grad():
            ours = dict(known=d.global_column(x * valid), hole=d.local_column(x * (1 - valid)),
                        score=d(x, valid))
        for key, value in ours.items():
            ref = data[f'{mode}_{key}']
            err = np.abs(value.numpy() - ref).max()
            assert err <= 1e-4 * np.abs(ref).max(), (mode, key, err)


def test_input_scaling_folds_exactly_into_ec1():
    """W [x01 M, M] == W' [x M, M] with x01 = (x+1)/2 on a single conv, and bad files fail."""
    state = official_state(with_critic=False)
    params, _ = convert_official(state)
    w, folded = state['ec1.conv.conv.weight'], params['netG.ec1.conv.weight']
    rng = np.random.RandomState(3)
    x = rng.uniform(-1, 1, (1, 3, 8, 8)).astype('float32')
    m = (rng.rand(1, 1, 8, 8) > 0.5).astype('float32')
    conv = paddle.nn.functional.conv2d
    theirs = conv(paddle.to_tensor(np.concatenate([(x + 1) / 2 * m, m], 1)), paddle.to_tensor(w),
                  stride=2, padding=1)
    ours = conv(paddle.to_tensor(np.concatenate([x * m, m], 1)), paddle.to_tensor(folded),
                stride=2, padding=1)
    assert np.allclose(ours.numpy(), theirs.numpy(), atol=1e-5)
    assert params['netG.ec1.attention.a'].shape == (1,)
    del state['dc7.weight']
    with pytest.raises(ValueError, match='dc7.weight'):
        convert_official(state)
    state['dc7.weight'] = np.zeros((128, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match='dc7.weight has shape'):
        convert_official(state)
    with pytest.raises(ValueError, match='LBAMModel'):
        convert_official({'conv1.weight': np.zeros((64, 3, 3, 3), np.float32)})
    state['dc7.weight'] = np.zeros((128, 3, 4, 4), np.float32)
    state['extractor.enc_1.0.weight'] = np.zeros((64, 3, 3, 3), np.float32)  # a VGG tensor
    with pytest.raises(ValueError, match='not lbam_official weights'):
        convert('lbam_official', state)


def test_converter_is_registered():
    assert SOURCES['lbam_official'].function is convert_official
    assert SOURCES['lbam_official'].model == LBAM.NAME
