"""Converts ImageNet VGG16/VGG19 weights to a code-free .safetensors file for the VGG losses.

    python tools/convert_vgg.py vgg16-397923af.pth checkpoints/vgg16.safetensors

The input may be a torchvision state dict (.pth, read without torch and without running pickled
code) or a Paddle .pdparams with the same ``features.N`` keys. Only the convolutional features are
kept (the losses never use the classifier), so the output is about 60 MB instead of 528 MB.
models/vgg.py reads the original files too; converting just makes a smaller, safer copy.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import runtime  # noqa: E402
from models.vgg import BLOCKS, VGGFeatures, layer_names, read_weights  # noqa: E402


def convert(src, dst, arch=None):
    """Writes the ``features`` tensors of ``src`` to ``dst``; returns the detected arch."""
    import numpy as np
    from safetensors.numpy import save_file
    if not Path(src).is_file():
        raise FileNotFoundError(f'{src}: no such weights file')
    state = read_weights(src)
    if arch is None:  # VGG16 has 13 convolutions, VGG19 16
        convs = sum(k.endswith('.weight') for k in state)
        arch = {13: 'vgg16', 16: 'vgg19'}.get(convs)
        if arch is None:
            raise ValueError(f'{src}: found {convs} feature convolutions; expected a VGG16 (13) '
                             'or VGG19 (16) state dict')
    names = VGGFeatures(arch, (layer_names(arch)[-1],)).state_dict()
    missing = [k for k in names if k not in state]
    if missing:
        raise ValueError(f'{src}: lacks {missing[0]}; expected a torchvision/Paddle {arch}')
    tmp = Path(str(dst) + '.tmp')
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(state[k], np.float32) for k in names}, str(tmp),
              metadata={'arch': arch, 'source': Path(src).name})
    tmp.replace(dst)
    return arch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('input', help='torchvision vgg16/vgg19 .pth or Paddle .pdparams')
    p.add_argument('output', help='.safetensors to write')
    p.add_argument('--arch', choices=sorted(BLOCKS), help='default: detected from the file')
    args = p.parse_args(argv)
    arch = convert(args.input, args.output, args.arch)
    print(f'wrote {args.output} ({arch} features)')
    return 0


if __name__ == '__main__':
    sys.exit(runtime.run_cli(main))
