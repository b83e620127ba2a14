"""Tests for data/io.py, data/dataset.py and tools/make_flist.py (numpy only, no paddle)."""

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data import (BUILTIN_TRAIN, BUILTIN_VAL, ImageDataset, ImageReadError, InfiniteSampler,
                  collate, list_images, read_flist, read_image, read_mask, resize_mask,
                  resolve_source, save_image, to_tensor_range, to_uint8)

REPO = Path(__file__).resolve().parents[1]


def _ramp(height, width):
    """uint8 [H, W, 3] with distinct rows, columns and channels (nothing symmetric)."""
    y, x = np.mgrid[:height, :width]
    return np.stack([x * 7 % 256, y * 5 % 256, (x + 3 * y) % 256], axis=2).astype(np.uint8)


def _save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _corrupt(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image")
    return path


# ---------------------------------------------------------------- read_image / read_mask


def test_read_image_grey_palette_and_alpha(tmp_path):
    grey = np.array([[0, 100], [200, 255]], np.uint8)
    out = read_image(_save(tmp_path / "grey.png", grey))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert np.array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))

    palette = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    palette.putpalette([10, 20, 30, 200, 100, 50])
    palette.save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").tolist() == [[[10, 20, 30], [200, 100, 50]]]

    # Alpha is dropped, not composited: a fully transparent pixel keeps its colour.
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 128]]], np.uint8)
    assert read_image(_save(tmp_path / "a.png", rgba)).tolist() == [[[10, 20, 30], [40, 50, 60]]]
    la = np.array([[[70, 0], [90, 255]]], np.uint8)
    assert read_image(_save(tmp_path / "la.png", la)).tolist() == [[[70] * 3, [90] * 3]]


def test_read_image_16bit_and_float_are_scaled(tmp_path):
    values = np.array([[65535, 257 * 100, 0]], np.uint16)
    out = read_image(_save(tmp_path / "g16.png", values))  # PIL mode I;16
    assert out[0, :, 0].tolist() == [255, 100, 0] and out.dtype == np.uint8
    big_endian = Image.frombytes("I;16B", (3, 1), values.astype(">u2").tobytes())
    big_endian.save(tmp_path / "g16b.tif")
    assert read_image(tmp_path / "g16b.tif")[0, :, 1].tolist() == [255, 100, 0]
    Image.fromarray(np.array([[0.0, 0.2, 1.0]], np.float32)).save(tmp_path / "f01.tif")
    assert read_image(tmp_path / "f01.tif")[0, :, 2].tolist() == [0, 51, 255]
    Image.fromarray(np.array([[3.0, 200.0]], np.float32)).save(tmp_path / "f255.tif")
    assert read_image(tmp_path / "f255.tif")[0, :, 0].tolist() == [3, 200]


def test_read_image_cmyk_webp_and_exif(tmp_path):
    Image.new("CMYK", (4, 3), (0, 255, 0, 0)).save(tmp_path / "c.jpg", quality=100)
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (3, 4, 3) and np.abs(out[1, 1].astype(int) - [255, 0, 255]).max() < 8
    image = _ramp(10, 12)
    assert np.array_equal(read_image(_save(tmp_path / "x.webp", image, lossless=True)), image)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation "rotate 90 CW": the phone held upright
    Image.fromarray(image).save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(tmp_path / "phone.jpg").shape == (12, 10, 3)


def test_read_image_errors_name_the_file(tmp_path):
    noise = np.random.RandomState(0).randint(0, 256, (64, 64, 3)).astype(np.uint8)
    full = _save(tmp_path / "full.jpg", noise).read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(full[:len(full) // 2])
    for path in (truncated, _corrupt(tmp_path / "text.png"), tmp_path / "missing.png"):
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert isinstance(info.value, ValueError) and info.value.path == str(path)
    with pytest.raises(ImageReadError):
        read_mask(truncated)
    copy = pickle.loads(pickle.dumps(info.value))  # crosses DataLoader worker processes
    assert (copy.path, copy.reason) == (info.value.path, info.value.reason)


def test_data_package_does_not_import_paddle():
    # runtime sets environment variables that must precede `import paddle`; data and the
    # per-image metrics work without paddle.
    code = ("import sys, data, data.masks, data.sketch, evaluation.metrics, evaluation.report, "
            "evaluation.baselines; assert 'paddle' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_read_mask_alpha_luminance_and_resize(tmp_path):
    # White paint on a transparent layer: the hole is where alpha is opaque.
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[1:3, 2:5, 3] = 255
    mask = read_mask(_save(tmp_path / "paint.png", rgba))
    expected = np.zeros((4, 6), np.float32)
    expected[1:3, 2:5] = 1
    assert mask.dtype == np.float32 and np.array_equal(mask, expected)
    # Opaque colour mask: luminance > 127 is a hole (pure red has luminance 76).
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 1] = [255, 0, 0]
    rgb[0, 2] = [200, 200, 200]
    assert read_mask(_save(tmp_path / "rgb.png", rgb)).tolist() == [[0, 0, 1]]
    sixteen = np.array([[65535, 257 * 127, 257 * 128]], np.uint16)
    assert read_mask(_save(tmp_path / "m16.png", sixteen)).tolist() == [[1, 0, 1]]
    big = resize_mask(np.kron(expected, np.ones((2, 2), np.float32)), (4, 6))
    assert np.array_equal(big, expected)


# ---------------------------------------------------------------- save / conversions


def test_save_image_atomic_roundtrip(tmp_path):
    image = _ramp(5, 7)
    path = tmp_path / "a" / "b" / "out.png"
    save_image(path, image)
    assert np.array_equal(read_image(path), image)
    save_image(tmp_path / "grey.bmp", image[..., 0])
    assert np.array_equal(read_image(tmp_path / "grey.bmp")[..., 2], image[..., 0])
    assert sorted(os.listdir(path.parent)) == ["out.png"]  # no temp file left behind
    with pytest.raises(ValueError, match="extension"):
        save_image(tmp_path / "x.unknown", image)
    with pytest.raises(ValueError, match="uint8"):
        save_image(tmp_path / "x.png", image.astype(np.float32))


def test_tensor_range_roundtrip():
    image = _ramp(3, 4)
    image[0, 0] = [0, 255, 128]
    chw = to_tensor_range(image)
    assert chw.dtype == np.float32 and chw.shape == (3, 3, 4)
    assert chw[0, 0, 0] == -1.0 and chw[1, 0, 0] == 1.0
    assert np.array_equal(to_uint8(chw), image)
    assert to_uint8(np.full((3, 1, 1), 5.0)).tolist() == [[[255, 255, 255]]]  # clipped


# ---------------------------------------------------------------- sources


def test_list_images_recursive_filtered_sorted(tmp_path):
    for name in ("b.png", "a.JPG", "sub/c.jpeg", "sub/deep/d.Webp", "e.bmp", "notes.txt",
                 "f.gif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [os.path.relpath(p, tmp_path) for p in list_images(tmp_path)]
    assert found == ["a.JPG", "b.png", "e.bmp", "sub/c.jpeg", "sub/deep/d.Webp"]


def test_read_flist_comments_blank_relative(tmp_path):
    flist = tmp_path / "lists" / "train.flist"
    flist.parent.mkdir()
    flist.write_text("# header\n\n  imgs/a.png  \n/abs/b.png\n   \n# c.png\n../up.jpg\n")
    assert read_flist(flist) == [str(tmp_path / "lists" / "imgs" / "a.png"), "/abs/b.png",
                                 str(tmp_path / "lists" / ".." / "up.jpg")]
    with pytest.raises(FileNotFoundError, match="nope.flist"):
        read_flist(tmp_path / "nope.flist")


def test_resolve_source_errors(tmp_path):
    assert resolve_source("builtin:val") == ("builtin", list(BUILTIN_VAL))
    with pytest.raises(ValueError, match="is not a folder, a .flist/.txt file or 'builtin'"):
        resolve_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"folder .*empty has no \.jpg/"):
        resolve_source(tmp_path / "empty")
    (tmp_path / "e.flist").write_text("# nothing\n")
    with pytest.raises(ValueError, match="lists no images"):
        resolve_source(tmp_path / "e.flist")
    (tmp_path / "data.csv").write_text("a.png\n")
    with pytest.raises(ValueError, match="is not a folder"):
        resolve_source(tmp_path / "data.csv")
    with pytest.raises(ValueError, match="builtin"):
        resolve_source("builtin:test")


# ---------------------------------------------------------------- ImageDataset


def test_dataset_shapes_range_determinism(tmp_path):
    for i, size in enumerate([(40, 50), (64, 48), (30, 90)]):
        _save(tmp_path / f"{i}.png", _ramp(*size))
    flist = tmp_path / "all.flist"
    flist.write_text("0.png\n1.png\n2.png\n")
    for source in (tmp_path, flist):
        ds = ImageDataset(source, (24, 32))
        assert len(ds) == 3
        item = ds[(1, 99)]
        assert item["image"].dtype == np.float32 and item["image"].shape == (3, 24, 32)
        assert item["image"].min() >= -1 and item["image"].max() <= 1
        assert item["index"] == 1 and item["skipped"] == []
        assert np.array_equal(item["image"], ds[(1, 99)]["image"])
        assert np.array_equal(ds[1]["image"], ds[(1, None)]["image"])
        crops = {ds[(1, seed)]["image"].tobytes() for seed in range(8)}
        assert len(crops) > 1  # the seed does move the crop
    with pytest.raises(IndexError):
        ds[3]


def test_dataset_flip_and_resize_modes(tmp_path):
    image = _ramp(20, 30)
    _save(tmp_path / "a.png", image)
    # Without random crop the only random draw is the flip, U(0, 1) < 0.5.
    plain = ImageDataset(tmp_path, (20, 30), random_crop=False, flip=False)
    flips = ImageDataset(tmp_path, (20, 30), random_crop=False, flip=True)
    assert np.array_equal(to_uint8(plain[(0, 0)]["image"]), image)  # same size: no resampling
    for seed in range(6):
        flipped = np.random.RandomState(seed).rand() < 0.5
        out = flips[(0, seed)]["image"]
        expected = plain[(0, seed)]["image"][:, :, ::-1] if flipped else plain[(0, seed)]["image"]
        assert np.array_equal(out, expected)
    # An image smaller than the crop is enlarged (aspect kept) to cover it, not rejected.
    small = ImageDataset(tmp_path, 48, flip=False)
    assert small[(0, 3)]["image"].shape == (3, 48, 48)
    # Eval: deterministic resize (short side = crop side) + centre crop.
    evals = ImageDataset(tmp_path, 10, train=False)
    assert np.array_equal(evals[0]["image"], evals[(0, 5)]["image"])
    half = to_uint8(ImageDataset(tmp_path, (20, 30), train=False)[0]["image"])
    assert np.array_equal(half, image)


def test_dataset_skips_corrupt_file_with_one_warning(tmp_path):
    _save(tmp_path / "a.png", _ramp(16, 16))
    bad = _corrupt(tmp_path / "b.png")
    _save(tmp_path / "c.png", _ramp(16, 16)[::-1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageDataset(tmp_path, 16, train=False)  # probes a.png only
        assert len(caught) == 0
        first, second = ds[1], ds[1]
    assert [str(w.message) for w in caught if str(bad) in str(w.message)] == [
        str(caught[0].message)]
    assert caught[0].message.args[0].startswith(f"skipping unreadable image {bad}: ")
    assert first["skipped"] == [str(bad)] and second["skipped"] == [str(bad)]
    assert np.array_equal(first["image"], ds[2]["image"]) and first["index"] == 1
    batch = collate([ds[0], first])
    assert batch["image"].shape == (2, 3, 16, 16) and batch["image"].dtype == np.float32
    assert batch["index"].dtype == np.int64 and batch["index"].tolist() == [0, 1]
    assert batch["skipped"] == [str(bad)]


def test_dataset_only_corrupt_files_fails_at_construction(tmp_path):
    _corrupt(tmp_path / "a.png")
    _corrupt(tmp_path / "b.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"no readable image in .* \(2 files tried\)"):
            ImageDataset(tmp_path, 16)


def test_builtin_split_sizes_and_no_overlap():
    assert not set(BUILTIN_TRAIN) & set(BUILTIN_VAL)
    assert len(BUILTIN_TRAIN) == 6 and len(BUILTIN_VAL) == 2
    train = ImageDataset("builtin", 32)
    assert train.items == list(BUILTIN_TRAIN) and len(train) == 6
    assert train[(5, 1)]["image"].shape == (3, 32, 32)
    val = ImageDataset("builtin", 32, train=False)
    assert val.items == list(BUILTIN_VAL) and len(val) == 8
    again = ImageDataset("builtin:val", 32, train=False)
    images = [val[i]["image"] for i in range(8)]
    assert all(np.array_equal(a, again[i]["image"]) for i, a in enumerate(images))
    assert len({a.tobytes() for a in images}) == 8  # 4 distinct crops per photo
    with pytest.raises(ValueError, match="split"):
        ImageDataset("builtin:val", 32, split="train")


# ---------------------------------------------------------------- InfiniteSampler


def test_infinite_sampler_resume_equals_uninterrupted():
    def take(sampler, n):
        stream = iter(sampler)
        return [next(stream) for _ in range(n)]

    full = take(InfiniteSampler(5, 3, seed=7), 10)  # 30 positions = 6 epochs of 5
    positions = [index for batch in full for index, _ in batch]
    for epoch in range(6):
        expected = np.random.RandomState([7, epoch]).permutation(5).tolist()
        assert positions[5 * epoch:5 * epoch + 5] == expected
    # Batch k holds positions 3k..3k+2: batches 1 and 3 straddle an epoch boundary, 4 and 7
    # start mid-epoch.
    for k in (1, 3, 4, 7):
        resumed = InfiniteSampler(5, 3, seed=7, start_batch=k)
        assert take(resumed, 10 - k) == full[k:] and resumed.batch == 10
    seeds = [seed for batch in full for _, seed in batch]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**32 for s in seeds)
    assert take(InfiniteSampler(5, 3, seed=8), 1) != full[:1]


# ---------------------------------------------------------------- tools/make_flist.py


def _make_flist(*args, cwd):
    return subprocess.run([sys.executable, str(REPO / "tools" / "make_flist.py"), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True)


def test_make_flist_split_relative_and_errors(tmp_path):
    for i in range(10):
        (tmp_path / "imgs" / f"s{i % 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / f"s{i % 2}" / f"{i}.png").write_bytes(b"")
    out = tmp_path / "lists"
    done = _make_flist("--folder", tmp_path / "imgs", "--out_dir", out, "--val_count", 3,
                       "--relative", cwd="/")
    assert done.returncode == 0, done.stderr
    assert "7" in done.stdout and "3" in done.stdout
    train, val = read_flist(out / "train.flist"), read_flist(out / "val.flist")
    assert len(train) == 7 and len(val) == 3
    assert sorted(os.path.normpath(p) for p in train + val) == list_images(tmp_path / "imgs")
    assert not (out / "val.flist").read_text().startswith("/")  # relative to out_dir
    _make_flist("--folder", tmp_path / "imgs", "--out_dir", tmp_path / "abs", cwd=tmp_path)
    absolute = (tmp_path / "abs" / "val.flist").read_text().split()
    assert len(absolute) == 1 and os.path.isabs(absolute[0])  # round(10 * 0.1)
    again = _make_flist("--folder", "imgs", "--out_dir", "abs2", cwd=tmp_path)
    assert again.returncode == 0
    assert (tmp_path / "abs2" / "val.flist").read_text() == "\n".join(absolute) + "\n"
    for args, message in ((["--folder", tmp_path / "nope"], "does not exist"),
                          (["--folder", tmp_path / "imgs", "--val_fraction", 1.5], "(0, 1)"),
                          (["--folder", out], "has no")):
        failed = _make_flist(*args, "--out_dir", tmp_path / "x", cwd=tmp_path)
        assert failed.returncode != 0 and message in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1
