"""The benchmark scripts still run against today's API: every script imports and parses its arguments, the
GPU-only ones stop with a clear message on a machine without a GPU, and the CPU-capable ones run a tiny case."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from benchmarks import harness

FOLDER = Path(harness.__file__).parent
SCRIPTS = sorted(p.stem for p in FOLDER.glob("*.py") if p.stem not in ("__init__", "harness"))
# scripts that need a CUDA GPU for their default run
GPU_ONLY = ["delta_rule_kernels", "delta_rule_profile", "ensemble_steps", "fla_convert_check", "layer_ops", "lm_decode",
            "lm_train_step", "pretrain_overhead", "pretrain_scaling", "scans", "slstm", "train_loop"]  # fmt: skip


def script(name):
    return importlib.import_module(f"benchmarks.{name}")


def test_every_script_is_listed_here():
    assert set(GPU_ONLY) <= set(SCRIPTS)
    assert {"ops_cpu", "tasks_throughput", "train_steps", "plot_results"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_imports_and_parses(name, capsys):
    mod = script(name)
    assert mod.__doc__, f"benchmarks/{name}.py needs a docstring saying what it measures"
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
@pytest.mark.parametrize("name", GPU_ONLY)
def test_gpu_script_says_it_needs_a_gpu(name, capsys, tmp_path):
    assert script(name).main(["--out", str(tmp_path / "x.md")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "x.md").exists()


def test_lm_train_step_names_a_bad_model_list():
    with pytest.raises(SystemExit, match=r"--models takes a comma list of \['ours', 'fla'\], got 'ours,mamba'"):
        script("lm_train_step").main(["--models", "ours,mamba"])


@pytest.mark.parametrize("argv", [["--members", "0"], ["--steps", "11"]])
def test_ensemble_steps_names_a_bad_setting(argv, capsys):
    with pytest.raises(SystemExit):
        script("ensemble_steps").main(argv)
    assert "--members takes >= 1 and --steps >= 12" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [(["--nprocs", "2,3"], "--nprocs takes positive process counts"),
                                         (["--nprocs", "two"], "--nprocs takes"),
                                         (["--steps", "15"], "--steps and --warmup must be multiples of 10"),
                                         (["--steps", "10", "--warmup", "10"], "at least twice --warmup")])  # fmt: skip
def test_pretrain_scaling_names_a_bad_setting(argv, match):
    with pytest.raises(SystemExit, match=match):
        script("pretrain_scaling").main(argv)


def test_report_writes_each_line_and_sections_fail_alone(tmp_path):
    out = tmp_path / "r" / "x.md"
    rep = harness.Report("x", "# title", out, argv=["--a", "1"])
    assert out.read_text() == "# title\n"  # written as it comes: a run cut short keeps what it measured
    rep.header(fla="not available")
    rep.table("a", "b", right=1)
    with rep.section("broken"):
        raise RuntimeError("boom")
    rep.row(1, 2)
    text = out.read_text()
    assert "- command: `python -m benchmarks.x --a 1`" in text and "fla not available" in text
    assert "section broken failed" in text and "RuntimeError: boom" in text and text.endswith("| 1 | 2 |\n")
    assert harness.Report("x", "t", print_only=True).path is None


def test_harness_helpers():
    assert harness.gpu_slug("NVIDIA H100 80GB HBM3") == "h100" and harness.gpu_slug("NVIDIA H200") == "h200"
    assert harness.device_slug("cpu") == "cpu" and harness.RESULTS == harness.ROOT / "results" / "benchmarks"
    assert harness.time_ms(lambda: None, cuda=False, repeats=2) >= 0
    assert harness.peak_mib(lambda: None, cuda=False) is None
    assert harness.try_run(lambda: 1 / 0)[1].startswith("ZeroDivisionError")
    mods, why = harness.anchor("surely_not_a_module_here")
    assert mods is None and why.startswith("not available")


def test_ops_cpu_tiny(tmp_path):
    out = tmp_path / "ops_cpu.txt"
    assert script("ops_cpu").main(["--tiny", "--out", str(out)]) == 0
    text = out.read_text()
    assert "delta_rule B=1 T=64" in text and "diag_scan B=1 T=64" in text and "failed" not in text


def test_scans_smoke(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "scans.md"
    assert script("scans").main(["--smoke", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| diag_scan | fwd+bwd | torch |" in text and "| selective_scan | fwd+bwd | torch |" in text
    assert "failed" not in text


def test_layer_ops_smoke(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "layer_ops.md"
    assert script("layer_ops").main(["--smoke", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| gated RMSNorm [2, 40, 2, 32] | torch |" in text and "| L2 norm of q [2, 40, 2, 32] | ours |" in text
    assert "failed" not in text


def test_pretrain_overhead_smoke(tmp_path):
    out = tmp_path / "pretrain_overhead.md"
    argv = ["--smoke", "--out", str(out), f"train.data_cache={tmp_path / 'data'}"]
    assert script("pretrain_overhead").main(argv) == 0
    rows = [line.split("|") for line in out.read_text().splitlines() if line.startswith("| statetrack pretrain")
            or line.startswith("| bare model step")]  # fmt: skip
    assert len(rows) == 2 and float(rows[0][4]) > 0 and rows[1][4].strip() == "1.000"


def test_tasks_throughput_tiny(tmp_path):
    out = tmp_path / "t.txt"
    argv = ["--tasks", "parity", "--batch-size", "4", "--repeats", "1", "--no-test-sets", "--out", str(out)]
    assert script("tasks_throughput").main(argv) == 0
    assert "parity" in out.read_text().split("-" * 82)[1]


def test_train_steps_tiny(tmp_path):
    out = tmp_path / "s.md"
    argv = ["--mixers", "deltanet,transformer", "--batch-size", "4", "--steps", "1", "--warmup", "1", "--out", str(out)]
    assert script("train_steps").main(argv) == 0
    text = out.read_text()
    assert "| deltanet | 401,856 |" in text and "| transformer |" in text and "failed" not in text


def test_plot_results_reads_the_stored_tables(tmp_path):
    assert script("plot_results").main(["--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 10_000
