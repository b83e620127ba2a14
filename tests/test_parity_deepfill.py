"""Our DeepFill v1/v2 against the code behind every published weight file, via the converters:
the official TensorFlow graphs (v1.0.0 and v2 master) and the PyTorch ports of daa233 (v1) and
nipponjo (v2).

Each fixture (tests/fixtures/README.md, "DeepFill parity") holds an input with its hole mask
(2x3x96x96 for the ports, 1x3x64x64 at full width for the official graphs), the reference's
parameter names and shapes, and what the reference computed with weights made by ``rule`` from
those names. The tests rebuild the weights, convert them with
the model's own converter (models/convert.py, strict) and require our outputs to match:
max|ours - ref| <= 1e-4 * max|ref| on the coarse and final images and on the critic scores, and
exact equality of the contextual-attention offsets and of the flow image coloured from them.
"""
import zlib
from pathlib import Path

import numpy as np
import paddle
import pytest

from models.attention import flow_to_image
from weights.convert import convert

FIXTURES = Path(__file__).parent / 'fixtures'
TOL = 1e-4


def rule(name, shape, gain, layout='torch'):
    """The fixture weights: kernels normal with std gain/sqrt(fan_in) (fan_in over all axes but
    the output one: torch [out, ...], TF [..., out]), biases normal(0, 0.1), spectral-norm ``u``
    vectors normal(0, 1), each seeded by the CRC32 of the reference name."""
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    if name.endswith(('weight_u', '/u')):
        return rng.standard_normal(shape).astype(np.float32)
    if len(shape) >= 2:
        fan_in = np.prod(shape[:-1] if layout == 'tf' else shape[1:])
        return (rng.standard_normal(shape) * gain / np.sqrt(fan_in)).astype(np.float32)
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)


def reference_state(data):
    """{reference name: array} rebuilt from a fixture's names, shapes, gain and layout."""
    shapes = [tuple(int(s) for s in text.split(',')) for text in data['param_shapes']]
    gain, layout = float(data['weight_gain']), str(data.get('weight_layout', 'torch'))
    return {str(n): rule(str(n), shape, gain, layout)
            for n, shape in zip(data['param_names'], shapes)}


def relative_error(ours, ref):
    return float(np.abs(np.asarray(ours) - ref).max() / np.abs(ref).max())


def run_generator(model, data):
    """Model outputs as numpy, plus the contextual-attention layer's output as 'attention_out'."""
    seen = {}
    hook = model.netG.refine.contextual_attention.register_forward_post_hook(
        lambda layer, inputs, output: seen.update(attention_out=output[0].numpy()))
    with paddle.no_grad():
        out = model(paddle.to_tensor(data['image']), paddle.to_tensor(data['mask']))
    hook.remove()
    return {**{k: v.numpy() for k, v in out.items()}, **seen}


def parity_case(fixture, source):
    data = dict(np.load(FIXTURES / fixture))
    model, info = convert(source, reference_state(data))
    return data, model, info, run_generator(model, data)


@pytest.fixture(scope='module')
def daa233():
    return parity_case('parity_deepfill_v1_daa233.npz', 'daa233_v1')


@pytest.fixture(scope='module')
def nipponjo():
    return parity_case('parity_deepfill_v2_nipponjo.npz', 'nipponjo_v2')


@pytest.fixture(scope='module')
def official_v1():
    return parity_case('parity_deepfill_v1_official.npz', 'official_v1_tf')


@pytest.fixture(scope='module')
def official_v2():
    return parity_case('parity_deepfill_v2_official.npz', 'official_v2_tf')


CASES = ['official_v1', 'daa233', 'official_v2', 'nipponjo']


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('key', ['coarse', 'attention_out', 'pred'])
def test_generator_matches_reference(case, key, request):
    data, model, info, out = request.getfixturevalue(case)
    assert info['initialised'] == []  # generator and critic both came from the reference
    assert out[key].shape == data[key].shape
    assert relative_error(out[key], data[key]) <= TOL


@pytest.mark.parametrize('case', CASES)
def test_attention_offsets_and_flow_match_reference(case, request):
    data, _, _, out = request.getfixturevalue(case)
    assert np.abs(data['offsets']).max() >= 3  # the hole copies from a distance, not from itself
    np.testing.assert_array_equal(out['offsets'], data['offsets'])
    flow = np.round((flow_to_image(out['offsets']) + 1) * 127.5)  # ours is uint8 / 127.5 - 1
    np.testing.assert_array_equal(flow, data['flow'].transpose(0, 3, 1, 2))


@pytest.mark.parametrize('case', ['official_v1', 'daa233'])
def test_v1_critics_match_reference(case, request):
    data, model, info, _ = request.getfixturevalue(case)
    top, left = data['local_patch_origin']
    size = info['config']['bbox_size']
    image = paddle.to_tensor(data['image'])
    with paddle.no_grad():
        local = model.netD.local_critic(image[:, :, top:top + size, left:left + size]).numpy()
        glob = model.netD.global_critic(image).numpy()
    assert relative_error(local, data['local_score']) <= TOL
    assert relative_error(glob, data['global_score']) <= TOL


@pytest.mark.parametrize('case, shape', [('official_v2', (1, 256)), ('nipponjo', (2, 128))])
def test_sn_patchgan_matches_reference(case, shape, request):
    """Eval-mode SN-PatchGAN scores equal the source's forward, whose power iteration the
    converter ran once (at 96 = 3 * 32 the sixth layer meets an odd size and TF's extra pad)."""
    data, model, _, _ = request.getfixturevalue(case)
    mask = np.broadcast_to(data['mask'], (len(data['image']),) + data['mask'].shape[1:])
    x = paddle.to_tensor(np.concatenate([data['image'], mask], axis=1))
    with paddle.no_grad():
        scores = model.netD(x).numpy()
    assert scores.shape == data['d_score'].shape == shape
    assert relative_error(scores, data['d_score']) <= TOL


@pytest.mark.parametrize('case, key', [('daa233', 'padding'), ('daa233', 'ca_resize'),
                                       ('daa233', 'ca_patch_norm'), ('nipponjo', 'ca_fuse'),
                                       ('nipponjo', 'ca_mask_from')])
def test_every_recorded_switch_is_needed(case, key, request):
    """Reverting one switch to the official default breaks parity: each one is load-bearing."""
    data, model, info, _ = request.getfixturevalue(case)
    cfg = dict(info['config'])
    cfg[key] = type(model).DEFAULTS[key]
    assert cfg[key] != info['config'][key]
    other = type(model)(**cfg)
    other.set_state_dict(model.state_dict())
    other.eval()
    assert relative_error(run_generator(other, data)['pred'], data['pred']) > 10 * TOL
