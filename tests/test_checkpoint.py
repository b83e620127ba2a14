"""Checkpoint files: no code runs on load, atomic writes, structured optimizer state."""
import os
import pickle
from pathlib import Path

import numpy as np
import paddle
import pytest

from models.deepfill_v1 import DeepFillV1
from weights.checkpoint import (CheckpointError, link_or_copy, load_model_state,
                                load_optimizer_state, read_checkpoint, save_checkpoint)

FIXTURES = Path(__file__).resolve().parent / 'fixtures'


class Evil:
    """Unpickling this creates a file: the attack a .pdparams can carry."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, 'w'))


def tiny(seed=0):
    paddle.seed(seed)
    return DeepFillV1(**DeepFillV1.TINY)


def test_pickles_that_reference_code_are_refused(tmp_path):
    target = tmp_path / 'pwned'
    path = tmp_path / 'weights.pdparams'
    path.write_bytes(pickle.dumps({'x': Evil(str(target))}))
    with pytest.raises(CheckpointError, match=r'weights.pdparams: refusing to load io.open'):
        read_checkpoint(path)
    assert not target.exists()
    disguised = tmp_path / 'weights.safetensors'  # a pickle under a safe name
    disguised.write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match='not a safetensors checkpoint'):
        read_checkpoint(disguised)
    assert not target.exists()


@pytest.mark.parametrize('nested', [False, True])
def test_paddle_pdparams_load_without_unpickling_code(tmp_path, nested):
    """paddle.save's pickles (this Paddle version's) read through the allow-list reader."""
    model = tiny()
    path = tmp_path / 'w.pdparams'
    state = {'netG': model.netG.state_dict(), 'netD': model.netD.state_dict()} if nested \
        else model.state_dict()
    paddle.save(state, str(path))
    tensors, run_state = read_checkpoint(path)
    assert run_state == {}
    fresh = tiny(seed=1)
    load_model_state(fresh, tensors, path)
    assert all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


def test_a_checkpoint_of_an_earlier_main_loads_and_resumes():
    """tests/fixtures/checkpoint_main_6dbfe7f.safetensors: train.py of commit 6dbfe7f, 2 iterations
    of a cnum-2 DeepFill v1 (optimizer states included); its outputs were computed then."""
    from inference import load_model
    model, state = load_model(FIXTURES / 'checkpoint_main_6dbfe7f.safetensors')
    ref = np.load(FIXTURES / 'checkpoint_main_6dbfe7f_outputs.npz')
    with paddle.no_grad():
        out = model(paddle.to_tensor(ref['image']), paddle.to_tensor(ref['mask']))
    for key in ('coarse', 'pred', 'composite'):  # (other Paddle versions: float rounding)
        assert np.abs(out[key].numpy() - ref[key]).max() <= 1e-5 * np.abs(ref[key]).max(), key
    assert state['iteration'] == 2 and state['batches'] == 4
    tensors, _ = read_checkpoint(FIXTURES / 'checkpoint_main_6dbfe7f.safetensors')
    with paddle.utils.unique_name.guard():
        model = DeepFillV1(**{k: v for k, v in state['config'].items() if k in DeepFillV1.DEFAULTS})
        optimizers = model.make_optimizers()
    load_model_state(model, tensors)
    for name, opt in optimizers.items():
        load_optimizer_state(opt, model, name, tensors, state)
    restored = {k: v.numpy() for k, v in optimizers['optD'].state_dict().items()}
    assert sum(np.abs(v).sum() for v in restored.values()) > 0
    for key, value in tensors.items():
        if key.startswith('optD/netD.') and ':moment' in key:
            struct, acc = key[len('optD/'):].split(':')
            param = dict(model.named_parameters())[struct].name
            assert np.array_equal(restored[f'{param}_{acc}'], value), key


def test_save_is_atomic_and_records_state(tmp_path):
    model = tiny()
    path = tmp_path / 'iter_0000001.safetensors'
    save_checkpoint(path, model, {}, dict(model='deepfill_v1', config=model.cfg, iteration=1))
    link_or_copy(path, tmp_path / 'latest.safetensors')
    assert sorted(os.listdir(tmp_path)) == ['iter_0000001.safetensors', 'latest.safetensors']
    tensors, state = read_checkpoint(tmp_path / 'latest.safetensors')
    assert state['config'] == model.cfg and state['iteration'] == 1
    assert set(tensors) == {f'model/{k}' for k in model.state_dict()}


def test_optimizer_state_uses_structured_names_and_round_trips(tmp_path):
    model = tiny()
    opt = paddle.optimizer.Adam(1e-3, parameters=model.netG.parameters())
    x = paddle.rand([1, 3, 64, 64])
    mask = paddle.zeros([1, 1, 64, 64])
    model(x, mask)['pred'].mean().backward()
    opt.step()
    path = tmp_path / 'c.safetensors'
    save_checkpoint(path, model, {'optG': opt}, {})
    tensors, state = read_checkpoint(path)
    assert 'optG/netG.coarse.conv1.conv.weight:moment1_0' in tensors
    # A process that built other layers first gets other auto names; loading still matches.
    paddle.nn.Conv2D(1, 1, 1)
    fresh = tiny(seed=1)
    fresh_opt = paddle.optimizer.Adam(1e-3, parameters=fresh.netG.parameters())
    load_model_state(fresh, tensors, path)
    load_optimizer_state(fresh_opt, fresh, 'optG', tensors, state)
    name = fresh.netG.coarse.conv1.conv.weight.name
    restored = fresh_opt.state_dict()[f'{name}_moment1_0'].numpy()
    assert np.array_equal(restored, tensors['optG/netG.coarse.conv1.conv.weight:moment1_0'])


def test_optimizer_state_loads_whatever_accumulator_counter_the_process_is_at(tmp_path):
    """Paddle numbers accumulators per process (``<param>_moment1_<n>``): a notebook that already
    trained a model with the same parameter names gets other suffixes. Loading matches by
    accumulator type, restores the values, and the next step runs."""
    def build(seed):
        with paddle.utils.unique_name.guard():  # same auto names each time, as in train.py
            model = tiny(seed)
            return model, paddle.optimizer.Adam(1e-3, parameters=model.netG.parameters())

    def step(model, opt):
        mask = paddle.zeros([1, 1, 64, 64])
        mask[:, :, 16:48, 16:48] = 1.0
        model(paddle.rand([1, 3, 64, 64]), mask)['pred'].mean().backward()
        opt.step()
        opt.clear_grad()

    step(*build(0))  # an earlier model in this process advances the accumulator counters
    model, opt = build(0)
    step(model, opt)
    path = tmp_path / 'c.safetensors'
    save_checkpoint(path, model, {'optG': opt}, {})
    tensors, state = read_checkpoint(path)
    fresh, fresh_opt = build(1)
    load_model_state(fresh, tensors, path)
    load_optimizer_state(fresh_opt, fresh, 'optG', tensors, state)
    name = fresh.netG.coarse.conv1.conv.weight.name
    (restored,) = [v for k, v in fresh_opt.state_dict().items() if k.startswith(name + '_moment1')]
    (saved,) = [v for k, v in tensors.items()
                if k.startswith('optG/netG.coarse.conv1.conv.weight:moment1')]
    assert np.abs(saved).sum() > 0 and np.array_equal(restored.numpy(), saved)
    step(fresh, fresh_opt)


def test_a_checkpoint_of_another_shape_is_a_clear_error(tmp_path):
    path = tmp_path / 'c.safetensors'
    save_checkpoint(path, tiny(), {}, {})
    tensors, _ = read_checkpoint(path)
    other = DeepFillV1(**{**DeepFillV1.TINY, 'cnum': 16})
    with pytest.raises(CheckpointError, match='has shape'):
        load_model_state(other, tensors, path)
    del tensors['model/netG.coarse.conv1.conv.bias']
    with pytest.raises(CheckpointError, match='missing'):
        load_model_state(tiny(), tensors, path)


def test_restoring_optimizer_state_moves_no_parameter(tmp_path):
    """The zero-gradient step that creates the accumulators leaves the weights as loaded, for
    Adam and Adadelta; state the checkpoint lacks stays fresh."""
    model = tiny()
    opt = paddle.optimizer.Adam(1e-3, parameters=model.netG.coarse.parameters())
    mask = paddle.zeros([1, 1, 64, 64])
    mask[:, :, 16:48, 16:48] = 1.0
    model(paddle.rand([1, 3, 64, 64]), mask)['coarse'].mean().backward()
    opt.step()
    path = tmp_path / 'c.safetensors'
    save_checkpoint(path, model, {'optG': opt}, {})
    tensors, state = read_checkpoint(path)
    for make in (lambda p: paddle.optimizer.Adam(1e-3, parameters=p),
                 lambda p: paddle.optimizer.Adadelta(1.0, parameters=p)):
        fresh = tiny(seed=1)
        load_model_state(fresh, tensors, path)
        before = {k: v.numpy().copy() for k, v in fresh.state_dict().items()}
        fresh_opt = make(fresh.netG.parameters())  # covers the refinement net too
        if isinstance(fresh_opt, paddle.optimizer.Adam):
            load_optimizer_state(fresh_opt, fresh, 'optG', tensors, state)
            name = fresh.netG.refine.xconv1.conv.weight.name
            assert float(fresh_opt.state_dict()[f'{name}_moment1_0'].abs().sum()) == 0
        else:
            with pytest.raises(CheckpointError, match='does not keep'):
                load_optimizer_state(fresh_opt, fresh, 'optG', tensors, state)
        assert all(np.array_equal(before[k], v.numpy()) for k, v in fresh.state_dict().items())
