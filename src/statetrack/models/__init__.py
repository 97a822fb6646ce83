"""Models built from the layers: a token-classification backbone for the state-tracking tasks."""

from .backbone import Block, SwiGLU, TokenClassifier, build_mixer
from .config import ModelConfig

__all__ = ["Block", "ModelConfig", "SwiGLU", "TokenClassifier", "build_mixer"]
