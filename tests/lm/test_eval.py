"""Perplexity by position and lm-eval on a tiny saved model: the numbers are the model's own (checked against a
direct computation), the commands write their files, bad input fails with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from statetrack.cli import main
from statetrack.lm.generate import load_model
from statetrack.lm.perplexity import binned, position_nll, read_token_stream

from .tiny import TEXT, tiny_model_dir

TASKS = Path(__file__).parent / "lm_eval_tasks"


@pytest.fixture
def saved(tmp_path):
    return tiny_model_dir(tmp_path / "m")


def test_position_nll_is_the_mean_loss_at_each_position(saved, tmp_path):
    model, tok = load_model(saved, device="cpu", dtype="fp64")
    data = tmp_path / "text.txt"
    data.write_text("\n\n".join([TEXT] * 6))
    tokens = read_token_stream(data, tok)
    assert tokens[-1] == tok.eos_token_id
    nll = position_nll(model, tokens, max_length=8, batch_size=3, progress=False)
    windows = tokens[: (tokens.numel() // 8) * 8].view(-1, 8)
    with torch.no_grad():
        logits = model(windows).logits[:, :-1]
    ref = F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none").mean(0)
    torch.testing.assert_close(nll, ref, rtol=1e-9, atol=1e-9)
    b = binned(nll, bins=3)
    assert b["position"][-1] == 7 and len(b["ppl"]) == 3


def test_ppl_command_writes_json_and_png_for_several_models(saved, tmp_path, capsys):
    other = tiny_model_dir(tmp_path / "m2", mixer="mamba", d_state=4)
    data = tmp_path / "text.jsonl"
    data.write_text("\n".join(json.dumps({"text": TEXT}) for _ in range(5)))
    out = tmp_path / "out"
    assert main(["ppl", str(saved), str(other), "--data", str(data), "--max-length", "10", "--bins", "4",
                 "--out", str(out), "--device", "cpu", "--train-length", "5"]) == 0  # fmt: skip
    res = json.loads((out / "ppl.json").read_text())
    assert set(res["curves"]) == {"m", "m2"} and len(res["curves"]["m"]["ppl"]) == 4
    assert (out / "ppl.png").stat().st_size > 1000


def test_ppl_errors(saved, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("the cat")
    with pytest.raises(SystemExit, match="do not fill one window of max_length = 100"):
        main(["ppl", str(saved), "--data", str(short), "--max-length", "100", "--device", "cpu"])
    with pytest.raises(SystemExit, match="is not a file"):
        main(["ppl", str(saved), "--data", str(tmp_path / "nope.txt"), "--max-length", "4", "--device", "cpu"])


def _local_task(tmp_path: Path) -> Path:
    d = tmp_path / "tasks"
    d.mkdir()
    shutil.copy(TASKS / "tiny_choice.jsonl", d)
    yaml = (
        (TASKS / "tiny_choice.yaml").read_text().replace("test: tiny_choice.jsonl", f"test: {d / 'tiny_choice.jsonl'}")
    )
    (d / "tiny_choice.yaml").write_text(yaml)
    return d


def test_lm_eval_on_a_local_task_scores_what_the_model_prefers(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "res.json"
    assert main(["lm-eval", str(saved), "--tasks", "tiny_choice", "--include-path", str(_local_task(tmp_path)),
                 "--device", "cpu", "--batch-size", "2", "--out", str(out)]) == 0  # fmt: skip
    acc = json.loads(out.read_text())["results"]["tiny_choice"]["acc"]
    # the same choice made directly: the summed log-probability of each continuation after its context
    model, tok = load_model(saved, device="cpu", dtype="fp64")
    rows = [json.loads(line) for line in (TASKS / "tiny_choice.jsonl").read_text().splitlines()]
    right = 0
    for r in rows:
        ctx = tok(r["context"], add_special_tokens=False).input_ids
        scores = []
        for choice in r["choices"]:
            cont = tok(" " + choice, add_special_tokens=False).input_ids
            ids = torch.tensor([ctx + cont])
            with torch.no_grad():
                lp = model(ids).logits[0, :-1].log_softmax(-1)
            scores.append(sum(float(lp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont)))
        right += int(max(range(len(scores)), key=scores.__getitem__) == r["label"])
    assert acc == pytest.approx(right / len(rows))


def test_lm_eval_unknown_task(saved):
    with pytest.raises(SystemExit, match="lm-eval knows no task"):
        main(["lm-eval", str(saved), "--tasks", "no_such_task_xyz", "--device", "cpu"])
