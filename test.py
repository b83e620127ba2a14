"""Evaluates a checkpoint on a dataset with fixed masks, or inpaints your own photos.

    python test.py                       # latest quick-start checkpoint on the builtin val photos
    python test.py --checkpoint checkpoints/RUN/latest.safetensors --data val.flist --baseline telea
    python test.py --image photo.jpg --mask mask.png --output out.png    # any size; white = hole
    python test.py --image photos/ --mask masks/ --output results/       # masks matched by name

Dataset mode writes, to --out_dir (default: the checkpoint's folder, test_<checkpoint>/):
metrics.csv (one row per image and method), metrics.txt (means, `key value`), composites/ and
grids/ (input | model [| telea] | ground truth). Metrics follow MMagic: hole L1 x100 on [0, 1]
images, whole-image PSNR and SSIM; plus the DeepFill paper's l1, l2 and TV (data/metrics.py).
Masks are drawn per image from RandomState([seed, index]), so numbers compare across models.
Every model is also reported per hole-to-image ratio bucket, (0.01, 0.1], (0.1, 0.2], ...,
(0.5, 0.6], as in the PConv paper's table (metrics_by_hole_ratio.csv and metrics.txt); use
``--mask_type irregular`` (ratios uniform over 0.01-0.6) or your own ``--mask_dir``.
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from models import runtime
from models.inpainter import STRATEGIES, Inpainter, load_model

import cv2  # noqa: E402
import paddle  # noqa: E402

from data import (IMAGE_EXTENSIONS, ImageDataset, compute_all, hole_ratio_bucket,  # noqa: E402
                  list_images, mask_for_index, masks_from_config, read_image, read_mask,
                  save_image, to_uint8, validation_source)
from data.postprocess import POSTPROCESSES, postprocess  # noqa: E402
from data.sketch import guidance, read_sketch  # noqa: E402
from models.visual import grid  # noqa: E402

ROOT = Path(__file__).resolve().parent
QUICKSTART = ROOT / 'checkpoints' / 'deepfill_v1_quickstart' / 'latest.safetensors'


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', '--weights', default=str(QUICKSTART),
                   help='.safetensors checkpoint (a training run or converted weights)')
    p.add_argument('--allow_pickle', action='store_true',
                   help='allow loading a pickled .pdparams (it can run code: trusted files only)')
    p.add_argument('--model', help='model name, needed only for a pickled .pdparams')
    p.add_argument('--data', help="folder, .flist or 'builtin:val' (default: the run's val data)")
    p.add_argument('--mask_type',
                   help="bbox, free_form, irregular or file (default: the training masks)")
    p.add_argument('--mask_dir', help='mask images for --mask_type file (white = hole)')
    p.add_argument('--mask_invert', action='store_true',
                   help='the --mask_dir files have black holes on white')
    p.add_argument('--count', type=int, default=None, help='evaluate at most this many images')
    p.add_argument('--batch_size', type=int, default=8)
    p.add_argument('--seed', type=int, default=0, help='seed of the evaluation masks')
    p.add_argument('--out_dir', help='where results go')
    p.add_argument('--baseline', choices=['none', 'telea'], default='none',
                   help="also run OpenCV's Telea inpainting on the same masks")
    p.add_argument('--postprocess', choices=POSTPROCESSES, default='none',
                   help="post-process the model's results: 'glcic' = Telea fill + Poisson "
                   'blending of the hole (GLCIC; works with any model)')
    p.add_argument('--image', help='a photo or a folder of photos to inpaint')
    p.add_argument('--mask', help='its mask (white = hole), or a folder of same-named masks')
    p.add_argument('--sketch', help='guided models: white strokes on black where edges should go '
                   '(a file, or a folder of same-named sketches)')
    p.add_argument('--output', help='output file (or folder, for a folder of photos)')
    p.add_argument('--strategy', choices=STRATEGIES, default='auto',
                   help='how photos larger than the training size are fed to the model: whole '
                   '(original), shrunk (resize) or a window around each hole (crop); auto = crop '
                   'when the longer side exceeds twice the training size (models/inpainter.py)')
    p.add_argument('--device', default='auto')
    return p.parse_args(argv)


def telea(image_u8, mask):
    """OpenCV's Telea (2004) inpainting of the hole, radius 3: a classical baseline."""
    return cv2.inpaint(image_u8, (mask > 0).astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)


def evaluate_dataset(args, model, state):
    cfg = state.get('config', model.cfg)
    data = args.data or validation_source(cfg)
    if data is None:
        raise ValueError('--data: the checkpoint was not trained on builtin data; pass --data')
    size = cfg['image_size']
    dataset = ImageDataset(data, size, train=False)
    masks = masks_from_config({**cfg, 'mask_invert': args.mask_invert or cfg.get('mask_invert')},
                              args.mask_type, args.mask_dir, per_sample=True)
    n = len(dataset) if args.count is None else min(args.count, len(dataset))
    ckpt = Path(args.checkpoint)
    out_dir = Path(args.out_dir or ckpt.parent / f'test_{ckpt.stem}')
    for sub in ('composites', 'grids'):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    methods = ['model'] + (['telea'] if args.baseline == 'telea' else [])
    rows, skipped = [], []
    for start in range(0, n, args.batch_size):
        items = [dataset[i] for i in range(start, min(start + args.batch_size, n))]
        skipped += [p for item in items for p in item['skipped']]
        items = [item for item in items if not item['skipped']]  # unreadable: no substitute
        if not items:
            continue
        idx = [item['index'] for item in items]
        images = np.stack([item['image'] for item in items])
        mask = np.stack([mask_for_index(masks, args.seed, i)[0] for i in idx])
        extra = guidance(cfg, images)  # guided models: Canny edges of the ground truth
        with paddle.no_grad():
            out = model(paddle.to_tensor(images), paddle.to_tensor(mask),
                        **{k: paddle.to_tensor(v) for k, v in extra.items()})
        composite = out['composite'].numpy()
        for j, i in enumerate(idx):
            name, gt, m = dataset.name(i), to_uint8(images[j]), mask[j, 0]
            results = {'model': postprocess(args.postprocess, to_uint8(composite[j]), m)}
            if 'telea' in methods:
                results['telea'] = telea(np.where(m[..., None] > 0, 0, gt).astype(np.uint8), m)
            for method, result in results.items():
                ratio = float(m.mean())
                rows.append(dict(method=method, image=name, hole_ratio=ratio,
                                 bucket=hole_ratio_bucket(ratio) or 'other',
                                 **compute_all(gt, result, m)))
            save_image(out_dir / 'composites' / f'{name}.png', results['model'])
            shown = [images[j] * (1 - m) + m] + [r.transpose(2, 0, 1) / 127.5 - 1
                                                 for r in results.values()] + [images[j]]
            save_image(out_dir / 'grids' / f'{name}.png', grid([c[None] for c in shown]))
    write_report(out_dir, rows, methods, dict(checkpoint=args.checkpoint, data=data,
                                              masks=args.mask_type or cfg['mask_type'],
                                              seed=args.seed, images=n - len(skipped),
                                              postprocess=args.postprocess))
    if skipped:
        print(f'skipped {len(skipped)} unreadable images, e.g. {skipped[0]}')
    return 0


def write_report(out_dir, rows, methods, info):
    """metrics.csv (per image), metrics_by_hole_ratio.csv, metrics.txt (means: overall and per
    hole-ratio bucket) and printed tables."""
    keys = [k for k in rows[0] if k not in ('method', 'image', 'bucket')]
    with open(out_dir / 'metrics.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['method', 'image', 'bucket'] + keys)
        writer.writeheader()
        writer.writerows(rows)
    buckets = sorted({r['bucket'] for r in rows}, key=lambda b: (b == 'other', b))
    table = [dict(method=m, bucket=b, count=len(sel),
                  **{k: float(np.mean([r[k] for r in sel])) for k in keys})
             for m in methods for b in ['all'] + buckets
             for sel in [[r for r in rows if r['method'] == m and b in ('all', r['bucket'])]]
             if sel]
    with open(out_dir / 'metrics_by_hole_ratio.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    lines = [' '.join(f'{k} {v}' for k, v in info.items())]
    lines += [f"method {t['method']} " + ('' if t['bucket'] == 'all' else
                                         f"hole_ratio {t['bucket']} count {t['count']} ")
              + ' '.join(f'{k} {t[k]:.4f}' for k in keys) for t in table]
    (out_dir / 'metrics.txt').write_text('\n'.join(lines) + '\n')
    print(f"{'method':<8}{'holes':>10}{'n':>5}" + ''.join(f'{k:>11}' for k in keys))
    for t in table:
        print(f"{t['method']:<8}{t['bucket']:>10}{t['count']:>5}"
              + ''.join(f'{t[k]:>11.4f}' for k in keys))
    print(f'{info["images"]} images; results in {out_dir}')


def find_partner(arg, image_path, flag='mask'):
    """The mask (or sketch) of one photo: the given file, or the same-stem file in a folder."""
    path = Path(arg)
    if path.is_file():
        return path
    matches = [p for p in path.glob(Path(image_path).stem + '.*')
               if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not matches:
        raise FileNotFoundError(f'--{flag}: no file named {Path(image_path).stem}.* in {path}')
    return matches[0]


def inpaint_files(args, model):
    """Single-image and folder modes, through the Inpainter (any size, known pixels kept)."""
    if not args.mask or not args.output:
        raise ValueError('--image needs --mask and --output')
    for flag in ('image', 'mask', 'sketch'):
        if getattr(args, flag) and not Path(getattr(args, flag)).exists():
            raise FileNotFoundError(f'--{flag}: {getattr(args, flag)} does not exist')
    inpainter = Inpainter(model, strategy=args.strategy)
    folder = Path(args.image).is_dir()
    images = list_images(args.image) if folder else [args.image]
    for path in images:
        mask_path = find_partner(args.mask, path)
        image, mask = read_image(path), read_mask(mask_path)
        sketch = None
        if args.sketch:
            sketch = read_sketch(find_partner(args.sketch, path, 'sketch'),
                                 model.cfg.get('edge_threshold', 0.6))
        if image.shape[:2] != mask.shape:
            raise ValueError(f'--mask: {mask_path} is {mask.shape[1]}x{mask.shape[0]} but '
                             f'{path} is {image.shape[1]}x{image.shape[0]} (width x height)')
        if not mask.any():
            raise ValueError(f'--mask: {mask_path} marks no hole (white = hole, black = keep)')
        out = Path(args.output) / (Path(path).stem + '.png') if folder else Path(args.output)
        save_image(out, postprocess(args.postprocess, inpainter(image, mask, sketch), mask))
        print(f'{path} -> {out}')
    return 0


def main(argv=None):
    args = parse_args(argv)
    runtime.setup(args.device)
    if not Path(args.checkpoint).exists() and args.checkpoint == str(QUICKSTART):
        raise FileNotFoundError(f'--checkpoint: {QUICKSTART} does not exist yet; run '
                                '`python train.py` first or pass --checkpoint')
    model, state = load_model(args.checkpoint, args.allow_pickle, args.model)
    if args.image:
        return inpaint_files(args, model)
    return evaluate_dataset(args, model, state)


if __name__ == '__main__':
    sys.exit(runtime.run_cli(main))
