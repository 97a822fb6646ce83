"""``train.deterministic`` on a GPU: each Table 3 model's run key (quick budget settings: bf16 autocast, the step as a
CUDA graph, prefetch threads; fewer steps) trained again logs bitwise the same loss at every step, and the same final
evaluation: a second time in the same process, in a second process, and in two processes training at once on the
same GPU (in opposite model orders, so different models overlap); with ``STATETRACK_TEST_MPS=1`` also two processes
sharing the GPU through NVIDIA MPS (``statetrack reproduce --mps``: kernels of both run at the same time).

Skipped unless ``STATETRACK_TEST_DEVICE=cuda`` and a GPU is visible: ``benchmarks/gpu_tests.sh`` runs it. The CPU
counterpart, in CI: tests/train/test_determinism.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from statetrack.reproduce import build_runs, get_budget

GPU = os.environ.get("STATETRACK_TEST_DEVICE", "cpu") == "cuda"
pytestmark = pytest.mark.skipif(not (GPU and torch.cuda.is_available()), reason="needs a GPU (benchmarks/gpu_tests.sh)")

STEPS = int(os.environ.get("STATETRACK_TEST_DETERMINISM_STEPS", "120"))
SRC = str(Path(__file__).resolve().parents[2] / "src")

# Trains the configs of a JSON file (name -> config dict) in the order given, each ``repeat`` times in this one
# process, and writes name -> [{"losses": [float.hex of every step], "final": eval result}, ...].
_SCRIPT = """
import json, sys
from statetrack.train import ExperimentConfig, train
configs, order, repeat, out = json.load(open(sys.argv[1])), json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
res = {}
for name in order:
    for _ in range(repeat):
        r = train(ExperimentConfig.from_dict(configs[name]), write_files=False)
        res.setdefault(name, []).append({"losses": [v.hex() for v in r.losses], "final": r.final.to_dict()})
json.dump(res, open(out, "w"))
"""


def _configs() -> dict[str, dict]:
    """One key per Table 3 model: parity, the quick budget's settings, its largest lr (1e-2: small differences grow
    fastest), seed 0, STEPS steps."""
    runs = build_runs("table3", get_budget("table3", "quick"), device_type="cuda")
    out = {}
    for r in runs:
        if r.task == "parity" and r.seed == 0 and r.lr == max(x.lr for x in runs) and r.model_label not in out:
            c = r.config
            c.train.steps, c.train.eval_every, c.train.ckpt_every = STEPS, 0, 0
            c.train.device, c.train.deterministic, c.train.progress = "cuda", True, False
            out[r.model_label] = c.to_dict()
    assert len(out) == 7, sorted(out)
    return out


def _start(tmp: Path, tag: str, configs: dict, order: list[str], repeat: int = 1, env=None) -> subprocess.Popen:
    cfg_file = tmp / "configs.json"
    if not cfg_file.exists():
        cfg_file.write_text(json.dumps(configs))
    env = {**os.environ, **(env or {}), "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("CUBLAS_WORKSPACE_CONFIG", None)  # train.deterministic must set it itself, before CUDA starts
    cmd = [sys.executable, "-c", _SCRIPT, str(cfg_file), json.dumps(order), str(repeat), str(tmp / f"{tag}.json")]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(tmp: Path, tag: str, proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, f"{tag}: exit {proc.returncode}\n{out[-6000:]}"
    return json.loads((tmp / f"{tag}.json").read_text())


def _differences(ref: dict, other: dict, what: str) -> list[str]:
    """One line per model whose losses or final evaluation differ: the first step that differs and both values."""
    bad = []
    for name, (a, *_) in ref.items():
        for j, b in enumerate(other[name]):
            la, lb = a["losses"], b["losses"]
            if la != lb:
                i = next((i for i, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y), min(len(la), len(lb)))
                va = float.fromhex(la[i]) if i < len(la) else None
                vb = float.fromhex(lb[i]) if i < len(lb) else None
                bad.append(f"{what} #{j}, {name}: losses differ from step {i + 1} ({va!r} vs {vb!r})")
            elif a["final"] != b["final"]:
                bad.append(f"{what} #{j}, {name}: same losses, final evaluation differs")
    return bad


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Every key trained twice in one process, alone on the GPU."""
    tmp = tmp_path_factory.mktemp("determinism")
    configs = _configs()
    res = _finish(tmp, "alone", _start(tmp, "alone", configs, list(configs), repeat=2))
    return tmp, configs, res


def test_same_key_twice_in_one_process(reference):
    _, _, res = reference
    assert all(len(v[0]["losses"]) == STEPS for v in res.values())
    first = {k: v[:1] for k, v in res.items()}
    second = {k: v[1:] for k, v in res.items()}
    assert not (bad := _differences(first, second, "same process")), "\n".join(bad)


def test_same_key_in_another_process(reference):
    tmp, configs, res = reference
    other = _finish(tmp, "again", _start(tmp, "again", configs, list(configs)))
    assert not (bad := _differences(res, other, "another process")), "\n".join(bad)


def _two_at_once(tmp: Path, configs: dict, tag: str, env=None) -> list[dict]:
    order = list(configs)
    procs = [_start(tmp, f"{tag}{i}", configs, o, env=env) for i, o in enumerate((order, order[::-1]))]
    return [_finish(tmp, f"{tag}{i}", p) for i, p in enumerate(procs)]


def test_same_key_with_two_runs_sharing_the_gpu(reference):
    tmp, configs, res = reference
    bad = []
    for i, other in enumerate(_two_at_once(tmp, configs, "shared")):
        bad += _differences(res, other, f"sharing the GPU, process {i}")
    assert not bad, "\n".join(bad)


@pytest.mark.skipif(os.environ.get("STATETRACK_TEST_MPS") != "1", reason="set STATETRACK_TEST_MPS=1 to test MPS")
def test_same_key_with_two_runs_sharing_the_gpu_through_mps(reference):
    from statetrack.reproduce.mps import CONTROL, mps_daemon

    if shutil.which(CONTROL) is None:
        pytest.skip(f"{CONTROL} is not on PATH")
    tmp, configs, res = reference
    bad = []
    with mps_daemon(True, log=print):  # the workers (started inside) inherit the daemon's pipe folder
        results = _two_at_once(tmp, configs, "mps")
    for i, other in enumerate(results):
        bad += _differences(res, other, f"through MPS, process {i}")
    assert not bad, "\n".join(bad)
