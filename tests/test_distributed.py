"""Data-parallel training: `python -m paddle.distributed.launch --nproc_per_node 2 train.py` on
CPU (gloo) trains what one process trains on the whole batch, and writes the same checkpoints.

The multi-process tests start the launcher in its own session with a timeout; on a hang they kill
exactly the processes they started and fail with the workers' log tails. This file is also the
worker script of `test_gradient_penalty_through_data_parallel` (`--gp-worker OUT_DIR`).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import conftest  # noqa: F401  (repo root on sys.path when this file runs as the launch worker)
import numpy as np
import paddle
import paddle.distributed as dist
import pytest
from PIL import Image
from safetensors import safe_open

from conftest import make_batch
from data import InfiniteSampler
from models import MODELS, build
from models.deepfill_v1 import crop_patch
from models.losses import gradient_penalty, wgan_d
from training import parallel
from weights.checkpoint import load_model_state, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = ['--image_size', '64', '--bbox_size', '32', '--max_delta', '8', '--cnum', '8',
             '--d_cnum', '8', '--batch_size', '4', '--d_steps', '2', '--num_workers', '0',
             '--log_interval', '1', '--eval_interval', '100', '--ckpt_interval', '1',
             '--val_count', '2', '--device', 'cpu']
TIMEOUT = 240  # seconds per launch; a tiny run takes about 10 s on 2 idle cores


# ----------------------------------------------------------------------------- helpers
def children(pid):
    """Direct child pids of ``pid`` (from /proc)."""
    found = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / 'stat').read_text()
            except OSError:
                continue
            if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def launch(args, log_dir, nproc=2, timeout=TIMEOUT):
    """Runs ``python -m paddle.distributed.launch --nproc_per_node N <args>`` from the repo root.

    The launcher starts each worker in a session of its own; on a timeout those sessions (workers
    and their DataLoader processes) and the launcher are killed, and the test fails with the
    workers' log tails. Returns the launcher's output.
    """
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', str(nproc),
           '--log_dir', str(log_dir), *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for worker in children(proc.pid):
            try:
                os.killpg(worker, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f'launch timed out after {timeout} s: {" ".join(cmd)}\n{worker_logs(log_dir)}')
    if proc.returncode != 0:
        pytest.fail(f'launch failed ({proc.returncode}): {" ".join(cmd)}\n{out[-2000:]}\n'
                    f'{worker_logs(log_dir)}')
    return out


def worker_logs(log_dir):
    logs = sorted(Path(log_dir).glob('workerlog.*'))
    return '\n'.join(f'--- {p.name}\n{p.read_text()[-1500:]}' for p in logs)


def run_single(args):
    proc = subprocess.run([sys.executable, str(ROOT / 'train.py'), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def tensors(path):
    with safe_open(str(path), 'np') as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()['state'])


def log_rows(run_dir):
    """{iteration: {key: value}} of the `iter ...` lines of a run's log.txt."""
    rows = {}
    for line in (run_dir / 'log.txt').read_text().splitlines():
        if line.startswith('iter '):
            words = line.split()
            values = dict(zip(words[0::2], words[1::2]))
            assert int(values['iter']) not in rows, f'iteration logged twice:\n{line}'
            rows[int(values['iter'])] = {k: float(v) for k, v in values.items()}
    return rows


def assert_same_training(before, single, ddp):
    """Two checkpoints of one iteration hold the same keys and run state, and the same weights
    and optimizer moments up to float32 round-off.

    Adam divides by sqrt(second moment): where a gradient is ~0, round-off in the gradient can
    flip the sign of that element's step (up to 2 x lr apart). So the weights are compared by
    norm, against how far the iteration moved them (``before``: the checkpoint before it); a
    missing gradient all-reduce gives ratios of about 0.5.
    """
    (prev, _), (ta, sa), (tb, sb) = tensors(before), tensors(single), tensors(ddp)
    assert ta.keys() == tb.keys()
    assert (sa['iteration'], sa['batches']) == (sb['iteration'], sb['batches'])
    norm = lambda keys, f: np.sqrt(sum(float(np.square(f(k), dtype=np.float64).sum())  # noqa
                                       for k in keys))
    diff = lambda k: ta[k].astype(np.float64) - tb[k]  # noqa: E731
    weights = [k for k in ta if k.startswith('model/')]
    moved = norm(weights, lambda k: ta[k].astype(np.float64) - prev[k])
    assert moved > 1e-3
    assert norm(weights, diff) < 0.02 * moved
    for prefix in ('optG/', 'optD/'):
        keys = [k for k in ta if k.startswith(prefix)]
        assert norm(keys, diff) < 1e-4 * norm(keys, lambda k: ta[k]), prefix


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """Six small photos of mixed sizes and one corrupt file."""
    folder = tmp_path_factory.mktemp('photos')
    rng = np.random.RandomState(0)
    for i, (h, w) in enumerate([(80, 96), (48, 72), (96, 64), (64, 64), (72, 80), (64, 88)]):
        img = rng.randint(0, 255, (h // 8, w // 8, 3)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        Image.fromarray(img).save(folder / f'photo{i}.png')
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    return folder


# ----------------------------------------------------------------------------- fast checks
def test_sampler_shards_concatenate_to_the_single_process_batches():
    def take(sampler, n):
        stream = iter(sampler)
        return [next(stream) for _ in range(n)]

    full = take(InfiniteSampler(5, 4, seed=3), 6)  # 24 positions: batches straddle epochs
    for start in (0, 3):
        shards = [take(InfiniteSampler(5, 4, seed=3, start_batch=start, rank=r, world_size=2),
                       6 - start) for r in range(2)]
        assert [a + b for a, b in zip(*shards)] == full[start:]
        assert all(len(batch) == 2 for shard in shards for batch in shard)
    for bad in (dict(rank=0, world_size=3), dict(rank=2, world_size=2)):
        with pytest.raises(ValueError, match='split evenly'):
            InfiniteSampler(5, 4, seed=3, **bad)


def test_parallel_settings_fail_in_one_line():
    cfg = {'batch_size': 6, 'device': 'auto'}
    parallel.check_parallel(cfg, 1)
    parallel.check_parallel(cfg, 3)
    with pytest.raises(ValueError, match=r'batch_size: 6 \(the global batch\) does not split '
                                         'evenly over 4 ranks'):
        parallel.check_parallel(cfg, 4)
    with pytest.raises(ValueError, match="device: 'gpu:1' names one GPU for all 2 ranks"):
        parallel.check_parallel({'batch_size': 6, 'device': 'gpu:1'}, 2)


def test_single_process_helpers_are_identities():
    assert not parallel.parallel()
    values = [paddle.to_tensor(1.5), paddle.to_tensor(2.0)]
    assert parallel.mean_over_ranks(values) is values
    assert parallel.any_rank([]) is False and parallel.any_rank([signal.SIGTERM]) is True
    assert parallel.union_over_ranks(['a', 'b', 'a']) == {'a', 'b'}


# ----------------------------------------------------------------------------- launched runs
@pytest.mark.slow
def test_two_ranks_train_what_one_process_trains(photos, tmp_path):
    """A 2-rank run (global batch 4 = 2 x 2) against one process on the same 4-image batches:
    critic steps, generator steps, logs and checkpoints; then a 2-rank resume of the
    single-process checkpoint. The gradient penalty is on (its double backward runs through
    DataParallel, and every rank draws the global batch's mixing weights and keeps its rows)."""
    args = ['--data', photos, '--val_data', photos, '--checkpoints_dir', tmp_path, *TINY_ARGS]
    run_single([*args, '--run_name', 'single', '--max_iters', 3, '--threads', 1])
    out = launch(['train.py', *args, '--run_name', 'ddp', '--max_iters', 2], tmp_path / 'l1')
    single, ddp = tmp_path / 'single', tmp_path / 'ddp'

    log = (ddp / 'log.txt').read_text()
    assert 'on cpu x 2 ranks' in log and '# done: 2 iterations' in log
    for it in (1, 2):
        assert (f'# checkpoint iter_{it:07d}.safetensors: max |weight - rank 0 weight| over 2 '
                f'ranks 0\n') in log
    name = 'iter_0000002.safetensors'
    assert_same_training(single / 'iter_0000001.safetensors', single / name, ddp / name)
    rows_single, rows_ddp = log_rows(single), log_rows(ddp)
    assert sorted(rows_ddp) == [1, 2]  # rank 0 logs, once per iteration
    for it in (1, 2):
        for key, value in rows_ddp[it].items():
            if key != 'dt':
                assert value == pytest.approx(rows_single[it][key], rel=1e-3, abs=1e-4), key
    assert 'skipped 1 unreadable image files' in log
    assert 'Traceback' not in out

    # A single-process checkpoint resumes on 2 ranks (every rank loads model and optimizers).
    (tmp_path / 'resumed').mkdir()
    start = tmp_path / 'resumed' / 'iter_0000002.safetensors'
    shutil.copy(single / 'iter_0000002.safetensors', start)
    launch(['train.py', '--resume', start, '--max_iters', 3], tmp_path / 'l2')
    log = (tmp_path / 'resumed' / 'log.txt').read_text()
    assert 'resumed from' in log and 'over 2 ranks 0\n' in log
    assert_same_training(single / 'iter_0000002.safetensors', single / 'iter_0000003.safetensors',
                         tmp_path / 'resumed' / 'iter_0000003.safetensors')

    # A 2-rank checkpoint loads into a single-process model (test.py's path).
    tensors_ddp, state = read_checkpoint(ddp / 'latest.safetensors')
    model = build(state['model'], state['config'])
    load_model_state(model, tensors_ddp)
    assert all(k.startswith(('model/netG.', 'model/netD.', 'optG/', 'optD/')) for k in tensors_ddp)


def gp_worker(out_dir):
    """One critic backward of DeepFill v1's two WGAN-GP critics on a global batch of 4 with
    per-sample masks and fixed mixing weights, through ``training.parallel.data_parallel`` when
    launched on several ranks; saves this rank's critic gradients."""
    world, rank = dist.get_world_size(), dist.get_rank()
    if world > 1:
        dist.init_parallel_env()
    paddle.seed(0)
    with paddle.utils.unique_name.guard():
        model = build('deepfill_v1', MODELS['deepfill_v1'].TINY)
    cfg, n = model.cfg, 4
    batch = make_batch(cfg, n=n, seed=3, per_sample=True)
    rng = np.random.RandomState(4)
    fake = rng.uniform(-1, 1, batch['image'].shape).astype('float32')
    alpha = rng.uniform(0, 1, (2, n, 1, 1, 1)).astype('float32')
    rows = slice(rank * n // world, (rank + 1) * n // world)

    def critic_loss(_, phase=None):
        real, mask, bbox = batch['image'][rows], batch['mask'][rows], batch['bbox'][rows]
        fakes = paddle.to_tensor(fake[rows])
        local = lambda x: crop_patch(x, bbox, cfg['bbox_size'])  # noqa: E731
        s_local, s_global = model.netD(paddle.concat([local(real), local(fakes)]),
                                       paddle.concat([real, fakes]))
        m = real.shape[0]
        wgan = wgan_d(s_local[:m], s_local[m:]) + wgan_d(s_global[:m], s_global[m:])
        gp = (gradient_penalty(model.netD.local_critic, local(real), local(fakes),
                               paddle.to_tensor(alpha[0, rows]), local(mask))
              + gradient_penalty(model.netD.global_critic, real, fakes,
                                 paddle.to_tensor(alpha[1, rows]), mask))
        return wgan + cfg['gp_lambda'] * gp, {}

    step = parallel.data_parallel(model.netD, critic_loss) if world > 1 else critic_loss
    loss, _ = step(None)
    loss.backward()
    np.savez(Path(out_dir) / f'grads_{world}_{rank}.npz',
             **{k: p.grad.numpy() for k, p in model.netD.named_parameters()})


@pytest.mark.slow
def test_gradient_penalty_through_data_parallel(tmp_path):
    """The critics' gradients (WGAN + masked per-sample gradient penalty, double backward
    through DataParallel) averaged over 2 ranks equal one process's on the whole batch."""
    gp_worker(tmp_path)  # one process, here
    launch([Path(__file__).resolve(), '--gp-worker', tmp_path], tmp_path / 'log')
    single, *ranks = (np.load(tmp_path / name) for name in
                      ('grads_1_0.npz', 'grads_2_0.npz', 'grads_2_1.npz'))
    assert set(single) == set(ranks[0]) and len(single) == 20  # 2 critics x (4 convs + fc) x w, b
    for key in single:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
        scale = float(np.abs(single[key]).max())
        # The final biases cancel in D(fake) - D(real) and never enter an input gradient.
        assert (scale == 0) == key.endswith('fc.bias'), key
        np.testing.assert_allclose(ranks[0][key], single[key], rtol=0, atol=1e-5 * scale,
                                   err_msg=key)


if __name__ == '__main__' and sys.argv[1:2] == ['--gp-worker']:
    gp_worker(sys.argv[2])
