"""The official LaMa weights (advimman/lama ``best.ckpt`` of big-lama / lama-fourier, and
IOPaint's TorchScript ``big-lama.pt``) -> our LaMa (models/lama.py)."""
import re

import numpy as np

# Parts of the official training module that are not LaMa's networks: the frozen perceptual
# encoders and the evaluators' metric networks (Inception for FID, LPIPS), skipped by name.
SKIPPED = ('loss_resnet_pl.', 'loss_pl.', 'val_evaluator.', 'test_evaluator.',
           'extra_evaluators.')
# Wrappers around the training module: none (best.ckpt's state_dict), IOPaint's traced ``model.``.
WRAPPERS = ('model.', 'module.')

_FFC_PARTS = [  # inside one official FFC_BN_ACT -> ours (the ``ffc.`` level is folded away)
    (r'ffc\.(convl2l|convl2g|convg2l)\.', r'\1.'),
    (r'ffc\.convg2g\.conv1\.0\.', 'convg2g.conv1.'), (r'ffc\.convg2g\.conv1\.1\.', 'convg2g.bn1.'),
    (r'ffc\.convg2g\.fu\.conv_layer\.', 'convg2g.fu.conv.'),
    (r'ffc\.convg2g\.fu\.bn\.', 'convg2g.fu.bn.'), (r'ffc\.convg2g\.conv2\.', 'convg2g.conv2.'),
    (r'(bn_l|bn_g)\.', r'\1.'),
]


def _bn(name):
    return name.replace('.running_mean', '._mean').replace('.running_var', '._variance')


def _ffc(rest, where):
    for pattern, repl in _FFC_PARTS:
        new, hits = re.subn('^' + pattern, repl, rest)
        if hits:
            return new
    raise ValueError(f'lama: unexpected tensor {where}{rest!r} (expected official FFC weights)')


def _generator_key(index, rest, n_blocks):
    """Official ``generator.model.<index>.<rest>`` -> ours, for 3 downsamplings."""
    up = index - (n_blocks + 6)  # model: pad, head, 3 down, blocks, concat, 3 x (convT, BN, ReLU)
    if index == 1:
        return 'head.' + _ffc(rest, 'model.1.')
    if 2 <= index <= 4:
        return f'down.{index - 2}.' + _ffc(rest, f'model.{index}.')
    if 5 <= index < 5 + n_blocks:
        conv, _, tail = rest.partition('.')
        if conv not in ('conv1', 'conv2'):
            raise ValueError(f'lama: unexpected tensor model.{index}.{rest!r} in a ResNet block')
        return f'blocks.{index - 5}.{conv}.' + _ffc(tail, f'model.{index}.{conv}.')
    if 0 <= up < 9 and up % 3 in (0, 1):
        return f'up.{up // 3}.' + ('conv.' if up % 3 == 0 else 'bn.') + rest
    if up == 10:
        return 'out.' + rest
    raise ValueError(f'lama: unexpected generator layer model.{index} ({rest}) for {n_blocks} '
                     'ResNet blocks')


def _split(state):
    """{'generator': {(index, rest): key}, 'discriminator': ...} of the input's tensor names."""
    parts = {'generator': {}, 'discriminator': {}}
    for key in list(state.keys()):
        name = key
        for wrapper in WRAPPERS:
            if name.startswith(wrapper) and not name.startswith(SKIPPED):
                name = name[len(wrapper):]
        if name.startswith(SKIPPED):
            state.ignore(key)
            continue
        g = re.match(r'^generator\.model\.(\d+)\.(.+)$', name)
        d = re.match(r'^discriminator\.model(\d+)\.([01])\.(.+)$', name)
        if g:
            parts['generator'][(int(g.group(1)), g.group(2))] = key
        elif d:
            parts['discriminator'][(int(d.group(1)), d.group(2) + '.' + d.group(3))] = key
        else:
            raise ValueError(f'lama: unexpected tensor {key!r} (expected generator.model.* and '
                             'discriminator.model*.* of an official LaMa checkpoint)')
    return parts


def convert_lama(state):
    """An official LaMa checkpoint: ``generator.model.*`` [+ ``discriminator.model*.*``].

    best.ckpt (PyTorch Lightning; weights.read takes its ``state_dict`` without Lightning or
    OmegaConf) holds the whole training module; the generator and the critic convert, the
    perceptual encoder and the evaluators' networks are skipped by name (``SKIPPED``), and
    ``num_batches_tracked`` counters are dropped. The number of ResNet blocks (9 LaMa-Fourier,
    18 Big-LaMa) and the widths are read off the shapes.

    Returns:
        ({our state_dict key: array}, config overrides: n_blocks, ngf, d_ndf, d_layers).
    """
    parts = _split(state)
    generator = parts['generator']
    if not generator:
        raise ValueError('lama: no generator.model.* tensors found (expected an official LaMa '
                         'best.ckpt, e.g. big-lama/models/best.ckpt)')
    n_blocks = len({i for i, rest in generator if rest.startswith('conv1.ffc.')})
    params, config = {}, {'n_blocks': n_blocks}
    for (index, rest), key in generator.items():
        value = state[key]
        if rest.endswith('num_batches_tracked'):
            continue
        params['netG.' + _bn(_generator_key(index, rest, n_blocks))] = np.asarray(value, np.float32)
    config['ngf'] = int(params['netG.head.convl2l.weight'].shape[0])
    discriminator = parts['discriminator']
    if discriminator:
        layers = max(i for i, _ in discriminator) - 1
        for (index, rest), key in discriminator.items():
            value = state[key]
            if rest.endswith('num_batches_tracked'):
                continue
            layer, _, tail = rest.partition('.')
            name = f'conv{index}.{tail}' if layer == '0' else f'bn{index}.{tail}'
            params['netD.' + _bn(name)] = np.asarray(value, np.float32)
        config.update(d_layers=layers, d_ndf=int(params['netD.conv0.weight'].shape[0]))
    return params, config
