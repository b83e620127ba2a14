"""Frozen feature networks for losses (and, later, metrics): ImageNet VGG16/VGG19 features.

A loss computed on a random VGG silently trains a different model, and nothing can be downloaded
at run time, so the weights always come from a local file named in the config
(``vgg_weights``). This module holds the networks only; ``weights.features.load_feature_weights``
reads the files (torchvision ``vgg16-397923af.pth`` / ``vgg19-dcbb9e9d.pth``, a Paddle
``.pdparams`` with the same keys, or the ``.safetensors`` that tools/convert_vgg.py writes) and a
missing file is an error that says where to get one.

Layer names follow torchvision's ``features`` indices; outputs are named ``conv{b}_{k}``,
``relu{b}_{k}`` and ``pool{b}`` (block b, layer k), e.g. PConv's pool1..pool3.
"""
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


def features_state(state):
    """The ``features.N.*`` tensors of a VGG state dict, wrappers stripped (DataParallel's
    ``module.``, whole-model prefixes such as ``vgg.``); the classifier is dropped."""
    out = {}
    for key, value in state.items():
        at = key.find('features.')
        if at >= 0:
            out[key[at:]] = value
    return out


class FeatureNet:
    """Frozen VGG features of [-1, 1] images for a loss, kept out of the model's state.

    A plain object rather than a sub-layer: the VGG is never saved in checkpoints, never given to
    an optimizer, and a model that is only used for inference never needs its file. ``load``
    takes the tensors of the file (``weights.features.load_feature_weights`` reads it).

    Args:
        path: the weights file (config key ``vgg_weights``).
        arch: 'vgg16' or 'vgg19'.
        outputs: feature names to return, in order.
        normalize: 'imagenet' feeds ((x + 1) / 2 - mean) / std (torchvision convention);
            'unit' feeds (x + 1) / 2 (LBAM's official code uses [0, 1] without normalising).
    """

    KEY = 'vgg_weights'

    def __init__(self, path, arch='vgg16', outputs=('pool1', 'pool2', 'pool3'),
                 normalize='imagenet'):
        if normalize not in ('imagenet', 'unit'):
            raise ValueError(f"vgg: normalize must be 'imagenet' or 'unit', got {normalize!r}")
        layer_names(arch)
        self.path, self.arch, self.outputs, self.normalize = path, arch, tuple(outputs), normalize
        self.download = DOWNLOADS[arch]
        self.net = None

    def load(self, state, source='vgg_weights'):
        """Loads a (torchvision/Paddle) VGG state dict; a wrong file is a one-line error."""
        net = VGGFeatures(self.arch, self.outputs)
        state = features_state(state)
        mine = net.state_dict()
        missing = [k for k in mine if k not in state]
        if missing:
            raise ValueError(f'{self.KEY}: {source} lacks {missing[0]} (and {len(missing) - 1} '
                             f'more); expected a torchvision/Paddle {self.arch} state dict')
        for key, param in mine.items():
            value = np.asarray(state[key], np.float32)
            if list(value.shape) != list(param.shape):
                raise ValueError(f'{self.KEY}: {source}: {key} has shape {list(value.shape)}, '
                                 f'{self.arch} needs {list(param.shape)} (is it a {self.arch} '
                                 'file?)')
            param.set_value(value)
        net.eval()
        for p in net.parameters():
            p.stop_gradient = True
        self.net = net
        return self

    def __call__(self, x):
        if self.net is None:
            raise RuntimeError(f'{self.KEY}: the {self.arch.upper()} features are not loaded; '
                               'weights.features.load_feature_weights(model) reads them from '
                               f'{self.path} (train.py does this before training)')
        x = (x + 1.0) * 0.5
        if self.normalize == 'imagenet':
            mean = paddle.to_tensor(IMAGENET_MEAN, dtype=x.dtype).reshape([1, 3, 1, 1])
            std = paddle.to_tensor(IMAGENET_STD, dtype=x.dtype).reshape([1, 3, 1, 1])
            x = (x - mean) / std
        return self.net(x)
