"""Layers shared by papers (models/ops.py, models/attention.py): resizes and overlap-add that
trace with run-time sizes, and contextual attention in chunks (same result, bounded memory)."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from models import attention, ops
from models.attention import (ContextualAttention, background_kernels, extract_patches,
                              fuse_scores, fused_scores_at, matching_scores)


class _Ops(paddle.nn.Layer):
    """Resizes, fuse and overlap-add on shapes known only at run time."""

    def forward(self, x):
        n, c, h, w = x.shape
        small = [h // 2, w // 2]
        tf = ops.resize_nearest_tf(x, small)
        torch = ops.resize_nearest_torch(x, [h // 3, w // 3])
        fused = attention.fuse_scores(attention.matching_scores(tf, tf, 3), small, small)
        pasted = attention.overlap_add(attention.extract_patches(x, 4, 2), [h, w], 2)
        return tf, torch, fused, pasted


def test_ops_trace_with_dynamic_shapes(tmp_path):
    from paddle.static import InputSpec
    layer = _Ops()
    spec = [InputSpec([None, 2, None, None], 'float32', 'x')]
    paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True),
                    str(tmp_path / 'ops'))
    loaded = paddle.jit.load(str(tmp_path / 'ops'))
    for h, w in [(12, 18), (22, 14)]:
        x = paddle.randn([1, 2, h, w])
        for got, ref in zip(loaded(x), layer(x)):
            assert got.shape == ref.shape and np.abs(got.numpy() - ref.numpy()).max() < 1e-5


def test_tf_index_tensor_equals_the_numpy_rule():
    for n_in in list(range(1, 70)) + [255, 256, 511, 1000, 1536, 2048]:
        for n_out in {1, max(1, n_in // 2), max(1, n_in // 4), n_in, 2 * n_in, 7}:
            assert np.array_equal(ops.tf_nearest_index_tensor(n_in, n_out).numpy(),
                                  ops.tf_nearest_indices(n_in, n_out)), (n_in, n_out)


@pytest.mark.parametrize('rate', [1, 2, 3, 4])
def test_overlap_add_equals_fold(rate):
    h, w = 4 * rate, 6 * rate
    cols = paddle.randn([2, 3 * 4 * rate * rate, (h // rate) * (w // rate)])
    got = attention.overlap_add(cols, (h, w), rate).numpy()
    k, top = 2 * rate, rate // 2
    naive = np.zeros((2, 3, h + rate, w + rate))  # fold by hand on the padded grid
    patches = cols.numpy().reshape(2, 3, k, k, h // rate, w // rate)
    for i in range(h // rate):
        for j in range(w // rate):
            naive[:, :, i * rate:i * rate + k, j * rate:j * rate + k] += patches[..., i, j]
    assert np.abs(got - naive[:, :, top:top + h, top:top + w]).max() < 1e-5
    if rate % 2 == 0:  # symmetric padding: paddle's fold takes it in its own order
        pad = ops.same_padding(k, rate)
        assert np.abs(got - F.fold(cols, [h, w], k, rate, pad).numpy()).max() < 1e-5


def test_shift_fills_zeros():
    x = paddle.arange(12, dtype='float32').reshape([1, 3, 4])
    assert ops.shift(x, 1, 2).numpy()[0, 0].tolist() == [1, 2, 3, 0]
    assert ops.shift(x, -2, 1).numpy()[0, :, 0].tolist() == [0, 0, 0]
    assert ops.shift(x, -1, 1).numpy()[0, :, 1].tolist() == [0, 1, 5]


# ---------------------------------------------------------------- contextual attention in chunks
@pytest.mark.parametrize('hw,chunk', [((12, 16), 50), ((12, 16), 7), ((15, 9), 64), ((8, 8), 16)])
def test_fused_scores_of_a_chunk_equal_the_full_fuse(hw, chunk):
    rng = np.random.RandomState(0)
    f = paddle.to_tensor(rng.randn(2, 4, *hw).astype('float32'))
    full = fuse_scores(matching_scores(f, f, 3), hw, hw, 3).numpy()
    kernels, patches = background_kernels(f, 3), extract_patches(f, 3)
    count = hw[0] * hw[1]
    for start in range(0, count, chunk):
        columns = np.arange(start, min(start + chunk, count))
        part = fused_scores_at(kernels, patches, columns, hw, 3).numpy()
        assert np.abs(part - full[:, :, columns]).max() < 1e-5


@pytest.mark.parametrize('fuse', [True, False])
def test_chunked_attention_equals_unchunked_with_gradients(fuse):
    rng = np.random.RandomState(1)
    x = rng.randn(2, 8, 24, 32).astype('float32')
    mask = np.zeros((2, 1, 24, 32), 'float32')
    mask[0, :, 4:12, 6:20] = 1
    mask[1, :, 10:20, 2:9] = 1  # per-sample masks
    outs = []
    for chunk in (0, 37):
        f = paddle.to_tensor(x, stop_gradient=False)
        y, offsets = ContextualAttention(fuse=fuse, chunk=chunk)(f, f, paddle.to_tensor(mask))
        (y * y).sum().backward()
        outs.append((y.numpy(), offsets.numpy(), f.grad.numpy()))
    (y0, o0, g0), (y1, o1, g1) = outs
    assert np.abs(y0 - y1).max() <= 1e-5 * np.abs(y0).max()
    assert np.array_equal(o0, o1)
    assert np.abs(g0 - g1).max() <= 1e-5 * np.abs(g0).max()
    with pytest.raises(ValueError, match='ca_chunk'):
        ContextualAttention(chunk=-1)
