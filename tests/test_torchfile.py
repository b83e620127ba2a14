"""The code-free reader of torch checkpoints (fixtures written by torch 2.13 with the script in
the module docstring of tests/fixtures/README.md) and of pickled .pdparams."""
import os
from pathlib import Path

import numpy as np
import paddle
import pytest

from models import torchfile

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
    flat = torchfile.state_dict(FIXTURES / name)  # unwraps {'model': ...}
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
    sd = torchfile.state_dict(path)
    assert np.array_equal(sd['a.weight'], weights['a.weight'].numpy())
    assert np.array_equal(sd['b'], [1, 2])


def test_not_a_checkpoint_is_a_value_error(tmp_path):
    path = tmp_path / 'x.pth'
    path.write_text('hello')
    with pytest.raises(ValueError, match='x.pth'):
        torchfile.load(path)
