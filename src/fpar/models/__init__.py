"""fpar.models: the five models of DESIGN section 2, composed from shared parts.

Importing the package registers every model. Use `build_model(cfg)` to build one, `load_model`
to rebuild one from a checkpoint, and call it on a batch dict: `model(batch) -> ModelOutput`
(see `fpar.models.model`); `model.input_keys` names the batch keys it needs.
"""

from fpar.models import flow, rgb, two_stream  # noqa: F401  (registers the models)
from fpar.models.checkpoints import CheckpointMeta, load_model, read_checkpoint, save_checkpoint
from fpar.models.model import ActionModel, ModelOutput
from fpar.models.registry import build_model, list_models

__all__ = [
    "ActionModel",
    "CheckpointMeta",
    "ModelOutput",
    "build_model",
    "list_models",
    "load_model",
    "read_checkpoint",
    "save_checkpoint",
]
