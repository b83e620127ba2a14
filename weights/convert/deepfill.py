"""Published DeepFill v1/v2 weights -> our parameter names (numpy only; see weights/convert).

Each function takes the {name: array} dict read from the published file(s) and returns
``(params, config)`` for ``DeepFillV1`` / ``DeepFillV2``: params keyed like their
``state_dict()``, config the switches under which our network computes what the source computes
(``padding``, and models/attention.py's ``ca_resize``, ``ca_patch_norm``, ``ca_mask_from``;
DeepFill v2's ``ca_fuse``) plus the widths and sizes read from the tensor shapes.

Source layouts (read off the references' code and their released files):

- daa233/generative-inpainting-pytorch (MIT): ``gen_*.pt`` holds ``coarse_generator.*`` and
  ``fine_generator.*`` (torch OIHW, Paddle's layout too); the fine stage's conv branch is named
  ``conv1..conv10`` (official ``xconv*``), the upsampling convs ``conv13``/``conv15``
  (official ``conv13_upsample/..._conv``). ``dis_*.pt`` holds ``localD``/``globalD`` with the port's
  narrower local critic (conv4 = 4*cnum) and torch Linear weights [1, F] over an NCHW flatten.
- nipponjo/deepfillv2-pytorch: ``states_tf_*.pth`` = {'G': ..., 'D': ...} with the official
  TensorFlow names (``conv1.conv.weight``, ``xconv1...``, ``conv13_upsample.conv.conv...``); the
  critic ``convK.conv_sn.weight`` is a spectral-norm conv whose ``weight_u`` [out, 1] is updated
  on every forward of the source.
- Official TensorFlow checkpoints (CC BY-NC 4.0), read by weights/tfcheckpoint.py:
  ``inpaint_net/<layer>/kernel`` (HWIO; ``<layer>/<layer>_conv/`` for the upsampling convs),
  v1 critics ``discriminator/discriminator_local/convK`` and dense ``dout_local_fc`` (rows in
  NHWC-flatten order), v2 ``discriminator/sn_patch_gan/convK`` with ``kernel_sn/u`` [1, out].
  The official code reads images with cv2, so these weights take and give BGR.
"""
import numpy as np

RGB_FLIP = [2, 1, 0]


def _take_conv_layers(state, rename, where):
    """{our key: array} for every ``<layer>.<param>`` key of ``state`` that ``rename`` accepts."""
    params, unknown = {}, []
    for key, value in state.items():
        ours = rename(key)
        if ours is None:
            unknown.append(key)
        else:
            params[ours] = np.asarray(value, np.float32)
    if unknown:
        raise ValueError(f'{where}: {len(unknown)} unexpected tensors such as {unknown[0]!r}')
    return params


def _require(params, key, source, what):
    if key not in params:
        raise ValueError(f'{source}: the input has no {what}; expected {source} weights')
    return params[key]


# ------------------------------------------------------------------------ daa233 (DeepFill v1)
_DAA233_UPSAMPLE = ('conv13', 'conv15', 'allconv13', 'allconv15')


def _daa233_key(key):
    """daa233 key -> our key, or None. ``netG.`` (its Trainer state) is optional."""
    if key.startswith('netG.'):
        key = key[len('netG.'):]
    parts = key.split('.')
    if len(parts) == 4 and parts[0] in ('coarse_generator', 'fine_generator') \
            and parts[2] == 'conv' and parts[3] in ('weight', 'bias'):
        stage, layer = parts[:2]
        if stage == 'fine_generator' and layer.startswith('conv'):
            layer = 'x' + layer  # the fine stage's conv branch: official xconv1..xconv10
        if layer in _DAA233_UPSAMPLE:
            layer += '_upsample.conv'
        stage = 'coarse' if stage == 'coarse_generator' else 'refine'
        return f'netG.{stage}.{layer}.conv.{parts[3]}'
    critic = {'localD': 'local_critic', 'globalD': 'global_critic'}.get(parts[0])
    if critic and len(parts) == 5 and parts[1] == 'dis_conv_module' and parts[3] == 'conv':
        return f'netD.{critic}.{parts[2]}.conv.{parts[4]}'
    if critic and len(parts) == 3 and parts[1] == 'linear':
        return f'netD.{critic}.fc.{parts[2]}'
    return None


def _daa233(state, source):
    params = _take_conv_layers(state, _daa233_key, source)
    cnum = _require(params, 'netG.coarse.conv1.conv.weight', source,
                    'coarse_generator.conv1.conv.weight').shape[0]
    config = dict(cnum=int(cnum))
    if any(k.startswith('netD.') for k in params):
        for critic in ('local_critic', 'global_critic'):  # torch Linear [1, F] -> Paddle [F, 1]
            key = f'netD.{critic}.fc.weight'  # (both flatten NCHW: no reordering)
            params[key] = _require(params, key, source, f'{critic} linear.weight').T.copy()
        config.update(v1_critic_config(params, source))
    return params, config


def v1_critic_config(params, source):
    """Critic width, local conv4 multiplier and input sizes read from the converted shapes: the
    dense layer has (conv4 filters) * (size/16)^2 rows."""
    def width(critic, layer):
        key = f'netD.{critic}.{layer}.weight'
        return _require(params, key, source, f'{critic} {layer} weights').shape[0]

    def side(critic):
        return 16 * int(round(np.sqrt(width(critic, 'fc') / width(critic, 'conv4.conv'))))

    d_cnum = int(width('local_critic', 'conv1.conv'))
    return dict(d_cnum=d_cnum, bbox_size=side('local_critic'), image_size=side('global_critic'),
                d_local_conv4_mult=int(width('local_critic', 'conv4.conv') // d_cnum))


def convert_daa233_v1(state):
    """daa233's PyTorch DeepFill v1 (gen_*.pt, optionally with dis_*.pt), run as the port runs.


    The port's ops: symmetric padding, torch nearest resizes in contextual attention and the
    escape-NaN term added per element; RGB input in [-1, 1]. Its converted official model
    (``torch_model.p``, keys prefixed ``netG.``) converts here too and then gives exactly what
    the port's test_tf_model.py computes; ``daa233_v1_tf`` runs it as the official graph instead.
    """
    params, config = _daa233(state, 'daa233_v1')
    config.update(padding='symmetric', ca_resize='torch', ca_patch_norm='eps_sum')
    return params, config


def bgr_to_rgb(params, inputs, outputs):
    """Makes BGR-trained weights take and give RGB: flips input channels 0-2 of the ``inputs``
    convs and the 3 output channels (weight and bias) of the ``outputs`` convs, in place."""
    for key in inputs:
        w = params[key].copy()
        w[:, :3] = w[:, RGB_FLIP]
        params[key] = w
    for key in outputs:
        for suffix in ('weight', 'bias'):
            params[f'{key}.{suffix}'] = params[f'{key}.{suffix}'][RGB_FLIP].copy()
    return params


V1_RGB_INPUTS = ['netG.coarse.conv1.conv.weight', 'netG.refine.xconv1.conv.weight',
                 'netG.refine.pmconv1.conv.weight']
V1_RGB_OUTPUTS = ['netG.coarse.conv17.conv', 'netG.refine.allconv17.conv']


def convert_daa233_v1_tf(state):
    """The official DeepFill v1 weights in daa233's layout (``torch_model.p``), run as the
    official TensorFlow graph: TF 'SAME' padding, align-corners resizes, BGR weights flipped so
    our RGB pipeline feeds them what they were trained on.


    Assumes the port's converter copied the TF kernels without reordering colour channels (its
    test script feeds RGB to them unchanged); ``daa233_v1`` reproduces that script instead.
    """
    params, config = _daa233(state, 'daa233_v1_tf')
    critics = [f'netD.{c}.conv1.conv.weight' for c in ('local_critic', 'global_critic')]
    return bgr_to_rgb(params, V1_RGB_INPUTS + [k for k in critics if k in params],
                      V1_RGB_OUTPUTS), config


# ---------------------------------------------------------------------- nipponjo (DeepFill v2)
def spectral_state(weight, u, eps=1e-12):
    """One power iteration from the source's ``u``, as the source runs on its next forward.

    Returns (u, v) for our spectral-norm layer: its eval forward then divides by the same sigma
    = u^T W v as the source's forward, and training continues the iteration from there.
    """
    w = weight.reshape(weight.shape[0], -1).astype(np.float64)
    v = w.T @ u.reshape(-1).astype(np.float64)
    v /= max(np.linalg.norm(v), eps)
    u = w @ v
    u /= max(np.linalg.norm(u), eps)
    return u.astype(np.float32), v.astype(np.float32)


def _nipponjo_key(key):
    if key.startswith('D.'):
        layer, _, rest = key[2:].partition('.')
        name = {'conv_sn.weight': 'weight_orig', 'conv_sn.bias': 'bias',
                'conv_sn.weight_u': 'weight_u'}.get(rest)
        return None if name is None else f'netD.{layer}.conv.{name}'
    if key.startswith('G.'):
        key = key[2:]  # (a generator state dict saved on its own has no prefix)
    if not key.endswith(('.conv.weight', '.conv.bias')):
        return None
    stage = 'coarse' if key.startswith('conv') else 'refine'  # xconv*, pmconv*, allconv*
    return f'netG.{stage}.{key}'


def convert_nipponjo_v2(state):
    """nipponjo's conversion of the official DeepFill v2 weights (states_tf_places2.pth,
    states_tf_celebahq.pth; its networks_tf.py), optionally with a critic under 'D'.


    Its networks_tf.py reproduces TF 'SAME' padding and align-corners resizes (our defaults), but
    runs contextual attention without the fuse step and resizes the mask to the matching
    resolution in one step; the config records both. RGB input in [-1, 1], as its test.py feeds
    it (no colour flip). Optimizer states in training files ('G_optim', 'D_optim') are skipped.
    """
    params, config = _nipponjo(state, 'nipponjo_v2')
    config.update(ca_fuse=False, ca_mask_from='image', **_spectral_critic(params, 'nipponjo_v2'))
    return params, config


def convert_nipponjo_v2_official(state):
    """nipponjo's states_tf_places2.pth / states_tf_celebahq.pth run as the official TensorFlow
    graph (fuse on, two-step mask resize) with the colours flipped: official_v2_tf's result.


    Assumes nipponjo's converter copied the official kernels without reordering colour channels
    (its test.py feeds RGB to them unchanged); ``nipponjo_v2`` reproduces that port instead.
    """
    params, config = _nipponjo(state, 'nipponjo_v2_official')
    return _official_v2_tail(params, config, 'nipponjo_v2_official')


def _nipponjo(state, source):
    params = _take_conv_layers(
        {k: v for k, v in state.items() if not k.startswith(('G_optim.', 'D_optim.'))},
        _nipponjo_key, source)
    conv1 = _require(params, 'netG.coarse.conv1.conv.weight', source, 'conv1.conv.weight')
    return params, dict(cnum=int(conv1.shape[0]), guided=bool(conv1.shape[1] == 6))


def _spectral_critic(params, source):
    """Replaces each SN-PatchGAN layer's source ``u`` by one power iteration's (u, v) in place;
    returns {'d_cnum': ...} when the critic is present, else {}."""
    layers = sorted({k.split('.')[1] for k in params if k.startswith('netD.')})
    for layer in layers:
        key = f'netD.{layer}.conv'
        weight = _require(params, f'{key}.weight_orig', source, f'critic {layer} kernel')
        u = _require(params, f'{key}.weight_u', source, f'critic {layer} spectral-norm u')
        params[f'{key}.weight_u'], params[f'{key}.weight_v'] = spectral_state(weight, u)
    return {'d_cnum': int(params['netD.conv1.conv.weight_orig'].shape[0])} if layers else {}


# ------------------------------------------------- official TensorFlow checkpoints (v1 and v2)
_PARAMS = {'kernel': 'weight', 'bias': 'bias'}


def _is_tf_bookkeeping(name):
    """Adam slots, beta powers, step counters: training state, not weights."""
    return name.endswith(('/Adam', '/Adam_1')) or '/' not in name


def _tf_key(name):
    """Official TF variable name -> our key, or None for names that are no DeepFill weights."""
    parts = name.split('/')
    top, layer, rest = parts[0], parts[1] if len(parts) > 1 else '', parts[2:]
    if top == 'inpaint_net' and rest and rest[-1] in _PARAMS \
            and rest[:-1] in ([], [layer + '_conv']):
        stage = 'coarse' if layer.startswith('conv') else 'refine'  # xconv*, pmconv*, allconv*
        inner = 'conv.' if rest[:-1] else ''  # gen_deconv: <layer>/<layer>_conv/kernel
        return f'netG.{stage}.{layer}.conv.{inner}{_PARAMS[rest[-1]]}'
    if top != 'discriminator':
        return None
    if layer in ('dout_local_fc', 'dout_global_fc') and len(rest) == 1 and rest[0] in _PARAMS:
        return f"netD.{layer.split('_')[1]}_critic.fc.{_PARAMS[rest[0]]}"
    if layer in ('discriminator_local', 'discriminator_global') and len(rest) == 2 \
            and rest[1] in _PARAMS:
        return f"netD.{layer.split('_')[1]}_critic.{rest[0]}.conv.{_PARAMS[rest[1]]}"
    spectral = {('kernel',): 'weight_orig', ('bias',): 'bias', ('kernel_sn', 'u'): 'weight_u'}
    if layer == 'sn_patch_gan' and rest and tuple(rest[1:]) in spectral:
        return f'netD.{rest[0]}.conv.{spectral[tuple(rest[1:])]}'
    return None


def _official(state, source):
    """TF names and layouts -> ours (HWIO kernels to OIHW); Adam slots etc. are skipped."""
    params, unknown = {}, []
    for name, value in state.items():
        if _is_tf_bookkeeping(name):
            continue
        key = _tf_key(name)
        if key is None:
            unknown.append(name)
            continue
        value = np.asarray(value, np.float32)
        params[key] = value.transpose(3, 2, 0, 1).copy() if value.ndim == 4 else value
    if unknown:
        raise ValueError(f'{source}: {len(unknown)} unexpected variables such as {unknown[0]!r}')
    conv1 = _require(params, 'netG.coarse.conv1.conv.weight', source, 'inpaint_net/conv1/kernel')
    return params, dict(cnum=int(conv1.shape[0]))


def nhwc_dense_to_nchw(kernel, channels):
    """Reorders the rows of a dense kernel [H*W*C, out] that TF applied to an NHWC flatten so it
    applies to an NCHW flatten (ours): row (h, w, c) moves to (c, h, w)."""
    side = int(round(np.sqrt(kernel.shape[0] / channels)))
    return kernel.reshape(side, side, channels, -1).transpose(2, 0, 1, 3).reshape(
        kernel.shape[0], -1).copy()


def convert_official_v1_tf(state):
    """The official DeepFill v1 TensorFlow checkpoints (the release folder, or its snap-*
    prefix / .index file), read without TensorFlow.


    Variables ``inpaint_net/*`` and, when present, the WGAN critics ``discriminator/*`` (their
    dense kernels reordered from TF's NHWC flatten); Adam slots and step counters are skipped.
    Official ops (our defaults); BGR-trained, so colours are flipped for our RGB pipeline.
    """
    params, config = _official(state, 'official_v1_tf')
    if any(k.startswith('netD.') for k in params):
        for critic in ('local_critic', 'global_critic'):
            conv4 = _require(params, f'netD.{critic}.conv4.conv.weight', 'official_v1_tf',
                             f'{critic} conv4/kernel')
            key = f'netD.{critic}.fc.weight'
            kernel = _require(params, key, 'official_v1_tf', f'{critic} dense kernel')
            params[key] = nhwc_dense_to_nchw(kernel, conv4.shape[0])
        config.update(v1_critic_config(params, 'official_v1_tf'))
    critics = [f'netD.{c}.conv1.conv.weight' for c in ('local_critic', 'global_critic')]
    return bgr_to_rgb(params, V1_RGB_INPUTS + [k for k in critics if k in params],
                      V1_RGB_OUTPUTS), config


def convert_official_v2_tf(state):
    """The official DeepFill v2 TensorFlow checkpoints (the release folder, or its snap-*
    prefix / .index file), read without TensorFlow.


    Variables ``inpaint_net/*`` and, when present, the SN-PatchGAN ``discriminator/sn_patch_gan/*``
    (its ``kernel_sn/u`` [1, out] power-iterated once, as for nipponjo_v2); Adam slots and step
    counters are skipped. Official ops (our defaults); BGR-trained, so colours are flipped.
    """
    params, config = _official(state, 'official_v2_tf')
    config['guided'] = bool(params['netG.coarse.conv1.conv.weight'].shape[1] == 6)
    return _official_v2_tail(params, config, 'official_v2_tf')


def _official_v2_tail(params, config, source):
    """BGR -> RGB flip, then the critic's power iteration (so v follows the flipped columns)."""
    critic = ['netD.conv1.conv.weight_orig'] if 'netD.conv1.conv.weight_orig' in params else []
    params = bgr_to_rgb(params, V1_RGB_INPUTS + critic, V1_RGB_OUTPUTS)
    config.update(_spectral_critic(params, source))
    return params, config
