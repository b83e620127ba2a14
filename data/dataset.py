"""Image datasets: folders, .flist files and the colour photos bundled with scikit-image.

numpy/OpenCV only (never imports paddle). Items are dicts of numpy arrays; paddle.io.DataLoader
wraps `ImageDataset` with `collate` as collate_fn and `InfiniteSampler` as batch_sampler.
"""

import math
import os

import cv2
import numpy as np

from .io import ImageReadError, read_image, to_tensor_range, warn_skip

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# A fixed split, so validation numbers compare across runs and seeds. Both views of the stereo
# motorcycle show one scene, so only the left one is used (the right would leak into val).
BUILTIN_TRAIN = ("astronaut", "rocket", "motorcycle_left", "hubble_deep_field",
                 "immunohistochemistry", "retina")
BUILTIN_VAL = ("chelsea", "coffee")

_EXT_TEXT = "/".join(IMAGE_EXTENSIONS)


def _pair(size):
    """int or (h, w) -> (h, w) ints."""
    if np.isscalar(size):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def list_images(folder):
    """Recursively lists the images (IMAGE_EXTENSIONS, any case) under `folder`, sorted.

    Symlinked sub-folders are followed (datasets are often assembled from links).
    """
    found = []
    for root, _, files in os.walk(folder, followlinks=True):
        found += [os.path.join(root, f) for f in files
                  if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def read_flist(path):
    """Reads a file list: one path per line; blank lines and '#' comments skipped.

    Relative paths resolve against the flist's own folder, so a dataset folder can move.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"flist {path} does not exist")
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as fh:
        lines = [line.strip() for line in fh]
    return [os.path.join(base, os.path.expanduser(line)) for line in lines
            if line and not line.startswith("#")]


def load_builtin(name):
    """A photo bundled with scikit-image (no network): uint8 [H, W, 3] RGB."""
    from skimage import data as skdata  # slow import, only needed for builtin sources

    if name == "motorcycle_left":
        image = skdata.stereo_motorcycle()[0]
    elif name in BUILTIN_TRAIN + BUILTIN_VAL:
        image = getattr(skdata, name)()
    else:
        raise ValueError(f"data: unknown builtin photo '{name}' "
                         f"(valid: {', '.join(BUILTIN_TRAIN + BUILTIN_VAL)})")
    return np.ascontiguousarray(image, np.uint8)


def resolve_source(source, split="train"):
    """Finds what a data source names.

    Args:
        source: 'builtin', 'builtin:train', 'builtin:val', a folder, or a .flist/.txt file.
        split: photo list for a bare 'builtin' ('train' or 'val'); a ':suffix' wins over it.

    Returns:
        (kind, items): ('builtin', photo names), ('folder', paths) or ('flist', paths).

    Raises:
        ValueError: one line naming the source and what was expected.
    """
    text = str(source)
    if text == "builtin" or text.startswith("builtin:"):
        split = text.partition(":")[2] or split
        if split not in ("train", "val"):
            raise ValueError(f"data: unknown builtin split in '{text}' "
                             "(expected 'builtin', 'builtin:train' or 'builtin:val')")
        return "builtin", list(BUILTIN_TRAIN if split == "train" else BUILTIN_VAL)
    if os.path.isdir(text):
        items = list_images(text)
        if not items:
            raise ValueError(f"data: folder {text} has no {_EXT_TEXT} images")
        return "folder", items
    if os.path.isfile(text) and text.lower().endswith((".flist", ".txt")):
        items = read_flist(text)
        if not items:
            raise ValueError(f"data: flist {text} lists no images")
        return "flist", items
    raise ValueError(f"data: {text} is not a folder, a .flist/.txt file or 'builtin'")


def _resize_to_cover(image, size_hw, shrink=False):
    """Resizes keeping the aspect so that both sides are >= size_hw (ceil), as neuralgym's
    np_scale_to_shape; only enlarges unless `shrink`."""
    height, width = image.shape[:2]
    scale = max(size_hw[0] / height, size_hw[1] / width)
    if scale == 1 or (scale < 1 and not shrink):
        return image
    # -1e-6: 300 * (256 / 300) must give 256, not 257.
    new_h = max(size_hw[0], math.ceil(height * scale - 1e-6))
    new_w = max(size_hw[1], math.ceil(width * scale - 1e-6))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interp)


def _crop(image, top, left, size_hw):
    return image[top:top + size_hw[0], left:left + size_hw[1]]


class ImageDataset:
    """Map-style dataset of image crops, float32 [3, H, W] in [-1, 1].

    Args:
        source: see `resolve_source`.
        image_size: int or (h, w) of the output.
        train: random crop/flip seeded per item; otherwise deterministic (resize so the image
            covers image_size, then centre crop; builtin sources give `crops_per_image` fixed
            random crops per photo instead, from RandomState(1234 + photo index)).
        random_crop: train mode: crop (enlarging small images first) instead of resizing.
        flip: train mode: horizontal flip with p = 0.5.
        split: builtin photo list, 'train' or 'val' (default: 'train' if train else 'val').
        crops_per_image: fixed crops per builtin photo in eval mode.

    Items are dict(image, index, skipped): `index` is the requested index; unreadable files
    are replaced by the next readable one ((index + 1) % len, ...) and listed in `skipped`.
    """

    def __init__(self, source, image_size, train=True, random_crop=True, flip=True, split=None,
                 crops_per_image=4):
        self.source = str(source)
        self.size = _pair(image_size)
        self.train, self.random_crop, self.flip = train, random_crop, flip
        suffix = self.source.partition(":")[2] if self.source.startswith("builtin:") else ""
        if split not in (None, "train", "val") or (split and suffix and split != suffix):
            raise ValueError(f"data: split={split!r} does not fit source '{self.source}' "
                             "(expected None, 'train' or 'val')")
        self.kind, self.items = resolve_source(self.source, split or ("train" if train else "val"))
        fixed_crops = self.kind == "builtin" and not train
        self.crops_per_image = int(crops_per_image) if fixed_crops else 1
        self._photos = {}
        if self.kind != "builtin":
            self._probe()

    def _probe(self):
        """Stops at the first decodable file, so a big healthy list costs one read."""
        for path in self.items:
            try:
                read_image(path)
                return
            except ImageReadError as exc:
                warn_skip(exc)
        raise ValueError(f"data: no readable image in {self.source} "
                         f"({len(self.items)} files tried)")

    def __len__(self):
        return len(self.items) * self.crops_per_image

    def name(self, index):
        """A file-name-safe label of item `index` (photo and crop, or the file's stem)."""
        if self.crops_per_image > 1:
            photo, crop = divmod(int(index), self.crops_per_image)
            return f"{self.items[photo]}_{crop}"
        stem = os.path.splitext(os.path.basename(self.items[int(index)]))[0]
        return f"{int(index):05d}_{stem}"

    def _load(self, i):
        if self.kind != "builtin":
            return read_image(self.items[i])
        if i not in self._photos:
            # Short side = 2 * max(image_size): the photos are few, so crops keep context.
            image = load_builtin(self.items[i])
            short = 2 * max(self.size)
            height, width = image.shape[:2]
            scale = short / min(height, width)
            new_hw = (max(short, round(height * scale)), max(short, round(width * scale)))
            self._photos[i] = cv2.resize(image, new_hw[::-1], interpolation=cv2.INTER_AREA)
        return self._photos[i]

    def _load_readable(self, index):
        """Loads item `index`, or the next readable one; returns (image, skipped paths)."""
        skipped = []
        for step in range(len(self.items)):
            try:
                return self._load((index + step) % len(self.items)), skipped
            except ImageReadError as exc:
                skipped.append(exc.path)
                warn_skip(exc)
        raise RuntimeError(f"data: no readable image left in {self.source} "
                           f"({len(self.items)} files failed)")

    def _augment(self, image, rng):
        if self.random_crop:
            image = _resize_to_cover(image, self.size)
            top = rng.randint(image.shape[0] - self.size[0] + 1)
            left = rng.randint(image.shape[1] - self.size[1] + 1)
            image = _crop(image, top, left, self.size)
        else:  # the official RANDOM_CROP: False path
            image = cv2.resize(image, self.size[::-1], interpolation=cv2.INTER_LINEAR)
        if self.flip and rng.rand() < 0.5:
            image = image[:, ::-1]
        return image

    def _fixed_crop(self, photo, crop):
        image = self._load(photo)
        rng = np.random.RandomState(1234 + photo)
        for _ in range(crop + 1):  # the crop-th of a fixed sequence of crops
            top = rng.randint(image.shape[0] - self.size[0] + 1)
            left = rng.randint(image.shape[1] - self.size[1] + 1)
        return _crop(image, top, left, self.size)

    def __getitem__(self, key):
        """key: index, or (index, seed) with seed for RandomState (None: the index)."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"data: index {index} out of range for {len(self)} items")
        skipped = []
        if self.kind == "builtin" and not self.train:
            image = self._fixed_crop(*divmod(index, self.crops_per_image))
        else:
            image, skipped = self._load_readable(index)
            if self.train:
                image = self._augment(image, np.random.RandomState(index if seed is None else seed))
            else:
                image = _resize_to_cover(image, self.size, shrink=True)
                top = (image.shape[0] - self.size[0]) // 2
                left = (image.shape[1] - self.size[1]) // 2
                image = _crop(image, top, left, self.size)
        return dict(image=to_tensor_range(image), index=index, skipped=skipped)


def collate(items):
    """DataLoader collate_fn: image float32 [N, 3, H, W], index int64 [N], skipped list."""
    return dict(image=np.stack([item["image"] for item in items]).astype(np.float32),
                index=np.asarray([item["index"] for item in items], np.int64),
                skipped=[path for item in items for path in item["skipped"]])


class InfiniteSampler:
    """Endless batch sampler of (index, item_seed) pairs, resumable at any batch.

    Epoch e visits the items in the order RandomState([seed, e]).permutation(num_items); a batch
    may span two epochs. The item seed depends only on (seed, batch number, position), so
    `InfiniteSampler(..., start_batch=k)` yields exactly what an uninterrupted sampler yields
    from batch k on. `.batch` counts batches yielded (including start_batch); a DataLoader
    prefetches, so resume from the training loop's own iteration count, not from `.batch`.

    Data parallelism: `batch_size` is the global batch; rank r of `world_size` gets positions
    [r * b, (r + 1) * b) of each global batch, b = batch_size / world_size, with the items and
    item seeds a single sampler gives there, so the ranks' shards concatenate to its batch.
    """

    def __init__(self, num_items, batch_size, seed, start_batch=0, rank=0, world_size=1):
        if num_items < 1 or batch_size < 1 or start_batch < 0 or seed < 0:
            raise ValueError(f"InfiniteSampler: need num_items, batch_size >= 1 and seed, "
                             f"start_batch >= 0; got {num_items}, {batch_size}, {seed}, "
                             f"{start_batch}")
        if not 0 <= rank < world_size or batch_size % world_size:
            raise ValueError(f"InfiniteSampler: batch_size {batch_size} must split evenly over "
                             f"world_size {world_size} ranks (rank {rank})")
        self.num_items, self.batch_size, self.seed = int(num_items), int(batch_size), int(seed)
        share = self.batch_size // int(world_size)
        self.positions = range(int(rank) * share, (int(rank) + 1) * share)
        self.batch = int(start_batch)
        self._epoch, self._perm = None, None

    def _index(self, position):
        epoch, offset = divmod(position, self.num_items)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.RandomState([self.seed, epoch]).permutation(self.num_items)
        return int(self._perm[offset])

    def item_seed(self, batch, position):
        """Seed in [0, 2**32) for item `position` of global batch `batch`."""
        return int(np.random.SeedSequence([self.seed, batch, position]).generate_state(1)[0])

    def __iter__(self):
        while True:
            first = self.batch * self.batch_size
            out = [(self._index(first + pos), self.item_seed(self.batch, pos))
                   for pos in self.positions]
            self.batch += 1
            yield out


def validation_source(cfg):
    """A run's validation data: `val_data`, else the builtin val photos for builtin training data,
    else None (no validation)."""
    if cfg.get("val_data"):
        return cfg["val_data"]
    return "builtin:val" if str(cfg.get("data", "")).startswith("builtin") else None
