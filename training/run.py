"""A training run's folder: config, log, VisualDL, samples and checkpoints.

``checkpoints/<run_name>/`` holds ``config.yaml``, ``log.txt`` (the config, then one ``key value``
line per interval), ``vdl/``, ``samples/`` and ``iter_XXXXXXX.safetensors`` every
``ckpt_interval`` iterations (the last ``keep_ckpts`` kept) plus ``latest.safetensors``. Only
rank 0 writes; checkpoints are written to a temporary file and renamed, so a crash never leaves
a broken one.
"""
import shutil
import time
from pathlib import Path

import numpy as np
import paddle
import yaml
from tqdm import tqdm

from data import save_image, to_uint8
from evaluation.metrics import compute_all
from evaluation.visual import grid, panels
from training.amp import scaler_state
from training.config import ROOT, resolve_config, resumed_config
from training.parallel import rank_drift
from weights.checkpoint import (link_or_copy, load_model_state, load_optimizer_state,
                                read_checkpoint, save_checkpoint)


def run_folder(cfg):
    return Path(cfg['checkpoints_dir'] or ROOT / 'checkpoints') / cfg['run_name']


def open_run(config, resume, overwrite, overrides):
    """The run's config (fresh, or the checkpoint's to resume), folder and checkpoint.

    Args:
        config: ``--config`` path or None; resume: None, 'latest' or a checkpoint path.
    Returns:
        (cfg, run_dir, (tensors, state, path) of the checkpoint to resume or None).
    """
    if resume:
        path = resume if resume != 'latest' else None
        if path is None:
            path = run_folder(resolve_config(config, overrides, require_data=False)) \
                / 'latest.safetensors'
        tensors, state = read_checkpoint(path)
        return resumed_config(state['config'], overrides), Path(path).parent, \
            (tensors, state, path)
    cfg = resolve_config(config, overrides)
    run_dir = run_folder(cfg)
    if (run_dir / 'latest.safetensors').exists() and not overwrite:
        raise ValueError(f'{run_dir} already holds a run: pass --resume to continue it, '
                         '--run_name NAME for a new one, or --overwrite to start again')
    return cfg, run_dir, None


def clear_run(run_dir):
    """--overwrite: removes what an earlier run wrote there (and nothing else)."""
    for path in [*run_dir.glob('*.safetensors'), run_dir / 'log.txt']:
        path.unlink(missing_ok=True)
    for sub in ('samples', 'vdl'):
        shutil.rmtree(run_dir / sub, ignore_errors=True)


def make_writer(run_dir):
    try:
        from visualdl import LogWriter
    except ImportError:
        print('warning: visualdl is not installed; no VisualDL logs (pip install visualdl)')
        return None
    return LogWriter(logdir=str(run_dir / 'vdl'))


class Logger:
    """One `key value` line per interval to stdout (above the progress bar) and log.txt, and
    the same scalars to VisualDL. ``add`` collects an iteration's logs, ``report`` writes their
    means since the last report."""

    def __init__(self, run_dir, writer):
        self.file = open(run_dir / 'log.txt', 'a', buffering=1) if run_dir else None
        self.writer = writer
        self.reset()

    def reset(self):
        """Starts a new interval (the training loop calls it before the first iteration)."""
        self.sums, self.count, self.start = {}, 0, time.time()

    def add(self, logs):
        for k, v in logs.items():  # already averaged over the ranks
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1

    def report(self, it, **extra):
        count = max(self.count, 1)
        self.scalars(it, {**{k: v / count for k, v in self.sums.items()}, **extra,
                          'dt': (time.time() - self.start) / count})
        self.reset()

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


def start_run(run_dir, cfg, lead, overwrite, fresh, header):
    """Creates the folder (rank 0), writes config.yaml and the log header; returns the Logger
    (silent on other ranks)."""
    if not lead:
        return Logger(None, None)
    if overwrite and fresh:
        clear_run(run_dir)
    (run_dir / 'samples').mkdir(parents=True, exist_ok=True)
    with open(run_dir / 'config.yaml', 'w') as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    log = Logger(run_dir, make_writer(run_dir))
    log.line(f'# {time.strftime("%Y-%m-%d %H:%M:%S")} {header}')
    return log


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


def restore(model, optimizers, scaler, resume, cfg, log, dataset):
    """A resumed run's weights, optimizer and loss-scaler states, or a fresh run's start
    (``--init_from`` weights, or the model's data statistics); returns the iteration."""
    if resume:
        tensors, state, path = resume
        load_model_state(model, tensors, path)
        for name, opt in optimizers.items():
            load_optimizer_state(opt, model, name, tensors, state)
        if scaler is not None and state.get('loss_scaler'):
            scaler.load_state_dict(state['loss_scaler'])
        log.line(f'# resumed from {path} at iteration {state["iteration"]}')
        return state['iteration']
    if cfg['init_from']:
        init_weights(model, cfg, log)
    else:
        model.prepare_data(dataset)
    return 0


class Checkpoints:
    """Writes the run's checkpoints: iter_XXXXXXX.safetensors, latest.safetensors pointing at it,
    the oldest beyond ``keep_ckpts`` removed. Every rank calls ``save`` (the replicas are
    compared); rank 0 (the one with a ``log``) writes."""

    def __init__(self, run_dir, model, optimizers, cfg, scaler, log, world):
        self.run_dir, self.model, self.optimizers, self.cfg = run_dir, model, optimizers, cfg
        self.scaler, self.log, self.world = scaler, log, world

    def save(self, it, batches):
        """Returns the path written (None on other ranks)."""
        drift = rank_drift(self.model) if self.world > 1 else None
        if self.log is None:
            return None
        state = dict(model=self.cfg['model'], config=self.cfg, iteration=it, batches=batches)
        if self.scaler is not None:
            state['loss_scaler'] = scaler_state(self.scaler)
        path = self.run_dir / f'iter_{it:07d}.safetensors'
        save_checkpoint(path, self.model, self.optimizers, state)
        link_or_copy(path, self.run_dir / 'latest.safetensors')
        keep = self.cfg['keep_ckpts']
        for old in sorted(self.run_dir.glob('iter_*.safetensors'))[:-keep] if keep > 0 else []:
            old.unlink()
        if drift is not None:
            self.log.line(f'# checkpoint {path.name}: max |weight - rank 0 weight| over '
                          f'{self.world} ranks {drift:.3g}')
        return path


def finish_run(log, run_dir, it, interrupted, world, skipped):
    """The run's last log lines: unreadable files skipped, and how it ended (``interrupted``: the
    checkpoint saved on a stop request, with the command that continues it)."""
    if skipped:
        log.line(f'# skipped {len(skipped)} unreadable image files, e.g. {sorted(skipped)[0]}')
    if interrupted:
        launcher = 'python -m paddle.distributed.launch ... ' if world > 1 else 'python '
        log.line(f'# interrupted at iteration {it}; saved {interrupted}; continue with '
                 f'{launcher}train.py --resume {interrupted}')
    else:
        log.line(f'# done: {it} iterations; checkpoint {run_dir / "latest.safetensors"}')


def evaluate(model, val, it, log, run_dir):
    """Metrics on the fixed validation batch, a sample grid PNG and VisualDL images."""
    if val is None:
        return
    model.eval()
    with paddle.no_grad():
        out = model.run(val)
    model.train()
    images, mask = val['image'].numpy(), val['mask'].numpy()
    composites = out['composite'].numpy()
    rows = [compute_all(to_uint8(gt), to_uint8(pred), m[0])
            for gt, pred, m in zip(images, composites, mask)]
    log.scalars(it, {f'val_{k}': float(np.mean([r[k] for r in rows])) for k in rows[0]},
                prefix='eval ')
    cols = panels(images, mask, out, val['extra'])
    picture = grid([c for _, c in cols])
    save_image(run_dir / 'samples' / f'iter_{it:07d}.png', picture)
    if log.writer is not None:
        log.writer.add_image('samples/' + '|'.join(n for n, _ in cols), picture, it)

