"""Converts published inpainting weights into a Deepfill-Paddle checkpoint (.safetensors).

    python tools/convert_weights.py --list
    python tools/convert_weights.py --source nipponjo_v2 --input states_tf_places2.pth \\
        --output checkpoints/deepfill_v2_places2_nipponjo.safetensors
    python tools/convert_weights.py --source daa233_v1 --input gen_00430000.pt \\
        --input dis_00430000.pt --output checkpoints/deepfill_v1_imagenet_daa233.safetensors
    python test.py --checkpoint checkpoints/deepfill_v2_places2_nipponjo.safetensors \\
        --image photo.png --mask mask.png --output result.png

torch is not needed: .pth/.pt files are read without running their pickled code. The checkpoint
holds the model name, its full config (with the switches under which our network computes what
the source computes), iteration 0 and the input files' names and SHA-256; test.py and
``inference.Inpainter.from_checkpoint`` load it directly. weights/convert/__init__.py describes the
checks and holds the table of sources (``SOURCES``).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import runtime  # noqa: E402
from models.base import count_parameters  # noqa: E402
from weights.convert import SOURCES, convert_files  # noqa: E402


def list_sources():
    for name, source in sorted(SOURCES.items()):
        print(f'{name}  ->  {source.model}\n    {source.about}\n    download: {source.download}'
              f'\n    licence: {source.licence}')
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--list', action='store_true', help='list the weight sources and exit')
    p.add_argument('--source', help='weight source (see --list), e.g. nipponjo_v2')
    p.add_argument('--input', action='append', default=[],
                   help='published weights file; repeat for a separate critic file')
    p.add_argument('--output', help='checkpoint to write (default: checkpoints/SOURCE.safetensors)')
    args = p.parse_args(argv)
    if args.list:
        return list_sources()
    if not args.source or not args.input:
        raise ValueError('--source and --input are required (or --list to see the sources)')
    output = args.output or str(Path('checkpoints') / f'{args.source}.safetensors')
    runtime.setup('cpu')
    model, info = convert_files(args.source, args.input, output)
    switches = ' '.join(f'{k}={v}' for k, v in sorted(info['switches'].items()))
    print(f"wrote {output}: {model.NAME} from {args.source} ({', '.join(args.input)})")
    print(f'  generator parameters {count_parameters(model.netG):,}; config {switches}')
    if model.netD is not None:
        state = 'freshly initialised (not in the input)' if 'netD' in info['initialised'] \
            else f'converted, {count_parameters(model.netD):,} parameters'
        print(f'  critic: {state}')
    print(f'  try: python test.py --checkpoint {output} --image photo.png --mask mask.png '
          '--output result.png')
    return 0


if __name__ == '__main__':
    sys.exit(runtime.run_cli(main))
