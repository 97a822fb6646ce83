"""`statetrack train`, `statetrack eval` and `statetrack demo` end to end (tiny sizes), and the shipped configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from statetrack.cli import main
from statetrack.tasks import get_task
from statetrack.train import ExperimentConfig, build_model, load_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load_and_validate(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig) and cfg.name == path.stem
    task = get_task(cfg.train.task, **cfg.train.task_args)
    cfg.model.d_model, cfg.model.n_layers = 8, 1  # only the wiring: keep the build cheap
    if hasattr(cfg.model.mixer_settings, "n_heads"):
        cfg.model.settings["n_heads"] = min(cfg.model.mixer_settings.n_heads, 2)
    build_model(cfg, task)


def test_train_then_eval_cli(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        "name: tiny\nmodel: {mixer: diagonal_rnn, d_model: 8, n_layers: 1, mlp_ratio: 0}\n"
        "train: {task: parity, steps: 4, batch_size: 8, eval_every: 0, eval_samples: 16, threads: 1}\n"
    )
    out = tmp_path / "run"
    assert main(["train", str(cfg), "train.lr=0.01", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert "tiny: 4 steps" in capsys.readouterr().out
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.jsonl").is_file()
    # resume of a finished run is a no-op that still reports
    assert main(["train", str(cfg), "--out", str(out), "--no-progress", "--resume"]) == 0

    png = tmp_path / "acc.png"
    assert main(["eval", str(out), "--lengths", "40-60", "--samples", "32", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "scaled acc." in text and "overall" in text and png.stat().st_size > 1000
    assert main(["eval", str(out / "checkpoint.pt"), "--lengths", "5,9", "--samples", "8", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["task"] == "parity" and res["n_sequences"] == 16 and set(res["per_length"]) == {"5", "9"}


def test_eval_rejects_bad_lengths(tmp_path):
    from statetrack.commands.eval import parse_lengths

    assert parse_lengths("40-256") == ("range", (40, 256))
    assert parse_lengths("8,16") == ("list", [8, 16])
    with pytest.raises(ValueError, match="--lengths"):
        parse_lengths("forty")


def test_demo_command_tiny(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "2", "--out", str(out), "--no-progress", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert "min_eigenvalue" in text and "[-1, 1]" in text and "total wall time" in text
    res = json.loads((out / "results.json").read_text())
    assert [r["min_eigenvalue"] for r in res] == [0.0, -1.0]
    assert all(set(r) == {"min_eigenvalue", "scaled_accuracy", "steps", "wall_seconds"} for r in res)
    assert all(r["steps"] == 2 and -1.0 <= r["scaled_accuracy"] <= 1.0 for r in res)
    assert (out / "parity.png").stat().st_size > 1000 and (out / "table.txt").is_file()


def test_demo_model_matches_its_config_file(tmp_path):
    from statetrack.commands.demo import demo_config

    shipped = load_config(Path(__file__).parents[2] / "configs" / "parity_diagonal_rnn.yaml")
    demo = demo_config(-1.0, shipped.train.steps, 0, "cpu", tmp_path, False)
    assert demo.model == shipped.model
    for key in ("task", "steps", "batch_size", "lr", "min_lr", "warmup_frac", "weight_decay", "eval_every"):
        assert getattr(demo.train, key) == getattr(shipped.train, key), key


def test_train_cli_bad_override_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="statetrack train: .*unknown mixer 'lstmm'"):
        main(["train", str(CONFIGS[0]), "model.mixer=lstmm", "--out", str(tmp_path), "--no-progress"])


def test_train_overrides_and_options_in_any_order(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: anyorder\nmodel: {mixer: diagonal_rnn, d_model: 8, n_layers: 1, mlp_ratio: 0}\n"
                   "train: {task: parity, steps: 2, batch_size: 4, log_every: 1}\n")  # fmt: skip
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "train.steps=3", "--no-progress", "model.min_eigenvalue=0"]) == 0
    assert "3 steps" in capsys.readouterr().out and (out / "checkpoint.pt").exists()
    with pytest.raises(SystemExit, match="statetrack train: unknown option '--bogus'"):
        main(["train", str(cfg), "train.steps=1", "--bogus"])
