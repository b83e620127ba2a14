"""Published weights -> Deepfill-Paddle checkpoints, without torch and without running their code.

``SOURCES`` is the one table of weight sources: each names the model it converts to, the
converter function (one file per model family in this folder), where to download the files and
their licence. A converter ``function(state)`` takes the tensors read from the published file(s)
as a plain ``{name: numpy array}`` dict and returns ``(params, config)``: ``params`` keyed like the
model's ``state_dict()`` (``netG....``, and ``netD....`` when the file has the critic), ``config``
the overrides the converted model needs (switches such as ``padding: symmetric``, widths read
from the shapes).

``convert`` checks strictly, so a wrong file or source fails with one line instead of loading
garbage:

- every ``netG`` tensor comes from the source, with the model's shape; any other part (the
  critic) comes whole or not at all: then it keeps its fresh initialisation and the checkpoint
  records that (``state['source']['initialised']``);
- every tensor of the input is used: looked up, popped or iterated over by the converter (which
  then checks what it iterates), or skipped with ``state.ignore(prefix, ...)``.

Input files are read by ``weights.read.read_weights`` (torch, Paddle, safetensors, npz,
TensorFlow checkpoints); a ``.json`` input contributes its numeric entries (otenim's GLCIC
``config.json``: the mean colour). Several files (a generator and a critic file) are merged.
"""
import hashlib
import json
from collections import namedtuple
from pathlib import Path

import numpy as np
import paddle

from models import MODELS
from weights import tfcheckpoint
from weights.checkpoint import save_checkpoint
from weights.convert import aotgan, deepfill, glcic, lama, lbam, pconv
from weights.read import read_weights

Source = namedtuple('Source', 'model function about download licence')

_OFFICIAL_V1 = 'https://github.com/JiahuiYu/generative_inpainting/tree/v1.0.0'
_DAA233 = 'https://github.com/daa233/generative-inpainting-pytorch'
_NIPPONJO = 'https://github.com/nipponjo/deepfillv2-pytorch'
SOURCES = {
    'official_v1_tf': Source(
        'deepfill_v1', deepfill.convert_official_v1_tf,
        'official DeepFill v1 TensorFlow checkpoint (release folder, snap-* prefix or .index)',
        f'{_OFFICIAL_V1} (README "Pretrained models": CelebA-HQ, Places2, CelebA, ImageNet; '
        'Google Drive)', 'CC BY-NC 4.0'),
    'daa233_v1': Source(
        'deepfill_v1', deepfill.convert_daa233_v1,
        "daa233's PyTorch DeepFill v1 gen_*.pt [+ dis_*.pt], run as the port runs",
        f'{_DAA233} (README "Trained PyTorch model": ImageNet, 430k iterations; Google Drive / '
        'Baidu)', 'MIT (repository)'),
    'daa233_v1_tf': Source(
        'deepfill_v1', deepfill.convert_daa233_v1_tf,
        "daa233's converted official model torch_model.p, run as the official graph",
        f'{_DAA233} (README "Converted TF model"; Google Drive)', 'CC BY-NC 4.0'),
    'official_v2_tf': Source(
        'deepfill_v2', deepfill.convert_official_v2_tf,
        'official DeepFill v2 TensorFlow checkpoint (release folder, snap-* prefix or .index)',
        'https://github.com/JiahuiYu/generative_inpainting (README "Pretrained models": Places2, '
        'CelebA-HQ; Google Drive)', 'CC BY-NC 4.0'),
    'nipponjo_v2': Source(
        'deepfill_v2', deepfill.convert_nipponjo_v2,
        "nipponjo's states_tf_places2.pth / states_tf_celebahq.pth, run as its networks_tf.py",
        f'{_NIPPONJO} (README "Download converted weights"; Google Drive)',
        'CC BY-NC 4.0 (official weights)'),
    'nipponjo_v2_official': Source(
        'deepfill_v2', deepfill.convert_nipponjo_v2_official,
        "nipponjo's states_tf_*.pth run as the official TensorFlow graph", _NIPPONJO,
        'CC BY-NC 4.0 (official weights)'),
    'naoto_pconv': Source(
        'pconv', pconv.convert_naoto,
        "naoto0804's PConvUNet 1000000.pth (Places2, 500k + 500k fine-tuning iterations)",
        'https://github.com/naoto0804/pytorch-inpainting-with-partial-conv/releases/tag/v0.0.0',
        'MIT (repository)'),
    'lbam_official': Source(
        'lbam', lbam.convert_official,
        'official LBAM_Pytorch generator .pth (Paris StreetView) [+ its critic]',
        'https://drive.google.com/drive/folders/17DJEp0APDcZoWPIHwMFs78ak59pYlDPw (or Baidu pan, '
        'code mvzh; links in https://github.com/Vious/LBAM_Pytorch)', 'MIT (repository)'),
    'otenim_glcic': Source(
        'glcic', glcic.convert_otenim,
        "otenim's model_cn [+ model_cd] with the run's config.json (--input each)",
        'https://github.com/otenim/GLCIC-PyTorch (README: Google Drive links; CelebA)',
        'MIT (repository)'),
    'aotgan_official': Source(
        'aotgan', aotgan.convert_aotgan,
        'official AOT-GAN G0000000.pt [+ D0000000.pt] (Places2, CelebA-HQ)',
        'https://github.com/researchmm/AOT-GAN-for-Inpainting (README "Pretrained models"; '
        'Google Drive)', 'Apache-2.0 (repository)'),
    'paddlegan_aotgan': Source(
        'aotgan', aotgan.convert_aotgan, "PaddleGAN's AOT-GAN generator AotGan_g.pdparams",
        'https://paddlegan.bj.bcebos.com/models/AotGan_g.pdparams', 'Apache-2.0'),
    'lama_official': Source(
        'lama', lama.convert_lama,
        'official LaMa models/best.ckpt: big-lama (18 blocks) or lama-fourier (9 blocks)',
        'https://huggingface.co/smartywu/big-lama/resolve/main/big-lama.zip (Big-LaMa); all '
        'models: the Google Drive folder in https://github.com/advimman/lama (README)',
        'Apache-2.0 (repository)'),
}


class SourceState(dict):
    """The input tensors; remembers which ones the converter read (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used = set()

    def __getitem__(self, key):
        self.used.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.used.add(key)
        return super().get(key, default)

    def pop(self, key, *default):
        self.used.add(key)
        return super().pop(key, *default)

    def items(self):
        self.used.update(self.keys())
        return super().items()

    def values(self):
        self.used.update(self.keys())
        return super().values()

    def ignore(self, *prefixes):
        """Marks every tensor whose name starts with one of ``prefixes`` as deliberately unused."""
        self.used.update(k for k in self.keys() if k.startswith(prefixes))

    def unused(self):
        return sorted(k for k in self.keys() if k not in self.used)


def find_source(name):
    """The ``Source`` called ``name``; an unknown name lists the known ones."""
    if name not in SOURCES:
        raise ValueError(f"--source: unknown source {name!r}; choose one of "
                         f"{', '.join(sorted(SOURCES))} (--list describes them)")
    return SOURCES[name]


def read_settings(path):
    """The numeric entries of a JSON side file (otenim's config.json) as arrays."""
    with open(path) as f:
        obj = json.load(f)
    numeric = {k: np.asarray(v, np.float64) for k, v in obj.items()
               if isinstance(v, (int, float, list)) and not isinstance(v, bool)
               and np.asarray(v).dtype.kind in 'if'}
    if not numeric:
        raise ValueError(f'--input: {path} holds no numeric settings')
    return numeric


def read_inputs(paths):
    """Merges the tensors of several files; a name found in two files is an error."""
    state, origin = {}, {}
    for path in paths:
        found = read_settings(path) if str(path).lower().endswith('.json') \
            else read_weights(path, '--input')
        for key, value in found.items():
            if key in state:
                raise ValueError(f'--input: {key} is in both {origin[key]} and {path}')
            state[key], origin[key] = value, path
    return state


def _check_parts(source, name, own, params):
    """Parts (netG, netD) of ``own`` the input lacks entirely; netG or half a part fails."""
    initialised = []
    for part in sorted({k.split('.')[0] for k in own}):
        keys = [k for k in own if k.split('.')[0] == part]
        missing = [k for k in keys if k not in params]
        if missing and (part == 'netG' or len(missing) < len(keys)):
            raise ValueError(f'{source}: the input lacks {part} tensor {missing[0]!r} '
                             f'({len(missing)} of {len(keys)} missing)')
        if missing:
            initialised.append(part)
    for key, value in params.items():
        if list(value.shape) != list(own[key].shape):
            raise ValueError(f'{source}: {key} has shape {list(value.shape)} in the input, '
                             f'{name} expects {list(own[key].shape)}')
    return initialised


def convert(source, state, overrides=None):
    """Builds the model of ``source`` and loads the converted ``state`` into it, strictly.

    Args:
        state: {name: numpy array} as read from the published file(s).
        overrides: config keys to set on top of the converter's (e.g. a different image_size).
    Returns:
        (model in eval mode, info): info holds the model's full ``config``, the converter's
        ``switches`` and the parts ``initialised`` fresh because the input lacks them.
    """
    entry = find_source(source)
    tracked = SourceState(state)
    params, config = entry.function(tracked)
    unused = tracked.unused()
    if unused:
        raise ValueError(f'{source}: {len(unused)} tensors of the input are not {source} weights, '
                         f'e.g. {unused[0]!r} (wrong file or --source?)')
    model = MODELS[entry.model](**{**config, **(overrides or {})})
    own = model.state_dict()
    extra = sorted(set(params) - set(own))
    if extra:
        raise ValueError(f'{source}: converted tensor {extra[0]!r} has no place in {entry.model} '
                         f'({len(extra)} such tensors)')
    initialised = _check_parts(source, entry.model, own, params)
    model.set_state_dict({**own, **{k: paddle.to_tensor(v, dtype=own[k].dtype)
                                    for k, v in params.items()}})
    model.eval()
    return model, {'config': dict(model.cfg), 'switches': config, 'initialised': initialised}


def source_files(path):
    """The files an input consists of (a TF checkpoint: its .index and .data-* files)."""
    if tfcheckpoint.is_checkpoint(path):
        prefix = tfcheckpoint.resolve_prefix(path)
        return [Path(f'{prefix}.index')] + sorted(prefix.parent.glob(prefix.name + '.data-*'))
    return [Path(path)]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def convert_files(source, inputs, output, overrides=None):
    """Reads ``inputs``, converts them as ``source`` and writes the checkpoint ``output``.

    Returns (model, info) as ``convert`` does, info also holding the recorded ``source`` block.
    """
    output = Path(output)
    if output.suffix != '.safetensors':
        raise ValueError(f'--output: {output} must end in .safetensors (a checkpoint that cannot '
                         'run code when loaded)')
    find_source(source)  # an unknown source fails before any file is read
    model, info = convert(source, read_inputs(inputs), overrides)
    files = [f for p in inputs for f in source_files(p)]
    info['source'] = dict(name=source, files=[f.name for f in files],
                          sha256=[sha256(f) for f in files], initialised=info['initialised'])
    output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(output, model, {}, dict(model=model.NAME, config={**info['config'],
                                                                      'model': model.NAME},
                                            iteration=0, source=info['source']))
    return model, info
