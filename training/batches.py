"""Training batches: an endless, resumable stream of crops with their masks, mixing weights and
extra inputs, every random draw a function of the seed and the number of batches drawn.

Data parallelism: rank r of N takes rows [r*b, (r+1)*b) of each global batch (b = batch/N). The
masks, boxes and gradient-penalty mixing weights are drawn for the whole global batch and then
sliced, and a model's per-sample draws (``extra_inputs``) use one generator per global row, so N
ranks see exactly what one process would.
"""
import signal

import numpy as np
import paddle

from data import ImageDataset, InfiniteSampler, collate, mask_for_index, validation_source


def ignore_sigint(worker_id):
    """DataLoader workers leave Ctrl-C to the main process, which saves before exiting."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def to_batch(image, mask, bbox, extra, alpha=None):
    """The batch dict the models' losses take; numpy parts become tensors (bbox stays numpy)."""
    batch = dict(image=paddle.to_tensor(image), mask=paddle.to_tensor(mask), bbox=bbox,
                 extra={k: paddle.to_tensor(v) for k, v in extra.items()})
    if alpha is not None:
        batch['alpha'] = paddle.to_tensor(alpha)
    return batch


class BatchStream:
    """``stream()`` -> the next batch for this rank; ``stream.batches`` counts global batches.

    Args:
        dataset: the training ImageDataset.
        masks: the run's MaskGenerator (``data.masks_from_config``).
        model: its ``MIXING_DRAWS`` and ``extra_inputs`` shape the batch.
        start_batch: batches already drawn (a resume continues the streams there).
    """

    def __init__(self, dataset, masks, model, cfg, start_batch=0, rank=0, world=1):
        self.masks, self.model, self.seed = masks, model, cfg['seed']
        self.batch_size, self.batches = cfg['batch_size'], start_batch
        sampler = InfiniteSampler(len(dataset), self.batch_size, self.seed,
                                  start_batch=start_batch, rank=rank, world_size=world)
        self.rows = sampler.positions  # this rank's rows of each global batch
        self.loader = iter(paddle.io.DataLoader(dataset, batch_sampler=sampler,
                                                collate_fn=collate,
                                                num_workers=cfg['num_workers'],
                                                worker_init_fn=ignore_sigint))
        self.skipped = set()  # unreadable files met so far

    def __call__(self):
        data = next(self.loader)
        self.skipped.update(data['skipped'])
        image = np.asarray(data['image'].numpy() if hasattr(data['image'], 'numpy')
                           else data['image'], np.float32)
        rng = np.random.RandomState([self.seed, self.batches])
        rows = slice(self.rows.start, self.rows.stop)
        mask, bbox = self.masks(rng, self.batch_size)  # the global batch's, on every rank
        k = self.model.MIXING_DRAWS
        alpha = rng.uniform(size=(self.batch_size, k)).astype(np.float32)[rows] if k else None
        rngs = [np.random.default_rng([self.seed, self.batches, row]) for row in self.rows]
        self.batches += 1
        extra = self.model.extra_inputs(image, mask[rows], rngs)
        return to_batch(image, mask[rows], bbox[rows], extra, alpha)


def validation_batch(cfg, masks, model):
    """Fixed validation crops, masks (seeded per image) and extra inputs, so numbers compare
    across runs; None without validation data."""
    source = validation_source(cfg)
    if source is None or cfg['val_count'] <= 0:
        return None
    ds = ImageDataset(source, cfg['image_size'], train=False)
    n = min(cfg['val_count'], len(ds))
    images = np.stack([ds[i]['image'] for i in range(n)])
    drawn = [mask_for_index(masks, cfg['seed'], i) for i in range(n)]
    mask, bbox = np.stack([m for m, _ in drawn]), np.stack([b for _, b in drawn])
    rngs = [np.random.default_rng([cfg['seed'], i]) for i in range(n)]
    return to_batch(images, mask, bbox, model.extra_inputs(images, mask, rngs))
