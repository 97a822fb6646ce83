"""A pretrained model as a Hugging Face folder (``save_pretrained``: config.json, safetensors weights, and the
tokenizer the data was made with), the input of ``statetrack generate / ppl / lm-eval / inspect`` and of
``AutoModelForCausalLM.from_pretrained``.

With FSDP the full state dict is gathered onto rank 0's CPU first (every rank must call); rank 0 writes the
folder next to its final place and renames it there, so a reader never sees half a model.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from torch import nn

MODEL_DIR = "model"


def dataset_tokenizer(data_dir: Path) -> str | None:
    """The tokenizer (name or path) a prepared dataset was made with (its meta.json), or None if it says none."""
    from .data_shards import read_meta

    return read_meta(data_dir).get("tokenizer")


def export_model(model: nn.Module, model_config, out: str | Path, is_main: bool, tokenizer: str | None) -> Path:
    """Save ``model`` (plain or FSDP-sharded, trained under ``model_config``) to the folder ``out`` with
    ``tokenizer`` (a statetrack.lm.tokenizer name or path; None, or one that cannot be loaded: no tokenizer
    files, said on stderr). Returns ``out``."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from statetrack.models import StateTrackForCausalLM

    out = Path(out)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not is_main:
        return out
    with torch.device("cpu"):
        plain = StateTrackForCausalLM(model_config)
    plain.load_state_dict(full)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    if tokenizer is not None:
        from .tokenizer import load_tokenizer

        try:
            load_tokenizer(tokenizer).save_pretrained(tmp)
        except ValueError as e:  # the model is still worth keeping; the reader then names the missing tokenizer
            print(f"{out}: saved without a tokenizer: {e}", file=sys.stderr, flush=True)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
