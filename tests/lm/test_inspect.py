"""`statetrack inspect`: the eigenvalues it reports are the model's own, in range, for every eigenvalue mixer
and for hybrids; the files come out; bad input fails with one line."""

from __future__ import annotations

import json

import pytest
import torch

from statetrack.cli import main
from statetrack.lm.generate import load_model
from statetrack.lm.inspect import inspect, transition_spectra

from .tiny import TEXT, tiny_model_dir


@pytest.mark.parametrize("mixer, settings", [("deltanet", {"n_heads": 2}), ("gated_deltanet", {"n_heads": 2}),
                                             ("deltaproduct", {"n_heads": 2}), ("mamba", {"d_state": 4})])  # fmt: skip
def test_spectra_are_the_layers_eigenvalues_in_range(tmp_path, mixer, settings):
    model, tok = load_model(tiny_model_dir(tmp_path / "m", mixer=mixer, **settings), device="cpu", dtype="fp64")
    ids = tok(TEXT, return_tensors="pt").input_ids
    spectra = transition_spectra(model, ids)
    assert len(spectra) == len(model.model.layers)
    for ev in spectra:
        assert float(ev.min()) >= -1 - 1e-6 and float(ev.max()) <= 1 + 1e-6
    # the hook saw what the mixer saw: the first layer's, recomputed from its input by hand
    h = model.model.embeddings(ids)
    first = model.model.layers[0].mixer.transition_eigenvalues(model.model.layers[0].mixer_norm(h))
    first = (first.real if first.is_complex() else first).float()
    torch.testing.assert_close(spectra[0], first.reshape(spectra[0].shape))


def test_report_and_command(tmp_path, capsys):
    d = tiny_model_dir(tmp_path / "m")
    data = tmp_path / "t.txt"
    data.write_text("\n\n".join([TEXT] * 4))
    out = tmp_path / "out"
    assert main(["inspect", str(d), "--data", str(data), "--window", "16", "--top", "3", "--out", str(out),
                 "--device", "cpu"]) == 0  # fmt: skip
    rep = json.loads((out / "eigenvalues.json").read_text())
    layer = rep["layers"][0]
    assert layer["mixer"] == "deltanet" and len(layer["per_head"]) == 2 and len(layer["lowest_tokens"]) == 3
    assert sum(layer["histogram"]["counts"]) == layer["n"] and 0 <= layer["below_0"] <= 1
    assert layer["lowest_tokens"][0]["eigenvalue"] == pytest.approx(layer["min"], abs=1e-6)
    assert (out / "eigenvalues.png").stat().st_size > 1000
    assert "below 0" in capsys.readouterr().out


def test_models_without_eigenvalues_and_bad_data(tmp_path):
    model, tok = load_model(tiny_model_dir(tmp_path / "m", mixer="transformer", n_heads=2), device="cpu")
    rep = inspect(model, tok, tok(TEXT, return_tensors="pt").input_ids[0], window=8)
    assert all("histogram" not in e for e in rep["layers"])
    data = tmp_path / "t.txt"
    data.write_text(TEXT)
    with pytest.raises(SystemExit, match="no layer with transition eigenvalues"):
        main(["inspect", str(tmp_path / "m"), "--data", str(data), "--device", "cpu", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="is not a file"):
        main(["inspect", str(tmp_path / "m"), "--data", str(tmp_path / "none.txt"), "--device", "cpu"])
