"""Checkpoints that cannot run code when loaded, written atomically.

A checkpoint is one ``.safetensors`` file: the model's tensors under ``model/``, each optimizer's
tensors under ``<optimizer>/``, and the small run state (model name, resolved config, iteration,
data position, optimizer scalars) as JSON in the safetensors header. A Paddle ``.pdparams`` state
dict (``paddle.save(model.state_dict(), ...)``) or a torch file of our parameter names loads too,
through the code-free reader (``weights.read``); it carries no config, so the model name must be
given.

Optimizer tensors are stored under the structured parameter name
(``netG.coarse.conv1.conv.weight``) and the accumulator type (``moment1``) instead of Paddle's
variable name (``conv2d_0.w_0_moment1_0``), whose numbers come from process-wide counters: a
resume then does not depend on what the process built or trained before (a notebook that trained
another model first).
"""
import json
import os
import re
import shutil

import numpy as np
import paddle
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from weights.read import read_weights

FORMAT = 'deepfill-paddle/1'


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model; one-line message."""


def _numpy(value):
    return np.ascontiguousarray(value.numpy() if hasattr(value, 'numpy') else value)


def _owner(key, auto_names):
    """The parameter variable name that an optimizer state key starts with (the longest), or
    None: ``conv2d_0.w_0_moment1_0`` -> ``conv2d_0.w_0``."""
    return max((n for n in auto_names if key.startswith(n + '_')), key=len, default=None)


def _optimizer_tensors(optimizer, model):
    """Splits an optimizer state into structured-name tensors and JSON-able scalars."""
    by_auto_name = {p.name: name for name, p in model.named_parameters()}
    tensors, extra = {}, {}
    for key, value in optimizer.state_dict().items():
        owner = _owner(key, by_auto_name)
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
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def read_checkpoint(path):
    """Returns (tensors: dict name -> numpy, state: dict) without running any code from the file.

    A ``.safetensors`` file must be a checkpoint of ours; other weight files (``.pdparams``,
    ``.pth``) are read as a bare model state dict: tensors under ``model/``, an empty state.

    Raises:
        CheckpointError: missing file, not a checkpoint, or an unreadable weights file.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint: {path} does not exist')
    if not path.lower().endswith('.safetensors'):
        try:
            weights = read_weights(path, 'checkpoint', unwrap=False)
        except (ValueError, FileNotFoundError) as e:
            raise CheckpointError(str(e)) from None
        return {f'model/{k}': v for k, v in weights.items()}, {}
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


def _materialise(optimizer, model):
    """Makes ``optimizer`` create its state for every trainable parameter of ``model`` now, by
    one step on zero gradients (the moments stay zero and no parameter moves, for Adam and
    Adadelta alike); returns its ``state_dict()``, whose keys are this process's names."""
    params = [p for p in model.parameters() if not p.stop_gradient]
    model.clear_gradients()
    paddle.add_n([p.sum() * 0.0 for p in params]).backward()
    optimizer.step()
    model.clear_gradients()
    return optimizer.state_dict()


def load_optimizer_state(optimizer, model, name, tensors, state):
    """Restores optimizer ``name`` saved by ``save_checkpoint`` into a fresh ``optimizer``.

    Saved tensors are matched to this process's variables by (parameter, accumulator type);
    state the checkpoint lacks (parameters that had no gradient yet) stays fresh. Only public
    optimizer API is used: ``step``, ``state_dict``, ``set_state_dict``.
    """
    prefix = name + '/'
    saved = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not saved:
        return
    current = _materialise(optimizer, model)
    struct_of = {p.name: struct for struct, p in model.named_parameters()}
    slots = {}
    for key in current:
        owner = _owner(key, struct_of)
        if owner is not None:
            slots[(struct_of[owner], re.sub(r'_\d+$', '', key[len(owner) + 1:]))] = key
    new = dict(current)
    for key, value in saved.items():
        struct, sep, suffix = key.partition(':')
        target = slots.get((struct, re.sub(r'_\d+$', '', suffix))) if sep else key
        if target not in current:
            raise CheckpointError(f'checkpoint: optimizer {name} has state {key!r}, which this '
                                  'optimizer does not keep (another optimizer or model?)')
        if list(current[target].shape) != list(value.shape):
            raise CheckpointError(f'checkpoint: optimizer {name} state {key!r} has shape '
                                  f'{list(value.shape)}, expected {list(current[target].shape)}')
        new[target] = paddle.to_tensor(value)
    new.update(state.get('optimizers', {}).get(name, {}))
    optimizer.set_state_dict(new)
