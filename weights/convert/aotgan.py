"""AOT-GAN weights (the official PyTorch release and PaddleGAN's port) -> our AOTGAN
(models/aotgan.py); both keep the official module paths and Paddle's conv layout."""
import re

import numpy as np

from models.aotgan import DEFAULTS


_G_KEYS = [  # official / PaddleGAN module path -> ours (same Conv2D layout in both frameworks)
    (r'encoder\.1\.', 'enc1.'), (r'encoder\.3\.', 'enc2.'), (r'encoder\.5\.', 'enc3.'),
    (r'middle\.(\d+)\.(block\d\d|fuse|gate)\.1\.', r'middle.\1.\2.'),
    (r'decoder\.0\.conv\.', 'dec1.'), (r'decoder\.2\.conv\.', 'dec2.'), (r'decoder\.4\.', 'dec3.'),
]
_D_KEYS = [(r'conv\.([0246])\.', lambda m: f'conv{int(m.group(1)) // 2 + 1}.'),
           (r'conv\.8\.', 'conv5.')]
_PREFIXES = ('module.', 'netG.', 'net_gen.', 'generator.', 'netD.', 'discriminator.')


def _rename(key, table):
    for pattern, repl in table:
        new, hits = re.subn('^' + pattern, repl, key)
        if hits:
            return new
    return None


def convert_aotgan(state):
    """Official-layout AOT-GAN weights (the official ``G0000000.pt`` [+ ``D0000000.pt``] and
    PaddleGAN's ``AotGan_g.pdparams`` alike).

    Both keep the official module paths (``encoder.1.weight``, ``middle.0.block00.1.weight``,
    ``conv.0.weight_orig``, ...) and the conv layout [out, in, kh, kw], which Paddle shares;
    spectral-norm ``u`` and ``v`` are carried over. Generator and critic keys may come in one
    dict, prefixed with ``netG.``/``netD.``/``net_gen.`` (PaddleGAN files) or ``module.``.

    Returns:
        ({our state_dict key: array}, config overrides: cnum, block_num, d_cnum).
    """
    params, unknown = {}, []
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        g, d = _rename(key, _G_KEYS), _rename(key, _D_KEYS)
        if g is not None:
            params['netG.' + g] = np.asarray(value, np.float32)
        elif d is not None:
            params['netD.' + d] = np.asarray(value, np.float32)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'aotgan: {len(unknown)} unexpected keys such as {unknown[0]!r} '
                         '(expected official AOT-GAN generator/discriminator weights)')
    if not params:
        raise ValueError('aotgan: no AOT-GAN weights found (expected encoder.*, middle.*, '
                         'decoder.* and conv.* keys, as the official G*.pt / D*.pt)')
    config = {}
    if 'netG.enc1.weight' in params:
        config['cnum'] = int(params['netG.enc1.weight'].shape[0])
        blocks = {int(k.split('.')[2]) for k in params if k.startswith('netG.middle.')}
        config['block_num'] = len(blocks)
        branches = {k.split('.')[3] for k in params if re.match(r'netG\.middle\.0\.block', k)}
        if len(branches) != len(DEFAULTS['rates']):
            raise ValueError(f'aotgan: the weights have {len(branches)} AOT branches; their '
                             'dilation rates are not stored in the file, pass --rates')
    if 'netD.conv1.weight_orig' in params:
        config['d_cnum'] = int(params['netD.conv1.weight_orig'].shape[0])
    return params, config
