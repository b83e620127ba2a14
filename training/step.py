"""One training iteration: critic steps on detached fakes, then a generator step against the
frozen critic (the official DeepFill schedule; rosinality's toggle of requires_grad)."""
import contextlib
import functools
import math

import paddle

from training.amp import as_float32, autocast
from training.parallel import data_parallel, mean_over_ranks, parallel


@contextlib.contextmanager
def frozen(layer):
    """Freezes ``layer``'s trainable parameters inside the block and restores exactly those
    after it, errors included. Parameters that never train (Paddle lists BatchNorm's running
    statistics as parameters with stop_gradient set) stay as they are. ``None``: no-op."""
    params = [] if layer is None else [p for p in layer.parameters() if not p.stop_gradient]
    for p in params:
        p.stop_gradient = True
    try:
        yield
    finally:
        for p in params:
            p.stop_gradient = False


def critic_loss(model, amp, batch, phase=None):
    """The critic loss on a batch. The generator runs without gradients (under autocast with
    --amp); the critic loss, gradient penalty included, stays float32: the penalty differentiates
    the critic twice, and in float16 its unscaled inner gradient can underflow."""
    with paddle.no_grad(), autocast(amp):
        out = model.run(batch)
    return model.d_loss(batch, as_float32(out), phase)


def generator_loss(model, amp, batch, phase=None):
    """The generator loss on a batch; forward and loss under autocast with --amp."""
    with autocast(amp):
        loss, logs = model.g_loss(batch, model.run(batch), phase)
    return loss.astype('float32') if amp else loss, logs


def loss_functions(model, amp=None):
    """(critic, generator): callables (batch, phase) -> (loss, logs) for ``train_step``; in a
    data-parallel run (``dist.init_parallel_env`` done, several ranks) through
    ``training.parallel.data_parallel``."""
    critic = functools.partial(critic_loss, model, amp)
    generator = functools.partial(generator_loss, model, amp)
    if not parallel():
        return critic, generator
    return (data_parallel(model.netD, critic) if model.netD is not None else critic,
            data_parallel(model.netG, generator))


def check_finite(loss, name, it, run_dir):
    """Stops on NaN/Inf before the optimizer step, so the last checkpoint stays good."""
    value = float(loss)
    if not math.isfinite(value):
        raise FloatingPointError(
            f'{name} loss is {value} at iteration {it + 1}; stopped without saving. The last '
            f'good checkpoint is {run_dir}/latest.safetensors (if any). Lower --lr or check '
            'the data.')


def checked_logs(loss, logs, name, it, run_dir):
    """The step's logs averaged over the ranks; a non-finite loss stops all ranks at once."""
    values = mean_over_ranks([loss.detach(), *logs.values()])
    check_finite(values[0], name, it, run_dir)
    return dict(zip(logs, values[1:]))


def train_step(model, opt_g, opt_d, next_batch, d_steps, it=0, run_dir='.', g_step=True,
               phase=None, losses=None, scaler=None):
    """One iteration: ``d_steps`` critic steps on fresh batches, then one generator step
    (skipped when ``g_step`` is False: GLCIC's critic-only phase); ``phase`` goes to the losses
    (``model.schedule(it)`` gives all three).

    The critic sees detached fakes (``d_loss`` detaches), so it never writes netG grads; during
    the generator step the critic is frozen, so it collects no grads either. ``losses`` comes
    from ``loss_functions`` (default: single process, float32); ``scaler`` is the generator's
    paddle.amp.GradScaler under float16 --amp. Returns the detached logs of the last critic step
    and of the generator step, averaged over the ranks.
    """
    critic, generator = losses or loss_functions(model)
    logs = {}
    for _ in range(d_steps):
        loss_d, logs_d = critic(next_batch(), phase)
        logs.update(checked_logs(loss_d, logs_d, 'd', it, run_dir))
        opt_d.clear_grad()
        loss_d.backward()
        opt_d.step()
    if not g_step:
        return logs
    batch = next_batch()
    with frozen(model.netD if opt_d is not None else None):
        loss_g, logs_g = generator(batch, phase)
        logs.update(checked_logs(loss_g, logs_g, 'g', it, run_dir))
        opt_g.clear_grad()
        if scaler is None:
            loss_g.backward()
            opt_g.step()
        else:  # dynamic loss scaling: the step is skipped (and the scale halved) on inf/NaN grads
            scaler.scale(loss_g).backward()
            scaler.step(opt_g)
            scaler.update()
    return logs
