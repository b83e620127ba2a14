"""--amp (mixed-precision training) on CPU: the refusal, the config keys and the helpers.

Autocast itself is a no-op on a CPU build of Paddle, so the GPU numerics (float16 with dynamic
loss scaling, bfloat16) are not exercised here.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from training import amp
from training.config import parse_overrides, resolve_config

ROOT = Path(__file__).resolve().parents[1]


def test_amp_on_cpu_is_refused_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / 'train.py'), '--amp', '--device', 'cpu',
                           '--checkpoints_dir', str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        'error: amp: mixed precision needs a GPU, this run is on cpu (drop --amp, or install '
        'paddlepaddle-gpu)']
    assert not any(tmp_path.iterdir())  # refused before the run folder is made


def test_amp_keys_come_from_yaml_and_command_line(tmp_path):
    config = tmp_path / 'amp.yaml'
    config.write_text('amp: true\namp_dtype: bfloat16\n')
    parse = lambda *argv: resolve_config(*train_args(argv))  # noqa: E731
    cfg = parse('--config', str(config))
    assert cfg['amp'] is True and cfg['amp_dtype'] == 'bfloat16'
    cfg = parse('--amp', '--amp_dtype', 'float16')
    assert cfg['amp'] is True and cfg['amp_dtype'] == 'float16'
    assert parse()['amp'] is False and parse('--amp', 'off')['amp'] is False
    with pytest.raises(ValueError, match="'amp' expects bool"):
        parse('--amp', 'maybe')


def train_args(argv):
    """(config path, overrides) as train.main parses them."""
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument('--config')
    args, rest = parser.parse_known_args(list(argv))
    return args.config, parse_overrides(rest)


def test_amp_dtype_checks(monkeypatch):
    cfg = dict(amp=True, amp_dtype='float16')
    monkeypatch.setattr(paddle.amp, 'is_float16_supported', lambda: True)
    monkeypatch.setattr(paddle.amp, 'is_bfloat16_supported', lambda: False)
    assert amp.amp_dtype(cfg, 'gpu') == 'float16'
    assert amp.amp_dtype(cfg, 'gpu:1') == 'float16'
    assert amp.amp_dtype(dict(cfg, amp=False), 'gpu') is None
    assert amp.amp_dtype(dict(cfg, amp=False), 'cpu') is None
    with pytest.raises(ValueError, match=r'amp_dtype: this GPU cannot train in bfloat16 .*'
                                         'compute capability 8.0'):
        amp.amp_dtype(dict(cfg, amp_dtype='bfloat16'), 'gpu')
    with pytest.raises(ValueError, match='amp: mixed precision needs a GPU, this run is on cpu'):
        amp.amp_dtype(cfg, 'cpu')
    for value in ('float32', 'fp16'):  # checked even while amp is off
        with pytest.raises(ValueError, match=f"amp_dtype: expected 'float16' or 'bfloat16', "
                                             f"got '{value}'"):
            amp.amp_dtype(dict(cfg, amp=False, amp_dtype=value), 'cpu')


def test_autocast_outputs_are_cast_back_to_float32():
    out = {'pred': paddle.full([1, 3, 2, 2], 0.5).astype('float16'),
           'coarse': paddle.full([1, 3, 2, 2], 0.25).astype('bfloat16'),
           'composite': paddle.zeros([1, 3, 2, 2]),
           'offsets': paddle.zeros([1, 2, 1, 1], 'int64')}
    cast = amp.as_float32(out)
    assert [cast[k].dtype for k in out] == [paddle.float32] * 3 + [paddle.int64]
    assert float(cast['pred'].mean()) == 0.5 and float(cast['coarse'].mean()) == 0.25
    assert cast['composite'] is out['composite']
    with amp.autocast(None):  # no autocast: a float32 matmul stays float32
        x = paddle.ones([2, 2])
        assert paddle.matmul(x, x).dtype == paddle.float32


def test_loss_scaler_state_goes_into_the_checkpoint_header():
    class Scaler:  # paddle's GradScaler is disabled on CPU; this is its state_dict's layout
        def state_dict(self):
            return {'scale': np.array([1024.0], np.float32), 'incr_ratio': 2.0,
                    'incr_count': 7, 'use_dynamic_loss_scaling': True}

    state = json.loads(json.dumps(amp.scaler_state(Scaler())))
    assert state['scale'][0] == 1024.0  # GradScaler.load_state_dict reads state['scale'][0]
    assert state['incr_count'] == 7 and state['use_dynamic_loss_scaling'] is True
