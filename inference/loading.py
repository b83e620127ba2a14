"""A model ready for inference from a checkpoint file: the config inside rebuilds it."""
from models import MODELS, build
from weights.checkpoint import CheckpointError, load_model_state, read_checkpoint


def load_model(path, model_name=None):
    """Rebuilds the model recorded in a checkpoint and loads its weights; returns (model, state).

    Training runs and converted weights (tools/convert_weights.py) are such checkpoints. A bare
    Paddle ``.pdparams`` state dict carries no config (read without unpickling code): then
    ``model_name`` is required and the model's paper DEFAULTS are used.
    """
    tensors, state = read_checkpoint(path)
    name = state.get('model') or model_name
    if name is None:
        raise CheckpointError(f'checkpoint: {path} records no model name; pass --model '
                              f"({', '.join(MODELS)})")
    model = build(name, state.get('config', {}))
    load_model_state(model, tensors, path)
    model.eval()
    return model, state
