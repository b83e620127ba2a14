"""Speed and size of every model: parameters, inference latency, training-step time, memory.

    python tools/benchmark.py                       # all models, 256 and 512, CPU or GPU
    python tools/benchmark.py --sizes 256 --repeats 3 --json bench.json

Latency is the median of --repeats runs after one warm-up (eager, no_grad, batch 1); the training
step is one full iteration of train.py's schedule (d_steps critic steps + one generator step) at
the model's training size and --batch_size. Peak memory is the process's maximum resident set on
CPU, or paddle's max allocated memory on GPU. Numbers vary with machine load: compare runs taken
on the same quiet machine.
"""
import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import MODELS, build, runtime  # noqa: E402
from models.base import count_parameters  # noqa: E402

import numpy as np  # noqa: E402
import paddle  # noqa: E402

import train  # noqa: E402


def peak_memory_mb(device):
    if device.startswith('gpu'):
        return paddle.device.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if paddle.is_compiled_with_cuda():
            paddle.device.synchronize()  # GPU kernels run asynchronously
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name, sizes, repeats, batch_size, device):
    model = build(name, {})
    cfg = model.cfg
    row = dict(model=name, params_G=count_parameters(model.netG),
               params_D=count_parameters(model.netD))
    model.eval()
    for size in sizes:
        image = paddle.rand([1, 3, size, size]) * 2 - 1
        mask = paddle.zeros([1, 1, size, size])
        mask[:, :, size // 4:size // 2, size // 4:size // 2] = 1

        def infer():
            with paddle.no_grad():
                model(image, mask)
        row[f'infer_{size}_s'] = timed(infer, repeats)
    model.train()
    opts = model.make_optimizers()
    opt_g, opt_d = opts['optG'], opts.get('optD')
    d_steps = cfg.get('d_steps', 1) if opt_d is not None else 0
    s = cfg['image_size']
    b = cfg.get('bbox_size', s // 2)
    mask = np.zeros((batch_size, 1, s, s), 'float32')
    mask[:, :, s // 4:s // 4 + b, s // 4:s // 4 + b] = 1
    batch = dict(image=paddle.rand([batch_size, 3, s, s]) * 2 - 1, mask=paddle.to_tensor(mask),
                 bbox=np.array([[s // 4, s // 4, b, b]] * batch_size))
    row[f'train_step_{s}_b{batch_size}_s'] = timed(
        lambda: train.train_step(model, opt_g, opt_d, lambda: batch, d_steps), repeats)
    row['peak_memory_mb'] = peak_memory_mb(device)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=sorted(MODELS))
    p.add_argument('--sizes', nargs='+', type=int, default=[256, 512])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--batch_size', type=int, default=1)
    p.add_argument('--device', default='auto')
    p.add_argument('--json', help='also write the rows to this JSON file')
    args = p.parse_args(argv)
    device = runtime.setup(args.device)
    rows = [bench(name, args.sizes, args.repeats, args.batch_size, device) for name in args.models]
    for row in rows:
        print('  '.join(f'{k} {v:.3f}' if isinstance(v, float) else f'{k} {v}'
                        for k, v in row.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(device=device, paddle=paddle.__version__,
                                                   rows=rows), indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
