"""statetrack: linear RNNs whose transition eigenvalues may reach -1, so that they can track state.

Importing statetrack registers its causal language models with transformers' Auto classes (model_type
"statetrack"), so ``AutoModelForCausalLM.from_pretrained(dir)`` loads them.
"""

__version__ = "0.1.0"


def _register() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError:  # pragma: no cover - transformers is a dependency; a stripped install still imports
        return
    from .models.causal_lm import register_auto_classes

    register_auto_classes()


_register()
