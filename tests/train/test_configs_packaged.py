"""The experiment files ship inside the package: found through importlib.resources, by name from any folder, and
listed in pyproject's package data (a non-editable install copies only what that lists)."""

from __future__ import annotations

import fnmatch
import importlib.resources
from pathlib import Path

import pytest

from statetrack.cli import main
from statetrack.lm.pretrain_config import load_pretrain_config
from statetrack.lm.pretrain_config import resolve_config_path as resolve_lm
from statetrack.train.config import config_dir, config_names, load_config, resolve_config_path

ROOT = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
PACKAGED = Path(str(importlib.resources.files("statetrack"))) / "configs"


def test_config_dir_is_the_installed_package_folder(tmp_path, monkeypatch):
    assert config_dir() == PACKAGED and config_dir("lm") == PACKAGED / "lm"
    monkeypatch.chdir(tmp_path)  # outside the repository, its spelling still finds the packaged file
    assert resolve_lm("configs/lm/tiny.yaml") == PACKAGED / "lm" / "tiny.yaml"
    assert {"parity_deltanet", "s5_deltanet_5l"} <= set(config_names())
    assert "tiny" in config_names("lm")


def test_package_data_lists_every_config():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["statetrack"]
    files = [p.relative_to(PACKAGED.parent).as_posix() for p in PACKAGED.rglob("*") if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), (files, patterns)


def test_repository_configs_is_the_packaged_folder():
    assert (ROOT / "configs").resolve() == PACKAGED.resolve()  # README's configs/... commands in a checkout


def test_names_and_paths_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("parity_deltanet").name == "parity_deltanet"
    assert load_config("parity_deltanet.yaml").name == "parity_deltanet"
    assert resolve_config_path("configs/parity_mamba.yaml") == PACKAGED / "parity_mamba.yaml"  # README's spelling
    assert load_pretrain_config("tiny").name == resolve_lm("tiny").stem == "tiny"
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: mine\ntrain: {steps: 3}\n")
    assert load_config("mine.yaml").name == "mine"  # a file in the working folder wins over a packaged name
    with pytest.raises(FileNotFoundError, match=r"'nope' does not exist, nor .*parity_deltanet"):
        load_config("nope")


def test_train_by_name_from_another_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tiny = ["model.d_model=8", "model.n_layers=1", "model.n_heads=1", "train.steps=2", "train.batch_size=4",
            "train.eval_samples=4", "train.threads=1", "train.task_args={test_size_small: 4}"]  # fmt: skip
    assert main(["train", "parity_deltanet", *tiny, "--out", "run", "--no-progress", "--device", "cpu"]) == 0
    assert "parity_deltanet: 2 steps" in capsys.readouterr().out and (tmp_path / "run" / "checkpoint.pt").is_file()
