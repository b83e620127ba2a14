"""otenim's PyTorch GLCIC weights (+ its run's config.json) -> our GLCIC (models/glcic.py)."""
import numpy as np


def _otenim_key(key):
    """otenim state_dict key -> ours (None: dropped). BN statistics take Paddle's names."""
    if key.endswith('num_batches_tracked'):
        return None
    for theirs, ours in (('model_ld.', 'netD.local_d.'), ('model_gd.', 'netD.global_d.'),
                         ('linear1.', 'netD.linear.')):
        if key.startswith(theirs):
            key = ours + key[len(theirs):]
            break
    else:
        key = 'netG.' + key
    return key.replace('.running_mean', '._mean').replace('.running_var', '._variance')


# otenim's config.json entries (train.py arguments); read as tensors when given as an input file
OTENIM_RUN_KEYS = ('mpv', 'cn_input_size', 'ld_input_size', 'hole_min_w', 'hole_min_h',
                   'hole_max_w', 'hole_max_h', 'max_holes', 'steps_1', 'steps_2', 'steps_3',
                   'snaperiod_1', 'snaperiod_2', 'snaperiod_3', 'bsize', 'bdivs',
                   'num_test_completions', 'alpha', 'data_parallel', 'recursive_search')


def convert_otenim(state):
    """otenim/GLCIC-PyTorch (3f9de13): ``model_cn`` [+ ``model_cd``] + the run's ``config.json``.


    config.json goes in as one more input file (``--input model_cn --input config.json``);
    weights.convert reads its numeric entries as arrays.

    ``state`` merges the tensors of ``model_cn`` (``conv1.weight``, ``bn1.running_mean``, ...),
    optionally of ``model_cd`` (``model_ld.*``, ``model_gd.*``, ``linear1.*``) and the numeric
    entries of config.json (``mpv``; ``cn_input_size``, ``ld_input_size`` and ``hole_min_*`` set
    image_size, bbox_size and max_delta; the other training settings are not used). The converted
    model runs in otenim's layer order and input encoding (``bn_order: relu_bn``,
    ``input_encoding: filled``), so it computes exactly otenim's function.
    """
    run = {k: np.asarray(state[k]) for k in OTENIM_RUN_KEYS if k in state}
    params, config = {}, dict(bn_order='relu_bn', input_encoding='filled')
    for key, value in state.items():
        ours = None if key in run else _otenim_key(key)
        if ours is None:
            continue
        value = np.asarray(value, np.float32)
        if ours.startswith('netD.') and '.linear' in ours and ours.endswith('weight'):
            value = value.T  # torch Linear (out, in) -> Paddle (in, out)
        params[ours] = np.ascontiguousarray(value)
    if 'netG.conv1.weight' in params:
        if 'mpv' not in run:
            raise ValueError("otenim_glcic: the completion network needs the mean pixel value "
                             "'mpv' of its training set: add the run's config.json as an input")
        mpv = run['mpv'].astype(np.float32).reshape(-1)
        if mpv.shape != (3,):
            raise ValueError(f"otenim_glcic: 'mpv' must be 3 numbers (RGB in [0, 1]), got {mpv}")
        params['netG.mean'] = 2.0 * mpv - 1.0
        config['cnum'] = int(params['netG.conv1.weight'].shape[0])
    if 'netD.linear.weight' in params:
        config.update(_otenim_discriminator_config(params))
    for run_key, key in (('cn_input_size', 'image_size'), ('ld_input_size', 'bbox_size')):
        if run_key in run:
            config[key] = int(run[run_key])
    holes = [int(run[k]) for k in ('hole_min_w', 'hole_min_h') if k in run]
    if holes and 'ld_input_size' in run:  # otenim: holes 48..96 px in the 96 window
        config['max_delta'] = int(run['ld_input_size']) - min(holes)
    return params, config


def _otenim_discriminator_config(params):
    """Discriminator layout (widths, conv counts, input sizes) read off converted weights."""
    config = dict(d_cnum=int(params['netD.local_d.conv1.weight'].shape[0]))
    for column, size_key, convs_key in (('local_d', 'bbox_size', 'local_convs'),
                                        ('global_d', 'image_size', 'global_convs')):
        convs = sum(f'netD.{column}.conv{i}.weight' in params for i in range(1, 10))
        fc = params[f'netD.{column}.linear{convs + 1}.weight']  # [in, out]
        side = int(round(np.sqrt(fc.shape[0] / params[f'netD.{column}.conv{convs}.bias'].size)))
        config.update({convs_key: convs, size_key: side * 2 ** convs, 'd_fc': int(fc.shape[1])})
    return config
