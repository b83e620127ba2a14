"""naoto0804's PyTorch PConv weights -> our PConv (models/pconv.py); numpy only."""
import numpy as np


def convert_naoto(state):
    """naoto0804's ``PConvUNet`` state dict (``1000000.pth['model']``) -> (params, config).

    - ``*.conv.input_conv.weight`` -> ``netG.*.conv.weight`` divided by C_in*k*k: naoto's layer
      lacks the official sum(1) factor, so this gives identical outputs; biases are unchanged.
    - ``*.conv.mask_conv.weight`` (frozen all-ones kernels) are dropped, after checking they are
      ones; BatchNorm ``running_mean/var`` -> ``_mean/_variance``; ``num_batches_tracked``
      dropped.
    - naoto's network sees ImageNet-normalised images and outputs normalised values, so the
      config sets ``io_norm: 'imagenet'`` (see the module docstring) along with the depth and
      width read from the weights (image_size 2^(L+1): 256 for naoto's L = 7).
    """
    params, depth = {}, 0
    for key, value in state.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        layer, _, rest = key.partition('.')
        value = np.asarray(value, np.float32)
        if rest == 'conv.mask_conv.weight':
            if not np.all(value == 1):
                raise ValueError(f'naoto_pconv: {key} should be all ones (a frozen mask kernel)')
        elif rest.startswith('conv.input_conv.'):
            name = rest[len('conv.input_conv.'):]
            if name == 'weight':
                value = value / np.float32(np.prod(value.shape[1:]))  # sum(1)
            params[f'netG.{layer}.conv.{name}'] = value
        elif rest.startswith('bn.') and not rest.endswith('num_batches_tracked'):
            name = {'running_mean': '_mean', 'running_var': '_variance'}.get(rest[3:], rest[3:])
            params[f'netG.{layer}.bn.{name}'] = value
        elif not rest.endswith('num_batches_tracked'):
            raise ValueError(f'naoto_pconv: unexpected key {key} (not a PConvUNet state dict?)')
        if layer.startswith('enc_'):
            depth = max(depth, int(layer[4:]))
    first = params.get('netG.enc_1.conv.weight')
    if first is None or first.shape[1] != 3:
        raise ValueError('naoto_pconv: expected enc_1.conv.input_conv.weight of an RGB PConvUNet')
    config = dict(layer_size=depth, cnum=int(first.shape[0]), io_norm='imagenet',
                  image_size=2 ** (depth + 1))
    return params, config
