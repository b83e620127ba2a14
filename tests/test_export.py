"""Export: every model's generator as a static graph with dynamic N, H, W, run by paddle.inference
(oneDNN and plain) and, when paddle2onnx + onnxruntime are installed, by onnxruntime; all equal
the dygraph model within 1e-5 (the ops these graphs are built from: test_ops.py)."""
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

from conftest import ROOT, o1_weights, tiny
from inference import EXPORT_META, ExportedModel, export, export_onnx
from inference.exported import graph_file
from models import MODELS
from weights.checkpoint import save_checkpoint

NAMES = sorted(MODELS)
TOL = 1e-5


def inputs(model, n, h, w, seed=0):
    rng = np.random.RandomState(seed)
    image = rng.uniform(-1, 1, (n, 3, h, w)).astype('float32')
    mask = np.zeros((n, 1, h, w), 'float32')
    for i in range(n):  # a different box per item
        top, left = rng.randint(0, h // 2), rng.randint(0, w // 2)
        mask[i, :, top:top + h // 3, left:left + w // 3] = 1
    return image, mask


def sizes(model):
    """Three (N, H, W) that differ from each other, two of them not square."""
    s, m = model.cfg['image_size'], model.SIZE_MULTIPLE
    return [(1, s, s), (2, s + m, s + 2 * m), (1, s + 2 * m, s)]


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Exports each model once (O(1) random weights); {name: (model, folder)}."""
    done = {}

    def get(name):
        if name not in done:
            model = tiny(name)
            if model.export_blocker():  # this Paddle cannot export the model: said, not hidden
                pytest.skip(f'{name}: {model.export_blocker()}')
            o1_weights(model.netG)
            model.eval()
            done[name] = model, export(model, tmp_path_factory.mktemp(name))
        return done[name]
    return get


def assert_close(model, runner, size, seed=0):
    image, mask = inputs(model, *size, seed=seed)
    with paddle.no_grad():
        eager = model(paddle.to_tensor(image), paddle.to_tensor(mask))
    got = runner(image, mask)
    assert list(got) == list(model.IMAGE_OUTPUTS)
    for name, value in got.items():
        ref = eager[name].numpy()
        assert value.shape == ref.shape, name
        assert np.abs(value - ref).max() <= TOL, (name, size, np.abs(value - ref).max())
    assert np.abs(got['pred']).max() > 0.05  # a real signal was compared


@pytest.mark.slow
@pytest.mark.parametrize('name', NAMES)
def test_paddle_inference_equals_dygraph(name, exported):
    model, folder = exported(name)
    meta = (folder / EXPORT_META).read_text()
    assert f'"model": "{name}"' in meta and graph_file(folder).exists()
    onednn = ExportedModel(folder, device='cpu', threads=1)
    for size in sizes(model):
        assert_close(model, onednn.outputs_for, size)
    plain = ExportedModel(folder, device='cpu', threads=1, onednn=False)
    assert_close(model, plain.outputs_for, sizes(model)[1], seed=1)
    with pytest.raises(ValueError, match='sketch: exported models take image and mask only'):
        plain.extra_inputs(None, None, given={'sketch': np.zeros((8, 8), 'float32')})
    assert plain.extra_inputs(None, None, given={}) == {}


@pytest.mark.slow
@pytest.mark.parametrize('name', NAMES)
def test_onnx_equals_dygraph(name, exported):
    pytest.importorskip('paddle2onnx', reason='paddle2onnx is optional (pip install paddle2onnx)')
    pytest.importorskip('onnxruntime', reason='onnxruntime is optional (pip install onnxruntime)')
    model, folder = exported(name)
    try:
        export_onnx(folder)
    except RuntimeError as e:  # an op paddle2onnx lacks or mistranslates: reported, not hidden
        if 'unsupported operators' not in str(e) and 'computes other values' not in str(e):
            raise
        assert not (folder / 'model.onnx').exists()
        pytest.xfail(f'{name}: {e}')
    runner = ExportedModel(folder, backend='onnx', threads=1)
    for size in sizes(model)[:2]:
        assert_close(model, runner.outputs_for, size)


def test_missing_export_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='tools/export.py'):
        ExportedModel(tmp_path)


@pytest.mark.slow
def test_export_and_infer_scripts(tmp_path):
    """tools/export.py on a checkpoint, then tools/infer.py on an odd-sized photo."""
    model = tiny('deepfill_v1')
    o1_weights(model.netG)
    save_checkpoint(tmp_path / 'c.safetensors', model, {},
                    dict(model='deepfill_v1', config=model.cfg, iteration=0))
    run = lambda *a: subprocess.run([sys.executable, *map(str, a)], capture_output=True,  # noqa
                                    text=True, timeout=300, cwd=ROOT)
    proc = run('tools/export.py', '--checkpoint', tmp_path / 'c.safetensors', '--out',
               tmp_path / 'exp')
    assert proc.returncode == 0, proc.stderr[-2000:]
    rng = np.random.RandomState(0)
    photo = rng.randint(0, 255, (53, 70, 3)).astype(np.uint8)
    hole = np.zeros((53, 70), np.uint8)
    hole[10:30, 20:45] = 255
    Image.fromarray(photo).save(tmp_path / 'p.png')
    Image.fromarray(hole).save(tmp_path / 'm.png')
    proc = run('tools/infer.py', '--model_dir', tmp_path / 'exp', '--image', tmp_path / 'p.png',
               '--mask', tmp_path / 'm.png', '--output', tmp_path / 'o.png', '--threads', '1',
               '--compare', tmp_path / 'c.safetensors')
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = np.asarray(Image.open(tmp_path / 'o.png'))
    assert out.shape == photo.shape and np.array_equal(out[hole == 0], photo[hole == 0])
    diffs = proc.stdout.split('max |exported - dygraph|: ')[1].split()
    assert diffs[0::2] == ['coarse', 'pred', 'composite']
    assert max(float(v) for v in diffs[1::2]) <= TOL
    proc = run('tools/infer.py', '--model_dir', tmp_path, '--image', tmp_path / 'p.png',
               '--mask', tmp_path / 'm.png', '--output', tmp_path / 'o.png')
    assert proc.returncode == 2 and 'holds no inpaint.json' in proc.stderr
