"""Trains any inpainting model of models/ with its paper's schedule.

    python train.py                                   # quick start: builtin photos, CPU, < 10 min
    python train.py --model pconv --vgg_weights checkpoints/vgg16-397923af.pth
    python train.py --config configs/deepfill_v1_places2.yaml --data /data/places2/train.flist
    python train.py --run_name deepfill_v1_places2 --resume          # continue exactly
    python train.py --max_iters 2 --image_size 64 --bbox_size 32 --max_delta 8 --cnum 8 \
        --d_cnum 8 --batch_size 2 --run_name smoke --overwrite        # tiny CPU smoke run
    python -m paddle.distributed.launch --gpus 0,1,2,3 train.py \
        --config configs/deepfill_v1_places2.yaml --data /data/places2/train.flist --amp
    python -m paddle.distributed.launch --nproc_per_node 2 train.py --threads 1  # 2 CPU ranks

Config precedence: RUN_DEFAULTS (training/config.py) < the model's DEFAULTS (paper values) <
the YAML given by --config (default: configs/<model>_quickstart.yaml) < --key value on the command
line. Unknown keys and wrongly typed values are errors. The resolved config is written to the run
folder, to the top of log.txt and into every checkpoint.

Schedule: per iteration, the model's ``schedule(it)`` critic steps, each on a fresh batch and mask
with the generator's output detached, then one generator step with the critic frozen. All
randomness (data order, crops, masks, gradient-penalty mixing, a model's extra inputs) is a
function of the seed and the number of batches drawn, so ``--resume`` continues exactly where a
checkpoint left off.

Data parallelism (``paddle.distributed.launch``): ``batch_size`` stays the global batch; rank r
trains on rows [r*b, (r+1)*b) of every batch (b = batch_size / ranks), drawn with the same
seeds as in one process, and paddle.DataParallel averages the gradients, so N ranks train what
one process would on the whole batch. Rank 0 alone logs, evaluates and writes checkpoints, which
are the same files a single process writes (either kind resumes the other).
"""
import argparse
import json
import signal
import sys

import numpy as np

import runtime
from data import ImageDataset, masks_from_config
from models import build
from training.amp import amp_dtype
from training.batches import BatchStream, validation_batch
from training.config import parse_overrides
from training.parallel import any_rank, check_parallel, union_over_ranks
from training.run import Checkpoints, evaluate, finish_run, open_run, restore, start_run
from training.step import loss_functions, train_step
from weights.features import load_feature_weights

import paddle  # noqa: E402  (after runtime: the CPU switches come first)
import paddle.distributed as dist  # noqa: E402
from tqdm import tqdm  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Any config key is accepted as --key value; see RUN_DEFAULTS in '
               'training/config.py and DEFAULTS in models/<model>.py.')
    parser.add_argument('--config', help='YAML of key: value overrides')
    parser.add_argument('--resume', nargs='?', const='latest',
                        help='continue the run (default: its latest.safetensors) or a checkpoint')
    parser.add_argument('--overwrite', action='store_true', help='start an existing run afresh')
    return parser.parse_known_args(argv)


def stop_requests():
    """Ctrl-C or the launcher's SIGTERM finish the iteration, save and exit; a second Ctrl-C
    aborts. Returns the list the handler appends the signals to."""
    stop = []

    def on_signal(signum, frame):
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not stop:
            tqdm.write('interrupted: saving a checkpoint after this iteration (Ctrl-C again to '
                       'abort)')
        stop.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def main(argv=None):
    args, rest = parse_args(argv)
    cfg, run_dir, resume = open_run(args.config, args.resume, args.overwrite,
                                    parse_overrides(rest))
    world, rank = dist.get_world_size(), dist.get_rank()  # from the launcher's environment
    check_parallel(cfg, world)
    device = runtime.setup(cfg['device'], cfg['threads'])
    amp = amp_dtype(cfg, device)
    if world > 1:
        dist.init_parallel_env()
    lead = rank == 0  # logs, evaluates and writes checkpoints; every rank trains
    paddle.seed(cfg['seed'])
    np.random.seed(cfg['seed'])

    # Data, model, optimizers (under a name guard) and the files the losses need (VGG), all
    # before anything is written.
    dataset = ImageDataset(cfg['data'], cfg['image_size'], train=True,
                           random_crop=cfg['random_crop'], flip=cfg['flip'])
    masks = masks_from_config(cfg)
    with paddle.utils.unique_name.guard():
        model = build(cfg['model'], cfg)
        optimizers = model.make_optimizers()
    load_feature_weights(model)
    val = validation_batch(cfg, masks, model) if lead else None
    ranks = f' x {world} ranks' if world > 1 else ''
    log = start_run(run_dir, cfg, lead, args.overwrite, resume is None,
                    f'run {cfg["run_name"]} on {device}{ranks} (paddle {paddle.__version__}); '
                    f'config: {json.dumps(cfg)}')
    state = resume[1] if resume else {}
    next_batch = BatchStream(dataset, masks, model, cfg, state.get('batches', 0), rank, world)
    opt_g, opt_d = optimizers['optG'], optimizers.get('optD')
    scaler = paddle.amp.GradScaler() if amp == 'float16' else None  # float16 loss scaling
    it = restore(model, optimizers, scaler, resume, cfg, log, dataset)
    losses = loss_functions(model, amp)  # data-parallel wrappers when launched on several ranks

    ckpt = Checkpoints(run_dir, model, optimizers, cfg, scaler, log if lead else None, world)
    stop = stop_requests()
    if it == 0 and lead:
        evaluate(model, val, it, log, run_dir)
    bar = tqdm(total=cfg['max_iters'], initial=it, unit='it', mininterval=2, dynamic_ncols=True,
               disable=not lead)
    model.train()
    log.reset()
    halted = False
    while it < cfg['max_iters'] and not (halted := any_rank(stop)):  # ranks stop together
        d_steps, g_step, phase = model.schedule(it)
        log.add(train_step(model, opt_g, opt_d, next_batch, d_steps, it, run_dir, g_step, phase,
                           losses, scaler))
        it += 1
        bar.update(1)
        if it % cfg['log_interval'] == 0 or it == cfg['max_iters']:
            log.report(it, lr=opt_g.get_lr())
        if (it % cfg['eval_interval'] == 0 or it == cfg['max_iters']) and lead:
            evaluate(model, val, it, log, run_dir)
        if it % cfg['ckpt_interval'] == 0 or it == cfg['max_iters']:
            path = ckpt.save(it, next_batch.batches)
    bar.close()
    halted = halted or any_rank(stop)
    if halted:
        path = ckpt.save(it, next_batch.batches)
    finish_run(log, run_dir, it, path if halted else None, world,
               union_over_ranks(next_batch.skipped))  # unreadable files met by any rank
    return 0


if __name__ == '__main__':
    sys.exit(runtime.run_cli(main))
