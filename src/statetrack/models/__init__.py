"""Models built from the layers: a token-classification backbone for the state-tracking tasks, and Hugging Face
causal language models (``StateTrackConfig``, ``StateTrackForCausalLM``; imported on first use, as they need
transformers)."""

from .backbone import Block, SwiGLU, TokenClassifier, mlp_hidden_size
from .config import ModelConfig, upgrade_model_dict

_LM = {"StateTrackConfig": "lm_config", "StateTrackModel": "causal_lm", "StateTrackForCausalLM": "causal_lm",
       "RecurrentCache": "causal_lm", "register_auto_classes": "causal_lm"}  # fmt: skip


def __getattr__(name: str):
    if name in _LM:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LM[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Block", "ModelConfig", "SwiGLU", "TokenClassifier", "mlp_hidden_size", "upgrade_model_dict", *_LM]
