"""Run configuration: train.py's run keys, and the merge that checks every key and type.

Precedence: ``RUN_DEFAULTS`` < the model's ``DEFAULTS`` (paper values) < the YAML given by
``--config`` (default: configs/<model>_quickstart.yaml) < ``--key value`` on the command line.
Unknown keys and wrongly typed values are errors that name the key and where it came from.
"""
import difflib
import os
from pathlib import Path

import yaml

from models import MODELS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs'
RUN_DEFAULTS = dict(
    model='deepfill_v1',     # a key of models.MODELS
    data='builtin',          # folder, .flist, or 'builtin' (scikit-image photos)
    val_data=None,           # validation folder/.flist; None: builtin val photos for builtin data
    val_count=8,             # validation images used for the metrics and sample grids
    mask_dir=None,           # mask images for mask_type 'file'
    init_from=None,          # a checkpoint whose model weights start this (fresh) run
    mask_invert=False,       # mask_dir files have black holes on white (default: white = hole)
    hole_range=[0.01, 0.6],  # hole-to-image ratio range of mask_type 'irregular'
    mask_scale=1.0,          # LaMa masks: drawn at image_size / mask_scale, resized (data.masks)
    per_sample_mask=False,   # one mask per sample instead of one per batch (official)
    random_crop=True,        # crop (True) or resize (False) to image_size
    flip=True,               # random horizontal flips
    seed=0,
    run_name=None,           # default: <model>_quickstart, or the --config file's name
    checkpoints_dir=None,    # runs go to <checkpoints_dir>/<run_name>; default checkpoints/ here
    log_interval=10,         # iterations between log lines
    eval_interval=500,       # iterations between validation metrics + sample grids
    ckpt_interval=1000,      # iterations between checkpoints
    keep_ckpts=5,            # iteration checkpoints kept (latest.safetensors always)
    num_workers=2,           # DataLoader worker processes (0: load in the main process)
    device='auto',           # auto, cpu, gpu, gpu:N
    threads=None,            # CPU math threads per process (default: all cores; 1 per rank
                             # under paddle.distributed.launch, which sets OMP_NUM_THREADS=1)
    amp=False,               # GPU mixed precision: generator in amp_dtype, critic loss in float32
    amp_dtype='float16',     # 'float16' (dynamic loss scaling) or 'bfloat16' (no scaling)
)


BOOLS = {'true': True, 'yes': True, 'on': True, '1': True,
         'false': False, 'no': False, 'off': False, '0': False}


def parse_value(text, default):
    """Command-line text -> a value of the default's type (str stays as typed: a run called
    'nan' is a name); keys without a typed default take YAML (null, [1, 2], 3.5)."""
    try:
        if isinstance(default, bool):
            return BOOLS[text.lower()]
        if isinstance(default, (int, float)):
            return type(default)(text)
    except (KeyError, ValueError):
        return text  # check_key reports the type mismatch
    if isinstance(default, str):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def check_key(cfg, key, value, where):
    """Returns ``value`` converted to the type of ``cfg[key]``; unknown keys and types fail."""
    if key not in cfg:
        close = difflib.get_close_matches(key, cfg, 3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ''
        raise ValueError(f"{where}: unknown key '{key}'{hint}")
    default = cfg[key]
    if value is None and where == 'command line':
        if not isinstance(default, bool):
            raise ValueError(f"command line: --{key} needs a value")
        value = True
    if isinstance(value, str) and where == 'command line':
        value = parse_value(value, default)
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float) and isinstance(value, int):
        value, ok = float(value), True
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"{where}: '{key}' expects {type(default).__name__} "
                         f"(default {default!r}), got {value!r}")
    return value


def parse_overrides(tokens):
    """['--a', '1', '--b=x'] -> {'a': '1', 'b': 'x'} (text; typed later by check_key)."""
    out, i = {}, 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith('--'):
            raise ValueError(f"command line: expected --key value, got '{tok}'")
        key, eq, value = tok[2:].partition('=')
        if not eq:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith('--'):
                value = None  # a bare --flag: true for a boolean key (check_key says otherwise)
            else:
                value, i = tokens[i + 1], i + 1
        out[key] = value
        i += 1
    return out


def load_yaml(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f'--config: {path} does not exist')
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f'--config: {path} must hold a mapping of key: value')
    return data


def resolve_config(config, overrides, require_data=True):
    """RUN_DEFAULTS < model DEFAULTS < YAML < command line, every key and type checked.

    Args:
        config: the ``--config`` YAML path, or None for configs/<model>_quickstart.yaml.
        overrides: {key: text} from the command line (``parse_overrides``).
        require_data: a config without ``data`` is an error (not when only the run folder of a
            ``--resume`` is looked up: the checkpoint holds the data).
    """
    model = overrides.get('model') or (load_yaml(config).get('model') if config else None) \
        or RUN_DEFAULTS['model']
    if model not in MODELS:
        raise ValueError(f"model: unknown model '{model}'; choose one of {', '.join(MODELS)}")
    cfg = {**RUN_DEFAULTS, **MODELS[model].DEFAULTS, 'model': model}
    config = config or CONFIGS / f'{model}_quickstart.yaml'
    for key, value in load_yaml(config).items():
        cfg[key] = check_key(cfg, key, value, str(config))
    for key, value in overrides.items():
        cfg[key] = check_key(cfg, key, value, 'command line')
    if cfg['data'] is None and require_data:
        raise ValueError(f'data: {config} needs --data (a folder or .flist of training images)')
    if cfg['run_name'] is None:
        cfg['run_name'] = Path(config).stem
    return cfg


def resumed_config(saved, overrides):
    """The config of a checkpoint to resume: run keys added since it was written take their
    defaults; command-line keys still apply (and are checked)."""
    cfg = {**RUN_DEFAULTS, **saved}
    for key, value in overrides.items():
        cfg[key] = check_key(cfg, key, value, 'command line')
    return cfg
