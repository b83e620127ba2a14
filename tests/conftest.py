"""Shared fixtures. The repo root goes on sys.path, and ``runtime`` is imported before paddle so
its CPU settings apply."""
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import runtime  # noqa: E402

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import pytest  # noqa: E402

from models import MODELS, build  # noqa: E402
from weights.features import load_feature_weights  # noqa: E402

runtime.setup('cpu')

# What the shared suite allows per model, as data (tests/test_common.py reads it):
# - overfit_lr: learning rate of the one-batch overfit test, on the optimiser's own scale
#   (GLCIC's Adadelta steps by about lr * 1e-3: at Adam's 1e-3 it would hardly move);
# - first_step_moves_all: every generator weight changes in one step. LBAM at the official
#   N(0, 0.02) init: its deepest attention maps underflow to exactly 0 (a * exp(-sigma (x -
#   mu)^2) far below mu), so 13 of its 27 weights get no first-step update.
# - overfit: config overrides for that test. LaMa's L1 leaves the hole unsupervised
#   (weight_missing 0): adversarial, feature-matching and perceptual terms fill it, and they need
#   a trained critic and encoder; the test supervises the hole with L1 instead.
TEST_SETTINGS = {name: dict(overfit_lr=1e-3, first_step_moves_all=True, overfit={})
                 for name in MODELS}
TEST_SETTINGS['glcic']['overfit_lr'] = 1.0
TEST_SETTINGS['lbam']['first_step_moves_all'] = False
TEST_SETTINGS['lama']['overfit'] = dict(l1_missing=10.0, adv_alpha=0.0, fm_alpha=0.0,
                                        resnet_pl_alpha=0.0)


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: longer end-to-end checks (still CPU, seconds)')


def make_batch(cfg, n=2, seed=0, size=None, per_sample=False, model=None):
    """A batch dict of smooth random images with box masks, as training.batches builds it:
    image, mask, bbox, gradient-penalty mixing weights ``alpha`` and the ``model``'s extra
    inputs (none without a model)."""
    from data import MaskGenerator
    from training.batches import to_batch
    h, w = size or (cfg['image_size'], cfg['image_size'])
    rng = np.random.RandomState(seed)
    base = rng.uniform(-1, 1, (n, 3, -(-h // 8), -(-w // 8))).astype('float32')
    image = base.repeat(8, axis=2).repeat(8, axis=3)[:, :, :h, :w]  # piecewise-constant
    box = cfg.get('bbox_size', cfg['image_size'] // 2)
    gen = MaskGenerator('bbox', (h, w), box, cfg.get('max_delta', box // 4), cfg.get('margin', 0),
                        per_sample=per_sample)
    mask, bbox = gen(rng, n)
    alpha = rng.uniform(size=(n, 2)).astype('float32')
    extra = model.extra_inputs(image, mask) if model is not None else {}
    return to_batch(image, mask, bbox, extra, alpha)


@pytest.fixture
def batch_factory():
    return make_batch


_VGG_FILES = {}


def random_vgg_file(arch='vgg16'):
    """A VGG weights file with random (He-normal) weights, written once per test session.

    Stands in for the ImageNet file that cannot be downloaded here; torchvision key names, so the
    real loading path runs. Paths are stable within a session (tiny configs can name them).
    """
    if arch not in _VGG_FILES:
        from safetensors.numpy import save_file
        from models.features import VGGFeatures, layer_names
        names = layer_names(arch)
        net = VGGFeatures(arch, (names[-1],))
        rng = np.random.RandomState(len(arch))
        state = {}
        for key, p in net.state_dict().items():
            shape = p.shape
            if key.endswith('weight'):
                fan_in = int(np.prod(shape[1:]))
                state[key] = (rng.randn(*shape) * np.sqrt(2.0 / fan_in)).astype('float32')
            else:
                state[key] = (rng.randn(*shape) * 0.01).astype('float32')
        folder = tempfile.mkdtemp(prefix='vgg-')
        path = str(Path(folder) / f'{arch}-random.safetensors')
        save_file(state, path)
        _VGG_FILES[arch] = path
    return _VGG_FILES[arch]


def random_resnet_file():
    """A ResNet50-dilated encoder file with random weights (He-normal convs, BN near identity),
    named as MIT CSAIL's encoder_epoch_20.pth (torch BatchNorm names, num_batches_tracked),
    written once per test session."""
    if 'resnet50dilated' not in _VGG_FILES:
        from safetensors.numpy import save_file
        from models.features import ResNet50Dilated
        rng, state = np.random.RandomState(50), {}
        for key, p in ResNet50Dilated().state_dict().items():
            shape, torch_key = list(p.shape), key.replace('._mean', '.running_mean')
            torch_key = torch_key.replace('._variance', '.running_var')
            if len(shape) == 4:
                value = rng.randn(*shape) * np.sqrt(2.0 / np.prod(shape[1:]))
            elif key.endswith('._variance'):
                value = rng.uniform(0.5, 1.5, shape)
            else:
                value = (1.0 if key.endswith('.weight') else 0.0) + 0.1 * rng.randn(*shape)
            state[torch_key] = value.astype('float32')
            if key.endswith('._variance'):
                state[torch_key.replace('running_var', 'num_batches_tracked')] = np.zeros((), 'int64')
        path = str(Path(tempfile.mkdtemp(prefix='resnet-')) / 'encoder-random.safetensors')
        save_file(state, path)
        _VGG_FILES['resnet50dilated'] = path
    return _VGG_FILES['resnet50dilated']


def tiny(name, seed=0, **extra):
    """The model's TINY config, built as train.py builds it (name guard, feature weights
    loaded); models with perceptual losses get a random VGG / ResNet file."""
    cls = MODELS[name]
    if 'vgg_weights' in cls.DEFAULTS:
        extra.setdefault('vgg_weights', random_vgg_file(getattr(cls, 'VGG_ARCH', 'vgg16')))
    if 'resnet_pl_weights' in cls.DEFAULTS:
        extra.setdefault('resnet_pl_weights', random_resnet_file())
    paddle.seed(seed)
    with paddle.utils.unique_name.guard():
        model = build(name, {**cls.TINY, **extra})
    load_feature_weights(model)
    return model


def o1_weights(layer, seed=0):
    """Random weights scaled 1/sqrt(fan_in), so activations stay O(1) through every model (the
    TF initialisation leaves DeepFill v2's outputs near 1e-7, where any comparison passes)."""
    rng = np.random.RandomState(seed)
    for name, p in layer.named_parameters():
        if p.stop_gradient:  # fixed kernels (e.g. PConv's mask-update ones) keep their values
            continue
        shape = list(p.shape)
        if len(shape) >= 2:  # conv [out, in, k, k] or linear [in, out]
            value = rng.randn(*shape) / np.sqrt(np.prod(shape[1:]) if len(shape) > 2 else shape[0])
        else:  # biases, norm scales (weight) and scalars
            value = (1.0 if name.endswith('weight') else 0.0) + 0.1 * rng.randn(*shape)
        p.set_value(np.asarray(value, 'float32'))
