"""Writes train.flist and val.flist for an image folder (recursive, shuffled with a seed).

    python tools/make_flist.py --folder /data/celeba_hq --out_dir /data/celeba_hq_flist
    python tools/make_flist.py --folder imgs --out_dir imgs --val_count 500 --relative

Paths are absolute unless --relative (then relative to --out_dir, where read_flist resolves
them). Works from any working directory.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from data.dataset import IMAGE_EXTENSIONS, list_images  # noqa: E402


def split_paths(paths, seed, val_fraction=None, val_count=None):
    """Shuffles `paths` with RandomState(seed) and splits off the validation set.

    Args:
        paths: at least 2 paths.
        val_fraction: share of images for val, in (0, 1); rounded, kept within [1, n - 1].
        val_count: number of val images, in [1, n - 1]; overrides val_fraction.

    Returns:
        (train, val) lists.
    """
    n = len(paths)
    if n < 2:
        raise ValueError(f"need at least 2 images to split, found {n}")
    if val_count is None:
        val_count = min(max(1, round(n * val_fraction)), n - 1)
    elif not 1 <= val_count <= n - 1:
        raise ValueError(f"--val_count must be in [1, {n - 1}] for {n} images, got {val_count}")
    order = np.random.RandomState(seed).permutation(n)
    shuffled = [paths[i] for i in order]
    return shuffled[val_count:], shuffled[:val_count]


def write_flist(path, paths):
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(f"{p}\n" for p in paths)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True, help="image folder, searched recursively")
    parser.add_argument("--out_dir", required=True, help="where train.flist/val.flist go")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--val_fraction", type=float, default=0.1)
    group.add_argument("--val_count", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--relative", action="store_true", help="paths relative to --out_dir")
    args = parser.parse_args(argv)

    # abspath, not resolve(): keep the symlinks the user chose in the written paths.
    folder, out_dir = Path(os.path.abspath(args.folder)), Path(os.path.abspath(args.out_dir))
    if not folder.is_dir():
        sys.exit(f"make_flist: error: folder {args.folder} does not exist")
    if args.val_count is None and not 0 < args.val_fraction < 1:
        sys.exit(f"make_flist: error: --val_fraction must be in (0, 1), got {args.val_fraction}")
    paths = list_images(folder)
    if not paths:
        sys.exit(f"make_flist: error: folder {folder} has no {'/'.join(IMAGE_EXTENSIONS)} images")
    try:
        train, val = split_paths(paths, args.seed, args.val_fraction, args.val_count)
    except ValueError as exc:
        sys.exit(f"make_flist: error: {exc}")
    if args.relative:
        train, val = ([Path(os.path.relpath(p, out_dir)).as_posix() for p in part]
                      for part in (train, val))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_flist(out_dir / "train.flist", train)
    write_flist(out_dir / "val.flist", val)
    print(f"train.flist {len(train)} images, val.flist {len(val)} images -> {out_dir}")


if __name__ == "__main__":
    main()
