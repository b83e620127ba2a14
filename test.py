"""Evaluates a checkpoint on a dataset with fixed masks, or inpaints your own photos.

    python test.py                       # latest quick-start checkpoint on the builtin val photos
    python test.py --checkpoint checkpoints/RUN/latest.safetensors --data val.flist --baseline telea
    python test.py --image photo.jpg --mask mask.png --output out.png    # any size; white = hole
    python test.py --image photos/ --mask masks/ --output results/       # masks matched by name

Dataset mode writes, to --out_dir (default: the checkpoint's folder, test_<checkpoint>/):
metrics.csv (one row per image and method), metrics.txt (means, `key value`), composites/ and
grids/ (input | model [| telea] | ground truth). Metrics follow MMagic: hole L1 x100 on [0, 1]
images, whole-image PSNR and SSIM; plus the DeepFill paper's l1, l2 and TV (evaluation/metrics.py).
Masks are drawn per image from RandomState([seed, index]), so numbers compare across models.
Every model is also reported per hole-to-image ratio bucket, (0.01, 0.1], (0.1, 0.2], ...,
(0.5, 0.6], as in the PConv paper's table (metrics_by_hole_ratio.csv and metrics.txt); use
``--mask_type irregular`` (ratios uniform over 0.01-0.6) or your own ``--mask_dir``.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

import runtime
from data import (IMAGE_EXTENSIONS, MASK_TYPES, ImageDataset, list_images, mask_for_index,
                  masks_from_config, read_grey, read_image, read_mask, save_image, to_uint8,
                  validation_source)
from evaluation.baselines import BASELINES
from evaluation.metrics import compute_all
from evaluation.report import hole_ratio_bucket, write_report
from evaluation.visual import grid
from inference import POSTPROCESSES, STRATEGIES, Inpainter, load_model, postprocess
from models import MODELS

import paddle  # noqa: E402  (after runtime: the CPU switches come first)

ROOT = Path(__file__).resolve().parent
QUICKSTART = ROOT / 'checkpoints' / 'deepfill_v1_quickstart' / 'latest.safetensors'


def user_inputs():
    """{name: help} of the maps any model takes from a user (its USER_INPUTS)."""
    return {name: text for cls in MODELS.values() for name, text in cls.USER_INPUTS.items()}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', '--weights', default=str(QUICKSTART),
                   help='.safetensors checkpoint (a training run or converted weights)')
    p.add_argument('--model', help='model name, needed only for a bare .pdparams state dict')
    p.add_argument('--data', help="folder, .flist or 'builtin:val' (default: the run's val data)")
    p.add_argument('--mask_type', choices=MASK_TYPES, help='default: the training masks')
    p.add_argument('--mask_dir', help='mask images for --mask_type file (white = hole)')
    p.add_argument('--mask_invert', action='store_true',
                   help='the --mask_dir files have black holes on white')
    p.add_argument('--count', type=int, default=None, help='evaluate at most this many images')
    p.add_argument('--batch_size', type=int, default=8)
    p.add_argument('--seed', type=int, default=0,
                   help="seed of the evaluation masks and of a model's random inputs")
    p.add_argument('--out_dir', help='where results go')
    p.add_argument('--baseline', choices=list(BASELINES), default='none',
                   help="also run a classical method on the same masks (telea: OpenCV's)")
    p.add_argument('--postprocess', choices=POSTPROCESSES, default='none',
                   help="post-process the model's results: 'glcic' = Telea fill + Poisson "
                   'blending of the hole (GLCIC; works with any model)')
    p.add_argument('--image', help='a photo or a folder of photos to inpaint')
    p.add_argument('--mask', help='its mask (white = hole), or a folder of same-named masks')
    for name, text in user_inputs().items():  # maps a model takes from a user (--sketch)
        p.add_argument(f'--{name}', help=text)
    p.add_argument('--output', help='output file (or folder, for a folder of photos)')
    p.add_argument('--strategy', choices=STRATEGIES, default='auto',
                   help='how photos larger than the training size are fed to the model: whole '
                   '(original), shrunk (resize) or a window around each hole (crop); auto = crop '
                   'when the longer side exceeds twice the training size (inference/inpainter.py)')
    p.add_argument('--device', default='auto')
    return p.parse_args(argv)


def predict(model, images, mask, seed, index):
    """The model's composites [N, 3, H, W] for ground-truth images and their masks; extra inputs
    from the model's hook, each image's random draws seeded by (seed, its index)."""
    rngs = [np.random.default_rng([seed, i]) for i in index]
    extra = model.extra_inputs(images, mask, rngs)  # guided DeepFill v2: Canny edges of the truth
    with paddle.no_grad():
        out = model(paddle.to_tensor(images), paddle.to_tensor(mask),
                    **{k: paddle.to_tensor(v) for k, v in extra.items()})
    return out['composite'].numpy()


def score_batch(args, model, dataset, items, masks, out_dir):
    """Metric rows (model, and the baseline if any) of a batch; writes composites and grids."""
    index = [item['index'] for item in items]
    images = np.stack([item['image'] for item in items])
    mask = np.stack([mask_for_index(masks, args.seed, i)[0] for i in index])
    composite = predict(model, images, mask, args.seed, index)
    baseline, rows = BASELINES[args.baseline], []
    for j, i in enumerate(index):
        name, gt, m = dataset.name(i), to_uint8(images[j]), mask[j, 0]
        results = {'model': postprocess(args.postprocess, to_uint8(composite[j]), m)}
        if baseline is not None:
            results[args.baseline] = baseline(np.where(m[..., None] > 0, 0, gt).astype(np.uint8),
                                              m)
        ratio = float(m.mean())
        rows += [dict(method=method, image=name, hole_ratio=ratio,
                      bucket=hole_ratio_bucket(ratio) or 'other', **compute_all(gt, result, m))
                 for method, result in results.items()]
        save_image(out_dir / 'composites' / f'{name}.png', results['model'])
        shown = [images[j] * (1 - m) + m] + [r.transpose(2, 0, 1) / 127.5 - 1
                                             for r in results.values()] + [images[j]]
        save_image(out_dir / 'grids' / f'{name}.png', grid([c[None] for c in shown]))
    return rows


def evaluate_dataset(args, model, state):
    """Dataset mode: every image with its seeded mask; metrics.csv/.txt, composites, grids."""
    cfg = state.get('config', model.cfg)
    data = args.data or validation_source(cfg)
    if data is None:
        raise ValueError('--data: the checkpoint was not trained on builtin data; pass --data')
    dataset = ImageDataset(data, cfg['image_size'], train=False)
    masks = masks_from_config({**cfg, 'mask_invert': args.mask_invert or cfg.get('mask_invert')},
                              args.mask_type, args.mask_dir, per_sample=True)
    n = len(dataset) if args.count is None else min(args.count, len(dataset))
    ckpt = Path(args.checkpoint)
    out_dir = Path(args.out_dir or ckpt.parent / f'test_{ckpt.stem}')
    for sub in ('composites', 'grids'):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    rows, skipped = [], []
    for start in range(0, n, args.batch_size):
        items = [dataset[i] for i in range(start, min(start + args.batch_size, n))]
        skipped += [p for item in items for p in item['skipped']]
        items = [item for item in items if not item['skipped']]  # unreadable: no substitute
        if items:
            rows += score_batch(args, model, dataset, items, masks, out_dir)
    methods = ['model'] + ([args.baseline] if args.baseline != 'none' else [])
    write_report(out_dir, rows, methods, dict(checkpoint=args.checkpoint, data=data,
                                              masks=args.mask_type or cfg['mask_type'],
                                              seed=args.seed, images=n - len(skipped),
                                              postprocess=args.postprocess))
    if skipped:
        print(f'skipped {len(skipped)} unreadable images, e.g. {skipped[0]}')
    return 0


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
    flags = ['image', 'mask', *user_inputs()]
    for flag in flags:
        if getattr(args, flag) and not Path(getattr(args, flag)).exists():
            raise FileNotFoundError(f'--{flag}: {getattr(args, flag)} does not exist')
    inpainter = Inpainter(model, strategy=args.strategy)
    folder = Path(args.image).is_dir()
    for path in list_images(args.image) if folder else [args.image]:
        mask_path = find_partner(args.mask, path)
        image, mask = read_image(path), read_mask(mask_path)
        given = {name: read_grey(find_partner(getattr(args, name), path, name))
                 for name in user_inputs() if getattr(args, name)}
        if image.shape[:2] != mask.shape:
            raise ValueError(f'--mask: {mask_path} is {mask.shape[1]}x{mask.shape[0]} but '
                             f'{path} is {image.shape[1]}x{image.shape[0]} (width x height)')
        if not mask.any():
            raise ValueError(f'--mask: {mask_path} marks no hole (white = hole, black = keep)')
        out = Path(args.output) / (Path(path).stem + '.png') if folder else Path(args.output)
        result = inpainter(image, mask, args.seed, **given)
        save_image(out, postprocess(args.postprocess, result, mask))
        print(f'{path} -> {out}')
    return 0


def main(argv=None):
    args = parse_args(argv)
    runtime.setup(args.device)
    if not Path(args.checkpoint).exists() and args.checkpoint == str(QUICKSTART):
        raise FileNotFoundError(f'--checkpoint: {QUICKSTART} does not exist yet; run '
                                '`python train.py` first or pass --checkpoint')
    model, state = load_model(args.checkpoint, args.model)
    if args.image:
        return inpaint_files(args, model)
    return evaluate_dataset(args, model, state)


if __name__ == '__main__':
    sys.exit(runtime.run_cli(main))
