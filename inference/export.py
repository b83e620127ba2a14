"""Export: a model's generator as a static graph for paddle.inference (and, optionally, ONNX).

``export(model, folder)`` writes the graph (``model.json``, PIR, on Paddle 3; ``model.pdmodel`` on
2.6) + ``model.pdiparams`` (paddle.jit.save) taking
``image`` [N,3,H,W] in [-1, 1] and ``mask`` [N,1,H,W] (1 = hole) with dynamic N, H and W (H and W
multiples of the model's size multiple), returning the model's image outputs, and
``inpaint.json`` (model name, config, size multiple, output names) for ``ExportedModel``.
``export_onnx(folder)`` adds ``model.onnx`` through paddle2onnx (optional: ``pip install
paddle2onnx onnxruntime``). Extra inputs (DeepFill v2's sketch) are not exported: a guided model
runs without one.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
from paddle.static import InputSpec

from inference.exported import EXPORT_META, graph_file


class ImageOutputs(paddle.nn.Layer):
    """The model's forward with (image, mask) in and its image outputs out, as a tuple."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.names = list(model.IMAGE_OUTPUTS)

    def forward(self, image, mask):
        out = self.model(image, mask)
        return tuple(out[name] for name in self.names)


def trace_summary(error):
    """'file:line: ErrorType: message' from a dy2static error (its text holds the user frames)."""
    text = str(error)
    frames = re.findall(r'File "([^"]+)", line (\d+)', text)
    ours = [f'{Path(f).name}:{n}' for f, n in frames if 'site-packages' not in f
            and 'to_static_tmp' not in f]
    errors = re.findall(r'^\s*(\w+(?:Error|Exception)): (.+)$', text, re.M)
    kind, message = errors[-1] if errors else (type(error).__name__, text.strip()[:200])
    return f"{ours[-1] + ': ' if ours else ''}{kind}: {message.strip()}"


def export(model, folder, name=None):
    """Writes ``model`` (an InpaintModel) to ``folder`` for paddle.inference; returns the folder.

    Raises:
        RuntimeError: naming the model when tracing fails (an op that cannot take dynamic shapes)
            or when the model says this Paddle cannot export it (``export_blocker``).
    """
    blocker = model.export_blocker()
    if blocker:
        raise RuntimeError(f'export: {model.NAME}: {blocker}')
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or model.NAME
    model.eval()
    wrapper = ImageOutputs(model)
    spec = [InputSpec([None, 3, None, None], 'float32', 'image'),
            InputSpec([None, 1, None, None], 'float32', 'mask')]
    try:
        static = paddle.jit.to_static(wrapper, input_spec=spec, full_graph=True)
        paddle.jit.save(static, str(folder / 'model'))
    except Exception as e:  # dy2static raises many types; report the model, place and error
        raise RuntimeError(f'export: {name} could not be traced with dynamic shapes: '
                           f'{trace_summary(e)}') from e
    multiple = model.EXPORT_SIZE_MULTIPLE or model.SIZE_MULTIPLE
    meta = dict(model=name, config=model.cfg, size_multiple=int(multiple),
                full_resolution=bool(model.FULL_RESOLUTION), outputs=wrapper.names,
                inputs=['image', 'mask'], paddle=paddle.__version__)
    (folder / EXPORT_META).write_text(json.dumps(meta, indent=1))
    return folder


def export_onnx(folder, opset=17):
    """Converts an exported folder's graph to model.onnx with paddle2onnx; returns the path.

    paddle2onnx runs in a child process: on an operator it cannot convert it aborts the process.

    Raises:
        ImportError: paddle2onnx is not installed (it is optional).
        RuntimeError: the conversion failed; the message holds paddle2onnx's error lines.
    """
    if importlib.util.find_spec('paddle2onnx') is None:
        raise ImportError('paddle2onnx is not installed')
    folder = Path(folder)
    out = folder / 'model.onnx'
    out.unlink(missing_ok=True)
    code = ('import sys, paddle2onnx; paddle2onnx.export(sys.argv[1], sys.argv[2], sys.argv[3], '
            'opset_version=int(sys.argv[4]))')
    # POLYGRAPHY_AUTOINSTALL_DEPS=0: paddle2onnx's optimiser would pip-install onnx_graphsurgeon.
    env = dict(os.environ, POLYGRAPHY_AUTOINSTALL_DEPS='0')
    proc = subprocess.run([sys.executable, '-c', code, str(graph_file(folder)),
                           str(folder / 'model.pdiparams'), str(out), str(opset)],
                          capture_output=True, text=True, env=env)
    if proc.returncode or not out.is_file():
        log = (proc.stdout + proc.stderr).splitlines()
        errors = [line.strip() for line in log if 'ERROR' in line or 'Error' in line]
        ffts = sorted({m.decode() for m in re.findall(rb'fft_(?:r2c|c2r|c2c)',
                                                      graph_file(folder).read_bytes())})
        hint = f' (the graph holds {", ".join(ffts)}: paddle2onnx converts no FFT)' if ffts else ''
        raise RuntimeError(f'export: paddle2onnx failed on {folder} (exit {proc.returncode}): '
                           + ' | '.join(errors[-3:] or log[-3:]) + hint)
    if importlib.util.find_spec('onnxruntime') is not None:
        check_onnx(folder)
    return out


def check_onnx(folder, tolerance=1e-4):
    """Runs model.onnx (onnxruntime) and the Paddle graph on one seeded image and box hole of
    the training size; a conversion that computes other values is removed and an error (a
    converter can translate every op and still mistranslate one: PConv with paddle2onnx 2.1)."""
    from inference.exported import ExportedModel
    paddle_model = ExportedModel(folder, 'paddle', device='cpu', onednn=False)
    size = int(paddle_model.cfg.get('image_size', 256))
    rng = np.random.RandomState(0)
    image = rng.uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    mask = np.zeros((1, 1, size, size), np.float32)
    mask[..., size // 4:size // 2, size // 3:size * 2 // 3] = 1
    ref = paddle_model.outputs_for(image, mask)['pred']
    got = ExportedModel(folder, 'onnx').outputs_for(image, mask)['pred']
    error = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12))
    if error > tolerance:
        (Path(folder) / 'model.onnx').unlink()
        raise RuntimeError(f"export: paddle2onnx converted {paddle_model.meta['model']} but the "
                           'ONNX model computes other values (max relative error '
                           f'{error:.2g} against the Paddle graph); model.onnx not written')
    return error
