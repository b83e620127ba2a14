"""The official LBAM_Pytorch weights -> our LBAM (models/lbam.py); numpy only."""
import numpy as np

from models.lbam import RANGES, widths


def _official_generator_keys():
    """Official ``LBAMModel(4, 3)`` key -> (our netG key, shape); 79 keys."""
    w = widths(64, 7)
    keys = {}

    def gauss(src, dst):
        for ours, theirs in zip(RANGES, ('a', 'mu', 'sigma1', 'sigma2')):
            keys[f'{src}.activationFuncG_A.{theirs}'] = (f'{dst}.attention.{ours}', ())  # -> [1]

    for i in range(1, 8):
        cin = 4 if i == 1 else w[i - 2]
        keys[f'ec{i}.conv.conv.weight'] = (f'ec{i}.conv.weight', (w[i - 1], cin, 4, 4))
        keys[f'ec{i}.conv.maskConv.weight'] = (f'ec{i}.mask_conv.weight',
                                               (w[i - 1], 3 if i == 1 else cin, 4, 4))
        gauss(f'ec{i}.conv', f'ec{i}')
    for i in range(1, 7):
        cin = 3 if i == 1 else w[i - 2]
        keys[f'reverseConv{i}.reverseMaskConv.weight'] = (f'reverse_conv{i}.mask_conv.weight',
                                                          (w[i - 1], cin, 4, 4))
        gauss(f'reverseConv{i}', f'reverse_conv{i}')
    keys['dc1.conv.weight'] = ('dc1.conv.weight', (w[6], w[5], 4, 4))  # ConvT: (in, out, k, k)
    for i in range(2, 7):
        keys[f'dc{i}.conv.weight'] = (f'dc{i}.conv.weight', (2 * w[7 - i], w[6 - i], 4, 4))
    keys['dc7.weight'] = ('dc7.weight', (2 * w[0], 3, 4, 4))
    return keys


def _official_critic_keys(layers=6):
    """Official ``DiscriminatorDoubleColumn(3)`` key -> (our netD key, shape)."""
    channels = widths(64, layers)
    keys = {}
    for column, ours in (('globalConv', 'global_column'), ('localConv', 'local_column')):
        for i, (cin, cout) in enumerate(zip([3] + channels[:-1], channels), start=1):
            conv = 0 if i == 1 else 3 * i - 4  # Sequential index: conv, [BN], LeakyReLU
            keys[f'{column}.{conv}.weight'] = (f'{ours}.conv{i}.weight', (cout, cin, 4, 4))
            keys[f'{column}.{conv}.bias'] = (f'{ours}.conv{i}.bias', (cout,))
            if i > 1:
                for theirs, mine in (('weight', 'weight'), ('bias', 'bias'),
                                     ('running_mean', '_mean'), ('running_var', '_variance')):
                    keys[f'{column}.{conv + 1}.{theirs}'] = (f'{ours}.bn{i}.{mine}', (cout,))
    keys['fusionLayer.0.weight'] = ('fusion.weight', (1, 2 * channels[-1], 4, 4))
    keys['fusionLayer.0.bias'] = ('fusion.bias', (1,))
    return keys


def _prefix(state, anchor):
    """The prefix ('', 'module.', 'discriminator.', ...) under which ``anchor`` is stored, or None.
    Reads only the key names, so the converter's use of each tensor stays tracked."""
    for key in state.keys():
        if key == anchor or key.endswith('.' + anchor):
            return key[:len(key) - len(anchor)]
    return None


def _take(state, table, prefix, ours_prefix):
    params = {}
    for theirs, (ours, shape) in table.items():
        if prefix + theirs not in state:
            raise ValueError(f'lbam_official: missing official key {prefix + theirs}')
        value = np.asarray(state[prefix + theirs], np.float32)
        if value.shape != shape:
            raise ValueError(f'lbam_official: {prefix + theirs} has shape {list(value.shape)}, '
                             f'expected {list(shape)}')
        params[f'{ours_prefix}.{ours}'] = value.reshape([1]) if value.ndim == 0 else value
        if theirs.endswith('running_var'):  # a BN layer: its step counter has no use here
            state.get(prefix + theirs.replace('running_var', 'num_batches_tracked'))
    return params


def convert_official(state):
    """The official LBAM_Pytorch generator (``LBAMModel(4, 3)``, 79 tensors), and its critic
    (``DiscriminatorDoubleColumn(3)``) when the input has one.


    Keys may carry a DataParallel ``module.`` prefix, critic keys a ``discriminator.`` prefix
    (the official loss module's attribute); BN ``num_batches_tracked`` is dropped. No critic
    weights were published: the official script saves the generator only. The official generator
    reads ``[x01 * M, M]`` with ``x01 = (x + 1) / 2``, ours ``[x * M, M]``: since ``W x01 M =
    (W / 2) x M + (W / 2) M``, ec1's image-channel weights are halved and their half-sum added to
    the M channel's. The output needs nothing: ``2 * (tanh + 1) / 2 - 1 = tanh``. The critic
    keeps the official [0, 1] inputs (see ``LBAM.d_loss``), so it converts unchanged.
    """
    g_prefix = _prefix(state, 'ec1.conv.conv.weight')
    if g_prefix is None:
        raise ValueError('lbam_official: no ec1.conv.conv.weight in the input; expected the '
                         'state dict of the official LBAMModel(4, 3)')
    params = _take(state, _official_generator_keys(), g_prefix, 'netG')
    w = params['netG.ec1.conv.weight'].astype(np.float64)
    folded = np.concatenate([w[:, :3] / 2, w[:, 3:] + w[:, :3].sum(1, keepdims=True) / 2], 1)
    params['netG.ec1.conv.weight'] = folded.astype(np.float32)
    d_prefix = _prefix(state, 'globalConv.0.weight')
    if d_prefix is not None:
        params.update(_take(state, _official_critic_keys(), d_prefix, 'netD'))
    return params, dict(cnum=64, d_cnum=64, d_layers=6)
