"""Frozen feature networks for losses (and, later, metrics): ImageNet VGG16/VGG19 features and
the ADE20k ResNet50-dilated segmentation encoder of LaMa's high-receptive-field perceptual loss.

A loss computed on a random network silently trains a different model, and nothing can be
downloaded at run time, so the weights always come from a local file named in the config
(``vgg_weights``, ``resnet_pl_weights``). This module holds the networks only;
``weights.features.load_feature_weights`` reads the files (torchvision ``vgg16-397923af.pth`` /
``vgg19-dcbb9e9d.pth``, MIT CSAIL's ``encoder_epoch_20.pth``, a Paddle ``.pdparams`` with the
same keys, or the ``.safetensors`` that tools/convert_vgg.py writes) and a missing file is an
error that says where to get one.

VGG layer names follow torchvision's ``features`` indices; outputs are named ``conv{b}_{k}``,
``relu{b}_{k}`` and ``pool{b}`` (block b, layer k), e.g. PConv's pool1..pool3. The ResNet's
outputs are its four stages ``layer1`` ... ``layer4``.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

BLOCKS = {'vgg16': (2, 2, 3, 3, 3), 'vgg19': (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)
DOWNLOADS = {'vgg16': 'https://download.pytorch.org/models/vgg16-397923af.pth',
             'vgg19': 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth',
             'resnet50dilated': 'http://sceneparsing.csail.mit.edu/model/pytorch/'
                                'ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth'}
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


class Bottleneck(nn.Layer):
    """ResNet bottleneck: 1x1, 3x3 (stride, dilation), 1x1 (x4 channels), BN + ReLU, residual."""

    def __init__(self, cin, planes, stride=1, dilation=1, downsample=False):
        super().__init__()
        self.conv1 = nn.Conv2D(cin, planes, 1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(planes)
        self.conv2 = nn.Conv2D(planes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias_attr=False)
        self.bn2 = nn.BatchNorm2D(planes)
        self.conv3 = nn.Conv2D(planes, 4 * planes, 1, bias_attr=False)
        self.bn3 = nn.BatchNorm2D(4 * planes)
        self.downsample = nn.Sequential(nn.Conv2D(cin, 4 * planes, 1, stride, bias_attr=False),
                                        nn.BatchNorm2D(4 * planes)) if downsample else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


# stage -> (planes, blocks, stride, dilation of the first block's 3x3, of the others)
RESNET50_DILATED = {'layer1': (64, 3, 1, 1, 1), 'layer2': (128, 4, 2, 1, 1),
                    'layer3': (256, 6, 1, 1, 2), 'layer4': (512, 3, 1, 2, 4)}


class ResNet50Dilated(nn.Layer):
    """The ADE20k segmentation encoder LaMa's perceptual loss uses (MIT CSAIL
    semantic-segmentation-pytorch, ``ResnetDilated(resnet50, dilate_scale=8)``; in LaMa
    ``models/ade20k/base.py``): ResNet50 with a deep stem (three 3x3 convs, 64-64-128, the first
    stride 2, then a 3x3/2 max-pool) whose last two stages trade their stride for dilation 2
    and 4 (output stride 8). 23,631,808 parameters, names as the published encoder's.

    ``forward`` returns the requested stage outputs (``layer1`` ... ``layer4``).
    """

    def __init__(self, outputs=('layer1', 'layer2', 'layer3', 'layer4')):
        super().__init__()
        unknown = [o for o in outputs if o not in RESNET50_DILATED]
        if unknown or not outputs:
            raise ValueError(f'resnet50dilated: unknown outputs {unknown or outputs} '
                             f'(expected some of {", ".join(RESNET50_DILATED)})')
        self.outputs = tuple(outputs)
        for i, (cin, cout, stride) in enumerate(((3, 64, 2), (64, 64, 1), (64, 128, 1)), 1):
            setattr(self, f'conv{i}', nn.Conv2D(cin, cout, 3, stride, 1, bias_attr=False))
            setattr(self, f'bn{i}', nn.BatchNorm2D(cout))
        order = list(RESNET50_DILATED)
        self.stages = order[:max(order.index(o) for o in outputs) + 1]  # up to the deepest
        cin = 128
        for name in self.stages:
            planes, blocks, stride, first, rest = RESNET50_DILATED[name]
            layers = [Bottleneck(cin, planes, stride, first, downsample=True)]
            layers += [Bottleneck(4 * planes, planes, 1, rest) for _ in range(blocks - 1)]
            setattr(self, name, nn.Sequential(*layers))
            cin = 4 * planes

    def forward(self, x):
        for i in (1, 2, 3):
            x = F.relu(getattr(self, f'bn{i}')(getattr(self, f'conv{i}')(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        found = {}
        for name in self.stages:
            x = getattr(self, name)(x)
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


def paddle_name(torch_name):
    """A torch BatchNorm buffer name in Paddle's spelling (``running_mean`` -> ``_mean``)."""
    return torch_name.replace('.running_mean', '._mean').replace('.running_var', '._variance')


def resnet_state(state):
    """The encoder's tensors of a ResNet50-dilated state dict, Paddle-named: the published
    ``encoder_epoch_20.pth`` (names ``conv1.weight`` ... ``layer4.2.bn3.running_var``) or any
    file holding it under a prefix (LaMa's ``best.ckpt``: ``loss_resnet_pl.impl.``)."""
    anchor = 'layer4.2.bn3.running_var'
    prefixes = sorted(k[:-len(anchor)] for k in state if k.endswith(anchor)
                      and (k[:-len(anchor)] == '' or k[:-len(anchor)].endswith('.')))
    prefix = prefixes[0] if prefixes else ''
    return {paddle_name(k[len(prefix):]): v for k, v in state.items()
            if k.startswith(prefix) and not k.endswith('num_batches_tracked')}


# arch -> (network(outputs), the file's tensors keyed like the network's, what the file is)
ARCHS = {
    'vgg16': (lambda outputs: VGGFeatures('vgg16', outputs), features_state,
              'ImageNet VGG16 weights'),
    'vgg19': (lambda outputs: VGGFeatures('vgg19', outputs), features_state,
              'ImageNet VGG19 weights'),
    'resnet50dilated': (ResNet50Dilated, resnet_state,
                        'the ADE20k ResNet50-dilated segmentation encoder'),
}


class FeatureNet:
    """Frozen features of [-1, 1] images for a loss, kept out of the model's state.

    A plain object rather than a sub-layer: the network is never saved in checkpoints, never
    given to an optimizer, and a model that is only used for inference never needs its file.
    ``load`` takes the tensors of the file (``weights.features.load_feature_weights`` reads it).

    Args:
        path: the weights file (config key ``key``).
        arch: 'vgg16', 'vgg19' or 'resnet50dilated'.
        outputs: feature names to return, in order.
        normalize: 'imagenet' feeds ((x + 1) / 2 - mean) / std (torchvision convention);
            'unit' feeds (x + 1) / 2 (LBAM's official code uses [0, 1] without normalising).
        key: the config key (and train.py flag) naming the file.
        uses: the config keys weighting the losses computed on it: when all are 0, the file is
            not needed.
    """

    def __init__(self, path, arch='vgg16', outputs=('pool1', 'pool2', 'pool3'),
                 normalize='imagenet', key='vgg_weights', uses=('perceptual_alpha', 'style_alpha')):
        if normalize not in ('imagenet', 'unit'):
            raise ValueError(f"vgg: normalize must be 'imagenet' or 'unit', got {normalize!r}")
        if arch not in ARCHS:
            raise ValueError(f"{key}: unknown arch {arch!r} (expected one of {', '.join(ARCHS)})")
        ARCHS[arch][0](outputs)  # unknown output names fail here, at construction
        self.path, self.arch, self.outputs, self.normalize = path, arch, tuple(outputs), normalize
        self.KEY, self.uses = key, tuple(uses)
        self.download, self.about = DOWNLOADS[arch], ARCHS[arch][2]
        self.net = None

    def load(self, state, source=None):
        """Loads a (torch/Paddle) state dict of the network; a wrong file is a one-line error."""
        build, select, _ = ARCHS[self.arch]
        net = build(self.outputs)
        state, source = select(state), source or self.KEY
        mine = net.state_dict()
        missing = [k for k in mine if k not in state]
        if missing:
            raise ValueError(f'{self.KEY}: {source} lacks {missing[0]} (and {len(missing) - 1} '
                             f'more); expected {self.about} (a torch/Paddle {self.arch} state '
                             'dict)')
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
            # float32 constants, as the references' tensors hold them (visible in float64 runs)
            mean = paddle.to_tensor(np.float32(IMAGENET_MEAN)).astype(x.dtype).reshape([1, 3, 1, 1])
            std = paddle.to_tensor(np.float32(IMAGENET_STD)).astype(x.dtype).reshape([1, 3, 1, 1])
            x = (x - mean) / std
        return self.net(x)
