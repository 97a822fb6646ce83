"""Models built from the layers: a token-classification backbone for the state-tracking tasks."""

from .backbone import Block, SwiGLU, TokenClassifier
from .config import ModelConfig, upgrade_model_dict

__all__ = ["Block", "ModelConfig", "SwiGLU", "TokenClassifier", "upgrade_model_dict"]
