"""Mixed precision on a GPU (--amp): autocast for the generator, the critic loss in float32."""
import contextlib

import paddle


def amp_dtype(cfg, device):
    """The autocast dtype of --amp, or None; refused where ``device`` cannot train with it."""
    dtype = cfg['amp_dtype']
    if dtype not in ('float16', 'bfloat16'):
        raise ValueError(f"amp_dtype: expected 'float16' or 'bfloat16', got {dtype!r}")
    if not cfg['amp']:
        return None
    if not device.startswith('gpu'):
        raise ValueError(f'amp: mixed precision needs a GPU, this run is on {device} '
                         '(drop --amp, or install paddlepaddle-gpu)')
    supported = (paddle.amp.is_float16_supported if dtype == 'float16'
                 else paddle.amp.is_bfloat16_supported)
    if not supported():
        raise ValueError(f'amp_dtype: this GPU cannot train in {dtype} (bfloat16 needs compute '
                         'capability 8.0 or newer); pass --amp_dtype float16')
    return dtype


def autocast(amp):
    """paddle.amp.auto_cast at O1 (convs and matmuls in ``amp``, weights float32) or nothing."""
    return paddle.amp.auto_cast(dtype=amp) if amp else contextlib.nullcontext()


def as_float32(out):
    """A model's outputs with float16/bfloat16 tensors cast back to float32."""
    return {k: v.astype('float32') if v.dtype in (paddle.float16, paddle.bfloat16) else v
            for k, v in out.items()}


def scaler_state(scaler):
    """A GradScaler's state as JSON (the checkpoint header)."""
    return {k: v.tolist() if hasattr(v, 'tolist') else v for k, v in scaler.state_dict().items()}
