"""Files of the frozen feature networks (models/features.py): reading them into a model, and
writing the compact features-only copy that tools/convert_vgg.py makes."""
from pathlib import Path

import numpy as np

from models.features import BLOCKS, FeatureNet, VGGFeatures, features_state, layer_names
from weights.read import read_weights


def read_feature_file(net):
    """The tensors of ``net.path`` (a FeatureNet); a missing file says where to get one."""
    path = net.path
    if not path or not Path(str(path)).is_file():
        raise FileNotFoundError(
            f'{net.KEY}: {path or "(not set)"} not found; the perceptual losses need '
            f'{net.about}: download {net.download} (or a Paddle {net.arch}.pdparams with the '
            f'same keys) and pass --{net.KEY} PATH')
    return read_weights(path, net.KEY)


_LOADED = {}  # (file, size, mtime, arch, outputs) -> a loaded FeatureNet (frozen: shareable)


def load_feature_weights(model):
    """Loads every FeatureNet that ``model`` holds (its VGG, LaMa's ResNet) from its file,
    before training.

    A network whose losses are all switched off (the config keys in its ``uses`` are 0) is
    skipped: then training needs no file. A file already loaded in this process (unchanged on
    disk) is not read again: the frozen network is shared. Returns the FeatureNets loaded.
    """
    cfg = model.cfg
    nets = [value for value in vars(model).values() if isinstance(value, FeatureNet)
            and any(cfg.get(key, 1) for key in value.uses)]
    for net in nets:
        if net.net is not None:
            continue
        path = Path(str(net.path or ''))
        stat = path.stat() if net.path and path.is_file() else None
        key = stat and (str(path.resolve()), stat.st_size, stat.st_mtime_ns, net.arch,
                        net.outputs)
        if key in _LOADED:
            net.net = _LOADED[key].net
            continue
        net.load(read_feature_file(net), str(net.path))  # a missing file fails, saying where
        while len(_LOADED) >= 3:  # a VGG is 60 MB, the ResNet 95 MB: keep the last three
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = net
    return nets


def write_features_file(src, dst, arch=None):
    """Writes the ``features`` tensors of a VGG file ``src`` to ``dst`` (.safetensors), dropping
    the classifier (60 MB instead of 528 MB for VGG16); returns the arch (detected if None)."""
    from safetensors.numpy import save_file
    if not Path(src).is_file():
        raise FileNotFoundError(f'{src}: no such weights file')
    state = features_state(read_weights(src, str(src)))
    if arch is None:  # VGG16 has 13 convolutions, VGG19 16
        convs = sum(k.endswith('.weight') for k in state)
        arch = {13: 'vgg16', 16: 'vgg19'}.get(convs)
        if arch is None:
            raise ValueError(f'{src}: found {convs} feature convolutions; expected a VGG16 (13) '
                             'or VGG19 (16) state dict')
    if arch not in BLOCKS:
        raise ValueError(f'--arch: unknown {arch!r}; expected one of {", ".join(BLOCKS)}')
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
