"""Size, compute, speed and memory of every model; a printed table and a JSON file.

    python tools/benchmark.py                                  # all models, 256 and 512
    python tools/benchmark.py --models deepfill_v1 --repeats 3 --json bench.json
    python tools/benchmark.py --models deepfill_v1 --photo 2048x1536 --strategy crop original
    python tools/benchmark.py --models lama --set n_blocks=18      # Big-LaMa
    python tools/benchmark.py --models lama --set n_blocks=18 --phases --photo 2048x1536 \
        --strategy original refine --refine_iters 2

Every model is built with its paper DEFAULTS (random weights: speed does not depend on them).
Per model and size (batch 1):

- ``params_G`` / ``params_D``: trainable parameters of the generator and the critic.
- ``gflops_S``: forward GFLOPs of the generator at S x S, counted with forward hooks: every
  layer whose own ``weight`` is 4-D is a convolution (N * H_out * W_out * |weight|
  multiply-adds; transposed convolutions on the input grid), every 2-D ``weight`` a linear layer,
  plus contextual attention's two matrix products (matching 9C * L^2 and pasting 16C * L^2 for
  L foreground positions); FLOPs = 2 x multiply-adds. Biases, activations, normalisation,
  softmax, resizes and the loss networks (VGG) are not counted. (paddle.flops is not used: it
  counts MACs plus bias adds, overcounts transposed convolutions and fails with numpy 2.)
- ``eager_S_ms`` / ``export_S_ms``: median latency of ``--repeats`` runs after one warm-up, in
  dygraph (no_grad) and through the exported model (paddle.inference: oneDNN on CPU, the GPU on
  a CUDA build); ``*_gflops_s`` = gflops_S / latency.
- ``train_ms``: one training iteration of the model's last schedule phase (its critic steps and
  one generator step, as train.py) at its training size and --batch_size.
- ``peak_*_mb``: peak resident memory of the process that ran that phase (each phase runs in a
  fresh process; the figure includes Paddle's own ~0.5 GB), or Paddle's peak allocated GPU memory.

``--photo WxH`` inpaints a synthetic photo with a centred box hole covering --hole of it, once
per --strategy, each in a fresh process, and reports wall time and peak memory.

Timings vary with machine load: compare runs taken on the same quiet machine; speed targets live
here, never in the tests.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import runtime  # noqa: E402
from models import MODELS, build  # noqa: E402
from models.attention import ContextualAttention  # noqa: E402
from models.base import count_parameters  # noqa: E402

import numpy as np  # noqa: E402
import paddle  # noqa: E402


# ---------------------------------------------------------------- FLOPs
def _macs(layer, inputs, output):
    """Multiply-adds of one forward of ``layer`` (see the module docstring for the rule)."""
    out = output[0] if isinstance(output, (tuple, list)) else output
    if isinstance(layer, ContextualAttention):
        n, c, h, w = inputs[0].shape
        positions = (h // layer.rate) * (w // layer.rate)
        return n * positions ** 2 * c * (layer.ksize ** 2 + (2 * layer.rate) ** 2)
    weight = getattr(layer, 'weight', None)
    if not isinstance(weight, paddle.Tensor):
        return 0
    size = int(np.prod(weight.shape))
    if weight.ndim == 4:
        grid = inputs[0] if isinstance(layer, paddle.nn.Conv2DTranspose) else out
        return grid.shape[0] * grid.shape[2] * grid.shape[3] * size
    if weight.ndim == 2:
        return int(np.prod(out.shape[:-1])) * size
    return 0


def count_gflops(model, size):
    """Generator forward GFLOPs (2 x multiply-adds) at ``size`` x ``size``, batch 1."""
    total = [0]
    hooks = [layer.register_forward_post_hook(
        lambda layer, inputs, output: total.__setitem__(0, total[0] + _macs(layer, inputs, output)))
        for layer in model.sublayers(include_self=True)]
    try:
        with paddle.no_grad():
            model(*example(size))
    finally:
        for hook in hooks:
            hook.remove()
    return 2 * total[0] / 1e9


# ---------------------------------------------------------------- helpers
def example(size, batch=1, seed=0):
    """A smooth random image and a centred box hole (a quarter of the side), as tensors."""
    rng = np.random.RandomState(seed)
    base = rng.uniform(-1, 1, (batch, 3, size // 8, size // 8)).astype('float32')
    mask = np.zeros((batch, 1, size, size), 'float32')
    mask[:, :, size // 4:size // 2, size // 4:size // 2] = 1
    return paddle.to_tensor(base.repeat(8, 2).repeat(8, 3)), paddle.to_tensor(mask)


def timed(fn, repeats):
    """Median seconds of ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if paddle.is_compiled_with_cuda():
            paddle.device.synchronize()  # GPU kernels run asynchronously
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mb(device):
    if device.startswith('gpu'):
        return paddle.device.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def model_config(name, tmp, overrides=None):
    """The paper DEFAULTS with ``overrides`` (``--set``), plus random weights in ``tmp`` for the
    frozen loss networks (VGG, LaMa's ResNet) whose file is absent (training-step timing does
    not depend on their values)."""
    from models.features import ARCHS
    cls, cfg = MODELS[name], dict(overrides or {})
    for key, arch in (('vgg_weights', getattr(cls, 'VGG_ARCH', 'vgg16')),
                      ('resnet_pl_weights', 'resnet50dilated')):
        path = cfg.get(key, cls.DEFAULTS.get(key))
        if path is None or os.path.isfile(path):
            continue
        net = ARCHS[arch][0](('layer4',) if arch == 'resnet50dilated' else ('pool5',))
        out = Path(tmp) / f'{arch}-random.npz'
        np.savez(out, **{k: v.numpy() for k, v in net.state_dict().items()})
        cfg[key] = str(out)
    return cfg


# ---------------------------------------------------------------- phases (one process each)
def phase_eager(name, sizes, repeats, device, tmp, overrides=None):
    model = build(name, model_config(name, tmp, overrides))
    model.eval()
    row = dict(params_G=count_parameters(model.netG), params_D=count_parameters(model.netD))
    for size in sizes:
        row[f'gflops_{size}'] = count_gflops(model, size)
        image, mask = example(size)

        def infer():
            with paddle.no_grad():
                model(image, mask)
        row[f'eager_{size}_ms'] = 1000 * timed(infer, repeats)
    row['peak_eager_mb'] = peak_memory_mb(device)
    return row


def phase_export(name, sizes, repeats, device, tmp, overrides=None):
    from inference import ExportedModel, export
    model = build(name, model_config(name, tmp, overrides))
    folder = export(model, Path(tmp) / 'export')
    del model
    exported = ExportedModel(folder, device=device)
    row = {}
    for size in sizes:
        image, mask = (t.numpy() for t in example(size))
        row[f'export_{size}_ms'] = 1000 * timed(lambda: exported.outputs_for(image, mask),
                                                repeats)
    row['peak_export_mb'] = peak_memory_mb(device)
    return row


def phase_train(name, batch_size, repeats, device, tmp, overrides=None):
    from data import masks_from_config
    from training.batches import to_batch
    from training.step import train_step
    from weights.features import load_feature_weights
    model = build(name, model_config(name, tmp, overrides))
    load_feature_weights(model)
    model.train()
    opts = model.make_optimizers()
    d_steps, g_step, phase = model.schedule(model.cfg['max_iters'] - 1)  # the last (full) phase
    size = model.cfg['image_size']
    rng = np.random.RandomState(0)
    mask, bbox = masks_from_config(model.cfg)(rng, batch_size)
    image = example(size, batch_size)[0].numpy()
    alpha = rng.uniform(size=(batch_size, model.MIXING_DRAWS)).astype('float32')
    batch = to_batch(image, mask, bbox, model.extra_inputs(image, mask), alpha)
    step = lambda: train_step(model, opts['optG'], opts.get('optD'),  # noqa: E731
                              lambda: batch, d_steps, g_step=g_step, phase=phase, run_dir=tmp)
    return {f'train_{size}_b{batch_size}_ms': 1000 * timed(step, repeats),
            'peak_train_mb': peak_memory_mb(device)}


def phase_photo(name, hw, hole, strategy, checkpoint, device, tmp, overrides=None,
                refine_iters=15):
    """Inpaints a synthetic HxW photo with a centred box hole of ``hole`` of its area."""
    from inference import Inpainter, load_model
    model = load_model(checkpoint)[0] if checkpoint else \
        build(name, model_config(name, tmp, overrides))
    h, w = hw
    rng = np.random.RandomState(0)
    photo = rng.randint(0, 255, (h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
    photo = np.ascontiguousarray(photo.repeat(16, 0).repeat(16, 1)[:h, :w])
    bh, bw = int(round(h * hole ** 0.5)), int(round(w * hole ** 0.5))
    mask = np.zeros((h, w), np.uint8)
    mask[(h - bh) // 2:(h - bh) // 2 + bh, (w - bw) // 2:(w - bw) // 2 + bw] = 255
    inpainter = Inpainter(model, strategy=strategy, refine_options=dict(
        n_iters=refine_iters) if strategy == 'refine' else None)
    start = time.perf_counter()
    _, info = inpainter.run(photo, mask)
    return dict(strategy=info['strategy'], windows=len(info['windows']),
                hole=float((mask > 0).mean()), seconds=time.perf_counter() - start,
                peak_mb=peak_memory_mb(device))


def run_child(task, args):
    """Runs one phase in a fresh process (so its peak memory is its own); returns its dict."""
    cmd = [sys.executable, str(Path(__file__).resolve()), '--_child', json.dumps(task),
           '--device', args.device, '--repeats', str(args.repeats)]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('RESULT ')]
    if proc.returncode or not lines:
        err = (proc.stderr.strip().splitlines() or ['no output'])[-1]
        print(f"  {task['phase']} {task['name']}: failed ({err})", file=sys.stderr)
        return {f"{task['phase']}_error": err}
    return json.loads(lines[-1][len('RESULT '):])


def child(task, args, device):
    with tempfile.TemporaryDirectory() as tmp:
        phase, name, overrides = task['phase'], task['name'], task.get('set')
        if phase == 'eager':
            row = phase_eager(name, task['sizes'], args.repeats, device, tmp, overrides)
        elif phase == 'export':
            row = phase_export(name, task['sizes'], args.repeats, device, tmp, overrides)
        elif phase == 'train':
            row = phase_train(name, task['batch_size'], args.repeats, device, tmp, overrides)
        else:
            row = phase_photo(name, task['hw'], task['hole'], task['strategy'],
                              task.get('checkpoint'), device, tmp, overrides,
                              task.get('refine_iters', 15))
    print('RESULT ' + json.dumps(row))


def parse_set(items):
    """``KEY=VALUE`` strings -> {key: YAML-parsed value}; a malformed item is a one-line error."""
    import yaml
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ValueError(f'--set: expected KEY=VALUE, got {item!r}')
        out[key] = yaml.safe_load(value)
    return out


# ---------------------------------------------------------------- report
def table(rows, keys):
    """Fixed-width text table of ``rows`` (dicts) over ``keys``."""
    fmt = lambda v: (f'{v:.1f}' if abs(v) >= 10 else f'{v:.3g}') if isinstance(v, float) \
        else str(v)  # noqa: E731
    widths = [max(len(k), *(len(fmt(r.get(k, '-'))) for r in rows)) for k in keys]
    lines = ['  '.join(k.rjust(w) for k, w in zip(keys, widths))]
    lines += ['  '.join(fmt(r.get(k, '-')).rjust(w) for k, w in zip(keys, widths)) for r in rows]
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=sorted(MODELS), choices=sorted(MODELS))
    p.add_argument('--sizes', nargs='+', type=int, default=[256, 512])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--batch_size', type=int, default=1, help='training-step batch')
    p.add_argument('--phases', nargs='*', default=['eager', 'export', 'train'],
                   choices=['eager', 'export', 'train'])
    p.add_argument('--photo', help='also inpaint a WxH photo, e.g. 2048x1536')
    p.add_argument('--hole', type=float, default=0.1, help='hole share of the --photo')
    p.add_argument('--strategy', nargs='+', default=['crop'], help='strategies for --photo')
    p.add_argument('--checkpoint', help='weights for --photo (default: random, DEFAULTS)')
    p.add_argument('--refine_iters', type=int, default=15,
                   help="iterations per scale of --strategy refine (LaMa; official 15)")
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                   help='config overrides, e.g. n_blocks=18 (Big-LaMa); YAML values')
    p.add_argument('--device', default='auto')
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--json', help='write the results to this JSON file')
    p.add_argument('--_child', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    device = runtime.setup(args.device, args.threads)
    if args._child:
        return child(json.loads(args._child), args, device)
    overrides = parse_set(args.set)
    rows, photos = [], []
    for name in args.models:
        row = dict(model=name, **({'set': ' '.join(args.set)} if args.set else {}))
        for phase in args.phases:
            print(f'{name}: {phase} ...', file=sys.stderr, flush=True)
            row.update(run_child(dict(phase=phase, name=name, sizes=args.sizes,
                                      batch_size=args.batch_size, set=overrides), args))
        for size in args.sizes:
            for kind in ('eager', 'export'):
                if f'{kind}_{size}_ms' in row and f'gflops_{size}' in row:
                    row[f'{kind}_{size}_gflops_s'] = row[f'gflops_{size}'] / (
                        row[f'{kind}_{size}_ms'] / 1000)
        rows.append(row)
        if args.photo:
            w, h = (int(v) for v in args.photo.lower().split('x'))
            for strategy in args.strategy:
                print(f'{name}: {args.photo} photo, {strategy} ...', file=sys.stderr, flush=True)
                photos.append(dict(model=name, photo=args.photo, **run_child(
                    dict(phase='photo', name=name, hw=[h, w], hole=args.hole, strategy=strategy,
                         checkpoint=args.checkpoint, set=overrides,
                         refine_iters=args.refine_iters), args)))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print(table(rows, keys))
    if photos:
        print(table(photos, list(dict.fromkeys(k for r in photos for k in r))))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            device=device, paddle=paddle.__version__, threads=args.threads or os.cpu_count(),
            repeats=args.repeats, rows=rows, photos=photos), indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(runtime.run_cli(main))
