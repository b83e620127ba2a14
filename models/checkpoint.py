"""Checkpoints that cannot run code when loaded, written atomically.

A checkpoint is one ``.safetensors`` file: the model's tensors under ``model/``, each optimizer's
tensors under ``<optimizer>/``, and the small run state (model name, resolved config, iteration,
data position, optimizer scalars) as JSON in the safetensors header. ``paddle.load`` unpickles,
so a crafted ``.pdparams`` can run code (paddle-platform.md, 3.9): such files are only read with
an explicit ``allow_pickle=True``, with a warning.

Optimizer tensors are stored under the structured parameter name (``netG.coarse.conv1.conv.weight``)
instead of Paddle's auto-generated one (``conv2d_0.w_0``), so a resume does not depend on how many
layers the process happened to build before the model.
"""
import json
import os
import re
import warnings

import numpy as np
import paddle
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

FORMAT = 'deepfill-paddle/1'
PICKLE_SUFFIXES = ('.pdparams', '.pdopt', '.pkl', '.pickle', '.pth', '.pt')


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model; one-line message."""


def _numpy(value):
    return np.ascontiguousarray(value.numpy() if hasattr(value, 'numpy') else value)


def _optimizer_tensors(optimizer, model):
    """Splits an optimizer state into structured-name tensors and JSON-able scalars."""
    by_auto_name = {p.name: name for name, p in model.named_parameters()}
    tensors, extra = {}, {}
    for key, value in optimizer.state_dict().items():
        owner = max((n for n in by_auto_name if key.startswith(n + '_')), key=len, default=None)
        if owner is not None and hasattr(value, 'numpy'):
            tensors[f'{by_auto_name[owner]}:{key[len(owner) + 1:]}'] = _numpy(value)
        elif hasattr(value, 'numpy'):
            tensors[key] = _numpy(value)
        else:
            extra[key] = value
    return tensors, extra


def save_checkpoint(path, model, optimizers, state):
    """Writes model + optimizers + run state to ``path`` atomically (temp file, fsync, rename).

    Args:
        model: the nn.Layer whose ``state_dict`` is saved under ``model/``.
        optimizers: dict name -> paddle optimizer over parameters of ``model``.
        state: JSON-able dict (config, iteration, ...).
    """
    tensors = {f'model/{k}': _numpy(v) for k, v in model.state_dict().items()}
    state = dict(state, optimizers={})
    for name, opt in optimizers.items():
        opt_tensors, extra = _optimizer_tensors(opt, model)
        tensors.update({f'{name}/{k}': v for k, v in opt_tensors.items()})
        state['optimizers'][name] = extra
    tmp = f'{path}.tmp{os.getpid()}'
    save_file(tensors, tmp, metadata={'format': FORMAT, 'state': json.dumps(state)})
    with open(tmp, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def link_or_copy(src, dst):
    """Points ``dst`` (e.g. latest.safetensors) at ``src`` atomically: hard link, else copy."""
    tmp = f'{dst}.tmp{os.getpid()}'
    try:
        os.link(src, tmp)
    except OSError:
        import shutil
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def read_checkpoint(path, allow_pickle=False):
    """Returns (tensors: dict name -> numpy, state: dict) without running any code from the file.

    Raises:
        CheckpointError: missing file, not a checkpoint, or a pickle file without allow_pickle.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint: {path} does not exist')
    if path.lower().endswith(PICKLE_SUFFIXES):
        return _read_pickle(path, allow_pickle)
    try:
        with safe_open(path, 'np') as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f'checkpoint: {path} is not a safetensors checkpoint ({e})') from None
    if meta.get('format') != FORMAT:
        raise CheckpointError(f'checkpoint: {path} is a safetensors file but not a Deepfill-Paddle '
                              'checkpoint (no run state in its header)')
    return tensors, json.loads(meta['state'])


def _read_pickle(path, allow_pickle):
    if not allow_pickle:
        raise CheckpointError(f'checkpoint: {path} is a pickle file, which can run code when '
                              'loaded; pass --allow_pickle only if you trust where it came from')
    warnings.warn(f'loading pickle file {path}: this can run code; use it only if you trust it')
    obj = paddle.load(path, return_numpy=True)
    if not isinstance(obj, dict):
        raise CheckpointError(f'checkpoint: {path} holds a {type(obj).__name__}, not a state dict')
    tensors = {}
    for key, value in obj.items():  # flat state dict, or {'netG': {...}, 'netD': {...}}
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, array in items:
            tensors['model/' + (key if sub is None else f'{key}.{sub}')] = np.asarray(array)
    return tensors, {}


def load_model_state(model, tensors, path='checkpoint'):
    """Loads ``model/`` tensors into ``model``; missing, unexpected or mis-shaped keys fail."""
    own = model.state_dict()
    given = {k[len('model/'):]: v for k, v in tensors.items() if k.startswith('model/')}
    missing, unexpected = sorted(set(own) - set(given)), sorted(set(given) - set(own))
    if missing or unexpected:
        raise CheckpointError(f'checkpoint: {path} does not fit the model: missing {missing[:3]} '
                              f'({len(missing)} in all), unexpected {unexpected[:3]} '
                              f'({len(unexpected)} in all)')
    for key, value in own.items():
        if list(value.shape) != list(given[key].shape):
            raise CheckpointError(f'checkpoint: {path}: {key} has shape {list(given[key].shape)}, '
                                  f'the model expects {list(value.shape)}')
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in given.items()})


def _accumulator_names(optimizer):
    """{(parameter name, accumulator type): variable name}, creating the accumulators now.

    Paddle names an accumulator ``<param>_<type>_<n>`` with a process-wide counter ``n`` when it
    first creates it, so a checkpoint's ``moment1_0`` can be this process's ``moment1_2`` (a
    notebook that built another model first). Creating them here lets the state be matched by
    type instead of by the counter. Private Paddle API (2.6 and 3.x); {} if it is unavailable.
    """
    params = [p for p in getattr(optimizer, '_parameter_list', None) or []
              if not isinstance(p, dict) and not p.stop_gradient]
    try:
        block = paddle.static.default_main_program().global_block()
        optimizer._create_accumulators(block, params)
        return {(pname, acc_type): var.name
                for acc_type, by_param in optimizer._accumulators.items()
                for pname, var in by_param.items()}
    except (AttributeError, TypeError):
        return {}


def load_optimizer_state(optimizer, model, name, tensors, state):
    """Restores optimizer ``name`` saved by ``save_checkpoint`` into ``optimizer``."""
    auto_name = {struct: p.name for struct, p in model.named_parameters()}
    actual = _accumulator_names(optimizer)
    prefix = name + '/'
    opt_state = dict(state.get('optimizers', {}).get(name, {}))
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        struct, sep, suffix = key.partition(':')
        if sep and struct not in auto_name:
            raise CheckpointError(f'checkpoint: optimizer {name} has state for unknown parameter '
                                  f'{struct}')
        if sep:
            acc_type = re.sub(r'_\d+$', '', suffix)  # moment1_0 -> moment1
            key = actual.get((auto_name[struct], acc_type), f'{auto_name[struct]}_{suffix}')
        opt_state[key] = paddle.to_tensor(value)
    optimizer.set_state_dict(opt_state)
