"""Trains an inpainting model of models/ (DeepFill v1 so far) with its paper's schedule.

    python train.py                                   # quick start: builtin photos, CPU, < 10 min
    python train.py --config configs/deepfill_v1_places2.yaml --data /data/places2/train.flist
    python train.py --run_name deepfill_v1_places2 --resume          # continue exactly
    python train.py --max_iters 2 --image_size 64 --bbox_size 32 --max_delta 8 --cnum 8 \
        --d_cnum 8 --batch_size 2 --run_name smoke --overwrite        # tiny CPU smoke run
    python -m paddle.distributed.launch --gpus 0,1,2,3 train.py \
        --config configs/deepfill_v1_places2.yaml --data /data/places2/train.flist --amp
    python -m paddle.distributed.launch --nproc_per_node 2 train.py --threads 1  # 2 CPU ranks

Config precedence: RUN_DEFAULTS below < the model's DEFAULTS (paper values) < the YAML given by
--config (default: configs/<model>_quickstart.yaml) < --key value on the command line. Unknown
keys and wrongly typed values are errors. The resolved config is written to the run folder, to
the top of log.txt and into every checkpoint.

Schedule (official DeepFill v1): per iteration, ``d_steps`` critic steps, each on a fresh batch
and mask with the generator's output detached, then one generator step with the critics frozen.
All randomness (data order, crops, masks, gradient-penalty mixing) is a function of the seed and
the number of batches drawn, so ``--resume`` continues exactly where a checkpoint left off.

Data parallelism (``paddle.distributed.launch``): ``batch_size`` stays the global batch; rank r
trains on rows [r*b, (r+1)*b) of every batch (b = batch_size / ranks), drawn with the same
seeds as in one process, and paddle.DataParallel averages the gradients, so N ranks train what
one process would on the whole batch. Rank 0 alone logs, evaluates and writes checkpoints, which
are the same files a single process writes (either kind resumes the other).
"""
import argparse
import contextlib
import difflib
import functools
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from models import MODELS, build, runtime
from models.checkpoint import (link_or_copy, load_model_state, load_optimizer_state,
                               read_checkpoint, save_checkpoint)

import paddle  # noqa: E402  (after models: runtime sets the CPU switches first)
import paddle.distributed as dist  # noqa: E402
from tqdm import tqdm  # noqa: E402

from data import (ImageDataset, InfiniteSampler, collate, mask_for_index,  # noqa: E402
                  masks_from_config, validation_source)
from data.io import save_image, to_uint8  # noqa: E402
from data.sketch import guidance  # noqa: E402
from data.metrics import compute_all  # noqa: E402
from models.visual import grid, panels  # noqa: E402

ROOT = Path(__file__).resolve().parent
RUN_DEFAULTS = dict(
    model='deepfill_v1',     # a key of models.MODELS
    data='builtin',          # folder, .flist, or 'builtin' (scikit-image photos)
    val_data=None,           # validation folder/.flist; None: builtin val photos for builtin data
    val_count=8,             # validation images used for the metrics and sample grids
    mask_dir=None,           # mask images for mask_type 'file'
    init_from=None,          # a checkpoint whose model weights start this (fresh) run
    mask_invert=False,       # mask_dir files have black holes on white (default: white = hole)
    hole_range=[0.01, 0.6],  # hole-to-image ratio range of mask_type 'irregular'
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


# ----------------------------------------------------------------------------- configuration
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


def resolve_config(args, overrides):
    """RUN_DEFAULTS < model DEFAULTS < YAML < command line, every key and type checked."""
    model = overrides.get('model') or (load_yaml(args.config).get('model') if args.config
                                       else None) or RUN_DEFAULTS['model']
    if model not in MODELS:
        raise ValueError(f"model: unknown model '{model}'; choose one of {', '.join(MODELS)}")
    cfg = {**RUN_DEFAULTS, **MODELS[model].DEFAULTS, 'model': model}
    config = args.config or ROOT / 'configs' / f'{model}_quickstart.yaml'
    for key, value in load_yaml(config).items():
        cfg[key] = check_key(cfg, key, value, str(config))
    for key, value in overrides.items():
        cfg[key] = check_key(cfg, key, value, 'command line')
    if cfg['data'] is None:
        raise ValueError(f'data: {config} needs --data (a folder or .flist of training images)')
    if cfg['run_name'] is None:
        cfg['run_name'] = Path(config).stem
    return cfg


# ----------------------------------------------------------------------------- run folder
def run_folder(cfg):
    return Path(cfg['checkpoints_dir'] or ROOT / 'checkpoints') / cfg['run_name']


def open_run(args, overrides):
    """Resolves the config (fresh or from the checkpoint to resume); returns (cfg, dir, ckpt)."""
    if args.resume:
        path = args.resume if args.resume != 'latest' else None
        if path is None:
            path = run_folder(resolve_config(args, overrides)) / 'latest.safetensors'
        tensors, state = read_checkpoint(path)
        cfg = {**RUN_DEFAULTS, **state['config']}  # run keys added since the checkpoint: defaults
        for key, value in overrides.items():
            cfg[key] = check_key(cfg, key, value, 'command line')
        return cfg, Path(path).parent, (tensors, state, path)
    cfg = resolve_config(args, overrides)
    run_dir = run_folder(cfg)
    if (run_dir / 'latest.safetensors').exists() and not args.overwrite:
        raise ValueError(f'{run_dir} already holds a run: pass --resume to continue it, '
                         '--run_name NAME for a new one, or --overwrite to start again')
    return cfg, run_dir, None


def clear_run(run_dir):
    """--overwrite: removes what an earlier run wrote there (and nothing else)."""
    for path in [*run_dir.glob('*.safetensors'), run_dir / 'log.txt']:
        path.unlink(missing_ok=True)
    for sub in ('samples', 'vdl'):
        shutil.rmtree(run_dir / sub, ignore_errors=True)


class Logger:
    """One `key value` line per interval to stdout (above the progress bar) and log.txt."""

    def __init__(self, run_dir, writer):
        self.file = open(run_dir / 'log.txt', 'a', buffering=1) if run_dir else None
        self.writer = writer

    def line(self, text):
        if self.file is None:  # ranks other than 0 stay quiet
            return
        tqdm.write(text)
        self.file.write(text + '\n')

    def scalars(self, it, values, prefix=''):
        text = ' '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}'
                        for k, v in {'iter': it, **values}.items())
        self.line(prefix + text)
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f'train/{k}' if not k.startswith('val') else k, v, it)


def make_writer(run_dir):
    try:
        from visualdl import LogWriter
    except ImportError:
        print('warning: visualdl is not installed; no VisualDL logs (pip install visualdl)')
        return None
    return LogWriter(logdir=str(run_dir / 'vdl'))


# ----------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Any config key is accepted as --key value; see RUN_DEFAULTS in train.py and '
               'DEFAULTS in models/<model>.py.')
    parser.add_argument('--config', help='YAML of key: value overrides')
    parser.add_argument('--resume', nargs='?', const='latest',
                        help='continue the run (default: its latest.safetensors) or a checkpoint')
    parser.add_argument('--overwrite', action='store_true', help='start an existing run afresh')
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    cfg, run_dir, resume = open_run(args, overrides)
    world, rank = dist.get_world_size(), dist.get_rank()  # from the launcher's environment
    check_parallel(cfg, world)
    device = runtime.setup(cfg['device'], cfg['threads'])
    amp = amp_dtype(cfg, device)
    if world > 1:
        dist.init_parallel_env()
    lead = rank == 0  # logs, evaluates and writes checkpoints; every rank trains
    seed = cfg['seed']
    paddle.seed(seed)
    np.random.seed(seed)

    # Data: an endless, resumable stream of crops; masks are drawn here, per batch, seeded.
    dataset = ImageDataset(cfg['data'], cfg['image_size'], train=True,
                           random_crop=cfg['random_crop'], flip=cfg['flip'])
    masks = masks_from_config(cfg)
    # Model and optimizers (built under a name guard so optimizer state keys are stable), and
    # the files its losses need (VGG weights), before anything is written.
    with paddle.utils.unique_name.guard():
        model = build(cfg['model'], cfg)
        optimizers = model.make_optimizers()
    model.check_training()
    val = make_validation(cfg, masks) if cfg['val_count'] > 0 and lead else None
    if lead:
        if args.overwrite and not resume:
            clear_run(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / 'samples').mkdir(exist_ok=True)
        with open(run_dir / 'config.yaml', 'w') as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
    log = Logger(run_dir, make_writer(run_dir)) if lead else Logger(None, None)
    ranks = f' x {world} ranks' if world > 1 else ''
    log.line(f'# {time.strftime("%Y-%m-%d %H:%M:%S")} run {cfg["run_name"]} on {device}{ranks} '
             f'(paddle {paddle.__version__}); config: {json.dumps(cfg)}')
    state = resume[1] if resume else {}
    batches = state.get('batches', 0)
    sampler = InfiniteSampler(len(dataset), cfg['batch_size'], seed, start_batch=batches,
                              rank=rank, world_size=world)
    shard = sampler.positions  # this rank's rows of each global batch
    loader = iter(paddle.io.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                       num_workers=cfg['num_workers'],
                                       worker_init_fn=ignore_sigint))
    skipped = set()

    def next_batch():
        nonlocal batches
        data = next(loader)
        skipped.update(data['skipped'])
        rng = np.random.RandomState([seed, batches])
        mask, bbox = masks(rng, cfg['batch_size'])  # the global batch's: the same on every rank
        mask, bbox = mask[shard.start:shard.stop], bbox[shard.start:shard.stop]
        paddle.seed(int(rng.randint(2 ** 31)))  # gradient-penalty mixing weights
        batches += 1
        extra = guidance(cfg, data['image'])  # e.g. DeepFill v2's sketch channel
        return dict(image=data['image'], mask=paddle.to_tensor(mask), bbox=bbox,
                    **{k: paddle.to_tensor(v) for k, v in extra.items()})

    opt_g, opt_d = optimizers['optG'], optimizers.get('optD')
    scaler = paddle.amp.GradScaler() if amp == 'float16' else None
    it = 0
    if resume:
        tensors, state, path = resume
        load_model_state(model, tensors, path)
        for name, opt in optimizers.items():
            load_optimizer_state(opt, model, name, tensors, state)
        if scaler is not None and state.get('loss_scaler'):
            scaler.load_state_dict(state['loss_scaler'])
        it = state['iteration']
        log.line(f'# resumed from {path} at iteration {it}')
    elif cfg['init_from']:
        init_weights(model, cfg, log)
    else:
        model.prepare_data(dataset)
    losses = loss_functions(model, amp)  # data-parallel wrappers when launched on several ranks

    def save(it):
        """Every rank checks that the replicas agree; rank 0 writes the checkpoint."""
        drift = rank_drift(model) if world > 1 else None
        if not lead:
            return None
        path = run_dir / f'iter_{it:07d}.safetensors'
        extra = {'loss_scaler': scaler_state(scaler)} if scaler is not None else {}
        save_checkpoint(path, model, optimizers, dict(model=cfg['model'], config=cfg,
                                                       iteration=it, batches=batches, **extra))
        link_or_copy(path, run_dir / 'latest.safetensors')
        old = sorted(run_dir.glob('iter_*.safetensors'))[:-cfg['keep_ckpts']]
        for p in old if cfg['keep_ckpts'] > 0 else []:
            p.unlink()
        if drift is not None:
            log.line(f'# checkpoint {path.name}: max |weight - rank 0 weight| over {world} '
                     f'ranks {drift:.3g}')
        return path

    stop = []

    def on_signal(signum, frame):  # Ctrl-C or the launcher's SIGTERM: finish, save, exit
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not stop:
            tqdm.write('interrupted: saving a checkpoint after this iteration (Ctrl-C again to '
                       'abort)')
        stop.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if it == 0 and lead:
        evaluate(model, val, it, log, run_dir)
    sums, count, t0 = {}, 0, time.time()
    bar = tqdm(total=cfg['max_iters'], initial=it, unit='it', mininterval=2, dynamic_ncols=True,
               disable=not lead)
    model.train()
    halted = False
    while it < cfg['max_iters']:
        halted = any_rank(stop)  # the ranks stop after the same iteration
        if halted:
            break
        d_steps, g_step = model.schedule(it)
        logs = train_step(model, opt_g, opt_d, next_batch, d_steps, it, run_dir, g_step, losses,
                          scaler)
        it += 1
        bar.update(1)
        for k, v in logs.items():  # already averaged over the ranks
            sums[k] = sums.get(k, 0.0) + float(v)
        count += 1
        if it % cfg['log_interval'] == 0 or it == cfg['max_iters']:
            dt = (time.time() - t0) / count
            log.scalars(it, {**{k: v / count for k, v in sums.items()},
                             'lr': opt_g.get_lr(), 'dt': dt})
            sums, count, t0 = {}, 0, time.time()
        if (it % cfg['eval_interval'] == 0 or it == cfg['max_iters']) and lead:
            evaluate(model, val, it, log, run_dir)
        if it % cfg['ckpt_interval'] == 0 or it == cfg['max_iters']:
            path = save(it)
    bar.close()
    halted = halted or any_rank(stop)
    if halted:
        path = save(it)
    if world > 1:  # unreadable files met by any rank
        found = []
        dist.all_gather_object(found, sorted(skipped))
        skipped = set().union(*map(set, found))
    if skipped:
        log.line(f'# skipped {len(skipped)} unreadable image files, e.g. {sorted(skipped)[0]}')
    if halted:
        launcher = 'python -m paddle.distributed.launch ... ' if world > 1 else 'python '
        log.line(f'# interrupted at iteration {it}; saved {path}; continue with '
                 f'{launcher}train.py --resume {path}')
    else:
        log.line(f'# done: {it} iterations; checkpoint {run_dir / "latest.safetensors"}')
    return 0


# ----------------------------------------------------------------------------- one iteration
def init_weights(model, cfg, log):
    """Starts a fresh run from the weights of another checkpoint (a converted model, or stage 1
    of PConv's two-stage schedule); optimizers, iteration and data stream start afresh."""
    path = cfg['init_from']
    tensors, state = read_checkpoint(path)
    if state.get('model') != cfg['model']:
        raise ValueError(f"init_from: {path} holds a {state.get('model')} model, this run trains "
                         f"{cfg['model']}")
    load_model_state(model, tensors, path)
    theirs = state.get('config', {})
    differ = [f'{k} ({theirs[k]!r} there, {cfg[k]!r} here)' for k in model.cfg
              if k in theirs and theirs[k] != cfg[k]]
    log.line(f'# initialised from {path}' + (f"; config differs: {', '.join(differ)}"
                                              if differ else ''))


def conditions(batch):
    """Optional generator inputs present in a batch (a guided model's sketch), by keyword."""
    return {k: batch[k] for k in ('sketch',) if batch.get(k) is not None}


_FROZEN = {}


def set_trainable(layer, flag):
    """Freezes (False) or unfreezes (True) a layer's trainable parameters (rosinality's
    requires_grad). Parameters that never train (Paddle lists BatchNorm's running statistics as
    parameters with stop_gradient set) stay frozen: unfreezing restores exactly what was frozen."""
    if not flag:
        frozen = [p for p in layer.parameters() if not p.stop_gradient]
        for p in frozen:
            p.stop_gradient = True
        _FROZEN[id(layer)] = frozen
    else:
        for p in _FROZEN.pop(id(layer), []):
            p.stop_gradient = False


def autocast(amp):
    """paddle.amp.auto_cast at O1 (convs and matmuls in ``amp``, weights float32) or nothing."""
    return paddle.amp.auto_cast(dtype=amp) if amp else contextlib.nullcontext()


def as_float32(out):
    """A model's outputs with float16/bfloat16 tensors cast back to float32."""
    return {k: v.astype('float32') if v.dtype in (paddle.float16, paddle.bfloat16) else v
            for k, v in out.items()}


def critic_loss(model, amp, batch):
    """The critic loss on a batch. The generator runs without gradients (under autocast with
    --amp); the critic loss, gradient penalty included, stays float32: the penalty differentiates
    the critic twice, and in float16 its unscaled inner gradient can underflow."""
    with paddle.no_grad(), autocast(amp):
        out = model(batch['image'], batch['mask'], **conditions(batch))
    return model.d_loss(batch, as_float32(out))


def generator_loss(model, amp, batch):
    """The generator loss on a batch; forward and loss under autocast with --amp."""
    with autocast(amp):
        out = model(batch['image'], batch['mask'], **conditions(batch))
        loss, logs = model.g_loss(batch, out)
    return loss.astype('float32') if amp else loss, logs


class ParallelLoss(paddle.nn.Layer):
    """A loss as the forward of a layer that holds only ``net``, the network the loss trains.

    Wrapped in paddle.DataParallel, it all-reduces (averages) ``net``'s gradients during each
    backward of that loss and touches nothing else: in a critic step the generator runs without
    gradients, in a generator step the critic is frozen. The model itself stays unwrapped, so
    its parameter names, and with them the checkpoint keys, are those of a single process.
    """

    def __init__(self, net, loss_fn):
        super().__init__()
        self.net = net  # registered: DataParallel syncs (and at start broadcasts) these
        self.loss_fn = loss_fn

    def forward(self, batch):
        return self.loss_fn(batch)


def data_parallel(net, loss_fn):
    """paddle.DataParallel over ``ParallelLoss(net, loss_fn)``. ``find_unused_parameters``: a
    layer the loss never reaches (the refinement network while pretraining the coarse one) is
    marked ready instead of holding back the gradient all-reduce."""
    return paddle.DataParallel(ParallelLoss(net, loss_fn), find_unused_parameters=True)


def loss_functions(model, amp=None):
    """(critic, generator): callables batch -> (loss, logs) for ``train_step``; in a
    data-parallel run (``dist.init_parallel_env`` done, several ranks) through ``data_parallel``.
    """
    critic = functools.partial(critic_loss, model, amp)
    generator = functools.partial(generator_loss, model, amp)
    if not parallel():
        return critic, generator
    return (data_parallel(model.netD, critic) if model.netD is not None else critic,
            data_parallel(model.netG, generator))


def train_step(model, opt_g, opt_d, next_batch, d_steps, it=0, run_dir='.', g_step=True,
               losses=None, scaler=None):
    """One iteration: ``d_steps`` critic steps on fresh batches, then one generator step
    (skipped when ``g_step`` is False: GLCIC's critic-only phase).

    The critic sees detached fakes (``d_loss`` detaches), so it never writes netG grads; during
    the generator step the critics are frozen, so they collect no grads either. ``losses`` comes
    from ``loss_functions`` (default: single process, float32); ``scaler`` is the generator's
    paddle.amp.GradScaler under float16 --amp. Returns the detached logs of the last critic step
    and of the generator step, averaged over the ranks.
    """
    critic, generator = losses or loss_functions(model)
    logs = {}
    for _ in range(d_steps):
        loss_d, logs_d = critic(next_batch())
        logs.update(checked_logs(loss_d, logs_d, 'd', it, run_dir))
        opt_d.clear_grad()
        loss_d.backward()
        opt_d.step()
    if not g_step:
        return logs
    batch = next_batch()
    if opt_d is not None:
        set_trainable(model.netD, False)
    loss_g, logs_g = generator(batch)
    logs.update(checked_logs(loss_g, logs_g, 'g', it, run_dir))
    opt_g.clear_grad()
    if scaler is None:
        loss_g.backward()
        opt_g.step()
    else:  # dynamic loss scaling: the step is skipped (and the scale halved) on inf/NaN grads
        scaler.scale(loss_g).backward()
        scaler.step(opt_g)
        scaler.update()
    if opt_d is not None:
        set_trainable(model.netD, True)
    return logs


# ----------------------------------------------------------------------------- parallel, AMP
def parallel():
    """Whether this process is one of several data-parallel ranks."""
    return dist.is_initialized() and dist.get_world_size() > 1


def check_parallel(cfg, world):
    """Settings a run on ``world`` ranks cannot take; one-line errors before any rank starts."""
    if cfg['batch_size'] % world:
        raise ValueError(f"batch_size: {cfg['batch_size']} (the global batch) does not split "
                         f"evenly over {world} ranks")
    if world > 1 and str(cfg['device']).startswith('gpu:'):
        raise ValueError(f"device: '{cfg['device']}' names one GPU for all {world} ranks; pass "
                         "--device gpu (each rank takes the GPU the launcher gives it)")


def amp_dtype(cfg, device):
    """The autocast dtype of --amp, or None; refused where ``device`` cannot train with it."""
    dtype = cfg['amp_dtype']
    if dtype not in ('float16', 'bfloat16'):
        raise ValueError(f"amp_dtype: expected 'float16' or 'bfloat16', got {dtype!r}")
    if not cfg['amp']:
        return None
    if not device.startswith('gpu'):
        raise ValueError(f'amp: mixed precision needs a GPU, this run is on {device} '
                         '(drop --amp, or install paddlepaddle-gpu)')
    supported = (paddle.amp.is_float16_supported if dtype == 'float16'
                 else paddle.amp.is_bfloat16_supported)
    if not supported():
        raise ValueError(f'amp_dtype: this GPU cannot train in {dtype} (bfloat16 needs compute '
                         'capability 8.0 or newer); pass --amp_dtype float16')
    return dtype


def scaler_state(scaler):
    """A GradScaler's state as JSON (the checkpoint header)."""
    return {k: v.tolist() if hasattr(v, 'tolist') else v for k, v in scaler.state_dict().items()}


def mean_over_ranks(values):
    """Scalar tensors averaged over the ranks with one all_reduce; as given in one process."""
    if not parallel():
        return values
    stacked = paddle.stack([v.astype('float32').reshape([]) for v in values])
    dist.all_reduce(stacked)
    return list((stacked / dist.get_world_size()).unbind())


def checked_logs(loss, logs, name, it, run_dir):
    """The step's logs averaged over the ranks; a non-finite loss stops all ranks at once."""
    values = mean_over_ranks([loss.detach(), *logs.values()])
    check_finite(values[0], name, it, run_dir)
    return dict(zip(logs, values[1:]))


def any_rank(flags):
    """Whether ``flags`` is non-empty on any rank (signals reach ranks at different moments)."""
    if not parallel():
        return bool(flags)
    flag = paddle.to_tensor([int(bool(flags))])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def rank_drift(model):
    """max |tensor - rank 0's tensor| over the model's float state and all ranks; data
    parallelism keeps the replicas bit-identical, so anything but 0 means they diverged."""
    flat = paddle.concat([v.detach().astype('float32').reshape([-1])
                          for v in model.state_dict().values() if paddle.is_floating_point(v)])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    drift = (flat - reference).abs().max()
    dist.all_reduce(drift, op=dist.ReduceOp.MAX)
    return float(drift)


def ignore_sigint(worker_id):
    """DataLoader workers leave Ctrl-C to the main process, which saves before exiting."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def check_finite(loss, name, it, run_dir):
    """Stops on NaN/Inf before the optimizer step, so the last checkpoint stays good."""
    value = float(loss)
    if not math.isfinite(value):
        raise FloatingPointError(
            f'{name} loss is {value} at iteration {it + 1}; stopped without saving. The last '
            f'good checkpoint is {run_dir / "latest.safetensors"} (if any). Lower --lr or '
            'check the data.')


def evaluate(model, val, it, log, run_dir):
    """Metrics on the fixed validation set, a sample grid PNG and VisualDL images."""
    if val is None:
        return
    images, mask, extra = val
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(images), paddle.to_tensor(mask),
                    **{k: paddle.to_tensor(v) for k, v in extra.items()})
    model.train()
    composites = out['composite'].numpy()
    rows = [compute_all(to_uint8(gt), to_uint8(pred), m[0])
            for gt, pred, m in zip(images, composites, mask)]
    log.scalars(it, {f'val_{k}': float(np.mean([r[k] for r in rows])) for k in rows[0]},
                prefix='eval ')
    cols = panels(images, mask, out, extra.get('sketch'))
    picture = grid([c for _, c in cols])
    save_image(run_dir / 'samples' / f'iter_{it:07d}.png', picture)
    if log.writer is not None:
        log.writer.add_image('samples/' + '|'.join(n for n, _ in cols), picture, it)


def make_validation(cfg, masks):
    """Fixed validation crops and masks (seeded per image), so numbers compare across runs."""
    source = validation_source(cfg)
    if source is None:
        return None
    ds = ImageDataset(source, cfg['image_size'], train=False)
    n = min(cfg['val_count'], len(ds))
    images = np.stack([ds[i]['image'] for i in range(n)])
    holes = np.stack([mask_for_index(masks, cfg['seed'], i)[0] for i in range(n)])
    return images, holes, guidance(cfg, images)


if __name__ == '__main__':
    sys.exit(runtime.run_cli(main))
