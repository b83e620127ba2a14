"""Frozen ImageNet VGG16/VGG19 features for perceptual and style losses, from a local file.

No weights can be downloaded at run time, and a loss computed on a random VGG silently trains a
different model, so a missing file is an error that says where to get one. Accepted files:

- torchvision state dicts (``vgg16-397923af.pth``, ``vgg19-dcbb9e9d.pth``), read by
  ``models.torchfile`` without torch and without unpickling code;
- Paddle ``.pdparams`` with the same ``features.N.weight`` keys (``paddle.vision.models.vgg16``),
  read the same way;
- ``.safetensors`` / ``.npz`` with those keys (``tools/convert_vgg.py`` writes one).

Layer names follow torchvision's ``features`` indices; outputs are named ``conv{b}_{k}``,
``relu{b}_{k}`` and ``pool{b}`` (block b, layer k), e.g. PConv's pool1..pool3.
"""
import os

import numpy as np
import paddle
import paddle.nn as nn

BLOCKS = {'vgg16': (2, 2, 3, 3, 3), 'vgg19': (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)
DOWNLOADS = {'vgg16': 'https://download.pytorch.org/models/vgg16-397923af.pth',
             'vgg19': 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth'}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def layer_names(arch):
    """torchvision ``features`` order: conv, relu per layer, pool after each block."""
    if arch not in BLOCKS:
        raise ValueError(f"vgg: unknown arch {arch!r} (expected one of {', '.join(BLOCKS)})")
    names = []
    for b, count in enumerate(BLOCKS[arch], 1):
        for k in range(1, count + 1):
            names += [f'conv{b}_{k}', f'relu{b}_{k}']
        names.append(f'pool{b}')
    return names


class VGGFeatures(nn.Layer):
    """torchvision's VGG ``features`` up to the deepest requested output."""

    def __init__(self, arch='vgg16', outputs=('pool1', 'pool2', 'pool3')):
        super().__init__()
        names = layer_names(arch)
        unknown = [o for o in outputs if o not in names]
        if unknown or not outputs:
            raise ValueError(f'vgg: unknown outputs {unknown or outputs} for {arch}')
        self.names = names[:max(names.index(o) for o in outputs) + 1]
        self.outputs = tuple(outputs)
        layers, channels = [], 3
        for name in self.names:
            if name.startswith('conv'):
                width = WIDTHS[int(name[4]) - 1]
                layers.append(nn.Conv2D(channels, width, 3, padding=1))
                channels = width
            elif name.startswith('relu'):
                layers.append(nn.ReLU())
            else:
                layers.append(nn.MaxPool2D(2, 2))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        found = {}
        for name, layer in zip(self.names, self.features):
            x = layer(x)
            if name in self.outputs:
                found[name] = x
        return [found[name] for name in self.outputs]


def read_weights(path):
    """{'features.N.weight': array, ...} from a .pth/.pt/.pdparams/.safetensors/.npz file."""
    path = str(path)
    if path.endswith('.safetensors'):
        from safetensors.numpy import load_file
        state = load_file(path)
    elif path.endswith('.npz'):
        with np.load(path) as data:
            state = {k: data[k] for k in data.files}
    else:
        from models import torchfile
        state = torchfile.state_dict(path)
    # common wrappers: DataParallel 'module.', whole-model prefixes such as 'vgg.'
    out = {}
    for key, value in state.items():
        at = key.find('features.')
        if at >= 0:
            out[key[at:]] = value
    return out


def load_vgg(path, arch='vgg16', outputs=('pool1', 'pool2', 'pool3')):
    """A frozen ``VGGFeatures`` in eval mode with ImageNet weights from ``path``."""
    if not path or not os.path.isfile(str(path)):
        raise FileNotFoundError(
            f'vgg_weights: {path or "(not set)"} not found; the perceptual and style losses need '
            f'ImageNet {arch.upper()} weights: download {DOWNLOADS[arch]} (or a Paddle '
            f'{arch}.pdparams) and pass --vgg_weights PATH')
    net = VGGFeatures(arch, outputs)
    state = read_weights(path)
    mine = net.state_dict()
    missing = [k for k in mine if k not in state]
    if missing:
        raise ValueError(f'vgg_weights: {path} lacks {missing[0]} (and {len(missing) - 1} more); '
                         f'expected a torchvision/Paddle {arch} state dict')
    for key, param in mine.items():
        value = np.asarray(state[key], np.float32)
        if list(value.shape) != list(param.shape):
            raise ValueError(f'vgg_weights: {path}: {key} has shape {list(value.shape)}, '
                             f'{arch} needs {list(param.shape)} (is it a {arch} file?)')
        param.set_value(value)
    net.eval()
    for p in net.parameters():
        p.stop_gradient = True
    return net


class FeatureNet:
    """Lazily loaded frozen VGG features of [-1, 1] images, kept out of the model's state.

    A plain object rather than a sub-layer: the VGG is never saved in checkpoints, never given to
    an optimizer, and a model that is only used for inference never needs the file.

    Args:
        path: weights file (see module docstring).
        arch: 'vgg16' or 'vgg19'.
        outputs: feature names to return, in order.
        normalize: 'imagenet' feeds ((x + 1) / 2 - mean) / std (torchvision convention);
            'unit' feeds (x + 1) / 2 (LBAM's official code uses [0, 1] without normalising).
    """

    def __init__(self, path, arch='vgg16', outputs=('pool1', 'pool2', 'pool3'),
                 normalize='imagenet'):
        if normalize not in ('imagenet', 'unit'):
            raise ValueError(f"vgg: normalize must be 'imagenet' or 'unit', got {normalize!r}")
        layer_names(arch)
        self.path, self.arch, self.outputs, self.normalize = path, arch, tuple(outputs), normalize
        self.net = None

    def load(self):
        """Loads the weights now (errors early); later calls reuse them."""
        if self.net is None:
            self.net = load_vgg(self.path, self.arch, self.outputs)
        return self.net

    def __call__(self, x):
        self.load()
        x = (x + 1.0) * 0.5
        if self.normalize == 'imagenet':
            mean = paddle.to_tensor(IMAGENET_MEAN, dtype=x.dtype).reshape([1, 3, 1, 1])
            std = paddle.to_tensor(IMAGENET_STD, dtype=x.dtype).reshape([1, 3, 1, 1])
            x = (x - mean) / std
        return self.net(x)
