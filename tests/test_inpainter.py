"""The Python API and photos of any size: input types, strategies, hole windows, a model's extra
maps, and the exported model behind it."""
import numpy as np
import pytest
from PIL import Image

from conftest import tiny
from inference import STRATEGIES, Inpainter, hole_windows
from models import MODELS
from weights.checkpoint import save_checkpoint

NAMES = sorted(MODELS)


def photo(h, w, seed=0):
    """A smooth uint8 photo (piecewise-constant 8x8 blocks, so resizing keeps it realistic)."""
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 255, (-(-h // 8), -(-w // 8), 3)).astype(np.uint8)
    return np.ascontiguousarray(small.repeat(8, 0).repeat(8, 1)[:h, :w])


def box_mask(h, w, *boxes):
    mask = np.zeros((h, w), np.uint8)
    for top, left, bh, bw in boxes:
        mask[top:top + bh, left:left + bw] = 255
    return mask


class Recorder:
    """A stand-in model: records the inputs it sees and predicts a constant grey."""

    SIZE_MULTIPLE = 8

    def __init__(self, image_size=64):
        self.cfg = {'image_size': image_size}
        self.calls, self.extras = [], []

    def extra_inputs(self, image, mask, seed=0, given=None):
        return {'map': mask[None, None].copy(), 'code': np.full((1, 4), seed, np.float32)}

    def __call__(self, image, mask, extra=None):
        self.calls.append((image.shape, float(mask.sum())))
        self.extras.append(extra)
        return np.zeros_like(image)  # 0 in [-1, 1] is grey 128 (127.5 rounded)


def recorder_inpainter(**options):
    recorder = Recorder()
    return Inpainter(recorder, **options), recorder


@pytest.mark.parametrize('name', NAMES)
def test_any_size_in_same_size_out_known_pixels_kept(name):
    model = tiny(name)
    inpaint = Inpainter(model)
    image = photo(45, 71)
    mask = box_mask(45, 71, (10, 20, 15, 25))
    out = inpaint(image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[mask == 0], image[mask == 0])
    assert not np.array_equal(out[mask > 0], image[mask > 0])


def test_pil_in_pil_out_and_numpy_masks_of_any_type():
    inpaint = Inpainter(tiny('deepfill_v1'))
    image = photo(40, 56)
    mask = box_mask(40, 56, (8, 8, 16, 20))
    out = inpaint(Image.fromarray(image), Image.fromarray(mask))
    assert isinstance(out, Image.Image) and out.size == (56, 40)
    as_float = inpaint(image, (mask > 0).astype(np.float32))
    assert np.array_equal(np.asarray(out), as_float)
    with pytest.raises(ValueError, match='marks no hole'):
        inpaint(image, np.zeros((40, 56), np.uint8))
    with pytest.raises(ValueError, match='does not match the image'):
        inpaint(image, mask[:30])
    with pytest.raises(ValueError, match='strategy'):
        Inpainter(tiny('deepfill_v1'), strategy='tile')


def test_from_checkpoint_equals_the_model(tmp_path):
    model = tiny('deepfill_v2', seed=3)
    save_checkpoint(tmp_path / 'c.safetensors', model, {},
                    dict(model='deepfill_v2', config=model.cfg, iteration=0))
    image, mask = photo(37, 50), box_mask(37, 50, (5, 5, 20, 20))
    loaded = Inpainter.from_checkpoint(tmp_path / 'c.safetensors', strategy='original')
    assert np.array_equal(loaded(image, mask), Inpainter(model)(image, mask))


def test_auto_picks_crop_only_for_photos_much_larger_than_training():
    inpaint, _ = recorder_inpainter()  # training size 64
    assert inpaint.choose_strategy((128, 100)) == 'original'
    assert inpaint.choose_strategy((90, 129)) == 'crop'
    assert set(STRATEGIES) == {'auto', 'original', 'crop', 'resize', 'refine'}


def test_resize_strategy_shrinks_to_max_size_and_pastes_only_the_hole():
    inpaint, recorder = recorder_inpainter(strategy='resize')
    image = photo(300, 200)
    mask = box_mask(300, 200, (100, 50, 40, 30))
    out, info = inpaint.run(image, mask)
    assert recorder.calls[0][0] == (1, 3, 64, 48)  # 300x200 -> 64x43, padded to 48
    assert info == dict(strategy='resize', windows=[(0, 0, 300, 200)])
    assert np.array_equal(out[mask == 0], image[mask == 0])
    assert (out[mask > 0] == 128).all()


def test_crop_windows_per_hole_group_with_margin():
    mask = box_mask(400, 600, (50, 60, 10, 10), (70, 85, 5, 5), (300, 500, 20, 40))
    windows, labels = hole_windows(mask, margin=16, min_size=64)
    assert len(windows) == 2  # the two near boxes (15 px apart) share one window
    (t0, l0, b0, r0), (t1, l1, b1, r1) = sorted(windows)
    assert (t0, l0) <= (50 - 16, 60 - 16) and (b0, r0) >= (75 + 16, 90 + 16)
    assert (t1, l1, b1, r1) == (278, 484, 342, 556)  # 52 rows grown to 64 about the centre
    assert set(np.unique(labels[mask > 0])) == {1, 2}
    with_ = hole_windows(mask, margin=0, min_size=1)[0]
    assert len(with_) == 3 and (50, 60, 60, 70) in with_


def test_crop_strategy_inpaints_each_window_at_most_max_size():
    inpaint, recorder = recorder_inpainter(strategy='crop', margin=32)
    image = photo(900, 1200)
    mask = box_mask(900, 1200, (100, 100, 30, 30), (600, 900, 200, 120))
    out, info = inpaint.run(image, mask)
    assert info['strategy'] == 'crop' and len(info['windows']) == 2
    assert len(recorder.calls) == 2
    for shape, hole in recorder.calls:
        assert max(shape[2:]) <= 64 + 7 and hole > 0
    assert np.array_equal(out[mask == 0], image[mask == 0])
    assert (out[mask > 0] == 128).all()


def test_original_strategy_pads_to_the_multiple():
    inpaint, recorder = recorder_inpainter(strategy='original')
    inpaint.run(photo(130, 99), box_mask(130, 99, (3, 3, 9, 9)))
    assert recorder.calls == [((1, 3, 136, 104), 81.0)]


def test_crop_with_a_real_model_on_a_large_photo():
    inpaint = Inpainter(tiny('deepfill_v1'), max_size=64, margin=16)  # auto: crop above 128
    image = photo(200, 260)
    mask = box_mask(200, 260, (20, 30, 12, 12), (150, 200, 30, 40))
    out, info = inpaint.run(image, mask)
    assert info['strategy'] == 'crop' and len(info['windows']) == 2
    assert np.array_equal(out[mask == 0], image[mask == 0])


def test_deepfill_chunk_key_changes_nothing_but_memory():
    image, mask = photo(96, 128), box_mask(96, 128, (20, 30, 40, 50))
    results = [Inpainter(tiny(name, ca_chunk=chunk), strategy='original').run(image, mask)[0]
               for name, chunk in [('deepfill_v1', 0), ('deepfill_v1', 20)]]
    assert np.abs(results[0].astype(int) - results[1].astype(int)).max() <= 1


@pytest.mark.slow
def test_exported_inpainter_equals_eager(tmp_path):
    from inference import export
    model = tiny('deepfill_v1')
    export(model, tmp_path)
    image, mask = photo(150, 190), box_mask(150, 190, (30, 40, 50, 60), (120, 150, 10, 20))
    for strategy in ('original', 'crop'):
        eager = Inpainter(model, strategy=strategy, max_size=64).run(image, mask)
        exported = Inpainter.from_exported(tmp_path, strategy=strategy, max_size=64,
                                           threads=1).run(image, mask)
        assert eager[1] == exported[1]
        assert np.abs(eager[0].astype(int) - exported[0].astype(int)).max() <= 1


def test_extra_maps_are_cropped_resized_and_padded_as_the_mask():
    """A model's extra inputs shaped like the mask follow the mask into every window; others
    (a latent code) pass unchanged."""
    inpaint, rec = recorder_inpainter(strategy='crop', max_size=64, margin=8)
    image = photo(300, 500)
    mask = box_mask(300, 500, (20, 30, 40, 50), (200, 400, 60, 80))
    inpaint.run(image, mask, seed=3)
    assert len(rec.extras) == 2
    for (shape, holes), extra in zip(rec.calls, rec.extras):
        assert extra['map'].shape == (1, 1) + shape[2:]  # padded like the model's input
        assert float(extra['map'].sum()) == holes  # the same binary map as the mask
        assert np.array_equal(extra['code'], np.full((1, 4), 3, np.float32))


def test_a_guided_model_takes_a_sketch_by_name():
    model = tiny('deepfill_v2', guided=True)
    seen = []
    forward = model.netG.forward
    model.netG.forward = lambda image, mask, sketch=None: seen.append(sketch.numpy()) or \
        forward(image, mask, sketch)
    inpaint = Inpainter(model, strategy='original')
    image, mask = photo(60, 64), box_mask(60, 64, (16, 16, 32, 32))
    sketch = np.zeros((60, 64), np.uint8)
    sketch[32, :] = 255  # a horizontal edge through the hole
    sketch[40, :] = 100  # too faint: below edge_threshold (0.6)
    result = inpaint(image, mask, sketch=sketch)
    assert np.array_equal(result[mask == 0], image[mask == 0])
    inpaint(image, mask)  # no sketch: an empty one
    given, empty = seen
    assert given.shape == (1, 1, 64, 64)  # padded to the size multiple, as the mask
    assert np.array_equal(given[0, 0, :60], (sketch == 255).astype(np.float32))
    assert not given[0, 0, 60:].any() and not empty.any()
    with pytest.raises(ValueError, match='without sketches'):
        Inpainter(tiny('deepfill_v2'))(image, mask, sketch=sketch)
    with pytest.raises(ValueError, match='sketch: size 32x60 does not match'):
        inpaint(image, mask, sketch=sketch[:, :32])
