"""The one reader of weight files: every format the project loads, as ``{name: numpy array}``.

Nothing here runs code from the file, imports torch or TensorFlow, or knows a model:

- ``.safetensors`` (our checkpoints, converted features) and ``.npz`` (read without pickles);
- torch ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` (zip or legacy format) and Paddle ``.pdparams``
  / ``.pdopt``, read by ``weights.torchfile``'s allow-list unpickler: tensors, numpy arrays and
  plain containers only, anything else in the file is refused; PyTorch Lightning checkpoints
  (their OmegaConf and Lightning objects become inert placeholders, dropped here) and TorchScript
  archives (the module tree's parameters and buffers, named as its ``state_dict()``);
- TensorFlow checkpoints (a folder holding one, its ``prefix``, ``.index`` or ``.data-*`` file),
  read by ``weights.tfcheckpoint``.

Nested dicts and lists are flattened with dots ({'G': {'conv1.weight': a}} -> 'G.conv1.weight',
optimizer states' lists by index), and values that are not arrays (epoch counters, Paddle's
structured-name table, placeholders) are dropped. With
``unwrap`` a file that keeps its weights under one of ``WRAPPERS`` next to other entries
(``{'state_dict': {...}, 'epoch': 3}``) is unwrapped first.
"""
from pathlib import Path

import numpy as np

from weights import tfcheckpoint, torchfile

WRAPPERS = ('state_dict', 'model', 'netG', 'generator', 'params')


def _array(value):
    """The array a pickled value holds, or None. paddle.save writes a tensor inside nested
    dicts as (its variable name, array)."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
        return value[1]
    return None


def _flatten(obj, prefix=''):
    """Arrays in nested dicts and lists ({'opt': [{'m': a}]} -> 'opt.0.m'); all else dropped."""
    flat = {}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        name = f'{prefix}{key}'
        if _array(value) is not None:
            flat[name] = _array(value)
        elif isinstance(value, (dict, list, tuple)):
            flat.update(_flatten(value, name + '.'))
    return flat


def _unwrap(obj):
    """The first ``WRAPPERS`` entry that directly holds arrays, else ``obj`` itself."""
    for wrapper in WRAPPERS:
        inner = obj.get(wrapper)
        if isinstance(inner, dict) and any(_array(v) is not None for v in inner.values()):
            return inner
    return obj


def _read_pickled(path, what, unwrap):
    try:
        obj = torchfile.load(path)
    except torchfile.UnsafeFileError as e:
        raise torchfile.UnsafeFileError(f'{what}: {path}: {e}') from None
    except ValueError as e:
        raise ValueError(f'{what}: {e}') from None
    if not isinstance(obj, dict):
        raise ValueError(f'{what}: {path} holds a {type(obj).__name__}, not a dict of tensors')
    return _flatten(_unwrap(obj) if unwrap else obj)


def read_weights(path, what='weights', unwrap=True):
    """All tensors of a weights file as ``{dotted name: numpy array}`` (see the module docstring).

    Args:
        path: the file, or a TensorFlow checkpoint's folder / prefix.
        what: the flag or config key that named the file, for error messages.
        unwrap: unwrap a ``WRAPPERS`` entry (published weights); False keeps every key
            (a Paddle ``.pdparams`` of a whole model with ``netG.*`` and ``netD.*``).
    Raises:
        FileNotFoundError: no such file.
        ValueError (weights.torchfile.UnsafeFileError for files that reference code): a file
            of no supported format, or one that holds no tensors.
    """
    path = Path(path)
    if tfcheckpoint.is_checkpoint(path):
        return tfcheckpoint.read(path)
    if path.is_dir():
        raise ValueError(f'{what}: {path} is a folder without a TensorFlow checkpoint (*.index); '
                         'name the weights file')
    if not path.is_file():
        raise FileNotFoundError(f'{what}: {path} does not exist')
    suffix = path.suffix.lower()
    if suffix == '.safetensors':
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise ValueError(f'{what}: {path} is not a readable safetensors file ({e})') from None
    elif suffix == '.npz':
        with np.load(path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
    else:
        state = _read_pickled(path, what, unwrap)
    if not state:
        raise ValueError(f'{what}: {path} holds no tensors')
    return state
