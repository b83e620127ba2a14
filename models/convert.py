"""Published weights -> Deepfill-Paddle checkpoints, without torch and without running their code.

A model class lists the weights it loads in ``CONVERTERS = {source: function}`` (source names are
unique across ``models.MODELS``). ``function(state)`` takes the tensors read from the published
file(s) as a plain ``{name: numpy array}`` dict and returns ``(params, config)``: ``params`` keyed
like the model's ``state_dict()`` (``netG....``, and ``netD....`` when the file has the critic),
``config`` the overrides the converted model needs (switches such as ``padding: symmetric``, widths
read from the shapes). A line ``Download: <where>`` in the function's docstring is what
``tools/convert_weights.py --list`` shows.

``convert`` checks strictly, so a wrong file or source fails with one line instead of loading
garbage:

- every ``netG`` tensor comes from the source, with the model's shape; any other part (the
  critic) comes whole or not at all: then it keeps its fresh initialisation and the checkpoint
  records that (``state['source']['initialised']``);
- every tensor of the input is used: looked up, popped or iterated over by the converter (which
  then checks what it iterates), or skipped with ``state.ignore(prefix, ...)``.

Input files: torch ``.pth``/``.pt`` (zip or legacy, read by ``models.torchfile``), pickled
``.pdparams``, ``.safetensors``, ``.npz`` or a TensorFlow checkpoint (its folder, prefix or
``.index`` file; read by ``models.tfcheckpoint``, without TensorFlow). Nested dicts are flattened
with dots ({'G': {'conv1.conv.weight': ...}} -> 'G.conv1.conv.weight'); a file that wraps
everything in one of torchfile's usual entries ('state_dict', 'model', ...) is unwrapped first,
as ``torchfile.state_dict`` does. Several files (a generator and a critic file) are merged.
"""
import hashlib
import re
from pathlib import Path

import numpy as np
import paddle

from models import MODELS, tfcheckpoint, torchfile
from models.checkpoint import save_checkpoint

WRAPPERS = ('state_dict', 'model', 'netG', 'generator', 'params')


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


def sources():
    """{source name: (model class, converter function)} over every model in ``models.MODELS``."""
    found = {}
    for cls in MODELS.values():
        for name, fn in getattr(cls, 'CONVERTERS', {}).items():
            if name in found and found[name][0] is not cls:
                raise ValueError(f'source {name!r} is defined by both {found[name][0].NAME} and '
                                 f'{cls.NAME}; source names must be unique')
            found[name] = (cls, fn)
    return found


def find_source(name):
    """(model class, converter) for source ``name``; an unknown name lists the known ones."""
    found = sources()
    if name not in found:
        raise ValueError(f"--source: unknown source {name!r}; choose one of "
                         f"{', '.join(sorted(found))} (--list describes them)")
    return found[name]


def describe(fn):
    """(first docstring line, download hint or '') of a converter, for --list."""
    doc = (fn.__doc__ or '').strip()
    summary = doc.split('\n\n')[0].replace('\n', ' ')
    match = re.search(r'^\s*Download:\s*(.+?)(?:\n\s*\n|\Z)', doc, re.M | re.S)
    return ' '.join(summary.split()), ' '.join(match.group(1).split()) if match else ''


def _flatten(obj, prefix=''):
    flat = {}
    for key, value in obj.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            flat.update(_flatten(value, name + '.'))
        elif isinstance(value, np.ndarray):
            flat[name] = value
    return flat


def read_weights(path):
    """{dotted name: numpy array} from one weights file (see the module docstring)."""
    path = Path(path)
    if tfcheckpoint.is_checkpoint(path):
        return tfcheckpoint.read(path)
    if path.is_dir():
        raise ValueError(f'--input: {path} is a folder without a TensorFlow checkpoint (*.index); '
                         'name the weights file')
    if not path.is_file():
        raise FileNotFoundError(f'--input: {path} does not exist')
    if path.suffix == '.safetensors':
        from safetensors.numpy import load_file
        return load_file(str(path))
    if path.suffix == '.npz':
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    if path.suffix == '.json':  # a side file of settings (otenim's GLCIC config.json: mpv)
        import json
        with open(path) as f:
            obj = json.load(f)
        numeric = {k: np.asarray(v, np.float64) for k, v in obj.items()
                   if isinstance(v, (int, float, list)) and not isinstance(v, bool)
                   and np.asarray(v).dtype.kind in 'if'}
        if not numeric:
            raise ValueError(f'--input: {path} holds no numeric settings')
        return numeric
    obj = torchfile.load(path)
    if not isinstance(obj, dict):
        raise ValueError(f'--input: {path} holds a {type(obj).__name__}, not a dict of tensors')
    for wrapper in WRAPPERS:
        inner = obj.get(wrapper)
        if isinstance(inner, dict) and any(isinstance(v, np.ndarray) for v in inner.values()):
            obj = inner
            break
    flat = _flatten(obj)
    if not flat:
        raise ValueError(f'--input: {path} holds no tensors')
    return flat


def read_inputs(paths):
    """Merges the tensors of several files; a name found in two files is an error."""
    state, origin = {}, {}
    for path in paths:
        for key, value in read_weights(path).items():
            if key in state:
                raise ValueError(f'--input: {key} is in both {origin[key]} and {path}')
            state[key], origin[key] = value, path
    return state


def convert(source, state, overrides=None):
    """Builds the model of ``source`` and loads the converted ``state`` into it, strictly.

    Args:
        state: {name: numpy array} as read from the published file(s).
        overrides: config keys to set on top of the converter's (e.g. a different image_size).
    Returns:
        (model in eval mode, info): info holds the model's full ``config``, the converter's
        ``switches`` and the parts ``initialised`` fresh because the input lacks them.
    """
    cls, fn = find_source(source)
    tracked = SourceState(state)
    params, config = fn(tracked)
    unused = tracked.unused()
    if unused:
        raise ValueError(f'{source}: {len(unused)} tensors of the input are not {source} weights, '
                         f'e.g. {unused[0]!r} (wrong file or --source?)')
    model = cls(**{**config, **(overrides or {})})
    own = model.state_dict()
    extra = sorted(set(params) - set(own))
    if extra:
        raise ValueError(f'{source}: converted tensor {extra[0]!r} has no place in {cls.NAME} '
                         f'({len(extra)} such tensors)')
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
                             f'{cls.NAME} expects {list(own[key].shape)}')
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
