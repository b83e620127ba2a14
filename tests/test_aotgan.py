"""AOT-GAN: parameter counts, AOT block and loss formulas, resize, parity with the official
PyTorch code and PaddleGAN's port (fixtures: tests/fixtures/README.md), critic isolation."""
import json
import zlib
from pathlib import Path

import numpy as np
import paddle
import pytest
from safetensors.numpy import save_file

import conftest
from models import build
from models.aotgan import AOTBlock, gate_norm, gaussian_blur, gaussian_kernel1d
from models.base import count_parameters
from models.ops import resize_bilinear_align_corners
from training.step import train_step
from weights.checkpoint import load_model_state
from weights.convert import SOURCES
from weights.convert.aotgan import convert_aotgan
from weights.features import load_feature_weights

FIXTURES = Path(__file__).resolve().parent / 'fixtures'


def tiny(seed=0, **extra):
    return conftest.tiny('aotgan', seed, **extra)


def rule(name, shape, gain=1.0, bias_std=0.1):
    """The fixtures' weight rule (README): normal, seeded by the reference parameter name."""
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    x = rng.standard_normal(shape)
    if name.endswith(('weight_u', 'weight_v')):
        x = x / np.linalg.norm(x)
    elif len(shape) > 1:
        x = x * gain / np.sqrt(np.prod(shape[1:]))
    else:
        x = x * bias_std
    return x.astype(np.float32)


def close(ours, ref, tol=1e-4):
    """max|ours - ref| <= tol * max|ref|."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    assert err <= tol, f'relative error {err:.2e}'
    return err


# ----------------------------------------------------------------------------- architecture
def test_parameter_counts_match_the_official_model():
    model = build('aotgan', {})
    assert count_parameters(model.netG) == 15_200_835
    assert count_parameters(model.netD) == 2_763_777
    assert len(model.netG.state_dict()) == 108 and len(model.netD.state_dict()) == 14
    assert model.netD(paddle.zeros([1, 3, 128, 128])).shape == [1, 1, 14, 14]  # H/8 - 2


def test_gate_norm_uses_the_unbiased_std_per_channel():
    x = np.random.RandomState(0).randn(2, 3, 4, 5).astype('float32')
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = x.std(axis=(2, 3), ddof=1, keepdims=True) + 1e-9
    expected = 5 * (2 * (x - mean) / std - 1)
    assert np.allclose(gate_norm(paddle.to_tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_aot_block_is_a_gated_residual_of_dilated_branches():
    paddle.seed(0)
    block = AOTBlock(8, (1, 2, 4, 8))
    x = paddle.randn([1, 8, 12, 12])
    with paddle.no_grad():
        g = paddle.nn.functional.sigmoid(gate_norm(block.gate(x)))
        fused = block.fuse(paddle.concat(
            [paddle.nn.functional.relu(getattr(block, f'block{i:02d}')(x)) for i in range(4)], 1))
        expected = x * (1 - g) + fused * g
        assert np.allclose(block(x).numpy(), expected.numpy(), atol=1e-6)
    assert [getattr(block, f'block{i:02d}')._dilation for i in range(4)] == \
        [[1, 1], [2, 2], [4, 4], [8, 8]]
    assert block.block03._padding_mode == 'reflect' and block.block00.weight.shape == [2, 8, 3, 3]


def numpy_resize(x, size):
    """Naive align-corners bilinear resize, one output pixel at a time."""
    n, c, h, w = x.shape
    out = np.zeros((n, c) + tuple(size))
    for i in range(size[0]):
        for j in range(size[1]):
            y = i * (h - 1) / (size[0] - 1) if size[0] > 1 else 0.0
            z = j * (w - 1) / (size[1] - 1) if size[1] > 1 else 0.0
            y0, z0 = int(np.floor(y)), int(np.floor(z))
            y1, z1 = min(y0 + 1, h - 1), min(z0 + 1, w - 1)
            a, b = y - y0, z - z0
            out[:, :, i, j] = ((1 - a) * ((1 - b) * x[:, :, y0, z0] + b * x[:, :, y0, z1])
                               + a * ((1 - b) * x[:, :, y1, z0] + b * x[:, :, y1, z1]))
    return out


@pytest.mark.parametrize('in_hw,size', [((5, 7), (10, 14)), ((4, 6), (9, 13)), ((6, 6), (64, 64)),
                                        ((9, 8), (4, 3)), ((5, 5), (5, 5)), ((1, 3), (2, 6)),
                                        ((3, 4), (1, 1))])
def test_resize_bilinear_align_corners_matches_a_naive_loop(in_hw, size):
    x = np.random.RandomState(1).randn(2, 3, *in_hw).astype('float32')
    out = resize_bilinear_align_corners(paddle.to_tensor(x), size).numpy()
    assert out.shape == (2, 3) + size
    assert np.allclose(out, numpy_resize(x.astype(np.float64), size), atol=2e-6)
    ref = paddle.nn.functional.interpolate(paddle.to_tensor(x), size=list(size), mode='bilinear',
                                           align_corners=True)
    assert np.allclose(out, ref.numpy(), atol=2e-6)


def test_generator_exports_with_dynamic_sizes(tmp_path):
    """jit.save with free N, H, W (no F.interpolate in the graph) reproduces dygraph."""
    from paddle.static import InputSpec
    net = tiny().netG
    net.eval()
    spec = [InputSpec([None, 3, None, None], 'float32', 'image'),
            InputSpec([None, 1, None, None], 'float32', 'mask')]
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True),
                    str(tmp_path / 'aotgan'))
    graph = next(tmp_path / f'aotgan{ext}' for ext in ('.json', '.pdmodel')  # PIR or 2.6's
                 if (tmp_path / f'aotgan{ext}').exists())
    assert b'interp' not in graph.read_bytes()  # op names are plain strings in both formats
    loaded = paddle.jit.load(str(tmp_path / 'aotgan'))
    for n, h, w in [(1, 48, 64), (2, 40, 36)]:
        image = paddle.uniform([n, 3, h, w], min=-1, max=1)
        mask = (paddle.rand([n, 1, h, w]) > 0.7).astype('float32')
        with paddle.no_grad():
            assert np.allclose(loaded(image, mask).numpy(), net(image, mask).numpy(), atol=1e-5)


def test_too_small_inputs_and_bad_rates_raise_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match='at least 36'):
        model(paddle.zeros([1, 3, 32, 32]), paddle.zeros([1, 1, 32, 32]))
    with pytest.raises(ValueError, match='rates'):
        build('aotgan', {'cnum': 8, 'rates': [1, 2, 4]})
    with pytest.raises(ValueError, match='blur_ksize'):
        build('aotgan', {'cnum': 8, 'blur_ksize': 4})


def test_missing_vgg_file_names_the_key():
    model = build('aotgan', {'cnum': 8, 'block_num': 1, 'vgg_weights': '/nonexistent/vgg19.pth'})
    with pytest.raises(FileNotFoundError, match='vgg_weights: /nonexistent/vgg19.pth not found.*'
                                                'vgg19-dcbb9e9d.pth'):
        load_feature_weights(model)
    batch = dict(image=paddle.zeros([1, 3, 64, 64]), mask=paddle.ones([1, 1, 64, 64]))
    with pytest.raises(RuntimeError, match='vgg_weights: the VGG19 features are not loaded'):
        model.g_loss(batch, model(batch['image'], batch['mask']))


# ----------------------------------------------------------------------------- losses
def test_gaussian_blur_is_the_official_zero_padded_kernel():
    taps = gaussian_kernel1d(7, 2.0)
    assert taps.sum() == pytest.approx(1.0) and np.allclose(taps, taps[::-1])
    assert taps[3] / taps[1] == pytest.approx(np.exp(4 / 8))
    mask = np.zeros((1, 1, 9, 10), np.float32)
    mask[0, 0, 2:6, 3:9] = 1
    kernel = np.outer(taps, taps)
    padded = np.pad(mask[0, 0], 3)
    expected = np.array([[(padded[i:i + 7, j:j + 7] * kernel).sum() for j in range(10)]
                         for i in range(9)])
    out = gaussian_blur(paddle.to_tensor(mask), 7, 2.0).numpy()[0, 0]
    assert np.allclose(out, expected, atol=1e-6)


def test_critic_and_adversarial_losses_follow_their_formulas(batch_factory):
    model = tiny()
    model.eval()  # fixed spectral-norm u: the critic is a deterministic function
    batch = batch_factory(model.cfg)
    out = model(batch['image'], batch['mask'])
    with paddle.no_grad():
        real = model.critic_map(batch['image']).numpy()
        fake = model.critic_map(out['composite']).numpy()
    mask = batch['mask'].numpy()
    target = gaussian_blur(batch['mask'], 71, 10.0).numpy()
    _, logs = model.d_loss(batch, out)
    assert float(logs['d_real']) == pytest.approx((real ** 2).mean(), rel=1e-4)
    assert float(logs['d_fake']) == pytest.approx(((fake - target) ** 2).mean(), rel=1e-4)
    _, logs = model.g_loss(batch, out)
    hole = np.broadcast_to(mask, fake.shape)
    assert float(logs['g_adv']) == pytest.approx((fake ** 2 * hole).mean() / hole.mean(), rel=1e-4)
    model.cfg['official_g_adv'] = True
    _, logs = model.g_loss(batch, out)
    assert float(logs['g_adv']) == pytest.approx(((fake - 1) ** 2).mean(), rel=1e-4)


def test_generator_loss_leaves_no_gradient_on_the_critic(batch_factory):
    """The official trainer lets G's adversarial loss write D's gradients; train.py must not."""
    model = tiny()
    batch = batch_factory(model.cfg)
    loss, _ = model.g_loss(batch, model(batch['image'], batch['mask']))
    loss.backward()  # no freezing: the critic collects gradient (what the reference steps)
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0
               for p in model.netD.parameters())
    model = tiny()
    opts = model.make_optimizers()
    d_before = {k: v.numpy().copy() for k, v in model.netD.named_parameters()}
    train_step(model, opts['optG'], opts['optD'], lambda: batch, 0)  # generator step only
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in model.netD.parameters())
    assert all(np.array_equal(d_before[k], v.numpy()) for k, v in model.netD.named_parameters())
    loss_d, _ = model.d_loss(batch, model(batch['image'], batch['mask']))
    model.netG.clear_gradients()
    loss_d.backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in model.netG.parameters())


# ----------------------------------------------------------------------------- parity
def official():
    ref = np.load(FIXTURES / 'parity_aotgan_official.npz')
    return ref, json.loads(str(ref['names']))


def reference_state(names, ref, converged=True):
    """Rule weights under the reference names; with ``converged``, spectral-norm u, v after the
    fixture's 50 power iterations (else the rule's, as the reference started from)."""
    state = {k: rule(k, tuple(shape)) for k, shape in names['G'] + names['D']}
    for key in state:
        if converged and key.endswith(('weight_u', 'weight_v')):
            state[key] = ref[key]
    return state


def converted_model(source, state, **cfg):
    params, overrides = SOURCES[source].function(state)
    assert overrides == {'cnum': 64, 'block_num': 8, 'd_cnum': 64}
    model = build('aotgan', {**overrides, **cfg})
    load_model_state(model, {'model/' + k: v for k, v in params.items()}, source)
    model.eval()
    return model


def test_official_generator_and_critic_parity():
    ref, names = official()
    model = converted_model('aotgan_official', reference_state(names, ref))
    image, mask = paddle.to_tensor(ref['image']), paddle.to_tensor(ref['mask'])
    with paddle.no_grad():
        out = model(image, mask)
        close(out['pred'].numpy(), ref['pred'])
        close(model.netD(image).numpy(), ref['d_real'])
        close(model.netD(out['composite']).numpy(), ref['d_fake'])
        close(gaussian_blur(mask).numpy(), ref['blur'], 1e-5)
        _, d_logs = model.d_loss(dict(image=image, mask=mask), out)
    assert float(d_logs['d']) == pytest.approx(float(ref['smgan_d']), rel=1e-4)


def test_official_losses_parity(tmp_path):
    """L1, perceptual, style and the official adversarial term on the reference's own output."""
    ref, names = official()
    vgg = {k: rule(k, tuple(shape), np.sqrt(2), 0.01) for k, shape in names['VGG']}
    save_file(vgg, str(tmp_path / 'vgg19-rule.safetensors'))
    model = converted_model('aotgan_official', reference_state(names, ref),
                            vgg_weights=str(tmp_path / 'vgg19-rule.safetensors'),
                            official_g_adv=True)
    load_feature_weights(model)
    image, mask, pred = (paddle.to_tensor(ref[k]) for k in ('image', 'mask', 'pred'))
    out = dict(pred=pred, composite=model.composite(pred, image, mask))
    _, logs = model.g_loss(dict(image=image, mask=mask), out)
    for ours, theirs in [('g_l1', 'l1'), ('g_perceptual', 'perceptual'), ('g_style', 'style'),
                         ('g_adv', 'smgan_g')]:
        assert float(logs[ours]) == pytest.approx(float(ref[theirs]), rel=1e-4), ours


def test_spectral_norm_power_iteration_matches_torch():
    """One training forward from the same u, v: same scores and same updated u, v."""
    ref, names = official()
    state = reference_state(names, ref, converged=False)
    model = converted_model('aotgan_official', state)
    model.netD.train()
    with paddle.no_grad():
        close(model.netD(paddle.to_tensor(ref['image'])).numpy(), ref['d_real_train'])
    for i in range(4):
        layer = getattr(model.netD, f'conv{i + 1}')
        close(layer.weight_u.numpy(), ref[f'train.conv.{2 * i}.weight_u'], 1e-5)
        close(layer.weight_v.numpy(), ref[f'train.conv.{2 * i}.weight_v'], 1e-5)


def test_paddlegan_port_parity():
    ref, names = official()
    pg = np.load(FIXTURES / 'parity_aotgan_paddlegan.npz')
    state = {'netG.' + k if k.startswith(('encoder', 'middle', 'decoder')) else 'netD.' + k: v
             for k, v in reference_state(names, ref).items()}  # a PaddleGAN training file
    model = converted_model('paddlegan_aotgan', state)
    image, mask = paddle.to_tensor(ref['image']), paddle.to_tensor(ref['mask'])
    with paddle.no_grad():
        out = model(image, mask)
        close(out['pred'].numpy(), pg['pred'])
        close(model.netD(image).numpy(), pg['d_real'])
        close(model.netD(out['composite']).numpy(), pg['d_fake'])


def test_converter_maps_every_key_and_rejects_foreign_weights():
    ref, names = official()
    shapes = dict(names['G'] + names['D'])
    state = {'module.' + k: np.zeros(shape, np.float32) for k, shape in shapes.items()}
    params, cfg = convert_aotgan(state)
    assert len(params) == 122 and cfg == {'cnum': 64, 'block_num': 8, 'd_cnum': 64}
    assert params['netG.middle.7.block03.weight'].shape == (64, 256, 3, 3)
    assert params['netD.conv4.weight_v'].shape == (4096,)
    assert set(params) == set(build('aotgan', {}).state_dict())
    with pytest.raises(ValueError, match='unexpected keys'):
        convert_aotgan({'features.0.weight': np.zeros((64, 3, 3, 3), np.float32)})
    with pytest.raises(ValueError, match='no AOT-GAN weights found'):
        convert_aotgan({})
