"""GLCIC: paper sizes, the three training phases, losses, input encodings, optimizer, mean colour,
post-processing, the otenim converter and parity with otenim's networks (fixtures)."""
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from conftest import ROOT, make_batch
from inference.postprocess import glcic_blend, postprocess
from models import build
from models.glcic import GLCIC, MEAN_SAMPLES, masked_mse
from training.step import train_step
from weights.checkpoint import load_model_state, read_checkpoint, save_checkpoint
from weights.convert.glcic import convert_otenim

FIXTURES = Path(__file__).parent / 'fixtures'
BN_STATS = ('._mean', '._variance')


def tiny(**cfg):
    paddle.seed(0)
    with paddle.utils.unique_name.guard():
        return build('glcic', {**GLCIC.TINY, **cfg})


def trainable_count(layer):
    """Parameters without BN running statistics (Paddle registers those as parameters)."""
    return sum(int(p.numel()) for n, p in layer.named_parameters() if not n.endswith(BN_STATS))


def weights(layer):
    return {n: p.numpy().copy() for n, p in layer.named_parameters() if not n.endswith(BN_STATS)}


def softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def test_parameter_counts_match_the_paper_layout():
    model = build('glcic', {})
    assert trainable_count(model.netG) == 6_072_131
    assert trainable_count(model.netD) == 45_063_681
    assert trainable_count(model.netD.local_d) == 19_253_248
    assert trainable_count(model.netD.global_d) == 25_808_384


def test_completion_network_table():
    g = tiny().netG
    for i, rate in zip(range(7, 11), (2, 4, 8, 16)):
        conv = getattr(g, f'conv{i}')
        assert conv._dilation == [rate, rate] and conv._padding == rate
    assert [getattr(g, f'conv{i}')._stride for i in (2, 4)] == [[2, 2], [2, 2]]
    assert g.conv1._kernel_size == [5, 5] and g.conv1._in_channels == 4
    feats = {}
    g.conv12.register_forward_post_hook(lambda layer, inp, out: feats.setdefault('mid', out))
    image, mask = paddle.zeros([1, 3, 40, 24]), paddle.zeros([1, 1, 40, 24])
    assert g(image, mask).shape == [1, 3, 40, 24]
    assert feats['mid'].shape == [1, 4 * 8, 10, 6]  # 4 * cnum channels at H/4


def test_phases_follow_the_fractions_and_need_no_state():
    model = tiny(max_iters=1000, phase1_frac=0.18, phase2_frac=0.02)
    expected = {0: (0, True, 1), 179: (0, True, 1), 180: (1, False, 2), 199: (1, False, 2),
                200: (1, True, 3), 999: (1, True, 3)}
    assert {it: model.schedule(it) for it in expected} == expected
    resumed = tiny(max_iters=1000)  # train.py --resume calls schedule(it) at the resume point
    assert resumed.schedule(190) == (1, False, 2)


def test_generator_loss_per_phase():
    model = tiny(gan_alpha=0.25)
    batch = make_batch(model.cfg)
    out = model(batch['image'], batch['mask'])
    image, mask, pred = batch['image'].numpy(), batch['mask'].numpy(), out['pred'].numpy()
    mse = np.mean(((pred - image) * mask / 2) ** 2)  # [0, 1] units
    phase = model.schedule(0)[2]  # max_iters 2: phase 1 is empty, iteration 0 is already joint
    assert phase == 3
    loss, logs = model.g_loss(batch, out, phase)
    logits = model.score(batch, out['composite']).numpy()
    expected = mse + 0.25 * softplus(-logits).mean()  # BCE against "real"
    assert np.isclose(float(loss), expected, rtol=1e-5)
    assert np.isclose(float(logs['g_mse']), mse, rtol=1e-5) and float(logs['phase']) == 3
    assert float(model.g_loss(batch, out)[0]) == float(loss)  # no phase given: the joint one
    loss, logs = model.g_loss(batch, out, phase=1)
    assert np.isclose(float(loss), mse, rtol=1e-5) and 'g_adv' not in logs
    loss.backward()
    assert all(p.grad is None for p in model.netD.parameters())
    assert np.isclose(float(masked_mse(batch['image'], out['pred'], batch['mask'])), mse)


def test_discriminator_loss_is_weighted_by_alpha_only_in_the_joint_phase():
    model = tiny(gan_alpha=0.25)
    batch = make_batch(model.cfg, per_sample=True)
    with paddle.no_grad():
        out = model(batch['image'], batch['mask'])
    real = model.score(batch, batch['image']).numpy()
    fake = model.score(batch, out['composite']).numpy()
    bce = (softplus(-real).mean() + softplus(fake).mean()) / 2
    loss2, logs = model.d_loss(batch, out, phase=2)
    loss3, _ = model.d_loss(batch, out, phase=3)
    assert np.isclose(float(loss2), bce, rtol=1e-5) and np.isclose(float(loss3), 0.25 * bce,
                                                                      rtol=1e-5)
    assert np.isclose(float(logs['d_real']), (1 / (1 + np.exp(-real))).mean(), rtol=1e-5)


def test_discriminators_score_the_patch_at_bbox_and_check_sizes():
    model = tiny()
    batch = make_batch(model.cfg, per_sample=True)
    image = batch['image']
    x = (image + 1) / 2
    patches = paddle.concat([x[i:i + 1, :, t:t + 32, left:left + 32]
                             for i, (t, left, _, _) in enumerate(batch['bbox'].tolist())])
    model.eval()
    with paddle.no_grad():
        assert np.allclose(model.score(batch, image).numpy(), model.netD(patches, x).numpy())
        assert model.score(batch, image).shape == [2, 1]
        with pytest.raises(ValueError, match='built for 32x32'):
            model.netD(x, x)


@pytest.mark.parametrize('encoding', ['centered', 'filled'])
def test_network_input_encodings(encoding):
    model = tiny(input_encoding=encoding)
    model.netG.mean.set_value(paddle.to_tensor([0.2, -0.4, 0.6]))
    batch = make_batch(model.cfg)
    image, mask = batch['image'], batch['mask']
    x = model.netG.encode(image, mask).numpy()
    x01, m = (image.numpy() + 1) / 2, mask.numpy()
    mean01 = np.array([0.6, 0.3, 0.8], np.float32).reshape(1, 3, 1, 1)
    if encoding == 'centered':  # inpaint.lua: mean removed, holes 0
        expected = (x01 - mean01) * (1 - m)
    else:  # otenim: holes filled with the mean colour
        expected = x01 * (1 - m) + mean01 * m
    assert np.allclose(x[:, :3], expected, atol=1e-6) and np.array_equal(x[:, 3:], m)
    with pytest.raises(ValueError, match='input_encoding'):
        tiny(input_encoding='zero')


def test_bn_order_switch():
    a, b = tiny(bn_order='bn_relu'), tiny(bn_order='relu_bn')
    b.set_state_dict(a.state_dict())
    a.eval()
    b.eval()
    for bn in (a.netG.bn1, b.netG.bn1):  # non-trivial eval statistics
        bn._mean.set_value(paddle.full_like(bn._mean, 0.3))
        bn.bias.set_value(paddle.full_like(bn.bias, -0.2))
    x = paddle.uniform([1, 4, 16, 16])
    g = a.netG
    assert np.allclose(a.netG.block(g.conv1, g.bn1, x).numpy(),
                       F.relu(g.bn1(g.conv1(x))).numpy())
    assert np.allclose(b.netG.block(g.conv1, g.bn1, x).numpy(),
                       g.bn1(F.relu(g.conv1(x))).numpy())
    assert (b.netG.block(g.conv1, g.bn1, x).numpy() < 0).any()  # BN last: not a ReLU output
    with pytest.raises(ValueError, match='bn_order'):
        tiny(bn_order='relu_bn_relu')


def test_prepare_data_sets_the_mean_colour_from_a_bounded_sample(tmp_path):
    class Colours:
        """A dataset whose items are constant-colour images; counts the reads."""

        def __init__(self, n):
            self.n, self.reads = n, 0

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            self.reads += 1
            colour = np.array([-1.0, 0.0, 1.0]) * (1 if i % 2 else 0.5)
            return dict(image=np.broadcast_to(colour[:, None, None], (3, 8, 8)).astype('float32'))

    model = tiny()
    small = Colours(4)
    model.prepare_data(small)
    assert small.reads == 4 and np.allclose(model.netG.mean.numpy(), [-0.75, 0, 0.75])
    big = Colours(10 * MEAN_SAMPLES)
    model.prepare_data(big)
    assert big.reads == MEAN_SAMPLES and np.allclose(model.netG.mean.numpy(), [-0.75, 0, 0.75],
                                                     atol=1e-3)
    path = tmp_path / 'ckpt.safetensors'
    save_checkpoint(path, model, {}, dict(model='glcic', iteration=0))
    fresh = tiny()
    load_model_state(fresh, read_checkpoint(path)[0], path)
    assert np.array_equal(fresh.netG.mean.numpy(), model.netG.mean.numpy())


def test_adadelta_with_torch_settings():
    model = tiny()
    opts = model.make_optimizers()
    assert all(isinstance(o, paddle.optimizer.Adadelta) for o in opts.values())
    batch = make_batch(model.cfg)
    loss, _ = model.g_loss(batch, model(batch['image'], batch['mask']), phase=1)
    loss.backward()
    bias = model.netG.conv17.bias
    before, grad = bias.numpy().copy(), bias.grad.numpy().copy()
    opts['optG'].step()
    # torch.optim.Adadelta defaults: lr 1.0, rho 0.9, eps 1e-6, first step from zero state
    delta = np.sqrt(1e-6) / np.sqrt(0.1 * grad ** 2 + 1e-6) * grad
    assert np.allclose(bias.numpy(), before - 1.0 * delta, rtol=1e-5, atol=1e-9)


def test_training_phases_touch_the_right_network(batch_factory):
    """Phase 1 trains only the completion network, phase 2 only the discriminators (netG's
    weights fixed), phase 3 both; train.py's loop calls schedule(it) each iteration."""
    model = tiny(max_iters=6, phase1_frac=0.34, phase2_frac=0.34)  # phases 0-1, 2-3, 4-5
    opts = model.make_optimizers()
    counter = iter(range(100))
    next_batch = lambda: batch_factory(model.cfg, seed=next(counter))  # noqa: E731
    changed = []
    for it in range(6):
        g0, d0 = weights(model.netG), weights(model.netD)
        d_steps, g_step, phase = model.schedule(it)
        train_step(model, opts['optG'], opts['optD'], next_batch, d_steps, it, '.', g_step, phase)
        g1, d1 = weights(model.netG), weights(model.netD)
        changed.append((any(not np.array_equal(g0[k], g1[k]) for k in g0),
                        any(not np.array_equal(d0[k], d1[k]) for k in d0)))
    assert changed == [(True, False)] * 2 + [(False, True)] * 2 + [(True, True)] * 2


@pytest.mark.slow
def test_resume_continues_the_phases_exactly(tmp_path):
    """Phases 1, 2, 3, 3 over 4 iterations; resuming the iteration-2 checkpoint (phase 3 next)
    ends with the same weights as the uninterrupted run."""
    from data.io import save_image
    rng = np.random.RandomState(0)
    for i in range(4):
        save_image(tmp_path / 'data' / f'{i}.png', (rng.rand(72, 80, 3) * 255).astype(np.uint8))
    tiny_keys = [f'--{k}={v}' for k, v in GLCIC.TINY.items() if k != 'max_iters']
    common = ['--model', 'glcic', '--data', str(tmp_path / 'data'), '--checkpoints_dir',
              str(tmp_path), '--max_iters', '4', '--phase1_frac', '0.25', '--phase2_frac', '0.25',
              '--ckpt_interval', '2', '--val_count', '0', '--num_workers', '0', '--device', 'cpu',
              *tiny_keys]
    script = [sys.executable, str(ROOT / 'train.py')]  # fresh processes, as a real resume
    subprocess.run(script + common + ['--run_name', 'full'], check=True, capture_output=True)
    (tmp_path / 'resumed').mkdir()
    middle = tmp_path / 'resumed' / 'iter_0000002.safetensors'
    middle.write_bytes((tmp_path / 'full' / 'iter_0000002.safetensors').read_bytes())
    subprocess.run(script + ['--resume', str(middle)], check=True, capture_output=True)
    full = read_checkpoint(tmp_path / 'full' / 'iter_0000004.safetensors')[0]
    resumed = read_checkpoint(tmp_path / 'resumed' / 'iter_0000004.safetensors')[0]
    assert set(full) == set(resumed)
    assert all(np.allclose(full[k], resumed[k], atol=1e-6) for k in full)
    log = (tmp_path / 'full' / 'log.txt').read_text()
    assert 'g_mse' in log and 'd_bce' in log


# ----------------------------------------------------------------------------- post-processing
def test_glcic_postprocess_keeps_known_pixels_and_stays_aligned():
    yy, xx = np.mgrid[0:48, 0:64]
    image = np.stack([xx * 3, yy * 4, xx + yy], -1).clip(0, 255).astype(np.uint8)
    for top, left, h, w in [(10, 12, 16, 20), (11, 13, 15, 21), (0, 0, 20, 30)]:
        mask = np.zeros((48, 64), np.float32)
        mask[top:top + h, left:left + w] = 1
        dotted = image.copy()
        dotted[top + 5, left + 7] = 255  # a bright dot the network "painted"
        out = glcic_blend(dotted, mask)
        known = mask == 0
        assert np.array_equal(out[known], dotted[known])
        diff = out.astype(int) - glcic_blend(image, mask).astype(int)
        # the dot comes back where it was painted (the references shift even-sized boxes by 1)
        assert np.unravel_index(np.abs(diff).sum(-1).argmax(), mask.shape) == (top + 5, left + 7)
    assert postprocess('none', image, mask) is image
    with pytest.raises(ValueError, match='postprocess'):
        postprocess('poisson', image, mask)


def test_glcic_postprocess_blends_colour_offsets():
    """A hole filled 40 levels too bright on a smooth image: Poisson blending matches the
    surroundings, so the result is far closer to the truth than the raw composite."""
    yy, xx = np.mgrid[0:64, 0:64]
    truth = np.stack([100 + xx, 80 + yy, 120 + (xx - yy) // 2], -1).astype(np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:44, 16:40] = 1
    composite = np.where(mask[..., None] > 0, truth + 40, truth).astype(np.uint8)
    out = glcic_blend(composite, mask)
    hole = mask > 0
    assert np.abs(out[hole].astype(int) - truth[hole]).mean() < 4
    assert np.abs(composite[hole].astype(int) - truth[hole]).mean() == 40


def run_test_py(*args):
    proc = subprocess.run([sys.executable, str(ROOT / 'test.py'), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_test_script_postprocess_flag_in_both_modes(tmp_path):
    model = tiny()
    model.prepare_data([dict(image=np.zeros((3, 4, 4), np.float32))])
    ckpt = tmp_path / 'glcic.safetensors'
    save_checkpoint(ckpt, model, {}, dict(model='glcic', config=model.cfg, iteration=0))
    args = ['--checkpoint', str(ckpt), '--data', 'builtin:val', '--count', '2', '--device', 'cpu']
    for method in ('none', 'glcic'):
        run_test_py(*args, '--postprocess', method, '--out_dir', tmp_path / method)
        text = (tmp_path / method / 'metrics.txt').read_text()
        assert f'postprocess {method}' in text
    composites = sorted((tmp_path / 'glcic' / 'composites').glob('*.png'))
    plain = sorted((tmp_path / 'none' / 'composites').glob('*.png'))
    assert len(composites) == 2 and any(a.read_bytes() != b.read_bytes()
                                        for a, b in zip(composites, plain))
    from data.io import save_image
    photo = (np.random.RandomState(0).rand(30, 42, 3) * 255).astype(np.uint8)
    hole = np.zeros((30, 42), np.uint8)
    hole[8:20, 10:30] = 255
    save_image(tmp_path / 'photo.png', photo)
    save_image(tmp_path / 'hole.png', np.repeat(hole[..., None], 3, axis=2))
    run_test_py('--checkpoint', ckpt, '--image', tmp_path / 'photo.png', '--mask',
                tmp_path / 'hole.png', '--output', tmp_path / 'out.png', '--postprocess', 'glcic',
                '--device', 'cpu')
    from data.io import read_image
    result = read_image(tmp_path / 'out.png')
    assert np.array_equal(result[hole == 0], photo[hole == 0])


# ----------------------------------------------------------------------------- converter, parity
def rule(name, shape):
    """The fixture's weight rule (tests/fixtures/README.md): keyed by otenim's names."""
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    leaf = name.rsplit('.', 1)[-1]
    if leaf == 'num_batches_tracked':
        return np.zeros(shape, np.int64)
    if leaf == 'running_var':
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if leaf in ('running_mean', 'bias'):
        return (0.1 * rng.randn(*shape)).astype(np.float32)
    if len(shape) == 1:  # BN scale
        return (1 + 0.1 * rng.randn(*shape)).astype(np.float32)
    return (rng.randn(*shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)


def rule_state(fixture):
    return {name: rule(name, tuple(shape)) for name, shape in json.loads(str(fixture['names']))}


def converted_model(state, **extra):
    params, config = convert_otenim(state)
    paddle.seed(0)
    model = build('glcic', {**config, **extra})
    for prefix, layer in (('netG.', model.netG), ('netD.', model.netD)):
        own = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        if own:
            assert set(own) == set(layer.state_dict()), prefix
            layer.set_state_dict({k: paddle.to_tensor(v) for k, v in own.items()})
    model.eval()
    return model, params, config


def assert_close(ours, ref):
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()


def test_parity_with_otenim_completion_network():
    fixture = np.load(FIXTURES / 'parity_glcic_cn.npz')
    state = rule_state(fixture)
    assert len(state) == 114
    small_d = dict(d_cnum=8, d_fc=32, local_convs=3, global_convs=4, image_size=64, bbox_size=32)
    model, params, config = converted_model({**state, 'mpv': fixture['mpv']}, **small_d)
    assert config == dict(bn_order='relu_bn', input_encoding='filled', cnum=64)
    assert np.allclose(params['netG.mean'], 2 * fixture['mpv'] - 1)
    image = paddle.to_tensor(2 * fixture['image01'] - 1)
    mask = paddle.to_tensor(fixture['mask'])
    with paddle.no_grad():
        pred = model(image, mask)['pred'].numpy()
        logits = model.netG(image, mask, logits=True).numpy()
    assert_close(logits, fixture['logits'])
    assert_close((pred + 1) / 2, fixture['output'])
    with pytest.raises(ValueError, match='mpv'):
        convert_otenim(state)


def test_conversion_through_the_strict_framework(tmp_path):
    """tools/convert_weights.py's path: model_cn + otenim's config.json (its numbers are read,
    the mean among them); the critic freshly initialised and recorded as such."""
    from weights.convert import convert_files
    fixture = np.load(FIXTURES / 'parity_glcic_cn.npz')
    np.savez(tmp_path / 'model_cn.npz', **rule_state(fixture))
    import json
    settings = dict(mpv=fixture['mpv'].tolist(), ld_input_size=32, cn_input_size=64,
                    data_dir='/data/celeba', arc='celeba', optimizer='adadelta', init_model_cn=None,
                    bsize=16, alpha=4e-4, steps_1=90000)  # otenim's config.json keeps all args
    (tmp_path / 'config.json').write_text(json.dumps(settings))
    model, info = convert_files('otenim_glcic',
                                [tmp_path / 'model_cn.npz', tmp_path / 'config.json'],
                                tmp_path / 'otenim.safetensors')
    assert info['initialised'] == ['netD'] and model.cfg['image_size'] == 64
    assert model.cfg['bn_order'] == 'relu_bn' and model.cfg['input_encoding'] == 'filled'
    loaded = build('glcic', read_checkpoint(tmp_path / 'otenim.safetensors')[1]['config'])
    load_model_state(loaded, read_checkpoint(tmp_path / 'otenim.safetensors')[0])
    assert np.allclose(loaded.netG.mean.numpy(), 2 * fixture['mpv'] - 1)
    with pytest.raises(ValueError, match='mpv'):
        convert_files('otenim_glcic', [tmp_path / 'model_cn.npz'], tmp_path / 'x.safetensors')


@pytest.mark.slow
def test_parity_with_otenim_context_discriminator():
    """Paper layout (otenim arc 'places2': 5 local, 6 global convs) at 32 / 64 inputs."""
    fixture = np.load(FIXTURES / 'parity_glcic_cd.npz')
    model, params, config = converted_model(rule_state(fixture), cnum=8)
    assert config == dict(bn_order='relu_bn', input_encoding='filled', d_cnum=64, d_fc=1024,
                          local_convs=5, bbox_size=32, global_convs=6, image_size=64)
    image = paddle.to_tensor(2 * fixture['image01'] - 1)
    with paddle.no_grad():
        logits = model.score(dict(bbox=fixture['bbox']), image).numpy()
        local = model.netD.local_d(paddle.to_tensor(
            np.stack([fixture['image01'][i, :, t:t + 32, left:left + 32]
                      for i, (t, left, _, _) in enumerate(fixture['bbox'])]))).numpy()
        glob = model.netD.global_d(paddle.to_tensor(fixture['image01'])).numpy()
    assert_close(local, fixture['local_features'])
    assert_close(glob, fixture['global_features'])
    assert_close(logits, fixture['logits'])
    assert_close(1 / (1 + np.exp(-logits)), fixture['prob'])


def test_converter_reads_otenims_celeba_layout_and_config_json():
    """otenim's default arc ('celeba': 5 global convs, linear6) from its run's config.json."""
    ours = tiny(global_convs=5, local_convs=3, image_size=64, bbox_size=32)
    inverse = {'netD.local_d.': 'model_ld.', 'netD.global_d.': 'model_gd.',
               'netD.linear.': 'linear1.', 'netG.': ''}
    state = {}
    for key, value in ours.state_dict().items():
        if key == 'netG.mean':
            continue
        prefix = next(p for p in inverse if key.startswith(p))
        name = inverse[prefix] + key[len(prefix):]
        name = name.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        value = value.numpy()
        state[name] = value.T if '.linear' in key or key.startswith('netD.linear') else value
        if name.endswith('running_var'):
            state[name.replace('running_var', 'num_batches_tracked')] = np.array(7)
    assert 'model_gd.linear6.weight' in state and 'model_gd.conv5.weight' in state
    config_json = dict(mpv=[0.5, 0.4, 0.3], cn_input_size=64, ld_input_size=32, hole_min_w=16,
                       hole_min_h=20, bsize=16, alpha=4e-4, steps_1=90000)  # numeric entries
    state.update({k: np.asarray(v) for k, v in config_json.items()})
    params, config = convert_otenim(state)
    assert set(params) == set(ours.state_dict())
    assert all(params[k].shape == tuple(v.shape) for k, v in ours.state_dict().items())
    assert np.array_equal(params['netD.linear.weight'], ours.netD.linear.weight.numpy())
    assert config == dict(bn_order='relu_bn', input_encoding='filled', cnum=8, d_cnum=8,
                          d_fc=32, local_convs=3, bbox_size=32, global_convs=5, image_size=64,
                          max_delta=16)
