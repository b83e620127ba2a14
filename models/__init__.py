"""Inpainting models behind one interface, and the registry that names them.

Every model class implements ``models.base.InpaintModel`` (``DEFAULTS``, ``TINY``, ``forward``,
``g_loss``/``d_loss``, ``netG``/``netD``, the ``extra_inputs`` hook); train.py, test.py, the
Inpainter and export only ever talk to that interface. Networks only: weight files live in
weights/, inference in inference/.
"""
import runtime  # noqa: F401  (sets the CPU math-library switch before paddle loads)
from models.aotgan import AOTGAN
from models.deepfill_v1 import DeepFillV1
from models.deepfill_v2 import DeepFillV2
from models.glcic import GLCIC
from models.lama import LaMa
from models.lbam import LBAM
from models.pconv import PConv

MODELS = {'aotgan': AOTGAN, 'deepfill_v1': DeepFillV1, 'deepfill_v2': DeepFillV2, 'glcic': GLCIC,
          'lama': LaMa, 'lbam': LBAM, 'pconv': PConv}


def build(name, cfg):
    """Builds model ``name`` from a (possibly larger) flat config; unknown names are an error."""
    if name not in MODELS:
        raise ValueError(f"model: unknown model '{name}'; choose one of {', '.join(MODELS)}")
    cls = MODELS[name]
    return cls(**{k: v for k, v in cfg.items() if k in cls.DEFAULTS})
