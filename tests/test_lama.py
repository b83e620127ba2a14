"""LaMa: sizes and counts, the Fourier unit against numpy's FFT, parity with the official code
(tests/fixtures/README.md, "LaMa"), the converter on a release-shaped checkpoint, losses, export."""
import json
import zlib
from pathlib import Path

import numpy as np
import paddle
import pytest

from conftest import tiny
from models import build
from models.base import count_parameters
from models.lama import FFC, FourierUnit
from weights.convert import convert

FIXTURE = Path(__file__).parent / 'fixtures' / 'parity_lama_official.npz'


@pytest.fixture(scope='module')
def ref():
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def gain(part, name):
    """The fixture's gains (see tests/fixtures/README.md)."""
    if part == 'G' and any(name.startswith(f'model.{i}.') for i in range(5, 14)):
        return 0.5
    if (part == 'G' and name == 'model.25.weight') or (part == 'PL' and
                                                       name.endswith('.conv3.weight')):
        return 1.0 if part == 'G' else 0.5
    return np.sqrt(2.0)


def rule(part, name, shape):
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    x = rng.standard_normal(shape)
    if name.endswith('num_batches_tracked'):
        return np.zeros((), np.int64)
    if name.endswith('running_var'):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if len(shape) == 4:
        transposed = part == 'G' and name in ('model.15.weight', 'model.18.weight',
                                              'model.21.weight')
        fan_in = shape[0] * 9 / 4 if transposed else np.prod(shape[1:])
        return (x * gain(part, name) / np.sqrt(fan_in)).astype(np.float32)
    if name.endswith('.weight'):
        return (1 + 0.1 * x).astype(np.float32)
    return (0.1 * x).astype(np.float32)


@pytest.fixture(scope='module')
def release(ref):
    """A best.ckpt-shaped state: generator, critic, the perceptual encoder and an evaluator's
    network, with the fixture's weights."""
    names = json.loads(str(ref['names']))
    prefixes = {'G': 'generator.', 'D': 'discriminator.', 'PL': 'loss_resnet_pl.impl.'}
    state = {prefixes[part] + name: rule(part, name, shape)
             for part, entries in names.items() for name, shape in entries}
    state['val_evaluator.scores.fid.model.Conv2d_1a_3x3.conv.weight'] = np.zeros((2, 3, 3, 3))
    return state


@pytest.fixture(scope='module')
def converted(release):
    paddle.seed(0)
    model, info = convert('lama_official', dict(release))
    model.resnet_pl.load(release, 'best.ckpt')  # the encoder from the same file
    return model, info


def inputs(ref, dtype='float32'):
    """Our image and mask; the float64 reference run took the float32 ``images / 255``."""
    img01 = (ref['images'].astype('float32') / 255).astype(dtype)
    return paddle.to_tensor(img01 * 2 - 1), paddle.to_tensor(ref['holes'].astype(dtype))


def rel(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return np.abs(ours - theirs).max() / np.abs(theirs).max()


def test_parameter_counts_of_both_variants():
    for n_blocks, count in ((9, 27_048_835), (18, 50_975_875)):
        with paddle.utils.unique_name.guard():
            model = build('lama', dict(n_blocks=n_blocks))
        assert count_parameters(model.netG) == count
        assert count_parameters(model.netD) == 6_962_369
    from models.features import ResNet50Dilated
    assert count_parameters(ResNet50Dilated()) == 23_631_808


def test_fourier_unit_is_the_interleaved_real_fft_of_numpy():
    """Hand computation: rfft2 (ortho), channels (re_0, im_0, re_1, ...), a 1x1 conv, BN (eval,
    identity statistics), ReLU, inverse with the original (odd) width."""
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 6, 7)
    unit = FourierUnit(3)
    unit.eval()
    weight = rng.randn(6, 6, 1, 1) / 3
    unit.conv.weight.set_value(weight.astype(np.float32))
    spec = np.fft.rfftn(x, axes=(-2, -1), norm='ortho')
    stacked = np.stack([spec.real, spec.imag], axis=2).reshape(2, 6, 6, 4)
    y = np.maximum(np.einsum('oi,nihw->nohw', weight[:, :, 0, 0], stacked) / np.sqrt(1 + 1e-5), 0)
    expected = np.fft.irfftn(y[:, 0::2] + 1j * y[:, 1::2], s=(6, 7), axes=(-2, -1), norm='ortho')
    out = unit(paddle.to_tensor(x, dtype='float32')).numpy()
    assert out.shape == (2, 3, 6, 7)
    assert rel(out, expected) < 1e-5


def test_fourier_unit_equals_the_official_one(ref, release):
    unit = FourierUnit(192)
    unit.eval()
    prefix = 'generator.model.5.conv1.ffc.convg2g.fu.'
    unit.conv.weight.set_value(release[prefix + 'conv_layer.weight'])
    for ours, theirs in (('weight', 'weight'), ('bias', 'bias'), ('_mean', 'running_mean'),
                         ('_variance', 'running_var')):
        getattr(unit.bn, ours).set_value(release[prefix + 'bn.' + theirs])
    out = unit(paddle.to_tensor(ref['fu_in'])).numpy()
    assert rel(out[:, :8], ref['fu_out8']) < 1e-5
    assert abs(out.mean() - ref['fu_out_mean']) < 1e-5 * abs(ref['fu_out_std'])


def test_converted_generator_equals_the_official_one(ref, converted):
    """Real photos, a box and strokes touching the borders; float32 within 1e-4 relative (the
    reference's own float32 error is 1.7e-6), intermediates to localise a failure."""
    model, info = converted
    assert info['switches'] == dict(n_blocks=9, ngf=64, d_layers=4, d_ndf=64)
    assert info['initialised'] == []
    image, mask = inputs(ref)
    with paddle.no_grad():
        pred = model(image, mask)['pred'].numpy()
        g = model.netG
        x = paddle.concat([(image + 1) / 2 * (1 - mask), mask], axis=1)
        x_l, x_g = g.head(paddle.nn.functional.pad(x, [3, 3, 3, 3], mode='reflect'))
        for layer in g.down:
            x_l, x_g = layer(x_l, x_g)
        down = x_l, x_g
        for block in g.blocks:
            x_l, x_g = block(x_l, x_g)
    assert rel(down[0][:, :16].numpy(), ref['g_down_l16']) < 1e-5
    assert rel(down[1][:, :16].numpy(), ref['g_down_g16']) < 1e-5
    assert rel(x_g[:, :16].numpy(), ref['g_block9_g16']) < 1e-4
    assert rel((pred + 1) / 2, ref['pred64']) < 1e-4
    assert rel((pred + 1) / 2, ref['pred']) < 1e-4


def test_float64_run_equals_the_official_float64_run(ref, release):
    """In float64 an exact port differs by rounding only (~1e-12): no float32 constant, epsilon
    or layout slip is hidden by float32 noise."""
    model, _ = convert('lama_official', dict(release))
    model.to(dtype='float64')
    image, mask = inputs(ref, 'float64')
    with paddle.no_grad():
        pred = model(image, mask)['pred'].numpy()
    assert pred.dtype == np.float64
    assert rel((pred + 1) / 2, ref['pred64']) < 1e-10


def test_critic_and_perceptual_encoder_equal_the_official_ones(ref, converted):
    model, _ = converted
    real = paddle.to_tensor(ref['images'].astype('float32') / 255)
    fake = paddle.to_tensor(ref['pred64'].astype('float32'))
    with paddle.no_grad():
        logits, features = model.netD(real)
        assert rel(logits.numpy(), ref['d_logits']) < 1e-4
        for k, f in enumerate(features):
            assert rel(f.numpy().mean(axis=(2, 3)), ref[f'd_feat{k}_mean']) < 1e-4
        assert rel(features[4].numpy(), ref['d_feat4']) < 1e-4
        assert rel(model.netD(fake)[0].numpy(), ref['d_logits_fake']) < 1e-4
        model.netD.train()  # batch statistics, one call per kind as the trainer makes them
        logits, features = model.netD(real)
        assert rel(logits.numpy(), ref['d_logits_train']) < 1e-4
        assert rel(features[4][:, :128].numpy(), ref['d_feat4_train128']) < 1e-4
        assert rel(model.netD(fake)[0].numpy(), ref['d_logits_fake_train']) < 1e-4
        model.netD.eval()
        stages = model.resnet_pl(real * 2 - 1)
    for k, s in enumerate(stages):
        assert list(s.shape[1:]) == list(ref['pl_shapes'][k])
        assert rel(s.numpy().mean(axis=(2, 3)), ref[f'pl_feat{k}_mean']) < 1e-4


def test_losses_equal_the_official_ones(ref, release):
    """Every term of big-lama.yaml in float64, eval-mode critic, on the reference prediction."""
    model, _ = convert('lama_official', dict(release))
    model.resnet_pl.load(release)
    model.to(dtype='float64')
    model.resnet_pl.net.to(dtype='float64')
    image, mask = inputs(ref, 'float64')
    batch = {'image': image, 'mask': mask}
    out = {'pred': paddle.to_tensor(ref['pred64'].astype(np.float64) * 2 - 1)}
    # the critic's terms: Paddle < 3.3 holds leaky_relu's slope as a float32 attribute
    # (0.2000000030), visible at 1e-8 in float64; 3.3 agrees to 1e-12
    critic_tol = 1e-9 if paddle.__version__.startswith('3.3') else 1e-7
    _, g = model.g_loss(batch, out)
    assert abs(float(g['g_l1']) / ref['loss_l1'] - 1) < 1e-9
    assert abs(10 * float(g['g_adv']) / ref['loss_adv_g'] - 1) < critic_tol
    assert abs(100 * float(g['g_fm']) / ref['loss_fm'] - 1) < critic_tol
    assert abs(30 * float(g['g_pl']) / ref['loss_pl'] - 1) < 1e-9
    loss, d = model.d_loss(batch, out)
    assert abs(float(d['d_real'] + d['d_fake']) / ref['loss_adv_d'] - 1) < critic_tol
    assert abs(0.001 * float(d['d_r1']) / ref['loss_r1'] - 1) < critic_tol
    assert abs(float(loss) / ref['loss_d_total'] - 1) < critic_tol


def test_r1_backpropagates_into_every_critic_weight():
    """R1 differentiates the critic twice: its gradient must reach every critic weight (biases
    shift activations but not the input gradient's value, except at LeakyReLU's kink: none)."""
    model = tiny('lama', adv_alpha=0.0, fm_alpha=0.0, resnet_pl_alpha=0.0)
    model.train()
    image = paddle.rand([2, 3, 64, 64]) * 2 - 1
    real = ((image + 1) / 2).detach()
    real.stop_gradient = False
    logits, _ = model.netD(real)
    (grad,) = paddle.grad(logits.sum(), real, create_graph=True)
    r1 = grad.square().reshape([2, -1]).sum(axis=1).mean()
    r1.backward()
    for name, p in model.netD.named_parameters():
        if not p.stop_gradient and not name.endswith('bias'):
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_converter_rejects_foreign_tensors_and_reads_iopaint_names(release):
    bad = dict(release, **{'generator.model.99.weight': np.zeros(3)})
    with pytest.raises(ValueError, match='model.99'):
        convert('lama_official', bad)
    with pytest.raises(ValueError, match="unexpected tensor 'encoder.weight'"):
        convert('lama_official', dict(release, **{'encoder.weight': np.zeros(3)}))
    # IOPaint's TorchScript big-lama.pt: the traced wrapper's ``model.`` prefix, no critic
    iopaint = {'model.' + k: v for k, v in release.items() if k.startswith('generator.')}
    model, info = convert('lama_official', iopaint)
    assert info['initialised'] == ['netD'] and info['switches']['n_blocks'] == 9


def test_ffc_without_global_channels_is_a_plain_conv():
    layer = FFC(4, 8, 3, 0, 0, padding=1)
    assert layer.convl2g is None and layer.convg2g is None and layer.bn_g is None
    y_l, y_g = layer(paddle.rand([1, 4, 8, 8]))
    assert y_g is None and y_l.shape == [1, 8, 8, 8]


@pytest.mark.slow
def test_export_with_dynamic_sizes_equals_eager(tmp_path):
    """The exported graph (rfftn/irfftn with no size argument) at two sizes, multiples of 16."""
    from inference import ExportedModel, export
    model = tiny('lama')
    model.eval()
    if model.export_blocker():
        with pytest.raises(RuntimeError, match='cannot trace the FFT'):
            export(model, tmp_path / 'lama')
        pytest.skip(model.export_blocker())
    folder = export(model, tmp_path / 'lama')
    exported = ExportedModel(folder)
    assert exported.SIZE_MULTIPLE == 16 and exported.FULL_RESOLUTION
    rng = np.random.RandomState(0)
    for h, w in ((64, 64), (48, 80)):
        image = rng.uniform(-1, 1, (1, 3, h, w)).astype('float32')
        mask = np.zeros((1, 1, h, w), 'float32')
        mask[:, :, 8:30, 16:40] = 1
        with paddle.no_grad():
            eager = model(paddle.to_tensor(image), paddle.to_tensor(mask))['pred'].numpy()
        assert np.abs(exported(image, mask) - eager).max() < 1e-5


@pytest.mark.slow
def test_train_and_test_scripts_with_lama_masks(tmp_path):
    """train.py --model lama (quick-start config, tiny sizes) then test.py on LaMa's thick
    evaluation masks; a missing perceptual encoder is one clear line naming the download."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]

    def run(script, *args):
        return subprocess.run([sys.executable, str(root / script), *map(str, args)], cwd=root,
                              capture_output=True, text=True, timeout=600)
    tiny_args = ['--model', 'lama', '--image_size', '64', '--ngf', '8', '--n_blocks', '1',
                 '--d_ndf', '8', '--batch_size', '2', '--max_iters', '2', '--val_count', '2',
                 '--eval_interval', '2', '--ckpt_interval', '2', '--checkpoints_dir', tmp_path,
                 '--device', 'cpu', '--threads', '1']
    proc = run('train.py', *tiny_args, '--run_name', 'noencoder', '--resnet_pl_alpha', '30',
               '--resnet_pl_weights', tmp_path / 'encoder_epoch_20.pth')
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert 'resnet_pl_weights' in proc.stderr and 'ade20k-resnet50dilated' in proc.stderr
    proc = run('train.py', *tiny_args, '--run_name', 'lama')
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = tmp_path / 'lama' / 'latest.safetensors'
    out = tmp_path / 'eval'
    proc = run('test.py', '--checkpoint', ckpt, '--data', 'builtin:val', '--count', '2',
               '--mask_type', 'lama_thick', '--out_dir', out, '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'hole_l1' in proc.stdout


def test_auto_strategy_keeps_large_photos_whole_and_pads_to_eight():
    """LaMa's point: a photo 8x its training size goes through in one pass at full resolution;
    an odd size is padded to the multiple of 8 and cropped back, known pixels exact."""
    from inference import Inpainter
    model = tiny('lama')
    inpaint = Inpainter(model)
    assert inpaint.choose_strategy((520, 300)) == 'original'
    rng = np.random.RandomState(0)
    photo = rng.randint(0, 255, (150, 203, 3)).astype(np.uint8)
    mask = np.zeros((150, 203), np.uint8)
    mask[40:90, 0:70] = 255  # touches the left border
    result, info = inpaint.run(photo, mask)
    assert info['strategy'] == 'original' and result.shape == photo.shape
    assert np.array_equal(result[mask == 0], photo[mask == 0])
    assert not np.array_equal(result[mask > 0], photo[mask > 0])


def test_refine_strategy_keeps_known_pixels_and_bounds_the_working_size():
    """The refinement on a tiny LaMa: whole photo, known pixels exact, the px_budget resize
    scaled back to the photo; models without LaMa's encode/decode are a clear error."""
    from inference import Inpainter
    from inference.refine import erode, pyramid
    model = tiny('lama')
    rng = np.random.RandomState(0)
    photo = rng.randint(0, 255, (100, 132, 3)).astype(np.uint8)
    mask = np.zeros((100, 132), np.uint8)
    mask[30:65, 0:45] = 255
    options = dict(n_iters=3, min_side=32, max_scales=3)
    result, info = Inpainter(model, 'refine', refine_options=options).run(photo, mask)
    assert info['strategy'] == 'refine' and result.shape == photo.shape
    assert np.array_equal(result[mask == 0], photo[mask == 0])
    small, _ = Inpainter(model, 'refine', refine_options=dict(options, px_budget=3000)).run(
        photo, mask)
    assert small.shape == photo.shape and np.array_equal(small[mask == 0], photo[mask == 0])
    levels = pyramid(paddle.rand([1, 3, 100, 132]), paddle.ones([1, 1, 100, 132]), 32, 3, 1e9)
    assert [tuple(x.shape[2:]) for x, _ in levels] == [(25, 33), (50, 66), (100, 132)]
    hole = np.zeros((1, 1, 40, 40), 'float32')
    hole[..., 5:30, 0:20] = 1
    import cv2
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    expected = cv2.erode(hole[0, 0], ellipse, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    assert np.array_equal(erode(paddle.to_tensor(hole)).numpy()[0, 0], expected)
    with pytest.raises(ValueError, match="'refine' needs a LaMa checkpoint"):
        Inpainter(tiny('aotgan'), 'refine').run(photo, mask)
    with pytest.raises(ValueError, match='refine_options: unknown'):
        Inpainter(model, 'refine', refine_options=dict(iters=3))


@pytest.fixture(scope='module')
def refine_ref():
    with np.load(Path(__file__).parent / 'fixtures' / 'parity_lama_refine.npz') as data:
        return {k: data[k] for k in data.files}


def small_lama(ref, dtype='float32'):
    """The refinement fixture's LaMa (ngf 8, 2 blocks) with its rule's weights, converted."""
    gains = {'model.18.weight': 1.0}

    def weight(name, shape):
        value = rule('G', name, shape)
        if len(shape) == 4 and not name.startswith(('model.5.', 'model.6.')):
            transposed = name in ('model.8.weight', 'model.11.weight', 'model.14.weight')
            fan_in = shape[0] * 9 / 4 if transposed else np.prod(shape[1:])
            x = np.random.RandomState(zlib.crc32(name.encode())).standard_normal(shape)
            value = (x * gains.get(name, np.sqrt(2.0)) / np.sqrt(fan_in)).astype(np.float32)
        return value
    names = json.loads(str(ref['names']))
    model, info = convert('lama_official', {'generator.' + n: weight(n, s) for n, s in names})
    assert info['switches']['n_blocks'] == 2 and info['switches']['ngf'] == 8
    return model.to(dtype=dtype) if dtype != 'float32' else model


def hole_only(x, holes):
    return np.where(holes.astype(bool), x, 0.0)


def test_refinement_equals_the_official_one(refine_ref):
    """Official refine_predict (3 scales, 4 iterations; and the px_budget resize with 2 scales)
    on a photo of a size that is not a multiple of 8, a hole touching the border."""
    from inference.refine import pyramid, refine, refine_level
    ref = refine_ref
    model = small_lama(ref)
    image = ref['images'].astype('float32') / 255
    mask = ref['holes'].astype('float32')
    options = dict(n_iters=4, lr=0.002, min_side=64, max_scales=3)
    levels = pyramid(paddle.to_tensor(image), paddle.to_tensor(mask), 64, 3, 10 ** 7)
    result = None
    for k, (level_image, level_mask) in enumerate(levels[:2]):
        result = refine_level(model.netG, level_image, level_mask, result, 4, 0.002)
        holes = ref[f'a_scale{k}_mask'][..., :result.shape[2], :result.shape[3]]
        assert rel(hole_only(result.numpy(), holes), hole_only(
            ref[f'a_scale{k}_out'][..., :result.shape[2], :result.shape[3]], holes)) < 1e-4
    refined = refine(model, image, mask, px_budget=10 ** 7, **options)
    assert refined.shape == (1, 3, 203, 267)
    assert rel(hole_only(refined, ref['holes']), ref['refined_a']) < 1e-4
    assert np.array_equal(np.where(ref['holes'].astype(bool), 0, refined),
                          np.where(ref['holes'].astype(bool), 0, image))
    small = refine(model, image, mask, **dict(options, max_scales=2, px_budget=20000))
    assert small.shape == (1, 3, 123, 162)
    holes_b = ref['b_scale1_mask'][..., :123, :162]
    assert rel(hole_only(small, holes_b), ref['refined_b']) < 1e-4


def test_refinement_in_float64_equals_the_official_float64_run(refine_ref):
    from inference.refine import refine
    ref = refine_ref
    model = small_lama(ref, 'float64')
    image = (ref['images'].astype('float32') / 255).astype('float64')
    refined = refine(model, image, ref['holes'].astype('float64'), n_iters=4, lr=0.002,
                     min_side=64, max_scales=3, px_budget=10 ** 7)
    assert refined.dtype == np.float64
    # the stored float64 result was rounded to float32 (6e-8); the reference's float32 run is
    # 5.6e-7 from it, and F.interpolate's float32 scale (1e-5 in float64) would show here
    assert rel(hole_only(refined, ref['holes']), ref['refined_a64']) < 1e-7


def test_row_tiles_at_inference_change_nothing(monkeypatch):
    """The full-resolution convs run in row tiles at inference (bounded im2col buffers): the
    output equals the untiled one; in training mode nothing is tiled (batch statistics)."""
    import models.lama as lama
    model = tiny('lama')
    model.eval()
    rng = np.random.RandomState(0)
    image = paddle.to_tensor(rng.uniform(-1, 1, (1, 3, 72, 48)).astype('float32'))
    mask = paddle.zeros([1, 1, 72, 48])
    mask[:, :, 0:30, 10:40] = 1
    with paddle.no_grad():
        whole = model(image, mask)['pred'].numpy()
        calls = []
        original = lama.in_row_tiles
        monkeypatch.setattr(lama, 'TILE_BYTES', 20_000)
        monkeypatch.setattr(lama, 'in_row_tiles', lambda fn, x, rows, *a: (
            calls.append(rows), original(fn, x, rows, *a))[1])
        tiled = model(image, mask)['pred'].numpy()
    assert len(calls) == 7 and all(rows is not None and rows < 72 for rows in calls[:2])
    assert np.abs(tiled - whole).max() < 1e-6
    assert lama.tile_rows(image, 10 ** 9, training=True) is None
    # gradients through the tiles (the refinement differentiates the eval-mode rear)
    x = paddle.concat([(image + 1) / 2 * (1 - mask), mask], axis=1)
    grads = []
    for tile_bytes in (10 ** 12, 20_000):
        monkeypatch.setattr(lama, 'TILE_BYTES', tile_bytes)
        features = [f.detach() for f in model.netG.encode(x)]
        for f in features:
            f.stop_gradient = False
        (model.netG.decode(*features) ** 2).sum().backward()
        grads.append([f.grad.numpy() for f in features])
    for whole_grad, tiled_grad in zip(*grads):
        assert rel(tiled_grad, whole_grad) < 1e-5


@pytest.mark.parametrize('name', ['lama_tiny_best.ckpt', 'lama_tiny_iopaint.pt'])
def test_release_files_convert_and_compute_what_the_official_code_computes(name, tmp_path):
    """A tiny LaMa saved as the releases are: a Lightning best.ckpt (OmegaConf hyper-parameters,
    a Lightning callback class as a key, optimizer state) and IOPaint's TorchScript trace; read
    without torch, converted by tools/convert_weights.py, loaded by test.py's loader, and equal
    to the official forward (tests/fixtures/README.md, "Release-shaped LaMa files")."""
    import subprocess
    import sys
    from inference import load_model
    fixtures = Path(__file__).parent / 'fixtures'
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / 'lama.safetensors'
    proc = subprocess.run([sys.executable, str(root / 'tools' / 'convert_weights.py'), '--source',
                           'lama_official', '--input', str(fixtures / name), '--output', str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = load_model(out)[0]
    model.eval()
    with np.load(fixtures / 'lama_tiny_release_ref.npz') as ref:
        image, mask, composite = ref['image'], ref['mask'], ref['composite']
        d_logits = ref['d_logits']
    with paddle.no_grad():
        ours = model(paddle.to_tensor(image * 2 - 1), paddle.to_tensor(mask))['composite']
        assert rel((ours.numpy() + 1) / 2, composite) < 1e-5
        if name.endswith('.ckpt'):  # the critic travels in best.ckpt only
            assert rel(model.netD(paddle.to_tensor(image))[0].numpy(), d_logits) < 1e-5
