"""A finished pretraining run leaves its model as a Hugging Face folder that AutoModelForCausalLM loads to the
same function; ppl and inspect read a prepared dataset's validation split directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from statetrack.lm.data_shards import TokenShards
from statetrack.lm.export import export_model
from statetrack.lm.perplexity import read_token_stream
from statetrack.lm.pretrain import pretrain

from .pretrain_helpers import data_api, make_dataset, tiny_config
from .tiny import tiny_model_dir


def test_finished_run_saves_a_model_that_loads_to_the_same_function(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    res = pretrain(tiny_config(data, tmp_path / "run", steps=5), data_api=data_api())
    assert res.model_dir == tmp_path / "run" / "model"
    assert "saved without a tokenizer" in capsys.readouterr().err  # the random dataset names no real tokenizer
    loaded = AutoModelForCausalLM.from_pretrained(res.model_dir).eval()
    ids = torch.randint(3, 64, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, res.model.eval()(ids).logits, rtol=0, atol=0)
    assert not (tmp_path / "run" / "model.partial").exists()


def test_stopped_run_saves_no_model(tmp_path):
    data = make_dataset(tmp_path / "data")

    def stop(step):
        if step == 2:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)

    res = pretrain(tiny_config(data, tmp_path / "run", steps=6), on_step=stop, data_api=data_api())
    assert res.stopped_by == "SIGTERM" and res.model_dir is None
    assert not (tmp_path / "run" / "model").exists()


def test_export_replaces_an_older_folder_whole(tmp_path):
    model_dir = tiny_model_dir(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    out = tmp_path / "export"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    export_model(model, model.config, out, is_main=True, tokenizer=None)
    assert not (out / "stale.txt").exists() and (out / "config.json").is_file()


def test_a_dataset_folder_is_read_as_its_validation_split(tmp_path):
    data = make_dataset(tmp_path / "data")
    tok = type("Tok", (), {"__len__": lambda self: 64})()
    val = TokenShards(data, "validation")
    want = np.concatenate([val.document(i) for i in range(val.documents)]).astype(np.int64)
    assert torch.equal(read_token_stream(data, tok), torch.from_numpy(want))
    assert torch.equal(read_token_stream(data, tok, max_tokens=50), torch.from_numpy(want[:50]))
    small = type("Tok", (), {"__len__": lambda self: 10})()
    with pytest.raises(ValueError, match="vocab 64"):
        read_token_stream(data, small)
