"""train.py and test.py end to end on tiny configs: logs, checkpoints, exact resume, bad input."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = ['--image_size', '64', '--bbox_size', '32', '--max_delta', '8', '--cnum', '8',
             '--d_cnum', '8', '--batch_size', '2', '--d_steps', '2', '--num_workers', '0',
             '--log_interval', '1', '--eval_interval', '2', '--ckpt_interval', '2',
             '--val_count', '2', '--device', 'cpu', '--threads', '1']


def run(script, *args, check=True):
    proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f'{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}')
    return proc


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """Four small photos of mixed modes and sizes, and one corrupt file."""
    folder = tmp_path_factory.mktemp('photos')
    rng = np.random.RandomState(0)
    for i, (h, w) in enumerate([(80, 96), (48, 72), (96, 64), (64, 64)]):
        img = rng.randint(0, 255, (h // 8, w // 8, 3)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        pil = Image.fromarray(img)
        pil = pil.convert('L') if i == 1 else pil.convert('RGBA') if i == 2 else pil
        pil.save(folder / f'photo{i}.png')
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    return folder


def train(photos, root, name, *extra, check=True):
    return run('train.py', '--data', photos, '--val_data', photos, '--checkpoints_dir', root,
               '--run_name', name, *TINY_ARGS, *extra, check=check)


@pytest.fixture(scope='module')
def smoke(photos, tmp_path_factory):
    root = tmp_path_factory.mktemp('runs')
    proc = train(photos, root, 'smoke', '--max_iters', 2)
    return root / 'smoke', proc


def model_tensors(path):
    return {k: v for k, v in load_file(str(path)).items()}


def test_train_writes_logs_config_and_checkpoints(smoke):
    run_dir, proc = smoke
    log = (run_dir / 'log.txt').read_text()
    lines = [line for line in log.splitlines() if line.startswith('iter ')]
    assert len(lines) == 2
    keys = lines[-1].split()[0::2]
    assert keys == ['iter', 'd_wgan', 'd_gp', 'd', 'g_adv', 'g_l1', 'g_ae', 'g', 'lr', 'dt']
    assert 'eval iter 0 val_hole_l1' in log and 'eval iter 2 val_hole_l1' in log
    assert (run_dir / 'config.yaml').exists() and (run_dir / 'latest.safetensors').exists()
    assert (run_dir / 'iter_0000002.safetensors').exists()
    assert (run_dir / 'samples' / 'iter_0000002.png').exists()
    assert any((run_dir / 'vdl').iterdir())
    assert 'skipped 1 unreadable image files' in log and 'broken.jpg' in proc.stderr


def test_resume_continues_exactly(photos, smoke, tmp_path):
    straight = train(photos, tmp_path, 'straight', '--max_iters', 4)
    assert straight.returncode == 0
    train(photos, tmp_path, 'split', '--max_iters', 2)
    train(photos, tmp_path, 'split', '--resume', '--max_iters', 4)
    a = model_tensors(tmp_path / 'straight' / 'latest.safetensors')
    b = model_tensors(tmp_path / 'split' / 'latest.safetensors')
    assert a.keys() == b.keys() and any(k.startswith('optD/') for k in a)
    assert all(np.array_equal(a[k], b[k]) for k in a), 'resumed run differs'
    assert 'resumed from' in (tmp_path / 'split' / 'log.txt').read_text()


def test_nan_loss_stops_and_keeps_the_last_checkpoint(photos, smoke, tmp_path):
    train(photos, tmp_path, 'nan', '--max_iters', 2)
    latest = tmp_path / 'nan' / 'latest.safetensors'
    before = latest.read_bytes()
    proc = train(photos, tmp_path, 'nan', '--resume', '--max_iters', 4, '--gan_alpha', 'nan',
                 check=False)
    assert proc.returncode == 1
    assert 'g loss is nan at iteration 3' in proc.stderr and 'Traceback' not in proc.stderr
    assert latest.read_bytes() == before


def test_ctrl_c_saves_and_exits_cleanly(photos, tmp_path):
    cmd = [sys.executable, str(ROOT / 'train.py'), '--data', photos, '--checkpoints_dir',
           tmp_path, '--run_name', 'stop', *TINY_ARGS, '--max_iters', 10000,
           '--eval_interval', 10000, '--ckpt_interval', 10000, '--val_count', 0]
    proc = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = tmp_path / 'stop' / 'log.txt'
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and 'iter 2 ' in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    text = log.read_text()
    assert 'interrupted at iteration' in text
    saved = int(text.split('interrupted at iteration ')[1].split(';')[0])
    assert (tmp_path / 'stop' / f'iter_{saved:07d}.safetensors').exists()


def test_test_py_evaluates_with_baseline(smoke, tmp_path):
    run_dir, _ = smoke
    out = tmp_path / 'eval'
    proc = run('test.py', '--checkpoint', run_dir / 'latest.safetensors', '--out_dir', out,
               '--baseline', 'telea', '--device', 'cpu')
    lines = (out / 'metrics.txt').read_text().splitlines()
    assert lines[1].startswith('method model hole_ratio') and 'method telea hole_ratio' in lines[-1]
    assert 'hole_l1' in proc.stdout and 'psnr' in proc.stdout
    rows = (out / 'metrics.csv').read_text().splitlines()
    assert rows[0] == 'method,image,bucket,hole_ratio,hole_l1,psnr,ssim,l1,l2,tv'
    assert len(rows) == 1 + 2 * 4  # 4 readable photos, model + telea
    assert len(list((out / 'composites').iterdir())) == 4 and (out / 'grids').is_dir()


def test_test_py_reports_metrics_by_hole_ratio(smoke, tmp_path):
    import csv
    run_dir, _ = smoke
    out = tmp_path / 'eval'
    run('test.py', '--checkpoint', run_dir / 'latest.safetensors', '--out_dir', out,
        '--mask_type', 'irregular', '--seed', '3', '--device', 'cpu')
    with open(out / 'metrics.csv') as f:
        per_image = list(csv.DictReader(f))
    with open(out / 'metrics_by_hole_ratio.csv') as f:
        table = {row['bucket']: row for row in csv.DictReader(f)}
    for row in per_image:  # (lo, hi] buckets of the measured ratio
        lo, hi = map(float, row['bucket'].split('-'))
        assert lo < float(row['hole_ratio']) <= hi
    assert int(table['all']['count']) == len(per_image) == 4
    assert sum(int(t['count']) for b, t in table.items() if b != 'all') == 4
    for bucket, t in table.items():
        chosen = [float(r['psnr']) for r in per_image if bucket in ('all', r['bucket'])]
        assert float(t['psnr']) == pytest.approx(np.mean(chosen), rel=1e-6)
    text = (out / 'metrics.txt').read_text()
    assert all(f'hole_ratio {b} count' in text for b in table if b != 'all')


def test_test_py_single_image_of_any_size(smoke, tmp_path):
    run_dir, _ = smoke
    rng = np.random.RandomState(1)
    image = rng.randint(0, 255, (70, 93, 3)).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / 'photo.png')
    rgba = np.zeros((70, 93, 4), np.uint8)
    rgba[20:40, 30:60] = 255  # white strokes on a transparent layer
    Image.fromarray(rgba).save(tmp_path / 'mask.png')
    run('test.py', '--checkpoint', run_dir / 'latest.safetensors', '--image',
        tmp_path / 'photo.png', '--mask', tmp_path / 'mask.png', '--output', tmp_path / 'o.png',
        '--strategy', 'crop')  # a window around the hole, shrunk to the training size 64
    out = np.asarray(Image.open(tmp_path / 'o.png'))
    assert out.shape == image.shape
    hole = np.zeros((70, 93), bool)
    hole[20:40, 30:60] = True
    assert np.array_equal(out[~hole], image[~hole])
    assert not np.array_equal(out[hole], image[hole])


@pytest.mark.parametrize('args,message', [
    (['--cnumm', '3'], "unknown key 'cnumm' (did you mean cnum"),
    (['--batch_size', 'two'], "'batch_size' expects int"),
    (['--data', '/no/such/folder'], '/no/such/folder is not a folder'),
    (['--model', 'deepfill_v9'], "unknown model 'deepfill_v9'"),
    (['--config', '/no/such.yaml'], '/no/such.yaml does not exist'),
])
def test_train_bad_input_is_one_clear_line(args, message, tmp_path):
    proc = run('train.py', '--checkpoints_dir', tmp_path, *args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and 'Traceback' not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_existing_run_needs_resume_or_overwrite(smoke):
    run_dir, _ = smoke
    proc = run('train.py', '--checkpoints_dir', run_dir.parent, '--run_name', 'smoke',
               check=False)
    assert proc.returncode == 2 and '--resume' in proc.stderr


@pytest.mark.parametrize('make,message', [
    (lambda d: None, 'nope.safetensors does not exist'),
    (lambda d: (d / 'nope.safetensors').write_bytes(b'garbage'), 'not a safetensors checkpoint'),
    (lambda d: (d / 'nope.pdparams').write_bytes(b'x'), 'not a readable torch/paddle checkpoint'),
])
def test_test_py_bad_checkpoint(make, message, tmp_path):
    make(tmp_path)
    name = 'nope.pdparams' if 'torch/paddle' in message else 'nope.safetensors'
    proc = run('test.py', '--checkpoint', tmp_path / name, check=False)
    assert proc.returncode == 2 and message in proc.stderr and 'Traceback' not in proc.stderr


def test_test_py_mask_errors(smoke, tmp_path):
    run_dir, _ = smoke
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / 'p.png')
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(tmp_path / 'empty.png')
    Image.fromarray(np.full((30, 40), 255, np.uint8)).save(tmp_path / 'small.png')
    for mask, message in [('empty.png', 'marks no hole'), ('small.png', 'is 40x30 but')]:
        proc = run('test.py', '--checkpoint', run_dir / 'latest.safetensors', '--image',
                   tmp_path / 'p.png', '--mask', tmp_path / mask, '--output', tmp_path / 'o.png',
                   check=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_test_py_folder_mode_matches_masks_by_name(smoke, tmp_path):
    run_dir, _ = smoke
    (tmp_path / 'in').mkdir()
    (tmp_path / 'masks').mkdir()
    rng = np.random.RandomState(2)
    for name, (h, w) in [('a', (40, 56)), ('b', (33, 47))]:
        Image.fromarray(rng.randint(0, 255, (h, w, 3)).astype(np.uint8)).save(
            tmp_path / 'in' / f'{name}.jpg')
        mask = np.zeros((h, w), np.uint8)
        mask[5:20, 10:30] = 255
        Image.fromarray(mask).save(tmp_path / 'masks' / f'{name}.png')
    run('test.py', '--checkpoint', run_dir / 'latest.safetensors', '--image', tmp_path / 'in',
        '--mask', tmp_path / 'masks', '--output', tmp_path / 'out')
    assert Image.open(tmp_path / 'out' / 'a.png').size == (56, 40)
    assert Image.open(tmp_path / 'out' / 'b.png').size == (47, 33)
    (tmp_path / 'masks' / 'b.png').unlink()
    proc = run('test.py', '--checkpoint', run_dir / 'latest.safetensors', '--image',
               tmp_path / 'in', '--mask', tmp_path / 'masks', '--output', tmp_path / 'o2',
               check=False)
    assert proc.returncode == 2 and 'no file named b.* in' in proc.stderr


def test_command_line_values_are_typed():
    from training.config import check_key
    cfg = {'lr': 1e-4, 'flip': True, 'batch_size': 16, 'run_name': 'x', 'val_data': None}
    cli = lambda key, text: check_key(cfg, key, text, 'command line')  # noqa: E731
    assert cli('lr', '1e-4') == 1e-4 and cli('lr', '3') == 3.0
    assert cli('flip', 'false') is False and cli('batch_size', '8') == 8
    assert cli('run_name', 'nan') == 'nan' and cli('run_name', '123') == '123'
    assert cli('val_data', 'null') is None and cli('val_data', 'v.flist') == 'v.flist'
    with pytest.raises(ValueError, match="'batch_size' expects int"):
        cli('batch_size', '2.5')
    assert check_key({'lr': 1e-4}, 'lr', 3, 'cli') == 3.0
    with pytest.raises(ValueError, match="'lr' expects float"):
        check_key({'lr': 1e-4}, 'lr', 'fast', 'cli')
    with pytest.raises(ValueError, match="expects bool"):
        check_key({'flip': True}, 'flip', 1, 'cli')


def test_overwrite_clears_only_what_a_run_wrote(tmp_path):
    from training.run import clear_run
    for name in ('iter_0000002.safetensors', 'latest.safetensors', 'log.txt', 'notes.md'):
        (tmp_path / name).write_text('x')
    (tmp_path / 'samples').mkdir()
    (tmp_path / 'samples' / 'iter_0000002.png').write_text('x')
    clear_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['notes.md']


def test_init_from_starts_a_fresh_run_from_other_weights(smoke, photos, tmp_path):
    run_dir, _ = smoke
    source = run_dir / 'latest.safetensors'
    train(photos, tmp_path, 'init', '--max_iters', 2, '--lr', 0, '--init_from', source)
    log = (tmp_path / 'init' / 'log.txt').read_text()
    assert f'# initialised from {source}' in log and 'iter 1 ' in log
    before, after = model_tensors(source), model_tensors(tmp_path / 'init' / 'latest.safetensors')
    weights = [k for k in before if k.startswith('model/') and k.endswith('weight')]
    assert weights and all(np.array_equal(before[k], after[k]) for k in weights)  # lr 0
    proc = train(photos, tmp_path, 'wrong', '--max_iters', 1, '--init_from', source,
                 '--model', 'deepfill_v2', check=False)
    assert proc.returncode == 2 and 'holds a deepfill_v1 model' in proc.stderr


def test_missing_vgg_weights_fail_before_anything_is_written(photos, tmp_path):
    proc = run('train.py', '--model', 'pconv', '--data', photos, '--checkpoints_dir', tmp_path,
               '--vgg_weights', tmp_path / 'nope.pth', '--device', 'cpu', check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert 'vgg_weights' in proc.stderr and 'vgg16-397923af.pth' in proc.stderr
    assert not any(tmp_path.iterdir())  # no run folder


def test_resume_with_a_paper_config_finds_the_run_without_data(tmp_path):
    """``--config configs/X.yaml --resume``: the config only names the run folder; its data
    comes from the checkpoint, so a config without ``data`` is no error there."""
    from training.run import open_run
    from weights.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match='deepfill_v1_places2/latest.safetensors does not'):
        open_run(str(ROOT / 'configs' / 'deepfill_v1_places2.yaml'), 'latest', False,
                 {'checkpoints_dir': str(tmp_path)})
    with pytest.raises(ValueError, match='needs --data'):
        open_run(str(ROOT / 'configs' / 'deepfill_v1_places2.yaml'), None, False, {})
