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
    base = rng.uniform(-1, 1, (n, 3, h // 8, w // 8)).astype('float32')
    image = base.repeat(8, axis=2).repeat(8, axis=3)  # piecewise-constant, [-1, 1]
    box = cfg.get('bbox_size', cfg['image_size'] // 2)
    gen = MaskGenerator('bbox', (h, w), box, cfg.get('max_delta', box // 4), cfg.get('margin', 0),
                        per_sample=per_sample)
    mask, bbox = gen(rng, n)
    return dict(image=paddle.to_tensor(image), mask=paddle.to_tensor(mask), bbox=bbox)


@pytest.fixture
def batch_factory():
    return make_batch
