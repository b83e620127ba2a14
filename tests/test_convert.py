"""The weight-conversion framework (models/convert.py) and tools/convert_weights.py.

Weights come from the parity fixtures' reference names (test_parity_deepfill.py): a small
nipponjo DeepFill v2 (generator cnum 16, critic cnum 8) and a small daa233 DeepFill v1.
"""
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import paddle
import pytest
from PIL import Image
from safetensors.numpy import save_file

import models
from models.checkpoint import read_checkpoint
from models.convert import (convert, convert_files, describe, find_source, read_inputs,
                            read_weights, sources)
from models.convert_deepfill import convert_daa233_v1, convert_daa233_v1_tf, convert_nipponjo_v2
from models.deepfill_v1 import DeepFillV1
from models.deepfill_v2 import DeepFillV2
from models.inpainter import Inpainter, load_model
from test_parity_deepfill import FIXTURES, reference_state, run_generator

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name.replace('/', '_'), ROOT / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def v2_data():
    return dict(np.load(FIXTURES / 'parity_deepfill_v2_nipponjo.npz'))


@pytest.fixture(scope='module')
def v1_data():
    return dict(np.load(FIXTURES / 'parity_deepfill_v1_daa233.npz'))


@pytest.fixture
def v2_state(v2_data):
    return reference_state(v2_data)


def test_sources_are_found_across_models_with_descriptions():
    found = sources()
    assert found['daa233_v1'] == (DeepFillV1, convert_daa233_v1)
    assert found['daa233_v1_tf'] == (DeepFillV1, convert_daa233_v1_tf)
    assert found['nipponjo_v2'] == (DeepFillV2, convert_nipponjo_v2)
    summary, download = describe(convert_nipponjo_v2)
    assert summary.startswith("nipponjo's conversion") and '\n' not in summary
    assert download.startswith('https://github.com/nipponjo/deepfillv2-pytorch')
    with pytest.raises(ValueError, match=r"unknown source 'nope'; choose one of .*nipponjo_v2"):
        find_source('nope')


def test_duplicate_source_names_are_rejected(monkeypatch):
    class Twin:
        NAME = 'twin'
        CONVERTERS = {'nipponjo_v2': convert_nipponjo_v2}

    monkeypatch.setitem(models.MODELS, 'twin', Twin)
    with pytest.raises(ValueError, match="'nipponjo_v2' is defined by both"):
        sources()


def test_conversion_records_switches_and_shapes(v2_state):
    model, info = convert('nipponjo_v2', v2_state)
    assert isinstance(model, DeepFillV2) and not model.training
    assert info['switches'] == dict(cnum=16, guided=False, ca_fuse=False, ca_mask_from='image',
                                    d_cnum=8)
    assert info['config']['padding'] == 'tf_same' and info['config']['ca_resize'] == 'tf'
    assert info['initialised'] == []
    np.testing.assert_array_equal(model.state_dict()['netG.refine.xconv1.conv.weight'].numpy(),
                                  v2_state['G.xconv1.conv.weight'])
    w = v2_state['D.conv2.conv_sn.weight']
    u = model.state_dict()['netD.conv2.conv.weight_u'].numpy()
    v = model.state_dict()['netD.conv2.conv.weight_v'].numpy()
    # one power iteration: u = W v / |W v| with v = W^T u0 / |W^T u0|
    np.testing.assert_allclose(u, w.reshape(len(u), -1) @ v / np.linalg.norm(
        w.reshape(len(u), -1) @ v), atol=1e-6)


def test_a_missing_critic_keeps_its_initialisation_and_is_recorded(v2_state):
    generator_only = {k: v for k, v in v2_state.items() if k.startswith('G.')}
    model, info = convert('nipponjo_v2', generator_only)
    assert info['initialised'] == ['netD'] and 'd_cnum' not in info['switches']
    assert model.netD.conv1.conv.weight_orig.shape[0] == DeepFillV2.DEFAULTS['d_cnum']


@pytest.mark.parametrize('edit, message', [
    (lambda s: s.pop('G.allconv16.conv.bias'),
     r"lacks netG tensor 'netG.refine.allconv16.conv.bias' \(1 of 84 missing\)"),
    (lambda s: s.pop('D.conv6.conv_sn.bias'), r"lacks netD tensor 'netD.conv6.conv.bias'"),
    (lambda s: s.update({'G.conv3.conv.weight': np.zeros((32, 16, 5, 5), np.float32)}),
     r'netG.coarse.conv3.conv.weight has shape \[32, 16, 5, 5\] in the input, deepfill_v2 '
     r'expects \[32, 16, 3, 3\]'),
    (lambda s: s.update({'G.conv99.conv.weight': np.zeros(3, np.float32)}),
     r"converted tensor 'netG.coarse.conv99.conv.weight' has no place in deepfill_v2"),
    (lambda s: s.update({'G.conv1.conv_sn.weight': np.zeros(3, np.float32)}),
     r"1 unexpected tensors such as 'G.conv1.conv_sn.weight'"),
])
def test_bad_inputs_fail_with_one_line(v2_state, edit, message):
    edit(v2_state)
    with pytest.raises(ValueError, match=message) as err:
        convert('nipponjo_v2', v2_state)
    assert '\n' not in str(err.value)


def test_unread_input_tensors_fail_unless_ignored(v2_state, monkeypatch):
    def by_lookup(state):  # reads tensors by name, as most converters do
        return convert_nipponjo_v2({k: state[k] for k in list(state.keys()) if k != 'extra'})

    def ignoring(state):
        state.ignore('ext')
        return by_lookup(state)

    monkeypatch.setattr(DeepFillV2, 'CONVERTERS', {'by_lookup': by_lookup, 'ignoring': ignoring})
    v2_state['extra'] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match=r"1 tensors of the input are not by_lookup weights, "
                                         r"e.g. 'extra' \(wrong file or --source\?\)"):
        convert('by_lookup', v2_state)
    assert convert('ignoring', v2_state)[1]['initialised'] == []


def test_training_files_skip_optimizer_states(v2_state):
    v2_state['G_optim.state.0.exp_avg'] = np.zeros((48, 5, 5, 5), np.float32)
    assert convert('nipponjo_v2', v2_state)[1]['initialised'] == []


def test_read_weights_flattens_nested_dicts_and_unwraps(tmp_path, v2_state):
    nested = {'G': {k[2:]: v for k, v in v2_state.items() if k.startswith('G.')},
              'D': {k[2:]: v for k, v in v2_state.items() if k.startswith('D.')}, 'n_iter': 7}
    path = tmp_path / 'states.pth'  # a pickled dict of numpy arrays, as .pdparams files are
    path.write_bytes(pickle.dumps(nested))
    flat = read_weights(path)
    assert sorted(flat) == sorted(v2_state)
    np.testing.assert_array_equal(flat['D.conv1.conv_sn.weight_u'],
                                  v2_state['D.conv1.conv_sn.weight_u'])
    # {'n_iter': 5, 'model': state dict} written by torch: the wrapper entry is unwrapped
    ref = np.load(FIXTURES / 'torch_ref.npz')
    torch_flat = read_weights(FIXTURES / 'torch_zip.pth')
    assert sorted(torch_flat) == sorted(ref.files)
    np.testing.assert_array_equal(torch_flat['0.weight'], ref['0.weight'])
    save_file({'a': np.ones(2, np.float32)}, str(tmp_path / 'w.safetensors'))
    np.savez(tmp_path / 'w.npz', b=np.zeros(3))
    assert list(read_weights(tmp_path / 'w.safetensors')) == ['a']
    assert list(read_weights(tmp_path / 'w.npz')) == ['b']
    with pytest.raises(FileNotFoundError, match='--input: .*missing.pth does not exist'):
        read_weights(tmp_path / 'missing.pth')


def test_separate_generator_and_critic_files_merge(tmp_path, v2_state):
    for part in 'GD':
        np.savez(tmp_path / f'{part}.npz',
                 **{k: v for k, v in v2_state.items() if k.startswith(part + '.')})
    assert sorted(read_inputs([tmp_path / 'G.npz', tmp_path / 'D.npz'])) == sorted(v2_state)
    with pytest.raises(ValueError, match=r'--input: G\.conv1\.conv\.weight is in both'):
        read_inputs([tmp_path / 'G.npz', tmp_path / 'G.npz'])


def test_output_must_be_safetensors(tmp_path, v2_state):
    np.savez(tmp_path / 'w.npz', **v2_state)
    with pytest.raises(ValueError, match=r'--output: .*x\.pdparams must end in \.safetensors'):
        convert_files('nipponjo_v2', [tmp_path / 'w.npz'], tmp_path / 'x.pdparams')


def test_cli_checkpoint_loads_in_test_py_and_the_inpainter(tmp_path, v2_data, v2_state, capsys):
    weights = tmp_path / 'states_tf_tiny.pth'
    weights.write_bytes(pickle.dumps({
        'G': {k[2:]: v for k, v in v2_state.items() if k.startswith('G.')},
        'D': {k[2:]: v for k, v in v2_state.items() if k.startswith('D.')}}))
    out = tmp_path / 'ckpt' / 'v2.safetensors'
    cli = load_script('tools/convert_weights')
    assert cli.main(['--source', 'nipponjo_v2', '--input', str(weights), '--output', str(out)]) == 0
    printed = capsys.readouterr().out
    assert f'wrote {out}: deepfill_v2 from nipponjo_v2' in printed
    assert 'critic: converted' in printed
    _, state = read_checkpoint(out)
    assert state['model'] == 'deepfill_v2' and state['iteration'] == 0
    assert state['config']['ca_fuse'] is False and state['config']['ca_mask_from'] == 'image'
    assert state['source']['files'] == [weights.name] and len(state['source']['sha256'][0]) == 64

    # the checkpoint computes what the directly converted model computes
    direct, _ = convert('nipponjo_v2', v2_state)
    loaded, _ = load_model(out)
    np.testing.assert_array_equal(run_generator(loaded, v2_data)['pred'],
                                  run_generator(direct, v2_data)['pred'])

    rng = np.random.RandomState(0)
    photo = rng.randint(0, 256, (50, 60, 3)).astype(np.uint8)  # not a multiple of 8: padded
    hole = np.zeros((50, 60), np.uint8)
    hole[10:30, 20:45] = 255
    result = Inpainter.from_checkpoint(out)(photo, hole)
    assert result.shape == photo.shape
    np.testing.assert_array_equal(result[hole == 0], photo[hole == 0])

    Image.fromarray(photo).save(tmp_path / 'photo.png')
    Image.fromarray(hole).save(tmp_path / 'hole.png')
    test_py = load_script('test')
    assert test_py.main(['--checkpoint', str(out), '--image', str(tmp_path / 'photo.png'),
                         '--mask', str(tmp_path / 'hole.png'),
                         '--output', str(tmp_path / 'result.png')]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'result.png')), result)


def test_cli_list_and_errors(capsys):
    cli = load_script('tools/convert_weights')
    assert cli.main(['--list']) == 0
    listing = capsys.readouterr().out
    for source, model in [('daa233_v1', 'deepfill_v1'), ('daa233_v1_tf', 'deepfill_v1'),
                          ('nipponjo_v2', 'deepfill_v2')]:
        assert f'{source}  ->  {model}' in listing
    assert 'download: https://github.com/daa233/generative-inpainting-pytorch' in listing
    with pytest.raises(ValueError, match='--source and --input are required'):
        cli.main(['--source', 'nipponjo_v2'])


def test_daa233_official_weights_are_flipped_to_rgb(v1_data):
    """``daa233_v1_tf`` = the official graph on BGR-trained weights: fed RGB, it gives exactly
    what the unflipped weights give on the BGR image, with the colours flipped back."""
    state = reference_state(v1_data)
    rgb_model, info = convert('daa233_v1_tf', state)
    assert {k: info['config'][k] for k in ('padding', 'ca_resize', 'ca_patch_norm')} == \
        dict(padding='tf_same', ca_resize='tf', ca_patch_norm='clamp')
    params, _ = convert_daa233_v1(state)
    bgr_model = DeepFillV1(**info['config'])
    bgr_model.set_state_dict({k: paddle.to_tensor(v) for k, v in params.items()})
    bgr_model.eval()
    rgb = run_generator(rgb_model, v1_data)
    bgr = run_generator(bgr_model, {**v1_data, 'image': v1_data['image'][:, ::-1].copy()})
    for key in ('coarse', 'pred'):
        np.testing.assert_allclose(rgb[key], bgr[key][:, ::-1], atol=1e-5)
    assert np.abs(rgb['pred'] - bgr['pred']).max() > 1e-2  # the flip is not a no-op
    size = info['config']['image_size']
    with paddle.no_grad():
        scores = [m.netD.global_critic(paddle.to_tensor(img[:, :, :size, :size].copy())).numpy()
                  for m, img in ((rgb_model, v1_data['image']),
                                 (bgr_model, v1_data['image'][:, ::-1]))]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-6)
