"""The code-free reader of torch checkpoints (fixtures written by torch 2.13 with the scripts in
the first section of tests/fixtures/README.md), of Lightning checkpoints, TorchScript archives
and pickled .pdparams."""
import os
import struct
from pathlib import Path

import numpy as np
import paddle
import pytest

from weights import torchfile
from weights.read import read_weights

FIXTURES = Path(__file__).parent / 'fixtures'


@pytest.mark.parametrize('name', ['torch_zip.pth', 'torch_legacy.pth'])
def test_reads_both_torch_formats_exactly(name):
    ref = np.load(FIXTURES / 'torch_ref.npz')
    obj = torchfile.load(FIXTURES / name)
    assert obj['n_iter'] == 5
    sd = obj['model']
    for key in ref.files:
        assert np.array_equal(sd[key].astype(np.float32), ref[key]), key
    assert sd['t'].flags['C_CONTIGUOUS'] and sd['t'].shape == (4, 3)  # a transposed view
    assert sd['1.num_batches_tracked'].dtype == np.int64 and sd['scalar'].shape == ()
    flat = read_weights(FIXTURES / name)  # unwraps {'model': ...}
    assert set(flat) == set(ref.files)


def test_refuses_files_that_reference_code(tmp_path):
    with pytest.raises(torchfile.UnsafeFileError, match='system'):
        torchfile.load(FIXTURES / 'torch_evil.pth')
    assert not os.path.exists('/tmp/tf/pwned')


def test_reads_pdparams_without_paddle_unpickling(tmp_path):
    path = tmp_path / 'w.pdparams'
    weights = {'a.weight': paddle.arange(6, dtype='float32').reshape([2, 3]),
               'b': paddle.to_tensor([1, 2], dtype='int64')}
    paddle.save(weights, str(path))
    sd = read_weights(path)
    assert np.array_equal(sd['a.weight'], weights['a.weight'].numpy())
    assert np.array_equal(sd['b'], [1, 2])
    paddle.save({'state_dict': weights, 'epoch': 3}, str(path))  # nested: (name, array) tuples
    sd = read_weights(path)
    assert sorted(sd) == ['a.weight', 'b'] and np.array_equal(sd['b'], [1, 2])
    assert sorted(read_weights(path, unwrap=False)) == ['state_dict.a.weight', 'state_dict.b']
    paddle.save({'net_gen': weights}, str(path))  # PaddleGAN's layout: flattened with its prefix
    assert sorted(read_weights(path)) == ['net_gen.a.weight', 'net_gen.b']


def test_not_a_checkpoint_is_a_value_error(tmp_path):
    path = tmp_path / 'x.pth'
    path.write_text('hello')
    with pytest.raises(ValueError, match='x.pth'):
        torchfile.load(path)


def test_reads_lightning_checkpoint_tensors_only():
    # LaMa's best.ckpt layout (Lightning 1.2.9): state_dict next to OmegaConf hyper_parameters
    ref = np.load(FIXTURES / 'torch_lightning_ref.npz')  # state_dict.*, optimizer_states.*
    flat = read_weights(FIXTURES / 'torch_lightning.ckpt')
    state = {k[len('state_dict.'):]: ref[k] for k in ref.files if k.startswith('state_dict.')}
    assert sorted(flat) == sorted(state) and 'generator.model.1.ffc.convl2l.weight' in flat
    for key, value in state.items():
        assert flat[key].dtype == value.dtype and np.array_equal(flat[key], value), key
    everything = read_weights(FIXTURES / 'torch_lightning.ckpt', unwrap=False)
    assert sorted(everything) == sorted(ref.files)  # Adam's step, exp_avg, exp_avg_sq too
    assert all(np.array_equal(everything[k], ref[k]) for k in ref.files)
    obj = torchfile.load(FIXTURES / 'torch_lightning.ckpt')
    assert isinstance(obj['hyper_parameters'], torchfile._Inert)  # not omegaconf's class
    assert repr(type(obj['hyper_parameters'])) == 'omegaconf.dictconfig.DictConfig'
    assert obj['pytorch-lightning_version'] == '1.2.9' and obj['global_step'] == 1


@pytest.mark.parametrize('name', ['torch_script_trace.pt', 'torch_script_script.pt'])
def test_reads_torchscript_module_tree_as_state_dict(name):
    # IOPaint's big-lama.pt: torch.jit of a wrapper whose .model holds the training module
    ref = np.load(FIXTURES / 'torch_script_ref.npz')  # the wrapper's state_dict()
    flat = read_weights(FIXTURES / name)
    assert sorted(flat) == sorted(ref.files)  # the scripted one's plain rgb_mean is left out
    assert 'model.generator.model.1.ffc.convl2l.weight' in flat
    for key in ref.files:
        assert flat[key].dtype == ref[key].dtype and np.array_equal(flat[key], ref[key]), key


def _global(module, name):
    return f'c{module}\n{name}\n'.encode()  # GLOBAL


def _text(text):
    raw = text.encode()
    return b'X' + struct.pack('<I', len(raw)) + raw  # BINUNICODE


CODE_GLOBALS = [('posix', 'system'), ('os', 'system'), ('builtins', 'eval'), ('subprocess', 'call'),
                ('omegaconfx.os', 'system'), ('typing', 'get_type_hints')]


@pytest.mark.parametrize('module, name', CODE_GLOBALS)
def test_lightning_file_with_code_is_refused(tmp_path, module, name):
    marker = tmp_path / 'pwned'
    data = (b'\x80\x02}(' + _text('hyper_parameters')
            + _global('omegaconf.dictconfig', 'DictConfig') + b')\x81'
            + _text('x') + _global(module, name) + b'(' + _text(f'touch {marker}')
            + b'tRu.')  # {'hyper_parameters': DictConfig(), 'x': os.system('touch ...')}
    (tmp_path / 'evil.ckpt').write_bytes(data)
    with pytest.raises(torchfile.UnsafeFileError, match=f'refusing to load {module}.{name}'):
        read_weights(tmp_path / 'evil.ckpt')
    assert not marker.exists()


def test_placeholders_only_record_what_the_pickle_gives_them(tmp_path):
    marker = tmp_path / 'pwned'
    payload = f'import os; os.system("touch {marker}")'
    data = (b'\x80\x02}('
            + _text('node') + _global('omegaconf.nodes', 'AnyNode') + b'(' + _text(payload)
            + b'tR}' + _text('_val') + _text(payload) + b'sb'  # REDUCE, then BUILD its state
            + _text('call') + _global('omegaconf', 'eval') + b'(' + _text(payload) + b'tR'
            + _text('cfg') + _global('omegaconf.dictconfig', 'DictConfig') + b')\x81'
            + _text('k') + _text(payload) + b's(' + _text(payload) + b'eu.')  # SETITEM, APPENDS
    (tmp_path / 'smuggle.ckpt').write_bytes(data)
    obj = torchfile.load(tmp_path / 'smuggle.ckpt')
    assert not marker.exists()
    assert obj['node'].args == (payload,) and obj['node'].state == {'_val': payload}
    assert obj['call'].args == (payload,) and obj['cfg'].items == [('k', payload), payload]
    with pytest.raises(ValueError, match='holds no tensors'):  # placeholders are dropped
        read_weights(tmp_path / 'smuggle.ckpt')
