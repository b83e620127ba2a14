"""Models written by inference.export, run by paddle.inference (oneDNN on CPU, CUDA on a GPU
build) or onnxruntime, behind the interface the Inpainter uses."""
import json
import os
from pathlib import Path

import numpy as np
import paddle

EXPORT_META = 'inpaint.json'  # written next to the graph by inference.export
GRAPH_FILES = ('model.json', 'model.pdmodel')  # PIR (Paddle 3.x), legacy program (Paddle 2.6)


def graph_file(folder):
    """The static graph paddle.jit.save wrote in ``folder``: model.json (PIR, the Paddle 3
    default) or model.pdmodel (Paddle 2.6); both run in paddle.inference."""
    for name in GRAPH_FILES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise FileNotFoundError(f'--model_dir: {folder} holds no {" or ".join(GRAPH_FILES)}; '
                            'write one with tools/export.py')


class ExportedModel:
    """A model written by tools/export.py, run by paddle.inference or onnxruntime.

    Args:
        folder: the export folder (model.json or model.pdmodel, model.pdiparams, inpaint.json
            [, model.onnx]).
        backend: 'paddle' (paddle.inference: oneDNN on CPU, CUDA when this paddle has a GPU) or
            'onnx' (onnxruntime on CPU; needs ``pip install onnxruntime`` and an exported
            model.onnx).
        device: 'auto', 'cpu' or 'gpu[:N]' (paddle backend).
        threads: CPU threads (default all cores).
        onednn: use oneDNN kernels on CPU (paddle backend).
    """

    def __init__(self, folder, backend='paddle', device='auto', threads=None, onednn=True):
        folder = Path(folder)
        meta_path = folder / EXPORT_META
        if not meta_path.is_file():
            raise FileNotFoundError(f'--model_dir: {folder} holds no {EXPORT_META}; write one '
                                    'with tools/export.py')
        self.meta = json.loads(meta_path.read_text())
        self.SIZE_MULTIPLE = self.meta['size_multiple']
        self.FULL_RESOLUTION = bool(self.meta.get('full_resolution', False))
        self.cfg = self.meta['config']
        self.outputs = self.meta['outputs']
        threads = int(threads or os.cpu_count() or 1)
        if backend == 'paddle':
            self._run = self._paddle_runner(folder, device, threads, onednn)
        elif backend == 'onnx':
            self._run = self._onnx_runner(folder, threads)
        else:
            raise ValueError(f"backend: expected 'paddle' or 'onnx', got {backend!r}")

    def _paddle_runner(self, folder, device, threads, onednn):
        from paddle import inference
        config = inference.Config(str(graph_file(folder)), str(folder / 'model.pdiparams'))
        has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
        if device.startswith('gpu') or (device == 'auto' and has_gpu):
            if not has_gpu:
                raise ValueError(f"device: '{device}' requested but this paddle has no GPU")
            config.enable_use_gpu(256, int(device.partition(':')[2] or 0))
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads)
            if onednn:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(8)  # kernels cached for 8 input shapes at most
                # Paddle 3.3: with oneDNN placement, this pass merges the index computations of
                # different resizes (height and width alike), so index_select reads out of range.
                config.delete_pass('common_subexpression_elimination_pass')
            else:
                config.disable_mkldnn()
        config.disable_glog_info()
        predictor = inference.create_predictor(config)

        def run(image, mask):
            predictor.get_input_handle('image').copy_from_cpu(image)
            predictor.get_input_handle('mask').copy_from_cpu(mask)
            predictor.run()
            return [predictor.get_output_handle(n).copy_to_cpu()
                    for n in predictor.get_output_names()]
        return run

    def _onnx_runner(self, folder, threads):
        try:
            import onnxruntime
        except ImportError:
            raise ValueError('backend onnx: onnxruntime is not installed '
                             '(pip install onnxruntime)') from None
        path = folder / 'model.onnx'
        if not path.is_file():
            raise FileNotFoundError(f'backend onnx: {path} does not exist; export with --onnx')
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=['CPUExecutionProvider'])
        return lambda image, mask: session.run(None, {'image': image, 'mask': mask})

    def outputs_for(self, image, mask):
        """All exported outputs by name; image [N,3,H,W], mask [N,1,H,W] float32 numpy."""
        mask = np.ascontiguousarray(np.broadcast_to(mask, (image.shape[0],) + mask.shape[1:]))
        values = self._run(np.ascontiguousarray(image, np.float32), mask.astype(np.float32))
        return dict(zip(self.outputs, values))

    def extra_inputs(self, image, mask, seed=0, given=None):
        """Exported graphs take image and mask only: a user's map is an error."""
        if given:
            raise ValueError(f'{next(iter(given))}: exported models take image and mask only '
                             '(export covers no extra inputs); use the checkpoint')
        return {}

    def __call__(self, image, mask, extra=None):
        return self.outputs_for(image, mask)['pred']
