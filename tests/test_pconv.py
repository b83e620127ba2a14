"""PConv: the partial convolution against a naive loop, the U-Net table and its parameter counts,
the loss formula, the two-stage schedule, and parity with naoto0804's PyTorch port."""
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import paddle
import pytest

import conftest
from conftest import random_vgg_file
from models.losses import dilated_hole_tv
from models.pconv import PConv, PConvUNet, PartialConv2D
from training.config import resolve_config
from training.step import train_step
from weights.checkpoint import load_model_state, load_optimizer_state, read_checkpoint, \
    save_checkpoint
from weights.convert import SOURCES
from weights.convert.pconv import convert_naoto

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / 'tests' / 'fixtures' / 'parity_pconv_naoto.npz'


def count(layer):
    return sum(int(np.prod(p.shape)) for p in layer.parameters() if not p.stop_gradient)


def tiny(seed=0, **extra):
    return conftest.tiny('pconv', seed, **extra)


def naive_partial_conv(x, mask, w, b, stride):
    """The paper's definition, one window at a time (zero padding k//2; 1 = valid)."""
    _, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    p = k // 2
    xp, mp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))), np.pad(mask, ((0, 0), (0, 0), (p, p),
                                                                          (p, p)))
    ho, wo = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
    out, new_mask = np.zeros((x.shape[0], cout, ho, wo)), np.zeros((x.shape[0], 1, ho, wo))
    for n in range(x.shape[0]):
        for i in range(ho):
            for j in range(wo):
                win = np.s_[n, :, i * stride:i * stride + k, j * stride:j * stride + k]
                valid = mp[win].sum()
                if valid > 0:
                    for o in range(cout):
                        out[n, o, i, j] = (w[o] * xp[win] * mp[win]).sum() * cin * k * k / valid \
                            + (b[o] if b is not None else 0)
                    new_mask[n, 0, i, j] = 1
    return out, new_mask


def run_layer(layer, x, mask):
    out, new_mask = layer(paddle.to_tensor(x, 'float32'), paddle.to_tensor(mask, 'float32'))
    return out.numpy(), new_mask.numpy()


@pytest.mark.parametrize('stride,bias', [(1, True), (2, False), (1, False)])
def test_partial_conv_matches_the_definition_on_a_multichannel_mask(stride, bias):
    rng = np.random.RandomState(stride + 2 * bias)
    layer = PartialConv2D(2, 3, 3, stride, bias=bias)
    w = rng.randn(3, 2, 3, 3).astype('float32')
    b = rng.randn(3).astype('float32') if bias else None
    layer.weight.set_value(w)
    if bias:
        layer.bias.set_value(b)
    x = rng.randn(2, 2, 5, 5).astype('float32')
    mask = (rng.uniform(size=(2, 2, 5, 5)) > 0.5).astype('float32')  # channels differ
    mask[0, :, :4, :4] = 0  # a window with no valid input: output and new mask must be 0
    ref, ref_mask = naive_partial_conv(x, mask, w, b, stride)
    out, new_mask = run_layer(layer, x, mask)
    assert np.allclose(out, ref, atol=1e-5) and np.array_equal(new_mask, ref_mask)
    assert (ref_mask == 0).any() and np.all(out[np.broadcast_to(ref_mask == 0, out.shape)] == 0)


def test_one_channel_mask_is_shared_by_every_input_channel():
    rng = np.random.RandomState(0)
    layer = PartialConv2D(4, 2, 3, bias=True)
    x = rng.randn(1, 4, 6, 6).astype('float32')
    mask = (rng.uniform(size=(1, 1, 6, 6)) > 0.4).astype('float32')
    a, ma = run_layer(layer, x, mask)
    b, mb = run_layer(layer, x, np.repeat(mask, 4, axis=1))
    assert np.allclose(a, b, atol=1e-6) and np.array_equal(ma, mb)
    with pytest.raises(ValueError, match='mask has 3 channels'):
        run_layer(layer, x, np.ones((1, 3, 6, 6)))


def test_all_ones_mask_renormalises_borders_by_1_5_and_2_25():
    """Zero-padded mask: a 3x3 window sees 6 valid inputs on an edge and 4 in a corner."""
    layer = PartialConv2D(1, 1, 3)
    w = np.zeros((1, 1, 3, 3), 'float32')
    w[0, 0, 1, 1] = 1.0  # the output is then the ratio sum(1)/sum(M) itself
    layer.weight.set_value(w)
    out, new_mask = run_layer(layer, np.ones((1, 1, 5, 5)), np.ones((1, 1, 5, 5)))
    expected = np.ones((5, 5))
    expected[0, :] = expected[-1, :] = expected[:, 0] = expected[:, -1] = 1.5
    expected[0, 0] = expected[0, -1] = expected[-1, 0] = expected[-1, -1] = 2.25
    assert np.allclose(out[0, 0], expected, rtol=1e-6) and np.all(new_mask == 1)


def test_ones_kernel_is_neither_parameter_nor_checkpointed():
    layer = PartialConv2D(3, 8, 3, bias=True)
    assert sorted(layer.state_dict()) == ['bias', 'weight']
    assert len(layer.parameters()) == 2
    assert not any('ones' in k for k in PConvUNet(4, 8).state_dict())


def test_unet_table_and_parameter_counts():
    """naoto's PConvUNet: 25,779,796 trainable parameters at layer_size 7, 32,859,732 at 8."""
    net = PConvUNet(7, 64)
    assert count(net) == 25_779_796
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert shapes['enc_1.conv.weight'] == [64, 3, 7, 7] and net.enc_1.bn is None
    assert shapes['enc_2.conv.weight'] == [128, 64, 5, 5]
    assert shapes['enc_3.conv.weight'] == [256, 128, 5, 5]
    assert shapes['enc_7.conv.weight'] == [512, 512, 3, 3]
    assert shapes['dec_7.conv.weight'] == [512, 1024, 3, 3]
    assert shapes['dec_4.conv.weight'] == [256, 768, 3, 3]
    assert shapes['dec_2.conv.weight'] == [64, 192, 3, 3]
    assert shapes['dec_1.conv.weight'] == [3, 67, 3, 3] and shapes['dec_1.conv.bias'] == [3]
    assert net.dec_1.bn is None and net.dec_1.act is None
    assert [k for k in shapes if k.endswith('.bias') and '.conv.' in k] == ['dec_1.conv.bias']
    assert count(PConvUNet(8, 64)) == 32_859_732
    assert count(PConvUNet(4, 8)) == count(tiny().netG)


def test_size_checks_name_the_layer_size():
    model = tiny()
    assert model.SIZE_MULTIPLE == 16 and PConv.SIZE_MULTIPLE == 8  # per instance
    with pytest.raises(ValueError, match=r'multiples of 16.*layer_size = 4'):
        model(paddle.zeros([1, 3, 64, 56]), paddle.zeros([1, 1, 64, 56]))
    with pytest.raises(ValueError, match='image_size must be a multiple of 2\\^layer_size = 128'):
        PConv(image_size=192, vgg_weights='unused')
    with pytest.raises(ValueError, match='io_norm'):
        tiny(io_norm='torch')


def test_a_hole_with_no_valid_pixel_in_reach_stays_zero_until_the_mask_fills():
    """Masks shrink the hole by one kernel radius per level; the output mask is all ones."""
    net = PConvUNet(4, 8)
    net.eval()
    valid = np.ones((1, 1, 64, 64), 'float32')
    valid[:, :, 8:56, 8:56] = 0
    captured = {}
    net.enc_1.register_forward_post_hook(lambda layer, inp, out: captured.update(enc_1=out))
    with paddle.no_grad():
        _, final = net(paddle.rand([1, 3, 64, 64]) * paddle.to_tensor(valid),
                       paddle.to_tensor(valid))
    h, m = captured['enc_1']
    m = m.numpy()[0, 0]
    assert m[12, 12] == 0 and m[3, 3] == 1  # 7x7/s2: the hole shrinks by 3 input pixels
    assert np.all(h.numpy()[0][:, m == 0] == 0)  # ReLU(0) of an exact 0
    assert np.all(final.numpy() == 1)


def test_loss_is_the_papers_weighted_sum_on_the_unclipped_output(batch_factory):
    model = tiny(valid_alpha=1.5, hole_alpha=6.0, perceptual_alpha=0.5, style_alpha=2.0,
                 tv_alpha=0.25)
    # stand-in features (2 "layers") so the formula can be checked in numpy
    model.vgg = lambda x: [x, x[:, :, ::2, ::2] * 2.0]
    batch = batch_factory(model.cfg)
    out = model(batch['image'], batch['mask'])
    raw, pred = out['raw'].numpy(), out['pred'].numpy()
    assert np.abs(raw).max() > 1 and np.array_equal(pred, np.clip(raw, -1, 1))
    loss, logs = model.g_loss(batch, out)
    gt, m = batch['image'].numpy(), batch['mask'].numpy()
    comp = raw * m + gt * (1 - m)
    feats = lambda x: [x, x[:, :, ::2, ::2] * 2.0]  # noqa: E731

    def gram(f):
        n, c, h, w = f.shape
        f = f.reshape(n, c, h * w)
        return f @ f.transpose(0, 2, 1) / (c * h * w)

    perc = sum(np.abs(a - b).mean() for y in (raw, comp) for a, b in zip(feats(y), feats(gt)))
    style = sum(np.abs(gram(a) - gram(b)).mean()
                for y in (raw, comp) for a, b in zip(feats(y), feats(gt)))
    valid_l1 = np.abs((raw - gt) * (1 - m)).mean()
    hole_l1 = np.abs((raw - gt) * m).mean()
    tv = float(dilated_hole_tv(paddle.to_tensor(comp), batch['mask']))
    expected = 1.5 * valid_l1 + 6.0 * hole_l1 + 0.5 * perc + 2.0 * style + 0.25 * tv
    assert float(logs['g_hole']) == pytest.approx(hole_l1, rel=1e-5)
    assert float(logs['g_valid']) == pytest.approx(valid_l1, rel=1e-5)
    assert float(logs['g_perc']) == pytest.approx(perc, rel=1e-5)
    assert float(logs['g_style']) == pytest.approx(style, rel=1e-4)
    assert float(logs['g_tv']) == pytest.approx(tv, rel=1e-5) and tv > 0
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_io_norm_imagenet_is_the_same_network_on_normalised_values(batch_factory):
    model = tiny(io_norm='imagenet')
    model.eval()
    batch = batch_factory(model.cfg)
    image, mask = batch['image'], batch['mask']
    mean = np.array([0.485, 0.456, 0.406], 'float32').reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], 'float32').reshape(1, 3, 1, 1)
    x = ((image.numpy() + 1) / 2 - mean) / std
    valid = 1 - mask.numpy()
    with paddle.no_grad():
        raw = model(image, mask)['raw'].numpy()
        net, _ = model.netG(paddle.to_tensor(x * valid), paddle.to_tensor(valid))
    assert np.allclose(raw, (net.numpy() * std + mean) * 2 - 1, atol=1e-4)


def test_finetune_freezes_encoder_batchnorm_and_lowers_the_learning_rate(batch_factory):
    stage1 = tiny()
    assert stage1.train() is stage1
    assert stage1.make_optimizers()['optG'].get_lr() == pytest.approx(2e-4)
    model = tiny(finetune=True)
    assert model.make_optimizers()['optG'].get_lr() == pytest.approx(5e-5)
    assert model.train() is model
    model.eval()  # (returns None on Paddle 2.6 and 3.0)
    model.train()
    bns = {n: layer for n, layer in model.netG.named_sublayers()
           if isinstance(layer, paddle.nn.BatchNorm2D)}
    assert all(layer.training == n.startswith('dec_') for n, layer in bns.items())
    before = {n: layer._mean.numpy().copy() for n, layer in bns.items()}
    batch = batch_factory(model.cfg)
    loss, _ = model.g_loss(batch, model(batch['image'], batch['mask']))
    loss.backward()
    for n, layer in bns.items():
        frozen = np.array_equal(before[n], layer._mean.numpy())
        assert frozen == n.startswith('enc_'), n  # encoder stats frozen, decoder stats move
        assert layer.weight.grad is not None and float(layer.weight.grad.abs().sum()) > 0


def test_finetune_resume_keeps_adam_moments_at_the_new_rate(batch_factory, tmp_path):
    model = tiny(seed=1)
    opts = model.make_optimizers()
    next_batch = lambda: batch_factory(model.cfg, seed=3)  # noqa: E731
    train_step(model, opts['optG'], None, next_batch, 0)
    path = tmp_path / 'stage1.safetensors'
    save_checkpoint(path, model, opts, dict(model='pconv', config=model.cfg, iteration=1))
    tensors, state = read_checkpoint(path)
    finetune = tiny(seed=2, finetune=True)
    load_model_state(finetune, tensors, path)
    opt = finetune.make_optimizers()['optG']
    load_optimizer_state(opt, finetune, 'optG', tensors, state)
    assert opt.get_lr() == pytest.approx(5e-5)
    name = 'netG.dec_1.conv.weight'
    # accumulator suffixes (_moment1_0, _1, ...) depend on the process's unique-name counters
    (key,) = [k for k in tensors if k.startswith(f'optG/{name}:moment1')]
    saved = tensors[key]
    assert np.abs(saved).sum() > 0
    auto = dict(finetune.named_parameters())[name].name
    (restored,) = [v for k, v in opt.state_dict().items() if k.startswith(f'{auto}_moment1')]
    assert np.array_equal(restored.numpy(), saved)


def naoto_weights(fixture):
    """The fixture's documented rule (tests/fixtures/README.md), keyed by naoto's names."""
    state = {}
    for name, shape in zip(fixture['keys'], json.loads(str(fixture['shapes']))):
        rng = np.random.RandomState(zlib.crc32(str(name).encode()))
        if name.endswith('num_batches_tracked'):
            value = np.zeros(shape, np.int64)
        elif name.endswith('mask_conv.weight'):
            value = np.ones(shape)
        elif name.endswith('input_conv.weight'):
            value = rng.randn(*shape) * np.sqrt(np.prod(shape[1:]))
        elif name.endswith('running_var'):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith('bn.weight'):
            value = 1 + 0.1 * rng.randn(*shape)
        else:
            value = 0.1 * rng.randn(*shape)
        state[str(name)] = np.asarray(value).astype(value.dtype if value.dtype == np.int64
                                                    else np.float32)
    return state


@pytest.fixture(scope='module')
def naoto_state():
    return naoto_weights(np.load(FIXTURE))


def test_converter_maps_every_key_and_rejects_foreign_files(naoto_state):
    state = naoto_state
    params, config = convert_naoto(state)
    assert config == dict(layer_size=7, cnum=64, io_norm='imagenet', image_size=256)
    net = PConvUNet(7, 64)
    assert sorted('netG.' + k for k in net.state_dict()) == sorted(params)
    w = state['enc_2.conv.input_conv.weight']
    assert np.allclose(params['netG.enc_2.conv.weight'], w / (64 * 5 * 5))
    assert np.array_equal(params['netG.dec_1.conv.bias'], state['dec_1.conv.input_conv.bias'])
    assert np.array_equal(params['netG.enc_3.bn._variance'], state['enc_3.bn.running_var'])
    assert SOURCES['naoto_pconv'][:2] == ('pconv', convert_naoto)
    bad = dict(state, **{'enc_1.conv.mask_conv.weight': np.zeros((64, 3, 7, 7), 'float32')})
    with pytest.raises(ValueError, match='all ones'):
        convert_naoto(bad)
    with pytest.raises(ValueError, match='unexpected key'):
        convert_naoto(dict(state, **{'features.0.weight': np.zeros(3, 'float32')}))


@pytest.mark.slow
def test_parity_with_naoto_pconvunet(naoto_state):
    """Converted weights reproduce naoto's PConvUNet(layer_size=7) (run in PyTorch, eval mode)
    on a 128x128 image with an irregular hole: output, masks and four inner layers."""
    fixture = np.load(FIXTURE)
    params, config = convert_naoto(naoto_state)
    paddle.seed(0)
    model = PConv(**config, vgg_weights='unused')
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in params.items()})
    model.eval()
    captured = {}
    for name in ('enc_1', 'enc_2', 'enc_4', 'enc_7', 'dec_5', 'netG'):
        layer = model.netG if name == 'netG' else getattr(model.netG, name)
        layer.register_forward_post_hook(
            lambda layer, inp, out, name=name: captured.update({name: out}))
    image = paddle.to_tensor(fixture['image'].astype('float32') / 127.5 - 1)
    mask = paddle.to_tensor(fixture['mask'].astype('float32'))
    with paddle.no_grad():
        raw = model(image, mask)['raw'].numpy()
    mean = np.array([0.485, 0.456, 0.406], 'float32').reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], 'float32').reshape(1, 3, 1, 1)
    ref = (fixture['output'] * std + mean) * 2 - 1  # naoto's normalised output in [-1, 1] terms
    errors = {'output': np.abs(raw - ref).max() / np.abs(ref).max()}
    assert np.array_equal(captured.pop('netG')[1].numpy(), fixture['output_mask'])
    for name, (h, m) in captured.items():
        assert np.array_equal(m.numpy(), fixture[name + '_mask']), name
        if name in fixture:  # enc_1's features are not stored, enc_2's first 16 channels are
            h = h.numpy()[:, :fixture[name].shape[1]]
            errors[name] = np.abs(h - fixture[name]).max() / np.abs(fixture[name]).max()
    print({k: f'{v:.2e}' for k, v in errors.items()})
    assert all(v <= 1e-4 for v in errors.values()), errors


@pytest.mark.parametrize('name', ['pconv_quickstart', 'pconv_places2', 'pconv_finetune'])
def test_configs_resolve(name):
    cfg = resolve_config(ROOT / 'configs' / f'{name}.yaml', {'data': 'builtin'})
    assert cfg['model'] == 'pconv' and cfg['mask_type'] == 'irregular'
    assert cfg['image_size'] % 2 ** cfg['layer_size'] == 0
    assert cfg['finetune'] == (name == 'pconv_finetune')


@pytest.mark.slow
def test_train_then_finetune_from_the_command_line(tmp_path):
    """train.py --model pconv for 2 iterations, then --finetune --resume for 1 more."""
    args = ['--model', 'pconv', '--vgg_weights', random_vgg_file(), '--image_size', '64',
            '--layer_size', '4', '--cnum', '8', '--batch_size', '2', '--num_workers', '0',
            '--log_interval', '1', '--eval_interval', '100', '--ckpt_interval', '100',
            '--val_count', '2', '--device', 'cpu', '--threads', '1',
            '--checkpoints_dir', tmp_path, '--run_name', 'p']

    def run(*extra):
        proc = subprocess.run([sys.executable, str(ROOT / 'train.py'), *map(str, args + list(
            extra))], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    run('--max_iters', '2')
    run('--resume', '--finetune', '--max_iters', '3')
    _, state = read_checkpoint(tmp_path / 'p' / 'latest.safetensors')
    assert state['iteration'] == 3 and state['config']['finetune'] is True
    log = (tmp_path / 'p' / 'log.txt').read_text()
    lines = [line.split() for line in log.splitlines() if line.startswith('iter ')]
    assert lines[-1][0::2][:7] == ['iter', 'g_valid', 'g_hole', 'g_perc', 'g_style', 'g_tv', 'g']
