"""Weight files: our checkpoints, the one reader of foreign weight files, and converters.

- ``weights.read.read_weights(path)``: any weights file as ``{name: numpy array}`` without running
  its code (safetensors, npz, torch/Paddle pickles through an allow-list, TensorFlow checkpoints);
- ``weights.checkpoint``: our ``.safetensors`` checkpoints (model, optimizers, run state);
- ``weights.features``: the frozen feature networks' files (VGG for the perceptual losses);
- ``weights.convert``: published weights -> our checkpoints (one ``SOURCES`` table).
"""
import runtime  # noqa: F401  (the CPU math-library switch before paddle loads)
from weights.checkpoint import (CheckpointError, load_model_state, load_optimizer_state,
                                read_checkpoint, save_checkpoint)
from weights.read import read_weights

__all__ = ['CheckpointError', 'load_model_state', 'load_optimizer_state', 'read_checkpoint',
           'read_weights', 'save_checkpoint']
