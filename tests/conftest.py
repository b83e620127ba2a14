"""Shared fixtures. The repo root goes on sys.path, and `models` is imported before paddle so its
CPU settings apply (models/runtime.py)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import models  # noqa: E402,F401
from models import runtime  # noqa: E402

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import pytest  # noqa: E402

runtime.setup('cpu')


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: longer end-to-end checks (still CPU, seconds)')


def make_batch(cfg, n=2, seed=0, size=None, per_sample=False):
    """A batch dict of smooth random images with box masks, as train.py builds it."""
    from data import MaskGenerator
    h, w = size or (cfg['image_size'], cfg['image_size'])
    rng = np.random.RandomState(seed)
    base = rng.uniform(-1, 1, (n, 3, -(-h // 8), -(-w // 8))).astype('float32')
    image = base.repeat(8, axis=2).repeat(8, axis=3)[:, :, :h, :w]  # piecewise-constant
    box = cfg.get('bbox_size', cfg['image_size'] // 2)
    gen = MaskGenerator('bbox', (h, w), box, cfg.get('max_delta', box // 4), cfg.get('margin', 0),
                        per_sample=per_sample)
    mask, bbox = gen(rng, n)
    return dict(image=paddle.to_tensor(image), mask=paddle.to_tensor(mask), bbox=bbox)


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
        import tempfile
        from safetensors.numpy import save_file
        from models.vgg import VGGFeatures, layer_names
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
