"""Metric tables of an evaluation: per image, per method and per hole-to-image ratio bucket."""
import csv

import numpy as np

HOLE_RATIO_EDGES = (0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)  # the PConv paper's test buckets


def hole_ratio_bucket(ratio, edges=HOLE_RATIO_EDGES):
    """PConv's evaluation bucket of a hole ratio: '0.1-0.2' for (0.1, 0.2]; None outside."""
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo < ratio <= hi:
            return f"{lo:g}-{hi:g}"
    return None


def write_report(out_dir, rows, methods, info):
    """metrics.csv (per image), metrics_by_hole_ratio.csv, metrics.txt (means: overall and per
    hole-ratio bucket) and printed tables."""
    keys = [k for k in rows[0] if k not in ('method', 'image', 'bucket')]
    with open(out_dir / 'metrics.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['method', 'image', 'bucket'] + keys)
        writer.writeheader()
        writer.writerows(rows)
    buckets = sorted({r['bucket'] for r in rows}, key=lambda b: (b == 'other', b))
    table = [dict(method=m, bucket=b, count=len(sel),
                  **{k: float(np.mean([r[k] for r in sel])) for k in keys})
             for m in methods for b in ['all'] + buckets
             for sel in [[r for r in rows if r['method'] == m and b in ('all', r['bucket'])]]
             if sel]
    with open(out_dir / 'metrics_by_hole_ratio.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    lines = [' '.join(f'{k} {v}' for k, v in info.items())]
    lines += [f"method {t['method']} " + ('' if t['bucket'] == 'all' else
                                         f"hole_ratio {t['bucket']} count {t['count']} ")
              + ' '.join(f'{k} {t[k]:.4f}' for k in keys) for t in table]
    (out_dir / 'metrics.txt').write_text('\n'.join(lines) + '\n')
    print(f"{'method':<8}{'holes':>10}{'n':>5}" + ''.join(f'{k:>11}' for k in keys))
    for t in table:
        print(f"{t['method']:<8}{t['bucket']:>10}{t['count']:>5}"
              + ''.join(f'{t[k]:>11.4f}' for k in keys))
    print(f'{info["images"]} images; results in {out_dir}')
