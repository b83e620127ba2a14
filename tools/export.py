"""Exports a model's generator as a static inference model (and optionally ONNX).

    python tools/export.py --checkpoint checkpoints/RUN/latest.safetensors --out exported/RUN
    python tools/export.py --checkpoint converted.safetensors --out exported/v2 --onnx
    python tools/export.py --model deepfill_v1 --out exported/v1_random      # untrained, DEFAULTS

The folder gets ``model.json`` (``model.pdmodel`` on Paddle 2.6) + ``model.pdiparams``
(paddle.jit.save) taking ``image`` [N,3,H,W] in [-1, 1] and ``mask`` [N,1,H,W] (1 = hole) with
dynamic N, H and W (H and W multiples of the model's size multiple; the mask batch must equal the
image batch), returning the model's image outputs (``pred``, ``composite``, ...);
``inpaint.json`` (model name, config, size multiple, output names) for tools/infer.py and
``Inpainter.from_exported``; and with --onnx ``model.onnx`` (opset 17 by default, through
paddle2onnx: ``pip install paddle2onnx onnxruntime``, optional). Extra inputs (DeepFill v2's
sketch) are not exported: a guided model runs without a sketch. The functions live in
inference/export.py.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import runtime  # noqa: E402
from inference import EXPORT_META, export, export_onnx, load_model  # noqa: E402
from inference.exported import graph_file  # noqa: E402
from models import MODELS, build  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', help='.safetensors checkpoint (training run or converted)')
    p.add_argument('--model', help=f"model name ({', '.join(MODELS)}): with --checkpoint only "
                   'for a bare .pdparams state dict; alone, exports an untrained model with '
                   'DEFAULTS')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--onnx', action='store_true', help='also write model.onnx (needs paddle2onnx)')
    p.add_argument('--opset', type=int, default=17)
    args = p.parse_args(argv)
    runtime.setup('cpu')
    if args.checkpoint:
        model = load_model(args.checkpoint, args.model)[0]
    elif args.model:
        model = build(args.model, {})
    else:
        raise ValueError('--checkpoint or --model is required')
    try:  # a graph that cannot be traced or converted: one line naming the model and the op
        folder = export(model, args.out)
        print(f'{model.NAME} -> {graph_file(folder)}, model.pdiparams, {EXPORT_META}')
        if args.onnx:
            print(f'{model.NAME} -> {export_onnx(folder, args.opset)}')
    except ImportError:
        raise ValueError('--onnx: paddle2onnx is not installed '
                         '(pip install paddle2onnx onnxruntime)') from None
    except RuntimeError as e:
        raise ValueError(str(e)) from None
    return 0


if __name__ == '__main__':
    sys.exit(runtime.run_cli(main))
