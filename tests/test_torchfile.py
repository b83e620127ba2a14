"""The code-free reader of torch checkpoints (fixtures written by torch 2.13 with the script in
the module docstring of tests/fixtures/README.md) and of pickled .pdparams."""
import os
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
