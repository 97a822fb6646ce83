"""Pretraining with two CPU processes (torchrun, gloo, FSDP2): a crash between checkpoints and a SIGTERM on one
rank, each resumed, log the uninterrupted run's losses exactly; its sharded checkpoint loads in one process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from statetrack.lm.checkpoint import Checkpointer
from statetrack.lm.pretrain import lm_param_groups, pretrain
from statetrack.models import StateTrackForCausalLM

from .pretrain_helpers import data_api, make_dataset, tiny_config, train_losses

WORKER = Path(__file__).with_name("pretrain_worker.py")


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]


def test_two_processes_resume_exactly_and_reshard_to_one(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    root = tmp_path / "runs"
    root.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*torchrun(), "--standalone", "--nproc-per-node", "2", str(WORKER), str(data), str(root)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    report = json.loads((root / "report.json").read_text())
    assert report == {"crashed": True, "stopped_by": "SIGTERM", "stopped_at": 7, "resumed_at": 3,
                      "final_step": 8, "final_resumed_at": 7}  # fmt: skip
    ref = train_losses(root / "ref")
    assert sorted(ref) == list(range(1, 9))
    assert train_losses(root / "int") == ref

    # 2 -> 1: the sharded checkpoint loads into one process's plain model, every value as the two ranks had it
    cfg = tiny_config(data, root / "ref")
    model = StateTrackForCausalLM(cfg.model_config())
    opt = torch.optim.AdamW(lm_param_groups(model, 0.01))
    found = Checkpointer(root / "ref" / "checkpoints", 0, 1).load_latest(model, opt)
    assert found is not None and found[0].name == "step_00000008" and found[2] is None  # per-rank state: 2 ranks
    full = torch.load(root / "ref_model.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, full[k]), k
    assert all(len(s) > 0 for s in opt.state.values()) and len(opt.state) == len(list(model.parameters()))

    # ... and the run goes on in one process from it
    shutil.copytree(root / "ref", root / "one")
    res = pretrain(tiny_config(data, root / "one", steps=10), resume=True, data_api=data_api())
    assert res.steps_run == 2 and res.resumed_from.name == "step_00000008"
    assert "resharded" in capsys.readouterr().out
