"""Inpaints photos with an exported model through paddle.inference (or onnxruntime).

    python tools/infer.py --model_dir exported/RUN --image photo.jpg --mask mask.png --output o.png
    python tools/infer.py --model_dir exported/RUN --image photos/ --mask masks/ --output results/
    python tools/infer.py --model_dir exported/RUN --backend onnx --image p.jpg --mask m.png \\
        --output o.png
    python tools/infer.py --model_dir exported/RUN --image p.jpg --mask m.png --output o.png \\
        --compare checkpoints/RUN/latest.safetensors     # max |predictor - dygraph| on this photo

The folder is one written by tools/export.py. On CPU paddle.inference runs oneDNN kernels
(--no_onednn for Paddle's own), on a CUDA build of paddle the GPU. Photos of any size; masks white
= hole; --strategy as in test.py (inference/inpainter.py). --compare also runs the checkpoint's
dygraph model on the same padded input and prints the largest difference of every output.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import runtime  # noqa: E402
from inference import (STRATEGIES, ExportedModel, Inpainter, load_model,  # noqa: E402
                       pad_to_multiple)

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from data import list_images, read_image, read_mask, save_image  # noqa: E402


def compare(exported, checkpoint, image, mask):
    """{output name: max |exported - dygraph|} on one photo, padded to the size multiple."""
    model = load_model(checkpoint)[0]
    multiple = exported.SIZE_MULTIPLE
    x = pad_to_multiple(image, multiple, 'reflect')[0].transpose(2, 0, 1)[None]
    x = x.astype(np.float32) / 127.5 - 1.0
    m = pad_to_multiple(mask, multiple, 'constant')[0][None, None].astype(np.float32)
    with paddle.no_grad():
        eager = model(paddle.to_tensor(x), paddle.to_tensor(m))
    return {name: float(np.abs(value - eager[name].numpy()).max())
            for name, value in exported.outputs_for(x, m).items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model_dir', required=True, help='folder written by tools/export.py')
    p.add_argument('--image', required=True, help='a photo or a folder of photos')
    p.add_argument('--mask', required=True, help='its mask (white = hole) or a folder of masks')
    p.add_argument('--output', required=True, help='output file (a folder for a folder)')
    p.add_argument('--strategy', choices=STRATEGIES, default='auto')
    p.add_argument('--backend', choices=['paddle', 'onnx'], default='paddle')
    p.add_argument('--device', default='auto', help="'auto', 'cpu' or 'gpu[:N]'")
    p.add_argument('--threads', type=int, default=None, help='CPU threads (default all cores)')
    p.add_argument('--no_onednn', action='store_true', help="Paddle's CPU kernels, not oneDNN")
    p.add_argument('--compare', metavar='CHECKPOINT',
                   help='also run this checkpoint in dygraph and print the largest differences')
    args = p.parse_args(argv)
    runtime.setup('cpu', args.threads)  # dygraph (for --compare) stays on the CPU
    for flag in ('model_dir', 'image', 'mask'):
        if not Path(getattr(args, flag)).exists():
            raise FileNotFoundError(f'--{flag}: {getattr(args, flag)} does not exist')
    exported = ExportedModel(args.model_dir, args.backend, args.device, args.threads,
                             onednn=not args.no_onednn)
    inpainter = Inpainter(exported, strategy=args.strategy)
    folder = Path(args.image).is_dir()
    for path in list_images(args.image) if folder else [args.image]:
        mask_path = Path(args.mask)
        if folder:  # the mask of the same name, any image extension
            found = sorted(mask_path.glob(Path(path).stem + '.*'))
            if not found:
                raise FileNotFoundError(f'--mask: no file named {Path(path).stem}.* in {mask_path}')
            mask_path = found[0]
        image, mask = read_image(path), read_mask(mask_path)
        out = Path(args.output) / (Path(path).stem + '.png') if folder else Path(args.output)
        result, info = inpainter.run(image, mask)
        save_image(out, result)
        print(f"{path} -> {out} ({info['strategy']}, {len(info['windows'])} window(s))")
        if args.compare:
            diffs = compare(exported, args.compare, image, mask)
            print('max |exported - dygraph|: ' + ' '.join(f'{k} {v:.3g}' for k, v in diffs.items()))
    return 0


if __name__ == '__main__':
    sys.exit(runtime.run_cli(main))
