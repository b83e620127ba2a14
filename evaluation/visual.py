"""Image panels for logs and reports: input, coarse, refined, composite, flow, ground truth."""
import numpy as np

from models.attention import flow_to_image


def _numpy(x):
    return x.numpy() if hasattr(x, 'numpy') else np.asarray(x)


def panels(image, mask, out, extra=None):
    """Named [N, 3, H, W] arrays in [-1, 1] for whatever outputs the model produced.

    The input panel shows the holes in white so they stand out from dark image content, and the
    strokes of extra input maps (a guided model's sketch) in black inside them.
    """
    image, mask = _numpy(image), _numpy(mask)
    shown = image * (1 - mask) + mask
    for value in (extra or {}).values():
        value = _numpy(value)
        if value.ndim == 4 and value.shape[2:] == mask.shape[2:]:
            shown = np.where(value[:, :1] * mask > 0, -1.0, shown)
    cols = [('input', shown)]
    for key, name in (('coarse', 'coarse'), ('pred', 'refined'), ('composite', 'composite')):
        if key in out:
            cols.append((name, _numpy(out[key])))
    if 'offsets' in out:
        cols.append(('flow', flow_to_image(out['offsets'], image.shape[2:])))
    cols.append(('ground truth', image))
    return cols


def grid(columns, max_rows=None, gap=2):
    """Tiles [N, 3, H, W] arrays in [-1, 1] into one uint8 HxWx3 image: a row per item, a column
    per array, separated by white gaps."""
    columns = [np.asarray(c)[:max_rows] for c in columns]
    n, _, h, w = columns[0].shape
    canvas = np.full((n * (h + gap) - gap, len(columns) * (w + gap) - gap, 3), 255, np.uint8)
    for j, col in enumerate(columns):
        tiles = np.clip(np.round((col.transpose(0, 2, 3, 1) + 1) * 127.5), 0, 255).astype(np.uint8)
        for i in range(n):
            canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tiles[i]
    return canvas
