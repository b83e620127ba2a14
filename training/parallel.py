"""Data-parallel training (paddle.distributed.launch): per-loss DataParallel wrappers, and the
collectives that keep the ranks in step (averaged logs, a common stop, a replica check)."""
import paddle
import paddle.distributed as dist


def parallel():
    """Whether this process is one of several data-parallel ranks."""
    return dist.is_initialized() and dist.get_world_size() > 1


def check_parallel(cfg, world):
    """Settings a run on ``world`` ranks cannot take; one-line errors before any rank starts."""
    if cfg['batch_size'] % world:
        raise ValueError(f"batch_size: {cfg['batch_size']} (the global batch) does not split "
                         f"evenly over {world} ranks")
    if world > 1 and str(cfg['device']).startswith('gpu:'):
        raise ValueError(f"device: '{cfg['device']}' names one GPU for all {world} ranks; pass "
                         "--device gpu (each rank takes the GPU the launcher gives it)")


class ParallelLoss(paddle.nn.Layer):
    """A loss as the forward of a layer that holds only ``net``, the network the loss trains.

    Wrapped in paddle.DataParallel, it all-reduces (averages) ``net``'s gradients during each
    backward of that loss and touches nothing else: in a critic step the generator runs without
    gradients, in a generator step the critic is frozen. The model itself stays unwrapped, so
    its parameter names, and with them the checkpoint keys, are those of a single process.
    """

    def __init__(self, net, loss_fn):
        super().__init__()
        self.net = net  # registered: DataParallel syncs (and at start broadcasts) these
        self.loss_fn = loss_fn

    def forward(self, batch, phase=None):
        return self.loss_fn(batch, phase)


def data_parallel(net, loss_fn):
    """paddle.DataParallel over ``ParallelLoss(net, loss_fn)``. ``find_unused_parameters``: a
    layer the loss never reaches (the refinement network while pretraining the coarse one) is
    marked ready instead of holding back the gradient all-reduce."""
    return paddle.DataParallel(ParallelLoss(net, loss_fn), find_unused_parameters=True)


def mean_over_ranks(values):
    """Scalar tensors averaged over the ranks with one all_reduce; as given in one process."""
    if not parallel():
        return values
    stacked = paddle.stack([v.astype('float32').reshape([]) for v in values])
    dist.all_reduce(stacked)
    return list((stacked / dist.get_world_size()).unbind())


def any_rank(flags):
    """Whether ``flags`` is non-empty on any rank (signals reach ranks at different moments)."""
    if not parallel():
        return bool(flags)
    flag = paddle.to_tensor([int(bool(flags))])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def union_over_ranks(items):
    """The union of every rank's ``items`` (a set of strings); ``items`` in one process."""
    if not parallel():
        return set(items)
    found = []
    dist.all_gather_object(found, sorted(items))
    return set().union(*map(set, found))


def rank_drift(model):
    """max |tensor - rank 0's tensor| over the model's float state and all ranks; data
    parallelism keeps the replicas bit-identical, so anything but 0 means they diverged."""
    flat = paddle.concat([v.detach().astype('float32').reshape([-1])
                          for v in model.state_dict().values() if paddle.is_floating_point(v)])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    drift = (flat - reference).abs().max()
    dist.all_reduce(drift, op=dist.ReduceOp.MAX)
    return float(drift)
