"""Inference: a model from a checkpoint, photos of any size, export and the exported runtime.

- ``load_model(path)``: the model a checkpoint records, weights loaded, in eval mode;
- ``Inpainter``: photos of any size (numpy or PIL) with the large-photo strategies;
- ``export`` / ``export_onnx``: static graphs for paddle.inference and ONNX; ``ExportedModel``
  runs them behind the interface the Inpainter uses;
- ``postprocess``: optional post-processing of results (GLCIC's Telea + Poisson blending).
"""
import runtime  # noqa: F401  (the CPU math-library switch before paddle loads)
from inference.export import export, export_onnx
from inference.exported import EXPORT_META, ExportedModel
from inference.inpainter import STRATEGIES, Inpainter, hole_windows, pad_to_multiple
from inference.loading import load_model
from inference.postprocess import POSTPROCESSES, postprocess

__all__ = ['EXPORT_META', 'POSTPROCESSES', 'STRATEGIES', 'ExportedModel', 'Inpainter', 'export',
           'export_onnx', 'hole_windows', 'load_model', 'pad_to_multiple', 'postprocess']
