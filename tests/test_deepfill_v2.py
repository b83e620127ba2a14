"""DeepFill v2: counts, gating, SN-PatchGAN, hinge loss, sketch guidance, scripts."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
from PIL import Image

from data import read_grey
from data.sketch import canny_edges
from models.deepfill_v2 import DeepFillV2, SNPatchGAN, hinge_d
from models.ops import GatedConv2D
from weights.checkpoint import load_model_state, read_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def count(layer):
    return sum(int(np.prod(p.shape)) for p in layer.parameters() if not p.stop_gradient)


def tiny(seed=0, **extra):
    paddle.seed(seed)
    return DeepFillV2(**{**DeepFillV2.TINY, **extra})


def test_parameter_counts_match_the_official_model():
    model = DeepFillV2()
    assert count(model.netG.coarse) == 1_631_151
    assert count(model.netG.refine) == 2_421_327
    assert count(model.netG) == 4_052_478
    assert count(model.netD) == 5_946_816
    guided = DeepFillV2(guided=True)
    assert count(guided.netG) == 4_053_678 and count(guided.netD) == 5_948_416
    scores = model.netD(paddle.zeros([1, 4, 256, 256]))
    assert scores.shape == [1, 4096]  # 256 channels x 4 x 4, one hinge term each


def test_gated_convolution_formula():
    layer = GatedConv2D(1, 1, kernel_size=1)
    layer.conv.weight.set_value(np.array([2.0, 3.0], 'float32').reshape(2, 1, 1, 1))
    layer.conv.bias.set_value(np.array([0.5, -1.0], 'float32'))
    x = np.array([-1.0, 0.0, 0.25, 2.0], 'float32').reshape(1, 1, 2, 2)
    feature, gate = 2 * x + 0.5, 3 * x - 1
    elu = np.where(feature > 0, feature, np.exp(feature) - 1)
    expected = elu / (1 + np.exp(-gate))
    assert np.allclose(layer(paddle.to_tensor(x)).numpy(), expected, rtol=1e-6)
    assert GatedConv2D(12, 3, activation=None).conv.weight.shape == [3, 12, 3, 3]  # plain output
    assert GatedConv2D(5, 24, 5).conv.weight.shape == [48, 5, 5, 5]  # 48 filters -> 24 channels


def test_hinge_loss_signs():
    real = paddle.to_tensor([0.5, 3.0])
    fake = paddle.to_tensor([-0.5, 1.0])
    # 0.5 * mean(relu(1 - real)) + 0.5 * mean(relu(1 + fake)) = 0.5*0.25 + 0.5*1.25
    assert float(hinge_d(real, fake)) == pytest.approx(0.75)
    assert float(hinge_d(paddle.to_tensor([1.0]), paddle.to_tensor([-1.0]))) == 0.0


def test_generator_loss_is_hinge_plus_whole_image_l1(batch_factory):
    model = tiny(gan_alpha=0.5, l1_alpha=2.0)
    model.netD.eval()  # freeze spectral norm's u so two critic passes agree
    batch = batch_factory(model.cfg)
    out = model(batch['image'], batch['mask'])
    loss, logs = model.g_loss(batch, out)
    l1 = 2.0 * (paddle.abs(batch['image'] - out['coarse']).mean()
                + paddle.abs(batch['image'] - out['pred']).mean())
    fake = paddle.concat([out['composite'], batch['mask']], axis=1)
    assert float(logs['g_l1']) == pytest.approx(float(l1), rel=1e-6)
    assert float(logs['g_adv']) == pytest.approx(-float(model.netD(fake).mean()), rel=1e-4)
    assert float(loss) == pytest.approx(0.5 * float(logs['g_adv']) + float(l1), rel=1e-5)


def test_spectral_norm_converges_and_u_persists(tmp_path):
    paddle.seed(0)
    critic = SNPatchGAN(4, 8)
    x = paddle.rand([2, 4, 64, 64])
    critic.train()
    for _ in range(30):
        critic(x)
    weight = critic.conv1.conv.weight.numpy().reshape(8, -1)
    assert np.linalg.svd(weight, compute_uv=False)[0] == pytest.approx(1.0, abs=1e-3)
    critic.eval()
    u = critic.conv1.conv.weight_u.numpy().copy()
    assert np.array_equal(critic(x).numpy(), critic(x).numpy())  # eval: u frozen
    assert np.array_equal(u, critic.conv1.conv.weight_u.numpy())
    model = tiny()
    model.netD.train()
    for _ in range(5):
        model.netD(paddle.rand([1, 4, 64, 64]))
    path = tmp_path / 'c.safetensors'
    save_checkpoint(path, model, {}, {})
    tensors, _ = read_checkpoint(path)
    assert 'model/netD.conv1.conv.weight_u' in tensors
    fresh = tiny(seed=1)
    load_model_state(fresh, tensors, path)
    assert np.array_equal(fresh.netD.conv3.conv.weight_u.numpy(),
                          model.netD.conv3.conv.weight_u.numpy())
    model.eval()
    fresh.eval()
    y = paddle.rand([1, 4, 64, 64])
    assert np.array_equal(model.netD(y).numpy(), fresh.netD(y).numpy())


def test_sketch_guides_only_inside_the_hole(batch_factory):
    model = tiny(guided=True)
    model.eval()
    batch = batch_factory(model.cfg)
    image, mask = batch['image'], batch['mask']
    inside = paddle.zeros_like(mask)
    inside[:, :, 28:36, :] = 1.0
    inside = inside * mask
    outside = paddle.zeros_like(mask)
    outside[:, :, :, :2] = 1.0
    outside = outside * (1 - mask)
    with paddle.no_grad():
        plain = model(image, mask)['pred'].numpy()
        none = model(image, mask, paddle.zeros_like(mask))['pred'].numpy()
        guided = model(image, mask, inside)['pred'].numpy()
        ignored = model(image, mask, outside)['pred'].numpy()
    assert np.array_equal(plain, none) and np.array_equal(plain, ignored)
    assert np.abs(guided - plain).max() > 1e-2 * np.abs(plain).max()
    with pytest.raises(ValueError, match='without sketches'):
        tiny()(image, mask, inside)


def test_guided_losses_and_critic_input(batch_factory):
    model = tiny(guided=True)
    batch = batch_factory(model.cfg, model=model)  # the hook: Canny edges of the ground truth
    c = model.cfg
    assert np.array_equal(batch['extra']['sketch'].numpy(), canny_edges(
        batch['image'].numpy(), c['canny_sigma'], c['canny_low'], c['canny_high']))
    out = model.run(batch)
    loss_d, logs_d = model.d_loss(batch, out)
    loss_d.backward()
    assert model.netD.conv1.conv.weight_orig.shape[1] == 5  # image + mask + sketch
    assert all(p.grad is None for p in model.netG.parameters())
    assert {'d', 'd_real', 'd_fake'} == set(logs_d)


def test_canny_training_edges_and_user_sketches(tmp_path):
    image = -np.ones((1, 3, 32, 32), np.float32)
    image[..., 16:] = 1.0  # a vertical step between columns 15 and 16
    edges = canny_edges(image, sigma=1.0)[0, 0]
    cols = np.nonzero(edges.any(axis=0))[0]
    assert edges[4:-4].any(axis=1).all() and set(cols) <= {14, 15, 16, 17}
    assert not canny_edges(np.zeros((1, 3, 32, 32), np.float32))[0].any()
    mask = np.ones((1, 1, 10, 12), np.float32)
    assert tiny().extra_inputs(image, mask) == {}  # unguided: no extra input
    guided = tiny(guided=True)
    sketch = np.zeros((10, 12), np.uint8)
    sketch[3, :] = 200  # 200/255 = 0.78 > 0.6
    sketch[5, :] = 153  # exactly 0.6: not above the official threshold (edge / 255 > 0.6)
    sketch[6, :] = 120  # 0.47: below it
    Image.fromarray(sketch).save(tmp_path / 's.png')
    given = {'sketch': read_grey(tmp_path / 's.png')[None, None]}
    read = guided.extra_inputs(np.zeros((1, 3, 10, 12), np.float32), mask, given=given)
    read = read['sketch'][0, 0]
    assert read[3].all() and not read[5:7].any() and read.sum() == 12
    empty = guided.extra_inputs(np.zeros((1, 3, 10, 12), np.float32), mask, given={})
    assert not empty['sketch'].any()  # a guided model without a user sketch: no guidance
    with pytest.raises(ValueError, match='trained without sketches'):
        tiny().extra_inputs(image, mask, given=given)


def run(script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_train_and_test_scripts_with_free_form_masks_and_sketches(tmp_path):
    run('train.py', '--model', 'deepfill_v2', '--checkpoints_dir', tmp_path, '--run_name', 'v2',
        '--image_size', '64', '--bbox_size', '32', '--max_delta', '8', '--cnum', '8',
        '--d_cnum', '8', '--batch_size', '2', '--max_iters', '2', '--log_interval', '1',
        '--eval_interval', '2', '--val_count', '2', '--guided', 'true', '--device', 'cpu')
    log = (tmp_path / 'v2' / 'log.txt').read_text()
    line = [x for x in log.splitlines() if x.startswith('iter 2 ')][0]
    assert line.split()[0::2] == ['iter', 'd_real', 'd_fake', 'd', 'g_adv', 'g_l1', 'g', 'lr', 'dt']
    ckpt = tmp_path / 'v2' / 'latest.safetensors'
    proc = run('test.py', '--checkpoint', ckpt, '--out_dir', tmp_path / 'eval', '--count', '3')
    assert 'masks free_form' in (tmp_path / 'eval' / 'metrics.txt').read_text()
    assert 'hole_l1' in proc.stdout
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 255, (50, 61, 3)).astype(np.uint8)).save(tmp_path / 'p.png')
    mask = np.zeros((50, 61), np.uint8)
    mask[10:30, 20:50] = 255
    Image.fromarray(mask).save(tmp_path / 'm.png')
    sketch = np.zeros((50, 61), np.uint8)
    sketch[20, :] = 255
    Image.fromarray(sketch).save(tmp_path / 's.png')
    run('test.py', '--checkpoint', ckpt, '--image', tmp_path / 'p.png', '--mask',
        tmp_path / 'm.png', '--sketch', tmp_path / 's.png', '--output', tmp_path / 'o.png')
    assert Image.open(tmp_path / 'o.png').size == (61, 50)
