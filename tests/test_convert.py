"""The weight-conversion framework (weights/convert), the one reader and tools/convert_weights.py.

Weights come from the parity fixtures' reference names (test_parity_deepfill.py): a small
nipponjo DeepFill v2 (generator cnum 16, critic cnum 8) and a small daa233 DeepFill v1.
"""
import pickle
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import paddle
import pytest
from PIL import Image
from safetensors.numpy import save_file

from inference import Inpainter, load_model
from models import MODELS
from models.deepfill_v1 import DeepFillV1
from models.deepfill_v2 import DeepFillV2
from weights.checkpoint import read_checkpoint
from weights.convert import (SOURCES, Source, aotgan, convert, convert_files, deepfill,
                             find_source, glcic, lama, lbam, pconv, read_inputs)
from weights.convert.deepfill import (V1_RGB_INPUTS, V1_RGB_OUTPUTS, bgr_to_rgb,
                                      convert_daa233_v1, convert_daa233_v1_tf,
                                      convert_nipponjo_v2, convert_official_v1_tf,
                                      convert_official_v2_tf, nhwc_dense_to_nchw)
from weights.read import read_weights
from test_parity_deepfill import FIXTURES, reference_state, run_generator

ROOT = Path(__file__).resolve().parents[1]


def run_script(name, *args, returncode=0):
    """Runs a script or tool in a fresh process (nothing imports them); returns the process."""
    proc = subprocess.run([sys.executable, str(ROOT / name), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == returncode, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope='module')
def v2_data():
    return dict(np.load(FIXTURES / 'parity_deepfill_v2_nipponjo.npz'))


@pytest.fixture(scope='module')
def v1_data():
    return dict(np.load(FIXTURES / 'parity_deepfill_v1_daa233.npz'))


@pytest.fixture
def v2_state(v2_data):
    return reference_state(v2_data)


def test_one_table_names_every_source_its_model_download_and_licence():
    assert SOURCES['daa233_v1'].function is convert_daa233_v1
    assert SOURCES['daa233_v1_tf'].model == 'deepfill_v1'
    assert SOURCES['nipponjo_v2'] == (SOURCES['nipponjo_v2'].model, convert_nipponjo_v2,
                                      SOURCES['nipponjo_v2'].about,
                                      SOURCES['nipponjo_v2'].download,
                                      SOURCES['nipponjo_v2'].licence)
    for name, source in SOURCES.items():
        assert source.model in MODELS, name
        assert source.download.startswith('https://') and source.licence and source.about, name
        assert '\n' not in source.about, name
    converters = {fn for module in (aotgan, deepfill, glcic, lama, lbam, pconv)
                  for key, fn in vars(module).items() if key.startswith('convert_')}
    assert converters == {source.function for source in SOURCES.values()}  # none left out
    with pytest.raises(ValueError, match=r"unknown source 'nope'; choose one of .*nipponjo_v2"):
        find_source('nope')


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

    for name, fn in (('by_lookup', by_lookup), ('ignoring', ignoring)):
        monkeypatch.setitem(SOURCES, name, Source('deepfill_v2', fn, 'test', 'https://x', 'x'))
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
    with pytest.raises(FileNotFoundError, match='weights: .*missing.pth does not exist'):
        read_weights(tmp_path / 'missing.pth')
    (tmp_path / 'folder').mkdir()
    with pytest.raises(ValueError, match='folder without a TensorFlow checkpoint'):
        read_weights(tmp_path / 'folder')


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


def test_cli_checkpoint_loads_in_test_py_and_the_inpainter(tmp_path, v2_data, v2_state):
    weights = tmp_path / 'states_tf_tiny.pth'
    weights.write_bytes(pickle.dumps({
        'G': {k[2:]: v for k, v in v2_state.items() if k.startswith('G.')},
        'D': {k[2:]: v for k, v in v2_state.items() if k.startswith('D.')}}))
    out = tmp_path / 'ckpt' / 'v2.safetensors'
    printed = run_script('tools/convert_weights.py', '--source', 'nipponjo_v2', '--input', weights,
                         '--output', out).stdout
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
    run_script('test.py', '--checkpoint', out, '--image', tmp_path / 'photo.png', '--mask',
               tmp_path / 'hole.png', '--output', tmp_path / 'result.png')
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'result.png')), result)


def test_cli_list_and_errors():
    listing = run_script('tools/convert_weights.py', '--list').stdout
    for source, model in [('official_v1_tf', 'deepfill_v1'), ('daa233_v1', 'deepfill_v1'),
                          ('daa233_v1_tf', 'deepfill_v1'), ('official_v2_tf', 'deepfill_v2'),
                          ('nipponjo_v2', 'deepfill_v2'), ('nipponjo_v2_official', 'deepfill_v2')]:
        assert f'{source}  ->  {model}' in listing
    assert 'download: https://github.com/daa233/generative-inpainting-pytorch' in listing
    assert 'licence: CC BY-NC 4.0' in listing
    proc = run_script('tools/convert_weights.py', '--source', 'nipponjo_v2', returncode=2)
    assert proc.stderr.strip() == 'error: --source and --input are required (or --list to see ' \
        'the sources)'


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


def tf_value(name, shape, dtype):
    """The values of the TF checkpoint fixture (tests/fixtures/README.md)."""
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    dtype = np.dtype(dtype)
    if dtype.kind == 'f':
        return rng.standard_normal(shape).astype(dtype)
    return rng.randint(0, 100, shape).astype(dtype)


@pytest.mark.parametrize('where', ['', 'snap-0', 'snap-0.index', 'snap-0.data-00000-of-00001'])
def test_tf_checkpoint_reader_without_tensorflow(where):
    folder = FIXTURES / 'parity_deepfill_tf_checkpoint'
    tensors = read_weights(folder / where if where else folder)
    assert len(tensors) == 309  # 300 of them spread the index over several table blocks
    for name, shape, dtype in [('inpaint_net/conv1/kernel', (5, 5, 5, 4), np.float32),
                               ('inpaint_net/conv13_upsample/conv13_upsample_conv/kernel',
                                (3, 3, 4, 2), np.float32),
                               ('discriminator/sn_patch_gan/conv1/kernel_sn/u', (1, 4), np.float32),
                               ('half', (3, 2), np.float16), ('double', (2,), np.float64),
                               ('int64', (4,), np.int64), ('global_step', (), np.int64),
                               ('inpaint_net/layer299/kernel/Adam_1', (2,), np.float32)]:
        assert tensors[name].dtype == dtype and tensors[name].shape == shape
        np.testing.assert_array_equal(tensors[name], tf_value(name, shape, dtype))
    np.testing.assert_array_equal(tensors['flag'], [True, False])


def test_tf_checkpoint_errors(tmp_path):
    (tmp_path / 'snap-0.index').write_bytes(b'\0' * 64)
    with pytest.raises(ValueError, match=r'snap-0\.index is not a TensorFlow checkpoint index'):
        read_weights(tmp_path)
    folder = FIXTURES / 'parity_deepfill_tf_checkpoint'
    (tmp_path / 'x.index').write_bytes((folder / 'snap-0.index').read_bytes())
    with pytest.raises(ValueError, match='holds 2 TensorFlow checkpoints'):
        read_weights(tmp_path)
    with pytest.raises(FileNotFoundError, match=r'x\.data-00000-of-00001 does not exist'):
        read_weights(tmp_path / 'x.index')


def to_tf_v2(state):
    """nipponjo's names and torch layouts -> the official TF checkpoint's (they share names)."""
    tf = {'beta1_power': np.float32(0.5), 'global_step': np.int64(7)}
    for key, value in state.items():
        net, layer, rest = key[0], key.split('.')[1], key.split('.', 2)[2]
        if net == 'G':
            scope = f'inpaint_net/{layer}/' + (f'{layer}_conv/' if rest.startswith('conv.conv')
                                               else '')
            name = scope + ('kernel' if rest.endswith('weight') else 'bias')
        else:
            name = f'discriminator/sn_patch_gan/{layer}/' + {
                'conv_sn.weight': 'kernel', 'conv_sn.bias': 'bias',
                'conv_sn.weight_u': 'kernel_sn/u'}[rest]
        tf[name] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else \
            value.T if name.endswith('/u') else value
        tf[name + '/Adam'] = np.zeros_like(tf[name])
    return tf


def test_official_v2_checkpoint_is_nipponjos_weights_flipped_to_rgb(v2_state):
    official, config = convert_official_v2_tf(to_tf_v2(v2_state))
    ported, _ = convert_nipponjo_v2(v2_state)
    flipped = bgr_to_rgb(dict(ported), V1_RGB_INPUTS + ['netD.conv1.conv.weight_orig'],
                         V1_RGB_OUTPUTS)
    assert sorted(official) == sorted(flipped)
    for key in official:  # conv1's v runs over the flipped input channels, checked below
        if key != 'netD.conv1.conv.weight_v':
            np.testing.assert_array_equal(official[key], flipped[key], err_msg=key)
    sigma = [p['netD.conv1.conv.weight_u'] @ p['netD.conv1.conv.weight_orig'].reshape(8, -1)
             @ p['netD.conv1.conv.weight_v'] for p in (official, ported)]
    np.testing.assert_allclose(sigma[0], sigma[1], rtol=1e-5)
    assert config == dict(cnum=16, guided=False, d_cnum=8)  # official ops: the defaults
    assert not np.array_equal(official['netG.coarse.conv1.conv.weight'],
                              ported['netG.coarse.conv1.conv.weight'])
    with pytest.raises(ValueError, match="1 unexpected variables such as 'inpaint_net/conv1/x'"):
        convert_official_v2_tf({**to_tf_v2(v2_state), 'inpaint_net/conv1/x': np.zeros(1)})


def test_tf_dense_rows_are_reordered_for_an_nchw_flatten():
    rng = np.random.RandomState(0)
    x = rng.standard_normal((2, 5, 3, 3))  # N, C, H, W features before the dense layer
    kernel = rng.standard_normal((3 * 3 * 5, 1))  # TF: rows follow the NHWC flatten
    tf_out = x.transpose(0, 2, 3, 1).reshape(2, -1) @ kernel
    np.testing.assert_allclose(x.reshape(2, -1) @ nhwc_dense_to_nchw(kernel, 5), tf_out)


def test_official_v1_checkpoint_matches_the_daa233_layout(v1_data):
    """daa233's converted official model holds the official kernels under the port's names; the
    official checkpoint converts to the same tensors (critic dense rows from NHWC order)."""
    state = reference_state(v1_data)
    tf = {}
    for key, value in state.items():
        parts = key.split('.')
        if parts[0] in ('localD', 'globalD'):
            side = parts[0][:-1]  # 'local' / 'global'
            if parts[1] == 'linear':
                name = f'discriminator/dout_{side}_fc/' + ('kernel' if parts[2] == 'weight'
                                                          else 'bias')
                if parts[2] == 'weight':  # torch [1, C*H*W] -> TF [H*W*C, 1]
                    c = state[f'{parts[0]}.dis_conv_module.conv4.conv.weight'].shape[0]
                    s = int(np.sqrt(value.shape[1] / c))
                    value = value.reshape(c, s, s).transpose(1, 2, 0).reshape(-1, 1)
            else:
                name = f'discriminator/discriminator_{side}/{parts[2]}/' + (
                    'kernel' if parts[4] == 'weight' else 'bias')
        else:
            layer = parts[1]
            if parts[0] == 'fine_generator' and layer.startswith('conv'):
                layer = 'x' + layer
            if layer in ('conv13', 'conv15', 'allconv13', 'allconv15'):
                layer = f'{layer}_upsample/{layer}_upsample_conv'
            name = f'inpaint_net/{layer}/' + ('kernel' if parts[3] == 'weight' else 'bias')
        tf[name] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
    official, config = convert_official_v1_tf(tf)
    ported, ported_config = convert_daa233_v1_tf(state)
    assert sorted(official) == sorted(ported) and config == ported_config
    for key in official:
        np.testing.assert_array_equal(official[key], ported[key], err_msg=key)


def test_nipponjo_file_run_as_the_official_graph_equals_official_v2(v2_state):
    """Assuming nipponjo copied the official kernels as they are, its file converted as the
    official graph gives exactly what the official checkpoint gives (parity-tested)."""
    port, port_info = convert('nipponjo_v2_official', v2_state)
    official, info = convert('official_v2_tf', to_tf_v2(v2_state))
    assert port_info['config'] == info['config']
    assert info['config']['ca_fuse'] and info['config']['ca_mask_from'] == 'features'
    ours = port.state_dict()
    for key, value in official.state_dict().items():
        np.testing.assert_array_equal(ours[key].numpy(), value.numpy(), err_msg=key)
