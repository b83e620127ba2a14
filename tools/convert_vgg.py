"""Converts ImageNet VGG16/VGG19 weights to a code-free .safetensors file for the VGG losses.

    python tools/convert_vgg.py vgg16-397923af.pth checkpoints/vgg16.safetensors

The input may be a torchvision state dict (.pth, read without torch and without running pickled
code) or a Paddle .pdparams with the same ``features.N`` keys. Only the convolutional features are
kept (the losses never use the classifier), so the output is about 60 MB instead of 528 MB.
The losses read the original files too; converting just makes a smaller copy.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import runtime  # noqa: E402
from models.features import BLOCKS  # noqa: E402
from weights.features import write_features_file  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('input', help='torchvision vgg16/vgg19 .pth or Paddle .pdparams')
    p.add_argument('output', help='.safetensors to write')
    p.add_argument('--arch', choices=sorted(BLOCKS), help='default: detected from the file')
    args = p.parse_args(argv)
    arch = write_features_file(args.input, args.output, args.arch)
    print(f'wrote {args.output} ({arch} features)')
    return 0


if __name__ == '__main__':
    sys.exit(runtime.run_cli(main))
